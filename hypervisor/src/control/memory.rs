//! The control domain's RAM as the rest of the hypervisor sees it: the list
//! of its 2 MiB chunks, fixed once it is built. KVM memory slots point into
//! it (`userspace_addr` is a control-domain guest-physical address, D3), so
//! a VM's RAM resolves through here to host frames.

use crate::mm::HostPhys;
use crate::mm::paging::PageSize;
use alloc::vec::Vec;

const CHUNK: u64 = PageSize::Size2M.bytes();

struct Memory {
    chunks: Vec<HostPhys>,
    /// Bytes at the top the control domain may not hand to VMs (its boot
    /// area: page tables, GDT, boot-info page).
    usable: u64,
}

static MEMORY: spin::Once<Memory> = spin::Once::new();

/// Records the control domain's chunks (once, at boot). `usable` bytes from
/// GPA 0 may back VM memory.
pub fn init(chunks: &[HostPhys], usable: u64) -> bool {
    let mut v = Vec::new();
    if v.try_reserve_exact(chunks.len()).is_err() {
        return false;
    }
    v.extend_from_slice(chunks);
    MEMORY.call_once(|| Memory { chunks: v, usable });
    true
}

/// The host address of control-domain GPA `cd_gpa` and how many bytes are
/// contiguous from there, if it is RAM a VM may use.
pub fn host_run(cd_gpa: u64) -> Option<(HostPhys, u64)> {
    let m = MEMORY.get()?;
    if cd_gpa >= m.usable {
        return None;
    }
    // A guest chooses `cd_gpa` (through its slot): Spectre v1.
    let chunk = crate::arch::spec::get_nospec(&m.chunks, usize::try_from(cd_gpa / CHUNK).ok()?)?;
    let off = cd_gpa % CHUNK;
    Some((
        HostPhys::new(chunk.raw() + off),
        (CHUNK - off).min(m.usable - cd_gpa),
    ))
}

/// Whether all of `cd_gpa .. cd_gpa + len` may back VM memory.
pub fn usable(cd_gpa: u64, len: u64) -> bool {
    MEMORY
        .get()
        .is_some_and(|m| cd_gpa.checked_add(len).is_some_and(|end| end <= m.usable))
}
