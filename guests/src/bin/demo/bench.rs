//! The CPUID round trip: a guest instruction that always exits and that the
//! hypervisor answers itself, so its cost is one exit's path. A benchmark
//! line for the bench tooling, never a pass/fail check.

use guests::cpu::{cpuid, rdtsc_fenced};
use guests::println;

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
