//! The ABI shared by the hypervisor, the control domain and the host tools.
//!
//! Everything here is `#[repr(C)]` data and pure functions over byte slices:
//! this crate depends on `core` only, so the hypervisor, a guest and a host
//! tool all agree on one definition.
//!
//! It holds the boot-bundle format (how the loader hands files to the
//! hypervisor), the port-I/O conventions of Mojito's test guests, and the
//! KVM ABI the control domain speaks to the hypervisor ([`kvm`]: `kvm_run`,
//! `kvm_regs`, ..., the request codes, and Mojito's own requests and
//! hypercall convention in [`kvm::mojito`]).

#![no_std]

pub mod bundle;
pub mod elf;
pub mod guest;
pub mod kvm;
pub mod rtc;
