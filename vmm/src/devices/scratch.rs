//! The MMIO scratch device of Mojito's test guests
//! (`abi::guest::MMIO_SCRATCH_BASE`): a page of device memory that keeps
//! what is written and returns it, so a guest can check every form of MMIO
//! access by comparing it with the same instruction on RAM.

use abi::guest::{MMIO_SCRATCH_BASE, MMIO_SCRATCH_SIZE};
use alloc::vec;
use alloc::vec::Vec;

pub struct Scratch {
    bytes: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            bytes: vec![0; MMIO_SCRATCH_SIZE as usize],
        }
    }
}

impl Scratch {
    /// The offset of `[addr, addr + len)` in the page, if it lies inside.
    fn offset(addr: u64, len: usize) -> Option<usize> {
        let off = addr.checked_sub(MMIO_SCRATCH_BASE)?;
        let end = off.checked_add(len as u64)?;
        (end <= MMIO_SCRATCH_SIZE).then_some(off as usize)
    }

    /// Reads into `data`; false if the access is not the device's.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some(off) = Self::offset(addr, data.len()) else {
            return false;
        };
        data.copy_from_slice(&self.bytes[off..off + data.len()]);
        true
    }

    /// Writes `data`; false if the access is not the device's.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        let Some(off) = Self::offset(addr, data.len()) else {
            return false;
        };
        self.bytes[off..off + data.len()].copy_from_slice(data);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_is_written_inside_its_page_only() {
        let mut s = Scratch::default();
        assert!(s.write(MMIO_SCRATCH_BASE + 8, &[1, 2, 3, 4]));
        let mut d = [0u8; 2];
        assert!(s.read(MMIO_SCRATCH_BASE + 9, &mut d));
        assert_eq!(d, [2, 3]);
        assert!(!s.read(MMIO_SCRATCH_BASE - 1, &mut d));
        assert!(!s.write(MMIO_SCRATCH_BASE + MMIO_SCRATCH_SIZE - 1, &[0, 0]));
        assert!(s.read(MMIO_SCRATCH_BASE + MMIO_SCRATCH_SIZE - 2, &mut d));
        assert!(!s.read(u64::MAX, &mut d));
    }
}
