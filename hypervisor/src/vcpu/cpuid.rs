//! The guest's CPUID (DESIGN.md D9): what Mojito offers is the host's
//! features ∩ a policy of what it can virtualize, with VMX/SVM never
//! offered, the hypervisor bit always set and `MojitoMojito` at
//! 0x4000_0000. The table is computed once per VM; the CPUID exit only
//! looks it up and patches the few per-vCPU values (APIC ID, OSXSAVE, the
//! XSAVE size for the current XCR0).

use alloc::vec::Vec;

/// The hypervisor signature (DESIGN.md §3): EBX, ECX, EDX of 0x4000_0000.
pub const SIGNATURE: &[u8; 12] = b"MojitoMojito";
/// Highest hypervisor leaf Mojito answers.
pub const HYPERVISOR_MAX_LEAF: u32 = 0x4000_0001;

/// Leaf 1 ECX bits (SDM Vol. 2A Table 3-10).
mod l1c {
    pub const MONITOR: u32 = 1 << 3;
    pub const DS_CPL: u32 = 1 << 4;
    pub const VMX: u32 = 1 << 5;
    pub const SMX: u32 = 1 << 6;
    pub const EIST: u32 = 1 << 7;
    pub const TM2: u32 = 1 << 8;
    pub const SDBG: u32 = 1 << 11;
    pub const XTPR: u32 = 1 << 14;
    pub const PDCM: u32 = 1 << 15;
    pub const DCA: u32 = 1 << 18;
    pub const X2APIC: u32 = 1 << 21;
    pub const TSC_DEADLINE: u32 = 1 << 24;
    pub const XSAVE: u32 = 1 << 26;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const HYPERVISOR: u32 = 1 << 31;
}

/// Leaf 1 EDX bits (SDM Vol. 2A Table 3-11).
mod l1d {
    pub const APIC: u32 = 1 << 9;
    pub const MCE: u32 = 1 << 7;
    pub const MCA: u32 = 1 << 14;
    pub const DS: u32 = 1 << 21;
    pub const ACPI: u32 = 1 << 22;
    pub const HTT: u32 = 1 << 28;
    pub const TM: u32 = 1 << 29;
    pub const PBE: u32 = 1 << 31;
}

/// Leaf 1 ECX bits hidden: VMX/SMX (D9), the power/thermal/debug-store
/// features nothing here virtualizes, MONITOR (MWAIT is intercepted),
/// OSXSAVE (computed per vCPU), and x2APIC and the TSC-deadline timer,
/// which only the local APIC in the hypervisor offers ([`LAPIC_ECX`]).
const LEAF1_ECX_HIDDEN: u32 = l1c::MONITOR
    | l1c::DS_CPL
    | l1c::VMX
    | l1c::SMX
    | l1c::EIST
    | l1c::TM2
    | l1c::SDBG
    | l1c::XTPR
    | l1c::PDCM
    | l1c::DCA
    | l1c::X2APIC
    | l1c::TSC_DEADLINE
    | l1c::OSXSAVE;

/// What the local APIC in the hypervisor (`KVM_CAP_SPLIT_IRQCHIP`,
/// `vcpu::lapic`) offers, whatever the host has, as KVM does: leaf 1 ECX
/// x2APIC and TSC-deadline, EDX APIC. `KVM_GET_SUPPORTED_CPUID` reports
/// them; `KVM_SET_CPUID2` keeps them only for a VM with that LAPIC.
pub const LAPIC_ECX: u32 = l1c::X2APIC | l1c::TSC_DEADLINE;
pub const LAPIC_EDX: u32 = l1d::APIC;

/// Leaf 1 EDX bits hidden: no local APIC (but [`LAPIC_EDX`]), no machine-check
/// architecture, debug store, ACPI thermal control, HTT (one thread).
const LEAF1_EDX_HIDDEN: u32 =
    l1d::APIC | l1d::MCE | l1d::MCA | l1d::DS | l1d::ACPI | l1d::HTT | l1d::TM | l1d::PBE;

/// Leaf 7.0 EBX bits offered (SDM Vol. 2A Table 3-8): FSGSBASE, BMI1,
/// AVX2, SMEP, BMI2, ERMS, AVX-512 (F, DQ, IFMA, PF, ER, CD, BW, VL),
/// RDSEED, ADX, SMAP, CLFLUSHOPT, CLWB, SHA. Not: TSC_ADJUST (MSR not
/// emulated), HLE/RTM, INVPCID (not enabled in the VMCS), MPX, PQM/PQE, PT.
const LEAF7_EBX_OFFERED: u32 = (1 << 0)
    | (1 << 3)
    | (1 << 5)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 16)
    | (1 << 17)
    | (1 << 18)
    | (1 << 19)
    | (1 << 20)
    | (1 << 21)
    | (1 << 23)
    | (1 << 24)
    | (1 << 26)
    | (1 << 27)
    | (1 << 28)
    | (1 << 29)
    | (1 << 30)
    | (1 << 31);
/// Leaf 7.0 ECX offered: AVX512_VBMI, UMIP, AVX512_VBMI2, GFNI, VAES,
/// VPCLMULQDQ, AVX512_VNNI, AVX512_BITALG, AVX512_VPOPCNTDQ, RDPID.
/// Not PKU/OSPKE, WAITPKG, LA57, CET, SGX, ...
const LEAF7_ECX_OFFERED: u32 = (1 << 1)
    | (1 << 2)
    | (1 << 6)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 14)
    | (1 << 22);
/// Leaf 7.0 EDX offered: AVX512_4VNNIW, AVX512_4FMAPS, FSRM. The
/// speculation-control bits stay hidden until their MSRs are handled.
const LEAF7_EDX_OFFERED: u32 = (1 << 2) | (1 << 3) | (1 << 4);

/// 0x8000_0001 ECX offered (AMD APM Vol. 3 E.4.2): LAHF/SAHF, ABM/LZCNT,
/// SSE4A, misaligned SSE, PREFETCHW, XOP, FMA4, TBM. Not SVM, CMP_LEGACY,
/// extended APIC space, OSVW, IBS, SKINIT, WDT, LWP, node id, topology
/// extensions, perf counters.
const EXT1_ECX_OFFERED: u32 =
    (1 << 0) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 11) | (1 << 16) | (1 << 21);
/// 0x8000_0001 EDX bit 27: RDTSCP.
pub const EXT1_EDX_RDTSCP: u32 = 1 << 27;
/// 0x8000_0001 EDX offered (AMD APM Vol. 3 E.4.2): the legacy copies FPU,
/// VME, DE, PSE, TSC, MSR, PAE, CX8, SYSCALL, MTRR, PGE, CMOV, PAT, PSE36,
/// NX, MMXEXT, MMX, FXSR, 1 GiB pages, RDTSCP, LM, 3DNow!(Ext). Not the AMD
/// copies of APIC, MCE and MCA (hidden in leaf 1 too), nor FFXSR (EFER.FFXSR
/// is not accepted).
const EXT1_EDX_OFFERED: u32 = 0x7f
    | (1 << 8)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 15)
    | (1 << 16)
    | (1 << 17)
    | (1 << 20)
    | (1 << 22)
    | (1 << 23)
    | (1 << 24)
    | (1 << 26)
    | EXT1_EDX_RDTSCP
    | (1 << 29)
    | (1 << 30)
    | (1 << 31);
/// Leaf 7.0 ECX bit 22: RDPID (reads TSC_AUX, like RDTSCP).
const LEAF7_ECX_RDPID: u32 = 1 << 22;

/// XSAVE sub-leaf 1 EAX offered: XSAVEOPT, XSAVEC, XGETBV with ECX = 1.
/// Not XSAVES (IA32_XSS is not emulated).
const XSAVE1_EAX_OFFERED: u32 = 0b111;
const XSAVE1_EAX_XSAVEC: u32 = 1 << 1;
/// Leaf 0xD sub-leaf i (i ≥ 2) ECX bit 1: the component is 64-byte
/// aligned in the compacted format (SDM Vol. 2A, CPUID).
const XSAVE_COMPONENT_ALIGNED: u32 = 1 << 1;

/// Leaves whose ECX selects a sub-leaf.
fn indexed(leaf: u32) -> bool {
    matches!(
        leaf,
        4 | 7 | 0xb | 0xd | 0xf | 0x10 | 0x12 | 0x14 | 0x17 | 0x18 | 0x1f | 0x8000_001d
    )
}

/// What the table builder needs to know besides the host's CPUID.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// XCR0 bits guests may enable (host ∩ `arch::xsave::GUEST_XCR0_MAX`).
    pub xcr0_max: u64,
    /// RDTSCP/RDPID work in the guest (VMX needs a control for it).
    pub rdtscp: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    leaf: u32,
    subleaf: u32,
    regs: [u32; 4],
}

/// A VM's CPUID answers.
#[derive(Clone, Debug, Default)]
pub struct CpuidTable {
    entries: Vec<Entry>,
    /// (offset, size) of each XSAVE component, for sizing the area the
    /// guest's current XCR0 needs (leaf 0xD.0 EBX).
    xsave_components: [(u32, u32); 8],
    /// The components that are 64-byte aligned in the compacted format
    /// (leaf 0xD.i ECX bit 1), a bit per component.
    xsave_aligned: u8,
}

/// Per-vCPU inputs of a lookup.
#[derive(Clone, Copy, Debug)]
pub struct Dynamic {
    pub apic_id: u8,
    /// The guest's CR4.OSXSAVE.
    pub osxsave: bool,
    /// The guest's XCR0.
    pub xcr0: u64,
}

impl CpuidTable {
    /// Builds the default policy from the host's CPUID (`host(leaf,
    /// subleaf)`).
    pub fn build(host: impl Fn(u32, u32) -> [u32; 4], opts: Options) -> Self {
        let mut t = Self::default();
        let max_basic = host(0, 0)[0].min(0x1f);
        let max_ext = host(0x8000_0000, 0)[0].min(0x8000_0008);
        let entries = &mut t.entries;
        let mut push = |leaf: u32, subleaf: u32, regs: [u32; 4]| {
            entries.push(Entry {
                leaf,
                subleaf,
                regs,
            })
        };

        let mut l0 = host(0, 0);
        l0[0] = max_basic;
        push(0, 0, l0);
        for leaf in 1..=max_basic {
            match leaf {
                1 => {
                    let [a, b, c, d] = host(1, 0);
                    // EBX: keep the CLFLUSH line size (15:8); one logical
                    // processor; the APIC ID (31:24) is patched per vCPU.
                    let b = (b & 0xff00) | (1 << 16);
                    let c = (c & !LEAF1_ECX_HIDDEN) | l1c::HYPERVISOR;
                    let c = if opts.xcr0_max != 0 {
                        c
                    } else {
                        c & !l1c::XSAVE
                    };
                    push(1, 0, [a, b, c, d & !LEAF1_EDX_HIDDEN]);
                }
                2 => push(2, 0, host(2, 0)),
                4 => {
                    for sub in 0..8 {
                        let [a, b, c, d] = host(4, sub);
                        if a & 0x1f == 0 {
                            break;
                        }
                        // One core, one thread per cache (EAX 31:26, 25:14).
                        push(4, sub, [a & 0x3fff, b, c, d]);
                    }
                }
                7 => {
                    let [_, b, c, d] = host(7, 0);
                    // RDPID faults where RDTSCP does (VMX needs a control).
                    let c = if opts.rdtscp { c } else { c & !LEAF7_ECX_RDPID };
                    push(
                        7,
                        0,
                        [
                            0,
                            b & LEAF7_EBX_OFFERED,
                            c & LEAF7_ECX_OFFERED,
                            d & LEAF7_EDX_OFFERED,
                        ],
                    );
                }
                0xd if opts.xcr0_max != 0 => {
                    let [_, _, c, _] = host(0xd, 0);
                    push(
                        0xd,
                        0,
                        [opts.xcr0_max as u32, 0, c, (opts.xcr0_max >> 32) as u32],
                    );
                    let [a1, ..] = host(0xd, 1);
                    push(0xd, 1, [a1 & XSAVE1_EAX_OFFERED, 0, 0, 0]);
                    for i in 2..64u32 {
                        if opts.xcr0_max & (1 << i) != 0 {
                            let r = host(0xd, i);
                            if let Some(slot) = t.xsave_components.get_mut(i as usize) {
                                *slot = (r[1], r[0]);
                                if r[2] & XSAVE_COMPONENT_ALIGNED != 0 {
                                    t.xsave_aligned |= 1 << i;
                                }
                            }
                            push(0xd, i, r);
                        }
                    }
                }
                // Everything else (thermal, PMU, topology, SGX, PT, the
                // TSC/crystal frequencies of 0x15/0x16 that Mojito has not
                // calibrated yet) reads as zero.
                _ => {}
            }
        }
        let mut sig = [0u32; 3];
        for (i, chunk) in SIGNATURE.chunks(4).enumerate() {
            sig[i] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        push(
            0x4000_0000,
            0,
            [HYPERVISOR_MAX_LEAF, sig[0], sig[1], sig[2]],
        );
        push(0x4000_0001, 0, [0; 4]);

        let mut e0 = host(0x8000_0000, 0);
        e0[0] = max_ext;
        push(0x8000_0000, 0, e0);
        for leaf in 0x8000_0001..=max_ext {
            let [a, b, c, d] = host(leaf, 0);
            match leaf {
                0x8000_0001 => {
                    let d = d & EXT1_EDX_OFFERED;
                    let d = if opts.rdtscp { d } else { d & !EXT1_EDX_RDTSCP };
                    push(leaf, 0, [a, b, c & EXT1_ECX_OFFERED, d]);
                }
                0x8000_0002..=0x8000_0006 => push(leaf, 0, [a, b, c, d]),
                // Only the invariant TSC (EDX bit 8) of the power leaf.
                0x8000_0007 => push(leaf, 0, [0, 0, 0, d & (1 << 8)]),
                // Address sizes; no speculation-control bits; one core.
                0x8000_0008 => push(leaf, 0, [a, 0, 0, 0]),
                _ => {}
            }
        }
        t
    }

    /// The answer for (`leaf`, `subleaf`): zeros for anything not offered.
    pub fn lookup(&self, leaf: u32, subleaf: u32, d: &Dynamic) -> [u32; 4] {
        let sub = if indexed(leaf) { subleaf } else { 0 };
        let Some(e) = self
            .entries
            .iter()
            .find(|e| e.leaf == leaf && e.subleaf == sub)
        else {
            return [0; 4];
        };
        let mut r = e.regs;
        match (leaf, sub) {
            (1, _) => {
                r[1] = (r[1] & 0x00ff_ffff) | (u32::from(d.apic_id) << 24);
                if d.osxsave {
                    r[2] |= l1c::OSXSAVE;
                }
            }
            (0xd, 0) => r[1] = self.xsave_size(d.xcr0),
            // With XSAVEC offered: the compacted size for XCR0 (IA32_XSS
            // is always 0 here), as KVM computes it; Linux sizes its
            // buffers by it.
            (0xd, 1) if r[0] & XSAVE1_EAX_XSAVEC != 0 => {
                r[1] = self.xsave_compacted_size(d.xcr0);
            }
            _ => {}
        }
        r
    }

    /// Bytes of the standard-format XSAVE area for `xcr0` (SDM Vol. 1
    /// 13.4): the 576-byte legacy region + header, then each component at
    /// its offset.
    fn xsave_size(&self, xcr0: u64) -> u32 {
        let mut size = 576;
        for (i, &(offset, len)) in self.xsave_components.iter().enumerate().skip(2) {
            if xcr0 & (1 << i) != 0 {
                size = size.max(offset + len);
            }
        }
        size
    }

    /// Bytes of the compacted-format XSAVE area for `xcr0` (SDM Vol. 1
    /// 13.4.3): the legacy region and header, then each enabled component
    /// right after the previous one, at a 64-byte boundary where its
    /// leaf 0xD sub-leaf says so.
    fn xsave_compacted_size(&self, xcr0: u64) -> u32 {
        let mut end: u32 = 576;
        for (i, &(_, len)) in self.xsave_components.iter().enumerate().skip(2) {
            if xcr0 & (1 << i) != 0 {
                if self.xsave_aligned & (1 << i) != 0 {
                    end = end.next_multiple_of(64);
                }
                end += len;
            }
        }
        end
    }

    /// A copy, or None if the heap cannot hold one.
    pub fn try_clone(&self) -> Option<Self> {
        let mut entries = Vec::new();
        entries.try_reserve_exact(self.entries.len()).ok()?;
        entries.extend_from_slice(&self.entries);
        Some(Self {
            entries,
            xsave_components: self.xsave_components,
            xsave_aligned: self.xsave_aligned,
        })
    }

    /// The entries: (leaf, subleaf, whether the subleaf matters, EAX..EDX),
    /// what `KVM_GET_SUPPORTED_CPUID` reports.
    pub fn entries(&self) -> impl Iterator<Item = (u32, u32, bool, [u32; 4])> + '_ {
        self.entries
            .iter()
            .map(|e| (e.leaf, e.subleaf, indexed(e.leaf), e.regs))
    }

    /// The table a VMM asks for with `KVM_SET_CPUID2`, made what Mojito can
    /// offer (DESIGN.md D9): feature bits are the VMM's ∩ `self` (the
    /// default policy, itself host ∩ what Mojito virtualizes); descriptive
    /// leaves (vendor, cache and brand) are the VMM's; the sizes of leaf 0xD
    /// are Mojito's; the hypervisor range 0x4000_xxxx is taken as given; a
    /// leaf the default policy does not offer (PMU, topology, 0x15/0x16 …)
    /// reads zero; VMX and SVM are never offered and the hypervisor bit is
    /// always set. None if the heap cannot hold it.
    /// `lapic`: the VM has its local APIC in the hypervisor, so leaf 1 may
    /// keep [`LAPIC_ECX`] and [`LAPIC_EDX`].
    pub fn restrict(
        &self,
        given: impl Iterator<Item = (u32, u32, [u32; 4])>,
        lapic: bool,
    ) -> Option<Self> {
        let (lapic_ecx, lapic_edx) = if lapic {
            (LAPIC_ECX, LAPIC_EDX)
        } else {
            (0, 0)
        };
        let mut t = Self {
            entries: Vec::new(),
            xsave_components: self.xsave_components,
            xsave_aligned: self.xsave_aligned,
        };
        for (leaf, subleaf, regs) in given {
            let sub = if indexed(leaf) { subleaf } else { 0 };
            let own = self
                .entries
                .iter()
                .find(|e| e.leaf == leaf && e.subleaf == sub)
                .map(|e| e.regs);
            let and = |i: usize| own.map_or(0, |o| o[i] & regs[i]);
            let mine = |i: usize| own.map_or(0, |o| o[i]);
            let r = match leaf {
                0x4000_0000..=0x4000_ffff => regs,
                0 | 2 | 4 | 0x8000_0000 | 0x8000_0002..=0x8000_0006 if own.is_some() => regs,
                1 => [
                    regs[0],
                    mine(1),
                    (and(2) | (regs[2] & lapic_ecx) | l1c::HYPERVISOR) & !l1c::VMX,
                    and(3) | (regs[3] & lapic_edx),
                ],
                0xd if sub == 0 => [and(0), mine(1), mine(2), and(3)],
                0xd if sub >= 2 => [mine(0), mine(1), mine(2), mine(3)],
                0x8000_0001 => [regs[0], regs[1], and(2), and(3)],
                0x8000_0008 => [mine(0), and(1), and(2), and(3)],
                _ => [and(0), and(1), and(2), and(3)],
            };
            if t.entries.iter().any(|e| e.leaf == leaf && e.subleaf == sub) {
                continue;
            }
            t.entries.try_reserve(1).ok()?;
            t.entries.push(Entry {
                leaf,
                subleaf: sub,
                regs: r,
            });
        }
        Some(t)
    }

    /// Number of entries (for tests and `info`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up Intel host with VMX, x2APIC, every leaf-7 bit and AVX.
    fn host(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0, _) => [0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            (1, _) => [
                0x906ea,
                0x0810_0800,
                0xfffa_3203 | l1c::VMX | l1c::X2APIC,
                0xbfeb_fbff,
            ],
            (4, 0) => [0x1c00_4121, 0x01c0_003f, 0x3f, 0],
            (4, 1) => [0x1c00_4122, 0x01c0_003f, 0x3f, 0],
            (4, _) => [0, 0, 0, 0],
            (7, 0) => [0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff],
            (0xd, 0) => [0x7, 0x340, 0x340, 0],
            (0xd, 1) => [0xf, 0, 0, 0],
            (0xd, 2) => [0x100, 0x240, 0, 0],
            (0x15, _) => [2, 200, 38_400_000, 0],
            (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
            (0x8000_0001, _) => [0, 0, 0x121 | (1 << 2), 0x2c10_0800],
            (0x8000_0008, _) => [0x3027, 0x1234, 0x5678, 0],
            _ => [0x11, 0x22, 0x33, 0x44],
        }
    }

    fn table() -> CpuidTable {
        CpuidTable::build(
            host,
            Options {
                xcr0_max: 0x7,
                rdtscp: true,
            },
        )
    }

    const D: Dynamic = Dynamic {
        apic_id: 3,
        osxsave: false,
        xcr0: 1,
    };

    #[test]
    fn signature_and_hypervisor_bit() {
        let t = table();
        let r = t.lookup(0x4000_0000, 0, &D);
        assert_eq!(r[0], HYPERVISOR_MAX_LEAF);
        let mut sig = Vec::new();
        for reg in &r[1..] {
            sig.extend_from_slice(&reg.to_le_bytes());
        }
        assert_eq!(&sig, SIGNATURE);
        let l1 = t.lookup(1, 0, &D);
        assert_ne!(l1[2] & l1c::HYPERVISOR, 0);
        assert_eq!(l1[2] & l1c::VMX, 0, "VMX is never offered");
        assert_eq!(l1[2] & l1c::X2APIC, 0);
        assert_eq!(l1[3] & l1d::APIC, 0);
        assert_eq!(l1[1] >> 24, 3, "APIC ID per vCPU");
        assert_eq!(
            t.lookup(0x8000_0001, 0, &D)[2] & (1 << 2),
            0,
            "SVM is never offered"
        );
    }

    #[test]
    fn dynamic_bits() {
        let t = table();
        assert_eq!(t.lookup(1, 0, &D)[2] & l1c::OSXSAVE, 0);
        let d = Dynamic { osxsave: true, ..D };
        assert_ne!(t.lookup(1, 0, &d)[2] & l1c::OSXSAVE, 0);
        assert_eq!(t.lookup(0xd, 0, &D)[1], 576);
        assert_eq!(t.lookup(0xd, 0, &Dynamic { xcr0: 7, ..D })[1], 0x340);
        // XSAVEC is offered (host 0xD.1 EAX 0xf, XSAVES masked off): the
        // compacted size follows XCR0 too (AVX's 256 bytes after 576).
        let sub1 = t.lookup(0xd, 1, &Dynamic { xcr0: 7, ..D });
        assert_eq!(sub1[0], 0b111, "no XSAVES");
        assert_eq!(sub1[1], 576 + 256);
        assert_eq!(t.lookup(0xd, 1, &Dynamic { xcr0: 3, ..D })[1], 576);
        assert_eq!(t.lookup(0xd, 1, &D)[0], 0b111, "no XSAVES");
        assert_eq!(t.lookup(0xd, 2, &D)[0], 0x100);
    }

    #[test]
    fn hidden_and_absent_leaves() {
        let t = table();
        assert_eq!(t.lookup(0x15, 0, &D), [0; 4], "no raw TSC frequencies (D9)");
        assert_eq!(t.lookup(0xa, 0, &D), [0; 4], "no PMU");
        assert_eq!(t.lookup(0x8000_000a, 0, &D), [0; 4], "no SVM leaf");
        assert_eq!(t.lookup(0x4000_0100, 0, &D), [0; 4]);
        assert_eq!(t.lookup(0x9999, 0, &D), [0; 4]);
        assert_eq!(t.lookup(0, 0, &D)[0], 0x16);
        let l7 = t.lookup(7, 0, &D);
        assert_eq!(l7[1], LEAF7_EBX_OFFERED);
        assert_eq!(l7[2] & (1 << 3), 0, "no PKU");
        assert_eq!(t.lookup(7, 1, &D), [0; 4]);
        assert_eq!(
            t.lookup(4, 1, &D)[0],
            0x122,
            "one core, one thread per cache"
        );
        assert_eq!(t.lookup(4, 2, &D), [0; 4]);
        assert_eq!(t.lookup(0x8000_0008, 0, &D), [0x3027, 0, 0, 0]);
    }

    #[test]
    fn non_indexed_leaves_ignore_ecx() {
        let t = table();
        assert_eq!(t.lookup(0x4000_0000, 5, &D), t.lookup(0x4000_0000, 0, &D));
        assert_eq!(t.lookup(1, 9, &D), t.lookup(1, 0, &D));
    }

    #[test]
    fn a_vmms_table_is_restricted_to_the_policy() {
        let t = table();
        let given = [
            (0u32, 0u32, [0x16, 1, 2, 3]),
            (1, 0, [0x1234, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]),
            (7, 0, [0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]),
            (0x15, 0, [2, 200, 38_400_000, 0]),
            (0x4000_0000, 0, [0x4000_0010, 0x11, 0x22, 0x33]),
            (0x8000_0001, 0, [0, 0, 0xffff_ffff, 0xffff_ffff]),
        ];
        let r = t.restrict(given.into_iter(), false).unwrap();
        let l1 = r.lookup(1, 0, &D);
        assert_eq!(l1[0], 0x1234, "the VMM's signature");
        assert_eq!(l1[2] & l1c::VMX, 0, "never VMX");
        assert_ne!(l1[2] & l1c::HYPERVISOR, 0, "always the hypervisor bit");
        assert_eq!(l1[2] & l1c::X2APIC, 0, "not offered by the policy");
        assert_eq!(r.lookup(7, 0, &D)[1], LEAF7_EBX_OFFERED);
        assert_eq!(r.lookup(0x15, 0, &D), [0; 4], "no raw frequencies");
        assert_eq!(
            r.lookup(0x4000_0000, 0, &D),
            [0x4000_0010, 0x11, 0x22, 0x33],
            "as given"
        );
        assert_eq!(r.lookup(0x8000_0001, 0, &D)[2] & (1 << 2), 0, "never SVM");
        assert_eq!(r.lookup(0, 0, &D), [0x16, 1, 2, 3]);
        assert_eq!(
            r.lookup(0xd, 0, &D),
            [0; 4],
            "a leaf the VMM left out reads zero"
        );
    }

    #[test]
    fn no_xsave_no_rdtscp() {
        let t = CpuidTable::build(
            host,
            Options {
                xcr0_max: 0,
                rdtscp: false,
            },
        );
        assert_eq!(t.lookup(1, 0, &D)[2] & l1c::XSAVE, 0);
        assert_eq!(t.lookup(0xd, 0, &D), [0; 4]);
        assert_eq!(t.lookup(0x8000_0001, 0, &D)[3] & EXT1_EDX_RDTSCP, 0);
        assert_eq!(
            t.lookup(7, 0, &D)[2] & LEAF7_ECX_RDPID,
            0,
            "RDPID goes with RDTSCP"
        );
    }

    #[test]
    fn amd_legacy_copies_hidden() {
        let e1 = table().lookup(0x8000_0001, 0, &D)[3];
        assert_eq!(
            e1 & ((1 << 9) | (1 << 7) | (1 << 14) | (1 << 25)),
            0,
            "no APIC/MCE/MCA/FFXSR"
        );
        assert_ne!(e1 & (1 << 29), 0, "long mode");
        assert_ne!(e1 & (1 << 20), 0, "NX");
    }
}
