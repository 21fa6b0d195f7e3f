//! The control domain's free RAM: the range between its image and the boot
//! bundle, carved once at start by a bump allocator ([`Ram`]) into the
//! self-tests' scratch area and the heap. The heap serves `alloc`: the
//! VMM's data and, page-aligned, guest RAM and run pages (DESIGN.md D3:
//! guest memory belongs to the control domain), which go back to it when
//! their VM is closed.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// The heap needs at least this much (the VMM's data plus one test guest's
/// RAM); with less the control domain cannot run a guest.
pub const HEAP_MIN: u64 = 16 << 20;

/// A bump allocator over the control domain's free RAM, used before the heap
/// exists.
pub struct Ram {
    next: u64,
    end: u64,
}

impl Ram {
    pub fn new(start: u64, end: u64) -> Self {
        Self { next: start, end }
    }

    /// `len` bytes at a multiple of `align`, zeroed.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let at = self.next.checked_next_multiple_of(align)?;
        let end = at.checked_add(len)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        // SAFETY: [at, end) is free RAM of ours (identity-mapped), handed out
        // once.
        unsafe { core::ptr::write_bytes(at as *mut u8, 0, len as usize) };
        Some(at)
    }

    /// Everything left, from a multiple of `align` (not zeroed): start and
    /// length.
    pub fn rest(&mut self, align: u64) -> Option<(u64, u64)> {
        let at = self.next.checked_next_multiple_of(align)?;
        let len = self.end.checked_sub(at).filter(|&l| l > 0)?;
        self.next = self.end;
        Some((at, len))
    }
}

/// Hands `[start, start + len)` to the global allocator. Once only.
pub fn init_heap(start: u64, len: u64) {
    // SAFETY: the range is free RAM of ours (identity-mapped) that `Ram`
    // handed out once and nothing else uses; the heap is initialised once,
    // before the first allocation.
    unsafe { HEAP.lock().init(start as *mut u8, len as usize) };
}

/// The heap's size and the bytes in use.
pub fn heap_usage() -> Option<(usize, usize)> {
    // `try_lock`: called from the panic handler too, which may have
    // interrupted an allocation.
    HEAP.try_lock().map(|h| (h.size(), h.used()))
}

/// Prints the heap's use (for the panic handler: an allocation failure is a
/// panic, "memory allocation of N bytes failed").
pub fn report() {
    match heap_usage() {
        Some((size, used)) => crate::console::panic_line(format_args!(
            "control: heap: {} of {} KiB in use",
            used >> 10,
            size >> 10
        )),
        None => crate::console::panic_line(format_args!(
            "control: heap: busy (the panic came from inside the allocator)"
        )),
    }
}
