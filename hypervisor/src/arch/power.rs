//! Machine power-off: ACPI S5 through the FADT's PM1a control block
//! (DESIGN.md §3; QEMU then exits with status 0), falling back to Bochs's
//! shutdown port, and leaving emulators quickly on a fatal error.

/// PM1 control register: SLP_TYP is bits 12:10, SLP_EN bit 13 (ACPI 6.5
/// 4.8.4.2.1 "PM1 Control Registers").
pub const SLP_TYP_SHIFT: u32 = 10;
pub const SLP_EN: u16 = 1 << 13;

/// Finds `\_S5`'s SLP_TYPa in a DSDT's AML: the package
/// `Name(_S5, Package(){a, b, ...})`, encoded as NameOp (0x08) "_S5_"
/// PackageOp (0x12) PkgLength NumElements, then a ZeroOp/OneOp/BytePrefix
/// element (ACPI 6.5 20.2.5 "Term Objects Encoding").
pub fn s5_sleep_type(aml: &[u8]) -> Option<u8> {
    const NAME_OP: u8 = 0x08;
    const PACKAGE_OP: u8 = 0x12;
    const ZERO_OP: u8 = 0x00;
    const ONE_OP: u8 = 0x01;
    const BYTE_PREFIX: u8 = 0x0a;
    let at = aml.windows(4).position(|w| w == b"_S5_")?;
    // The name may be preceded by a root or parent prefix ('\\' or '^').
    let before = aml.get(..at)?;
    let name_op_ok = matches!(before.last(), Some(&NAME_OP))
        || (matches!(before.last(), Some(b'\\'))
            && before.len() >= 2
            && before[before.len() - 2] == NAME_OP);
    if !name_op_ok {
        return None;
    }
    let rest = aml.get(at + 4..)?;
    if rest.first() != Some(&PACKAGE_OP) {
        return None;
    }
    // PkgLength: the top two bits of its first byte say how many more bytes follow.
    let lead = *rest.get(1)?;
    let pkg_len_bytes = 1 + usize::from(lead >> 6);
    let elements = rest.get(1 + pkg_len_bytes + 1..)?;
    match *elements.first()? {
        ZERO_OP => Some(0),
        ONE_OP => Some(1),
        BYTE_PREFIX => elements.get(1).copied(),
        _ => None,
    }
}

#[cfg(target_os = "none")]
mod machine {
    use super::*;
    use crate::arch::instr::{inb, outb, outw};
    use acpi::{AcpiHandler, AcpiTables, PhysicalMapping, fadt::Fadt};
    use core::ptr::NonNull;

    #[derive(Clone, Copy, Debug)]
    struct Window;

    impl AcpiHandler for Window {
        unsafe fn map_physical_region<T>(
            &self,
            pa: usize,
            size: usize,
        ) -> PhysicalMapping<Self, T> {
            let va = crate::mm::phys::ptr::<T>(crate::mm::HostPhys::new(pa as u64));
            // SAFETY: the physical window maps all physical memory, so the
            // region is mapped for as long as the hypervisor runs.
            unsafe { PhysicalMapping::new(pa, NonNull::new_unchecked(va), size, size, *self) }
        }
        fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
    }

    /// What ACPI power-off needs, found once at boot.
    #[derive(Clone, Copy, Debug)]
    pub struct AcpiPower {
        pub pm1a_cnt: u16,
        pub slp_typ: u8,
    }

    static POWER: spin::Once<Option<AcpiPower>> = spin::Once::new();
    /// The FADT's reset register (an I/O port) and value, where the FADT
    /// says it works (ACPI 6.5 5.2.9 "Fixed ACPI Description Table",
    /// RESET_REG_SUP).
    static RESET: spin::Once<Option<(u16, u8)>> = spin::Once::new();
    /// The FADT's IAPC_BOOT_ARCH "8042" flag (ACPI 6.5 5.2.9.3), where the
    /// FADT has the field (revision 2 and later); None: no FADT or an
    /// ACPI 1.0 one.
    static HAS_8042: spin::Once<Option<bool>> = spin::Once::new();

    /// Whether the firmware says there is an 8042 keyboard controller.
    pub fn has_8042() -> Option<bool> {
        HAS_8042.get().copied().flatten()
    }

    /// The RSDP's address, for `processors`.
    static RSDP: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    /// The local APIC ids of the processors the MADT lists as enabled
    /// (ACPI 6.5 5.2.12.2 and 5.2.12.12, flags bit 0; an "online capable"
    /// one is not there now), in MADT order; empty without an MADT.
    pub fn processors() -> alloc::vec::Vec<u32> {
        use acpi::madt::{Madt, MadtEntry};
        let mut ids = alloc::vec::Vec::new();
        let rsdp = RSDP.load(core::sync::atomic::Ordering::Relaxed);
        if rsdp == 0 {
            return ids;
        }
        // SAFETY: the bootloader found the RSDP at this address.
        let Ok(tables) = (unsafe { AcpiTables::from_rsdp(Window, rsdp as usize) }) else {
            return ids;
        };
        let Ok(madt) = tables.find_table::<Madt>() else {
            return ids;
        };
        const ENABLED: u32 = 1;
        /// An x2APIC entry with this id describes no processor.
        const NO_ID: u32 = u32::MAX;
        for e in madt.get().entries() {
            let (id, flags) = match e {
                MadtEntry::LocalApic(a) => (u32::from(a.apic_id), a.flags),
                MadtEntry::LocalX2Apic(a) => (a.x2apic_id, a.flags),
                _ => continue,
            };
            if flags & ENABLED != 0
                && id != NO_ID
                && !ids.contains(&id)
                && ids.try_reserve(1).is_ok()
            {
                ids.push(id);
            }
        }
        ids
    }

    /// Reads the FADT and the DSDT's `\_S5` from the tables at `rsdp`.
    pub fn init(rsdp: Option<u64>) -> Option<AcpiPower> {
        RSDP.store(rsdp.unwrap_or(0), core::sync::atomic::Ordering::Relaxed);
        *POWER.call_once(|| {
            let rsdp = rsdp?;
            // SAFETY: the bootloader found the RSDP at this address.
            let tables = unsafe { AcpiTables::from_rsdp(Window, rsdp as usize) }.ok()?;
            let fadt = tables.find_table::<Fadt>().ok()?;
            HAS_8042.call_once(|| {
                use acpi::AcpiTable;
                (fadt.header().revision >= 2)
                    .then(|| { fadt.iapc_boot_arch }.motherboard_implements_8042())
            });
            RESET.call_once(|| {
                let reg = fadt.reset_register().ok()?;
                let io = reg.address_space == acpi::address::AddressSpace::SystemIo;
                ({ fadt.flags }.supports_system_reset_via_fadt() && io)
                    .then(|| (reg.address as u16, fadt.reset_value))
            });
            let pm1a = fadt.pm1a_control_block().ok()?;
            if pm1a.address_space != acpi::address::AddressSpace::SystemIo {
                return None;
            }
            let dsdt = tables.dsdt().ok()?;
            let aml = crate::mm::phys::ptr::<u8>(crate::mm::HostPhys::new(dsdt.address as u64));
            // SAFETY: the DSDT's AML lies in firmware-reserved memory that
            // the window maps; nothing writes it.
            let aml = unsafe { core::slice::from_raw_parts(aml, dsdt.length as usize) };
            Some(AcpiPower {
                pm1a_cnt: pm1a.address as u16,
                slp_typ: s5_sleep_type(aml)?,
            })
        })
    }

    /// Bochs's shutdown port: writing "Shutdown" ends the simulation.
    const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;
    /// QEMU's isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4`).
    const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
    /// Bochs's and QEMU's port-E9 debug console reads back 0xe9.
    const E9_PORT: u16 = 0xe9;

    /// Whether we run under an emulator or hypervisor (where writing the
    /// emulators' exit ports is safe); on a real PC those ports stay alone.
    pub fn under_emulator() -> bool {
        let hypervisor_bit = crate::arch::instr::cpuid(1, 0)[2] & (1 << 31) != 0;
        // SAFETY: reading port 0xe9 has no side effect on a PC.
        hypervisor_bit || unsafe { inb(E9_PORT) } == 0xe9
    }

    /// Powers the machine off; returns only if every method failed.
    pub fn power_off() {
        crate::log::serial::flush();
        if let Some(Some(p)) = POWER.get() {
            // SAFETY: the FADT names this port as PM1a_CNT; SLP_TYP=S5 with
            // SLP_EN powers off.
            unsafe { outw(p.pm1a_cnt, (u16::from(p.slp_typ) << SLP_TYP_SHIFT) | SLP_EN) };
            spin_a_while();
        }
        if under_emulator() {
            bochs_shutdown();
        }
    }

    /// The keyboard controller's command port; command 0xFE pulses the
    /// CPU reset line (the PC/AT's way).
    const KBC_COMMAND_PORT: u16 = 0x64;
    const KBC_INPUT_FULL: u8 = 1 << 1;
    const KBC_RESET: u8 = 0xfe;
    /// The chipset's reset control register (PIIX/ICH, QEMU, Bochs): bit 1
    /// selects a hard reset, bit 2 starts it.
    const RESET_CONTROL_PORT: u16 = 0xcf9;

    /// Resets the machine: the FADT's reset register, port 0xCF9 (a hard
    /// reset), the keyboard controller, and at last a triple fault (an
    /// empty IDT and an exception). Does not return.
    ///
    /// The hard reset comes before the keyboard controller's: Bochs treats
    /// the latter as a warm reset that keeps IA32_FEATURE_CONTROL locked
    /// (as VMXON left it), and its BIOS then faults writing that MSR.
    pub fn reboot() -> ! {
        // The control domain has closed its VMs; the log goes to COM1
        // again, naming each method as it is tried.
        crate::log::set_serial(true);
        leave_virtualization();
        // The other CPUs too: INIT, which a reset may come down to, is
        // blocked in VMX operation.
        crate::arch::smp::stop_aps();
        if let Some(Some((port, value))) = RESET.get() {
            crate::log!("reset: the FADT's reset register, port {port:#x} <- {value:#x}");
            crate::log::serial::flush();
            // SAFETY: the FADT names this port and value as the reset.
            unsafe { outb(*port, *value) };
            spin_a_while();
        }
        crate::log!("reset: port {RESET_CONTROL_PORT:#x} (hard reset)");
        crate::log::serial::flush();
        // SAFETY: a hard reset through the chipset's reset control register.
        unsafe {
            outb(RESET_CONTROL_PORT, 0x02);
            outb(RESET_CONTROL_PORT, 0x06);
        }
        spin_a_while();
        crate::log!("reset: the keyboard controller");
        crate::log::serial::flush();
        // SAFETY: the keyboard controller's reset pulse; waiting (bounded)
        // for its input buffer to empty first, as it asks.
        unsafe {
            for _ in 0..100_000 {
                if inb(KBC_COMMAND_PORT) & KBC_INPUT_FULL == 0 {
                    break;
                }
            }
            outb(KBC_COMMAND_PORT, KBC_RESET);
        }
        spin_a_while();
        crate::log!("reset: a triple fault");
        crate::log::serial::flush();
        // SAFETY: an IDT of limit 0 makes the breakpoint a triple fault,
        // which resets the machine; nothing runs after it.
        unsafe {
            let empty = [0u16; 5];
            core::arch::asm!("lidt [{}]", "int3", in(reg) empty.as_ptr(), options(noreturn));
        }
    }

    /// Leaves VMX operation, or turns SVM off, before a reset, as Linux
    /// does: INIT, which is what a keyboard-controller reset is on many
    /// chipsets, is blocked in VMX root operation (SDM Vol. 3C 24.8).
    pub fn leave_virtualization() {
        use crate::arch::instr::{rdmsr, read_cr4, write_cr4, wrmsr};
        use crate::arch::msr::{IA32_EFER, efer};
        use crate::virt::regs::cr4::VMXE as CR4_VMXE;
        let cr4 = read_cr4();
        if cr4 & CR4_VMXE != 0 {
            // SAFETY: CR4.VMXE set means VMXON succeeded: turning VMX on
            // sets it just before VMXON, and a failure there is fatal at
            // boot (nothing reaches a reset after it). VMXOFF leaves VMX
            // operation, and nothing uses VMX after this (the machine resets).
            unsafe {
                core::arch::asm!("vmxoff", options(nostack));
                write_cr4(cr4 & !CR4_VMXE);
            }
        }
        // SAFETY: reading EFER has no side effect; clearing SVME only turns
        // SVM off, which nothing uses after this.
        unsafe {
            let e = rdmsr(IA32_EFER);
            if e & efer::SVME != 0 {
                wrmsr(IA32_EFER, e & !efer::SVME);
            }
        }
    }

    /// Ends an emulator run after a fatal error (non-zero status in QEMU).
    pub fn emulator_fail_exit() {
        if !under_emulator() {
            return;
        }
        crate::log::serial::flush();
        // SAFETY: under an emulator, 0xf4 is QEMU's isa-debug-exit; the value
        // makes QEMU exit with status (0x31 << 1) | 1 = 99.
        unsafe { outb(QEMU_DEBUG_EXIT_PORT, 0x31) };
        bochs_shutdown();
    }

    fn bochs_shutdown() {
        for b in b"Shutdown" {
            // SAFETY: under an emulator, 0x8900 is Bochs's shutdown port
            // (nothing in QEMU's pc machine).
            unsafe { outb(BOCHS_SHUTDOWN_PORT, *b) };
        }
        spin_a_while();
    }

    fn spin_a_while() {
        for _ in 0..10_000_000 {
            core::hint::spin_loop();
        }
    }
}

#[cfg(target_os = "none")]
pub use machine::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_s5_in_common_encodings() {
        // QEMU's DSDT: Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        let qemu = [
            0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(s5_sleep_type(&qemu), Some(0));
        // Root-prefixed, byte-valued: Name (\_S5, Package () { 0x07, 0x07 })
        let byte = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x08, 0x02, 0x0a, 0x07, 0x0a, 0x07,
        ];
        assert_eq!(s5_sleep_type(&byte), Some(7));
        // Two-byte PkgLength.
        let long = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x40, 0x01, 0x02, 0x01, 0x01,
        ];
        assert_eq!(s5_sleep_type(&long), Some(1));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(s5_sleep_type(b""), None);
        assert_eq!(s5_sleep_type(b"_S5_"), None);
        assert_eq!(s5_sleep_type(&[0x08, b'_', b'S', b'5', b'_', 0x12]), None);
        assert_eq!(
            s5_sleep_type(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0xc0]),
            None
        );
        assert_eq!(
            s5_sleep_type(&[0x99, b'_', b'S', b'5', b'_', 0x12, 0x04, 0x01, 0x00]),
            None
        );
    }
}
