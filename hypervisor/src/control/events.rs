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
//! `-EINVAL` here, as is a soft (INT n) interrupt other than the one queued
//! already, and what VM entry would refuse (an interrupt or NMI queued
//! inside an interrupt shadow, an exception's error code where it pushes
//! none or missing where it does, or wider than 16 bits). An interrupt the
//! guest cannot take now (IF = 0) waits as `KVM_INTERRUPT`'s vector does.

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
    // KVM reports SMM state always; here it is none.
    e.flags = KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
    e
}

/// The exceptions that push an error code (SDM Vol. 3A 6.15): VM entry
/// wants one exactly for these in protected mode (SDM Vol. 3C 26.2.1.3).
const ERROR_CODE_VECTORS: [u8; 8] = [8, 10, 11, 12, 13, 14, 17, 21];

/// `KVM_SET_VCPU_EVENTS` (the caller activated the vCPU): KVM's checks,
/// then what VM entry would refuse, then the state, all or nothing.
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
    if u8::from(exception) + u8::from(interrupt) + u8::from(nmi) > 1 {
        return Err(EINVAL);
    }
    // An error code exactly where the exception pushes one, of 16 bits.
    let pushes = ERROR_CODE_VECTORS.contains(&e.exception.nr);
    if exception && ((e.exception.has_error_code != 0) != pushes || e.exception.error_code > 0xffff)
    {
        return Err(EINVAL);
    }
    // A soft interrupt (INT n whose delivery an exit cut short) only as it
    // is queued already: Mojito queues no other.
    let soft = interrupt && e.interrupt.soft != 0;
    let queued_soft = Some(Queued::Interrupt {
        vector: e.interrupt.nr,
        soft: true,
    });
    if soft && vc.cpu.queued_event() != queued_soft {
        return Err(EINVAL);
    }
    // An interrupt or NMI queued inside the shadow that will be in effect
    // (VM entry refuses it), an NMI where the vCPU cannot take one, an
    // NMI pending without the local APIC's path.
    let shadow = if e.flags & KVM_VCPUEVENT_VALID_SHADOW != 0 {
        e.interrupt.shadow & 3 != 0
    } else {
        vc.cpu.interrupt_shadow() != 0
    };
    let nmi_pending = e.flags & KVM_VCPUEVENT_VALID_NMI_PENDING != 0 && e.nmi.pending != 0;
    if ((interrupt || nmi) && shadow)
        || ((nmi || nmi_pending) && !vc.cpu.nmi_capable())
        || (nmi_pending && vc.lapic.is_none())
    {
        return Err(EINVAL);
    }
    if !soft {
        vc.cpu.cancel_event();
    }
    vc.irq = None;
    if e.flags & KVM_VCPUEVENT_VALID_SHADOW != 0 {
        vc.cpu.set_interrupt_shadow(e.interrupt.shadow);
    }
    // NMI blocking first: an NMI queued now sets it again on delivery.
    vc.cpu.set_nmi_masked(e.nmi.masked != 0);
    if exception {
        let error = pushes.then_some(e.exception.error_code);
        vc.cpu.inject(Fault {
            vector: e.exception.nr,
            error,
        });
    } else if interrupt && !soft {
        // Queued in the hardware where the guest can take it now, else
        // waiting for it as `KVM_INTERRUPT`'s vector does.
        if vc.cpu.interrupt_allowed() {
            vc.cpu.inject_interrupt(e.interrupt.nr);
        } else {
            vc.irq = Some(e.interrupt.nr);
        }
    } else if nmi {
        vc.cpu.set_nmi_masked(false);
        vc.cpu.inject_nmi();
    }
    if e.flags & KVM_VCPUEVENT_VALID_NMI_PENDING != 0 {
        vc.nmi_pending = nmi_pending;
    }
    Ok(())
}
