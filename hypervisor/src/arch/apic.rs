//! The host's local APIC (SDM Vol. 3A chapter 11): the hypervisor's own
//! periodic timer, which gives the control domain its CPU back from a guest
//! that never exits (DESIGN.md D2), and end-of-interrupt. xAPIC registers
//! through the physical-memory window, or x2APIC MSRs where the firmware
//! left x2APIC on.
//!
//! The timer's input frequency is measured at boot against the TSC, which
//! `tsc` measured against the PIT, and the tick is programmed for
//! [`TICK_US`]. Where both frequencies are known the timer runs one-shot
//! (SDM Vol. 3A 11.5.4.1), each expiry programmed for the nearer of the next
//! tick and the guest timer deadline the exit loop set
//! ([`set_guest_deadline`]: a guest LAPIC timer, `control::lapic`), so that
//! guest timers fire on time rather than on the next tick. The ICR starts
//! the other CPUs (`smp`).
//!
//! Only the boot CPU runs the timer: the statics below are its state (the
//! APs take no timer interrupts yet).

// The register code is built for the bare-metal target only; host unit
// tests see the constants without their users.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

use super::instr::{rdmsr, wrmsr};
use super::msr::IA32_APIC_BASE;
use super::percpu::MAX_CPUS;
use crate::mm::{HostPhys, phys};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// IA32_APIC_BASE bits (SDM Vol. 3A 11.4.4).
const APIC_ENABLE: u64 = 1 << 11;
const APIC_X2APIC: u64 = 1 << 10;

/// xAPIC register offsets; the x2APIC MSR is 0x800 + offset / 16 (SDM Vol.
/// 3A Table 11-1, 11.12.1).
mod reg {
    pub const EOI: u32 = 0xb0;
    pub const SVR: u32 = 0xf0;
    pub const LVT_TIMER: u32 = 0x320;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3e0;
    pub const ID: u32 = 0x20;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
}

/// ICR bits (SDM Vol. 3A 11.6.1): delivery mode INIT (101b) and start-up
/// (110b), level assert, and (xAPIC) delivery status.
pub const ICR_INIT: u32 = 0b101 << 8;
pub const ICR_STARTUP: u32 = 0b110 << 8;
pub const ICR_ASSERT: u32 = 1 << 14;
/// Delivery mode NMI (100b) and the "all excluding self" shorthand (11b in
/// bits 19:18).
pub const ICR_NMI: u32 = 0b100 << 8;
pub const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;
const ICR_PENDING: u32 = 1 << 12;
/// The x2APIC ICR is one 64-bit MSR (SDM Vol. 3A 11.12.9).
const X2APIC_ICR: u32 = 0x830;

/// SVR bit 8: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// LVT timer bit 17: periodic mode.
const TIMER_PERIODIC: u32 = 1 << 17;
/// Divide configuration 0b0011: divide by 16.
const DIVIDE_BY_16: u32 = 0b0011;

/// The timer's vector and the spurious-interrupt vector.
pub const TIMER_VECTOR: u8 = 0xef;
/// The vector one CPU interrupts another with to end the RUN there
/// (`control::cpus::kick`): its handler only acknowledges it.
pub const KICK_VECTOR: u8 = 0xee;
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// LVT bit 16: masked.
const LVT_MASKED: u32 = 1 << 16;
/// The tick the hypervisor asks for (D2): 10 ms.
pub const TICK_US: u64 = 10_000;
/// How long the timer's frequency is measured against the TSC.
const CALIBRATION_US: u64 = 10_000;
/// The count used where the TSC's frequency is not known (about 16 ms
/// under QEMU's 1 GHz APIC clock).
const FALLBACK_COUNT: u32 = 1_000_000;
/// The timer's input frequency (Hz, before the divider), once measured.
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);

/// The local APIC timer's input frequency in Hz, as measured at boot
/// against the TSC (itself measured against the PIT); 0 if unknown.
pub fn timer_hz() -> u64 {
    TIMER_HZ.load(Ordering::Relaxed)
}

/// Measures the timer's input frequency: a masked one-shot count from the
/// top over `CALIBRATION_US` of the calibrated TSC.
#[cfg(target_os = "none")]
fn calibrate() -> Option<u64> {
    let khz = super::tsc::frequency_khz();
    if khz == 0 {
        return None;
    }
    write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
    write(reg::LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(reg::TIMER_INITIAL, u32::MAX);
    let start = super::instr::rdtsc();
    let end = start + khz * CALIBRATION_US / 1000;
    while super::instr::rdtsc() < end {
        core::hint::spin_loop();
    }
    let current = read(reg::TIMER_CURRENT);
    let cycles = super::instr::rdtsc() - start;
    write(reg::TIMER_INITIAL, 0);
    let counted = u64::from(u32::MAX - current) * 16;
    // Hz = counted / (cycles / (khz * 1000)).
    let hz = u128::from(counted) * u128::from(khz) * 1000 / u128::from(cycles.max(1));
    (hz > 0).then_some(hz as u64)
}

/// Per CPU (`arch::percpu::index`): the timer runs there. (A tick not yet
/// taken is `percpu::attention::TICK`.)
/// Timer interrupts taken on all CPUs, for `stats` and tests.
pub static TICKS: AtomicU64 = AtomicU64::new(0);
static RUNNING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The measured tick period in TSC cycles (0: no timer).
static PERIOD_TSC: AtomicU64 = AtomicU64::new(0);
/// One-shot mode (the same on every CPU); per CPU, the TSC value of its
/// next tick and the nearest guest timer deadline of the vCPUs it runs, in
/// host TSC cycles (`u64::MAX`: none).
static ONE_SHOT: AtomicBool = AtomicBool::new(false);
static NEXT_TICK: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
static GUEST_DEADLINE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
/// The tick's length in TSC cycles as programmed (one-shot mode).
static TICK_TSC: AtomicU64 = AtomicU64::new(0);

/// The timer's period in TSC cycles, once measured (0 without a timer).
pub fn period_tsc() -> u64 {
    PERIOD_TSC.load(Ordering::Relaxed)
}

fn base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
    unsafe { rdmsr(IA32_APIC_BASE) }
}

fn write(r: u32, v: u32) {
    let b = base();
    if b & APIC_X2APIC != 0 {
        // SAFETY: in x2APIC mode each register is the MSR 0x800 + r/16.
        unsafe { wrmsr(0x800 + r / 16, u64::from(v)) };
    } else {
        let pa = HostPhys::new((b & !0xfff) + u64::from(r));
        // SAFETY: the physical window maps the APIC page (checked by
        // `start_timer` before the first write); the register exists.
        unsafe { phys::ptr::<u32>(pa).write_volatile(v) };
    }
}

fn read(r: u32) -> u32 {
    let b = base();
    if b & APIC_X2APIC != 0 {
        // SAFETY: as in `write`.
        unsafe { rdmsr(0x800 + r / 16) as u32 }
    } else {
        let pa = HostPhys::new((b & !0xfff) + u64::from(r));
        // SAFETY: as in `write`.
        unsafe { phys::ptr::<u32>(pa).read_volatile() }
    }
}

/// Sends an inter-processor interrupt (`icr`: the ICR's low 32 bits) to
/// the local APIC `dest`, waiting (bounded) until the xAPIC has sent it.
/// False if the local APIC is off or out of reach.
#[cfg(target_os = "none")]
pub fn send_ipi(dest: u32, icr: u32) -> bool {
    let b = base();
    if b & APIC_ENABLE == 0 {
        return false;
    }
    if b & APIC_X2APIC != 0 {
        // SAFETY: the x2APIC ICR; the destination is in bits 63:32.
        unsafe { wrmsr(X2APIC_ICR, (u64::from(dest) << 32) | u64::from(icr)) };
        return true;
    }
    // 0xFF is the xAPIC broadcast address, not a CPU.
    if !xapic_mapped() || dest >= 0xff {
        return false;
    }
    write(reg::ICR_HIGH, dest << 24);
    write(reg::ICR_LOW, icr);
    (0..1_000_000).any(|_| read(reg::ICR_LOW) & ICR_PENDING == 0)
}

/// This CPU's local APIC id (the ID register: the x2APIC id, or bits
/// 31:24 in xAPIC mode); None if the local APIC is off or out of reach.
#[cfg(target_os = "none")]
pub fn id() -> Option<u32> {
    let b = base();
    if b & APIC_ENABLE == 0 {
        return None;
    }
    if b & APIC_X2APIC != 0 {
        return Some(read(reg::ID));
    }
    xapic_mapped().then(|| read(reg::ID) >> 24)
}

/// Whether the xAPIC page is reachable through the physical window (the
/// bootloader maps physical memory up to the highest region it knows of).
#[cfg(target_os = "none")]
fn xapic_mapped() -> bool {
    use x86_64::structures::paging::{OffsetPageTable, PageTable, Translate};
    let (frame, _) = x86_64::registers::control::Cr3::read();
    let offset = phys::to_virt(HostPhys::new(0)).raw();
    let table = phys::ptr::<PageTable>(HostPhys::new(frame.start_address().as_u64()));
    // SAFETY: CR3 holds the active PML4 and the window maps it; the table is
    // only read.
    let pt = unsafe { OffsetPageTable::new(&mut *table, x86_64::VirtAddr::new(offset)) };
    let apic = phys::to_virt(HostPhys::new(base() & !0xfff)).raw();
    pt.translate_addr(x86_64::VirtAddr::new(apic)).is_some()
}

/// Starts the timer on the boot CPU, measuring its frequency first; false
/// (and no timer) if the local APIC is off or out of reach.
#[cfg(target_os = "none")]
pub fn start_timer() -> bool {
    if !usable() {
        return false;
    }
    write(reg::SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    if let Some(hz) = calibrate() {
        TIMER_HZ.store(hz, Ordering::Relaxed);
    }
    arm();
    true
}

/// Starts the timer on an application processor with the boot CPU's
/// measurement (the local APIC timers of one machine share a clock: the
/// bus or core crystal, SDM Vol. 3A 11.5.4). False as `start_timer`.
#[cfg(target_os = "none")]
pub fn start_timer_ap() -> bool {
    if !usable() || !RUNNING[0].load(Ordering::Relaxed) {
        return false;
    }
    write(reg::SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    arm();
    true
}

/// Whether this CPU's local APIC is on and reachable.
#[cfg(target_os = "none")]
fn usable() -> bool {
    let b = base();
    b & APIC_ENABLE != 0 && (b & APIC_X2APIC != 0 || xapic_mapped())
}

/// Programs this CPU's timer: one-shot for the next tick where both
/// frequencies are known, else periodic.
#[cfg(target_os = "none")]
fn arm() {
    let cpu = super::percpu::index();
    write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
    let khz = super::tsc::frequency_khz();
    if timer_hz() != 0 && khz != 0 {
        // One-shot, re-armed from the interrupt handler.
        let tick = khz * TICK_US / 1000;
        TICK_TSC.store(tick, Ordering::Relaxed);
        NEXT_TICK[cpu].store(super::instr::rdtsc() + tick, Ordering::Relaxed);
        ONE_SHOT.store(true, Ordering::Relaxed);
        write(reg::LVT_TIMER, u32::from(TIMER_VECTOR));
        program(super::instr::rdtsc());
    } else {
        // At least 1000 counts: a mismeasured frequency must not make an
        // interrupt storm.
        let count = match timer_hz() {
            0 => FALLBACK_COUNT,
            hz => (hz / 16 * TICK_US / 1_000_000).clamp(1000, u64::from(u32::MAX)) as u32,
        };
        write(reg::LVT_TIMER, TIMER_PERIODIC | u32::from(TIMER_VECTOR));
        write(reg::TIMER_INITIAL, count);
    }
    RUNNING[cpu].store(true, Ordering::Relaxed);
}

/// The timer count for `cycles` TSC cycles from now, rounded up (an early
/// expiry only costs one more interrupt, a late one delays the event).
fn count_for(cycles: u64) -> u32 {
    let khz = u128::from(super::tsc::frequency_khz().max(1));
    let counts = (u128::from(cycles) * u128::from(timer_hz()) / 16).div_ceil(khz * 1000);
    counts.clamp(1, u128::from(u32::MAX)) as u32
}

/// One-shot mode: arms the timer for the nearer of the next tick and the
/// guest deadline.
fn program(now: u64) {
    let cpu = super::percpu::index();
    let target = NEXT_TICK[cpu]
        .load(Ordering::Relaxed)
        .min(GUEST_DEADLINE[cpu].load(Ordering::Relaxed));
    write(reg::TIMER_INITIAL, count_for(target.saturating_sub(now)));
}

/// Whether the timer runs one-shot, re-armed for ticks and guest deadlines.
pub fn one_shot() -> bool {
    ONE_SHOT.load(Ordering::Relaxed)
}

/// The guest timer deadline (host TSC) the timer is armed for, if any.
pub fn guest_deadline() -> Option<u64> {
    let d = GUEST_DEADLINE[super::percpu::index()].load(Ordering::Relaxed);
    (d != u64::MAX).then_some(d)
}

/// Makes the timer also expire at `deadline` (host TSC), or no longer
/// (None). Without one-shot mode guest timers are seen on the next tick.
pub fn set_guest_deadline(deadline: Option<u64>) {
    let d = deadline.unwrap_or(u64::MAX);
    if GUEST_DEADLINE[super::percpu::index()].swap(d, Ordering::Relaxed) != d
        && ONE_SHOT.load(Ordering::Relaxed)
    {
        program(super::instr::rdtsc());
    }
}

/// Waits for two ticks with interrupts on (bounded) and returns the TSC
/// cycles between them, or None if no tick came: the timer then counts as
/// not running.
#[cfg(target_os = "none")]
pub fn measure_period() -> Option<u64> {
    let wait = || {
        let seen = TICKS.load(Ordering::Relaxed);
        for _ in 0..200_000_000u64 {
            // SAFETY: the hypervisor's interrupt handlers only acknowledge and
            // count; one instruction with interrupts on per round.
            unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
            if TICKS.load(Ordering::Relaxed) != seen {
                return Some(super::instr::rdtsc());
            }
        }
        None
    };
    let first = wait();
    let second = first.and_then(|_| wait());
    take_tick();
    match (first, second) {
        (Some(a), Some(b)) => {
            PERIOD_TSC.store(b - a, Ordering::Relaxed);
            Some(b - a)
        }
        _ => {
            RUNNING[super::percpu::index()].store(false, Ordering::Relaxed);
            None
        }
    }
}

/// Whether this CPU's timer runs (so a HLT will end).
pub fn timer_running() -> bool {
    RUNNING[super::percpu::index()].load(Ordering::Relaxed)
}

/// Called from the timer's interrupt handler. In one-shot mode the
/// interrupt may be a guest deadline's rather than a tick: a tick is
/// counted only once its time has come, an expired guest deadline is
/// forgotten (the exit loop finds the guest timer expired and sets the
/// next), and the timer is armed again.
pub fn on_tick() {
    let cpu = super::percpu::index();
    if !ONE_SHOT.load(Ordering::Relaxed) {
        TICKS.fetch_add(1, Ordering::Relaxed);
        super::percpu::raise(cpu, super::percpu::attention::TICK);
        return;
    }
    let now = super::instr::rdtsc();
    let next = NEXT_TICK[cpu].load(Ordering::Relaxed);
    if now >= next {
        TICKS.fetch_add(1, Ordering::Relaxed);
        super::percpu::raise(cpu, super::percpu::attention::TICK);
        let tick = TICK_TSC.load(Ordering::Relaxed);
        // Ticks missed (interrupts were off that long) are not made up.
        let after = next.saturating_add(tick);
        NEXT_TICK[cpu].store(
            if after > now { after } else { now + tick },
            Ordering::Relaxed,
        );
    }
    if GUEST_DEADLINE[cpu].load(Ordering::Relaxed) <= now {
        GUEST_DEADLINE[cpu].store(u64::MAX, Ordering::Relaxed);
    }
    program(now);
}

/// Whether a tick came since the last call (and forgets it).
pub fn take_tick() -> bool {
    super::percpu::take(super::percpu::attention::TICK)
}

/// Acknowledges the interrupt being handled.
pub fn eoi() {
    if base() & APIC_ENABLE != 0 {
        write(reg::EOI, 0);
    }
}
