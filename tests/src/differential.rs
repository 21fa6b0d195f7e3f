//! The differential test (issue 3, item 7; DESIGN.md D5): the exit stream
//! the control domain's VMM recorded for each test guest in a Mojito boot,
//! read back from the serial log, against the stream the same VMM records
//! for the same guest ELF on Linux `/dev/kvm` (`vmm::host`), with the same
//! configuration (Mojito's look, 4 MiB, the same VM id).
//!
//! Both streams are what reached the VMM, so they must be equal record for
//! record — the host's after `vmm::record::comparable` removes what Mojito
//! handles in the hypervisor by design. Every difference that is known and
//! accepted is in [`DIVERGENCES`], with its reason; one that is not listed
//! fails the boot test, and so does a listed one that no longer occurs (so
//! the table cannot rot). Where `/dev/kvm` cannot be opened the comparison
//! is skipped, and the report says so.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use vmm::devices::console::Sink;
use vmm::host::{HostKvm, HostVm};
use vmm::record::{self, ExitRecord};
use vmm::vm::{StopReason, Vm, VmConfig};

/// RAM of each test guest, as the control domain gives it
/// (`control/src/vm.rs`).
const GUEST_RAM: u64 = 4 << 20;

/// How long a guest may run on the host before it is stopped (the `spin`
/// guest always takes this long: it never exits).
const HOST_LIMIT: Duration = Duration::from_secs(15);

/// One VM's exit stream as the control domain printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Printed {
    /// The VM's number (its id: EBX of a test guest).
    pub n: u32,
    pub name: String,
    pub count: usize,
    /// Records the control domain's recorder did not keep.
    pub dropped: u64,
    pub fnv1a: u64,
    /// The records, where the stream was short enough to print.
    pub records: Option<Vec<ExitRecord>>,
}

fn lines(serial: &str) -> impl Iterator<Item = &str> {
    serial
        .lines()
        .map(|l| l.trim_start_matches('\0').trim_end_matches(['\r', '\n']))
}

/// `N (NAME): exit stream: K records[ (D more not kept)], fnv1a 0xH`.
fn header(rest: &str) -> Option<(u32, &str, usize, u64, u64)> {
    let (n, rest) = rest.split_once(" (")?;
    let (name, rest) = rest.split_once("): exit stream: ")?;
    let (count, rest) = rest.split_once(" records")?;
    let (dropped, hash) = match rest.strip_prefix(" (") {
        Some(r) => {
            let (d, h) = r.split_once(" more not kept), fnv1a 0x")?;
            (d.parse().ok()?, h)
        }
        None => (0, rest.strip_prefix(", fnv1a 0x")?),
    };
    Some((
        n.parse().ok()?,
        name,
        count.parse().ok()?,
        dropped,
        u64::from_str_radix(hash, 16).ok()?,
    ))
}

/// The streams a Mojito boot's serial log holds, in the order they were
/// printed, each checked against its own count and hash.
pub fn printed_streams(serial: &str) -> Result<Vec<Printed>, String> {
    let mut tokens: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut heads = Vec::new();
    for line in lines(serial) {
        if let Some(rest) = line.strip_prefix("control: stream ") {
            let (name, toks) = rest
                .split_once(": ")
                .ok_or_else(|| format!("a stream line without a name: {line:?}"))?;
            tokens
                .entry(name)
                .or_default()
                .extend(toks.split_whitespace());
        } else if let Some(rest) = line.strip_prefix("control: vm ")
            && rest.contains("): exit stream: ")
        {
            heads.push(header(rest).ok_or_else(|| format!("a garbled stream line: {line:?}"))?);
        }
    }
    heads
        .into_iter()
        .map(|(n, name, count, dropped, fnv1a)| {
            let records = match tokens.get(name) {
                None => None,
                Some(t) => {
                    let r = record::parse_compact(t.iter().copied())
                        .map_err(|e| format!("{name}: the printed stream: {e}"))?;
                    if r.len() != count || record::fnv1a(&r) != fnv1a {
                        return Err(format!(
                            "{name}: the printed records ({}, fnv1a {:#x}) do not match their \
                             header ({count}, {fnv1a:#x})",
                            r.len(),
                            record::fnv1a(&r)
                        ));
                    }
                    Some(r)
                }
            };
            Ok(Printed {
                n,
                name: name.to_owned(),
                count,
                dropped,
                fnv1a,
                records,
            })
        })
        .collect()
}

/// Which host KVM a divergence is known on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// `kvm-pvm` (`/sys/module/kvm_pvm`), the development machines' software
    /// KVM: it runs CPL-0 guest code in KVM's instruction emulator
    /// (`vmm/tests/host_kvm.rs` describes it).
    KvmPvm,
    /// Any other KVM (hardware virtualization). Not available here, so these
    /// entries are expectations, not observations.
    Other,
}

impl HostKind {
    fn detect() -> Self {
        if std::path::Path::new("/sys/module/kvm_pvm").exists() {
            Self::KvmPvm
        } else {
            Self::Other
        }
    }
}

/// How the two streams differ.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// The host's KVM stops the guest with `KVM_EXIT_INTERNAL_ERROR`
    /// (emulation failure) at an instruction starting with these bytes;
    /// everything before it is equal, and Mojito's stream goes on.
    HostStopsAt(&'static [u8]),
    /// The rest of the console line that starts with this text depends on
    /// the machine (the CPU's name, a measured time): it is compared only as
    /// "present on both sides", and must differ.
    ConsoleLine(&'static str),
    /// The host's KVM never ends a RUN with `KVM_EXIT_IRQ_WINDOW_OPEN`
    /// (though the VMM asks for the window): the streams are equal up to
    /// Mojito's first such exit, and the host's has none.
    HostWithoutIrqWindow,
    /// The host's KVM single-steps differently: the streams are equal up
    /// to the first place they part, which must be a `KVM_EXIT_DEBUG`
    /// record on one side.
    HostStepsDiffer,
    /// The values the guest reads from this port differ (the records are
    /// otherwise equal): compared with the values left out, and they must
    /// differ somewhere.
    InValues(u16),
    /// The host's KVM never returns from a `KVM_RUN` (the watchdog stops
    /// it) after the guest printed this line; the streams are equal up to
    /// the host's end, and Mojito's goes on.
    HostHangsAfter(&'static str),
}

/// A known, accepted difference between Mojito's stream and host KVM's.
#[derive(Clone, Copy, Debug)]
pub struct Divergence {
    /// Bundle names of the guests it concerns.
    pub guests: &'static [&'static str],
    pub host: HostKind,
    pub kind: Kind,
    pub why: &'static str,
}

/// XGETBV (0F 01 D0): KVM's instruction emulator implements XSETBV but not
/// XGETBV (its group-7 table has no entry for it).
const XGETBV: &[u8] = &[0x0f, 0x01, 0xd0];

/// Guests whose streams are not compared at all, with the reason.
pub const NOT_COMPARED: &[(&str, &str)] = &[
    (
        "bench",
        "its loops run until a measured number of TSC ticks has passed, so its number of exits \
         is itself a measurement (the control domain does not record its exits)",
    ),
    (
        "hostile",
        "its point is a flood of 40,000 exits and instructions a guest must not get away with; \
         it checks each outcome itself (the control domain does not record its exits)",
    ),
    (
        "hostio",
        "a REP INS into an unmapped buffer: host KVM reads elements from the port before it \
         finds the destination unmapped (17 IN exits before the #PF), Mojito checks the \
         destination first and reads none (hardware reads one); the faults and the registers \
         they leave agree, which the guest checks itself. Its first 135,170 records are equal",
    ),
    (
        "inshole",
        "a REP INS from RAM into a guest-physical hole: Mojito stops the VM with \
         KVM_INTERNAL_ERROR_EMULATION once the destination is no RAM, where KVM's emulator \
         finishes the stores into the hole as MMIO writes and the guest runs on (docs/api.md \
         §8); the boot tests check Mojito's ending exactly (expect::ENDINGS)",
    ),
    (
        "pvclock",
        "it polls the PIT until a second has passed, so its number of exits depends on how fast \
         the machine runs; it compares kvmclock with the PIT and the RTC itself (the control \
         domain does not record its exits)",
    ),
    (
        "lapic",
        "it polls the PIT for 50 ms while the periodic APIC timer interrupts it, so its number \
         of exits depends on how fast the machine runs; everything else it does (APIC \
         registers, timers, HLT) stays in the kernel under the split irqchip and never reaches \
         the VMM, but for one KVM_EXIT_IOAPIC_EOI; it checks the APIC itself, and \
         vmm/tests/host_kvm.rs runs it on host KVM (the control domain does not record its \
         exits)",
    ),
    (
        "smp",
        "its two vCPUs take turns on one CPU, so their exits interleave as the timing falls \
         (the hypervisor's 10 ms tick, the host back end's 1 ms kick), and it polls the PIT \
         (for INIT's 10 ms and the timers' 50 ms) a number of times that depends on how fast \
         the machine runs; it checks itself, and vmm/tests/host_kvm.rs runs it on host KVM \
         with two vCPUs (the control domain does not record its exits)",
    ),
];

/// Every accepted difference. Each listed one must occur on its host kind.
pub const DIVERGENCES: &[Divergence] = &[
    Divergence {
        guests: &["demo"],
        host: HostKind::KvmPvm,
        kind: Kind::ConsoleLine("cpuid: vendor "),
        why: "the demo prints the CPU's vendor and brand string: QEMU's EPYC or Bochs's \
              Skylake-X under Mojito, the host's own CPU under host KVM",
    },
    Divergence {
        guests: &["demo", "isolate1", "isolate2"],
        host: HostKind::KvmPvm,
        kind: Kind::HostStopsAt(XGETBV),
        why: "kvm-pvm emulates CPL-0 guest code, and KVM's emulator has no XGETBV \
              (the demo's XSAVE check and isolate's first check read XCR0)",
    },
    Divergence {
        guests: &["irq"],
        host: HostKind::KvmPvm,
        kind: Kind::HostWithoutIrqWindow,
        why: "kvm-pvm does not open the interrupt window a VMM asks for with \
              request_interrupt_window (no KVM_EXIT_IRQ_WINDOW_OPEN after the guest's STI), so \
              the irq guest's second interrupt comes too late and it fails there",
    },
    Divergence {
        guests: &["debug"],
        host: HostKind::KvmPvm,
        kind: Kind::HostStepsDiffer,
        why: "kvm-pvm reports fewer single-step KVM_EXIT_DEBUGs than KVM on hardware would \
              between the OUT that turns single-stepping on and the one that turns it off, so \
              the debug guest's count fails there",
    },
    Divergence {
        guests: &["xenner"],
        host: HostKind::KvmPvm,
        kind: Kind::InValues(abi::guest::MEMTEST_PORT),
        why: "host KVM lacks KVM_CAP_XEN_HVM: its VMM copies the hypercall page through its own \
              mapping, which KVM's dirty log does not see, so the log the guest reads is empty",
    },
    Divergence {
        guests: &["xenner"],
        host: HostKind::KvmPvm,
        kind: Kind::ConsoleLine("xen: dirty log after the copy: "),
        why: "the dirty log the guest reads (see the port's values)",
    },
    Divergence {
        guests: &["xenner"],
        host: HostKind::KvmPvm,
        kind: Kind::HostHangsAfter(
            "xen: #GP for a page past the blob, a GPA outside RAM and a read-only one\n",
        ),
        why: "kvm-pvm never returns from a VMCALL in emulated guest kernel code (the xenner \
              guest's hypercall stub, its last step; the demo stops at XGETBV before its own \
              hypercall check), so the watchdog stops it there",
    },
    Divergence {
        guests: &["demo"],
        host: HostKind::Other,
        kind: Kind::ConsoleLine("cpuid: vendor "),
        why: "the demo prints the CPU's vendor and brand string",
    },
];

/// A stream element after masking machine-dependent console text.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Record(ExitRecord),
    /// The rest of a console line starting with `prefix`, left out.
    Masked(&'static str),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Record(r) => write!(f, "{r}"),
            Self::Masked(p) => write!(f, "(the rest of the line \"{p}...\")"),
        }
    }
}

fn console_byte(r: &ExitRecord) -> Option<u8> {
    match *r {
        ExitRecord::IoOut {
            port: abi::guest::CONSOLE_PORT,
            size: 1,
            value,
        } => Some(value as u8),
        _ => None,
    }
}

/// `stream` with the text after each of `prefixes` up to its line's end
/// replaced by one [`Item::Masked`]; also the masked texts by prefix.
fn mask(
    stream: &[ExitRecord],
    prefixes: &[&'static str],
) -> (Vec<Item>, HashMap<&'static str, String>) {
    let mut out = Vec::new();
    let mut texts = HashMap::new();
    let mut line = Vec::new();
    let mut masking: Option<&'static str> = None;
    for r in stream {
        let Some(b) = console_byte(r) else {
            out.push(Item::Record(*r));
            continue;
        };
        if b == b'\n' {
            line.clear();
            masking = None;
            out.push(Item::Record(*r));
            continue;
        }
        line.push(b);
        if let Some(p) = masking {
            texts
                .entry(p)
                .or_insert_with(String::new)
                .push(char::from(b));
            continue;
        }
        out.push(Item::Record(*r));
        if let Some(p) = prefixes.iter().find(|p| p.as_bytes() == line.as_slice()) {
            masking = Some(p);
            texts.insert(*p, String::new());
            out.push(Item::Masked(p));
        }
    }
    (out, texts)
}

/// What the host's run of one guest left.
#[derive(Clone, Debug)]
pub struct HostRun {
    /// `None` when even the stop request did not end `KVM_RUN`.
    pub reason: Option<StopReason>,
    pub records: Vec<ExitRecord>,
    /// Whether it had to be stopped from outside.
    pub stopped_from_outside: bool,
}

impl HostRun {
    /// How the host run ended, in words.
    fn describe(&self) -> String {
        let how = match &self.reason {
            Some(r) => format!("stopped: {r}"),
            None => "KVM_RUN never returned".into(),
        };
        if self.stopped_from_outside {
            format!(
                "{how}, after {} s without stopping by itself",
                HOST_LIMIT.as_secs()
            )
        } else {
            how
        }
    }
}

#[derive(Clone, Default)]
struct Quiet;

impl Sink for Quiet {
    fn line(&mut self, _name: &str, _line: &str) {}
}

/// Runs test guest `elf` as VM `n` named `name` on `/dev/kvm`, as the
/// control domain configures it, on a thread of its own, stopped after
/// `limit`.
fn run_on_host(name: &str, n: u32, elf: Vec<u8>, limit: Duration) -> Result<HostRun, String> {
    let config = VmConfig {
        vm_id: n,
        ..VmConfig::new(name).mojito_look().ram(GUEST_RAM)
    };
    let (handle_tx, handle_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let what = name.to_owned();
    std::thread::spawn(move || {
        let made = HostKvm::open()
            .map_err(|e| format!("/dev/kvm: {e}"))
            .and_then(|kvm| {
                Vm::create(&kvm, &config, Box::new(Quiet)).map_err(|e| format!("{what}: {e}"))
            })
            .and_then(|mut vm: Vm<HostVm>| {
                vm.load_test_guest(&elf)
                    .map_err(|e| format!("{what}: loading: {e}"))?;
                Ok(vm)
            });
        let mut vm = match made {
            Ok(vm) => vm,
            Err(e) => {
                let _ = handle_tx.send(Err(e));
                return;
            }
        };
        let _ = handle_tx.send(Ok(vm.stop_handle()));
        let outcome = vm.run();
        let _ = done_tx.send((outcome.reason, vm.take_records()));
    });
    let handle = handle_rx
        .recv()
        .map_err(|_| format!("{name}: the host VM's thread died"))??;
    let (result, stopped_from_outside) = match done_rx.recv_timeout(limit) {
        Ok(r) => (Some(r), false),
        Err(_) => {
            handle.stop();
            (done_rx.recv_timeout(Duration::from_secs(5)).ok(), true)
        }
    };
    Ok(match result {
        Some((reason, records)) => HostRun {
            reason: Some(reason),
            records,
            stopped_from_outside,
        },
        None => HostRun {
            reason: None,
            records: Vec::new(),
            stopped_from_outside,
        },
    })
}

/// The guest ELF files of the default bundle, by bundle name (the same
/// mapping the images are made with, `xtask::image::default_bundle`).
fn bundle_guests() -> Result<HashMap<String, PathBuf>, String> {
    let ws = xtask::Workspace::locate();
    let out = ws.target.join(xtask::artifacts::TARGET).join("release");
    let artifacts = xtask::artifacts::Artifacts {
        hypervisor: out.join("hypervisor"),
        control: out.join("control"),
        guests: xtask::artifacts::GUESTS
            .iter()
            .map(|g| (*g, out.join(g)))
            .collect(),
    };
    let bundle = xtask::image::default_bundle(&artifacts).map_err(|e| format!("{e:#}"))?;
    Ok(bundle
        .into_iter()
        .filter_map(|e| {
            let name = e.name.strip_prefix("guests/")?.strip_suffix(".elf")?;
            Some((name.to_owned(), e.path))
        })
        .collect())
}

/// Host runs, by (bundle name, VM number), made once per test binary and
/// shared by every boot that compares against them.
type HostRuns = HashMap<(String, u32), Result<HostRun, String>>;

fn host_runs(wanted: &[(String, u32)]) -> Result<HostRuns, String> {
    static CACHE: OnceLock<Mutex<HostRuns>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| "a host run panicked".to_owned())?;
    let missing: Vec<&(String, u32)> = wanted.iter().filter(|k| !cache.contains_key(k)).collect();
    if !missing.is_empty() {
        let elves = bundle_guests()?;
        let runs: Vec<_> = missing
            .into_iter()
            .map(|(name, n)| {
                let key = (name.clone(), *n);
                let elf = elves
                    .get(name)
                    .ok_or_else(|| format!("{name}: not a guest of the default bundle"))
                    .and_then(|p| {
                        std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
                    });
                let (name, n) = (name.clone(), *n);
                (
                    key,
                    std::thread::spawn(move || run_on_host(&name, n, elf?, HOST_LIMIT)),
                )
            })
            .collect();
        for (key, thread) in runs {
            let run = thread
                .join()
                .unwrap_or_else(|_| Err(format!("{}: the host run panicked", key.0)));
            cache.insert(key, run);
        }
    }
    Ok(cache.clone())
}

/// The verdict on one guest's streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Equal,
    /// Equal but for listed divergences (their reasons).
    Known(Vec<String>),
}

/// A few items around index `at` of both streams, for a report.
fn context(mojito: &[Item], host: &[Item], at: usize) -> String {
    let from = at.saturating_sub(3);
    let show = |s: &[Item]| {
        (from..(at + 3).min(s.len()))
            .map(|i| format!("    {}{i}: {}\n", if i == at { ">" } else { " " }, s[i]))
            .collect::<String>()
    };
    format!(
        "Mojito ({} items):\n{}host KVM ({} items):\n{}",
        mojito.len(),
        show(mojito),
        host.len(),
        show(host)
    )
}

/// Compares one guest's streams under the divergences listed for it.
fn compare(p: &Printed, host: &HostRun, listed: &[&'static Divergence]) -> Result<Verdict, String> {
    let name = &p.name;
    let Some(mojito) = &p.records else {
        // Only the hash was printed: it must match outright.
        if !listed.is_empty() {
            return Err(format!(
                "{name}: the stream was too long to print, so its listed divergences cannot be \
                 checked"
            ));
        }
        let h = record::comparable(&host.records);
        return if h.len() == p.count && record::fnv1a(&h) == p.fnv1a {
            Ok(Verdict::Equal)
        } else {
            Err(format!(
                "{name}: {} records, fnv1a {:#x} under Mojito; {} records, fnv1a {:#x} under \
                 host KVM ({})",
                p.count,
                p.fnv1a,
                h.len(),
                record::fnv1a(&h),
                host.describe()
            ))
        };
    };
    let prefixes: Vec<&'static str> = listed
        .iter()
        .filter_map(|d| match d.kind {
            Kind::ConsoleLine(prefix) => Some(prefix),
            _ => None,
        })
        .collect();
    let (mut m, m_texts) = mask(mojito, &prefixes);
    let (mut h, h_texts) = mask(&record::comparable(&host.records), &prefixes);
    let mut known = Vec::new();
    let mut stop = None;
    // Both streams compared only up to here.
    let mut cut = None;
    for d in listed {
        match d.kind {
            Kind::ConsoleLine(prefix) => match (m_texts.get(prefix), h_texts.get(prefix)) {
                (Some(a), Some(b)) if a != b => known.push(format!(
                    "\"{prefix}...\" differs ({a:?} / {b:?}): {}",
                    d.why
                )),
                (a, b) => {
                    return Err(format!(
                        "{name}: listed divergence did not occur: the line \"{prefix}...\" is \
                         {a:?} under Mojito and {b:?} under host KVM ({}); remove it from \
                         DIVERGENCES if that is now right",
                        d.why
                    ));
                }
            },
            Kind::InValues(port) => {
                let values = |s: &mut Vec<Item>| {
                    let mut v = Vec::new();
                    for item in s.iter_mut() {
                        if let Item::Record(ExitRecord::IoIn { port: p, value, .. }) = item
                            && *p == port
                        {
                            v.push(*value);
                            *value = 0;
                        }
                    }
                    v
                };
                let (a, b) = (values(&mut m), values(&mut h));
                if a == b {
                    return Err(format!(
                        "{name}: listed divergence did not occur: the values read from port \
                         {port:#x} are the same under Mojito and host KVM ({}); remove it from \
                         DIVERGENCES if that is now right",
                        d.why
                    ));
                }
                known.push(format!("values read from port {port:#x} differ: {}", d.why));
            }
            Kind::HostStopsAt(insn) => {
                let at = host
                    .reason
                    .as_ref()
                    .and_then(StopReason::failed_instruction);
                if !at.as_deref().is_some_and(|i| i.starts_with(insn))
                    || !matches!(
                        h.last(),
                        Some(Item::Record(ExitRecord::InternalError { .. }))
                    )
                {
                    return Err(format!(
                        "{name}: listed divergence did not occur: host KVM was to stop at \
                         {insn:02x?} ({}), but {}; remove it from DIVERGENCES if that is now \
                         right",
                        d.why,
                        host.describe()
                    ));
                }
                h.pop();
                if m.len() <= h.len() {
                    return Err(format!(
                        "{name}: host KVM stopped at {insn:02x?} after {} items, but Mojito's \
                         stream has only {}",
                        h.len(),
                        m.len()
                    ));
                }
                stop = Some(h.len());
                known.push(format!(
                    "host KVM stops at {insn:02x?} after {} equal records: {}",
                    h.len(),
                    d.why
                ));
            }
            Kind::HostHangsAfter(line) => {
                let printed: printed_text::Text = host.records.iter().collect();
                if !host.stopped_from_outside || !printed.0.contains(line) {
                    return Err(format!(
                        "{name}: listed divergence did not occur: host KVM was to hang after \
                         {line:?} ({}), but {}; remove it from DIVERGENCES if that is now right",
                        d.why,
                        host.describe()
                    ));
                }
                if m.len() <= h.len() {
                    return Err(format!(
                        "{name}: host KVM hung after {} items, but Mojito's stream has only {}",
                        h.len(),
                        m.len()
                    ));
                }
                stop = Some(h.len());
                known.push(format!(
                    "host KVM hung after {} equal records: {}",
                    h.len(),
                    d.why
                ));
            }
            Kind::HostStepsDiffer => {
                let debug =
                    |i: Option<&Item>| matches!(i, Some(Item::Record(ExitRecord::Debug { .. })));
                match record_difference(&m, &h) {
                    Some(n) if debug(m.get(n)) || debug(h.get(n)) => {
                        cut = Some(n);
                        known.push(format!(
                            "the single-step records part after {n} equal records: {}",
                            d.why
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{name}: listed divergence did not occur: the streams were to part at \
                             a KVM_EXIT_DEBUG record ({}), but {}; remove it from DIVERGENCES if \
                             that is now right",
                            d.why,
                            host.describe()
                        ));
                    }
                }
            }
            Kind::HostWithoutIrqWindow => {
                let window = |i: &Item| matches!(i, Item::Record(ExitRecord::IrqWindowOpen));
                match m.iter().position(window) {
                    Some(n) if !h.iter().any(window) && h.len() >= n => {
                        cut = Some(n);
                        known.push(format!(
                            "host KVM has no KVM_EXIT_IRQ_WINDOW_OPEN; the first {n} records are \
                             equal: {}",
                            d.why
                        ));
                    }
                    // kvm-pvm opens the window now and then, and the
                    // guest may fail all the same (its second interrupt
                    // still too late: seen in loaded runs): then the
                    // streams must be equal up to and with the window.
                    Some(n)
                        if h.iter().any(window)
                            && host.reason != Some(StopReason::Exited(0))
                            && h.len() > n =>
                    {
                        cut = Some(n + 1);
                        known.push(format!(
                            "host KVM opened the interrupt window this time, but its guest \
                             failed after it; the first {} records are equal: {}",
                            n + 1,
                            d.why
                        ));
                    }
                    // kvm-pvm opens the window now and then (seen once in
                    // a loaded run): then the whole streams must be equal.
                    Some(_) if h.iter().any(window) => {
                        known.push(format!(
                            "host KVM opened the interrupt window this time (it usually does \
                             not: {}), and the streams are compared whole",
                            d.why
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{name}: listed divergence did not occur: host KVM was to have no \
                             KVM_EXIT_IRQ_WINDOW_OPEN ({}), but {}; remove it from DIVERGENCES \
                             if that is now right",
                            d.why,
                            host.describe()
                        ));
                    }
                }
            }
        }
    }
    let m_cmp = stop.map_or(&m[..], |n| &m[..n]);
    let (m_cmp, h_cmp) = match cut {
        Some(n) => (&m_cmp[..n.min(m_cmp.len())], &h[..n.min(h.len())]),
        None => (m_cmp, &h[..]),
    };
    if let Some(at) = record_difference(m_cmp, h_cmp) {
        return Err(format!(
            "{name}: the streams differ at item {at} (host KVM: {}):\n{}",
            host.describe(),
            context(&m, &h, at)
        ));
    }
    Ok(if known.is_empty() {
        Verdict::Equal
    } else {
        Verdict::Known(known)
    })
}

fn record_difference(a: &[Item], b: &[Item]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() == b.len() => None,
        None => Some(a.len().min(b.len())),
    }
}

/// The result of comparing a whole boot.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per guest.
    pub lines: Vec<String>,
    /// What fails the test.
    pub problems: Vec<String>,
}

/// Compares every stream in `serial` with host KVM's.
pub fn check(serial: &str) -> Report {
    let mut report = Report::default();
    let printed = match printed_streams(serial) {
        Ok(p) if p.is_empty() => {
            report
                .problems
                .push("the control domain printed no exit streams".into());
            return report;
        }
        Ok(p) => p,
        Err(e) => {
            report.problems.push(format!("exit streams: {e}"));
            return report;
        }
    };
    if let Err(e) = vmm::host::availability() {
        report.lines.push(format!(
            "SKIP the differential test: {e} ({} streams not compared)",
            printed.len()
        ));
        return report;
    }
    let kind = HostKind::detect();
    let (skipped, printed): (Vec<Printed>, Vec<Printed>) = printed
        .into_iter()
        .partition(|p| NOT_COMPARED.iter().any(|(g, _)| *g == p.name));
    for p in &skipped {
        if let Some((_, why)) = NOT_COMPARED.iter().find(|(g, _)| *g == p.name) {
            report
                .lines
                .push(format!("{}: not compared: {why}", p.name));
        }
    }
    let wanted: Vec<(String, u32)> = printed.iter().map(|p| (p.name.clone(), p.n)).collect();
    let runs = match host_runs(&wanted) {
        Ok(r) => r,
        Err(e) => {
            report.problems.push(format!("host KVM runs: {e}"));
            return report;
        }
    };
    for p in &printed {
        if p.dropped > 0 {
            report.problems.push(format!(
                "{}: the control domain kept only {} of the records",
                p.name, p.count
            ));
            continue;
        }
        let host = match runs.get(&(p.name.clone(), p.n)) {
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                report.problems.push(e.clone());
                continue;
            }
            None => {
                report.problems.push(format!("{}: no host run", p.name));
                continue;
            }
        };
        let listed: Vec<&'static Divergence> = DIVERGENCES
            .iter()
            .filter(|d| d.host == kind && d.guests.contains(&p.name.as_str()))
            .collect();
        match compare(p, host, &listed) {
            Ok(Verdict::Equal) => report.lines.push(format!(
                "{}: {} records, equal under Mojito and host KVM",
                p.name, p.count
            )),
            Ok(Verdict::Known(why)) => report.lines.push(format!(
                "{}: {} records; known divergences from host KVM ({kind:?}): {}",
                p.name,
                p.count,
                why.join("; ")
            )),
            Err(e) => report.problems.push(format!("differential: {e}")),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(c: u8) -> ExitRecord {
        ExitRecord::IoOut {
            port: 0xe9,
            size: 1,
            value: c.into(),
        }
    }

    fn text(s: &str) -> Vec<ExitRecord> {
        s.bytes().map(out).collect()
    }

    #[test]
    fn printed_streams_are_read_back_and_checked() {
        let mut stream = text("hi\n");
        stream.push(ExitRecord::Hlt);
        let tokens = record::compact(&stream).join(" ");
        let hash = record::fnv1a(&stream);
        let serial = format!(
            "control: vm 4 (halt): stopped: halted (0 ticks)\r\n\
             control: vm 4 (halt): exit stream: 4 records, fnv1a {hash:#018x}\r\n\
             control: stream halt: {tokens}\r\n\
             control: vm 1 (demo): exit stream: 9999 records (5 more not kept), fnv1a 0x1\n"
        );
        let p = printed_streams(&serial).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].n, p[0].name.as_str(), p[0].count), (4, "halt", 4));
        assert_eq!(p[0].records.as_deref(), Some(&stream[..]));
        assert_eq!((p[1].dropped, p[1].fnv1a, &p[1].records), (5, 1, &None));
        let bad = serial.replace("4 records", "5 records");
        assert!(printed_streams(&bad).unwrap_err().contains("do not match"));
    }

    #[test]
    fn console_lines_are_masked() {
        let mut s = text("cpuid: vendor Foo\nok\n");
        s.insert(3, ExitRecord::Hlt);
        let (items, texts) = mask(&s, &["cpuid: vendor "]);
        assert_eq!(texts["cpuid: vendor "], "Foo");
        let masked = items
            .iter()
            .filter(|i| **i == Item::Masked("cpuid: vendor "))
            .count();
        assert_eq!(masked, 1);
        // 14 prefix characters, the HLT, the mark, "\n", "ok\n".
        assert_eq!(items.len(), 14 + 1 + 1 + 1 + 3);
    }

    fn printed(name: &str, records: Vec<ExitRecord>) -> Printed {
        Printed {
            n: 1,
            name: name.into(),
            count: records.len(),
            dropped: 0,
            fnv1a: record::fnv1a(&records),
            records: Some(records),
        }
    }

    fn host(reason: StopReason, records: Vec<ExitRecord>, outside: bool) -> HostRun {
        HostRun {
            reason: Some(reason),
            records,
            stopped_from_outside: outside,
        }
    }

    #[test]
    fn divergences_must_occur() {
        let p = printed("halt", text("about\n"));
        let same = host(StopReason::Halted, text("about\n"), false);
        assert_eq!(compare(&p, &same, &[]), Ok(Verdict::Equal));
        // An unlisted difference fails.
        let other = host(StopReason::Halted, text("abort\n"), false);
        assert!(
            compare(&p, &other, &[])
                .unwrap_err()
                .contains("differ at item 3")
        );
        // Console text: equal text is no divergence.
        let d = &DIVERGENCES[0];
        assert!(matches!(d.kind, Kind::ConsoleLine(_)));
        let p = printed("demo", text("cpuid: vendor A\n"));
        let same = host(StopReason::Halted, text("cpuid: vendor A\n"), false);
        assert!(
            compare(&p, &same, &[d])
                .unwrap_err()
                .contains("did not occur")
        );
        let differs = host(StopReason::Halted, text("cpuid: vendor B\n"), false);
        assert!(matches!(compare(&p, &differs, &[d]), Ok(Verdict::Known(_))));
    }

    #[test]
    fn single_steps_that_differ_compare_the_prefix() {
        let d = DIVERGENCES
            .iter()
            .find(|d| matches!(d.kind, Kind::HostStepsDiffer))
            .unwrap();
        let step = ExitRecord::Debug { exception: 1 };
        let mut m = text("a");
        m.extend([step, step]);
        m.extend(text("ok\n"));
        let p = printed("debug", m.clone());
        let mut h = text("a");
        h.push(step);
        h.extend(text("FAIL\n"));
        let fewer = host(StopReason::Exited(1), h, false);
        assert!(matches!(compare(&p, &fewer, &[d]), Ok(Verdict::Known(_))));
        // Parting elsewhere is a real difference; not parting, no divergence.
        let elsewhere = host(StopReason::Exited(1), text("b"), false);
        assert!(
            compare(&p, &elsewhere, &[d])
                .unwrap_err()
                .contains("did not occur")
        );
        let same = host(StopReason::Exited(0), m, false);
        assert!(
            compare(&p, &same, &[d])
                .unwrap_err()
                .contains("did not occur")
        );
    }

    #[test]
    fn a_missing_irq_window_compares_the_prefix() {
        let d = DIVERGENCES
            .iter()
            .find(|d| matches!(d.kind, Kind::HostWithoutIrqWindow))
            .unwrap();
        let mut m = text("ab");
        m.push(ExitRecord::IrqWindowOpen);
        m.extend(text("ok\n"));
        let p = printed("irq", m.clone());
        // The host goes on differently after the point and has no window.
        let h = host(StopReason::Exited(1), text("abFAIL\n"), false);
        assert!(matches!(compare(&p, &h, &[d]), Ok(Verdict::Known(_))));
        // A difference before the point still fails.
        let early = host(StopReason::Exited(1), text("xbFAIL\n"), false);
        assert!(compare(&p, &early, &[d]).unwrap_err().contains("differ"));
        // A host that opens the window this time: compared whole.
        let same = host(StopReason::Exited(0), m.clone(), false);
        assert!(matches!(compare(&p, &same, &[d]), Ok(Verdict::Known(_))));
        let mut other = m;
        other.extend(text("x"));
        let differs = host(StopReason::Exited(0), other, false);
        assert!(compare(&p, &differs, &[d]).is_err());
        // A host that opens the window but whose guest fails after it: the
        // prefix with the window is compared.
        let mut late = text("ab");
        late.push(ExitRecord::IrqWindowOpen);
        late.extend(text("FAIL\n"));
        let late_fail = host(StopReason::Exited(1), late.clone(), false);
        assert!(matches!(
            compare(&p, &late_fail, &[d]),
            Ok(Verdict::Known(_))
        ));
        late[0] = text("x")[0];
        let early_too = host(StopReason::Exited(1), late, false);
        assert!(
            compare(&p, &early_too, &[d])
                .unwrap_err()
                .contains("differ")
        );
        // Mojito without a window at all: the divergence did not occur.
        let none = printed("irq", text("abok\n"));
        assert!(
            compare(&none, &h, &[d])
                .unwrap_err()
                .contains("did not occur")
        );
    }

    #[test]
    fn values_read_from_a_port_may_differ() {
        let d = DIVERGENCES
            .iter()
            .find(|d| matches!(d.kind, Kind::InValues(_)))
            .unwrap();
        let Kind::InValues(port) = d.kind else {
            unreachable!()
        };
        let read = |value| ExitRecord::IoIn {
            port,
            size: 4,
            value,
        };
        let mut m = text("a");
        m.push(read(5));
        let p = printed("xenner", m);
        let mut h = text("a");
        h.push(read(0xffff_ffff));
        let differs = host(StopReason::Exited(0), h, false);
        assert!(matches!(compare(&p, &differs, &[d]), Ok(Verdict::Known(_))));
        let mut same = text("a");
        same.push(read(5));
        let same = host(StopReason::Exited(0), same, false);
        assert!(
            compare(&p, &same, &[d])
                .unwrap_err()
                .contains("did not occur")
        );
        // Anything but the values still has to match.
        let mut other = text("b");
        other.push(read(0xffff_ffff));
        let other = host(StopReason::Exited(0), other, false);
        assert!(compare(&p, &other, &[d]).unwrap_err().contains("differ"));
    }

    #[test]
    fn a_hanging_host_compares_what_it_did() {
        let d = DIVERGENCES
            .iter()
            .find(|d| matches!(d.kind, Kind::HostHangsAfter(_)))
            .unwrap();
        let Kind::HostHangsAfter(line) = d.kind else {
            unreachable!()
        };
        let p = printed("xenner", text(&format!("{line}cd\n")));
        let hung = host(StopReason::Requested, text(line), true);
        assert!(matches!(compare(&p, &hung, &[d]), Ok(Verdict::Known(_))));
        // A host that hung before the line: not this divergence.
        let early = host(StopReason::Requested, text("x"), true);
        assert!(
            compare(&p, &early, &[d])
                .unwrap_err()
                .contains("did not occur")
        );
        // Hung after the line, but different before it.
        let wrong = host(StopReason::Requested, text(&format!("z{line}")), true);
        assert!(compare(&p, &wrong, &[d]).unwrap_err().contains("differ"));
        let finished = host(StopReason::Exited(0), text(&format!("{line}cd\n")), false);
        assert!(
            compare(&p, &finished, &[d])
                .unwrap_err()
                .contains("did not occur")
        );
    }

    #[test]
    fn a_host_stop_compares_the_prefix() {
        let d = &DIVERGENCES[1];
        assert!(matches!(d.kind, Kind::HostStopsAt(_)));
        let mut m = text("ab\n");
        m.push(ExitRecord::Hlt);
        let p = printed("isolate1", m);
        let mut h = text("ab");
        h.push(ExitRecord::InternalError { suberror: 1 });
        let data = vec![
            abi::kvm::KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
            u64::from_le_bytes([3, 0x0f, 0x01, 0xd0, 0, 0, 0, 0]),
            0,
        ];
        let reason = StopReason::InternalError {
            suberror: abi::kvm::KVM_INTERNAL_ERROR_EMULATION,
            data,
        };
        let run = host(reason.clone(), h, false);
        assert!(matches!(compare(&p, &run, &[d]), Ok(Verdict::Known(_))));
        let mut wrong = text("ax");
        wrong.push(ExitRecord::InternalError { suberror: 1 });
        let run = host(reason, wrong, false);
        assert!(
            compare(&p, &run, &[d])
                .unwrap_err()
                .contains("differ at item 1")
        );
        // A host that runs on is no longer the listed divergence.
        let run = host(StopReason::Halted, text("ab\n"), false);
        assert!(
            compare(&p, &run, &[d])
                .unwrap_err()
                .contains("did not occur")
        );
    }
}

/// Collecting what a stream printed on the debug console.
mod printed_text {
    use vmm::record::ExitRecord;

    /// The console text of a stream (OUTs to `abi::guest::CONSOLE_PORT`).
    pub struct Text(pub String);

    impl<'a> FromIterator<&'a ExitRecord> for Text {
        fn from_iter<I: IntoIterator<Item = &'a ExitRecord>>(records: I) -> Self {
            Text(
                records
                    .into_iter()
                    .filter_map(|r| match *r {
                        ExitRecord::IoOut { port, value, .. }
                            if port == abi::guest::CONSOLE_PORT =>
                        {
                            Some(char::from(value as u8))
                        }
                        _ => None,
                    })
                    .collect(),
            )
        }
    }
}
