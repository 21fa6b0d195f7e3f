//! VMX exit reasons (SDM Vol. 3D Appendix C) translated into the vendor-
//! neutral `Exit`.

use super::vmcs::{self, Field};
use crate::mm::GuestPhys;
use crate::virt::exit::{Exit, ExitInfo, IoAccess, NestedFault};

/// Basic exit reasons (SDM Vol. 3D Table C-1).
pub mod reason {
    pub const EXCEPTION_OR_NMI: u16 = 0;
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    pub const TRIPLE_FAULT: u16 = 2;
    pub const INIT: u16 = 3;
    pub const INTERRUPT_WINDOW: u16 = 7;
    pub const NMI_WINDOW: u16 = 8;
    pub const CPUID: u16 = 10;
    pub const GETSEC: u16 = 11;
    pub const HLT: u16 = 12;
    pub const INVD: u16 = 13;
    pub const RDPMC: u16 = 15;
    pub const VMCALL: u16 = 18;
    pub const VMCLEAR: u16 = 19;
    pub const VMXON: u16 = 27;
    pub const CR_ACCESS: u16 = 28;
    pub const MOV_DR: u16 = 29;
    pub const IO: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    pub const INVALID_GUEST_STATE: u16 = 33;
    pub const MSR_LOADING: u16 = 34;
    pub const MWAIT: u16 = 36;
    pub const MONITOR: u16 = 39;
    pub const MACHINE_CHECK: u16 = 41;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIG: u16 = 49;
    pub const INVEPT: u16 = 50;
    pub const INVVPID: u16 = 53;
    pub const PREEMPTION_TIMER: u16 = 52;
    pub const WBINVD: u16 = 54;
    pub const XSETBV: u16 = 55;
    pub const VMFUNC: u16 = 59;
}

/// Bit 31 of the exit reason: VM entry failed (SDM Vol. 3C 28.2.1).
const ENTRY_FAILURE: u32 = 1 << 31;

/// #DB.
const DEBUG_VECTOR: u8 = 1;

/// Interruption-information type field (bits 10:8) value for an NMI.
const INTR_TYPE_NMI: u32 = 2;

/// Translates the current VMCS's exit into an `ExitInfo`.
///
/// # Safety
/// The exiting vCPU's VMCS is current.
pub unsafe fn read() -> ExitInfo {
    // SAFETY: the caller made the VMCS current; these are read-only
    // exit-information fields every VMX CPU has.
    let field = |f| unsafe { vmcs::read(f) };
    let raw = field(Field::ExitReason) as u32;
    let qual = field(Field::ExitQualification);
    let len = field(Field::ExitInstructionLength) as u8;
    let basic = raw as u16;
    if raw & ENTRY_FAILURE != 0 {
        let what = match basic {
            reason::INVALID_GUEST_STATE => "invalid guest state",
            reason::MSR_LOADING => "MSR loading",
            reason::MACHINE_CHECK => "machine check during entry",
            _ => "unknown entry failure",
        };
        return ExitInfo {
            exit: Exit::EntryFailed { what, code: qual },
            len: None,
        };
    }
    let exit = match basic {
        reason::CPUID => Exit::Cpuid,
        reason::RDMSR => Exit::Rdmsr,
        reason::WRMSR => Exit::Wrmsr,
        reason::HLT => Exit::Hlt,
        reason::XSETBV => Exit::Xsetbv,
        reason::VMCALL => Exit::Hypercall,
        reason::INVD | reason::WBINVD => Exit::CacheFlush,
        reason::IO => Exit::Io(io(qual)),
        reason::CR_ACCESS => cr_access(qual),
        // Qualification (SDM Vol. 3C Table 28-4): DR in bits 2:0, bit 4
        // set for MOV from DR, the general register in bits 11:8.
        reason::MOV_DR => Exit::MovDr {
            dr: (qual & 7) as u8,
            gpr: Some(((qual >> 8) & 15) as u8),
            write: qual & (1 << 4) == 0,
        },
        reason::EPT_VIOLATION => {
            let gpa = field(Field::GuestPhysicalAddress);
            // Exit qualification bits 1 (write), 2 (fetch), 7 (a linear
            // address was translated) and 8 (this is its final address, not
            // a paging-structure entry), SDM Table 28-7; IDT-vectoring
            // information valid: during event delivery (28.2.4).
            Exit::NestedPageFault(NestedFault {
                gpa: GuestPhys::new(gpa),
                write: qual & 2 != 0,
                fetch: qual & 4 != 0,
                final_address: qual & (3 << 7) == 3 << 7,
                during_delivery: field(Field::IdtVectoringInfo) & (1 << 31) != 0,
            })
        }
        reason::TRIPLE_FAULT => Exit::TripleFault,
        // The preemption timer only guarantees an exit: the hypervisor's
        // tick, if due, is taken in the interrupt window that follows.
        reason::EXTERNAL_INTERRUPT | reason::PREEMPTION_TIMER => Exit::Interrupt,
        reason::INTERRUPT_WINDOW => Exit::InterruptWindow,
        reason::NMI_WINDOW => Exit::NmiWindow,
        reason::EXCEPTION_OR_NMI => {
            let info = field(Field::ExitInterruptionInfo) as u32;
            if (info >> 8) & 7 == INTR_TYPE_NMI {
                // The exit consumed the NMI: run the host's handler now, whose
                // IRET also ends NMI blocking (as KVM does).
                // SAFETY: vector 2's handler only counts the NMI and returns.
                unsafe { core::arch::asm!("int 2") };
                Exit::Interrupt
            } else {
                let error =
                    (info & (1 << 11) != 0).then(|| field(Field::ExitInterruptionErrorCode) as u32);
                let vector = info as u8;
                if vector == DEBUG_VECTOR {
                    merge_dr6(qual);
                }
                Exit::Exception { vector, error }
            }
        }
        reason::VMCLEAR..=reason::VMXON | reason::INVEPT | reason::INVVPID | reason::VMFUNC => {
            Exit::Undefined("VMX instruction")
        }
        reason::GETSEC => Exit::Undefined("GETSEC"),
        reason::MWAIT | reason::MONITOR => Exit::Undefined("MONITOR/MWAIT"),
        reason::RDPMC => Exit::GeneralProtection("RDPMC"),
        reason::EPT_MISCONFIG => Exit::Unknown {
            reason: u64::from(basic),
            qualification: qual,
        },
        _ => Exit::Unknown {
            reason: u64::from(basic),
            qualification: qual,
        },
    };
    ExitInfo {
        exit,
        len: Some(len),
    }
}

/// A #DB exit leaves DR6 alone and reports its new bits (B0–B3, BD, BS) in
/// the exit qualification (SDM Vol. 3C 28.2.1): merge them, so the #DB the
/// guest then receives finds DR6 as the CPU would have left it. The guest's
/// DR6 is live in the CPU while it owns it (`vcpu::lazy`).
fn merge_dr6(qual: u64) {
    const DR6_STATUS: u64 = 0xf | (1 << 13) | (1 << 14);
    let dr6 = crate::arch::instr::read_dr6();
    // SAFETY: DR6 holds status only; the hypervisor never reads it.
    unsafe { crate::arch::instr::write_dr6(dr6 | (qual & DR6_STATUS)) };
}

/// I/O exit qualification (SDM Vol. 3C Table 28-5): size − 1 in bits 2:0,
/// direction (1 = IN) bit 3, string bit 4, REP bit 5, port bits 31:16.
pub fn io(qual: u64) -> IoAccess {
    IoAccess {
        port: (qual >> 16) as u16,
        size: ((qual & 7) + 1) as u8,
        input: qual & 8 != 0,
        string: qual & 16 != 0,
        rep: qual & 32 != 0,
    }
}

/// Control-register access qualification (SDM Vol. 3C Table 28-3): CR in
/// bits 3:0, access type bits 5:4 (0 MOV to CR, 1 MOV from CR, 2 CLTS,
/// 3 LMSW), register bits 11:8, LMSW source bits 31:16.
pub fn cr_access(qual: u64) -> Exit {
    let cr = (qual & 0xf) as u8;
    let gpr = ((qual >> 8) & 0xf) as u8;
    match (qual >> 4) & 3 {
        0 => Exit::CrWrite { cr, gpr: Some(gpr) },
        1 => Exit::CrRead { cr, gpr },
        2 => Exit::Clts,
        _ => Exit::Lmsw {
            value: ((qual >> 16) & 0xf) as u8,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_qualification() {
        // OUT dx, al to port 0xe9.
        assert_eq!(
            io(0x00e9_0000),
            IoAccess {
                port: 0xe9,
                size: 1,
                input: false,
                string: false,
                rep: false
            }
        );
        // REP INSD from port 0x1f0.
        assert_eq!(
            io(0x01f0_0000 | 0x3 | 0x8 | 0x10 | 0x20),
            IoAccess {
                port: 0x1f0,
                size: 4,
                input: true,
                string: true,
                rep: true
            }
        );
    }

    #[test]
    fn cr_qualification() {
        // MOV CR0, RBX.
        assert_eq!(
            cr_access(0x300),
            Exit::CrWrite {
                cr: 0,
                gpr: Some(3)
            }
        );
        // MOV R12, CR8.
        assert_eq!(cr_access(0xc18), Exit::CrRead { cr: 8, gpr: 12 });
        assert_eq!(cr_access(0x20), Exit::Clts);
        assert_eq!(cr_access(0x0005_0030), Exit::Lmsw { value: 5 });
    }
}
