//! A virtio block device on virtio-mmio (Virtio 1.1: §4.2 "Virtio Over
//! MMIO", version 2 registers; §2.6 split virtqueues; §5.2 block device),
//! backed by a disk image in the VMM's memory. Linux finds it in the DSDT
//! (`crate::acpi::VirtioMmio`, _HID LNRO0005), or through the command line
//! (`virtio_mmio.device=SIZE@BASE:IRQ`, [`Block::announce`]) where the
//! kernel has CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (Debian's has not); either
//! needs its `virtio_mmio` driver.
//!
//! One request queue; requests are carried out when the driver notifies
//! the queue, in the exit that wrote QueueNotify: IN (read), OUT (write),
//! FLUSH (nothing to do: the image is memory) and GET_ID. The interrupt
//! line is high while InterruptStatus is not 0. Offered features:
//! VIRTIO_F_VERSION_1 only. A malformed request (a chain too short, a
//! sector past the end, a descriptor outside RAM) is answered with
//! VIRTIO_BLK_S_IOERR, never a panic; a malformed queue (a descriptor loop,
//! an index past the ring) sets DEVICE_NEEDS_RESET and stops the queue.

use alloc::string::String;
use alloc::vec::Vec;

use crate::api::GuestRam;

/// Where the device's registers are (guest-physical) and how many bytes.
pub const MMIO_BASE: u64 = 0xd000_0000;
pub const MMIO_LEN: u64 = 0x200;
/// Its interrupt: ISA IRQ / IOAPIC pin 5 (free on the PC).
pub const IRQ: u8 = 5;
/// Sector size (§5.2.6: `sector` counts 512-byte units).
pub const SECTOR: u64 = 512;

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
const CONFIG: u64 = 0x100;

const MAGIC_VALUE: u32 = 0x7472_6976; // "virt"
const VERSION_2: u32 = 2;
const DEVICE_BLOCK: u32 = 2;
const VENDOR: u32 = 0x4f4a_4f4d; // "MOJO"
/// VIRTIO_F_VERSION_1 (§6): feature bit 32.
const F_VERSION_1: u64 = 1 << 32;
/// Device status bits (§2.1).
const S_FEATURES_OK: u32 = 8;
const S_NEEDS_RESET: u32 = 64;
/// InterruptStatus bits (§4.2.2): used buffer, configuration change.
const INT_USED_BUFFER: u32 = 1;
/// The queue size offered (a power of 2, §2.6).
pub const QUEUE_SIZE: u16 = 128;
/// Descriptor flags (§2.6.5).
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
/// Request types and status values (§5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// The request header: type, reserved, sector.
const HEADER: usize = 16;
/// GET_ID's answer length.
const ID_LEN: usize = 20;

/// The split virtqueue's addresses and progress.
#[derive(Clone, Debug, Default)]
struct Queue {
    num: u16,
    ready: bool,
    desc: u64,
    avail: u64,
    used: u64,
    last_avail: u16,
}

/// A descriptor (§2.6.5).
#[derive(Clone, Copy, Debug)]
struct Desc {
    addr: u64,
    len: u32,
    write: bool,
}

/// Why a queue cannot be processed (the device then needs a reset).
#[derive(Debug)]
struct Broken;

/// The block device.
pub struct Block {
    disk: Vec<u8>,
    id: String,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    queue: Queue,
    interrupt_status: u32,
    status: u32,
    /// Requests carried out (for the VM's closing report).
    pub requests: u64,
}

impl Block {
    /// A device over `disk` (its length is rounded down to whole sectors
    /// for the capacity), answering GET_ID with `id`.
    pub fn new(disk: Vec<u8>, id: &str) -> Self {
        Self {
            disk,
            id: id.into(),
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            queue: Queue::default(),
            interrupt_status: 0,
            status: 0,
            requests: 0,
        }
    }

    /// The disk image as the guest left it.
    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    /// The command-line parameter with which Linux's `virtio_mmio` finds
    /// the device.
    pub fn announce() -> String {
        alloc::format!("virtio_mmio.device={}@{MMIO_BASE:#x}:{IRQ}", MMIO_LEN)
    }

    /// The interrupt line.
    pub fn irq(&self) -> bool {
        self.interrupt_status != 0
    }

    fn capacity(&self) -> u64 {
        self.disk.len() as u64 / SECTOR
    }

    fn reset(&mut self) {
        let (disk, id, requests) = (
            core::mem::take(&mut self.disk),
            core::mem::take(&mut self.id),
            self.requests,
        );
        *self = Self::new(disk, &id);
        self.requests = requests;
    }

    fn register(&self, offset: u64) -> u32 {
        match offset {
            MAGIC => MAGIC_VALUE,
            VERSION => VERSION_2,
            DEVICE_ID => DEVICE_BLOCK,
            VENDOR_ID => VENDOR,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => F_VERSION_1 as u32,
                1 => (F_VERSION_1 >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX if self.queue_sel == 0 => u32::from(QUEUE_SIZE),
            QUEUE_NUM_MAX => 0,
            QUEUE_READY if self.queue_sel == 0 => u32::from(self.queue.ready),
            QUEUE_READY => 0,
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    /// A read of `data.len()` bytes at `offset` in the register window.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG {
            // The block configuration (§5.2.4): capacity first; the rest 0.
            let config = self.capacity().to_le_bytes();
            for (i, b) in data.iter_mut().enumerate() {
                let at = (offset - CONFIG) as usize + i;
                *b = config.get(at).copied().unwrap_or(0);
            }
            return;
        }
        // Registers are 32 bits wide and read whole (§4.2.2.2).
        let value = if data.len() == 4 && offset % 4 == 0 {
            self.register(offset)
        } else {
            0
        };
        for (i, b) in data.iter_mut().enumerate() {
            *b = (value >> (8 * i)) as u8;
        }
    }

    /// A write at `offset`; returns whether the driver notified the queue
    /// (then [`Block::process`] must run with guest RAM).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> bool {
        if data.len() != 4 || offset % 4 != 0 || offset >= CONFIG {
            return false; // The configuration is read-only.
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let set_half = |old: u64, high: bool| {
            if high {
                (old & 0xffff_ffff) | (u64::from(v) << 32)
            } else {
                (old & !0xffff_ffff) | u64::from(v)
            }
        };
        let q0 = self.queue_sel == 0;
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
            QUEUE_NUM if q0 => {
                if let Ok(n) = u16::try_from(v)
                    && n.is_power_of_two()
                    && n <= QUEUE_SIZE
                {
                    self.queue.num = n;
                }
            }
            QUEUE_READY if q0 => self.queue.ready = v & 1 != 0,
            QUEUE_DESC_LOW if q0 => self.queue.desc = set_half(self.queue.desc, false),
            QUEUE_DESC_HIGH if q0 => self.queue.desc = set_half(self.queue.desc, true),
            QUEUE_DRIVER_LOW if q0 => self.queue.avail = set_half(self.queue.avail, false),
            QUEUE_DRIVER_HIGH if q0 => self.queue.avail = set_half(self.queue.avail, true),
            QUEUE_DEVICE_LOW if q0 => self.queue.used = set_half(self.queue.used, false),
            QUEUE_DEVICE_HIGH if q0 => self.queue.used = set_half(self.queue.used, true),
            QUEUE_NOTIFY => return v == 0 && self.queue.ready,
            INTERRUPT_ACK => self.interrupt_status &= !v,
            STATUS if v == 0 => self.reset(),
            STATUS => {
                let mut v = v;
                // FEATURES_OK sticks only for features offered, and
                // VERSION_1 is required (§2.2, §6.1).
                if v & S_FEATURES_OK != 0
                    && (self.driver_features & !F_VERSION_1 != 0
                        || self.driver_features & F_VERSION_1 == 0)
                {
                    v &= !S_FEATURES_OK;
                }
                self.status = v | (self.status & S_NEEDS_RESET);
            }
            _ => {}
        }
        false
    }

    /// Carries out the requests the driver made available, answering each
    /// in the used ring, and raises the interrupt if any was answered.
    pub fn process(&mut self, ram: &GuestRam<'_>) {
        if self.status & S_NEEDS_RESET != 0 || !self.queue.ready || self.queue.num == 0 {
            return;
        }
        match self.process_queue(ram) {
            Ok(0) => {}
            Ok(_) => self.interrupt_status |= INT_USED_BUFFER,
            Err(Broken) => {
                self.status |= S_NEEDS_RESET;
                self.queue.ready = false;
            }
        }
    }

    fn process_queue(&mut self, ram: &GuestRam<'_>) -> Result<u32, Broken> {
        let q = self.queue.clone();
        let num = u64::from(q.num);
        let avail_idx = ram.read_u16(q.avail + 2).map_err(|_| Broken)?;
        let mut done = 0;
        let mut last = q.last_avail;
        while last != avail_idx {
            let slot = u64::from(last) % num;
            let head = ram.read_u16(q.avail + 4 + 2 * slot).map_err(|_| Broken)?;
            let chain = chain(ram, &q, head)?;
            let written = self.request(ram, &chain);
            self.requests += 1;
            let used_idx = ram.read_u16(q.used + 2).map_err(|_| Broken)?;
            let at = q.used + 4 + 8 * (u64::from(used_idx) % num);
            ram.write_u32(at, u32::from(head)).map_err(|_| Broken)?;
            ram.write_u32(at + 4, written).map_err(|_| Broken)?;
            ram.write_u16(q.used + 2, used_idx.wrapping_add(1))
                .map_err(|_| Broken)?;
            last = last.wrapping_add(1);
            done += 1;
        }
        self.queue.last_avail = last;
        Ok(done)
    }

    /// One request; returns the bytes written into the chain's
    /// device-writable buffers (the status byte included).
    fn request(&mut self, ram: &GuestRam<'_>, chain: &[Desc]) -> u32 {
        // Device-readable descriptors come first (§2.6.4.2).
        let readable: Vec<Desc> = chain.iter().copied().take_while(|d| !d.write).collect();
        let writable: Vec<Desc> = chain.iter().copied().skip(readable.len()).collect();
        // The guest sets the lengths: never take more than one request
        // can use (a header and the whole disk), whatever they say.
        let readable_len: u64 = readable.iter().map(|d| u64::from(d.len)).sum();
        if readable_len > (HEADER as u64) + self.disk.len() as u64 {
            return self.fail(ram, &writable);
        }
        let mut input = Vec::new();
        for d in &readable {
            let start = input.len();
            input.resize(start + d.len as usize, 0);
            if ram.read(d.addr, &mut input[start..]).is_err() {
                return 0;
            }
        }
        // The status byte is the last writable byte.
        let Some(last) = writable.last().filter(|d| d.len > 0) else {
            return 0;
        };
        let status_at = last.addr + u64::from(last.len) - 1;
        let mut out_space: Vec<Desc> = writable.clone();
        if let Some(l) = out_space.last_mut() {
            l.len -= 1;
        }
        let out_len: u64 = out_space.iter().map(|d| u64::from(d.len)).sum();
        let (status, written) = if input.len() < HEADER {
            (S_IOERR, 0)
        } else {
            let kind = u32::from_le_bytes([input[0], input[1], input[2], input[3]]);
            let sector = u64::from_le_bytes(input[8..16].try_into().unwrap_or([0; 8]));
            let data = &input[HEADER..];
            match kind {
                T_IN => match self.range(sector, out_len) {
                    Some(r) => {
                        let bytes = self.disk[r].to_vec();
                        if scatter(ram, &out_space, &bytes) {
                            (S_OK, out_len)
                        } else {
                            (S_IOERR, 0)
                        }
                    }
                    None => (S_IOERR, 0),
                },
                T_OUT => match self.range(sector, data.len() as u64) {
                    Some(r) => {
                        self.disk[r].copy_from_slice(data);
                        (S_OK, 0)
                    }
                    None => (S_IOERR, 0),
                },
                T_FLUSH => (S_OK, 0),
                T_GET_ID => {
                    let mut id = [0u8; ID_LEN];
                    let n = self.id.len().min(ID_LEN);
                    id[..n].copy_from_slice(&self.id.as_bytes()[..n]);
                    let n = (ID_LEN as u64).min(out_len) as usize;
                    if scatter(ram, &out_space, &id[..n]) {
                        (S_OK, n as u64)
                    } else {
                        (S_IOERR, 0)
                    }
                }
                _ => (S_UNSUPP, 0),
            }
        };
        if ram.write(status_at, &[status]).is_err() {
            return 0;
        }
        (written + 1) as u32
    }

    /// Answers a request that cannot be carried out with IOERR in its
    /// last writable byte, if it has one.
    fn fail(&self, ram: &GuestRam<'_>, writable: &[Desc]) -> u32 {
        match writable.last().filter(|d| d.len > 0) {
            Some(d) if ram.write(d.addr + u64::from(d.len) - 1, &[S_IOERR]).is_ok() => 1,
            _ => 0,
        }
    }

    /// The disk bytes of `len` bytes from `sector`, if they exist.
    fn range(&self, sector: u64, len: u64) -> Option<core::ops::Range<usize>> {
        let start = sector.checked_mul(SECTOR)?;
        let end = start.checked_add(len)?;
        (end <= self.capacity() * SECTOR).then_some(start as usize..end as usize)
    }
}

/// The descriptor chain from `head`: at most the queue size of
/// descriptors (a longer one is a loop), no indirect descriptors (not
/// offered).
fn chain(ram: &GuestRam<'_>, q: &Queue, head: u16) -> Result<Vec<Desc>, Broken> {
    let mut out = Vec::new();
    let mut i = head;
    loop {
        if i >= q.num || out.len() >= usize::from(q.num) {
            return Err(Broken);
        }
        let at = q.desc + 16 * u64::from(i);
        let addr = ram.read_u64(at).map_err(|_| Broken)?;
        let len = ram.read_u32(at + 8).map_err(|_| Broken)?;
        let flags = ram.read_u16(at + 12).map_err(|_| Broken)?;
        let next = ram.read_u16(at + 14).map_err(|_| Broken)?;
        if flags & DESC_F_INDIRECT != 0 {
            return Err(Broken);
        }
        out.push(Desc {
            addr,
            len,
            write: flags & DESC_F_WRITE != 0,
        });
        if flags & DESC_F_NEXT == 0 {
            return Ok(out);
        }
        i = next;
    }
}

/// Writes `bytes` across the buffers of `space` in order.
fn scatter(ram: &GuestRam<'_>, space: &[Desc], mut bytes: &[u8]) -> bool {
    for d in space {
        if bytes.is_empty() {
            break;
        }
        let n = (d.len as usize).min(bytes.len());
        if ram.write(d.addr, &bytes[..n]).is_err() {
            return false;
        }
        bytes = &bytes[n..];
    }
    bytes.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;
    const BUF: u64 = 0x4000;

    fn w32(dev: &mut Block, offset: u64, v: u32) -> bool {
        dev.write(offset, &v.to_le_bytes())
    }

    fn r32(dev: &Block, offset: u64) -> u32 {
        let mut b = [0; 4];
        dev.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// A device driven through the driver's initialisation (§3.1.1) with
    /// queue 0 at DESC/AVAIL/USED, 16 entries.
    fn ready(disk: Vec<u8>) -> Block {
        let mut dev = Block::new(disk, "mojito-disk");
        assert_eq!(r32(&dev, MAGIC), 0x7472_6976);
        assert_eq!(r32(&dev, VERSION), 2);
        assert_eq!(r32(&dev, DEVICE_ID), 2);
        w32(&mut dev, STATUS, 1 | 2);
        w32(&mut dev, DEVICE_FEATURES_SEL, 1);
        assert_eq!(r32(&dev, DEVICE_FEATURES), 1, "VERSION_1");
        w32(&mut dev, DRIVER_FEATURES_SEL, 1);
        w32(&mut dev, DRIVER_FEATURES, 1);
        w32(&mut dev, STATUS, 1 | 2 | 8);
        assert_eq!(r32(&dev, STATUS) & 8, 8, "FEATURES_OK holds");
        w32(&mut dev, QUEUE_SEL, 0);
        assert_eq!(r32(&dev, QUEUE_NUM_MAX), u32::from(QUEUE_SIZE));
        w32(&mut dev, QUEUE_NUM, 16);
        for (reg, v) in [
            (QUEUE_DESC_LOW, DESC),
            (QUEUE_DRIVER_LOW, AVAIL),
            (QUEUE_DEVICE_LOW, USED),
        ] {
            w32(&mut dev, reg, v as u32);
        }
        w32(&mut dev, QUEUE_READY, 1);
        w32(&mut dev, STATUS, 1 | 2 | 8 | 4);
        dev
    }

    fn desc(ram: &GuestRam<'_>, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = DESC + 16 * u64::from(i);
        ram.write_u64(at, addr).unwrap();
        ram.write_u32(at + 8, len).unwrap();
        ram.write_u16(at + 12, flags).unwrap();
        ram.write_u16(at + 14, next).unwrap();
    }

    /// Puts a three-descriptor request (header, data, status) at
    /// descriptors 3i..3i+2 and makes it available.
    fn submit(ram: &GuestRam<'_>, n: u16, kind: u32, sector: u64, data_len: u32, data_write: bool) {
        let base = 3 * n;
        let hdr = BUF + 0x100 * u64::from(n);
        ram.write_u32(hdr, kind).unwrap();
        ram.write_u64(hdr + 8, sector).unwrap();
        let data = BUF + 0x1000 + 0x1000 * u64::from(n);
        let wflag = if data_write { DESC_F_WRITE } else { 0 };
        desc(ram, base, hdr, 16, DESC_F_NEXT, base + 1);
        desc(ram, base + 1, data, data_len, DESC_F_NEXT | wflag, base + 2);
        desc(ram, base + 2, hdr + 0x80, 1, DESC_F_WRITE, 0);
        ram.write(hdr + 0x80, &[0xee]).unwrap();
        let idx = ram.read_u16(AVAIL + 2).unwrap();
        ram.write_u16(AVAIL + 4 + 2 * u64::from(idx % 16), base)
            .unwrap();
        ram.write_u16(AVAIL + 2, idx + 1).unwrap();
    }

    fn status(ram: &GuestRam<'_>, n: u16) -> u8 {
        let mut b = [0xee];
        ram.read(BUF + 0x100 * u64::from(n) + 0x80, &mut b).unwrap();
        b[0]
    }

    #[test]
    fn reads_writes_and_answers() {
        let mut mem = vec![0u8; 0x10000];
        let ram = GuestRam::from_slice(&mut mem);
        let mut disk = vec![0u8; 4096];
        disk[512..517].copy_from_slice(b"hello");
        let mut dev = ready(disk);
        let mut b = [0; 8];
        dev.read(CONFIG, &mut b);
        assert_eq!(u64::from_le_bytes(b), 8, "capacity in sectors");
        // Read sector 1; write sector 2 from the guest's buffer.
        submit(&ram, 0, T_IN, 1, 512, true);
        ram.write(BUF + 0x2000, b"world").unwrap();
        submit(&ram, 1, T_OUT, 2, 512, false);
        submit(&ram, 2, T_GET_ID, 0, 20, true);
        assert!(w32(&mut dev, QUEUE_NOTIFY, 0));
        dev.process(&ram);
        assert_eq!(
            [status(&ram, 0), status(&ram, 1), status(&ram, 2)],
            [S_OK; 3]
        );
        let mut got = [0; 5];
        ram.read(BUF + 0x1000, &mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(&dev.disk()[1024..1029], b"world");
        ram.read(BUF + 0x3000, &mut got).unwrap();
        assert_eq!(&got, b"mojit");
        assert_eq!(ram.read_u16(USED + 2).unwrap(), 3, "three answered");
        assert_eq!(ram.read_u32(USED + 4).unwrap(), 0, "head of the first");
        assert_eq!(
            ram.read_u32(USED + 8).unwrap(),
            513,
            "512 bytes and the status"
        );
        assert!(dev.irq());
        w32(&mut dev, INTERRUPT_ACK, 1);
        assert!(!dev.irq());
        assert_eq!(dev.requests, 3);
    }

    #[test]
    fn bad_requests_fail_without_a_panic() {
        let mut mem = vec![0u8; 0x10000];
        let ram = GuestRam::from_slice(&mut mem);
        let mut dev = ready(vec![0; 1024]);
        submit(&ram, 0, T_IN, 2, 512, true); // past the end
        submit(&ram, 1, 99, 0, 512, true); // unknown type
        dev.process(&ram);
        assert_eq!([status(&ram, 0), status(&ram, 1)], [S_IOERR, S_UNSUPP]);
        // A descriptor loop breaks the queue: NEEDS_RESET, no more work.
        desc(&ram, 9, BUF, 16, DESC_F_NEXT, 10);
        desc(&ram, 10, BUF, 16, DESC_F_NEXT, 9);
        let idx = ram.read_u16(AVAIL + 2).unwrap();
        ram.write_u16(AVAIL + 4 + 2 * u64::from(idx % 16), 9)
            .unwrap();
        ram.write_u16(AVAIL + 2, idx + 1).unwrap();
        dev.process(&ram);
        assert_ne!(r32(&dev, STATUS) & S_NEEDS_RESET, 0);
        assert!(!w32(&mut dev, QUEUE_NOTIFY, 0), "the queue is stopped");
        // A reset brings it back, with the disk kept.
        w32(&mut dev, STATUS, 0);
        assert_eq!(r32(&dev, STATUS), 0);
        assert_eq!(dev.disk().len(), 1024);
    }

    #[test]
    fn huge_lengths_are_refused_without_allocating() {
        let mut mem = vec![0u8; 0x10000];
        let ram = GuestRam::from_slice(&mut mem);
        let mut dev = ready(vec![0; 1024]);
        // An OUT whose data descriptor claims 4 GiB - 1.
        submit(&ram, 0, T_OUT, 0, u32::MAX, false);
        dev.process(&ram);
        assert_eq!(status(&ram, 0), S_IOERR);
        assert_eq!(
            ram.read_u32(USED + 8).unwrap(),
            1,
            "only the status written"
        );
    }

    #[test]
    fn features_must_include_version_1() {
        let mut dev = Block::new(vec![0; 512], "x");
        w32(&mut dev, STATUS, 1 | 2 | 8);
        assert_eq!(r32(&dev, STATUS) & 8, 0, "legacy drivers are refused");
        assert_eq!(Block::announce(), "virtio_mmio.device=512@0xd0000000:5");
    }
}
