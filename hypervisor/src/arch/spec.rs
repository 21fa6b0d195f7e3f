//! Speculative-execution mitigations on the world switch.
//!
//! What a guest could otherwise do, and what Mojito does about it:
//! - **Return stack buffer** (SpectreRSB, "RSB underflow"): a guest leaves
//!   return predictions pointing at addresses it chose; the hypervisor's
//!   first `ret`s after the exit could be steered there speculatively.
//!   Every VM exit refills the RSB with 32 harmless entries (calls whose
//!   speculative return lands in a `pause; lfence` trap) before the exit
//!   stub's first `ret`, on both vendors, always. KVM does the same
//!   (`FILL_RETURN_BUFFER` on VM exit).
//! - **Indirect branch predictions shared between guests** (Spectre v2):
//!   when a CPU enters a different VM than the last guest it ran, an IBPB
//!   (IA32_PRED_CMD bit 0) empties the indirect branch predictors, where
//!   the CPU offers it (Intel CPUID.(7,0):EDX[26]; AMD CPUID
//!   8000_0008h:EBX[12]). The control domain is trusted (it is the VMM,
//!   like KVM's host) and does not count as a switch.
//! - **CPU buffers** (MDS, TAA; Intel only): VERW with a writable data
//!   selector before every VM entry clears the store, fill and load
//!   buffers on CPUs with the MD_CLEAR microcode, unless
//!   IA32_ARCH_CAPABILITIES says MDS_NO and, where TSX (RTM) is there,
//!   TAA_NO. On a CPU without the microcode it is a plain VERW, which is
//!   what Linux does too.
//! - **L1 data cache** (L1TF, Intel only): with L1D_FLUSH
//!   (CPUID.(7,0):EDX[28]) and neither RDCL_NO nor SKIP_L1DFL_VMENTRY in
//!   IA32_ARCH_CAPABILITIES, IA32_FLUSH_CMD bit 0 flushes the L1D before a
//!   CPU enters a guest after anything else ran there: at every `KVM_RUN`
//!   (the control domain, which holds every guest's RAM, ran before it)
//!   and when the hypervisor's own round robin switches VMs. Not between
//!   two exits of one RUN (the hypervisor's own data is not flushed then;
//!   KVM's "conditional" mode flushes after a few more kinds of exit).
//!
//! - **Bounds-check bypass** (Spectre v1): where a guest chooses an index
//!   into a table whose entry is then used as an address or reveals memory
//!   (a guest-physical address → the control domain's chunk list or a
//!   VM's frame list, → a slot's dirty bitmap; an MSR number → the MSR
//!   filter's bitmap), the lookup goes through [`get_nospec`]: after the
//!   bounds check, the index is ANDed with a mask computed without a branch
//!   (`cmp; sbb`, as Linux's `array_index_nospec`), so a mispredicted check
//!   reads entry 0, not memory past the table. Tables indexed by values
//!   that cannot exceed them (a byte of opcode into 256 entries, a port
//!   into the 8 KiB bitmap, a register number into 16 GPRs) need none.
//!
//! Not done: IBRS/eIBRS/STIBP in host mode and the guest's IA32_SPEC_CTRL
//! (guests get #GP on it, and CPUID does not offer it), SSBD, and
//! SRSO/Retbleed's return thunks. The cost of what is done is measured by
//! `cargo xtask bench` (docs/security.md).

use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering};

/// The entry stubs' RSB refill, right after a VM exit and before the
/// stub's first `ret`: 32 calls (16 rounds of two), each return address a
/// `pause; lfence` trap no architectural path reaches, then the stack
/// pointer put back and an LFENCE. Clobbers RCX and the flags.
macro_rules! rsb_fill {
    () => {
        concat!(
            "mov ecx, 16\n",
            "670:\n",
            "call 671f\n",
            "672: pause\n",
            "lfence\n",
            "jmp 672b\n",
            "671: call 673f\n",
            "674: pause\n",
            "lfence\n",
            "jmp 674b\n",
            "673: dec ecx\n",
            "jnz 670b\n",
            "add rsp, 256\n",
            // A mispredicted early end of the loop stops here.
            "lfence\n",
        )
    };
}
pub(crate) use rsb_fill;

/// The entry stubs' VERW before VM entry, when `MOJITO_VERW` says so (the
/// operands `verw` and `verw_sel` name the two statics). Clobbers the
/// flags only.
macro_rules! verw_if_armed {
    () => {
        concat!(
            "cmp byte ptr [rip + {verw}], 0\n",
            "je 680f\n",
            "verw word ptr [rip + {verw_sel}]\n",
            "680:\n",
        )
    };
}
pub(crate) use verw_if_armed;

/// IA32_PRED_CMD (SDM Vol. 4 Table 2-2): bit 0 IBPB.
pub const IA32_PRED_CMD: u32 = 0x49;
const PRED_CMD_IBPB: u64 = 1 << 0;
/// IA32_FLUSH_CMD: bit 0 L1D_FLUSH.
pub const IA32_FLUSH_CMD: u32 = 0x10b;
const FLUSH_CMD_L1D: u64 = 1 << 0;
/// IA32_ARCH_CAPABILITIES and its bits: RDCL_NO (0), SKIP_L1DFL_VMENTRY
/// (3), MDS_NO (5), TAA_NO (8).
pub const IA32_ARCH_CAPABILITIES: u32 = 0x10a;
const ARCH_CAP_RDCL_NO: u64 = 1 << 0;
const ARCH_CAP_SKIP_L1DFL_VMENTRY: u64 = 1 << 3;
const ARCH_CAP_MDS_NO: u64 = 1 << 5;
const ARCH_CAP_TAA_NO: u64 = 1 << 8;
/// CPUID.(7,0):EBX bit 11: RTM (TSX), which TAA needs.
const L7_EBX_RTM: u32 = 1 << 11;
/// CPUID.(7,0):EDX bits: MD_CLEAR (10), IBRS/IBPB (26), L1D_FLUSH (28),
/// ARCH_CAPABILITIES (29).
const L7_EDX_MD_CLEAR: u32 = 1 << 10;
const L7_EDX_IBPB: u32 = 1 << 26;
const L7_EDX_L1D_FLUSH: u32 = 1 << 28;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const L7_EDX_ARCH_CAPABILITIES: u32 = 1 << 29;
/// CPUID 8000_0008h:EBX bit 12: IBPB (AMD APM Vol. 3 E.4.7).
const X8_EBX_IBPB: u32 = 1 << 12;

/// What the CPU says about itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBits {
    pub intel: bool,
    pub leaf7_ebx: u32,
    pub leaf7_edx: u32,
    pub ext8_ebx: u32,
    /// IA32_ARCH_CAPABILITIES, where CPUID offers it.
    pub arch_caps: Option<u64>,
}

/// The mitigations in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mitigations {
    /// IBPB when a CPU enters a different VM.
    pub ibpb: bool,
    /// VERW before every VM entry.
    pub verw: bool,
    /// L1D flush when a CPU enters a different VM.
    pub l1d_flush: bool,
    /// VERW runs, but the CPU does not say it clears buffers (no MD_CLEAR).
    pub verw_without_md_clear: bool,
}

impl Mitigations {
    /// The choice for a CPU (pure: tested on the host).
    pub fn choose(c: &CpuBits) -> Self {
        let caps = c.arch_caps.unwrap_or(0);
        let ibpb = if c.intel {
            c.leaf7_edx & L7_EDX_IBPB != 0
        } else {
            c.ext8_ebx & X8_EBX_IBPB != 0
        };
        // MDS, or TAA where TSX is there (a CPU that says MDS_NO may still
        // be open to TAA: Linux's rule).
        let mds = caps & ARCH_CAP_MDS_NO == 0;
        let taa = c.leaf7_ebx & L7_EBX_RTM != 0 && caps & ARCH_CAP_TAA_NO == 0;
        let verw = c.intel && (mds || taa);
        let l1d_flush = c.intel
            && c.leaf7_edx & L7_EDX_L1D_FLUSH != 0
            && caps & (ARCH_CAP_RDCL_NO | ARCH_CAP_SKIP_L1DFL_VMENTRY) == 0;
        Self {
            ibpb,
            verw,
            l1d_flush,
            verw_without_md_clear: verw && c.leaf7_edx & L7_EDX_MD_CLEAR == 0,
        }
    }
}

/// Read by the entry stubs (`svm/entry.rs`, `vmx/entry.rs`): 1 to VERW
/// before entry.
#[unsafe(no_mangle)]
pub static MOJITO_VERW: AtomicU8 = AtomicU8::new(0);
/// The selector the stubs' VERW names: the host's writable data segment.
#[unsafe(no_mangle)]
pub static MOJITO_VERW_SELECTOR: AtomicU16 = AtomicU16::new(0);

static CHOSEN: spin::Once<Mitigations> = spin::Once::new();
/// The last guest VM each CPU entered (`arch::percpu::index`).
static LAST_GUEST: [AtomicU64; super::percpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; super::percpu::MAX_CPUS];
/// The next VM identity for `new_vm_id` (never reused, unlike VM handles).
static NEXT_VM: AtomicU64 = AtomicU64::new(1);

/// All ones if `index < len`, else 0, computed without a branch the CPU
/// could mispredict (`cmp; sbb`: the carry is the comparison's result).
#[inline(always)]
fn index_mask(index: usize, len: usize) -> usize {
    let mask: usize;
    // SAFETY: arithmetic on registers only.
    unsafe {
        core::arch::asm!(
            "cmp {i}, {n}",
            "sbb {m}, {m}",
            i = in(reg) index,
            n = in(reg) len,
            m = out(reg) mask,
            options(pure, nomem, nostack),
        );
    }
    mask
}

/// `table.get(index)`, but even under a mispredicted bounds check the CPU
/// reads no entry past the table: the index it speculates with is 0.
#[inline(always)]
pub fn get_nospec<T>(table: &[T], index: usize) -> Option<&T> {
    if index >= table.len() {
        return None;
    }
    table.get(index & index_mask(index, table.len()))
}

/// `offset` (already checked to be below `size`) as the CPU will use it
/// even under a mispredicted check: 0 then, never past `size`.
#[inline(always)]
pub fn offset_nospec(offset: u64, size: u64) -> u64 {
    offset & index_mask(offset as usize, size as usize) as u64
}

/// [`get_nospec`] for a mutable table.
#[inline(always)]
pub fn get_mut_nospec<T>(table: &mut [T], index: usize) -> Option<&mut T> {
    if index >= table.len() {
        return None;
    }
    let i = index & index_mask(index, table.len());
    table.get_mut(i)
}

/// An identity for a new VM that no other VM ever had.
pub fn new_vm_id() -> u64 {
    NEXT_VM.fetch_add(1, Ordering::Relaxed)
}

/// Reads the CPU's bits, chooses and arms the mitigations, and returns
/// them (for the boot log).
#[cfg(target_os = "none")]
pub fn init() -> Mitigations {
    let cpuid = raw_cpuid::CpuId::new();
    let intel = cpuid
        .get_vendor_info()
        .is_some_and(|v| v.as_str() == "GenuineIntel");
    use raw_cpuid::native_cpuid::cpuid_count;
    let (leaf7_ebx, leaf7_edx) = if cpuid_count(0, 0).eax >= 7 {
        let r = cpuid_count(7, 0);
        (r.ebx, r.edx)
    } else {
        (0, 0)
    };
    let ext8_ebx = if cpuid_count(0x8000_0000, 0).eax >= 0x8000_0008 {
        cpuid_count(0x8000_0008, 0).ebx
    } else {
        0
    };
    let arch_caps = (leaf7_edx & L7_EDX_ARCH_CAPABILITIES != 0)
        // SAFETY: CPUID says the MSR exists.
        .then(|| unsafe { super::instr::rdmsr(IA32_ARCH_CAPABILITIES) });
    let m = Mitigations::choose(&CpuBits {
        intel,
        leaf7_ebx,
        leaf7_edx,
        ext8_ebx,
        arch_caps,
    });
    if let Some(sel) = super::gdt::selectors() {
        MOJITO_VERW_SELECTOR.store(sel.data.0, Ordering::Relaxed);
    }
    MOJITO_VERW.store(u8::from(m.verw), Ordering::Relaxed);
    *CHOSEN.call_once(|| m)
}

/// Before entering guest VM `vm` (a `new_vm_id`) after something else ran
/// on this CPU (the control domain, whose memory holds every guest's
/// RAM, or another VM): the L1D flush, and IBPB if the last guest VM this
/// CPU ran was another one. Not for the control domain; not between two
/// exits of one RUN.
pub fn entering(vm: u64) {
    let other_vm = LAST_GUEST[super::percpu::index()].swap(vm, Ordering::Relaxed) != vm;
    let Some(m) = CHOSEN.get() else { return };
    #[cfg(target_os = "none")]
    // SAFETY: both MSRs exist where `choose` turned their use on; each
    // write only empties a predictor or a cache.
    unsafe {
        if m.ibpb && other_vm {
            super::instr::wrmsr(IA32_PRED_CMD, PRED_CMD_IBPB);
        }
        if m.l1d_flush {
            super::instr::wrmsr(IA32_FLUSH_CMD, FLUSH_CMD_L1D);
        }
    }
    #[cfg(not(target_os = "none"))]
    let _ = (m, other_vm, PRED_CMD_IBPB, FLUSH_CMD_L1D);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_masks() {
        assert_eq!(index_mask(0, 1), usize::MAX);
        assert_eq!(index_mask(4, 5), usize::MAX);
        assert_eq!(index_mask(5, 5), 0);
        assert_eq!(index_mask(usize::MAX, 5), 0);
        assert_eq!(index_mask(0, 0), 0);
        let t = [10, 20, 30];
        assert_eq!(get_nospec(&t, 2), Some(&30));
        assert_eq!(get_nospec(&t, 3), None);
        assert_eq!(get_nospec(&t, usize::MAX), None);
        let mut m = [1u8; 2];
        *get_mut_nospec(&mut m, 1).unwrap() = 7;
        assert_eq!(m, [1, 7]);
        assert!(get_mut_nospec(&mut m, 2).is_none());
        assert_eq!(offset_nospec(4095, 4096), 4095);
        assert_eq!(offset_nospec(4096, 4096), 0);
    }

    #[test]
    fn choices_follow_the_cpu() {
        // An AMD CPU: no MDS or L1TF; IBPB where 8000_0008h offers it.
        let amd = CpuBits {
            intel: false,
            leaf7_ebx: L7_EBX_RTM,
            leaf7_edx: L7_EDX_IBPB | L7_EDX_L1D_FLUSH,
            ext8_ebx: X8_EBX_IBPB,
            arch_caps: None,
        };
        let m = Mitigations::choose(&amd);
        assert!(m.ibpb && !m.verw && !m.l1d_flush);
        // An old Intel CPU without ARCH_CAPABILITIES: everything.
        let old = CpuBits {
            intel: true,
            leaf7_edx: L7_EDX_IBPB | L7_EDX_L1D_FLUSH | L7_EDX_MD_CLEAR,
            ..Default::default()
        };
        let m = Mitigations::choose(&old);
        assert!(m.ibpb && m.verw && m.l1d_flush && !m.verw_without_md_clear);
        // A new one that says it is immune.
        let new = CpuBits {
            arch_caps: Some(ARCH_CAP_RDCL_NO | ARCH_CAP_MDS_NO),
            ..old
        };
        let m = Mitigations::choose(&new);
        assert!(m.ibpb && !m.verw && !m.l1d_flush);
        // MDS_NO but TSX without TAA_NO (Cascade Lake): VERW for TAA.
        let tsx = CpuBits {
            leaf7_ebx: L7_EBX_RTM,
            ..new
        };
        assert!(Mitigations::choose(&tsx).verw);
        let taa_no = CpuBits {
            arch_caps: Some(ARCH_CAP_RDCL_NO | ARCH_CAP_MDS_NO | ARCH_CAP_TAA_NO),
            ..tsx
        };
        assert!(!Mitigations::choose(&taa_no).verw);
        // An emulated Intel CPU with none of it: VERW anyway.
        let bare = CpuBits {
            intel: true,
            ..Default::default()
        };
        let m = Mitigations::choose(&bare);
        assert!(!m.ibpb && m.verw && m.verw_without_md_clear);
    }
}
