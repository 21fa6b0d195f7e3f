//! Guest debugging: `KVM_SET_GUEST_DEBUG` and the `KVM_EXIT_DEBUG` data.

/// [`kvm_guest_debug::control`]: debugging is on.
pub const KVM_GUESTDBG_ENABLE: u32 = 0x0000_0001;
/// [`kvm_guest_debug::control`]: single-step (exit after each instruction).
pub const KVM_GUESTDBG_SINGLESTEP: u32 = 0x0000_0002;
/// [`kvm_guest_debug::control`]: INT3 exits to the VMM instead of the guest.
pub const KVM_GUESTDBG_USE_SW_BP: u32 = 0x0001_0000;
/// [`kvm_guest_debug::control`]: load `arch.debugreg` as the guest's DR0-DR7.
pub const KVM_GUESTDBG_USE_HW_BP: u32 = 0x0002_0000;
/// [`kvm_guest_debug::control`]: inject #DB into the guest.
pub const KVM_GUESTDBG_INJECT_DB: u32 = 0x0004_0000;
/// [`kvm_guest_debug::control`]: inject #BP into the guest.
pub const KVM_GUESTDBG_INJECT_BP: u32 = 0x0008_0000;
/// [`kvm_guest_debug::control`]: block interrupts while single-stepping.
pub const KVM_GUESTDBG_BLOCKIRQ: u32 = 0x0010_0000;

/// Debug registers for `KVM_GUESTDBG_USE_HW_BP`: DR0-DR3, two unused slots,
/// DR6 (ignored) and DR7.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_guest_debug_arch {
    pub debugreg: [u64; 8],
}

assert_layout!(struct kvm_guest_debug_arch, size 64, align 8, { debugreg: 0 });

/// The `KVM_SET_GUEST_DEBUG` argument.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_guest_debug {
    /// `KVM_GUESTDBG_*` bits.
    pub control: u32,
    pub pad: u32,
    pub arch: kvm_guest_debug_arch,
}

assert_layout!(struct kvm_guest_debug, size 72, align 8, { control: 0, pad: 4, arch: 8 });

/// What a `KVM_EXIT_DEBUG` reports (`kvm_run.debug.arch`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_debug_exit_arch {
    /// The exception vector: 1 (#DB) or 3 (#BP).
    pub exception: u32,
    pub pad: u32,
    /// The guest's RIP (as a linear address).
    pub pc: u64,
    pub dr6: u64,
    pub dr7: u64,
}

assert_layout!(struct kvm_debug_exit_arch, size 32, align 8, {
    exception: 0, pad: 4, pc: 8, dr6: 16, dr7: 24,
});
