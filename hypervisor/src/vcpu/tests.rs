//! Host tests of the vendor-neutral exit handlers against a fake vCPU.

use super::*;
use crate::arch::msr::{self as m, efer};
use crate::guest::GuestRam;
use crate::vcpu::cpuid::{CpuidTable, Options};
use crate::vcpu::lazy::Extended;
use crate::virt::{Gprs, Segment};
use crate::vm::VmEnv;

/// A vCPU whose state is plain fields.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) gprs: Gprs,
    pub(crate) rip: u64,
    pub(crate) rsp: u64,
    pub(crate) rflags: u64,
    pub(crate) cr0: u64,
    pub(crate) cr3: u64,
    pub(crate) cr4: u64,
    pub(crate) efer: u64,
    pub(crate) pat: u64,
    pub(crate) cpl: u8,
    pub(crate) cs_ar: u32,
    pub(crate) injected: Option<Fault>,
    pub(crate) interrupt: Option<u8>,
    pub(crate) window: bool,
}

impl GuestCpu for Fake {
    fn gprs(&mut self) -> &mut Gprs {
        &mut self.gprs
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, rip: u64) {
        self.rip = rip
    }
    fn rsp(&self) -> u64 {
        self.rsp
    }
    fn set_rsp(&mut self, rsp: u64) {
        self.rsp = rsp
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, r: u64) {
        self.rflags = r
    }
    fn cr0(&self) -> u64 {
        self.cr0
    }
    fn cr3(&self) -> u64 {
        self.cr3
    }
    fn cr4(&self) -> u64 {
        self.cr4
    }
    fn read_cr(&self, cr: u8) -> u64 {
        u64::from(cr) * 0x100
    }
    fn efer(&self) -> u64 {
        self.efer
    }
    fn set_efer(&mut self, v: u64) {
        self.efer = (v & !efer::LMA) | (self.efer & efer::LMA)
    }
    fn write_cr(&mut self, _cr: u8, _v: u64) -> Result<CrEffect, Fault> {
        Ok(CrEffect::None)
    }
    fn set_pdptes(&mut self, _p: [u64; 4]) {}
    fn pat(&self) -> u64 {
        self.pat
    }
    fn set_pat(&mut self, p: u64) {
        self.pat = p
    }
    fn tsc_offset(&self) -> u64 {
        0
    }
    fn set_tsc_offset(&mut self, _o: u64) {}
    fn set_cr2(&mut self, _v: u64) {}
    fn cr2(&self) -> u64 {
        0
    }
    fn hw_msr(&self, _index: u32) -> Option<u64> {
        None
    }
    fn set_hw_msr(&mut self, _index: u32, _value: u64) -> bool {
        false
    }
    fn segment(&self, _r: SegmentReg) -> Segment {
        Segment {
            ar: self.cs_ar,
            ..Default::default()
        }
    }
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn inject(&mut self, f: Fault) {
        self.injected = Some(f)
    }
    fn clear_interrupt_shadow(&mut self) {}
    fn interrupt_allowed(&self) -> bool {
        self.rflags & (1 << 9) != 0 && self.injected.is_none() && self.interrupt.is_none()
    }
    fn inject_interrupt(&mut self, vector: u8) {
        self.interrupt = Some(vector);
    }
    fn set_interrupt_window(&mut self, on: bool) {
        self.window = on;
    }
    fn nmi_allowed(&mut self) -> bool {
        false
    }
    fn inject_nmi(&mut self) {}
    fn set_nmi_window(&mut self, _on: bool) {}
    fn nmi_window_exit(&mut self) {}
    fn nmi_masked(&self) -> bool {
        false
    }
    fn set_nmi_masked(&mut self, _masked: bool) {}
    fn without_nmis(&mut self) {}
    fn nmi_capable(&self) -> bool {
        false
    }
    fn queued_event(&self) -> Option<crate::virt::Queued> {
        None
    }
    fn interrupt_shadow(&self) -> u8 {
        0
    }
    fn set_interrupt_shadow(&mut self, _shadow: u8) {}
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
        self.rip += u64::from(len);
    }
    fn dr7(&self) -> u64 {
        0x400
    }
    fn set_dr7(&mut self, _dr7: u64) {}
    fn dr6(&self) -> u64 {
        0xffff_0ff0
    }
    fn set_dr6(&mut self, _dr6: u64) {}
    fn set_cr8_write_intercept(&mut self, _on: bool) {}
    fn cancel_event(&mut self) {}
    fn set_dr_intercept(&mut self, _on: bool) {}
    fn system_regs(&self) -> crate::virt::SystemRegs {
        crate::virt::SystemRegs {
            cr0: self.cr0,
            cr4: self.cr4,
            efer: self.efer,
            ..Default::default()
        }
    }
    fn set_system_regs(&mut self, r: &crate::virt::SystemRegs) -> Result<CrEffect, Fault> {
        (self.cr0, self.cr4, self.efer) = (r.cr0, r.cr4, r.efer);
        Ok(CrEffect::None)
    }
}

/// A 64-bit guest at CPL 0.
pub(crate) fn long_mode() -> Fake {
    Fake {
        rip: 0x1000,
        cr0: 0x8000_0011,
        cr4: 0x20,
        efer: efer::LME | efer::LMA,
        cs_ar: 0xa09b,
        ..Default::default()
    }
}

pub(crate) fn env() -> VmEnv {
    let host = |leaf: u32, _sub: u32| match leaf {
        0 => [0xd, 0, 0, 0],
        1 => [0x906ea, 0, 1 << 5, 0],
        _ => [0; 4],
    };
    VmEnv {
        id: 1,
        spec_id: 1,
        name: "t".into(),
        kind: crate::vm::VmKind::Builtin,
        hypercall_exits: 0,
        user_msr_exits: 0,
        msr_filter: None,
        xen: None,
        ram: GuestRam::empty(),
        cpuid: CpuidTable::build(
            host,
            Options {
                xcr0_max: 0x7,
                rdtscp: false,
            },
        ),
        msrs: Default::default(),
        lazy: Extended::detached(),
        console: Default::default(),
        stats: Default::default(),
        decoded: Default::default(),
        vcpu_id: 0,
    }
}

fn exit(e: Exit, len: u8) -> ExitInfo {
    ExitInfo {
        exit: e,
        len: Some(len),
    }
}

#[test]
fn cpuid_answers_from_the_table_and_skips() {
    let (mut cpu, mut env) = (long_mode(), env());
    cpu.gprs.rax = 0x4000_0000;
    cpu.gprs.rcx = 0xdead;
    assert_eq!(
        handle(&mut cpu, &mut env, exit(Exit::Cpuid, 2), 7),
        Action::Resume
    );
    assert_eq!(cpu.gprs.rbx, u64::from(u32::from_le_bytes(*b"Moji")));
    assert_eq!(cpu.rip, 0x1002);
    cpu.gprs.rax = 1;
    handle(&mut cpu, &mut env, exit(Exit::Cpuid, 2), 7);
    assert_eq!(cpu.gprs.rcx & (1 << 5), 0, "VMX hidden");
    assert_ne!(cpu.gprs.rcx & (1 << 31), 0, "hypervisor bit");
    assert_eq!(env.stats.total(), 2);
}

#[test]
fn msr_policy() {
    let (mut cpu, mut env) = (long_mode(), env());
    // An MSR guests never get: #GP, RIP unchanged.
    for index in [
        m::AMD_VM_HSAVE_PA,
        m::IA32_VMX_BASIC,
        m::AMD_VM_CR,
        0x1234_5678,
    ] {
        cpu.gprs.rcx = u64::from(index);
        cpu.injected = None;
        assert_eq!(
            handle(&mut cpu, &mut env, exit(Exit::Rdmsr, 2), 7),
            Action::Resume
        );
        assert_eq!(cpu.injected, Some(Fault::GP0), "{index:#x}");
        assert_eq!(cpu.rip, 0x1000);
    }
    // FEATURE_CONTROL reads as locked with VMX off; writes fault.
    cpu.gprs.rcx = u64::from(m::IA32_FEATURE_CONTROL);
    cpu.injected = None;
    handle(&mut cpu, &mut env, exit(Exit::Rdmsr, 2), 7);
    assert_eq!((cpu.injected, cpu.gprs.rax, cpu.gprs.rdx), (None, 1, 0));
    cpu.gprs.rax = 5;
    handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7);
    assert_eq!(cpu.injected, Some(Fault::GP0));
    // EFER: SVME is refused, NXE accepted.
    cpu.injected = None;
    cpu.gprs.rcx = u64::from(m::IA32_EFER);
    cpu.gprs.set_edx_eax(efer::LME | efer::LMA | efer::SVME);
    handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7);
    assert_eq!(cpu.injected, Some(Fault::GP0));
    cpu.injected = None;
    cpu.gprs.set_edx_eax(efer::LME | efer::LMA | efer::NXE);
    handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7);
    assert_eq!(
        (cpu.injected, cpu.efer),
        (None, efer::LME | efer::LMA | efer::NXE)
    );
    // Clearing LME while paging is on faults.
    cpu.gprs.set_edx_eax(efer::NXE);
    handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7);
    assert_eq!(cpu.injected, Some(Fault::GP0));
    // PAT: valid types only.
    cpu.injected = None;
    cpu.gprs.rcx = u64::from(m::IA32_PAT);
    cpu.gprs.set_edx_eax(0x0606_0606_0606_0606);
    handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7);
    assert_eq!((cpu.injected, cpu.pat), (None, 0x0606_0606_0606_0606));
    cpu.gprs.set_edx_eax(0x0202);
    handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7);
    assert_eq!(cpu.injected, Some(Fault::GP0));
    // MTRR_DEF_TYPE round trip.
    cpu.injected = None;
    cpu.gprs.rcx = u64::from(m::IA32_MTRR_DEF_TYPE);
    cpu.gprs.set_edx_eax(0x806);
    handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7);
    cpu.gprs.set_edx_eax(0);
    handle(&mut cpu, &mut env, exit(Exit::Rdmsr, 2), 7);
    assert_eq!((cpu.injected, cpu.gprs.rax), (None, 0x806));
}

#[test]
fn xsetbv_checks() {
    let (mut cpu, mut env) = (long_mode(), env());
    // Without CR4.OSXSAVE: #UD.
    handle(&mut cpu, &mut env, exit(Exit::Xsetbv, 3), 7);
    assert_eq!(cpu.injected, Some(Fault::UD));
    cpu.cr4 |= CR4_OSXSAVE;
    for (ecx, value, cpl) in [
        (0, 0, 0),
        (0, 2, 0),
        (0, 5, 0),
        (1, 3, 0),
        (0, 3, 3),
        (0, 0xf, 0),
    ] {
        cpu.injected = None;
        cpu.cpl = cpl;
        cpu.gprs.rcx = ecx;
        cpu.gprs.set_edx_eax(value);
        handle(&mut cpu, &mut env, exit(Exit::Xsetbv, 3), 7);
        assert_eq!(
            cpu.injected,
            Some(Fault::GP0),
            "ecx {ecx} value {value:#x} cpl {cpl}"
        );
    }
    assert_eq!(env.lazy.xcr0, 1);
}

#[test]
fn hypercalls_are_answered_as_kvm_answers_a_guest() {
    let (mut cpu, mut env) = (long_mode(), env());
    cpu.gprs.rax = 12345;
    handle(&mut cpu, &mut env, exit(Exit::Hypercall, 3), 7);
    assert_eq!(cpu.gprs.rax as i64, -1000, "-KVM_ENOSYS");
    assert_eq!(cpu.rip, 0x1003);
    cpu.cpl = 3;
    handle(&mut cpu, &mut env, exit(Exit::Hypercall, 3), 7);
    assert_eq!(cpu.gprs.rax as i64, -1, "-KVM_EPERM");
    // In 32-bit mode the value is truncated to EAX.
    let mut cpu = Fake {
        cr0: 0x11,
        cs_ar: 0xc09b,
        ..Default::default()
    };
    handle(&mut cpu, &mut env, exit(Exit::Hypercall, 3), 7);
    assert_eq!(cpu.gprs.rax, u64::from(-1000i32 as u32));
}

#[test]
fn the_bench_floor_only_steps_over_the_hypercall() {
    let (mut cpu, mut env) = (long_mode(), env());
    cpu.gprs.rax = abi::guest::BENCH_FLOOR_HYPERCALL;
    // The reported length where the CPU has one, else 3 (nothing decoded:
    // RIP points at RAM full of zeros here).
    let action = handle(&mut cpu, &mut env, exit(Exit::Hypercall, 4), 7);
    assert_eq!((action, cpu.rip), (Action::Resume, 0x1004));
    let info = ExitInfo {
        exit: Exit::Hypercall,
        len: None,
    };
    let action = handle(&mut cpu, &mut env, info, 7);
    assert_eq!((action, cpu.rip), (Action::Resume, 0x1007));
    assert_eq!(cpu.gprs.rax, abi::guest::BENCH_FLOOR_HYPERCALL);
    // The control domain's hypercalls are all requests.
    env.kind = crate::vm::VmKind::Control;
    let action = handle(&mut cpu, &mut env, exit(Exit::Hypercall, 3), 7);
    assert_eq!((action, cpu.rip), (Action::ControlRequest, 0x1007));
}

#[test]
fn ports_console_exit_yield() {
    let (mut cpu, mut env) = (long_mode(), env());
    let out = |port, size| {
        Exit::Io(crate::virt::exit::IoAccess {
            port,
            size,
            input: false,
            string: false,
            rep: false,
        })
    };
    cpu.gprs.rax = 0x4f;
    assert_eq!(
        handle(&mut cpu, &mut env, exit(out(0xe9, 1), 2), 7),
        Action::Resume
    );
    assert_eq!(
        handle(&mut cpu, &mut env, exit(out(0xf5, 1), 2), 7),
        Action::Yield
    );
    cpu.gprs.rax = 0x1_0003;
    assert_eq!(
        handle(&mut cpu, &mut env, exit(out(0xf4, 2), 2), 7),
        Action::Stop(StopReason::Exited(3))
    );
    assert_eq!(cpu.rip, 0x1006, "the exiting OUT is stepped over too");
    // IN of one byte keeps the rest of RAX; IN of four zero-extends.
    let inp = |port, size| {
        Exit::Io(crate::virt::exit::IoAccess {
            port,
            size,
            input: true,
            string: false,
            rep: false,
        })
    };
    cpu.gprs.rax = 0xffff_ffff_1234_5678;
    handle(&mut cpu, &mut env, exit(inp(0x80, 1), 2), 7);
    assert_eq!(cpu.gprs.rax, 0xffff_ffff_1234_56ff);
    handle(&mut cpu, &mut env, exit(inp(0x1234, 4), 1), 7);
    assert_eq!(cpu.gprs.rax, 0xffff_ffff);
    // String I/O stops the VM with a reason (no device needs it yet).
    let s = Exit::Io(crate::virt::exit::IoAccess {
        port: 0xe9,
        size: 1,
        input: false,
        string: true,
        rep: true,
    });
    assert!(matches!(
        handle(&mut cpu, &mut env, exit(s, 2), 7),
        Action::Stop(StopReason::Unhandled { .. })
    ));
}

#[test]
fn stops_with_reasons() {
    let (mut cpu, mut env) = (long_mode(), env());
    assert_eq!(
        handle(&mut cpu, &mut env, exit(Exit::Hlt, 1), 7),
        Action::Stop(StopReason::Halted {
            rip: 0x1000,
            interrupts_enabled: false
        })
    );
    assert_eq!(cpu.rip, 0x1001, "RIP points past HLT, as after a real halt");
    assert_eq!(
        handle(
            &mut cpu,
            &mut env,
            ExitInfo {
                exit: Exit::TripleFault,
                len: None
            },
            7
        ),
        Action::Stop(StopReason::TripleFault { rip: 0x1001 })
    );
    let npf = Exit::NestedPageFault(crate::virt::exit::NestedFault {
        gpa: GuestPhys::new(0xfee0_0000),
        write: true,
        fetch: false,
        final_address: true,
        during_delivery: false,
    });
    assert!(matches!(
        handle(
            &mut cpu,
            &mut env,
            ExitInfo {
                exit: npf,
                len: None
            },
            7
        ),
        Action::Stop(StopReason::UnmappedAccess {
            gpa: 0xfee0_0000,
            write: true,
            ..
        })
    ));
    // VMX/SVM instructions and MONITOR/MWAIT raise #UD; RDPMC #GP.
    handle(
        &mut cpu,
        &mut env,
        exit(Exit::Undefined("VMX instruction"), 3),
        7,
    );
    assert_eq!(cpu.injected, Some(Fault::UD));
    handle(
        &mut cpu,
        &mut env,
        exit(Exit::GeneralProtection("RDPMC"), 2),
        7,
    );
    assert_eq!(cpu.injected, Some(Fault::GP0));
}

#[test]
fn kvm_vms_get_mmio_and_the_interrupt_window() {
    let mut cpu = Fake {
        rip: 0x1000,
        ..Default::default()
    };
    let mut env = env();
    env.kind = VmKind::Kvm;
    let fault = |write, fetch| {
        Exit::NestedPageFault(crate::virt::exit::NestedFault {
            gpa: GuestPhys::new(0x2000_0000),
            write,
            fetch,
            final_address: true,
            during_delivery: false,
        })
    };
    let not_data = |final_address, during_delivery| {
        Exit::NestedPageFault(crate::virt::exit::NestedFault {
            gpa: GuestPhys::new(0x2000_0000),
            write: true,
            fetch: false,
            final_address,
            during_delivery,
        })
    };
    let info = |exit| ExitInfo { exit, len: None };
    // A data access is MMIO for the VMM; a fetch from there cannot be.
    assert!(matches!(
        handle(&mut cpu, &mut env, info(fault(true, false)), 7),
        Action::ForwardMmio(f) if f.write
    ));
    assert!(matches!(
        handle(&mut cpu, &mut env, info(fault(false, true)), 7),
        Action::Stop(StopReason::UnmappedAccess { fetch: true, .. })
    ));
    // Pushing an event's frame, or walking the guest's page tables, is no
    // access of the instruction at RIP: not MMIO.
    assert!(matches!(
        handle(&mut cpu, &mut env, info(not_data(true, true)), 7),
        Action::Stop(StopReason::UnmappedAccess { delivery: true, .. })
    ));
    assert!(matches!(
        handle(&mut cpu, &mut env, info(not_data(false, false)), 7),
        Action::Stop(StopReason::UnmappedAccess {
            delivery: false,
            ..
        })
    ));
    // The window exit is turned off and handed to the run loop.
    cpu.window = true;
    assert!(matches!(
        handle(&mut cpu, &mut env, info(Exit::InterruptWindow), 7),
        Action::InterruptWindow
    ));
    assert!(!cpu.window);
}

#[test]
fn an_undecodable_instruction_stops_the_vm_instead_of_guessing() {
    // No length from the hardware and no RAM to fetch from.
    let (mut cpu, mut env) = (long_mode(), env());
    let r = handle(
        &mut cpu,
        &mut env,
        ExitInfo {
            exit: Exit::Cpuid,
            len: None,
        },
        7,
    );
    assert!(matches!(r, Action::Stop(StopReason::Unhandled { .. })));
    assert_eq!(cpu.rip, 0x1000);
}

#[test]
fn intercepted_exceptions_are_reflected() {
    let (mut cpu, mut env) = (long_mode(), env());
    let ac = ExitInfo {
        exit: Exit::Exception {
            vector: 17,
            error: Some(0),
        },
        len: None,
    };
    assert_eq!(handle(&mut cpu, &mut env, ac, 7), Action::Resume);
    assert_eq!(
        cpu.injected,
        Some(Fault {
            vector: 17,
            error: Some(0)
        })
    );
    assert_eq!(
        cpu.rip, 0x1000,
        "a fault is delivered at the faulting instruction"
    );
    let db = ExitInfo {
        exit: Exit::Exception {
            vector: 1,
            error: None,
        },
        len: None,
    };
    handle(&mut cpu, &mut env, db, 7);
    assert_eq!(
        cpu.injected,
        Some(Fault {
            vector: 1,
            error: None
        })
    );
}

#[test]
fn control_register_moves() {
    let (mut cpu, mut env) = (long_mode(), env());
    // MOV RSP, CR8 lands in RSP, not in a general register.
    handle(
        &mut cpu,
        &mut env,
        exit(Exit::CrRead { cr: 8, gpr: 4 }, 3),
        7,
    );
    assert_eq!(cpu.rsp, 0x800);
    handle(
        &mut cpu,
        &mut env,
        exit(Exit::CrRead { cr: 3, gpr: 9 }, 4),
        7,
    );
    assert_eq!(cpu.gprs.r9, 0x300);
    // A CR write whose register the hardware did not name, with no code to
    // decode: the VM stops rather than guess.
    let r = handle(
        &mut cpu,
        &mut env,
        ExitInfo {
            exit: Exit::CrWrite { cr: 4, gpr: None },
            len: None,
        },
        7,
    );
    assert!(matches!(r, Action::Stop(StopReason::Unhandled { .. })));
}

#[test]
fn failed_msr_accesses_go_to_the_vmm_that_asked() {
    use abi::kvm::{KVM_MSR_EXIT_REASON_INVAL, KVM_MSR_EXIT_REASON_UNKNOWN};
    let (mut cpu, mut env) = (long_mode(), env());
    let vmm_msr = abi::guest::VMM_MSR_BASE;
    let rdmsr = |cpu: &mut Fake, env: &mut VmEnv, index: u32| {
        cpu.gprs.rcx = u64::from(index);
        cpu.injected = None;
        handle(cpu, env, exit(Exit::Rdmsr, 2), 7)
    };
    // A built-in VM, or a KVM-API VM whose VMM did not ask: #GP.
    assert_eq!(rdmsr(&mut cpu, &mut env, vmm_msr), Action::Resume);
    assert_eq!(cpu.injected, Some(Fault::GP0));
    env.kind = crate::vm::VmKind::Kvm;
    assert_eq!(rdmsr(&mut cpu, &mut env, vmm_msr), Action::Resume);
    assert_eq!(cpu.injected, Some(Fault::GP0));
    // Unknown MSRs only.
    env.user_msr_exits = KVM_MSR_EXIT_REASON_UNKNOWN;
    let forwarded = |index, write, reason| {
        Action::ForwardMsr(MsrAccess {
            index,
            write,
            reason,
        })
    };
    assert_eq!(
        rdmsr(&mut cpu, &mut env, vmm_msr),
        forwarded(vmm_msr, None, KVM_MSR_EXIT_REASON_UNKNOWN)
    );
    assert_eq!((cpu.injected, cpu.rip), (None, 0x1000), "nothing done yet");
    // A known MSR refused by policy stays #GP; with INVAL it goes too.
    assert_eq!(
        rdmsr(&mut cpu, &mut env, m::AMD_VM_HSAVE_PA),
        Action::Resume
    );
    assert_eq!(cpu.injected, Some(Fault::GP0));
    env.user_msr_exits |= KVM_MSR_EXIT_REASON_INVAL;
    cpu.gprs.rcx = u64::from(m::IA32_PAT);
    cpu.gprs.rdx = 0x0800_0000;
    cpu.gprs.rax = 0;
    cpu.injected = None;
    assert_eq!(
        handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7),
        forwarded(
            m::IA32_PAT,
            Some(0x0800_0000_0000_0000),
            KVM_MSR_EXIT_REASON_INVAL
        )
    );
    // What the hypervisor handles never goes.
    assert_eq!(rdmsr(&mut cpu, &mut env, m::IA32_EFER), Action::Resume);
    assert_eq!((cpu.injected, cpu.rip), (None, 0x1002));
    // A filter that denies reading EFER: #GP, or the VMM with FILTER.
    use crate::vcpu::msr_filter::{MsrFilter, Range};
    let range = Range {
        flags: abi::kvm::KVM_MSR_FILTER_READ,
        base: m::IA32_EFER,
        nmsrs: 1,
        bitmap: alloc::vec![0; 8],
    };
    env.msr_filter = MsrFilter::new(0, alloc::vec![range]).unwrap();
    assert_eq!(rdmsr(&mut cpu, &mut env, m::IA32_EFER), Action::Resume);
    assert_eq!((cpu.injected, cpu.rip), (Some(Fault::GP0), 0x1002));
    env.user_msr_exits |= abi::kvm::KVM_MSR_EXIT_REASON_FILTER;
    assert_eq!(
        rdmsr(&mut cpu, &mut env, m::IA32_EFER),
        forwarded(m::IA32_EFER, None, abi::kvm::KVM_MSR_EXIT_REASON_FILTER)
    );
    // The Xen hypercall-page MSR goes to the caller, which reaches the
    // VMM's blobs.
    env.xen = crate::control::xen::config(&abi::kvm::kvm_xen_hvm_config {
        msr: abi::guest::XEN_HYPERCALL_MSR,
        ..Default::default()
    })
    .unwrap();
    cpu.gprs.rcx = u64::from(abi::guest::XEN_HYPERCALL_MSR);
    (cpu.gprs.rdx, cpu.gprs.rax) = (0, 0x30_0001);
    assert_eq!(
        handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7),
        Action::XenPage(0x30_0001)
    );
    // Writes are not filtered by that range.
    cpu.gprs.rcx = u64::from(m::IA32_EFER);
    (cpu.gprs.rdx, cpu.gprs.rax) = (0, cpu.efer);
    cpu.injected = None;
    assert_eq!(
        handle(&mut cpu, &mut env, exit(Exit::Wrmsr, 2), 7),
        Action::Resume
    );
    assert_eq!((cpu.injected, cpu.rip), (None, 0x1004));
}
