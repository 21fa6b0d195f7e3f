//! Privileged instructions, each an `unsafe fn`: executing them in the wrong
//! state faults or changes machine state the compiler cannot see.

use core::arch::asm;

/// Reads an MSR.
///
/// # Safety
/// `msr` must exist on this CPU (or the read faults).
#[inline]
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes an MSR.
///
/// # Safety
/// `msr` must exist and accept `value`; the write must not break the
/// hypervisor's own state.
#[inline]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

/// Reads XCR `index` (XGETBV).
///
/// # Safety
/// CR4.OSXSAVE must be set.
#[inline]
pub unsafe fn xgetbv(index: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees OSXSAVE.
    unsafe {
        asm!("xgetbv", in("ecx") index, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes XCR `index` (XSETBV).
///
/// # Safety
/// CR4.OSXSAVE must be set and `value` valid for this CPU.
#[inline]
pub unsafe fn xsetbv(index: u32, value: u64) {
    // SAFETY: the caller guarantees a valid value.
    unsafe {
        asm!("xsetbv", in("ecx") index, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    };
}

/// The time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC only reads the counter (CR4.TSD is clear in ring 0 anyway).
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

macro_rules! control_register {
    ($read:ident, $write:ident, $reg:literal) => {
        /// Reads the control register.
        #[inline]
        pub fn $read() -> u64 {
            let v: u64;
            // SAFETY: reading a control register in ring 0 has no side effect.
            unsafe { asm!(concat!("mov {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
            v
        }

        /// Writes the control register.
        ///
        /// # Safety
        /// The new value must keep the hypervisor's own paging, protection
        /// and feature state valid.
        #[inline]
        pub unsafe fn $write(v: u64) {
            // SAFETY: guaranteed by the caller.
            unsafe { asm!(concat!("mov ", $reg, ", {}"), in(reg) v, options(nostack, preserves_flags)) };
        }
    };
}

control_register!(read_cr0, write_cr0, "cr0");
control_register!(read_cr2, write_cr2, "cr2");
control_register!(read_cr3, write_cr3, "cr3");
control_register!(read_cr4, write_cr4, "cr4");

macro_rules! debug_register {
    ($read:ident, $write:ident, $reg:literal) => {
        /// Reads the debug register.
        #[inline]
        pub fn $read() -> u64 {
            let v: u64;
            // SAFETY: reading a debug register in ring 0 has no side effect.
            unsafe { asm!(concat!("mov {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
            v
        }

        /// Writes the debug register.
        ///
        /// # Safety
        /// Breakpoints armed in DR7 fire in the hypervisor too.
        #[inline]
        pub unsafe fn $write(v: u64) {
            // SAFETY: guaranteed by the caller.
            unsafe { asm!(concat!("mov ", $reg, ", {}"), in(reg) v, options(nomem, nostack, preserves_flags)) };
        }
    };
}

debug_register!(read_dr0, write_dr0, "dr0");
debug_register!(read_dr1, write_dr1, "dr1");
debug_register!(read_dr2, write_dr2, "dr2");
debug_register!(read_dr3, write_dr3, "dr3");
debug_register!(read_dr6, write_dr6, "dr6");
debug_register!(read_dr7, write_dr7, "dr7");

/// Halts until the next interrupt (forever, with interrupts disabled).
#[inline]
pub fn hlt() {
    // SAFETY: HLT only waits.
    unsafe { asm!("hlt", options(nomem, nostack, preserves_flags)) };
}

/// Opens a one-instruction interrupt window, so an interrupt that made a
/// guest exit is taken by the hypervisor's IDT.
#[inline]
pub fn take_pending_interrupts() {
    // SAFETY: the hypervisor's interrupt handlers only acknowledge and count.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Sleeps until the next interrupt and lets the hypervisor's handler take
/// it (the control domain's HLT: idle until the next tick).
#[inline]
pub fn wait_for_interrupt() {
    // SAFETY: the hypervisor's interrupt handlers only acknowledge and count;
    // STI's one-instruction shadow keeps the wake-up from slipping in
    // between STI and HLT.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI + HLT parks the CPU; only NMI/SMI can wake it.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Port output of one byte.
///
/// # Safety
/// The port must belong to the hypervisor.
#[inline]
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// Port output of one word.
///
/// # Safety
/// The port must belong to the hypervisor.
#[inline]
pub unsafe fn outw(port: u16, v: u16) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    };
}

/// Port input of one byte.
///
/// # Safety
/// The port must belong to the hypervisor; reads may have side effects.
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// CPUID.
#[inline]
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}
