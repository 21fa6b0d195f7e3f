//! The ABI shared by the hypervisor, the control domain and the host tools.
//!
//! Everything here is `#[repr(C)]` data and pure functions over byte slices:
//! this crate depends on `core` only, so the hypervisor, a guest and a host
//! tool all agree on one definition.
//!
//! Today it holds the boot-bundle format (how the loader hands files to the
//! hypervisor) and the port-I/O conventions of Mojito's test guests. The KVM
//! structures (`kvm_run`, `kvm_regs`, ...) join it with the control domain.

#![no_std]

pub mod bundle;
pub mod guest;
