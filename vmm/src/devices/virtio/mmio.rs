//! The virtio-mmio transport, version 2 (Virtio 1.1 §4.2.2): the register
//! window every device shares, the feature negotiation, the queues'
//! configuration, the device status and the interrupt. Only
//! VIRTIO_F_VERSION_1 is offered, and a driver must take it (legacy
//! drivers are refused at FEATURES_OK).

use alloc::vec::Vec;

use super::queue::{Broken, Queue};
use crate::api::GuestRam;

// Registers (§4.2.2).
const MAGIC: u64 = 0x000;
const VERSION: u64 = 0x004;
const DEVICE_ID: u64 = 0x008;
const VENDOR_ID: u64 = 0x00c;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const INTERRUPT_STATUS: u64 = 0x060;
const INTERRUPT_ACK: u64 = 0x064;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_DESC_HIGH: u64 = 0x084;
const QUEUE_DRIVER_LOW: u64 = 0x090;
const QUEUE_DRIVER_HIGH: u64 = 0x094;
const QUEUE_DEVICE_LOW: u64 = 0x0a0;
const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const CONFIG_GENERATION: u64 = 0x0fc;
/// The device-specific configuration starts here.
pub const CONFIG: u64 = 0x100;

const MAGIC_VALUE: u32 = 0x7472_6976; // "virt"
const VERSION_2: u32 = 2;
const VENDOR: u32 = 0x4f4a_4f4d; // "MOJO"
/// VIRTIO_F_VERSION_1 (§6): feature bit 32.
pub const F_VERSION_1: u64 = 1 << 32;
/// Device status bits (§2.1).
const S_DRIVER_OK: u32 = 4;
const S_FEATURES_OK: u32 = 8;
pub const S_NEEDS_RESET: u32 = 64;
/// InterruptStatus: a used buffer (§4.2.2).
const INT_USED_BUFFER: u32 = 1;
const INT_CONFIG_CHANGE: u32 = 2;
/// The queue size offered (a power of 2, §2.6).
pub const QUEUE_SIZE: u16 = 128;

/// What a device type adds to the transport.
pub trait Device {
    /// Its device ID (§5: 2 block, 3 console).
    const ID: u32;
    /// How many queues it has.
    const QUEUES: usize;
    /// Byte `at` of its configuration space (0 past its end).
    fn config(&self, at: u64) -> u8;
    /// Carries out what queue `index` holds; returns whether it used a
    /// buffer (the driver is then interrupted).
    fn process(
        &mut self,
        ram: &GuestRam<'_>,
        index: usize,
        queue: &mut Queue,
    ) -> Result<bool, Broken>;
}

/// A device on the transport.
pub struct Mmio<D: Device> {
    pub dev: D,
    queues: Vec<Queue>,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    interrupt_status: u32,
    status: u32,
}

impl<D: Device> Mmio<D> {
    pub fn new(dev: D) -> Self {
        Self {
            dev,
            queues: alloc::vec![Queue::default(); D::QUEUES],
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            interrupt_status: 0,
            status: 0,
        }
    }

    /// The interrupt line: high while InterruptStatus is not 0.
    pub fn irq(&self) -> bool {
        self.interrupt_status != 0
    }

    /// The device status (§2.1).
    pub fn status(&self) -> u32 {
        self.status
    }

    fn reset(&mut self) {
        self.queues = alloc::vec![Queue::default(); D::QUEUES];
        self.device_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.status = 0;
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn register(&self, offset: u64) -> u32 {
        let q = self.queues.get(self.queue_sel as usize);
        match offset {
            MAGIC => MAGIC_VALUE,
            VERSION => VERSION_2,
            DEVICE_ID => D::ID,
            VENDOR_ID => VENDOR,
            DEVICE_FEATURES if self.device_features_sel == 1 => (F_VERSION_1 >> 32) as u32,
            QUEUE_NUM_MAX if q.is_some() => u32::from(QUEUE_SIZE),
            QUEUE_READY => q.map_or(0, |q| u32::from(q.ready)),
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    /// A read of `data.len()` bytes at `offset` in the window.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG {
            for (i, b) in data.iter_mut().enumerate() {
                *b = self.dev.config(offset - CONFIG + i as u64);
            }
            return;
        }
        // Registers are 32 bits wide and read whole (§4.2.2.2).
        let value = if data.len() == 4 && offset % 4 == 0 {
            self.register(offset)
        } else {
            0
        };
        let bytes = value.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0);
        }
    }

    /// A write at `offset`; returns whether the driver notified a queue
    /// (then [`Mmio::process`] must run with guest RAM).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return false;
        };
        if offset % 4 != 0 || offset >= CONFIG {
            return false; // The configuration is read-only.
        }
        let v = u32::from_le_bytes(bytes);
        let half = |old: u64, high: bool| {
            if high {
                (old & 0xffff_ffff) | (u64::from(v) << 32)
            } else {
                (old & !0xffff_ffff) | u64::from(v)
            }
        };
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = v,
            DRIVER_FEATURES => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return false,
                };
                self.driver_features =
                    (self.driver_features & !(0xffff_ffff << shift)) | (u64::from(v) << shift);
            }
            DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            QUEUE_SEL => self.queue_sel = v,
            QUEUE_NUM => {
                if let (Some(q), Ok(n)) = (self.selected(), u16::try_from(v))
                    && n.is_power_of_two()
                    && n <= QUEUE_SIZE
                {
                    q.num = n;
                }
            }
            QUEUE_READY => {
                if let Some(q) = self.selected() {
                    q.ready = v & 1 != 0;
                }
            }
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH => {
                if let Some(q) = self.selected() {
                    q.desc = half(q.desc, offset == QUEUE_DESC_HIGH);
                }
            }
            QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH => {
                if let Some(q) = self.selected() {
                    q.avail = half(q.avail, offset == QUEUE_DRIVER_HIGH);
                }
            }
            QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.selected() {
                    q.used = half(q.used, offset == QUEUE_DEVICE_HIGH);
                }
            }
            QUEUE_NOTIFY => {
                return self.live() && self.queues.get(v as usize).is_some_and(Queue::usable);
            }
            INTERRUPT_ACK => self.interrupt_status &= !v,
            STATUS if v == 0 => self.reset(),
            STATUS => {
                let mut v = v;
                // FEATURES_OK sticks only for exactly the offered features
                // (§2.2, §6.1: VERSION_1 is required).
                if v & S_FEATURES_OK != 0 && self.driver_features != F_VERSION_1 {
                    v &= !S_FEATURES_OK;
                }
                self.status = v | (self.status & S_NEEDS_RESET);
            }
            _ => {}
        }
        false
    }

    /// Whether the driver has finished setting the device up (DRIVER_OK,
    /// §3.1.1) and it does not need a reset.
    fn live(&self) -> bool {
        self.status & S_DRIVER_OK != 0 && self.status & S_NEEDS_RESET == 0
    }

    /// Carries out the requests waiting in every usable queue, and raises
    /// the interrupt if any buffer was used.
    pub fn process(&mut self, ram: &GuestRam<'_>) {
        if !self.live() {
            return;
        }
        for (i, q) in self.queues.iter_mut().enumerate() {
            if !q.usable() {
                continue;
            }
            match self.dev.process(ram, i, q) {
                Ok(true) => self.interrupt_status |= INT_USED_BUFFER,
                Ok(false) => {}
                Err(Broken) => {
                    // §2.1.2: NEEDS_RESET, announced as a configuration
                    // change.
                    self.status |= S_NEEDS_RESET;
                    self.interrupt_status |= INT_CONFIG_CHANGE;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const DESC: u64 = 0x1000;
    pub const AVAIL: u64 = 0x2000;
    pub const USED: u64 = 0x3000;

    pub fn w32<D: Device>(dev: &mut Mmio<D>, offset: u64, v: u32) -> bool {
        dev.write(offset, &v.to_le_bytes())
    }

    pub fn r32<D: Device>(dev: &Mmio<D>, offset: u64) -> u32 {
        let mut b = [0; 4];
        dev.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// A device driven through the driver's initialisation (§3.1.1), each
    /// queue with 16 entries: queue q's rings at DESC/AVAIL/USED + q × 0x8000.
    pub fn ready<D: Device>(dev: D) -> Mmio<D> {
        let mut m = Mmio::new(dev);
        assert_eq!(r32(&m, MAGIC), 0x7472_6976);
        assert_eq!(r32(&m, VERSION), 2);
        assert_eq!(r32(&m, DEVICE_ID), D::ID);
        w32(&mut m, STATUS, 1 | 2);
        w32(&mut m, DEVICE_FEATURES_SEL, 1);
        assert_eq!(r32(&m, DEVICE_FEATURES), 1, "VERSION_1");
        w32(&mut m, DRIVER_FEATURES_SEL, 1);
        w32(&mut m, DRIVER_FEATURES, 1);
        w32(&mut m, STATUS, 1 | 2 | 8);
        assert_eq!(r32(&m, STATUS) & 8, 8, "FEATURES_OK holds");
        for q in 0..D::QUEUES as u32 {
            w32(&mut m, QUEUE_SEL, q);
            assert_eq!(r32(&m, QUEUE_NUM_MAX), u32::from(QUEUE_SIZE));
            w32(&mut m, QUEUE_NUM, 16);
            let off = u64::from(q) * 0x8000;
            for (reg, v) in [
                (QUEUE_DESC_LOW, DESC + off),
                (QUEUE_DRIVER_LOW, AVAIL + off),
                (QUEUE_DEVICE_LOW, USED + off),
            ] {
                w32(&mut m, reg, v as u32);
            }
            w32(&mut m, QUEUE_READY, 1);
        }
        w32(&mut m, QUEUE_SEL, D::QUEUES as u32);
        assert_eq!(r32(&m, QUEUE_NUM_MAX), 0, "no such queue");
        w32(&mut m, STATUS, 1 | 2 | 8 | 4);
        m
    }

    pub fn desc(
        ram: &GuestRam<'_>,
        queue: u64,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let at = DESC + queue * 0x8000 + 16 * u64::from(i);
        ram.write_u64(at, addr).unwrap();
        ram.write_u32(at + 8, len).unwrap();
        ram.write_u16(at + 12, flags).unwrap();
        ram.write_u16(at + 14, next).unwrap();
    }

    /// Makes chain `head` of `queue` available.
    pub fn offer(ram: &GuestRam<'_>, queue: u64, head: u16) {
        let avail = AVAIL + queue * 0x8000;
        let idx = ram.read_u16(avail + 2).unwrap();
        ram.write_u16(avail + 4 + 2 * u64::from(idx % 16), head)
            .unwrap();
        ram.write_u16(avail + 2, idx + 1).unwrap();
    }

    /// The used ring's index and entry `i` of `queue`.
    pub fn used(ram: &GuestRam<'_>, queue: u64, i: u64) -> (u16, u32, u32) {
        let used = USED + queue * 0x8000;
        (
            ram.read_u16(used + 2).unwrap(),
            ram.read_u32(used + 4 + 8 * i).unwrap(),
            ram.read_u32(used + 8 + 8 * i).unwrap(),
        )
    }

    struct Null;
    impl Device for Null {
        const ID: u32 = 99;
        const QUEUES: usize = 1;
        fn config(&self, at: u64) -> u8 {
            at as u8
        }
        fn process(&mut self, _: &GuestRam<'_>, _: usize, _: &mut Queue) -> Result<bool, Broken> {
            Err(Broken)
        }
    }

    #[test]
    fn transport_rules() {
        let mut m = Mmio::new(Null);
        // A legacy driver (no VERSION_1) does not get FEATURES_OK.
        w32(&mut m, STATUS, 1 | 2 | 8);
        assert_eq!(r32(&m, STATUS) & 8, 0);
        // Byte and 8-byte reads of registers read 0; the configuration
        // reads bytewise.
        let mut wide = [0xff; 8];
        m.read(MAGIC, &mut wide);
        assert_eq!(wide, [0; 8]);
        let mut b = [0xff; 2];
        m.read(MAGIC, &mut b);
        assert_eq!(b, [0, 0]);
        m.read(CONFIG + 3, &mut b);
        assert_eq!(b, [3, 4]);
        // Before DRIVER_OK the device does nothing.
        let mut early = Mmio::new(Null);
        w32(&mut early, QUEUE_NUM, 16);
        w32(&mut early, QUEUE_READY, 1);
        assert!(!w32(&mut early, QUEUE_NOTIFY, 0));
        // A broken queue: NEEDS_RESET, no notification taken until reset.
        let mut mem = alloc::vec![0u8; 0x10000];
        let ram = GuestRam::from_slice(&mut mem);
        let mut m = ready(Null);
        m.process(&ram);
        assert_ne!(r32(&m, STATUS) & S_NEEDS_RESET, 0);
        assert_eq!(r32(&m, INTERRUPT_STATUS), INT_CONFIG_CHANGE);
        assert!(!w32(&mut m, QUEUE_NOTIFY, 0));
        w32(&mut m, STATUS, 0);
        assert_eq!(r32(&m, STATUS), 0);
        assert_eq!(r32(&m, QUEUE_READY), 0, "queues reset too");
        // Writes that are not whole dwords are ignored.
        assert!(!m.write(STATUS, &[1]));
        assert_eq!(r32(&m, STATUS), 0);
    }
}
