//! A guest vCPU's local APIC (`hypervisor::vcpu::lapic`): arbitrary
//! sequences of what a guest and its VMM can do to it — xAPIC register
//! reads and writes, x2APIC MSRs, IA32_APIC_BASE, the TSC deadline,
//! interrupts delivered and taken, time passing or jumping, INIT,
//! KVM_GET/SET_LAPIC images — with time that moves anywhere, as a guest's
//! TSC can. No call may panic, and after each step:
//! - a vector `pending` offers is above the processor priority's class
//!   (SDM Vol. 3A 11.8.3.1), and taking it sets its ISR bit;
//! - after `update_timer(now)` the next deadline, if any, lies after `now`;
//! - a KVM_GET_LAPIC image loaded into a copy reads back the same (but
//!   for the current count, which a restore clamps as KVM's does).
//!
//! Each operation is 12 bytes: an opcode, three argument bytes, and a
//! 64-bit value.

#![no_main]

use hypervisor::vcpu::lapic::{self, Lapic, Mode};
use libfuzzer_sys::fuzz_target;

/// PPR, in either mode (None while the APIC is off).
fn ppr(l: &Lapic) -> Option<u32> {
    match l.mode() {
        Mode::Disabled => None,
        Mode::XApic => Some(l.mmio_read(0xa0, 0)),
        Mode::X2Apic => l.msr_read(0x80a, 0).ok().map(|v| v as u32),
    }
}

fn isr_bit(l: &Lapic, vector: u8, now: u64) -> bool {
    let image = l.get_state(now);
    let at = 0x100 + 0x10 * usize::from(vector / 32);
    let word = u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]]);
    word & (1 << (vector % 32)) != 0
}

fuzz_target!(|data: &[u8]| {
    let mut l = Lapic::new(u32::from(data.first().copied().unwrap_or(0) & 1), 2_000_000);
    let mut now: u64 = 1_000_000;
    for op in data.chunks_exact(12) {
        let (code, a, b) = (op[0], op[1], u16::from_le_bytes([op[2], op[3]]));
        let v = u64::from_le_bytes(op[4..12].try_into().unwrap());
        match code % 14 {
            0 => {
                let _ = l.mmio_write(u32::from(b) & 0xff0, v as u32, now);
            }
            1 => {
                let _ = l.mmio_read(u32::from(b) & 0xff0, now);
            }
            2 => {
                let _ = l.msr_write(lapic::X2APIC_MSR_FIRST + u32::from(a), v, now);
            }
            3 => {
                let _ = l.msr_read(lapic::X2APIC_MSR_FIRST + u32::from(a), now);
            }
            4 => {
                let _ = l.set_base(v, a & 1 != 0);
            }
            5 => {
                let _ = l.set_tsc_deadline(v, now);
            }
            6 => {
                let _ = l.deliver(a, b & 1 != 0);
            }
            7 => {
                if let Some(vector) = l.pending() {
                    l.acknowledge(vector);
                    assert!(isr_bit(&l, vector, now), "{vector:#x} taken, not in service");
                }
            }
            // Time: forward a little, or anywhere (a TSC the guest wrote).
            8 => now = now.wrapping_add(v & 0xffff_ffff),
            9 => now = v,
            10 => {
                l.update_timer(now);
                if let Some(d) = l.timer_deadline() {
                    assert!(d > now, "deadline {d} not after {now} once updated");
                }
            }
            11 => l.init(),
            12 => l.set_tpr(a),
            _ => {
                // A VMM's save and restore, then an edited image. (A timer
                // that is due fires first, as `control::lapic::get` does:
                // a due periodic timer reads 0 and would restore to a full
                // period, as on KVM.)
                l.update_timer(now);
                let image = l.get_state(now);
                let mut copy = l.clone();
                copy.set_state(&image, now).expect("its own image");
                let back = copy.get_state(now);
                // TMCCT is not compared: as on KVM, a restore starts from
                // it but clamps it to the period (a count left from a
                // periodic timer's 200 us floor after a switch to one-shot
                // can exceed TMICT) and takes 0 (under a nanosecond left)
                // as a whole period.
                let tmcct = 0x390..0x394;
                let diff: Vec<(usize, u8, u8)> = (0..image.len())
                    .filter(|&i| back[i] != image[i] && !tmcct.contains(&i))
                    .map(|i| (i, image[i], back[i]))
                    .collect();
                assert!(diff.is_empty(), "an image that did not read back (offset, was, now): {diff:x?}");
                let mut edited = image;
                let at = usize::from(b) % edited.len();
                edited[at] = a;
                let _ = l.set_state(&edited, now);
            }
        }
        if let (Some(vector), Some(p)) = (l.pending(), ppr(&l)) {
            assert!(u32::from(vector) & 0xf0 > p & 0xf0, "{vector:#x} offered at PPR {p:#x}");
        }
    }
});
