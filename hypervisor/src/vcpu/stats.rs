//! Exit counts per reason, kept per VM for `stats` and the stop line. A
//! counter increment is all the exit path pays.

use crate::virt::Exit;

/// Exit kinds counted separately.
pub const KINDS: [&str; 18] = [
    "cpuid",
    "rdmsr",
    "wrmsr",
    "hlt",
    "xsetbv",
    "hypercall",
    "invd/wbinvd",
    "io",
    "cr",
    "npf",
    "triple-fault",
    "exception",
    "undefined",
    "gp",
    "interrupt",
    "other",
    "interrupt-window",
    "nmi-window",
];

fn index(exit: &Exit) -> usize {
    match exit {
        Exit::Cpuid => 0,
        Exit::Rdmsr => 1,
        Exit::Wrmsr => 2,
        Exit::Hlt => 3,
        Exit::Xsetbv => 4,
        Exit::Hypercall => 5,
        Exit::CacheFlush => 6,
        Exit::Io(_) => 7,
        Exit::CrWrite { .. } | Exit::CrRead { .. } | Exit::Clts | Exit::Lmsw { .. } => 8,
        Exit::NestedPageFault(_) => 9,
        Exit::TripleFault => 10,
        Exit::Exception { .. } => 11,
        Exit::Undefined(_) => 12,
        Exit::GeneralProtection(_) => 13,
        Exit::Interrupt => 14,
        Exit::EntryFailed { .. } | Exit::Unknown { .. } => 15,
        Exit::InterruptWindow => 16,
        Exit::NmiWindow => 17,
        Exit::SoftwareInterrupt => 11,
        Exit::MovDr { .. } => 8,
    }
}

#[derive(Clone, Debug, Default)]
pub struct ExitStats {
    pub counts: [u64; KINDS.len()],
}

impl ExitStats {
    pub fn count(&mut self, exit: &Exit) {
        if let Some(c) = self.counts.get_mut(index(exit)) {
            *c += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (name, count) of the kinds that happened.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KINDS
            .iter()
            .zip(self.counts)
            .filter(|(_, c)| *c > 0)
            .map(|(k, c)| (*k, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let mut s = ExitStats::default();
        s.count(&Exit::Cpuid);
        s.count(&Exit::Cpuid);
        s.count(&Exit::Hlt);
        s.count(&Exit::Unknown {
            reason: 1,
            qualification: 0,
        });
        assert_eq!(s.total(), 4);
        assert_eq!(
            s.nonzero().collect::<Vec<_>>(),
            [("cpuid", 2), ("hlt", 1), ("other", 1)]
        );
    }
}
