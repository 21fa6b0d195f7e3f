//! The `hostio` guest (the malicious-guest suite's string I/O, issue 10):
//! INS/OUTS with huge counts, backwards, across a page, and with
//! unmapped or non-canonical buffers, against a port no device claims
//! (the VMM answers all ones). Each case's expected outcome is in the
//! table of `run`; a fault must leave RCX, RDI and RSI as the instruction
//! left them (no element done past the fault), and the guest, the VMM and
//! the hypervisor go on. Runs only under the control domain (string I/O
//! needs a VMM).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use core::arch::asm;
    use guests::fault::{GP, Vector};
    use guests::{BootInfo, fail, println, try_asm};

    guests::entry!(run);

    const PF: Vector = 14;
    /// A port no device claims: reads all ones, writes are counted.
    const PORT: u16 = 0x2f4;
    /// 64 KiB of free guest RAM (the image and its stack sit lower).
    const BUF: u64 = 0x30_0000;
    const LEN: u64 = 0x1_0000;
    /// Unmapped in the guest's page tables (only the first GiB is).
    const UNMAPPED: u64 = 0x0000_7f00_0000_0000;
    const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
    /// A count no buffer could hold.
    const HUGE: u64 = 1 << 48;

    fn fill(v: u8) {
        // SAFETY: BUF..BUF+LEN is our own free RAM (identity-mapped).
        unsafe { core::ptr::write_bytes(BUF as *mut u8, v, LEN as usize) };
    }

    fn all(v: u8, from: u64, len: u64) -> bool {
        // SAFETY: as in `fill`; the callers stay inside BUF..BUF+LEN.
        (from..from + len).all(|a| unsafe { core::ptr::read_volatile(a as *const u8) } == v)
    }

    /// `rep insb` of `count` bytes to `rdi`: (fault, RCX, RDI) afterwards.
    fn rep_insb(rdi: u64, count: u64) -> (Result<(), Vector>, u64, u64) {
        let (mut c, mut d) = (count, rdi);
        // SAFETY: the buffer is ours or faults before anything is written.
        let got = unsafe { try_asm!("rep insb"; in("dx") PORT, inout("rcx") c, inout("rdi") d) };
        (got, c, d)
    }

    /// `rep outsb` of `count` bytes from `rsi`: (fault, RCX, RSI).
    fn rep_outsb(rsi: u64, count: u64) -> (Result<(), Vector>, u64, u64) {
        let (mut c, mut s) = (count, rsi);
        // SAFETY: OUTS only reads memory.
        let got = unsafe { try_asm!("rep outsb"; in("dx") PORT, inout("rcx") c, inout("rsi") s) };
        (got, c, s)
    }

    fn check<T: PartialEq + core::fmt::Debug>(name: &str, got: T, want: T) {
        if got != want {
            fail!("{name}: expected {want:?}, got {got:?}");
        }
    }

    fn run(_boot: BootInfo) -> ! {
        // 64 KiB in, forwards: every byte all ones, RCX 0.
        fill(0);
        check(
            "rep insb 64 KiB",
            rep_insb(BUF, LEN),
            (Ok(()), 0, BUF + LEN),
        );
        if !all(0xff, BUF, LEN) {
            fail!("rep insb 64 KiB: not every byte came from the port");
        }
        // 64 KiB out.
        check(
            "rep outsb 64 KiB",
            rep_outsb(BUF, LEN),
            (Ok(()), 0, BUF + LEN),
        );
        // 4 KiB in, backwards (DF = 1), ending exactly at the buffer's
        // start; the byte below must stay.
        fill(0);
        let (mut c, mut d) = (0x1000u64, BUF + 0x1000);
        // SAFETY: writes BUF+1..=BUF+0x1000, ours; DF is cleared again.
        unsafe {
            asm!("std", "rep insb", "cld", in("dx") PORT, inout("rcx") c, inout("rdi") d);
        }
        check("std; rep insb 4 KiB", (c, d), (0, BUF));
        if !all(0xff, BUF + 1, 0x1000) || !all(0, BUF, 1) {
            fail!("std; rep insb 4 KiB: wrong bytes written");
        }
        // Dwords straddling a page boundary inside RAM.
        fill(0);
        let (mut c, mut d) = (3u64, BUF + 0xffe);
        // SAFETY: writes 12 bytes of our buffer.
        unsafe { asm!("rep insd", in("dx") PORT, inout("rcx") c, inout("rdi") d) };
        check("rep insd across a page", (c, d), (0, BUF + 0xffe + 12));
        if !all(0xff, BUF + 0xffe, 12) || !all(0, BUF + 0xffe + 12, 1) {
            fail!("rep insd across a page: wrong bytes written");
        }
        // Huge counts into and out of unmapped memory: #PF at once, nothing
        // done, registers as they were.
        check(
            "rep insb, huge count, unmapped buffer",
            rep_insb(UNMAPPED, HUGE),
            (Err(PF), HUGE, UNMAPPED),
        );
        check(
            "rep outsb, huge count, unmapped buffer",
            rep_outsb(UNMAPPED, HUGE),
            (Err(PF), HUGE, UNMAPPED),
        );
        // A non-canonical buffer: #GP, nothing done.
        check(
            "rep insb, non-canonical buffer",
            rep_insb(NON_CANONICAL, 16),
            (Err(GP), 16, NON_CANONICAL),
        );
        // Zero count: nothing at all.
        check(
            "rep insb, count 0",
            rep_insb(UNMAPPED, 0),
            (Ok(()), 0, UNMAPPED),
        );
        println!(
            "string i/o: 64 KiB in and out, backwards, across a page; huge counts into unmapped and non-canonical buffers fault with nothing done"
        );
        println!("PASS");
        guests::port::exit(0)
    }
}
