//! The small ports of the test-guest convention (`abi::guest`): the
//! debug-exit port that ends a VM with a status (DESIGN.md §3), the
//! port-E9 debug console, the yield port, the POST port, and the test
//! ports for interrupts, MSIs, level-triggered interrupts (GSI routes) and
//! debugging.

use super::{Effect, PortDevice};

/// The debug-exit port (0xf4): writing `v` ends the VM with status `v`
/// (0 = pass), as QEMU's `isa-debug-exit,iobase=0xf4,iosize=4` does. 1-, 2-
/// and 4-byte writes are taken whole (little-endian); reads return all
/// ones, as QEMU's device does.
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugExit;

/// Ports the debug-exit device decodes (QEMU's `iosize=0x04`).
pub const DEBUG_EXIT_LEN: u16 = 4;

impl PortDevice for DebugExit {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> Effect {
        let mut v = [0; 4];
        for (dst, src) in v.iter_mut().zip(data) {
            *dst = *src;
        }
        Effect::Exit(u32::from_le_bytes(v))
    }
}

/// The debug console at `abi::guest::CONSOLE_PORT` (0xe9): every write's
/// low byte is serial output; reads return 0xe9, as the Bochs and QEMU
/// port-E9 hacks do, so a guest can probe for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugCon;

impl PortDevice for DebugCon {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = abi::guest::CONSOLE_PORT as u8;
        }
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> Effect {
        data.first().map_or(Effect::None, |&b| Effect::Output(b))
    }
}

/// The yield port (`abi::guest::YIELD_PORT`): a write offers the CPU to the
/// next VM. Reads return all ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct YieldPort;

impl PortDevice for YieldPort {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u16, _data: &[u8]) -> Effect {
        Effect::Yield
    }
}

/// The POST / I/O-delay port (`abi::guest::POST_PORT`, 0x80): writes are
/// ignored, reads return 0xff. Mojito answers it inside the hypervisor, so
/// this model only serves the host back end (and it is on the list of
/// exits the differential test removes, `record::IN_HYPERVISOR`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PostPort;

impl PortDevice for PostPort {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u16, _data: &[u8]) -> Effect {
        Effect::None
    }
}

/// The interrupt test port (`abi::guest::IRQ_PORT`): a write raises the
/// external interrupt vector written. Reads return all ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct IrqPort;

impl PortDevice for IrqPort {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> Effect {
        data.first().map_or(Effect::None, |&v| Effect::Irq(v))
    }
}

/// The MSI test port (`abi::guest::MSI_PORT`): a write asks the VMM to
/// send the vector written as an MSI to local APIC 0 (`KVM_SIGNAL_MSI`,
/// split irqchip); a read returns what the last one returned, as an `i32`
/// (> 0 delivered, 0 blocked, -errno), all ones before the first.
#[derive(Clone, Copy, Debug, Default)]
pub struct MsiPort {
    /// Set by the run loop after each `KVM_SIGNAL_MSI`.
    pub last: Option<i32>,
}

impl PortDevice for MsiPort {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        let value = self.last.unwrap_or(-1);
        for (dst, src) in data.iter_mut().zip(value.to_le_bytes()) {
            *dst = src;
        }
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> Effect {
        data.first().map_or(Effect::None, |&v| Effect::Msi(v))
    }
}

/// The level-triggered interrupt test port (`abi::guest::LEVEL_IRQ_PORT`):
/// a write asks the VMM to send the MSI of the test route (`KVM_SET_GSI_ROUTING`
/// at creation) whose vector was written; a read returns the
/// `KVM_EXIT_IOAPIC_EOI`s the run loop has counted for the three test
/// vectors, one byte each.
#[derive(Clone, Copy, Debug, Default)]
pub struct LevelIrqPort {
    /// `KVM_EXIT_IOAPIC_EOI`s of `abi::guest::LEVEL_VECTOR`,
    /// `LEVEL_VECTOR_UNRESERVED` and `EDGE_VECTOR`, in that order.
    pub eois: [u8; 3],
}

impl LevelIrqPort {
    /// Counts a `KVM_EXIT_IOAPIC_EOI` of `vector` (other vectors are not
    /// the test's).
    pub fn count_eoi(&mut self, vector: u8) {
        use abi::guest::{EDGE_VECTOR, LEVEL_VECTOR, LEVEL_VECTOR_UNRESERVED};
        let i = match vector {
            LEVEL_VECTOR => 0,
            LEVEL_VECTOR_UNRESERVED => 1,
            EDGE_VECTOR => 2,
            _ => return,
        };
        self.eois[i] = self.eois[i].saturating_add(1);
    }
}

impl PortDevice for LevelIrqPort {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        let [a, b, c] = self.eois;
        for (dst, src) in data.iter_mut().zip([a, b, c, 0]) {
            *dst = src;
        }
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> Effect {
        data.first().map_or(Effect::None, |&v| Effect::LevelIrq(v))
    }
}

/// The debugging test port (`abi::guest::DEBUG_PORT`): a write is a
/// command for the VMM's debugger; a read returns how many
/// `KVM_EXIT_DEBUG`s the last session had.
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugPort {
    pub exits: u32,
    /// Breakpoint addresses (`abi::guest::DEBUG_ADDR_PORT`, the next port).
    pub addrs: [u32; 4],
    pub n_addrs: usize,
}

/// Ports: the command port and the address port after it.
pub const DEBUG_PORTS: u16 = 2;

impl PortDevice for DebugPort {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        for (dst, src) in data.iter_mut().zip(self.exits.to_le_bytes()) {
            *dst = src;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> Effect {
        if offset == 1 {
            let mut v = [0u8; 4];
            for (dst, src) in v.iter_mut().zip(data) {
                *dst = *src;
            }
            if let Some(slot) = self.addrs.get_mut(self.n_addrs) {
                *slot = u32::from_le_bytes(v);
                self.n_addrs += 1;
            }
            return Effect::None;
        }
        data.first().map_or(Effect::None, |&c| Effect::Debug(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::PortBus;
    use alloc::boxed::Box;

    #[test]
    fn debug_exit_takes_1_2_and_4_byte_writes() {
        let mut bus = PortBus::new();
        bus.insert(0xf4, DEBUG_EXIT_LEN, Box::new(DebugExit))
            .unwrap();
        assert_eq!(bus.write(0xf4, &[0]), Effect::Exit(0));
        assert_eq!(bus.write(0xf4, &[0x34, 0x12]), Effect::Exit(0x1234));
        assert_eq!(bus.write(0xf4, &[1, 2, 3, 4]), Effect::Exit(0x0403_0201));
        let mut d = [0; 2];
        bus.read(0xf4, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        assert!(bus.unknown_reads().is_empty());
    }

    #[test]
    fn debug_console_post_and_yield() {
        let mut bus = PortBus::new();
        bus.insert(0xe9, 1, Box::new(DebugCon)).unwrap();
        bus.insert(0x80, 1, Box::new(PostPort)).unwrap();
        bus.insert(0xf5, 1, Box::new(YieldPort)).unwrap();
        assert_eq!(bus.write(0xe9, &[b'A', 0x12, 0, 0]), Effect::Output(b'A'));
        let mut d = [0; 1];
        bus.read(0xe9, &mut d);
        assert_eq!(d, [0xe9]);
        bus.read(0x80, &mut d);
        assert_eq!(d, [0xff]);
        assert_eq!(bus.write(0x80, &[0x55]), Effect::None);
        assert_eq!(bus.write(0xf5, &[0]), Effect::Yield);
    }

    #[test]
    fn msi_port_asks_for_the_vector_and_reports_the_answer() {
        let mut bus = PortBus::new();
        bus.insert(abi::guest::MSI_PORT, 1, Box::new(MsiPort::default()))
            .unwrap();
        assert_eq!(bus.write(abi::guest::MSI_PORT, &[0x58]), Effect::Msi(0x58));
        let mut d = [0; 4];
        bus.read(abi::guest::MSI_PORT, &mut d);
        assert_eq!(d, [0xff; 4], "nothing sent yet");
        bus.get_mut::<MsiPort>(abi::guest::MSI_PORT).unwrap().last = Some(-22);
        bus.read(abi::guest::MSI_PORT, &mut d);
        assert_eq!(i32::from_le_bytes(d), -22);
    }

    #[test]
    fn level_irq_port_asks_for_the_vector_and_counts_eois() {
        use abi::guest::{EDGE_VECTOR, LEVEL_IRQ_PORT, LEVEL_VECTOR, LEVEL_VECTOR_UNRESERVED};
        let mut bus = PortBus::new();
        bus.insert(LEVEL_IRQ_PORT, 1, Box::new(LevelIrqPort::default()))
            .unwrap();
        assert_eq!(
            bus.write(LEVEL_IRQ_PORT, &[LEVEL_VECTOR]),
            Effect::LevelIrq(LEVEL_VECTOR)
        );
        let mut d = [0xaa; 4];
        bus.read(LEVEL_IRQ_PORT, &mut d);
        assert_eq!(d, [0; 4], "no EOI yet");
        let port = bus.get_mut::<LevelIrqPort>(LEVEL_IRQ_PORT).unwrap();
        port.count_eoi(LEVEL_VECTOR);
        port.count_eoi(EDGE_VECTOR);
        port.count_eoi(EDGE_VECTOR);
        port.count_eoi(0x40);
        for _ in 0..300 {
            port.count_eoi(LEVEL_VECTOR_UNRESERVED);
        }
        bus.read(LEVEL_IRQ_PORT, &mut d);
        assert_eq!(
            u32::from_le_bytes(d),
            0x02_ff_01,
            "a byte each, stopping at 255"
        );
    }
}
