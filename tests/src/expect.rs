//! What the serial log of a full boot must show (the hypervisor's serial
//! contract): the hypervisor starts, names its CPU extension, runs every
//! built-in guest to its expected end, stays up after a guest's triple
//! fault, and powers the machine off.

/// The hypervisor's first line.
pub fn first_line() -> String {
    format!("mojito: Mojito {} starting", env!("CARGO_PKG_VERSION"))
}

/// The hypervisor's last line.
pub use xtask::POWER_OFF_LINE as LAST_LINE;

/// The serial log's lines, without line-end characters.
fn lines(serial: &str) -> Vec<&str> {
    serial
        .lines()
        // A UART being re-programmed (the control domain taking COM1 over)
        // can emit a NUL that Bochs's file backend keeps.
        .map(|l| l.trim_start_matches('\0').trim_end_matches(['\r', '\n']))
        .collect()
}

/// Who runs the test guests: the hypervisor itself (an image without the
/// control domain) or the control domain through the KVM API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Builtin,
    Control,
    /// The shell test's image (`crate::shell`): no guest runs by itself.
    Shell,
    /// The slow tests' image (`crate::slow`).
    Slow,
    /// The Linux test's image (`crate::linux`).
    Linux,
}

impl Mode {
    /// The prefix of the lines that report a VM stopping.
    fn stop_prefix(self) -> &'static str {
        match self {
            Self::Builtin => "mojito: vm ",
            Self::Control | Self::Shell | Self::Slow | Self::Linux => "control: vm ",
        }
    }
}

/// How a guest of the boot tests ends.
#[derive(Clone, Copy, Debug)]
pub struct Ending {
    pub guest: &'static str,
    /// The stop reason as the stop line gives it.
    pub stop: &'static str,
    /// Run only where the control domain runs guests (its VMM's devices
    /// are needed).
    pub control_only: bool,
    /// Why this ending is the right one.
    pub why: &'static str,
}

const fn ending(
    guest: &'static str,
    stop: &'static str,
    control_only: bool,
    why: &'static str,
) -> Ending {
    Ending {
        guest,
        stop,
        control_only,
        why,
    }
}

/// The table of endings the boot tests check exactly — the malicious-guest
/// suite's ending cases among them (docs/security.md): each guest's stop
/// line must say this, while every other guest, the control domain and the
/// hypervisor go on (they are all checked in the same run).
pub const ENDINGS: &[Ending] = &[
    ending(
        "demo",
        "exited with status 0",
        false,
        "it checked everything it does",
    ),
    ending(
        "hostile",
        "exited with status 0",
        false,
        "every VMX/SVM instruction (#UD), protected MSR (#GP), fixed CR bit (#GP), non-canonical address (#GP), a #PF storm and an exit flood ended as its own table says",
    ),
    ending(
        "fpustate",
        "exited with status 0",
        false,
        "its x87/SSE state survived exits",
    ),
    ending(
        "isolate1",
        "exited with status 0",
        false,
        "no register of its neighbour reached it",
    ),
    ending(
        "isolate2",
        "exited with status 0",
        false,
        "no register of its neighbour reached it",
    ),
    ending(
        "halt",
        "halted",
        false,
        "HLT with interrupts off: nothing can wake it",
    ),
    ending(
        "triple",
        "triple fault",
        false,
        "a fault with no IDT: the VM shuts down, nothing else does",
    ),
    ending(
        "portio",
        "exited with status 0",
        true,
        "string I/O across pages, both directions",
    ),
    ending(
        "mmio",
        "exited with status 0",
        true,
        "every decoded form, and code rewritten between device accesses at one RIP",
    ),
    ending(
        "memslots",
        "exited with status 0",
        true,
        "slots moved, resized, read-only",
    ),
    ending(
        "irq",
        "exited with status 0",
        true,
        "injection and the interrupt window",
    ),
    ending(
        "lapic",
        "exited with status 0",
        true,
        "the local APIC under the split irqchip: xAPIC and x2APIC registers, self-IPIs, TPR/CR8, \
         one-shot, periodic (against the PIT) and TSC-deadline timers waking HLT, an MSI, \
         level- and edge-triggered MSIs of the VMM's GSI routes with the one EOI that exits \
         (KVM_EXIT_IOAPIC_EOI), the ISR until EOI",
    ),
    ending(
        "smp",
        "exited with status 0",
        true,
        "two vCPUs under the split irqchip: the AP started by INIT and SIPI, IPIs both ways \
         (physical, all excluding self, logical), a periodic timer on each, shared memory and \
         a spinlock",
    ),
    ending(
        "debug",
        "exited with status 0",
        true,
        "single-step and breakpoints",
    ),
    ending(
        "bench",
        "exited with status 0",
        true,
        "its figures are printed, never judged",
    ),
    ending(
        "usermsr",
        "exited with status 0",
        true,
        "MSR exits to userspace and the filter",
    ),
    ending(
        "xenner",
        "exited with status 0",
        true,
        "the Xen hypercall page",
    ),
    ending(
        "pvclock",
        "exited with status 0",
        true,
        "kvmclock against the VMM's PIT and RTC",
    ),
    ending(
        "hostio",
        "exited with status 0",
        true,
        "huge, backwards, unmapped and non-canonical string I/O: each fault as on hardware",
    ),
    ending(
        "mmiofail",
        "internal error (0x1), cannot emulate: d9",
        true,
        "x87 on device memory, outside the decoder's set (as in KVM): the instruction's bytes reported",
    ),
    ending(
        "inshole",
        "internal error (0x1)",
        true,
        "REP INS from RAM into a guest-physical hole: the first page's batch lands, then the VM stops (Mojito does not emulate INS stores to device memory)",
    ),
    ending(
        "spin",
        "killed after timer ticks without an exit",
        true,
        "it never exits: the timer gives the CPU back (D2) and the VMM's watchdog stops it",
    ),
];

/// Whether `line` is `<prefix>vm <id> (<name>): stopped: <how>`, maybe
/// followed by details (`... after 25 exits`).
fn is_stop(line: &str, mode: Mode, name: &str, how: &str) -> bool {
    let Some(rest) = line.strip_prefix(mode.stop_prefix()) else {
        return false;
    };
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(details) = rest[digits..].strip_prefix(&format!(" ({name}): stopped: {how}")) else {
        return false;
    };
    digits > 0 && !details.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// Whether the hypervisor started every CPU of a machine with `cpus` and
/// turned `extension` on in each (the SMP issue's first part): a
/// `cpuN: EXT: …` line per CPU and the `smp:` summary.
pub fn smp_problem(serial: &str, extension: &str, cpus: u32) -> Option<String> {
    let lines: Vec<&str> = serial.lines().map(str::trim_end).collect();
    for cpu in 0..cpus {
        let want = format!("mojito: cpu{cpu}: {extension}: ");
        if !lines.iter().any(|l| l.starts_with(&want)) {
            return Some(format!("no line starting {want:?}"));
        }
    }
    let want = if cpus == 1 {
        "mojito: smp: 1 CPU (".to_string()
    } else {
        format!("mojito: smp: {cpus} CPUs in the MADT; {cpus} with {extension} on")
    };
    (!lines.iter().any(|l| l.starts_with(&want))).then(|| format!("no line starting {want:?}"))
}

/// In control-domain mode on `cpus` CPUs (the SMP issue, D2): the control
/// domain's vCPU on each of them, guests run on every one (the VMs'
/// closing lines: `RUN on cpu0 …, cpu1 …`), and some RUNs began while
/// another CPU ran a guest (`(N while another CPU ran a guest)`).
pub fn guest_cpus_problem(serial: &str, cpus: u32) -> Option<String> {
    let lines = lines(serial);
    let s = if cpus == 1 { "" } else { "s" };
    let want = format!("control: {cpus} vCPU{s}: the shell on cpu0");
    if !lines.iter().any(|l| l.starts_with(&want)) {
        return Some(format!("no line starting {want:?}"));
    }
    let closing: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(" closed; exits: "))
        .filter_map(|l| l.split_once("; RUN on ").map(|(_, r)| r))
        .collect();
    for cpu in 0..cpus {
        let on = format!("cpu{cpu} ");
        let ran = closing
            .iter()
            .any(|r| r.split(", ").any(|part| part.starts_with(&on)));
        if !ran {
            return Some(format!(
                "no VM's closing line says it ran on cpu{cpu} (\"; RUN on ... cpu{cpu} N times\")"
            ));
        }
        let started = format!("mojito: cpu{cpu}: the control domain's vCPU {cpu} runs here");
        if cpu > 0 && !lines.iter().any(|l| l.ends_with(&started)) {
            return Some(format!("no line {started:?}"));
        }
    }
    let alongside: u64 = closing
        .iter()
        .filter_map(|r| {
            let (_, n) = r.split_once(" (")?;
            n.strip_suffix(" while another CPU ran a guest)")?
                .parse::<u64>()
                .ok()
        })
        .sum();
    (cpus > 1 && alongside == 0)
        .then(|| "no RUN began while another CPU ran a guest: guests never ran at once".into())
}

/// Everything the log lacks or shows wrongly, in words; empty when the run
/// did all it should. `extension` is `SVM` or `VMX`.
/// The hypervisor's TSC calibration against a rate the emulator is known
/// to run at (`want_khz`): more than 0.5 % off is a problem. This is what
/// makes the `pvclock` guest's check independent: kvmclock and the VMM's
/// PIT both follow the calibrated frequency, and this ties it to the
/// emulated machine's own clock.
pub fn tsc_problem(serial: &str, want_khz: u64) -> Option<String> {
    let Some(line) = lines(serial)
        .into_iter()
        .find(|l| l.starts_with("mojito: tsc: "))
    else {
        return Some("no line \"mojito: tsc: ...\"".into());
    };
    let mhz = line
        .strip_prefix("mojito: tsc: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<f64>().ok());
    let Some(mhz) = mhz else {
        return Some(format!("the TSC was not measured: {line:?}"));
    };
    let want = want_khz as f64 / 1000.0;
    ((mhz - want).abs() > want * 0.005)
        .then(|| format!("the TSC was measured at {mhz} MHz; this emulator runs it at {want} MHz"))
}

/// The hypervisor's own timer (the SMP/time issue, item 2): its local
/// APIC timer is measured against the TSC at boot and programmed for a
/// 10 ms tick, so where the emulator runs the TSC at a known rate
/// (`want_khz`) the tick the hypervisor then measures must be 10 ms of it
/// within 1 %.
pub fn timer_problem(serial: &str, want_khz: u64) -> Option<String> {
    let Some(line) = lines(serial)
        .into_iter()
        .find(|l| l.starts_with("mojito: timer: "))
    else {
        return Some("no line \"mojito: timer: ...\"".into());
    };
    let cycles = line
        .split_once("a tick every ")
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    let (Some(cycles), true) = (cycles, line.contains("(10000 us asked)")) else {
        return Some(format!("the timer's tick was not calibrated: {line:?}"));
    };
    let want = want_khz * 10;
    (cycles.abs_diff(want) * 100 > want).then(|| {
        format!("the timer ticks every {cycles} TSC cycles; 10 ms are {want} on this emulator")
    })
}

/// The hypervisor's reading of the emulated machine's RTC at boot
/// (`mojito: rtc: YYYY-MM-DD HH:MM:SS UTC`) against the host's clock at
/// `now` (Unix seconds): QEMU's RTC and Bochs's (`time0=utc`) start at the
/// host's UTC time, so a BCD, century, 12-hour or time-zone slip in the
/// reading shows. Ten minutes' slack covers the boot and Bochs's slower
/// emulated time.
pub fn rtc_problem(serial: &str, now: u64) -> Option<String> {
    let Some(line) = lines(serial)
        .into_iter()
        .find(|l| l.starts_with("mojito: rtc: "))
    else {
        return Some("no line \"mojito: rtc: ...\"".into());
    };
    let parsed = line.strip_prefix("mojito: rtc: ").and_then(|r| {
        let n = |s: &str| s.parse::<u32>().ok();
        let (date, time) = (r.get(0..10)?, r.get(11..19)?);
        let d: Vec<u32> = date.split('-').map(n).collect::<Option<_>>()?;
        let t: Vec<u32> = time.split(':').map(n).collect::<Option<_>>()?;
        abi::rtc::DateTime {
            year: *d.first()?,
            month: u8::try_from(*d.get(1)?).ok()?,
            day: u8::try_from(*d.get(2)?).ok()?,
            hour: u8::try_from(*t.first()?).ok()?,
            minute: u8::try_from(*t.get(1)?).ok()?,
            second: u8::try_from(*t.get(2)?).ok()?,
        }
        .unix_seconds()
    });
    match parsed {
        None => Some(format!("the RTC was not read: {line:?}")),
        Some(s) if s.abs_diff(now) > 600 => Some(format!(
            "the RTC read at boot is {} s away from the host's UTC clock: {line:?}",
            s.abs_diff(now)
        )),
        Some(_) => None,
    }
}

pub fn problems(serial: &str, extension: &str, mode: Mode) -> Vec<String> {
    let lines = lines(serial);
    let find = |what: &dyn Fn(&str) -> bool| lines.iter().position(|l| what(l));
    let mut problems = Vec::new();
    let mut need = |what: String, at: Option<usize>| {
        if at.is_none() {
            problems.push(format!("no line {what}"));
        }
        at
    };
    let first = first_line();
    need(format!("{first:?}"), find(&|l| l.starts_with(&first)));
    let cpu = format!("mojito: cpu0: {extension}");
    need(format!("starting {cpu:?}"), find(&|l| l.starts_with(&cpu)));
    // Host-mode protections: on wherever the CPU model has them (QEMU's
    // EPYC and `max`, Bochs's Skylake-X; not Westmere).
    need(
        "starting \"mojito: host: SMEP\"".into(),
        find(&|l| l.starts_with("mojito: host: SMEP")),
    );
    // W^X, no user pages, guard pages under every stack (arch/protect.rs).
    need(
        "starting \"mojito: host: W^X holds\"".into(),
        find(&|l| l.starts_with("mojito: host: W^X holds")),
    );
    // The speculation mitigations are chosen and armed (the RSB refill is
    // unconditional; what else depends on the CPU model).
    need(
        "starting \"mojito: host: speculation: RSB refilled after every exit\"".into(),
        find(&|l| l.starts_with("mojito: host: speculation: RSB refilled after every exit")),
    );
    if mode == Mode::Control {
        for line in [
            "control: Mojito control domain",
            "control: KVM API version 12",
            "control: bad requests:",
            "control: state requests:",
            "control: Mojito back end:",
            "control: metadata pool:",
        ] {
            need(format!("starting {line:?}"), find(&|l| l.starts_with(line)));
        }
    }
    let mut passing = vec!["demo", "fpustate", "hostile"];
    if mode == Mode::Control {
        passing.push("portio");
        passing.push("mmio");
        passing.push("memslots");
        passing.push("irq");
        passing.push("lapic");
        passing.push("smp");
        passing.push("debug");
        passing.push("usermsr");
        passing.push("xenner");
        passing.push("pvclock");
        passing.push("hostio");
        // The pages the hypervisor wrote for kvmclock are dirty.
        for line in [
            "[pvclock] dirty log after registering the time info: 0x3 0xffffffff",
            "[pvclock] dirty log after registering the wall clock: 0x6 0xffffffff",
        ] {
            need(format!("{line:?}"), find(&|l| l.trim_end() == line));
        }
        // The page the hypervisor copied into the logged slot is dirty.
        let line = "[xenner] xen: dirty log after the copy: 0x5 0xffffffff";
        need(format!("{line:?}"), find(&|l| l.trim_end() == line));
        // Of the GSI routes' vectors only the level-triggered one of a
        // reserved IOAPIC pin exits when EOIed (KVM_EXIT_IOAPIC_EOI).
        need(
            format!("{LAPIC_EOI_LINE:?}"),
            find(&|l| l.trim_end() == LAPIC_EOI_LINE),
        );
        // Hardware breakpoints: VMX (Bochs) delivers both; QEMU 7.2's SVM
        // loads DR7 from the VMCB at VMRUN without arming TCG's
        // breakpoints, so none fires there (the hypervisor must not arm
        // guest breakpoints in host mode to make up for it).
        let hits = if extension == "VMX" { 2 } else { 0 };
        let line = format!(
            "[debug] hardware breakpoints: {hits} hits; the guest's own DR0-DR3 and DR7 kept"
        );
        need(format!("{line:?}"), find(&|l| l.trim_end() == line));
        // INS/OUTS data reaches the VMM in memory order, DF clear or set.
        for way in ["forwards", "backwards"] {
            let line = format!("[portio] rep outsb to the console, {way}");
            need(format!("{line:?}"), find(&|l| l.trim_end() == line));
        }
    }
    for vm in &passing {
        let pass = format!("[{vm}] PASS");
        need(format!("{pass:?}"), find(&|l| l.trim_end() == pass));
    }
    for vm in ["isolate1", "isolate2"] {
        let ok = format!("[{vm}] isolation ok");
        need(format!("starting {ok:?}"), find(&|l| l.starts_with(&ok)));
    }
    if mode == Mode::Control {
        // inshole started its REP INS (the stop alone could be any
        // emulation error).
        let line =
            "[inshole] rep insb of 128 bytes at 0x3fffc0: RAM's last 64 bytes, then the hole";
        need(format!("{line:?}"), find(&|l| l.trim_end() == line));
        // The bench's smoke check (issue 9): every case printed a number.
        // The figures themselves are never judged here.
        for case in BENCH_CASES {
            let line = format!("\"[bench] bench {case}: T.T ticks per round trip ...\"");
            need(line, bench_figure(serial, case).map(|_| 0));
        }
        let line = "\"control: bench lifecycle: N TSC ticks ...\"";
        need(line.into(), lifecycle_figure(serial).map(|_| 0));
    }
    // Every guest's ending, as `ENDINGS` states it.
    let mut triple = None;
    for e in ENDINGS
        .iter()
        .filter(|e| mode == Mode::Control || !e.control_only)
    {
        let what = format!(
            "\"{}N ({}): stopped: {}\"",
            mode.stop_prefix(),
            e.guest,
            e.stop
        );
        let at = need(what, find(&|l| is_stop(l, mode, e.guest, e.stop)));
        if e.guest == "triple" {
            triple = at;
        }
    }
    let last = need(format!("{LAST_LINE:?}"), find(&|l| l == LAST_LINE));
    if let (Some(t), Some(l)) = (triple, last)
        && l < t
    {
        problems.push("the power-off line comes before the triple-fault stop".into());
    }
    for fail in lines.iter().filter(|l| l.starts_with("control: FAIL")) {
        problems.push(format!("the control domain failed a check: {fail:?}"));
    }
    for fatal in lines.iter().filter(|l| l.contains("mojito: FATAL")) {
        problems.push(format!("a fatal error: {fatal:?}"));
    }
    problems
}

/// The `lapic` guest's line for its step with the VMM's GSI routes:
/// 0x5c (GSI 5, a reserved IOAPIC pin, level-triggered) exits once when
/// EOIed, 0x5d (GSI 30) and 0x5e (edge-triggered) never.
pub const LAPIC_EOI_LINE: &str = "[lapic] ioapic eoi: 0x5c (GSI 5, level), 0x5d (GSI 30, level), \
    0x5e (GSI 6, edge) taken once each, TMR set for 0x5c and 0x5d; KVM_EXIT_IOAPIC_EOI: 1 0 0";

/// The `spin` guest's line before it spins.
pub const SPIN_LINE: &str = "[spin] spinning without exits";

/// What a boot whose operator typed `help`, `frob` and `list` after
/// [`SPIN_LINE`] lacks: the answers, with `spin` still running in the list
/// (the control domain got its CPU back from the spinning guest), and a RUN
/// that COM1 input ended (the hypervisor took the UART's interrupt, not
/// only its timer).
pub fn typing_problems(serial: &str) -> Vec<String> {
    let lines = lines(serial);
    let find = |what: &dyn Fn(&str) -> bool| lines.iter().position(|l| what(l));
    let mut problems = Vec::new();
    for (line, answer) in [
        ("mojito> help", "commands:"),
        ("mojito> frob", "unknown command 'frob'; try help"),
    ] {
        match find(&|l| l == line) {
            None => problems.push(format!("no line {line:?}: the typed command was not read")),
            Some(at) => {
                if !lines[at + 1..].iter().any(|l| l.starts_with(answer)) {
                    problems.push(format!("no answer {answer:?} after {line:?}"));
                }
            }
        }
    }
    let spin_stop = find(&|l| is_stop(l, Mode::Control, "spin", "killed"));
    match find(&|l| l == "mojito> list") {
        None => problems.push("no line \"mojito> list\": the typed command was not read".into()),
        Some(at) => {
            let row = lines[at + 1..].iter().position(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.get(1) == Some(&"spin") && w.last() == Some(&"running")
            });
            match (row, spin_stop) {
                (None, _) => problems.push(
                    "`list` shows no row \"N spin ... running\": the control domain did not \
                     answer while the guest spun"
                        .into(),
                ),
                (Some(r), Some(stop)) if at + 1 + r > stop => {
                    problems.push("`list` was answered only after spin had stopped".into())
                }
                _ => {}
            }
        }
    }
    if runs_ended_by_input(serial) == 0 {
        problems.push(
            "no VM's closing line says a RUN ended \"by COM1 input\": the hypervisor did not \
             take COM1's interrupt"
                .into(),
        );
    }
    problems
}

/// RUNs that COM1 input ended, from the VMs' closing lines.
pub fn runs_ended_by_input(serial: &str) -> u64 {
    lines(serial)
        .iter()
        .filter_map(|l| {
            l.split_once("by COM1 input ")?
                .1
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The bench guest's cases, in the order it prints them.
pub const BENCH_CASES: [&str; 7] = {
    let c = xtask::bench::CASES;
    [c[0].0, c[1].0, c[2].0, c[3].0, c[4].0, c[5].0, c[6].0]
};

/// The bench guest's figure for `case` (TSC ticks per round trip).
pub fn bench_figure(serial: &str, case: &str) -> Option<f64> {
    xtask::bench::figure(serial, case)
}

/// The control domain's lifecycle figure: TSC ticks from KVM_CREATE_VM to
/// the first exit.
pub fn lifecycle_figure(serial: &str) -> Option<u64> {
    xtask::bench::step(&xtask::bench::lifecycle(serial)?, "total")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_log() -> String {
        [
            "bootloader noise",
            &first_line(),
            "mojito: cpu0: SVM npt nrips=0 vgif",
            "mojito: host: SMEP on, SMAP on",
            "mojito: host: W^X holds: 64 executable pages, all the hypervisor's code and read-only",
            "mojito: host: speculation: RSB refilled after every exit; IBPB between VMs off",
            "[demo] PASS",
            "mojito: vm 1 (demo): stopped: exited with status 0",
            "[isolate1] isolation ok (pattern 0x11)",
            "[isolate2] isolation ok (pattern 0x22)",
            "mojito: vm 2 (isolate1): stopped: exited with status 0",
            "mojito: vm 3 (isolate2): stopped: exited with status 0",
            "mojito: vm 4 (halt): stopped: halted",
            "[fpustate] PASS",
            "mojito: vm 6 (fpustate): stopped: exited with status 0",
            "[hostile] PASS",
            "mojito: vm 7 (hostile): stopped: exited with status 0",
            "mojito: vm 5 (triple): stopped: triple fault",
            LAST_LINE,
        ]
        .join("\r\n")
    }

    fn typed_log() -> Vec<&'static str> {
        vec![
            SPIN_LINE,
            "mojito> help",
            "commands:",
            "mojito> frob",
            "unknown command 'frob'; try help",
            "mojito> list",
            "  ID NAME             VCPUS  MEMORY    EXITS  UPTIME      STATE",
            "   6 spin                 1  4 MiB         3  1.234 s     running",
            "control: vm 6 (spin): stopped: killed after timer ticks without an exit: 10",
            "mojito: vm 6 (spin) closed; exits: intr=12; RUN ended by the timer 9 times, by COM1 \
             input 1 time",
        ]
    }

    #[test]
    fn typing_needs_answers_while_spin_runs_and_an_input_ended_run() {
        let log = typed_log().join("\r\n");
        assert_eq!(typing_problems(&log), Vec::<String>::new());
        let late = typed_log()
            .iter()
            .map(|l| l.replace("running", "stopped"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(typing_problems(&late).len(), 1, "{late}");
        let mut swapped = typed_log();
        swapped.swap(7, 8);
        assert!(typing_problems(&swapped.join("\n"))[0].contains("only after spin had stopped"));
        let ticks_only = log.replace("by COM1 input 1 time", "by COM1 input 0 times");
        assert!(typing_problems(&ticks_only)[0].contains("COM1's interrupt"));
        let unread = log.replace("mojito> frob", "");
        assert!(typing_problems(&unread)[0].contains("\"mojito> frob\""));
    }

    #[test]
    fn tsc_calibration_is_checked_against_the_known_rate() {
        let at = |mhz: &str| {
            format!("mojito: Mojito\nmojito: tsc: {mhz} MHz, measured against the PIT\n")
        };
        assert_eq!(tsc_problem(&at("999.931"), 1_000_000), None);
        assert_eq!(tsc_problem(&at("50.002"), 50_000), None);
        assert!(tsc_problem(&at("1010.000"), 1_000_000).is_some());
        assert!(tsc_problem("mojito: tsc: no PIT answered", 50_000).is_some());
        assert!(tsc_problem("", 50_000).is_some());
    }

    #[test]
    fn rtc_reading_is_checked_against_the_host_clock() {
        let log = "mojito: rtc: 2026-11-22 22:40:44 UTC, the wall clock for kvmclock";
        assert_eq!(rtc_problem(log, 1_795_387_244), None);
        assert_eq!(rtc_problem(log, 1_795_387_244 + 300), None);
        assert!(
            rtc_problem(log, 1_795_387_244 + 3600).is_some(),
            "an hour off"
        );
        assert!(rtc_problem("mojito: rtc: no CMOS clock answered", 0).is_some());
        assert!(rtc_problem("", 0).is_some());
    }

    #[test]
    fn the_tick_is_ten_milliseconds_of_a_known_tsc() {
        let at = |n: u64| {
            format!(
                "mojito: timer: local APIC at 49.996 MHz (measured against the TSC), periodic, \
                 vector 0xef, a tick every {n} TSC cycles (10000 us asked)"
            )
        };
        assert_eq!(timer_problem(&at(499_950), 50_000), None);
        assert!(timer_problem(&at(520_000), 50_000).is_some());
        assert!(timer_problem("mojito: timer: local APIC, periodic, vector 0xef, a tick every 1 TSC cycles (uncalibrated: x)", 50_000).is_some());
        assert!(timer_problem("", 50_000).is_some());
    }

    #[test]
    fn every_cpu_must_turn_the_extension_on() {
        let two = "mojito: cpu0: VMX: EPT\nmojito: cpu1: VMX: EPT\n\
                   mojito: smp: 2 CPUs in the MADT; 2 with VMX on (cpu0 and 1 started)";
        assert_eq!(smp_problem(two, "VMX", 2), None);
        assert!(smp_problem(two, "SVM", 2).is_some());
        let one_up = two.replace("2 with VMX on", "1 with VMX on");
        assert!(smp_problem(&one_up, "VMX", 2).is_some());
        let no_cpu1 = two.replace("cpu1: VMX", "cpu1: cannot turn on VMX");
        assert!(smp_problem(&no_cpu1, "VMX", 2).is_some());
        let one = "mojito: cpu0: SVM: NPT\nmojito: smp: 1 CPU (local APIC id 0)";
        assert_eq!(smp_problem(one, "SVM", 1), None);
    }

    #[test]
    fn guests_must_run_on_every_cpu_and_at_once() {
        let two = "control: 2 vCPUs: the shell on cpu0, a helper on cpu1; VM n runs on CPU n mod 2\n\
                   mojito> \x1b[Kmojito: cpu1: the control domain's vCPU 1 runs here\n\
                   mojito: vm4 closed; exits: io=3; RUN on cpu0 35 times (2 while another CPU ran a guest)\n\
                   mojito: vm7 closed; exits: io=9 interrupt=2; RUN ended by the timer 2 times, \
                   by COM1 input 0 times; RUN on cpu1 73 times";
        assert_eq!(guest_cpus_problem(two, 2), None);
        let cpu0_only = two.replace("cpu1 73", "cpu0 73");
        assert!(guest_cpus_problem(&cpu0_only, 2).unwrap().contains("cpu1"));
        let apart = two.replace(" (2 while another CPU ran a guest)", "");
        assert!(guest_cpus_problem(&apart, 2).unwrap().contains("at once"));
        let no_helper = two.replace("vCPU 1 runs here", "vCPU 1 stopped");
        assert!(guest_cpus_problem(&no_helper, 2).is_some());
        let one = "control: 1 vCPU: the shell on cpu0 runs every VM\n\
                   mojito: vm4 closed; exits: io=3; RUN on cpu0 35 times";
        assert_eq!(guest_cpus_problem(one, 1), None);
        assert!(guest_cpus_problem(one, 2).is_some());
    }

    #[test]
    fn a_full_run_passes() {
        let log = good_log();
        assert_eq!(problems(&log, "SVM", Mode::Builtin), Vec::<String>::new());
    }

    #[test]
    fn control_mode_needs_the_control_domain() {
        let log = good_log().replace("mojito: vm ", "control: vm ");
        let p = problems(&log, "SVM", Mode::Control);
        // Six starting lines, the spin guest's stop, portio's PASS, its
        // two console lines and its stop, mmio's, memslots', irq's and
        // debug's PASS and stop, debug's breakpoint line, mmiofail's stop,
        // bench's stop, its seven figures and the lifecycle line, usermsr's
        // PASS and stop, xenner's PASS, dirty-log line and stop, pvclock's
        // PASS, two dirty-log lines and stop, hostio's PASS and stop,
        // inshole's line and stop, lapic's EOI line, lapic's and smp's
        // PASS and stop.
        assert_eq!(p.len(), 48, "{p:?}");
        let log = format!(
            "{log}\ncontrol: Mojito control domain 0.1.0 starting\ncontrol: KVM API version 12\n\
             control: bad requests: 24 checked, each refused as KVM refuses it\n\
             control: state requests: 18 checked, each as KVM does it\n\
             control: Mojito back end: 21 checks, each as vmm::api says\n\
             control: metadata pool: KVM_CREATE_VM 2 frames; each with fewer: -ENOMEM\n\
             control: vm 6 (spin): stopped: killed after timer ticks without an exit: 10 (10 ticks in all)\n\
             [portio] rep outsb to the console, forwards\n\
             [portio] rep outsb to the console, backwards\n\
             [portio] PASS\ncontrol: vm 8 (portio): stopped: exited with status 0 (0 ticks in all)\n\
             [mmio] PASS\ncontrol: vm 9 (mmio): stopped: exited with status 0 (1 ticks in all)\n\
             control: vm 10 (mmiofail): stopped: internal error (0x1), cannot emulate: d9 00 90\n\
             [memslots] PASS\ncontrol: vm 11 (memslots): stopped: exited with status 0\n\
             [irq] PASS\ncontrol: vm 12 (irq): stopped: exited with status 0\n\
             [debug] hardware breakpoints: 0 hits; the guest's own DR0-DR3 and DR7 kept\n\
             [debug] PASS\ncontrol: vm 13 (debug): stopped: exited with status 0\n\
             control: bench lifecycle: 52000 TSC ticks to the first exit (create_vm 1)\n\
             [bench] bench floor: 520.0 ticks per round trip (2048 iterations)\n\
             [bench] bench cpuid: 1164.3 ticks per round trip (1024 iterations)\n\
             [bench] bench hypercall: 1200.0 ticks per round trip (1024 iterations)\n\
             [bench] bench in-post: 600.0 ticks per round trip (2048 iterations)\n\
             [bench] bench in-vmm: 2836.9 ticks per round trip (512 iterations)\n\
             [bench] bench mmio-vmm: 3000.0 ticks per round trip (512 iterations)\n\
             [bench] bench rdmsr-vmm: 2000.0 ticks per round trip (512 iterations)\n\
             [usermsr] PASS\ncontrol: vm 15 (usermsr): stopped: exited with status 0\n\
             [xenner] xen: dirty log after the copy: 0x5 0xffffffff\n\
             [xenner] PASS\ncontrol: vm 16 (xenner): stopped: exited with status 0\n\
             [pvclock] dirty log after registering the time info: 0x3 0xffffffff\n\
             [pvclock] dirty log after registering the wall clock: 0x6 0xffffffff\n\
             [pvclock] PASS\ncontrol: vm 17 (pvclock): stopped: exited with status 0\n\
             [hostio] PASS\ncontrol: vm 19 (hostio): stopped: exited with status 0\n\
             [inshole] rep insb of 128 bytes at 0x3fffc0: RAM's last 64 bytes, then the hole\n\
             control: vm 20 (inshole): stopped: internal error (0x1) (0 ticks in all)\n\
             {LAPIC_EOI_LINE}\n\
             [lapic] PASS\ncontrol: vm 21 (lapic): stopped: exited with status 0\n\
             [smp] PASS\ncontrol: vm 22 (smp): stopped: exited with status 0\n\
             control: vm 14 (bench): stopped: exited with status 0"
        );
        assert_eq!(bench_figure(&log, "cpuid"), Some(1164.3));
        assert_eq!(lifecycle_figure(&log), Some(52000));
        let no_mmio = log.replace("bench mmio-vmm: 3000.0", "bench mmio-vmm: ?");
        assert_eq!(problems(&no_mmio, "SVM", Mode::Control).len(), 1);
        assert_eq!(problems(&log, "SVM", Mode::Control), Vec::<String>::new());
        let failed = format!("{log}\ncontrol: FAIL bad request: x");
        assert_eq!(problems(&failed, "SVM", Mode::Control).len(), 1);
    }

    #[test]
    fn each_gap_is_named() {
        let log = good_log();
        assert_eq!(problems(&log, "VMX", Mode::Builtin).len(), 1);
        let no_halt = log.replace("stopped: halted", "stopped: exited with status 0");
        assert!(problems(&no_halt, "SVM", Mode::Builtin)[0].contains("(halt): stopped: halted"));
        let failed = log.replace(
            "(demo): stopped: exited with status 0",
            "(demo): stopped: exited with status 1",
        );
        assert_eq!(problems(&failed, "SVM", Mode::Builtin).len(), 1);
        let fatal = format!("{log}\nmojito: FATAL exception 13");
        assert!(problems(&fatal, "SVM", Mode::Builtin)[0].contains("FATAL"));
        let broken = log.replace("W^X holds", "W^X does NOT hold");
        assert!(problems(&broken, "SVM", Mode::Builtin)[0].contains("W^X holds"));
    }

    #[test]
    fn stop_lines() {
        let b = Mode::Builtin;
        assert!(is_stop(
            "mojito: vm 12 (demo): stopped: halted",
            b,
            "demo",
            "halted"
        ));
        assert!(!is_stop(
            "mojito: vm (demo): stopped: halted",
            b,
            "demo",
            "halted"
        ));
        assert!(!is_stop(
            "mojito: vm 1 (demo2): stopped: halted",
            b,
            "demo",
            "halted"
        ));
        assert!(!is_stop(
            "control: vm 1 (demo): stopped: halted",
            b,
            "demo",
            "halted"
        ));
        assert!(is_stop(
            "control: vm 1 (demo): stopped: halted",
            Mode::Control,
            "demo",
            "halted"
        ));
    }
}
