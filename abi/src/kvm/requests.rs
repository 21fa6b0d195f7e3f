//! KVM's request codes (its ioctl numbers), each computed from the size of
//! its argument structure here, so a structure of the wrong size gives a
//! code that differs from Linux's (`abi/tests/ioctl.rs` compares them).
//!
//! Each one's documentation starts with the handle it goes to: system
//! (`/dev/kvm`), VM or vCPU. Mojito's own requests are in [`super::mojito`].

use core::mem::size_of;

use super::ioctl::{io, ior, iow, iowr};
use super::{
    kvm_coalesced_mmio_zone, kvm_cpuid2, kvm_dirty_log, kvm_enable_cap, kvm_fpu, kvm_guest_debug,
    kvm_interrupt, kvm_irq_routing, kvm_lapic_state, kvm_mp_state, kvm_msi, kvm_msr_filter,
    kvm_msr_list, kvm_msrs, kvm_regs, kvm_sregs, kvm_userspace_memory_region, kvm_vcpu_events,
    kvm_xcrs, kvm_xen_hvm_config, kvm_xsave,
};

/// KVM's ioctl type byte.
pub const KVMIO: u8 = 0xAE;

// System requests.

/// System: Returns `KVM_API_VERSION` (12). Integer argument: 0.
pub const KVM_GET_API_VERSION: u32 = io(KVMIO, 0x00);
/// System: Creates a VM, returns its handle. Integer argument: the machine
/// type (0).
pub const KVM_CREATE_VM: u32 = io(KVMIO, 0x01);
/// System: The MSRs `KVM_GET_MSRS`/`KVM_SET_MSRS` accept.
pub const KVM_GET_MSR_INDEX_LIST: u32 = iowr(KVMIO, 0x02, size_of::<kvm_msr_list>());
/// System, VM: Whether a `KVM_CAP_*` is present (0 = no; some return a
/// number). Integer argument: the capability.
pub const KVM_CHECK_EXTENSION: u32 = io(KVMIO, 0x03);
/// System: Size in bytes of a vCPU's run area (`kvm_run` plus the PIO data
/// page).
pub const KVM_GET_VCPU_MMAP_SIZE: u32 = io(KVMIO, 0x04);
/// System: The CPUID bits the hypervisor can offer.
pub const KVM_GET_SUPPORTED_CPUID: u32 = iowr(KVMIO, 0x05, size_of::<kvm_cpuid2>());
/// System: The CPUID bits the hypervisor emulates.
pub const KVM_GET_EMULATED_CPUID: u32 = iowr(KVMIO, 0x09, size_of::<kvm_cpuid2>());

// VM requests.

/// VM: Creates a vCPU, returns its handle. Integer argument: the vCPU id
/// (its APIC id).
pub const KVM_CREATE_VCPU: u32 = io(KVMIO, 0x41);
/// VM: Copies a slot's dirty bitmap out and clears it.
pub const KVM_GET_DIRTY_LOG: u32 = iow(KVMIO, 0x42, size_of::<kvm_dirty_log>());
/// VM: Creates, moves, changes or deletes a memory slot.
pub const KVM_SET_USER_MEMORY_REGION: u32 =
    iow(KVMIO, 0x46, size_of::<kvm_userspace_memory_region>());
/// VM: Guest-physical address of the three pages VMX needs for real-mode
/// TSS emulation. Integer argument.
pub const KVM_SET_TSS_ADDR: u32 = io(KVMIO, 0x47);
/// VM: Guest-physical address of VMX's identity-map page table.
pub const KVM_SET_IDENTITY_MAP_ADDR: u32 = iow(KVMIO, 0x48, size_of::<u64>());
/// VM: Creates the in-kernel PIC, IOAPIC and LAPICs.
pub const KVM_CREATE_IRQCHIP: u32 = io(KVMIO, 0x60);
/// VM: Replaces the GSI routing table.
pub const KVM_SET_GSI_ROUTING: u32 = iow(KVMIO, 0x6a, size_of::<kvm_irq_routing>());
/// VM: Configures Xen HVM guest support.
pub const KVM_XEN_HVM_CONFIG: u32 = iow(KVMIO, 0x7a, size_of::<kvm_xen_hvm_config>());
/// VM, vCPU: Enables a capability (`KVM_CAP_ENABLE_CAP_VM` on a VM handle,
/// `KVM_CAP_ENABLE_CAP` on a vCPU handle): one code for both, as in KVM.
pub const KVM_ENABLE_CAP: u32 = iow(KVMIO, 0xa3, size_of::<kvm_enable_cap>());
/// VM: Injects one MSI.
pub const KVM_SIGNAL_MSI: u32 = iow(KVMIO, 0xa5, size_of::<kvm_msi>());
/// VM: Writes to a range of ports (or MMIO) go to the coalesced ring.
pub const KVM_REGISTER_COALESCED_MMIO: u32 = iow(KVMIO, 0x67, size_of::<kvm_coalesced_mmio_zone>());
/// VM: Removes the zones that contain a range.
pub const KVM_UNREGISTER_COALESCED_MMIO: u32 =
    iow(KVMIO, 0x68, size_of::<kvm_coalesced_mmio_zone>());
/// VM: Sets the MSR filter for `KVM_CAP_X86_USER_SPACE_MSR`.
pub const KVM_X86_SET_MSR_FILTER: u32 = iow(KVMIO, 0xc6, size_of::<kvm_msr_filter>());

// vCPU requests.

/// vCPU: Runs the vCPU until an exit the VMM must see. No argument.
pub const KVM_RUN: u32 = io(KVMIO, 0x80);
/// vCPU: Reads the general-purpose registers.
pub const KVM_GET_REGS: u32 = ior(KVMIO, 0x81, size_of::<kvm_regs>());
/// vCPU: Writes the general-purpose registers.
pub const KVM_SET_REGS: u32 = iow(KVMIO, 0x82, size_of::<kvm_regs>());
/// vCPU: Reads segment and control registers.
pub const KVM_GET_SREGS: u32 = ior(KVMIO, 0x83, size_of::<kvm_sregs>());
/// vCPU: Writes segment and control registers.
pub const KVM_SET_SREGS: u32 = iow(KVMIO, 0x84, size_of::<kvm_sregs>());
/// vCPU: Queues an external interrupt (userspace or split irqchip).
pub const KVM_INTERRUPT: u32 = iow(KVMIO, 0x86, size_of::<kvm_interrupt>());
/// vCPU: Reads MSRs; returns how many were read.
pub const KVM_GET_MSRS: u32 = iowr(KVMIO, 0x88, size_of::<kvm_msrs>());
/// vCPU: Writes MSRs; returns how many were written.
pub const KVM_SET_MSRS: u32 = iow(KVMIO, 0x89, size_of::<kvm_msrs>());
/// vCPU: Reads the x87/SSE state.
pub const KVM_GET_FPU: u32 = ior(KVMIO, 0x8c, size_of::<kvm_fpu>());
/// vCPU: Writes the x87/SSE state.
pub const KVM_SET_FPU: u32 = iow(KVMIO, 0x8d, size_of::<kvm_fpu>());
/// vCPU: Reads the local APIC's registers.
pub const KVM_GET_LAPIC: u32 = ior(KVMIO, 0x8e, size_of::<kvm_lapic_state>());
/// vCPU: Writes the local APIC's registers.
pub const KVM_SET_LAPIC: u32 = iow(KVMIO, 0x8f, size_of::<kvm_lapic_state>());
/// vCPU: Sets the guest's CPUID table.
pub const KVM_SET_CPUID2: u32 = iow(KVMIO, 0x90, size_of::<kvm_cpuid2>());
/// vCPU: Reads the run state (`KVM_MP_STATE_*`).
pub const KVM_GET_MP_STATE: u32 = ior(KVMIO, 0x98, size_of::<kvm_mp_state>());
/// vCPU: Writes the run state.
pub const KVM_SET_MP_STATE: u32 = iow(KVMIO, 0x99, size_of::<kvm_mp_state>());
/// vCPU: Sets single-stepping and hardware breakpoints.
pub const KVM_SET_GUEST_DEBUG: u32 = iow(KVMIO, 0x9b, size_of::<kvm_guest_debug>());
/// vCPU: Reads pending exceptions, interrupts, NMIs and SMIs.
pub const KVM_GET_VCPU_EVENTS: u32 = ior(KVMIO, 0x9f, size_of::<kvm_vcpu_events>());
/// vCPU: Writes pending exceptions, interrupts, NMIs and SMIs.
pub const KVM_SET_VCPU_EVENTS: u32 = iow(KVMIO, 0xa0, size_of::<kvm_vcpu_events>());
/// vCPU: Reads the XSAVE image.
pub const KVM_GET_XSAVE: u32 = ior(KVMIO, 0xa4, size_of::<kvm_xsave>());
/// vCPU: Writes the XSAVE image. Same `nr` as `KVM_SIGNAL_MSI`: requests
/// are told apart by the whole code, never by `nr` alone.
pub const KVM_SET_XSAVE: u32 = iow(KVMIO, 0xa5, size_of::<kvm_xsave>());
/// vCPU: Reads the extended control registers.
pub const KVM_GET_XCRS: u32 = ior(KVMIO, 0xa6, size_of::<kvm_xcrs>());
/// vCPU: Writes the extended control registers.
pub const KVM_SET_XCRS: u32 = iow(KVMIO, 0xa7, size_of::<kvm_xcrs>());
