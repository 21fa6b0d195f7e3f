//! A PCI host bridge on configuration mechanism #1 (PCI Local Bus 3.0
//! §3.2.2.3.2): CONFIG_ADDRESS at 0xcf8 (a dword register) and
//! CONFIG_DATA at 0xcfc–0xcff. Bus 0, device 0, function 0 is the host
//! bridge (class 06/00); every other function reads as absent (all ones),
//! so a kernel's probe finds a PCI bus with nothing on it. Configuration
//! writes are ignored: the bridge has no BARs and nothing to enable.

use super::{Effect, PortDevice};

/// The ports: CONFIG_ADDRESS and CONFIG_DATA.
pub const PCI_BASE: u16 = 0xcf8;
pub const PCI_LEN: u16 = 8;
/// CONFIG_ADDRESS: the enable bit, and the bits that store (bus, device,
/// function, register; the low two bits read as 0).
const ENABLE: u32 = 1 << 31;
const ADDRESS_BITS: u32 = 0x80ff_fffc;
/// The host bridge's identity: Red Hat's 0x1b36:0x0008, the IDs QEMU's
/// generic PCIe host bridge has (virtual hardware's usual vendor; Linux
/// only looks at the class).
const VENDOR: u16 = 0x1b36;
const DEVICE: u16 = 0x0008;
/// Class code: bridge (06), host bridge (00), programming interface 0.
const CLASS_HOST_BRIDGE: u32 = 0x0600_0000;

/// The host bridge and its address latch.
#[derive(Clone, Debug, Default)]
pub struct PciHost {
    address: u32,
}

impl PciHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration dword at `address` (CONFIG_ADDRESS's form).
    fn config(address: u32) -> u32 {
        let (bus, devfn) = ((address >> 16) & 0xff, (address >> 8) & 0xff);
        if bus != 0 || devfn != 0 {
            return 0xffff_ffff;
        }
        match address & 0xfc {
            0x00 => u32::from(VENDOR) | (u32::from(DEVICE) << 16),
            0x08 => CLASS_HOST_BRIDGE, // revision 0
            _ => 0,                    // command, status, header type 0, no BARs
        }
    }
}

impl PortDevice for PciHost {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let value = match offset {
            0..=3 if data.len() == 4 && offset == 0 => self.address,
            0..=3 => 0xffff_ffff,
            _ if self.address & ENABLE == 0 => 0xffff_ffff,
            _ => Self::config(self.address) >> (8 * u32::from(offset - 4)),
        };
        for (i, b) in data.iter_mut().enumerate() {
            *b = (value >> (8 * i)) as u8;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> Effect {
        if offset == 0 && data.len() == 4 {
            self.address = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) & ADDRESS_BITS;
        }
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::PortBus;
    use alloc::boxed::Box;

    fn bus() -> PortBus {
        let mut bus = PortBus::new();
        bus.insert(PCI_BASE, PCI_LEN, Box::new(PciHost::new()))
            .unwrap();
        bus
    }

    fn rd(bus: &mut PortBus, port: u16, size: usize) -> u32 {
        let mut b = [0u8; 4];
        bus.read(port, &mut b[..size]);
        u32::from_le_bytes(b)
    }

    #[test]
    fn linux_type1_probe_finds_the_host_bridge() {
        let mut bus = bus();
        // pci_check_type1: the address register reads back what was written.
        bus.write(0xcf8, &0x8000_0000u32.to_le_bytes());
        assert_eq!(rd(&mut bus, 0xcf8, 4), 0x8000_0000);
        // Bus 0, device 0: IDs and class.
        assert_eq!(rd(&mut bus, 0xcfc, 4), 0x0008_1b36);
        bus.write(0xcf8, &0x8000_0008u32.to_le_bytes());
        assert_eq!(rd(&mut bus, 0xcfc, 4) >> 8, 0x06_0000);
        assert_eq!(rd(&mut bus, 0xcfe, 2), 0x0600, "class through a word read");
        // Device 1 and bus 1 are absent.
        bus.write(0xcf8, &0x8000_0800u32.to_le_bytes());
        assert_eq!(rd(&mut bus, 0xcfc, 4), 0xffff_ffff);
        bus.write(0xcf8, &0x8001_0000u32.to_le_bytes());
        assert_eq!(rd(&mut bus, 0xcfc, 2), 0xffff);
        // Without the enable bit, nothing answers; a byte write to 0xcfb
        // (the type-2 probe) changes nothing.
        bus.write(0xcf8, &0u32.to_le_bytes());
        assert_eq!(rd(&mut bus, 0xcfc, 4), 0xffff_ffff);
        bus.write(0xcfb, &[1]);
        assert_eq!(rd(&mut bus, 0xcf8, 4), 0);
    }
}
