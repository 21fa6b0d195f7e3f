//! The `bench` guest (issue 9): exit round trips timed with the TSC, in the
//! style of kvm-unit-tests' `x86/vmexit.c`. Each case runs its instruction
//! in a loop of 32, 64, 128 … iterations until one loop takes at least
//! `GOAL` ticks, does that `TRIES` times and prints the fastest loop's
//! ticks per iteration (a timer interrupt that lands inside a loop adds a
//! control-domain round trip; the fastest loop is the one it missed).
//! Under QEMU `-icount shift=0,align=off` and in Bochs a tick is one
//! instruction, so the figures are path lengths, the same on every run.
//!
//! One line per case, `bench NAME: T.T ticks per round trip (N iterations)`,
//! then `bench done`; `cargo xtask bench` reads them, and the boot tests
//! check each case prints a number. The loop's own instructions (counter,
//! compare, branch and the case's register setup: 4 to 6) are in every
//! figure, the floor's included.
//!
//! | case | exit | handled by |
//! |---|---|---|
//! | `floor` | VMCALL/VMMCALL `BENCH_FLOOR_HYPERCALL` | hypervisor: steps over it, nothing else |
//! | `cpuid` | CPUID leaf 0 | hypervisor |
//! | `hypercall` | VMCALL/VMMCALL, unknown number | hypervisor (-KVM_ENOSYS) |
//! | `in-post` | `in al, 0x80` | hypervisor |
//! | `in-vmm` | `in al, 0x1ee` (unassigned) | the control domain's VMM |
//! | `mmio-vmm` | a read of `BENCH_MMIO_HOLE` | the control domain's VMM |
//! | `rdmsr-vmm` | RDMSR of `VMM_MSR_BASE` | the control domain's VMM (a userspace MSR exit) |

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{BENCH_FLOOR_HYPERCALL, BENCH_MMIO_HOLE, POST_PORT, VMM_MSR_BASE};
    use core::arch::asm;
    use guests::cpu::{cpuid, rdmsr, rdtsc_fenced};
    use guests::port::{exit, inb};
    use guests::{BootInfo, println};

    /// A loop is long enough once it takes this many ticks.
    const GOAL: u64 = 1 << 20;
    /// Loops per case; the fastest counts.
    const TRIES: u32 = 3;
    /// No loop runs more iterations than this (eight times more with
    /// `ONLY`): a back end whose TSC stands still must not keep the guest
    /// forever.
    const MAX_ITERATIONS: u64 = 1 << 20;
    /// A port no device of Mojito's or of the VMM's answers.
    const UNASSIGNED_PORT: u16 = 0x1ee;
    /// A hypercall number neither KVM nor Mojito knows.
    const UNKNOWN_HYPERCALL: u64 = 0x7fff_0000;

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        let intel = cpuid(0, 0).ebx == u32::from_le_bytes(*b"Genu");
        // The vendor's instruction is chosen outside the loop: a branch
        // inside it would count in the figure.
        if intel {
            measure("floor", || vmcall(BENCH_FLOOR_HYPERCALL));
        } else {
            measure("floor", || vmmcall(BENCH_FLOOR_HYPERCALL));
        }
        measure("cpuid", || {
            cpuid(0, 0);
        });
        if intel {
            measure("hypercall", || vmcall(UNKNOWN_HYPERCALL));
        } else {
            measure("hypercall", || vmmcall(UNKNOWN_HYPERCALL));
        }
        measure("in-post", || {
            inb(POST_PORT);
        });
        measure("in-vmm", || {
            inb(UNASSIGNED_PORT);
        });
        measure("mmio-vmm", || {
            // SAFETY: the first GiB is identity-mapped; the address is a
            // hole that exits to the VMM, which returns all ones.
            unsafe { core::ptr::read_volatile(BENCH_MMIO_HOLE as *const u32) };
        });
        measure("rdmsr-vmm", || {
            rdmsr(VMM_MSR_BASE);
        });
        println!("bench done");
        exit(0)
    }

    /// VMCALL (Intel) with `nr` in RAX.
    #[inline(always)]
    fn vmcall(nr: u64) {
        // SAFETY: the hypercall only exits to the hypervisor, which answers
        // in RAX (clobbered here) and preserves everything else.
        unsafe { asm!("vmcall", inlateout("rax") nr => _, options(nostack)) };
    }

    /// VMMCALL (AMD) with `nr` in RAX.
    #[inline(always)]
    fn vmmcall(nr: u64) {
        // SAFETY: as `vmcall`.
        unsafe { asm!("vmmcall", inlateout("rax") nr => _, options(nostack)) };
    }

    /// Set at build time (`MOJITO_BENCH_ONLY=cpuid cargo xtask bench`):
    /// run only this case, for 8 times as long — for profiling one exit
    /// path with QEMU's `-d exec` trace.
    const ONLY: Option<&str> = option_env!("MOJITO_BENCH_ONLY");

    /// Times `f` as the module says and prints its line.
    #[inline(always)]
    fn measure(name: &str, f: impl Fn()) {
        let goal = match ONLY {
            Some(only) if only == name => GOAL * 8,
            Some(_) => return,
            None => GOAL,
        };
        for _ in 0..10 {
            f();
        }
        // Ticks × 10 per iteration, of the fastest loop.
        let mut best: Option<(u64, u64)> = None;
        for _ in 0..TRIES {
            let mut n = 32;
            let (ticks, n) = loop {
                let start = rdtsc_fenced();
                for _ in 0..n {
                    f();
                }
                let ticks = rdtsc_fenced().wrapping_sub(start);
                if ticks >= goal || n >= MAX_ITERATIONS * 8 {
                    break (ticks, n);
                }
                n *= 2;
            };
            let tenths = ticks * 10 / n;
            if best.is_none_or(|(b, _)| tenths < b) {
                best = Some((tenths, n));
            }
        }
        if let Some((tenths, n)) = best {
            println!(
                "bench {name}: {}.{} ticks per round trip ({n} iterations)",
                tenths / 10,
                tenths % 10
            );
        }
    }
}
