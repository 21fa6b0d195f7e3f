//! A text console on the framebuffer the bootloader hands over, so a PC
//! booted from USB without a serial port still shows the log. Glyphs come
//! from `noto-sans-mono-bitmap`; the console scrolls by half a screen when
//! full, which keeps copying rare under emulators.

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

impl Console {
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
