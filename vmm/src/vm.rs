//! A VM as the VMM runs it: memory, one vCPU, the port devices, the
//! guest's console, and the run loop that handles exits, records the exit
//! stream and says why the VM stopped.
//!
//! Interrupts: this is the userspace-irqchip configuration (no
//! `KVM_CREATE_IRQCHIP`, no split irqchip yet), and no device raises an
//! interrupt, so a HLT can never be woken: the VM stops as "halted".

use abi::kvm::{
    KVM_API_VERSION, KVM_CAP_X86_MSR_FILTER, KVM_ENOSYS, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT,
    KVM_EXIT_HYPERCALL, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO,
    KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT,
    KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR, KVM_EXIT_DEBUG, KVM_MSR_FILTER_DEFAULT_ALLOW, errno,
};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::api::{self, Errno, GuestRam, Kick, MsrFilterRange, System, Vcpu as _};
use crate::devices::console::{Console, RING_DEFAULT, Sink};
use crate::devices::debug::{DebugCon, DebugExit, PostPort, YieldPort};
use crate::devices::uart::{COM1, UART_LEN, Uart};
use crate::devices::{Effect, PortBus};
use crate::exit::Exit;
use crate::loader::{self, LoadError, Start, multiboot};
use crate::policy;
use crate::record::{ExitRecord, RECORD_LIMIT_DEFAULT, Recorder};

/// Default guest RAM (DESIGN.md §3: a guest gets 256 MiB).
pub const DEFAULT_RAM: u64 = 256 << 20;
/// Largest RAM in one slot from GPA 0: below the 32-bit PCI/APIC hole.
pub const MAX_RAM: u64 = 3 << 30;

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
    /// Bytes of recent output kept for `console`.
    pub console_ring: usize,
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
            console_ring: RING_DEFAULT,
        }
    }

    /// Mojito's look: its CPUID signature and MSR refusals, so Mojito's
    /// own test guests pass their checks under another back end.
    pub fn mojito_look(mut self) -> Self {
        self.cpuid = CpuidPolicy::MojitoLook;
        self.deny_mojito_msrs = true;
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

/// Why the run loop returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest wrote `status` to the debug-exit port (0 = pass).
    Exited(u32),
    /// HLT with no interrupt source that could wake the vCPU.
    Halted,
    /// `KVM_EXIT_SHUTDOWN`: a triple fault.
    Shutdown,
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry { reason: u64, cpu: u32 },
    /// `KVM_EXIT_INTERNAL_ERROR`: the suberror and its data words.
    InternalError { suberror: u32, data: Vec<u64> },
    /// `KVM_EXIT_SYSTEM_EVENT` of this type.
    SystemEvent(u32),
    /// The guest wrote the yield port and the VM stops on yields
    /// ([`VmConfig::stop_on_yield`]); `run` again to continue.
    Yield,
    /// [`StopHandle::stop`] was called; `run` again to continue.
    Requested,
    /// `KVM_RUN` itself failed with this errno.
    RunFailed(Errno),
    /// An exit the VMM does not handle.
    Unhandled { exit_reason: u32 },
    /// A run page that contradicts itself.
    Malformed { exit_reason: u32, what: &'static str },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(s) => write!(f, "exited with status {s}"),
            Self::Halted => f.write_str("halted"),
            Self::Shutdown => f.write_str("triple fault"),
            Self::FailEntry { reason, cpu } => {
                write!(f, "VM entry failed (hardware reason {reason:#x}, cpu {cpu})")
            }
            Self::InternalError { suberror, data } => {
                write!(f, "internal error {suberror} {data:x?}")
            }
            Self::SystemEvent(kind) => write!(f, "system event {kind}"),
            Self::Yield => f.write_str("yielded"),
            Self::Requested => f.write_str("stopped on request"),
            Self::RunFailed(e) => write!(f, "KVM_RUN failed: errno {e}"),
            Self::Unhandled { exit_reason } => write!(f, "unhandled exit reason {exit_reason}"),
            Self::Malformed { exit_reason, what } => {
                write!(f, "malformed exit (reason {exit_reason}): {what}")
            }
        }
    }
}

/// Exits per `KVM_EXIT_*` reason (before string I/O is flattened), and the
/// MMIO addresses no device claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    pub by_reason: BTreeMap<u32, u64>,
    pub mmio_reads: BTreeMap<u64, u64>,
    pub mmio_writes: BTreeMap<u64, u64>,
}

impl ExitCounts {
    /// Exits of reason `exit_reason` so far.
    pub fn get(&self, exit_reason: u32) -> u64 {
        self.by_reason.get(&exit_reason).copied().unwrap_or(0)
    }

    fn count(&mut self, exit_reason: u32) {
        *self.by_reason.entry(exit_reason).or_default() += 1;
    }
}

/// The name of an exit reason, for reports.
pub fn exit_reason_name(reason: u32) -> &'static str {
    match reason {
        KVM_EXIT_IO => "io",
        KVM_EXIT_HYPERCALL => "hypercall",
        KVM_EXIT_DEBUG => "debug",
        KVM_EXIT_HLT => "hlt",
        KVM_EXIT_MMIO => "mmio",
        KVM_EXIT_IRQ_WINDOW_OPEN => "irq_window_open",
        KVM_EXIT_SHUTDOWN => "shutdown",
        KVM_EXIT_FAIL_ENTRY => "fail_entry",
        KVM_EXIT_INTR => "intr",
        KVM_EXIT_INTERNAL_ERROR => "internal_error",
        KVM_EXIT_SYSTEM_EVENT => "system_event",
        KVM_EXIT_X86_RDMSR => "x86_rdmsr",
        KVM_EXIT_X86_WRMSR => "x86_wrmsr",
        _ => "other",
    }
}

impl fmt::Display for ExitCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (reason, n) in &self.by_reason {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{} ({reason}): {n}", exit_reason_name(*reason))?;
        }
        Ok(())
    }
}

/// What `run` returns: why the VM stopped and the exits so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reason: StopReason,
    pub exits: ExitCounts,
}

/// Stops a running VM from another thread or CPU: the run loop returns
/// [`StopReason::Requested`] at its next exit, and the kick makes that
/// exit come at once.
#[derive(Clone)]
pub struct StopHandle<K: Kick> {
    flag: Arc<AtomicBool>,
    kicker: K,
}

impl<K: Kick> StopHandle<K> {
    /// Asks the run loop to stop and kicks the vCPU out of the guest.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.kicker.kick();
    }
}

/// Everything the exit handlers touch (kept apart from the vCPU, whose
/// run page an exit borrows).
struct State {
    bus: PortBus,
    console: Console,
    recorder: Recorder,
    exits: ExitCounts,
    uart_base: u16,
    stop_on_yield: bool,
}

/// What an exit handler decided.
enum Next {
    Continue,
    Stop(StopReason),
}

/// A VM with one vCPU.
pub struct Vm<V: api::Vm> {
    // Field order is drop order: the vCPU goes before its VM.
    vcpu: V::Vcpu,
    vm: V,
    state: State,
    stop: Arc<AtomicBool>,
    name: String,
    vm_id: u32,
}

impl<V: api::Vm> fmt::Debug for Vm<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("name", &self.name)
            .field("vm_id", &self.vm_id)
            .field("exits", &self.state.exits)
            .finish_non_exhaustive()
    }
}

impl<V: api::Vm> Vm<V> {
    /// Makes a VM: RAM at GPA 0 (slot 0), one vCPU, its CPUID table and MSR
    /// filter as `config` says, the standard devices (UART, debug exit,
    /// debug console, yield and POST ports). Finished lines of the guest's
    /// output go to `sink`.
    pub fn create<S: System<Vm = V>>(
        system: &S,
        config: &VmConfig,
        sink: Box<dyn Sink>,
    ) -> Result<Self, Error> {
        if config.ram_size == 0 || config.ram_size % 4096 != 0 || config.ram_size > MAX_RAM {
            return Err(Error::Config("RAM size must be a non-zero multiple of 4 KiB up to 3 GiB"));
        }
        let version = kvm("KVM_GET_API_VERSION", system.api_version())?;
        if version != KVM_API_VERSION {
            return Err(Error::ApiVersion(version));
        }
        let mut vm = kvm("KVM_CREATE_VM", system.create_vm())?;
        let memory = kvm("allocating guest memory", vm.alloc_memory(config.ram_size))?;
        kvm(
            "KVM_SET_USER_MEMORY_REGION",
            vm.set_user_memory_region(0, 0, abi::guest::GUEST_RAM_BASE, memory),
        )?;
        if config.deny_mojito_msrs {
            let has = kvm("KVM_CHECK_EXTENSION", vm.check_extension(KVM_CAP_X86_MSR_FILTER))?;
            if has == 0 {
                return Err(Error::Kvm {
                    request: "KVM_X86_SET_MSR_FILTER",
                    errno: errno::EINVAL,
                });
            }
            let zeros = [0u8; policy::DENIED_BITMAP_BYTES];
            let ranges: Vec<MsrFilterRange<'_>> = policy::MOJITO_DENIED_MSRS
                .iter()
                .map(|d| MsrFilterRange {
                    flags: d.flags,
                    base: d.base,
                    nmsrs: d.count,
                    bitmap: &zeros,
                })
                .collect();
            kvm(
                "KVM_X86_SET_MSR_FILTER",
                vm.set_msr_filter(KVM_MSR_FILTER_DEFAULT_ALLOW, &ranges),
            )?;
        }
        let mut vcpu = kvm("KVM_CREATE_VCPU", vm.create_vcpu(0))?;
        match config.cpuid {
            CpuidPolicy::Unset => {}
            policy_kind => {
                let supported = kvm("KVM_GET_SUPPORTED_CPUID", system.supported_cpuid())?;
                let table = if policy_kind == CpuidPolicy::MojitoLook {
                    policy::mojito_look(&supported)
                } else {
                    supported
                };
                kvm("KVM_SET_CPUID2", vcpu.set_cpuid2(&table))?;
            }
        }
        let mut bus = PortBus::new();
        let standard: [(u16, u16, Box<dyn crate::devices::PortDevice>); 5] = [
            (config.uart_base, UART_LEN, Box::new(Uart::new())),
            (abi::guest::EXIT_PORT, 1, Box::new(DebugExit)),
            (abi::guest::CONSOLE_PORT, 1, Box::new(DebugCon)),
            (abi::guest::YIELD_PORT, 1, Box::new(YieldPort)),
            (abi::guest::POST_PORT, 1, Box::new(PostPort)),
        ];
        for (base, len, device) in standard {
            bus.insert(base, len, device)
                .map_err(|_| Error::Config("the UART overlaps a standard port"))?;
        }
        Ok(Self {
            vcpu,
            vm,
            state: State {
                bus,
                console: Console::new(&config.name, config.console_ring, sink),
                recorder: Recorder::new(config.record_limit),
                exits: ExitCounts::default(),
                uart_base: config.uart_base,
                stop_on_yield: config.stop_on_yield,
            },
            stop: Arc::new(AtomicBool::new(false)),
            name: config.name.clone(),
            vm_id: config.vm_id,
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

    /// Sets the vCPU's registers for `start`, on top of its reset state.
    pub fn start_at(&mut self, start: &Start) -> Result<(), Error> {
        let mut sregs = kvm("KVM_GET_SREGS", self.vcpu.get_sregs())?;
        let regs = start.apply(&mut sregs);
        kvm("KVM_SET_SREGS", self.vcpu.set_sregs(&sregs))?;
        kvm("KVM_SET_REGS", self.vcpu.set_regs(&regs))
    }

    fn with_ram<T>(
        &mut self,
        load: impl FnOnce(&GuestRam<'_>) -> Result<T, LoadError>,
    ) -> Result<T, Error> {
        let ram = self.vm.memory(0).ok_or(Error::Config("no RAM"))?;
        Ok(load(&ram)?)
    }

    /// Loads one of Mojito's test guests (`abi::guest`) and points the vCPU
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

    /// The vCPU, for requests the VMM makes directly (registers, MSRs).
    pub fn vcpu(&mut self) -> &mut V::Vcpu {
        &mut self.vcpu
    }

    /// A handle that stops [`Vm::run`] from elsewhere.
    pub fn stop_handle(&self) -> StopHandle<<V::Vcpu as api::Vcpu>::Kicker> {
        StopHandle {
            flag: self.stop.clone(),
            kicker: self.vcpu.kicker(),
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

    /// Exit counts so far.
    pub fn exits(&self) -> &ExitCounts {
        &self.state.exits
    }

    /// Runs the vCPU until the VM stops (or yields, or is asked to stop).
    pub fn run(&mut self) -> Outcome {
        let reason = loop {
            if self.stop.swap(false, Ordering::SeqCst) {
                break StopReason::Requested;
            }
            let exit = match self.vcpu.run() {
                Ok(page) => Exit::decode(page),
                // KVM_RUN interrupted (a kick, a signal, immediate_exit):
                // KVM's KVM_EXIT_INTR.
                Err(errno::EINTR) => Exit::Intr,
                Err(e) => break StopReason::RunFailed(e),
            };
            if let Next::Stop(reason) = self.state.handle(exit) {
                break reason;
            }
        };
        if !matches!(reason, StopReason::Yield | StopReason::Requested) {
            self.state.console.flush();
        }
        Outcome {
            reason,
            exits: self.state.exits.clone(),
        }
    }
}

impl State {
    fn handle(&mut self, exit: Exit<'_>) -> Next {
        match exit {
            Exit::IoIn {
                port,
                size,
                count: _,
                data,
            } => {
                self.exits.count(KVM_EXIT_IO);
                for element in data.chunks_exact_mut(usize::from(size)) {
                    self.bus.read(port, element);
                    self.recorder.push_io(false, port, size, element);
                }
                Next::Continue
            }
            Exit::IoOut {
                port,
                size,
                count: _,
                data,
            } => {
                self.exits.count(KVM_EXIT_IO);
                let mut next = Next::Continue;
                for element in data.chunks_exact(usize::from(size)) {
                    self.recorder.push_io(true, port, size, element);
                    match self.bus.write(port, element) {
                        Effect::None => {}
                        Effect::Output(b) => self.state_output(b),
                        Effect::Exit(status) => {
                            // The guest is gone: later elements of a REP
                            // OUTS are not performed.
                            return Next::Stop(StopReason::Exited(status));
                        }
                        Effect::Yield if self.stop_on_yield => next = Next::Stop(StopReason::Yield),
                        Effect::Yield => {}
                    }
                }
                next
            }
            Exit::MmioRead { addr, data } => {
                self.exits.count(KVM_EXIT_MMIO);
                *self.exits.mmio_reads.entry(addr).or_default() += 1;
                data.fill(0xff);
                self.recorder.push(ExitRecord::MmioRead {
                    addr,
                    len: data.len() as u8,
                    value: le_value(data),
                });
                Next::Continue
            }
            Exit::MmioWrite { addr, data } => {
                self.exits.count(KVM_EXIT_MMIO);
                *self.exits.mmio_writes.entry(addr).or_default() += 1;
                self.recorder.push(ExitRecord::MmioWrite {
                    addr,
                    len: data.len() as u8,
                    value: le_value(data),
                });
                Next::Continue
            }
            Exit::Hlt => {
                self.exits.count(KVM_EXIT_HLT);
                self.recorder.push(ExitRecord::Hlt);
                Next::Stop(StopReason::Halted)
            }
            Exit::Shutdown => {
                self.exits.count(KVM_EXIT_SHUTDOWN);
                self.recorder.push(ExitRecord::Shutdown);
                Next::Stop(StopReason::Shutdown)
            }
            Exit::FailEntry { reason, cpu } => {
                self.exits.count(KVM_EXIT_FAIL_ENTRY);
                self.recorder.push(ExitRecord::FailEntry { reason });
                Next::Stop(StopReason::FailEntry { reason, cpu })
            }
            Exit::InternalError {
                suberror,
                ndata,
                data,
            } => {
                self.exits.count(KVM_EXIT_INTERNAL_ERROR);
                self.recorder.push(ExitRecord::InternalError { suberror });
                let n = (ndata as usize).min(data.len());
                Next::Stop(StopReason::InternalError {
                    suberror,
                    data: data.get(..n).unwrap_or_default().to_vec(),
                })
            }
            Exit::Hypercall { nr, ret, .. } => {
                // Only what KVM_CAP_EXIT_HYPERCALL enabled reaches the VMM,
                // and the VMM implements none: answer as KVM answers an
                // unknown hypercall (DESIGN.md D1).
                self.exits.count(KVM_EXIT_HYPERCALL);
                self.recorder.push(ExitRecord::Hypercall { nr });
                *ret = (-i64::from(KVM_ENOSYS)) as u64;
                Next::Continue
            }
            Exit::Intr => {
                // Not recorded: it says when the VMM got its CPU back, not
                // what the guest did.
                self.exits.count(KVM_EXIT_INTR);
                Next::Continue
            }
            Exit::IrqWindowOpen => {
                self.exits.count(KVM_EXIT_IRQ_WINDOW_OPEN);
                self.recorder.push(ExitRecord::IrqWindowOpen);
                Next::Continue
            }
            Exit::Debug { exception, .. } => {
                self.exits.count(KVM_EXIT_DEBUG);
                self.recorder.push(ExitRecord::Debug { exception });
                Next::Stop(StopReason::Unhandled {
                    exit_reason: KVM_EXIT_DEBUG,
                })
            }
            Exit::SystemEvent { kind } => {
                self.exits.count(KVM_EXIT_SYSTEM_EVENT);
                self.recorder.push(ExitRecord::SystemEvent { kind });
                Next::Stop(StopReason::SystemEvent(kind))
            }
            Exit::RdMsr { index, error, .. } => {
                // Only MSRs a filter sends to user space get here; the VMM
                // emulates none of them: #GP, as KVM would.
                self.exits.count(KVM_EXIT_X86_RDMSR);
                self.recorder.push(ExitRecord::RdMsr { index });
                *error = 1;
                Next::Continue
            }
            Exit::WrMsr {
                index, data, error, ..
            } => {
                self.exits.count(KVM_EXIT_X86_WRMSR);
                self.recorder.push(ExitRecord::WrMsr { index, value: data });
                *error = 1;
                Next::Continue
            }
            Exit::Other(exit_reason) => {
                self.exits.count(exit_reason);
                self.recorder.push(ExitRecord::Other { exit_reason });
                Next::Stop(StopReason::Unhandled { exit_reason })
            }
            Exit::Malformed { exit_reason, what } => {
                self.exits.count(exit_reason);
                self.recorder.push(ExitRecord::Other { exit_reason });
                Next::Stop(StopReason::Malformed { exit_reason, what })
            }
        }
    }

    fn state_output(&mut self, byte: u8) {
        self.console.push(byte);
    }
}

/// Up to 8 bytes, little-endian, as a number.
fn le_value(data: &[u8]) -> u64 {
    let mut v = [0; 8];
    for (d, s) in v.iter_mut().zip(data) {
        *d = *s;
    }
    u64::from_le_bytes(v)
}
