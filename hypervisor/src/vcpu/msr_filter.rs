//! `KVM_X86_SET_MSR_FILTER`: which RDMSRs and WRMSRs a KVM-API VM may
//! make, as KVM defines it. A range whose `[base, base + nmsrs)` holds the
//! MSR and whose flags name the access decides (its bit: 1 allowed), the
//! first such range in order; an MSR no range covers gets the default. A
//! denied access raises #GP, or exits to the VMM where it asked for
//! `KVM_MSR_EXIT_REASON_FILTER` (`vcpu::msr_failed`).
//!
//! The exit path looks an access up in a bitmap, not by scanning ranges:
//! for the three architectural MSR regions (0–0x1fff, 0xc000_0000–0xc000_
//! 1fff, 0xc001_0000–0xc001_1fff, where nearly every MSR lies) the verdict
//! of every MSR is worked out once, when the filter is set, two bits each
//! (the layout of SVM's MSR permission map, AMD APM Vol. 2 15.11). Only an
//! MSR outside them (a hypervisor's synthetic ones, say) walks the ≤ 16
//! ranges.
//!
//! As in KVM, the x2APIC MSRs (0x800–0x8ff) are never filtered. Unlike KVM,
//! the MSRs the guest reaches without an exit (`msr::PASSTHROUGH`: FS/GS
//! base, the SYSCALL and SYSENTER MSRs, TSC_AUX) are not filtered either.

use alloc::vec::Vec;

use abi::kvm::{
    KVM_MSR_FILTER_DEFAULT_DENY, KVM_MSR_FILTER_MAX_BITMAP_SIZE, KVM_MSR_FILTER_MAX_RANGES,
    KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE,
};

/// The regions with a precomputed verdict: (first MSR, MSRs).
const REGIONS: [(u32, u32); 3] = [(0, 0x2000), (0xc000_0000, 0x2000), (0xc001_0000, 0x2000)];
/// Two bits per MSR: bit 0 read denied, bit 1 write denied.
const BITS_PER_MSR: usize = 2;
/// The x2APIC MSRs, which no filter covers (SDM Vol. 3A 12.12.1.2).
const X2APIC: core::ops::Range<u32> = 0x800..0x900;

/// One range as the VMM gave it, its bitmap copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub flags: u32,
    pub base: u32,
    pub nmsrs: u32,
    pub bitmap: Vec<u8>,
}

impl Range {
    fn wraps(&self) -> bool {
        self.base.checked_add(self.nmsrs).is_none()
    }

    /// Whether the range decides `access` to `index`, and how.
    fn verdict(&self, index: u32, access: u32) -> Option<bool> {
        // KVM computes the end in 32 bits: a range that wraps matches
        // nothing.
        if self.wraps() {
            return None;
        }
        let i = index.checked_sub(self.base)?;
        if i >= self.nmsrs || self.flags & access == 0 {
            return None;
        }
        let byte = self.bitmap.get((i / 8) as usize).copied().unwrap_or(0);
        Some(byte & (1 << (i % 8)) != 0)
    }
}

/// Why a filter was refused: KVM's `-EINVAL` cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    Flags,
    RangeFlags,
    BitmapSize,
    EmptyDenyAll,
    /// Not a KVM case: the hypervisor's heap cannot hold the verdicts.
    NoMemory,
}

/// A VM's filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsrFilter {
    default_deny: bool,
    ranges: Vec<Range>,
    /// `REGIONS`' verdicts, `BITS_PER_MSR` per MSR, region after region.
    denied: Vec<u8>,
}

impl MsrFilter {
    /// Checks a request as KVM does (`flags`, then each range: ranges with
    /// no MSRs are dropped) and precomputes the verdicts. `ranges` comes
    /// with its bitmaps already copied in, each `bitmap_bytes(nmsrs)` long.
    /// None for a filter that filters nothing (default allow, no range).
    pub fn new(flags: u32, mut ranges: Vec<Range>) -> Result<Option<Self>, Invalid> {
        if flags & !KVM_MSR_FILTER_DEFAULT_DENY != 0 {
            return Err(Invalid::Flags);
        }
        let default_deny = flags & KVM_MSR_FILTER_DEFAULT_DENY != 0;
        ranges.retain(|r| r.nmsrs != 0);
        if ranges
            .iter()
            .any(|r| r.flags & !(KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE) != 0 || r.flags == 0)
        {
            return Err(Invalid::RangeFlags);
        }
        let kept = ranges;
        if kept.is_empty() {
            return if default_deny {
                Err(Invalid::EmptyDenyAll)
            } else {
                Ok(None)
            };
        }
        let mut f = Self {
            default_deny,
            ranges: kept,
            denied: Vec::new(),
        };
        // The default everywhere, then the ranges from last to first, so
        // that the first range covering an access has the last word: work
        // proportional to the ranges' sizes, not to the regions'.
        let total: u32 = REGIONS.iter().map(|r| r.1).sum();
        let fill = if default_deny { 0xff } else { 0 };
        let bytes = total as usize * BITS_PER_MSR / 8;
        let mut denied = Vec::new();
        denied
            .try_reserve_exact(bytes)
            .map_err(|_| Invalid::NoMemory)?;
        denied.resize(bytes, fill);
        for r in f.ranges.iter().rev().filter(|r| !r.wraps()) {
            let mut slot = 0u32;
            for (first, count) in REGIONS {
                let start = r.base.max(first);
                let end = (u64::from(r.base) + u64::from(r.nmsrs))
                    .min(u64::from(first) + u64::from(count));
                for index in u64::from(start)..end {
                    let (index, i) = (index as u32, index as u32 - r.base);
                    let allowed = r
                        .bitmap
                        .get((i / 8) as usize)
                        .is_some_and(|b| b & (1 << (i % 8)) != 0);
                    let at = (slot + index - first) as usize * BITS_PER_MSR;
                    for (bit, access) in [KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE]
                        .into_iter()
                        .enumerate()
                    {
                        if r.flags & access != 0 {
                            let mask = 1 << ((at + bit) % 8);
                            if allowed {
                                denied[(at + bit) / 8] &= !mask;
                            } else {
                                denied[(at + bit) / 8] |= mask;
                            }
                        }
                    }
                }
                slot += count;
            }
        }
        f.denied = denied;
        Ok(Some(f))
    }

    /// Whether `access` (`KVM_MSR_FILTER_READ` or `_WRITE`) to `index` is
    /// allowed.
    pub fn allows(&self, index: u32, access: u32) -> bool {
        if X2APIC.contains(&index) {
            return true;
        }
        let mut slot = 0u32;
        for (first, count) in REGIONS {
            if let Some(i) = index.checked_sub(first)
                && i < count
            {
                let bit = if access == KVM_MSR_FILTER_WRITE { 1 } else { 0 };
                let at = (slot + i) as usize * BITS_PER_MSR + bit;
                // The guest chooses `index`: Spectre v1.
                return crate::arch::spec::get_nospec(&self.denied, at / 8)
                    .is_none_or(|b| b & (1 << (at % 8)) == 0);
            }
            slot += count;
        }
        self.scan(index, access)
    }

    /// The rule itself, range by range.
    fn scan(&self, index: u32, access: u32) -> bool {
        if X2APIC.contains(&index) {
            return true;
        }
        self.ranges
            .iter()
            .find_map(|r| r.verdict(index, access))
            .unwrap_or(!self.default_deny)
    }
}

/// The bytes of a range's bitmap KVM copies: `nmsrs` bits rounded up to
/// whole 64-bit words; `Err` past `KVM_MSR_FILTER_MAX_BITMAP_SIZE`.
pub fn bitmap_bytes(nmsrs: u32) -> Result<usize, Invalid> {
    let bytes = (nmsrs as usize).div_ceil(64) * 8;
    if bytes > KVM_MSR_FILTER_MAX_BITMAP_SIZE as usize {
        Err(Invalid::BitmapSize)
    } else {
        Ok(bytes)
    }
}

/// Ranges a request holds at most.
pub const MAX_RANGES: usize = KVM_MSR_FILTER_MAX_RANGES as usize;

#[cfg(test)]
mod tests {
    use super::*;
    use abi::kvm::KVM_MSR_FILTER_DEFAULT_ALLOW;

    const R: u32 = KVM_MSR_FILTER_READ;
    const W: u32 = KVM_MSR_FILTER_WRITE;

    fn range(flags: u32, base: u32, nmsrs: u32, allowed: &[u32]) -> Range {
        let mut bitmap = alloc::vec![0u8; bitmap_bytes(nmsrs).unwrap()];
        for &i in allowed {
            bitmap[(i / 8) as usize] |= 1 << (i % 8);
        }
        Range {
            flags,
            base,
            nmsrs,
            bitmap,
        }
    }

    #[test]
    fn the_first_matching_range_decides_then_the_default() {
        let f = MsrFilter::new(
            KVM_MSR_FILTER_DEFAULT_DENY,
            alloc::vec![
                range(R, 0x10, 4, &[1]),
                range(R | W, 0x10, 8, &[0, 1, 2, 3, 4]),
                range(R | W, 0x4b56_4d00, 2, &[0]),
            ],
        )
        .unwrap()
        .unwrap();
        // Reads of 0x10..0x14: the first range (only 0x11 allowed).
        assert!(!f.allows(0x10, R) && f.allows(0x11, R) && !f.allows(0x13, R));
        // Writes skip it (no WRITE flag): the second range.
        assert!(f.allows(0x10, W) && f.allows(0x14, W) && !f.allows(0x15, W));
        assert!(f.allows(0x14, R), "0x14 is past the first range");
        // Outside every range: the default; x2APIC always allowed.
        assert!(!f.allows(0x20, R) && !f.allows(0xc000_0080, W));
        assert!(f.allows(0x808, R) && f.allows(0x830, W));
        // Outside the precomputed regions: the same answers by scanning.
        assert!(f.allows(0x4b56_4d00, W) && !f.allows(0x4b56_4d01, R));
        assert!(!f.allows(0x4000_0000, R));
        // The bitmap lookup agrees with the rule everywhere it covers.
        for index in (0..0x2000)
            .chain(0xc000_0000..0xc000_2000)
            .chain(0xc001_0000..0xc001_2000)
        {
            for a in [R, W] {
                assert_eq!(f.allows(index, a), f.scan(index, a), "{index:#x} {a}");
            }
        }
    }

    #[test]
    fn kvm_refusals() {
        assert_eq!(MsrFilter::new(2, alloc::vec![]), Err(Invalid::Flags));
        assert_eq!(
            MsrFilter::new(0, alloc::vec![range(4, 0, 8, &[])]),
            Err(Invalid::RangeFlags)
        );
        assert_eq!(
            MsrFilter::new(0, alloc::vec![range(0, 0, 8, &[])]),
            Err(Invalid::RangeFlags)
        );
        // A range of no MSRs is dropped, flags and all.
        assert_eq!(
            MsrFilter::new(
                KVM_MSR_FILTER_DEFAULT_ALLOW,
                alloc::vec![range(0, 0, 0, &[])]
            ),
            Ok(None)
        );
        assert_eq!(
            MsrFilter::new(KVM_MSR_FILTER_DEFAULT_DENY, alloc::vec![]),
            Err(Invalid::EmptyDenyAll)
        );
        // A range whose end wraps past 2^32 matches nothing, as in KVM.
        let f = MsrFilter::new(0, alloc::vec![range(R, 0xffff_fff0, 0x20, &[])])
            .unwrap()
            .unwrap();
        assert!(f.allows(0xffff_fff1, R) && f.allows(0x5, R));
        // A range whose end wraps past 2^32 matches nothing, as in KVM.
        let f = MsrFilter::new(0, alloc::vec![range(R, 0xffff_fff0, 0x20, &[])])
            .unwrap()
            .unwrap();
        assert!(f.allows(0xffff_fff1, R) && f.allows(0x5, R));
        assert_eq!(bitmap_bytes(1), Ok(8));
        assert_eq!(bitmap_bytes(0x600 * 8), Ok(0x600));
        assert_eq!(bitmap_bytes(0x600 * 8 + 1), Err(Invalid::BitmapSize));
    }
}
