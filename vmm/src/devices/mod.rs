//! Device models, the port-I/O bus that dispatches to them, and the MMIO
//! scratch page of the test guests (`scratch`; every other MMIO address
//! reads as all ones).
//!
//! Every model answers every access: a read of a register it does not
//! have returns what the hardware would (usually all ones or 0), never an
//! error (the rust-vmm rule: device models never fail a read). A port no
//! device claims reads as all ones, like an empty ISA bus, and both its
//! reads and writes are counted per port, so `stats` can show what a guest
//! probed.

pub mod console;
pub mod debug;
pub mod i8042;
pub mod ioapic;
pub mod memtest;
pub mod pci;
pub mod pit;
pub mod pm;
pub mod rtc;
pub mod scratch;
pub mod uart;
pub mod virtio;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::any::Any;

/// What a port write asks the VMM to do besides updating the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// A byte of the guest's serial output (UART THR, debug console).
    Output(u8),
    /// End the VM with this status (the debug-exit port, DESIGN.md §3).
    Exit(u32),
    /// The guest offers to give up the CPU (`abi::guest::YIELD_PORT`).
    Yield,
    /// A command for the VMM about the VM itself (the memory-slot test
    /// port, `abi::guest::MEMTEST_PORT`).
    Command(u8),
    /// Raise external interrupt vector (`abi::guest::IRQ_PORT`).
    Irq(u8),
    /// Send this vector as an MSI to local APIC 0 (`abi::guest::MSI_PORT`).
    Msi(u8),
    /// Send the MSI of the test route with this vector
    /// (`abi::guest::LEVEL_IRQ_PORT`).
    LevelIrq(u8),
    /// A debugging command (`abi::guest::DEBUG_PORT`).
    Debug(u8),
    /// The guest powered the machine off (ACPI S5 through PM1a_CNT).
    PowerOff,
    /// The guest reset the machine (the 8042's reset line).
    Reset,
}

/// A device on the port-I/O bus.
pub trait PortDevice: Any + Send {
    /// Whether the device's registers are one byte wide: then the bus
    /// splits a 2- or 4-byte access into byte accesses to consecutive
    /// ports, as an 8-bit ISA device sees it.
    fn byte_wide(&self) -> bool {
        true
    }
    /// Reads `data.len()` bytes (1, 2 or 4; 1 for a byte-wide device) at
    /// `offset` from the device's base port.
    fn read(&mut self, offset: u16, data: &mut [u8]);
    /// Writes `data` (as for `read`) at `offset`.
    fn write(&mut self, offset: u16, data: &[u8]) -> Effect;
}

/// All ones in `size` bytes (1, 2 or 4), the value of a read from a port
/// nothing answers.
pub const fn all_ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

/// Two devices claimed the same port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// The first port both claim.
    pub port: u16,
}

struct Slot {
    base: u16,
    len: u16,
    device: Box<dyn PortDevice>,
}

/// The port-I/O bus: devices by port range, and the ports nobody claims.
#[derive(Default)]
pub struct PortBus {
    slots: Vec<Slot>,
    unknown_reads: BTreeMap<u16, u64>,
    unknown_writes: BTreeMap<u16, u64>,
}

impl core::fmt::Debug for PortBus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PortBus")
            .field(
                "devices",
                &self
                    .slots
                    .iter()
                    .map(|s| (s.base, s.len))
                    .collect::<Vec<_>>(),
            )
            .field("unknown_reads", &self.unknown_reads)
            .field("unknown_writes", &self.unknown_writes)
            .finish()
    }
}

impl PortBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` at ports `base..base + len`.
    pub fn insert(
        &mut self,
        base: u16,
        len: u16,
        device: Box<dyn PortDevice>,
    ) -> Result<(), Overlap> {
        let end = u32::from(base) + u32::from(len);
        for s in &self.slots {
            let s_end = u32::from(s.base) + u32::from(s.len);
            if u32::from(base) < s_end && u32::from(s.base) < end {
                return Err(Overlap {
                    port: base.max(s.base),
                });
            }
        }
        self.slots.push(Slot { base, len, device });
        Ok(())
    }

    /// The device of type `T` whose range starts at `base`.
    pub fn get_mut<T: PortDevice>(&mut self, base: u16) -> Option<&mut T> {
        let slot = self.slots.iter_mut().find(|s| s.base == base)?;
        let device: &mut dyn Any = slot.device.as_mut();
        device.downcast_mut::<T>()
    }

    /// The device of type `T` whose range starts at `base`.
    pub fn get<T: PortDevice>(&self, base: u16) -> Option<&T> {
        let slot = self.slots.iter().find(|s| s.base == base)?;
        let device: &dyn Any = slot.device.as_ref();
        device.downcast_ref::<T>()
    }

    fn find(&mut self, port: u16) -> Option<(u16, &mut Slot)> {
        self.slots.iter_mut().find_map(|s| {
            let offset = port.wrapping_sub(s.base);
            (port >= s.base && offset < s.len).then_some((offset, s))
        })
    }

    /// An IN of `data.len()` bytes (1, 2 or 4) from `port`. Never fails.
    pub fn read(&mut self, port: u16, data: &mut [u8]) {
        match self.find(port) {
            Some((offset, slot)) if !slot.device.byte_wide() || data.len() == 1 => {
                slot.device.read(offset, data);
            }
            Some(_) => {
                for (i, byte) in data.iter_mut().enumerate() {
                    let p = port.wrapping_add(i as u16);
                    match self.find(p) {
                        Some((offset, slot)) => {
                            slot.device.read(offset, core::slice::from_mut(byte))
                        }
                        None => *byte = 0xff,
                    }
                }
            }
            None => {
                data.fill(0xff);
                *self.unknown_reads.entry(port).or_default() += 1;
            }
        }
    }

    /// An OUT of `data` (1, 2 or 4 bytes) to `port`. Of a split access,
    /// the first effect other than `None` wins.
    pub fn write(&mut self, port: u16, data: &[u8]) -> Effect {
        match self.find(port) {
            Some((offset, slot)) if !slot.device.byte_wide() || data.len() == 1 => {
                slot.device.write(offset, data)
            }
            Some(_) => {
                let mut effect = Effect::None;
                for (i, byte) in data.iter().enumerate() {
                    let p = port.wrapping_add(i as u16);
                    if let Some((offset, slot)) = self.find(p) {
                        let e = slot.device.write(offset, core::slice::from_ref(byte));
                        if effect == Effect::None {
                            effect = e;
                        }
                    }
                }
                effect
            }
            None => {
                *self.unknown_writes.entry(port).or_default() += 1;
                Effect::None
            }
        }
    }

    /// Reads from ports no device claims, per port.
    pub fn unknown_reads(&self) -> &BTreeMap<u16, u64> {
        &self.unknown_reads
    }

    /// Writes to ports no device claims, per port.
    pub fn unknown_writes(&self) -> &BTreeMap<u16, u64> {
        &self.unknown_writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-wide device whose register `i` reads `base_value + i`.
    struct Counter(u8);

    impl PortDevice for Counter {
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data[0] = self.0 + offset as u8;
        }
        fn write(&mut self, offset: u16, data: &[u8]) -> Effect {
            Effect::Output(data[0] + offset as u8)
        }
    }

    #[test]
    fn unknown_ports_read_all_ones_and_are_counted() {
        let mut bus = PortBus::new();
        let mut d = [0; 4];
        bus.read(0x2e, &mut d);
        assert_eq!(d, [0xff; 4]);
        let mut d = [0; 2];
        bus.read(0x2e, &mut d);
        assert_eq!(d, [0xff; 2]);
        assert_eq!(bus.write(0x4e, &[1]), Effect::None);
        assert_eq!(bus.unknown_reads().get(&0x2e), Some(&2));
        assert_eq!(bus.unknown_writes().get(&0x4e), Some(&1));
        assert_eq!(all_ones(2), 0xffff);
    }

    #[test]
    fn wide_access_to_byte_device_is_split() {
        let mut bus = PortBus::new();
        bus.insert(0x100, 2, Box::new(Counter(0x10))).unwrap();
        let mut d = [0; 4];
        bus.read(0x100, &mut d);
        // 0x100, 0x101 from the device, 0x102, 0x103 from nobody.
        assert_eq!(d, [0x10, 0x11, 0xff, 0xff]);
        assert_eq!(bus.write(0x101, &[5]), Effect::Output(6));
        assert_eq!(
            bus.insert(0x101, 4, Box::new(Counter(0))),
            Err(Overlap { port: 0x101 })
        );
        assert!(bus.get_mut::<Counter>(0x100).is_some());
        assert!(bus.get_mut::<debug::DebugExit>(0x100).is_none());
    }
}
