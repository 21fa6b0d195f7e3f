//! Guest loaders: they copy an image into guest RAM and say how the vCPU
//! starts ([`Start`]). Guest RAM begins at GPA 0 (`abi::guest::GUEST_RAM_BASE`),
//! so a GPA is an offset into the [`GuestRam`] block.
//!
//! - [`load_test_guest`]: Mojito's own test guests (`abi::guest`): ELF
//!   PT_LOAD segments at `p_paddr`, real mode with CS = 0 and IP = the
//!   entry point (below 64 KiB), EBX = VM id, ECX = RAM size.
//! - [`load_flat`]: a flat binary at a given GPA, started in real mode
//!   there.
//! - [`multiboot::load`]: multiboot v1 kernels with command line and
//!   modules, as QEMU's `-kernel -append -initrd` loads them.
//! - [`pvh::load`]: an uncompressed Linux `vmlinux` (or any ELF kernel
//!   with the Xen PVH entry note), its initrd and command line.
//! - [`bzimage::load`]: a Linux bzImage by the x86 boot protocol's 32-bit
//!   entry, with `boot_params`, its e820 map, initrd and command line.

pub mod bzimage;
pub mod elf;
pub mod multiboot;
pub mod pvh;

use abi::kvm::{kvm_regs, kvm_segment, kvm_sregs};
use alloc::vec::Vec;
use core::fmt;

use crate::api::GuestRam;

/// Why an image could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not an ELF file (no magic).
    NotElf,
    /// The image is malformed or unsupported; the string says how.
    BadImage(&'static str),
    /// `len` bytes at `gpa` do not fit in guest RAM (or below 4 GiB, where
    /// the boot protocol needs 32-bit addresses).
    OutsideRam { gpa: u64, len: u64 },
    /// The entry point cannot be reached in the start mode.
    BadEntry(u64),
    /// No multiboot header in the first 8 KiB.
    NoMultibootHeader,
    /// The multiboot header requires features this loader lacks (the
    /// unknown bits of its low 16 flag bits).
    UnsupportedMultibootFlags(u32),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf => f.write_str("not an ELF file"),
            Self::BadImage(what) => write!(f, "bad image: {what}"),
            Self::OutsideRam { gpa, len } => {
                write!(f, "{len:#x} bytes at {gpa:#x} do not fit in guest RAM")
            }
            Self::BadEntry(e) => write!(f, "entry point {e:#x} cannot be reached"),
            Self::NoMultibootHeader => f.write_str("no multiboot header in the first 8 KiB"),
            Self::UnsupportedMultibootFlags(bits) => {
                write!(
                    f,
                    "multiboot header requires unsupported features {bits:#x}"
                )
            }
        }
    }
}

/// The CPU mode a guest starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Real mode at `cs:ip` (CS base = `cs` × 16).
    Real { cs: u16, ip: u16 },
    /// 32-bit protected mode at `eip`: flat 4 GiB code and data segments,
    /// CR0.PE set, paging off, interrupts off (the multiboot machine
    /// state).
    Protected32 { eip: u32 },
    /// As `Protected32`, with the GDT at `gdt` loaded (4 entries: the
    /// flat code segment at selector 0x10, data at 0x18) and those
    /// selectors in CS and DS/ES/SS: the Linux boot protocol's 32-bit
    /// entry state (`__BOOT_CS`, `__BOOT_DS`).
    BootProtocol32 { eip: u32, gdt: u32 },
}

/// How the vCPU starts: a mode and the general registers (all others 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    pub mode: Mode,
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    /// ESI: the Linux boot protocol's `boot_params` ([`bzimage`]).
    pub rsi: u64,
}

/// Flat-segment selectors in protected mode. The multiboot spec leaves the
/// values undefined; these are those of a typical boot GDT.
const CODE32_SELECTOR: u16 = 0x08;
const DATA32_SELECTOR: u16 = 0x10;
/// The Linux boot protocol's selectors (Documentation/x86/boot.rst,
/// "32-bit BOOT PROTOCOL") and a GDT that has them: null, null, flat
/// 32-bit code (execute/read), flat 32-bit data (read/write), 4 KiB
/// granular (SDM Vol. 3A §3.4.5).
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
pub const BOOT_GDT: [u64; 4] = [0, 0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
/// Segment types (SDM Vol. 3A §3.4.5.1): execute/read code and read/write
/// data, both accessed.
const TYPE_CODE_ER_ACCESSED: u8 = 0xb;
const TYPE_DATA_RW_ACCESSED: u8 = 0x3;
const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;
/// RFLAGS bit 1 is always set; IF (bit 9) stays clear.
const RFLAGS_FIXED: u64 = 1 << 1;

fn segment(selector: u16, base: u64, limit: u32, type_: u8, big: bool) -> kvm_segment {
    kvm_segment {
        base,
        limit,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(big),
        s: 1,
        l: 0,
        g: u8::from(big),
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

impl Start {
    /// The register state for this start, on top of the vCPU's reset state
    /// `sregs` (whose TR, LDT, descriptor tables and CR0 cache bits stay).
    pub fn apply(&self, sregs: &mut kvm_sregs) -> kvm_regs {
        let mut regs = kvm_regs {
            rax: self.rax,
            rbx: self.rbx,
            rcx: self.rcx,
            rsi: self.rsi,
            rflags: RFLAGS_FIXED,
            ..Default::default()
        };
        match self.mode {
            Mode::Real { cs, ip } => {
                sregs.cs = segment(cs, u64::from(cs) << 4, 0xffff, TYPE_CODE_ER_ACCESSED, false);
                let data = segment(0, 0, 0xffff, TYPE_DATA_RW_ACCESSED, false);
                (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
                sregs.cr0 &= !(CR0_PE | CR0_PG);
                regs.rip = u64::from(ip);
            }
            Mode::Protected32 { eip } => {
                sregs.cs = segment(CODE32_SELECTOR, 0, 0xffff_ffff, TYPE_CODE_ER_ACCESSED, true);
                let data = segment(DATA32_SELECTOR, 0, 0xffff_ffff, TYPE_DATA_RW_ACCESSED, true);
                (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
                sregs.cr0 = (sregs.cr0 | CR0_PE) & !CR0_PG;
                regs.rip = u64::from(eip);
            }
            Mode::BootProtocol32 { eip, gdt } => {
                sregs.cs = segment(BOOT_CS, 0, 0xffff_ffff, TYPE_CODE_ER_ACCESSED, true);
                let data = segment(BOOT_DS, 0, 0xffff_ffff, TYPE_DATA_RW_ACCESSED, true);
                (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
                sregs.gdt.base = u64::from(gdt);
                sregs.gdt.limit = (BOOT_GDT.len() * 8 - 1) as u16;
                sregs.cr0 = (sregs.cr0 | CR0_PE) & !CR0_PG;
                regs.rip = u64::from(eip);
            }
        }
        sregs.efer = 0;
        sregs.cr4 = 0;
        regs
    }
}

/// An image in 8-byte-aligned memory, which `xmas-elf` needs: borrowed when
/// the input already is, copied otherwise.
pub struct Aligned<'a> {
    borrowed: Option<&'a [u8]>,
    owned: Vec<u64>,
    len: usize,
}

impl<'a> Aligned<'a> {
    /// `image`, aligned.
    pub fn new(image: &'a [u8]) -> Self {
        if image.as_ptr().align_offset(8) == 0 {
            return Self {
                borrowed: Some(image),
                owned: Vec::new(),
                len: image.len(),
            };
        }
        let mut owned = alloc::vec![0u64; image.len().div_ceil(8)];
        for (word, chunk) in owned.iter_mut().zip(image.chunks(8)) {
            let mut b = [0; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_ne_bytes(b);
        }
        Self {
            borrowed: None,
            owned,
            len: image.len(),
        }
    }

    /// The aligned bytes.
    pub fn bytes(&self) -> &[u8] {
        match self.borrowed {
            Some(b) => b,
            // SAFETY: `owned` holds at least `len` bytes (len.div_ceil(8)
            // words), any byte of a u64 may be read as u8, and the slice
            // borrows `self`, so the vector outlives it unchanged.
            None => unsafe {
                core::slice::from_raw_parts(self.owned.as_ptr().cast::<u8>(), self.len)
            },
        }
    }
}

/// Checks that `len` bytes at `gpa` lie in `ram`.
fn check_fits(ram: &GuestRam<'_>, gpa: u64, len: u64) -> Result<(), LoadError> {
    match gpa.checked_add(len) {
        Some(end) if end <= ram.len() as u64 => Ok(()),
        _ => Err(LoadError::OutsideRam { gpa, len }),
    }
}

/// Copies ELF segments to their physical addresses and zeroes the rest
/// of each (`p_memsz` beyond `p_filesz`). Checks every segment before
/// copying any. Returns the first byte after the highest segment.
fn load_segments(ram: &GuestRam<'_>, segments: &[elf::Segment<'_>]) -> Result<u64, LoadError> {
    let mut end = 0;
    for s in segments {
        check_fits(ram, s.paddr, s.memsz)?;
        end = end.max(s.paddr + s.memsz);
    }
    for s in segments {
        let oops = LoadError::OutsideRam {
            gpa: s.paddr,
            len: s.memsz,
        };
        ram.write(s.paddr, s.data).map_err(|_| oops)?;
        let filesz = s.data.len() as u64;
        let rest = usize::try_from(s.memsz - filesz).map_err(|_| oops)?;
        ram.fill(s.paddr + filesz, rest, 0).map_err(|_| oops)?;
    }
    Ok(end)
}

/// Loads one of Mojito's test guests (`abi::guest`): an ELF whose PT_LOAD
/// segments go to `p_paddr`, entered in real mode with CS = 0, IP = the
/// entry point (below `abi::guest::ENTRY_MAX`), EBX = `vm_id` and ECX =
/// the RAM size.
pub fn load_test_guest(ram: &GuestRam<'_>, image: &[u8], vm_id: u32) -> Result<Start, LoadError> {
    let aligned = Aligned::new(image);
    let elf = elf::parse(aligned.bytes())?;
    let ip = u16::try_from(elf.entry)
        .ok()
        .filter(|_| elf.entry < abi::guest::ENTRY_MAX)
        .ok_or(LoadError::BadEntry(elf.entry))?;
    let ram_size = u32::try_from(ram.len())
        .map_err(|_| LoadError::BadImage("test guests take at most 4 GiB - 1 of RAM (ECX)"))?;
    load_segments(ram, &elf.segments)?;
    Ok(Start {
        mode: Mode::Real { cs: 0, ip },
        rax: 0,
        rbx: u64::from(vm_id),
        rcx: u64::from(ram_size),
        rsi: 0,
    })
}

/// Loads a flat binary at `gpa` and starts it there in real mode: with CS
/// = 0 and IP = `gpa` below 64 KiB, else with CS = `gpa` / 16 and IP = 0
/// (`gpa` must then be 16-byte aligned and below 1 MiB).
pub fn load_flat(ram: &GuestRam<'_>, image: &[u8], gpa: u64) -> Result<Start, LoadError> {
    let mode = if let Ok(ip) = u16::try_from(gpa) {
        Mode::Real { cs: 0, ip }
    } else {
        match u16::try_from(gpa >> 4) {
            Ok(cs) if gpa % 16 == 0 => Mode::Real { cs, ip: 0 },
            _ => return Err(LoadError::BadEntry(gpa)),
        }
    };
    check_fits(ram, gpa, image.len() as u64)?;
    ram.write(gpa, image).map_err(|_| LoadError::OutsideRam {
        gpa,
        len: image.len() as u64,
    })?;
    Ok(Start {
        mode,
        rax: 0,
        rbx: 0,
        rcx: 0,
        rsi: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn test_guest_elf() {
        let img = elf::tests::build(true, 0x8000, &[(0x8000, 0x8000, b"\xfa\xf4", 0x1000)]);
        let mut mem = vec![0xaau8; 0x10000];
        let ram = GuestRam::from_slice(&mut mem);
        let start = load_test_guest(&ram, &img, 3).unwrap();
        assert_eq!(
            start,
            Start {
                mode: Mode::Real { cs: 0, ip: 0x8000 },
                rax: 0,
                rbx: 3,
                rcx: 0x10000,
                rsi: 0,
            }
        );
        let mut b = [0; 4];
        ram.read(0x8000, &mut b).unwrap();
        assert_eq!(b, [0xfa, 0xf4, 0, 0], "bss zeroed");
        ram.read(0x8ffc, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        ram.read(0x9000, &mut b).unwrap();
        assert_eq!(b, [0xaa; 4], "nothing past memsz");
    }

    #[test]
    fn test_guest_checks() {
        let mut mem = vec![0u8; 0x10000];
        let ram = GuestRam::from_slice(&mut mem);
        let high_entry = elf::tests::build(true, 0x10000, &[(0x8000, 0x8000, b"x", 1)]);
        assert_eq!(
            load_test_guest(&ram, &high_entry, 1),
            Err(LoadError::BadEntry(0x10000))
        );
        let too_big = elf::tests::build(true, 0x8000, &[(0x8000, 0x8000, b"x", 0x9000)]);
        assert!(matches!(
            load_test_guest(&ram, &too_big, 1),
            Err(LoadError::OutsideRam { .. })
        ));
        assert_eq!(load_test_guest(&ram, b"MZ", 1), Err(LoadError::NotElf));
    }

    #[test]
    fn misaligned_input_is_copied() {
        let img = elf::tests::build(false, 0x7000, &[(0x7000, 0x7000, b"hi", 2)]);
        let mut shifted = vec![0u8; img.len() + 1];
        shifted[1..].copy_from_slice(&img);
        let mut mem = vec![0u8; 0x8000];
        let ram = GuestRam::from_slice(&mut mem);
        let start = load_test_guest(&ram, &shifted[1..], 1).unwrap();
        assert_eq!(start.mode, Mode::Real { cs: 0, ip: 0x7000 });
    }

    #[test]
    fn flat_binaries() {
        let mut mem = vec![0u8; 0x20000];
        let ram = GuestRam::from_slice(&mut mem);
        let s = load_flat(&ram, b"\xf4", 0x7c00).unwrap();
        assert_eq!(s.mode, Mode::Real { cs: 0, ip: 0x7c00 });
        let s = load_flat(&ram, b"\xf4", 0x10000).unwrap();
        assert_eq!(s.mode, Mode::Real { cs: 0x1000, ip: 0 });
        assert_eq!(
            load_flat(&ram, b"\xf4", 0x10008),
            Err(LoadError::BadEntry(0x10008))
        );
        assert!(matches!(
            load_flat(&ram, &[0; 32], 0x1fff0),
            Err(LoadError::OutsideRam { .. })
        ));
        let mut b = [0];
        ram.read(0x10000, &mut b).unwrap();
        assert_eq!(b, [0xf4]);
    }

    #[test]
    fn start_states() {
        let mut sregs = kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        };
        let regs = Start {
            mode: Mode::Real {
                cs: 0x1000,
                ip: 0x10,
            },
            rax: 0,
            rbx: 7,
            rcx: 9,
            rsi: 0,
        }
        .apply(&mut sregs);
        assert_eq!((regs.rip, regs.rbx, regs.rcx, regs.rflags), (0x10, 7, 9, 2));
        assert_eq!((sregs.cs.selector, sregs.cs.base), (0x1000, 0x10000));
        assert_eq!(sregs.cr0, 0x6000_0010);
        let regs = Start {
            mode: Mode::Protected32 { eip: 0x10_0000 },
            rax: 0x2bad_b002,
            rbx: 0x9000,
            rcx: 0,
            rsi: 0,
        }
        .apply(&mut sregs);
        assert_eq!(regs.rip, 0x10_0000);
        assert_eq!(regs.rax, 0x2bad_b002);
        assert_eq!(regs.rflags & (1 << 9), 0, "interrupts off");
        assert_eq!(sregs.cr0 & 1, 1);
        assert_eq!(
            (sregs.cs.db, sregs.cs.g, sregs.cs.limit),
            (1, 1, 0xffff_ffff)
        );
        assert_eq!(sregs.ss.type_, TYPE_DATA_RW_ACCESSED);
        let regs = Start {
            mode: Mode::BootProtocol32 {
                eip: 0x10_0000,
                gdt: 0x6f00,
            },
            rax: 0,
            rbx: 0,
            rcx: 0,
            rsi: 0x7000,
        }
        .apply(&mut sregs);
        assert_eq!((regs.rip, regs.rsi), (0x10_0000, 0x7000));
        assert_eq!(
            (sregs.cs.selector, sregs.ds.selector, sregs.ss.selector),
            (0x10, 0x18, 0x18)
        );
        assert_eq!((sregs.gdt.base, sregs.gdt.limit), (0x6f00, 31));
    }
}
