//! The shell's line editor: bytes from the serial line in, the finished
//! line and what to echo out.
//!
//! It understands what a VT100-style terminal sends: printable ASCII,
//! backspace (BS or DEL), Ctrl-U (erase the line), Ctrl-A / Ctrl-E (start,
//! end), Ctrl-C (drop the line), the arrow keys (`ESC [ A`…`D`, or `ESC O`
//! in application mode) for the cursor and the history, Home/End and
//! Delete (`ESC [ H`, `ESC [ F`, `ESC [ 1~`, `ESC [ 4~`, `ESC [ 3~`), and CR,
//! LF or CR LF as the end of a line. Anything else is ignored, so random
//! bytes do no harm: the line and every escape sequence have a bounded
//! length.
//!
//! The editor redraws its line with `CR`, the prompt, the text, `ESC [ K`
//! (erase to the end of the line) and `ESC [ n D` (cursor back): every
//! terminal knows those, and the tests' screen renderer
//! (`xtask::workspace::screen`) does too.

use alloc::string::String;
use alloc::vec::Vec;

/// Longest line kept; keys past it are dropped.
pub const LINE_MAX: usize = 256;
/// Lines the history keeps.
pub const HISTORY_MAX: usize = 32;
/// Longest escape sequence parameter kept (`ESC [ 123 ~` and the like).
const ESC_PARAM_MAX: usize = 8;

const CTRL_A: u8 = 0x01;
const CTRL_C: u8 = 0x03;
const CTRL_E: u8 = 0x05;
const BACKSPACE: u8 = 0x08;
const CTRL_U: u8 = 0x15;
const ESC: u8 = 0x1b;
const DEL: u8 = 0x7f;

/// Where the editor is in an escape sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Esc {
    #[default]
    None,
    /// `ESC` seen.
    Start,
    /// `ESC [` or `ESC O` seen, with these parameter bytes.
    Csi(Vec<u8>),
}

/// What one key did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The line the key finished, if it finished one.
    pub line: Option<String>,
    /// Bytes for the terminal (echo, redraw).
    pub echo: Vec<u8>,
}

/// The line being typed, its cursor, and the history.
#[derive(Debug)]
pub struct Editor {
    prompt: &'static str,
    text: Vec<u8>,
    cursor: usize,
    history: Vec<String>,
    /// The history entry shown (`None`: the line being typed).
    browsing: Option<usize>,
    /// The line being typed when browsing began.
    draft: Vec<u8>,
    esc: Esc,
    /// The last key was a CR (a CR LF pair ends one line).
    after_cr: bool,
}

impl Editor {
    pub fn new(prompt: &'static str) -> Self {
        Self {
            prompt,
            text: Vec::new(),
            cursor: 0,
            history: Vec::new(),
            browsing: None,
            draft: Vec::new(),
            esc: Esc::None,
            after_cr: false,
        }
    }

    /// The prompt, the line and the cursor as the terminal should show
    /// them: what to print after erasing the line (so that output from
    /// elsewhere can be printed above it).
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prompt.len() + self.text.len() + 8);
        out.extend_from_slice(self.prompt.as_bytes());
        out.extend_from_slice(&self.text);
        let back = self.text.len() - self.cursor;
        if back > 0 {
            out.extend_from_slice(alloc::format!("\x1b[{back}D").as_bytes());
        }
        out
    }

    /// The history, oldest first.
    #[cfg(test)]
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// Feeds one received byte.
    pub fn key(&mut self, b: u8) -> Step {
        let after_cr = core::mem::replace(&mut self.after_cr, b == b'\r');
        match core::mem::take(&mut self.esc) {
            Esc::None => {}
            Esc::Start => {
                if b == b'[' || b == b'O' {
                    self.esc = Esc::Csi(Vec::new());
                    return Step::default();
                }
                // A lone ESC (the Esc key): dropped, and this byte is a
                // key of its own.
            }
            Esc::Csi(mut param) => {
                return match b {
                    b'0'..=b'9' | b';' if param.len() < ESC_PARAM_MAX => {
                        param.push(b);
                        self.esc = Esc::Csi(param);
                        Step::default()
                    }
                    0x40..=0x7e => self.sequence(&param, b),
                    // Too long or malformed: the sequence is dropped.
                    _ => Step::default(),
                };
            }
        }
        match b {
            b'\n' if after_cr => Step::default(),
            b'\r' | b'\n' => self.enter(),
            ESC => {
                self.esc = Esc::Start;
                Step::default()
            }
            BACKSPACE | DEL => {
                if self.cursor == 0 {
                    return Step::default();
                }
                self.cursor -= 1;
                self.text.remove(self.cursor);
                self.edited()
            }
            CTRL_U => {
                self.text.clear();
                self.cursor = 0;
                self.edited()
            }
            CTRL_A => self.move_to(0),
            CTRL_E => self.move_to(self.text.len()),
            CTRL_C => {
                self.text.clear();
                self.cursor = 0;
                self.browsing = None;
                let mut echo = b"^C\r\n".to_vec();
                echo.extend(self.render());
                Step { line: None, echo }
            }
            b' '..=b'~' if self.text.len() < LINE_MAX => {
                self.text.insert(self.cursor, b);
                self.cursor += 1;
                if self.cursor == self.text.len() {
                    // Typing at the end: the key itself is the echo.
                    return Step {
                        line: None,
                        echo: alloc::vec![b],
                    };
                }
                self.edited()
            }
            _ => Step::default(),
        }
    }

    /// A complete `ESC [ param final` sequence.
    fn sequence(&mut self, param: &[u8], last: u8) -> Step {
        match (param, last) {
            (_, b'A') => self.recall(true),
            (_, b'B') => self.recall(false),
            (_, b'C') => self.move_to((self.cursor + 1).min(self.text.len())),
            (_, b'D') => self.move_to(self.cursor.saturating_sub(1)),
            (_, b'H') | (b"1" | b"7", b'~') => self.move_to(0),
            (_, b'F') | (b"4" | b"8", b'~') => self.move_to(self.text.len()),
            (b"3", b'~') if self.cursor < self.text.len() => {
                self.text.remove(self.cursor);
                self.edited()
            }
            _ => Step::default(),
        }
    }

    fn enter(&mut self) -> Step {
        let line = String::from_utf8_lossy(&core::mem::take(&mut self.text)).into_owned();
        self.cursor = 0;
        self.browsing = None;
        let trimmed = line.trim();
        if !trimmed.is_empty() && self.history.last().map(String::as_str) != Some(trimmed) {
            if self.history.len() == HISTORY_MAX {
                self.history.remove(0);
            }
            self.history.push(String::from(trimmed));
        }
        Step {
            line: Some(line),
            echo: b"\r\n".to_vec(),
        }
    }

    /// Up (`older`) or down through the history.
    fn recall(&mut self, older: bool) -> Step {
        let n = self.history.len();
        let next = match (self.browsing, older) {
            (None, true) if n > 0 => Some(n - 1),
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i + 1 < n => Some(i + 1),
            (Some(_), false) => None,
            (None, _) => return Step::default(),
        };
        if self.browsing.is_none() {
            self.draft = core::mem::take(&mut self.text);
        }
        self.browsing = next;
        self.text = match next {
            Some(i) => self.history[i].as_bytes().to_vec(),
            None => core::mem::take(&mut self.draft),
        };
        self.cursor = self.text.len();
        self.edited()
    }

    fn move_to(&mut self, cursor: usize) -> Step {
        if cursor == self.cursor {
            return Step::default();
        }
        self.cursor = cursor;
        self.edited()
    }

    /// The whole line redrawn.
    fn edited(&self) -> Step {
        let mut echo = b"\r".to_vec();
        echo.extend(self.prompt.as_bytes());
        echo.extend(&self.text);
        echo.extend(b"\x1b[K");
        let back = self.text.len() - self.cursor;
        if back > 0 {
            echo.extend(alloc::format!("\x1b[{back}D").as_bytes());
        }
        Step { line: None, echo }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `keys`; returns the finished lines.
    fn lines(e: &mut Editor, keys: &[u8]) -> Vec<String> {
        keys.iter().filter_map(|&b| e.key(b).line).collect()
    }

    fn typed(keys: &[u8]) -> Vec<String> {
        lines(&mut Editor::new("> "), keys)
    }

    #[test]
    fn line_ends_backspace_and_controls() {
        assert_eq!(typed(b"list\r"), ["list"]);
        assert_eq!(typed(b"list\r\nhelp\n"), ["list", "help"]);
        assert_eq!(typed(b"a\n\nb\r\r"), ["a", "", "b", ""]);
        assert_eq!(typed(b"lisx\x08t\r"), ["list"]);
        assert_eq!(typed(b"\x7f\x7fok\x02\r"), ["ok"]);
        assert_eq!(typed(b"garbage\x15info\r"), ["info"]);
        assert_eq!(typed(b"no\x03yes\r"), ["yes"]);
        assert_eq!(typed(b"no end"), Vec::<String>::new());
        let long: Vec<u8> = core::iter::repeat_n(b'x', LINE_MAX + 10)
            .chain(*b"\r")
            .collect();
        assert_eq!(typed(&long)[0].len(), LINE_MAX);
    }

    #[test]
    fn cursor_keys_edit_in_the_middle() {
        // "lst", left, left, "i" → "list".
        assert_eq!(typed(b"lst\x1b[D\x1b[Di\r"), ["list"]);
        // Home, Delete, End, and Ctrl-A / Ctrl-E.
        assert_eq!(typed(b"xinfo\x1b[H\x1b[3~\x1b[F!\r"), ["info!"]);
        assert_eq!(typed(b"nfo\x01i\x05s\r"), ["infos"]);
        // Application-mode arrows; right stops at the end.
        assert_eq!(typed(b"ab\x1bOD\x1bOD\x1b[C\x1b[C\x1b[Cc\r"), ["abc"]);
        // Backspace in the middle.
        assert_eq!(typed(b"abxc\x1b[D\x08\r"), ["abc"]);
    }

    #[test]
    fn a_lone_escape_does_not_eat_the_next_key() {
        assert_eq!(typed(b"ls\x1b\r"), ["ls"]);
        assert_eq!(typed(b"l\x1bs\r"), ["ls"]);
        assert_eq!(typed(b"\x1b\x1b[Dx\r"), ["x"]);
    }

    #[test]
    fn history_up_and_down() {
        let mut e = Editor::new("> ");
        assert_eq!(
            lines(&mut e, b"one\rtwo\rtwo\r\r"),
            ["one", "two", "two", ""]
        );
        assert_eq!(e.history(), ["one", "two"]);
        assert_eq!(lines(&mut e, b"\x1b[A\r"), ["two"]);
        assert_eq!(lines(&mut e, b"\x1b[A\x1b[A\x1b[A\r"), ["one"]);
        // Down past the newest brings back what was being typed.
        assert_eq!(lines(&mut e, b"dra\x1b[A\x1b[Bft\r"), ["draft"]);
        for i in 0..HISTORY_MAX + 5 {
            lines(&mut e, alloc::format!("c{i}\r").as_bytes());
        }
        assert_eq!(e.history().len(), HISTORY_MAX);
        assert_eq!(e.history()[0], "c5");
    }

    #[test]
    fn echo_and_redraw() {
        let mut e = Editor::new("> ");
        assert_eq!(e.key(b'a').echo, b"a");
        assert_eq!(e.key(b'b').echo, b"b");
        assert_eq!(e.key(0x1b).echo, b"");
        assert_eq!(e.key(b'[').echo, b"");
        assert_eq!(e.key(b'D').echo, b"\r> ab\x1b[K\x1b[1D");
        assert_eq!(e.render(), b"> ab\x1b[1D");
        assert_eq!(e.key(b'\r').echo, b"\r\n");
        assert_eq!(e.render(), b"> ");
    }

    #[test]
    fn random_bytes_never_grow_the_state() {
        // A fixed xorshift stream: every byte value, escapes included.
        let mut e = Editor::new("> ");
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let step = e.key(x as u8);
            assert!(step.echo.len() <= LINE_MAX + 32);
            assert!(e.text.len() <= LINE_MAX);
            assert!(e.cursor <= e.text.len());
            if let Esc::Csi(p) = &e.esc {
                assert!(p.len() <= ESC_PARAM_MAX);
            }
        }
        assert!(e.history().len() <= HISTORY_MAX);
    }
}
