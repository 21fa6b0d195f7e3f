//! The debug console: each byte written to `CONSOLE_PORT` joins the guest's
//! current output line, which the hypervisor prints as `[NAME] line`.

use crate::port::outb;
use abi::guest::CONSOLE_PORT;
use core::fmt;

/// Writer for `core::fmt`: one OUT, hence one VM exit, per byte. Slow, but
/// the simplest thing for the hypervisor to handle (no string I/O).
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            outb(CONSOLE_PORT, byte);
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn print_args(args: fmt::Arguments<'_>) {
    // Console::write_str never fails.
    let _ = fmt::Write::write_fmt(&mut Console, args);
}

/// Like `std::print!`, to the debug console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_args(format_args!($($arg)*)) };
}

/// Like `std::println!`, to the debug console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print_args(format_args!("{}\n", format_args!($($arg)*))) };
}
