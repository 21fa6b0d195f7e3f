//! One emulator run per test, in a directory of its own under
//! `target/mojito/runs/` (kept when the test fails, removed when it passes).

use std::fmt::Write as _;
use std::time::Duration;

use tempfile::TempDir;
use xtask::bochs::{self, Bochs};
use xtask::qemu::{self, Accel, Boot, Qemu, Serial};
use xtask::runner::{self, Outcome, Watch};
use xtask::sysdeps;
use xtask::workspace::{command_line, read_lossy};

use crate::expect;
use crate::typist::{Keys, Typist, Via};

/// How long a whole boot may take before the emulator is killed, unless
/// `MOJITO_BOOT_TIMEOUT` (seconds) says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// The slow tests' limit (`crate::slow`: ten million exits under
/// emulation), unless `MOJITO_SLOW_TIMEOUT` (seconds) says otherwise.
pub const SLOW_TIMEOUT: Duration = Duration::from_secs(3600);
/// The Linux test's limit (a whole kernel boot under nested emulation),
/// unless `MOJITO_LINUX_TIMEOUT` (seconds) says otherwise.
pub const LINUX_TIMEOUT: Duration = Duration::from_secs(900);

fn timeout() -> Duration {
    std::env::var("MOJITO_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(TIMEOUT, Duration::from_secs)
}

fn timeout_for(mode: expect::Mode) -> Duration {
    match mode {
        expect::Mode::Linux => std::env::var("MOJITO_LINUX_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(LINUX_TIMEOUT, Duration::from_secs),
        expect::Mode::Slow => std::env::var("MOJITO_SLOW_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(SLOW_TIMEOUT, Duration::from_secs),
        _ => timeout(),
    }
}

/// Set it (to anything) to keep the run directories of passing tests too.
pub const KEEP_RUNS_VAR: &str = "MOJITO_KEEP_RUNS";

/// Set it to QEMU `-d` items (e.g. `int,cpu_reset`) to trace QEMU runs.
pub const QEMU_TRACE_VAR: &str = "MOJITO_QEMU_TRACE";

/// Which image QEMU boots.
#[derive(Clone, Copy, Debug)]
pub enum Disk {
    /// The UEFI image on an emulated USB stick (xHCI), with OVMF.
    UefiUsb,
    /// The BIOS image as the first IDE disk, with SeaBIOS.
    Bios,
    /// The BIOS image without the control domain (the hypervisor runs the
    /// guests itself).
    BuiltinBios,
    /// The shell test's BIOS image (the control domain and `counter`).
    ShellBios,
    /// The slow tests' BIOS image (`crate::slow`).
    SlowBios,
    /// The Linux test's BIOS image (`crate::linux`): the `vmlinux`.
    LinuxBios,
    /// The same with the bzImage.
    LinuxBzBios,
}

/// A finished run.
pub struct Run {
    pub test: &'static str,
    pub command: String,
    pub outcome: Outcome,
    /// The emulator's own log, as much of it as explains a failure.
    pub emulator_log: String,
    /// Who runs the test guests in this image.
    pub mode: expect::Mode,
    /// Whether keys were typed into the console (and what went wrong with
    /// that).
    pub typed: Option<Result<(), String>>,
    /// The TSC frequency the emulator is known to run at (kHz), which the
    /// hypervisor's calibration must find ([`Run::tsc_known`]).
    pub tsc_khz: Option<u64>,
    /// The emulated machine's CPUs, which the hypervisor must all start.
    pub cpus: u32,
    dir: TempDir,
}

/// Starts typing `keys` into a run's console, if there are any (through
/// QEMU's QMP socket `qmp` for the keyboard and the screen).
fn typist(
    test: &str,
    serial: &std::path::Path,
    keys: Vec<Keys>,
    qmp: Option<std::path::PathBuf>,
) -> Option<Typist> {
    (!keys.is_empty()).then(|| {
        Typist::start(serial.to_path_buf(), keys, qmp).unwrap_or_else(|e| panic!("{test}: {e}"))
    })
}

/// The QMP socket of a QEMU run whose keys need it.
fn qmp_socket(dir: &std::path::Path, keys: &[Keys]) -> Option<std::path::PathBuf> {
    keys.iter()
        .any(|k| k.via != Via::Serial)
        .then(|| dir.join("qmp.sock"))
}

/// Waits for the typist and reads the serial log it wrote.
fn finish_typing(typist: Option<Typist>, outcome: &mut Outcome) -> Option<Result<(), String>> {
    let t = typist?;
    let serial = t.serial.clone();
    let done = t.finish();
    outcome.serial = xtask::workspace::read_serial(&serial);
    Some(done)
}

fn run_dir(test: &str) -> TempDir {
    let runs = crate::runs_dir();
    std::fs::create_dir_all(&runs)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", runs.display()));
    tempfile::Builder::new()
        .prefix(&format!("{test}-"))
        .tempdir_in(&runs)
        .unwrap_or_else(|e| panic!("cannot create a run directory in {}: {e}", runs.display()))
}

/// Boots `disk` in QEMU TCG with CPU model `cpu` (one with SVM), with
/// `more` QEMU arguments, typing `keys` into its console.
pub fn qemu(
    test: &'static str,
    disk: Disk,
    cpu: &str,
    mem_mib: u64,
    smp: u32,
    more: &[&str],
    keys: Vec<Keys>,
) -> Run {
    if let Err(e) = sysdeps::check(sysdeps::QEMU) {
        panic!("{test}: {e:#}");
    }
    let images = crate::images();
    let dir = run_dir(test);
    let boot = match disk {
        Disk::UefiUsb => {
            let vars = qemu::fresh_vars(&dir.path().join("OVMF_VARS_4M.fd"))
                .unwrap_or_else(|e| panic!("{test}: {e:#}"));
            Boot::UefiUsb {
                image: images.uefi.clone(),
                vars,
            }
        }
        Disk::Bios => Boot::Bios {
            image: images.bios.clone(),
        },
        Disk::BuiltinBios => Boot::Bios {
            image: images.builtin_bios.clone(),
        },
        Disk::ShellBios => Boot::Bios {
            image: images.shell_bios.clone(),
        },
        Disk::SlowBios => Boot::Bios {
            image: images.slow_bios.clone(),
        },
        Disk::LinuxBios => Boot::Bios {
            image: images.linux_bios.clone(),
        },
        Disk::LinuxBzBios => Boot::Bios {
            image: images.linux_bz_bios.clone(),
        },
    };
    let mode = match disk {
        Disk::BuiltinBios => expect::Mode::Builtin,
        Disk::ShellBios => expect::Mode::Shell,
        Disk::SlowBios => expect::Mode::Slow,
        Disk::LinuxBios | Disk::LinuxBzBios => expect::Mode::Linux,
        Disk::UefiUsb | Disk::Bios => expect::Mode::Control,
    };
    let serial = dir.path().join("serial.txt");
    let qmp = qmp_socket(dir.path(), &keys);
    let typist = typist(test, &serial, keys, qmp.clone());
    // QEMU's own trace (`-d`), on request: it is large, and OVMF fills
    // `guest_errors` with TPM probes.
    let trace_items = std::env::var(QEMU_TRACE_VAR).ok().filter(|v| !v.is_empty());
    let trace_file = dir.path().join("qemu-trace.log");
    let mut extra: Vec<String> = more.iter().map(|s| s.to_string()).collect();
    if let Some(q) = &qmp {
        extra.extend([
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", q.display()),
        ]);
    }
    if let Some(items) = &trace_items {
        extra.extend([
            "-d".into(),
            items.clone(),
            "-D".into(),
            trace_file.display().to_string(),
        ]);
    }
    let machine = Qemu {
        boot,
        accel: Accel::TcgOneThread(cpu.into()),
        mem_mib,
        smp,
        serial: typist
            .as_ref()
            .map_or_else(|| Serial::File(serial.clone()), |t| Serial::Tcp(t.port)),
        extra,
    };
    let cmd = machine.command();
    let command = command_line(&cmd);
    let watch = Watch {
        serial,
        emulator_out: dir.path().join("qemu.log"),
        timeout: Some(timeout_for(mode)),
        echo: false,
    };
    let mut outcome = runner::run(cmd, &watch).unwrap_or_else(|e| panic!("{test}: {e:#}"));
    let typed = finish_typing(typist, &mut outcome);
    let mut emulator_log = format!("QEMU's output:\n{}", outcome.emulator_out);
    match trace_items {
        Some(items) => {
            let trace = read_lossy(&trace_file);
            let _ = write!(
                emulator_log,
                "\nQEMU's -d {items} trace, last 60 lines:\n{}",
                tail(&trace, 60)
            );
        }
        None => {
            let _ = write!(
                emulator_log,
                "(for QEMU's own trace, rerun with {QEMU_TRACE_VAR}=int,cpu_reset,guest_errors)"
            );
        }
    }
    Run {
        test,
        command,
        outcome,
        emulator_log,
        mode,
        typed,
        // `-icount shift=0`: one instruction per ns, and QEMU's TSC and PIT
        // both follow that virtual clock, so the TSC runs at 1 GHz.
        tsc_khz: more
            .windows(2)
            .any(|w| w[0] == "-icount" && w[1].starts_with("shift=0,"))
            .then_some(1_000_000),
        cpus: smp,
        dir,
    }
}

/// Boots the BIOS image in Bochs with CPU model `model` (one with VMX),
/// typing `keys` into its console.
pub fn bochs(
    test: &'static str,
    model: &str,
    mem_mib: u64,
    cpus: u32,
    mode: expect::Mode,
    keys: Vec<Keys>,
) -> Run {
    if let Err(e) = sysdeps::check(sysdeps::BOCHS) {
        panic!("{test}: {e:#}");
    }
    let images = crate::images();
    let dir = run_dir(test);
    // A copy: Bochs opens its disk read-write, and tests run in parallel.
    let disk = dir.path().join("disk.img");
    let image = match mode {
        expect::Mode::Control => &images.bios,
        expect::Mode::Builtin => &images.builtin_bios,
        expect::Mode::Shell => &images.shell_bios,
        expect::Mode::Slow => &images.slow_bios,
        expect::Mode::Linux => &images.linux_bios,
    };
    std::fs::copy(image, &disk)
        .unwrap_or_else(|e| panic!("{test}: cannot copy {}: {e}", image.display()));
    let serial = dir.path().join("serial.txt");
    // A table check drives Bochs's debugger through a FIFO as its script.
    let (debugger, debugger_script) = if keys.iter().any(|k| k.via == Via::TableCheck) {
        let (d, fifo) = crate::physmem::BochsDebugger::create(dir.path())
            .unwrap_or_else(|e| panic!("{test}: {e}"));
        (Some(d), Some(fifo))
    } else {
        (None, None)
    };
    let typist = (!keys.is_empty()).then(|| {
        Typist::start_with(serial.clone(), keys, None, debugger)
            .unwrap_or_else(|e| panic!("{test}: {e}"))
    });
    let machine = Bochs {
        dir: dir.path().to_path_buf(),
        image: disk,
        cpu_model: model.into(),
        cpus,
        mem_mib,
        com1_tcp: typist.as_ref().map(|t| t.port),
        debugger_script,
    };
    let cmd = machine
        .prepare()
        .unwrap_or_else(|e| panic!("{test}: {e:#}"));
    let command = command_line(&cmd);
    let watch = Watch {
        serial: machine.serial_path(),
        emulator_out: dir.path().join("bochs.out"),
        timeout: Some(timeout_for(mode)),
        echo: false,
    };
    let mut outcome = runner::run(cmd, &watch).unwrap_or_else(|e| panic!("{test}: {e:#}"));
    let typed = finish_typing(typist, &mut outcome);
    let log = read_lossy(&machine.log_path());
    let emulator_log = format!(
        "Bochs's output, last 20 lines:\n{}\nbochs.log, the last 40 lines about VMX, panics \
         and errors:\n{}\nbochs.log, last 40 lines:\n{}",
        tail(&outcome.emulator_out, 20),
        tail(&bochs::interesting_log_lines(&log).join("\n"), 40),
        tail(&log, 40)
    );
    Run {
        test,
        command,
        outcome,
        emulator_log,
        mode,
        typed,
        tsc_khz: Some(xtask::bochs::IPS / 1000),
        cpus,
        dir,
    }
}

/// `text` without the terminal escape sequences OVMF sends (they would
/// clear the screen) and with other control characters made visible.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters, then a final byte in '@'..='~'.
                if chars.next() == Some('[') {
                    chars.by_ref().find(|c| ('@'..='~').contains(c));
                }
            }
            '\r' => {}
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Run {
    /// Asserts that the shell session (`crate::shell`) went as it should
    /// under `extension` and that `poweroff` ended the emulator, with
    /// status 0 where `status_zero` (QEMU; Bochs always exits with 1).
    pub fn assert_shell(self, extension: &str, status_zero: bool) {
        let o = &self.outcome;
        let mut problems = crate::shell::problems(&o.serial, extension);
        let report = std::fs::read_to_string(self.dir.path().join(crate::shell::TABLES_REPORT));
        problems.extend(crate::shell::table_problems(report.ok().as_deref()));
        if let Some(Err(e)) = &self.typed {
            problems.insert(0, format!("typing into the console: {e}"));
        }
        for fatal in o
            .serial
            .lines()
            .filter(|l| l.contains("FATAL") || l.contains("FAIL "))
        {
            problems.push(format!("a failure: {fatal:?}"));
        }
        if o.timed_out {
            problems.insert(0, format!("timed out after {} s", timeout().as_secs()));
        } else if status_zero && o.status.and_then(|s| s.code()) != Some(0) {
            let status = o.status.map_or("none".into(), qemu::describe_exit);
            problems.insert(0, format!("poweroff did not end the emulator: {status}"));
        }
        self.report(problems, "the shell session went as expected");
    }

    /// Asserts that the slow tests' script ran as `crate::slow` expects and
    /// that `poweroff` ended the emulator (status 0 where `status_zero`).
    pub fn assert_slow(self, status_zero: bool) {
        let o = &self.outcome;
        let mut problems = crate::slow::problems(&o.serial);
        if o.timed_out {
            problems.insert(
                0,
                format!("timed out after {} s", timeout_for(self.mode).as_secs()),
            );
        } else if status_zero && o.status.and_then(|s| s.code()) != Some(0) {
            let status = o.status.map_or("none".into(), qemu::describe_exit);
            problems.insert(0, format!("poweroff did not end the emulator: {status}"));
        }
        self.report(problems, "exhaustion, soak, flood and probe as expected");
    }

    /// Asserts that the Linux guest reached its userspace marker with
    /// `vcpus` CPUs and powered off, and that `poweroff` then ended the
    /// emulator (status 0 where `status_zero`).
    pub fn assert_linux(self, vcpus: u32, status_zero: bool) {
        let o = &self.outcome;
        let disk = std::fs::read(&crate::images().linux_disk).unwrap_or_default();
        let disk_line = String::from_utf8_lossy(&disk)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut problems = crate::linux::problems(&o.serial, vcpus, &disk_line);
        if o.timed_out {
            problems.insert(
                0,
                format!("timed out after {} s", timeout_for(self.mode).as_secs()),
            );
        } else if status_zero && o.status.and_then(|s| s.code()) != Some(0) {
            let status = o.status.map_or("none".into(), qemu::describe_exit);
            problems.insert(0, format!("poweroff did not end the emulator: {status}"));
        }
        let secs = crate::linux::boot_seconds(&o.serial);
        let what = match secs {
            Some(s) => format!(
                "Linux reached userspace with {vcpus} vCPUs ({s:.1} s from its first line to the \
                 marker, its own clock) and powered off"
            ),
            None => "Linux reached userspace and powered off".into(),
        };
        self.report(problems, &what);
    }

    /// Asserts that keys typed on the PS/2 keyboard reached the shell and
    /// that the console is on the screen (`crate::screen`), and that
    /// `poweroff` ended QEMU with status 0.
    pub fn assert_screen(self) {
        let o = &self.outcome;
        let shot = std::fs::read(self.dir.path().join(crate::screen::SCREENSHOT));
        let mut problems = match &shot {
            Ok(bytes) => crate::screen::problems(&o.serial, bytes),
            Err(e) => vec![format!("no screendump: {e}")],
        };
        if let Some(Err(e)) = &self.typed {
            problems.insert(0, format!("typing: {e}"));
        }
        if o.timed_out {
            problems.insert(0, format!("timed out after {} s", timeout().as_secs()));
        } else if o.status.and_then(|s| s.code()) != Some(0) {
            let status = o.status.map_or("none".into(), qemu::describe_exit);
            problems.insert(0, format!("poweroff did not end QEMU: {status}"));
        }
        self.report(
            problems,
            "keys from the PS/2 keyboard reached the shell, which is on the screen",
        );
    }

    /// Asserts that `reboot` reset the machine and it booted again (Bochs
    /// resets and reboots; `poweroff` then ends it).
    pub fn assert_booted_again(self) {
        let o = &self.outcome;
        let mut problems = crate::shell::reboot_problems(&o.serial);
        // "powering off" is expected once, after the second boot.
        problems.retain(|p| !p.starts_with("the machine did not reset"));
        let lines: Vec<&str> = o.serial.lines().map(str::trim_end).collect();
        let reboot = lines.iter().position(|l| *l == "control: rebooting");
        let again = reboot.and_then(|r| {
            lines[r..]
                .iter()
                .position(|l| l.starts_with("mojito: Mojito "))
                .map(|p| r + p)
        });
        match again {
            None => problems.push("the hypervisor did not start again after `reboot`".into()),
            Some(a) => {
                if !lines[a..].contains(&"control: powering off") {
                    problems.push("no `poweroff` after the second boot".into());
                }
            }
        }
        if let Some(Err(e)) = &self.typed {
            problems.insert(0, format!("typing into the console: {e}"));
        }
        if o.timed_out {
            problems.insert(0, format!("timed out after {} s", timeout().as_secs()));
        }
        self.report(problems, "reboot reset the machine, which booted again");
    }

    /// Asserts that `reboot` reset the machine: QEMU, run with
    /// `-no-reboot`, ends with status 0 on the reset.
    pub fn assert_rebooted(self) {
        let o = &self.outcome;
        let mut problems = crate::shell::reboot_problems(&o.serial);
        if let Some(Err(e)) = &self.typed {
            problems.insert(0, format!("typing into the console: {e}"));
        }
        if o.timed_out {
            problems.insert(0, format!("timed out after {} s", timeout().as_secs()));
        } else if o.status.and_then(|s| s.code()) != Some(0) {
            let status = o.status.map_or("none".into(), qemu::describe_exit);
            problems.insert(0, format!("QEMU did not end on the reset: {status}"));
        }
        self.report(problems, "reboot reset the machine");
    }

    /// Prints the outcome: on success one line; on failure the problems,
    /// the whole serial log and the emulator's log, keeping the run
    /// directory, and fails the test.
    fn report(self, problems: Vec<String>, success: &str) {
        let o = &self.outcome;
        let secs = o.elapsed.as_secs_f64();
        if problems.is_empty() {
            println!(
                "{}: {success}; the machine stopped after {secs:.1} s",
                self.test
            );
            if std::env::var_os(KEEP_RUNS_VAR).is_some() {
                println!(
                    "{}: run directory kept: {}",
                    self.test,
                    self.dir.keep().display()
                );
            }
            return;
        }
        let kept = self.dir.keep();
        println!(
            "{test} failed after {secs:.1} s:\n  - {list}\n\ncommand: {command}\nrun directory \
             (kept): {dir}\n\n===== serial log =====\n{serial}\n===== end of serial log \
             =====\n\n{emulator}\n",
            test = self.test,
            list = problems.join("\n  - "),
            command = self.command,
            dir = kept.display(),
            serial = printable(&o.serial),
            emulator = printable(&self.emulator_log),
        );
        // The report above says it all: fail the test without a panic
        // message and backtrace pointing here.
        std::panic::resume_unwind(Box::new(format!("{} failed", self.test)));
    }

    /// Asserts that every built-in guest ended as it should under
    /// `extension` (`SVM`/`VMX`), and, when `powered_off`, that the
    /// emulator exited with status 0 (ACPI power-off). Prints the demo's
    /// benchmark figure. On failure prints the whole serial log and the
    /// emulator's log, and keeps the run directory.
    pub fn assert_all_guests_ran(self, extension: &str, powered_off: bool) {
        let o = &self.outcome;
        let mut problems = expect::problems(&o.serial, extension, self.mode);
        if let Some(khz) = self.tsc_khz {
            problems.extend(expect::tsc_problem(&o.serial, khz));
            problems.extend(expect::timer_problem(&o.serial, khz));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        problems.extend(expect::rtc_problem(&o.serial, now));
        problems.extend(expect::smp_problem(&o.serial, extension, self.cpus));
        if self.mode == expect::Mode::Control {
            problems.extend(expect::guest_cpus_problem(&o.serial, self.cpus));
        }
        match &self.typed {
            Some(Err(e)) => problems.push(format!("typing into the console: {e}")),
            Some(Ok(())) => problems.extend(expect::typing_problems(&o.serial)),
            None => {}
        }
        // The exit streams against host KVM's, once the boot itself is good.
        let mut differential = Vec::new();
        if self.mode == expect::Mode::Control && problems.is_empty() {
            let report = crate::differential::check(&o.serial);
            problems.extend(report.problems);
            differential = report.lines;
        }
        if o.timed_out {
            problems.insert(0, format!("timed out after {} s", timeout().as_secs()));
        } else if powered_off && o.status.and_then(|s| s.code()) != Some(0) {
            let status = o.status.map_or("none".into(), qemu::describe_exit);
            problems.insert(0, format!("the emulator did not power off: {status}"));
        }
        if problems.is_empty() {
            let cpu = o.serial.lines().find(|l| l.starts_with("mojito: cpu0: "));
            println!(
                "{}: {}",
                self.test,
                cpu.unwrap_or("no cpu0 line").trim_end()
            );
            // The bench guest's figures (not judged: `cargo xtask bench`
            // is where they mean something).
            let figures: Vec<String> = expect::BENCH_CASES
                .iter()
                .filter_map(|c| Some(format!("{c} {}", expect::bench_figure(&o.serial, c)?)))
                .collect();
            if !figures.is_empty() {
                println!(
                    "{}: bench, TSC ticks per round trip: {}",
                    self.test,
                    figures.join(", ")
                );
            }
            if let Some(Ok(())) = self.typed {
                let lines: Vec<&str> = o.serial.lines().collect();
                let at = lines.iter().position(|l| l.trim_end() == "mojito> list");
                let row = at.and_then(|a| lines[a..].iter().find(|l| l.contains(" spin ")));
                println!(
                    "{}: typed while spin spun; `list` answered: {:?}; RUNs ended by COM1 input: {}",
                    self.test,
                    row.map_or("", |r| r.trim_end()),
                    expect::runs_ended_by_input(&o.serial)
                );
            }
            for line in &differential {
                println!("{}: exit stream {line}", self.test);
            }
        }
        self.report(problems, "all guests ran");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_drops_escape_sequences() {
        let ovmf = "\u{1b}[2J\u{1b}[01;01H\u{1b}[=3hBdsDxe: ok\r\n\u{7}bell";
        assert_eq!(super::printable(ovmf), "BdsDxe: ok\n\\u{7}bell");
    }
}
