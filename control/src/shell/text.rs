//! How the shell writes sizes and times.

use alloc::format;
use alloc::string::String;

/// Bytes as the largest binary unit that keeps one decimal: `4 MiB`,
/// `1.5 GiB`, `512 KiB`, `17 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift {
            let whole = bytes >> shift;
            let tenth = ((bytes & ((1 << shift) - 1)) * 10) >> shift;
            return if tenth == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenth} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

/// TSC cycles as time at `khz` (0: unknown, then the cycles are given):
/// `2h03m`, `4m05s`, `12.345 s`, `3.2 ms`.
pub fn duration(cycles: u64, khz: u64) -> String {
    if khz == 0 {
        return format!("{cycles} TSC cycles");
    }
    let us = u128::from(cycles) * 1000 / u128::from(khz);
    let s = us / 1_000_000;
    match s {
        0 if us < 1000 => format!("{us} µs"),
        0 => format!("{}.{} ms", us / 1000, (us % 1000) / 100),
        1..60 => format!("{s}.{:03} s", (us % 1_000_000) / 1000),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `text` broken into lines of at most `width` characters at spaces (a
/// longer word gets a line of its own).
pub fn wrap(text: &str, width: usize) -> alloc::vec::Vec<String> {
    let mut lines = alloc::vec::Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(core::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(17), "17 B");
        assert_eq!(size(4 << 20), "4 MiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(512 << 10), "512 KiB");
        assert_eq!(size(1766 << 20), "1.7 GiB");
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("averylongword x", 4), ["averylongword", "x"]);
        assert!(wrap("  ", 10).is_empty());
    }

    #[test]
    fn durations() {
        // A 2 GHz TSC.
        let khz = 2_000_000;
        assert_eq!(duration(2_000, khz), "1 µs");
        assert_eq!(duration(6_400_000, khz), "3.2 ms");
        assert_eq!(duration(24_690_000_000, khz), "12.345 s");
        assert_eq!(duration(2 * 245 * 1_000_000_000, khz), "4m05s");
        assert_eq!(duration(2 * 7380 * 1_000_000_000, khz), "2h03m");
        assert_eq!(duration(99, 0), "99 TSC cycles");
    }
}
