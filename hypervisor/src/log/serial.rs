//! COM1 at 115200 8N1 through `uart_16550`. If no UART answers (many PCs
//! booted from USB have none), serial output is dropped and the framebuffer
//! console is the only screen.

use core::sync::atomic::{AtomicBool, Ordering};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

/// The legacy COM1 I/O base.
pub const COM1: u16 = 0x3f8;

static PRESENT: AtomicBool = AtomicBool::new(false);
static UART: spin::Mutex<Option<Uart16550<PioBackend>>> = spin::Mutex::new(None);

/// Programs COM1; returns whether a UART is there.
pub fn init() -> bool {
    // SAFETY: COM1's ports belong to the hypervisor; nothing else drives
    // them once the bootloader has handed over.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else {
        return false;
    };
    let config = Config {
        baud_rate: uart_16550::BaudRate::Baud115200,
        ..Config::default()
    };
    if uart.init(config).is_err() {
        return false;
    }
    *UART.lock() = Some(uart);
    PRESENT.store(true, Ordering::Relaxed);
    true
}

/// Writes bytes, translating `\n` to `\r\n`.
pub fn write(bytes: &[u8]) {
    if !PRESENT.load(Ordering::Relaxed) {
        return;
    }
    // A fatal path may have interrupted a writer: never wait for the lock,
    // write to the registers directly instead.
    let Some(mut guard) = UART.try_lock() else {
        return write_raw(bytes);
    };
    let Some(uart) = guard.as_mut() else { return };
    for &b in bytes {
        if b == b'\n' {
            uart.send_bytes_exact(b"\r");
        }
        uart.send_bytes_exact(&[b]);
    }
}

/// Line status register: transmit holding register empty (bit 5).
const LSR_THRE: u8 = 1 << 5;
/// Line status register: transmitter empty (bit 6).
const LSR_TEMT: u8 = 1 << 6;

fn lsr() -> u8 {
    // SAFETY: reading COM1's line status register has no side effect.
    unsafe { x86_64::instructions::port::Port::<u8>::new(COM1 + 5).read() }
}

fn write_raw(bytes: &[u8]) {
    for &b in bytes {
        for out in [b'\r', b] {
            if out == b'\r' && b != b'\n' {
                continue;
            }
            for _ in 0..100_000 {
                if lsr() & LSR_THRE != 0 {
                    break;
                }
                core::hint::spin_loop();
            }
            // SAFETY: writing COM1's transmit register sends one byte.
            unsafe { x86_64::instructions::port::Port::<u8>::new(COM1).write(out) }
        }
    }
}

/// Waits until the transmitter has sent everything (before power-off, so
/// the last characters are not lost).
pub fn flush() {
    if !PRESENT.load(Ordering::Relaxed) {
        return;
    }
    for _ in 0..1_000_000 {
        if lsr() & LSR_TEMT != 0 {
            return;
        }
        core::hint::spin_loop();
    }
}
