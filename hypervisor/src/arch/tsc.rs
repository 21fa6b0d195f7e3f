//! The TSC's frequency, measured once at boot against the i8254 PIT's
//! channel 2 (gated through port 0x61, so no interrupt is needed), and the
//! TSC at boot for the uptime.
//!
//! This is the measurement Linux's quick PIT calibration makes: count the
//! TSC while channel 2 counts down a known interval in mode 0 and raises
//! its OUT pin, which port 0x61 bit 5 reflects. QEMU and Bochs both model
//! it. Machines without a PIT (some UEFI-only PCs) keep 0: the HPET and
//! the ACPI PM timer are the SMP/time issue's.

// The port constants serve `calibrate`, which only the bare-metal build has.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

use core::sync::atomic::{AtomicU64, Ordering};

/// The PIT's input clock: 1.193182 MHz (Intel 8254 datasheet; the ISA PC's
/// 14.31818 MHz crystal divided by 12).
pub const PIT_HZ: u64 = 1_193_182;
/// The interval measured: 10 ms, in PIT counts.
const INTERVAL_MS: u64 = 10;
const INTERVAL_COUNTS: u64 = PIT_HZ * INTERVAL_MS / 1000;

/// Port 0x61 (system control port B): bit 0 gates channel 2, bit 1 routes
/// it to the speaker, bit 5 reads channel 2's OUT.
const PORT_B: u16 = 0x61;
const GATE2: u8 = 1 << 0;
const SPEAKER: u8 = 1 << 1;
const OUT2: u8 = 1 << 5;
/// Mode/command register; channel 2's data port.
const PIT_MODE: u16 = 0x43;
const PIT_CH2: u16 = 0x42;
/// Channel 2 (bits 7:6 = 10), low byte then high byte (5:4 = 11), mode 0
/// "interrupt on terminal count" (3:1 = 000), binary (0 = 0): the 8254
/// datasheet's control word.
const CH2_LOHI_MODE0: u8 = 0b1011_0000;
/// Polls of port 0x61 before giving up (a machine without a PIT reads
/// 0xff or 0 there forever).
const MAX_POLLS: u64 = 50_000_000;

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
static INVARIANT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether the TSC runs at a constant rate in every power state
/// (CPUID 8000_0007h EDX bit 8, "invariant TSC": SDM Vol. 3B 18.17.1, APM
/// Vol. 3 E.4.7), noted by `calibrate`. Only then does one measured
/// frequency hold for good.
pub fn invariant() -> bool {
    INVARIANT.load(Ordering::Relaxed)
}
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);

/// kHz from the TSC cycles counted over `INTERVAL_MS`.
pub fn khz(cycles: u64) -> u64 {
    cycles / INTERVAL_MS
}

/// Notes the TSC at boot.
pub fn mark_boot() {
    BOOT_TSC.store(super::instr::rdtsc(), Ordering::Relaxed);
}

/// TSC cycles since `mark_boot`.
pub fn uptime_cycles() -> u64 {
    super::instr::rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed))
}

/// The measured frequency in kHz, 0 if none.
pub fn frequency_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Measures the TSC against the PIT; returns kHz, or None when the PIT's
/// OUT never rose (or rose at once: no PIT behind the port).
#[cfg(target_os = "none")]
pub fn calibrate() -> Option<u64> {
    use super::instr::{inb, outb, rdtsc};
    // SAFETY: ports 0x61, 0x42 and 0x43 are the PC's port B and PIT, which
    // the hypervisor owns; this runs at boot, before any guest, and
    // channel 2 only drives the speaker, which stays off.
    let cycles = unsafe {
        let b = inb(PORT_B);
        outb(PORT_B, (b & !SPEAKER) | GATE2);
        outb(PIT_MODE, CH2_LOHI_MODE0);
        outb(PIT_CH2, (INTERVAL_COUNTS & 0xff) as u8);
        outb(PIT_CH2, (INTERVAL_COUNTS >> 8) as u8);
        let start = rdtsc();
        // OUT2 is low from the count's load until it reaches 0.
        if inb(PORT_B) & OUT2 != 0 {
            outb(PORT_B, b);
            return None;
        }
        let mut polls = 0;
        while inb(PORT_B) & OUT2 == 0 {
            polls += 1;
            if polls == MAX_POLLS {
                outb(PORT_B, b);
                return None;
            }
        }
        let end = rdtsc();
        outb(PORT_B, b);
        end.wrapping_sub(start)
    };
    let khz = khz(cycles);
    TSC_KHZ.store(khz, Ordering::Relaxed);
    let invariant = raw_cpuid::CpuId::new()
        .get_advanced_power_mgmt_info()
        .is_some_and(|i| i.has_invariant_tsc());
    INVARIANT.store(invariant, Ordering::Relaxed);
    Some(khz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_and_units() {
        // 10 ms of a 1.193182 MHz clock, rounded down: 11931 counts, which
        // fit the 16-bit counter.
        assert_eq!(INTERVAL_COUNTS, 11_931);
        // 30 million cycles in 10 ms: 3 GHz.
        assert_eq!(khz(30_000_000), 3_000_000);
    }
}
