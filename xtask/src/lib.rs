//! The library half of `cargo xtask`: building, packing images, and
//! launching QEMU and Bochs. The integration tests (`mojito-tests`) reuse it,
//! so a boot under test is the same boot a developer gets from
//! `cargo xtask run`.

pub mod artifacts;
pub mod bench;
pub mod bochs;
pub mod image;
pub mod linux;
pub mod qemu;
pub mod runner;
pub mod sysdeps;
pub mod usb;
pub mod workspace;

pub use workspace::Workspace;

/// The hypervisor's last serial line, after every guest has stopped: the
/// machine powers off next.
pub const POWER_OFF_LINE: &str = "mojito: all guests have stopped; powering off";

/// Parses a memory size as QEMU's `-m` does: a number with an optional
/// suffix `K`, `M`, `G` or `T` (binary units, `M` when none; a
/// trailing `B` or `iB` is allowed). Returns MiB.
pub fn parse_mem_mib(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix(['B', 'b']))
        .unwrap_or(t);
    let (digits, shift_kib) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 0),
        Some((i, 'M' | 'm')) => (&t[..i], 10),
        Some((i, 'G' | 'g')) => (&t[..i], 20),
        Some((i, 'T' | 't')) => (&t[..i], 30),
        _ => (t, 10),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("bad size {text:?}: write it like 512M or 2G"))?;
    let kib = n
        .checked_shl(shift_kib)
        .filter(|k| k >> shift_kib == n)
        .ok_or_else(|| anyhow::anyhow!("size {text:?} is too large"))?;
    if kib % 1024 != 0 || kib == 0 {
        anyhow::bail!("size {text:?} is not a positive whole number of MiB");
    }
    Ok(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::parse_mem_mib;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mem_mib("2G").unwrap(), 2048);
        assert_eq!(parse_mem_mib("512M").unwrap(), 512);
        assert_eq!(parse_mem_mib("512").unwrap(), 512);
        assert_eq!(parse_mem_mib("1GiB").unwrap(), 1024);
        assert_eq!(parse_mem_mib("2048K").unwrap(), 2);
        assert!(parse_mem_mib("1000K").is_err());
        assert!(parse_mem_mib("0").is_err());
        assert!(parse_mem_mib("lots").is_err());
    }
}
