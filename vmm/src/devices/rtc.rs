//! The CMOS real-time clock and its 128 bytes of NVRAM at ports 0x70/0x71
//! (MC146818; register layout in `abi::rtc`).
//!
//! The time is the back end's wall clock plus an offset the guest sets by
//! writing the time registers (or by setting status B's SET bit, writing
//! them, and clearing it, as firmware does). Reads follow status B's
//! format: BCD or binary, 12- or 24-hour. Status A's update-in-progress
//! bit is set for the last 244 µs of each second, as on the chip, so a
//! guest that waits for it to clear reads a consistent time. Not modelled:
//! the periodic, alarm and update-ended interrupts (IRQ 8; the VMM raises
//! no interrupts yet: the Linux issue wires them) — their enable bits are
//! kept, status C reads 0 — and daylight-saving mode.

use alloc::sync::Arc;

use super::{Effect, PortDevice};
use crate::clock::{Clock, NS_PER_SEC};
use abi::rtc::{self as r, DateTime};

/// The ports: index, data.
pub const RTC_BASE: u16 = r::INDEX_PORT;
pub const RTC_LEN: u16 = 2;

/// Status A's UIP is set this long before each second ends (MC146818: the
/// update cycle's 244 µs warning).
const UIP_NS: u64 = 244_000;
/// Status B as PC firmware leaves it: 24-hour BCD.
const B_DEFAULT: u8 = r::B_24H;

/// The RTC.
pub struct Rtc {
    clock: Arc<dyn Clock>,
    index: u8,
    nvram: [u8; 128],
    /// Seconds added to the wall clock (the guest set the time).
    offset: i64,
    /// The time held while status B's SET bit stops updates.
    held: Option<DateTime>,
}

impl Rtc {
    /// An RTC on `clock`, in 24-hour BCD as PC firmware leaves it.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let mut nvram = [0; 128];
        nvram[usize::from(r::STATUS_A)] = r::A_DEFAULT;
        nvram[usize::from(r::STATUS_B)] = B_DEFAULT;
        Self {
            clock,
            index: 0,
            nvram,
            offset: 0,
            held: None,
        }
    }

    /// The wall clock, or where the back end has none, the monotonic clock
    /// (the RTC then starts near 1970-01-01 but still ticks).
    fn wall_ns(&self) -> u64 {
        self.clock
            .wall_ns()
            .unwrap_or_else(|| self.clock.monotonic_ns())
    }

    /// Seconds since the epoch the RTC shows now.
    fn now_seconds(&self) -> u64 {
        (self.wall_ns() / NS_PER_SEC).saturating_add_signed(self.offset)
    }

    fn now(&self) -> DateTime {
        self.held
            .unwrap_or_else(|| DateTime::from_unix_seconds(self.now_seconds()))
    }

    fn status_b(&self) -> u8 {
        self.nvram[usize::from(r::STATUS_B)]
    }

    /// `v` in the registers' format.
    fn encode(&self, v: u8) -> u8 {
        if self.status_b() & r::B_BINARY != 0 {
            v
        } else {
            r::to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.status_b() & r::B_BINARY != 0 {
            v
        } else {
            r::from_bcd(v)
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.status_b() & r::B_24H != 0 {
            return self.encode(hour);
        }
        let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        self.encode(h12) | if hour >= 12 { r::HOURS_PM } else { 0 }
    }

    fn read_register(&self, index: u8) -> u8 {
        let t = self.now();
        match index {
            r::SECONDS => self.encode(t.second),
            r::MINUTES => self.encode(t.minute),
            r::HOURS => self.encode_hour(t.hour),
            r::WEEKDAY => self.encode(t.rtc_weekday()),
            r::DAY => self.encode(t.day),
            r::MONTH => self.encode(t.month),
            r::YEAR => self.encode((t.year % 100) as u8),
            r::CENTURY => self.encode((t.year / 100) as u8),
            r::STATUS_A => {
                let uip = self.held.is_none() && self.wall_ns() % NS_PER_SEC >= NS_PER_SEC - UIP_NS;
                self.nvram[usize::from(index)] | if uip { r::A_UIP } else { 0 }
            }
            // No interrupt sources are modelled; reading would clear them.
            r::STATUS_C => 0,
            r::STATUS_D => r::D_VRT,
            _ => self.nvram[usize::from(index & 0x7f)],
        }
    }

    /// Sets the clock to `t` (the guest wrote a time register).
    fn set_time(&mut self, t: DateTime) {
        if self.status_b() & r::B_SET != 0 {
            self.held = Some(t);
            return;
        }
        if let Some(secs) = t.unix_seconds() {
            let wall = (self.wall_ns() / NS_PER_SEC) as i64;
            self.offset = secs as i64 - wall;
        }
    }

    fn write_register(&mut self, index: u8, value: u8) {
        let mut t = self.now();
        match index {
            r::SECONDS => t.second = self.decode(value),
            r::MINUTES => t.minute = self.decode(value),
            r::HOURS => {
                let mut h = self.decode(value & !r::HOURS_PM);
                if self.status_b() & r::B_24H == 0 {
                    h %= 12;
                    if value & r::HOURS_PM != 0 {
                        h += 12;
                    }
                }
                t.hour = h;
            }
            r::DAY => t.day = self.decode(value),
            r::MONTH => t.month = self.decode(value),
            r::YEAR => t.year = t.year / 100 * 100 + u32::from(self.decode(value)),
            r::CENTURY => t.year = u32::from(self.decode(value)) * 100 + t.year % 100,
            r::STATUS_A => {
                self.nvram[usize::from(index)] = value & !r::A_UIP;
                return;
            }
            r::STATUS_B => {
                let was_set = self.status_b() & r::B_SET != 0;
                self.nvram[usize::from(index)] = value;
                if value & r::B_SET != 0 && !was_set {
                    self.held = Some(t);
                } else if value & r::B_SET == 0
                    && let Some(held) = self.held.take()
                {
                    self.set_time(held);
                }
                return;
            }
            // Read-only.
            r::STATUS_C | r::STATUS_D | r::WEEKDAY => return,
            _ => {
                self.nvram[usize::from(index & 0x7f)] = value;
                return;
            }
        }
        self.set_time(t);
    }
}

impl PortDevice for Rtc {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data[0] = if offset == 0 {
            // The index register cannot be read back on a PC.
            0xff
        } else {
            self.read_register(self.index)
        };
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> Effect {
        if offset == 0 {
            // Bit 7 masks NMI on a PC; there is no NMI to mask here.
            self.index = data[0] & 0x7f;
        } else {
            self.write_register(self.index, data[0]);
        }
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    // 2026-11-22 22:13:45 UTC, half a second in.
    const WALL: u64 = 1_795_385_625 * NS_PER_SEC + NS_PER_SEC / 2;

    fn read(rtc: &mut Rtc, index: u8) -> u8 {
        rtc.write(0, &[index | 0x80]);
        let mut b = [0];
        rtc.read(1, &mut b);
        b[0]
    }

    fn write(rtc: &mut Rtc, index: u8, v: u8) {
        rtc.write(0, &[index]);
        rtc.write(1, &[v]);
    }

    fn regs(rtc: &mut Rtc) -> DateTime {
        let mut regs = [0u8; 10];
        for (i, v) in regs.iter_mut().enumerate() {
            *v = read(rtc, i as u8);
        }
        let century = read(rtc, r::CENTURY);
        let b = read(rtc, r::STATUS_B);
        r::decode(&regs, century, b)
    }

    #[test]
    fn shows_the_wall_clock_in_bcd_and_binary() {
        let clock = Arc::new(ManualClock::new(WALL));
        let mut rtc = Rtc::new(clock.clone());
        assert_eq!(read(&mut rtc, r::SECONDS), 0x45);
        assert_eq!(read(&mut rtc, r::HOURS), 0x22);
        assert_eq!(read(&mut rtc, r::CENTURY), 0x20);
        assert_eq!(read(&mut rtc, r::WEEKDAY), 1, "a Sunday");
        assert_eq!(read(&mut rtc, r::STATUS_D), r::D_VRT);
        assert_eq!(regs(&mut rtc).unix_seconds(), Some(1_795_385_625));
        clock.advance(61 * NS_PER_SEC);
        assert_eq!(regs(&mut rtc).unix_seconds(), Some(1_795_385_686));
        write(&mut rtc, r::STATUS_B, r::B_BINARY);
        assert_eq!(read(&mut rtc, r::MINUTES), 14);
        assert_eq!(read(&mut rtc, r::HOURS), 10 | r::HOURS_PM, "12-hour");
        assert_eq!(regs(&mut rtc).unix_seconds(), Some(1_795_385_686));
    }

    #[test]
    fn update_in_progress_at_the_end_of_each_second() {
        let clock = Arc::new(ManualClock::new(WALL));
        let mut rtc = Rtc::new(clock.clone());
        assert_eq!(read(&mut rtc, r::STATUS_A), r::A_DEFAULT);
        clock.advance(NS_PER_SEC / 2 - 100_000);
        assert_eq!(read(&mut rtc, r::STATUS_A), r::A_DEFAULT | r::A_UIP);
    }

    #[test]
    fn the_guest_sets_the_time() {
        let clock = Arc::new(ManualClock::new(WALL));
        let mut rtc = Rtc::new(clock.clone());
        // As firmware: SET, write the registers, clear SET.
        write(&mut rtc, r::STATUS_B, r::B_SET | r::B_24H);
        write(&mut rtc, r::YEAR, 0x01);
        write(&mut rtc, r::MONTH, 0x02);
        write(&mut rtc, r::DAY, 0x03);
        write(&mut rtc, r::HOURS, 0x04);
        write(&mut rtc, r::MINUTES, 0x05);
        write(&mut rtc, r::SECONDS, 0x06);
        clock.advance(10 * NS_PER_SEC);
        assert_eq!(read(&mut rtc, r::SECONDS), 0x06, "held while SET");
        write(&mut rtc, r::STATUS_B, r::B_24H);
        clock.advance(2 * NS_PER_SEC);
        let t = regs(&mut rtc);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2001, 2, 3, 4, 5, 8)
        );
        // NVRAM bytes keep what is written; read-only registers do not.
        write(&mut rtc, 0x40, 0xab);
        write(&mut rtc, r::STATUS_D, 0);
        assert_eq!(
            (read(&mut rtc, 0x40), read(&mut rtc, r::STATUS_D)),
            (0xab, r::D_VRT)
        );
        let mut b = [0];
        rtc.read(0, &mut b);
        assert_eq!(b[0], 0xff);
    }
}
