//! The PVH boot of an uncompressed ELF kernel (Linux's `vmlinux` with
//! `CONFIG_PVH`), as Xen's "x86/HVM direct boot ABI" defines it
//! (xen/include/public/arch-x86/hvm/start_info.h):
//!
//! - the kernel's PT_LOAD segments go to their physical addresses;
//! - the entry point is the `XEN_ELFNOTE_PHYS32_ENTRY` note's value, entered
//!   in 32-bit protected mode with flat segments, paging off and EBX = the
//!   guest-physical address of an `hvm_start_info`;
//! - `hvm_start_info` version 1 points at the command line, the modules
//!   (the initrd is module 0, as Linux expects), the ACPI RSDP and a
//!   memory map of its own. Linux ≥ 5.x stops with `BUG()` on a non-Xen
//!   PVH boot without that memory map.

use alloc::vec::Vec;

use super::{Aligned, LoadError, Mode, Start, check_fits, elf, load_segments};
use crate::api::GuestRam;

/// `XEN_ELFNOTE_PHYS32_ENTRY` (xen/include/public/elfnote.h): the 32-bit
/// physical entry point of a PVH kernel, in a note named "Xen".
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// `XEN_HVM_START_MAGIC_VALUE`.
pub const START_MAGIC: u32 = 0x336e_c578;
/// The structure version with the memory map.
pub const START_VERSION: u32 = 1;

/// Where the start-info block goes: `hvm_start_info` (56 bytes), then the
/// module list, the memory map and the command line, all below the EBDA.
pub const START_INFO: u64 = 0x6000;
const MODLIST: u64 = START_INFO + 0x40;
const MEMMAP: u64 = START_INFO + 0x80;
const CMDLINE: u64 = START_INFO + 0x400;
/// The longest command line taken, without its NUL (Linux's x86
/// `COMMAND_LINE_SIZE`).
pub const CMDLINE_MAX: usize = 2047;
const MEMMAP_ENTRY: usize = 24;

/// E820 types (ACPI 6.4 §15.1 "Address Range Types").
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
/// The EBDA and the legacy video/ROM hole.
const EBDA: u64 = 0x9_fc00;
const LOW_END: u64 = 0xa_0000;
/// From here to 1 MiB: the BIOS area, where the ACPI tables live
/// (`crate::acpi::BASE`), reserved in the map.
pub const BIOS_AREA: u64 = 0xe_0000;

/// The memory map a PVH guest with `ram_size` bytes from GPA 0 gets, as
/// (base, length, E820 type).
pub fn memory_map(ram_size: u64) -> Vec<(u64, u64, u32)> {
    let mut map = Vec::new();
    map.push((0, ram_size.min(EBDA), E820_RAM));
    if ram_size > EBDA {
        map.push((EBDA, LOW_END - EBDA, E820_RESERVED));
    }
    if ram_size > BIOS_AREA {
        map.push((BIOS_AREA, MIB - BIOS_AREA, E820_RESERVED));
    }
    if ram_size > MIB {
        map.push((MIB, ram_size - MIB, E820_RAM));
    }
    map
}

/// The kernel's PVH entry point, from its "Xen" notes.
pub fn entry_point(elf: &elf::Elf<'_>) -> Option<u32> {
    elf.notes
        .iter()
        .flat_map(|n| elf::notes(n))
        .find(|n| n.name == b"Xen" && n.kind == XEN_ELFNOTE_PHYS32_ENTRY)
        .and_then(|n| match n.desc.len() {
            4 => Some(u32::from_le_bytes(n.desc.try_into().ok()?)),
            8 => u32::try_from(u64::from_le_bytes(n.desc.try_into().ok()?)).ok(),
            _ => None,
        })
}

/// Loads `kernel` (an ELF with a PVH entry note), `initrd` (at the top of
/// RAM, page-aligned) and `cmdline` into `ram`, writes the start-info
/// block with `rsdp` (0: none) and returns the start state.
pub fn load(
    ram: &GuestRam<'_>,
    kernel: &[u8],
    cmdline: &str,
    initrd: Option<&[u8]>,
    rsdp: u64,
) -> Result<Start, LoadError> {
    let aligned = Aligned::new(kernel);
    let elf = elf::parse(aligned.bytes())?;
    let eip = entry_point(&elf).ok_or(LoadError::BadImage(
        "no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): not a vmlinux built with CONFIG_PVH",
    ))?;
    if cmdline.len() > CMDLINE_MAX {
        return Err(LoadError::BadImage("command line longer than 2047 bytes"));
    }
    let ram_size = ram.len() as u64;
    if elf.segments.iter().any(|s| s.paddr < MIB) {
        return Err(LoadError::BadImage("kernel segment below 1 MiB"));
    }
    let kernel_end = load_segments(ram, &elf.segments)?;

    let mut module = None;
    if let Some(initrd) = initrd {
        let len = initrd.len() as u64;
        let top = ram_size.min(u64::from(u32::MAX) + 1);
        let at = top.checked_sub(len).map(|a| a & !(PAGE - 1));
        let at = match at {
            Some(a) if a >= kernel_end.next_multiple_of(PAGE) => a,
            _ => {
                return Err(LoadError::OutsideRam {
                    gpa: kernel_end,
                    len,
                });
            }
        };
        ram.write(at, initrd)
            .map_err(|_| LoadError::OutsideRam { gpa: at, len })?;
        module = Some((at, len));
    }

    let mut block = alloc::vec![0u8; (CMDLINE - START_INFO) as usize + cmdline.len() + 1];
    let put = |b: &mut [u8], at: u64, bytes: &[u8]| {
        let at = (at - START_INFO) as usize;
        b[at..at + bytes.len()].copy_from_slice(bytes);
    };
    let map = memory_map(ram_size);
    if map.len() * MEMMAP_ENTRY > (CMDLINE - MEMMAP) as usize {
        return Err(LoadError::BadImage("memory map too long"));
    }
    put(&mut block, START_INFO, &START_MAGIC.to_le_bytes());
    put(&mut block, START_INFO + 4, &START_VERSION.to_le_bytes());
    put(
        &mut block,
        START_INFO + 12,
        &u32::from(module.is_some()).to_le_bytes(),
    );
    if module.is_some() {
        put(&mut block, START_INFO + 16, &MODLIST.to_le_bytes());
    }
    put(&mut block, START_INFO + 24, &CMDLINE.to_le_bytes());
    put(&mut block, START_INFO + 32, &rsdp.to_le_bytes());
    put(&mut block, START_INFO + 40, &MEMMAP.to_le_bytes());
    put(
        &mut block,
        START_INFO + 48,
        &(map.len() as u32).to_le_bytes(),
    );
    if let Some((at, len)) = module {
        put(&mut block, MODLIST, &at.to_le_bytes());
        put(&mut block, MODLIST + 8, &len.to_le_bytes());
    }
    for (i, (base, len, kind)) in map.iter().enumerate() {
        let at = MEMMAP + (i * MEMMAP_ENTRY) as u64;
        put(&mut block, at, &base.to_le_bytes());
        put(&mut block, at + 8, &len.to_le_bytes());
        put(&mut block, at + 16, &kind.to_le_bytes());
    }
    put(&mut block, CMDLINE, cmdline.as_bytes());
    check_fits(ram, START_INFO, block.len() as u64)?;
    ram.write(START_INFO, &block)
        .map_err(|_| LoadError::OutsideRam {
            gpa: START_INFO,
            len: block.len() as u64,
        })?;
    Ok(Start {
        mode: Mode::Protected32 { eip },
        rax: 0,
        rbx: START_INFO,
        rcx: 0,
        rsi: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A 64-bit ELF with one PT_LOAD segment at 16 MiB and a PT_NOTE
    /// segment holding the PVH note (8-byte descriptor, as Linux writes
    /// it) when `entry` is given.
    fn kernel(entry: Option<u64>) -> Vec<u8> {
        let mut note = Vec::new();
        if let Some(entry) = entry {
            for w in [4u32, 8, XEN_ELFNOTE_PHYS32_ENTRY] {
                note.extend_from_slice(&w.to_le_bytes());
            }
            note.extend_from_slice(b"Xen\0");
            note.extend_from_slice(&entry.to_le_bytes());
        }
        let code: &[u8] = b"\x90\xf4";
        let (eh, ph) = (64usize, 56usize);
        let code_at = eh + 2 * ph;
        let note_at = code_at + 8;
        let mut img = vec![0u8; note_at];
        img[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        let mut put = |at: usize, bytes: &[u8]| img[at..at + bytes.len()].copy_from_slice(bytes);
        put(16, &2u16.to_le_bytes());
        put(18, &62u16.to_le_bytes());
        put(20, &1u32.to_le_bytes());
        put(32, &(eh as u64).to_le_bytes());
        put(52, &(eh as u16).to_le_bytes());
        put(54, &(ph as u16).to_le_bytes());
        put(56, &2u16.to_le_bytes());
        // PT_LOAD: offset, vaddr, paddr, filesz, memsz.
        put(eh, &1u32.to_le_bytes());
        for (i, v) in [code_at as u64, 0xffff_ffff_8100_0000, 16 * MIB, 2, 0x2000]
            .iter()
            .enumerate()
        {
            put(eh + 8 + 8 * i, &v.to_le_bytes());
        }
        // PT_NOTE (or PT_NULL without a note).
        put(
            eh + ph,
            &u32::from(entry.is_some()).wrapping_mul(4).to_le_bytes(),
        );
        for (i, v) in [note_at as u64, 0, 0, note.len() as u64, note.len() as u64]
            .iter()
            .enumerate()
        {
            put(eh + ph + 8 + 8 * i, &v.to_le_bytes());
        }
        put(code_at, code);
        img.extend_from_slice(&note);
        img
    }

    fn read_u64(ram: &GuestRam<'_>, at: u64) -> u64 {
        let mut b = [0; 8];
        ram.read(at, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    fn read_u32(ram: &GuestRam<'_>, at: u64) -> u32 {
        let mut b = [0; 4];
        ram.read(at, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    #[test]
    fn start_info_memory_map_initrd_and_entry() {
        let mut mem = vec![0u8; (32 * MIB) as usize];
        let ram = GuestRam::from_slice(&mut mem);
        let initrd = vec![0x5a; 5000];
        let start = load(
            &ram,
            &kernel(Some(0x100_0000)),
            "console=ttyS0",
            Some(&initrd),
            0xe_0000,
        )
        .unwrap();
        assert_eq!(start.mode, Mode::Protected32 { eip: 0x100_0000 });
        assert_eq!(start.rbx, START_INFO);
        assert_eq!(read_u32(&ram, START_INFO), START_MAGIC);
        assert_eq!(read_u32(&ram, START_INFO + 4), 1);
        assert_eq!(read_u32(&ram, START_INFO + 12), 1, "one module");
        assert_eq!(read_u64(&ram, START_INFO + 32), 0xe_0000, "RSDP");
        let modlist = read_u64(&ram, START_INFO + 16);
        let initrd_at = read_u64(&ram, modlist);
        assert_eq!(initrd_at, 32 * MIB - 2 * PAGE, "top of RAM, page-aligned");
        assert_eq!(read_u64(&ram, modlist + 8), 5000);
        let mut b = [0; 2];
        ram.read(initrd_at + 4998, &mut b).unwrap();
        assert_eq!(b, [0x5a; 2]);
        let cmdline = read_u64(&ram, START_INFO + 24);
        let mut c = [0; 14];
        ram.read(cmdline, &mut c).unwrap();
        assert_eq!(&c, b"console=ttyS0\0");
        let map = read_u64(&ram, START_INFO + 40);
        let n = read_u32(&ram, START_INFO + 48);
        let entries: Vec<_> = (0..u64::from(n))
            .map(|i| {
                let at = map + i * 24;
                (
                    read_u64(&ram, at),
                    read_u64(&ram, at + 8),
                    read_u32(&ram, at + 16),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                (0, EBDA, E820_RAM),
                (EBDA, LOW_END - EBDA, E820_RESERVED),
                (BIOS_AREA, MIB - BIOS_AREA, E820_RESERVED),
                (MIB, 31 * MIB, E820_RAM)
            ]
        );
        ram.read(16 * MIB, &mut b).unwrap();
        assert_eq!(b, [0x90, 0xf4], "kernel at its physical address");
    }

    #[test]
    fn refusals() {
        let mut mem = vec![0u8; (32 * MIB) as usize];
        let ram = GuestRam::from_slice(&mut mem);
        assert!(matches!(
            load(&ram, &kernel(None), "", None, 0),
            Err(LoadError::BadImage(_))
        ));
        let long = "x".repeat(CMDLINE_MAX + 1);
        assert!(load(&ram, &kernel(Some(0x100_0000)), &long, None, 0).is_err());
        // An initrd that would overlap the kernel.
        let huge = vec![0; (16 * MIB) as usize];
        assert!(matches!(
            load(&ram, &kernel(Some(0x100_0000)), "", Some(&huge), 0),
            Err(LoadError::OutsideRam { .. })
        ));
        // A kernel entry above 4 GiB cannot be reached in 32-bit mode.
        assert!(load(&ram, &kernel(Some(1 << 32)), "", None, 0).is_err());
        assert!(load(&ram, b"MZ", "", None, 0).is_err());
    }
}
