//! The guest's MSRs: an allow-list. MSRs whose state the hardware switches
//! (or the lazy switch in `lazy` does) are passed through in the bitmap; a
//! few are emulated here; every other MSR raises #GP, as on a CPU that
//! lacks it. Guests can never read or write the virtualization MSRs
//! (IA32_FEATURE_CONTROL's VMX bits, the VMX capability MSRs, EFER.SVME,
//! VM_CR, VM_HSAVE_PA).

use crate::arch::instr::rdtsc;
use crate::arch::msr::{self, efer};
use crate::virt::{Fault, GuestCpu};

/// MSRs the guest reads and writes without an exit. Their values are the
/// guest's own: VMX loads FS/GS base and SYSENTER from the VMCS, SVM's
/// VMLOAD/VMSAVE switch all but TSC_AUX, and the lazy switch covers the rest.
pub const PASSTHROUGH: &[u32] = &[
    msr::IA32_FS_BASE,
    msr::IA32_GS_BASE,
    msr::IA32_KERNEL_GS_BASE,
    msr::IA32_STAR,
    msr::IA32_LSTAR,
    msr::IA32_CSTAR,
    msr::IA32_FMASK,
    msr::IA32_SYSENTER_CS,
    msr::IA32_SYSENTER_ESP,
    msr::IA32_SYSENTER_EIP,
    msr::IA32_TSC_AUX,
];

/// Emulated MSR state of one vCPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct MsrState {
    pub mtrr_def_type: u64,
    /// kvmclock's MSRs (`pvclock`), which `vcpu::write_msr` handles.
    pub kvmclock: super::pvclock::KvmClock,
}

impl MsrState {
    /// A new vCPU's: kvmclock counts from now.
    pub fn new() -> Self {
        Self {
            mtrr_def_type: 0,
            kvmclock: super::pvclock::KvmClock::new(rdtsc()),
        }
    }
}

/// IA32_MISC_ENABLE as guests see it: fast strings (bit 0), BTS and PEBS
/// unavailable (bits 11, 12) (SDM Vol. 4 Table 2-2).
const MISC_ENABLE: u64 = (1 << 0) | (1 << 11) | (1 << 12);
/// IA32_FEATURE_CONTROL as guests see it: locked, VMX off.
const FEATURE_CONTROL_LOCKED: u64 = 1;

/// EFER bits a guest may set: SCE, LME, NXE (LMA is the processor's).
const EFER_GUEST_BITS: u64 = efer::SCE | efer::LME | efer::LMA | efer::NXE;
const CR0_PG: u64 = 1 << 31;

/// Memory types valid in PAT entries and MTRRs (SDM Vol. 3A 12.12.2):
/// UC 0, WC 1, WT 4, WP 5, WB 6, UC- 7 (PAT only).
fn valid_pat(pat: u64) -> bool {
    pat.to_le_bytes()
        .iter()
        .all(|&t| matches!(t, 0 | 1 | 4 | 5 | 6 | 7))
}

/// MTRR_DEF_TYPE: type in bits 7:0 (no UC-), FE bit 10, E bit 11.
fn valid_mtrr_def_type(v: u64) -> bool {
    v & !0xcff == 0 && matches!(v & 0xff, 0 | 1 | 4 | 5 | 6)
}

/// Whether Mojito knows MSR `index`: it emulates it, passes it through, or
/// refuses it by policy (the virtualization MSRs). A failed access to a
/// known MSR is an invalid one (`KVM_MSR_EXIT_REASON_INVAL`), to any other
/// an unknown one (`KVM_MSR_EXIT_REASON_UNKNOWN`).
pub fn known(index: u32) -> bool {
    matches!(
        index,
        msr::IA32_EFER
            | msr::IA32_PAT
            | msr::IA32_TSC
            | msr::IA32_MTRRCAP
            | msr::IA32_MTRR_DEF_TYPE
            | msr::IA32_MISC_ENABLE
            | msr::IA32_FEATURE_CONTROL
            | msr::IA32_PLATFORM_ID
            | msr::IA32_BIOS_SIGN_ID
            | msr::IA32_MCG_CAP
            | msr::IA32_MCG_STATUS
            | msr::IA32_DEBUGCTL
            | msr::AMD_NB_CFG
            | msr::AMD_VM_CR
            | msr::AMD_VM_HSAVE_PA
    ) || (msr::IA32_VMX_BASIC..msr::IA32_VMX_LAST).contains(&index)
        || PASSTHROUGH.contains(&index)
        || super::pvclock::is_msr(index)
}

/// RDMSR of an intercepted MSR.
pub fn read(cpu: &impl GuestCpu, st: &MsrState, index: u32) -> Result<u64, Fault> {
    Ok(match index {
        msr::IA32_EFER => cpu.efer(),
        msr::IA32_PAT => cpu.pat(),
        msr::IA32_TSC => rdtsc().wrapping_add(cpu.tsc_offset()),
        msr::IA32_MTRRCAP => 0,
        msr::IA32_MTRR_DEF_TYPE => st.mtrr_def_type,
        msr::IA32_MISC_ENABLE => MISC_ENABLE,
        msr::IA32_FEATURE_CONTROL => FEATURE_CONTROL_LOCKED,
        msr::IA32_PLATFORM_ID
        | msr::IA32_BIOS_SIGN_ID
        | msr::IA32_MCG_CAP
        | msr::IA32_MCG_STATUS => 0,
        msr::IA32_DEBUGCTL => 0,
        msr::AMD_NB_CFG => 0,
        i if super::pvclock::is_msr(i) => st.kvmclock.read(i),
        _ => return Err(Fault::GP0),
    })
}

/// WRMSR of an intercepted MSR other than kvmclock's (which writes guest
/// memory: `vcpu::write_msr`).
pub fn write(
    cpu: &mut impl GuestCpu,
    st: &mut MsrState,
    index: u32,
    value: u64,
) -> Result<(), Fault> {
    match index {
        msr::IA32_EFER => {
            let old = cpu.efer();
            // SDM Vol. 4 / APM Vol. 2 3.1.7: reserved bits and changing LME
            // while paging is on fault.
            if value & !EFER_GUEST_BITS != 0
                || ((value ^ old) & efer::LME != 0 && cpu.cr0() & CR0_PG != 0)
            {
                return Err(Fault::GP0);
            }
            cpu.set_efer(value);
        }
        msr::IA32_PAT if valid_pat(value) => cpu.set_pat(value),
        msr::IA32_TSC => cpu.set_tsc_offset(value.wrapping_sub(rdtsc())),
        msr::IA32_MTRR_DEF_TYPE if valid_mtrr_def_type(value) => st.mtrr_def_type = value,
        // Microcode-update trigger and signature: accepted and ignored.
        msr::IA32_BIOS_SIGN_ID => {}
        msr::IA32_MCG_STATUS | msr::IA32_DEBUGCTL if value == 0 => {}
        msr::IA32_MISC_ENABLE if value == MISC_ENABLE => {}
        // As KVM: accepted and ignored (Linux's amd_bus_cpu_online).
        msr::AMD_NB_CFG => {}
        _ => return Err(Fault::GP0),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_type_checks() {
        assert!(valid_pat(crate::virt::vmx::vcpu::PAT_RESET));
        assert!(!valid_pat(0x0007_0406_0007_0402));
        assert!(!valid_pat(0x0800_0000_0000_0000));
        assert!(valid_mtrr_def_type(0x806));
        assert!(valid_mtrr_def_type(0xc00));
        assert!(!valid_mtrr_def_type(0x807), "UC- is not an MTRR type");
        assert!(!valid_mtrr_def_type(0x1006));
    }

    #[test]
    fn known_msrs() {
        for m in [
            msr::IA32_EFER,
            msr::IA32_VMX_BASIC,
            msr::AMD_VM_HSAVE_PA,
            msr::IA32_LSTAR,
        ] {
            assert!(known(m), "{m:#x}");
        }
        for m in [abi::guest::VMM_MSR_BASE, 0x4b56_4d02, msr::IA32_VMX_LAST] {
            assert!(!known(m), "{m:#x}");
        }
    }

    #[test]
    fn virtualization_msrs_are_not_passed_through() {
        for m in [
            msr::IA32_FEATURE_CONTROL,
            msr::IA32_VMX_BASIC,
            msr::IA32_EFER,
            msr::AMD_VM_CR,
            msr::AMD_VM_HSAVE_PA,
            msr::IA32_APIC_BASE,
            msr::IA32_PAT,
        ] {
            assert!(!PASSTHROUGH.contains(&m), "{m:#x}");
        }
    }
}
