//! A text console on the framebuffer the bootloader hands over, so a PC
//! booted from USB without a serial port still shows the log. Glyphs come
//! from `noto-sans-mono-bitmap`; the console scrolls by half a screen when
//! full, which keeps copying rare under emulators.
//!
//! Once the control domain owns the console it draws the shell here too
//! (`MOJITO_CONSOLE_WRITE`), so the few terminal controls the shell's line
//! editor uses are understood: CR, LF, BS, `ESC [ K` (erase to the end of
//! the line) and `ESC [ n C` / `ESC [ n D` (cursor right / left); other
//! escape sequences and control characters are dropped.

use bootloader_api::info::{FrameBuffer, PixelFormat};
use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

const WEIGHT: FontWeight = FontWeight::Regular;
const HEIGHT: RasterHeight = RasterHeight::Size16;
const LINE_H: usize = 16;
const CHAR_W: usize = get_raster_width(WEIGHT, HEIGHT);
const MARGIN: usize = 4;

struct Console {
    buf: &'static mut [u8],
    width: usize,
    height: usize,
    stride: usize,
    bpp: usize,
    format: PixelFormat,
    x: usize,
    y: usize,
    /// Where the console is in an escape sequence: `esc` after a lone
    /// `ESC`; `csi` after `ESC [`, with the parameter's digits so far.
    esc: bool,
    csi: Option<Option<usize>>,
}

static CONSOLE: spin::Mutex<Option<Console>> = spin::Mutex::new(None);

/// Takes over the framebuffer (if the bootloader found one).
pub fn init(fb: &'static mut FrameBuffer) {
    let info = fb.info();
    let console = Console {
        width: info.width,
        height: info.height,
        stride: info.stride,
        bpp: info.bytes_per_pixel,
        format: info.pixel_format,
        buf: fb.buffer_mut(),
        x: MARGIN,
        y: MARGIN,
        esc: false,
        csi: None,
    };
    let c = console;
    c.buf.fill(0);
    *CONSOLE.lock() = Some(c);
}

/// Draws text (a fatal path never waits for the lock).
pub fn write(s: &str) {
    let Some(mut guard) = CONSOLE.try_lock() else {
        return;
    };
    if let Some(c) = guard.as_mut() {
        for ch in s.chars() {
            c.put(ch);
        }
    }
}

/// Whether there is a framebuffer console.
pub fn present() -> bool {
    CONSOLE.lock().is_some()
}

/// Draws the control domain's text (UTF-8; invalid bytes as U+FFFD) with
/// the terminal controls of the module's documentation.
pub fn write_bytes(bytes: &[u8]) {
    let Some(mut guard) = CONSOLE.try_lock() else {
        return;
    };
    let Some(c) = guard.as_mut() else {
        return;
    };
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            c.term(ch);
        }
        if !chunk.invalid().is_empty() {
            c.term('\u{fffd}');
        }
    }
}

/// Longest `ESC [` parameter honoured (columns).
const CSI_MAX: usize = 999;

impl Console {
    /// One character of terminal output.
    fn term(&mut self, ch: char) {
        if let Some(param) = self.csi.take() {
            match ch {
                '0'..='9' => {
                    let digit = ch as usize - '0' as usize;
                    let n = (param.unwrap_or(0) * 10 + digit).min(CSI_MAX);
                    self.csi = Some(Some(n));
                }
                // Parameter separators and private markers: still inside.
                ';' | '=' | '?' => self.csi = Some(param),
                'K' => self.clear_to_end(),
                'C' => {
                    let n = param.unwrap_or(1).max(1);
                    let right = self.width.saturating_sub(MARGIN + CHAR_W).max(MARGIN);
                    self.x = (self.x + n * CHAR_W).min(right);
                }
                'D' => {
                    let n = param.unwrap_or(1).max(1);
                    self.x = self.x.saturating_sub(n * CHAR_W).max(MARGIN);
                }
                _ => {}
            }
            return;
        }
        if core::mem::take(&mut self.esc) {
            if ch == '[' {
                self.csi = Some(None);
            }
            return;
        }
        match ch {
            '\u{1b}' => self.esc = true,
            '\u{8}' => self.x = self.x.saturating_sub(CHAR_W).max(MARGIN),
            '\n' | '\r' => self.put(ch),
            c if c.is_control() => {}
            c => self.put(c),
        }
    }

    /// Clears from the cursor to the end of its line.
    fn clear_to_end(&mut self) {
        for y in self.y..(self.y + LINE_H).min(self.height) {
            for x in self.x..self.width {
                self.pixel(x, y, 0);
            }
        }
    }

    fn put(&mut self, ch: char) {
        match ch {
            '\n' => self.newline(),
            '\r' => self.x = MARGIN,
            ch => {
                if self.x + CHAR_W > self.width.saturating_sub(MARGIN) {
                    self.newline();
                }
                let glyph =
                    get_raster(ch, WEIGHT, HEIGHT).or_else(|| get_raster('?', WEIGHT, HEIGHT));
                if let Some(glyph) = glyph {
                    for (dy, row) in glyph.raster().iter().enumerate() {
                        for (dx, &intensity) in row.iter().enumerate() {
                            self.pixel(self.x + dx, self.y + dy, intensity);
                        }
                    }
                }
                self.x += CHAR_W;
            }
        }
    }

    fn newline(&mut self) {
        self.x = MARGIN;
        self.y += LINE_H;
        if self.y + LINE_H + MARGIN > self.height {
            self.scroll();
        }
    }

    /// Moves the bottom half of the screen up and clears the rest.
    fn scroll(&mut self) {
        let keep_lines = (self.height / LINE_H) / 2;
        let shift = (self.y - MARGIN).saturating_sub(keep_lines * LINE_H);
        let row_bytes = self.stride * self.bpp;
        let from = shift * row_bytes;
        let len = self.buf.len();
        if from < len {
            self.buf.copy_within(from.., 0);
            self.buf[len - from..].fill(0);
        } else {
            self.buf.fill(0);
        }
        self.y -= shift;
    }

    fn pixel(&mut self, x: usize, y: usize, intensity: u8) {
        let at = (y * self.stride + x) * self.bpp;
        let Some(px) = self.buf.get_mut(at..at + self.bpp) else {
            return;
        };
        let v = intensity;
        match self.format {
            PixelFormat::Rgb | PixelFormat::Bgr => {
                // A light grey: the same value in each colour channel.
                for b in px.iter_mut().take(3) {
                    *b = v;
                }
            }
            PixelFormat::U8 => {
                if let Some(b) = px.first_mut() {
                    *b = v;
                }
            }
            _ => px.fill(v),
        }
    }
}
