//! Pending events and the processor state machine: `KVM_GET_VCPU_EVENTS`,
//! `KVM_GET_MP_STATE` and their `SET` twins.

/// [`kvm_vcpu_events::flags`]: `nmi.pending` is valid (on SET).
pub const KVM_VCPUEVENT_VALID_NMI_PENDING: u32 = 1 << 0;
/// [`kvm_vcpu_events::flags`]: `sipi_vector` is valid (on SET).
pub const KVM_VCPUEVENT_VALID_SIPI_VECTOR: u32 = 1 << 1;
/// [`kvm_vcpu_events::flags`]: `interrupt.shadow` is valid.
pub const KVM_VCPUEVENT_VALID_SHADOW: u32 = 1 << 2;
/// [`kvm_vcpu_events::flags`]: `smi` is valid.
pub const KVM_VCPUEVENT_VALID_SMM: u32 = 1 << 3;
/// [`kvm_vcpu_events::flags`]: the exception payload fields are valid.
pub const KVM_VCPUEVENT_VALID_PAYLOAD: u32 = 1 << 4;
/// [`kvm_vcpu_events::flags`]: `triple_fault` is valid.
pub const KVM_VCPUEVENT_VALID_TRIPLE_FAULT: u32 = 1 << 5;

/// [`kvm_vcpu_events_interrupt::shadow`]: blocking by MOV SS/POP SS.
pub const KVM_X86_SHADOW_INT_MOV_SS: u8 = 0x01;
/// [`kvm_vcpu_events_interrupt::shadow`]: blocking by STI.
pub const KVM_X86_SHADOW_INT_STI: u8 = 0x02;

/// `kvm_vcpu_events.exception`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_vcpu_events_exception {
    pub injected: u8,
    pub nr: u8,
    pub has_error_code: u8,
    pub pending: u8,
    pub error_code: u32,
}

assert_layout!(struct kvm_vcpu_events_exception, size 8, align 4, {
    injected: 0, nr: 1, has_error_code: 2, pending: 3, error_code: 4,
});

/// `kvm_vcpu_events.interrupt`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_vcpu_events_interrupt {
    pub injected: u8,
    pub nr: u8,
    pub soft: u8,
    /// `KVM_X86_SHADOW_INT_*` bits.
    pub shadow: u8,
}

assert_layout!(struct kvm_vcpu_events_interrupt, size 4, align 1, {
    injected: 0, nr: 1, soft: 2, shadow: 3,
});

/// `kvm_vcpu_events.nmi`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_vcpu_events_nmi {
    pub injected: u8,
    pub pending: u8,
    pub masked: u8,
    pub pad: u8,
}

assert_layout!(struct kvm_vcpu_events_nmi, size 4, align 1, {
    injected: 0, pending: 1, masked: 2, pad: 3,
});

/// `kvm_vcpu_events.smi`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_vcpu_events_smi {
    pub smm: u8,
    pub pending: u8,
    pub smm_inside_nmi: u8,
    pub latched_init: u8,
}

assert_layout!(struct kvm_vcpu_events_smi, size 4, align 1, {
    smm: 0, pending: 1, smm_inside_nmi: 2, latched_init: 3,
});

/// `kvm_vcpu_events.triple_fault`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_vcpu_events_triple_fault {
    pub pending: u8,
}

assert_layout!(struct kvm_vcpu_events_triple_fault, size 1, align 1, { pending: 0 });

/// Exceptions, interrupts, NMIs and SMIs in flight
/// (`KVM_GET_VCPU_EVENTS`/`KVM_SET_VCPU_EVENTS`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_vcpu_events {
    pub exception: kvm_vcpu_events_exception,
    pub interrupt: kvm_vcpu_events_interrupt,
    pub nmi: kvm_vcpu_events_nmi,
    pub sipi_vector: u32,
    /// `KVM_VCPUEVENT_VALID_*` bits.
    pub flags: u32,
    pub smi: kvm_vcpu_events_smi,
    pub triple_fault: kvm_vcpu_events_triple_fault,
    pub reserved: [u8; 26],
    pub exception_has_payload: u8,
    pub exception_payload: u64,
}

assert_layout!(struct kvm_vcpu_events, size 64, align 8, {
    exception: 0, interrupt: 8, nmi: 12, sipi_vector: 16, flags: 20, smi: 24,
    triple_fault: 28, reserved: 29, exception_has_payload: 55, exception_payload: 56,
});

/// [`kvm_mp_state::mp_state`]: running.
pub const KVM_MP_STATE_RUNNABLE: u32 = 0;
/// [`kvm_mp_state::mp_state`]: waiting for INIT (an AP before startup).
pub const KVM_MP_STATE_UNINITIALIZED: u32 = 1;
/// [`kvm_mp_state::mp_state`]: INIT received, waiting for SIPI.
pub const KVM_MP_STATE_INIT_RECEIVED: u32 = 2;
/// [`kvm_mp_state::mp_state`]: halted (HLT), waiting for an interrupt.
pub const KVM_MP_STATE_HALTED: u32 = 3;
/// [`kvm_mp_state::mp_state`]: SIPI received, starting at its vector.
pub const KVM_MP_STATE_SIPI_RECEIVED: u32 = 4;
/// [`kvm_mp_state::mp_state`]: SEV-ES AP reset hold.
pub const KVM_MP_STATE_AP_RESET_HOLD: u32 = 9;

/// The processor's run state (`KVM_GET_MP_STATE`/`KVM_SET_MP_STATE`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_mp_state {
    /// `KVM_MP_STATE_*`.
    pub mp_state: u32,
}

assert_layout!(struct kvm_mp_state, size 4, align 4, { mp_state: 0 });
