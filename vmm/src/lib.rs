//! Mojito's VMM: device models, guest loaders and the vCPU run loop
//! (DESIGN.md D5: one VMM, two back ends).
//!
//! The VMM is written against a small KVM-API trait ([`api`]). In the
//! control domain (`no_std` + `alloc`, target `x86_64-unknown-none`) the
//! back end issues Mojito hypercalls; on a Linux host (feature `std`)
//! `host` uses `/dev/kvm` through `kvm-ioctls`, so everything here is
//! tested in plain `cargo test` and the same guests' exit streams can be
//! compared between Mojito and KVM ([`record`]).
//!
//! | module | what |
//! |---|---|
//! | [`api`] | the KVM-API traits, guest-memory and run-page views |
//! | [`bench`] | the VM lifecycle benchmark (create to first exit) |
//! | [`exit`] | a `kvm_run` exit decoded once for every back end |
//! | [`vm`] | a VM: creation, loading, the run loop, stop reasons |
//! | [`acpi`] | the ACPI tables of a Linux guest's PC platform |
//! | [`devices`] | port bus, 16550 UART, i8254 PIT, CMOS RTC, debug-exit and debug-console ports, the console (lines + ring); for Linux guests the IOAPIC, PM block, PCI host bridge, 8042 reset and virtio-mmio block and console |
//! | [`loader`] | test-guest ELF, flat binary, multiboot v1, Linux bzImage and PVH `vmlinux` |
//! | [`policy`] | CPUID table and MSR filter (Mojito's look) |
//! | [`record`] | the exit stream and what the differential test leaves out |
//! | `host` | the Linux `/dev/kvm` back end (feature `std`) |

#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

extern crate alloc;

pub mod acpi;
pub mod api;
pub mod bench;
pub mod clock;
pub mod devices;
pub mod exit;
#[cfg(test)]
mod fake;
#[cfg(feature = "std")]
pub mod host;
pub mod loader;
pub mod policy;
pub mod record;
pub mod vm;

pub use api::{GuestRam, System, Vcpu, Vm as VmApi};
pub use vm::{CpuidPolicy, Outcome, StopReason, Vm, VmConfig};
