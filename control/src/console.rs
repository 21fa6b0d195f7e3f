//! COM1, which the control domain drives directly: the hypervisor passes its
//! ports through (DESIGN.md D10).

use core::fmt::{self, Write};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

static mut UART: Option<Uart16550<PioBackend>> = None;

/// Programs COM1 at 115200 8N1, interrupting on received data: the
/// hypervisor takes that interrupt (IRQ 4) and gives us the CPU back from a
/// running guest (DESIGN.md D2).
pub fn init() {
    // SAFETY: COM1's ports are ours (passed through); the control domain
    // has one vCPU, so nothing else touches `UART`.
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

/// Writes bytes, `\n` as `\r\n`.
pub fn write_bytes(bytes: &[u8]) {
    // SAFETY: one vCPU, no interrupts: no concurrent access to `UART`.
    let uart = unsafe { (*core::ptr::addr_of_mut!(UART)).as_mut() };
    let Some(uart) = uart else { return };
    for &b in bytes {
        if b == b'\n' {
            uart.send_bytes_exact(b"\r");
        }
        uart.send_bytes_exact(&[b]);
    }
}

/// A received byte, if one is waiting.
pub fn read_byte() -> Option<u8> {
    // SAFETY: one vCPU, no interrupts: no concurrent access to `UART`.
    let uart = unsafe { (*core::ptr::addr_of_mut!(UART)).as_mut() };
    uart?.try_receive_byte().ok()
}

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

pub fn print(args: fmt::Arguments<'_>) {
    let _ = Console.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        $crate::console::print(format_args!($($arg)*));
        $crate::console::print(format_args!("\n"));
    }};
}
