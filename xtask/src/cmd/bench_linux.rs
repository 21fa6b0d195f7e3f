//! `cargo xtask bench linux` (issue 7): how much slower Debian's kernel
//! boots under Mojito than directly in the same emulator. Both boots use
//! the same PVH `vmlinux`, initramfs and command line in QEMU TCG (one TCG
//! thread, `-cpu EPYC` less what the boot tests leave out, 2 CPUs):
//!
//! - direct: QEMU's own `-kernel` PVH boot on QEMU's platform;
//! - Mojito: the Linux test image (`xtask::image::LINUX_BIOS_IMAGE`): the
//!   control domain runs the kernel as VM `linux` with 2 vCPUs.
//!
//! Each is timed on the host's clock from the kernel's first line on the
//! serial port to the initramfs's marker, median of [`RUNS`] runs; QEMU
//! is stopped at the marker. A benchmark that prints figures, never a
//! pass/fail on them (the goal is a ratio of 1.3 or less).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use xtask::image::{self, LINUX_CMDLINE, LINUX_VCPUS};
use xtask::qemu::{Accel, Boot, Qemu, Serial, TCG_SVM_CPU};
use xtask::{Workspace, linux, sysdeps};

/// Boots per way.
const RUNS: usize = 3;
/// The longest one boot may take.
const LIMIT: Duration = Duration::from_secs(600);
/// The machine's RAM in both ways (the Mojito way gives the VM 256 MiB of
/// it; the direct way gives the kernel all of it).
const MEM_MIB: u64 = 1024;

pub fn bench_linux(ws: &Workspace) -> Result<ExitCode> {
    sysdeps::check(sysdeps::QEMU)?;
    let images = image::build_images(ws, &[], image::Purpose::Tests)?;
    let assets = linux::assets(ws)?;
    let accel = Accel::TcgOneThread(TCG_SVM_CPU.into());
    let direct = Qemu {
        boot: Boot::Bios {
            image: images.bios.clone(),
        },
        accel: accel.clone(),
        mem_mib: MEM_MIB,
        smp: LINUX_VCPUS,
        serial: Serial::Terminal,
        extra: Vec::new(),
    };
    // The direct way boots no disk: -kernel replaces the BIOS image.
    let mut direct_cmd = Command::new("qemu-system-x86_64");
    let args: Vec<String> = direct.args();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "-drive" {
            skip = true;
            continue;
        }
        direct_cmd.arg(a);
    }
    direct_cmd
        .arg("-kernel")
        .arg(&assets.vmlinux)
        .arg("-initrd")
        .arg(&assets.initramfs)
        .arg("-append")
        .arg(LINUX_CMDLINE);
    let mojito = Qemu {
        boot: Boot::Bios {
            image: images.linux_bios.clone(),
        },
        accel,
        mem_mib: MEM_MIB,
        smp: 2,
        serial: Serial::Terminal,
        extra: Vec::new(),
    };
    println!(
        "bench linux: Debian {} (PVH vmlinux, {} vCPUs, \"{LINUX_CMDLINE}\"), QEMU TCG one thread, \
         -cpu EPYC, {} runs each; seconds from the kernel's first serial line to the marker",
        assets.release, LINUX_VCPUS, RUNS
    );
    let mut direct_times = Vec::new();
    let mut mojito_times = Vec::new();
    for run in 1..=RUNS {
        let d = time_boot(&mut direct_cmd, "[    0.000000] Linux version")
            .context("the direct boot")?;
        println!("  run {run}: direct in QEMU  {d:6.2} s");
        direct_times.push(d);
        let m = time_boot(&mut mojito.command(), "[linux] ").context("the boot under Mojito")?;
        println!("  run {run}: under Mojito    {m:6.2} s");
        mojito_times.push(m);
    }
    let (d, m) = (median(&mut direct_times), median(&mut mojito_times));
    println!(
        "bench linux: median direct {d:.2} s, under Mojito {m:.2} s: ratio {:.2} (goal: 1.3 or less)",
        m / d
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `cmd` with its serial port on stdout and returns the seconds from
/// the first line containing `first` to the marker; kills QEMU then, or
/// after [`LIMIT`] whatever it prints (lines are read on a thread of their
/// own, so a silent QEMU cannot hold this up).
fn time_boot(cmd: &mut Command, first: &str) -> Result<f64> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("QEMU's stdout")?;
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf).into_owned();
            if send.send((Instant::now(), line)).is_err() {
                break;
            }
            buf.clear();
        }
    });
    let deadline = Instant::now() + LIMIT;
    let marker = format!("{} cpus=", linux::MARKER);
    let mut t0 = None;
    let mut result = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok((when, line)) = lines.recv_timeout(left) else {
            break; // QEMU ended, or the limit passed.
        };
        if t0.is_none() && line.contains(first) {
            t0 = Some(when);
        }
        if line.contains(&marker) {
            result = t0.map(|t| when.duration_since(t).as_secs_f64());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Some(s) => Ok(s),
        None => bail!(
            "no `{marker}` line after `{first}` within {} s",
            LIMIT.as_secs()
        ),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
