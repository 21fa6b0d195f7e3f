//! Hardware virtualization: one `Backend` trait with two implementations,
//! Intel VMX (`vmx/`) and AMD SVM (`svm/`), which mirror each other file for
//! file. The back end is chosen once at boot and used through static
//! dispatch; everything above it (the exit loop, the handlers, the VM
//! lifecycle) is vendor-neutral and sees exits as `exit::Exit`.
//!
//! Invariant: only `virt::vmx` touches a VMCS and only `virt::svm` touches
//! a VMCB.

pub mod exit;
pub mod regs;
pub mod svm;
pub mod vmx;

use crate::mm::frame::{FrameAlloc, WindowMemory};
use crate::mm::{HostPhys, paging};
pub use exit::{Exit, ExitInfo};
pub use regs::{CpuMode, DescTable, Gprs, Segment, SegmentReg, SystemRegs};

/// Frames for VM metadata come from the machine's pool.
pub type Frames = FrameAlloc<WindowMemory>;

/// Why virtualization could not be turned on, or a vCPU not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtError {
    /// The CPU lacks the extension or a feature Mojito requires.
    Unsupported(&'static str),
    /// The firmware disabled the extension (and locked it so).
    DisabledByFirmware(&'static str),
    /// The frame pool is empty.
    NoMemory,
    /// An instruction that turns virtualization on failed.
    Failed(&'static str),
}

impl core::fmt::Display for VirtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unsupported(what) => write!(f, "unsupported: {what}"),
            Self::DisabledByFirmware(what) => write!(f, "disabled by firmware: {what}"),
            Self::NoMemory => write!(f, "out of memory"),
            Self::Failed(what) => write!(f, "failed: {what}"),
        }
    }
}

/// A fault to inject into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error: Option<u32>,
}

impl Fault {
    /// #UD (SDM Vol. 3A 6.15, vector 6).
    pub const UD: Self = Self {
        vector: 6,
        error: None,
    };
    /// #GP(0) (vector 13).
    pub const GP0: Self = Self {
        vector: 13,
        error: Some(0),
    };
    /// #PF with `error` (vector 14); the faulting address goes to CR2.
    pub const fn page_fault(error: u32) -> Self {
        Self {
            vector: 14,
            error: Some(error),
        }
    }
}

/// The event queued for the next entry (`KVM_GET/SET_VCPU_EVENTS`): one an
/// exit interrupted the delivery of, or one the hypervisor queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queued {
    /// A hardware exception, with its error code if it pushes one.
    Exception {
        vector: u8,
        error: Option<u32>,
    },
    /// An external interrupt, or (`soft`) INT n.
    Interrupt {
        vector: u8,
        soft: bool,
    },
    Nmi,
}

/// What else a control-register write needs from the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrEffect {
    None,
    /// The guest entered PAE paging: the four PDPTEs at CR3 must be read
    /// from guest memory and handed to `GuestCpu::set_pdptes`.
    LoadPdptes,
}

/// One vendor's way of running guests on this CPU.
pub trait Backend: Sized {
    type Vcpu: GuestCpu;
    /// The nested page-table format (EPT or NPT).
    type Nested: paging::Format;
    /// "VMX" or "SVM".
    const NAME: &'static str;
    /// Whether the hardware switches the syscall MSRs (STAR, LSTAR, CSTAR,
    /// SFMASK, KERNEL_GS_BASE) on every entry and exit (SVM: VMLOAD/VMSAVE).
    /// Where it does not, the exit loop switches them lazily (D2).
    const SWITCHES_SYSCALL_MSRS: bool;
    /// Whether the hardware switches CR2 (SVM: the VMCB holds it).
    const SWITCHES_CR2: bool;
    /// Whether the hardware switches DR6 (SVM: the VMCB holds it).
    const SWITCHES_DR6: bool;

    /// Turns the extension on for this CPU.
    fn enable(frames: &mut Frames) -> Result<Self, VirtError>;
    /// Writes the one-line description of the extension and its features.
    fn describe(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result;
    /// Makes a vCPU in the architectural real-mode start state with RIP at
    /// `entry`, translating guest-physical addresses through `nested_root`.
    /// `vm_id` tags its TLB entries (VPID / ASID; KVM-API VMs give each
    /// vCPU its own). Port I/O to
    /// `open_ports` does not exit (the control domain's COM1).
    fn create_vcpu(
        &mut self,
        frames: &mut Frames,
        vm_id: u16,
        nested_root: HostPhys,
        entry: u64,
        open_ports: &[core::ops::RangeInclusive<u16>],
    ) -> Result<Self::Vcpu, VirtError>;
    /// Frees a vCPU's frames and flushes what the hardware cached for it.
    fn destroy_vcpu(&mut self, frames: &mut Frames, vcpu: Self::Vcpu);
    /// Makes `vcpu` the one whose state the accessors below reach (VMX:
    /// VMPTRLD). Cheap when it already is. False if the hardware refused:
    /// the vCPU must not be used then.
    #[must_use]
    fn activate(&mut self, vcpu: &mut Self::Vcpu) -> bool;
    /// Drops what the hardware cached of `vcpu`'s nested translations (a
    /// mapping was removed); takes effect before it next runs, on whichever
    /// CPU that is.
    fn flush_nested(&mut self, vcpu: &mut Self::Vcpu);
    /// Leaves nothing of `vcpu` cached in this CPU's hardware, so that
    /// another CPU may use it next (VMX: VMCLEAR, SDM Vol. 3C 25.11.1; SVM:
    /// nothing, a VMCB is only memory). A vCPU arriving on another CPU than
    /// it last ran on gets that CPU's host state and a TLB flush on its
    /// next `activate`/`run`.
    fn release(&mut self, vcpu: &mut Self::Vcpu);
    /// Enters the guest until its next exit. `activate` must have been called.
    /// `new_context` asks for a TLB flush (another vCPU ran here since).
    fn run(&mut self, vcpu: &mut Self::Vcpu, new_context: bool) -> ExitInfo;
    /// Names the host-physical memory the hardware reads for `vcpu` (its
    /// VMCS/VMCB and bitmaps), or for this CPU when `vcpu` is None (VMXON
    /// region, host save area, shared maps): `each(what, start, bytes)`.
    /// For `MOJITO_LOG_LAYOUT`, which a memory-dump test checks (none of
    /// it may be mapped into any guest). A back end with no hardware
    /// structures (host tests) names nothing.
    fn structures(
        &self,
        vcpu: Option<&Self::Vcpu>,
        each: &mut dyn FnMut(&'static str, HostPhys, u64),
    ) {
        let _ = (vcpu, each);
    }
}

/// A vCPU's architectural state, as the vendor-neutral handlers see it. The
/// back end must be `activate`d on it.
pub trait GuestCpu {
    fn gprs(&mut self) -> &mut Gprs;
    fn rip(&self) -> u64;
    fn set_rip(&mut self, rip: u64);
    fn rsp(&self) -> u64;
    fn set_rsp(&mut self, rsp: u64);
    fn rflags(&self) -> u64;
    fn set_rflags(&mut self, rflags: u64);
    /// CR0 and CR4 as the guest believes them to be.
    fn cr0(&self) -> u64;
    fn cr3(&self) -> u64;
    fn cr4(&self) -> u64;
    /// EFER as the guest sees it (SVME hidden).
    fn efer(&self) -> u64;
    /// Sets the guest's EFER (already validated; LMA is kept as is).
    fn set_efer(&mut self, efer: u64);
    /// Reads CR0/CR3/CR4/CR8 as the guest sees them.
    fn read_cr(&self, cr: u8) -> u64;
    /// Writes CR0/CR3/CR4/CR8 on an intercepted MOV to CR (validated here).
    fn write_cr(&mut self, cr: u8, value: u64) -> Result<CrEffect, Fault>;
    /// Loads the four PAE page-directory pointers (after `CrEffect::LoadPdptes`).
    fn set_pdptes(&mut self, pdptes: [u64; 4]);
    /// Sets the guest's CR2 (for an injected #PF). On back ends that do not
    /// switch CR2 this is the CPU's register: only while the vCPU owns it.
    fn set_cr2(&mut self, cr2: u64);
    /// The guest's CR2, with the same caveat.
    fn cr2(&self) -> u64;
    /// An MSR the back end keeps in its control structure (VMX: SYSENTER
    /// and the FS/GS bases; SVM: those and the syscall MSRs), for
    /// `KVM_GET_MSRS`. None for any other MSR.
    fn hw_msr(&self, index: u32) -> Option<u64>;
    /// Sets such an MSR (`KVM_SET_MSRS`); false for another MSR or a value
    /// the hardware would refuse (a non-canonical address).
    fn set_hw_msr(&mut self, index: u32, value: u64) -> bool;
    /// Segments, descriptor tables, CR0/3/4 and EFER as one whole (the
    /// guest's view: shadowed bits as the guest set them).
    fn system_regs(&self) -> SystemRegs;
    /// Loads `regs` (KVM_SET_SREGS, the control domain's entry state).
    /// Control-register values the hardware or policy refuses are an error
    /// (`Fault::GP0`); the caller answers -EINVAL.
    fn set_system_regs(&mut self, regs: &SystemRegs) -> Result<CrEffect, Fault>;
    fn pat(&self) -> u64;
    fn set_pat(&mut self, pat: u64);
    fn tsc_offset(&self) -> u64;
    fn set_tsc_offset(&mut self, offset: u64);
    fn segment(&self, reg: SegmentReg) -> Segment;
    /// Current privilege level.
    fn cpl(&self) -> u8;
    /// Queues an exception for the next entry.
    fn inject(&mut self, fault: Fault);
    /// Drops the one-instruction interrupt shadow (STI / MOV SS blocking).
    fn clear_interrupt_shadow(&mut self);
    /// Whether an external interrupt can be delivered at the next entry:
    /// RFLAGS.IF = 1, no STI / MOV SS shadow, and no event already queued.
    fn interrupt_allowed(&self) -> bool;
    /// Drops the event queued for the next entry, if any (INIT: one whose
    /// delivery an exit interrupted must not survive it).
    fn cancel_event(&mut self);
    /// Queues external interrupt `vector` for the next entry (the caller
    /// checked `interrupt_allowed`).
    fn inject_interrupt(&mut self, vector: u8);
    /// Asks for an `Exit::InterruptWindow` as soon as the guest can take an
    /// external interrupt (or stops asking).
    fn set_interrupt_window(&mut self, on: bool);
    /// Whether an NMI can be delivered at the next entry: nothing queued, no
    /// STI / MOV SS shadow, and the guest not inside an NMI handler (SDM
    /// Vol. 3C 26.3.1.5, 25.3; APM Vol. 2 15.20). False where the CPU
    /// cannot track the guest's NMI blocking (VMX without virtual NMIs).
    fn nmi_allowed(&mut self) -> bool;
    /// Queues an NMI for the next entry (the caller checked `nmi_allowed`);
    /// the guest then blocks NMIs until its IRET.
    fn inject_nmi(&mut self);
    /// Asks for an `Exit::NmiWindow` as soon as the guest's NMI blocking
    /// ends (VMX: NMI-window exiting; SVM: the IRET intercept is on while
    /// the guest is inside an NMI handler anyway), or stops asking.
    fn set_nmi_window(&mut self, on: bool);
    /// An `Exit::NmiWindow` came: the vendor's bookkeeping (SVM: the IRET
    /// goes on, and NMIs are unblocked once RIP moves past it).
    fn nmi_window_exit(&mut self);
    /// Whether the guest blocks NMIs (inside an NMI handler), and setting
    /// it (`KVM_GET/SET_VCPU_EVENTS`' `nmi.masked`).
    fn nmi_masked(&self) -> bool;
    fn set_nmi_masked(&mut self, masked: bool);
    /// Whether this vCPU can be given NMIs at all (VMX: virtual NMIs and
    /// NMI-window exiting; where not, NMIs sent to it are dropped).
    fn nmi_capable(&self) -> bool;
    /// This vCPU never takes NMIs (the control domain's): VMX drops
    /// virtual NMIs from its controls, so that no NMI blocking is ever
    /// saved in its VMCS. (Bochs 2.7 carries virtual-NMI blocking from one
    /// VMCS into the next entered on a CPU, as its VM entry only sets the
    /// blocking a VMCS asks for and never clears it: a control domain with
    /// virtual NMIs passed a guest's NMI handler's blocking back to that
    /// guest after its IRET. Hardware loads the state whole.)
    fn without_nmis(&mut self);
    /// The event queued for the next entry, if any.
    fn queued_event(&self) -> Option<Queued>;
    /// The one-instruction interrupt shadow as `KVM_X86_SHADOW_INT_*` bits
    /// (1: MOV SS, 2: STI), and setting it.
    fn interrupt_shadow(&self) -> u8;
    fn set_interrupt_shadow(&mut self, shadow: u8);
    /// Intercepts exception `vector` (an `Exit::Exception`) or stops; #DB
    /// and #AC stay intercepted always (`vcpu::INTERCEPTED_EXCEPTIONS`).
    fn set_exception_intercept(&mut self, vector: u8, on: bool);
    /// Sets RFLAGS.TF for a single-step trap after the next instruction
    /// (with what the hardware needs besides, e.g. VMX's pending single
    /// step inside an STI/MOV SS shadow). The caller clears TF again.
    fn arm_single_step(&mut self);
    /// Undoes `arm_single_step` after the exit: TF as the guest had it
    /// (`guest_tf`), and no single step left pending for the next entry
    /// (VMX records one when an instruction with TF = 1 exits).
    fn disarm_single_step(&mut self, guest_tf: bool);
    /// Intercepts INT n (SVM; VMX has no such intercept and ignores it).
    /// QEMU's SVM takes INT3 through this intercept instead of #BP's.
    fn set_int_n_intercept(&mut self, on: bool);
    /// Delivers software interrupt `vector` as INT n at RIP, `len` bytes
    /// long, would (after an `Exit::SoftwareInterrupt`).
    fn inject_software_interrupt(&mut self, vector: u8, len: u8);
    /// The guest's DR7.
    fn dr7(&self) -> u64;
    fn set_dr7(&mut self, dr7: u64);
    /// The guest's DR6 (VMX: live in the CPU; SVM: in the VMCB).
    fn dr6(&self) -> u64;
    fn set_dr6(&mut self, dr6: u64);
    /// Intercepts MOV to and from DR0–DR7 (`Exit::MovDr`), or stops.
    fn set_dr_intercept(&mut self, on: bool);
    /// Makes MOV to CR8 exit (`Exit::CrWrite`), or not: needed while the
    /// local APIC is emulated, so that a lower task priority lets a waiting
    /// interrupt in at once. (VMX: CR8 accesses always exit.)
    fn set_cr8_write_intercept(&mut self, on: bool);
    /// Steps past the instruction that exited, as executing it would: RIP
    /// advances (wrapping at 4 GiB outside 64-bit mode) and the interrupt
    /// shadow ends.
    fn skip_instruction(&mut self, len: u8) {
        let rip = self.rip().wrapping_add(u64::from(len));
        let long = self.mode() == CpuMode::Long64;
        self.set_rip(if long { rip } else { rip & 0xffff_ffff });
        self.clear_interrupt_shadow();
    }

    /// The guest's operating mode, from CR0.PE, EFER.LMA and CS.
    fn mode(&self) -> CpuMode {
        let cs = self.segment(SegmentReg::Cs);
        CpuMode::from_state(self.cr0(), self.efer(), cs.ar)
    }
}
