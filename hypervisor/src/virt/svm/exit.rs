//! SVM exit codes (AMD APM Vol. 2 Appendix C) translated into the vendor-
//! neutral `Exit`.

use super::vmcb::{Vmcb, code};
use crate::mm::GuestPhys;
use crate::virt::exit::{Exit, ExitInfo, IoAccess, NestedFault};

/// Exceptions that push an error code (APM Vol. 2 8.2): #DF, #TS, #NP, #SS,
/// #GP, #PF, #AC, #CP, #VC, #SX.
const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Translates the VMCB's exit. `nrip_save` says whether `next_rip` is valid.
pub fn read(vmcb: &Vmcb, nrip_save: bool) -> ExitInfo {
    let c = &vmcb.control;
    let rip = vmcb.save.rip;
    let nrip_len = || {
        let len = c.next_rip.wrapping_sub(rip);
        (nrip_save && c.next_rip != 0 && (1..=15).contains(&len)).then_some(len as u8)
    };
    if c.exit_code & 0xffff_ffff == code::INVALID_LOW32 {
        return ExitInfo {
            exit: Exit::EntryFailed {
                what: "VMRUN: invalid guest state (VMEXIT_INVALID)",
                code: c.exit_code,
            },
            len: None,
        };
    }
    let (exit, len) = match c.exit_code {
        code::CPUID => (Exit::Cpuid, nrip_len()),
        code::MSR => (
            if c.exit_info1 == 0 {
                Exit::Rdmsr
            } else {
                Exit::Wrmsr
            },
            nrip_len(),
        ),
        code::HLT => (Exit::Hlt, nrip_len()),
        code::XSETBV => (Exit::Xsetbv, nrip_len()),
        code::VMMCALL => (Exit::Hypercall, nrip_len()),
        code::INVD | code::WBINVD => (Exit::CacheFlush, nrip_len()),
        code::IOIO => {
            // For IOIO, EXITINFO2 holds the next RIP even without NRIP save.
            let len = c.exit_info2.wrapping_sub(rip);
            (
                Exit::Io(io(c.exit_info1)),
                (1..=15).contains(&len).then_some(len as u8),
            )
        }
        code::NPF => {
            // EXITINFO1 is a page-fault error code: bit 1 write, bit 4 fetch,
            // bit 32 the final guest-physical address, bit 33 a guest page
            // table (APM Vol. 2 15.25.6); EXITINTINFO valid: during event
            // delivery.
            let e = c.exit_info1;
            (
                Exit::NestedPageFault(NestedFault {
                    gpa: GuestPhys::new(c.exit_info2),
                    write: e & 2 != 0,
                    fetch: e & 16 != 0,
                    final_address: e & (1 << 32) != 0 && e & (1 << 33) == 0,
                    during_delivery: c.exit_int_info & super::vmcb::event::VALID != 0,
                }),
                None,
            )
        }
        cr @ code::CR0_WRITE..=code::CR15_WRITE => {
            // With decode assists, EXITINFO1 bit 63 says bits 3:0 name the
            // register (APM Vol. 2 15.33.1); otherwise the handler decodes.
            let info = c.exit_info1;
            let gpr = (info & (1 << 63) != 0).then_some((info & 0xf) as u8);
            (
                Exit::CrWrite {
                    cr: (cr - code::CR0_WRITE) as u8,
                    gpr,
                },
                nrip_len(),
            )
        }
        dr @ (code::DR0_READ..=code::DR7_READ | code::DR0_WRITE..=code::DR7_WRITE) => {
            // As for CR accesses: EXITINFO1 names the register only with
            // decode assists.
            let info = c.exit_info1;
            (
                Exit::MovDr {
                    dr: (dr & 7) as u8,
                    gpr: (info & (1 << 63) != 0).then_some((info & 0xf) as u8),
                    write: dr >= code::DR0_WRITE,
                },
                nrip_len(),
            )
        }
        code::SHUTDOWN => (Exit::TripleFault, None),
        code::INTR | code::NMI | code::SMI | code::INIT => (Exit::Interrupt, None),
        code::VINTR => (Exit::InterruptWindow, None),
        code::IRET => (Exit::NmiWindow, None),
        code::SWINT => (Exit::SoftwareInterrupt, None),
        code::VMRUN..=code::SKINIT | code::INVLPGA => (Exit::Undefined("SVM instruction"), None),
        code::MONITOR..=code::MWAIT_CONDITIONAL => (Exit::Undefined("MONITOR/MWAIT"), None),
        code::RDPMC => (Exit::GeneralProtection("RDPMC"), None),
        code::FERR_FREEZE => (Exit::Interrupt, None),
        v @ code::EXCEPTION_FIRST..=code::EXCEPTION_LAST => {
            let vector = (v - code::EXCEPTION_FIRST) as u8;
            let error = has_error_code(vector).then_some(c.exit_info1 as u32);
            (Exit::Exception { vector, error }, None)
        }
        other => (
            Exit::Unknown {
                reason: other,
                qualification: c.exit_info1,
            },
            None,
        ),
    };
    ExitInfo { exit, len }
}

/// IOIO EXITINFO1 (APM Vol. 2 15.10.2): TYPE (1 = IN) bit 0, STR bit 2,
/// REP bit 3, SZ8/SZ16/SZ32 bits 4–6, port bits 31:16.
pub fn io(info: u64) -> IoAccess {
    let size = if info & (1 << 6) != 0 {
        4
    } else if info & (1 << 5) != 0 {
        2
    } else {
        1
    };
    IoAccess {
        port: (info >> 16) as u16,
        size,
        input: info & 1 != 0,
        string: info & 4 != 0,
        rep: info & 8 != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioio_info() {
        // OUT dx, al to 0xe9 (SZ8, A16... address size bits ignored).
        assert_eq!(
            io(0x00e9_0010),
            IoAccess {
                port: 0xe9,
                size: 1,
                input: false,
                string: false,
                rep: false
            }
        );
        // REP INSW from 0x1f0.
        assert_eq!(
            io(0x01f0_0000 | 1 | 4 | 8 | 0x20),
            IoAccess {
                port: 0x1f0,
                size: 2,
                input: true,
                string: true,
                rep: true
            }
        );
        assert_eq!(io(0x0cfc_0041).size, 4);
    }

    #[test]
    fn error_code_vectors() {
        assert!(has_error_code(13) && has_error_code(14) && has_error_code(8));
        assert!(!has_error_code(6) && !has_error_code(3) && !has_error_code(18));
    }
}
