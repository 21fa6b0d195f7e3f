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
    /// The used ring's index, kept here (the driver only reads it).
    used_idx: u16,
}

/// A descriptor (§2.6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

impl Desc {
    /// The address of its last byte, if it has one and the sum does not
    /// wrap.
    pub fn last_byte(&self) -> Option<u64> {
        self.addr.checked_add(u64::from(self.len.checked_sub(1)?))
    }
}

/// The queue is malformed: the device needs a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken;

/// `base + offset`, or the queue is broken (the guest sets the bases).
fn at(base: u64, offset: u64) -> Result<u64, Broken> {
    base.checked_add(offset).ok_or(Broken)
}

impl Queue {
    /// Whether the driver has made the queue usable.
    pub fn usable(&self) -> bool {
        self.ready && self.num != 0
    }

    /// Whether a chain is waiting. The available index may run at most
    /// the queue size ahead of what the device has taken (§2.6.6).
    pub fn has_work(&self, ram: &GuestRam<'_>) -> Result<bool, Broken> {
        let idx = ram.read_u16(at(self.avail, 2)?).map_err(|_| Broken)?;
        if idx.wrapping_sub(self.last_avail) > self.num {
            return Err(Broken);
        }
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
            .read_u16(at(self.avail, 4 + 2 * slot)?)
            .map_err(|_| Broken)?;
        let mut chain = Vec::new();
        let mut i = head;
        loop {
            if i >= self.num || chain.len() >= usize::from(self.num) {
                return Err(Broken);
            }
            let d = at(self.desc, 16 * u64::from(i))?;
            let addr = ram.read_u64(d).map_err(|_| Broken)?;
            let len = ram.read_u32(at(d, 8)?).map_err(|_| Broken)?;
            let flags = ram.read_u16(at(d, 12)?).map_err(|_| Broken)?;
            let next = ram.read_u16(at(d, 14)?).map_err(|_| Broken)?;
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
        let e = at(self.used, 4 + 8 * u64::from(self.used_idx % self.num))?;
        ram.write_u32(e, u32::from(head)).map_err(|_| Broken)?;
        ram.write_u32(at(e, 4)?, written).map_err(|_| Broken)?;
        self.used_idx = self.used_idx.wrapping_add(1);
        ram.write_u16(at(self.used, 2)?, self.used_idx)
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

/// Reads `out.len()` bytes from the buffers of `space`, starting `skip`
/// bytes into them; false if they do not hold that many or one lies
/// outside RAM.
pub fn gather(ram: &GuestRam<'_>, space: &[Desc], mut skip: u64, mut out: &mut [u8]) -> bool {
    for d in space {
        if out.is_empty() {
            break;
        }
        let len = u64::from(d.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = ((len - skip) as usize).min(out.len());
        let Some(addr) = d.addr.checked_add(skip) else {
            return false;
        };
        let (now, rest) = out.split_at_mut(n);
        if ram.read(addr, now).is_err() {
            return false;
        }
        out = rest;
        skip = 0;
    }
    out.is_empty()
}
