//! PS/2 scancodes (set 1, what an 8042 with translation on delivers) to the
//! bytes a VT100 terminal would send for the same keys, US layout: the
//! shell at the machine's own screen reads the keyboard through this and
//! sees the same input as from COM1.

/// Up to four bytes for one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    buf: [u8; 4],
    len: u8,
}

impl Bytes {
    fn one(b: u8) -> Self {
        Self {
            buf: [b, 0, 0, 0],
            len: 1,
        }
    }

    /// `ESC [ c`.
    fn csi(c: u8) -> Self {
        Self {
            buf: [0x1b, b'[', c, 0],
            len: 3,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Set 1 make codes 0x00–0x39 without and with Shift (0: no character).
const PLAIN: &[u8; 0x3a] =
    b"\0\x1b1234567890-=\x7f\tqwertyuiop[]\r\0asdfghjkl;'`\0\\zxcvbnm,./\0*\0 ";
const SHIFTED: &[u8; 0x3a] =
    b"\0\x1b!@#$%^&*()_+\x7f\tQWERTYUIOP{}\r\0ASDFGHJKL:\"~\0|ZXCVBNM<>?\0*\0 ";

const LEFT_CTRL: u8 = 0x1d;
const LEFT_SHIFT: u8 = 0x2a;
const RIGHT_SHIFT: u8 = 0x36;
const CAPS_LOCK: u8 = 0x3a;
/// Prefix of the extended keys (arrows, Home, End, Delete, right Ctrl).
const EXTENDED: u8 = 0xe0;
/// Bit 7 of a code marks a key's release.
const BREAK: u8 = 0x80;

/// The modifier state between scancodes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keymap {
    shift: bool,
    ctrl: bool,
    caps: bool,
    extended: bool,
}

impl Keymap {
    /// One scancode in; the bytes of the key it completed, if any.
    pub fn scancode(&mut self, code: u8) -> Option<Bytes> {
        if code == EXTENDED {
            self.extended = true;
            return None;
        }
        let extended = core::mem::take(&mut self.extended);
        let released = code & BREAK != 0;
        let key = code & !BREAK;
        match key {
            LEFT_SHIFT | RIGHT_SHIFT if !extended => {
                self.shift = !released;
                return None;
            }
            LEFT_CTRL => {
                self.ctrl = !released;
                return None;
            }
            _ => {}
        }
        if released {
            return None;
        }
        if extended {
            return match key {
                0x48 => Some(Bytes::csi(b'A')),
                0x50 => Some(Bytes::csi(b'B')),
                0x4d => Some(Bytes::csi(b'C')),
                0x4b => Some(Bytes::csi(b'D')),
                0x47 => Some(Bytes::csi(b'H')),
                0x4f => Some(Bytes::csi(b'F')),
                // Delete: `ESC [ 3 ~`.
                0x53 => Some(Bytes {
                    buf: [0x1b, b'[', b'3', b'~'],
                    len: 4,
                }),
                0x1c => Some(Bytes::one(b'\r')),
                _ => None,
            };
        }
        if key == CAPS_LOCK {
            self.caps = !self.caps;
            return None;
        }
        let table = if self.shift { SHIFTED } else { PLAIN };
        let mut c = *table.get(usize::from(key))?;
        if c == 0 {
            return None;
        }
        if self.caps && c.is_ascii_alphabetic() {
            c ^= 0x20;
        }
        if self.ctrl {
            // Ctrl-A … Ctrl-Z, Ctrl-[ (ESC), Ctrl-\, Ctrl-] (leaves a
            // guest's console): the character's low five bits.
            if c.is_ascii_alphabetic() || matches!(c, b'[' | b'\\' | b']') {
                c &= 0x1f;
            }
        }
        Some(Bytes::one(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(codes: &[u8]) -> alloc::vec::Vec<u8> {
        let mut k = Keymap::default();
        let mut out = alloc::vec::Vec::new();
        for &c in codes {
            if let Some(b) = k.scancode(c) {
                out.extend_from_slice(b.as_slice());
            }
        }
        out
    }

    #[test]
    fn letters_digits_and_enter() {
        // i n f o Enter, each pressed and released.
        let info = [0x17, 0x97, 0x31, 0xb1, 0x21, 0xa1, 0x18, 0x98, 0x1c, 0x9c];
        assert_eq!(typed(&info), b"info\r");
        assert_eq!(typed(&[0x02, 0x0b, 0x39, 0x0c]), b"10 -");
    }

    #[test]
    fn shift_caps_and_ctrl() {
        // Shift+a, a, Shift+1 then Shift released.
        assert_eq!(typed(&[0x2a, 0x1e, 0x9e, 0x02, 0xaa, 0x1e]), b"A!a");
        // Caps Lock flips letters only.
        assert_eq!(typed(&[0x3a, 0x1e, 0x02]), b"A1");
        // Ctrl+] is 0x1d, Ctrl+U 0x15, Ctrl+C 0x03.
        assert_eq!(
            typed(&[0x1d, 0x1b, 0x16, 0x2e, 0x9d, 0x2e]),
            b"\x1d\x15\x03c"
        );
    }

    #[test]
    fn extended_keys() {
        // Up, Left (make and break), Home, End, keypad Enter.
        let codes = [
            0xe0, 0x48, 0xe0, 0x4b, 0xe0, 0xcb, 0xe0, 0x47, 0xe0, 0x4f, 0xe0, 0x1c,
        ];
        assert_eq!(typed(&codes), b"\x1b[A\x1b[D\x1b[H\x1b[F\r");
        assert_eq!(typed(&[0xe0, 0x53]), b"\x1b[3~");
        // Right Ctrl is Ctrl too; an extended Shift (fake shift) is not.
        assert_eq!(typed(&[0xe0, 0x1d, 0x20, 0xe0, 0x9d, 0x20]), b"\x04d");
        assert_eq!(typed(&[0xe0, 0x2a, 0x1e]), b"a");
    }

    #[test]
    fn unknown_codes_are_ignored() {
        let all: alloc::vec::Vec<u8> = (0..=255).collect();
        // Nothing panics; every byte out is ASCII.
        assert!(typed(&all).iter().all(u8::is_ascii));
    }
}
