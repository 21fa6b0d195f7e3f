//! Memory: typed addresses, the physical-memory window, the frame allocator
//! (the hypervisor pool every VM's metadata comes from) and the heap.

pub mod addr;
pub mod audit;
pub mod frame;
#[cfg(target_os = "none")]
pub mod heap;
pub mod paging;
pub mod phys;

pub use addr::{GuestPhys, GuestVirt, HostPhys, HostVirt, PAGE_SIZE};
