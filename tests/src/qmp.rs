//! A minimal QMP client (QEMU's JSON monitor protocol over a Unix socket):
//! keys on the emulated PS/2 keyboard (`send-key`) and screenshots
//! (`screendump`), for the screen-and-keyboard shell test; stopping the
//! machine and reading its physical memory (`stop`, `pmemsave`, `cont`)
//! for the nested-table check (`crate::tables`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long to wait for QEMU's socket and for each answer.
const WAIT: Duration = Duration::from_secs(20);

pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

/// QEMU's `QKeyCode` for a character we type, if it has one.
pub fn qcode(c: char) -> Option<&'static str> {
    const LETTERS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match c {
        'a'..='z' => Some(LETTERS[c as usize - 'a' as usize]),
        '0'..='9' => Some(DIGITS[c as usize - '0' as usize]),
        ' ' => Some("spc"),
        '\r' | '\n' => Some("ret"),
        '-' => Some("minus"),
        '/' => Some("slash"),
        '.' => Some("dot"),
        '=' => Some("equal"),
        _ => None,
    }
}

impl Qmp {
    /// Connects to QEMU's QMP socket at `path` (waiting for QEMU to make
    /// it) and leaves capability negotiation.
    pub fn connect(path: &Path) -> Result<Self, String> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() > WAIT => {
                    return Err(format!("cannot connect to {}: {e}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(WAIT))
            .map_err(|e| format!("QMP socket: {e}"))?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| format!("QMP socket: {e}"))?);
        let mut qmp = Self {
            writer: stream,
            reader,
        };
        let greeting = qmp.line()?;
        if !greeting.contains("\"QMP\"") {
            return Err(format!("no QMP greeting: {greeting}"));
        }
        qmp.command(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(qmp)
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("QEMU closed the QMP socket".into()),
            Ok(_) => Ok(line),
            Err(e) => Err(format!("reading QMP: {e}")),
        }
    }

    /// Sends one command; its answer (events in between are skipped).
    fn command(&mut self, json: &str) -> Result<String, String> {
        self.writer
            .write_all(format!("{json}\n").as_bytes())
            .map_err(|e| format!("writing QMP: {e}"))?;
        loop {
            let line = self.line()?;
            if line.contains("\"return\"") {
                return Ok(line);
            }
            if line.contains("\"error\"") {
                return Err(format!("QMP {json}: {line}"));
            }
        }
    }

    /// Presses and releases one key per character of `text`.
    pub fn type_text(&mut self, text: &str) -> Result<(), String> {
        for c in text.chars() {
            let code = qcode(c).ok_or_else(|| format!("no key for {c:?}"))?;
            self.command(&format!(
                r#"{{"execute":"send-key","arguments":{{"keys":[{{"type":"qcode","data":"{code}"}}]}}}}"#
            ))?;
            // QEMU queues the release after a hold time; let each key
            // reach the guest before the next.
            std::thread::sleep(Duration::from_millis(30));
        }
        Ok(())
    }

    /// Stops the emulated CPUs (`stop`) or lets them go on (`cont`).
    pub fn set_running(&mut self, running: bool) -> Result<(), String> {
        let cmd = if running { "cont" } else { "stop" };
        self.command(&format!(r#"{{"execute":"{cmd}"}}"#)).map(drop)
    }

    /// Writes `size` bytes of guest-physical memory at `at` to `path`.
    pub fn pmemsave(&mut self, at: u64, size: u64, path: &Path) -> Result<(), String> {
        self.command(&format!(
            r#"{{"execute":"pmemsave","arguments":{{"val":{at},"size":{size},"filename":"{}"}}}}"#,
            path.display()
        ))
        .map(drop)
    }

    /// Writes the screen to `path` (PPM).
    pub fn screendump(&mut self, path: &Path) -> Result<(), String> {
        self.command(&format!(
            r#"{{"execute":"screendump","arguments":{{"filename":"{}"}}}}"#,
            path.display()
        ))
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_codes() {
        assert_eq!(super::qcode('i'), Some("i"));
        assert_eq!(super::qcode('7'), Some("7"));
        assert_eq!(super::qcode('\r'), Some("ret"));
        assert_eq!(super::qcode('A'), None);
    }
}
