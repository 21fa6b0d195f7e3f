//! The i8254 programmable interval timer at ports 0x40–0x43, and port 0x61
//! (system control port B), which gates channel 2 and shows its output —
//! what Linux and Mojito itself calibrate the TSC against.
//!
//! Counts follow the back end's monotonic clock at 1.193182 MHz: a count
//! is computed from the time it was loaded, never ticked, so a guest that
//! polls sees the same rate however often it exits. All six modes count
//! (Intel 8254 datasheet, "Mode definitions"); the counter latch and
//! read-back commands, the three access modes and the read/write flip-flops
//! are modelled. Not modelled: BCD counting (the bit is kept and reported
//! in the status byte, but counts are binary; no PC software uses BCD), and
//! channel 0's IRQ 0 (the VMM raises no interrupts yet; the Linux issue
//! wires it). Channel 1 (DRAM refresh on the PC/AT) counts like the others,
//! and port 0x61's refresh bit toggles every 15.09 µs as on a PC.
//!
//! A new count for a running mode-2 or mode-3 channel takes effect at
//! once rather than at the end of the current period (a mode-1 or mode-5
//! pulse in progress does keep its count, as on the chip).

use alloc::sync::Arc;

use super::{Effect, PortDevice};
use crate::clock::{Clock, NS_PER_SEC};

/// The PIT's input clock (Intel 8254 datasheet; 14.31818 MHz / 12).
pub const PIT_HZ: u64 = 1_193_182;
/// Ports: channels 0–2, then the mode/command register.
pub const PIT_BASE: u16 = 0x40;
pub const PIT_LEN: u16 = 4;
/// System control port B.
pub const PORT_B: u16 = 0x61;

/// Port B bits: 0 gates channel 2, 1 routes it to the speaker (both
/// read/write), 4 toggles with DRAM refresh, 5 is channel 2's OUT (both
/// read-only).
const B_GATE2: u8 = 1 << 0;
const B_WRITABLE: u8 = 0x0f;
const B_REFRESH: u8 = 1 << 4;
const B_OUT2: u8 = 1 << 5;
/// The refresh bit's half period: 15.0857 µs (channel 1's usual count of 18).
const REFRESH_NS: u64 = 15_086;

/// Control word fields (datasheet "Control Word Format"): SC in 7:6 (3 is
/// the read-back command), RW in 5:4 (0 is the counter latch command), M in
/// 3:1, BCD in 0.
const SC_READ_BACK: u8 = 3;
/// Read-back: bit 5 clear latches counts, bit 4 clear latches status;
/// bits 3:1 select channels 2:0.
const RB_NO_COUNT: u8 = 1 << 5;
const RB_NO_STATUS: u8 = 1 << 4;
/// Status byte: OUT in bit 7, NULL COUNT in bit 6, then RW, M, BCD as
/// programmed.
const STATUS_OUT: u8 = 1 << 7;
const STATUS_NULL: u8 = 1 << 6;

/// The access mode (RW bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Low = 1,
    High = 2,
    LowHigh = 3,
}

/// One counter.
#[derive(Clone, Copy, Debug)]
struct Channel {
    mode: u8,
    access: Access,
    bcd: bool,
    /// The count written (0 means 65536).
    reload: u32,
    /// A count written while a mode 1 or 5 pulse runs: it takes effect at
    /// the next trigger (the pulse in progress is unaffected).
    next_reload: Option<u32>,
    /// Whether a count has been written since the control word.
    loaded: bool,
    /// Counting since this monotonic time (None: stopped or waiting for a
    /// gate trigger).
    since: Option<u64>,
    /// Ticks counted before `since` (a gate pause in modes 0 and 4).
    before: u64,
    /// The gate input (always high for channels 0 and 1).
    gate: bool,
    /// The low byte of a count being written in `LowHigh` access.
    write_low: Option<u8>,
    /// A read in `LowHigh` access has returned the low byte.
    read_high_next: bool,
    latched: Option<u16>,
    /// The latched count's high byte is next.
    latched_high_next: bool,
    status: Option<u8>,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Self {
            mode: 0,
            access: Access::LowHigh,
            bcd: false,
            reload: 0x1_0000,
            next_reload: None,
            loaded: false,
            since: None,
            before: 0,
            gate,
            write_low: None,
            read_high_next: false,
            latched: None,
            latched_high_next: false,
            status: None,
        }
    }

    /// Modes 1 and 5 start on a rising gate, not on a count's load; modes
    /// 6 and 7 are 2 and 3 (datasheet: "X" bit).
    fn effective_mode(&self) -> u8 {
        if self.mode >= 6 {
            self.mode - 4
        } else {
            self.mode
        }
    }

    fn gate_triggered(&self) -> bool {
        matches!(self.effective_mode(), 1 | 5)
    }

    /// Ticks counted at `now`.
    fn ticks(&self, now: u64) -> u64 {
        self.before
            + self.since.map_or(0, |s| {
                (u128::from(now.saturating_sub(s)) * u128::from(PIT_HZ) / u128::from(NS_PER_SEC))
                    as u64
            })
    }

    /// (count, OUT) at `now`.
    fn state(&self, now: u64) -> (u16, bool) {
        let n = u64::from(self.reload);
        if !self.loaded {
            // After a control word: OUT low in mode 0, high in the others;
            // the count is undefined (the last one shows).
            return ((self.reload & 0xffff) as u16, self.effective_mode() != 0);
        }
        let started = self.since.is_some() || self.before > 0;
        let t = self.ticks(now);
        match self.effective_mode() {
            // Interrupt on terminal count / one-shot: OUT low until the
            // count reaches 0, then high; the counter wraps and goes on.
            0 | 1 => {
                let count = (n.wrapping_sub(t) & 0xffff) as u16;
                let out = if self.effective_mode() == 1 && !started {
                    true
                } else {
                    t >= n
                };
                (count, out)
            }
            // Rate generator: n, n-1 .. 1, and again; OUT low while 1.
            2 => {
                if !started {
                    return ((n & 0xffff) as u16, true);
                }
                let count = n - t % n;
                ((count & 0xffff) as u16, count != 1)
            }
            // Square wave: OUT high for the first half (rounded up), low for
            // the second; the count falls by 2 each tick in each half.
            3 => {
                if !started {
                    return ((n & 0xffff) as u16, true);
                }
                let phase = t % n;
                let high = n.div_ceil(2);
                let (count, out) = if phase < high {
                    (n - 2 * phase, true)
                } else {
                    (n - 2 * (phase - high), false)
                };
                ((count & 0xffff) as u16, out)
            }
            // Strobes: OUT high, low for one tick as the count reaches 0.
            _ => {
                let count = (n.wrapping_sub(t) & 0xffff) as u16;
                (count, !(started && t == n))
            }
        }
    }

    fn start(&mut self, now: u64) {
        if let Some(n) = self.next_reload.take() {
            self.reload = n;
        }
        self.before = 0;
        self.since = Some(now);
    }

    fn stop(&mut self) {
        self.before = 0;
        self.since = None;
    }

    /// A complete count was written.
    fn load(&mut self, count: u16, now: u64) {
        let n = if count == 0 {
            0x1_0000
        } else {
            u32::from(count)
        };
        if self.gate_triggered() && self.loaded && self.since.is_some() {
            // A pulse or strobe in progress goes on with its count.
            self.next_reload = Some(n);
            return;
        }
        self.reload = n;
        self.loaded = true;
        if self.gate_triggered() {
            // Waits for the next rising gate.
            self.stop();
        } else if self.gate {
            self.start(now);
        } else {
            self.stop();
        }
    }

    fn set_gate(&mut self, gate: bool, now: u64) {
        let was = self.gate;
        self.gate = gate;
        if !self.loaded || was == gate {
            return;
        }
        match (self.effective_mode(), gate) {
            // Modes 0 and 4 pause while the gate is low.
            (0 | 4, false) => {
                self.before = self.ticks(now);
                self.since = None;
            }
            (0 | 4, true) => self.since = Some(now),
            // Modes 2 and 3 stop (OUT high) and restart on a rising gate.
            (2 | 3, false) => self.stop(),
            // Rising gate: modes 1, 2, 3 and 5 start over.
            (_, true) => self.start(now),
            // Modes 1 and 5 ignore a falling gate.
            (_, false) => {}
        }
    }

    fn status_byte(&self, now: u64) -> u8 {
        let (_, out) = self.state(now);
        (if out { STATUS_OUT } else { 0 })
            | (if self.loaded { 0 } else { STATUS_NULL })
            | ((self.access as u8) << 4)
            | (self.mode << 1)
            | u8::from(self.bcd)
    }

    fn latch(&mut self, now: u64) {
        if self.latched.is_none() {
            self.latched = Some(self.state(now).0);
            self.latched_high_next = false;
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        let byte = |v: u16, high: bool| if high { (v >> 8) as u8 } else { v as u8 };
        if let Some(v) = self.latched {
            return match self.access {
                Access::Low => {
                    self.latched = None;
                    byte(v, false)
                }
                Access::High => {
                    self.latched = None;
                    byte(v, true)
                }
                Access::LowHigh if !self.latched_high_next => {
                    self.latched_high_next = true;
                    byte(v, false)
                }
                Access::LowHigh => {
                    self.latched = None;
                    self.latched_high_next = false;
                    byte(v, true)
                }
            };
        }
        let v = self.state(now).0;
        match self.access {
            Access::Low => byte(v, false),
            Access::High => byte(v, true),
            Access::LowHigh => {
                let high = self.read_high_next;
                self.read_high_next = !high;
                byte(v, high)
            }
        }
    }

    fn write(&mut self, value: u8, now: u64) {
        match self.access {
            Access::Low => self.load(u16::from(value), now),
            Access::High => self.load(u16::from(value) << 8, now),
            Access::LowHigh => match self.write_low.take() {
                None => {
                    self.write_low = Some(value);
                    // Mode 0 stops counting at the first byte (OUT low).
                    if self.effective_mode() == 0 {
                        self.stop();
                        self.loaded = false;
                    }
                }
                Some(low) => self.load(u16::from_le_bytes([low, value]), now),
            },
        }
    }

    fn control(&mut self, word: u8) {
        let rw = (word >> 4) & 3;
        self.access = match rw {
            1 => Access::Low,
            2 => Access::High,
            _ => Access::LowHigh,
        };
        self.mode = (word >> 1) & 7;
        self.bcd = word & 1 != 0;
        self.loaded = false;
        self.next_reload = None;
        self.stop();
        self.write_low = None;
        self.read_high_next = false;
        self.latched = None;
        self.status = None;
    }
}

/// The PIT's state, shared by its two port devices.
struct State {
    clock: Arc<dyn Clock>,
    channels: [Channel; 3],
    /// Port B's writable bits.
    port_b: u8,
}

impl State {
    fn command(&mut self, word: u8) {
        let now = self.clock.monotonic_ns();
        let sc = word >> 6;
        if sc == SC_READ_BACK {
            for (i, ch) in self.channels.iter_mut().enumerate() {
                if word & (2 << i) == 0 {
                    continue;
                }
                if word & RB_NO_COUNT == 0 {
                    ch.latch(now);
                }
                if word & RB_NO_STATUS == 0 && ch.status.is_none() {
                    ch.status = Some(ch.status_byte(now));
                }
            }
            return;
        }
        let ch = &mut self.channels[usize::from(sc)];
        if (word >> 4) & 3 == 0 {
            ch.latch(now);
        } else {
            ch.control(word);
        }
    }
}

type Shared = Arc<spin::Mutex<State>>;

/// Ports 0x40–0x43.
pub struct Pit {
    state: Shared,
}

/// Port 0x61.
pub struct PortB {
    state: Shared,
}

/// A PIT on `clock` and its port B: (ports 0x40–0x43, port 0x61). Channel 2's
/// gate starts low, as firmware leaves it.
pub fn new(clock: Arc<dyn Clock>) -> (Pit, PortB) {
    let state = Arc::new(spin::Mutex::new(State {
        clock,
        channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
        port_b: 0,
    }));
    (
        Pit {
            state: state.clone(),
        },
        PortB { state },
    )
}

impl PortDevice for Pit {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut s = self.state.lock();
        let now = s.clock.monotonic_ns();
        data[0] = match offset {
            0..=2 => s.channels[usize::from(offset)].read(now),
            // The control word register cannot be read.
            _ => 0xff,
        };
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> Effect {
        let mut s = self.state.lock();
        let now = s.clock.monotonic_ns();
        match offset {
            0..=2 => s.channels[usize::from(offset)].write(data[0], now),
            _ => s.command(data[0]),
        }
        Effect::None
    }
}

impl PortDevice for PortB {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        let s = self.state.lock();
        let now = s.clock.monotonic_ns();
        let refresh = if (now / REFRESH_NS) % 2 == 1 {
            B_REFRESH
        } else {
            0
        };
        let out2 = if s.channels[2].state(now).1 {
            B_OUT2
        } else {
            0
        };
        data[0] = s.port_b | refresh | out2;
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> Effect {
        let mut s = self.state.lock();
        let now = s.clock.monotonic_ns();
        s.port_b = data[0] & B_WRITABLE;
        let gate = data[0] & B_GATE2 != 0;
        s.channels[2].set_gate(gate, now);
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// ns for `ticks` PIT ticks, rounded up so the tick has happened.
    fn ns(ticks: u64) -> u64 {
        (ticks * NS_PER_SEC).div_ceil(PIT_HZ)
    }

    fn setup() -> (Arc<ManualClock>, Pit, PortB) {
        let clock = Arc::new(ManualClock::new(0));
        let (pit, b) = new(clock.clone());
        (clock, pit, b)
    }

    fn out(d: &mut impl PortDevice, offset: u16, v: u8) {
        d.write(offset, &[v]);
    }

    fn inp(d: &mut impl PortDevice, offset: u16) -> u8 {
        let mut b = [0];
        d.read(offset, &mut b);
        b[0]
    }

    fn latched_count(pit: &mut Pit, ch: u16) -> u16 {
        out(pit, 3, (ch as u8) << 6);
        u16::from_le_bytes([inp(pit, ch), inp(pit, ch)])
    }

    #[test]
    fn channel0_rate_generator_counts_and_wraps() {
        let (clock, mut pit, _) = setup();
        // Channel 0, lobyte/hibyte, mode 2, count 1000.
        out(&mut pit, 3, 0b0011_0100);
        out(&mut pit, 0, 0xe8);
        out(&mut pit, 0, 0x03);
        assert_eq!(latched_count(&mut pit, 0), 1000);
        clock.advance(ns(300));
        assert_eq!(latched_count(&mut pit, 0), 700);
        clock.advance(ns(1000));
        assert_eq!(latched_count(&mut pit, 0), 700, "periodic");
        // Count 0 is 65536.
        out(&mut pit, 3, 0b0011_0100);
        out(&mut pit, 0, 0);
        out(&mut pit, 0, 0);
        clock.advance(ns(1));
        assert_eq!(latched_count(&mut pit, 0), 65535);
    }

    #[test]
    fn one_second_is_pit_hz_ticks() {
        let (clock, mut pit, _) = setup();
        out(&mut pit, 3, 0b0011_0100);
        out(&mut pit, 0, 0);
        out(&mut pit, 0, 0);
        // Poll as a guest does: accumulate the count's fall over a second.
        let mut last = latched_count(&mut pit, 0);
        let mut total = 0u64;
        for _ in 0..1000 {
            clock.advance(1_000_000);
            let now = latched_count(&mut pit, 0);
            total += u64::from(last.wrapping_sub(now));
            last = now;
        }
        assert!(total.abs_diff(PIT_HZ) <= 1, "{total}");
    }

    #[test]
    fn channel2_one_shot_gated_through_port_b() {
        let (clock, mut pit, mut b) = setup();
        // As Linux's and Mojito's TSC calibration: gate on, mode 0.
        out(&mut b, 0, B_GATE2);
        out(&mut pit, 3, 0b1011_0000);
        out(&mut pit, 2, 0x9b);
        out(&mut pit, 2, 0x2e);
        assert_eq!(inp(&mut b, 0) & B_OUT2, 0, "OUT low while counting");
        clock.advance(ns(0x2e9b - 1));
        assert_eq!(inp(&mut b, 0) & B_OUT2, 0);
        clock.advance(ns(1));
        assert_ne!(inp(&mut b, 0) & B_OUT2, 0, "OUT high at terminal count");
        assert_eq!(inp(&mut b, 0) & B_WRITABLE, B_GATE2);
        // Gate low pauses mode 0.
        out(&mut pit, 3, 0b1011_0000);
        out(&mut pit, 2, 100);
        out(&mut pit, 2, 0);
        clock.advance(ns(40));
        out(&mut b, 0, 0);
        clock.advance(ns(1000));
        assert_eq!(latched_count(&mut pit, 2), 60);
        out(&mut b, 0, B_GATE2);
        clock.advance(ns(10));
        assert_eq!(latched_count(&mut pit, 2), 50);
    }

    #[test]
    fn mode1_waits_for_the_gate_and_square_wave_halves() {
        let (clock, mut pit, mut b) = setup();
        out(&mut pit, 3, 0b1011_0010); // channel 2, mode 1
        out(&mut pit, 2, 10);
        out(&mut pit, 2, 0);
        clock.advance(ns(5));
        assert_eq!(latched_count(&mut pit, 2), 10, "no trigger yet");
        assert_ne!(inp(&mut b, 0) & B_OUT2, 0);
        out(&mut b, 0, B_GATE2);
        clock.advance(ns(4));
        assert_eq!(latched_count(&mut pit, 2), 6);
        assert_eq!(inp(&mut b, 0) & B_OUT2, 0);
        // A new count during the pulse waits for the next trigger.
        out(&mut pit, 2, 50);
        out(&mut pit, 2, 0);
        clock.advance(ns(1));
        assert_eq!(latched_count(&mut pit, 2), 5, "the pulse goes on");
        out(&mut b, 0, 0);
        out(&mut b, 0, B_GATE2);
        clock.advance(ns(1));
        assert_eq!(
            latched_count(&mut pit, 2),
            49,
            "retriggered with the new count"
        );
        // Mode 3 on channel 1, count 10: high for 5 ticks, low for 5.
        out(&mut pit, 3, 0b0111_0110);
        out(&mut pit, 1, 10);
        out(&mut pit, 1, 0);
        clock.advance(ns(2));
        assert_eq!(latched_count(&mut pit, 1), 6);
        clock.advance(ns(4));
        out(&mut pit, 3, 0b1110_0100); // read back channel 1's status
        assert_eq!(inp(&mut pit, 1) & STATUS_OUT, 0, "second half low");
    }

    #[test]
    fn read_back_latches_status_then_count() {
        let (clock, mut pit, _) = setup();
        out(&mut pit, 3, 0b0011_0000); // channel 0, mode 0
        assert_eq!(
            {
                out(&mut pit, 3, 0b1110_0010);
                inp(&mut pit, 0)
            },
            STATUS_NULL | 0b11_0000,
            "null count, OUT low"
        );
        out(&mut pit, 0, 50);
        out(&mut pit, 0, 0);
        clock.advance(ns(20));
        out(&mut pit, 3, 0b1100_0010); // count and status
        let status = inp(&mut pit, 0);
        assert_eq!(status & (STATUS_NULL | STATUS_OUT), 0);
        clock.advance(ns(5));
        assert_eq!(u16::from_le_bytes([inp(&mut pit, 0), inp(&mut pit, 0)]), 30);
        // A second latch before the first is read changes nothing.
        out(&mut pit, 3, 0);
        clock.advance(ns(5));
        out(&mut pit, 3, 0);
        assert_eq!(u16::from_le_bytes([inp(&mut pit, 0), inp(&mut pit, 0)]), 25);
        // Low-byte-only access.
        out(&mut pit, 3, 0b0001_0000);
        out(&mut pit, 0, 200);
        clock.advance(ns(100));
        assert_eq!(inp(&mut pit, 0), 100);
        assert_eq!(inp(&mut pit, 3), 0xff);
    }

    #[test]
    fn refresh_bit_toggles() {
        let (clock, _, mut b) = setup();
        let first = inp(&mut b, 0) & B_REFRESH;
        clock.advance(REFRESH_NS);
        assert_ne!(inp(&mut b, 0) & B_REFRESH, first);
    }
}
