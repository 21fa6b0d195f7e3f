//! The ACPI tables a Linux guest reads (ACPI 6.4): RSDP → XSDT → FADT
//! (with its FACS and DSDT) and MADT. They describe what the VMM models:
//! one local APIC per vCPU, the IOAPIC ([`IOAPIC_ADDR`], GSIs 0–23, ISA
//! IRQ 0 on GSI 2 and the SCI on GSI 9, level-triggered), the PM1a event
//! and control blocks and the PM timer ([`PM_BASE`], `devices::pm`), and
//! the sleep state `\_S5` (type [`SLP_TYP_S5`]) through which Linux powers
//! off. No 8042, no VGA, no GPE block, no FADT reset register.
//!
//! The tables are laid out from [`BASE`] (in the BIOS area, reserved in
//! the guest's memory map) and the RSDP is at [`BASE`] itself, found
//! through the boot protocol (`hvm_start_info.rsdp_paddr`).

use alloc::vec::Vec;

/// Where the tables go (guest-physical), 16-byte aligned for the RSDP.
pub const BASE: u64 = 0xe_0000;
/// The space they take.
pub const SIZE: usize = 0x1000;
/// The PM1a event block (4 bytes), control block (2 bytes) and PM timer
/// (4 bytes), at the I/O ports QEMU's PIIX4 uses.
pub const PM_BASE: u16 = 0x600;
pub const PM1A_EVT: u16 = PM_BASE;
pub const PM1A_CNT: u16 = PM_BASE + 4;
pub const PM_TMR: u16 = PM_BASE + 8;
pub const PM_LEN: u16 = 12;
/// The SCI's ISA IRQ (and GSI).
pub const SCI_IRQ: u8 = 9;
/// The IOAPIC's MMIO base and the local APICs' (the architectural default).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// The IOAPIC's ID (after the vCPUs' APIC IDs would not matter; 0 as QEMU).
pub const IOAPIC_ID: u8 = 0;
/// The SLP_TYP value `\_S5` gives (written to PM1a_CNT to power off).
pub const SLP_TYP_S5: u8 = 5;

const RSDP_AT: usize = 0;
const XSDT_AT: usize = 0x40;
const FADT_AT: usize = 0x80;
const FACS_AT: usize = 0x1c0; // 64-byte aligned (ACPI 6.4 §5.2.10)
const MADT_AT: usize = 0x200;
const DSDT_AT: usize = 0xc00;

const FADT_LEN: usize = 276; // revision 6
const FACS_LEN: usize = 64;
const HEADER_LEN: usize = 36;
const OEM_ID: &[u8; 6] = b"MOJITO";
const OEM_TABLE_ID: &[u8; 8] = b"MOJITOVM";
const CREATOR_ID: &[u8; 4] = b"MOJI";

/// FADT flags (ACPI 6.4 Table 5.10).
const FADT_WBINVD: u32 = 1 << 0;
const FADT_PROC_C1: u32 = 1 << 2;
const FADT_PWR_BUTTON: u32 = 1 << 4;
const FADT_SLP_BUTTON: u32 = 1 << 5;
/// IA-PC boot architecture flags (Table 5.11): ISA devices (RTC, UART),
/// no 8042, no VGA.
const BOOT_ARCH_LEGACY_DEVICES: u16 = 1 << 0;
const BOOT_ARCH_NO_VGA: u16 = 1 << 2;
/// MADT flags and entry types (§5.2.12).
const MADT_PCAT_COMPAT: u32 = 1;
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_SOURCE_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
const LOCAL_APIC_ENABLED: u32 = 1;
/// MPS INTI flags: active high, level triggered.
const INTI_HIGH_LEVEL: u16 = 0b1101;
/// Generic Address Structure (§5.2.3.2): system I/O space, access sizes.
const GAS_SYSTEM_IO: u8 = 1;
const GAS_WORD: u8 = 2;
const GAS_DWORD: u8 = 3;
/// AML opcodes (§20.3) for `Name (_S5, Package () { 5, 5, 0, 0 })`.
const AML_NAME: u8 = 0x08;
const AML_PACKAGE: u8 = 0x12;
const AML_BYTE: u8 = 0x0a;
const AML_ZERO: u8 = 0x00;

/// The tables: `bytes` go to [`BASE`]; the RSDP is at `rsdp`.
pub struct Tables {
    pub bytes: Vec<u8>,
    pub rsdp: u64,
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The byte that makes `bytes` sum to 0 mod 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

/// Writes a table header at `at` for a table of `len` bytes and sets its
/// checksum (the body must already be in place).
fn finish_table(b: &mut [u8], at: usize, signature: &[u8; 4], len: usize, revision: u8) {
    put(b, at, signature);
    put(b, at + 4, &(len as u32).to_le_bytes());
    b[at + 8] = revision;
    b[at + 9] = 0;
    put(b, at + 10, OEM_ID);
    put(b, at + 16, OEM_TABLE_ID);
    put(b, at + 24, &1u32.to_le_bytes());
    put(b, at + 28, CREATOR_ID);
    put(b, at + 32, &1u32.to_le_bytes());
    b[at + 9] = checksum(&b[at..at + len]);
}

/// A Generic Address Structure for `width` bits of I/O ports at `port`.
fn gas_io(port: u16, width: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = GAS_SYSTEM_IO;
    g[1] = width;
    g[3] = if width == 16 { GAS_WORD } else { GAS_DWORD };
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

/// A virtio-mmio device for the DSDT: registers at `base` (`len` bytes),
/// edge-triggered active-high interrupt `gsi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    pub base: u32,
    pub len: u32,
    pub gsi: u32,
}

/// AML (ACPI 6.4 §20.2) for the DSDT's devices.
const AML_SCOPE: u8 = 0x10;
const AML_BUFFER: u8 = 0x11;
const AML_STRING: u8 = 0x0d;
const AML_EXT: u8 = 0x5b;
const AML_DEVICE: u8 = 0x82;
/// Resource descriptors (§6.4.3): Memory32Fixed (read/write) and the
/// Extended Interrupt descriptor (consumer, edge, active high), and the
/// end tag.
const RES_MEMORY32_FIXED: u8 = 0x86;
const RES_EXTENDED_IRQ: u8 = 0x89;
const RES_IRQ_CONSUMER_EDGE_HIGH: u8 = 0b011;
const RES_END: u8 = 0x79;
/// The _HID Linux's virtio_mmio driver matches (its acpi_match_table),
/// as Firecracker announces its virtio-mmio devices.
const VIRTIO_MMIO_HID: &[u8] = b"LNRO0005";

/// A PkgLength (§20.2.4) for `len` bytes of contents: the encoding counts
/// its own bytes.
fn pkg_length(len: usize) -> Vec<u8> {
    if len + 1 < 0x40 {
        return alloc::vec![(len + 1) as u8];
    }
    // Up to 4 bytes: the first holds the count of following bytes in
    // bits 7:6 and the low nibble of the length.
    for extra in 1..=3usize {
        let total = len + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut out = alloc::vec![((extra as u8) << 6) | (total & 0xf) as u8];
            for i in 0..extra {
                out.push((total >> (4 + 8 * i)) as u8);
            }
            return out;
        }
    }
    alloc::vec![0] // Unreachable for table sizes.
}

/// `Name (NAME, value)`.
fn aml_name(name: &[u8; 4], value: &[u8]) -> Vec<u8> {
    let mut out = alloc::vec![AML_NAME];
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    out
}

/// `Device (VRnn) { _HID "LNRO0005", _UID n, _CRS { memory, interrupt } }`.
fn aml_virtio_mmio(n: u8, d: &VirtioMmio) -> Vec<u8> {
    let mut crs = alloc::vec![RES_MEMORY32_FIXED, 9, 0, 1];
    crs.extend_from_slice(&d.base.to_le_bytes());
    crs.extend_from_slice(&d.len.to_le_bytes());
    crs.extend_from_slice(&[RES_EXTENDED_IRQ, 6, 0, RES_IRQ_CONSUMER_EDGE_HIGH, 1]);
    crs.extend_from_slice(&d.gsi.to_le_bytes());
    crs.extend_from_slice(&[RES_END, 0]);
    let mut buffer = alloc::vec![AML_BYTE, crs.len() as u8];
    buffer.extend_from_slice(&crs);
    let mut crs_value = alloc::vec![AML_BUFFER];
    crs_value.extend(pkg_length(buffer.len()));
    crs_value.extend(buffer);
    let mut hid = alloc::vec![AML_STRING];
    hid.extend_from_slice(VIRTIO_MMIO_HID);
    hid.push(0);
    let mut body = Vec::new();
    body.extend_from_slice(&[b'V', b'R', b'0' + n / 10, b'0' + n % 10]);
    body.extend(aml_name(b"_HID", &hid));
    body.extend(aml_name(b"_UID", &[AML_BYTE, n]));
    body.extend(aml_name(b"_CRS", &crs_value));
    let mut out = alloc::vec![AML_EXT, AML_DEVICE];
    out.extend(pkg_length(body.len()));
    out.extend(body);
    out
}

/// The DSDT's AML: `Name (_S5, Package (4) { 5, 5, 0, 0 })`, and
/// `Scope (\_SB) { … }` with the virtio-mmio devices.
fn dsdt_aml(virtio: &[VirtioMmio]) -> Vec<u8> {
    let elements = [
        AML_BYTE, SLP_TYP_S5, AML_BYTE, SLP_TYP_S5, AML_ZERO, AML_ZERO,
    ];
    // PkgLength (one byte, < 64) counts itself, NumElements and the
    // elements.
    let pkg_len = 1 + 1 + elements.len();
    let mut aml = alloc::vec![AML_NAME];
    aml.extend_from_slice(b"_S5_");
    aml.extend_from_slice(&[AML_PACKAGE, pkg_len as u8, 4]);
    aml.extend_from_slice(&elements);
    if !virtio.is_empty() {
        let mut body = b"\\_SB_".to_vec();
        for (n, d) in virtio.iter().enumerate() {
            body.extend(aml_virtio_mmio(n as u8, d));
        }
        aml.push(AML_SCOPE);
        aml.extend(pkg_length(body.len()));
        aml.extend(body);
    }
    aml
}

/// The most virtio-mmio devices the DSDT describes (its space, from
/// `DSDT_AT` to `SIZE`, holds about 14; `the_most_devices_fit` checks).
pub const VIRTIO_MAX: usize = 8;

/// The tables for a VM with `vcpus` vCPUs (APIC IDs 0 to `vcpus` − 1) and
/// the first [`VIRTIO_MAX`] of the `virtio` devices.
pub fn build(vcpus: u8, virtio: &[VirtioMmio]) -> Tables {
    let mut b = alloc::vec![0u8; SIZE];
    let addr = |at: usize| BASE + at as u64;

    // DSDT.
    let aml = dsdt_aml(&virtio[..virtio.len().min(VIRTIO_MAX)]);
    put(&mut b, DSDT_AT + HEADER_LEN, &aml);
    let dsdt_len = HEADER_LEN + aml.len();
    finish_table(&mut b, DSDT_AT, b"DSDT", dsdt_len, 2);

    // FACS (no checksum).
    put(&mut b, FACS_AT, b"FACS");
    put(&mut b, FACS_AT + 4, &(FACS_LEN as u32).to_le_bytes());
    b[FACS_AT + 32] = 2; // version

    // FADT (Table 5.9).
    let f = FADT_AT;
    // FIRMWARE_CTRL stays 0: X_FIRMWARE_CTRL holds the FACS (ACPI 6.4
    // Table 5.9 wants one of the two).
    put(&mut b, f + 40, &(addr(DSDT_AT) as u32).to_le_bytes());
    put(&mut b, f + 46, &u16::from(SCI_IRQ).to_le_bytes());
    // SMI_CMD 0: the machine is always in ACPI mode (SCI_EN reads 1).
    put(&mut b, f + 56, &u32::from(PM1A_EVT).to_le_bytes());
    put(&mut b, f + 64, &u32::from(PM1A_CNT).to_le_bytes());
    put(&mut b, f + 76, &u32::from(PM_TMR).to_le_bytes());
    b[f + 88] = 4; // PM1_EVT_LEN
    b[f + 89] = 2; // PM1_CNT_LEN
    b[f + 91] = 4; // PM_TMR_LEN
    put(&mut b, f + 96, &101u16.to_le_bytes()); // P_LVL2_LAT: no C2
    put(&mut b, f + 98, &1001u16.to_le_bytes()); // P_LVL3_LAT: no C3
    put(
        &mut b,
        f + 109,
        &(BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_NO_VGA).to_le_bytes(),
    );
    let flags = FADT_WBINVD | FADT_PROC_C1 | FADT_PWR_BUTTON | FADT_SLP_BUTTON;
    put(&mut b, f + 112, &flags.to_le_bytes());
    b[f + 131] = 4; // FADT minor version (ACPI 6.4)
    put(&mut b, f + 132, &addr(FACS_AT).to_le_bytes());
    put(&mut b, f + 140, &addr(DSDT_AT).to_le_bytes());
    put(&mut b, f + 148, &gas_io(PM1A_EVT, 32));
    put(&mut b, f + 172, &gas_io(PM1A_CNT, 16));
    put(&mut b, f + 208, &gas_io(PM_TMR, 32));
    put(&mut b, f + 268, b"MOJITOVM");
    finish_table(&mut b, f, b"FACP", FADT_LEN, 6);

    // MADT.
    let m = MADT_AT;
    put(&mut b, m + 36, &LAPIC_ADDR.to_le_bytes());
    put(&mut b, m + 40, &MADT_PCAT_COMPAT.to_le_bytes());
    let mut at = m + 44;
    for id in 0..vcpus {
        put(&mut b, at, &[MADT_LOCAL_APIC, 8, id, id]);
        put(&mut b, at + 4, &LOCAL_APIC_ENABLED.to_le_bytes());
        at += 8;
    }
    put(&mut b, at, &[MADT_IO_APIC, 12, IOAPIC_ID, 0]);
    put(&mut b, at + 4, &IOAPIC_ADDR.to_le_bytes());
    put(&mut b, at + 8, &0u32.to_le_bytes());
    at += 12;
    for (irq, gsi, flags) in [
        (0u8, 2u32, 0u16),
        (SCI_IRQ, u32::from(SCI_IRQ), INTI_HIGH_LEVEL),
    ] {
        put(&mut b, at, &[MADT_SOURCE_OVERRIDE, 10, 0, irq]);
        put(&mut b, at + 4, &gsi.to_le_bytes());
        put(&mut b, at + 8, &flags.to_le_bytes());
        at += 10;
    }
    // LINT1 of every local APIC is NMI.
    put(&mut b, at, &[MADT_LOCAL_APIC_NMI, 6, 0xff, 0, 0, 1]);
    at += 6;
    finish_table(&mut b, m, b"APIC", at - m, 1);

    // XSDT.
    let x = XSDT_AT;
    put(&mut b, x + 36, &addr(FADT_AT).to_le_bytes());
    put(&mut b, x + 44, &addr(MADT_AT).to_le_bytes());
    finish_table(&mut b, x, b"XSDT", HEADER_LEN + 16, 1);

    // RSDP (§5.2.5.3), revision 2: the XSDT only.
    let r = RSDP_AT;
    put(&mut b, r, b"RSD PTR ");
    put(&mut b, r + 9, OEM_ID);
    b[r + 15] = 2;
    put(&mut b, r + 20, &36u32.to_le_bytes());
    put(&mut b, r + 24, &addr(XSDT_AT).to_le_bytes());
    b[r + 8] = checksum(&b[r..r + 20]);
    b[r + 32] = checksum(&b[r..r + 36]);

    const _: () = assert!(MADT_AT + 44 + 8 * 255 + 12 + 20 + 6 <= DSDT_AT);
    Tables {
        bytes: b,
        rsdp: addr(RSDP_AT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// The table at guest-physical `gpa`: its signature and bytes, with
    /// its checksum checked.
    fn table(b: &[u8], gpa: u64) -> (&[u8], &[u8]) {
        let at = (gpa - BASE) as usize;
        let len = u32_at(b, at + 4) as usize;
        let t = &b[at..at + len];
        assert_eq!(t.iter().fold(0u8, |a, &x| a.wrapping_add(x)), 0, "checksum");
        (&t[..4], t)
    }

    #[test]
    fn the_chain_from_the_rsdp_holds_together() {
        let t = build(2, &[]);
        let b = &t.bytes;
        assert_eq!(t.rsdp, BASE);
        assert_eq!(&b[..8], b"RSD PTR ");
        assert_eq!(b[..20].iter().fold(0u8, |a, &x| a.wrapping_add(x)), 0);
        assert_eq!(b[..36].iter().fold(0u8, |a, &x| a.wrapping_add(x)), 0);
        let (sig, xsdt) = table(b, u64_at(b, 24));
        assert_eq!(sig, b"XSDT");
        let (sig, fadt) = table(b, u64_at(xsdt, 36));
        assert_eq!(sig, b"FACP");
        assert_eq!(fadt.len(), 276);
        assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 9, "SCI");
        assert_eq!(u32_at(fadt, 64), 0x604, "PM1a_CNT");
        assert_eq!(u32_at(fadt, 76), 0x608, "PM_TMR");
        assert_eq!(u64_at(fadt, 172 + 4), 0x604, "X_PM1a_CNT");
        let (sig, dsdt) = table(b, u64_at(fadt, 140));
        assert_eq!(sig, b"DSDT");
        assert_eq!(
            &dsdt[36..],
            &[
                0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 4, 0x0a, 5, 0x0a, 5, 0, 0
            ]
        );
        assert_eq!(u32_at(fadt, 36), 0, "FIRMWARE_CTRL unused");
        let facs = (u64_at(fadt, 132) - BASE) as usize;
        assert_eq!(&b[facs..facs + 4], b"FACS");
        assert_eq!(facs % 64, 0);
        let (sig, madt) = table(b, u64_at(xsdt, 44));
        assert_eq!(sig, b"APIC");
        // Two local APICs, the IOAPIC, two overrides, the LINT1 NMI.
        assert_eq!(madt.len(), 44 + 2 * 8 + 12 + 2 * 10 + 6);
        assert_eq!(&madt[44..48], &[0, 8, 0, 0]);
        assert_eq!(&madt[52..56], &[0, 8, 1, 1]);
        assert_eq!(u32_at(madt, 64), IOAPIC_ADDR);
        assert_eq!(&madt[72..76], &[2, 10, 0, 0]);
        assert_eq!(u32_at(madt, 76), 2, "IRQ 0 on GSI 2");
    }

    #[test]
    fn virtio_devices_in_the_dsdt() {
        let d = VirtioMmio {
            base: 0xd000_0000,
            len: 0x200,
            gsi: 5,
        };
        let t = build(1, &[d]);
        let (sig, dsdt) = table(&t.bytes, BASE + DSDT_AT as u64);
        assert_eq!(sig, b"DSDT");
        let aml = &dsdt[36..];
        // After _S5: Scope (\_SB) { Device (VR00) { … } }.
        let scope = &aml[14..];
        assert_eq!(scope[0], AML_SCOPE);
        let (len, n) = decode_pkg_length(&scope[1..]);
        assert_eq!(len, scope.len() - 1, "the scope runs to the end");
        let dev = &scope[1 + n..];
        assert_eq!(&dev[..5], b"\\_SB_");
        let dev = &dev[5..];
        assert_eq!(&dev[..2], &[AML_EXT, AML_DEVICE]);
        let (len, n) = decode_pkg_length(&dev[2..]);
        assert_eq!(len, dev.len() - 2, "the device runs to the end");
        assert_eq!(&dev[2 + n..2 + n + 4], b"VR00");
        let find = |needle: &[u8]| aml.windows(needle.len()).position(|w| w == needle);
        assert!(find(b"LNRO0005\0").is_some());
        // Memory32Fixed 0xd0000000, 0x200; Extended IRQ 5, edge high.
        assert!(find(&[0x86, 9, 0, 1, 0, 0, 0, 0xd0, 0, 2, 0, 0]).is_some());
        assert!(find(&[0x89, 6, 0, 3, 1, 5, 0, 0, 0, 0x79, 0]).is_some());
    }

    /// A PkgLength's value and its own size in bytes.
    fn decode_pkg_length(b: &[u8]) -> (usize, usize) {
        let extra = usize::from(b[0] >> 6);
        if extra == 0 {
            return (usize::from(b[0] & 0x3f), 1);
        }
        let mut len = usize::from(b[0] & 0xf);
        for i in 0..extra {
            len |= usize::from(b[1 + i]) << (4 + 8 * i);
        }
        (len, 1 + extra)
    }

    #[test]
    fn the_most_devices_fit() {
        let d = VirtioMmio {
            base: 0xd000_0000,
            len: 0x200,
            gsi: 5,
        };
        let t = build(8, &[d; VIRTIO_MAX + 3]);
        let (sig, dsdt) = table(&t.bytes, BASE + DSDT_AT as u64);
        assert_eq!(sig, b"DSDT");
        let count = dsdt.windows(8).filter(|w| w == b"LNRO0005").count();
        assert_eq!(count, VIRTIO_MAX);
    }

    #[test]
    fn pkg_lengths() {
        assert_eq!(pkg_length(0x3e), [0x3f]);
        assert_eq!(pkg_length(0x3f), [0x41, 0x04]); // 0x41 total
        assert_eq!(pkg_length(0x1000), [0x83, 0x00, 0x01]);
        assert_eq!(pkg_length(0xffd), [0x4f, 0xff]);
    }

    #[test]
    fn the_most_vcpus_fit() {
        let t = build(255, &[]);
        let b = &t.bytes;
        let (_, xsdt) = table(b, u64_at(b, 24));
        let (_, madt) = table(b, u64_at(xsdt, 44));
        assert_eq!(madt.len(), 44 + 255 * 8 + 12 + 20 + 6);
        let (sig, _) = table(b, BASE + DSDT_AT as u64);
        assert_eq!(sig, b"DSDT");
    }
}
