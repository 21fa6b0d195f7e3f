//! One SVM vCPU: its VMCB and permission maps, the VMCB set-up for the
//! architectural real-mode start state, and the state accessors the
//! vendor-neutral handlers use.

use super::vmcb::{self, NP_ENABLE, Vmcb, VmcbSegment, event, misc1, misc2, vintr};
use super::{Features, entry, exit};
use crate::arch::instr::write_dr7;
use crate::arch::msr::{self, efer};
use crate::mm::{HostPhys, phys};
use crate::virt::regs::Segment;
use crate::virt::{CrEffect, ExitInfo, Fault, Frames, Gprs, GuestCpu, SegmentReg, VirtError};
use crate::virt::{DescTable, SystemRegs};

/// I/O permission map: 12 KiB (APM Vol. 2 15.10.1); MSR permission map:
/// 8 KiB (15.11).
pub(super) const IOPM_FRAMES: u64 = 3;
pub(super) const MSRPM_FRAMES: u64 = 2;

const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_PGE: u64 = 1 << 7;
const CR4_PCIDE: u64 = 1 << 17;
const CR4_SMEP: u64 = 1 << 20;
/// Guest PAT at reset (APM Vol. 2 7.8.2).
const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// DR6 and DR7 at reset.
const DR6_RESET: u64 = 0xffff_0ff0;
const DR7_RESET: u64 = 0x400;
/// DR7 bits 7:0: the breakpoint enables.
const DR7_ENABLES: u64 = 0xff;

/// The I/O permission map (intercept every port) and the MSR permission
/// map (intercept all but `vcpu::msr::PASSTHROUGH`), shared by every vCPU:
/// the policy is the same for all.
pub struct PermissionMaps {
    iopm: HostPhys,
    msrpm: HostPhys,
}

impl PermissionMaps {
    /// Maps that intercept everything but the MSRs in
    /// `vcpu::msr::PASSTHROUGH` and the ports in `open_ports`.
    pub fn new(
        frames: &mut Frames,
        open_ports: &[core::ops::RangeInclusive<u16>],
    ) -> Result<Self, VirtError> {
        let iopm = frames
            .alloc_contiguous(IOPM_FRAMES)
            .ok_or(VirtError::NoMemory)?;
        let Some(msrpm) = frames.alloc_contiguous(MSRPM_FRAMES) else {
            for i in 0..IOPM_FRAMES {
                frames.free(HostPhys::new(iopm.raw() + i * 4096));
            }
            return Err(VirtError::NoMemory);
        };
        // SAFETY: the maps were just allocated, contiguous, for this use only.
        unsafe {
            core::ptr::write_bytes(phys::ptr::<u8>(iopm), 0xff, (IOPM_FRAMES * 4096) as usize);
            core::ptr::write_bytes(phys::ptr::<u8>(msrpm), 0xff, (MSRPM_FRAMES * 4096) as usize);
            for &m in crate::vcpu::msr::PASSTHROUGH {
                if let Some((byte, bit)) = vmcb::msrpm_bits(m) {
                    *phys::ptr::<u8>(msrpm).add(byte) &= !(0b11 << bit);
                }
            }
            // One bit per port (APM Vol. 2 15.10.1).
            for port in open_ports.iter().cloned().flatten() {
                let bit = usize::from(port);
                *phys::ptr::<u8>(iopm).add(bit / 8) &= !(1 << (bit % 8));
            }
        }
        Ok(Self { iopm, msrpm })
    }

    /// Names the maps (`Backend::structures`).
    pub fn structures(&self, each: &mut dyn FnMut(&'static str, HostPhys, u64)) {
        each("IOPM", self.iopm, IOPM_FRAMES * 4096);
        each("MSRPM", self.msrpm, MSRPM_FRAMES * 4096);
    }

    pub fn free(self, frames: &mut Frames) {
        for i in 0..IOPM_FRAMES {
            frames.free(HostPhys::new(self.iopm.raw() + i * 4096));
        }
        for i in 0..MSRPM_FRAMES {
            frames.free(HostPhys::new(self.msrpm.raw() + i * 4096));
        }
    }
}

pub struct SvmVcpu {
    pub(super) vmcb: HostPhys,
    /// The VMCB's address in the physical-memory window, found once: the
    /// exit path reads the VMCB dozens of times, and each `phys::ptr` is an
    /// atomic load of the window's offset that the compiler cannot merge.
    vmcb_va: u64,
    /// Maps of its own, where it reaches ports others may not.
    own_maps: Option<PermissionMaps>,
    gprs: Gprs,
    nrip_save: bool,
    /// CR4 bits the guest may set (`Svm::cr4_allowed`).
    cr4_allowed: u64,
    /// The guest changed CR4 in a way that flushes its TLB.
    pub(super) flush_on_entry: bool,
    /// The CPU (`arch::percpu::index`) it last ran on: its ASID's TLB
    /// entries on another CPU may be stale (APM Vol. 2 15.16).
    pub(super) cpu: usize,
    /// The guest is inside an NMI handler: without vNMI the VMCB does not
    /// say, so this is kept from the injection (which blocks NMIs until
    /// IRET) to the IRET, intercepted meanwhile (as KVM's `HF_NMI_MASK`).
    nmi_masked: bool,
    /// The RIP of that intercepted IRET: NMIs are unblocked once the guest
    /// is past it (it executes after the intercept).
    iret_at: Option<u64>,
}

impl SvmVcpu {
    /// Names its VMCB and its own maps (`Backend::structures`).
    pub(super) fn structures(&self, each: &mut dyn FnMut(&'static str, HostPhys, u64)) {
        each("VMCB", self.vmcb, 4096);
        if let Some(m) = &self.own_maps {
            m.structures(each);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        frames: &mut Frames,
        features: &Features,
        shared_maps: &PermissionMaps,
        open_ports: &[core::ops::RangeInclusive<u16>],
        cr4_allowed: u64,
        asid: u32,
        nested_root: HostPhys,
        entry: u64,
    ) -> Result<Self, VirtError> {
        let own_maps = if open_ports.is_empty() {
            None
        } else {
            Some(PermissionMaps::new(frames, open_ports)?)
        };
        let Some(vmcb) = frames.alloc_zeroed() else {
            if let Some(m) = own_maps {
                m.free(frames);
            }
            return Err(VirtError::NoMemory);
        };
        let mut v = Self {
            vmcb,
            vmcb_va: phys::to_virt(vmcb).raw(),
            own_maps,
            gprs: Gprs::default(),
            nrip_save: features.nrip_save,
            cr4_allowed,
            flush_on_entry: false,
            cpu: crate::arch::percpu::index(),
            nmi_masked: false,
            iret_at: None,
        };
        let (iopm, msrpm) = match &v.own_maps {
            Some(m) => (m.iopm, m.msrpm),
            None => (shared_maps.iopm, shared_maps.msrpm),
        };
        v.init_vmcb(features, iopm, msrpm, asid, nested_root, entry);
        Ok(v)
    }

    pub(super) fn free(self, frames: &mut Frames) {
        frames.free(self.vmcb);
        if let Some(m) = self.own_maps {
            m.free(frames);
        }
    }

    fn vmcb(&self) -> &Vmcb {
        // SAFETY: `vmcb_va` maps the VMCB frame, which belongs to this vCPU;
        // the hardware writes it only inside `run`, which holds `&mut self`.
        unsafe { &*(self.vmcb_va as *const Vmcb) }
    }

    fn vmcb_mut(&mut self) -> &mut Vmcb {
        // SAFETY: as in `vmcb`, and `&mut self` makes the access exclusive.
        unsafe { &mut *(self.vmcb_va as *mut Vmcb) }
    }

    /// The architectural reset state in real mode at 0:`entry` (APM Vol. 2
    /// 14.1.3 "Processor Initialization State").
    fn init_vmcb(
        &mut self,
        features: &Features,
        iopm: HostPhys,
        msrpm: HostPhys,
        asid: u32,
        nested_root: HostPhys,
        entry: u64,
    ) {
        let (iopm, msrpm) = (iopm.raw(), msrpm.raw());
        let v = self.vmcb_mut();
        let c = &mut v.control;
        // CR4 writes are checked against what a guest may own (VMX masks the
        // same bits); CR0 and CR3 stay the guest's own.
        c.intercept_cr = vmcb::CR4_WRITE_INTERCEPT;
        c.intercept_exceptions = crate::vcpu::INTERCEPTED_EXCEPTIONS as u32;
        c.intercept_misc1 = misc1::INTR
            | misc1::NMI
            | misc1::SMI
            | misc1::INIT
            | misc1::CPUID
            | misc1::RDPMC
            | misc1::INVD
            | misc1::HLT
            | misc1::INVLPGA
            | misc1::IOIO_PROT
            | misc1::MSR_PROT
            | misc1::FERR_FREEZE
            | misc1::SHUTDOWN;
        c.intercept_misc2 = misc2::VMRUN
            | misc2::VMMCALL
            | misc2::VMLOAD
            | misc2::VMSAVE
            | misc2::STGI
            | misc2::CLGI
            | misc2::SKINIT
            | misc2::MONITOR
            | misc2::MWAIT
            | misc2::MWAIT_CONDITIONAL
            | misc2::XSETBV;
        c.iopm_base_pa = iopm;
        c.msrpm_base_pa = msrpm;
        c.guest_asid = asid;
        c.tlb_control = vmcb::tlb::FLUSH_ALL;
        // Virtual interrupt masking: the guest's CR8 and IF act on virtual
        // interrupts only, never on the host's.
        c.vintr = vintr::V_INTR_MASKING;
        if features.vgif {
            c.vintr |= vintr::V_GIF_ENABLE | vintr::V_GIF;
        }
        c.np_control = NP_ENABLE;
        c.n_cr3 = nested_root.raw();
        let s = &mut v.save;
        let real = |ar: u32| VmcbSegment {
            selector: 0,
            attrib: Segment::to_svm_attrib(ar),
            limit: 0xffff,
            base: 0,
        };
        s.cs = real(Segment::REAL_CODE_AR);
        for seg in [&mut s.es, &mut s.ss, &mut s.ds, &mut s.fs, &mut s.gs] {
            *seg = real(Segment::REAL_DATA_AR);
        }
        s.ldtr = real(Segment::LDT_AR);
        s.tr = real(Segment::TSS_BUSY_AR);
        s.gdtr = VmcbSegment {
            limit: 0xffff,
            ..Default::default()
        };
        s.idtr = VmcbSegment {
            limit: 0xffff,
            ..Default::default()
        };
        s.cpl = 0;
        // EFER.SVME must be set in a guest's EFER (APM Vol. 2 15.5.1); the
        // guest never sees it (MSR handler).
        s.efer = efer::SVME;
        s.cr0 = 0x10;
        s.cr3 = 0;
        s.cr4 = 0;
        s.dr6 = DR6_RESET;
        s.dr7 = DR7_RESET;
        s.rflags = 2;
        s.rip = entry;
        s.rsp = 0;
        s.g_pat = PAT_RESET;
    }

    /// Enters the guest once and translates the exit.
    #[inline(always)]
    pub(super) fn run(&mut self, host_vmcb: HostPhys, tlb_control: u8) -> ExitInfo {
        let rax = self.gprs.rax;
        let v = self.vmcb_mut();
        v.save.rax = rax;
        v.control.tlb_control = tlb_control;
        let vmcb_pa = self.vmcb.raw();
        // SAFETY: SVM is on, the VMCB is initialised and `host_vmcb` holds
        // the host's VMSAVE state (`Svm::enable`).
        unsafe { entry::enter(&mut self.gprs, vmcb_pa, host_vmcb.raw()) };
        let nrip_save = self.nrip_save;
        let v = self.vmcb_mut();
        let rax = v.save.rax;
        // The guest's breakpoints must not fire in the hypervisor.
        if v.save.dr7 & DR7_ENABLES != 0 {
            // SAFETY: disabling every breakpoint is always safe.
            unsafe { write_dr7(DR7_RESET) };
        }
        // Re-deliver an event whose delivery the exit interrupted (APM Vol. 2
        // 15.7.2); EVENTINJ itself was consumed by VMRUN.
        v.control.event_inj = if v.control.exit_int_info & event::VALID != 0 {
            v.control.exit_int_info
        } else {
            0
        };
        let info = exit::read(v, nrip_save);
        self.gprs.rax = rax;
        info
    }
}

impl GuestCpu for SvmVcpu {
    fn gprs(&mut self) -> &mut Gprs {
        &mut self.gprs
    }
    fn rip(&self) -> u64 {
        self.vmcb().save.rip
    }
    fn set_rip(&mut self, rip: u64) {
        self.vmcb_mut().save.rip = rip;
    }
    fn rsp(&self) -> u64 {
        self.vmcb().save.rsp
    }
    fn set_rsp(&mut self, rsp: u64) {
        self.vmcb_mut().save.rsp = rsp;
    }
    fn rflags(&self) -> u64 {
        self.vmcb().save.rflags
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.vmcb_mut().save.rflags = rflags;
    }
    fn cr0(&self) -> u64 {
        self.vmcb().save.cr0
    }
    fn cr3(&self) -> u64 {
        self.vmcb().save.cr3
    }
    fn cr4(&self) -> u64 {
        self.vmcb().save.cr4
    }
    fn read_cr(&self, cr: u8) -> u64 {
        match cr {
            0 => self.cr0(),
            3 => self.cr3(),
            4 => self.cr4(),
            8 => self.vmcb().control.vintr & vintr::V_TPR_MASK,
            _ => 0,
        }
    }
    fn efer(&self) -> u64 {
        self.vmcb().save.efer & !efer::SVME
    }
    fn set_efer(&mut self, value: u64) {
        let s = &mut self.vmcb_mut().save;
        s.efer = (value & !efer::LMA) | (s.efer & efer::LMA) | efer::SVME;
    }
    fn write_cr(&mut self, cr: u8, value: u64) -> Result<CrEffect, Fault> {
        // Only CR4 writes are intercepted on SVM (nested paging and
        // V_INTR_MASKING leave CR0, CR3 and CR8 to the guest): the rest serves
        // the vendor-neutral interface with the checks the hardware applies.
        match cr {
            0 => {
                if value >> 32 != 0 || (value & CR0_PG != 0 && value & CR0_PE == 0) {
                    return Err(Fault::GP0);
                }
                self.vmcb_mut().save.cr0 = value;
                Ok(CrEffect::None)
            }
            3 => {
                self.vmcb_mut().save.cr3 = value;
                Ok(CrEffect::None)
            }
            4 => {
                // SDM Vol. 2B / APM Vol. 2 3.1.3: reserved or unoffered bits,
                // clearing PAE in long mode, PCIDE outside long mode or with
                // CR3[11:0] set all fault.
                let long = self.efer() & efer::LMA != 0;
                let old = self.cr4();
                if value & !self.cr4_allowed != 0
                    || (value & CR4_PAE == 0 && long)
                    || (value & CR4_PCIDE != 0
                        && old & CR4_PCIDE == 0
                        && (!long || self.cr3() & 0xfff != 0))
                {
                    return Err(Fault::GP0);
                }
                // Changing paging-structure bits flushes the TLB (SDM Vol. 3A 4.10.4.1).
                if (old ^ value) & (CR4_PAE | CR4_PGE | CR4_PSE | CR4_PCIDE | CR4_SMEP) != 0 {
                    self.flush_on_entry = true;
                }
                self.vmcb_mut().save.cr4 = value;
                Ok(CrEffect::None)
            }
            8 if value <= 15 => {
                let c = &mut self.vmcb_mut().control;
                c.vintr = (c.vintr & !vintr::V_TPR_MASK) | value;
                Ok(CrEffect::None)
            }
            8 => Err(Fault::GP0),
            _ => Err(Fault::UD),
        }
    }
    fn set_pdptes(&mut self, _pdptes: [u64; 4]) {
        // Nested paging reads the guest's PDPTEs itself.
    }
    fn pat(&self) -> u64 {
        self.vmcb().save.g_pat
    }
    fn set_pat(&mut self, pat: u64) {
        self.vmcb_mut().save.g_pat = pat;
    }
    fn tsc_offset(&self) -> u64 {
        self.vmcb().control.tsc_offset
    }
    fn set_tsc_offset(&mut self, offset: u64) {
        self.vmcb_mut().control.tsc_offset = offset;
    }
    fn hw_msr(&self, index: u32) -> Option<u64> {
        let s = &self.vmcb().save;
        Some(match index {
            msr::IA32_STAR => s.star,
            msr::IA32_LSTAR => s.lstar,
            msr::IA32_CSTAR => s.cstar,
            msr::IA32_FMASK => s.sfmask,
            msr::IA32_KERNEL_GS_BASE => s.kernel_gs_base,
            msr::IA32_SYSENTER_CS => s.sysenter_cs,
            msr::IA32_SYSENTER_ESP => s.sysenter_esp,
            msr::IA32_SYSENTER_EIP => s.sysenter_eip,
            msr::IA32_FS_BASE => s.fs.base,
            msr::IA32_GS_BASE => s.gs.base,
            _ => return None,
        })
    }
    fn set_hw_msr(&mut self, index: u32, value: u64) -> bool {
        let canonical = ((value as i64) << 16 >> 16) as u64 == value;
        let s = &mut self.vmcb_mut().save;
        let slot = match index {
            msr::IA32_STAR => &mut s.star,
            msr::IA32_LSTAR => &mut s.lstar,
            msr::IA32_CSTAR => &mut s.cstar,
            msr::IA32_FMASK => &mut s.sfmask,
            msr::IA32_KERNEL_GS_BASE => &mut s.kernel_gs_base,
            msr::IA32_SYSENTER_CS => &mut s.sysenter_cs,
            msr::IA32_SYSENTER_ESP => &mut s.sysenter_esp,
            msr::IA32_SYSENTER_EIP => &mut s.sysenter_eip,
            msr::IA32_FS_BASE => &mut s.fs.base,
            msr::IA32_GS_BASE => &mut s.gs.base,
            _ => return false,
        };
        let ok = match index {
            msr::IA32_STAR => true,
            msr::IA32_FMASK | msr::IA32_SYSENTER_CS => value >> 32 == 0,
            _ => canonical,
        };
        if ok {
            *slot = value;
        }
        ok
    }
    fn cr2(&self) -> u64 {
        self.vmcb().save.cr2
    }
    fn set_cr2(&mut self, cr2: u64) {
        self.vmcb_mut().save.cr2 = cr2;
    }
    fn system_regs(&self) -> SystemRegs {
        let seg = |r| self.segment(r);
        let s = &self.vmcb().save;
        SystemRegs {
            cs: seg(SegmentReg::Cs),
            ds: seg(SegmentReg::Ds),
            es: seg(SegmentReg::Es),
            fs: seg(SegmentReg::Fs),
            gs: seg(SegmentReg::Gs),
            ss: seg(SegmentReg::Ss),
            tr: seg(SegmentReg::Tr),
            ldtr: seg(SegmentReg::Ldtr),
            gdt: DescTable {
                base: s.gdtr.base,
                limit: s.gdtr.limit as u16,
            },
            idt: DescTable {
                base: s.idtr.base,
                limit: s.idtr.limit as u16,
            },
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer & !efer::SVME,
        }
    }
    fn set_system_regs(&mut self, r: &SystemRegs) -> Result<CrEffect, Fault> {
        if r.cr0 >> 32 != 0 || r.cr4 & !self.cr4_allowed != 0 {
            return Err(Fault::GP0);
        }
        let v = |seg: Segment| VmcbSegment {
            selector: seg.selector,
            // An unusable segment (VMX's bit 16) is a non-present one here.
            attrib: if seg.ar & (1 << 16) != 0 {
                0
            } else {
                Segment::to_svm_attrib(seg.ar)
            },
            limit: seg.limit,
            base: seg.base,
        };
        let s = &mut self.vmcb_mut().save;
        s.cs = v(r.cs);
        s.ds = v(r.ds);
        s.es = v(r.es);
        s.fs = v(r.fs);
        s.gs = v(r.gs);
        s.ss = v(r.ss);
        s.tr = v(r.tr);
        s.ldtr = v(r.ldtr);
        s.gdtr = VmcbSegment {
            limit: u32::from(r.gdt.limit),
            base: r.gdt.base,
            ..Default::default()
        };
        s.idtr = VmcbSegment {
            limit: u32::from(r.idt.limit),
            base: r.idt.base,
            ..Default::default()
        };
        // APM Vol. 2 15.5.1: CPL is SS.DPL.
        s.cpl = ((r.ss.ar >> 5) & 3) as u8;
        s.cr0 = r.cr0;
        s.cr3 = r.cr3;
        s.cr4 = r.cr4;
        s.efer = r.efer | efer::SVME;
        self.flush_on_entry = true;
        Ok(CrEffect::None)
    }
    fn segment(&self, reg: SegmentReg) -> Segment {
        let s = &self.vmcb().save;
        let seg = match reg {
            SegmentReg::Es => s.es,
            SegmentReg::Cs => s.cs,
            SegmentReg::Ss => s.ss,
            SegmentReg::Ds => s.ds,
            SegmentReg::Fs => s.fs,
            SegmentReg::Gs => s.gs,
            SegmentReg::Ldtr => s.ldtr,
            SegmentReg::Tr => s.tr,
        };
        Segment {
            selector: seg.selector,
            base: seg.base,
            limit: seg.limit,
            ar: Segment::from_svm_attrib(seg.attrib),
        }
    }
    fn cpl(&self) -> u8 {
        self.vmcb().save.cpl
    }
    fn inject(&mut self, fault: Fault) {
        let protected = self.cr0() & CR0_PE != 0;
        let mut ev = event::VALID | event::TYPE_EXCEPTION | u64::from(fault.vector);
        // Real mode pushes no error codes.
        if let Some(code) = fault.error
            && protected
        {
            ev |= event::ERROR_VALID | (u64::from(code) << 32);
        }
        self.vmcb_mut().control.event_inj = ev;
    }
    fn clear_interrupt_shadow(&mut self) {
        self.vmcb_mut().control.interrupt_shadow = 0;
    }
    fn interrupt_allowed(&self) -> bool {
        // APM Vol. 2 15.20: EVENTINJ of an external interrupt is taken
        // regardless of IF, so check it here: IF (RFLAGS bit 9) = 1, no
        // shadow, nothing queued.
        let v = self.vmcb();
        v.save.rflags & (1 << 9) != 0
            && v.control.interrupt_shadow & 1 == 0
            && v.control.event_inj & event::VALID == 0
    }
    fn cancel_event(&mut self) {
        self.vmcb_mut().control.event_inj = 0;
    }
    fn inject_interrupt(&mut self, vector: u8) {
        self.vmcb_mut().control.event_inj = event::VALID | event::TYPE_INTR | u64::from(vector);
    }
    fn set_exception_intercept(&mut self, vector: u8, on: bool) {
        let always = crate::vcpu::INTERCEPTED_EXCEPTIONS as u32;
        let bit = 1u32 << (vector & 31);
        let c = &mut self.vmcb_mut().control;
        c.intercept_exceptions = if on {
            c.intercept_exceptions | bit
        } else {
            (c.intercept_exceptions & !bit) | (always & bit)
        };
    }
    fn arm_single_step(&mut self) {
        // RFLAGS.TF (bit 8): the trap comes after the next instruction, also
        // inside an interrupt shadow.
        self.vmcb_mut().save.rflags |= 1 << 8;
    }
    fn disarm_single_step(&mut self, guest_tf: bool) {
        if !guest_tf {
            self.vmcb_mut().save.rflags &= !(1 << 8);
        }
    }
    fn set_int_n_intercept(&mut self, on: bool) {
        let c = &mut self.vmcb_mut().control;
        if on {
            c.intercept_misc1 |= misc1::INTN;
        } else {
            c.intercept_misc1 &= !misc1::INTN;
        }
    }
    fn inject_software_interrupt(&mut self, vector: u8, len: u8) {
        // APM Vol. 2 15.20: a software interrupt (type 4) pushes the RIP in
        // the VMCB as its return address: past the instruction.
        let rip = self.vmcb().save.rip.wrapping_add(u64::from(len));
        let v = self.vmcb_mut();
        v.save.rip = rip;
        // With NRIP save the CPU takes the return address from next_rip.
        v.control.next_rip = rip;
        v.control.event_inj = event::VALID | event::TYPE_SOFTWARE_INTERRUPT | u64::from(vector);
    }
    fn dr7(&self) -> u64 {
        self.vmcb().save.dr7
    }
    fn set_dr7(&mut self, dr7: u64) {
        self.vmcb_mut().save.dr7 = dr7;
    }
    fn dr6(&self) -> u64 {
        self.vmcb().save.dr6
    }
    fn set_dr6(&mut self, dr6: u64) {
        self.vmcb_mut().save.dr6 = dr6;
    }
    fn set_cr8_write_intercept(&mut self, on: bool) {
        let c = &mut self.vmcb_mut().control;
        if on {
            c.intercept_cr |= vmcb::CR8_WRITE_INTERCEPT;
        } else {
            c.intercept_cr &= !vmcb::CR8_WRITE_INTERCEPT;
        }
    }
    fn set_dr_intercept(&mut self, on: bool) {
        // Reads are bits 7:0, writes 23:16 (DR0–DR7; APM Vol. 2 15.12).
        self.vmcb_mut().control.intercept_dr = if on { 0x00ff_00ff } else { 0 };
    }
    fn nmi_allowed(&mut self) -> bool {
        if self.nmi_masked
            && let Some(at) = self.iret_at
            && self.vmcb().save.rip != at
        {
            self.nmi_masked = false;
            self.iret_at = None;
        }
        let v = self.vmcb();
        !self.nmi_masked
            && v.control.interrupt_shadow & 1 == 0
            && v.control.event_inj & event::VALID == 0
    }
    fn inject_nmi(&mut self) {
        self.nmi_masked = true;
        self.iret_at = None;
        let c = &mut self.vmcb_mut().control;
        c.event_inj = event::VALID | event::TYPE_NMI | 2;
        c.intercept_misc1 |= misc1::IRET;
    }
    fn set_nmi_window(&mut self, _on: bool) {
        // The IRET intercept is on while the guest is inside an NMI handler;
        // a shadow or a queued event is gone by the next exit.
    }
    fn nmi_window_exit(&mut self) {
        // The IRET runs on re-entry; NMIs stay blocked until RIP moves.
        self.iret_at = Some(self.vmcb().save.rip);
        self.vmcb_mut().control.intercept_misc1 &= !misc1::IRET;
    }
    fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }
    fn without_nmis(&mut self) {}
    fn nmi_capable(&self) -> bool {
        true
    }
    fn queued_event(&self) -> Option<crate::virt::Queued> {
        use crate::virt::Queued;
        let ev = self.vmcb().control.event_inj;
        if ev & event::VALID == 0 {
            return None;
        }
        let vector = ev as u8;
        // APM Vol. 2 15.20: EVENTINJ's types.
        Some(match ev & event::TYPE_MASK {
            event::TYPE_INTR => Queued::Interrupt {
                vector,
                soft: false,
            },
            event::TYPE_NMI => Queued::Nmi,
            event::TYPE_SOFTWARE_INTERRUPT => Queued::Interrupt { vector, soft: true },
            _ => Queued::Exception {
                vector,
                error: (ev & event::ERROR_VALID != 0).then_some((ev >> 32) as u32),
            },
        })
    }
    fn interrupt_shadow(&self) -> u8 {
        // One bit for both kinds (APM Vol. 2 15.21.5): reported as both,
        // as KVM does.
        if self.vmcb().control.interrupt_shadow & 1 != 0 {
            3
        } else {
            0
        }
    }
    fn set_interrupt_shadow(&mut self, shadow: u8) {
        self.vmcb_mut().control.interrupt_shadow = u64::from(shadow & 3 != 0);
    }
    fn set_nmi_masked(&mut self, masked: bool) {
        self.nmi_masked = masked;
        self.iret_at = None;
        let c = &mut self.vmcb_mut().control;
        if masked {
            c.intercept_misc1 |= misc1::IRET;
        } else {
            c.intercept_misc1 &= !misc1::IRET;
        }
    }
    fn set_interrupt_window(&mut self, on: bool) {
        // APM Vol. 2 15.21.4: a virtual interrupt (V_IRQ) with VINTR
        // intercepted exits as soon as the guest could take it.
        let c = &mut self.vmcb_mut().control;
        if on {
            c.vintr |= vintr::V_IRQ | vintr::V_IGN_TPR;
            c.intercept_misc1 |= misc1::VINTR;
        } else {
            c.vintr &= !(vintr::V_IRQ | vintr::V_IGN_TPR);
            c.intercept_misc1 &= !misc1::VINTR;
        }
    }
}
