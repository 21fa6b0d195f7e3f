//! The `isolate` guest. The hypervisor runs two instances at once (two VM
//! ids) on one physical CPU, switching at each write to the yield port. Each
//! instance checks that the register state it starts with is the reset
//! state, not its peer's (DESIGN.md D2: nothing leaks between domains),
//! loads values derived from its own VM id, and after each of five yields
//! checks that every value is still its own — and that a page of its RAM,
//! at the same guest-virtual and guest-physical address in both instances
//! but a different host frame, still reads what this instance wrote: a
//! translation cached for the other VM and not flushed (or not told apart
//! by ASID/VPID) would show its peer's value.

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
        write_page(id, 0);
        for round in 1..=ROUNDS {
            yield_checking_gprs(id, round);
            check_values(&features, id, round);
            check_page(id, round);
        }
        println!("isolation ok (id {id}, {ROUNDS} rounds; registers and memory)");
        guests::port::exit(0)
    }

    /// A page both instances have at the same address.
    #[repr(C, align(4096))]
    struct Page([u64; 512]);
    static mut PAGE: Page = Page([0; 512]);

    fn page() -> *mut u64 {
        core::ptr::addr_of_mut!(PAGE) as *mut u64
    }

    /// This VM's value for `round` in the page's first and last words.
    fn page_value(id: u64, round: u32) -> u64 {
        super::state::wide(id, 0x300 + u64::from(round))
    }

    fn write_page(id: u64, round: u32) {
        // SAFETY: our own static page; one vCPU.
        unsafe {
            core::ptr::write_volatile(page(), page_value(id, round));
            core::ptr::write_volatile(page().add(511), page_value(id, round));
        }
    }

    /// The page must hold what this VM wrote before the yield; then it
    /// gets this round's value.
    fn check_page(id: u64, round: u32) {
        let want = page_value(id, round - 1);
        // SAFETY: as in `write_page`.
        let got = unsafe {
            [
                core::ptr::read_volatile(page()),
                core::ptr::read_volatile(page().add(511)),
            ]
        };
        if got != [want, want] {
            fail!("memory: our page reads {got:#x?}, expected {want:#x} (after yield {round})");
        }
        write_page(id, round);
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
