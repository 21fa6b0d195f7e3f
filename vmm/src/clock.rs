//! Time for the device models: a monotonic clock for the PIT and a wall
//! clock for the RTC. Each back end brings its own ([`crate::api::System::clock`]):
//! the host's `CLOCK_MONOTONIC` and `CLOCK_REALTIME` under Linux; under
//! Mojito the TSC at the frequency the hypervisor calibrated, and the wall
//! clock the hypervisor read from the machine's RTC at boot.

use core::sync::atomic::{AtomicU64, Ordering};

pub const NS_PER_SEC: u64 = 1_000_000_000;

/// A source of time.
pub trait Clock: Send + Sync {
    /// Nanoseconds on a clock that never goes back (any origin).
    fn monotonic_ns(&self) -> u64;
    /// Nanoseconds since the Unix epoch (UTC); None where the back end
    /// has no wall clock (the RTC then counts from 1970-01-01 on the
    /// monotonic clock).
    fn wall_ns(&self) -> Option<u64>;
}

/// A clock that moves only when told to: for the device models' tests and
/// the scripted back end.
#[derive(Debug, Default)]
pub struct ManualClock {
    ns: AtomicU64,
    wall_at_zero: AtomicU64,
}

impl ManualClock {
    /// At monotonic 0, with the wall clock at `wall_ns` then.
    pub fn new(wall_ns: u64) -> Self {
        Self {
            ns: AtomicU64::new(0),
            wall_at_zero: AtomicU64::new(wall_ns),
        }
    }

    /// Moves time on by `ns`.
    pub fn advance(&self, ns: u64) {
        self.ns.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic_ns(&self) -> u64 {
        self.ns.load(Ordering::SeqCst)
    }

    fn wall_ns(&self) -> Option<u64> {
        Some(self.wall_at_zero.load(Ordering::SeqCst) + self.monotonic_ns())
    }
}

/// A clock made from a cycle counter of known frequency (the TSC under
/// Mojito) and, optionally, the wall time at one reading of it.
#[derive(Clone, Copy, Debug)]
pub struct CycleClock {
    /// Counter ticks per millisecond (the frequency in kHz); not 0.
    pub khz: u64,
    /// (counter, Unix ns) at one moment, if the wall time is known.
    pub wall_at: Option<(u64, u64)>,
    /// Reads the counter.
    pub read: fn() -> u64,
}

impl CycleClock {
    /// Nanoseconds of `cycles` counter ticks.
    pub fn ns(&self, cycles: u64) -> u64 {
        (u128::from(cycles) * 1_000_000 / u128::from(self.khz.max(1))) as u64
    }
}

impl Clock for CycleClock {
    fn monotonic_ns(&self) -> u64 {
        self.ns((self.read)())
    }

    fn wall_ns(&self) -> Option<u64> {
        let (at, wall) = self.wall_at?;
        Some(wall + self.ns((self.read)().wrapping_sub(at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_clock_scales_by_the_frequency() {
        fn counter() -> u64 {
            3_000_000_000
        }
        let c = CycleClock {
            khz: 1_500_000,
            wall_at: Some((1_500_000_000, 7 * NS_PER_SEC)),
            read: counter,
        };
        assert_eq!(c.monotonic_ns(), 2 * NS_PER_SEC);
        assert_eq!(c.wall_ns(), Some(8 * NS_PER_SEC));
        let m = ManualClock::new(5);
        m.advance(10);
        assert_eq!((m.monotonic_ns(), m.wall_ns()), (10, Some(15)));
    }
}
