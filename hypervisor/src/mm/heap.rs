//! The kernel heap: a `linked_list_allocator` over a contiguous run of
//! frames taken from the pool at boot. VM metadata that the hardware reads
//! (tables, VMCS/VMCB) comes from the frame pool instead, never the heap.

use super::addr::PAGE_SIZE;
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Heap size: VM bookkeeping, CPUID tables, console rings.
pub const HEAP_SIZE: u64 = 8 << 20;

/// Where the heap lies in physical memory (0 bytes before `init`).
static START: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The heap's first frame and size (`MOJITO_LOG_LAYOUT`).
pub fn range() -> (super::HostPhys, u64) {
    let start = START.load(core::sync::atomic::Ordering::Relaxed);
    (
        super::HostPhys::new(start),
        if start == 0 { 0 } else { HEAP_SIZE },
    )
}

/// Takes `HEAP_SIZE` bytes of frames and hands them to the allocator.
pub fn init() -> Result<(), &'static str> {
    let start = super::frame::FRAMES
        .lock()
        .alloc_contiguous(HEAP_SIZE / PAGE_SIZE)
        .ok_or("no contiguous memory for the heap")?;
    START.store(start.raw(), core::sync::atomic::Ordering::Relaxed);
    // SAFETY: the frames were just taken from the pool and are used for
    // nothing else; the physical window maps them.
    unsafe {
        HEAP.lock()
            .init(super::phys::ptr::<u8>(start), HEAP_SIZE as usize);
    }
    Ok(())
}
