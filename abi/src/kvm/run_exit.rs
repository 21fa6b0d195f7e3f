//! The members of `kvm_run`'s exit union, one per exit reason that has data.
//! C declares them anonymously; each is named `kvm_run_<member>` here.

use super::kvm_debug_exit_arch;

/// `hw`, for `KVM_EXIT_UNKNOWN`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_hw {
    pub hardware_exit_reason: u64,
}

assert_layout!(struct kvm_run_hw, size 8, align 8, { hardware_exit_reason: 0 });

/// `fail_entry`, for `KVM_EXIT_FAIL_ENTRY`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_fail_entry {
    /// The VMX exit reason or SVM exit code of the failed entry.
    pub hardware_entry_failure_reason: u64,
    pub cpu: u32,
    /// Implicit in C (tail padding).
    pub pad: u32,
}

assert_layout!(struct kvm_run_fail_entry, size 16, align 8, {
    hardware_entry_failure_reason: 0, cpu: 8, pad: 12,
});

/// `ex`, for `KVM_EXIT_EXCEPTION`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_ex {
    pub exception: u32,
    pub error_code: u32,
}

assert_layout!(struct kvm_run_ex, size 8, align 4, { exception: 0, error_code: 4 });

/// `io`, for `KVM_EXIT_IO`: `count` elements of `size` bytes, at
/// `data_offset` bytes from the start of the run page.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_io {
    /// `KVM_EXIT_IO_IN` or `KVM_EXIT_IO_OUT`.
    pub direction: u8,
    /// 1, 2 or 4.
    pub size: u8,
    pub port: u16,
    pub count: u32,
    pub data_offset: u64,
}

assert_layout!(struct kvm_run_io, size 16, align 8, {
    direction: 0, size: 1, port: 2, count: 4, data_offset: 8,
});

/// `debug`, for `KVM_EXIT_DEBUG`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_debug {
    pub arch: kvm_debug_exit_arch,
}

assert_layout!(struct kvm_run_debug, size 32, align 8, { arch: 0 });

/// `mmio`, for `KVM_EXIT_MMIO`. For a read, the VMM fills `data` before the
/// next `KVM_RUN`, which completes the instruction.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_mmio {
    pub phys_addr: u64,
    pub data: [u8; 8],
    pub len: u32,
    pub is_write: u8,
    /// Implicit in C (tail padding).
    pub pad: [u8; 3],
}

assert_layout!(struct kvm_run_mmio, size 24, align 8, {
    phys_addr: 0, data: 8, len: 16, is_write: 20, pad: 21,
});

/// [`kvm_run_hypercall::flags`]: the guest was in 64-bit mode (x86
/// `asm/kvm.h`; newer than the `kvm-bindings` this crate is tested against).
pub const KVM_EXIT_HYPERCALL_LONG_MODE: u64 = 1 << 0;

/// `hypercall`, for `KVM_EXIT_HYPERCALL`: the VMM sets `ret`, which becomes
/// the guest's RAX on the next `KVM_RUN`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_hypercall {
    /// RAX.
    pub nr: u64,
    /// The guest's argument registers in KVM's hypercall ABI (RBX, RCX, RDX,
    /// RSI); how many are filled depends on `nr`.
    pub args: [u64; 6],
    pub ret: u64,
    /// C's anonymous union of `__u32 longmode` (the old name, now the low
    /// half) and `__u64 flags`: `KVM_EXIT_HYPERCALL_LONG_MODE`.
    pub flags: u64,
}

assert_layout!(struct kvm_run_hypercall, size 72, align 8, {
    nr: 0, args: 8, ret: 56, flags: 64,
});

/// `tpr_access`, for `KVM_EXIT_TPR_ACCESS`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_tpr_access {
    pub rip: u64,
    pub is_write: u32,
    pub pad: u32,
}

assert_layout!(struct kvm_run_tpr_access, size 16, align 8, { rip: 0, is_write: 8, pad: 12 });

/// `internal`, for `KVM_EXIT_INTERNAL_ERROR`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_internal {
    /// `KVM_INTERNAL_ERROR_*`.
    pub suberror: u32,
    /// Entries of `data` used.
    pub ndata: u32,
    pub data: [u64; 16],
}

assert_layout!(struct kvm_run_internal, size 136, align 8, { suberror: 0, ndata: 4, data: 8 });

/// `emulation_failure`, the view of `internal` for
/// `KVM_INTERNAL_ERROR_EMULATION` when `flags` has
/// `KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_emulation_failure {
    pub suberror: u32,
    pub ndata: u32,
    pub flags: u64,
    /// C nests these two in an anonymous union of an anonymous struct.
    pub insn_size: u8,
    pub insn_bytes: [u8; 15],
}

assert_layout!(struct kvm_run_emulation_failure, size 32, align 8, {
    suberror: 0, ndata: 4, flags: 8, insn_size: 16, insn_bytes: 17,
});

/// `system_event`, for `KVM_EXIT_SYSTEM_EVENT`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_system_event {
    /// `KVM_SYSTEM_EVENT_*` (`type` in C).
    pub type_: u32,
    /// Entries of `data` used.
    pub ndata: u32,
    /// C's anonymous union of `__u64 flags` (the name before
    /// `KVM_CAP_SYSTEM_EVENT_DATA`) and `__u64 data[16]`; `flags` is
    /// `data[0]`, see [`kvm_run_system_event::flags`].
    pub data: [u64; 16],
}

impl kvm_run_system_event {
    /// The old name of `data[0]`.
    pub const fn flags(&self) -> u64 {
        self.data[0]
    }
}

assert_layout!(struct kvm_run_system_event, size 136, align 8, { type_: 0, ndata: 4, data: 8 });

/// `eoi`, for `KVM_EXIT_IOAPIC_EOI` (split irqchip).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_eoi {
    pub vector: u8,
}

assert_layout!(struct kvm_run_eoi, size 1, align 1, { vector: 0 });

/// `msr`, for `KVM_EXIT_X86_RDMSR` and `KVM_EXIT_X86_WRMSR`. For RDMSR the
/// VMM fills `data`; setting `error` to 1 makes the guest take #GP.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_msr {
    pub error: u8,
    pub pad: [u8; 7],
    /// `KVM_MSR_EXIT_REASON_*`.
    pub reason: u32,
    pub index: u32,
    pub data: u64,
}

assert_layout!(struct kvm_run_msr, size 24, align 8, {
    error: 0, pad: 1, reason: 8, index: 12, data: 16,
});

/// `notify`, for `KVM_EXIT_NOTIFY`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_notify {
    pub flags: u32,
}

assert_layout!(struct kvm_run_notify, size 4, align 4, { flags: 0 });

/// `memory_fault`, for `KVM_EXIT_MEMORY_FAULT`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_run_memory_fault {
    pub flags: u64,
    pub gpa: u64,
    pub size: u64,
}

assert_layout!(struct kvm_run_memory_fault, size 24, align 8, { flags: 0, gpa: 8, size: 16 });
