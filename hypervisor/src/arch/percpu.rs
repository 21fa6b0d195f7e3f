//! Which physical CPU this is (the SMP issue: per-CPU state, no lock
//! shared across CPUs on the exit path). Each CPU's GS base points at its
//! own entry of [`SLOTS`], whose first word is the CPU's index (0 for the
//! boot CPU, then the application processors in MADT order), so
//! [`index`] is one load. The hypervisor never runs SWAPGS and the
//! hardware restores the host GS base on every exit (VMX: the VMCS's
//! host-state area, SDM Vol. 3C 28.5.2; SVM: VMLOAD of the host save
//! area, APM Vol. 2 15.5.2), so GS stays this CPU's in host mode.
//!
//! Per-CPU state elsewhere is an array indexed by [`index`] (`arch::apic`'s
//! tick, `arch::spec`'s last guest).

use core::sync::atomic::{AtomicU64, Ordering};

/// The most CPUs Mojito uses; CPUs past them stay off.
pub const MAX_CPUS: usize = 16;

/// One CPU's block: its index, and the bases VMX's host-state area needs
/// (its own TSS; SDM Vol. 3C 25.5.2).
#[repr(C)]
pub struct Slot {
    index: AtomicU64,
    tss_base: AtomicU64,
}

static SLOTS: [Slot; MAX_CPUS] = [const {
    Slot {
        index: AtomicU64::new(0),
        tss_base: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Makes this CPU number `cpu` (< `MAX_CPUS`), with its TSS at `tss_base`:
/// called once per CPU with its GDT, before VMX/SVM is turned on there
/// (SVM's VMSAVE and VMX's VMCS take the GS base from then on).
#[cfg(target_os = "none")]
pub fn init(cpu: usize, tss_base: u64) {
    let cpu = cpu.min(MAX_CPUS - 1);
    let slot = &SLOTS[cpu];
    slot.index.store(cpu as u64, Ordering::Relaxed);
    slot.tss_base.store(tss_base, Ordering::Relaxed);
    // SAFETY: IA32_GS_BASE exists on every x86-64 CPU; the slot is a
    // static, so the address stays valid.
    unsafe { super::instr::wrmsr(super::msr::IA32_GS_BASE, core::ptr::from_ref(slot) as u64) };
}

/// This CPU's index: 0 for the boot CPU.
#[cfg(target_os = "none")]
#[inline]
pub fn index() -> usize {
    let i: u64;
    // SAFETY: `init` pointed GS at this CPU's slot before anything here
    // ran with interrupts or guests; the load has no side effect.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) i, options(nostack, readonly, preserves_flags))
    };
    i as usize
}

/// Host builds (tests, fuzzing) are one CPU.
#[cfg(not(target_os = "none"))]
#[inline]
pub fn index() -> usize {
    0
}

/// This CPU's TSS (VMX host TR base).
pub fn tss_base() -> u64 {
    SLOTS[index()].tss_base.load(Ordering::Relaxed)
}
