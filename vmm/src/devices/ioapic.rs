//! The VMM's IOAPIC for KVM's split irqchip (DESIGN.md D4): an Intel
//! 82093AA with 24 pins at `crate::acpi::IOAPIC_ADDR`. The local APICs are
//! the kernel's, so a pin's interrupt leaves here as the MSI its
//! redirection entry describes (SDM Vol. 3A §11.11 message format), sent
//! with `KVM_SIGNAL_MSI`; the entries are also given to the kernel as GSI
//! routes ([`IoApic::routes`], `KVM_SET_GSI_ROUTING`), from which it learns
//! which vectors are level-triggered and answers their EOI with
//! `KVM_EXIT_IOAPIC_EOI` ([`IoApic::eoi`]).
//!
//! Edge-triggered pins send one message per rising edge while unmasked.
//! Level-triggered pins send one while the line is asserted and the
//! remote IRR is clear, set the remote IRR, and send again after the EOI
//! if the line is still asserted (or when unmasked while asserted).
//! Delivery status always reads idle: a message is handed over at once.

use alloc::vec::Vec;

/// Pins (redirection entries).
pub const PINS: usize = 24;
/// The MMIO window: IOREGSEL at 0x00, IOWIN at 0x10.
pub const MMIO_LEN: u64 = 0x20;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// Indirect registers (82093AA data sheet §3.2).
const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARBITRATION: u8 = 0x02;
const REG_REDIRECTION: u8 = 0x10;
/// Version 0x11 with the highest entry index in bits 16–23.
const VERSION: u32 = 0x11 | ((PINS as u32 - 1) << 16);
/// Redirection-entry fields.
const RTE_VECTOR: u64 = 0xff;
const RTE_DELIVERY_SHIFT: u32 = 8;
const RTE_DELIVERY_MASK: u64 = 0b111 << RTE_DELIVERY_SHIFT;
const RTE_DEST_LOGICAL: u64 = 1 << 11;
const RTE_POLARITY_LOW: u64 = 1 << 13;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
const RTE_DEST_SHIFT: u32 = 56;
/// What software may write (not delivery status, not remote IRR).
const RTE_WRITABLE: u64 = 0xff00_0000_0001_afff;
/// The delivery modes sent: fixed, lowest priority and NMI, which the
/// local APICs take as MSIs. SMI and INIT (which KVM's and Mojito's
/// `KVM_SIGNAL_MSI` refuse), ExtINT (which needs a PIC behind it) and the
/// reserved modes are dropped, as a message nobody accepts is.
const DELIVERY_FIXED: u64 = 0;
const DELIVERY_LOWEST: u64 = 1;
const DELIVERY_NMI: u64 = 4;
/// MSI address (SDM Vol. 3A §11.11.1) and data (§11.11.2) fields.
const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;
const MSI_ADDR_DEST_SHIFT: u32 = 12;
const MSI_ADDR_LOGICAL: u64 = 1 << 2;
const MSI_DATA_LEVEL_ASSERT: u32 = 1 << 14;
const MSI_DATA_LEVEL_TRIGGER: u32 = 1 << 15;
/// Vectors 0–15 are reserved; an entry with one delivers nothing.
const FIRST_VECTOR: u64 = 0x10;

/// One message-signalled interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    pub address: u64,
    pub data: u32,
}

/// The IOAPIC.
#[derive(Clone, Debug)]
pub struct IoApic {
    id: u8,
    select: u8,
    rte: [u64; PINS],
    /// The input lines (bit n: pin n asserted, before polarity).
    lines: u32,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new(0)
    }
}

impl IoApic {
    /// An IOAPIC in its reset state: every entry masked.
    pub fn new(id: u8) -> Self {
        Self {
            id: id & 0xf,
            select: 0,
            rte: [RTE_MASKED; PINS],
            lines: 0,
        }
    }

    /// The message pin `pin`'s entry sends.
    fn message(rte: u64) -> Msi {
        let dest = (rte >> RTE_DEST_SHIFT) & 0xff;
        let mut address = MSI_ADDRESS_BASE | (dest << MSI_ADDR_DEST_SHIFT);
        if rte & RTE_DEST_LOGICAL != 0 {
            address |= MSI_ADDR_LOGICAL;
        }
        let mut data = (rte & (RTE_VECTOR | RTE_DELIVERY_MASK)) as u32;
        if rte & RTE_LEVEL != 0 {
            data |= MSI_DATA_LEVEL_TRIGGER | MSI_DATA_LEVEL_ASSERT;
        }
        Msi { address, data }
    }

    fn asserted(&self, pin: usize) -> bool {
        let line = self.lines & (1 << pin) != 0;
        line != (self.rte[pin] & RTE_POLARITY_LOW != 0)
    }

    /// Sends pin `pin`'s message if its entry lets it.
    fn deliver(&mut self, pin: usize, out: &mut Vec<Msi>) {
        let rte = self.rte[pin];
        let delivery = (rte & RTE_DELIVERY_MASK) >> RTE_DELIVERY_SHIFT;
        let sent = match delivery {
            DELIVERY_FIXED | DELIVERY_LOWEST => rte & RTE_VECTOR >= FIRST_VECTOR,
            DELIVERY_NMI => true,
            _ => false,
        };
        if rte & RTE_MASKED != 0 || !sent {
            return;
        }
        if rte & RTE_LEVEL != 0 {
            if rte & RTE_REMOTE_IRR != 0 {
                return;
            }
            self.rte[pin] |= RTE_REMOTE_IRR;
        }
        out.push(Self::message(rte));
    }

    /// Sets input line `pin` (pins past the last are ignored) and appends
    /// what that sends to `out`.
    pub fn set_line(&mut self, pin: usize, level: bool, out: &mut Vec<Msi>) {
        if pin >= PINS {
            return;
        }
        let was = self.asserted(pin);
        self.lines = (self.lines & !(1 << pin)) | (u32::from(level) << pin);
        let now = self.asserted(pin);
        let level_triggered = self.rte[pin] & RTE_LEVEL != 0;
        if now && (level_triggered || !was) {
            self.deliver(pin, out);
        }
    }

    /// The local APIC's EOI of `vector` (`KVM_EXIT_IOAPIC_EOI`): clears the
    /// remote IRR of the level-triggered entries with that vector and
    /// sends again for those still asserted.
    pub fn eoi(&mut self, vector: u8, out: &mut Vec<Msi>) {
        for pin in 0..PINS {
            let rte = self.rte[pin];
            if rte & RTE_LEVEL != 0 && rte & RTE_VECTOR == u64::from(vector) {
                self.rte[pin] &= !RTE_REMOTE_IRR;
                if self.asserted(pin) {
                    self.deliver(pin, out);
                }
            }
        }
    }

    /// The GSI routes for `KVM_SET_GSI_ROUTING`: every pin's message as it
    /// stands, so the kernel knows the level-triggered vectors.
    pub fn routes(&self) -> impl Iterator<Item = (u32, Msi)> + '_ {
        (0..PINS).map(|pin| (pin as u32, Self::message(self.rte[pin])))
    }

    fn register(&self, index: u8) -> u32 {
        match index {
            REG_ID | REG_ARBITRATION => u32::from(self.id) << 24,
            REG_VERSION => VERSION,
            i if i >= REG_REDIRECTION && usize::from(i - REG_REDIRECTION) < 2 * PINS => {
                let n = usize::from(i - REG_REDIRECTION);
                (self.rte[n / 2] >> (32 * (n % 2))) as u32
            }
            _ => 0xffff_ffff,
        }
    }

    /// A read of `data.len()` bytes at `offset` in the MMIO window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset & !3 {
            IOREGSEL => u32::from(self.select),
            IOWIN => self.register(self.select),
            _ => 0xffff_ffff,
        };
        // Bytes from `offset` on within the 32-bit register; past it, 0.
        let bytes = value.to_le_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = bytes.get((offset & 3) as usize + i).copied().unwrap_or(0);
        }
    }

    /// A write at `offset`; appends what it sends to `out` and returns
    /// whether a redirection entry changed (the routes must be set again).
    pub fn write(&mut self, offset: u64, data: &[u8], out: &mut Vec<Msi>) -> bool {
        let mut value = 0u32;
        for (i, &b) in data.iter().take(4).enumerate() {
            value |= u32::from(b) << (8 * i);
        }
        match offset {
            IOREGSEL => {
                self.select = value as u8;
                false
            }
            IOWIN => match self.select {
                REG_ID => {
                    self.id = (value >> 24) as u8 & 0xf;
                    false
                }
                i if i >= REG_REDIRECTION && usize::from(i - REG_REDIRECTION) < 2 * PINS => {
                    let n = usize::from(i - REG_REDIRECTION);
                    let (pin, shift) = (n / 2, 32 * (n % 2));
                    let old = self.rte[pin];
                    let keep = old & !(0xffff_ffffu64 << shift);
                    let new = keep
                        | ((u64::from(value) << shift) & RTE_WRITABLE)
                        | (old & RTE_REMOTE_IRR);
                    // An edge entry has no remote IRR.
                    self.rte[pin] = if new & RTE_LEVEL == 0 {
                        new & !RTE_REMOTE_IRR
                    } else {
                        new
                    };
                    // Unmasking a level entry whose line is asserted sends.
                    if old & RTE_MASKED != 0
                        && new & RTE_MASKED == 0
                        && new & RTE_LEVEL != 0
                        && self.asserted(pin)
                    {
                        self.deliver(pin, out);
                    }
                    old != self.rte[pin]
                }
                _ => false,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_reg(io: &mut IoApic, index: u8, value: u32, out: &mut Vec<Msi>) -> bool {
        io.write(IOREGSEL, &[index], out);
        io.write(IOWIN, &value.to_le_bytes(), out)
    }

    fn read_reg(io: &mut IoApic, index: u8) -> u32 {
        let mut out = Vec::new();
        io.write(IOREGSEL, &[index], &mut out);
        let mut b = [0; 4];
        io.read(IOWIN, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn identification_registers() {
        let mut io = IoApic::new(2);
        assert_eq!(read_reg(&mut io, REG_ID), 2 << 24);
        assert_eq!(read_reg(&mut io, REG_VERSION), 0x0017_0011);
        assert_eq!(read_reg(&mut io, 0x10), 1 << 16, "masked at reset");
        assert_eq!(read_reg(&mut io, 0x3f), 0, "last entry's high half");
        assert_eq!(read_reg(&mut io, 0x40), 0xffff_ffff, "past the last entry");
        let mut b = [0; 1];
        io.read(IOREGSEL, &mut b);
        assert_eq!(b, [0x40]);
        // Wide or unaligned reads take the register's bytes, then zeros.
        let mut wide = [0xff; 8];
        io.read(IOREGSEL + 3, &mut wide);
        assert_eq!(wide, [0; 8]);
        io.read(IOREGSEL, &mut wide);
        assert_eq!(wide, [0x40, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn edge_pin_sends_once_per_rising_edge() {
        let mut io = IoApic::new(0);
        let mut out = Vec::new();
        io.set_line(4, true, &mut out);
        assert!(out.is_empty(), "masked");
        io.set_line(4, false, &mut out);
        // Vector 0x24, fixed, physical destination 1.
        assert!(write_reg(&mut io, 0x10 + 8, 0x24, &mut out));
        assert!(write_reg(&mut io, 0x10 + 9, 1 << 24, &mut out));
        io.set_line(4, true, &mut out);
        io.set_line(4, true, &mut out);
        assert_eq!(
            out,
            [Msi {
                address: 0xfee0_1000,
                data: 0x24
            }]
        );
        io.set_line(4, false, &mut out);
        io.set_line(4, true, &mut out);
        assert_eq!(out.len(), 2);
        // Logical destination, lowest priority.
        write_reg(&mut io, 0x10 + 8, 0x24 | (1 << 8) | (1 << 11), &mut out);
        io.set_line(4, false, &mut out);
        io.set_line(4, true, &mut out);
        assert_eq!(
            out[2],
            Msi {
                address: 0xfee0_1004,
                data: 0x124
            }
        );
    }

    #[test]
    fn level_pin_waits_for_eoi() {
        let mut io = IoApic::new(0);
        let mut out = Vec::new();
        io.set_line(9, true, &mut out);
        // Unmasking an asserted level pin sends at once.
        write_reg(&mut io, 0x10 + 18, 0x39 | (1 << 15), &mut out);
        let level = Msi {
            address: 0xfee0_0000,
            data: 0x39 | (1 << 15) | (1 << 14),
        };
        assert_eq!(out, [level]);
        assert_ne!(read_reg(&mut io, 0x10 + 18) & (1 << 14), 0, "remote IRR");
        io.set_line(9, true, &mut out);
        assert_eq!(out.len(), 1, "remote IRR holds it");
        io.eoi(0x38, &mut out);
        assert_eq!(out.len(), 1, "another vector's EOI");
        io.eoi(0x39, &mut out);
        assert_eq!(out, [level, level], "still asserted: again");
        io.set_line(9, false, &mut out);
        io.eoi(0x39, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(read_reg(&mut io, 0x10 + 18) & (1 << 14), 0);
        // Software cannot set the remote IRR or delivery status.
        write_reg(
            &mut io,
            0x10 + 18,
            0x39 | (1 << 15) | (1 << 14) | (1 << 12),
            &mut out,
        );
        assert_eq!(read_reg(&mut io, 0x10 + 18), 0x39 | (1 << 15));
    }

    #[test]
    fn active_low_and_bad_entries() {
        let mut io = IoApic::new(0);
        let mut out = Vec::new();
        // Active low, edge: the falling line is the rising edge.
        write_reg(&mut io, 0x10, 0x30 | (1 << 13), &mut out);
        assert!(out.is_empty(), "unmasking an edge pin sends nothing");
        io.set_line(0, true, &mut out);
        assert!(out.is_empty());
        io.set_line(0, false, &mut out);
        assert_eq!(out.len(), 1);
        // A reserved vector, ExtINT, SMI and INIT send nothing; nor do pins
        // past 23. NMI does.
        out.clear();
        write_reg(&mut io, 0x12, 0x05, &mut out);
        write_reg(&mut io, 0x14, 0x40 | (7 << 8), &mut out);
        write_reg(&mut io, 0x16, 0x40 | (2 << 8), &mut out);
        write_reg(&mut io, 0x18, 0x40 | (5 << 8), &mut out);
        for pin in [1, 2, 3, 4, 24, 100] {
            io.set_line(pin, true, &mut out);
        }
        assert!(out.is_empty());
        write_reg(&mut io, 0x1a, 4 << 8, &mut out);
        io.set_line(5, true, &mut out);
        assert_eq!(
            out,
            [Msi {
                address: 0xfee0_0000,
                data: 4 << 8
            }],
            "NMI"
        );
        assert_eq!(io.routes().count(), PINS);
    }
}
