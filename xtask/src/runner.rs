//! Runs an emulator whose serial port writes to a file: waits for it to
//! exit (or kills it at a deadline), optionally echoing the serial output
//! live, and returns what happened.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::workspace::{command_line, read_lossy};

/// How to run and watch the emulator.
#[derive(Clone, Debug)]
pub struct Watch {
    /// The file the emulator's COM1 writes.
    pub serial: PathBuf,
    /// Where the emulator's own stdout and stderr go.
    pub emulator_out: PathBuf,
    /// Kill the emulator after this long.
    pub timeout: Option<Duration>,
    /// Copy the serial output to our stdout as it arrives.
    pub echo: bool,
}

/// The end of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The emulator's exit status; `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub elapsed: Duration,
    /// Everything COM1 carried (lossily decoded).
    pub serial: String,
    /// The emulator's own stdout and stderr.
    pub emulator_out: String,
}

/// Spawns `cmd` (its stdin closed, its output to `watch.emulator_out`) and
/// watches it until it exits or `watch.timeout` passes.
pub fn run(mut cmd: Command, watch: &Watch) -> Result<Outcome> {
    let out = File::create(&watch.emulator_out)
        .with_context(|| format!("cannot create {}", watch.emulator_out.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", command_line(&cmd)))?;
    let mut echoed = 0u64;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (Some(status), false);
        }
        if watch.timeout.is_some_and(|t| start.elapsed() >= t) {
            // Already exited between the checks is fine: kill() then fails.
            let _ = child.kill();
            child.wait()?;
            break (None, true);
        }
        if watch.echo {
            echoed = echo_new(&watch.serial, echoed);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    if watch.echo {
        echo_new(&watch.serial, echoed);
    }
    Ok(Outcome {
        status,
        timed_out,
        elapsed,
        serial: crate::workspace::screen(&read_lossy(&watch.serial)),
        emulator_out: read_lossy(&watch.emulator_out),
    })
}

/// Copies what `path` holds past byte `from` to stdout; returns the new end.
fn echo_new(path: &std::path::Path, from: u64) -> u64 {
    let Ok(mut file) = File::open(path) else {
        return from;
    };
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut buf).is_err() {
        return from;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&buf).and_then(|()| stdout.flush());
    from + buf.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    #[test]
    fn captures_serial_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let serial = dir.path().join("serial.txt");
        let watch = Watch {
            serial: serial.clone(),
            emulator_out: dir.path().join("out.txt"),
            timeout: Some(Duration::from_secs(20)),
            echo: false,
        };
        let script = format!("echo hello > {}; echo oops >&2; exit 3", serial.display());
        let o = run(sh(&script), &watch).unwrap();
        assert_eq!(o.status.and_then(|s| s.code()), Some(3));
        assert!(!o.timed_out);
        assert_eq!(o.serial, "hello\n");
        assert_eq!(o.emulator_out, "oops\n");
    }

    #[test]
    fn kills_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let watch = Watch {
            serial: dir.path().join("serial.txt"),
            emulator_out: dir.path().join("out.txt"),
            timeout: Some(Duration::from_millis(300)),
            echo: false,
        };
        let o = run(sh("exec sleep 30"), &watch).unwrap();
        assert!(o.timed_out && o.status.is_none());
        assert!(o.elapsed < Duration::from_secs(10));
    }
}
