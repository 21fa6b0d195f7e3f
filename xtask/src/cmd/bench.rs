//! `cargo xtask bench` (issue 9): boots a bench image — the control domain
//! and the `bench` guest — under QEMU (SVM, `-icount shift=0,align=off`)
//! and Bochs (VMX) at the same time, times the VM lifecycle on the host's
//! `/dev/kvm`, measures the images and the code, and writes the report
//! (`xtask::bench`) to the terminal, `target/bench/bench.json` and
//! `target/bench/exits.svg`. Figures are never pass/fail: the command
//! fails only when a figure is missing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xtask::bench::{Backend, HostLifecycle, Report, Sizes, code_lines};
use xtask::bochs::{self, Bochs};
use xtask::image::{self, BundleEntry, CONTROL_ELF};
use xtask::qemu::{Accel, Boot, Qemu, Serial, TCG_SVM_CPU};
use xtask::runner::{self, Watch};
use xtask::{Workspace, artifacts, sysdeps};

/// Each emulator run ends by itself in about 10 s; this is the limit.
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// Host lifecycle runs (the median counts) and the warm-up before them.
const HOST_RUNS: usize = 21;
const HOST_WARMUP: usize = 3;
/// RAM of each emulated machine, MiB.
const MACHINE_MIB: u64 = 512;
/// The crates whose code lines are counted, by directory.
const CRATES: [(&str, &str); 8] = [
    ("hypervisor", "hypervisor/src"),
    ("control", "control/src"),
    ("vmm", "vmm/src"),
    ("abi", "abi/src"),
    ("loader", "loader/src"),
    ("guests", "tests/guests/src"),
    ("tests", "tests/src"),
    ("xtask", "xtask/src"),
];

pub fn bench(ws: &Workspace) -> Result<ExitCode> {
    sysdeps::ensure(sysdeps::QEMU)?;
    sysdeps::ensure(sysdeps::BOCHS)?;
    let dir = ws.target.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    println!("xtask: bench [1/4] building the hypervisor, control domain and bench guest");
    let built = artifacts::build(ws)?;
    let guest = built
        .guest("bench")
        .context("the guests crate has no `bench` binary")?;
    let entries = [
        BundleEntry {
            name: CONTROL_ELF.into(),
            path: built.control.clone(),
        },
        BundleEntry {
            name: "guests/bench.elf".into(),
            path: guest.to_path_buf(),
        },
    ];
    // Create and start the bench guest, wait for it, power off.
    let script = dir.join(image::BOOT_SCRIPT);
    std::fs::write(&script, image::test_script(&entries))
        .with_context(|| format!("cannot write {}", script.display()))?;
    let entries = [
        entries[0].clone(),
        entries[1].clone(),
        BundleEntry {
            name: image::BOOT_SCRIPT.into(),
            path: script,
        },
    ];
    let loader = image::build_loader(ws)?;
    let disk = dir.join("mojito-bench-bios.img");
    image::write_images(&loader, &built.hypervisor, None, &disk, &mut entries.iter())?;

    // First, while nothing else runs: wall time on the host.
    println!("xtask: bench [2/4] the VM lifecycle on the host's /dev/kvm ({HOST_RUNS} runs)");
    let (host, host_problem) = match host_lifecycle() {
        Ok(h) => (Some(h), None),
        Err(e) => (None, Some(e)),
    };

    println!(
        "xtask: bench [3/4] booting the bench image: QEMU (SVM, -icount) and Bochs (VMX) at \
         once, about 10 s (logs in {})",
        ws.show(&dir)
    );
    let svm_dir = fresh_dir(&dir.join("svm"))?;
    let vmx_dir = fresh_dir(&dir.join("vmx"))?;
    let qemu = {
        let disk = disk.clone();
        std::thread::spawn(move || run_qemu(&disk, &svm_dir))
    };
    // Bochs writes to its disk: it gets a copy.
    let vmx_disk = vmx_dir.join("disk.img");
    std::fs::copy(&disk, &vmx_disk).with_context(|| format!("cannot copy {}", disk.display()))?;
    let vmx = run_bochs(&vmx_disk, &vmx_dir);
    let svm = qemu
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the QEMU run panicked")));
    let backends = vec![svm?, vmx?];

    println!("xtask: bench [4/4] sizes and lines of code");
    let sizes = Sizes {
        hypervisor_bytes: artifacts::stripped_size(ws, &built.hypervisor)?,
        control_bytes: artifacts::stripped_size(ws, &built.control)?,
        lines: CRATES
            .iter()
            .map(|(name, src)| Ok((name.to_string(), lines_in(&ws.root.join(src))?)))
            .collect::<Result<_>>()?,
    };
    let report = Report {
        version: env!("CARGO_PKG_VERSION").into(),
        backends,
        host,
        host_problem,
        sizes,
    };
    println!("\n{}", report.table());
    let json = dir.join("bench.json");
    let svg = dir.join("exits.svg");
    std::fs::write(&json, report.json())
        .with_context(|| format!("cannot write {}", json.display()))?;
    std::fs::write(&svg, report.svg())
        .with_context(|| format!("cannot write {}", svg.display()))?;
    println!(
        "xtask: bench: wrote {} and {}",
        ws.show(&json),
        ws.show(&svg)
    );
    let missing: Vec<String> = report
        .backends
        .iter()
        .filter_map(|b| Some(format!("{}: {}", b.name, b.problem.as_ref()?)))
        .collect();
    if missing.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "xtask: bench: figures are missing ({}); the serial logs are in {}",
            missing.join("; "),
            ws.show(&dir)
        );
        Ok(ExitCode::FAILURE)
    }
}

/// An empty directory at `path`.
fn fresh_dir(path: &Path) -> Result<PathBuf> {
    if path.exists() {
        std::fs::remove_dir_all(path)
            .with_context(|| format!("cannot remove {}", path.display()))?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// The serial log of a run, with the emulator's own output if the run
/// did not end as it should.
fn finish(name: &str, machine: &str, outcome: &runner::Outcome) -> Backend {
    let mut b = Backend::from_serial(
        name,
        machine,
        &outcome.serial,
        outcome.elapsed.as_secs_f64(),
    );
    if outcome.timed_out {
        b.problem = Some(format!(
            "timed out after {} s; {}",
            RUN_LIMIT.as_secs(),
            b.problem.unwrap_or_default()
        ));
    }
    if b.problem.is_some() {
        eprintln!(
            "xtask: bench: the {name} run is missing figures. Its serial log:\n{}\nThe \
             emulator's output:\n{}",
            outcome.serial, outcome.emulator_out
        );
    }
    b
}

fn run_qemu(disk: &Path, dir: &Path) -> Result<Backend> {
    let machine = Qemu {
        boot: Boot::Bios {
            image: disk.to_path_buf(),
        },
        accel: Accel::Tcg(TCG_SVM_CPU.into()),
        mem_mib: MACHINE_MIB,
        smp: 1,
        serial: Serial::File(dir.join("serial.txt")),
        extra: vec!["-icount".into(), "shift=0,align=off".into()],
    };
    let watch = Watch {
        serial: dir.join("serial.txt"),
        emulator_out: dir.join("qemu.log"),
        timeout: Some(RUN_LIMIT),
        echo: false,
    };
    let outcome = runner::run(machine.command(), &watch)?;
    let what = format!("QEMU 7.2 TCG, -cpu {TCG_SVM_CPU}, -icount shift=0,align=off");
    Ok(finish("SVM", &what, &outcome))
}

fn run_bochs(disk: &Path, dir: &Path) -> Result<Backend> {
    let machine = Bochs {
        dir: dir.to_path_buf(),
        image: disk.to_path_buf(),
        cpu_model: bochs::DEFAULT_MODEL.into(),
        cpus: 1,
        mem_mib: MACHINE_MIB,
        com1_tcp: None,
        debugger_script: None,
    };
    let watch = Watch {
        serial: machine.serial_path(),
        emulator_out: dir.join("bochs.out"),
        timeout: Some(RUN_LIMIT),
        echo: false,
    };
    let outcome = runner::run(machine.prepare()?, &watch)?;
    let what = format!("Bochs, {} (one tick per instruction)", bochs::DEFAULT_MODEL);
    Ok(finish("VMX", &what, &outcome))
}

/// The lifecycle on `/dev/kvm`: the median of each step over the runs.
fn host_lifecycle() -> Result<HostLifecycle, String> {
    let kvm = vmm::host::HostKvm::open().map_err(|e| format!("/dev/kvm: {e}"))?;
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    let mut runs = Vec::new();
    for i in 0..HOST_WARMUP + HOST_RUNS {
        let l = vmm::bench::lifecycle(&kvm, now)?;
        if i >= HOST_WARMUP {
            runs.push(l);
        }
    }
    let median = |f: fn(&vmm::bench::Lifecycle) -> u64| {
        let mut v: Vec<u64> = runs.iter().map(f).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let steps = [
        ("create_vm", median(|l| l.create_vm)),
        ("memory", median(|l| l.memory)),
        ("create_vcpu", median(|l| l.create_vcpu)),
        ("run", median(|l| l.first_exit)),
        ("close", median(|l| l.close)),
    ];
    Ok(HostLifecycle {
        runs: runs.len(),
        steps: steps.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    })
}

/// Code lines of every `.rs` file under `dir`, but not the hypervisor's
/// `fuzzing/` (a fake back end and harness for `cargo xtask fuzz`, built
/// only for host tests and the fuzz crate, never into the hypervisor).
fn lines_in(dir: &Path) -> Result<usize> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n == "fuzzing") {
            continue;
        }
        if path.is_dir() {
            total += lines_in(&path)?;
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            total += code_lines(&text);
        }
    }
    Ok(total)
}
