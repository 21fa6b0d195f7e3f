//! Reading and writing the guest's memory by linear address, through its own
//! page tables, for the instructions the hypervisor completes itself (the
//! memory operand of INS/OUTS). A range may cross pages; each page is
//! translated on its own, with the rights of the access (SDM Vol. 3A 4.6).
//! The walker does not set accessed/dirty bits in the guest's tables.

use super::CR0_WP;
use crate::guest::walk::{self, Access, Paging, WalkError};
use crate::mm::GuestVirt;
use crate::virt::GuestCpu;
use crate::vm::VmEnv;

/// Why a copy failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearError {
    /// The guest takes #PF with this error code; CR2 = `addr`.
    PageFault { addr: u64, code: u32 },
    /// A non-canonical address under 4-level paging: the guest takes
    /// #GP(0), as the instruction itself would have (SDM Vol. 3A 3.3.7.1).
    /// An access through an `SS:` override (OUTS, the MOVS source) would
    /// get #SS(0) on hardware; it gets #GP(0) here (docs/api.md §8).
    NonCanonical,
    /// The address is not guest RAM (or a paging structure is not).
    NotRam,
}

/// Whether `addr` is canonical for `paging`: under 4-level paging bits
/// 63:47 must all equal bit 47; the other modes' addresses are 32 bits.
fn canonical(paging: Paging, addr: u64) -> bool {
    paging != Paging::Level4 || ((addr as i64) << 16 >> 16) as u64 == addr
}

fn access<C: GuestCpu>(cpu: &C, write: bool) -> Access {
    Access {
        write,
        user: cpu.cpl() == 3,
        fetch: false,
    }
}

/// Calls `each(gpa, range)` for every page piece of `[linear, linear+len)`,
/// translated for `write` or read; stops at the first failure.
fn pieces<C: GuestCpu>(
    cpu: &C,
    env: &VmEnv,
    linear: u64,
    len: usize,
    write: bool,
    mut each: impl FnMut(crate::mm::GuestPhys, core::ops::Range<usize>) -> bool,
) -> Result<(), LinearError> {
    let (cr0, efer) = (cpu.cr0(), cpu.efer());
    let paging = Paging::from_state(cr0, cpu.cr4(), efer);
    let nxe = efer & crate::arch::msr::efer::NXE != 0;
    let wp = cr0 & CR0_WP != 0;
    // Both ends, before any walk: #GP outranks #PF (SDM Vol. 3A 6.9), and
    // the two canonical halves are each contiguous.
    let last = linear.wrapping_add(len.saturating_sub(1) as u64);
    if !canonical(paging, linear) || !canonical(paging, last) {
        return Err(LinearError::NonCanonical);
    }
    let mut done = 0;
    while done < len {
        let addr = linear.wrapping_add(done as u64);
        let la = GuestVirt::new(addr);
        let gpa =
            match walk::translate(&env.ram, paging, cpu.cr3(), la, access(cpu, write), nxe, wp) {
                Ok(gpa) => gpa,
                Err(WalkError::PageFault(code)) => {
                    return Err(LinearError::PageFault { addr, code });
                }
                Err(WalkError::NotRam(_)) => return Err(LinearError::NotRam),
            };
        let n = (4096 - la.page_offset() as usize).min(len - done);
        if !each(gpa, done..done + n) {
            return Err(LinearError::NotRam);
        }
        done += n;
    }
    Ok(())
}

/// The guest-physical address a write to `linear` goes to (RAM or not).
pub fn translate_write<C: GuestCpu>(cpu: &C, env: &VmEnv, linear: u64) -> Result<u64, LinearError> {
    let (cr0, efer) = (cpu.cr0(), cpu.efer());
    let paging = Paging::from_state(cr0, cpu.cr4(), efer);
    let nxe = efer & crate::arch::msr::efer::NXE != 0;
    let wp = cr0 & CR0_WP != 0;
    if !canonical(paging, linear) {
        return Err(LinearError::NonCanonical);
    }
    let la = GuestVirt::new(linear);
    match walk::translate(&env.ram, paging, cpu.cr3(), la, access(cpu, true), nxe, wp) {
        Ok(gpa) => Ok(gpa.raw()),
        Err(WalkError::PageFault(code)) => Err(LinearError::PageFault { addr: linear, code }),
        Err(WalkError::NotRam(_)) => Err(LinearError::NotRam),
    }
}

/// Checks that the guest could write `[linear, linear+len)` (RAM outside
/// read-only slots) without
/// copying anything (INS checks before the VMM reads the port).
pub fn check_write<C: GuestCpu>(
    cpu: &C,
    env: &VmEnv,
    linear: u64,
    len: usize,
) -> Result<(), LinearError> {
    pieces(cpu, env, linear, len, true, |gpa, r| {
        env.ram.writable(gpa, r.len() as u64)
    })
}

/// Checks that the guest could write `[linear, linear+len)` as far as its
/// page tables go and that it is RAM, read-only slots included (INS: the
/// port is read first; data for a read-only page is then dropped).
pub fn check_write_ram<C: GuestCpu>(
    cpu: &C,
    env: &VmEnv,
    linear: u64,
    len: usize,
) -> Result<(), LinearError> {
    pieces(cpu, env, linear, len, true, |gpa, r| {
        env.ram.covers(gpa, r.len() as u64)
    })
}

/// Reads `out.len()` bytes at `linear`.
pub fn read<C: GuestCpu>(
    cpu: &C,
    env: &VmEnv,
    linear: u64,
    out: &mut [u8],
) -> Result<(), LinearError> {
    let len = out.len();
    pieces(cpu, env, linear, len, false, |gpa, r| {
        env.ram.read(gpa, &mut out[r])
    })
}

/// Writes `data` at `linear`.
pub fn write<C: GuestCpu>(
    cpu: &C,
    env: &mut VmEnv,
    linear: u64,
    data: &[u8],
) -> Result<(), LinearError> {
    // Translate everything first so a fault writes nothing.
    check_write(cpu, env, linear, data.len())?;
    let mut gpas = [(crate::mm::GuestPhys::new(0), 0, 0); 2];
    let mut k = 0;
    pieces(cpu, env, linear, data.len(), true, |gpa, r| {
        // `data` is at most a page long: two pieces at most.
        let Some(slot) = gpas.get_mut(k) else {
            return false;
        };
        *slot = (gpa, r.start, r.end);
        k += 1;
        true
    })?;
    for &(gpa, from, to) in &gpas[..k] {
        if !env.ram.write(gpa, &data[from..to]) {
            return Err(LinearError::NotRam);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_addresses_under_4_level_paging() {
        for a in [0, 0x7fff_ffff_ffff, 0xffff_8000_0000_0000, u64::MAX] {
            assert!(canonical(Paging::Level4, a), "{a:#x}");
        }
        for a in [
            0x8000_0000_0000,
            0x8000_0000_0000_0000,
            0x0001_0000_0000_0000,
        ] {
            assert!(!canonical(Paging::Level4, a), "{a:#x}");
            assert!(canonical(Paging::Pae, a), "no such check outside long mode");
        }
    }
}
