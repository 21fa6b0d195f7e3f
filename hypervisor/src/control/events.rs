//! `KVM_GET_VCPU_EVENTS` / `KVM_SET_VCPU_EVENTS`: the event queued for the
//! vCPU's next entry (an exception, an interrupt or an NMI — the one an
//! exit interrupted the delivery of, or one queued here), the interrupt
//! shadow, and NMI state (one pending, the guest inside its handler), as
//! KVM's `kvm_vcpu_ioctl_x86_get/set_vcpu_events` without SMM, exception
//! payloads or triple-fault events (none of their capabilities is
//! offered).
//!
//! Where Mojito's hardware queue holds one event, KVM's software one holds
//! an exception, an interrupt and an NMI at once: setting more than one is
//! `-EINVAL` here, as is a soft (INT n) interrupt, which Mojito never
//! queues itself, and what VM entry would refuse (an interrupt or NMI
//! queued inside an interrupt shadow, an NMI queued with NMIs masked).

use super::objects::KvmVcpu;
use crate::virt::{Backend, Fault, GuestCpu, Queued};
use abi::kvm::errno::EINVAL;
use abi::kvm::{
    KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_PAYLOAD, KVM_VCPUEVENT_VALID_SHADOW,
    KVM_VCPUEVENT_VALID_SIPI_VECTOR, KVM_VCPUEVENT_VALID_SMM, KVM_VCPUEVENT_VALID_TRIPLE_FAULT,
    kvm_vcpu_events,
};

/// The NMI's vector, which an exception may not use (SDM Vol. 3A 6.7).
const NMI_VECTOR: u8 = 2;

/// `KVM_GET_VCPU_EVENTS` (the caller activated the vCPU).
pub fn get<B: Backend>(vc: &KvmVcpu<B>) -> kvm_vcpu_events {
    let mut e = kvm_vcpu_events::default();
    match vc.cpu.queued_event() {
        Some(Queued::Exception { vector, error }) => {
            e.exception.injected = 1;
            e.exception.nr = vector;
            e.exception.has_error_code = u8::from(error.is_some());
            e.exception.error_code = error.unwrap_or(0);
        }
        Some(Queued::Interrupt { vector, soft }) => {
            e.interrupt.injected = 1;
            e.interrupt.nr = vector;
            e.interrupt.soft = u8::from(soft);
        }
        Some(Queued::Nmi) => e.nmi.injected = 1,
        None => {}
    }
    // `KVM_INTERRUPT`'s vector waiting for the guest to take it is an
    // injected interrupt on KVM too (`kvm_queue_interrupt`).
    if let (Some(vector), 0) = (vc.irq, e.interrupt.injected) {
        e.interrupt.injected = 1;
        e.interrupt.nr = vector;
    }
    e.interrupt.shadow = vc.cpu.interrupt_shadow();
    e.nmi.pending = u8::from(vc.nmi_pending);
    e.nmi.masked = u8::from(vc.cpu.nmi_masked());
    e.sipi_vector = vc.sipi_vector.map_or(0, u32::from);
    e.flags = KVM_VCPUEVENT_VALID_SHADOW;
    e
}

/// `KVM_SET_VCPU_EVENTS` (the caller activated the vCPU): KVM's checks,
/// then the state, all or nothing.
pub fn set<B: Backend>(vc: &mut KvmVcpu<B>, e: &kvm_vcpu_events) -> Result<(), i32> {
    let known = KVM_VCPUEVENT_VALID_NMI_PENDING
        | KVM_VCPUEVENT_VALID_SIPI_VECTOR
        | KVM_VCPUEVENT_VALID_SHADOW
        | KVM_VCPUEVENT_VALID_SMM
        | KVM_VCPUEVENT_VALID_PAYLOAD
        | KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
    if e.flags & !known != 0 {
        return Err(EINVAL);
    }
    // KVM_CAP_EXCEPTION_PAYLOAD and KVM_CAP_X86_TRIPLE_FAULT_EVENT are not
    // offered: KVM refuses their flags then too.
    if e.flags & (KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT) != 0 {
        return Err(EINVAL);
    }
    // Without payloads KVM folds `pending` into nothing: only `injected`.
    let exception = e.exception.injected != 0;
    if exception && (e.exception.nr > 31 || e.exception.nr == NMI_VECTOR) {
        return Err(EINVAL);
    }
    // No SMM here.
    if e.flags & KVM_VCPUEVENT_VALID_SMM != 0 && (e.smi.smm != 0 || e.smi.pending != 0) {
        return Err(EINVAL);
    }
    let interrupt = e.interrupt.injected != 0;
    let nmi = e.nmi.injected != 0;
    if u8::from(exception) + u8::from(interrupt) + u8::from(nmi) > 1
        || (interrupt && e.interrupt.soft != 0)
    {
        return Err(EINVAL);
    }
    // What VM entry refuses (SDM Vol. 3C 26.3.1.5) is refused here: an
    // interrupt or NMI queued inside a shadow, an NMI queued while NMIs
    // are masked.
    let shadow = e.flags & KVM_VCPUEVENT_VALID_SHADOW != 0 && e.interrupt.shadow & 3 != 0;
    if ((interrupt || nmi) && shadow) || (nmi && e.nmi.masked != 0) {
        return Err(EINVAL);
    }
    // An NMI waits for injection in the local APIC's path only.
    let nmi_pending = e.flags & KVM_VCPUEVENT_VALID_NMI_PENDING != 0 && e.nmi.pending != 0;
    if nmi_pending && vc.lapic.is_none() {
        return Err(EINVAL);
    }
    vc.cpu.cancel_event();
    vc.irq = None;
    if exception {
        let error = (e.exception.has_error_code != 0).then_some(e.exception.error_code);
        vc.cpu.inject(Fault {
            vector: e.exception.nr,
            error,
        });
    } else if interrupt {
        vc.cpu.inject_interrupt(e.interrupt.nr);
    } else if nmi {
        vc.cpu.inject_nmi();
    }
    if e.flags & KVM_VCPUEVENT_VALID_SHADOW != 0 {
        vc.cpu.set_interrupt_shadow(e.interrupt.shadow);
    }
    if e.flags & KVM_VCPUEVENT_VALID_NMI_PENDING != 0 {
        vc.nmi_pending = nmi_pending;
    }
    vc.cpu.set_nmi_masked(e.nmi.masked != 0);
    Ok(())
}
