//! `cargo xtask fuzz`: runs the `fuzz/` crate's cargo-fuzz targets for a
//! while each, installing cargo-fuzz first if it is missing: `mmio_decode`
//! (the MMIO instruction decoder against iced-x86), `boot_bundle` (the
//! boot-bundle reader), `shell_input` (the shell's line editor, parser
//! and keymap), `port_devices` (the VMM's device models: UART, PIT,
//! RTC, debug ports) and `hypercall` (the control domain's hypercalls, the
//! KVM API, on a fake back end: `hypervisor::fuzzing`).

use std::process::Command;

use anyhow::{Context, Result, bail};
use xtask::Workspace;
use xtask::workspace::run_checked;

/// The cargo-fuzz release the targets are known to build with.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// A fuzz target in `fuzz/fuzz_targets/` and how it is run.
pub struct Target {
    pub name: &'static str,
    /// libFuzzer's longest input.
    pub max_len: u32,
    /// A libFuzzer dictionary in `fuzz/` (`-dict=`).
    pub dict: Option<&'static str>,
    /// Built without AddressSanitizer and comparison tracing (`-s none
    /// --no-trace-compares`): for a target of safe Rust only, where ASan
    /// finds nothing Rust's own checks do not, and whose time goes to
    /// instrumented compares that teach the fuzzer nothing (the dictionary
    /// gives it the words instead).
    pub plain: bool,
}

/// The fuzz targets, with what each needs.
pub const TARGETS: [Target; 6] = [
    // An x86 instruction is at most 15 bytes.
    Target {
        name: "mmio_decode",
        max_len: 15,
        dict: None,
        plain: false,
    },
    Target {
        name: "boot_bundle",
        max_len: 4096,
        dict: None,
        plain: false,
    },
    // Twice a full line (LINE_MAX, 256) with room for editing keys. The
    // time went to the unknown-command suggestions' edit distance
    // (`parse::closest`, ~80%), a row allocated per character and every
    // compare traced: ~1,500-3,000 inputs/s with ASan and tracing,
    // ~6,000 without at this length (10.2 M in 27 min); the dictionary
    // holds the command words and escape sequences tracing would
    // otherwise have found.
    Target {
        name: "shell_input",
        max_len: 512,
        dict: Some("shell_input.dict"),
        plain: true,
    },
    // 64 accesses of 6 bytes: long enough to program a PIT channel, move
    // the clock and read it back several times over.
    Target {
        name: "port_devices",
        max_len: 384,
        dict: None,
        plain: false,
    },
    // A sequence of calls: 6-byte headers and the argument bytes (a
    // `kvm_sregs` is 312), enough for a VM, its memory, a vCPU and a
    // dozen calls on them.
    Target {
        name: "hypercall",
        max_len: 1024,
        dict: None,
        plain: false,
    },
    // 100 operations of 12 bytes on one local APIC.
    Target {
        name: "lapic",
        max_len: 1200,
        dict: None,
        plain: false,
    },
];

fn cargo_fuzz_present(ws: &Workspace) -> bool {
    ws.cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fuzzes each target for `seconds`; libFuzzer prints its executions.
pub fn fuzz(ws: &Workspace, seconds: u32) -> Result<()> {
    if !cargo_fuzz_present(ws) {
        println!(
            "xtask: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --version \
             ={CARGO_FUZZ_VERSION} --locked, a few minutes; libFuzzer needs a C++ compiler: \
             apt-get install g++)"
        );
        let what = format!("cargo install cargo-fuzz --version ={CARGO_FUZZ_VERSION} --locked");
        run_checked(ws.cargo().args(what.split(' ').skip(1)), &what)?;
    }
    let dir = ws.root.join("fuzz");
    if !dir.join("Cargo.toml").is_file() {
        bail!("{} has no Cargo.toml", dir.display());
    }
    for t in TARGETS {
        let target = t.name;
        println!(
            "xtask: fuzzing {target} for {seconds} s (crashes go to fuzz/artifacts/{target}/)"
        );
        let mut cmd: Command = ws.cargo();
        cmd.current_dir(&dir).args(["fuzz", "run"]);
        if t.plain {
            cmd.args(["-s", "none", "--no-trace-compares"]);
        }
        cmd.args([
            target,
            "--",
            &format!("-max_total_time={seconds}"),
            &format!("-max_len={}", t.max_len),
            "-print_final_stats=1",
        ]);
        if let Some(dict) = t.dict {
            cmd.arg(format!("-dict={dict}"));
        }
        run_checked(&mut cmd, &format!("cargo fuzz run {target}"))
            .with_context(|| format!("fuzz target {target} failed: a difference or crash"))?;
    }
    Ok(())
}
