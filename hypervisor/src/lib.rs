//! Mojito: a small Type-1 hypervisor for x86-64 with Intel VMX and AMD SVM
//! back ends. See ARCHITECTURE.md for the map of this crate.
//!
//! Invariant: nothing a guest does may panic this kernel. The crate denies
//! `unwrap`, `expect` and `panic!`; guest faults become injected exceptions
//! or a stopped VM with a reason.

#![cfg_attr(not(test), no_std)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

extern crate alloc;

pub mod arch;
pub mod boot;
pub mod config;
pub mod control;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod guest;
pub mod log;
pub mod mm;
pub mod sched;
pub mod vcpu;
pub mod virt;
pub mod vm;
