//! The operator's input on COM1, a line at a time, while the guests run.
//!
//! COM1 input ends a guest's RUN at once (the hypervisor takes the UART's
//! interrupt; DESIGN.md D2), so a command is answered between two exits of
//! whatever guest runs, even one that never exits by itself. A finished
//! line is echoed whole, after the prompt, so that it never splits a line a
//! guest is printing:
//!
//! ```text
//! mojito> list
//! ```
//!
//! This is the first piece of the operator's shell; the shell itself (the
//! prompt while idle, line editing, history, and its commands) is the
//! serial-console issue's. Today's commands are in `crate::vm::command`.

use alloc::string::String;

/// Longest line kept; bytes past it are dropped.
const LINE_MAX: usize = 256;

/// Backspace and DEL, which terminals send for the backspace key.
const BACKSPACE: u8 = 0x08;
const DEL: u8 = 0x7f;

/// Collects COM1 input into lines.
#[derive(Default)]
pub struct LineReader {
    line: String,
    /// The last byte ended a line with CR (a CR LF pair is one end).
    after_cr: bool,
}

impl LineReader {
    /// Adds one received byte; returns the line it finished, if any.
    pub fn push(&mut self, b: u8) -> Option<String> {
        let after_cr = core::mem::replace(&mut self.after_cr, b == b'\r');
        match b {
            b'\n' if after_cr => None,
            b'\r' | b'\n' => Some(core::mem::take(&mut self.line)),
            BACKSPACE | DEL => {
                self.line.pop();
                None
            }
            b' '..=b'~' if self.line.len() < LINE_MAX => {
                self.line.push(char::from(b));
                None
            }
            _ => None,
        }
    }
}

/// Reads what COM1 has received and returns the first line it finished
/// (the rest stays in the UART and the reader for the next call).
#[cfg(target_os = "none")]
pub fn poll(reader: &mut LineReader) -> Option<String> {
    while let Some(b) = crate::console::read_byte() {
        if let Some(line) = reader.push(b) {
            crate::println!("mojito> {line}");
            return Some(line);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut r = LineReader::default();
        input.iter().filter_map(|&b| r.push(b)).collect()
    }

    #[test]
    fn line_ends_backspace_and_controls() {
        assert_eq!(lines(b"list\r"), ["list"]);
        assert_eq!(lines(b"list\r\nhelp\n"), ["list", "help"]);
        assert_eq!(lines(b"a\n\nb\r\r"), ["a", "", "b", ""]);
        assert_eq!(lines(b"lisx\x08t\r"), ["list"]);
        assert_eq!(lines(b"\x7f\x7fok\x1b\x01\r"), ["ok"]);
        assert_eq!(lines(b"no end"), Vec::<String>::new());
        let long: Vec<u8> = core::iter::repeat_n(b'x', LINE_MAX + 10)
            .chain(*b"\r")
            .collect();
        assert_eq!(lines(&long)[0].len(), LINE_MAX);
    }
}
