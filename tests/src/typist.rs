//! Typing into the console of an emulated machine: its COM1 is a TCP
//! client of a listener here, a thread copies what it sends to the run's
//! `serial.txt` (so a run reads the same either way) and, each time a given
//! text appears in that output, sends the keys that go with it: on COM1,
//! or (QEMU, through its QMP socket) on the PS/2 keyboard, or takes a
//! screendump.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Keys to type once `after` has appeared in the output.
#[derive(Clone, Debug)]
pub struct Keys {
    pub after: &'static str,
    pub keys: &'static str,
    pub via: Via,
}

/// Where keys go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// COM1.
    Serial,
    /// QEMU's PS/2 keyboard (QMP `send-key`).
    Keyboard,
    /// No keys: QEMU's screen is written to the file `keys` names, in the
    /// directory of `serial.txt` (QMP `screendump`).
    Screendump,
    /// No keys: the machine is stopped, its nested page tables walked and
    /// judged (`crate::tables`) and the report written to the file `keys`
    /// names, in the directory of `serial.txt`; then it goes on.
    TableCheck,
}

impl Keys {
    /// Keys typed on COM1.
    pub const fn serial(after: &'static str, keys: &'static str) -> Self {
        Self {
            after,
            keys,
            via: Via::Serial,
        }
    }
}

/// The listener's thread.
pub struct Typist {
    pub port: u16,
    /// Where the output goes.
    pub serial: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), String>>,
}

/// How long the thread waits for data before it looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);

impl Typist {
    /// Listens on a free port of 127.0.0.1; the output goes to `serial`.
    /// Keys for the keyboard or the screen go through QEMU's QMP socket
    /// `qmp`.
    pub fn start(serial: PathBuf, script: Vec<Keys>, qmp: Option<PathBuf>) -> Result<Self, String> {
        Self::start_with(serial, script, qmp, None)
    }

    /// As `start`, with Bochs's debugger for a `Via::TableCheck`.
    pub fn start_with(
        serial: PathBuf,
        script: Vec<Keys>,
        qmp: Option<PathBuf>,
        debugger: Option<crate::physmem::BochsDebugger>,
    ) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = serial.clone();
        let thread =
            std::thread::spawn(move || relay(&listener, &path, script, &flag, qmp, debugger));
        Ok(Self {
            port,
            serial,
            stop,
            thread,
        })
    }

    /// Waits for the thread, once the emulator has ended; says what it
    /// could not do (an error, or keys it never typed).
    pub fn finish(self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .unwrap_or_else(|_| Err("the typist's thread panicked".into()))
    }
}

fn relay(
    listener: &TcpListener,
    serial: &PathBuf,
    mut script: Vec<Keys>,
    stop: &AtomicBool,
    qmp_path: Option<PathBuf>,
    mut debugger: Option<crate::physmem::BochsDebugger>,
) -> Result<(), String> {
    let mut qmp: Option<crate::qmp::Qmp> = None;
    let mut out =
        File::create(serial).map_err(|e| format!("cannot create {}: {e}", serial.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop.load(Ordering::SeqCst) {
                    return Err("the emulator never connected its COM1".into());
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    let setup = |r: std::io::Result<()>| r.map_err(|e| format!("COM1 connection: {e}"));
    setup(stream.set_nonblocking(false))?;
    setup(stream.set_read_timeout(Some(POLL)))?;
    // What came since the last keys were typed: the next `after` is looked
    // for in it only, so a script is followed in order.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    script.reverse();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.write_all(&buf[..n])
                    .map_err(|e| format!("cannot write {}: {e}", serial.display()))?;
                seen.extend_from_slice(&buf[..n]);
                while let Some(next) = script.last() {
                    let Some(at) = find(&seen, next.after.as_bytes()) else {
                        break;
                    };
                    match next.via {
                        Via::Serial => stream
                            .write_all(next.keys.as_bytes())
                            .map_err(|e| format!("cannot type {:?}: {e}", next.keys))?,
                        Via::TableCheck if debugger.is_some() => {
                            let d = debugger.as_mut().ok_or("no debugger")?;
                            d.stop()?;
                            let report = table_check(serial, d);
                            d.resume()?;
                            save(serial, next.keys, &report)?;
                        }
                        via => {
                            if qmp.is_none() {
                                let path = qmp_path.as_deref().ok_or("keys for QMP, but no QMP")?;
                                qmp = Some(crate::qmp::Qmp::connect(path)?);
                            }
                            let q = qmp.as_mut().ok_or("no QMP")?;
                            if via == Via::Keyboard {
                                q.type_text(next.keys)?;
                            } else if via == Via::TableCheck {
                                q.set_running(false)?;
                                let dir = serial.parent().ok_or("no run directory")?;
                                let mut mem = crate::physmem::QemuMemory {
                                    qmp: q,
                                    scratch: dir.join("page.bin"),
                                };
                                let report = table_check(serial, &mut mem);
                                mem.qmp.set_running(true)?;
                                save(serial, next.keys, &report)?;
                            } else {
                                let dir = serial.parent().ok_or("no run directory")?;
                                q.screendump(&dir.join(next.keys))?;
                            }
                        }
                    }
                    seen.drain(..at + next.after.len());
                    script.pop();
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // The emulator went away.
            Err(_) => break,
        }
    }
    match script.last() {
        Some(k) => Err(format!(
            "{:?} never appeared, so {:?} was never typed",
            k.after, k.keys
        )),
        None => Ok(()),
    }
}

/// Walks and judges the tables of the stopped machine, with the layout and
/// memory slots the output so far holds.
/// The nested-table format follows the boot CPU's extension.
fn table_check(serial: &std::path::Path, mem: &mut dyn crate::tables::PhysMem) -> String {
    let text = xtask::workspace::screen(&xtask::workspace::read_lossy(serial));
    let format = if text.contains("mojito: cpu0: VMX: ") {
        crate::tables::Format::Ept
    } else if text.contains("mojito: cpu0: SVM: ") {
        crate::tables::Format::Npt
    } else {
        return "problem: no `mojito: cpu0: VMX/SVM` line: which nested format?\n".into();
    };
    let slots = crate::tables::parse_memslots(&text);
    crate::tables::check(&text, mem, format, &slots).render()
}

/// Writes `text` to `name` beside `serial`.
fn save(serial: &std::path::Path, name: &str, text: &str) -> Result<(), String> {
    let path = serial.with_file_name(name);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn types_after_each_text_in_order_and_keeps_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let serial = dir.path().join("serial.txt");
        let script = vec![Keys::serial("login:", "root\r"), Keys::serial("$ ", "ls\r")];
        let typist = Typist::start(serial.clone(), script, None).unwrap();
        let mut machine = TcpStream::connect(("127.0.0.1", typist.port)).unwrap();
        // "$ " before "login:" does not count: the script goes in order.
        machine.write_all(b"$ boot\r\nlog").unwrap();
        machine.write_all(b"in: ").unwrap();
        let mut typed = [0u8; 5];
        machine.read_exact(&mut typed).unwrap();
        assert_eq!(&typed, b"root\r");
        machine.write_all(b"\r\n$ ").unwrap();
        let mut typed = [0u8; 3];
        machine.read_exact(&mut typed).unwrap();
        assert_eq!(&typed, b"ls\r");
        drop(machine);
        typist.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(&serial).unwrap(),
            "$ boot\r\nlogin: \r\n$ "
        );
    }

    #[test]
    fn says_what_it_never_typed() {
        let dir = tempfile::tempdir().unwrap();
        let script = vec![Keys::serial("never", "x")];
        let typist = Typist::start(dir.path().join("s.txt"), script, None).unwrap();
        let machine = TcpStream::connect(("127.0.0.1", typist.port)).unwrap();
        drop(machine);
        let e = typist.finish().unwrap_err();
        assert!(e.contains("\"never\" never appeared"), "{e}");
        let idle = Typist::start(dir.path().join("t.txt"), vec![], None).unwrap();
        assert!(idle.finish().unwrap_err().contains("never connected"));
    }
}
