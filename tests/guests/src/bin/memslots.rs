//! The `memslots` guest: the memory-slot features of the KVM API, through
//! the VMM's memory-slot test (`abi::guest::MEMTEST_PORT`).
//!
//! - A read-only slot (`KVM_MEM_READONLY`): reads see its contents without
//!   an exit; a store and a read-modify-write exit as MMIO writes and change
//!   nothing.
//! - Dirty logging (`KVM_MEM_LOG_DIRTY_PAGES`, `KVM_GET_DIRTY_LOG`), exact
//!   and re-armed: the guest writes a set of pages and the VMM's log must be
//!   that set; then a second, different set, part of it written by the
//!   hypervisor itself (`rep insb`), and the log must be that set only; then
//!   nothing, and the log must be empty.
//! - Moving a slot: the memory appears at the new address with its
//!   contents, the old address is a hole (MMIO, all ones), and it comes
//!   back.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{
        LOGGED_SLOT_BASE, LOGGED_SLOT_PAGES, MEMTEST_END, MEMTEST_FETCH_DIRTY_LOG,
        MEMTEST_MOVE_AWAY, MEMTEST_MOVE_BACK, MEMTEST_PORT, MOVED_SLOT_BASE, ROM_BASE, ROM_SIZE,
        rom_byte,
    };
    use core::arch::asm;
    use core::ptr::{read_volatile, write_volatile};
    use guests::port::{exit, outb};
    use guests::{BootInfo, fail, println};

    /// A port no device decodes: `rep insb` from it writes 0xff bytes.
    const UNASSIGNED: u16 = 0x1ee;
    const PAGE: u64 = 4096;

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        readonly();
        dirty_log();
        moving();
        println!("PASS");
        exit(0)
    }

    fn rom_at(offset: u64) -> u8 {
        // SAFETY: inside the read-only slot.
        unsafe { read_volatile((ROM_BASE + offset) as *const u8) }
    }

    fn readonly() {
        let mut offset = 0;
        while offset < ROM_SIZE {
            if rom_at(offset) != rom_byte(offset) {
                fail!("read-only slot: byte {offset:#x} is {:#x}", rom_at(offset));
            }
            offset += 997;
        }
        // SAFETY: writes to the read-only slot exit as MMIO writes; the
        // VMM drops them.
        unsafe {
            write_volatile((ROM_BASE + 0x10) as *mut u32, 0xdead_beef);
            asm!(
                "add dword ptr [{a}], eax",
                "mov byte ptr [{a} + 5], 0",
                a = in(reg) ROM_BASE + 0x20,
                in("eax") 0x0101_0101u32,
                options(nostack),
            );
        }
        for offset in (0x10..0x14).chain(0x20..0x26) {
            if rom_at(offset) != rom_byte(offset) {
                fail!("read-only slot: a write changed byte {offset:#x}");
            }
        }
        println!("read-only slot: reads see its contents, writes exit as MMIO and change nothing");
    }

    /// Asks the VMM for the logged slot's dirty log; returns its pages as a
    /// bit set.
    fn fetch_log() -> u64 {
        outb(MEMTEST_PORT, MEMTEST_FETCH_DIRTY_LOG);
        let mut set = 0u64;
        loop {
            let page: u32;
            // SAFETY: port I/O only.
            unsafe {
                asm!("in eax, dx", in("dx") MEMTEST_PORT, out("eax") page,
                    options(nomem, nostack, preserves_flags))
            };
            if page == MEMTEST_END {
                return set;
            }
            if u64::from(page) >= LOGGED_SLOT_PAGES {
                fail!("dirty log: page {page} is outside the slot");
            }
            set |= 1 << page;
        }
    }

    fn write_page(page: u64, value: u64) {
        // SAFETY: inside the logged slot.
        unsafe { write_volatile((LOGGED_SLOT_BASE + page * PAGE + 8) as *mut u64, value) };
    }

    fn pages(set: u64) -> impl core::fmt::Debug {
        struct Pages(u64);
        impl core::fmt::Debug for Pages {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_list()
                    .entries((0..64).filter(|p| self.0 & (1 << p) != 0))
                    .finish()
            }
        }
        Pages(set)
    }

    fn check_log(round: u32, wrote: u64) {
        let log = fetch_log();
        println!(
            "dirty log {round}: wrote {:?}, the log {:?}",
            pages(wrote),
            pages(log)
        );
        if log != wrote {
            fail!("dirty log {round} is not the set of pages written");
        }
    }

    fn dirty_log() {
        // Whatever the slot saw before (nothing) is cleared first.
        fetch_log();
        let first = [0u64, 3, 7, 15];
        for &p in &first {
            write_page(p, 0x1000 + p);
        }
        check_log(1, first.iter().fold(0, |s, p| s | 1 << p));
        // Page 3 again, two new ones, and page 9 written by the hypervisor
        // (the data of `rep insb`).
        let second = [1u64, 3, 12];
        for &p in &second {
            write_page(p, 0x2000 + p);
        }
        // SAFETY: 16 bytes into page 9 of the logged slot.
        unsafe {
            asm!(
                "rep insb",
                in("dx") UNASSIGNED,
                inout("rdi") LOGGED_SLOT_BASE + 9 * PAGE => _,
                inout("rcx") 16u64 => _,
                options(nostack, preserves_flags),
            )
        };
        check_log(2, second.iter().fold(1 << 9, |s, p| s | 1 << p));
        check_log(3, 0);
        // SAFETY: read back from the logged slot.
        let back = unsafe { read_volatile((LOGGED_SLOT_BASE + 3 * PAGE + 8) as *const u64) };
        if back != 0x2003 {
            fail!("logged slot: page 3 holds {back:#x}");
        }
    }

    fn moving() {
        write_page(5, 0xabcd);
        outb(MEMTEST_PORT, MEMTEST_MOVE_AWAY);
        // SAFETY: the slot's new place, and its old one, now a hole (MMIO:
        // reads are all ones).
        let (moved, hole) = unsafe {
            (
                read_volatile((MOVED_SLOT_BASE + 5 * PAGE + 8) as *const u64),
                read_volatile((LOGGED_SLOT_BASE + 5 * PAGE + 8) as *const u64),
            )
        };
        if (moved, hole) != (0xabcd, u64::MAX) {
            fail!("moved slot: {moved:#x} at the new place, {hole:#x} at the old one");
        }
        // SAFETY: the slot at its new place.
        unsafe { write_volatile((MOVED_SLOT_BASE + 6 * PAGE + 8) as *mut u64, 0x6666) };
        outb(MEMTEST_PORT, MEMTEST_MOVE_BACK);
        // SAFETY: the slot back at its first place.
        let back = unsafe { read_volatile((LOGGED_SLOT_BASE + 6 * PAGE + 8) as *const u64) };
        if back != 0x6666 {
            fail!("moved back: {back:#x}");
        }
        println!("moved slot: its memory follows it, the old place reads as all ones, and back");
    }
}
