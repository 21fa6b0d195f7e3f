//! The `soak` guest (issue 10's soak test, `cargo xtask test --slow`):
//! ten million exits of mixed kinds, in rounds of ten — four unknown
//! hypercalls and four `in` from the POST port (both answered by the
//! hypervisor), one write to the counter port and one MMIO read of a hole
//! (both forwarded to the VMM) — then it prints how many of each it made,
//! so that the test can check the hypervisor's and the VMM's exit counters
//! against them (`tests/src/slow.rs`). It makes no other hypercall and
//! touches neither port nor the hole anywhere else.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{BENCH_MMIO_HOLE, COUNTER_PORT, POST_PORT};
    use core::arch::asm;
    use guests::cpu::cpuid;
    use guests::port::{exit, inb, outb};
    use guests::{BootInfo, println};

    /// Rounds of ten exits.
    const ROUNDS: u64 = 1_000_000;
    /// A hypercall number neither KVM nor Mojito knows (-KVM_ENOSYS).
    const UNKNOWN_HYPERCALL: u64 = 0x7fff_0001;

    guests::entry!(run);

    #[inline(always)]
    fn hypercall(intel: bool) {
        // SAFETY: an unknown hypercall only sets RAX (to -KVM_ENOSYS).
        unsafe {
            if intel {
                asm!("vmcall", inlateout("rax") UNKNOWN_HYPERCALL => _, options(nostack));
            } else {
                asm!("vmmcall", inlateout("rax") UNKNOWN_HYPERCALL => _, options(nostack));
            }
        }
    }

    fn run(_boot: BootInfo) -> ! {
        let intel = cpuid(0, 0).ebx == u32::from_le_bytes(*b"Genu");
        println!("soak: {} rounds of 10 exits", ROUNDS);
        let (mut hypercalls, mut posts, mut outs, mut mmios) = (0u64, 0u64, 0u64, 0u64);
        for round in 0..ROUNDS {
            for _ in 0..4 {
                hypercall(intel);
                hypercalls += 1;
                inb(POST_PORT);
                posts += 1;
            }
            outb(COUNTER_PORT, round as u8);
            outs += 1;
            // SAFETY: the first GiB is identity-mapped; the address is a
            // hole that exits to the VMM, which returns all ones.
            let v = unsafe { core::ptr::read_volatile(BENCH_MMIO_HOLE as *const u32) };
            mmios += 1;
            if v != u32::MAX {
                println!("FAIL: the MMIO hole read {v:#x}, not all ones");
                exit(1);
            }
            if round % (ROUNDS / 10) == 0 {
                println!("soak: round {round}");
            }
        }
        println!(
            "soak: done: {hypercalls} hypercalls, {posts} reads of port {POST_PORT:#x}, \
             {outs} writes to port {COUNTER_PORT:#x}, {mmios} MMIO reads"
        );
        println!("PASS");
        exit(0)
    }
}
