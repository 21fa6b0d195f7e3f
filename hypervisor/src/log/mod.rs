//! The hypervisor's log: every line goes to COM1 and the framebuffer text
//! console, prefixed `mojito: ` (DESIGN.md D10), and into a ring that the
//! control domain reads (`MOJITO_READ_LOG`) and echoes once it owns the
//! console (COM1, and the screen through `MOJITO_CONSOLE_WRITE`).
//!
//! Logging is for boot, VM lifecycle and errors. It is never called on the
//! exit path of an exit the hypervisor handles itself (D8).

#[cfg(target_os = "none")]
pub mod fbcon;
pub mod ring;
#[cfg(target_os = "none")]
pub mod serial;

use core::fmt::{self, Write};

/// Prefix of every hypervisor line on the serial console.
pub const PREFIX: &str = "mojito: ";

/// Where log text goes, all sinks under one lock so lines never interleave.
struct Sinks {
    ring: ring::Ring,
}

static SINKS: spin::Mutex<Sinks> = spin::Mutex::new(Sinks {
    ring: ring::Ring::new(),
});

/// Writes raw text (no prefix) to every sink.
struct Raw<'a>(&'a mut Sinks);

impl Write for Raw<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.ring.push(s.as_bytes());
        #[cfg(target_os = "none")]
        {
            if SERIAL_ON.load(core::sync::atomic::Ordering::Relaxed) {
                serial::write(s.as_bytes());
                fbcon::write(s);
            }
        }
        #[cfg(not(target_os = "none"))]
        let _ = s;
        Ok(())
    }
}

/// Logs one line with the `mojito: ` prefix.
pub fn line(args: fmt::Arguments<'_>) {
    let mut sinks = SINKS.lock();
    let mut w = Raw(&mut sinks);
    let _ = w.write_str(PREFIX);
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
}

/// Writes a line that is not the hypervisor's own (a guest's output, already
/// prefixed with `[NAME] `), to the same sinks.
pub fn guest_line(name: &str, text: &[u8]) {
    let mut sinks = SINKS.lock();
    let mut w = Raw(&mut sinks);
    let _ = write!(w, "[{name}] ");
    for chunk in text.utf8_chunks() {
        let _ = w.write_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let _ = w.write_str("\u{fffd}");
        }
    }
    let _ = w.write_str("\n");
}

/// Whether there is a screen (a framebuffer console).
pub fn screen_present() -> bool {
    #[cfg(target_os = "none")]
    return fbcon::present();
    #[cfg(not(target_os = "none"))]
    false
}

/// Draws the control domain's text on the screen (`MOJITO_CONSOLE_WRITE`).
pub fn screen_write(bytes: &[u8]) {
    #[cfg(target_os = "none")]
    fbcon::write_bytes(bytes);
    #[cfg(not(target_os = "none"))]
    let _ = bytes;
}

/// Logs a line from a context that may have interrupted a logger (an
/// exception handler): takes the lock if it can, otherwise writes anyway.
pub fn emergency(args: fmt::Arguments<'_>) {
    // A fatal error takes the serial line back from the control domain.
    set_serial(true);
    if let Some(mut sinks) = SINKS.try_lock() {
        let mut w = Raw(&mut sinks);
        let _ = w.write_str(PREFIX);
        let _ = w.write_fmt(args);
        let _ = w.write_str("\n");
    } else {
        #[cfg(target_os = "none")]
        emergency_direct(args);
    }
}

/// Writes straight to the UART (the sinks' lock is held by the code the
/// fatal error interrupted).
#[cfg(target_os = "none")]
fn emergency_direct(args: fmt::Arguments<'_>) {
    {
        struct Direct;
        impl Write for Direct {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                serial::write(s.as_bytes());
                Ok(())
            }
        }
        let _ = Direct.write_str(PREFIX);
        let _ = Direct.write_fmt(args);
        let _ = Direct.write_str("\n");
    }
}

/// Copies log text written since `cursor` into `out`: (bytes copied, bytes
/// lost, next cursor). See `ring::Ring::read_since`.
pub fn read_since(cursor: u64, out: &mut [u8]) -> (usize, u64, u64) {
    SINKS.lock().ring.read_since(cursor, out)
}

/// How many bytes were ever logged: a reader that starts here sees only
/// what comes next.
pub fn position() -> u64 {
    SINKS.lock().ring.total()
}

/// Stops (or resumes) writing the log to COM1 and the screen: once the
/// control domain owns the console (DESIGN.md D10) it echoes the ring
/// itself, on COM1 and, through `MOJITO_CONSOLE_WRITE`, on the screen.
/// Fatal errors still go to both.
pub fn set_serial(enabled: bool) {
    SERIAL_ON.store(enabled, core::sync::atomic::Ordering::Relaxed);
}

static SERIAL_ON: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

/// Copies the most recent log text into `out`; returns the bytes copied.
pub fn recent(out: &mut [u8]) -> usize {
    SINKS.lock().ring.copy_recent(out)
}

/// `log!("vm {} started", id)`: one hypervisor log line.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::line(format_args!($($arg)*)) };
}
