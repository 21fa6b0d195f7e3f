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

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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

/// Why a CPU's control domain wants it back, one bit each ([`raise`]): the
/// exit loop looks at its word with one load after every exit, and only
/// when it is not 0 at what came (`arch::apic::take_tick`,
/// `arch::com1_irq::take_input`, `control::cpus::take_kick`).
pub mod attention {
    /// Its tick (`arch::apic`).
    pub const TICK: u32 = 1 << 0;
    /// Another CPU kicked it (`control::cpus::kick`).
    pub const KICK: u32 = 1 << 1;
    /// COM1 or the keyboard had input (cpu0 only: the PIC's ExtINT goes to
    /// the boot CPU).
    pub const INPUT: u32 = 1 << 2;
}

static ATTENTION: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Sets `bit` for CPU `cpu`.
pub fn raise(cpu: usize, bit: u32) {
    if let Some(a) = ATTENTION.get(cpu) {
        a.fetch_or(bit, Ordering::SeqCst);
    }
}

/// Whether anything asks for this CPU's attention (one load).
#[inline]
pub fn attention() -> bool {
    ATTENTION
        .get(index())
        .is_some_and(|a| a.load(Ordering::Relaxed) != 0)
}

/// Whether `bit` was set for this CPU (and clears it).
pub fn take(bit: u32) -> bool {
    ATTENTION.get(index()).is_some_and(|a| {
        a.load(Ordering::Relaxed) & bit != 0 && a.fetch_and(!bit, Ordering::SeqCst) & bit != 0
    })
}

/// This CPU's TSS (VMX host TR base).
pub fn tss_base() -> u64 {
    SLOTS[index()].tss_base.load(Ordering::Relaxed)
}
