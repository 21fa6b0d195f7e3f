//! The machine's CMOS real-time clock, read once at boot: the wall clock
//! behind kvmclock's `MSR_KVM_WALL_CLOCK_NEW` and the VMM's RTC (through
//! `MOJITO_INFO`). Read when status A says no update is in progress, twice
//! until two reads agree (the registers can change between reads); the
//! second had begun at most a second before, so the wall clock is that
//! much late at worst. Register layout and calendar: `abi::rtc`.

// `read_at_boot` is the bare-metal build's; the statics serve both.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

use core::sync::atomic::{AtomicU64, Ordering};

static UNIX_S: AtomicU64 = AtomicU64::new(0);
static AT_TSC: AtomicU64 = AtomicU64::new(0);

/// Polls of status A for the end of an update (an update lasts under 2 ms;
/// a machine without an RTC reads 0xff for ever).
const MAX_POLLS: u32 = 1_000_000;

/// (Unix seconds, TSC when read), or None when no RTC was read.
pub fn boot_time() -> Option<(u64, u64)> {
    let s = UNIX_S.load(Ordering::Relaxed);
    (s != 0).then(|| (s, AT_TSC.load(Ordering::Relaxed)))
}

/// Reads the RTC and notes the time; returns it (None: no RTC answered,
/// or its date makes no sense).
#[cfg(target_os = "none")]
pub fn read_at_boot() -> Option<abi::rtc::DateTime> {
    use super::instr::{inb, outb, rdtsc};
    use abi::rtc as r;
    // SAFETY: ports 0x70/0x71 are the PC's CMOS index and data ports; the
    // hypervisor owns them (no guest reaches them) and this runs at boot on
    // one CPU. Index bit 7 (NMI masking) is left clear, as firmware has it.
    let read = |index: u8| unsafe {
        outb(r::INDEX_PORT, index);
        inb(r::DATA_PORT)
    };
    let snapshot = || {
        let mut polls = 0;
        while read(r::STATUS_A) & r::A_UIP != 0 {
            polls += 1;
            if polls == MAX_POLLS {
                return None;
            }
        }
        let tsc = rdtsc();
        let mut regs = [0u8; 10];
        for (i, v) in regs.iter_mut().enumerate() {
            *v = read(i as u8);
        }
        Some((regs, read(r::CENTURY), tsc))
    };
    let mut last = snapshot()?;
    for _ in 0..4 {
        let next = snapshot()?;
        if next.0 == last.0 && next.1 == last.1 {
            break;
        }
        last = next;
    }
    let (regs, century, tsc) = last;
    let b = read(r::STATUS_B);
    // A century byte that is not 19 or 20 is not one (the FADT names the
    // real one; 0x32 is where PCs keep it): then the year pivots at 70.
    let century = match abi::rtc::decode(&[0; 10], century, b).year / 100 {
        19 | 20 => century,
        _ => 0,
    };
    let t = r::decode(&regs, century, b);
    let secs = t.unix_seconds()?;
    AT_TSC.store(tsc, Ordering::Relaxed);
    UNIX_S.store(secs, Ordering::Relaxed);
    Some(t)
}
