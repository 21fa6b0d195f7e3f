//! COM1, which the control domain drives directly: the hypervisor passes its
//! ports through (DESIGN.md D10).
//!
//! Everything written to COM1 is also drawn on the machine's screen, where
//! it has one (`MOJITO_CONSOLE_WRITE`, batched), so a PC without a serial
//! port shows the same console.
//!
//! While the shell's prompt is on screen, every line printed from elsewhere
//! (a guest's output, the hypervisor's log, a report) first erases the
//! prompt line (`CR`, `ESC [ K`) and then draws it again below, so output
//! never lands in the middle of what the operator is typing.
//!
//! The control domain's vCPUs share it (`crate::smp`: a helper prints its
//! guests' lines): every public function holds `LOCK` while it touches the
//! UART, the prompt or the screen buffer.

use core::fmt::{self, Write};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

static mut UART: Option<Uart16550<PioBackend>> = None;

/// Held by every public function below: the statics here are only touched
/// with it held.
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// The prompt line as the shell last rendered it (None: no prompt, e.g.
/// while a command runs or a guest's console is attached), and whether it
/// is on screen now.
static mut PROMPT: Option<alloc::vec::Vec<u8>> = None;
static mut PROMPT_SHOWN: bool = false;

/// Sets (or with None removes) the prompt line; it is drawn by
/// `show_prompt`.
pub fn set_prompt(line: Option<alloc::vec::Vec<u8>>) {
    let _held = LOCK.lock();
    // SAFETY: `LOCK` is held, and the vCPUs take no interrupts.
    unsafe { *core::ptr::addr_of_mut!(PROMPT) = line };
}

/// Erases the prompt line if it is on screen.
pub fn hide_prompt() {
    let _held = LOCK.lock();
    hide_locked();
}

fn hide_locked() {
    // SAFETY: the caller holds `LOCK`.
    let shown = unsafe { &mut *core::ptr::addr_of_mut!(PROMPT_SHOWN) };
    if core::mem::take(shown) {
        put(b"\r\x1b[K");
        flush_locked();
    }
}

/// Draws the prompt line if there is one and it is not on screen.
pub fn show_prompt() {
    let _held = LOCK.lock();
    show_locked();
}

fn show_locked() {
    // SAFETY: the caller holds `LOCK`.
    unsafe {
        if *core::ptr::addr_of!(PROMPT_SHOWN) {
            return;
        }
        if let Some(line) = (*core::ptr::addr_of!(PROMPT)).as_ref() {
            put(line);
            flush_locked();
            *core::ptr::addr_of_mut!(PROMPT_SHOWN) = true;
        }
    }
}

/// Notes that the prompt line left the screen without `hide_prompt` (the
/// operator ended it with Enter).
pub fn prompt_gone() {
    let _held = LOCK.lock();
    // SAFETY: `LOCK` is held.
    unsafe { *core::ptr::addr_of_mut!(PROMPT_SHOWN) = false };
}

/// Programs COM1 at 115200 8N1, interrupting on received data: the
/// hypervisor takes that interrupt (IRQ 4) and gives us the CPU back from a
/// running guest (DESIGN.md D2).
pub fn init() {
    let _held = LOCK.lock();
    // SAFETY: COM1's ports are ours (passed through); `LOCK` is held.
    unsafe {
        if let Ok(mut uart) = Uart16550::new_port(0x3f8) {
            let config = Config {
                baud_rate: uart_16550::BaudRate::Baud115200,
                interrupts: uart_16550::spec::registers::IER::DATA_READY,
                ..Config::default()
            };
            if uart.init(config).is_ok() {
                *core::ptr::addr_of_mut!(UART) = Some(uart);
            }
        }
    }
}

/// Bytes waiting for the screen, and whether there is one.
const SCREEN_BUF: usize = 1024;
static mut SCREEN: Option<([u8; SCREEN_BUF], usize)> = None;

/// Mirrors the console on the screen from now on (the hypervisor says
/// whether there is one).
pub fn enable_screen() {
    let _held = LOCK.lock();
    // SAFETY: `LOCK` is held.
    unsafe { *core::ptr::addr_of_mut!(SCREEN) = Some(([0; SCREEN_BUF], 0)) };
}

/// Draws what waits for the screen (`LOCK` held).
fn flush_locked() {
    // SAFETY: the caller holds `LOCK`.
    let screen = unsafe { &mut *core::ptr::addr_of_mut!(SCREEN) };
    let Some((buf, len)) = screen.as_mut() else {
        return;
    };
    if *len > 0 && crate::hv::screen_write(&buf[..*len]).is_err() {
        // No screen after all: stop trying.
        *screen = None;
        return;
    }
    *len = 0;
}

/// Writes bytes to COM1 (`\n` as `\r\n`) and to the screen's buffer
/// (`LOCK` held).
fn put(bytes: &[u8]) {
    // SAFETY: the caller holds `LOCK`.
    if let Some(uart) = unsafe { (*core::ptr::addr_of_mut!(UART)).as_mut() } {
        for &b in bytes {
            if b == b'\n' {
                uart.send_bytes_exact(b"\r");
            }
            uart.send_bytes_exact(&[b]);
        }
    }
    for chunk in bytes.chunks(SCREEN_BUF / 2) {
        // SAFETY: the caller holds `LOCK`.
        let full = unsafe {
            match (*core::ptr::addr_of!(SCREEN)).as_ref() {
                Some((_, len)) => len + chunk.len() > SCREEN_BUF,
                None => break,
            }
        };
        if full {
            flush_locked();
        }
        // SAFETY: as above.
        if let Some((buf, len)) = unsafe { (*core::ptr::addr_of_mut!(SCREEN)).as_mut() } {
            buf[*len..*len + chunk.len()].copy_from_slice(chunk);
            *len += chunk.len();
        }
    }
}

/// Writes bytes, `\n` as `\r\n`, to COM1 and the screen.
pub fn write_bytes(bytes: &[u8]) {
    let _held = LOCK.lock();
    put(bytes);
    flush_locked();
}

/// A received byte, if one is waiting.
pub fn read_byte() -> Option<u8> {
    let _held = LOCK.lock();
    // SAFETY: `LOCK` is held.
    let uart = unsafe { (*core::ptr::addr_of_mut!(UART)).as_mut() };
    uart?.try_receive_byte().ok()
}

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put(s.as_bytes());
        Ok(())
    }
}

/// Prints one line (the prompt moved below it).
pub fn print_line(args: fmt::Arguments<'_>) {
    let _held = LOCK.lock();
    hide_locked();
    let _ = Console.write_fmt(args);
    put(b"\n");
    show_locked();
    flush_locked();
}

/// `print_line` for the panic handler: the panicking vCPU may hold the
/// lock itself (a panic inside `print_line`), so it waits only so long,
/// then gives up printing (the power-off must still come).
pub fn panic_line(args: fmt::Arguments<'_>) {
    for _ in 0..10_000_000u32 {
        if let Some(_held) = LOCK.try_lock() {
            hide_locked();
            let _ = Console.write_fmt(args);
            put(b"\n");
            flush_locked();
            return;
        }
        core::hint::spin_loop();
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        $crate::console::print_line(format_args!($($arg)*));
    }};
}
