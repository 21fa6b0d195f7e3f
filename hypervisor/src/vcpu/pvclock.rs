//! kvmclock: the paravirtual clock a guest registers with an MSR and the
//! hypervisor keeps up to date in guest memory (seed 000's idea, in the
//! form KVM shipped: Documentation/virt/kvm/x86/msr.rst).
//!
//! `MSR_KVM_SYSTEM_TIME_NEW` (or the old 0x12) takes the GPA of a 32-byte
//! `pvclock_vcpu_time_info`, bit 0 enabling it. The hypervisor writes there
//! a TSC reading, the guest's time in ns at that reading (kvmclock counts
//! from the VM's creation, as KVM's does), and the TSC-to-ns scale (`mul`,
//! `shift`) from the frequency it calibrated at boot, so the guest
//! computes the time from its own TSC:
//! `system_time + (((tsc - tsc_timestamp) << shift) * mul >> 32)` (a
//! negative shift shifts right). Each update makes `version` odd, writes,
//! then makes it even. It is written when the guest registers it, again
//! whenever the guest's TSC is set (the `tsc_timestamp` is in guest TSC
//! units), and by the control domain's `KVM_RUN` when it was never written
//! or the memory slots changed since (`needs_refresh`); the scale never
//! changes, so nothing else needs a rewrite while a VM has one vCPU. Its
//! accuracy is the calibration's (`arch::tsc`: 10 ms against the PIT), not
//! the scale's (under 0.5 ppb). `PVCLOCK_TSC_STABLE_BIT` is set only where
//! the host TSC is invariant (then one scale holds for good), and never
//! through the old MSR (KVM's rule).
//!
//! `MSR_KVM_WALL_CLOCK_NEW` (or 0x11) takes the GPA of a 12-byte
//! `pvclock_wall_clock`: the Unix time at kvmclock 0, from the RTC read at
//! boot (`arch::rtc`). Both areas count as dirty pages. An area that is not
//! writable guest RAM (or, for the time info, crosses a page) is not
//! written, and the WRMSR still succeeds, as on KVM.

use crate::guest::GuestRam;
use crate::mm::GuestPhys;

pub const MSR_KVM_WALL_CLOCK: u32 = 0x11;
pub const MSR_KVM_SYSTEM_TIME: u32 = 0x12;
pub const MSR_KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
pub const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// `pvclock_vcpu_time_info.flags` bit 0: the TSC is stable across vCPUs
/// and time.
pub const PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// Bit 0 of the system-time MSR: the area is enabled.
const ENABLE: u64 = 1;
/// `sizeof(struct pvclock_vcpu_time_info)` and of `pvclock_wall_clock`.
pub const TIME_INFO_SIZE: u64 = 32;
pub const WALL_CLOCK_SIZE: u64 = 12;
const NS_PER_SEC: u64 = 1_000_000_000;

/// Whether `index` is one of the four kvmclock MSRs.
pub const fn is_msr(index: u32) -> bool {
    matches!(
        index,
        MSR_KVM_WALL_CLOCK | MSR_KVM_SYSTEM_TIME | MSR_KVM_WALL_CLOCK_NEW | MSR_KVM_SYSTEM_TIME_NEW
    )
}

/// The TSC-to-ns scale: ns = ((delta << shift) * mul) >> 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    pub mul: u32,
    pub shift: i8,
}

impl Scale {
    /// The scale for a TSC of `khz` kHz: the most precise `mul` (at least
    /// 2^31) with the smallest shift that makes it fit 32 bits. None for 0.
    pub fn for_khz(khz: u64) -> Option<Self> {
        if khz == 0 {
            return None;
        }
        let hz = u128::from(khz) * 1000;
        // mul = 1e9 * 2^(32 - shift) / hz; it halves as the shift grows.
        (-31i8..=31).find_map(|shift| {
            let num = u128::from(NS_PER_SEC) << (32 - i32::from(shift)) as u32;
            let mul = num / hz;
            (mul < 1 << 32).then_some(Self {
                mul: mul as u32,
                shift,
            })
        })
    }

    /// Nanoseconds of `delta` TSC ticks, exactly as a guest computes them.
    pub fn ns(&self, delta: u64) -> u64 {
        let d = if self.shift < 0 {
            delta >> -i32::from(self.shift)
        } else {
            delta << self.shift
        };
        ((u128::from(d) * u128::from(self.mul)) >> 32) as u64
    }
}

/// What an update needs from the world: the host TSC now, the guest's TSC
/// offset, the calibrated frequency, whether the TSC is invariant, and the
/// wall clock read at boot (Unix seconds, host TSC then).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub host_tsc: u64,
    pub tsc_offset: u64,
    pub khz: u64,
    pub invariant: bool,
    pub rtc: Option<(u64, u64)>,
}

impl Now {
    /// The machine's clock now, for a vCPU with `tsc_offset`.
    pub fn read(tsc_offset: u64) -> Self {
        Self {
            host_tsc: crate::arch::instr::rdtsc(),
            tsc_offset,
            khz: crate::arch::tsc::frequency_khz(),
            invariant: crate::arch::tsc::invariant(),
            rtc: crate::arch::rtc::boot_time(),
        }
    }
}

/// One vCPU's kvmclock state.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmClock {
    /// The host TSC at kvmclock 0 (the VM's creation).
    pub epoch_tsc: u64,
    /// The system-time MSR as last written (the GPA, bit 0 enabling).
    pub system_time: u64,
    /// The wall-clock MSR as last written.
    pub wall_clock: u64,
    /// The time info's version as last written (even).
    version: u32,
    /// Registered through the old MSR (0x12): never the stable bit, as on
    /// KVM, which turns its master clock off for such guests.
    old: bool,
    /// `GuestRam::generation` when the time info was last written (None:
    /// not written, e.g. registered before its memory slot existed).
    written: Option<u64>,
}

impl KvmClock {
    /// kvmclock 0 at host TSC `epoch_tsc`.
    pub const fn new(epoch_tsc: u64) -> Self {
        Self {
            epoch_tsc,
            system_time: 0,
            wall_clock: 0,
            version: 0,
            old: false,
            written: None,
        }
    }

    /// Whether the registered time info must be written again: it never
    /// was, or the memory slots changed since (a slot moved or was added
    /// under it). The control domain's `KVM_RUN` checks this first, as
    /// KVM's `KVM_REQ_CLOCK_UPDATE` does.
    pub fn needs_refresh(&self, ram: &GuestRam) -> bool {
        self.system_time & ENABLE != 0 && self.written != Some(ram.generation())
    }

    /// RDMSR: the value last written (KVM's behaviour).
    pub fn read(&self, index: u32) -> u64 {
        match index {
            MSR_KVM_SYSTEM_TIME | MSR_KVM_SYSTEM_TIME_NEW => self.system_time,
            _ => self.wall_clock,
        }
    }

    /// WRMSR of a kvmclock MSR: never faults.
    pub fn write(&mut self, index: u32, value: u64, now: &Now, ram: &mut GuestRam) {
        match index {
            MSR_KVM_SYSTEM_TIME | MSR_KVM_SYSTEM_TIME_NEW => {
                self.system_time = value;
                self.old = index == MSR_KVM_SYSTEM_TIME;
                self.written = None;
                self.refresh(now, ram);
            }
            _ => {
                self.wall_clock = value;
                self.write_wall_clock(value, now, ram);
            }
        }
    }

    /// Rewrites the time info if the guest registered one.
    pub fn refresh(&mut self, now: &Now, ram: &mut GuestRam) {
        if self.system_time & ENABLE == 0 {
            return;
        }
        let gpa = self.system_time & !ENABLE;
        let Some(scale) = Scale::for_khz(now.khz) else {
            return;
        };
        if gpa % 4096 + TIME_INFO_SIZE > 4096 || !ram.writable(GuestPhys::new(gpa), TIME_INFO_SIZE)
        {
            self.written = None;
            return;
        }
        let flags = if now.invariant && !self.old {
            PVCLOCK_TSC_STABLE_BIT
        } else {
            0
        };
        let info = time_info(
            self.version.wrapping_add(2),
            now.host_tsc.wrapping_add(now.tsc_offset),
            scale.ns(now.host_tsc.wrapping_sub(self.epoch_tsc)),
            scale,
            flags,
        );
        // Odd while the rest changes (one vCPU, and it is not running: the
        // protocol is kept for the guest's reader all the same).
        let odd = self.version.wrapping_add(1).to_le_bytes();
        let _ = ram.write(GuestPhys::new(gpa), &odd);
        let _ = ram.write(GuestPhys::new(gpa + 4), &info[4..]);
        let _ = ram.write(GuestPhys::new(gpa), &info[..4]);
        self.version = self.version.wrapping_add(2);
        self.written = Some(ram.generation());
    }

    /// The Unix time at kvmclock 0, in ns (0 with no RTC).
    fn epoch_unix_ns(&self, now: &Now) -> u64 {
        let (Some((secs, at)), Some(scale)) = (now.rtc, Scale::for_khz(now.khz)) else {
            return 0;
        };
        let base = secs.saturating_mul(NS_PER_SEC);
        // The VM may have been made before or after the RTC was read.
        if self.epoch_tsc >= at {
            base.saturating_add(scale.ns(self.epoch_tsc - at))
        } else {
            base.saturating_sub(scale.ns(at - self.epoch_tsc))
        }
    }

    fn write_wall_clock(&self, gpa: u64, now: &Now, ram: &mut GuestRam) {
        let at = GuestPhys::new(gpa);
        if !ram.writable(at, WALL_CLOCK_SIZE) {
            return;
        }
        // As KVM: the version read from the guest, made even, then odd
        // while writing, then even.
        let mut v = [0u8; 4];
        let _ = ram.read(at, &mut v);
        let mut version = u32::from_le_bytes(v);
        if version & 1 != 0 {
            version = version.wrapping_add(1);
        }
        let ns = self.epoch_unix_ns(now);
        let mut wc = [0u8; 12];
        wc[0..4].copy_from_slice(&version.wrapping_add(1).to_le_bytes());
        wc[4..8].copy_from_slice(&((ns / NS_PER_SEC) as u32).to_le_bytes());
        wc[8..12].copy_from_slice(&((ns % NS_PER_SEC) as u32).to_le_bytes());
        let _ = ram.write(at, &wc);
        let _ = ram.write(at, &version.wrapping_add(2).to_le_bytes());
    }
}

/// A `pvclock_vcpu_time_info` (arch/x86/include/asm/pvclock-abi.h): u32
/// version, u32 pad, u64 tsc_timestamp, u64 system_time, u32
/// tsc_to_system_mul, s8 tsc_shift, u8 flags, u8 pad[2].
pub fn time_info(
    version: u32,
    tsc_timestamp: u64,
    system_time: u64,
    scale: Scale,
    flags: u8,
) -> [u8; TIME_INFO_SIZE as usize] {
    let mut b = [0u8; TIME_INFO_SIZE as usize];
    b[0..4].copy_from_slice(&version.to_le_bytes());
    b[8..16].copy_from_slice(&tsc_timestamp.to_le_bytes());
    b[16..24].copy_from_slice(&system_time.to_le_bytes());
    b[24..28].copy_from_slice(&scale.mul.to_le_bytes());
    b[28] = scale.shift as u8;
    b[29] = flags;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_exact_to_a_part_per_billion() {
        for khz in [
            1_000, 100_000, 999_999, 1_000_000, 2_304_682, 3_000_000, 5_000_000,
        ] {
            let s = Scale::for_khz(khz).unwrap();
            assert!(s.mul >= 1 << 31, "{khz}: {s:?}");
            // One second of ticks is one second, to within 1 ns per 1e9.
            let ns = s.ns(khz * 1000);
            assert!(ns.abs_diff(NS_PER_SEC) <= 2, "{khz}: {ns}");
        }
        assert_eq!(
            Scale::for_khz(1_000_000),
            Some(Scale {
                mul: 1 << 31,
                shift: 1
            })
        );
        assert_eq!(Scale::for_khz(0), None);
        // An hour at 5 GHz does not overflow, and `mul`'s rounding (under
        // 2^-31, half a part per billion) stays under 2 µs.
        let s = Scale::for_khz(5_000_000).unwrap();
        let ns = s.ns(3600 * 5_000_000_000);
        assert!(ns.abs_diff(3600 * NS_PER_SEC) < 2_000, "{ns}");
    }

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    fn ram(pages: usize) -> GuestRam {
        use crate::mm::HostPhys;
        GuestRam::from_host_pages(
            (0..pages)
                .map(|_| {
                    HostPhys::new(
                        alloc::boxed::Box::leak(alloc::boxed::Box::new(Page([0; 4096])))
                            .0
                            .as_ptr() as u64,
                    )
                })
                .collect(),
        )
    }

    fn bytes<const N: usize>(ram: &GuestRam, gpa: u64) -> [u8; N] {
        let mut b = [0; N];
        assert!(ram.read(GuestPhys::new(gpa), &mut b));
        b
    }

    #[test]
    fn registered_areas_are_written_and_kept_consistent() {
        let mut ram = ram(2);
        let mut now = Now {
            host_tsc: 5_000_000,
            tsc_offset: 1000,
            khz: 1_000_000,
            invariant: true,
            rtc: Some((1_795_385_625, 1_000_000)),
        };
        // Made at host TSC 3,000,000: 2 ms before `now`.
        let mut c = KvmClock::new(3_000_000);
        c.write(MSR_KVM_SYSTEM_TIME_NEW, 0x1040 | ENABLE, &now, &mut ram);
        let info: [u8; 32] = bytes(&ram, 0x1040);
        let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        assert_eq!(
            u32::from_le_bytes(info[0..4].try_into().unwrap()),
            2,
            "even"
        );
        assert_eq!(u64_at(&info, 8), 5_001_000, "guest TSC");
        assert_eq!(u64_at(&info, 16), 2_000_000, "2 ms since creation");
        assert_eq!((info[28] as i8, info[29]), (1, PVCLOCK_TSC_STABLE_BIT));
        assert_eq!(c.read(MSR_KVM_SYSTEM_TIME_NEW), 0x1040 | ENABLE);
        // A new guest TSC: rewritten, version moves by 2.
        now.host_tsc = 6_000_000;
        now.tsc_offset = 0;
        now.invariant = false;
        c.refresh(&now, &mut ram);
        let info: [u8; 32] = bytes(&ram, 0x1040);
        assert_eq!(u32::from_le_bytes(info[0..4].try_into().unwrap()), 4);
        assert_eq!(
            (u64_at(&info, 8), u64_at(&info, 16)),
            (6_000_000, 3_000_000)
        );
        assert_eq!(info[29], 0, "no stable bit without an invariant TSC");
        assert!(!c.needs_refresh(&ram));
        // The wall clock at creation: 2 ms after the RTC was read.
        c.write(MSR_KVM_WALL_CLOCK_NEW, 0x100, &now, &mut ram);
        let wc: [u8; 12] = bytes(&ram, 0x100);
        let w = |i: usize| u32::from_le_bytes(wc[i..i + 4].try_into().unwrap());
        assert_eq!((w(0), w(4), w(8)), (2, 1_795_385_625, 2_000_000));
        // Disabled, outside RAM, or across a page: nothing is written.
        c.write(MSR_KVM_SYSTEM_TIME_NEW, 0x1040, &now, &mut ram);
        now.host_tsc = 7_000_000;
        c.refresh(&now, &mut ram);
        assert_eq!(u64_at(&bytes::<32>(&ram, 0x1040), 8), 6_000_000);
        c.write(MSR_KVM_SYSTEM_TIME, 0xff0 | ENABLE, &now, &mut ram);
        assert_eq!(bytes::<16>(&ram, 0xff0), [0; 16]);
        assert!(
            c.needs_refresh(&ram),
            "not written: the next RUN tries again"
        );
        // Through the old MSR: never the stable bit.
        now.invariant = true;
        c.write(MSR_KVM_SYSTEM_TIME, 0x1800 | ENABLE, &now, &mut ram);
        assert_eq!(bytes::<32>(&ram, 0x1800)[29], 0);
        c.write(MSR_KVM_SYSTEM_TIME, 0x10_0000 | ENABLE, &now, &mut ram);
        c.write(MSR_KVM_WALL_CLOCK, 0x2000 - 4, &now, &mut ram);
        assert_eq!(bytes::<4>(&ram, 0x2000 - 4), [0; 4]);
    }

    #[test]
    fn layout_matches_pvclock_abi() {
        let b = time_info(
            4,
            0x1122_3344_5566_7788,
            99,
            Scale {
                mul: 0xaabb_ccdd,
                shift: -1,
            },
            PVCLOCK_TSC_STABLE_BIT,
        );
        assert_eq!(&b[0..4], &[4, 0, 0, 0]);
        assert_eq!(b[8], 0x88);
        assert_eq!(b[16], 99);
        assert_eq!(&b[24..28], &[0xdd, 0xcc, 0xbb, 0xaa]);
        assert_eq!((b[28], b[29]), (0xff, 1));
        assert!(is_msr(MSR_KVM_SYSTEM_TIME_NEW) && is_msr(0x11) && !is_msr(0x10));
    }
}
