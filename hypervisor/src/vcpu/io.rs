//! The built-in device set that serves test guests until the control
//! domain exists: a debug console, an end-of-test port, a yield port and the
//! POST port (numbers in `abi::guest`). Any other port reads as all ones (an
//! absent device) and ignores writes.

use abi::guest::{CONSOLE_PORT, EXIT_PORT, POST_PORT, YIELD_PORT};

/// Longest console line kept; longer lines are split.
pub const LINE_MAX: usize = 200;

/// A guest's console line being assembled.
pub struct ConsoleLine {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for ConsoleLine {
    fn default() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }
}

impl ConsoleLine {
    /// Adds a byte; returns the finished line on newline or when full.
    pub fn push(&mut self, b: u8) -> Option<&[u8]> {
        match b {
            b'\n' => {}
            b'\r' => return None,
            _ => {
                if let Some(slot) = self.buf.get_mut(self.len) {
                    *slot = b;
                    self.len += 1;
                }
                if self.len < LINE_MAX {
                    return None;
                }
            }
        }
        let n = core::mem::take(&mut self.len);
        self.buf.get(..n)
    }

    /// Whatever is left unterminated (when the VM stops).
    pub fn take_rest(&mut self) -> Option<&[u8]> {
        let n = core::mem::take(&mut self.len);
        (n > 0).then(|| self.buf.get(..n)).flatten()
    }
}

/// What a port write asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Nothing,
    /// A console byte.
    Console(u8),
    /// End the VM with this status.
    Exit(u32),
    /// Give the CPU to the next VM.
    Yield,
}

/// An OUT of `size` bytes of `value` to `port`.
pub fn write(port: u16, size: u8, value: u32) -> Output {
    let value = value & size_mask(size);
    match port {
        CONSOLE_PORT => Output::Console(value as u8),
        EXIT_PORT => Output::Exit(value),
        YIELD_PORT => Output::Yield,
        _ => Output::Nothing,
    }
}

/// An IN of `size` bytes from `port`.
pub fn read(port: u16, size: u8) -> u32 {
    match port {
        CONSOLE_PORT => u32::from(CONSOLE_PORT as u8),
        POST_PORT => 0xff,
        _ => size_mask(size),
    }
}

/// All ones in the low `size` bytes.
pub fn size_mask(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(write(0xe9, 4, 0x1234_5641), Output::Console(0x41));
        assert_eq!(write(0xf4, 1, 0x1ff), Output::Exit(0xff));
        assert_eq!(write(0xf4, 4, 7), Output::Exit(7));
        assert_eq!(write(0xf5, 1, 0), Output::Yield);
        assert_eq!(write(0x80, 1, 0x55), Output::Nothing);
        assert_eq!(read(0x80, 1), 0xff);
        assert_eq!(read(0xe9, 1), 0xe9);
        assert_eq!(read(0x3f8, 2), 0xffff);
        assert_eq!(read(0x1234, 4), 0xffff_ffff);
    }

    #[test]
    fn console_lines() {
        let mut c = ConsoleLine::default();
        for &b in b"hi\r" {
            assert_eq!(c.push(b), None);
        }
        assert_eq!(c.push(b'\n'), Some(&b"hi"[..]));
        for _ in 0..LINE_MAX - 1 {
            assert_eq!(c.push(b'x'), None);
        }
        assert_eq!(c.push(b'y').map(<[u8]>::len), Some(LINE_MAX));
        c.push(b'z');
        assert_eq!(c.take_rest(), Some(&b"z"[..]));
        assert_eq!(c.take_rest(), None);
    }
}
