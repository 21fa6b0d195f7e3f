//! Vendor-neutral VM exits. Each back end translates its hardware exit
//! reason into an `Exit` once; handlers never see VMX or SVM codes.

use crate::mm::GuestPhys;

/// A port I/O exit (SDM Vol. 3C Table 28-5; APM Vol. 2 15.10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    pub input: bool,
    /// INS/OUTS.
    pub string: bool,
    pub rep: bool,
}

/// A guest-physical access that the nested page tables refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NestedFault {
    pub gpa: GuestPhys,
    pub write: bool,
    pub fetch: bool,
    /// The access was the instruction's own (to the final translation of a
    /// linear address), not to a guest page-table entry.
    pub final_address: bool,
    /// It happened while an event (interrupt, exception) was being
    /// delivered (pushing to the stack, reading the IDT).
    pub during_delivery: bool,
}

/// Why the guest left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Cpuid,
    Rdmsr,
    Wrmsr,
    Hlt,
    Xsetbv,
    /// VMCALL / VMMCALL.
    Hypercall,
    /// INVD or WBINVD: no cache state of the guest's own to manage.
    CacheFlush,
    Io(IoAccess),
    /// MOV to CR`cr` from general register `gpr` (encoding order; None
    /// where the hardware did not say: SVM without decode assists).
    CrWrite {
        cr: u8,
        gpr: Option<u8>,
    },
    /// MOV from CR`cr` into general register `gpr`.
    CrRead {
        cr: u8,
        gpr: u8,
    },
    /// CLTS (clears CR0.TS).
    Clts,
    /// LMSW: loads CR0 bits 3:0 from `value`, but cannot clear PE.
    Lmsw {
        value: u8,
    },
    NestedPageFault(NestedFault),
    /// The guest triple-faulted (SVM: shutdown).
    TripleFault,
    /// An exception the hypervisor intercepts.
    Exception {
        vector: u8,
        error: Option<u32>,
    },
    /// An instruction the guest may not execute (VMX/SVM instructions,
    /// MONITOR/MWAIT): inject #UD.
    Undefined(&'static str),
    /// An instruction that faults for the guest (RDPMC without a PMU).
    GeneralProtection(&'static str),
    /// A physical interrupt, NMI or SMI arrived: the hypervisor takes it and
    /// the guest continues.
    Interrupt,
    /// The guest can take an external interrupt now (the window the
    /// hypervisor asked for with `GuestCpu::set_interrupt_window`).
    InterruptWindow,
    /// The guest's NMI blocking ended (`GuestCpu::set_nmi_window`; SVM:
    /// its IRET, intercepted while it is inside an NMI handler).
    NmiWindow,
    /// INT n (or, under QEMU's SVM, INT3) while intercepted
    /// (`GuestCpu::set_int_n_intercept`).
    SoftwareInterrupt,
    /// MOV to (`write`) or from debug register `dr` while intercepted
    /// (`GuestCpu::set_dr_intercept`), with the general register where the
    /// hardware said (None: SVM without decode assists).
    MovDr {
        dr: u8,
        gpr: Option<u8>,
        write: bool,
    },
    /// VM entry failed: the VM cannot run (its state is invalid).
    EntryFailed {
        what: &'static str,
        code: u64,
    },
    /// Anything else, with the raw vendor reason and qualification.
    Unknown {
        reason: u64,
        qualification: u64,
    },
}

/// An exit with what the hardware told about the exiting instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    pub exit: Exit,
    /// Length of the instruction that exited, when the hardware reports it
    /// (VMX always; SVM with NRIP save or for IOIO). Otherwise the exit loop
    /// decodes the instruction.
    pub len: Option<u8>,
}

impl Exit {
    /// A short name, for statistics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cpuid => "cpuid",
            Self::Rdmsr => "rdmsr",
            Self::Wrmsr => "wrmsr",
            Self::Hlt => "hlt",
            Self::Xsetbv => "xsetbv",
            Self::Hypercall => "hypercall",
            Self::CacheFlush => "invd/wbinvd",
            Self::Io(_) => "io",
            Self::CrWrite { .. } | Self::CrRead { .. } | Self::Clts | Self::Lmsw { .. } => "cr",
            Self::NestedPageFault(_) => "npf",
            Self::TripleFault => "triple-fault",
            Self::Exception { .. } => "exception",
            Self::Undefined(_) => "undefined",
            Self::GeneralProtection(_) => "gp",
            Self::Interrupt => "interrupt",
            Self::InterruptWindow => "interrupt-window",
            Self::NmiWindow => "nmi-window",
            Self::SoftwareInterrupt => "int-n",
            Self::MovDr { .. } => "dr",
            Self::EntryFailed { .. } => "entry-failed",
            Self::Unknown { .. } => "unknown",
        }
    }
}
