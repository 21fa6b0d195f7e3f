//! The `pvclock` guest: kvmclock (seed 000's guest-registered shared area,
//! as KVM shipped it) against clocks the VMM keeps independently. It finds
//! KVM's leaves by signature (as Linux does), registers a
//! `pvclock_vcpu_time_info` with `MSR_KVM_SYSTEM_TIME_NEW` and a
//! `pvclock_wall_clock` with `MSR_KVM_WALL_CLOCK_NEW`, both in the slot that
//! logs dirty pages (each write of the hypervisor's must show in the dirty
//! log), then:
//! - measures at least one second on the VMM's i8254 PIT (channel 0, rate
//!   generator, polled with the counter-latch command) and checks that
//!   kvmclock measured the same interval within 1 %, and that the same
//!   samples with a `tsc_to_system_mul` 5 % off fail that check (a check
//!   of the check: a wrong scale from the hypervisor would be caught);
//! - reads kvmclock 10,000 times and finds it never goes back, also across
//!   a write of the TSC (which moves `tsc_timestamp`);
//! - checks the wall clock plus kvmclock against the VMM's CMOS RTC (2 s);
//! - registers the old `MSR_KVM_SYSTEM_TIME` (0x12) too, and turns it off.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{KVM_FEATURE_CLOCKSOURCE2, LOGGED_SLOT_BASE};
    use abi::rtc;
    use core::ptr::read_volatile;
    use core::sync::atomic::{Ordering, fence};
    use guests::cpu::{cpuid, rdtsc_fenced};
    use guests::fault::try_wrmsr;
    use guests::port::{dirty_log_head, exit, inb, outb};
    use guests::{BootInfo, fail, println};

    const MSR_KVM_SYSTEM_TIME: u32 = 0x12;
    const MSR_KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
    const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
    const IA32_TSC: u32 = 0x10;
    /// The areas: the time info in page 3 of the logged slot (not at the
    /// page's start, as Linux's per-CPU array is not), the wall clock in
    /// page 6, the old MSR's time info in page 8.
    const TIME_INFO: u64 = LOGGED_SLOT_BASE + 3 * 4096 + 0x40;
    const WALL_CLOCK: u64 = LOGGED_SLOT_BASE + 6 * 4096 + 0x10;
    const OLD_TIME_INFO: u64 = LOGGED_SLOT_BASE + 8 * 4096;

    const PIT_HZ: u64 = 1_193_182;
    const NS_PER_SEC: u64 = 1_000_000_000;

    guests::entry!(run);

    /// One consistent reading of the time info and the TSC.
    #[derive(Clone, Copy)]
    struct Sample {
        version: u32,
        tsc: u64,
        tsc_timestamp: u64,
        system_time: u64,
        mul: u32,
        shift: i8,
        flags: u8,
    }

    impl Sample {
        /// kvmclock's time at this reading, in ns, with `mul` as the
        /// multiplier (the pvclock formula, as Linux's `pvclock_scale_delta`).
        fn ns_with(&self, mul: u32) -> u64 {
            let delta = self.tsc.wrapping_sub(self.tsc_timestamp);
            let d = if self.shift < 0 {
                delta >> -i32::from(self.shift)
            } else {
                delta << self.shift
            };
            self.system_time
                .wrapping_add(((u128::from(d) * u128::from(mul)) >> 32) as u64)
        }

        fn ns(&self) -> u64 {
            self.ns_with(self.mul)
        }
    }

    fn sample_at(at: u64) -> Sample {
        let p = at as *const u8;
        // SAFETY: `at` is 32 bytes of our RAM (identity-mapped), which the
        // hypervisor writes only between our instructions.
        let rd = |off: usize, n: usize| unsafe {
            let mut v = [0u8; 8];
            for (i, b) in v.iter_mut().enumerate().take(n) {
                *b = read_volatile(p.add(off + i));
            }
            u64::from_le_bytes(v)
        };
        loop {
            let version = rd(0, 4) as u32;
            fence(Ordering::Acquire);
            let s = Sample {
                version,
                tsc: rdtsc_fenced(),
                tsc_timestamp: rd(8, 8),
                system_time: rd(16, 8),
                mul: rd(24, 4) as u32,
                shift: rd(28, 1) as u8 as i8,
                flags: rd(29, 1) as u8,
            };
            fence(Ordering::Acquire);
            if version & 1 == 0 && rd(0, 4) as u32 == version {
                return s;
            }
        }
    }

    fn sample() -> Sample {
        sample_at(TIME_INFO)
    }

    /// Channel 0's count, latched.
    fn pit_count() -> u16 {
        outb(0x43, 0x00);
        let lo = inb(0x40);
        let hi = inb(0x40);
        u16::from_le_bytes([lo, hi])
    }

    /// Measures one second on the PIT: (kvmclock samples at both ends, PIT
    /// ns between them).
    fn one_pit_second() -> (Sample, Sample, u64) {
        // Channel 0, low then high byte, mode 2, binary; count 65536.
        outb(0x43, 0b0011_0100);
        outb(0x40, 0);
        outb(0x40, 0);
        let mut last = pit_count();
        let start = sample();
        let mut ticks = 0u64;
        while ticks < PIT_HZ {
            let now = pit_count();
            // A period is 55 ms: every poll comes well within one.
            ticks += u64::from(last.wrapping_sub(now));
            last = now;
        }
        let end = sample();
        (start, end, ticks * NS_PER_SEC / PIT_HZ)
    }

    /// Parts per million between `a` and `b`.
    fn ppm(a: u64, b: u64) -> u64 {
        a.abs_diff(b) * 1_000_000 / b.max(1)
    }

    /// The VMM's RTC now, in Unix seconds.
    fn rtc_seconds() -> u64 {
        let read = |index: u8| {
            outb(rtc::INDEX_PORT, index);
            inb(rtc::DATA_PORT)
        };
        loop {
            while read(rtc::STATUS_A) & rtc::A_UIP != 0 {}
            let mut regs = [0u8; 10];
            for (i, v) in regs.iter_mut().enumerate() {
                *v = read(i as u8);
            }
            let century = read(rtc::CENTURY);
            if read(rtc::SECONDS) != regs[0] {
                continue;
            }
            let t = rtc::decode(&regs, century, read(rtc::STATUS_B));
            match t.unix_seconds() {
                Some(s) => return s,
                None => fail!("the RTC reads {t:?}, not a date"),
            }
        }
    }

    fn kvm_base() -> Option<u32> {
        (0x4000_0000u32..0x4001_0000).step_by(0x100).find(|&base| {
            let c = cpuid(base, 0);
            [c.ebx, c.ecx, c.edx] == [b"KVMK", b"VMKV", b"M\0\0\0"].map(|s| u32::from_le_bytes(*s))
        })
    }

    fn wrmsr(msr: u32, value: u64) {
        // SAFETY: kvmclock's MSRs write only the areas named, our RAM; the
        // TSC moves only our own clock.
        if let Err(v) = unsafe { try_wrmsr(msr, value) } {
            fail!("WRMSR {msr:#x} <- {value:#x} raised vector {v}");
        }
    }

    fn run(_boot: BootInfo) -> ! {
        let Some(base) = kvm_base() else {
            fail!("no KVMKVMKVM signature in CPUID 0x40000000-0x40010000")
        };
        let features = cpuid(base + 1, 0).eax;
        if features & KVM_FEATURE_CLOCKSOURCE2 == 0 {
            fail!("KVM leaves at {base:#x} without KVM_FEATURE_CLOCKSOURCE2 ({features:#x})");
        }
        println!("kvmclock offered at CPUID {base:#x}");

        // Register; each area the hypervisor writes is a dirty page.
        dirty_log_head();
        wrmsr(MSR_KVM_SYSTEM_TIME_NEW, TIME_INFO | 1);
        let log = dirty_log_head();
        println!(
            "dirty log after registering the time info: {:#x} {:#x}",
            log[0], log[1]
        );
        if log != [3, abi::guest::MEMTEST_END] {
            fail!("the time info's page (3) is not alone in the dirty log");
        }
        let s = sample();
        if s.mul == 0 || s.version == 0 {
            fail!(
                "the time info was not written (version {}, mul {})",
                s.version,
                s.mul
            );
        }
        println!("time info: version even, tsc_to_system_mul and tsc_shift set");

        // One PIT second, measured by kvmclock.
        let (a, b, pit_ns) = one_pit_second();
        let kvm_ns = b.ns().wrapping_sub(a.ns());
        let off = ppm(kvm_ns, pit_ns);
        if off > 10_000 {
            fail!("kvmclock measured {kvm_ns} ns where the PIT measured {pit_ns} ns ({off} ppm)");
        }
        println!("kvmclock agrees with the PIT over a second, within 1 %");
        println!("kvmclock vs PIT: {kvm_ns} ns vs {pit_ns} ns, {off} ppm apart");
        // The check is not blind: the same samples with a multiplier 5 %
        // off fail it (5 %, so that a real error just inside 1 % cannot
        // cancel it out).
        let wrong = if a.mul < u32::MAX - a.mul / 20 {
            a.mul + a.mul / 20
        } else {
            a.mul - a.mul / 20
        };
        let wrong_ns = b.ns_with(wrong).wrapping_sub(a.ns_with(wrong));
        let wrong_off = ppm(wrong_ns, pit_ns);
        if wrong_off <= 10_000 {
            fail!("a tsc_to_system_mul 5 % off measured {wrong_ns} ns, within 1 % of the PIT");
        }
        println!("a tsc_to_system_mul 5 % off is caught");

        // Monotonic, across a write of the TSC too.
        let mut last = sample().ns();
        for i in 0..10_000u32 {
            if i == 5000 {
                wrmsr(IA32_TSC, 1 << 20);
            }
            let now = sample().ns();
            if now < last {
                fail!("kvmclock went back from {last} to {now} at read {i}");
            }
            last = now;
        }
        println!("10000 reads never go back, across a write of the TSC");

        // The wall clock.
        dirty_log_head();
        wrmsr(MSR_KVM_WALL_CLOCK_NEW, WALL_CLOCK);
        let log = dirty_log_head();
        println!(
            "dirty log after registering the wall clock: {:#x} {:#x}",
            log[0], log[1]
        );
        if log != [6, abi::guest::MEMTEST_END] {
            fail!("the wall clock's page (6) is not alone in the dirty log");
        }
        // SAFETY: our RAM, written by the hypervisor at the WRMSR.
        let (version, sec) = unsafe {
            (
                read_volatile(WALL_CLOCK as *const u32),
                read_volatile((WALL_CLOCK + 4) as *const u32),
            )
        };
        if version & 1 != 0 || version == 0 {
            fail!("wall clock version {version}");
        }
        let now = u64::from(sec) + sample().ns() / NS_PER_SEC;
        let rtc = rtc_seconds();
        if now.abs_diff(rtc) > 2 {
            fail!("wall clock + kvmclock says {now}, the RTC {rtc}");
        }
        println!("wall clock + kvmclock matches the RTC within 2 s");

        // The old MSR works the same; bit 0 clear turns it off.
        wrmsr(MSR_KVM_SYSTEM_TIME, OLD_TIME_INFO | 1);
        let old = sample_at(OLD_TIME_INFO);
        if old.mul != a.mul || old.shift != a.shift {
            fail!("MSR 0x12's scale differs from MSR_KVM_SYSTEM_TIME_NEW's");
        }
        wrmsr(MSR_KVM_SYSTEM_TIME, 0);
        wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
        println!("the old MSR too; both off");
        let stable = if s.flags & 1 != 0 { "set" } else { "clear" };
        println!("PVCLOCK_TSC_STABLE_BIT {stable}");
        println!("PASS");
        exit(0)
    }
}
