//! AMD SVM (AMD APM Vol. 2 chapter 15): EFER.SVME, VM_HSAVE_PA, one VMCB
//! per vCPU, nested paging, ASIDs, VGIF when offered. Mirrors `virt::vmx`
//! file for file (see the table there).

pub mod caps;
pub mod entry;
pub mod exit;
pub mod npt;
pub mod vcpu;
pub mod vmcb;

use crate::arch::instr::{rdmsr, wrmsr};
use crate::arch::msr;
use crate::mm::HostPhys;
use crate::virt::{Backend, ExitInfo, Frames, VirtError};
pub use caps::Features;
use core::arch::asm;
pub use vcpu::SvmVcpu;

/// SVM turned on for one CPU.
pub struct Svm {
    pub features: Features,
    /// VM_HSAVE_PA: where VMRUN keeps the host's state.
    host_save_area: HostPhys,
    /// The host's VMSAVE state (FS, GS, TR, LDTR, syscall MSRs), reloaded
    /// with VMLOAD after every exit.
    host_vmcb: HostPhys,
    /// The I/O and MSR permission maps, shared by every vCPU: the policy is
    /// the same for all (and one map for all keeps vCPU creation cheap).
    maps: vcpu::PermissionMaps,
    /// CR4 bits a guest may set on this CPU.
    cr4_allowed: u64,
}

/// CR4 bits this CPU supports, of those a guest may own (the rest of
/// `virt::regs::GUEST_CR4_ALLOWED` needs a CPUID feature).
fn supported_cr4(cpuid: &raw_cpuid::CpuId<impl raw_cpuid::CpuIdReader>) -> u64 {
    use crate::virt::regs::cr4;
    let mut bits = cr4::ALWAYS;
    let f = cpuid.get_feature_info();
    let e = cpuid.get_extended_feature_info();
    let has = |b: bool, bit: u64| if b { bit } else { 0 };
    bits |= has(f.as_ref().is_some_and(|f| f.has_pcid()), cr4::PCIDE);
    bits |= has(f.as_ref().is_some_and(|f| f.has_xsave()), cr4::OSXSAVE);
    bits |= has(e.as_ref().is_some_and(|e| e.has_fsgsbase()), cr4::FSGSBASE);
    bits |= has(e.as_ref().is_some_and(|e| e.has_smep()), cr4::SMEP);
    bits |= has(e.as_ref().is_some_and(|e| e.has_smap()), cr4::SMAP);
    bits |= has(e.as_ref().is_some_and(|e| e.has_umip()), cr4::UMIP);
    bits
}

impl Backend for Svm {
    type Vcpu = SvmVcpu;
    type Nested = npt::Npt;
    const NAME: &'static str = "SVM";
    const SWITCHES_SYSCALL_MSRS: bool = true;
    const SWITCHES_CR2: bool = true;
    const SWITCHES_DR6: bool = true;

    fn enable(frames: &mut Frames) -> Result<Self, VirtError> {
        let cpuid = raw_cpuid::CpuId::new();
        let Some(features) = Features::from_cpuid(&cpuid) else {
            return Err(VirtError::Unsupported("the CPU does not offer SVM"));
        };
        // SAFETY: VM_CR exists wherever SVM does.
        if unsafe { rdmsr(msr::AMD_VM_CR) } & caps::VM_CR_SVMDIS != 0 {
            return Err(VirtError::DisabledByFirmware(
                "SVM (VM_CR.SVMDIS; enable SVM/AMD-V in the firmware setup)",
            ));
        }
        if !features.npt {
            return Err(VirtError::Unsupported("nested paging"));
        }
        if features.asids < 2 {
            return Err(VirtError::Unsupported("ASIDs"));
        }
        let maps = vcpu::PermissionMaps::new(frames, &[])?;
        let host_save_area = frames.alloc_zeroed().ok_or(VirtError::NoMemory)?;
        let Some(host_vmcb) = frames.alloc_zeroed() else {
            frames.free(host_save_area);
            return Err(VirtError::NoMemory);
        };
        // SAFETY: APM Vol. 2 15.4: set EFER.SVME, then point VM_HSAVE_PA at a
        // page of ours; then VMSAVE the host's current FS/GS/TR/LDTR and
        // syscall MSRs (which the hypervisor never changes after boot).
        unsafe {
            wrmsr(msr::IA32_EFER, rdmsr(msr::IA32_EFER) | msr::efer::SVME);
            wrmsr(msr::AMD_VM_HSAVE_PA, host_save_area.raw());
            asm!("vmsave rax", in("rax") host_vmcb.raw(), options(nostack));
        }
        let cr4_allowed = supported_cr4(&cpuid);
        Ok(Self {
            features,
            host_save_area,
            host_vmcb,
            maps,
            cr4_allowed,
        })
    }

    fn describe(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let f = &self.features;
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            out,
            "SVM: NPT, {} ASIDs, NRIP save {}, VGIF {}, flush-by-ASID {}, decode assists {}, \
             VMCB clean bits {}, revision {}",
            f.asids,
            yes(f.nrip_save),
            yes(f.vgif),
            yes(f.flush_by_asid),
            yes(f.decode_assists),
            yes(f.vmcb_clean),
            f.revision
        )
    }

    fn create_vcpu(
        &mut self,
        frames: &mut Frames,
        vm_id: u16,
        nested_root: HostPhys,
        entry: u64,
        open_ports: &[core::ops::RangeInclusive<u16>],
    ) -> Result<SvmVcpu, VirtError> {
        // ASID 0 belongs to the host; VM ids wrap around the ones there are.
        // Sharing an ASID is safe because a switch between vCPUs flushes.
        let asid = 1 + u32::from(vm_id.saturating_sub(1)) % (self.features.asids - 1);
        SvmVcpu::new(
            frames,
            &self.features,
            &self.maps,
            open_ports,
            self.cr4_allowed,
            asid,
            nested_root,
            entry,
        )
    }

    fn structures(
        &self,
        vcpu: Option<&SvmVcpu>,
        each: &mut dyn FnMut(&'static str, HostPhys, u64),
    ) {
        match vcpu {
            Some(v) => v.structures(each),
            None => {
                each("host save area", self.host_save_area, 4096);
                each("host VMCB", self.host_vmcb, 4096);
                self.maps.structures(each);
            }
        }
    }

    fn destroy_vcpu(&mut self, frames: &mut Frames, vcpu: SvmVcpu) {
        vcpu.free(frames);
    }

    fn activate(&mut self, _vcpu: &mut SvmVcpu) -> bool {
        true
    }

    fn flush_nested(&mut self, vcpu: &mut SvmVcpu) {
        vcpu.flush_on_entry = true;
    }

    fn release(&mut self, _vcpu: &mut SvmVcpu) {}

    fn run(&mut self, vcpu: &mut SvmVcpu, new_context: bool) -> ExitInfo {
        let here = crate::arch::percpu::index();
        let moved = vcpu.cpu != here;
        vcpu.cpu = here;
        let flush = new_context || moved || core::mem::take(&mut vcpu.flush_on_entry);
        let tlb = if !flush {
            vmcb::tlb::NONE
        } else if self.features.flush_by_asid {
            vmcb::tlb::FLUSH_ASID
        } else {
            vmcb::tlb::FLUSH_ALL
        };
        vcpu.run(self.host_vmcb, tlb)
    }
}
