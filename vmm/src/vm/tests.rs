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

/// The split irqchip's test routes, set at creation, and the
/// level-triggered interrupt test port: a write sends its route's MSI
/// exactly; `KVM_EXIT_IOAPIC_EOI` is counted, recorded and answered by
/// going on, and the port reads back the EOIs of its three vectors.
#[test]
fn ioapic_eoi_exits_are_counted_and_the_port_sends_the_routes() {
    use abi::guest::{EDGE_VECTOR, LEVEL_IRQ_PORT, LEVEL_VECTOR, LEVEL_VECTOR_UNRESERVED};
    use abi::kvm::{KVM_EXIT_IOAPIC_EOI, kvm_irq_routing_msi};
    let port = LEVEL_IRQ_PORT;
    let script = vec![
        io(true, port, 1, 1, &[LEVEL_VECTOR]),
        Scripted::Eoi(LEVEL_VECTOR),
        io(true, port, 1, 1, &[LEVEL_VECTOR_UNRESERVED]),
        io(true, port, 1, 1, &[EDGE_VECTOR]),
        // No route has 0x40: nothing is sent.
        io(true, port, 1, 1, &[0x40]),
        Scripted::Eoi(LEVEL_VECTOR),
        // Another pin's EOI: not the port's to count.
        Scripted::Eoi(0x40),
        io(false, port, 4, 1, &[]),
        io(true, 0xf4, 1, 1, &[0]),
    ];
    let system = smp(script, vec![]);
    let (msis, routings, answers) = (
        system.msis.clone(),
        system.routings.clone(),
        system.answers.clone(),
    );
    let config = VmConfig {
        split_irqchip: true,
        ..small()
    };
    let mut vm = Vm::create(&system, &config, Box::new(Discard)).unwrap();
    let outcome = vm.run();
    assert_eq!(outcome.reason, StopReason::Exited(0));
    assert_eq!(outcome.exits.get(KVM_EXIT_IOAPIC_EOI), 3);
    let level = 1 << 15;
    let msi = |data| kvm_irq_routing_msi {
        address_lo: 0xfee0_0000,
        data,
        ..Default::default()
    };
    assert_eq!(
        *routings.lock().unwrap(),
        [vec![
            (5, msi(level | 0x5c), 0),
            (30, msi(level | 0x5d), 0),
            (6, msi(0x5e), 0)
        ]]
    );
    let sent: Vec<(u32, u32)> = msis
        .lock()
        .unwrap()
        .iter()
        .map(|m| (m.address_lo, m.data))
        .collect();
    assert_eq!(
        sent,
        [
            (0xfee0_0000, level | 0x5c),
            (0xfee0_0000, level | 0x5d),
            (0xfee0_0000, 0x5e)
        ]
    );
    // Two EOI exits of 0x5c, none of 0x5d or 0x5e.
    assert_eq!(*answers.lock().unwrap(), [vec![2, 0, 0, 0]]);
    let eois: Vec<ExitRecord> = vm
        .records()
        .iter()
        .filter(|r| matches!(r, ExitRecord::IoapicEoi { .. }))
        .copied()
        .collect();
    assert_eq!(
        eois,
        [0x5c, 0x5c, 0x40].map(|vector| ExitRecord::IoapicEoi { vector })
    );
    // Without the split irqchip there are no routes to set.
    let plain = FakeSystem::new(vec![]);
    let routings = plain.routings.clone();
    Vm::create(&plain, &small(), Box::new(Discard)).unwrap();
    assert!(routings.lock().unwrap().is_empty());
}

/// A fake with the split irqchip and up to 8 vCPUs; vCPU 0 follows `bsp`,
/// vCPU `i` > 0 `aps[i - 1]` (then `KVM_EXIT_INTR` for ever).
fn smp(bsp: Vec<Scripted>, aps: Vec<Vec<Scripted>>) -> FakeSystem {
    let mut system = FakeSystem::new(bsp);
    system.ap_scripts = aps;
    system.caps = vec![
        (abi::kvm::KVM_CAP_SPLIT_IRQCHIP, 1),
        (abi::kvm::KVM_CAP_MAX_VCPUS, 8),
    ];
    system
}

fn two_vcpus() -> VmConfig {
    VmConfig {
        vcpus: 2,
        split_irqchip: true,
        ..small()
    }
}

#[test]
fn vcpus_take_turns_at_each_intr() {
    let intr = || Scripted::Reason(KVM_EXIT_INTR);
    let bsp = vec![
        io(true, 0x80, 1, 1, &[1]),
        intr(),
        io(true, 0xe9, 1, 1, b"a"),
        Scripted::Fail(errno::EINTR),
        io(true, 0xf4, 1, 1, &[0]),
    ];
    let ap = vec![
        Scripted::Fail(errno::EINTR),
        io(true, 0xe9, 1, 1, b"b"),
        io(true, 0xe9, 1, 1, b"\n"),
        intr(),
    ];
    let system = smp(bsp, vec![ap]);
    let runs = system.runs.clone();
    let mut vm = Vm::create(&system, &two_vcpus(), Box::new(Discard)).unwrap();
    assert_eq!(vm.vcpu_count(), 2);
    let outcome = vm.run();
    assert_eq!(outcome.reason, StopReason::Exited(0));
    // An exit the VMM handles keeps the same vCPU; an INTR (or RUN's
    // EINTR) moves on to the next, round robin.
    assert_eq!(*runs.lock().unwrap(), [0, 0, 1, 0, 0, 1, 1, 1, 0]);
    assert_eq!(outcome.exits.per_vcpu, [5, 4]);
    assert_eq!(outcome.exits.get(KVM_EXIT_INTR), 4);
    assert_eq!(outcome.exits.get(KVM_EXIT_IO), 5);
    // One console, one exit stream, for the whole VM.
    assert_eq!(vm.console().recent_text(), "ab\n");
    let ports: Vec<u16> = vm
        .records()
        .iter()
        .map(|r| match r {
            ExitRecord::IoOut { port, .. } => *port,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ports, [0x80, 0xe9, 0xe9, 0xe9, 0xf4]);
}

#[test]
fn the_first_ap_run_ends_at_once_as_an_ap_waiting_for_sipi() {
    // An AP whose RUN first answers EAGAIN (Linux: woken while waiting for
    // SIPI) is simply run again; that is not an exit.
    let bsp = vec![Scripted::Fail(errno::EINTR), io(true, 0xf4, 1, 1, &[7])];
    let ap = vec![
        Scripted::Fail(abi::kvm::errno::EAGAIN),
        Scripted::Fail(errno::EINTR),
    ];
    let system = smp(bsp, vec![ap]);
    let runs = system.runs.clone();
    let mut vm = Vm::create(&system, &two_vcpus(), Box::new(Discard)).unwrap();
    let outcome = vm.run();
    assert_eq!(outcome.reason, StopReason::Exited(7));
    assert_eq!(*runs.lock().unwrap(), [0, 1, 1, 0]);
    assert_eq!(outcome.exits.per_vcpu, [2, 1]);
}

#[test]
fn stop_on_intr_returns_at_every_turn() {
    let config = VmConfig {
        stop_on_intr: true,
        stop_on_yield: true,
        ..two_vcpus()
    };
    let intr = || Scripted::Reason(KVM_EXIT_INTR);
    let bsp = vec![intr(), intr(), io(true, 0xf4, 1, 1, &[0])];
    let ap = vec![
        intr(),
        io(true, abi::guest::YIELD_PORT, 1, 1, &[0]),
        io(true, 0x80, 1, 1, &[0]),
        intr(),
    ];
    let system = smp(bsp, vec![ap]);
    let runs = system.runs.clone();
    let mut vm = Vm::create(&system, &config, Box::new(Discard)).unwrap();
    // Each INTR returns, and the next `run` goes on with the next vCPU.
    assert_eq!(vm.run().reason, StopReason::Interrupted);
    assert_eq!(*runs.lock().unwrap(), [0]);
    assert_eq!(vm.current_vcpu(), 1);
    assert_eq!(vm.run().reason, StopReason::Interrupted);
    assert_eq!(vm.current_vcpu(), 0);
    assert_eq!(vm.run().reason, StopReason::Interrupted);
    // A yield stops the loop on the vCPU that yielded, and `run` goes on
    // with it.
    assert_eq!(vm.run().reason, StopReason::Yield);
    assert_eq!(vm.current_vcpu(), 1);
    assert_eq!(vm.run().reason, StopReason::Interrupted);
    assert_eq!(vm.run().reason, StopReason::Exited(0));
    assert_eq!(*runs.lock().unwrap(), [0, 1, 0, 1, 1, 1, 0]);
}

#[test]
fn the_watchdog_needs_every_vcpu_without_an_exit() {
    let config = VmConfig {
        max_intrs_in_a_row: 3,
        ..two_vcpus()
    };
    let intr = || Scripted::Reason(KVM_EXIT_INTR);
    let out = || io(true, 0x80, 1, 1, &[0]);
    // The AP never starts (INTR for ever), the BSP keeps exiting: the VM
    // works, whatever the AP's count.
    let mut bsp = Vec::new();
    for _ in 0..6 {
        bsp.extend([out(), intr()]);
    }
    bsp.push(io(true, 0xf4, 1, 1, &[0]));
    let mut vm = Vm::create(&smp(bsp, vec![]), &config, Box::new(Discard)).unwrap();
    assert_eq!(vm.run().reason, StopReason::Exited(0));
    // Neither exits: stopped once both have 3 in a row.
    let system = smp(vec![intr(); 8], vec![]);
    let runs = system.runs.clone();
    let mut vm = Vm::create(&system, &config, Box::new(Discard)).unwrap();
    let outcome = vm.run();
    assert_eq!(outcome.reason, StopReason::NoExit { intrs: 3 });
    assert_eq!(*runs.lock().unwrap(), [0, 1, 0, 1, 0, 1]);
    // Forgiving takes one off the count of the vCPU that runs next (here
    // the BSP, after the AP's turn): one more turn before the stop.
    let config = VmConfig {
        stop_on_intr: true,
        ..config
    };
    for (forgive, turns) in [(false, 6), (true, 7)] {
        let system = smp(vec![intr(); 8], vec![]);
        let runs = system.runs.clone();
        let mut vm = Vm::create(&system, &config, Box::new(Discard)).unwrap();
        assert_eq!(vm.run().reason, StopReason::Interrupted);
        assert_eq!(vm.run().reason, StopReason::Interrupted);
        if forgive {
            vm.forgive_intr();
        }
        let reason = loop {
            match vm.run().reason {
                StopReason::Interrupted => {}
                other => break other,
            }
        };
        assert_eq!(reason, StopReason::NoExit { intrs: 3 });
        assert_eq!(runs.lock().unwrap().len(), turns, "forgiven: {forgive}");
    }
}

#[test]
fn several_vcpus_are_made_with_their_own_apic_ids() {
    let supported_leaf1 = |table: &[abi::kvm::kvm_cpuid_entry2]| {
        table.iter().find(|e| e.function == 1).map(|e| e.ebx >> 24)
    };
    let system = smp(vec![], vec![]);
    let cpuids = system.cpuids.clone();
    let config = VmConfig {
        vcpus: 3,
        ..two_vcpus()
    };
    let mut vm = Vm::create(&system, &config, Box::new(Discard)).unwrap();
    assert_eq!(vm.vcpu_count(), 3);
    assert!(vm.vcpu_at(2).is_some() && vm.vcpu_at(3).is_none());
    let tables = cpuids.lock().unwrap().clone();
    let ids: Vec<(u32, Option<u32>)> = tables
        .iter()
        .map(|(vcpu, t)| (*vcpu, supported_leaf1(t)))
        .collect();
    assert_eq!(ids, [(0, Some(0)), (1, Some(1)), (2, Some(2))]);
    // The loaders start the BSP only.
    vm.load_flat(&[0xf4], 0x7c00).unwrap();
    assert_eq!(vm.vcpu().get_regs().unwrap().rip, 0x7c00);
    assert_eq!(vm.vcpu_at(1).unwrap().get_regs().unwrap().rip, 0);
}

#[test]
fn vcpu_counts_are_checked() {
    let make =
        |config: VmConfig| Vm::create(&smp(vec![], vec![]), &config, Box::new(Discard)).err();
    for bad in [0, MAX_VCPUS + 1] {
        assert!(matches!(
            make(VmConfig {
                vcpus: bad,
                ..two_vcpus()
            }),
            Some(Error::Config(_))
        ));
    }
    // Several vCPUs need the split irqchip.
    assert!(matches!(
        make(VmConfig {
            split_irqchip: false,
            ..two_vcpus()
        }),
        Some(Error::Config(_))
    ));
    // And no more than the back end allows.
    let mut few = smp(vec![], vec![]);
    few.caps = vec![
        (abi::kvm::KVM_CAP_SPLIT_IRQCHIP, 1),
        (abi::kvm::KVM_CAP_MAX_VCPUS, 1),
    ];
    assert!(matches!(
        Vm::create(&few, &two_vcpus(), Box::new(Discard)).err(),
        Some(Error::Config(_))
    ));
    // The test guest `smp` gets two by name.
    let smp_look = VmConfig::new("smp").mojito_look();
    assert_eq!((smp_look.vcpus, smp_look.split_irqchip), (2, true));
    assert_eq!(VmConfig::new("lapic").mojito_look().vcpus, 1);
}

/// The UART's THR is coalesced while no THR-empty interrupt is enabled:
/// the writes reach the console in order with the exits between them, and
/// the zone goes away while the guest wants the interrupt.
#[test]
fn uart_output_is_coalesced_while_nothing_waits_for_it() {
    let com1 = COM1;
    let script = vec![
        io(true, com1, 1, 1, b"a"),
        io(true, com1, 1, 1, b"b"),
        // LSR: an exit, after which the VMM has sent a and b.
        io(false, com1 + 5, 1, 1, &[]),
        // IER: THR-empty interrupt on, so THR exits again.
        io(true, com1 + 1, 1, 1, &[0x02]),
        io(true, com1, 1, 1, b"c"),
        io(true, com1 + 1, 1, 1, &[0x00]),
        io(true, com1, 1, 1, b"d"),
        io(true, com1, 1, 1, b"\n"),
        Scripted::Reason(KVM_EXIT_HLT),
    ];
    let mut system = FakeSystem::new(script);
    system.caps = vec![
        (abi::kvm::KVM_CAP_SPLIT_IRQCHIP, 1),
        (abi::kvm::KVM_CAP_COALESCED_PIO, 1),
    ];
    let ring = system.ring.clone();
    let config = VmConfig::linux("t", 1).ram(1 << 20);
    let mut vm = Vm::create(&system, &config, Box::new(Discard)).unwrap();
    let outcome = vm.run();
    assert_eq!(outcome.reason, StopReason::Halted);
    assert_eq!(vm.console().recent_text(), "abcd\n");
    assert_eq!(outcome.exits.coalesced, 4, "a, b, d and the newline");
    assert_eq!(outcome.exits.get(KVM_EXIT_IO), 4, "LSR, IER, c, IER");
    let ring = ring.lock().unwrap();
    assert_eq!(
        ring.requests,
        [(true, com1, 1), (false, com1, 1), (true, com1, 1)]
    );
    assert!(ring.writes.is_empty());
}

/// Without `KVM_CAP_COALESCED_PIO` every write exits, as before.
#[test]
fn uart_output_exits_without_coalescing() {
    let script = vec![
        io(true, COM1, 1, 1, b"a"),
        io(true, COM1, 1, 1, b"\n"),
        Scripted::Reason(KVM_EXIT_HLT),
    ];
    let mut system = FakeSystem::new(script);
    system.caps = vec![(abi::kvm::KVM_CAP_SPLIT_IRQCHIP, 1)];
    let ring = system.ring.clone();
    let config = VmConfig::linux("t", 1).ram(1 << 20);
    let mut vm = Vm::create(&system, &config, Box::new(Discard)).unwrap();
    let outcome = vm.run();
    assert_eq!(vm.console().recent_text(), "a\n");
    assert_eq!(outcome.exits.coalesced, 0);
    assert_eq!(outcome.exits.get(KVM_EXIT_IO), 2);
    assert!(ring.lock().unwrap().requests.is_empty());
}

#[test]
fn a_coalesced_ring_is_read_in_order_and_never_trusted() {
    use abi::kvm::KVM_COALESCED_MMIO_MAX as MAX;
    let mut page = vec![0u8; 4096];
    let ram = GuestRam::from_slice(&mut page);
    let entry = |i: u32, port: u64, len: u32, pio: u32, v: u32| {
        let at = 8 + u64::from(i) * 24;
        ram.write_u64(at, port).unwrap();
        ram.write_u32(at + 8, len).unwrap();
        ram.write_u32(at + 12, pio).unwrap();
        ram.write_u32(at + 16, v).unwrap();
    };
    // Entries MAX-1, 0 and 1 (wrapped), the middle one an MMIO write.
    entry(MAX - 1, 0x3f8, 1, 1, 0x41);
    entry(0, 0xfee0_0000, 4, 0, 7);
    entry(1, 0x3f8, 2, 1, 0x4342);
    ram.write_u32(0, MAX - 1).unwrap();
    ram.write_u32(4, 2).unwrap();
    let mut out = Vec::new();
    crate::api::drain_coalesced_ring(&ram, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].bytes(), b"A");
    assert_eq!((out[1].port, out[1].bytes()), (0x3f8, &b"BC"[..]));
    assert_eq!(ram.read_u32(0), Ok(2), "first caught up with last");
    // A `last` out of range: nothing read, nothing moved.
    ram.write_u32(4, MAX).unwrap();
    out.clear();
    crate::api::drain_coalesced_ring(&ram, &mut out);
    assert!(out.is_empty());
    assert_eq!(ram.read_u32(0), Ok(2));
    // A `first` out of range: what the ring held is dropped.
    ram.write_u32(0, u32::MAX).unwrap();
    ram.write_u32(4, 1).unwrap();
    crate::api::drain_coalesced_ring(&ram, &mut out);
    assert!(out.is_empty());
    assert_eq!(ram.read_u32(0), Ok(1));
}
