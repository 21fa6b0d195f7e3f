//! A VM as the VMM runs it: memory, its vCPUs, the port devices, the
//! guest's console, and the run loop that handles exits, records the exit
//! stream and says why the VM stopped.
//!
//! `handle.rs` holds the exit handlers, `stop.rs` the stop reasons and
//! exit counts; `tests.rs` drives the loop with the scripted back end.
//!
//! Interrupts: by default the userspace-irqchip configuration (no
//! `KVM_CREATE_IRQCHIP`): only the interrupt test port raises an interrupt
//! (`KVM_INTERRUPT`), so a HLT with nothing pending can never be woken and
//! the VM stops as "halted". With [`VmConfig::split_irqchip`] the local
//! APIC is the kernel's (DESIGN.md D4: KVM's, or Mojito's hypervisor), HLT
//! and the APIC timer never reach the VMM, and the MSI test port sends
//! `KVM_SIGNAL_MSI`. Such a VM also gets the test GSI routes
//! (`abi::guest::LEVEL_IRQ_ROUTES`, `KVM_SET_GSI_ROUTING`), whose MSIs the
//! level-triggered interrupt test port sends; the kernel reports the EOI of
//! a level-triggered vector a reserved IOAPIC pin routes to a vCPU as
//! `KVM_EXIT_IOAPIC_EOI`, which the run loop counts, records and answers
//! by going on (a VMM's IOAPIC would clear the pin's remote IRR there).
//!
//! vCPUs: [`VmConfig::vcpus`] of them, ids 0 (the BSP, which the loaders
//! start) up; the others (APs) wait for the guest's INIT and SIPI, which
//! needs the kernel's local APIC, so more than one needs the split
//! irqchip. One thread runs them all, round robin ([`Vm::run`]): a vCPU
//! runs until it gets `KVM_EXIT_INTR`, its exits handled as they come,
//! then the next one runs. The devices are the VM's, shared by all. On a
//! kernel where `KVM_RUN` blocks while a vCPU cannot run (Linux, for a
//! halted vCPU or an AP waiting for SIPI), the back end must end such a
//! RUN itself (`crate::host` kicks the vCPU whose turn it is every
//! millisecond); Mojito ends it with `KVM_EXIT_INTR` on its tick, and at
//! once when another vCPU of the VM could run. Linux's `KVM_RUN` may also
//! fail with `EAGAIN` on an AP that was waiting for SIPI and got its INIT:
//! no exit, it runs again.

mod handle;
mod stop;
#[cfg(test)]
mod tests;

pub use stop::{ExitCounts, Outcome, StopReason, exit_reason_name};

use abi::kvm::{
    KVM_API_VERSION, KVM_CAP_MAX_VCPUS, KVM_CAP_NR_VCPUS, KVM_CAP_SPLIT_IRQCHIP,
    KVM_CAP_TSC_DEADLINE_TIMER, KVM_CAP_X86_MSR_FILTER, KVM_CAP_X86_USER_SPACE_MSR,
    KVM_CAP_XEN_HVM, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MSR_EXIT_REASON_UNKNOWN,
    KVM_MSR_FILTER_DEFAULT_ALLOW, errno, kvm_enable_cap,
};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::acpi;
use crate::api::{
    self, Errno, GuestMemory as _, GuestRam, Kick, MsrFilterRange, System, Vcpu as _,
};
use crate::devices::PortBus;
use crate::devices::console::{Console, RING_DEFAULT, Sink};
use crate::devices::debug::{
    DebugCon, DebugExit, DebugPort, IrqPort, LevelIrqPort, MsiPort, PostPort, YieldPort,
};
use crate::devices::i8042;
use crate::devices::ioapic::IoApic;
use crate::devices::memtest::MemTest;
use crate::devices::pci::{PCI_BASE, PCI_LEN, PciHost};
use crate::devices::pit::{PIT_BASE, PIT_LEN, PORT_B};
use crate::devices::pm::Pm;
use crate::devices::rtc::{RTC_BASE, RTC_LEN, Rtc};
use crate::devices::uart::{COM1, UART_LEN, Uart};
use crate::devices::virtio::blk::Block;
use crate::devices::virtio::console::VirtioConsole;
use crate::devices::virtio::mmio::Mmio;
use crate::devices::virtio::{self, BLK_BASE, BLK_IRQ, CONSOLE_BASE, CONSOLE_IRQ};
use crate::exit::Exit;
use crate::loader::{self, LoadError, Start, bzimage, multiboot, pvh};
use crate::policy;
use crate::record::{ExitRecord, RECORD_LIMIT_DEFAULT, Recorder};
use handle::{Next, State};

/// Default guest RAM (DESIGN.md §3: a guest gets 256 MiB).
pub const DEFAULT_RAM: u64 = 256 << 20;

/// The memory-slot test's slots (`VmConfig::memtest`, `abi::guest`).
pub const LOGGED_SLOT: u32 = 1;
pub const ROM_SLOT: u32 = 2;
/// Largest RAM in one slot from GPA 0: below the 32-bit PCI/APIC hole.
pub const MAX_RAM: u64 = 3 << 30;
/// IOAPIC pins reserved with `KVM_CAP_SPLIT_IRQCHIP` (its `args[0]`): the
/// 24 of the usual IOAPIC, as QEMU reserves them.
pub const IOAPIC_PINS: u64 = 24;
/// The IOAPIC pin (ISA IRQ) of the UART: COM1's IRQ 4.
pub const UART_IRQ: u8 = 4;
/// Most vCPUs a VM may have ([`VmConfig::vcpus`]); the back end's
/// `KVM_CAP_MAX_VCPUS` may allow fewer.
pub const MAX_VCPUS: u32 = 8;

/// The guest's CPUID table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidPolicy {
    /// `KVM_GET_SUPPORTED_CPUID` → `KVM_SET_CPUID2` (the default).
    Supported,
    /// The supported table in Mojito's look ([`policy::mojito_look`]).
    MojitoLook,
    /// No `KVM_SET_CPUID2` (host KVM then answers zeros; Mojito its
    /// default policy).
    Unset,
}

/// How to make a VM.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The name its output lines carry (`[NAME] line`).
    pub name: String,
    /// Guest RAM in bytes from GPA 0, a multiple of 4 KiB up to [`MAX_RAM`].
    pub ram_size: u64,
    /// The VM's id (EBX of a test guest).
    pub vm_id: u32,
    pub cpuid: CpuidPolicy,
    /// Deny the MSRs Mojito refuses (`policy::MOJITO_DENIED_MSRS`) with an
    /// MSR filter.
    pub deny_mojito_msrs: bool,
    /// The UART's base port.
    pub uart_base: u16,
    /// Exit records kept (0: recording off).
    pub record_limit: usize,
    /// Whether a write to the yield port stops the run loop with
    /// [`StopReason::Yield`] (so a caller can interleave VMs) instead of
    /// being ignored.
    pub stop_on_yield: bool,
    /// Whether `KVM_EXIT_INTR` (under Mojito: the hypervisor's timer or
    /// COM1 input gave the control domain its CPU back) stops the run loop
    /// with [`StopReason::Interrupted`], so that the caller can look at its
    /// console input, instead of running the vCPU again at once.
    pub stop_on_intr: bool,
    /// Bytes of recent output kept for `console`.
    pub console_ring: usize,
    /// Stop the VM with [`StopReason::NoExit`] after this many
    /// `KVM_EXIT_INTR`s in a row with no other exit between them (0:
    /// never). Under Mojito the hypervisor's timer ends `KVM_RUN` with
    /// `KVM_EXIT_INTR` on every tick (DESIGN.md D2), so this stops a guest
    /// that keeps its CPU without ever exiting to the VMM.
    pub max_intrs_in_a_row: u32,
    /// The memory-slot test of Mojito's test guests: a slot that logs dirty
    /// pages at `abi::guest::LOGGED_SLOT_BASE`, a read-only one at
    /// `ROM_BASE`, and the `MEMTEST_PORT` device.
    pub memtest: bool,
    /// Userspace MSR exits (`KVM_CAP_X86_USER_SPACE_MSR` for MSRs the
    /// kernel does not know): the VMM emulates `abi::guest::VMM_MSR_BASE`
    /// .. `+ VMM_MSR_COUNT` as scratch registers and refuses the rest (#GP).
    pub user_msrs: bool,
    /// The Xen hypercall-page MSR (`abi::guest::XEN_HYPERCALL_MSR`) with
    /// the test blobs (`abi::guest::xen_blob_byte`), announced at CPUID
    /// `XEN_CPUID_BASE`: through `KVM_XEN_HVM_CONFIG` where the kernel has
    /// `KVM_CAP_XEN_HVM`, else emulated here through a userspace MSR exit
    /// (which needs `user_msrs`).
    pub xen_hvm: bool,
    /// KVM's paravirtual CPUID leaves offering kvmclock at
    /// `abi::guest::KVM_CPUID_BASE` (the kernel handles its MSRs itself).
    pub kvmclock: bool,
    /// The split irqchip (DESIGN.md D4): `KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)`
    /// with [`IOAPIC_PINS`] before the vCPU is made, so the local APIC,
    /// its timer and HLT live in the kernel; CPUID then offers the APIC,
    /// x2APIC and, where the kernel has it, the TSC-deadline timer
    /// ([`policy::offer_local_apic`]), and once the vCPUs are made the
    /// test GSI routes are set (`abi::guest::LEVEL_IRQ_ROUTES`).
    pub split_irqchip: bool,
    /// vCPUs, 1 to [`MAX_VCPUS`]: ids 0 (the BSP) up, each with the CPUID
    /// table and its own initial APIC ID ([`policy::with_apic_id`]). More
    /// than one needs `split_irqchip` (the APs start by INIT and SIPI
    /// through the kernel's local APIC).
    pub vcpus: u32,
    /// The PC platform a stock kernel probes (issue 7; needs
    /// `split_irqchip`): the ACPI tables ([`crate::acpi`], written by
    /// [`Vm::load_linux`]), the PM block and timer, and the VMM's IOAPIC,
    /// whose redirection entries become the GSI routes (instead of the
    /// test routes) and to whose pin 4 the UART's interrupt goes.
    pub platform: bool,
}

impl VmConfig {
    /// Defaults: 256 MiB, VM id 1, the supported CPUID, COM1.
    pub fn new(name: &str) -> Self {
        Self {
            name: String::from(name),
            ram_size: DEFAULT_RAM,
            vm_id: 1,
            cpuid: CpuidPolicy::Supported,
            deny_mojito_msrs: false,
            uart_base: COM1,
            record_limit: RECORD_LIMIT_DEFAULT,
            stop_on_yield: false,
            stop_on_intr: false,
            console_ring: RING_DEFAULT,
            max_intrs_in_a_row: 0,
            memtest: false,
            user_msrs: false,
            xen_hvm: false,
            kvmclock: false,
            split_irqchip: false,
            vcpus: 1,
            platform: false,
        }
    }

    /// A Linux guest with `vcpus` vCPUs: the PC platform, the kernel's
    /// local APICs (split irqchip) and kvmclock.
    pub fn linux(name: &str, vcpus: u32) -> Self {
        let mut c = Self::new(name);
        c.split_irqchip = true;
        c.platform = true;
        c.kvmclock = true;
        c.vcpus = vcpus;
        c
    }

    /// Mojito's look: its CPUID signature and MSR refusals, so Mojito's
    /// own test guests pass their checks under another back end, and the
    /// memory-slot test, VMM MSRs, Xen hypercall page and kvmclock they use;
    /// the split irqchip for the test guests that want the kernel's local
    /// APIC and the vCPUs of those that want several, by name
    /// ([`policy::wants_split_irqchip`], [`policy::guest_vcpus`]: the one
    /// place the control domain, the host tests and the differential test
    /// decide them).
    pub fn mojito_look(mut self) -> Self {
        self.cpuid = CpuidPolicy::MojitoLook;
        self.deny_mojito_msrs = true;
        self.memtest = true;
        self.user_msrs = true;
        self.xen_hvm = true;
        self.kvmclock = true;
        self.split_irqchip = policy::wants_split_irqchip(&self.name);
        self.vcpus = policy::guest_vcpus(&self.name);
        self
    }

    /// With `ram_size` bytes of RAM.
    pub fn ram(mut self, ram_size: u64) -> Self {
        self.ram_size = ram_size;
        self
    }
}

/// Why making or loading a VM failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A request failed: which, and the errno.
    Kvm { request: &'static str, errno: Errno },
    /// The back end speaks another API version.
    ApiVersion(u32),
    /// The configuration is unusable; the string says why.
    Config(&'static str),
    /// The image could not be loaded.
    Load(LoadError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kvm { request, errno } => write!(f, "{request} failed: errno {errno}"),
            Self::ApiVersion(v) => write!(f, "KVM API version {v}, not {KVM_API_VERSION}"),
            Self::Config(what) => write!(f, "bad VM configuration: {what}"),
            Self::Load(e) => write!(f, "{e}"),
        }
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        Self::Load(e)
    }
}

fn kvm<T>(request: &'static str, r: api::Result<T>) -> Result<T, Error> {
    r.map_err(|errno| Error::Kvm { request, errno })
}

/// Stops a running VM from another thread or CPU: the run loop returns
/// [`StopReason::Requested`] at its next exit, and the kick makes that
/// exit come at once.
#[derive(Clone)]
pub struct StopHandle<K: Kick> {
    flag: Arc<AtomicBool>,
    /// One per vCPU: whichever is running is kicked out of the guest.
    kickers: Vec<K>,
}

impl<K: Kick> StopHandle<K> {
    /// Asks the run loop to stop and kicks the vCPUs out of the guest (a
    /// vCPU that is not running ends its next RUN at once instead, one
    /// `KVM_EXIT_INTR`).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        for k in &self.kickers {
            k.kick();
        }
    }
}

/// A memory slot as the VMM set it (for the operator's `show`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memslot {
    pub slot: u32,
    /// `KVM_MEM_*`.
    pub flags: u32,
    pub guest_phys_addr: u64,
    pub memory_size: u64,
}

/// A VM with its vCPUs.
pub struct Vm<V: api::Vm> {
    // Field order is drop order: the vCPUs go before their VM.
    /// By vCPU id; 0 is the BSP.
    vcpus: Vec<V::Vcpu>,
    vm: V,
    state: State,
    /// The vCPU the run loop is on (round robin, [`Vm::run`]).
    current: usize,
    stop: Arc<AtomicBool>,
    name: String,
    vm_id: u32,
    /// The Xen hypercall-page blobs (32-bit, 64-bit), which the kernel may
    /// read until the VM is closed (dropped after `vm`).
    xen_blobs: Option<(Vec<u8>, Vec<u8>)>,
    /// The memory slots, by slot number.
    memslots: BTreeMap<u32, Memslot>,
}

impl<V: api::Vm> fmt::Debug for Vm<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("name", &self.name)
            .field("vm_id", &self.vm_id)
            .field("vcpus", &self.vcpus.len())
            .field("exits", &self.state.exits)
            .finish_non_exhaustive()
    }
}

impl<V: api::Vm> Vm<V> {
    /// Makes a VM: RAM at GPA 0 (slot 0), its vCPUs, their CPUID table and
    /// the MSR filter as `config` says, the standard devices (UART, debug
    /// exit, debug console, yield and POST ports). Finished lines of the
    /// guest's output go to `sink`.
    pub fn create<S: System<Vm = V>>(
        system: &S,
        config: &VmConfig,
        sink: Box<dyn Sink>,
    ) -> Result<Self, Error> {
        if config.ram_size == 0 || config.ram_size % 4096 != 0 || config.ram_size > MAX_RAM {
            return Err(Error::Config(
                "RAM size must be a non-zero multiple of 4 KiB up to 3 GiB",
            ));
        }
        if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
            return Err(Error::Config("a VM has 1 to 8 vCPUs"));
        }
        if config.platform && !config.split_irqchip {
            return Err(Error::Config(
                "the PC platform's IOAPIC needs the split irqchip",
            ));
        }
        if config.vcpus > 1 && !config.split_irqchip {
            return Err(Error::Config(
                "several vCPUs need the split irqchip (the APs start by INIT and SIPI)",
            ));
        }
        let version = kvm("KVM_GET_API_VERSION", system.api_version())?;
        if version != KVM_API_VERSION {
            return Err(Error::ApiVersion(version));
        }
        let mut vm = kvm("KVM_CREATE_VM", system.create_vm())?;
        let mut memslots = BTreeMap::new();
        let mut note = |slot, flags, guest_phys_addr, memory_size| {
            memslots.insert(
                slot,
                Memslot {
                    slot,
                    flags,
                    guest_phys_addr,
                    memory_size,
                },
            );
        };
        note(0, 0, abi::guest::GUEST_RAM_BASE, config.ram_size);
        let memory = kvm("allocating guest memory", vm.alloc_memory(config.ram_size))?;
        kvm(
            "KVM_SET_USER_MEMORY_REGION",
            vm.set_user_memory_region(0, 0, abi::guest::GUEST_RAM_BASE, memory),
        )?;
        // One MSR filter for everything that wants one: the MSRs Mojito
        // refuses (where the kernel does not refuse them itself) and the
        // VMM MSR whose reads are denied.
        // Whole 64-bit words: KVM copies `nmsrs` bits rounded up so.
        let zeros = [0u8; policy::DENIED_BITMAP_BYTES.div_ceil(8) * 8];
        let write_only =
            [(1u8 << (abi::guest::VMM_MSR_WRITE_ONLY - abi::guest::VMM_MSR_BASE)) - 1; 8];
        let mut ranges: Vec<MsrFilterRange<'_>> = Vec::new();
        if config.deny_mojito_msrs && !system.refuses_mojito_msrs() {
            ranges.extend(policy::MOJITO_DENIED_MSRS.iter().map(|d| MsrFilterRange {
                flags: d.flags,
                base: d.base,
                nmsrs: d.count,
                bitmap: &zeros,
            }));
        }
        if config.user_msrs {
            ranges.push(MsrFilterRange {
                flags: abi::kvm::KVM_MSR_FILTER_READ,
                base: abi::guest::VMM_MSR_BASE,
                nmsrs: abi::guest::VMM_MSR_COUNT,
                bitmap: &write_only,
            });
        }
        if !ranges.is_empty() {
            let has = kvm(
                "KVM_CHECK_EXTENSION",
                vm.check_extension(KVM_CAP_X86_MSR_FILTER),
            )?;
            if has == 0 {
                return Err(Error::Kvm {
                    request: "KVM_X86_SET_MSR_FILTER",
                    errno: errno::EINVAL,
                });
            }
            kvm(
                "KVM_X86_SET_MSR_FILTER",
                vm.set_msr_filter(KVM_MSR_FILTER_DEFAULT_ALLOW, &ranges),
            )?;
        }
        if config.user_msrs {
            let has = kvm(
                "KVM_CHECK_EXTENSION",
                vm.check_extension(KVM_CAP_X86_USER_SPACE_MSR),
            )?;
            if has == 0 {
                return Err(Error::Kvm {
                    request: "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)",
                    errno: errno::EINVAL,
                });
            }
            let cap = kvm_enable_cap {
                cap: KVM_CAP_X86_USER_SPACE_MSR,
                args: [u64::from(KVM_MSR_EXIT_REASON_UNKNOWN), 0, 0, 0],
                ..Default::default()
            };
            kvm("KVM_ENABLE_CAP", vm.enable_cap(&cap))?;
        }
        if config.memtest {
            use abi::guest::{LOGGED_SLOT_BASE, LOGGED_SLOT_PAGES, ROM_BASE, ROM_SIZE, rom_byte};
            note(
                LOGGED_SLOT,
                KVM_MEM_LOG_DIRTY_PAGES,
                LOGGED_SLOT_BASE,
                LOGGED_SLOT_PAGES * 4096,
            );
            note(ROM_SLOT, KVM_MEM_READONLY, ROM_BASE, ROM_SIZE);
            let logged = kvm(
                "allocating guest memory",
                vm.alloc_memory(LOGGED_SLOT_PAGES * 4096),
            )?;
            kvm(
                "KVM_SET_USER_MEMORY_REGION",
                vm.set_user_memory_region(
                    LOGGED_SLOT,
                    KVM_MEM_LOG_DIRTY_PAGES,
                    LOGGED_SLOT_BASE,
                    logged,
                ),
            )?;
            let rom = kvm("allocating guest memory", vm.alloc_memory(ROM_SIZE))?;
            let bytes: Vec<u8> = (0..ROM_SIZE).map(rom_byte).collect();
            rom.ram()
                .write(0, &bytes)
                .map_err(|_| Error::Config("the read-only slot is too small"))?;
            kvm(
                "KVM_SET_USER_MEMORY_REGION",
                vm.set_user_memory_region(ROM_SLOT, KVM_MEM_READONLY, ROM_BASE, rom),
            )?;
        }
        // KVM takes the split irqchip only before the first vCPU.
        let mut tsc_deadline = false;
        if config.split_irqchip {
            let has = kvm(
                "KVM_CHECK_EXTENSION",
                vm.check_extension(KVM_CAP_SPLIT_IRQCHIP),
            )?;
            if has == 0 {
                return Err(Error::Kvm {
                    request: "KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)",
                    errno: errno::EINVAL,
                });
            }
            let cap = kvm_enable_cap {
                cap: KVM_CAP_SPLIT_IRQCHIP,
                args: [IOAPIC_PINS, 0, 0, 0],
                ..Default::default()
            };
            kvm("KVM_ENABLE_CAP", vm.enable_cap(&cap))?;
            tsc_deadline = kvm(
                "KVM_CHECK_EXTENSION",
                vm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER),
            )? > 0;
        }
        if config.vcpus > 1 {
            // KVM: without KVM_CAP_MAX_VCPUS, KVM_CAP_NR_VCPUS is the most.
            let mut most = kvm("KVM_CHECK_EXTENSION", vm.check_extension(KVM_CAP_MAX_VCPUS))?;
            if most == 0 {
                most = kvm("KVM_CHECK_EXTENSION", vm.check_extension(KVM_CAP_NR_VCPUS))?;
            }
            if most < config.vcpus {
                return Err(Error::Config(
                    "more vCPUs than the back end allows (KVM_CAP_MAX_VCPUS)",
                ));
            }
        }
        let mut table = None;
        if config.cpuid != CpuidPolicy::Unset {
            let supported = kvm("KVM_GET_SUPPORTED_CPUID", system.supported_cpuid())?;
            let mut t = if config.cpuid == CpuidPolicy::MojitoLook {
                policy::mojito_look(&supported)
            } else {
                supported
            };
            if config.kvmclock {
                t.extend(kvm_cpuid());
            }
            if config.xen_hvm {
                t.extend(xen_cpuid());
            }
            if config.split_irqchip {
                policy::offer_local_apic(&mut t, tsc_deadline);
            }
            table = Some(t);
        }
        let mut vcpus = Vec::new();
        for id in 0..config.vcpus {
            let mut vcpu = kvm("KVM_CREATE_VCPU", vm.create_vcpu(id))?;
            match &table {
                // One vCPU keeps the table exactly as the back end gave it.
                Some(t) if config.vcpus == 1 => kvm("KVM_SET_CPUID2", vcpu.set_cpuid2(t))?,
                Some(t) => {
                    let own = policy::with_apic_id(t, id);
                    kvm("KVM_SET_CPUID2", vcpu.set_cpuid2(&own))?;
                }
                None => {}
            }
            vcpus.push(vcpu);
        }
        if config.split_irqchip {
            // After the vCPUs: a routing change makes KVM work out again,
            // for each vCPU there is, which vectors' EOIs exit
            // (KVM_REQ_SCAN_IOAPIC); Mojito looks at the routes at each EOI.
            let routes = if config.platform {
                ioapic_routes(&IoApic::default())
            } else {
                test_routes().to_vec()
            };
            kvm("KVM_SET_GSI_ROUTING", vm.set_gsi_routing(&routes))?;
        }
        let mut xen_blobs = None;
        let mut xen_emulated = false;
        if config.xen_hvm {
            // The vendor's hypercall instruction for the stubs.
            let amd = system
                .supported_cpuid()
                .ok()
                .and_then(|t| t.into_iter().find(|e| e.function == 0))
                .is_some_and(|e| e.ebx == u32::from_le_bytes(*b"Auth"));
            let blob = |long| {
                let n = abi::guest::XEN_BLOB_PAGES as usize * 4096;
                (0..n)
                    .map(|i| abi::guest::xen_blob_byte(long, (i / 4096) as u32, i % 4096, amd))
                    .collect::<Vec<u8>>()
            };
            let (b32, b64) = (blob(false), blob(true));
            // The kernel's hypercall-page MSR where it has one and this
            // back end can configure it; else the VMM's own emulation.
            let caps = kvm("KVM_CHECK_EXTENSION", vm.check_extension(KVM_CAP_XEN_HVM))?;
            let configured = caps & abi::kvm::KVM_XEN_HVM_CONFIG_HYPERCALL_MSR != 0
                && match vm.xen_hvm_config(abi::guest::XEN_HYPERCALL_MSR, &b32, &b64) {
                    Ok(()) => true,
                    Err(errno::EINVAL | errno::ENOTTY) => false,
                    Err(e) => {
                        return Err(Error::Kvm {
                            request: "KVM_XEN_HVM_CONFIG",
                            errno: e,
                        });
                    }
                };
            if !configured {
                if !config.user_msrs {
                    return Err(Error::Config(
                        "the Xen hypercall page needs KVM_CAP_XEN_HVM or userspace MSR exits",
                    ));
                }
                xen_emulated = true;
            }
            xen_blobs = Some((b32, b64));
        }
        let mut bus = PortBus::new();
        let clock = system.clock();
        let (pit, port_b) = crate::devices::pit::new(clock.clone());
        let standard: [(u16, u16, Box<dyn crate::devices::PortDevice>); 12] = [
            (config.uart_base, UART_LEN, Box::new(Uart::new())),
            (abi::guest::EXIT_PORT, 1, Box::new(DebugExit)),
            (abi::guest::CONSOLE_PORT, 1, Box::new(DebugCon)),
            (abi::guest::YIELD_PORT, 1, Box::new(YieldPort)),
            (abi::guest::POST_PORT, 1, Box::new(PostPort)),
            (abi::guest::IRQ_PORT, 1, Box::new(IrqPort)),
            (abi::guest::MSI_PORT, 1, Box::new(MsiPort::default())),
            (
                abi::guest::LEVEL_IRQ_PORT,
                1,
                Box::new(LevelIrqPort::default()),
            ),
            (
                abi::guest::DEBUG_PORT,
                crate::devices::debug::DEBUG_PORTS,
                Box::new(DebugPort::default()),
            ),
            (PIT_BASE, PIT_LEN, Box::new(pit)),
            (PORT_B, 1, Box::new(port_b)),
            (RTC_BASE, RTC_LEN, Box::new(Rtc::new(clock))),
        ];
        for (base, len, device) in standard {
            bus.insert(base, len, device)
                .map_err(|_| Error::Config("the UART overlaps a standard port"))?;
        }
        if config.platform {
            bus.insert(
                acpi::PM_BASE,
                acpi::PM_LEN,
                Box::new(Pm::new(system.clock())),
            )
            .map_err(|_| Error::Config("the UART overlaps the PM block"))?;
            bus.insert(PCI_BASE, PCI_LEN, Box::new(PciHost::new()))
                .map_err(|_| Error::Config("the UART overlaps the PCI ports"))?;
            bus.insert(i8042::COMMAND_PORT, 1, Box::new(i8042::I8042))
                .map_err(|_| Error::Config("the UART overlaps the 8042"))?;
            bus.insert(i8042::DATA_PORT, 1, Box::new(i8042::I8042Data))
                .map_err(|_| Error::Config("the UART overlaps the 8042"))?;
        }
        if config.memtest {
            bus.insert(abi::guest::MEMTEST_PORT, 1, Box::new(MemTest::default()))
                .map_err(|_| Error::Config("the UART overlaps the memory-slot test port"))?;
        }
        let n = vcpus.len();
        // Linux's console writes one byte per OUT: the UART's THR is
        // coalesced where the back end can (`Vm::sync_coalescing`).
        let coalesce = config.platform
            && vm
                .check_extension(abi::kvm::KVM_CAP_COALESCED_PIO)
                .is_ok_and(|n| n > 0);
        Ok(Self {
            vcpus,
            vm,
            current: 0,
            state: State {
                bus,
                scratch: Default::default(),
                console: Console::new(&config.name, config.console_ring, sink),
                recorder: Recorder::new(config.record_limit),
                exits: ExitCounts {
                    per_vcpu: alloc::vec![0; n],
                    ..ExitCounts::default()
                },
                uart_base: config.uart_base,
                stop_on_yield: config.stop_on_yield,
                stop_on_intr: config.stop_on_intr,
                pending_irq: None,
                window_requested: false,
                debugging: false,
                hw_breakpoints: false,
                intrs_in_a_row: alloc::vec![0; n],
                max_intrs_in_a_row: config.max_intrs_in_a_row,
                vmm_msrs: [0; abi::guest::VMM_MSR_COUNT as usize],
                xen_emulated,
                ioapic: config.platform.then(|| IoApic::new(acpi::IOAPIC_ID)),
                msis: Vec::new(),
                routes_changed: false,
                uart_irq: false,
                coalesce,
                thr_zone: false,
                coalesced: Vec::new(),
                blk: None,
                blk_irq: false,
                vcon: config.platform.then(|| Mmio::new(VirtioConsole::new())),
                vcon_irq: false,
            },
            stop: Arc::new(AtomicBool::new(false)),
            name: config.name.clone(),
            vm_id: config.vm_id,
            xen_blobs,
            memslots,
        })
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Guest RAM (GPA 0 is offset 0).
    pub fn ram(&self) -> Option<GuestRam<'_>> {
        self.vm.memory(0)
    }

    /// Sets the BSP's registers for `start`, on top of its reset state
    /// (the APs wait for the guest's INIT and SIPI).
    pub fn start_at(&mut self, start: &Start) -> Result<(), Error> {
        let bsp = self.vcpu();
        let mut sregs = kvm("KVM_GET_SREGS", bsp.get_sregs())?;
        let regs = start.apply(&mut sregs);
        kvm("KVM_SET_SREGS", bsp.set_sregs(&sregs))?;
        kvm("KVM_SET_REGS", bsp.set_regs(&regs))
    }

    fn with_ram<T>(
        &mut self,
        load: impl FnOnce(&GuestRam<'_>) -> Result<T, LoadError>,
    ) -> Result<T, Error> {
        let ram = self.vm.memory(0).ok_or(Error::Config("no RAM"))?;
        Ok(load(&ram)?)
    }

    /// Loads one of Mojito's test guests (`abi::guest`) and points the BSP
    /// at it.
    pub fn load_test_guest(&mut self, elf: &[u8]) -> Result<Start, Error> {
        let id = self.vm_id;
        let start = self.with_ram(|ram| loader::load_test_guest(ram, elf, id))?;
        self.start_at(&start)?;
        Ok(start)
    }

    /// Loads a flat binary at `gpa` and starts it there in real mode.
    pub fn load_flat(&mut self, image: &[u8], gpa: u64) -> Result<Start, Error> {
        let start = self.with_ram(|ram| loader::load_flat(ram, image, gpa))?;
        self.start_at(&start)?;
        Ok(start)
    }

    /// Gives a VM with the PC platform a virtio block device over `disk`
    /// (`devices::virtio::blk`; [`Vm::load_linux`] announces it in the
    /// ACPI tables, so attach it first).
    pub fn attach_disk(&mut self, disk: Vec<u8>) -> Result<(), Error> {
        if self.state.ioapic.is_none() {
            return Err(Error::Config(
                "a virtio disk needs the PC platform (VmConfig::linux)",
            ));
        }
        self.state.blk = Some(Mmio::new(Block::new(disk, &self.name)));
        Ok(())
    }

    /// The virtio disk as the guest left it, and the requests it carried
    /// out.
    pub fn disk(&self) -> Option<(&[u8], u64)> {
        self.state
            .blk
            .as_ref()
            .map(|b| (b.dev.disk(), b.dev.requests))
    }

    /// Loads a Linux kernel with its initrd and command line: a bzImage by
    /// the boot protocol's 32-bit entry ([`bzimage`]), else an ELF with
    /// the PVH entry note (`vmlinux`, [`pvh`]); writes the ACPI tables for
    /// the VM's vCPUs and devices first, and points the BSP at the entry.
    pub fn load_linux(
        &mut self,
        kernel: &[u8],
        initrd: Option<&[u8]>,
        cmdline: &str,
    ) -> Result<Start, Error> {
        if self.state.ioapic.is_none() {
            return Err(Error::Config(
                "a Linux guest needs the PC platform (VmConfig::linux)",
            ));
        }
        let vcpus = u8::try_from(self.vcpus.len()).map_err(|_| Error::Config("too many vCPUs"))?;
        // The virtio devices are announced in the DSDT (Debian's kernel
        // has no CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES for virtio_mmio.device=).
        let device = |base: u64, irq: u8| acpi::VirtioMmio {
            base: base as u32,
            len: virtio::MMIO_LEN as u32,
            gsi: u32::from(irq),
        };
        let mut virtio = Vec::new();
        if self.state.blk.is_some() {
            virtio.push(device(BLK_BASE, BLK_IRQ));
        }
        if self.state.vcon.is_some() {
            virtio.push(device(CONSOLE_BASE, CONSOLE_IRQ));
        }
        let tables = acpi::build(vcpus, &virtio);
        let start = self.with_ram(|ram| {
            ram.write(acpi::BASE, &tables.bytes)
                .map_err(|_| LoadError::OutsideRam {
                    gpa: acpi::BASE,
                    len: tables.bytes.len() as u64,
                })?;
            if bzimage::is_bzimage(kernel) {
                bzimage::load(ram, kernel, cmdline, initrd, tables.rsdp)
            } else {
                pvh::load(ram, kernel, cmdline, initrd, tables.rsdp)
            }
        })?;
        self.start_at(&start)?;
        Ok(start)
    }

    /// Loads a multiboot v1 kernel with its command line and modules.
    pub fn load_multiboot(
        &mut self,
        kernel: &[u8],
        cmdline: &str,
        modules: &[multiboot::Module<'_>],
    ) -> Result<Start, Error> {
        let start = self.with_ram(|ram| multiboot::load(ram, kernel, cmdline, modules))?;
        self.start_at(&start)?;
        Ok(start)
    }

    /// The BSP (vCPU 0), for requests the VMM makes directly (registers,
    /// MSRs).
    pub fn vcpu(&mut self) -> &mut V::Vcpu {
        // `create` makes at least one vCPU and none goes away.
        &mut self.vcpus[0]
    }

    /// vCPU `id`, if the VM has it.
    pub fn vcpu_at(&mut self, id: usize) -> Option<&mut V::Vcpu> {
        self.vcpus.get_mut(id)
    }

    /// How many vCPUs the VM has.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// The vCPU the run loop is on: the one that made the last exit, and
    /// the one the next [`Vm::run`] runs first.
    pub fn current_vcpu(&self) -> usize {
        self.current
    }

    /// A handle that stops [`Vm::run`] from elsewhere.
    pub fn stop_handle(&self) -> StopHandle<<V::Vcpu as api::Vcpu>::Kicker> {
        StopHandle {
            flag: self.stop.clone(),
            kickers: self.vcpus.iter().map(api::Vcpu::kicker).collect(),
        }
    }

    /// The guest's console (recent output, echo on/off).
    pub fn console(&mut self) -> &mut Console {
        &mut self.state.console
    }

    /// The UART, e.g. to queue input.
    pub fn uart(&mut self) -> Option<&mut Uart> {
        let base = self.state.uart_base;
        self.state.bus.get_mut::<Uart>(base)
    }

    /// The port bus (devices and the unknown-port counters).
    pub fn bus(&mut self) -> &mut PortBus {
        &mut self.state.bus
    }

    /// The exit stream so far.
    pub fn records(&self) -> &[ExitRecord] {
        self.state.recorder.records()
    }

    /// Takes the exit stream so far.
    pub fn take_records(&mut self) -> Vec<ExitRecord> {
        self.state.recorder.take()
    }

    /// Records not kept because the limit was reached.
    pub fn records_dropped(&self) -> u64 {
        self.state.recorder.dropped()
    }

    /// The vCPU that made the last exit.
    fn current(&mut self) -> &mut V::Vcpu {
        // `current` is always below the vCPU count (`run`).
        &mut self.vcpus[self.current]
    }

    /// Userspace irqchip: injects the raised vector with `KVM_INTERRUPT` if
    /// the last exit said the guest can take it, and otherwise asks for the
    /// interrupt window (`KVM_EXIT_IRQ_WINDOW_OPEN`), as a VMM with its own
    /// PIC does. Into the BSP only, as a PIC's output goes to it.
    fn arm_interrupt(&mut self) {
        let bsp = &mut self.vcpus[0];
        let mut want_window = false;
        if let Some(vector) = self.state.pending_irq {
            let ready = bsp.run_page().run().ready_for_interrupt_injection != 0;
            if ready && bsp.interrupt(u32::from(vector)).is_ok() {
                self.state.pending_irq = None;
            } else {
                want_window = true;
            }
        }
        // The run page is touched only when the request changes (this runs
        // before every RUN of the BSP).
        if want_window != self.state.window_requested {
            bsp.run_page().run_mut().request_interrupt_window = u8::from(want_window);
            self.state.window_requested = want_window;
        }
    }

    /// Carries out what the virtio devices' queues hold and sends what the
    /// console transmitted to the VM's console.
    fn process_virtio(&mut self) {
        let Some(ram) = self.vm.memory(0) else {
            return;
        };
        let s = &mut self.state;
        if let Some(blk) = s.blk.as_mut() {
            blk.process(&ram);
        }
        if let Some(vcon) = s.vcon.as_mut() {
            vcon.process(&ram);
            for b in vcon.dev.take_output() {
                s.console.push(b);
            }
        }
    }

    /// The virtio console (VMs with the PC platform), e.g. to queue input
    /// for the guest's `/dev/hvc0`.
    pub fn virtio_console(&mut self) -> Option<&mut VirtioConsole> {
        self.state.vcon.as_mut().map(|m| &mut m.dev)
    }

    /// Registers the UART's THR as a coalesced port while
    /// [`Uart::thr_coalescable`] holds, and takes it away when it stops
    /// holding (the guest enabled the THR-empty interrupt or loopback). A
    /// back end that refuses a registration is not asked again: the writes
    /// exit. One that refuses to take the zone away is an error (its
    /// writes would go on into the ring while the guest waits for the
    /// THR-empty interrupt).
    fn sync_coalescing(&mut self) -> api::Result<()> {
        let s = &mut self.state;
        if !s.coalesce {
            return Ok(());
        }
        let want = s
            .bus
            .get::<Uart>(s.uart_base)
            .is_some_and(Uart::thr_coalescable);
        if want == s.thr_zone {
            return Ok(());
        }
        if want {
            match self.vm.register_coalesced_pio(s.uart_base, 1) {
                Ok(()) => s.thr_zone = true,
                Err(_) => s.coalesce = false,
            }
        } else {
            self.vm.unregister_coalesced_pio(s.uart_base, 1)?;
            s.thr_zone = false;
        }
        Ok(())
    }

    /// The platform's interrupts: the UART's line to IOAPIC pin 4, then
    /// what the IOAPIC sends (`KVM_SIGNAL_MSI`) and, when its entries
    /// changed, its routes (`KVM_SET_GSI_ROUTING`).
    fn deliver_irqs(&mut self) -> api::Result<()> {
        let s = &mut self.state;
        let Some(ioapic) = s.ioapic.as_mut() else {
            return Ok(());
        };
        let uart = s.bus.get::<Uart>(s.uart_base).is_some_and(Uart::irq);
        if uart != s.uart_irq {
            s.uart_irq = uart;
            ioapic.set_line(usize::from(UART_IRQ), uart, &mut s.msis);
        }
        let blk = s.blk.as_ref().is_some_and(Mmio::irq);
        if blk != s.blk_irq {
            s.blk_irq = blk;
            ioapic.set_line(usize::from(BLK_IRQ), blk, &mut s.msis);
        }
        let vcon = s.vcon.as_ref().is_some_and(Mmio::irq);
        if vcon != s.vcon_irq {
            s.vcon_irq = vcon;
            ioapic.set_line(usize::from(CONSOLE_IRQ), vcon, &mut s.msis);
        }
        if core::mem::take(&mut s.routes_changed) {
            self.vm.set_gsi_routing(&ioapic_routes(ioapic))?;
        }
        for msi in s.msis.drain(..) {
            let m = abi::kvm::kvm_msi {
                address_lo: msi.address as u32,
                address_hi: (msi.address >> 32) as u32,
                data: msi.data,
                ..Default::default()
            };
            // 0: the interrupt was blocked (the APIC is off); EPERM: no
            // local APIC has the destination; EINVAL: a message the
            // kernel refuses. The guest programmed its IOAPIC so; the
            // message is lost, as on a PC. Anything else is the host's.
            match self.vm.signal_msi(&m) {
                Ok(_) | Err(errno::EPERM | errno::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends `vector` as an MSI to local APIC 0 (the MSI test port) and
    /// leaves what `KVM_SIGNAL_MSI` returned for the guest to read.
    fn signal_msi(&mut self, vector: u8) {
        let msi = abi::kvm::kvm_msi {
            address_lo: abi::guest::MSI_ADDRESS_APIC0,
            data: u32::from(vector),
            ..Default::default()
        };
        let answer = match self.vm.signal_msi(&msi) {
            Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
            Err(e) => -e,
        };
        if let Some(port) = self.state.bus.get_mut::<MsiPort>(abi::guest::MSI_PORT) {
            port.last = Some(answer);
        }
    }

    /// Sends the MSI of the test route with `vector` (the level-triggered
    /// interrupt test port): exactly the route's address and data, so the
    /// kernel sees it as the route's pin would send it. A vector no route
    /// has sends nothing; the guest sees whether it came.
    fn level_irq(&mut self, vector: u8) {
        if let Some((_, msi, _)) = test_routes()
            .into_iter()
            .find(|(_, m, _)| m.data & 0xff == u32::from(vector))
        {
            let msi = abi::kvm::kvm_msi {
                address_lo: msi.address_lo,
                address_hi: msi.address_hi,
                data: msi.data,
                ..Default::default()
            };
            let _ = self.vm.signal_msi(&msi);
        }
    }

    /// Carries out a command of the debugging test port: single-step,
    /// software breakpoints, or off, for the vCPU that wrote it; a new
    /// session's count starts at 0.
    fn debug_command(&mut self, command: u8) {
        use abi::guest::{
            DEBUG_HW_BREAKPOINTS, DEBUG_SINGLE_STEP, DEBUG_SW_BREAKPOINTS, DEBUG_WATCH_WRITE,
        };
        use abi::kvm::{
            KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
            KVM_GUESTDBG_USE_SW_BP,
        };
        let Some(port) = self.state.bus.get_mut::<DebugPort>(abi::guest::DEBUG_PORT) else {
            return;
        };
        let addrs = port.addrs;
        let n = core::mem::take(&mut port.n_addrs);
        // A new session counts its exits from 0; stopping keeps the count.
        if command != abi::guest::DEBUG_OFF {
            port.exits = 0;
        }
        // DR7 (SDM Vol. 3B 18.2.4): L<i> (bit 2i) enables DR<i>; R/W<i>
        // (bits 16 + 4i) 00 = execute, 01 = write; LEN<i> (18 + 4i) 11 = 4
        // bytes (execute breakpoints take 00).
        let mut debugreg = [0u64; 8];
        for (i, &a) in addrs.iter().take(n).enumerate() {
            debugreg[i] = u64::from(a & !DEBUG_WATCH_WRITE);
            debugreg[7] |= 1 << (2 * i);
            if a & DEBUG_WATCH_WRITE != 0 {
                debugreg[7] |= 0b1101 << (16 + 4 * i);
            }
        }
        let control = match command {
            DEBUG_SINGLE_STEP => KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP,
            DEBUG_SW_BREAKPOINTS => KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP,
            DEBUG_HW_BREAKPOINTS => KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP,
            _ => 0,
        };
        self.state.debugging =
            control != 0 && self.current().set_guest_debug(control, debugreg).is_ok();
        self.state.hw_breakpoints = self.state.debugging && command == DEBUG_HW_BREAKPOINTS;
        if control == 0 {
            let _ = self.current().set_guest_debug(0, [0; 8]);
        }
    }

    /// Carries out a command of the memory-slot test port: fetch the logged
    /// slot's dirty log (its page indices go to the port), or move the slot
    /// away and back. A failure leaves the list empty / the slot where it
    /// was, which the guest sees.
    fn memtest(&mut self, command: u8) {
        use abi::guest::{
            LOGGED_SLOT_BASE, MEMTEST_FETCH_DIRTY_LOG, MEMTEST_MOVE_AWAY, MEMTEST_MOVE_BACK,
            MOVED_SLOT_BASE,
        };
        let mut pages = Vec::new();
        match command {
            MEMTEST_FETCH_DIRTY_LOG => {
                if let Ok(bits) = self.vm.get_dirty_log(LOGGED_SLOT) {
                    for (i, w) in bits.iter().enumerate() {
                        for b in 0..64 {
                            if w & (1 << b) != 0 {
                                pages.push((i * 64 + b) as u32);
                            }
                        }
                    }
                }
            }
            MEMTEST_MOVE_AWAY | MEMTEST_MOVE_BACK => {
                let to = if command == MEMTEST_MOVE_AWAY {
                    MOVED_SLOT_BASE
                } else {
                    LOGGED_SLOT_BASE
                };
                let moved =
                    self.vm
                        .change_user_memory_region(LOGGED_SLOT, KVM_MEM_LOG_DIRTY_PAGES, to);
                if let (Ok(()), Some(m)) = (moved, self.memslots.get_mut(&LOGGED_SLOT)) {
                    m.guest_phys_addr = to;
                }
            }
            _ => {}
        }
        if let Some(port) = self.state.bus.get_mut::<MemTest>(abi::guest::MEMTEST_PORT) {
            port.set_pages(pages);
        }
    }

    /// Takes one `KVM_EXIT_INTR` off the count of those in a row
    /// ([`VmConfig::max_intrs_in_a_row`]) of the vCPU the next [`Vm::run`]
    /// runs first: the caller knows the one that ends its next RUN is its
    /// own doing (it took input, which ends the next RUN at once), not a
    /// sign of a guest that never exits.
    pub fn forgive_intr(&mut self) {
        if let Some(n) = self.state.intrs_in_a_row.get_mut(self.current) {
            *n = n.saturating_sub(1);
        }
    }

    /// The memory slots, by slot number.
    pub fn memslots(&self) -> impl Iterator<Item = &Memslot> {
        self.memslots.values()
    }

    /// Exit counts so far.
    pub fn exits(&self) -> &ExitCounts {
        &self.state.exits
    }

    /// The guest wrote `value` to the Xen hypercall-page MSR of a kernel
    /// without `KVM_CAP_XEN_HVM`: what `KVM_XEN_HVM_CONFIG` would do
    /// (`GPA | page`; the blob by the vCPU's mode), or #GP (`msr.error`).
    fn xen_page(&mut self, value: u64) {
        let ok = (|| {
            let (b32, b64) = self.xen_blobs.as_ref()?;
            const EFER_LMA: u64 = 1 << 10;
            let long = self.vcpus.get(self.current)?.get_sregs().ok()?.efer & EFER_LMA != 0;
            let blob = if long { b64 } else { b32 };
            let page = (value & 0xfff) as usize;
            let data = blob.get(page * 4096..(page + 1) * 4096)?;
            // Guest RAM (slot 0) or the memory-slot test's logged slot;
            // the read-only slot, like anything else, is refused.
            let gpa = value & !0xfff;
            let logged = abi::guest::LOGGED_SLOT_BASE;
            let (slot, offset) = match gpa.checked_sub(abi::guest::GUEST_RAM_BASE) {
                Some(o) if self.vm.memory(0).is_some_and(|m| o < m.len() as u64) => (0, o),
                _ => (LOGGED_SLOT, gpa.checked_sub(logged)?),
            };
            self.vm.memory(slot)?.write(offset, data).ok()
        })()
        .is_some();
        if !ok {
            self.current().run_page().run_mut().exit.msr.error = 1;
        }
    }

    /// Runs the vCPUs until the VM stops (or yields, or is asked to stop).
    ///
    /// Round robin on this one thread (the control domain has no other):
    /// the current vCPU runs, each exit handled as it comes, until an exit
    /// stops the VM or a `KVM_EXIT_INTR` (under Mojito the hypervisor's
    /// tick, or at once when this vCPU cannot run while another could; on
    /// Linux the back end's kick) moves the loop on to the next vCPU. With
    /// [`VmConfig::stop_on_intr`] the loop returns
    /// [`StopReason::Interrupted`] at every `KVM_EXIT_INTR`, as with one
    /// vCPU, so that the caller sees input as soon as it ends a RUN; `run`
    /// again goes on with the next vCPU.
    pub fn run(&mut self) -> Outcome {
        let reason = loop {
            if self.stop.swap(false, Ordering::SeqCst) {
                break StopReason::Requested;
            }
            let i = self.current;
            // Input may have arrived since the last exit.
            if self.state.vcon.as_ref().is_some_and(|c| c.dev.has_input()) {
                self.process_virtio();
            }
            if let Err(e) = self.deliver_irqs() {
                break StopReason::RunFailed(e);
            }
            if let Err(e) = self.sync_coalescing() {
                break StopReason::RunFailed(e);
            }
            if i == 0 {
                self.arm_interrupt();
            }
            let ran = self.vcpus[i].run();
            // The writes the guest made without an exit come first.
            if self.state.thr_zone {
                self.vm.take_coalesced(&mut self.state.coalesced);
                self.state.coalesced_writes();
            }
            let exit = match ran {
                Ok(page) => Exit::decode(page),
                // KVM_RUN interrupted (a kick, a signal, immediate_exit):
                // KVM's KVM_EXIT_INTR.
                Err(errno::EINTR) => Exit::Intr,
                // Linux: an AP that waited for SIPI woke (its INIT came);
                // no exit, so it runs again, as QEMU does.
                Err(errno::EAGAIN) => continue,
                Err(e) => break StopReason::RunFailed(e),
            };
            let next = self.state.handle(i, exit);
            if let Err(e) = self.deliver_irqs() {
                break StopReason::RunFailed(e);
            }
            match next {
                Next::Continue => {}
                Next::EndTurn => {
                    self.current = (i + 1) % self.vcpus.len();
                    if self.state.stop_on_intr {
                        break StopReason::Interrupted;
                    }
                }
                Next::Stop(reason) => break reason,
                Next::Command(c) => self.memtest(c),
                Next::XenPage(value) => self.xen_page(value),
                Next::Msi(vector) => self.signal_msi(vector),
                Next::VirtioNotify => {
                    self.process_virtio();
                    if let Err(e) = self.deliver_irqs() {
                        break StopReason::RunFailed(e);
                    }
                }
                Next::LevelIrq(vector) => self.level_irq(vector),
                Next::Debug(c) => self.debug_command(c),
                Next::ResumeBreakpoint => {
                    // An instruction breakpoint would hit again: RF lets the
                    // instruction run once (SDM Vol. 3B 18.3.1.1).
                    match self.current().get_regs() {
                        Ok(mut regs) => {
                            regs.rflags |= 1 << 16;
                            if let Err(e) = self.current().set_regs(&regs) {
                                break StopReason::RunFailed(e);
                            }
                        }
                        Err(e) => break StopReason::RunFailed(e),
                    }
                }
                Next::SkipBreakpoint => {
                    // KVM leaves RIP on the INT3: step over it.
                    match self.current().get_regs() {
                        Ok(mut regs) => {
                            regs.rip += 1;
                            if let Err(e) = self.current().set_regs(&regs) {
                                break StopReason::RunFailed(e);
                            }
                        }
                        Err(e) => break StopReason::RunFailed(e),
                    }
                }
            }
        };
        if !reason.is_pause() {
            self.state.console.flush();
        }
        Outcome {
            reason,
            exits: self.state.exits.clone(),
        }
    }
}

/// The GSI routes a VM with the split irqchip gets
/// (`abi::guest::LEVEL_IRQ_ROUTES`): MSIs to local APIC 0, fixed delivery,
/// no device id.
fn test_routes() -> [(u32, abi::kvm::kvm_irq_routing_msi, u32); 3] {
    abi::guest::LEVEL_IRQ_ROUTES.map(|(gsi, data)| {
        let msi = abi::kvm::kvm_irq_routing_msi {
            address_lo: abi::guest::MSI_ADDRESS_APIC0,
            data,
            ..Default::default()
        };
        (gsi, msi, 0)
    })
}

/// The GSI routes of the IOAPIC's pins as its entries stand.
fn ioapic_routes(ioapic: &IoApic) -> Vec<(u32, abi::kvm::kvm_irq_routing_msi, u32)> {
    ioapic
        .routes()
        .map(|(gsi, msi)| {
            let m = abi::kvm::kvm_irq_routing_msi {
                address_lo: msi.address as u32,
                address_hi: (msi.address >> 32) as u32,
                data: msi.data,
                ..Default::default()
            };
            (gsi, m, 0)
        })
        .collect()
}

/// KVM's paravirtual leaves as the test VMM offers them
/// (`abi::guest::KVM_CPUID_BASE`): the signature with the highest leaf, and
/// kvmclock in the features.
fn kvm_cpuid() -> [abi::kvm::kvm_cpuid_entry2; 2] {
    use abi::guest::{
        KVM_CPUID_BASE, KVM_FEATURE_CLOCKSOURCE, KVM_FEATURE_CLOCKSOURCE_STABLE_BIT,
        KVM_FEATURE_CLOCKSOURCE2,
    };
    let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
    [
        abi::kvm::kvm_cpuid_entry2 {
            function: KVM_CPUID_BASE,
            eax: KVM_CPUID_BASE + 1,
            ebx: word(b"KVMK"),
            ecx: word(b"VMKV"),
            edx: word(b"M\0\0\0"),
            ..Default::default()
        },
        abi::kvm::kvm_cpuid_entry2 {
            function: KVM_CPUID_BASE + 1,
            eax: KVM_FEATURE_CLOCKSOURCE
                | KVM_FEATURE_CLOCKSOURCE2
                | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT,
            ..Default::default()
        },
    ]
}

/// The Xen leaves the test VMM announces (`abi::guest::XEN_CPUID_BASE`):
/// the signature with the highest leaf, a version (4.17), and the
/// hypercall-page leaf (EAX pages, EBX the MSR).
fn xen_cpuid() -> [abi::kvm::kvm_cpuid_entry2; 3] {
    let base = abi::guest::XEN_CPUID_BASE;
    let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
    let leaf = |function, regs: [u32; 4]| abi::kvm::kvm_cpuid_entry2 {
        function,
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
        ..Default::default()
    };
    [
        leaf(
            base,
            [base + 2, word(b"XenV"), word(b"MMXe"), word(b"nVMM")],
        ),
        leaf(base + 1, [0x0004_0011, 0, 0, 0]),
        leaf(
            base + 2,
            [
                abi::guest::XEN_BLOB_PAGES,
                abi::guest::XEN_HYPERCALL_MSR,
                0,
                0,
            ],
        ),
    ]
}
