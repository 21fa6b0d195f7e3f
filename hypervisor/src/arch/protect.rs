//! Host-mode protections the CPU offers, turned on at boot: SMEP (no
//! instruction fetch from user pages in supervisor mode) and SMAP (no data
//! access to user pages in supervisor mode without EFLAGS.AC), SDM Vol. 3A
//! 5.6 "Access Rights", AMD APM Vol. 2 5.6. The hypervisor maps nothing
//! user-accessible for itself, so these only turn a mistake — a stray
//! pointer into memory a lower privilege controls — into a fault.

use super::instr::{cpuid, read_cr4, write_cr4};

/// CPUID.(EAX=7, ECX=0):EBX.
const CPUID7_EBX_SMEP: u32 = 1 << 7;
const CPUID7_EBX_SMAP: u32 = 1 << 20;
/// CR4 bits (SDM Vol. 3A 2.5).
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;

/// What [`enable`] turned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protections {
    pub smep: bool,
    pub smap: bool,
}

/// Turns on SMEP and SMAP where the CPU has them.
pub fn enable() -> Protections {
    let ebx = if cpuid(0, 0)[0] >= 7 {
        cpuid(7, 0)[1]
    } else {
        0
    };
    let p = Protections {
        smep: ebx & CPUID7_EBX_SMEP != 0,
        smap: ebx & CPUID7_EBX_SMAP != 0,
    };
    let bits = if p.smep { CR4_SMEP } else { 0 } | if p.smap { CR4_SMAP } else { 0 };
    if bits != 0 {
        // SAFETY: the CPU supports both bits (CPUID above); the
        // hypervisor's mappings (the bootloader's kernel, stack and
        // physical-memory window) are all supervisor pages, so nothing it
        // does fetches from or touches a user page.
        unsafe { write_cr4(read_cr4() | bits) };
    }
    p
}
