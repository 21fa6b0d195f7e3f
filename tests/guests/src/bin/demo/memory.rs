//! Guest RAM: every word from the end of the image to the end of RAM takes
//! a value derived from its address and reads it back (see the library's
//! `pattern`). The stack and page tables are in the image's .bss, below.

use core::ptr::{addr_of, read_volatile, write_volatile};
use guests::pattern::word_at;
use guests::{fail, println};

/// Every 256 KiB, gives the CPU to the next VM: a loop this long without
/// an exit to the VMM would look like a guest that never exits under a
/// slow emulator (the VMM stops those after 10 of the hypervisor's 10 ms
/// ticks; Bochs runs 50 million instructions a second).
fn breathe(addr: u64) {
    if addr.is_multiple_of(256 << 10) {
        guests::port::yield_cpu();
    }
}

pub fn check(ram_size: u64) {
    unsafe extern "C" {
        /// From `link.ld`: the first byte after the image, page-aligned.
        static __image_end: u8;
    }
    let start = addr_of!(__image_end) as u64;
    let end = ram_size;
    if end <= start {
        fail!("memory: RAM ends at {end:#x}, inside the image (ends {start:#x})");
    }
    let words = (start..end).step_by(8);
    for addr in words.clone() {
        // SAFETY: [start, end) is guest RAM that no Rust object uses: it
        // lies above the image, and the identity map covers the first GiB.
        unsafe { write_volatile(addr as *mut u64, word_at(addr)) };
        breathe(addr);
    }
    for addr in words {
        breathe(addr);
        // SAFETY: as above.
        let read = unsafe { read_volatile(addr as *const u64) };
        if read != word_at(addr) {
            fail!(
                "memory: {addr:#x} reads {read:#x}, not {:#x}",
                word_at(addr)
            );
        }
    }
    let kib = (end - start) / 1024;
    println!(
        "memory: {}.{:02} MiB ({start:#x}-{end:#x}) written and read back",
        kib / 1024,
        kib % 1024 * 100 / 1024
    );
}
