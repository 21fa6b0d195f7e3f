//! A guest's RAM: frames from the hypervisor pool at guest-physical
//! addresses 0 .. size, either one per 4 KiB page (test guests) or one 2 MiB
//! chunk per 2 MiB (the control domain, whose RAM is most of the machine).
//! The hypervisor reads and writes it through the physical-memory window (to
//! load images, fetch instructions and walk page tables).

use super::walk::GuestMemory;
use crate::mm::paging::PageSize;
use crate::mm::{GuestPhys, HostPhys};
use alloc::vec::Vec;

pub struct GuestRam {
    /// The frame (or 2 MiB chunk) behind each page, in guest-physical order
    /// (empty for a VM of the KVM API, whose RAM is `slots`).
    frames: Vec<HostPhys>,
    page: PageSize,
    /// KVM memory slots: control-domain RAM mapped into the guest
    /// (`KVM_SET_USER_MEMORY_REGION`).
    slots: Vec<MemSlot>,
    /// The dirty bitmaps of the slots with `KVM_MEM_LOG_DIRTY_PAGES`: one
    /// bit per 4 KiB page, as `KVM_GET_DIRTY_LOG` hands them out.
    dirty: Vec<DirtyMap>,
    /// Changes whenever the slots change: host addresses found through
    /// this RAM stay valid while it does not (`vcpu::decode_cache`).
    generation: u64,
}

/// A slot's pages written since the last `KVM_GET_DIRTY_LOG`.
#[derive(Debug)]
pub struct DirtyMap {
    pub slot: u32,
    pub bits: Vec<u64>,
}

/// One memory slot of a VM made through the KVM API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSlot {
    pub slot: u32,
    pub flags: u32,
    /// Guest-physical base and size (page-aligned).
    pub gpa: u64,
    pub size: u64,
    /// Where the memory is in the control domain (its guest-physical
    /// address, `userspace_addr`).
    pub cd_gpa: u64,
}

impl MemSlot {
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa - self.gpa < self.size
    }

    /// `KVM_MEM_READONLY`: the guest's writes exit as MMIO.
    pub fn readonly(&self) -> bool {
        self.flags & abi::kvm::KVM_MEM_READONLY != 0
    }

    /// `KVM_MEM_LOG_DIRTY_PAGES`.
    pub fn logs_dirty(&self) -> bool {
        self.flags & abi::kvm::KVM_MEM_LOG_DIRTY_PAGES != 0
    }

    /// 4 KiB pages in the slot.
    pub fn pages(&self) -> u64 {
        self.size / PageSize::Size4K.bytes()
    }
}

impl GuestRam {
    /// Takes `size` bytes (rounded up to pages) of zeroed 4 KiB frames from
    /// the pool, or none at all if the pool runs dry.
    pub fn new(frames: &mut crate::virt::Frames, size: u64) -> Option<Self> {
        let pages = size.div_ceil(PageSize::Size4K.bytes());
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
        Some(Self {
            frames: list,
            page: PageSize::Size4K,
            slots: Vec::new(),
            dirty: Vec::new(),
            generation: 0,
        })
    }

    /// Takes up to `size` bytes of 2 MiB chunks (at least one), leaving
    /// `keep` bytes of the pool free for the hypervisor. Returns None if not
    /// even one chunk can be had.
    pub fn new_large(frames: &mut crate::virt::Frames, size: u64, keep: u64) -> Option<Self> {
        let chunk = PageSize::Size2M.bytes();
        let mut list = Vec::new();
        while (list.len() as u64 + 1) * chunk <= size {
            if frames.stats().free * 4096 < keep + chunk {
                break;
            }
            if list.try_reserve(1).is_err() {
                break;
            }
            match frames.alloc_2m() {
                Some(c) => list.push(c),
                None => break,
            }
        }
        (!list.is_empty()).then_some(Self {
            frames: list,
            page: PageSize::Size2M,
            slots: Vec::new(),
            dirty: Vec::new(),
            generation: 0,
        })
    }

    /// RAM over `pages` of host memory (4 KiB each, GPA order), for host
    /// tests, where a host-physical address is a pointer.
    #[cfg(test)]
    pub fn from_host_pages(pages: Vec<HostPhys>) -> Self {
        Self {
            frames: pages,
            ..Self::empty()
        }
    }

    /// RAM of no pages (what a stopped VM keeps).
    pub const fn empty() -> Self {
        Self {
            frames: Vec::new(),
            page: PageSize::Size4K,
            slots: Vec::new(),
            dirty: Vec::new(),
            generation: 0,
        }
    }

    /// Another handle on the same frames (the control domain's vCPUs on
    /// other CPUs, `control::cpus`), without slots: the frames stay the
    /// original's to free, so a view is never `free`d. None without heap.
    pub fn view(&self) -> Option<Self> {
        let mut frames = Vec::new();
        frames.try_reserve_exact(self.frames.len()).ok()?;
        frames.extend_from_slice(&self.frames);
        Some(Self {
            frames,
            page: self.page,
            ..Self::empty()
        })
    }

    /// Gives every frame back to the pool.
    pub fn free(self, frames: &mut crate::virt::Frames) {
        let per_page = self.page.bytes() / PageSize::Size4K.bytes();
        for f in self.frames {
            for i in 0..per_page {
                frames.free(HostPhys::new(f.raw() + i * PageSize::Size4K.bytes()));
            }
        }
    }

    pub fn size(&self) -> u64 {
        self.frames.len() as u64 * self.page.bytes()
    }

    /// The size of each entry of `frames`.
    pub fn page_size(&self) -> PageSize {
        self.page
    }

    /// The frames (or chunks), in guest-physical order (to build the nested
    /// tables).
    pub fn frames(&self) -> &[HostPhys] {
        &self.frames
    }

    /// The host address of the byte at `gpa`, if it is RAM.
    pub fn host_of(&self, gpa: GuestPhys) -> Option<HostPhys> {
        self.host_run(gpa).map(|(h, _)| h)
    }

    /// The host address of the byte at `gpa` and how many bytes from there
    /// are contiguous in host memory, if it is RAM.
    pub fn host_run(&self, gpa: GuestPhys) -> Option<(HostPhys, u64)> {
        let gpa = gpa.raw();
        if let Some(s) = self.slots.iter().find(|s| s.contains(gpa)) {
            // A guest chooses `gpa`: under a mispredicted `contains` the
            // offset must not reach past this slot's backing (Spectre v1).
            let cd = s.cd_gpa + crate::arch::spec::offset_nospec(gpa.wrapping_sub(s.gpa), s.size);
            let (host, run) = crate::control::memory::host_run(cd)?;
            return Some((host, run.min(s.size - (gpa - s.gpa))));
        }
        let page = self.page.bytes();
        // A guest chooses `gpa`: Spectre v1 (`arch::spec::get_nospec`).
        let base = crate::arch::spec::get_nospec(&self.frames, usize::try_from(gpa / page).ok()?)?;
        Some((HostPhys::new(base.raw() + gpa % page), page - gpa % page))
    }

    /// Whether all of `gpa .. gpa + len` is RAM.
    pub fn covers(&self, gpa: GuestPhys, len: u64) -> bool {
        let Some(end) = gpa.raw().checked_add(len) else {
            return false;
        };
        let mut at = gpa.raw();
        while at < end {
            match self.host_run(GuestPhys::new(at)) {
                Some((_, run)) => at = at.saturating_add(run),
                None => return false,
            }
        }
        true
    }

    /// The memory slots (KVM API VMs).
    pub fn slots(&self) -> &[MemSlot] {
        &self.slots
    }

    /// See the field: a new value after every change of the slots.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds slot `s` (the caller checked it and removed any slot of that
    /// number). If it logs dirty pages its bitmap is `bits` (a slot's own,
    /// kept across a move) or a new, empty one. Err (with `bits` given
    /// back) if the heap cannot hold it; nothing changed then.
    pub fn insert_slot(
        &mut self,
        s: MemSlot,
        bits: Option<DirtyMap>,
    ) -> Result<(), Option<DirtyMap>> {
        if self.slots.try_reserve(1).is_err() {
            return Err(bits);
        }
        if s.logs_dirty() {
            let words = usize::try_from(s.pages().div_ceil(64)).unwrap_or(usize::MAX);
            let map = match bits {
                Some(mut d) if d.bits.len() == words => {
                    d.slot = s.slot;
                    d
                }
                other => {
                    let mut fresh = Vec::new();
                    if fresh.try_reserve_exact(words).is_err() {
                        return Err(other);
                    }
                    fresh.resize(words, 0);
                    DirtyMap {
                        slot: s.slot,
                        bits: fresh,
                    }
                }
            };
            if self.dirty.try_reserve(1).is_err() {
                return Err(Some(map));
            }
            self.dirty.push(map);
        }
        self.slots.push(s);
        self.generation += 1;
        Ok(())
    }

    /// Removes slot `slot` with its dirty bitmap, for `restore_slot` to put
    /// back (or for the caller to replace).
    pub fn take_slot(&mut self, slot: u32) -> Option<(MemSlot, Option<DirtyMap>)> {
        let i = self.slots.iter().position(|o| o.slot == slot)?;
        let s = self.slots.swap_remove(i);
        self.generation += 1;
        let d = self
            .dirty
            .iter()
            .position(|d| d.slot == slot)
            .map(|j| self.dirty.swap_remove(j));
        Some((s, d))
    }

    /// Puts back what `take_slot` removed: the room it left is still there,
    /// so this allocates nothing.
    pub fn restore_slot(&mut self, (s, d): (MemSlot, Option<DirtyMap>)) {
        self.slots.push(s);
        self.generation += 1;
        if let Some(d) = d {
            self.dirty.push(d);
        }
    }

    /// Removes slot `slot` (and its dirty bitmap), returning it.
    pub fn remove_slot(&mut self, slot: u32) -> Option<MemSlot> {
        let i = self.slots.iter().position(|o| o.slot == slot)?;
        self.dirty.retain(|d| d.slot != slot);
        self.generation += 1;
        Some(self.slots.swap_remove(i))
    }

    /// The slot holding `gpa`, if any.
    pub fn slot_of(&self, gpa: u64) -> Option<&MemSlot> {
        self.slots.iter().find(|s| s.contains(gpa))
    }

    /// Marks the page at `gpa` dirty if its slot logs dirty pages.
    pub fn mark_dirty(&mut self, gpa: u64) {
        let Some(s) = self.slots.iter().find(|s| s.contains(gpa)) else {
            return;
        };
        let page = (gpa - s.gpa) / PageSize::Size4K.bytes();
        if let Some(d) = self.dirty.iter_mut().find(|d| d.slot == s.slot)
            && let Some(w) = crate::arch::spec::get_mut_nospec(&mut d.bits, (page / 64) as usize)
        {
            *w |= 1 << (page % 64);
        }
    }

    /// Slot `slot`'s dirty bitmap, to hand out and clear.
    pub fn dirty_map(&mut self, slot: u32) -> Option<&mut DirtyMap> {
        self.dirty.iter_mut().find(|d| d.slot == slot)
    }

    /// Whether the guest may write all of `gpa .. gpa + len`: RAM and no
    /// read-only slot.
    pub fn writable(&self, gpa: GuestPhys, len: u64) -> bool {
        let end = gpa.raw().saturating_add(len);
        self.covers(gpa, len)
            && !self
                .slots
                .iter()
                .any(|s| s.readonly() && gpa.raw() < s.gpa + s.size && s.gpa < end)
    }

    /// Copies guest memory at `gpa` into `out`; false if any byte is not RAM.
    pub fn read(&self, gpa: GuestPhys, out: &mut [u8]) -> bool {
        // One lookup where the bytes are contiguous in host memory (the
        // run page, a request's argument): the common case.
        if let Some((host, run)) = self.host_run(gpa)
            && run >= out.len() as u64
        {
            // SAFETY: `host` starts `run` >= out.len() bytes of this guest's RAM.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    crate::mm::phys::ptr::<u8>(host),
                    out.as_mut_ptr(),
                    out.len(),
                )
            };
            return true;
        }
        self.copy(gpa, out.len(), |host, done, n| {
            // SAFETY: `host` points at `n` bytes inside a frame of this guest.
            unsafe { core::ptr::copy_nonoverlapping(host, out[done..].as_mut_ptr(), n) }
        })
    }

    /// Copies `data` into guest memory at `gpa` as a guest's write would
    /// (the hypervisor completing INS or MOVS): false if any byte is not
    /// RAM or is in a read-only slot (nothing is written then). The pages
    /// written count as dirty.
    pub fn write(&mut self, gpa: GuestPhys, data: &[u8]) -> bool {
        // RAM without slots (the control domain's, a built-in VM's) has no
        // read-only or logged pages: one lookup where the bytes are
        // contiguous in host memory.
        if self.slots.is_empty()
            && let Some((host, run)) = self.host_run(gpa)
            && run >= data.len() as u64
        {
            // SAFETY: `host` starts `run` >= data.len() bytes of this guest's RAM.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    crate::mm::phys::ptr::<u8>(host),
                    data.len(),
                )
            };
            return true;
        }
        // Checked first so that a partly-RAM range writes nothing (memory
        // slots make the RAM of a KVM-API VM a set of ranges, not one).
        if !self.writable(gpa, data.len() as u64) {
            return false;
        }
        self.mark_range_dirty(gpa, data.len());
        self.copy(gpa, data.len(), |host, done, n| {
            // SAFETY: as in `read`; the frame belongs to this guest.
            unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), host, n) }
        })
    }

    /// Fills `len` bytes at `gpa` with zeroes; false if any is not RAM the
    /// guest may write.
    pub fn zero(&mut self, gpa: GuestPhys, len: usize) -> bool {
        if !self.writable(gpa, len as u64) {
            return false;
        }
        self.mark_range_dirty(gpa, len);
        self.copy(gpa, len, |host, _, n| {
            // SAFETY: as in `write`.
            unsafe { core::ptr::write_bytes(host, 0, n) }
        })
    }

    fn mark_range_dirty(&mut self, gpa: GuestPhys, len: usize) {
        if self.dirty.is_empty() || len == 0 {
            return;
        }
        let page = PageSize::Size4K.bytes();
        let (first, last) = (gpa.raw() / page, (gpa.raw() + len as u64 - 1) / page);
        for p in first..=last {
            self.mark_dirty(p * page);
        }
    }

    fn copy(&self, gpa: GuestPhys, len: usize, mut f: impl FnMut(*mut u8, usize, usize)) -> bool {
        let mut done = 0usize;
        while done < len {
            let Some(at) = gpa.checked_add(done as u64) else {
                return false;
            };
            let Some((host, run)) = self.host_run(at) else {
                return false;
            };
            let n = usize::try_from(run).unwrap_or(usize::MAX).min(len - done);
            f(crate::mm::phys::ptr::<u8>(host), done, n);
            done += n;
        }
        true
    }
}

impl GuestMemory for GuestRam {
    fn read_u64(&self, gpa: GuestPhys) -> Option<u64> {
        // The walker's read: one lookup where the 8 bytes are contiguous.
        match self.host_run(gpa) {
            Some((host, run)) if run >= 8 => {
                // SAFETY: `host` starts 8 contiguous bytes of this guest's RAM.
                Some(unsafe { core::ptr::read_unaligned(crate::mm::phys::ptr::<u64>(host)) })
            }
            _ => {
                let mut b = [0u8; 8];
                self.read(gpa, &mut b).then(|| u64::from_le_bytes(b))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::kvm::{KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};

    fn slot(n: u32, flags: u32, gpa: u64) -> MemSlot {
        MemSlot {
            slot: n,
            flags,
            gpa,
            size: 130 * 4096,
            cd_gpa: 0x40_0000,
        }
    }

    #[test]
    fn dirty_bitmaps_follow_their_slot() {
        let mut ram = GuestRam::empty();
        let logged = slot(1, KVM_MEM_LOG_DIRTY_PAGES, 0x1000_0000);
        assert!(ram.insert_slot(logged, None).is_ok());
        // 130 pages: three words.
        assert_eq!(ram.dirty_map(1).map(|d| d.bits.len()), Some(3));
        ram.mark_dirty(0x1000_0000 + 129 * 4096 + 5);
        ram.mark_dirty(0x2000_0000);
        assert_eq!(ram.dirty_map(1).unwrap().bits, [0, 0, 2]);
        // Moved, it keeps its bitmap; put back, too.
        let taken = ram.take_slot(1).unwrap();
        assert!(ram.slot_of(0x1000_0000).is_none() && ram.dirty_map(1).is_none());
        ram.restore_slot(taken);
        let (old, bits) = ram.take_slot(1).unwrap();
        assert!(
            ram.insert_slot(
                MemSlot {
                    gpa: 0x3000_0000,
                    ..old
                },
                bits
            )
            .is_ok()
        );
        assert_eq!(ram.dirty_map(1).unwrap().bits, [0, 0, 2]);
        ram.mark_dirty(0x3000_0000);
        assert_eq!(ram.dirty_map(1).unwrap().bits, [1, 0, 2]);
        // A slot that does not log has no bitmap; a read-only one is not
        // writable.
        assert!(
            ram.insert_slot(slot(2, KVM_MEM_READONLY, 0x5000_0000), None)
                .is_ok()
        );
        assert!(ram.dirty_map(2).is_none());
        assert!(ram.slot_of(0x5000_0000).is_some_and(MemSlot::readonly));
        assert!(ram.remove_slot(1).is_some() && ram.dirty_map(1).is_none());
    }
}
