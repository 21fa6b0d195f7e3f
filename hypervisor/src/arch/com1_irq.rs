//! COM1's interrupt (IRQ 4 on the legacy master PIC, the PC/AT
//! assignment). The control domain owns COM1 (DESIGN.md D10) and programs
//! the UART to interrupt on received data; the hypervisor only unmasks the
//! line and notes that input came, so that a guest's RUN ends with
//! `KVM_EXIT_INTR` and the control domain reads the input at once (D2), and
//! so that the control domain's HLT wakes.
//!
//! The PIC's input is edge-triggered: the UART raises its line when data
//! arrives and lowers it when the receive buffer is empty, so one interrupt
//! comes per burst of input that the control domain reads.
//!
//! The PS/2 keyboard's IRQ 1 is input too: the control domain reads the
//! 8042's ports (passed through, `control::KBD_DATA_PORT` and
//! `KBD_STATUS_PORT`) for a shell at the
//! machine's own screen, and a key must end a guest's RUN the same way.

use core::sync::atomic::{AtomicU64, Ordering};

/// COM1's line on the master PIC.
pub const IRQ: u8 = 4;
/// The keyboard's line on the master PIC (the 8042's output buffer full).
pub const KBD_IRQ: u8 = 1;

/// COM1 interrupts taken, for the logs and tests.
pub static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// Unmasks COM1's line, and the keyboard's: from now on their interrupts
/// reach the hypervisor.
#[cfg(target_os = "none")]
pub fn enable() {
    super::pic::unmask(IRQ);
    super::pic::unmask(KBD_IRQ);
}

/// Called from the interrupt handler.
pub fn on_interrupt() {
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    super::percpu::raise(0, super::percpu::attention::INPUT);
}

/// Whether input came since the last call (and forgets it). Only the boot
/// CPU's vCPU of the control domain reads the console: input ends RUNs
/// there, and nowhere else.
pub fn take_input() -> bool {
    super::percpu::take(super::percpu::attention::INPUT)
}
