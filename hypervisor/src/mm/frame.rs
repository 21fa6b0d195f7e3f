//! The frame allocator: the hypervisor's pool of 4 KiB physical frames.
//!
//! Built from the boot memory map's usable regions. Frames are handed out
//! from the regions with a bump pointer (which also serves contiguous
//! requests) and returned frames go on a free list threaded through the
//! frames themselves, so the allocator needs no memory of its own. When the
//! pool is empty, allocation returns `None`, and the request that needed
//! the frame fails cleanly (DESIGN.md D3): no allocation here can panic.

use super::addr::{HostPhys, PAGE_SIZE};

/// Most usable regions we track (firmware memory maps have a few dozen).
const MAX_REGIONS: usize = 128;

/// Frames below 1 MiB stay with the firmware's legacy area (and the AP
/// start-up trampoline, once there are several CPUs).
const LOW_MEMORY_END: u64 = 0x10_0000;

#[derive(Clone, Copy, Default, Debug)]
struct Region {
    next: u64,
    end: u64,
}

/// Where frames come from. `FrameAlloc` is generic over how it reaches a
/// frame's contents (through the physical window on the machine, through a
/// `Vec` in host tests).
pub trait FrameMemory {
    /// Reads the free-list link stored in the first 8 bytes of `frame`.
    fn read_link(&self, frame: HostPhys) -> u64;
    /// Writes the free-list link into the first 8 bytes of `frame`.
    fn write_link(&mut self, frame: HostPhys, link: u64);
    /// Fills `frame` with zeroes.
    fn zero(&mut self, frame: HostPhys);
}

/// Accounting, for `info` and the boot log.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct FrameStats {
    pub total: u64,
    pub free: u64,
}

pub struct FrameAlloc<M: FrameMemory> {
    mem: M,
    regions: [Region; MAX_REGIONS],
    nregions: usize,
    free_list: u64,
    stats: FrameStats,
    /// Allocation fails rather than take `free` below this
    /// (`MOJITO_METADATA_POOL`'s limit).
    floor: u64,
}

/// Marks the end of the free list (no frame lives at the top of the address
/// space).
const NIL: u64 = u64::MAX;

impl<M: FrameMemory> FrameAlloc<M> {
    pub const fn new(mem: M) -> Self {
        Self {
            mem,
            regions: [Region { next: 0, end: 0 }; MAX_REGIONS],
            nregions: 0,
            free_list: NIL,
            stats: FrameStats { total: 0, free: 0 },
            floor: 0,
        }
    }

    /// Adds the usable physical range `[start, end)` to the pool. Partial
    /// frames at either end and memory below 1 MiB are left out. Returns
    /// false when the region table is full (the range is then not used).
    pub fn add_region(&mut self, start: u64, end: u64) -> bool {
        let start = start.max(LOW_MEMORY_END).next_multiple_of(PAGE_SIZE);
        let end = end & !(PAGE_SIZE - 1);
        if start >= end {
            return true;
        }
        let Some(slot) = self.regions.get_mut(self.nregions) else {
            return false;
        };
        *slot = Region { next: start, end };
        self.nregions += 1;
        let frames = (end - start) / PAGE_SIZE;
        self.stats.total += frames;
        self.stats.free += frames;
        true
    }

    /// Lets at most `limit` more frames be taken (beyond those given back
    /// later); `u64::MAX` lifts the limit.
    pub fn set_limit(&mut self, limit: u64) {
        self.floor = self.stats.free.saturating_sub(limit);
    }

    /// Free frames that may be taken under the limit.
    pub fn available(&self) -> u64 {
        self.stats.free.saturating_sub(self.floor)
    }

    /// One frame, contents unspecified.
    pub fn alloc(&mut self) -> Option<HostPhys> {
        if self.available() == 0 {
            return None;
        }
        if self.free_list != NIL {
            let frame = HostPhys::new(self.free_list);
            self.free_list = self.mem.read_link(frame);
            self.stats.free -= 1;
            return Some(frame);
        }
        self.bump(1)
    }

    /// One zero-filled frame.
    pub fn alloc_zeroed(&mut self) -> Option<HostPhys> {
        let frame = self.alloc()?;
        self.mem.zero(frame);
        Some(frame)
    }

    /// `n` physically contiguous frames, zero-filled (for structures the
    /// hardware wants contiguous: SVM's I/O and MSR permission maps, the
    /// heap).
    pub fn alloc_contiguous(&mut self, n: u64) -> Option<HostPhys> {
        // One frame is always contiguous: take it from the free list too, so
        // freed single frames are reused.
        if n == 1 {
            return self.alloc_zeroed();
        }
        self.bump(n)
    }

    /// `n` fresh contiguous frames from a region, zero-filled. Multi-frame
    /// runs given back go to the free list frame by frame: such runs are
    /// rare (SVM permission maps, the heap) and made once per CPU.
    fn bump(&mut self, n: u64) -> Option<HostPhys> {
        self.bump_aligned(n, PAGE_SIZE, true)
    }

    /// `n` contiguous frames starting at a multiple of `align` bytes (a power
    /// of two), zero-filled if `zero`. Frames skipped to reach the alignment
    /// go to the free list, so nothing is lost.
    fn bump_aligned(&mut self, n: u64, align: u64, zero: bool) -> Option<HostPhys> {
        if self.available() < n {
            return None;
        }
        let bytes = n.checked_mul(PAGE_SIZE)?;
        let fits = |r: &Region| {
            let start = r.next.checked_next_multiple_of(align)?;
            (start.checked_add(bytes)? <= r.end).then_some(start)
        };
        let i = self.regions[..self.nregions]
            .iter()
            .position(|r| fits(r).is_some())?;
        let region = self.regions[i];
        let start = fits(&region)?;
        self.regions[i].next = start + bytes;
        self.stats.free -= n;
        let mut skipped = region.next;
        while skipped < start {
            // `free` counts it back in.
            self.stats.free -= 1;
            self.free(HostPhys::new(skipped));
            skipped += PAGE_SIZE;
        }
        if zero {
            for k in 0..n {
                self.mem.zero(HostPhys::new(start + k * PAGE_SIZE));
            }
        }
        Some(HostPhys::new(start))
    }

    /// A 2 MiB-aligned run of 512 frames, not zeroed (the control domain's
    /// RAM is handed over as it is; the hypervisor's own data never lived
    /// there).
    pub fn alloc_2m(&mut self) -> Option<HostPhys> {
        self.bump_aligned(512, 512 * PAGE_SIZE, false)
    }

    /// Returns a frame to the pool.
    pub fn free(&mut self, frame: HostPhys) {
        self.mem.write_link(frame, self.free_list);
        self.free_list = frame.raw();
        self.stats.free += 1;
    }

    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.mem
    }
}

/// Frame contents reached through the physical-memory window.
#[derive(Debug)]
pub struct WindowMemory;

impl FrameMemory for WindowMemory {
    fn read_link(&self, frame: HostPhys) -> u64 {
        // SAFETY: the frame is on the free list, so it belongs to the
        // allocator, and the window maps every frame of RAM.
        unsafe { super::phys::ptr::<u64>(frame).read() }
    }
    fn write_link(&mut self, frame: HostPhys, link: u64) {
        // SAFETY: the frame was just given back to the allocator.
        unsafe { super::phys::ptr::<u64>(frame).write(link) }
    }
    fn zero(&mut self, frame: HostPhys) {
        // SAFETY: the frame belongs to the allocator or was just handed out.
        unsafe { super::phys::zero_frame(frame) }
    }
}

/// The machine's frame pool.
pub static FRAMES: spin::Mutex<FrameAlloc<WindowMemory>> =
    spin::Mutex::new(FrameAlloc::new(WindowMemory));

#[cfg(test)]
pub mod fake {
    //! A frame pool over a `Vec`, for host tests of code that allocates
    //! frames (page-table builders).
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct VecMemory {
        pub frames: HashMap<u64, Box<[u8; 4096]>>,
    }

    impl VecMemory {
        pub fn frame(&mut self, pa: HostPhys) -> &mut [u8; 4096] {
            self.frames
                .entry(pa.page_base().raw())
                .or_insert_with(|| Box::new([0; 4096]))
        }
    }

    impl FrameMemory for VecMemory {
        fn read_link(&self, frame: HostPhys) -> u64 {
            let f = &self.frames[&frame.raw()];
            u64::from_le_bytes(f[..8].try_into().unwrap())
        }
        fn write_link(&mut self, frame: HostPhys, link: u64) {
            self.frame(frame)[..8].copy_from_slice(&link.to_le_bytes());
        }
        fn zero(&mut self, frame: HostPhys) {
            *self.frame(frame) = [0; 4096];
        }
    }

    /// A pool of `frames` frames starting at 16 MiB.
    pub fn pool(frames: u64) -> FrameAlloc<VecMemory> {
        let mut a = FrameAlloc::new(VecMemory::default());
        assert!(a.add_region(0x100_0000, 0x100_0000 + frames * PAGE_SIZE));
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_holds_frames_back_until_lifted() {
        let mut a = fake::pool(8);
        let first = a.alloc().unwrap();
        a.set_limit(2);
        assert_eq!((a.stats().free, a.available()), (7, 2));
        let f = [a.alloc().unwrap(), a.alloc().unwrap()];
        assert_eq!(a.alloc(), None);
        assert_eq!(a.alloc_contiguous(2), None);
        // Frames given back can be taken again.
        a.free(f[0]);
        assert_eq!(a.available(), 1);
        assert!(a.alloc().is_some());
        a.set_limit(u64::MAX);
        assert_eq!(a.available(), 5);
        assert!(a.alloc_contiguous(3).is_some());
        a.free(first);
        a.set_limit(0);
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn allocates_until_empty_then_none() {
        let mut a = fake::pool(3);
        let f: Vec<_> = (0..3).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(a.alloc(), None);
        assert_eq!(a.stats().free, 0);
        a.free(f[1]);
        assert_eq!(a.stats().free, 1);
        assert_eq!(a.alloc(), Some(f[1]));
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn regions_are_trimmed_and_low_memory_skipped() {
        let mut a = FrameAlloc::new(fake::VecMemory::default());
        assert!(a.add_region(0x1000, 0x9f000)); // all below 1 MiB
        assert!(a.add_region(0x10_0800, 0x10_3800)); // partial frames at both ends
        assert_eq!(a.stats().total, 2);
        assert_eq!(a.alloc(), Some(HostPhys::new(0x10_1000)));
    }

    #[test]
    fn single_frames_are_reused_through_either_call() {
        let mut a = fake::pool(2);
        let f = a.alloc_contiguous(1).unwrap();
        a.free(f);
        assert_eq!(a.alloc_contiguous(1), Some(f));
        assert_eq!(a.stats().free, 1);
    }

    #[test]
    fn aligned_runs_keep_the_skipped_frames() {
        let mut a = FrameAlloc::new(fake::VecMemory::default());
        assert!(a.add_region(0x20_3000, 0x60_0000));
        let total = a.stats().total;
        assert_eq!(a.alloc_2m(), Some(HostPhys::new(0x40_0000)));
        assert_eq!(a.stats().free, total - 512);
        // The frames below the 2 MiB boundary went to the free list.
        assert_eq!(a.alloc(), Some(HostPhys::new(0x3f_f000)));
        assert_eq!(a.alloc_2m(), None);
    }

    #[test]
    fn contiguous_allocations_fit_one_region() {
        let mut a = FrameAlloc::new(fake::VecMemory::default());
        assert!(a.add_region(0x20_0000, 0x20_2000));
        assert!(a.add_region(0x40_0000, 0x40_4000));
        assert_eq!(a.alloc_contiguous(3), Some(HostPhys::new(0x40_0000)));
        assert_eq!(a.alloc_contiguous(2), Some(HostPhys::new(0x20_0000)));
        assert_eq!(a.alloc_contiguous(2), None);
        assert_eq!(a.alloc_contiguous(u64::MAX), None);
    }
}
