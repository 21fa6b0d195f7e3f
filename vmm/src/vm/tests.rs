//! The run loop against the scripted back end (`crate::fake`).

use super::*;
use crate::devices::console::Discard;
use crate::fake::{FakeSystem, FakeVm, Scripted};
use crate::record::ExitRecord;
use abi::kvm::KVM_EXIT_SHUTDOWN;
use abi::kvm::{
    KVM_EXIT_HLT, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, errno,
};

fn vm(script: Vec<Scripted>, config: VmConfig) -> (Vm<FakeVm>, crate::fake::Answers) {
    let system = FakeSystem::new(script);
    let answers = system.answers.clone();
    let vm = Vm::create(&system, &config, Box::new(Discard)).unwrap();
    (vm, answers)
}

fn small() -> VmConfig {
    VmConfig::new("t").ram(64 << 10)
}

fn io(out: bool, port: u16, size: u8, count: u32, data: &[u8]) -> Scripted {
    Scripted::Io {
        out,
        port,
        size,
        count,
        data: data.to_vec(),
    }
}

#[test]
fn string_io_is_answered_recorded_and_flattened() {
    let script = vec![
        io(true, 0xe9, 1, 3, b"ab\n"),
        io(false, 0x2e, 2, 2, &[]),
        Scripted::Reason(KVM_EXIT_INTR),
        io(false, abi::guest::CONSOLE_PORT, 1, 1, &[]),
        Scripted::Hypercall { nr: 77 },
        Scripted::Mmio {
            addr: 0xfed0_0000,
            len: 4,
            write: None,
        },
        io(true, 0xf4, 4, 1, &[3, 0, 0, 0]),
    ];
    let (mut vm, answers) = vm(script, small());
    let outcome = vm.run();
    assert_eq!(outcome.reason, StopReason::Exited(3));
    assert_eq!(outcome.exits.get(KVM_EXIT_IO), 4);
    assert_eq!(outcome.exits.get(KVM_EXIT_INTR), 1);
    assert_eq!(
        *answers.lock().unwrap(),
        [
            vec![0xff; 4],
            vec![0xe9],
            (-1000i64).to_le_bytes().to_vec(),
            vec![0xff; 4]
        ]
    );
    use ExitRecord::*;
    assert_eq!(
        vm.records(),
        [
            IoOut {
                port: 0xe9,
                size: 1,
                value: u32::from(b'a')
            },
            IoOut {
                port: 0xe9,
                size: 1,
                value: u32::from(b'b')
            },
            IoOut {
                port: 0xe9,
                size: 1,
                value: u32::from(b'\n')
            },
            IoIn {
                port: 0x2e,
                size: 2,
                value: 0xffff
            },
            IoIn {
                port: 0x2e,
                size: 2,
                value: 0xffff
            },
            IoIn {
                port: 0xe9,
                size: 1,
                value: 0xe9
            },
            Hypercall { nr: 77 },
            MmioRead {
                addr: 0xfed0_0000,
                len: 4,
                value: 0xffff_ffff
            },
            IoOut {
                port: 0xf4,
                size: 4,
                value: 3
            },
        ]
    );
    assert_eq!(vm.bus().unknown_reads().get(&0x2e), Some(&2));
    assert_eq!(outcome.exits.mmio_reads.get(&0xfed0_0000), Some(&1));
    assert_eq!(vm.console().recent_text(), "ab\n");
}

#[test]
fn stop_reasons() {
    let cases = [
        (
            Scripted::Reason(KVM_EXIT_HLT),
            StopReason::Halted,
            Some(ExitRecord::Hlt),
        ),
        (
            Scripted::Reason(KVM_EXIT_SHUTDOWN),
            StopReason::Shutdown,
            Some(ExitRecord::Shutdown),
        ),
        (
            Scripted::Reason(99),
            StopReason::Unhandled { exit_reason: 99 },
            Some(ExitRecord::Other { exit_reason: 99 }),
        ),
        (
            Scripted::Fail(errno::EFAULT),
            StopReason::RunFailed(errno::EFAULT),
            None,
        ),
        (
            io(true, 0x80, 3, 1, &[]),
            StopReason::Malformed {
                exit_reason: KVM_EXIT_IO,
                what: "I/O size not 1, 2 or 4",
            },
            Some(ExitRecord::Other {
                exit_reason: KVM_EXIT_IO,
            }),
        ),
    ];
    for (exit, want, record) in cases {
        let (mut vm, _) = vm(vec![exit], small());
        assert_eq!(vm.run().reason, want);
        assert_eq!(vm.records().last(), record.as_ref());
    }
}

#[test]
fn yield_and_requested_stops_resume() {
    let config = VmConfig {
        stop_on_yield: true,
        ..small()
    };
    let script = vec![
        io(true, abi::guest::YIELD_PORT, 1, 1, &[0]),
        Scripted::Reason(KVM_EXIT_INTR),
        Scripted::Reason(KVM_EXIT_HLT),
    ];
    let (mut vm, _) = vm(script, config);
    assert_eq!(vm.run().reason, StopReason::Yield);
    vm.stop_handle().stop();
    assert_eq!(vm.run().reason, StopReason::Requested);
    assert_eq!(vm.run().reason, StopReason::Halted);
}

#[test]
fn creation_checks_and_loads() {
    let system = FakeSystem::new(vec![]);
    for bad in [0, 4095, MAX_RAM + 4096] {
        let config = VmConfig::new("x").ram(bad);
        assert!(matches!(
            Vm::create(&system, &config, Box::new(Discard)),
            Err(Error::Config(_))
        ));
    }
    let config = VmConfig {
        uart_base: 0xf0,
        ..small()
    };
    assert!(matches!(
        Vm::create(&system, &config, Box::new(Discard)),
        Err(Error::Config(_))
    ));
    let (mut vm, _) = vm(vec![], small());
    let start = vm.load_flat(&[0xf4], 0x7c00).unwrap();
    assert_eq!(start.mode, loader::Mode::Real { cs: 0, ip: 0x7c00 });
    assert_eq!(vm.vcpu().get_regs().unwrap().rip, 0x7c00);
    let mut b = [0];
    vm.ram().unwrap().read(0x7c00, &mut b).unwrap();
    assert_eq!(b, [0xf4]);
    assert!(matches!(vm.load_flat(&[0; 2], 0xffff), Err(Error::Load(_))));
}

#[test]
fn failed_instruction_bytes() {
    let data = vec![
        KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
        u64::from_le_bytes([3, 0x0f, 0x01, 0xd0, 0, 0, 0, 0]),
        0,
    ];
    let r = StopReason::InternalError {
        suberror: KVM_INTERNAL_ERROR_EMULATION,
        data,
    };
    assert_eq!(r.failed_instruction(), Some(vec![0x0f, 0x01, 0xd0]));
    assert_eq!(StopReason::Halted.failed_instruction(), None);
}

#[test]
fn intrs_in_a_row_stop_the_vm() {
    let config = VmConfig {
        max_intrs_in_a_row: 3,
        ..small()
    };
    let intr = || Scripted::Reason(KVM_EXIT_INTR);
    // Two in a row, an exit, then three in a row (one as RUN's EINTR).
    let script = vec![
        intr(),
        intr(),
        io(true, 0x2e, 1, 1, &[0]),
        intr(),
        Scripted::Fail(errno::EINTR),
        intr(),
        Scripted::Reason(KVM_EXIT_HLT),
    ];
    let (mut watched, _) = vm(script, config);
    let outcome = watched.run();
    assert_eq!(outcome.reason, StopReason::NoExit { intrs: 3 });
    assert_eq!(outcome.exits.get(KVM_EXIT_INTR), 5);
    // Off by default: the same kind of script runs to the HLT.
    let script = vec![
        intr(),
        intr(),
        intr(),
        intr(),
        Scripted::Reason(KVM_EXIT_HLT),
    ];
    let (mut unwatched, _) = vm(script, small());
    assert_eq!(unwatched.run().reason, StopReason::Halted);
}

#[test]
fn stop_on_intr_pauses_and_the_watchdog_still_counts() {
    let config = VmConfig {
        max_intrs_in_a_row: 3,
        stop_on_intr: true,
        ..small()
    };
    let intr = || Scripted::Reason(KVM_EXIT_INTR);
    let script = vec![
        intr(),
        Scripted::Fail(errno::EINTR),
        intr(),
        Scripted::Reason(KVM_EXIT_HLT),
    ];
    let (mut vm, _) = vm(script, config);
    // Each KVM_EXIT_INTR pauses the loop; the count in a row goes on across
    // the pauses, and the third stops the VM.
    assert_eq!(vm.run().reason, StopReason::Interrupted);
    assert!(StopReason::Interrupted.is_pause());
    assert_eq!(vm.run().reason, StopReason::Interrupted);
    let outcome = vm.run();
    assert_eq!(outcome.reason, StopReason::NoExit { intrs: 3 });
    assert!(!outcome.reason.is_pause());
    assert_eq!(outcome.exits.get(KVM_EXIT_INTR), 3);
}

#[test]
fn mojito_look_needs_a_filter_only_where_the_hypervisor_does_not_refuse() {
    // The fake offers no KVM_CAP_X86_MSR_FILTER (and only slot 0: no
    // memory-slot test; no userspace MSR exits, so no Xen page either).
    let config = VmConfig {
        memtest: false,
        user_msrs: false,
        xen_hvm: false,
        ..small().mojito_look()
    };
    let mut system = FakeSystem::new(vec![]);
    assert_eq!(
        Vm::create(&system, &config, Box::new(Discard)).err(),
        Some(Error::Kvm {
            request: "KVM_X86_SET_MSR_FILTER",
            errno: errno::EINVAL
        })
    );
    system.mojito = true;
    assert!(Vm::create(&system, &config, Box::new(Discard)).is_ok());
}

#[test]
fn msi_port_signals_an_msi_to_apic_0() {
    let port = abi::guest::MSI_PORT;
    let script = vec![
        io(true, port, 1, 1, &[0x58]),
        io(false, port, 4, 1, &[]),
        io(true, 0xf4, 1, 1, &[0]),
    ];
    let system = FakeSystem::new(script);
    let (msis, answers) = (system.msis.clone(), system.answers.clone());
    let mut vm = Vm::create(&system, &small(), Box::new(Discard)).unwrap();
    assert_eq!(vm.run().reason, StopReason::Exited(0));
    let sent = msis.lock().unwrap().clone();
    assert_eq!(
        sent,
        [abi::kvm::kvm_msi {
            address_lo: 0xfee0_0000,
            data: 0x58,
            ..Default::default()
        }]
    );
    // The fake delivers it to one APIC, which the guest reads back.
    assert_eq!(*answers.lock().unwrap(), [1u32.to_le_bytes().to_vec()]);
}

#[test]
fn the_split_irqchip_needs_the_capability() {
    // The fake offers no capability at all.
    let config = VmConfig {
        split_irqchip: true,
        ..small()
    };
    assert_eq!(
        Vm::create(&FakeSystem::new(vec![]), &config, Box::new(Discard)).err(),
        Some(Error::Kvm {
            request: "KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)",
            errno: errno::EINVAL
        })
    );
    // Chosen by name for the test guests.
    assert!(VmConfig::new("lapic").mojito_look().split_irqchip);
    assert!(!VmConfig::new("irq").mojito_look().split_irqchip);
}
