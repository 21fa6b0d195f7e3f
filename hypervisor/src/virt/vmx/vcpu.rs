//! One VMX vCPU: its VMCS, bitmaps and register file, the VMCS set-up for
//! the architectural real-mode start state, and the state accessors the
//! vendor-neutral handlers use.

use super::vmcs::{self, Field, ctl};
use super::{Controls, entry, exit};
use crate::arch::instr::{rdmsr, read_cr0, read_cr3, read_cr4, write_cr2};
use crate::arch::msr::{self, efer};
use crate::mm::{HostPhys, phys};
use crate::virt::regs::Segment;
use crate::virt::{CrEffect, ExitInfo, Fault, Frames, Gprs, GuestCpu, SegmentReg, VirtError};
use crate::virt::{DescTable, SystemRegs};

const CR0_PE: u64 = 1 << 0;
const CR0_NE: u64 = 1 << 5;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_PCIDE: u64 = 1 << 17;

/// CR4 bits a guest may own (SDM Vol. 3A 2.5): VME PVI TSD DE PSE PAE MCE
/// PGE PCE OSFXSR OSXMMEXCPT UMIP FSGSBASE PCIDE OSXSAVE SMEP SMAP. Not
/// VMXE, SMXE, LA57, PKE or CET: those features are not offered.
pub const GUEST_CR4_ALLOWED: u64 =
    0x7ff | (1 << 11) | (1 << 16) | (1 << 17) | (1 << 18) | (1 << 20) | (1 << 21);

/// Guest PAT at reset (SDM Vol. 3A 12.12.4).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// DR7 at reset.
const DR7_RESET: u64 = 0x400;
/// VM-entry interruption information (SDM Vol. 3C 25.8.3): valid bit 31,
/// deliver-error-code bit 11, type bits 10:8 (3 = hardware exception).
const INTR_VALID: u32 = 1 << 31;
const INTR_ERROR_CODE: u32 = 1 << 11;
const INTR_TYPE_HW_EXCEPTION: u32 = 3 << 8;
/// Type 0: external interrupt.
const INTR_TYPE_EXTERNAL: u32 = 0;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;
/// Blocking by STI / MOV SS (guest interruptibility bits 0 and 1).
const BLOCKING_STI_MOVSS: u64 = 3;
/// Blocking by NMI (virtual-NMI blocking with virtual NMIs; interruptibility
/// bit 3, SDM Vol. 3C 25.4.2).
const BLOCKING_NMI: u64 = 1 << 3;
/// Interruption type NMI (SDM Vol. 3C 25.8.3), vector 2.
const INTR_TYPE_NMI: u32 = 2 << 8;
const NMI_VECTOR: u32 = 2;

pub struct VmxVcpu {
    pub(super) vmcs: HostPhys,
    msr_bitmap: HostPhys,
    io_bitmap_a: HostPhys,
    io_bitmap_b: HostPhys,
    pub(super) vpid: u16,
    pub(super) eptp: u64,
    gprs: Gprs,
    pub(super) launched: bool,
    /// The CPU (`arch::percpu::index`) whose host state the VMCS holds.
    pub(super) cpu: usize,
    cr0_mask: u64,
    cr4_mask: u64,
    cr0_fixed0: u64,
    cr0_fixed1: u64,
    cr4_fixed0: u64,
    entry_controls: u32,
    /// Virtual NMIs and NMI-window exiting are on (`Controls::guest_nmis`).
    guest_nmis: bool,
    tpr: u8,
    /// The guest changed paging mode in a way a real MOV CR0 would flush
    /// the TLB for.
    pub(super) flush_on_entry: bool,
    /// A nested mapping was removed (`Backend::flush_nested`): INVEPT on
    /// the next entry.
    pub(super) flush_ept_on_entry: bool,
}

/// Where an MSR's read and write intercept bits live in the 4 KiB VMX MSR
/// bitmap (SDM Vol. 3C 25.6.9): read-low at 0, read-high at 1024, write-low
/// at 2048, write-high at 3072. Returns (byte, bit), or None for MSRs
/// outside both ranges (those always exit).
pub fn msr_bitmap_bit(msr: u32, write: bool) -> Option<(usize, u8)> {
    let (base, index) = match msr {
        0..=0x1fff => (0, msr),
        0xc000_0000..=0xc000_1fff => (1024, msr - 0xc000_0000),
        _ => return None,
    };
    let base = base + if write { 2048 } else { 0 };
    Some((base + (index / 8) as usize, (index % 8) as u8))
}

impl VmxVcpu {
    /// Names its VMCS and bitmaps (`Backend::structures`).
    pub(super) fn structures(&self, each: &mut dyn FnMut(&'static str, HostPhys, u64)) {
        each("VMCS", self.vmcs, 4096);
        each("MSR bitmap", self.msr_bitmap, 4096);
        each("I/O bitmap A", self.io_bitmap_a, 4096);
        each("I/O bitmap B", self.io_bitmap_b, 4096);
    }

    pub(super) fn new(
        frames: &mut Frames,
        c: &Controls,
        vm_id: u16,
        nested_root: HostPhys,
        open_ports: &[core::ops::RangeInclusive<u16>],
    ) -> Result<Self, VirtError> {
        let mut got = [HostPhys::new(0); 4];
        for i in 0..got.len() {
            match frames.alloc_zeroed() {
                Some(f) => got[i] = f,
                None => {
                    for f in &got[..i] {
                        frames.free(*f);
                    }
                    return Err(VirtError::NoMemory);
                }
            }
        }
        let [vmcs, msr_bitmap, io_bitmap_a, io_bitmap_b] = got;
        // SAFETY: all four frames were just allocated for this vCPU alone.
        unsafe {
            phys::ptr::<u32>(vmcs).write(c.revision);
            // Intercept every port and every MSR, then open the MSRs whose
            // state the hardware or the lazy switch keeps per vCPU.
            core::ptr::write_bytes(phys::ptr::<u8>(io_bitmap_a), 0xff, 4096);
            core::ptr::write_bytes(phys::ptr::<u8>(io_bitmap_b), 0xff, 4096);
            core::ptr::write_bytes(phys::ptr::<u8>(msr_bitmap), 0xff, 4096);
            // Bitmap A covers ports 0x0000-0x7fff, B 0x8000-0xffff, one bit
            // each (SDM Vol. 3C 25.6.4).
            for port in open_ports.iter().cloned().flatten() {
                let map = if port < 0x8000 {
                    io_bitmap_a
                } else {
                    io_bitmap_b
                };
                let bit = usize::from(port % 0x8000);
                *phys::ptr::<u8>(map).add(bit / 8) &= !(1 << (bit % 8));
            }
            for &m in crate::vcpu::msr::PASSTHROUGH {
                for write in [false, true] {
                    if let Some((byte, bit)) = msr_bitmap_bit(m, write) {
                        *phys::ptr::<u8>(msr_bitmap).add(byte) &= !(1 << bit);
                    }
                }
            }
        }
        let cr0_fixed1 = c.cr0_fixed1 & 0xffff_ffff;
        Ok(Self {
            vmcs,
            msr_bitmap,
            io_bitmap_a,
            io_bitmap_b,
            // VPID 0 is the host's (SDM Vol. 3C 25.6.12): VM ids start at 0.
            vpid: (vm_id % 0xffff) + 1,
            eptp: super::ept::eptp(nested_root),
            gprs: Gprs::default(),
            launched: false,
            cpu: crate::arch::percpu::index(),
            cr0_mask: c.cr0_fixed0 | (!cr0_fixed1 & 0xffff_ffff) | CR0_PG | CR0_NE,
            cr4_mask: !(GUEST_CR4_ALLOWED & c.cr4_fixed1) | c.cr4_fixed0,
            cr0_fixed0: c.cr0_fixed0,
            cr0_fixed1,
            cr4_fixed0: c.cr4_fixed0,
            entry_controls: c.entry,
            guest_nmis: c.guest_nmis(),
            tpr: 0,
            flush_on_entry: false,
            flush_ept_on_entry: false,
        })
    }

    pub(super) fn free(self, frames: &mut Frames) {
        for f in [
            self.vmcs,
            self.msr_bitmap,
            self.io_bitmap_a,
            self.io_bitmap_b,
        ] {
            frames.free(f);
        }
    }

    /// Writes the whole VMCS: controls, host state, and the guest's reset
    /// state in real mode with CS:IP = 0:`entry` (SDM Vol. 3A 9.1.1 for the
    /// reset values; 27.3.1.1 for what unrestricted guests may hold).
    pub(super) fn init_vmcs(&mut self, c: &Controls, entry: u64) -> Result<(), VirtError> {
        let sel = crate::arch::gdt::selectors().ok_or(VirtError::Failed("no host GDT"))?;
        let idtr = x86_64::instructions::tables::sidt();
        // SAFETY: the host-state MSRs exist on every x86-64 CPU.
        let (host_efer, host_pat, fs_base, gs_base) = unsafe {
            (
                rdmsr(msr::IA32_EFER),
                rdmsr(msr::IA32_PAT),
                rdmsr(msr::IA32_FS_BASE),
                rdmsr(msr::IA32_GS_BASE),
            )
        };
        let real_cr0 = (0x10 | c.cr0_fixed0) & self.cr0_fixed1;
        let fields: &[(Field, u64)] = &[
            (Field::PinControls, u64::from(c.pin)),
            (Field::ProcControls, u64::from(c.proc)),
            (Field::ProcControls2, u64::from(c.proc2)),
            (Field::ExitControls, u64::from(c.exit)),
            (Field::EntryControls, u64::from(c.entry)),
            (Field::ExceptionBitmap, crate::vcpu::INTERCEPTED_EXCEPTIONS),
            (Field::PageFaultErrorMask, 0),
            (Field::PageFaultErrorMatch, 0),
            (Field::Cr3TargetCount, 0),
            (Field::ExitMsrStoreCount, 0),
            (Field::ExitMsrLoadCount, 0),
            (Field::EntryMsrLoadCount, 0),
            (Field::EntryInterruptionInfo, 0),
            (Field::IoBitmapA, self.io_bitmap_a.raw()),
            (Field::IoBitmapB, self.io_bitmap_b.raw()),
            (Field::MsrBitmap, self.msr_bitmap.raw()),
            (Field::EptPointer, self.eptp),
            (Field::TscOffset, 0),
            (Field::Cr0GuestHostMask, self.cr0_mask),
            (Field::Cr0ReadShadow, 0x10),
            (Field::Cr4GuestHostMask, self.cr4_mask),
            (Field::Cr4ReadShadow, 0),
            // Host state (SDM Vol. 3C 25.5, checked per 27.2.3).
            (Field::HostCr0, read_cr0()),
            (Field::HostCr3, read_cr3()),
            (Field::HostCr4, read_cr4()),
            (Field::HostCsSelector, u64::from(sel.code.0)),
            (Field::HostSsSelector, u64::from(sel.data.0)),
            (Field::HostDsSelector, u64::from(sel.data.0)),
            (Field::HostEsSelector, u64::from(sel.data.0)),
            (Field::HostFsSelector, 0),
            (Field::HostGsSelector, 0),
            (Field::HostTrSelector, u64::from(sel.tss.0)),
            (Field::HostFsBase, fs_base),
            (Field::HostGsBase, gs_base),
            (Field::HostTrBase, crate::arch::percpu::tss_base()),
            (Field::HostGdtrBase, crate::arch::gdt::gdt_base()),
            (Field::HostIdtrBase, idtr.base.as_u64()),
            (Field::HostSysenterCs, 0),
            (Field::HostSysenterEsp, 0),
            (Field::HostSysenterEip, 0),
            (Field::HostEfer, host_efer),
            (Field::HostPat, host_pat),
            (Field::HostRip, entry::vmx_exit_stub as *const () as u64),
            // Guest state: real mode at 0:entry.
            (Field::GuestCr0, real_cr0),
            (Field::GuestCr3, 0),
            (Field::GuestCr4, c.cr4_fixed0),
            (Field::GuestDr7, DR7_RESET),
            (Field::GuestRsp, 0),
            (Field::GuestRip, entry),
            (Field::GuestRflags, 2),
            (Field::GuestEfer, 0),
            (Field::GuestPat, PAT_RESET),
            (Field::GuestDebugctl, 0),
            (Field::GuestSysenterCs, 0),
            (Field::GuestSysenterEsp, 0),
            (Field::GuestSysenterEip, 0),
            (Field::GuestGdtrBase, 0),
            (Field::GuestGdtrLimit, 0xffff),
            (Field::GuestIdtrBase, 0),
            (Field::GuestIdtrLimit, 0xffff),
            (Field::GuestActivityState, 0),
            (Field::GuestInterruptibility, 0),
            (Field::GuestPendingDebug, 0),
            (Field::VmcsLinkPointer, u64::MAX),
        ];
        // SAFETY: this vCPU's VMCS is current (the caller activated it).
        let mut ok = fields.iter().all(|&(f, v)| unsafe { vmcs::write(f, v) });
        if c.preemption_timer != 0 {
            // SAFETY: as above; the field exists when the control does.
            ok &=
                unsafe { vmcs::write(Field::PreemptionTimerValue, u64::from(c.preemption_timer)) };
        }
        if c.vpid() {
            // SAFETY: as above.
            ok &= unsafe { vmcs::write(Field::Vpid, u64::from(self.vpid)) };
        }
        for reg in [
            SegmentReg::Es,
            SegmentReg::Cs,
            SegmentReg::Ss,
            SegmentReg::Ds,
            SegmentReg::Fs,
            SegmentReg::Gs,
        ] {
            let ar = if reg == SegmentReg::Cs {
                Segment::REAL_CODE_AR
            } else {
                Segment::REAL_DATA_AR
            };
            ok &= self.set_segment(
                reg,
                Segment {
                    selector: 0,
                    base: 0,
                    limit: 0xffff,
                    ar,
                },
            );
        }
        ok &= self.set_segment(
            SegmentReg::Ldtr,
            Segment {
                selector: 0,
                base: 0,
                limit: 0xffff,
                ar: Segment::LDT_AR,
            },
        );
        ok &= self.set_segment(
            SegmentReg::Tr,
            Segment {
                selector: 0,
                base: 0,
                limit: 0xffff,
                ar: Segment::TSS_BUSY_AR,
            },
        );
        if ok {
            Ok(())
        } else {
            Err(VirtError::Failed("VMWRITE while setting up the VMCS"))
        }
    }

    /// The guest-state field of an MSR VM entry and exit switch.
    fn msr_field(index: u32) -> Option<Field> {
        Some(match index {
            msr::IA32_SYSENTER_CS => Field::GuestSysenterCs,
            msr::IA32_SYSENTER_ESP => Field::GuestSysenterEsp,
            msr::IA32_SYSENTER_EIP => Field::GuestSysenterEip,
            msr::IA32_FS_BASE => Field::GuestFsBase,
            msr::IA32_GS_BASE => Field::GuestGsBase,
            _ => return None,
        })
    }

    fn segment_fields(reg: SegmentReg) -> [Field; 4] {
        use Field::*;
        match reg {
            SegmentReg::Es => [GuestEsSelector, GuestEsBase, GuestEsLimit, GuestEsAr],
            SegmentReg::Cs => [GuestCsSelector, GuestCsBase, GuestCsLimit, GuestCsAr],
            SegmentReg::Ss => [GuestSsSelector, GuestSsBase, GuestSsLimit, GuestSsAr],
            SegmentReg::Ds => [GuestDsSelector, GuestDsBase, GuestDsLimit, GuestDsAr],
            SegmentReg::Fs => [GuestFsSelector, GuestFsBase, GuestFsLimit, GuestFsAr],
            SegmentReg::Gs => [GuestGsSelector, GuestGsBase, GuestGsLimit, GuestGsAr],
            SegmentReg::Ldtr => [
                GuestLdtrSelector,
                GuestLdtrBase,
                GuestLdtrLimit,
                GuestLdtrAr,
            ],
            SegmentReg::Tr => [GuestTrSelector, GuestTrBase, GuestTrLimit, GuestTrAr],
        }
    }

    fn set_segment(&mut self, reg: SegmentReg, s: Segment) -> bool {
        let [sel, base, limit, ar] = Self::segment_fields(reg);
        // SAFETY: this vCPU's VMCS is current.
        unsafe {
            vmcs::write(sel, u64::from(s.selector))
                & vmcs::write(base, s.base)
                & vmcs::write(limit, u64::from(s.limit))
                & vmcs::write(ar, u64::from(s.ar))
        }
    }

    /// Sets or clears `bit` of the primary processor-based controls (ones
    /// every VMX CPU allows either way: interrupt-window and MOV-DR
    /// exiting).
    fn set_proc_control(&mut self, bit: u32, on: bool) {
        let c = self.read(Field::ProcControls) as u32;
        let want = if on { c | bit } else { c & !bit };
        if want != c {
            self.write(Field::ProcControls, u64::from(want));
        }
    }

    fn read(&self, f: Field) -> u64 {
        // SAFETY: the back end activated this vCPU before any accessor runs
        // (Backend::activate); reads of valid fields cannot fail.
        unsafe { vmcs::read(f) }
    }

    fn write(&mut self, f: Field, v: u64) {
        // SAFETY: as in `read`; the fields written here exist on every CPU
        // that passed `Vmx::enable`.
        unsafe { vmcs::write(f, v) };
    }

    /// The shadow bits of `GuestCpu::set_interrupt_shadow`.
    fn set_interrupt_shadow_bits(&mut self, shadow: u8) {
        // SDM Vol. 3C 26.3.1.5: not both kinds (MOV SS wins, as on KVM),
        // and no STI blocking with IF = 0, where it changes nothing anyway.
        let intr = self.read(Field::GuestInterruptibility) & !BLOCKING_STI_MOVSS;
        let if_on = self.read(Field::GuestRflags) & RFLAGS_IF != 0;
        let bits = if shadow & 1 != 0 {
            2
        } else if shadow & 2 != 0 && if_on {
            1
        } else {
            0
        };
        self.write(Field::GuestInterruptibility, intr | bits);
    }

    /// SDM Vol. 3C 26.3.1.5: with RFLAGS.TF = 1 inside an STI / MOV SS
    /// shadow, the single step must be pending (BS), or the entry fails.
    fn shadow_single_step(&mut self) {
        const RFLAGS_TF: u64 = 1 << 8;
        const BS: u64 = 1 << 14;
        if self.read(Field::GuestRflags) & RFLAGS_TF != 0
            && self.read(Field::GuestInterruptibility) & BLOCKING_STI_MOVSS != 0
        {
            let pending = self.read(Field::GuestPendingDebug);
            if pending & BS == 0 {
                self.write(Field::GuestPendingDebug, pending | BS);
            }
        }
    }

    /// Writes this CPU's host bases (TSS, GDT, GS; SDM Vol. 3C 25.5.2) into
    /// the current VMCS, for a vCPU that moved here from another CPU.
    pub(super) fn set_host_bases(&mut self) {
        // SAFETY: IA32_GS_BASE exists on every x86-64 CPU.
        let gs_base = unsafe { rdmsr(msr::IA32_GS_BASE) };
        self.write(Field::HostGsBase, gs_base);
        self.write(Field::HostTrBase, crate::arch::percpu::tss_base());
        self.write(Field::HostGdtrBase, crate::arch::gdt::gdt_base());
    }

    /// Enters the guest once and translates the exit.
    pub(super) fn run(&mut self) -> ExitInfo {
        // SAFETY: the VMCS is current and initialised (`init_vmcs`).
        if !unsafe { entry::enter(&mut self.gprs, self.launched) } {
            let err = self.read(Field::InstructionError);
            return ExitInfo {
                exit: crate::virt::Exit::EntryFailed {
                    what: "VMLAUNCH/VMRESUME (VM-instruction error)",
                    code: err,
                },
                len: None,
            };
        }
        self.launched = true;
        // SAFETY: the VMCS is current.
        let info = unsafe { exit::read() };
        // An exit in the middle of delivering an event: deliver it again
        // on the next entry (SDM Vol. 3C 28.2.4, 27.6.1.1).
        let vectoring = self.read(Field::IdtVectoringInfo) as u32;
        if vectoring & INTR_VALID != 0 {
            self.write(
                Field::EntryInterruptionInfo,
                u64::from(vectoring & !(1 << 12)),
            );
            if vectoring & INTR_ERROR_CODE != 0 {
                let code = self.read(Field::IdtVectoringErrorCode);
                self.write(Field::EntryExceptionErrorCode, code);
            }
            // An NMI whose delivery the exit interrupted goes in again: its
            // blocking is not in effect yet (entry refuses an NMI injection
            // with it, SDM Vol. 3C 26.3.1.5; KVM clears it too).
            if vectoring & (7 << 8) == INTR_TYPE_NMI {
                let intr = self.read(Field::GuestInterruptibility);
                if intr & BLOCKING_NMI != 0 {
                    self.write(Field::GuestInterruptibility, intr & !BLOCKING_NMI);
                }
            }
            // Software interrupts and exceptions need the instruction length.
            if matches!((vectoring >> 8) & 7, 4..=6) {
                let len = self.read(Field::ExitInstructionLength);
                self.write(Field::EntryInstructionLength, len);
            }
        }
        info
    }

    fn write_cr0(&mut self, value: u64) -> Result<CrEffect, Fault> {
        // SDM Vol. 3A 2.5 and "MOV—Move to/from Control Registers": #GP for
        // reserved bits, PG without PE, NW without CD.
        if value >> 32 != 0
            || (value & CR0_PG != 0 && value & CR0_PE == 0)
            || (value & CR0_NW != 0 && value & CR0_CD == 0)
        {
            return Err(Fault::GP0);
        }
        let old = self.cr0();
        let mut guest_efer = self.read(Field::GuestEfer);
        // Leaving paging from 64-bit mode, or with PCIDE set, is #GP (SDM
        // Vol. 2B MOV to CR0).
        if value & CR0_PG == 0
            && old & CR0_PG != 0
            && (self.mode() == crate::virt::CpuMode::Long64 || self.cr4() & CR4_PCIDE != 0)
        {
            return Err(Fault::GP0);
        }
        let mut effect = CrEffect::None;
        if value & CR0_PG != 0 && old & CR0_PG == 0 {
            if guest_efer & efer::LME != 0 {
                // Activating IA-32e mode needs PAE (SDM Vol. 3A 10.8.5).
                if self.cr4() & CR4_PAE == 0 {
                    return Err(Fault::GP0);
                }
                guest_efer |= efer::LMA;
                self.entry_controls |= ctl::entry::IA32E_MODE_GUEST;
            } else if self.cr4() & CR4_PAE != 0 {
                effect = CrEffect::LoadPdptes;
            }
            self.flush_on_entry = true;
        } else if value & CR0_PG == 0 && old & CR0_PG != 0 {
            guest_efer &= !efer::LMA;
            self.entry_controls &= !ctl::entry::IA32E_MODE_GUEST;
            self.flush_on_entry = true;
        }
        let real = (value | self.cr0_fixed0 | CR0_NE) & self.cr0_fixed1;
        self.write(Field::GuestCr0, real);
        self.write(Field::Cr0ReadShadow, value);
        self.write(Field::GuestEfer, guest_efer);
        self.write(Field::EntryControls, u64::from(self.entry_controls));
        Ok(effect)
    }
}

impl GuestCpu for VmxVcpu {
    fn gprs(&mut self) -> &mut Gprs {
        &mut self.gprs
    }
    fn rip(&self) -> u64 {
        self.read(Field::GuestRip)
    }
    fn set_rip(&mut self, rip: u64) {
        self.write(Field::GuestRip, rip)
    }
    fn rsp(&self) -> u64 {
        self.read(Field::GuestRsp)
    }
    fn set_rsp(&mut self, rsp: u64) {
        self.write(Field::GuestRsp, rsp)
    }
    fn rflags(&self) -> u64 {
        self.read(Field::GuestRflags)
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.write(Field::GuestRflags, rflags);
        // SDM Vol. 3C 26.3.1.5: no STI blocking with IF = 0, and a pending
        // single step inside a shadow with TF = 1.
        let intr = self.read(Field::GuestInterruptibility);
        if rflags & RFLAGS_IF == 0 && intr & 1 != 0 {
            self.write(Field::GuestInterruptibility, intr & !1);
        }
        self.shadow_single_step();
    }
    fn cr0(&self) -> u64 {
        (self.read(Field::GuestCr0) & !self.cr0_mask)
            | (self.read(Field::Cr0ReadShadow) & self.cr0_mask)
    }
    fn cr3(&self) -> u64 {
        self.read(Field::GuestCr3)
    }
    fn cr4(&self) -> u64 {
        (self.read(Field::GuestCr4) & !self.cr4_mask)
            | (self.read(Field::Cr4ReadShadow) & self.cr4_mask)
    }
    fn read_cr(&self, cr: u8) -> u64 {
        match cr {
            0 => self.cr0(),
            3 => self.cr3(),
            4 => self.cr4(),
            8 => u64::from(self.tpr),
            _ => 0,
        }
    }
    fn efer(&self) -> u64 {
        self.read(Field::GuestEfer)
    }
    fn set_efer(&mut self, value: u64) {
        let lma = self.read(Field::GuestEfer) & efer::LMA;
        self.write(Field::GuestEfer, (value & !efer::LMA) | lma);
    }
    fn write_cr(&mut self, cr: u8, value: u64) -> Result<CrEffect, Fault> {
        match cr {
            0 => self.write_cr0(value),
            3 => {
                self.write(Field::GuestCr3, value);
                self.flush_on_entry = true;
                let paging = self.cr0() & CR0_PG != 0;
                let pae_legacy = self.cr4() & CR4_PAE != 0 && self.efer() & efer::LMA == 0;
                Ok(if paging && pae_legacy {
                    CrEffect::LoadPdptes
                } else {
                    CrEffect::None
                })
            }
            4 => {
                // Exits happen only for bits in the mask (not offered).
                if value & self.cr4_mask != self.read(Field::Cr4ReadShadow) & self.cr4_mask {
                    return Err(Fault::GP0);
                }
                let real = value | self.cr4_fixed0 | super::CR4_VMXE;
                self.write(Field::GuestCr4, real);
                self.write(Field::Cr4ReadShadow, value);
                Ok(CrEffect::None)
            }
            8 => {
                // CR8 holds the 4-bit task priority; other bits are reserved.
                if value > 15 {
                    return Err(Fault::GP0);
                }
                self.tpr = value as u8;
                Ok(CrEffect::None)
            }
            _ => Err(Fault::UD),
        }
    }
    fn set_pdptes(&mut self, pdptes: [u64; 4]) {
        for (f, v) in [
            Field::GuestPdpte0,
            Field::GuestPdpte1,
            Field::GuestPdpte2,
            Field::GuestPdpte3,
        ]
        .into_iter()
        .zip(pdptes)
        {
            self.write(f, v);
        }
    }
    fn pat(&self) -> u64 {
        self.read(Field::GuestPat)
    }
    fn set_pat(&mut self, pat: u64) {
        self.write(Field::GuestPat, pat)
    }
    fn tsc_offset(&self) -> u64 {
        self.read(Field::TscOffset)
    }
    fn set_tsc_offset(&mut self, offset: u64) {
        self.write(Field::TscOffset, offset)
    }
    fn hw_msr(&self, index: u32) -> Option<u64> {
        Some(self.read(Self::msr_field(index)?))
    }
    fn set_hw_msr(&mut self, index: u32, value: u64) -> bool {
        let Some(field) = Self::msr_field(index) else {
            return false;
        };
        let canonical = ((value as i64) << 16 >> 16) as u64 == value;
        if !canonical || (index == msr::IA32_SYSENTER_CS && value >> 32 != 0) {
            return false;
        }
        self.write(field, value);
        true
    }
    fn cr2(&self) -> u64 {
        crate::arch::instr::read_cr2()
    }
    fn set_cr2(&mut self, cr2: u64) {
        // VMX does not switch CR2: the guest's value lives in the register
        // while this vCPU owns the CPU (lazy switching, `vcpu::lazy`).
        // SAFETY: the hypervisor never relies on CR2 outside its own fatal
        // page-fault report.
        unsafe { write_cr2(cr2) }
    }
    fn system_regs(&self) -> SystemRegs {
        let seg = |r| self.segment(r);
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
                base: self.read(Field::GuestGdtrBase),
                limit: self.read(Field::GuestGdtrLimit) as u16,
            },
            idt: DescTable {
                base: self.read(Field::GuestIdtrBase),
                limit: self.read(Field::GuestIdtrLimit) as u16,
            },
            cr0: self.cr0(),
            cr3: self.cr3(),
            cr4: self.cr4(),
            efer: self.efer(),
        }
    }
    fn set_system_regs(&mut self, r: &SystemRegs) -> Result<CrEffect, Fault> {
        if r.cr0 >> 32 != 0 || r.cr4 & self.cr4_mask & !(super::CR4_VMXE | self.cr4_fixed0) != 0 {
            return Err(Fault::GP0);
        }
        let long = r.efer & efer::LMA != 0;
        for (reg, s) in r.segments() {
            self.set_segment(reg, s);
        }
        self.write(Field::GuestGdtrBase, r.gdt.base);
        self.write(Field::GuestGdtrLimit, u64::from(r.gdt.limit));
        self.write(Field::GuestIdtrBase, r.idt.base);
        self.write(Field::GuestIdtrLimit, u64::from(r.idt.limit));
        self.write(
            Field::GuestCr0,
            (r.cr0 | self.cr0_fixed0 | CR0_NE) & self.cr0_fixed1,
        );
        self.write(Field::Cr0ReadShadow, r.cr0);
        self.write(Field::GuestCr4, r.cr4 | self.cr4_fixed0 | super::CR4_VMXE);
        self.write(Field::Cr4ReadShadow, r.cr4);
        self.write(Field::GuestCr3, r.cr3);
        self.write(Field::GuestEfer, r.efer);
        if long {
            self.entry_controls |= ctl::entry::IA32E_MODE_GUEST;
        } else {
            self.entry_controls &= !ctl::entry::IA32E_MODE_GUEST;
        }
        self.write(Field::EntryControls, u64::from(self.entry_controls));
        self.flush_on_entry = true;
        let pae_paging = r.cr0 & CR0_PG != 0 && r.cr4 & CR4_PAE != 0 && !long;
        Ok(if pae_paging {
            CrEffect::LoadPdptes
        } else {
            CrEffect::None
        })
    }
    fn segment(&self, reg: SegmentReg) -> Segment {
        let [sel, base, limit, ar] = Self::segment_fields(reg);
        Segment {
            selector: self.read(sel) as u16,
            base: self.read(base),
            limit: self.read(limit) as u32,
            ar: self.read(ar) as u32,
        }
    }
    fn cpl(&self) -> u8 {
        // SDM Vol. 3C 25.4.1: SS.DPL is the CPL.
        ((self.read(Field::GuestSsAr) >> 5) & 3) as u8
    }
    fn inject(&mut self, fault: Fault) {
        let mut info = INTR_VALID | INTR_TYPE_HW_EXCEPTION | u32::from(fault.vector);
        // Real mode pushes no error codes (SDM Vol. 3C 27.2.1.3).
        if let Some(code) = fault.error
            && self.cr0() & CR0_PE != 0
        {
            info |= INTR_ERROR_CODE;
            self.write(Field::EntryExceptionErrorCode, u64::from(code));
        }
        self.write(Field::EntryInterruptionInfo, u64::from(info));
    }
    fn clear_interrupt_shadow(&mut self) {
        let intr = self.read(Field::GuestInterruptibility);
        if intr & BLOCKING_STI_MOVSS != 0 {
            self.write(Field::GuestInterruptibility, intr & !BLOCKING_STI_MOVSS);
        }
    }
    fn interrupt_allowed(&self) -> bool {
        // SDM Vol. 3C 26.3.1.5: an external interrupt may be injected only
        // with IF = 1 and no blocking by STI or MOV SS.
        self.read(Field::GuestRflags) & RFLAGS_IF != 0
            && self.read(Field::GuestInterruptibility) & BLOCKING_STI_MOVSS == 0
            && self.read(Field::EntryInterruptionInfo) as u32 & INTR_VALID == 0
    }
    fn cancel_event(&mut self) {
        self.write(Field::EntryInterruptionInfo, 0);
    }
    fn inject_interrupt(&mut self, vector: u8) {
        let info = INTR_VALID | INTR_TYPE_EXTERNAL | u32::from(vector);
        self.write(Field::EntryInterruptionInfo, u64::from(info));
    }
    fn set_exception_intercept(&mut self, vector: u8, on: bool) {
        let always = crate::vcpu::INTERCEPTED_EXCEPTIONS;
        let bit = 1u64 << (vector & 31);
        let map = self.read(Field::ExceptionBitmap);
        let want = if on {
            map | bit
        } else {
            (map & !bit) | (always & bit)
        };
        if want != map {
            self.write(Field::ExceptionBitmap, want);
        }
    }
    fn arm_single_step(&mut self) {
        const RFLAGS_TF: u64 = 1 << 8;
        // SDM Vol. 3C 26.3.1.5: with TF = 1 inside an STI / MOV SS shadow,
        // the pending single step must be in the pending debug exceptions
        // (BS, bit 14), or the entry fails.
        if self.read(Field::GuestInterruptibility) & BLOCKING_STI_MOVSS != 0 {
            let pending = self.read(Field::GuestPendingDebug);
            self.write(Field::GuestPendingDebug, pending | (1 << 14));
        }
        let rflags = self.read(Field::GuestRflags);
        self.write(Field::GuestRflags, rflags | RFLAGS_TF);
    }
    fn disarm_single_step(&mut self, guest_tf: bool) {
        const RFLAGS_TF: u64 = 1 << 8;
        const BS: u64 = 1 << 14;
        if !guest_tf {
            let rflags = self.read(Field::GuestRflags);
            self.write(Field::GuestRflags, rflags & !RFLAGS_TF);
        }
        // The single step the exit recorded was the debugger's: drop it,
        // but keep what the entry checks need for the guest's own TF inside
        // an STI / MOV SS shadow (SDM Vol. 3C 26.3.1.5).
        let keep = guest_tf && self.read(Field::GuestInterruptibility) & BLOCKING_STI_MOVSS != 0;
        let pending = self.read(Field::GuestPendingDebug);
        let want = if keep { pending | BS } else { pending & !BS };
        if want != pending {
            self.write(Field::GuestPendingDebug, want);
        }
    }
    fn set_int_n_intercept(&mut self, _on: bool) {}
    fn inject_software_interrupt(&mut self, vector: u8, len: u8) {
        // Type 4 (software interrupt) with its instruction length (SDM Vol.
        // 3C 26.6.1.1). Not reached: VMX never exits for INT n.
        let info = INTR_VALID | (4 << 8) | u32::from(vector);
        self.write(Field::EntryInstructionLength, u64::from(len));
        self.write(Field::EntryInterruptionInfo, u64::from(info));
    }
    fn dr7(&self) -> u64 {
        self.read(Field::GuestDr7)
    }
    fn set_dr7(&mut self, dr7: u64) {
        self.write(Field::GuestDr7, dr7);
    }
    fn dr6(&self) -> u64 {
        crate::arch::instr::read_dr6()
    }
    fn set_dr6(&mut self, dr6: u64) {
        // SAFETY: DR6 holds the guest's status bits only (VMX does not
        // switch it; the hypervisor never uses it).
        unsafe { crate::arch::instr::write_dr6(dr6) };
    }
    fn set_cr8_write_intercept(&mut self, _on: bool) {
        // CR8_LOAD_EXITING is always on (`vmx::mod`).
    }
    fn set_dr_intercept(&mut self, on: bool) {
        self.set_proc_control(ctl::proc::MOV_DR_EXITING, on);
    }
    fn set_interrupt_window(&mut self, on: bool) {
        // SDM Vol. 3C 25.6.2: interrupt-window exiting (every VMX CPU
        // allows it).
        self.set_proc_control(ctl::proc::INTERRUPT_WINDOW_EXITING, on);
    }
    fn nmi_allowed(&mut self) -> bool {
        // SDM Vol. 3C 26.3.1.5: no STI or MOV SS blocking for an injected
        // NMI, and (virtual NMIs) no virtual-NMI blocking.
        self.guest_nmis
            && self.read(Field::GuestInterruptibility) & (BLOCKING_STI_MOVSS | BLOCKING_NMI) == 0
            && self.read(Field::EntryInterruptionInfo) as u32 & INTR_VALID == 0
    }
    fn inject_nmi(&mut self) {
        let info = INTR_VALID | INTR_TYPE_NMI | NMI_VECTOR;
        self.write(Field::EntryInterruptionInfo, u64::from(info));
    }
    fn set_nmi_window(&mut self, on: bool) {
        if self.guest_nmis {
            self.set_proc_control(ctl::proc::NMI_WINDOW_EXITING, on);
        }
    }
    fn nmi_window_exit(&mut self) {
        self.set_proc_control(ctl::proc::NMI_WINDOW_EXITING, false);
    }
    fn nmi_masked(&self) -> bool {
        self.read(Field::GuestInterruptibility) & BLOCKING_NMI != 0
    }
    fn without_nmis(&mut self) {
        self.guest_nmis = false;
        let pin = self.read(Field::PinControls) as u32;
        let want = pin & !ctl::pin::VIRTUAL_NMIS;
        if want != pin {
            self.write(Field::PinControls, u64::from(want));
            self.set_proc_control(ctl::proc::NMI_WINDOW_EXITING, false);
        }
    }
    fn queued_event(&self) -> Option<crate::virt::Queued> {
        use crate::virt::Queued;
        let info = self.read(Field::EntryInterruptionInfo) as u32;
        if info & INTR_VALID == 0 {
            return None;
        }
        let vector = info as u8;
        // SDM Vol. 3C 25.8.3: the interruption types.
        Some(match (info >> 8) & 7 {
            0 => Queued::Interrupt {
                vector,
                soft: false,
            },
            2 => Queued::Nmi,
            4 => Queued::Interrupt { vector, soft: true },
            _ => Queued::Exception {
                vector,
                error: (info & INTR_ERROR_CODE != 0)
                    .then(|| self.read(Field::EntryExceptionErrorCode) as u32),
            },
        })
    }
    fn interrupt_shadow(&self) -> u8 {
        // Interruptibility bit 0: blocking by STI, bit 1: by MOV SS.
        let intr = self.read(Field::GuestInterruptibility);
        (u8::from(intr & 1 != 0) << 1) | u8::from(intr & 2 != 0)
    }
    fn set_interrupt_shadow(&mut self, shadow: u8) {
        self.set_interrupt_shadow_bits(shadow);
        self.shadow_single_step();
    }
    fn nmi_capable(&self) -> bool {
        self.guest_nmis
    }
    fn set_nmi_masked(&mut self, masked: bool) {
        if !self.guest_nmis {
            return;
        }
        let intr = self.read(Field::GuestInterruptibility);
        let want = if masked {
            intr | BLOCKING_NMI
        } else {
            intr & !BLOCKING_NMI
        };
        if want != intr {
            self.write(Field::GuestInterruptibility, want);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msr_bitmap_layout() {
        assert_eq!(msr_bitmap_bit(0x10, false), Some((2, 0)));
        assert_eq!(msr_bitmap_bit(0x10, true), Some((2048 + 2, 0)));
        assert_eq!(msr_bitmap_bit(0x1fff, false), Some((1023, 7)));
        assert_eq!(msr_bitmap_bit(0xc000_0082, false), Some((1024 + 16, 2)));
        assert_eq!(msr_bitmap_bit(0xc000_0082, true), Some((3072 + 16, 2)));
        assert_eq!(msr_bitmap_bit(0x2000, false), None);
        assert_eq!(msr_bitmap_bit(0xc001_0117, false), None);
    }

    #[test]
    fn guest_cr4_allowed_bits() {
        assert_eq!(GUEST_CR4_ALLOWED & super::super::CR4_VMXE, 0);
        assert_eq!(GUEST_CR4_ALLOWED & (1 << 12), 0, "LA57 is not offered");
        assert_eq!(GUEST_CR4_ALLOWED & (1 << 22), 0, "PKE is not offered");
        assert_ne!(GUEST_CR4_ALLOWED & (1 << 18), 0, "OSXSAVE");
    }
}
