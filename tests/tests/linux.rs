//! Debian's stock kernel under the VMM (issue 7).
//!
//! `early_boot_on_host_kvm`: the VMM's PVH loader, memory map, ACPI tables
//! and kvmclock leaves, read by a kernel nobody here wrote, on the host's
//! `/dev/kvm`. It checks the kernel's own account of them (e820, the ACPI
//! table list, the MADT's IOAPIC and overrides, the PM timer, the CPU
//! count) and stops the VM there. It goes no further because this
//! machine's software KVM cannot run the rest: its instruction emulator
//! stops Linux with `KVM_INTERNAL_ERROR_EMULATION` at a CMPXCHG16B in SLUB,
//! then (with that feature hidden) at XRSTOR and BSWAP in the FPU set-up
//! (README, Status). The whole boot to userspace is for a real KVM and
//! for Mojito.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmm::devices::console::Sink;
use vmm::host::HostKvm;
use vmm::vm::{StopReason, Vm, VmConfig};
use xtask::workspace::Workspace;

/// What the kernel must say, in this order, about the platform the VMM
/// gave it. The last one ends the test.
const MILESTONES: &[&str] = &[
    "Command line: console=ttyS0 earlyprintk=ttyS0 panic=-1",
    // The PVH start info's memory map (loader::pvh::memory_map).
    "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
    "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable",
    "Hypervisor detected: KVM",
    "kvm-clock: Using msrs",
    // The ACPI tables (vmm::acpi), found through start_info.rsdp_paddr.
    "ACPI: RSDP 0x00000000000E0000 000024 (v02 MOJITO)",
    "ACPI: FACP 0x00000000000E0080 000114 (v06 MOJITO MOJITOVM",
    // Its length follows the virtio devices in it.
    "ACPI: DSDT 0x00000000000E0C00 ",
    "ACPI: FACS 0x00000000000E01C0 000040",
    "ACPI: APIC 0x00000000000E0200 000062 (v01 MOJITO MOJITOVM",
    "ACPI: PM-Timer IO Port: 0x608",
    "IOAPIC[0]: apic_id 0, version 17, address 0xfec00000, GSI 0-23",
    "ACPI: INT_SRC_OVR (bus 0 bus_irq 0 global_irq 2 dfl dfl)",
    "ACPI: INT_SRC_OVR (bus 0 bus_irq 9 global_irq 9 high level)",
    "smpboot: Allowing 2 CPUs, 0 hotplug CPUs",
    "Booting paravirtualized kernel on KVM",
];

/// The longest the boot to the last milestone may take (about 30 s here).
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Sink for Lines {
    fn line(&mut self, name: &str, line: &str) {
        println!("[{name}] {line}");
        self.0.lock().unwrap().push(line.to_owned());
    }
}

/// How many milestones `lines` has reached, in order.
fn reached(lines: &[String]) -> usize {
    let mut n = 0;
    for line in lines {
        if n < MILESTONES.len() && line.contains(MILESTONES[n]) {
            n += 1;
        }
    }
    n
}

#[test]
fn early_boot_on_host_kvm() {
    let kvm = match HostKvm::open() {
        Ok(k) => k,
        Err(e) => {
            println!("SKIP early_boot_on_host_kvm: /dev/kvm cannot be opened ({e})");
            return;
        }
    };
    let assets = xtask::linux::assets(&Workspace::locate()).expect("the Linux assets");
    let kernel = std::fs::read(&assets.vmlinux).unwrap();
    let initramfs = std::fs::read(&assets.initramfs).unwrap();
    let lines = Lines::default();
    let config = VmConfig::linux("linux", 2);
    let coalescing = vmm::api::System::check_extension(&kvm, abi::kvm::KVM_CAP_COALESCED_PIO)
        .is_ok_and(|n| n > 0);
    let mut vm = Vm::create(&kvm, &config, Box::new(lines.clone())).expect("create VM");
    vm.load_linux(
        &kernel,
        Some(&initramfs),
        "console=ttyS0 earlyprintk=ttyS0 panic=-1",
    )
    .expect("load vmlinux");
    let stop = vm.stop_handle();
    let seen = lines.clone();
    let started = Instant::now();
    let ended = Arc::new(AtomicBool::new(false));
    let vm_ended = ended.clone();
    let watchdog = std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let all = reached(&seen.0.lock().unwrap()) == MILESTONES.len();
            if all || started.elapsed() > TIMEOUT || vm_ended.load(Ordering::SeqCst) {
                stop.stop();
                return all;
            }
        }
    });
    let outcome = vm.run();
    ended.store(true, Ordering::SeqCst);
    let all = watchdog.join().unwrap();
    let got = lines.0.lock().unwrap().clone();
    let n = reached(&got);
    assert!(
        all && outcome.reason == StopReason::Requested,
        "Linux on host KVM reached {n} of {} milestones in {:?}; the next: {:?}; the VM: {}",
        MILESTONES.len(),
        started.elapsed(),
        MILESTONES.get(n),
        outcome.reason,
    );
    // The console's bytes come through KVM's coalesced ring where the
    // kernel has one (the UART's THR, `Vm::sync_coalescing`).
    assert!(
        !coalescing || outcome.exits.coalesced > 0,
        "KVM offers KVM_CAP_COALESCED_PIO, but no console byte came through its ring"
    );
    println!(
        "early_boot_on_host_kvm: {} milestones in {:.1} s ({}); {} port writes through the \
         coalesced ring, {} port exits",
        MILESTONES.len(),
        started.elapsed().as_secs_f64(),
        assets.release,
        outcome.exits.coalesced,
        outcome.exits.get(abi::kvm::KVM_EXIT_IO),
    );
}

/// Debian's kernel under Mojito in QEMU (TCG, SVM, 2 host CPUs), run by the
/// control domain's VMM with 2 vCPUs: userspace, both CPUs, the disk, S5.
/// The bzImage, by the boot protocol (`linux_bochs` boots the `vmlinux`
/// through its PVH entry).
#[test]
fn linux_qemu() {
    mojito_tests::machine::qemu(
        "linux_qemu",
        mojito_tests::machine::Disk::LinuxBzBios,
        xtask::qemu::TCG_SVM_CPU,
        1024,
        2,
        &[],
        vec![],
    )
    .assert_linux(xtask::image::LINUX_VCPUS, true);
}

/// Debian's kernel under Mojito in Bochs (VMX, Skylake-X, 2 CPUs), run by
/// the control domain's VMM with 2 vCPUs: the `vmlinux`, through its PVH
/// entry.
#[test]
fn linux_bochs() {
    mojito_tests::machine::bochs(
        "linux_bochs",
        xtask::bochs::DEFAULT_MODEL,
        1024,
        2,
        mojito_tests::expect::Mode::Linux,
        vec![],
    )
    .assert_linux(xtask::image::LINUX_VCPUS, false);
}
