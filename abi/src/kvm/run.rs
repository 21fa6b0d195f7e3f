//! The run page: `kvm_run`, shared between a vCPU and its VMM.

use core::fmt;

use super::{
    kvm_regs, kvm_run_debug, kvm_run_emulation_failure, kvm_run_eoi, kvm_run_ex,
    kvm_run_fail_entry, kvm_run_hw, kvm_run_hypercall, kvm_run_internal, kvm_run_io,
    kvm_run_memory_fault, kvm_run_mmio, kvm_run_msr, kvm_run_notify, kvm_run_system_event,
    kvm_run_tpr_access, kvm_sregs, kvm_vcpu_events,
};

/// Page offset (in 4 KiB pages from the run page) of the port-I/O data that
/// `kvm_run_io::data_offset` points into.
pub const KVM_PIO_PAGE_OFFSET: u32 = 1;
/// Page offset of the coalesced-MMIO ring in KVM's vCPU mapping (Mojito's
/// is set with `MOJITO_SET_COALESCED_RING` instead).
pub const KVM_COALESCED_MMIO_PAGE_OFFSET: u32 = 2;

/// [`kvm_run::kvm_valid_regs`]/[`kvm_run::kvm_dirty_regs`]: `s.regs.regs`.
pub const KVM_SYNC_X86_REGS: u64 = 1 << 0;
/// [`kvm_run::kvm_valid_regs`]/[`kvm_run::kvm_dirty_regs`]: `s.regs.sregs`.
pub const KVM_SYNC_X86_SREGS: u64 = 1 << 1;
/// [`kvm_run::kvm_valid_regs`]/[`kvm_run::kvm_dirty_regs`]: `s.regs.events`.
pub const KVM_SYNC_X86_EVENTS: u64 = 1 << 2;

/// [`kvm_run::flags`]: the vCPU was in System Management Mode.
pub const KVM_RUN_X86_SMM: u16 = 1 << 0;
/// [`kvm_run::flags`]: the exit was a bus-lock exit.
pub const KVM_RUN_X86_BUS_LOCK: u16 = 1 << 1;
/// [`kvm_run::flags`]: the vCPU was running a nested guest.
pub const KVM_RUN_X86_GUEST_MODE: u16 = 1 << 2;

/// The exit data, chosen by [`kvm_run::exit_reason`] (an anonymous union in
/// C, whose members are reached as `run->io` and so on; here `run.exit.io`).
///
/// Members for other architectures, and x86's `hyperv` and `xen` exits,
/// are left out; `padding` fixes the size at 256 bytes as in `kvm.h`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union kvm_run_exit {
    /// `KVM_EXIT_UNKNOWN`.
    pub hw: kvm_run_hw,
    /// `KVM_EXIT_FAIL_ENTRY`.
    pub fail_entry: kvm_run_fail_entry,
    /// `KVM_EXIT_EXCEPTION`.
    pub ex: kvm_run_ex,
    /// `KVM_EXIT_IO`.
    pub io: kvm_run_io,
    /// `KVM_EXIT_DEBUG`.
    pub debug: kvm_run_debug,
    /// `KVM_EXIT_MMIO`.
    pub mmio: kvm_run_mmio,
    /// `KVM_EXIT_HYPERCALL`.
    pub hypercall: kvm_run_hypercall,
    /// `KVM_EXIT_TPR_ACCESS`.
    pub tpr_access: kvm_run_tpr_access,
    /// `KVM_EXIT_INTERNAL_ERROR`.
    pub internal: kvm_run_internal,
    /// `KVM_EXIT_INTERNAL_ERROR` with `KVM_INTERNAL_ERROR_EMULATION`.
    pub emulation_failure: kvm_run_emulation_failure,
    /// `KVM_EXIT_SYSTEM_EVENT`.
    pub system_event: kvm_run_system_event,
    /// `KVM_EXIT_IOAPIC_EOI`.
    pub eoi: kvm_run_eoi,
    /// `KVM_EXIT_X86_RDMSR`, `KVM_EXIT_X86_WRMSR`.
    pub msr: kvm_run_msr,
    /// `KVM_EXIT_NOTIFY`.
    pub notify: kvm_run_notify,
    /// `KVM_EXIT_MEMORY_FAULT`.
    pub memory_fault: kvm_run_memory_fault,
    pub padding: [u8; 256],
}

impl Default for kvm_run_exit {
    fn default() -> Self {
        Self { padding: [0; 256] }
    }
}

assert_layout!(union kvm_run_exit, size 256, align 8, {
    hw, fail_entry, ex, io, debug, mmio, hypercall, tpr_access, internal,
    emulation_failure, system_event, eoi, msr, notify, memory_fault, padding,
});

/// Registers shared through the run page (`KVM_CAP_SYNC_REGS`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_sync_regs {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub events: kvm_vcpu_events,
}

assert_layout!(struct kvm_sync_regs, size 520, align 8, { regs: 0, sregs: 144, events: 456 });

/// Size of [`kvm_run_s`] (`SYNC_REGS_SIZE_BYTES` in `kvm.h`).
pub const SYNC_REGS_SIZE_BYTES: usize = 2048;

/// `kvm_run.s`: the synced registers, in a fixed 2 KiB area.
#[repr(C)]
#[derive(Clone, Copy)]
pub union kvm_run_s {
    pub regs: kvm_sync_regs,
    pub padding: [u8; SYNC_REGS_SIZE_BYTES],
}

impl Default for kvm_run_s {
    fn default() -> Self {
        Self {
            padding: [0; SYNC_REGS_SIZE_BYTES],
        }
    }
}

assert_layout!(union kvm_run_s, size 2048, align 8, { regs, padding });

/// The run page: what `KVM_RUN` reads on entry and fills on exit.
///
/// In Mojito it lives in pages the control domain gives the vCPU
/// (`mojito::MOJITO_SET_RUN_PAGES`), the counterpart of `mmap` on a vCPU fd.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct kvm_run {
    /// In: exit with `KVM_EXIT_IRQ_WINDOW_OPEN` as soon as an interrupt can
    /// be injected.
    pub request_interrupt_window: u8,
    /// In: return `-EINTR` with `KVM_EXIT_INTR` before entering the guest.
    pub immediate_exit: u8,
    pub padding1: [u8; 6],
    /// Out: `KVM_EXIT_*`.
    pub exit_reason: u32,
    /// Out: `KVM_INTERRUPT` would succeed now.
    pub ready_for_interrupt_injection: u8,
    /// Out: the guest's RFLAGS.IF.
    pub if_flag: u8,
    /// Out: `KVM_RUN_X86_*`.
    pub flags: u16,
    /// In/out: the guest's CR8 (TPR).
    pub cr8: u64,
    /// Out: the guest's IA32_APIC_BASE.
    pub apic_base: u64,
    /// Out (some members in/out): chosen by `exit_reason`.
    pub exit: kvm_run_exit,
    /// Out: which parts of `s` KVM filled (`KVM_SYNC_X86_*`).
    pub kvm_valid_regs: u64,
    /// In: which parts of `s` the VMM changed (`KVM_SYNC_X86_*`).
    pub kvm_dirty_regs: u64,
    pub s: kvm_run_s,
}

assert_layout!(struct kvm_run, size 2352, align 8, {
    request_interrupt_window: 0, immediate_exit: 1, padding1: 2, exit_reason: 8,
    ready_for_interrupt_injection: 12, if_flag: 13, flags: 14, cr8: 16,
    apic_base: 24, exit: 32, kvm_valid_regs: 288, kvm_dirty_regs: 296, s: 304,
});

impl fmt::Debug for kvm_run {
    /// The fixed fields only: which union member is meaningful depends on
    /// `exit_reason`, which this type does not interpret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("kvm_run")
            .field("request_interrupt_window", &self.request_interrupt_window)
            .field("immediate_exit", &self.immediate_exit)
            .field("exit_reason", &self.exit_reason)
            .field(
                "ready_for_interrupt_injection",
                &self.ready_for_interrupt_injection,
            )
            .field("if_flag", &self.if_flag)
            .field("flags", &self.flags)
            .field("cr8", &self.cr8)
            .field("apic_base", &self.apic_base)
            .field("kvm_valid_regs", &self.kvm_valid_regs)
            .field("kvm_dirty_regs", &self.kvm_dirty_regs)
            .finish_non_exhaustive()
    }
}
