//! Reading a stopped emulated machine's physical memory, for the
//! nested-table check (`crate::tables`): QEMU's `pmemsave` through QMP,
//! and Bochs's debugger (`xp`), driven through a FIFO its `-rc` script
//! reads from, its answers read from its output file.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::qmp::Qmp;
use crate::tables::{PhysMem, Table};

/// How long one answer may take.
const WAIT: Duration = Duration::from_secs(30);

/// QEMU, stopped: each page saved with `pmemsave` to a scratch file.
pub struct QemuMemory<'a> {
    pub qmp: &'a mut Qmp,
    pub scratch: PathBuf,
}

impl PhysMem for QemuMemory<'_> {
    fn page(&mut self, pa: u64) -> Result<Table, String> {
        self.qmp.pmemsave(pa, 4096, &self.scratch)?;
        let bytes = std::fs::read(&self.scratch)
            .map_err(|e| format!("cannot read {}: {e}", self.scratch.display()))?;
        words(&bytes)
    }
}

fn words(bytes: &[u8]) -> Result<Table, String> {
    if bytes.len() != 4096 {
        return Err(format!("a page of {} bytes", bytes.len()));
    }
    let mut t = [0u64; 512];
    let (words, _) = bytes.as_chunks::<8>();
    for (w, c) in t.iter_mut().zip(words) {
        *w = u64::from_le_bytes(*c);
    }
    Ok(t)
}

/// Bochs's debugger: commands into the FIFO its `-rc` script is, answers
/// from its output file, each ending at its next `<bochs:N>` prompt.
pub struct BochsDebugger {
    /// The FIFO, open for reading and writing (so neither end blocks).
    pub commands: File,
    /// Bochs's stdout.
    pub output: PathBuf,
    /// Where Bochs runs (to find its process for SIGINT).
    pub dir: PathBuf,
}

/// What Bochs prints when the simulation stops and its debugger takes over.
const STOPPED: &str = "Next at t=";

impl BochsDebugger {
    /// Makes the FIFO `debugger.fifo` in `dir` (Bochs's `-rc` script, the
    /// returned path) with `continue` queued, so the machine runs until
    /// `stop`.
    pub fn create(dir: &std::path::Path) -> Result<(Self, PathBuf), String> {
        let fifo = dir.join("debugger.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            return Err(format!("mkfifo {} failed", fifo.display()));
        }
        // Read and write: opening a FIFO so never blocks (Linux fifo(7)),
        // and Bochs never sees its end while we hold it.
        let mut commands = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .map_err(|e| format!("cannot open {}: {e}", fifo.display()))?;
        commands
            .write_all(b"continue\n")
            .map_err(|e| format!("writing to {}: {e}", fifo.display()))?;
        let d = Self {
            commands,
            output: dir.join("bochs.out"),
            dir: dir.to_path_buf(),
        };
        Ok((d, fifo))
    }

    fn output(&self) -> String {
        xtask::workspace::read_lossy(&self.output)
    }

    /// Waits until what Bochs printed after byte `from` of its output
    /// satisfies `done`, which turns it into the answer. (Commands read from
    /// a script get no prompt, so the answer's own shape says it is whole.)
    fn answer<T>(
        &self,
        from: usize,
        what: &str,
        done: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        let start = Instant::now();
        loop {
            let out = self.output();
            let new = out.get(from..).unwrap_or("");
            match done(new) {
                Ok(t) => return Ok(t),
                Err(e) if start.elapsed() > WAIT => {
                    return Err(format!(
                        "{what}: no whole answer from Bochs's debugger in {} s ({e}); its \
                         output ends {:?}",
                        WAIT.as_secs(),
                        &new[new.len().saturating_sub(300)..]
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn send(&mut self, cmd: &str) -> Result<(), String> {
        self.commands
            .write_all(cmd.as_bytes())
            .map_err(|e| format!("writing to Bochs's debugger: {e}"))
    }

    /// Stops the simulation (SIGINT: Bochs enters its debugger).
    pub fn stop(&mut self) -> Result<(), String> {
        let from = self.output().len();
        let pid = bochs_pid(&self.dir)?;
        let ok = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("kill -INT {pid} failed"));
        }
        self.answer(from, "SIGINT", |out| {
            out.contains(STOPPED)
                .then_some(())
                .ok_or_else(|| "not stopped yet".to_string())
        })
    }

    /// Lets the simulation go on to its end, then quits.
    pub fn resume(&mut self) -> Result<(), String> {
        self.send("continue\nquit\n")
    }
}

impl PhysMem for BochsDebugger {
    fn page(&mut self, pa: u64) -> Result<Table, String> {
        let from = self.output().len();
        self.send(&format!("xp /512gx {pa:#x}\n"))?;
        self.answer(from, "xp", |out| parse_xp(out, pa))
    }
}

/// The words of `xp /512gx` output: lines `0x…ADDR <bogus+ N>:\t0x…\t0x…`.
fn parse_xp(out: &str, pa: u64) -> Result<Table, String> {
    let mut t = [0u64; 512];
    let mut n = 0;
    // Whole lines only: the last one may still be on its way.
    for line in out.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let line = line.trim_end();
        let Some((addr, values)) = line.split_once(" <") else {
            continue;
        };
        let Some(addr) = addr.trim().strip_prefix("0x") else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        if addr != pa + n as u64 * 8 {
            return Err(format!(
                "xp answered {addr:#x}, expected {:#x}",
                pa + n as u64 * 8
            ));
        }
        let Some((_, values)) = values.split_once(">:") else {
            continue;
        };
        for v in values.split_whitespace() {
            let v = v
                .strip_prefix("0x")
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .ok_or_else(|| format!("xp printed {v:?}"))?;
            *t.get_mut(n).ok_or("xp printed more than 512 words")? = v;
            n += 1;
        }
    }
    if n != 512 {
        return Err(format!(
            "xp printed {n} words of the page at {pa:#x}, not 512"
        ));
    }
    Ok(t)
}

/// The Bochs process running in `dir`.
fn bochs_pid(dir: &std::path::Path) -> Result<u32, String> {
    let want = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let procs = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
        // Debian's `bochs` is a script that runs `bochs-bin`.
        if comm.trim().starts_with("bochs")
            && std::fs::read_link(p.path().join("cwd")).is_ok_and(|c| c == want)
        {
            return Ok(pid);
        }
    }
    Err(format!("no Bochs process runs in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xp_output() {
        let mut out = String::from("xp /512gx 0x1000\n[bochs]:\n");
        for i in 0..256u64 {
            out.push_str(&format!(
                "0x{:016x} <bogus+ {:>7}>:\t0x{:08x}\t0x{:x}\n",
                0x1000 + i * 16,
                i * 16,
                i,
                0x2f38_30f0_00e0_5beau64
            ));
        }

        let t = parse_xp(&out, 0x1000).unwrap();
        assert_eq!((t[0], t[1], t[510]), (0, 0x2f38_30f0_00e0_5bea, 255));
        assert!(
            parse_xp(&out, 0x2000)
                .unwrap_err()
                .contains("expected 0x2000")
        );
        let short: String = out.lines().take(10).collect::<Vec<_>>().join("\n");
        assert!(parse_xp(&short, 0x1000).unwrap_err().contains("not 512"));
    }
}
