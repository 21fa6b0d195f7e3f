//! The PC's CMOS real-time clock (Motorola MC146818, as every PC chipset
//! still presents it at ports 0x70/0x71) and the calendar arithmetic to
//! turn its date into Unix time and back.
//!
//! Three parties read or model it and must agree: the hypervisor reads the
//! machine's RTC once at boot (the wall clock behind kvmclock), the VMM
//! models one for its guests, and the `pvclock` test guest compares the
//! two. The calendar is the proleptic Gregorian one in UTC; the RTC
//! holds no time zone, and Mojito, like QEMU's default `-rtc base=utc`,
//! takes it as UTC.

/// The index port (bit 7 of a write masks NMI on a real PC) and the data
/// port.
pub const INDEX_PORT: u16 = 0x70;
pub const DATA_PORT: u16 = 0x71;

/// Time and date registers (MC146818 datasheet, "Address map").
pub const SECONDS: u8 = 0x00;
pub const SECONDS_ALARM: u8 = 0x01;
pub const MINUTES: u8 = 0x02;
pub const MINUTES_ALARM: u8 = 0x03;
pub const HOURS: u8 = 0x04;
pub const HOURS_ALARM: u8 = 0x05;
pub const WEEKDAY: u8 = 0x06;
pub const DAY: u8 = 0x07;
pub const MONTH: u8 = 0x08;
pub const YEAR: u8 = 0x09;
pub const STATUS_A: u8 = 0x0a;
pub const STATUS_B: u8 = 0x0b;
pub const STATUS_C: u8 = 0x0c;
pub const STATUS_D: u8 = 0x0d;
/// The century byte the ACPI FADT names on PCs (`CENTURY` field, usually
/// 0x32).
pub const CENTURY: u8 = 0x32;

/// Status A bit 7: an update is in progress (the time registers may be
/// read half-changed; wait until it clears).
pub const A_UIP: u8 = 1 << 7;
/// Status A as a PC's firmware sets it: 32.768 kHz time base (DV = 010),
/// 1024 Hz periodic rate (RS = 0110).
pub const A_DEFAULT: u8 = 0x26;
/// Status B bit 7: SET — updates are stopped while software sets the time.
pub const B_SET: u8 = 1 << 7;
/// Status B bit 2: DM — binary registers (else BCD).
pub const B_BINARY: u8 = 1 << 2;
/// Status B bit 1: 24-hour mode (else 12-hour with PM in bit 7 of HOURS).
pub const B_24H: u8 = 1 << 1;
/// HOURS bit 7 in 12-hour mode: PM.
pub const HOURS_PM: u8 = 1 << 7;
/// Status D bit 7: VRT — the battery is good and the RAM valid.
pub const D_VRT: u8 = 1 << 7;

/// A date and time of day, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: u32,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// Days from 1970-01-01 to `year-month-day` (negative before). The usual
/// era computation: shift the year to start in March so the leap day is
/// last, then count 400-year eras of 146,097 days.
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // 0..=399
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1; // 0..=365
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // 0..=146096
    era * 146_097 + doe - 719_468
}

/// The date of day `days` since 1970-01-01 (the inverse of
/// [`days_from_civil`]): (year, month, day).
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

impl DateTime {
    /// Seconds since the Unix epoch; None for a date out of range or
    /// before 1970.
    pub const fn unix_seconds(&self) -> Option<u64> {
        if self.month == 0
            || self.month > 12
            || self.day == 0
            || self.day > 31
            || self.hour > 23
            || self.minute > 59
            || self.second > 59
        {
            return None;
        }
        let days = days_from_civil(self.year as i64, self.month as u32, self.day as u32);
        if days < 0 {
            return None;
        }
        Some(
            days as u64 * 86_400
                + self.hour as u64 * 3600
                + self.minute as u64 * 60
                + self.second as u64,
        )
    }

    /// The date and time `secs` seconds after the Unix epoch.
    pub const fn from_unix_seconds(secs: u64) -> Self {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        Self {
            year: year as u32,
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// Day of the week as the RTC counts it: 1 = Sunday .. 7 = Saturday.
    pub const fn rtc_weekday(&self) -> u8 {
        let days = days_from_civil(self.year as i64, self.month as u32, self.day as u32);
        // 1970-01-01 was a Thursday (5 in the RTC's count).
        ((days + 4).rem_euclid(7) + 1) as u8
    }
}

/// Packed BCD of `v` (0..=99).
pub const fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// The value of packed BCD `b`.
pub const fn from_bcd(b: u8) -> u8 {
    (b >> 4) * 10 + (b & 0xf)
}

/// Decodes the time registers as read (`regs[r]` for r in `SECONDS ..=
/// YEAR`, `century` from [`CENTURY`] or 0 if there is none) in the format
/// status B says. Without a century byte, years 00–69 are 20xx and 70–99
/// 19xx (the RTC's usual pivot).
pub fn decode(regs: &[u8; 10], century: u8, status_b: u8) -> DateTime {
    let binary = status_b & B_BINARY != 0;
    let v = |b: u8| if binary { b } else { from_bcd(b) };
    let raw_hour = regs[HOURS as usize];
    let mut hour = v(raw_hour & !HOURS_PM);
    if status_b & B_24H == 0 {
        // 12-hour mode: 12 AM is midnight, 12 PM noon.
        hour %= 12;
        if raw_hour & HOURS_PM != 0 {
            hour += 12;
        }
    }
    let yy = v(regs[YEAR as usize]) as u32;
    let year = if century != 0 {
        v(century) as u32 * 100 + yy
    } else if yy < 70 {
        2000 + yy
    } else {
        1900 + yy
    };
    DateTime {
        year,
        month: v(regs[MONTH as usize]),
        day: v(regs[DAY as usize]),
        hour,
        minute: v(regs[MINUTES as usize]),
        second: v(regs[SECONDS as usize]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        let t = DateTime {
            year: 2026,
            month: 11,
            day: 22,
            hour: 22,
            minute: 13,
            second: 45,
        };
        // `date -u -d '2026-11-22 22:13:45' +%s`
        assert_eq!(t.unix_seconds(), Some(1_795_385_625));
        assert_eq!(DateTime::from_unix_seconds(1_795_385_625), t);
        // 2026-11-22 is a Sunday.
        assert_eq!(t.rtc_weekday(), 1);
        // Leap days.
        assert_eq!(
            DateTime::from_unix_seconds(951_782_400),
            DateTime {
                year: 2000,
                month: 2,
                day: 29,
                hour: 0,
                minute: 0,
                second: 0
            }
        );
    }

    #[test]
    fn round_trips_every_day_for_three_centuries() {
        for days in 0..(300 * 366) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn decodes_each_format() {
        let mut regs = [0u8; 10];
        regs[SECONDS as usize] = 0x59;
        regs[MINUTES as usize] = 0x07;
        regs[HOURS as usize] = 0x12 | HOURS_PM;
        regs[DAY as usize] = 0x31;
        regs[MONTH as usize] = 0x12;
        regs[YEAR as usize] = 0x99;
        let t = decode(&regs, 0x20, 0);
        assert_eq!((t.year, t.month, t.day), (2099, 12, 31));
        assert_eq!((t.hour, t.minute, t.second), (12, 7, 59), "12 PM is noon");
        regs[HOURS as usize] = 0x12;
        assert_eq!(decode(&regs, 0x20, 0).hour, 0, "12 AM is midnight");
        let mut bin = [0u8; 10];
        bin[HOURS as usize] = 23;
        bin[DAY as usize] = 1;
        bin[MONTH as usize] = 1;
        bin[YEAR as usize] = 5;
        let t = decode(&bin, 0, B_BINARY | B_24H);
        assert_eq!((t.year, t.hour), (2005, 23));
        assert_eq!(to_bcd(47), 0x47);
        assert_eq!(from_bcd(0x47), 47);
        assert_eq!(
            DateTime {
                month: 13,
                ..DateTime::from_unix_seconds(0)
            }
            .unix_seconds(),
            None
        );
    }
}
