//! Split virtqueues (Virtio 1.1 §2.6): the descriptor table, the driver's
//! available ring and the device's used ring, all in guest RAM.

use alloc::vec::Vec;

use crate::api::GuestRam;

/// Descriptor flags (§2.6.5).
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;

/// A queue's addresses and progress, as the driver configured it.
#[derive(Clone, Debug, Default)]
pub struct Queue {
    pub num: u16,
    pub ready: bool,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    last_avail: u16,
}

/// A descriptor (§2.6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

/// The queue is malformed: the device needs a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken;

impl Queue {
    /// Whether the driver has made the queue usable.
    pub fn usable(&self) -> bool {
        self.ready && self.num != 0
    }

    /// Whether a chain is waiting.
    pub fn has_work(&self, ram: &GuestRam<'_>) -> Result<bool, Broken> {
        let idx = ram.read_u16(self.avail + 2).map_err(|_| Broken)?;
        Ok(idx != self.last_avail)
    }

    /// The next available chain: its head and descriptors (at most the
    /// queue size of them: a longer chain is a loop).
    pub fn pop(&mut self, ram: &GuestRam<'_>) -> Result<Option<(u16, Vec<Desc>)>, Broken> {
        if !self.has_work(ram)? {
            return Ok(None);
        }
        let slot = u64::from(self.last_avail % self.num);
        let head = ram
            .read_u16(self.avail + 4 + 2 * slot)
            .map_err(|_| Broken)?;
        let mut chain = Vec::new();
        let mut i = head;
        loop {
            if i >= self.num || chain.len() >= usize::from(self.num) {
                return Err(Broken);
            }
            let at = self.desc + 16 * u64::from(i);
            let addr = ram.read_u64(at).map_err(|_| Broken)?;
            let len = ram.read_u32(at + 8).map_err(|_| Broken)?;
            let flags = ram.read_u16(at + 12).map_err(|_| Broken)?;
            let next = ram.read_u16(at + 14).map_err(|_| Broken)?;
            if flags & DESC_F_INDIRECT != 0 {
                return Err(Broken);
            }
            chain.push(Desc {
                addr,
                len,
                write: flags & DESC_F_WRITE != 0,
            });
            if flags & DESC_F_NEXT == 0 {
                break;
            }
            i = next;
        }
        self.last_avail = self.last_avail.wrapping_add(1);
        Ok(Some((head, chain)))
    }

    /// Returns chain `head` to the driver with `written` bytes written
    /// into its device-writable buffers.
    pub fn push(&mut self, ram: &GuestRam<'_>, head: u16, written: u32) -> Result<(), Broken> {
        let idx = ram.read_u16(self.used + 2).map_err(|_| Broken)?;
        let at = self.used + 4 + 8 * u64::from(idx % self.num);
        ram.write_u32(at, u32::from(head)).map_err(|_| Broken)?;
        ram.write_u32(at + 4, written).map_err(|_| Broken)?;
        ram.write_u16(self.used + 2, idx.wrapping_add(1))
            .map_err(|_| Broken)
    }
}

/// Writes `bytes` across the buffers of `space` in order; false if they do
/// not fit or one lies outside RAM.
pub fn scatter(ram: &GuestRam<'_>, space: &[Desc], mut bytes: &[u8]) -> bool {
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
