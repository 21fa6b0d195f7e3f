//! `mojito.conf` in the boot bundle: the few settings the hypervisor takes
//! at boot. One `key = value` a line; `#` starts a comment; blank lines are
//! ignored. A line the hypervisor cannot use is reported and skipped — a
//! typo never stops the machine from booting.
//!
//! | key | value | default |
//! |---|---|---|
//! | `control-ram` | the control domain's RAM: a size with an optional `K`, `M` or `G` suffix (powers of 1024), rounded down to 2 MiB, at least 64 MiB | all free memory but what the hypervisor keeps for VM metadata |

/// The file's name in the bundle.
pub const FILE: &str = "mojito.conf";

/// The smallest control domain we start (its image, stack and heap).
pub const MIN_CONTROL_RAM: u64 = 64 << 20;
const CHUNK: u64 = 2 << 20;

/// The settings; `None` means the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub control_ram: Option<u64>,
}

/// `1536M`, `2G`, `65536K`, `1073741824`: bytes, or None.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits.trim().parse().ok()?;
    n.checked_mul(1 << shift)
}

/// Parses the file; `warn(line, what)` hears about each line it skips.
pub fn parse(text: &str, mut warn: impl FnMut(usize, &str)) -> Config {
    let mut c = Config::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            warn(n, "not `key = value`");
            continue;
        };
        match key.trim() {
            "control-ram" => match parse_size(value) {
                Some(v) if v >= MIN_CONTROL_RAM => c.control_ram = Some(v & !(CHUNK - 1)),
                Some(_) => warn(n, "control-ram is below 64M"),
                None => warn(n, "control-ram is not a size (e.g. 1536M or 2G)"),
            },
            _ => warn(n, "unknown key"),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1536M"), Some(1536 << 20));
        assert_eq!(parse_size(" 2g "), Some(2 << 30));
        assert_eq!(parse_size("65536K"), Some(64 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(parse_size("17179869184G"), None);
    }

    #[test]
    fn a_file_with_comments_and_mistakes() {
        let mut warnings = Vec::new();
        let c = parse(
            "# the control domain's share\n\ncontrol-ram = 1025M  # not 2M-aligned\n\
             control-ram\nspeed = 11\ncontrol-ram = 1M\ncontrol-ram = lots\n",
            |n, w| warnings.push((n, w.to_owned())),
        );
        assert_eq!(c.control_ram, Some(1024 << 20));
        let lines: Vec<usize> = warnings.iter().map(|w| w.0).collect();
        assert_eq!(lines, [4, 5, 6, 7], "{warnings:?}");
    }

    #[test]
    fn an_empty_file_is_the_default() {
        assert_eq!(parse("", |_, _| panic!()), Config::default());
    }
}
