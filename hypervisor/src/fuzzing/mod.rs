//! Host-side harnesses for `cargo fuzz` (the `fuzz/` crate, feature
//! `fuzzing`) and the host unit tests: a `Backend` without hardware
//! (`backend`) and the hypercall target (`hypercall`), kept here because
//! they reach crate internals (the control domain's objects, the frame
//! pool) that a separate crate cannot. Never part of the hypervisor
//! itself: nothing on `x86_64-unknown-none` enables the feature.
//!
//! A harness reports a broken invariant by panicking: that is what
//! libFuzzer and the test runner catch.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
pub mod hypercall;
