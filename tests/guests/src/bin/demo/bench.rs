//! Exit round trips, measured with the TSC: CPUID, which the hypervisor
//! always answers itself, and an IN from an unassigned port, which goes to
//! whoever runs the guest's devices (the control domain's VMM, or the
//! hypervisor's built-in set when it runs the guest itself). Benchmark lines
//! for the bench tooling, never pass/fail checks.

use guests::cpu::{cpuid, rdtsc_fenced};
use guests::port::inb;
use guests::println;

/// A port no device of Mojito's answers (reads as all ones).
const UNASSIGNED_PORT: u16 = 0x1ee;

const ITERATIONS: u64 = 1000;

pub fn cpuid_round_trip() {
    // Warm the caches and TLB on both sides of the exit first.
    for _ in 0..10 {
        cpuid(0, 0);
    }
    // CPUID is serializing itself; the fences in `rdtsc_fenced` keep the
    // two TSC reads from moving into or out of the loop.
    let start = rdtsc_fenced();
    for _ in 0..ITERATIONS {
        cpuid(0, 0);
    }
    let end = rdtsc_fenced();
    println!(
        "cpuid round trip: {} TSC ticks ({ITERATIONS} iterations)",
        (end - start) / ITERATIONS
    );
}

pub fn port_round_trip() {
    for _ in 0..10 {
        inb(UNASSIGNED_PORT);
    }
    let start = rdtsc_fenced();
    for _ in 0..ITERATIONS {
        inb(UNASSIGNED_PORT);
    }
    let end = rdtsc_fenced();
    println!(
        "port {UNASSIGNED_PORT:#x} round trip: {} TSC ticks ({ITERATIONS} iterations)",
        (end - start) / ITERATIONS
    );
}
