//! The shell at the machine's own screen (issue 5, item 3): keys typed on
//! QEMU's PS/2 keyboard (QMP `send-key`) must reach the shell, and the
//! console must be on the screen: the test renders the text it expects with
//! the font the hypervisor's screen console uses and finds it, pixel for
//! pixel, in QEMU's screendump.

use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

use crate::typist::{Keys, Via};

/// The screen console's layout (hypervisor/src/log/fbcon.rs): a margin of 4
/// pixels, 16-pixel lines, Noto Sans Mono 16 regular.
const MARGIN: usize = 4;
const LINE_H: usize = 16;
const WEIGHT: FontWeight = FontWeight::Regular;
const HEIGHT: RasterHeight = RasterHeight::Size16;

/// The screendump's file name in the run directory.
pub const SCREENSHOT: &str = "screen.ppm";

/// What is typed on the keyboard, and what must then be on the screen.
pub const TYPED: &str = "info\r";
pub const ON_SCREEN: [&str; 2] = ["mojito> info", "virtualization: "];

/// The session: `info` on the keyboard once the shell is ready, a
/// screendump after its last line, then `poweroff` on COM1.
pub fn keys() -> Vec<Keys> {
    vec![
        Keys {
            after: crate::shell::READY,
            keys: TYPED,
            via: Via::Keyboard,
        },
        Keys {
            after: "uptime: ",
            keys: SCREENSHOT,
            via: Via::Screendump,
        },
        Keys {
            after: "",
            keys: "poweroff\r",
            via: Via::Serial,
        },
    ]
}

/// A PPM (P6) image as grey levels (the mean of R, G, B).
pub struct Image {
    pub width: usize,
    pub height: usize,
    grey: Vec<u8>,
}

impl Image {
    pub fn parse_ppm(bytes: &[u8]) -> Result<Self, String> {
        // Header: "P6", width, height, max value, each after white space,
        // then one white-space byte and the pixels.
        let mut fields = Vec::new();
        let mut at = 0;
        while fields.len() < 4 {
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            let start = at;
            while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            if start == at {
                return Err("a truncated PPM header".into());
            }
            fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
        }
        if fields[0] != "P6" || fields[3] != "255" {
            return Err(format!("not an 8-bit P6 PPM: {fields:?}"));
        }
        let width: usize = fields[1].parse().map_err(|_| "a bad PPM width")?;
        let height: usize = fields[2].parse().map_err(|_| "a bad PPM height")?;
        let pixels = bytes.get(at + 1..).ok_or("no PPM pixels")?;
        if pixels.len() < width * height * 3 {
            return Err("a truncated PPM".into());
        }
        let grey = pixels
            .as_chunks::<3>()
            .0
            .iter()
            .take(width * height)
            .map(|p| ((u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2])) / 3) as u8)
            .collect();
        Ok(Self {
            width,
            height,
            grey,
        })
    }

    fn at(&self, x: usize, y: usize) -> Option<u8> {
        (x < self.width && y < self.height).then(|| self.grey[y * self.width + x])
    }
}

/// Whether `text` is drawn at the start of text line `row`: every pixel of
/// its glyphs within a small tolerance.
fn drawn_at(image: &Image, text: &str, row: usize) -> bool {
    let char_w = get_raster_width(WEIGHT, HEIGHT);
    let y0 = MARGIN + row * LINE_H;
    text.chars().enumerate().all(|(i, c)| {
        let Some(glyph) = get_raster(c, WEIGHT, HEIGHT) else {
            return false;
        };
        let x0 = MARGIN + i * char_w;
        glyph.raster().iter().enumerate().all(|(dy, line)| {
            line.iter().enumerate().all(|(dx, &v)| {
                image
                    .at(x0 + dx, y0 + dy)
                    .is_some_and(|p| p.abs_diff(v) <= 8)
            })
        })
    })
}

/// The text lines at whose start `text` is drawn.
pub fn find(image: &Image, text: &str) -> Vec<usize> {
    (0..image.height.saturating_sub(MARGIN) / LINE_H)
        .filter(|&row| drawn_at(image, text, row))
        .collect()
}

/// What the session lacks: the typed line and its answer on COM1 (the
/// keys reached the shell), the same on the screen, below one another.
pub fn problems(serial: &str, screenshot: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let lines: Vec<&str> = serial.lines().map(str::trim_end).collect();
    match lines.iter().position(|l| *l == ON_SCREEN[0]) {
        None => problems.push(format!(
            "no line {:?} on COM1: the PS/2 keys did not reach the shell",
            ON_SCREEN[0]
        )),
        Some(at) => {
            if !lines[at..].iter().any(|l| l.starts_with(ON_SCREEN[1])) {
                problems.push(format!(
                    "`info` typed on the keyboard got no {:?} line",
                    ON_SCREEN[1]
                ));
            }
        }
    }
    if lines
        .iter()
        .any(|l| l.starts_with("control: no keyboard here"))
    {
        problems.push("the control domain found no keyboard".into());
    }
    let image = match Image::parse_ppm(screenshot) {
        Ok(i) => i,
        Err(e) => {
            problems.push(format!("the screendump: {e}"));
            return problems;
        }
    };
    let typed = find(&image, ON_SCREEN[0]);
    let answer = find(&image, ON_SCREEN[1]);
    match (typed.last(), answer.last()) {
        (Some(t), Some(a)) if a > t => {}
        _ => problems.push(format!(
            "the screen ({}x{}) does not show {:?} (found on lines {typed:?}) with {:?} below it \
             (lines {answer:?})",
            image.width, image.height, ON_SCREEN[0], ON_SCREEN[1]
        )),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws `text` at line `row` of a blank `w`×`h` PPM, as fbcon does.
    fn ppm_with(text: &str, row: usize, w: usize, h: usize) -> Vec<u8> {
        let mut px = vec![0u8; w * h * 3];
        let char_w = get_raster_width(WEIGHT, HEIGHT);
        for (i, c) in text.chars().enumerate() {
            let glyph = get_raster(c, WEIGHT, HEIGHT).unwrap();
            for (dy, line) in glyph.raster().iter().enumerate() {
                for (dx, &v) in line.iter().enumerate() {
                    let (x, y) = (MARGIN + i * char_w + dx, MARGIN + row * LINE_H + dy);
                    px[(y * w + x) * 3..][..3].fill(v);
                }
            }
        }
        let mut out = format!("P6\n{w} {h}\n255\n").into_bytes();
        out.extend(px);
        out
    }

    #[test]
    fn finds_text_where_it_is_drawn_only() {
        let img = Image::parse_ppm(&ppm_with("mojito> info", 3, 320, 120)).unwrap();
        assert_eq!(find(&img, "mojito> info"), [3]);
        assert!(find(&img, "mojito> list").is_empty());
        assert!(find(&img, "virtualization: ").is_empty());
        assert!(Image::parse_ppm(b"P5\n1 1\n255\n\0").is_err());
        assert!(Image::parse_ppm(b"P6\n2 2\n255\n\0").is_err());
    }
}
