//! The guest's CPUID table and MSR filter, as the VMM chooses them
//! (DESIGN.md D9).
//!
//! By default the VMM gives a guest what the back end supports
//! (`KVM_GET_SUPPORTED_CPUID` → `KVM_SET_CPUID2`); under host KVM a vCPU
//! without a table reads zeros. [`mojito_look`] instead dresses that table
//! the way Mojito presents CPUID when no VMM sets one — the `MojitoMojito`
//! signature at 0x4000_0000, VMX and SVM hidden, the hypervisor bit set —
//! and [`MOJITO_DENIED_MSRS`] makes host KVM raise #GP on the
//! virtualization MSRs Mojito refuses, so Mojito's own test guests pass
//! their checks under host KVM too. It is a look, not Mojito's whole
//! policy: the hypervisor also hides features it cannot virtualize, which
//! KVM's supported table has already left out for KVM.

use abi::kvm::{KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE, kvm_cpuid_entry2};
use alloc::vec::Vec;

/// The hypervisor signature (DESIGN.md §3): EBX, ECX, EDX of 0x4000_0000.
pub const SIGNATURE: &[u8; 12] = b"MojitoMojito";
/// Highest hypervisor leaf Mojito answers (EAX of 0x4000_0000).
pub const HYPERVISOR_MAX_LEAF: u32 = 0x4000_0001;
/// First and last leaf of the range hypervisors use for their own leaves
/// (Linux scans 0x4000_0000–0x4001_0000 in steps of 0x100).
const HYPERVISOR_LEAVES: core::ops::RangeInclusive<u32> = 0x4000_0000..=0x4000_ffff;

/// CPUID.1:ECX bit 5, VMX (SDM Vol. 2A, CPUID, Table 3-10).
const LEAF1_ECX_VMX: u32 = 1 << 5;
/// CPUID.1:ECX bit 31, hypervisor present.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:ECX bit 21, x2APIC; bit 24, the TSC-deadline timer.
const LEAF1_ECX_X2APIC: u32 = 1 << 21;
const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// CPUID.1:EDX bit 9, an on-chip local APIC.
const LEAF1_EDX_APIC: u32 = 1 << 9;
/// CPUID.8000_0001h:ECX bit 2, SVM (AMD APM Vol. 3, Appendix E.4.2).
const EXT1_ECX_SVM: u32 = 1 << 2;
/// The SVM feature leaf (APM Vol. 3, E.4.9), emptied with SVM hidden.
const SVM_LEAF: u32 = 0x8000_000a;

/// Mojito's look of a supported-CPUID table: VMX and SVM hidden (and the
/// SVM leaf emptied), the hypervisor bit set, every 0x4000_xxxx leaf of the
/// back end (e.g. KVM's `KVMKVMKVM`) replaced by `MojitoMojito` at
/// 0x4000_0000 with EAX = 0x4000_0001 and an empty 0x4000_0001.
pub fn mojito_look(supported: &[kvm_cpuid_entry2]) -> Vec<kvm_cpuid_entry2> {
    let mut out: Vec<kvm_cpuid_entry2> = supported
        .iter()
        .filter(|e| !HYPERVISOR_LEAVES.contains(&e.function))
        .copied()
        .map(|mut e| {
            match e.function {
                1 => e.ecx = (e.ecx & !LEAF1_ECX_VMX) | LEAF1_ECX_HYPERVISOR,
                0x8000_0001 => e.ecx &= !EXT1_ECX_SVM,
                SVM_LEAF => (e.eax, e.ebx, e.ecx, e.edx) = (0, 0, 0, 0),
                _ => {}
            }
            e
        })
        .collect();
    let word = |i: usize| {
        let b = SIGNATURE;
        u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
    };
    out.push(kvm_cpuid_entry2 {
        function: 0x4000_0000,
        eax: HYPERVISOR_MAX_LEAF,
        ebx: word(0),
        ecx: word(1),
        edx: word(2),
        ..Default::default()
    });
    out.push(kvm_cpuid_entry2 {
        function: 0x4000_0001,
        ..Default::default()
    });
    out
}

/// The test guests that want the kernel's local APIC (the split irqchip,
/// `VmConfig::split_irqchip`), by their bundle name: `lapic`, and every
/// guest with several vCPUs ([`guest_vcpus`]: their APs start through the
/// kernel's APIC, by INIT and SIPI). The others keep the userspace irqchip
/// they test: `irq` injects with `KVM_INTERRUPT` and the interrupt window,
/// and `halt` and the rest must see HLT reach the VMM.
pub fn wants_split_irqchip(guest: &str) -> bool {
    guest == "lapic" || guest_vcpus(guest) > 1
}

/// How many vCPUs a test guest gets (`VmConfig::vcpus`), by its bundle
/// name: `smp` has a BSP and one AP; every other guest one vCPU.
pub fn guest_vcpus(guest: &str) -> u32 {
    if guest == "smp" { 2 } else { 1 }
}

/// Gives vCPU `id` its own initial APIC ID in a copy of the VM's CPUID
/// table, as a VMM with several vCPUs must (KVM takes the table as given):
/// CPUID.1:EBX bits 31:24, and EDX of the x2APIC topology leaves 0xB and
/// 0x1F (SDM Vol. 2A, CPUID, "Initial APIC ID", "x2APIC ID of the
/// current logical processor").
pub fn with_apic_id(table: &[kvm_cpuid_entry2], id: u32) -> Vec<kvm_cpuid_entry2> {
    table
        .iter()
        .copied()
        .map(|mut e| {
            match e.function {
                1 => e.ebx = (e.ebx & 0x00ff_ffff) | (id & 0xff) << 24,
                0xb | 0x1f => e.edx = id,
                _ => {}
            }
            e
        })
        .collect()
}

/// Offers the local APIC the kernel emulates under the split irqchip in
/// CPUID leaf 1: the APIC and x2APIC, and the TSC-deadline timer where the
/// kernel has it (`KVM_CAP_TSC_DEADLINE_TIMER`, which is how KVM tells a
/// VMM; `KVM_GET_SUPPORTED_CPUID` need not report the bit).
pub fn offer_local_apic(table: &mut [kvm_cpuid_entry2], tsc_deadline: bool) {
    for e in table.iter_mut().filter(|e| e.function == 1) {
        e.edx |= LEAF1_EDX_APIC;
        e.ecx |= LEAF1_ECX_X2APIC;
        if tsc_deadline {
            e.ecx |= LEAF1_ECX_TSC_DEADLINE;
        } else {
            e.ecx &= !LEAF1_ECX_TSC_DEADLINE;
        }
    }
}

/// An MSR range a filter denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeniedMsrs {
    /// `KVM_MSR_FILTER_READ` and/or `KVM_MSR_FILTER_WRITE`: what is denied.
    pub flags: u32,
    /// First MSR.
    pub base: u32,
    /// MSRs in the range, all denied.
    pub count: u32,
    /// Why Mojito denies them.
    pub why: &'static str,
}

/// The MSRs Mojito refuses (the hypervisor's MSR policy: "EFER.SVME,
/// VM_CR, VM_HSAVE_PA and the VMX capability MSRs raise #GP",
/// IA32_FEATURE_CONTROL reads as locked-off) that KVM may not refuse by
/// itself: host KVM lets a guest read VM_HSAVE_PA as 0, for one. Installed
/// with `KVM_X86_SET_MSR_FILTER`; without `KVM_CAP_X86_USER_SPACE_MSR` a
/// denied access is a #GP in the guest.
pub const MOJITO_DENIED_MSRS: &[DeniedMsrs] = &[
    DeniedMsrs {
        flags: KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
        base: 0xc001_0114,
        count: 1,
        why: "VM_CR: SVM is never offered (D9)",
    },
    DeniedMsrs {
        flags: KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
        base: 0xc001_0117,
        count: 1,
        why: "VM_HSAVE_PA: SVM is never offered (D9)",
    },
    DeniedMsrs {
        flags: KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
        base: 0x480,
        count: 0x12,
        why: "IA32_VMX_BASIC..IA32_VMX_VMFUNC: VMX is never offered (D9)",
    },
    DeniedMsrs {
        flags: KVM_MSR_FILTER_WRITE,
        base: 0x3a,
        count: 1,
        why: "IA32_FEATURE_CONTROL: locked with VMX off, so writes #GP",
    },
];

/// The largest `count` in [`MOJITO_DENIED_MSRS`], so one all-zero bitmap
/// serves every range.
pub const DENIED_BITMAP_BYTES: usize = 0x12_usize.div_ceil(8);

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, ecx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            ecx,
            ..Default::default()
        }
    }

    #[test]
    fn mojito_look_hides_vmx_svm_and_signs() {
        let kvm_sig = kvm_cpuid_entry2 {
            function: 0x4000_0000,
            ebx: u32::from_le_bytes(*b"KVMK"),
            ..Default::default()
        };
        let table = [
            leaf(1, LEAF1_ECX_VMX | 1),
            leaf(0x8000_0001, EXT1_ECX_SVM | 2),
            leaf(SVM_LEAF, 7),
            kvm_sig,
            leaf(0x4000_0001, 0xffff),
        ];
        let out = mojito_look(&table);
        let get = |f| {
            out.iter()
                .filter(move |e: &&kvm_cpuid_entry2| e.function == f)
        };
        assert_eq!(get(1).next().unwrap().ecx, 1 | LEAF1_ECX_HYPERVISOR);
        assert_eq!(get(0x8000_0001).next().unwrap().ecx, 2);
        assert_eq!(get(SVM_LEAF).next().unwrap().ecx, 0);
        let sig: alloc::vec::Vec<_> = get(0x4000_0000).collect();
        assert_eq!(sig.len(), 1);
        let s = sig[0];
        let mut text = [0u8; 12];
        text[..4].copy_from_slice(&s.ebx.to_le_bytes());
        text[4..8].copy_from_slice(&s.ecx.to_le_bytes());
        text[8..].copy_from_slice(&s.edx.to_le_bytes());
        assert_eq!(&text, SIGNATURE);
        assert_eq!(s.eax, HYPERVISOR_MAX_LEAF);
        assert_eq!(get(0x4000_0001).next().unwrap().ecx, 0);
        assert_eq!(get(0x4000_0001).count(), 1);
    }

    #[test]
    fn the_local_apic_is_offered_with_the_split_irqchip() {
        let mut table = [leaf(1, 1), leaf(7, 0)];
        offer_local_apic(&mut table, true);
        assert_eq!(table[0].edx, LEAF1_EDX_APIC);
        assert_eq!(table[0].ecx, 1 | LEAF1_ECX_X2APIC | LEAF1_ECX_TSC_DEADLINE);
        assert_eq!((table[1].ecx, table[1].edx), (0, 0));
        offer_local_apic(&mut table, false);
        assert_eq!(table[0].ecx, 1 | LEAF1_ECX_X2APIC);
        assert!(wants_split_irqchip("lapic"));
        assert!(!wants_split_irqchip("irq") && !wants_split_irqchip("halt"));
    }

    #[test]
    fn smp_gets_two_vcpus_and_the_split_irqchip() {
        assert_eq!(guest_vcpus("smp"), 2);
        assert!(wants_split_irqchip("smp"));
        assert_eq!((guest_vcpus("lapic"), guest_vcpus("demo")), (1, 1));
    }

    #[test]
    fn each_vcpu_gets_its_own_apic_id() {
        let table = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0x0708_0800,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                edx: 0,
                ..Default::default()
            },
            leaf(7, 3),
        ];
        let ap = with_apic_id(&table, 1);
        assert_eq!(ap[0].ebx, 0x0108_0800);
        assert_eq!(ap[1].edx, 1);
        assert_eq!(ap[2], table[2]);
        assert_eq!(with_apic_id(&table, 0)[0].ebx, 0x0008_0800);
    }

    #[test]
    fn denied_bitmap_covers_every_range() {
        for d in MOJITO_DENIED_MSRS {
            assert!(d.count as usize <= DENIED_BITMAP_BYTES * 8, "{}", d.why);
        }
    }
}
