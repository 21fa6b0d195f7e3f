//! A Linux bzImage by the x86 boot protocol (Linux's
//! Documentation/x86/boot.rst), through its 32-bit entry: the protected-mode
//! kernel (the file after the setup sectors) at 1 MiB, a `boot_params`
//! ("zero page") with the image's setup header, the e820 map, the command
//! line and the initrd, and the vCPU in 32-bit protected mode with paging
//! off at `code32_start`, a GDT with the protocol's `__BOOT_CS` (0x10) and
//! `__BOOT_DS` (0x18) loaded and in the segment registers, ESI pointing at
//! `boot_params` and EBX, EDI, EBP zero.
//!
//! Protocol 2.12 or later is required (Linux 3.8 on): for a header whose
//! fields this loader can trust. Tested with Debian 12's 6.1 kernel.

use super::{BOOT_GDT, LoadError, Mode, Start, check_fits, pvh};
use crate::api::GuestRam;

/// Where the boot GDT goes (`super::BOOT_GDT`), `boot_params` (one page)
/// and the command line.
pub const GDT: u64 = 0x6f00;
pub const BOOT_PARAMS: u64 = 0x7000;
pub const CMDLINE: u64 = 0x2_0000;
/// Where the protected-mode kernel goes (the protocol's "high" load
/// address; `code32_start`'s default).
pub const KERNEL_ADDR: u64 = 0x10_0000;

/// Offsets in the file and in `boot_params` (boot.rst, "THE REAL-MODE
/// KERNEL HEADER" and zero-page.rst).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_START: usize = 0x1f1;
const JUMP: usize = 0x200;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const CODE32_START: usize = 0x214;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22c;
const CMDLINE_SIZE: usize = 0x238;
const E820_ENTRIES: usize = 0x1e8;
const E820_TABLE: usize = 0x2d0;
const E820_MAX: usize = 128;
const ACPI_RSDP_ADDR: usize = 0x070;
/// "HdrS".
const MAGIC: &[u8; 4] = b"HdrS";
const MIN_VERSION: u16 = 0x020c;
/// The version from which `acpi_rsdp_addr` exists.
const RSDP_VERSION: u16 = 0x020e;
/// `type_of_loader`: 0xff, "undefined" (no assigned loader id).
const LOADER_UNDEFINED: u8 = 0xff;
/// loadflags: the protected-mode code is loaded at 1 MiB.
const LOADED_HIGH: u8 = 1 << 0;
const SECTOR: usize = 512;
const PAGE: u64 = 4096;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Whether `image` is a bzImage (the boot protocol's magic).
pub fn is_bzimage(image: &[u8]) -> bool {
    image.get(HEADER_MAGIC..HEADER_MAGIC + 4) == Some(&MAGIC[..])
}

/// Loads the bzImage `image` with `cmdline`, `initrd` (at the top of RAM
/// below the kernel's `initrd_addr_max`) and the ACPI RSDP at `rsdp` (0:
/// none) into `ram`, and returns the start state.
pub fn load(
    ram: &GuestRam<'_>,
    image: &[u8],
    cmdline: &str,
    initrd: Option<&[u8]>,
    rsdp: u64,
) -> Result<Start, LoadError> {
    if !is_bzimage(image) {
        return Err(LoadError::BadImage("no boot-protocol header (HdrS)"));
    }
    let version = u16_at(image, VERSION).unwrap_or(0);
    if version < MIN_VERSION {
        return Err(LoadError::BadImage("boot protocol older than 2.12"));
    }
    if LOADED_HIGH & image.get(LOADFLAGS).copied().unwrap_or(0) == 0 {
        return Err(LoadError::BadImage("not a bzImage (zImage loads low)"));
    }
    let setup_sects = match image[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let kernel_at = (setup_sects + 1) * SECTOR;
    let kernel = image
        .get(kernel_at..)
        .filter(|k| !k.is_empty())
        .ok_or(LoadError::BadImage("the image ends inside its setup code"))?;
    let cmdline_max = u32_at(image, CMDLINE_SIZE).unwrap_or(255) as usize;
    if cmdline.len() > cmdline_max {
        return Err(LoadError::BadImage(
            "command line longer than the kernel takes",
        ));
    }
    // The setup header runs from 0x1f1 to 0x202 + the jump's offset.
    let header_end = (JUMP + 2 + usize::from(image[JUMP + 1]))
        .min(image.len())
        .min(0x290);
    let ram_size = ram.len() as u64;

    check_fits(ram, KERNEL_ADDR, kernel.len() as u64)?;
    ram.write(KERNEL_ADDR, kernel)
        .map_err(|_| LoadError::OutsideRam {
            gpa: KERNEL_ADDR,
            len: kernel.len() as u64,
        })?;
    let kernel_end = KERNEL_ADDR + kernel.len() as u64;

    let mut bp = alloc::vec![0u8; PAGE as usize];
    bp[HEADER_START..header_end].copy_from_slice(&image[HEADER_START..header_end]);
    bp[TYPE_OF_LOADER] = LOADER_UNDEFINED;
    bp[LOADFLAGS] |= LOADED_HIGH;
    bp[CODE32_START..CODE32_START + 4].copy_from_slice(&(KERNEL_ADDR as u32).to_le_bytes());
    bp[CMD_LINE_PTR..CMD_LINE_PTR + 4].copy_from_slice(&(CMDLINE as u32).to_le_bytes());
    if let Some(initrd) = initrd {
        let len = initrd.len() as u64;
        let max = u64::from(u32_at(image, INITRD_ADDR_MAX).unwrap_or(0x37ff_ffff));
        let top = ram_size.min(max + 1);
        let at = top
            .checked_sub(len)
            .map(|a| a & !(PAGE - 1))
            .filter(|&a| a >= kernel_end.next_multiple_of(PAGE))
            .ok_or(LoadError::OutsideRam {
                gpa: kernel_end,
                len,
            })?;
        ram.write(at, initrd)
            .map_err(|_| LoadError::OutsideRam { gpa: at, len })?;
        bp[RAMDISK_IMAGE..RAMDISK_IMAGE + 4].copy_from_slice(&(at as u32).to_le_bytes());
        bp[RAMDISK_SIZE..RAMDISK_SIZE + 4].copy_from_slice(&(len as u32).to_le_bytes());
    }
    let map = pvh::memory_map(ram_size);
    if map.len() > E820_MAX {
        return Err(LoadError::BadImage("memory map too long"));
    }
    bp[E820_ENTRIES] = map.len() as u8;
    for (i, (base, len, kind)) in map.iter().enumerate() {
        let at = E820_TABLE + 20 * i;
        bp[at..at + 8].copy_from_slice(&base.to_le_bytes());
        bp[at + 8..at + 16].copy_from_slice(&len.to_le_bytes());
        bp[at + 16..at + 20].copy_from_slice(&kind.to_le_bytes());
    }
    if version >= RSDP_VERSION {
        bp[ACPI_RSDP_ADDR..ACPI_RSDP_ADDR + 8].copy_from_slice(&rsdp.to_le_bytes());
    }
    let fail = |gpa: u64, len: usize| LoadError::OutsideRam {
        gpa,
        len: len as u64,
    };
    ram.write(BOOT_PARAMS, &bp)
        .map_err(|_| fail(BOOT_PARAMS, bp.len()))?;
    let mut line = alloc::vec::Vec::with_capacity(cmdline.len() + 1);
    line.extend_from_slice(cmdline.as_bytes());
    line.push(0);
    if CMDLINE + line.len() as u64 > KERNEL_ADDR {
        return Err(LoadError::BadImage("command line too long"));
    }
    ram.write(CMDLINE, &line)
        .map_err(|_| fail(CMDLINE, line.len()))?;
    let gdt: alloc::vec::Vec<u8> = BOOT_GDT.iter().flat_map(|e| e.to_le_bytes()).collect();
    ram.write(GDT, &gdt).map_err(|_| fail(GDT, gdt.len()))?;
    Ok(Start {
        mode: Mode::BootProtocol32 {
            eip: KERNEL_ADDR as u32,
            gdt: GDT as u32,
        },
        rax: 0,
        rbx: 0,
        rcx: 0,
        rsi: BOOT_PARAMS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A bzImage of protocol `version`: 1 setup sector after the boot
    /// sector, the header's jump covering up to 0x268, and a 2-byte
    /// "kernel".
    fn image(version: u16) -> Vec<u8> {
        let mut img = vec![0u8; 2 * SECTOR + 2];
        img[SETUP_SECTS] = 1;
        img[JUMP] = 0xeb;
        img[JUMP + 1] = 0x66; // header to 0x268
        img[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(MAGIC);
        img[VERSION..VERSION + 2].copy_from_slice(&version.to_le_bytes());
        img[LOADFLAGS] = LOADED_HIGH;
        img[INITRD_ADDR_MAX..INITRD_ADDR_MAX + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        img[CMDLINE_SIZE..CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        img[2 * SECTOR..].copy_from_slice(b"\x90\xf4");
        img
    }

    #[test]
    fn boot_params_e820_initrd_and_entry() {
        let mut mem = vec![0u8; 32 << 20];
        let ram = GuestRam::from_slice(&mut mem);
        let initrd = vec![0x77u8; 3000];
        let start = load(
            &ram,
            &image(0x020f),
            "console=ttyS0",
            Some(&initrd),
            0xe_0000,
        )
        .unwrap();
        assert_eq!(
            start.mode,
            Mode::BootProtocol32 {
                eip: 0x10_0000,
                gdt: GDT as u32
            }
        );
        let mut g = [0u8; 8];
        ram.read(GDT + 0x10, &mut g).unwrap();
        assert_eq!(u64::from_le_bytes(g), BOOT_GDT[2], "__BOOT_CS's descriptor");
        assert_eq!((start.rsi, start.rbx), (BOOT_PARAMS, 0));
        let mut bp = vec![0u8; 4096];
        ram.read(BOOT_PARAMS, &mut bp).unwrap();
        assert_eq!(
            &bp[HEADER_MAGIC..HEADER_MAGIC + 4],
            b"HdrS",
            "header copied"
        );
        assert_eq!(bp[TYPE_OF_LOADER], 0xff);
        assert_eq!(u32_at(&bp, CMD_LINE_PTR), Some(CMDLINE as u32));
        let at = u32_at(&bp, RAMDISK_IMAGE).unwrap();
        assert_eq!(u64::from(at), (32 << 20) - PAGE, "top of RAM, page-aligned");
        assert_eq!(u32_at(&bp, RAMDISK_SIZE), Some(3000));
        assert_eq!(bp[E820_ENTRIES], 4);
        assert_eq!(
            &bp[E820_TABLE + 20 * 3..E820_TABLE + 20 * 3 + 8],
            &(1u64 << 20).to_le_bytes()
        );
        assert_eq!(u32_at(&bp, E820_TABLE + 20 * 3 + 16), Some(1), "RAM");
        assert_eq!(
            &bp[ACPI_RSDP_ADDR..ACPI_RSDP_ADDR + 8],
            &0xe_0000u64.to_le_bytes()
        );
        let mut k = [0; 2];
        ram.read(KERNEL_ADDR, &mut k).unwrap();
        assert_eq!(k, [0x90, 0xf4]);
        let mut c = [0; 14];
        ram.read(CMDLINE, &mut c).unwrap();
        assert_eq!(&c, b"console=ttyS0\0");
    }

    #[test]
    fn refusals() {
        let mut mem = vec![0u8; 4 << 20];
        let ram = GuestRam::from_slice(&mut mem);
        assert!(load(&ram, b"not a kernel", "", None, 0).is_err());
        assert!(
            load(&ram, &image(0x0200), "", None, 0).is_err(),
            "old protocol"
        );
        let mut zimage = image(0x020f);
        zimage[LOADFLAGS] = 0;
        assert!(load(&ram, &zimage, "", None, 0).is_err());
        assert!(load(&ram, &image(0x020f), &"x".repeat(2048), None, 0).is_err());
        let mut truncated = image(0x020f);
        truncated.truncate(2 * SECTOR);
        assert!(load(&ram, &truncated, "", None, 0).is_err());
        // An initrd that cannot fit above the kernel.
        assert!(load(&ram, &image(0x020f), "", Some(&vec![0; 4 << 20]), 0).is_err());
        // Protocol 2.12: no acpi_rsdp_addr written.
        let s = load(&ram, &image(0x020c), "", None, 0xe_0000).unwrap();
        let mut b = [0u8; 8];
        ram.read(s.rsi + ACPI_RSDP_ADDR as u64, &mut b).unwrap();
        assert_eq!(b, [0; 8]);
    }
}
