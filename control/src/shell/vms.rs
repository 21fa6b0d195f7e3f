//! The VMs the operator manages: their table, their lifecycle (created →
//! running ⇄ paused → stopped; start, reset and destroy), and running them.
//!
//! The VMM does the work (`vmm::vm::Vm` on the Mojito back end,
//! `crate::mojito`, DESIGN.md D5): RAM and vCPU, the CPUID look, the
//! loaders, the devices and the exit stream. When a VM stops, its report
//! and, after `streams on`, its exit stream are printed (the differential
//! test reads them, `tests/src/differential.rs`) and it is closed at once, so its memory
//! goes back to the heap; its row stays, with the reason, its exit counts
//! and its output ring, until `destroy`.
//!
//! ```text
//! control: vm 4 (halt): created with 4 MiB of RAM
//! control: vm 4 (halt): stopped: halted (0 ticks)
//! control: vm 4 (halt): exit stream: 33 records, fnv1a 0x0123456789abcdef
//! control: stream halt: "halting\_with\_interrupts\_disabled\n" hlt
//! ```

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::kvm::KVM_EXIT_INTR;
use vmm::devices::console::Sink;
use vmm::record::{self, ExitRecord};
use vmm::vm::{Error, ExitCounts, Outcome, StopReason, Vm, VmConfig};

use super::parse::Create;
use crate::hv;
use crate::mojito::{Mojito, MojitoVm};
use crate::println;

/// At most this many VMs exist at once (the hypervisor allows 64).
pub const MAX_VMS: usize = 32;

/// A guest that lets this many timer ticks pass in a row without a single
/// exit to us is stopped: it would otherwise keep its CPU forever. Exits the
/// hypervisor handles itself (CPUID, MSRs) do not reach us, so a guest busy
/// with those looks the same; under TCG without icount a tick is only
/// ~20 ms of host time, and 4 ticks once killed the demo in its CPUID
/// benchmark on a loaded machine (that benchmark takes about one tick
/// there). Under icount a tick is ~3 s of host time, so more is costly.
const MAX_TICKS_IN_A_ROW: u32 = 10;
/// The least RAM a Linux guest is given.
const LINUX_MEM_MIN: u64 = 128 << 20;

/// A stream is printed record by record up to this many bytes of tokens
/// (all of today's test guests fit; serial output costs ~100 µs a character
/// under Bochs).
const STREAM_PRINT_MAX: usize = 8 * 1024;
/// Tokens per `control: stream` line, at most this many bytes (a longer
/// token has a line to itself).
const STREAM_LINE_MAX: usize = 100;

/// Guests whose exits are not recorded: the bench guest's forwarded round
/// trips measure the VMM's dispatch, not the recorder, and `hostile`'s
/// exit flood is its point, and `pvclock`'s polling of the PIT for a
/// second and `lapic`'s and `smp`'s for 50 ms make their exit counts
/// measurements, and `smp`'s two vCPUs interleave their exits as the
/// timing falls (test instrumentation for the differential test, which
/// leaves all five out).
const UNRECORDED: [&str; 5] = ["bench", "hostile", "pvclock", "lapic", "smp"];

// The parser (which the fuzz crate includes without the VMM) keeps its own
// copy of the VMM's limit.
const _: () = assert!(super::parse::MAX_CPUS == vmm::vm::MAX_VCPUS);

/// Whether a guest's console is attached: then no VM's lines are printed
/// (they wait in their rings).
pub static ATTACHED: AtomicBool = AtomicBool::new(false);

/// A guest's finished console lines go to COM1 as `[NAME] line` (D10),
/// unless a console is attached.
struct Serial;

impl Sink for Serial {
    fn line(&mut self, name: &str, line: &str) {
        if !ATTACHED.load(Ordering::Relaxed) {
            println!("[{name}] {line}");
        }
    }
}

/// Where a VM is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Paused,
    /// Why it stopped, in words.
    Stopped(String),
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Created => f.write_str("created"),
            Self::Running => f.write_str("running"),
            Self::Paused => f.write_str("paused"),
            Self::Stopped(why) => write!(f, "stopped: {why}"),
        }
    }
}

/// One VM of the table.
pub struct Entry {
    pub id: u32,
    pub spec: Create,
    /// Its vCPUs (`cpus=`, or the guest's own count).
    pub vcpus: u32,
    pub state: State,
    /// The VMM's VM while it lives (created, running, paused).
    pub vm: Option<Vm<MojitoVm>>,
    /// The exit counts and unclaimed-port counts of the last run, kept
    /// when the VM is closed.
    pub exits: ExitCounts,
    pub port_writes: BTreeMap<u16, u64>,
    pub port_reads: BTreeMap<u16, u64>,
    /// TSC cycles spent in RUN, and the TSC when it was last started.
    pub ran_tsc: u64,
    pub started_tsc: Option<u64>,
    /// The console's output, kept when the VM is closed (and how much of
    /// it the ring had dropped).
    pub kept_output: Vec<u8>,
    pub kept_lost: u64,
    /// Whether its lines are printed (`echo NAME on/off`).
    pub echo: bool,
    /// Whether it records its exits and prints the stream when it stops
    /// (`streams` when it was created).
    pub streams: bool,
}

impl Entry {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Exits so far, `KVM_EXIT_INTR` included.
    pub fn total_exits(&self) -> u64 {
        match &self.vm {
            Some(vm) => vm.exits().by_reason.values().sum(),
            None => self.exits.by_reason.values().sum(),
        }
    }

    /// Whether `wait` still waits for it.
    pub fn busy(&self) -> bool {
        matches!(self.state, State::Running | State::Paused)
    }
}

/// Reads the TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// What a kernel file is, by its first bytes.
fn kind(data: &[u8]) -> &'static str {
    const BZIMAGE_MAGIC_AT: usize = 0x202;
    if data.starts_with(b"\x7fELF") {
        if vmm::loader::multiboot::find_header(data).is_ok() {
            return "multiboot";
        }
        if data.windows(4).any(|w| w == b"Xen\0") && data.windows(6).any(|w| w == b"Linux\0") {
            return "vmlinux";
        }
        return "elf";
    }
    if data.get(BZIMAGE_MAGIC_AT..BZIMAGE_MAGIC_AT + 4) == Some(b"HdrS") {
        return "bzImage";
    }
    if vmm::loader::multiboot::find_header(data).is_ok() {
        return "multiboot";
    }
    "unknown"
}

/// Makes the VMM's VM for `spec` from the bundle's files, recording its
/// exit stream if `record` (`streams on`); `Err` says why not, in words.
pub fn make(
    id: u32,
    spec: &Create,
    bundle: &abi::bundle::Bundle<'static>,
    record: bool,
) -> Result<Vm<MojitoVm>, String> {
    use alloc::format;
    let file = |path: &str| {
        bundle
            .get(path)
            .map(|f| f.data)
            .ok_or_else(|| format!("no file {path} in the boot bundle (ls lists them)"))
    };
    let kernel = file(&spec.kernel)?;
    let initrd = spec.initrd.as_deref().map(file).transpose()?;
    let kind = kind(kernel);
    match kind {
        "vmlinux" | "bzImage" if spec.mem < LINUX_MEM_MIN => {
            return Err(format!(
                "{} is Linux: give it mem=128M or more",
                spec.kernel
            ));
        }
        "unknown" => {
            return Err(format!(
                "{} is neither an ELF test guest, a multiboot kernel nor Linux",
                spec.kernel
            ));
        }
        "elf" | "multiboot" if spec.disk.is_some() => {
            return Err("disk= is for Linux guests (virtio-blk)".into());
        }
        "elf" if initrd.is_some() || spec.cmdline.is_some() => {
            return Err("an ELF test guest takes no initrd= or cmdline=".into());
        }
        "multiboot" if spec.cpus.is_some_and(|n| n > 1) => {
            return Err(format!(
                "cpus={}: a multiboot kernel gets one vCPU (the VMM gives it no MADT to find \
                 APs by)",
                spec.cpus.unwrap_or(1)
            ));
        }
        _ => {}
    }
    let name = spec.name.as_str();
    // What the guest program wants (the split irqchip, its vCPUs) goes by
    // its file (`guests/smp.elf` is `smp`), whatever the VM is called.
    let guest = spec
        .kernel
        .rsplit('/')
        .next()
        .and_then(|f| f.split('.').next())
        .unwrap_or(name);
    let linux = matches!(kind, "vmlinux" | "bzImage");
    let defaults = if linux {
        // The PC platform (ACPI, IOAPIC, PM), the kernel's local APICs
        // and kvmclock; none of the test guests' ports and MSRs.
        VmConfig {
            name: name.into(),
            ..VmConfig::linux(guest, 1).ram(spec.mem)
        }
    } else {
        VmConfig {
            name: name.into(),
            ..VmConfig::new(guest).mojito_look().ram(spec.mem)
        }
    };
    // `cpus=` overrides a test guest's own count; several vCPUs need the
    // kernel's local APIC (their APs start by INIT and SIPI).
    let vcpus = if kind == "multiboot" {
        1
    } else {
        spec.cpus.unwrap_or(defaults.vcpus)
    };
    let config = VmConfig {
        vcpus,
        split_irqchip: defaults.split_irqchip || vcpus > 1,
        record_limit: if record && !UNRECORDED.contains(&guest) {
            defaults.record_limit
        } else {
            0
        },
        vm_id: id,
        stop_on_yield: true,
        stop_on_intr: true,
        // Linux may compute for seconds with its timer and HLT in the
        // hypervisor and no exit to the VMM.
        max_intrs_in_a_row: if linux { 0 } else { MAX_TICKS_IN_A_ROW },
        ..defaults
    };
    let mut vm = Vm::create(&Mojito, &config, Box::new(Serial)).map_err(|e| say(&e))?;
    let loaded = if linux {
        if let Some(path) = &spec.disk {
            let data = file(path)?;
            let mut disk = Vec::new();
            disk.try_reserve_exact(data.len())
                .map_err(|_| format!("{path}: no memory for a copy of the disk"))?;
            disk.extend_from_slice(data);
            vm.attach_disk(disk).map_err(|e| say(&e))?;
        }
        vm.load_linux(kernel, initrd, spec.cmdline.as_deref().unwrap_or(""))
    } else if kind == "multiboot" {
        let modules: Vec<vmm::loader::multiboot::Module<'_>> = initrd
            .map(|data| vmm::loader::multiboot::Module {
                data,
                cmdline: spec.initrd.as_deref().unwrap_or(""),
            })
            .into_iter()
            .collect();
        vm.load_multiboot(kernel, spec.cmdline.as_deref().unwrap_or(""), &modules)
    } else {
        vm.load_test_guest(kernel)
    };
    loaded.map_err(|e| say(&e))?;
    Ok(vm)
}

fn say(e: &Error) -> String {
    match e {
        Error::Kvm { errno, .. } if *errno == abi::kvm::errno::ENOMEM => {
            alloc::format!("{e} (not enough free memory; list shows who has it)")
        }
        _ => alloc::format!("{e}"),
    }
}

/// Prints why VM `n` stopped; returns the reason in words for `list`.
pub fn report(n: u32, name: &str, outcome: &Outcome) -> String {
    use alloc::format;
    let ticks = outcome.exits.get(KVM_EXIT_INTR);
    let (line, short) = match outcome.reason {
        StopReason::Exited(status) => (
            format!("exited with status {status} ({ticks} ticks in all)"),
            format!("exited with status {status}"),
        ),
        StopReason::NoExit { intrs } => (
            format!("killed after timer ticks without an exit: {intrs} ({ticks} ticks in all)"),
            "killed: no exit for too long".into(),
        ),
        StopReason::Halted => (format!("halted ({ticks} ticks)"), "halted".into()),
        StopReason::Shutdown => (
            format!("triple fault ({ticks} ticks)"),
            "triple fault".into(),
        ),
        StopReason::RunFailed(e) => {
            let s = format!("KVM_RUN failed ({e:#x})");
            (s.clone(), s)
        }
        StopReason::FailEntry { reason, .. } => {
            let s = format!("VM entry failed ({reason:#x})");
            (s.clone(), s)
        }
        StopReason::InternalError { suberror, .. } => {
            let short = format!("internal error ({suberror:#x})");
            match outcome.reason.failed_instruction() {
                Some(bytes) => {
                    let mut hex = String::new();
                    for b in &bytes {
                        let _ = core::fmt::Write::write_fmt(&mut hex, format_args!(" {b:02x}"));
                    }
                    (format!("{short}, cannot emulate:{hex}"), short)
                }
                None => (short.clone(), short),
            }
        }
        StopReason::Unhandled { exit_reason } => {
            let s = format!("unexpected exit ({exit_reason:#x})");
            (s.clone(), s)
        }
        ref other => {
            let s = format!("{other}");
            (s.clone(), s)
        }
    };
    println!("control: vm {n} ({name}): stopped: {line}");
    short
}

/// Prints VM `name`'s exit stream: its length and FNV-1a, and where it is
/// short enough the records in `vmm::record`'s compact form (for the
/// differential test against Linux KVM).
pub fn print_stream(n: u32, name: &str, records: &[ExitRecord], dropped: u64) {
    let hash = record::fnv1a(records);
    let count = records.len();
    if dropped > 0 {
        println!(
            "control: vm {n} ({name}): exit stream: {count} records ({dropped} more not kept), \
             fnv1a {hash:#018x}"
        );
        return;
    }
    println!("control: vm {n} ({name}): exit stream: {count} records, fnv1a {hash:#018x}");
    let tokens = record::compact(records);
    if tokens.iter().map(|t| t.len() + 1).sum::<usize>() > STREAM_PRINT_MAX {
        return;
    }
    let mut line = String::new();
    for t in &tokens {
        if !line.is_empty() && line.len() + 1 + t.len() > STREAM_LINE_MAX {
            println!("control: stream {name}: {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(t);
    }
    if !line.is_empty() {
        println!("control: stream {name}: {line}");
    }
}

/// What a Linux guest left on its virtio disk: the request count and the
/// text at the start of the first sectors (up to the first NUL or line
/// end, at most 64 bytes), so an operator (and the Linux test) can see it.
fn print_disk(n: u32, name: &str, disk: &[u8], requests: u64) {
    const SECTORS: usize = 2;
    const SHOWN: usize = 64;
    let mut line = alloc::format!("control: vm {n} ({name}): disk: {requests} requests");
    for (i, sector) in disk.chunks(512).take(SECTORS).enumerate() {
        let text: String = sector
            .iter()
            .take(SHOWN)
            .take_while(|&&b| b != 0 && b != b'\n')
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("; sector {i}: \"{text}\""));
    }
    println!("{line}");
}

/// Closes a VM's VMM side, keeping its counts and output in the entry.
pub fn close(e: &mut Entry) {
    let Some(mut vm) = e.vm.take() else {
        return;
    };
    e.exits = vm.exits().clone();
    if let Some((disk, requests)) = vm.disk() {
        print_disk(e.id, &e.spec.name, disk, requests);
    }
    e.port_writes = vm.bus().unknown_writes().clone();
    e.port_reads = vm.bus().unknown_reads().clone();
    let (out, lost) = vm.console().since(0);
    e.kept_output = out;
    e.kept_lost = lost;
    // Dropping the VM closes it (MOJITO_CLOSE): the hypervisor frees what
    // it held and logs its exits; its RAM returns to our heap.
    drop(vm);
    hv::echo_log();
}

/// A VM stopped with `outcome`: report, close, and print its exit stream
/// if it records one.
pub fn stopped(e: &mut Entry, outcome: &Outcome) {
    hv::echo_log();
    let why = report(e.id, e.name(), outcome);
    let (records, dropped) = match e.vm.as_mut() {
        Some(vm) => (vm.take_records(), vm.records_dropped()),
        None => (Vec::new(), 0),
    };
    close(e);
    e.state = State::Stopped(why);
    if e.streams {
        print_stream(e.id, &e.spec.name, &records, dropped);
    }
}
