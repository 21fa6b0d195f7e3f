//! The `flood` guest (issue 10's soak test, `cargo xtask test --slow`):
//! prints `LINES` numbered lines of exactly `LINE_BYTES` bytes each (the
//! newline included) as fast as it can, far more than the VMM's 16 KiB
//! console ring holds, then stops. The test checks that every line reached
//! the serial console in order while the ring had room, and that the ring
//! reports exactly the bytes it dropped.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use guests::port::exit;
    use guests::{BootInfo, println};

    /// Lines, and bytes per line with its newline (`flood 00000 ` + 51
    /// letters + `\n`).
    const LINES: u32 = 2000;
    const LINE_BYTES: usize = 64;

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        const ALPHABET: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
        for i in 0..LINES {
            let mut text = [0u8; LINE_BYTES - 13];
            for (j, c) in text.iter_mut().enumerate() {
                *c = ALPHABET[(i as usize + j) % 26];
            }
            // `flood NNNNN ` is 12 bytes; the newline makes 64.
            let text = core::str::from_utf8(&text).unwrap_or("");
            println!("flood {i:05} {text}");
        }
        exit(0)
    }
}
