//! The physical-memory window: the bootloader maps all physical memory at
//! one offset in the hypervisor's address space (`BootInfo::
//! physical_memory_offset`); this module turns host-physical addresses into
//! pointers through it.

use super::addr::{HostPhys, HostVirt};
use core::sync::atomic::{AtomicU64, Ordering};

static OFFSET: AtomicU64 = AtomicU64::new(0);

/// Records where the bootloader mapped physical memory. Called once at boot.
pub fn init(offset: u64) {
    OFFSET.store(offset, Ordering::Relaxed);
}

/// The hypervisor-virtual address through which `pa` is reached.
pub fn to_virt(pa: HostPhys) -> HostVirt {
    HostVirt::new(pa.raw().wrapping_add(OFFSET.load(Ordering::Relaxed)))
}

/// A pointer to `pa` in the physical-memory window.
pub fn ptr<T>(pa: HostPhys) -> *mut T {
    to_virt(pa).raw() as *mut T
}

/// Fills the 4 KiB frame at `pa` with zeroes.
///
/// # Safety
/// `pa` must be a frame the caller owns (from the frame allocator).
pub unsafe fn zero_frame(pa: HostPhys) {
    // SAFETY: the caller owns the frame; the window maps all of RAM.
    unsafe { core::ptr::write_bytes(ptr::<u8>(pa), 0, 4096) }
}
