//! Multiboot v1 kernels ("Multiboot Specification version 0.6.96", §3),
//! loaded the way QEMU's `-kernel -append -initrd` loads them: the kernel
//! from its ELF program headers (or from the header's address fields when
//! flag 16 is set), then the modules page-aligned after it, then the info
//! block with the memory map, command line, module list and boot-loader
//! name. The vCPU starts in 32-bit protected mode at the entry point with
//! EAX = 0x2BADB002 and EBX = the info block's address (§3.2).

use super::{LoadError, Mode, Start, check_fits, elf, load_segments};
use crate::api::GuestRam;
use alloc::vec::Vec;

/// The header's magic (§3.1.1).
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// EAX at entry (§3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header lies 4-byte aligned within the first 8192 bytes.
const SEARCH_BYTES: usize = 8192;

/// Header flags (§3.1.2): modules page-aligned, memory information wanted,
/// video mode wanted, and the address fields are valid.
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
pub const FLAG_VIDEO_MODE: u32 = 1 << 2;
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// The low 16 bits are requirements; a loader must refuse a kernel that
/// sets one it does not know. Video mode (bit 2) is accepted and ignored,
/// as QEMU does: there is no display.
const KNOWN_REQUIRED: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE;

/// Info-block flags (§3.3): which fields are valid.
pub const INFO_MEMORY: u32 = 1 << 0;
pub const INFO_CMDLINE: u32 = 1 << 2;
pub const INFO_MODS: u32 = 1 << 3;
pub const INFO_MEM_MAP: u32 = 1 << 6;
pub const INFO_BOOT_LOADER_NAME: u32 = 1 << 9;

/// Offsets in the info block (§3.3).
pub const MBI_FLAGS: u64 = 0;
pub const MBI_MEM_LOWER: u64 = 4;
pub const MBI_MEM_UPPER: u64 = 8;
pub const MBI_CMDLINE: u64 = 16;
pub const MBI_MODS_COUNT: u64 = 20;
pub const MBI_MODS_ADDR: u64 = 24;
pub const MBI_MMAP_LENGTH: u64 = 44;
pub const MBI_MMAP_ADDR: u64 = 48;
pub const MBI_BOOT_LOADER_NAME: u64 = 64;
/// Size of the info block up to and including the VBE fields (§3.3); the
/// framebuffer fields after them are not offered.
pub const MBI_SIZE: u64 = 88;

/// A memory-map entry: `size` (of the rest, 20), base, length, type.
pub const MMAP_ENTRY_SIZE: u64 = 24;
/// Memory-map types (§3.3): usable RAM, reserved.
pub const MMAP_AVAILABLE: u32 = 1;
pub const MMAP_RESERVED: u32 = 2;
/// A module-list entry: start, end, string, reserved.
pub const MODULE_ENTRY_SIZE: u64 = 16;

/// The name put in the info block.
pub const BOOT_LOADER_NAME: &str = "mojito";

const PAGE: u64 = 4096;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// The PC's low-memory layout, as QEMU's e820 table gives it: RAM up to the
/// EBDA at 639 KiB, the BIOS area reserved, extended memory from 1 MiB.
const EBDA: u64 = 0x9_fc00;
const LOW_END: u64 = 0xa_0000;
const BIOS: u64 = 0xf_0000;

/// A module (an initrd, say) and its command line.
#[derive(Clone, Copy, Debug)]
pub struct Module<'a> {
    pub data: &'a [u8],
    pub cmdline: &'a str,
}

/// The multiboot header found in a kernel image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// File offset of the header.
    pub offset: usize,
    pub flags: u32,
    /// The address fields (valid with [`FLAG_AOUT_KLUDGE`]).
    pub header_addr: u32,
    pub load_addr: u32,
    pub load_end_addr: u32,
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

fn le32(image: &[u8], at: usize) -> Option<u32> {
    let b = image.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Finds and checks the multiboot header (§3.1.1: magic, flags, checksum
/// summing to 0, 4-byte aligned in the first 8192 bytes).
pub fn find_header(image: &[u8]) -> Result<Header, LoadError> {
    let search = image.len().min(SEARCH_BYTES);
    for offset in (0..search.saturating_sub(11)).step_by(4) {
        let (Some(magic), Some(flags), Some(sum)) = (
            le32(image, offset),
            le32(image, offset + 4),
            le32(image, offset + 8),
        ) else {
            break;
        };
        if magic != HEADER_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
            continue;
        }
        let unknown = flags & 0xffff & !KNOWN_REQUIRED;
        if unknown != 0 {
            return Err(LoadError::UnsupportedMultibootFlags(unknown));
        }
        let field = |i: usize| le32(image, offset + 12 + 4 * i).unwrap_or(0);
        if flags & FLAG_AOUT_KLUDGE != 0 && le32(image, offset + 28).is_none() {
            return Err(LoadError::BadImage("multiboot address fields truncated"));
        }
        return Ok(Header {
            offset,
            flags,
            header_addr: field(0),
            load_addr: field(1),
            load_end_addr: field(2),
            bss_end_addr: field(3),
            entry_addr: field(4),
        });
    }
    Err(LoadError::NoMultibootHeader)
}

/// Loads the kernel by the header's address fields (flag 16, §3.1.3):
/// file bytes from the one that maps to `load_addr` up to `load_end_addr`
/// (or the end of the file), then zeroes up to `bss_end_addr`. Returns
/// (entry, first byte after the image).
fn load_by_address_fields(
    ram: &GuestRam<'_>,
    image: &[u8],
    h: &Header,
) -> Result<(u64, u64), LoadError> {
    let bad = LoadError::BadImage;
    let lead = h
        .header_addr
        .checked_sub(h.load_addr)
        .ok_or(bad("header_addr below load_addr"))?;
    let file_start = h
        .offset
        .checked_sub(lead as usize)
        .ok_or(bad("load_addr before the start of the file"))?;
    let len = if h.load_end_addr == 0 {
        image.len() - file_start
    } else {
        h.load_end_addr
            .checked_sub(h.load_addr)
            .ok_or(bad("load_end_addr below load_addr"))? as usize
    };
    let data = image
        .get(file_start..file_start.checked_add(len).ok_or(bad("load size"))?)
        .ok_or(bad("load_end_addr beyond the end of the file"))?;
    let load = u64::from(h.load_addr);
    let end = load + len as u64;
    let bss_end = if h.bss_end_addr == 0 {
        end
    } else {
        u64::from(h.bss_end_addr).max(end)
    };
    check_fits(ram, load, bss_end - load)?;
    let oops = LoadError::OutsideRam {
        gpa: load,
        len: bss_end - load,
    };
    ram.write(load, data).map_err(|_| oops)?;
    ram.fill(end, (bss_end - end) as usize, 0)
        .map_err(|_| oops)?;
    Ok((u64::from(h.entry_addr), bss_end))
}

/// Loads the kernel from its ELF program headers; an entry point given as a
/// virtual address inside a segment is translated to its physical one.
fn load_elf(ram: &GuestRam<'_>, image: &[u8]) -> Result<(u64, u64), LoadError> {
    let aligned = super::Aligned::new(image);
    let elf = elf::parse(aligned.bytes())?;
    let end = load_segments(ram, &elf.segments)?;
    let entry = elf
        .segments
        .iter()
        .find(|s| (s.vaddr..s.vaddr.saturating_add(s.memsz)).contains(&elf.entry))
        .map_or(elf.entry, |s| elf.entry - s.vaddr + s.paddr);
    Ok((entry, end))
}

/// Bump allocation of boot data in guest RAM, below 4 GiB.
struct Placer<'r, 'a> {
    ram: &'r GuestRam<'a>,
    next: u64,
}

impl Placer<'_, '_> {
    fn reserve(&mut self, len: u64, align: u64) -> Result<u32, LoadError> {
        let at = self.next.next_multiple_of(align);
        let end = at
            .checked_add(len)
            .ok_or(LoadError::OutsideRam { gpa: at, len })?;
        check_fits(self.ram, at, len)?;
        let addr = u32::try_from(at).map_err(|_| LoadError::OutsideRam { gpa: at, len })?;
        if end > u64::from(u32::MAX) {
            return Err(LoadError::OutsideRam { gpa: at, len });
        }
        self.next = end;
        Ok(addr)
    }

    fn put(&mut self, bytes: &[u8], align: u64) -> Result<u32, LoadError> {
        let at = self.reserve(bytes.len() as u64, align)?;
        let len = bytes.len() as u64;
        self.ram
            .write(u64::from(at), bytes)
            .map_err(|_| LoadError::OutsideRam {
                gpa: at.into(),
                len,
            })?;
        Ok(at)
    }

    /// A NUL-terminated copy of `s`.
    fn put_str(&mut self, s: &str) -> Result<u32, LoadError> {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.put(&b, 1)
    }
}

/// The memory map for `ram_size` bytes of RAM from GPA 0, as (base,
/// length, type).
pub fn memory_map(ram_size: u64) -> Vec<(u64, u64, u32)> {
    let mut map = Vec::new();
    map.push((0, ram_size.min(EBDA), MMAP_AVAILABLE));
    if ram_size > EBDA {
        map.push((EBDA, LOW_END - EBDA, MMAP_RESERVED));
    }
    if ram_size > BIOS {
        map.push((BIOS, MIB - BIOS, MMAP_RESERVED));
    }
    if ram_size > MIB {
        map.push((MIB, ram_size - MIB, MMAP_AVAILABLE));
    }
    map
}

/// Loads a multiboot v1 kernel with its command line and modules into
/// `ram` (RAM from GPA 0) and returns the start state.
pub fn load(
    ram: &GuestRam<'_>,
    kernel: &[u8],
    cmdline: &str,
    modules: &[Module<'_>],
) -> Result<Start, LoadError> {
    let header = find_header(kernel)?;
    let (entry, kernel_end) = if header.flags & FLAG_AOUT_KLUDGE != 0 {
        load_by_address_fields(ram, kernel, &header)?
    } else {
        load_elf(ram, kernel)?
    };
    let eip = u32::try_from(entry).map_err(|_| LoadError::BadEntry(entry))?;
    let mut placer = Placer {
        ram,
        next: kernel_end,
    };
    // Modules first, page-aligned (QEMU does so whatever flag 0 says),
    // then the info block and everything it points to.
    let mut mods = Vec::with_capacity(modules.len());
    for m in modules {
        let start = placer.put(m.data, PAGE)?;
        mods.push((start, start + m.data.len() as u32, m.cmdline));
    }
    let mbi = placer.reserve(MBI_SIZE, PAGE)?;
    let mut mod_list = Vec::with_capacity(mods.len() * MODULE_ENTRY_SIZE as usize);
    for (start, end, text) in mods {
        let string = placer.put_str(text)?;
        for word in [start, end, string, 0] {
            mod_list.extend_from_slice(&word.to_le_bytes());
        }
    }
    let mods_addr = placer.put(&mod_list, 4)?;
    let ram_size = ram.len() as u64;
    let mut mmap = Vec::new();
    for (base, len, kind) in memory_map(ram_size) {
        mmap.extend_from_slice(&20u32.to_le_bytes());
        mmap.extend_from_slice(&base.to_le_bytes());
        mmap.extend_from_slice(&len.to_le_bytes());
        mmap.extend_from_slice(&kind.to_le_bytes());
    }
    let mmap_addr = placer.put(&mmap, 4)?;
    let cmdline_addr = placer.put_str(cmdline)?;
    let name_addr = placer.put_str(BOOT_LOADER_NAME)?;

    // §3.3: mem_lower from 0, mem_upper from 1 MiB, both in KiB and both
    // up to the first hole.
    let mem_lower = (ram_size.min(LOW_END) / KIB).min(640) as u32;
    let mem_upper = u32::try_from(ram_size.saturating_sub(MIB) / KIB).unwrap_or(u32::MAX);
    let mut block = [0u8; MBI_SIZE as usize];
    let mut set = |off: u64, v: u32| {
        let o = off as usize;
        block[o..o + 4].copy_from_slice(&v.to_le_bytes());
    };
    set(
        MBI_FLAGS,
        INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME,
    );
    set(MBI_MEM_LOWER, mem_lower);
    set(MBI_MEM_UPPER, mem_upper);
    set(MBI_CMDLINE, cmdline_addr);
    set(MBI_MODS_COUNT, modules.len() as u32);
    set(MBI_MODS_ADDR, mods_addr);
    set(MBI_MMAP_LENGTH, mmap.len() as u32);
    set(MBI_MMAP_ADDR, mmap_addr);
    set(MBI_BOOT_LOADER_NAME, name_addr);
    ram.write(u64::from(mbi), &block)
        .map_err(|_| LoadError::OutsideRam {
            gpa: mbi.into(),
            len: MBI_SIZE,
        })?;
    Ok(Start {
        mode: Mode::Protected32 { eip },
        rax: u64::from(BOOTLOADER_MAGIC),
        rbx: u64::from(mbi),
        rcx: 0,
        rsi: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    /// A multiboot header with the given flags (and address fields).
    fn header(flags: u32, fields: [u32; 5]) -> Vec<u8> {
        let mut h = Vec::new();
        for w in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags),
        ] {
            h.extend_from_slice(&w.to_le_bytes());
        }
        if flags & FLAG_AOUT_KLUDGE != 0 {
            for w in fields {
                h.extend_from_slice(&w.to_le_bytes());
            }
        }
        h
    }

    /// An ELF multiboot kernel: one segment at 1 MiB (virtual 3 GiB + 1
    /// MiB, as higher-half kernels link) holding the header and code.
    fn elf_kernel() -> Vec<u8> {
        let mut seg = header(FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO, [0; 5]);
        seg.extend_from_slice(&[0xf4; 4]); // hlt
        let image = elf::tests::build(
            false,
            0xc010_000c,
            &[(0x10_0000, 0xc010_0000, &seg, 0x2000)],
        );
        // The header must be in the first 8 KiB: it is, right after the
        // ELF and program headers.
        assert!(find_header(&image).is_ok());
        image
    }

    fn cstr(ram: &GuestRam<'_>, addr: u32) -> String {
        let mut s = Vec::new();
        let mut a = u64::from(addr);
        loop {
            let mut b = [0];
            ram.read(a, &mut b).unwrap();
            if b[0] == 0 {
                break;
            }
            s.push(b[0]);
            a += 1;
        }
        String::from_utf8(s).unwrap()
    }

    #[test]
    fn elf_kernel_with_modules_and_info_block() {
        let mut mem = vec![0u8; 16 << 20];
        let ram = GuestRam::from_slice(&mut mem);
        let initrd = [7u8; 5000];
        let modules = [
            Module {
                data: &initrd,
                cmdline: "initrd",
            },
            Module {
                data: b"abc",
                cmdline: "second arg",
            },
        ];
        let start = load(&ram, &elf_kernel(), "console=ttyS0", &modules).unwrap();
        // Entry translated from the virtual 0xc010000c to physical.
        assert_eq!(start.mode, Mode::Protected32 { eip: 0x10_000c });
        assert_eq!(start.rax, 0x2bad_b002);
        let mbi = u64::from(start.rbx as u32);
        assert_eq!(mbi % PAGE, 0);
        assert!(mbi >= 0x10_2000, "after the kernel and its bss");
        let rd = |off| ram.read_u32(mbi + off).unwrap();
        assert_eq!(
            rd(MBI_FLAGS),
            INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME
        );
        assert_eq!(rd(MBI_MEM_LOWER), 640);
        assert_eq!(rd(MBI_MEM_UPPER), 15 * 1024);
        assert_eq!(cstr(&ram, rd(MBI_CMDLINE)), "console=ttyS0");
        assert_eq!(cstr(&ram, rd(MBI_BOOT_LOADER_NAME)), "mojito");
        // Modules: page-aligned, after the kernel, contents and strings.
        assert_eq!(rd(MBI_MODS_COUNT), 2);
        let list = u64::from(rd(MBI_MODS_ADDR));
        let m = |i: u64, f: u64| ram.read_u32(list + i * MODULE_ENTRY_SIZE + 4 * f).unwrap();
        assert_eq!(m(0, 0) % PAGE as u32, 0);
        assert!(m(0, 0) >= 0x10_2000);
        assert_eq!(m(0, 1) - m(0, 0), 5000);
        assert_eq!(m(1, 1) - m(1, 0), 3);
        assert_eq!(m(1, 0) % PAGE as u32, 0);
        assert!(m(1, 0) >= m(0, 1));
        let mut b = [0u8; 3];
        ram.read(m(1, 0).into(), &mut b).unwrap();
        assert_eq!(&b, b"abc");
        ram.read(m(0, 0).into(), &mut b).unwrap();
        assert_eq!(b, [7; 3]);
        assert_eq!(cstr(&ram, m(0, 2)), "initrd");
        assert_eq!(cstr(&ram, m(1, 2)), "second arg");
        // The memory map.
        let len = rd(MBI_MMAP_LENGTH);
        let addr = u64::from(rd(MBI_MMAP_ADDR));
        let mut entries = Vec::new();
        let mut off = 0;
        while off < u64::from(len) {
            let size = ram.read_u32(addr + off).unwrap();
            let base = ram.read_u64(addr + off + 4).unwrap();
            let length = ram.read_u64(addr + off + 12).unwrap();
            let kind = ram.read_u32(addr + off + 20).unwrap();
            entries.push((base, length, kind));
            off += u64::from(size) + 4;
        }
        assert_eq!(
            entries,
            [
                (0, 0x9_fc00, 1),
                (0x9_fc00, 0x400, 2),
                (0xf_0000, 0x1_0000, 2),
                (0x10_0000, 15 << 20, 1),
            ]
        );
        // The kernel itself, and its bss zeroed.
        let mut code = [0u8; 4];
        ram.read(0x10_000c, &mut code).unwrap();
        assert_eq!(code, [0xf4; 4]);
    }

    #[test]
    fn address_fields_kernel() {
        // A flat image at file offset 0 = 1 MiB, header at offset 16.
        let mut image = vec![0x90u8; 16];
        image.extend_from_slice(&header(
            FLAG_AOUT_KLUDGE,
            [0x10_0010, 0x10_0000, 0x10_0040, 0x10_0800, 0x10_0030],
        ));
        image.resize(0x80, 0xcc);
        let mut mem = vec![0xeeu8; 4 << 20];
        let ram = GuestRam::from_slice(&mut mem);
        let start = load(&ram, &image, "", &[]).unwrap();
        assert_eq!(start.mode, Mode::Protected32 { eip: 0x10_0030 });
        let mut b = [0u8; 4];
        ram.read(0x10_003c, &mut b).unwrap();
        assert_eq!(b, [0xcc; 4], "loaded up to load_end_addr");
        ram.read(0x10_0040, &mut b).unwrap();
        assert_eq!(b, [0; 4], "bss zeroed");
        ram.read(0x10_0800, &mut b).unwrap();
        assert_eq!(b, [0xee; 4], "nothing past bss_end_addr");
        let mbi = u64::from(start.rbx as u32);
        assert!(mbi >= 0x10_1000);
        assert_eq!(ram.read_u32(mbi + MBI_MODS_COUNT), Ok(0));
        assert_eq!(ram.read_u32(mbi + MBI_MEM_UPPER), Ok(3 * 1024));
    }

    #[test]
    fn header_checks() {
        assert_eq!(find_header(&[0; 100]), Err(LoadError::NoMultibootHeader));
        // Bad checksum.
        let mut h = header(0, [0; 5]);
        h[8] ^= 1;
        assert_eq!(find_header(&h), Err(LoadError::NoMultibootHeader));
        // Past the first 8 KiB.
        let mut far = vec![0u8; 8192];
        far.extend_from_slice(&header(0, [0; 5]));
        assert_eq!(find_header(&far), Err(LoadError::NoMultibootHeader));
        // Misaligned.
        let mut odd = vec![0u8; 2];
        odd.extend_from_slice(&header(0, [0; 5]));
        assert_eq!(find_header(&odd), Err(LoadError::NoMultibootHeader));
        // A requirement this loader does not know.
        assert_eq!(
            find_header(&header(1 << 5, [0; 5])),
            Err(LoadError::UnsupportedMultibootFlags(1 << 5))
        );
        // Address fields cut off.
        assert!(matches!(
            find_header(&header(FLAG_AOUT_KLUDGE, [0; 5])[..20]),
            Err(LoadError::BadImage(_))
        ));
        let mut mem = vec![0u8; 1 << 20];
        let ram = GuestRam::from_slice(&mut mem);
        // Address fields that point before the file.
        let bad = header(FLAG_AOUT_KLUDGE, [0x1000, 0x0, 0, 0, 0x1000]);
        assert!(matches!(
            load(&ram, &bad, "", &[]),
            Err(LoadError::BadImage(_))
        ));
        // A kernel that does not fit.
        assert!(matches!(
            load(&ram, &elf_kernel(), "", &[]),
            Err(LoadError::OutsideRam { .. })
        ));
    }

    #[test]
    fn small_ram_memory_map() {
        assert_eq!(memory_map(0x8_0000), [(0, 0x8_0000, 1)]);
        assert_eq!(memory_map(MIB).len(), 3);
    }
}
