//! One 4-level page-table builder for every table format the hypervisor
//! writes: Intel EPT (`virt::vmx::ept`) and AMD NPT (`virt::svm::npt`) today.
//! A format says how an entry is encoded; the walk, allocation and teardown
//! are shared and unit-tested on the host against fake memory.
//!
//! Leaves are 4 KiB or 2 MiB: a VM's RAM from the pool is a list of frames,
//! not necessarily contiguous; the control domain's RAM is 2 MiB chunks.

use super::addr::{GuestPhys, HostPhys};
use super::frame::{FrameAlloc, FrameMemory};

/// Access rights of a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Perms {
    pub const RWX: Self = Self {
        read: true,
        write: true,
        exec: true,
    };
    pub const RX: Self = Self {
        read: true,
        write: false,
        exec: true,
    };
}

/// How one table format encodes its entries.
pub trait Format {
    /// An entry pointing at the next-level table at `table`.
    fn table(table: HostPhys) -> u64;
    /// A 4 KiB leaf mapping `frame` with `perms`.
    fn leaf(frame: HostPhys, perms: Perms) -> u64;
    /// A 2 MiB leaf (in a page directory) mapping the 2 MiB-aligned `frame`.
    fn large_leaf(frame: HostPhys, perms: Perms) -> u64;
    /// Whether a page-directory entry is a 2 MiB leaf.
    fn is_large(entry: u64) -> bool;
    /// Whether `entry` maps anything (table or leaf).
    fn present(entry: u64) -> bool;
    /// The leaf's permissions.
    fn perms(entry: u64) -> Perms;
}

/// Bits 51:12 of an entry: the address of the frame or table it points to.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Reaching tables in memory.
pub trait TableMemory {
    fn read(&self, table: HostPhys, index: usize) -> u64;
    fn write(&mut self, table: HostPhys, index: usize, value: u64);
    fn alloc_table(&mut self) -> Option<HostPhys>;
    fn free_table(&mut self, table: HostPhys);
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The pool ran out of frames for a table.
    NoMemory,
    /// The guest-physical page is already mapped.
    AlreadyMapped,
    /// The address is beyond the 48 bits a 4-level table translates.
    OutOfRange,
}

/// Guest-physical addresses a 4-level table can translate.
pub const MAX_GPA: u64 = 1 << 48;

/// The two leaf sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    Size4K,
    Size2M,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => 1 << 12,
            Self::Size2M => 1 << 21,
        }
    }
    /// The table level that holds such a leaf (0 = page table, 1 = page
    /// directory).
    const fn level(self) -> u32 {
        match self {
            Self::Size4K => 0,
            Self::Size2M => 1,
        }
    }
}

fn index(gpa: GuestPhys, level: u32) -> usize {
    ((gpa.raw() >> (12 + 9 * level)) & 0x1ff) as usize
}

/// A leaf found by `Table::find_leaf`: the table holding it, its index and
/// entry, and the entries walked through to get there (root first).
struct Leaf {
    table: HostPhys,
    index: usize,
    entry: u64,
    path: [(HostPhys, usize); 3],
    depth: usize,
}

/// A 4-level table rooted at `root` in format `F`.
#[derive(Debug)]
pub struct Table<F: Format> {
    root: HostPhys,
    _format: core::marker::PhantomData<F>,
}

impl<F: Format> Table<F> {
    /// An empty table (one zeroed root frame).
    pub fn new(mem: &mut impl TableMemory) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::NoMemory)?;
        Ok(Self {
            root,
            _format: core::marker::PhantomData,
        })
    }

    pub fn root(&self) -> HostPhys {
        self.root
    }

    /// Maps the 4 KiB guest page `gpa` to `frame`. If a table cannot be
    /// made, the tables this call made are freed again: nothing half-made.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: GuestPhys,
        frame: HostPhys,
        perms: Perms,
    ) -> Result<(), MapError> {
        self.map_sized(mem, gpa, frame, perms, PageSize::Size4K)
    }

    /// Maps a page of `size` at `gpa` (both `gpa` and `frame` aligned to it).
    pub fn map_sized(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: GuestPhys,
        frame: HostPhys,
        perms: Perms,
        size: PageSize,
    ) -> Result<(), MapError> {
        if gpa.raw() >= MAX_GPA
            || !gpa.raw().is_multiple_of(size.bytes())
            || !frame.raw().is_multiple_of(size.bytes())
        {
            return Err(MapError::OutOfRange);
        }
        let leaf_level = size.level();
        let mut table = self.root;
        // The entries that point at tables this call made (at most three;
        // once one is made, every table below it is new too).
        let mut made: [(HostPhys, usize); 3] = [(HostPhys::new(0), 0); 3];
        let mut n_made = 0;
        for level in (leaf_level + 1..4).rev() {
            let i = index(gpa, level);
            let entry = mem.read(table, i);
            table = if F::present(entry) {
                if level == 1 && F::is_large(entry) {
                    return Err(MapError::AlreadyMapped);
                }
                HostPhys::new(entry & ADDR_MASK)
            } else {
                let Some(next) = mem.alloc_table() else {
                    for &(parent, pi) in made[..n_made].iter().rev() {
                        let t = HostPhys::new(mem.read(parent, pi) & ADDR_MASK);
                        mem.write(parent, pi, 0);
                        mem.free_table(t);
                    }
                    return Err(MapError::NoMemory);
                };
                mem.write(table, i, F::table(next));
                made[n_made] = (table, i);
                n_made += 1;
                next
            };
        }
        let i = index(gpa, leaf_level);
        if F::present(mem.read(table, i)) {
            return Err(MapError::AlreadyMapped);
        }
        let leaf = match size {
            PageSize::Size4K => F::leaf(frame, perms),
            PageSize::Size2M => F::large_leaf(frame, perms),
        };
        mem.write(table, i, leaf);
        Ok(())
    }

    /// Walks to the leaf of `size` at `gpa`: None if there is no such leaf
    /// (nothing mapped there, or a page of the other size).
    fn find_leaf(&self, mem: &impl TableMemory, gpa: GuestPhys, size: PageSize) -> Option<Leaf> {
        if gpa.raw() >= MAX_GPA {
            return None;
        }
        let leaf_level = size.level();
        let mut w = Leaf {
            table: self.root,
            index: 0,
            entry: 0,
            path: [(HostPhys::new(0), 0); 3],
            depth: 0,
        };
        for level in (leaf_level + 1..4).rev() {
            let i = index(gpa, level);
            let entry = mem.read(w.table, i);
            if !F::present(entry) || (level == 1 && F::is_large(entry)) {
                return None;
            }
            w.path[w.depth] = (w.table, i);
            w.depth += 1;
            w.table = HostPhys::new(entry & ADDR_MASK);
        }
        w.index = index(gpa, leaf_level);
        w.entry = mem.read(w.table, w.index);
        if !F::present(w.entry) || (leaf_level == 1 && !F::is_large(w.entry)) {
            return None;
        }
        Some(w)
    }

    /// Removes the mapping of the page of `size` at `gpa`; returns the frame
    /// it mapped. Tables it leaves empty are freed (not the root), so the
    /// tables a VM holds are always those its mappings need. The caller
    /// flushes the TLB and paging-structure caches (INVEPT / a flush on next
    /// entry) before any table frame can be used again.
    pub fn unmap(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: GuestPhys,
        size: PageSize,
    ) -> Option<HostPhys> {
        let w = self.find_leaf(mem, gpa, size)?;
        mem.write(w.table, w.index, 0);
        let mut table = w.table;
        for &(parent, pi) in w.path[..w.depth].iter().rev() {
            if (0..512).any(|k| F::present(mem.read(table, k))) {
                break;
            }
            mem.write(parent, pi, 0);
            mem.free_table(table);
            table = parent;
        }
        Some(HostPhys::new(w.entry & ADDR_MASK))
    }

    /// Gives the leaf of `size` at `gpa` the rights `perms` (same frame);
    /// false if there is no such leaf. The caller flushes the TLB.
    pub fn protect(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: GuestPhys,
        size: PageSize,
        perms: Perms,
    ) -> bool {
        let Some(w) = self.find_leaf(mem, gpa, size) else {
            return false;
        };
        let frame = HostPhys::new(w.entry & ADDR_MASK);
        let new = match size {
            PageSize::Size4K => F::leaf(frame, perms),
            PageSize::Size2M => F::large_leaf(frame, perms),
        };
        mem.write(w.table, w.index, new);
        true
    }

    /// The frame and rights `gpa` maps to, if any.
    pub fn translate(&self, mem: &impl TableMemory, gpa: GuestPhys) -> Option<(HostPhys, Perms)> {
        if gpa.raw() >= MAX_GPA {
            return None;
        }
        let mut table = self.root;
        for level in (1..4).rev() {
            let entry = mem.read(table, index(gpa, level));
            if !F::present(entry) {
                return None;
            }
            if level == 1 && F::is_large(entry) {
                let offset = gpa.raw() & (PageSize::Size2M.bytes() - 1);
                return Some((
                    HostPhys::new((entry & ADDR_MASK & !0x1f_ffff) | offset),
                    F::perms(entry),
                ));
            }
            table = HostPhys::new(entry & ADDR_MASK);
        }
        let leaf = mem.read(table, index(gpa, 0));
        F::present(leaf).then(|| {
            (
                HostPhys::new((leaf & ADDR_MASK) | gpa.page_offset()),
                F::perms(leaf),
            )
        })
    }

    /// Frees every table frame (not the mapped frames: they belong to the VM).
    pub fn destroy(self, mem: &mut impl TableMemory) {
        fn free_level<F: Format>(mem: &mut impl TableMemory, table: HostPhys, level: u32) {
            if level > 0 {
                for i in 0..512 {
                    let e = mem.read(table, i);
                    if F::present(e) && !(level == 1 && F::is_large(e)) {
                        free_level::<F>(mem, HostPhys::new(e & ADDR_MASK), level - 1);
                    }
                }
            }
            mem.free_table(table);
        }
        free_level::<F>(mem, self.root, 3);
    }

    /// Visits every leaf as (guest-physical page, entry); a 2 MiB leaf is
    /// visited once, at its base.
    pub fn for_each_leaf(&self, mem: &impl TableMemory, mut f: impl FnMut(GuestPhys, u64)) {
        fn walk<F: Format>(
            mem: &impl TableMemory,
            table: HostPhys,
            level: u32,
            base: u64,
            f: &mut impl FnMut(GuestPhys, u64),
        ) {
            for i in 0..512u64 {
                let e = mem.read(table, i as usize);
                if !F::present(e) {
                    continue;
                }
                let gpa = base | (i << (12 + 9 * level));
                if level == 0 || (level == 1 && F::is_large(e)) {
                    f(GuestPhys::new(gpa), e);
                } else {
                    walk::<F>(mem, HostPhys::new(e & ADDR_MASK), level - 1, gpa, f);
                }
            }
        }
        walk::<F>(mem, self.root, 3, 0, &mut f);
    }
}

/// Tables on the machine: frames from the pool, reached through the
/// physical-memory window.
impl<M: FrameMemory> TableMemory for FrameAlloc<M>
where
    FrameAlloc<M>: TableAccess,
{
    fn read(&self, table: HostPhys, index: usize) -> u64 {
        self.read_entry(table, index)
    }
    fn write(&mut self, table: HostPhys, index: usize, value: u64) {
        self.write_entry(table, index, value)
    }
    fn alloc_table(&mut self) -> Option<HostPhys> {
        self.alloc_zeroed()
    }
    fn free_table(&mut self, table: HostPhys) {
        self.free(table)
    }
}

/// Reading and writing table entries inside frames of a pool.
pub trait TableAccess {
    fn read_entry(&self, table: HostPhys, index: usize) -> u64;
    fn write_entry(&mut self, table: HostPhys, index: usize, value: u64);
}

impl TableAccess for FrameAlloc<super::frame::WindowMemory> {
    fn read_entry(&self, table: HostPhys, index: usize) -> u64 {
        let index = index & 0x1ff;
        // SAFETY: `table` is a table frame this pool handed out and that the
        // owning `Table` still holds; the index is within the frame.
        unsafe { super::phys::ptr::<u64>(table).add(index).read_volatile() }
    }
    fn write_entry(&mut self, table: HostPhys, index: usize, value: u64) {
        let index = index & 0x1ff;
        // SAFETY: as in `read_entry`.
        unsafe {
            super::phys::ptr::<u64>(table)
                .add(index)
                .write_volatile(value)
        }
    }
}

#[cfg(test)]
impl TableAccess for FrameAlloc<super::frame::fake::VecMemory> {
    fn read_entry(&self, table: HostPhys, index: usize) -> u64 {
        self.memory()
            .frames
            .get(&table.raw())
            .map(|f| u64::from_le_bytes(f[index * 8..index * 8 + 8].try_into().unwrap()))
            .unwrap_or(0)
    }
    fn write_entry(&mut self, table: HostPhys, index: usize, value: u64) {
        self.memory_mut().frame(table)[index * 8..index * 8 + 8]
            .copy_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::frame::fake;

    /// A made-up format: present bit 0, writable bit 1, executable bit 2.
    struct Toy;
    impl Format for Toy {
        fn table(t: HostPhys) -> u64 {
            t.raw() | 0b111
        }
        fn leaf(f: HostPhys, p: Perms) -> u64 {
            f.raw() | 1 | (p.write as u64) << 1 | (p.exec as u64) << 2
        }
        fn present(e: u64) -> bool {
            e & 1 != 0
        }
        fn perms(e: u64) -> Perms {
            Perms {
                read: true,
                write: e & 2 != 0,
                exec: e & 4 != 0,
            }
        }
        fn large_leaf(f: HostPhys, p: Perms) -> u64 {
            Self::leaf(f, p) | 1 << 7
        }
        fn is_large(e: u64) -> bool {
            e & 1 << 7 != 0
        }
    }

    #[test]
    fn maps_and_translates() {
        let mut pool = fake::pool(64);
        let mut t = Table::<Toy>::new(&mut pool).unwrap();
        t.map(
            &mut pool,
            GuestPhys::new(0x0),
            HostPhys::new(0x5000_0000),
            Perms::RWX,
        )
        .unwrap();
        t.map(
            &mut pool,
            GuestPhys::new(0x20_1000),
            HostPhys::new(0x6000_0000),
            Perms::RX,
        )
        .unwrap();
        t.map(
            &mut pool,
            GuestPhys::new(0xffff_ffff_f000),
            HostPhys::new(0x7000_0000),
            Perms::RWX,
        )
        .unwrap();
        assert_eq!(
            t.translate(&pool, GuestPhys::new(0x123)),
            Some((HostPhys::new(0x5000_0123), Perms::RWX))
        );
        assert_eq!(
            t.translate(&pool, GuestPhys::new(0x20_1fff)),
            Some((HostPhys::new(0x6000_0fff), Perms::RX))
        );
        assert_eq!(t.translate(&pool, GuestPhys::new(0x1000)), None);
        assert_eq!(t.translate(&pool, GuestPhys::new(MAX_GPA)), None);
        assert_eq!(
            t.map(
                &mut pool,
                GuestPhys::new(0),
                HostPhys::new(0x1000),
                Perms::RWX
            ),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(
            t.map(
                &mut pool,
                GuestPhys::new(MAX_GPA),
                HostPhys::new(0x1000),
                Perms::RWX
            ),
            Err(MapError::OutOfRange)
        );
        let mut leaves = Vec::new();
        t.for_each_leaf(&pool, |gpa, e| leaves.push((gpa.raw(), e & ADDR_MASK)));
        assert_eq!(
            leaves,
            [
                (0, 0x5000_0000),
                (0x20_1000, 0x6000_0000),
                (0xffff_ffff_f000, 0x7000_0000)
            ]
        );
    }

    #[test]
    fn tables_are_shared_and_freed() {
        let mut pool = fake::pool(64);
        let mut t = Table::<Toy>::new(&mut pool).unwrap();
        for i in 0..512 {
            t.map(
                &mut pool,
                GuestPhys::new(i * 4096),
                HostPhys::new(0x100_0000 + i * 4096),
                Perms::RWX,
            )
            .unwrap();
        }
        // Root + PDPT + PD + one PT for 2 MiB of 4 KiB pages.
        assert_eq!(pool.stats().total - pool.stats().free, 4);
        t.destroy(&mut pool);
        assert_eq!(pool.stats().free, pool.stats().total);
    }

    #[test]
    fn large_pages_and_unmap() {
        let mut pool = fake::pool(64);
        let mut t = Table::<Toy>::new(&mut pool).unwrap();
        let big = PageSize::Size2M;
        t.map_sized(
            &mut pool,
            GuestPhys::new(0x20_0000),
            HostPhys::new(0x4000_0000),
            Perms::RWX,
            big,
        )
        .unwrap();
        assert_eq!(
            t.translate(&pool, GuestPhys::new(0x21_2345)),
            Some((HostPhys::new(0x4001_2345), Perms::RWX))
        );
        // Misaligned large pages and 4 KiB pages under a large one are refused.
        assert_eq!(
            t.map_sized(
                &mut pool,
                GuestPhys::new(0x40_1000),
                HostPhys::new(0),
                Perms::RWX,
                big
            ),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            t.map(
                &mut pool,
                GuestPhys::new(0x20_1000),
                HostPhys::new(0x1000),
                Perms::RWX
            ),
            Err(MapError::AlreadyMapped)
        );
        t.map(
            &mut pool,
            GuestPhys::new(0x40_0000),
            HostPhys::new(0x9000),
            Perms::RWX,
        )
        .unwrap();
        let mut leaves = Vec::new();
        t.for_each_leaf(&pool, |gpa, _| leaves.push(gpa.raw()));
        assert_eq!(leaves, [0x20_0000, 0x40_0000]);
        // Unmap needs the right size.
        assert_eq!(
            t.unmap(&mut pool, GuestPhys::new(0x20_0000), PageSize::Size4K),
            None
        );
        assert_eq!(
            t.unmap(&mut pool, GuestPhys::new(0x20_0000), big),
            Some(HostPhys::new(0x4000_0000))
        );
        assert_eq!(t.translate(&pool, GuestPhys::new(0x21_2345)), None);
        assert_eq!(
            t.unmap(&mut pool, GuestPhys::new(0x40_0000), PageSize::Size4K),
            Some(HostPhys::new(0x9000))
        );
        assert_eq!(
            t.unmap(&mut pool, GuestPhys::new(0x40_0000), PageSize::Size4K),
            None
        );
        t.destroy(&mut pool);
        assert_eq!(pool.stats().free, pool.stats().total);
    }

    #[test]
    fn running_out_of_frames_is_an_error() {
        let mut pool = fake::pool(3);
        let mut t = Table::<Toy>::new(&mut pool).unwrap();
        assert_eq!(
            t.map(
                &mut pool,
                GuestPhys::new(0),
                HostPhys::new(0x1000),
                Perms::RWX
            ),
            Err(MapError::NoMemory)
        );
        // The PDPT and PD it made went back at once: nothing half-made.
        assert_eq!(pool.stats().free, 2);
        t.destroy(&mut pool);
        assert_eq!(pool.stats().free, 3);
    }

    #[test]
    fn unmap_frees_the_tables_it_empties() {
        let mut pool = fake::pool(64);
        let mut t = Table::<Toy>::new(&mut pool).unwrap();
        let used = |pool: &crate::mm::frame::FrameAlloc<_>| {
            let s: crate::mm::frame::FrameStats = crate::mm::frame::FrameAlloc::stats(pool);
            s.total - s.free
        };
        let a = GuestPhys::new(0x1000);
        let b = GuestPhys::new(0x2000);
        // 512 GiB away: its own PDPT, PD and PT.
        let far = GuestPhys::new(0x80_0000_0000);
        for (gpa, frame) in [(a, 0x1000), (b, 0x2000), (far, 0x3000)] {
            t.map(&mut pool, gpa, HostPhys::new(frame), Perms::RWX)
                .unwrap();
        }
        assert_eq!(used(&pool), 1 + 3 + 3);
        assert_eq!(
            t.unmap(&mut pool, far, PageSize::Size4K),
            Some(HostPhys::new(0x3000))
        );
        assert_eq!(used(&pool), 1 + 3);
        // `b` still shares the tables of `a`.
        assert!(t.unmap(&mut pool, a, PageSize::Size4K).is_some());
        assert_eq!(used(&pool), 1 + 3);
        assert_eq!(
            t.translate(&pool, b),
            Some((HostPhys::new(0x2000), Perms::RWX))
        );
        assert!(t.unmap(&mut pool, b, PageSize::Size4K).is_some());
        assert_eq!(used(&pool), 1, "only the root is left");
        // A 2 MiB leaf's PD and PDPT go too.
        t.map_sized(
            &mut pool,
            GuestPhys::new(0x20_0000),
            HostPhys::new(0x4000_0000),
            Perms::RWX,
            PageSize::Size2M,
        )
        .unwrap();
        assert_eq!(used(&pool), 3);
        assert!(
            t.unmap(&mut pool, GuestPhys::new(0x20_0000), PageSize::Size2M)
                .is_some()
        );
        assert_eq!(used(&pool), 1);
        t.destroy(&mut pool);
        assert_eq!(used(&pool), 0);
    }

    #[test]
    fn protect_changes_rights_not_frames() {
        let mut pool = fake::pool(16);
        let mut t = Table::<Toy>::new(&mut pool).unwrap();
        let g = GuestPhys::new(0x3000);
        t.map(&mut pool, g, HostPhys::new(0x7000), Perms::RX)
            .unwrap();
        assert!(t.protect(&mut pool, g, PageSize::Size4K, Perms::RWX));
        assert_eq!(
            t.translate(&pool, g),
            Some((HostPhys::new(0x7000), Perms::RWX))
        );
        assert!(!t.protect(
            &mut pool,
            GuestPhys::new(0x4000),
            PageSize::Size4K,
            Perms::RX
        ));
        assert!(!t.protect(&mut pool, g, PageSize::Size2M, Perms::RX));
        t.destroy(&mut pool);
    }

    #[test]
    fn a_failed_map_keeps_the_tables_it_found() {
        // Root, PDPT, PD, PT for the first page; a second page 1 GiB away
        // needs a PD and a PT, and only one frame is left.
        let mut pool = fake::pool(5);
        let mut t = Table::<Toy>::new(&mut pool).unwrap();
        t.map(
            &mut pool,
            GuestPhys::new(0),
            HostPhys::new(0x1000),
            Perms::RWX,
        )
        .unwrap();
        assert_eq!(pool.stats().free, 1);
        let far = GuestPhys::new(0x4000_0000);
        assert_eq!(
            t.map(&mut pool, far, HostPhys::new(0x2000), Perms::RWX),
            Err(MapError::NoMemory)
        );
        assert_eq!(pool.stats().free, 1);
        assert_eq!(
            t.translate(&pool, GuestPhys::new(0)),
            Some((HostPhys::new(0x1000), Perms::RWX))
        );
        t.destroy(&mut pool);
        assert_eq!(pool.stats().free, 5);
    }
}
