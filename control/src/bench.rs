//! The VM lifecycle benchmark (issue 9, item 2) on the Mojito back end:
//! `vmm::bench::lifecycle` timed with the TSC, which counts instructions
//! under QEMU `-icount` and Bochs. One line for `cargo xtask bench`, which
//! the boot tests also require (its smoke check).

use core::arch::x86_64::{_mm_lfence, _rdtsc};

use crate::mojito::Mojito;
use crate::println;

/// The TSC, fenced so that the steps cannot move across the reads.
fn tsc() -> u64 {
    // SAFETY: LFENCE and RDTSC have no preconditions in the control domain
    // (CPL 0, CR4.TSD has no effect there).
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}

/// Runs the lifecycle once and prints its steps.
pub fn lifecycle() {
    match vmm::bench::lifecycle(&Mojito, tsc) {
        Ok(l) => println!(
            "control: bench lifecycle: {} TSC ticks to the first exit (create_vm {}, memory {}, \
             create_vcpu {}, run {}), close {}",
            l.to_first_exit(),
            l.create_vm,
            l.memory,
            l.create_vcpu,
            l.first_exit,
            l.close
        ),
        Err(e) => println!("control: FAIL bench lifecycle: {e}"),
    }
}
