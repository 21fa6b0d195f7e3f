//! A `Backend` without hardware: each vCPU is plain fields, and takes one
//! frame from the pool (as a VMCS or VMCB would), so that the frame
//! accounting of creating and closing vCPUs is the real one. It checks
//! nothing the hardware would (control-register fixed bits, segment
//! rules): the vendor-neutral code above it is what is under test.
//! `run` enters no guest; the hypercall target never calls it (`KVM_RUN`
//! is left out, see `super::hypercall`).

use crate::arch::msr;
use crate::mm::HostPhys;
use crate::virt::exit::{Exit, ExitInfo};
use crate::virt::{
    Backend, CrEffect, Fault, Frames, Gprs, GuestCpu, Segment, SegmentReg, SystemRegs, VirtError,
};

/// The back end: counts the vCPUs it has made and not yet destroyed.
#[derive(Debug, Default)]
pub struct FakeBackend {
    pub live_vcpus: u64,
}

/// A vCPU whose state is plain fields.
#[derive(Debug)]
pub struct FakeVcpu {
    /// The frame a VMCS / VMCB would be, given back by `destroy_vcpu`.
    frame: HostPhys,
    gprs: Gprs,
    rip: u64,
    rsp: u64,
    rflags: u64,
    sys: SystemRegs,
    cr2: u64,
    cr8: u64,
    pat: u64,
    tsc_offset: u64,
    dr6: u64,
    dr7: u64,
    /// SYSENTER_CS, _ESP, _EIP (the FS and GS bases are `sys`'s).
    sysenter: [u64; 3],
    injected: Option<Fault>,
    interrupt: Option<u8>,
    /// An NMI queued, and the guest inside its handler.
    nmi: bool,
    nmi_masked: bool,
    shadow: u8,
}

impl Backend for FakeBackend {
    type Vcpu = FakeVcpu;
    type Nested = crate::virt::vmx::ept::Ept;
    const NAME: &'static str = "fake";
    const SWITCHES_SYSCALL_MSRS: bool = false;
    const SWITCHES_CR2: bool = false;
    const SWITCHES_DR6: bool = false;

    fn enable(_frames: &mut Frames) -> Result<Self, VirtError> {
        Ok(Self::default())
    }

    fn describe(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        f.write_str("fake (host fuzzing, no hardware)")
    }

    fn create_vcpu(
        &mut self,
        frames: &mut Frames,
        _vm_id: u16,
        _nested_root: HostPhys,
        entry: u64,
        _open_ports: &[core::ops::RangeInclusive<u16>],
    ) -> Result<FakeVcpu, VirtError> {
        let frame = frames.alloc_zeroed().ok_or(VirtError::NoMemory)?;
        self.live_vcpus += 1;
        Ok(FakeVcpu {
            frame,
            gprs: Gprs::default(),
            rip: entry,
            rsp: 0,
            rflags: 2,
            sys: SystemRegs::default(),
            cr2: 0,
            cr8: 0,
            pat: 0x0007_0406_0007_0406,
            tsc_offset: 0,
            dr6: 0xffff_0ff0,
            dr7: 0x400,
            sysenter: [0; 3],
            injected: None,
            interrupt: None,
            nmi: false,
            nmi_masked: false,
            shadow: 0,
        })
    }

    fn destroy_vcpu(&mut self, frames: &mut Frames, vcpu: FakeVcpu) {
        frames.free(vcpu.frame);
        self.live_vcpus -= 1;
    }

    fn activate(&mut self, _vcpu: &mut FakeVcpu) -> bool {
        true
    }

    fn flush_nested(&mut self, _vcpu: &mut FakeVcpu) {}

    fn release(&mut self, _vcpu: &mut FakeVcpu) {}

    fn run(&mut self, _vcpu: &mut FakeVcpu, _new_context: bool) -> ExitInfo {
        // No guest to enter: a HLT exit, as if it halted at once.
        ExitInfo {
            exit: Exit::Hlt,
            len: Some(1),
        }
    }

    fn structures(
        &self,
        vcpu: Option<&FakeVcpu>,
        each: &mut dyn FnMut(&'static str, HostPhys, u64),
    ) {
        if let Some(v) = vcpu {
            each("fake vCPU", v.frame, 4096);
        }
    }
}

/// Whether `v` is a canonical 48-bit address.
fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

impl GuestCpu for FakeVcpu {
    fn gprs(&mut self) -> &mut Gprs {
        &mut self.gprs
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, rip: u64) {
        self.rip = rip;
    }
    fn rsp(&self) -> u64 {
        self.rsp
    }
    fn set_rsp(&mut self, rsp: u64) {
        self.rsp = rsp;
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.rflags = rflags;
    }
    fn cr0(&self) -> u64 {
        self.sys.cr0
    }
    fn cr3(&self) -> u64 {
        self.sys.cr3
    }
    fn cr4(&self) -> u64 {
        self.sys.cr4
    }
    fn efer(&self) -> u64 {
        self.sys.efer
    }
    fn set_efer(&mut self, efer: u64) {
        let lma = crate::arch::msr::efer::LMA;
        self.sys.efer = (efer & !lma) | (self.sys.efer & lma);
    }
    fn read_cr(&self, cr: u8) -> u64 {
        match cr {
            0 => self.sys.cr0,
            3 => self.sys.cr3,
            4 => self.sys.cr4,
            8 => self.cr8,
            _ => 0,
        }
    }
    fn write_cr(&mut self, cr: u8, value: u64) -> Result<CrEffect, Fault> {
        match cr {
            0 => self.sys.cr0 = value,
            3 => self.sys.cr3 = value,
            4 => self.sys.cr4 = value,
            8 if value <= 15 => self.cr8 = value,
            _ => return Err(Fault::GP0),
        }
        Ok(CrEffect::None)
    }
    fn set_pdptes(&mut self, _pdptes: [u64; 4]) {}
    fn set_cr2(&mut self, cr2: u64) {
        self.cr2 = cr2;
    }
    fn cr2(&self) -> u64 {
        self.cr2
    }
    fn hw_msr(&self, index: u32) -> Option<u64> {
        Some(match index {
            msr::IA32_SYSENTER_CS => self.sysenter[0],
            msr::IA32_SYSENTER_ESP => self.sysenter[1],
            msr::IA32_SYSENTER_EIP => self.sysenter[2],
            msr::IA32_FS_BASE => self.sys.fs.base,
            msr::IA32_GS_BASE => self.sys.gs.base,
            _ => return None,
        })
    }
    fn set_hw_msr(&mut self, index: u32, value: u64) -> bool {
        // As VMX: canonical addresses only, SYSENTER_CS 32 bits.
        if !canonical(value) || (index == msr::IA32_SYSENTER_CS && value >> 32 != 0) {
            return false;
        }
        let slot = match index {
            msr::IA32_SYSENTER_CS => &mut self.sysenter[0],
            msr::IA32_SYSENTER_ESP => &mut self.sysenter[1],
            msr::IA32_SYSENTER_EIP => &mut self.sysenter[2],
            msr::IA32_FS_BASE => &mut self.sys.fs.base,
            msr::IA32_GS_BASE => &mut self.sys.gs.base,
            _ => return false,
        };
        *slot = value;
        true
    }
    fn system_regs(&self) -> SystemRegs {
        self.sys
    }
    fn set_system_regs(&mut self, regs: &SystemRegs) -> Result<CrEffect, Fault> {
        self.sys = *regs;
        Ok(CrEffect::None)
    }
    fn pat(&self) -> u64 {
        self.pat
    }
    fn set_pat(&mut self, pat: u64) {
        self.pat = pat;
    }
    fn tsc_offset(&self) -> u64 {
        self.tsc_offset
    }
    fn set_tsc_offset(&mut self, offset: u64) {
        self.tsc_offset = offset;
    }
    fn segment(&self, reg: SegmentReg) -> Segment {
        let s = &self.sys;
        match reg {
            SegmentReg::Es => s.es,
            SegmentReg::Cs => s.cs,
            SegmentReg::Ss => s.ss,
            SegmentReg::Ds => s.ds,
            SegmentReg::Fs => s.fs,
            SegmentReg::Gs => s.gs,
            SegmentReg::Ldtr => s.ldtr,
            SegmentReg::Tr => s.tr,
        }
    }
    fn cpl(&self) -> u8 {
        ((self.sys.ss.ar >> 5) & 3) as u8
    }
    fn inject(&mut self, fault: Fault) {
        self.injected = Some(fault);
    }
    fn clear_interrupt_shadow(&mut self) {}
    fn interrupt_allowed(&self) -> bool {
        self.rflags & (1 << 9) != 0 && self.injected.is_none() && self.interrupt.is_none()
    }
    fn inject_interrupt(&mut self, vector: u8) {
        self.interrupt = Some(vector);
    }
    fn set_interrupt_window(&mut self, _on: bool) {}
    fn nmi_allowed(&mut self) -> bool {
        !self.nmi && !self.nmi_masked && self.injected.is_none() && self.interrupt.is_none()
    }
    fn inject_nmi(&mut self) {
        self.nmi = true;
        self.nmi_masked = true;
    }
    fn set_nmi_window(&mut self, _on: bool) {}
    fn nmi_window_exit(&mut self) {}
    fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }
    fn without_nmis(&mut self) {}
    fn nmi_capable(&self) -> bool {
        true
    }
    fn queued_event(&self) -> Option<crate::virt::Queued> {
        use crate::virt::Queued;
        if self.nmi {
            return Some(Queued::Nmi);
        }
        match (self.injected, self.interrupt) {
            (Some(f), _) => Some(Queued::Exception {
                vector: f.vector,
                error: f.error,
            }),
            (None, Some(vector)) => Some(Queued::Interrupt {
                vector,
                soft: false,
            }),
            (None, None) => None,
        }
    }
    fn interrupt_shadow(&self) -> u8 {
        self.shadow
    }
    fn set_interrupt_shadow(&mut self, shadow: u8) {
        self.shadow = shadow;
    }
    fn set_nmi_masked(&mut self, masked: bool) {
        self.nmi_masked = masked;
    }
    fn set_exception_intercept(&mut self, _vector: u8, _on: bool) {}
    fn arm_single_step(&mut self) {
        self.rflags |= 1 << 8;
    }
    fn disarm_single_step(&mut self, guest_tf: bool) {
        if !guest_tf {
            self.rflags &= !(1 << 8);
        }
    }
    fn set_int_n_intercept(&mut self, _on: bool) {}
    fn inject_software_interrupt(&mut self, _vector: u8, len: u8) {
        self.rip = self.rip.wrapping_add(u64::from(len));
    }
    fn dr7(&self) -> u64 {
        self.dr7
    }
    fn set_dr7(&mut self, dr7: u64) {
        self.dr7 = dr7;
    }
    fn dr6(&self) -> u64 {
        self.dr6
    }
    fn set_dr6(&mut self, dr6: u64) {
        self.dr6 = dr6;
    }
    fn set_cr8_write_intercept(&mut self, _on: bool) {}
    fn cancel_event(&mut self) {
        self.injected = None;
        self.interrupt = None;
        self.nmi = false;
    }
    fn set_dr_intercept(&mut self, _on: bool) {}
}
