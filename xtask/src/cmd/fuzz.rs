//! `cargo xtask fuzz`: runs the `fuzz/` crate's cargo-fuzz targets for a
//! while each, installing cargo-fuzz first if it is missing: `mmio_decode`
//! (the MMIO instruction decoder against iced-x86), `boot_bundle` (the
//! boot-bundle reader), `shell_input` (the shell's line editor, parser
//! and keymap) and `port_devices` (the VMM's device models: UART, PIT,
//! RTC, debug ports).

use std::process::Command;

use anyhow::{Context, Result, bail};
use xtask::Workspace;
use xtask::workspace::run_checked;

/// The cargo-fuzz release the targets are known to build with.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The fuzz targets, in `fuzz/fuzz_targets/`, with libFuzzer's longest
/// input for each (an x86 instruction is at most 15 bytes).
pub const TARGETS: [(&str, u32); 4] = [
    ("mmio_decode", 15),
    ("boot_bundle", 4096),
    ("shell_input", 4096),
    // 64 accesses of 6 bytes: long enough to program a PIT channel, move
    // the clock and read it back several times over.
    ("port_devices", 384),
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
    for (target, max_len) in TARGETS {
        println!(
            "xtask: fuzzing {target} for {seconds} s (crashes go to fuzz/artifacts/{target}/)"
        );
        let mut cmd: Command = ws.cargo();
        cmd.current_dir(&dir).args([
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
            &format!("-max_len={max_len}"),
            "-print_final_stats=1",
        ]);
        run_checked(&mut cmd, &format!("cargo fuzz run {target}"))
            .with_context(|| format!("fuzz target {target} failed: a difference or crash"))?;
    }
    Ok(())
}
