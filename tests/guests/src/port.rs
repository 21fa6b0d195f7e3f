//! Port I/O and the ports of the guest convention (`abi::guest`).

use abi::guest::{EXIT_PORT, YIELD_PORT};
use core::arch::asm;

/// OUT of one byte.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O from a test guest reaches only the hypervisor's
    // device set; it cannot touch the guest's memory or the Rust stack.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// IN of one byte.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as in `outb`.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Ends the VM with `status` (0 = pass).
pub fn exit(status: u8) -> ! {
    outb(EXIT_PORT, status);
    // Only reached if the hypervisor ignored the exit port: HLT with
    // interrupts off ends the VM too ("halted"), and a test sees the status
    // never arrived.
    loop {
        // SAFETY: HLT changes no memory; interrupts stay disabled.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Gives the physical CPU to the next VM; returns when this one runs again.
pub fn yield_cpu() {
    outb(YIELD_PORT, 0);
}

/// The first two entries of the VMM's dirty log of its logged slot
/// (`abi::guest::MEMTEST_PORT`: page numbers, then `MEMTEST_END` for ever).
/// Always two reads, so that the exit stream has the same shape whatever
/// the log holds.
pub fn dirty_log_head() -> [u32; 2] {
    use abi::guest::{MEMTEST_FETCH_DIRTY_LOG, MEMTEST_PORT};
    outb(MEMTEST_PORT, MEMTEST_FETCH_DIRTY_LOG);
    core::array::from_fn(|_| {
        let v: u32;
        // SAFETY: port I/O only.
        unsafe {
            asm!("in eax, dx", in("dx") MEMTEST_PORT, out("eax") v,
                options(nomem, nostack, preserves_flags))
        };
        v
    })
}
