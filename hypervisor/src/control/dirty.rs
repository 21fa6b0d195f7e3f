//! Dirty logging (`KVM_MEM_LOG_DIRTY_PAGES`, `KVM_GET_DIRTY_LOG`) by write
//! protection, which every EPT and NPT can do: a logging slot is mapped
//! with 4 KiB pages and without write; the first write to a page faults to
//! the hypervisor, which marks the page dirty and opens it for writing, and
//! the guest goes on without an exit. `KVM_GET_DIRTY_LOG` hands out the
//! bitmap, clears it, and closes the pages that were dirty again, so the
//! next log has exactly the pages written since. Pages the hypervisor
//! writes for the guest (INS data, MOVS to RAM) are marked in
//! `GuestRam::write`.

use super::objects::{KvmVcpu, KvmVm, MAX_MEMSLOTS};
use crate::guest::GuestRam;
use crate::mm::GuestPhys;
use crate::mm::paging::{PageSize, Perms, Table};
use crate::virt::{Backend, Frames};
use crate::vm::VmEnv;
use abi::kvm::errno::{EFAULT, EINVAL, ENOENT};
use abi::kvm::kvm_dirty_log;

const PAGE: u64 = 4096;

/// A write fault at `gpa`: if it hit a page of a slot that logs dirty
/// pages, marks the page dirty, opens it for writing, and returns true (the
/// guest retries the write).
pub fn write_fault<B: Backend>(
    backend: &mut B,
    frames: &spin::Mutex<Frames>,
    env: &mut VmEnv,
    nested: &mut Table<B::Nested>,
    vc: &mut KvmVcpu<B>,
    gpa: u64,
) -> bool {
    let Some(slot) = env.ram.slot_of(gpa) else {
        return false;
    };
    if !slot.logs_dirty() || slot.readonly() {
        return false;
    }
    let page = gpa & !(PAGE - 1);
    if !nested.protect(
        &mut *frames.lock(),
        GuestPhys::new(page),
        PageSize::Size4K,
        Perms::RWX,
    ) {
        return false;
    }
    env.ram.mark_dirty(page);
    backend.flush_nested(&mut vc.cpu);
    true
}

/// `KVM_GET_DIRTY_LOG`: copies slot `log.slot`'s bitmap to the control
/// domain's buffer at `log.dirty_bitmap` (one bit per page, 64-bit words,
/// `ceil(pages / 64) * 8` bytes), clears it, and write-protects the pages
/// that were dirty again.
pub fn get_log<B: Backend>(
    backend: &mut B,
    frames: &mut Frames,
    vm: &mut KvmVm<B>,
    cd: &mut GuestRam,
    log: &kvm_dirty_log,
) -> Result<u64, i32> {
    if log.slot >= MAX_MEMSLOTS {
        return Err(EINVAL);
    }
    let slot = *vm
        .env
        .ram
        .slots()
        .iter()
        .find(|s| s.slot == log.slot)
        .ok_or(ENOENT)?;
    let map = vm.env.ram.dirty_map(log.slot).ok_or(ENOENT)?;
    let bytes = map.bits.len() as u64 * 8;
    if !cd.covers(GuestPhys::new(log.dirty_bitmap), bytes) {
        return Err(EFAULT);
    }
    for (i, w) in map.bits.iter().enumerate() {
        if !cd.write(
            GuestPhys::new(log.dirty_bitmap + i as u64 * 8),
            &w.to_le_bytes(),
        ) {
            return Err(EFAULT);
        }
    }
    let mut any = false;
    for (i, w) in map.bits.iter_mut().enumerate() {
        let mut bits = core::mem::take(w);
        while bits != 0 {
            let page = i as u64 * 64 + u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            let gpa = GuestPhys::new(slot.gpa + page * PAGE);
            any |= vm.nested.protect(frames, gpa, PageSize::Size4K, Perms::RX);
        }
    }
    if any {
        for vc in vm.vcpus.iter_mut().flatten() {
            backend.flush_nested(&mut vc.cpu);
        }
    }
    Ok(0)
}
