//! The `isolate` guest. The hypervisor runs two instances at once (two VM
//! ids) on one physical CPU, switching at each write to the yield port. Each
//! instance checks that the register state it starts with is the reset
//! state, not its peer's (DESIGN.md D2: nothing leaks between domains),
//! loads values derived from its own VM id, and after each of five yields
//! checks that every value is still its own.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod state;

#[cfg(target_os = "none")]
mod guest {
    use super::state::{Features, check_initial, check_values, load_values};
    use abi::guest::YIELD_PORT;
    use core::arch::asm;
    use guests::{BootInfo, fail, println};

    const ROUNDS: u32 = 5;

    guests::entry!(run);

    fn run(boot: BootInfo) -> ! {
        let id = boot.vm_id;
        let features = Features::enable();
        let checked = check_initial(&features);
        println!("initial state clean (id {id}): {checked}");
        load_values(&features, id);
        for round in 1..=ROUNDS {
            yield_checking_gprs(id, round);
            check_values(&features, id, round);
        }
        println!("isolation ok (id {id}, {ROUNDS} rounds)");
        guests::port::exit(0)
    }

    /// The general registers this code can hand to `asm!`: all but RSP, and
    /// RBX and RBP, which LLVM reserves.
    const GPRS: [&str; 13] = [
        "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    ];

    /// Writes the yield port with each GPR holding a value of this VM's, and
    /// checks them when the VM runs again.
    fn yield_checking_gprs(id: u64, round: u32) {
        let mut want: [u64; 13] =
            core::array::from_fn(|i| super::state::wide(id, 0x200 + i as u64));
        // OUT takes the port from DX; RDX's upper bits still carry the tag.
        want[2] = want[2] & !0xffff | u64::from(YIELD_PORT);
        let mut r = want;
        // SAFETY: OUT to the yield port touches no memory; every register
        // it names is an operand, so the compiler knows they change.
        unsafe {
            asm!(
                "out dx, al",
                inout("rax") r[0], inout("rcx") r[1], inout("rdx") r[2], inout("rsi") r[3],
                inout("rdi") r[4], inout("r8") r[5], inout("r9") r[6], inout("r10") r[7],
                inout("r11") r[8], inout("r12") r[9], inout("r13") r[10], inout("r14") r[11],
                inout("r15") r[12],
                options(nomem, nostack, preserves_flags),
            );
        }
        for ((name, got), want) in GPRS.iter().zip(r).zip(want) {
            if got != want {
                fail!("{name} = {got:#x}, expected {want:#x} (after yield {round})");
            }
        }
    }
}
