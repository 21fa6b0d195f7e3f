//! The virtio block device (Virtio 1.1 §5.2), backed by a disk image in
//! the VMM's memory: one request queue; IN (read), OUT (write), FLUSH
//! (nothing to do: the image is memory) and GET_ID. A request the disk
//! cannot satisfy (a chain too short, a sector past the end, a buffer
//! outside RAM, a readable buffer after a writable one) is answered with
//! VIRTIO_BLK_S_IOERR; an unknown type with S_UNSUPP. Data moves between
//! the guest's buffers and the disk directly, so no guest-given length
//! sizes an allocation.

use alloc::string::String;
use alloc::vec::Vec;

use super::mmio::Device;
use super::queue::{Broken, Desc, Queue, gather, scatter};
use crate::api::GuestRam;

/// Sector size (§5.2.6: `sector` counts 512-byte units).
pub const SECTOR: u64 = 512;
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

/// The block device.
pub struct Block {
    disk: Vec<u8>,
    id: String,
    /// Requests carried out (for the VM's closing report).
    pub requests: u64,
}

impl Block {
    /// A device over `disk` (its capacity is its length in whole sectors),
    /// answering GET_ID with `id`.
    pub fn new(disk: Vec<u8>, id: &str) -> Self {
        Self {
            disk,
            id: id.into(),
            requests: 0,
        }
    }

    /// The disk image as the guest left it.
    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    fn capacity(&self) -> u64 {
        self.disk.len() as u64 / SECTOR
    }

    /// One request; returns the bytes written into the chain's
    /// device-writable buffers (the status byte included). Data moves
    /// between guest buffers and the disk directly: nothing the guest's
    /// lengths size is allocated.
    fn request(&mut self, ram: &GuestRam<'_>, chain: &[Desc]) -> u32 {
        // Device-readable descriptors come first (§2.6.4.2); a readable one
        // after a writable one makes the request malformed.
        let readable: Vec<Desc> = chain.iter().copied().take_while(|d| !d.write).collect();
        let writable: Vec<Desc> = chain.iter().copied().skip(readable.len()).collect();
        // The status byte is the last writable byte.
        let Some(status_at) = writable.last().and_then(Desc::last_byte) else {
            return 0;
        };
        let mut header = [0u8; HEADER];
        let (status, written) =
            if writable.iter().any(|d| !d.write) || !gather(ram, &readable, 0, &mut header) {
                (S_IOERR, 0)
            } else {
                let mut out_space = writable;
                if let Some(l) = out_space.last_mut() {
                    l.len -= 1;
                }
                self.carry_out(ram, &header, &readable, &out_space)
            };
        if ram.write(status_at, &[status]).is_err() {
            return 0;
        }
        u32::try_from(written + 1).unwrap_or(u32::MAX)
    }

    /// The request `header` with its data in `readable` after the header,
    /// answered into `out_space`: the status and the bytes written there.
    fn carry_out(
        &mut self,
        ram: &GuestRam<'_>,
        header: &[u8; HEADER],
        readable: &[Desc],
        out_space: &[Desc],
    ) -> (u8, u64) {
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector = [0u8; 8];
        sector.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector);
        let in_len: u64 = readable.iter().map(|d| u64::from(d.len)).sum::<u64>() - HEADER as u64;
        let out_len: u64 = out_space.iter().map(|d| u64::from(d.len)).sum();
        match kind {
            T_IN => match self.range(sector, out_len) {
                Some(r) if scatter(ram, out_space, &self.disk[r.clone()]) => (S_OK, out_len),
                _ => (S_IOERR, 0),
            },
            T_OUT => match self.range(sector, in_len) {
                Some(r) => {
                    if gather(ram, readable, HEADER as u64, &mut self.disk[r]) {
                        (S_OK, 0)
                    } else {
                        (S_IOERR, 0)
                    }
                }
                None => (S_IOERR, 0),
            },
            T_FLUSH => (S_OK, 0),
            T_GET_ID => {
                let mut id = [0u8; ID_LEN];
                let n = self.id.len().min(ID_LEN);
                id[..n].copy_from_slice(&self.id.as_bytes()[..n]);
                let n = (ID_LEN as u64).min(out_len) as usize;
                if scatter(ram, out_space, &id[..n]) {
                    (S_OK, n as u64)
                } else {
                    (S_IOERR, 0)
                }
            }
            _ => (S_UNSUPP, 0),
        }
    }

    /// The disk bytes of `len` bytes from `sector`, if they exist.
    fn range(&self, sector: u64, len: u64) -> Option<core::ops::Range<usize>> {
        let start = sector.checked_mul(SECTOR)?;
        let end = start.checked_add(len)?;
        (end <= self.capacity() * SECTOR).then_some(start as usize..end as usize)
    }
}

impl Device for Block {
    const ID: u32 = 2;
    const QUEUES: usize = 1;

    /// The block configuration (§5.2.4): the capacity in sectors; the rest
    /// (size limits, geometry, block size) 0, as those features are not
    /// offered.
    fn config(&self, at: u64) -> u8 {
        self.capacity()
            .to_le_bytes()
            .get(at as usize)
            .copied()
            .unwrap_or(0)
    }

    fn process(&mut self, ram: &GuestRam<'_>, _: usize, q: &mut Queue) -> Result<bool, Broken> {
        let mut used = false;
        while let Some((head, chain)) = q.pop(ram)? {
            let written = self.request(ram, &chain);
            self.requests += 1;
            q.push(ram, head, written)?;
            used = true;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::super::mmio::tests::{desc, offer, ready, used, w32};
    use super::super::mmio::{CONFIG, Mmio, S_NEEDS_RESET};
    use super::*;
    use alloc::vec;

    const BUF: u64 = 0x4000;
    const NEXT: u16 = 1;
    const WRITE: u16 = 2;

    /// A three-descriptor request (header, data, status) at descriptors
    /// 3n..3n+2, made available.
    fn submit(ram: &GuestRam<'_>, n: u16, kind: u32, sector: u64, data_len: u32, data_write: bool) {
        let base = 3 * n;
        let hdr = BUF + 0x100 * u64::from(n);
        ram.write_u32(hdr, kind).unwrap();
        ram.write_u64(hdr + 8, sector).unwrap();
        let data = BUF + 0x1000 + 0x1000 * u64::from(n);
        let wflag = if data_write { WRITE } else { 0 };
        desc(ram, 0, base, hdr, 16, NEXT, base + 1);
        desc(ram, 0, base + 1, data, data_len, NEXT | wflag, base + 2);
        desc(ram, 0, base + 2, hdr + 0x80, 1, WRITE, 0);
        ram.write(hdr + 0x80, &[0xee]).unwrap();
        offer(ram, 0, base);
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
        let mut dev = ready(Block::new(disk, "mojito-disk"));
        let mut b = [0; 8];
        dev.read(CONFIG, &mut b);
        assert_eq!(u64::from_le_bytes(b), 8, "capacity in sectors");
        submit(&ram, 0, T_IN, 1, 512, true);
        ram.write(BUF + 0x2000, b"world").unwrap();
        submit(&ram, 1, T_OUT, 2, 512, false);
        submit(&ram, 2, T_GET_ID, 0, 20, true);
        assert!(w32(&mut dev, 0x050, 0), "QueueNotify");
        dev.process(&ram);
        assert_eq!(
            [status(&ram, 0), status(&ram, 1), status(&ram, 2)],
            [S_OK; 3]
        );
        let mut got = [0; 5];
        ram.read(BUF + 0x1000, &mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(&dev.dev.disk()[1024..1029], b"world");
        ram.read(BUF + 0x3000, &mut got).unwrap();
        assert_eq!(&got, b"mojit");
        assert_eq!(
            used(&ram, 0, 0),
            (3, 0, 513),
            "three answered; 512 bytes and the status"
        );
        assert!(dev.irq());
        w32(&mut dev, 0x064, 1);
        assert!(!dev.irq());
        assert_eq!(dev.dev.requests, 3);
    }

    #[test]
    fn bad_requests_fail_without_a_panic() {
        let mut mem = vec![0u8; 0x10000];
        let ram = GuestRam::from_slice(&mut mem);
        let mut dev = ready(Block::new(vec![0; 1024], "d"));
        submit(&ram, 0, T_IN, 2, 512, true); // past the end
        submit(&ram, 1, 99, 0, 512, true); // unknown type
        submit(&ram, 2, T_OUT, 0, u32::MAX, false); // 4 GiB claimed
        dev.process(&ram);
        assert_eq!(
            [status(&ram, 0), status(&ram, 1), status(&ram, 2)],
            [S_IOERR, S_UNSUPP, S_IOERR]
        );
        assert_eq!(used(&ram, 0, 2).2, 1, "only the status written");
        // A descriptor loop breaks the queue.
        desc(&ram, 0, 9, BUF, 16, NEXT, 10);
        desc(&ram, 0, 10, BUF, 16, NEXT, 9);
        offer(&ram, 0, 9);
        dev.process(&ram);
        assert_ne!(dev.status() & S_NEEDS_RESET, 0);
        // The disk survives a reset.
        w32(&mut dev, 0x070, 0);
        assert_eq!(dev.dev.disk().len(), 1024);
    }

    #[test]
    fn a_device_not_yet_set_up_does_nothing() {
        let mut mem = vec![0u8; 0x10000];
        let ram = GuestRam::from_slice(&mut mem);
        let mut dev = Mmio::new(Block::new(vec![0; 512], "x"));
        assert!(!w32(&mut dev, 0x050, 0), "no usable queue");
        dev.process(&ram);
        assert!(!dev.irq());
    }
}
