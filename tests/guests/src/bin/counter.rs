//! The `counter` guest, for the operator's shell test: writes
//! `abi::guest::COUNTER_PORT`, which no device claims, exactly
//! `COUNTER_WRITES` times, says so, and then echoes every byte that arrives
//! on its COM1 (`console NAME` types there), yielding the CPU between polls
//! so that it runs until it is paused or destroyed.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{COUNTER_PORT, COUNTER_WRITES};
    use guests::port::{inb, outb, yield_cpu};
    use guests::{BootInfo, println};

    /// COM1's receive buffer and line status register; LSR bit 0 is "data
    /// ready" (16550 datasheet).
    const COM1_RBR: u16 = 0x3f8;
    const COM1_LSR: u16 = 0x3fd;
    const LSR_DATA_READY: u8 = 1;

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        for _ in 0..COUNTER_WRITES {
            outb(COUNTER_PORT, 0x55);
        }
        println!("counter: wrote port {COUNTER_PORT:#x} {COUNTER_WRITES} times");
        loop {
            while inb(COM1_LSR) & LSR_DATA_READY != 0 {
                let b = inb(COM1_RBR);
                if b.is_ascii_graphic() {
                    println!("counter: got {}", char::from(b));
                } else {
                    println!("counter: got byte {b:#04x}");
                }
            }
            yield_cpu();
        }
    }
}
