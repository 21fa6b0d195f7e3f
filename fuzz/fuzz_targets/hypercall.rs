//! The control domain's hypercalls, the KVM API (`control::hypercall`:
//! decode, then invoke), on a fake back end with arbitrary register values
//! and argument bytes: a sequence of calls (make a VM, give it memory, a
//! vCPU, get and set its registers, MSRs, CPUID, dirty log, MSR filter,
//! Xen config, close …) on handles made earlier or junk. No call may
//! panic, every error must be an errno of the ABI, and closing every
//! handle at the end must give back every frame. The input format, the
//! invariants and what is left out (`KVM_RUN`) are in
//! `hypervisor::fuzzing::hypercall`.
//!
//! Every million inputs it prints how many calls got past the handle and
//! request checks (the argument's checks come next) and how they ended.

#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use hypervisor::fuzzing::hypercall;
use libfuzzer_sys::fuzz_target;

static RUNS: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    hypercall::check(data);
    if RUNS.fetch_add(1, Ordering::Relaxed) % 1_000_000 == 999_999 {
        eprintln!("{}", hypercall::tally());
    }
});
