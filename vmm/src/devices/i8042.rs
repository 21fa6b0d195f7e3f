//! Enough of the PC's 8042 keyboard controller to reset the machine: the
//! status port (0x64) reads "input buffer empty, no output", and the
//! command 0xFE ("pulse output line 0", the CPU's reset line) resets the
//! VM ([`Effect::Reset`]), which is how Linux's `reboot` ends on a PC
//! without an ACPI reset register (`reboot=kbd`, its fallback). No
//! keyboard or mouse: the FADT says there is no 8042 (`crate::acpi`), so
//! Linux's i8042 driver never probes it, and other commands do nothing.

use super::{Effect, PortDevice};

/// The data and command/status ports.
pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;
/// Status: the system flag (bit 2, set after self-test) and nothing in
/// either buffer (bits 0 and 1 clear).
const STATUS_SYSTEM_FLAG: u8 = 1 << 2;
/// The command that pulses the reset line (bit 0 of the output port).
const PULSE_RESET: u8 = 0xfe;

/// The controller; one device per port (the ports are not adjacent).
#[derive(Clone, Copy, Debug, Default)]
pub struct I8042;

impl PortDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        // Offset 0 of the command port: status; of the data port: no data.
        let value = if offset == 0 { STATUS_SYSTEM_FLAG } else { 0 };
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = value;
        }
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> Effect {
        match data.first() {
            Some(&PULSE_RESET) => Effect::Reset,
            _ => Effect::None,
        }
    }
}

/// The data port: reads 0, writes ignored (no keyboard behind it).
#[derive(Clone, Copy, Debug, Default)]
pub struct I8042Data;

impl PortDevice for I8042Data {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u16, _data: &[u8]) -> Effect {
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::PortBus;
    use alloc::boxed::Box;

    #[test]
    fn status_and_reset() {
        let mut bus = PortBus::new();
        bus.insert(COMMAND_PORT, 1, Box::new(I8042)).unwrap();
        bus.insert(DATA_PORT, 1, Box::new(I8042Data)).unwrap();
        let mut b = [0xff];
        bus.read(COMMAND_PORT, &mut b);
        assert_eq!(
            b[0] & 0b11,
            0,
            "both buffers empty: Linux's kbd reboot waits for that"
        );
        bus.read(DATA_PORT, &mut b);
        assert_eq!(b[0], 0);
        assert_eq!(bus.write(COMMAND_PORT, &[0xd1]), Effect::None);
        assert_eq!(
            bus.write(DATA_PORT, &[0xfe]),
            Effect::None,
            "data, not a command"
        );
        assert_eq!(bus.write(COMMAND_PORT, &[0xfe]), Effect::Reset);
    }
}
