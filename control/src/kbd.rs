//! The PS/2 keyboard through the 8042 controller, whose ports the
//! hypervisor passes through (with IRQ 1 ending a guest's RUN like COM1
//! input, D2): the shell at the machine's own screen. Scancodes become the
//! bytes a terminal sends (`keymap`).

use crate::keymap::Keymap;

/// The 8042's data port, and its status (read) / command (write) port.
const DATA: u16 = 0x60;
const STATUS: u16 = 0x64;
/// Status: output buffer full (a byte to read); the byte is the mouse's.
const OUTPUT_FULL: u8 = 1 << 0;
const INPUT_FULL: u8 = 1 << 1;
const AUX_DATA: u8 = 1 << 5;
/// Commands: read and write the controller's configuration byte.
const READ_CONFIG: u8 = 0x20;
const WRITE_CONFIG: u8 = 0x60;
/// Configuration: keyboard interrupt on, keyboard clock off (to clear),
/// translation to scancode set 1.
const CONFIG_KBD_IRQ: u8 = 1 << 0;
const CONFIG_KBD_DISABLED: u8 = 1 << 4;
const CONFIG_TRANSLATE: u8 = 1 << 6;
/// Polls before giving up on the controller.
const WAIT: u32 = 100_000;

/// Reads the 8042's data or status port.
fn inb(port: u16) -> u8 {
    debug_assert!(port == DATA || port == STATUS);
    let v: u8;
    // SAFETY: only DATA and STATUS are read: the 8042's ports, passed
    // through to us; a read takes a byte from its buffer and touches no
    // memory.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

/// Writes the 8042's command or data port.
///
/// # Safety
/// The caller sends only `READ_CONFIG` / `WRITE_CONFIG` to `STATUS` and the
/// configuration byte to `DATA` after `WRITE_CONFIG`: other commands reset
/// the machine (0xFE) or change the A20 gate (0xD1).
unsafe fn outb(port: u16, v: u8) {
    // SAFETY: per the function's contract; no memory is touched.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}

/// Waits (bounded) until the controller takes a byte.
fn ready_for_input() -> bool {
    (0..WAIT).any(|_| inb(STATUS) & INPUT_FULL == 0)
}

/// The keyboard, once the controller answered.
pub struct Keyboard {
    map: Keymap,
}

impl Keyboard {
    /// Sets the controller up (keyboard on, its interrupt on, set 1
    /// translation); None when no controller answers (status reads all
    /// ones, or it never takes a command).
    pub fn init() -> Option<Self> {
        if inb(STATUS) == 0xff || !ready_for_input() {
            return None;
        }
        // Whatever the firmware left in the buffer goes.
        for _ in 0..16 {
            if inb(STATUS) & OUTPUT_FULL == 0 {
                break;
            }
            let _ = inb(DATA);
        }
        // SAFETY: the read-configuration command.
        unsafe { outb(STATUS, READ_CONFIG) };
        let config = (0..WAIT)
            .find(|_| inb(STATUS) & OUTPUT_FULL != 0)
            .map(|_| inb(DATA))?;
        let config = (config | CONFIG_KBD_IRQ | CONFIG_TRANSLATE) & !CONFIG_KBD_DISABLED;
        if !ready_for_input() {
            return None;
        }
        // SAFETY: the write-configuration command, then its byte.
        unsafe { outb(STATUS, WRITE_CONFIG) };
        if !ready_for_input() {
            return None;
        }
        // SAFETY: as above.
        unsafe { outb(DATA, config) };
        Some(Self {
            map: Keymap::default(),
        })
    }

    /// The bytes of the next key pressed, if a scancode is waiting
    /// (mouse bytes are dropped).
    pub fn poll(&mut self, out: &mut alloc::vec::Vec<u8>) {
        for _ in 0..16 {
            let status = inb(STATUS);
            if status & OUTPUT_FULL == 0 {
                return;
            }
            let code = inb(DATA);
            if status & AUX_DATA != 0 {
                continue;
            }
            if let Some(bytes) = self.map.scancode(code) {
                out.extend_from_slice(bytes.as_slice());
            }
        }
    }
}
