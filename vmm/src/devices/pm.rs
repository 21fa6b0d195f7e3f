//! ACPI fixed hardware (ACPI 6.4 §4.8) at the ports the FADT names
//! (`crate::acpi::PM_BASE`): the PM1a event block (PM1_STS, PM1_EN), the
//! PM1a control block (SCI_EN, SLP_TYP, SLP_EN) and the 24-bit PM timer.
//!
//! The machine is always in ACPI mode (the FADT has no SMI_CMD), so
//! SCI_EN reads 1. No fixed event raises an SCI: the timer-carry and
//! power-button events are not modelled, and their enable bits only
//! store. Writing SLP_EN with SLP_TYP = `\_S5`'s value powers the VM off
//! ([`Effect::PowerOff`]); other sleep types are ignored (the DSDT offers
//! none).

use alloc::sync::Arc;

use super::{Effect, PortDevice};
use crate::acpi::SLP_TYP_S5;
use crate::clock::{Clock, NS_PER_SEC};

/// The PM timer's frequency (ACPI 6.4 §4.8.3.3): 3.579545 MHz.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// Register offsets from the PM base.
const PM1_STS: u16 = 0;
const PM1_EN: u16 = 2;
const PM1_CNT: u16 = 4;
const PM_TMR: u16 = 8;
/// PM1_CNT bits (§4.8.3.2.1).
const SCI_EN: u16 = 1 << 0;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0b111;
const SLP_EN: u16 = 1 << 13;
/// The PM1_CNT bits that store (SCI_EN is fixed, SLP_EN write-only).
const PM1_CNT_STORED: u16 = (SLP_TYP_MASK << SLP_TYP_SHIFT) | 0b110;
/// PM1_STS bits that exist (TMR, BM, GBL, PWRBTN, SLPBTN, RTC, WAK).
const PM1_STS_BITS: u16 = 0x8f31;
/// PM1_EN bits that exist (TMR, GBL, PWRBTN, SLPBTN, RTC).
const PM1_EN_BITS: u16 = 0x0721;
const TIMER_MASK: u64 = 0x00ff_ffff;

/// The PM register blocks.
pub struct Pm {
    clock: Arc<dyn Clock>,
    sts: u16,
    en: u16,
    cnt: u16,
}

impl Pm {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            sts: 0,
            en: 0,
            cnt: 0,
        }
    }

    /// The PM timer's count: the back end's monotonic clock at 3.579545
    /// MHz, 24 bits.
    fn timer(&self) -> u32 {
        let ns = u128::from(self.clock.monotonic_ns());
        let ticks = ns * u128::from(PM_TIMER_HZ) / u128::from(NS_PER_SEC);
        (ticks as u64 & TIMER_MASK) as u32
    }

    fn register(&self, reg: u16) -> u32 {
        match reg {
            PM1_STS => u32::from(self.sts),
            PM1_EN => u32::from(self.en),
            PM1_CNT => u32::from(self.cnt | SCI_EN),
            PM_TMR => self.timer(),
            _ => 0,
        }
    }
}

impl PortDevice for Pm {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        // A register is read from its start, any width; a read at an odd
        // offset sees the upper bytes of the register below it.
        let (reg, shift) = match offset {
            0..=1 => (PM1_STS, offset),
            2..=3 => (PM1_EN, offset - 2),
            4..=7 => (PM1_CNT, offset - 4),
            _ => (PM_TMR, offset - 8),
        };
        let mut value = u64::from(self.register(reg)) >> (8 * shift);
        if data.len() > 2 && reg < PM1_CNT && offset == PM1_STS {
            // A dword read of the event block: PM1_EN in the upper half.
            value |= u64::from(self.en) << 16;
        }
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = (value >> (8 * i)) as u8;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> Effect {
        let mut value = 0u32;
        for (i, &b) in data.iter().enumerate() {
            value |= u32::from(b) << (8 * i);
        }
        match offset {
            PM1_STS => {
                // Write 1 to clear; a dword write also sets PM1_EN.
                self.sts &= !(value as u16);
                if data.len() == 4 {
                    self.en = (value >> 16) as u16 & PM1_EN_BITS;
                }
            }
            PM1_EN => self.en = value as u16 & PM1_EN_BITS,
            PM1_CNT => {
                let v = value as u16;
                self.cnt = v & PM1_CNT_STORED;
                let slp_typ = (v >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
                if v & SLP_EN != 0 && slp_typ == u16::from(SLP_TYP_S5) {
                    return Effect::PowerOff;
                }
            }
            _ => {} // The timer is read-only.
        }
        self.sts &= PM1_STS_BITS;
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::devices::PortBus;
    use alloc::boxed::Box;

    fn bus() -> (PortBus, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(0));
        let mut bus = PortBus::new();
        bus.insert(0x600, 12, Box::new(Pm::new(clock.clone())))
            .unwrap();
        (bus, clock)
    }

    fn rd(bus: &mut PortBus, port: u16, size: usize) -> u32 {
        let mut b = [0u8; 4];
        bus.read(port, &mut b[..size]);
        u32::from_le_bytes(b)
    }

    #[test]
    fn timer_counts_at_3_58_mhz_and_wraps_at_24_bits() {
        let (mut bus, clock) = bus();
        assert_eq!(rd(&mut bus, 0x608, 4), 0);
        clock.advance(NS_PER_SEC);
        assert_eq!(rd(&mut bus, 0x608, 4), 3_579_545);
        clock.advance(4 * NS_PER_SEC); // 5 s: 17,897,725 ticks, past 2^24
        assert_eq!(rd(&mut bus, 0x608, 4), 17_897_725 & 0xff_ffff);
        assert_eq!(bus.write(0x608, &[0, 0, 0, 0]), Effect::None);
    }

    #[test]
    fn control_block_reads_sci_en_and_s5_powers_off() {
        let (mut bus, _) = bus();
        assert_eq!(rd(&mut bus, 0x604, 2), 1, "always in ACPI mode");
        // SLP_TYP = 5 without SLP_EN only stores.
        assert_eq!(bus.write(0x604, &(5u16 << 10).to_le_bytes()), Effect::None);
        assert_eq!(rd(&mut bus, 0x604, 2), (5 << 10) | 1);
        // S1 (type 1) with SLP_EN: not offered, nothing happens.
        assert_eq!(
            bus.write(0x604, &((1u16 << 10) | SLP_EN).to_le_bytes()),
            Effect::None
        );
        assert_eq!(
            rd(&mut bus, 0x604, 2) & u32::from(SLP_EN),
            0,
            "SLP_EN reads 0"
        );
        assert_eq!(
            bus.write(0x604, &((5u16 << 10) | SLP_EN).to_le_bytes()),
            Effect::PowerOff
        );
    }

    #[test]
    fn event_block_stores_enables() {
        let (mut bus, _) = bus();
        bus.write(0x602, &0xffffu16.to_le_bytes());
        assert_eq!(rd(&mut bus, 0x602, 2), u32::from(PM1_EN_BITS));
        assert_eq!(rd(&mut bus, 0x600, 4), u32::from(PM1_EN_BITS) << 16);
        bus.write(0x600, &[0xff, 0xff, 0, 0]);
        assert_eq!(rd(&mut bus, 0x600, 4), 0);
    }
}
