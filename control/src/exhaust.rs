//! The hypervisor's metadata pool running out (DESIGN.md D3, D7): run at
//! boot, after the bad-request checks.
//!
//! With `MOJITO_METADATA_POOL`'s limit, each request that takes frames
//! (making a VM, a vCPU, a memory slot's nested page tables) is tried with
//! 0, 1, 2 … frames available until it succeeds. Every failure must be
//! `-ENOMEM` with the pool exactly as it was (nothing half-made), and
//! trying again must then succeed with the same arguments (so the failed
//! try left no object behind: a vCPU or slot it had made would now be
//! refused). At the end the limit is lifted, the VM closed, and every frame
//! must be back. One line says what each request cost:
//!
//! ```text
//! control: metadata pool: KVM_CREATE_VM 1 frames, KVM_CREATE_VCPU 6, ... (21 checks)
//! ```

use abi::kvm::errno::{EINVAL, ENOMEM, ENOTTY};
use abi::kvm::kvm_userspace_memory_region;
use abi::kvm::mojito::{
    MOJITO_CLOSE, MOJITO_METADATA_POOL, MOJITO_POOL_SET_LIMIT, mojito_metadata_pool,
};
use abi::kvm::{KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION};
use alloc::string::String;
use core::fmt::Write;

use crate::hv;
use crate::println;

/// No request here should need more frames than this.
const MAX_COST: u64 = 64;

/// Guest-physical addresses 8 TiB apart have no page table in common but
/// the root.
const REGION: u64 = 8 << 40;

/// Reads the pool, setting the limit first if `limit` is given.
fn pool(limit: Option<u64>) -> Result<mojito_metadata_pool, i32> {
    let mut p = mojito_metadata_pool {
        flags: if limit.is_some() {
            MOJITO_POOL_SET_LIMIT
        } else {
            0
        },
        limit: limit.unwrap_or(0),
        ..Default::default()
    };
    hv::system(MOJITO_METADATA_POOL, &mut p as *mut _ as u64)?;
    Ok(p)
}

struct Checks {
    run: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, ok: bool, what: core::fmt::Arguments<'_>) {
        self.run += 1;
        if !ok {
            self.failed += 1;
            println!("control: FAIL metadata pool: {what}");
        }
    }

    /// Tries `attempt` with 0, 1, … frames available until it succeeds;
    /// returns the frames it took (negative: it freed more than it took)
    /// and its value.
    fn sweep(
        &mut self,
        what: &str,
        mut attempt: impl FnMut() -> Result<u64, i32>,
    ) -> Option<(i64, u64)> {
        for n in 0..=MAX_COST {
            let Ok(before) = pool(Some(n)) else {
                self.check(false, format_args!("{what}: cannot set the limit"));
                return None;
            };
            let got = attempt();
            let Ok(after) = pool(None) else {
                self.check(false, format_args!("{what}: cannot read the pool"));
                return None;
            };
            match got {
                Ok(v) => {
                    let cost = before.free as i64 - after.free as i64;
                    self.check(
                        cost <= n as i64,
                        format_args!("{what} took {cost} frames with {n} available"),
                    );
                    return Some((cost, v));
                }
                Err(ENOMEM) => self.check(
                    after.free == before.free,
                    format_args!(
                        "{what} with {n} frames available: -ENOMEM but the pool went from {} to \
                         {} free frames (half-made)",
                        before.free, after.free
                    ),
                ),
                Err(e) => {
                    self.check(
                        false,
                        format_args!("{what} with {n} frames available: -{e}, not -ENOMEM"),
                    );
                    return None;
                }
            }
        }
        self.check(
            false,
            format_args!("{what}: still -ENOMEM with {MAX_COST} frames"),
        );
        None
    }
}

fn set_memory(vm: u64, r: &kvm_userspace_memory_region) -> Result<u64, i32> {
    hv::call(KVM_SET_USER_MEMORY_REGION, vm, r as *const _ as u64)
}

/// Runs the sweep; `scratch` is 2 MiB of free, 2 MiB-aligned RAM of ours
/// followed by more of our RAM (slots alias it; their VM never runs).
pub fn run(scratch: u64) {
    let mut c = Checks { run: 0, failed: 0 };
    let Ok(start) = pool(None) else {
        println!("control: FAIL metadata pool: MOJITO_METADATA_POOL failed");
        return;
    };
    // Its own bad input.
    let mut bad = mojito_metadata_pool {
        flags: 2,
        ..Default::default()
    };
    let got = hv::system(MOJITO_METADATA_POOL, &mut bad as *mut _ as u64);
    c.check(got == Err(EINVAL), format_args!("unknown flag: {got:?}"));
    bad = mojito_metadata_pool {
        padding: [0, 1, 0],
        ..Default::default()
    };
    let got = hv::system(MOJITO_METADATA_POOL, &mut bad as *mut _ as u64);
    c.check(
        got == Err(EINVAL),
        format_args!("padding not zero: {got:?}"),
    );

    let mut costs = String::new();
    let mut note = |what: &str, cost: i64| {
        let _ = write!(
            costs,
            "{}{what} {cost}",
            if costs.is_empty() { "" } else { ", " }
        );
    };
    let vm = c.sweep("KVM_CREATE_VM", || hv::system(KVM_CREATE_VM, 0));
    if let Some((cost, vm)) = vm {
        note("KVM_CREATE_VM", cost);
        let got = hv::call(MOJITO_METADATA_POOL, vm, 0);
        c.check(got == Err(ENOTTY), format_args!("on a VM handle: {got:?}"));
        if let Some((cost, _)) = c.sweep("KVM_CREATE_VCPU", || hv::call(KVM_CREATE_VCPU, vm, 0)) {
            note("KVM_CREATE_VCPU", cost);
        }
        // One page in a region of its own: a PDPT, a PD and a PT.
        let page = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: REGION,
            memory_size: 4096,
            userspace_addr: scratch,
        };
        if let Some((cost, _)) = c.sweep("a 4 KiB slot", || set_memory(vm, &page)) {
            note("a 4 KiB slot in a new 512 GiB region", cost);
        }
        // 4 MiB of 4 KiB pages (the host side is not 2 MiB-aligned): two
        // PTs, so a failure can come after 512 pages are mapped.
        let big = kvm_userspace_memory_region {
            slot: 1,
            flags: 0,
            guest_phys_addr: 2 * REGION,
            memory_size: 4 << 20,
            userspace_addr: scratch + 4096,
        };
        if let Some((cost, _)) = c.sweep("a 4 MiB slot", || set_memory(vm, &big)) {
            note("a 4 MiB slot of 4 KiB pages", cost);
        }
        // Moving it, logging it, to a place across a 1 GiB boundary in a
        // new region: its 4 old tables are freed first, the new place needs
        // 5 (a PDPT, two PDs, two PTs), so with none to spare the move
        // fails and must put the old mapping back.
        let moved = kvm_userspace_memory_region {
            flags: abi::kvm::KVM_MEM_LOG_DIRTY_PAGES,
            guest_phys_addr: 3 * REGION + (1 << 30) - (2 << 20),
            ..big
        };
        if let Some((cost, _)) = c.sweep("moving it", || set_memory(vm, &moved)) {
            note("moving it and turning on dirty logging", cost);
        }
        let big = moved;
        // Deleting the slots gives their tables back at once.
        let in_use = pool(Some(u64::MAX)).map(|p| p.free);
        for r in [&page, &big] {
            let gone = kvm_userspace_memory_region {
                memory_size: 0,
                ..*r
            };
            let got = set_memory(vm, &gone);
            c.check(
                got == Ok(0),
                format_args!("deleting slot {}: {got:?}", r.slot),
            );
        }
        let freed = pool(None).map(|p| p.free);
        c.check(
            matches!((in_use, freed), (Ok(a), Ok(b)) if b > a),
            format_args!("deleting the slots freed no tables ({in_use:?} -> {freed:?})"),
        );
        let got = hv::call(MOJITO_CLOSE, vm, 0);
        c.check(got == Ok(0), format_args!("closing the VM: {got:?}"));
    }
    let end = pool(Some(u64::MAX));
    c.check(
        end.is_ok_and(|e| e.free == start.free && e.available == e.free),
        format_args!(
            "after closing: {:?} free frames, {} at the start",
            end.map(|e| e.free),
            start.free
        ),
    );
    if c.failed == 0 {
        println!(
            "control: metadata pool: {costs} frames; each with fewer: -ENOMEM, nothing half-made \
             ({} checks; {} of {} frames free)",
            c.run, start.free, start.total
        );
    }
}
