//! A guest's serial output as the operator sees it (DESIGN.md D10): bytes
//! from the UART and the debug console are assembled into lines, and each
//! finished line goes to a [`Sink`] (the control domain prints it as
//! `[NAME] line` while no console is attached); every byte is also kept in
//! a ring of recent output for `console NAME` to replay.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// Longest line assembled; a longer one is passed on in pieces.
pub const LINE_MAX: usize = 256;
/// Bytes of recent output kept per VM by default.
pub const RING_DEFAULT: usize = 16 * 1024;

/// Where finished lines go.
pub trait Sink: Send {
    /// A finished line of VM `name`'s output, without its newline (a
    /// carriage return before it is dropped; other bytes are passed as
    /// they came, invalid UTF-8 replaced).
    fn line(&mut self, name: &str, line: &str);
}

/// A sink that drops every line (the ring still keeps the output).
#[derive(Clone, Copy, Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn line(&mut self, _name: &str, _line: &str) {}
}

/// Prints `[NAME] line` on standard output.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Stdout;

#[cfg(feature = "std")]
impl Sink for Stdout {
    fn line(&mut self, name: &str, line: &str) {
        std::println!("[{name}] {line}");
    }
}

/// A guest's output: the line being assembled, the ring, the sink.
pub struct Console {
    name: String,
    line: Vec<u8>,
    ring: VecDeque<u8>,
    ring_max: usize,
    /// Bytes of output in all (the ring holds the last of them).
    total: u64,
    /// Whether finished lines go to the sink (`echo NAME on/off`).
    echo: bool,
    sink: Box<dyn Sink>,
}

impl core::fmt::Debug for Console {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Console")
            .field("name", &self.name)
            .field("echo", &self.echo)
            .field("buffered", &self.ring.len())
            .finish_non_exhaustive()
    }
}

impl Console {
    /// The console of VM `name`, keeping `ring_max` bytes of output.
    pub fn new(name: &str, ring_max: usize, sink: Box<dyn Sink>) -> Self {
        Self {
            name: String::from(name),
            line: Vec::new(),
            ring: VecDeque::new(),
            ring_max,
            total: 0,
            echo: true,
            sink,
        }
    }

    /// The VM's name, as lines are prefixed with it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Turns passing lines to the sink on or off (the ring keeps
    /// everything either way).
    pub fn set_echo(&mut self, on: bool) {
        self.echo = on;
    }

    /// One byte of output.
    pub fn push(&mut self, byte: u8) {
        self.total += 1;
        if self.ring_max > 0 {
            if self.ring.len() >= self.ring_max {
                self.ring.pop_front();
            }
            self.ring.push_back(byte);
        }
        match byte {
            b'\n' => self.finish_line(),
            _ => {
                self.line.push(byte);
                if self.line.len() >= LINE_MAX {
                    self.finish_line();
                }
            }
        }
    }

    /// Passes on whatever is left without a newline (when the VM stops).
    pub fn flush(&mut self) {
        if !self.line.is_empty() {
            self.finish_line();
        }
    }

    fn finish_line(&mut self) {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.echo {
            let text = String::from_utf8_lossy(&self.line);
            self.sink.line(&self.name, &text);
        }
        self.line.clear();
    }

    /// The recent output, oldest byte first.
    pub fn recent(&self) -> Vec<u8> {
        self.ring.iter().copied().collect()
    }

    /// Bytes of output in all, the position after the newest byte.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The output after position `pos` (a former [`Console::total`]) that
    /// the ring still holds, and how many bytes after `pos` it no longer
    /// holds.
    pub fn since(&self, pos: u64) -> (Vec<u8>, u64) {
        let oldest = self.total - self.ring.len() as u64;
        let lost = oldest.saturating_sub(pos);
        let skip = pos.saturating_sub(oldest).min(self.ring.len() as u64) as usize;
        (self.ring.iter().skip(skip).copied().collect(), lost)
    }

    /// The recent output as text (invalid UTF-8 replaced).
    pub fn recent_text(&self) -> String {
        String::from_utf8_lossy(&self.recent()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects lines as a sink.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl Lines {
        fn get(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Sink for Lines {
        fn line(&mut self, name: &str, line: &str) {
            self.0
                .lock()
                .unwrap()
                .push(alloc::format!("[{name}] {line}"));
        }
    }

    #[test]
    fn since_a_position_and_what_the_ring_lost() {
        let mut c = Console::new("demo", 4, Box::new(Discard));
        for &b in b"ab" {
            c.push(b);
        }
        let mark = c.total();
        assert_eq!(c.since(mark), (Vec::new(), 0));
        for &b in b"cd" {
            c.push(b);
        }
        assert_eq!(c.since(mark), (b"cd".to_vec(), 0));
        for &b in b"efg" {
            c.push(b);
        }
        // The ring holds "defg": "c" after the mark is lost.
        assert_eq!(c.since(mark), (b"defg".to_vec(), 1));
        assert_eq!(c.since(0), (b"defg".to_vec(), 3));
        assert_eq!(c.total(), 7);
    }

    #[test]
    fn lines_are_prefixed_and_cr_dropped() {
        let lines = Lines::default();
        let mut c = Console::new("demo", 8, Box::new(lines.clone()));
        for &b in b"hello\r\nwor" {
            c.push(b);
        }
        assert_eq!(lines.get(), [String::from("[demo] hello")]);
        c.flush();
        assert_eq!(lines.get()[1], "[demo] wor");
        // The ring keeps the last 8 bytes.
        assert_eq!(c.recent(), b"llo\r\nwor");
        c.set_echo(false);
        for &b in b"quiet\n" {
            c.push(b);
        }
        assert_eq!(lines.get().len(), 2);
        assert_eq!(c.recent_text(), "orquiet\n");
    }

    #[test]
    fn long_lines_are_split() {
        let lines = Lines::default();
        let mut c = Console::new("x", 0, Box::new(lines.clone()));
        for _ in 0..LINE_MAX + 1 {
            c.push(b'a');
        }
        c.flush();
        let got = lines.get();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], "[x] a");
        assert!(c.recent().is_empty());
    }
}
