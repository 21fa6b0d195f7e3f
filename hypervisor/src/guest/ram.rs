//! A guest's RAM: frames from the hypervisor pool, one per 4 KiB page, at
//! guest-physical addresses 0 .. size. The hypervisor reads and writes it
//! through the physical-memory window (to load images, fetch instructions
//! and walk page tables).

use super::walk::GuestMemory;
use crate::mm::{GuestPhys, HostPhys, PAGE_SIZE};
use alloc::vec::Vec;

pub struct GuestRam {
    frames: Vec<HostPhys>,
}

/// How a frame's bytes are reached (the physical window on the machine; a
/// map in host tests).
pub trait FrameBytes {
    fn bytes(&self, frame: HostPhys) -> *mut u8;
}

/// The physical-memory window.
#[derive(Debug)]
pub struct Window;

impl FrameBytes for Window {
    fn bytes(&self, frame: HostPhys) -> *mut u8 {
        crate::mm::phys::ptr::<u8>(frame)
    }
}

impl GuestRam {
    /// Takes `size` bytes (rounded up to pages) of zeroed frames from the
    /// pool, or none at all if the pool runs dry.
    pub fn new(frames: &mut crate::virt::Frames, size: u64) -> Option<Self> {
        let pages = size.div_ceil(PAGE_SIZE);
        let mut list = Vec::new();
        list.try_reserve_exact(usize::try_from(pages).ok()?).ok()?;
        for _ in 0..pages {
            match frames.alloc_zeroed() {
                Some(f) => list.push(f),
                None => {
                    for f in list {
                        frames.free(f);
                    }
                    return None;
                }
            }
        }
        Some(Self { frames: list })
    }

    /// RAM of no pages (what a stopped VM keeps).
    pub const fn empty() -> Self {
        Self { frames: Vec::new() }
    }

    /// Gives every frame back to the pool.
    pub fn free(self, frames: &mut crate::virt::Frames) {
        for f in self.frames {
            frames.free(f);
        }
    }

    pub fn size(&self) -> u64 {
        self.frames.len() as u64 * PAGE_SIZE
    }

    /// The frames, in guest-physical order (to build the nested tables).
    pub fn frames(&self) -> &[HostPhys] {
        &self.frames
    }

    /// The host frame behind `gpa`, if it is RAM.
    pub fn frame_of(&self, gpa: GuestPhys) -> Option<HostPhys> {
        self.frames
            .get(usize::try_from(gpa.raw() / PAGE_SIZE).ok()?)
            .copied()
    }

    /// Copies guest memory at `gpa` into `out`; false if any byte is not RAM.
    pub fn read(&self, gpa: GuestPhys, out: &mut [u8]) -> bool {
        self.copy(gpa, out.len(), |host, done, n| {
            // SAFETY: `host` points at `n` bytes inside a frame of this guest.
            unsafe { core::ptr::copy_nonoverlapping(host, out[done..].as_mut_ptr(), n) }
        })
    }

    /// Copies `data` into guest memory at `gpa`; false if any byte is not RAM
    /// (nothing is written then).
    pub fn write(&mut self, gpa: GuestPhys, data: &[u8]) -> bool {
        if gpa
            .raw()
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > self.size())
        {
            return false;
        }
        self.copy(gpa, data.len(), |host, done, n| {
            // SAFETY: as in `read`; the frame belongs to this guest.
            unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), host, n) }
        })
    }

    fn copy(&self, gpa: GuestPhys, len: usize, mut f: impl FnMut(*mut u8, usize, usize)) -> bool {
        let mut done = 0usize;
        while done < len {
            let Some(at) = gpa.checked_add(done as u64) else {
                return false;
            };
            let Some(frame) = self.frame_of(at) else {
                return false;
            };
            let off = at.page_offset() as usize;
            let n = (PAGE_SIZE as usize - off).min(len - done);
            // SAFETY: `off < 4096`, so the pointer stays inside the frame.
            let host = unsafe { Window.bytes(frame).add(off) };
            f(host, done, n);
            done += n;
        }
        true
    }
}

impl GuestMemory for GuestRam {
    fn read_u64(&self, gpa: GuestPhys) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b).then(|| u64::from_le_bytes(b))
    }
}
