//! Virtio devices on virtio-mmio (Virtio 1.1): the transport
//! ([`mmio::Mmio`]: §4.2 "Virtio Over MMIO", version 2 registers), split
//! virtqueues ([`queue`]: §2.6), a block device ([`blk`]: §5.2) and a
//! console ([`console`]: §5.3). Linux finds them in the DSDT
//! (`crate::acpi::VirtioMmio`, _HID LNRO0005), or through the command line
//! (`virtio_mmio.device=SIZE@BASE:IRQ`) where the kernel has
//! CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (Debian's has not); either needs its
//! `virtio_mmio` driver.
//!
//! Requests are carried out when the driver notifies a queue, in the exit
//! that wrote QueueNotify (and, for the console's receive queue, when
//! input arrives). Malformed requests get the device's error status, never
//! a panic; a malformed queue (a descriptor loop, an index past the ring,
//! an indirect descriptor, which is not offered) sets DEVICE_NEEDS_RESET
//! and stops the device until the driver resets it.

pub mod blk;
pub mod console;
pub mod mmio;
pub mod queue;

/// Each device's register window (the registers and 256 bytes of
/// configuration).
pub const MMIO_LEN: u64 = 0x200;
/// The block device's window and interrupt (ISA IRQ / IOAPIC pin 5).
pub const BLK_BASE: u64 = 0xd000_0000;
pub const BLK_IRQ: u8 = 5;
/// The console's window and interrupt (pin 6).
pub const CONSOLE_BASE: u64 = 0xd000_0200;
pub const CONSOLE_IRQ: u8 = 6;
