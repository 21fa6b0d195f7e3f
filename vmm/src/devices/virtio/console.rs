//! The virtio console (Virtio 1.1 §5.3), one port, no multiport: queue 0
//! receives (VMM → guest), queue 1 transmits (guest → VMM). What the guest
//! transmits becomes the VM's console output, as the UART's does (Linux's
//! `/dev/hvc0`); input queued with [`VirtioConsole::queue_input`] fills the
//! receive buffers the driver has made available, at once or when it
//! makes more. No configuration features (size, multiport, emergency
//! write) are offered.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::mmio::Device;
use super::queue::{Broken, Queue, scatter};
use crate::api::GuestRam;

/// The queues.
const RECEIVEQ: usize = 0;
const TRANSMITQ: usize = 1;
/// Bytes of input kept before more is dropped.
pub const INPUT_MAX: usize = 4096;
/// The most transmitted output kept between two [`VirtioConsole::take_output`]
/// calls; more is dropped (the buffers are still returned), so a guest's
/// lengths never size more than this.
pub const OUTPUT_MAX: usize = 64 * 1024;

/// The console device.
#[derive(Default)]
pub struct VirtioConsole {
    input: VecDeque<u8>,
    /// Transmitted bytes the VMM has not taken yet ([`Self::take_output`]).
    output: Vec<u8>,
}

impl VirtioConsole {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `bytes` for the guest (dropping what exceeds [`INPUT_MAX`]);
    /// the transport's `process` delivers them.
    pub fn queue_input(&mut self, bytes: &[u8]) {
        let room = INPUT_MAX.saturating_sub(self.input.len());
        self.input.extend(bytes.iter().take(room));
    }

    /// Whether input waits for receive buffers.
    pub fn has_input(&self) -> bool {
        !self.input.is_empty()
    }

    /// What the guest transmitted since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    fn receive(&mut self, ram: &GuestRam<'_>, q: &mut Queue) -> Result<bool, Broken> {
        let mut used = false;
        while !self.input.is_empty() && q.has_work(ram)? {
            let Some((head, chain)) = q.pop(ram)? else {
                break;
            };
            let space: Vec<_> = chain.into_iter().filter(|d| d.write).collect();
            let room: usize = space.iter().map(|d| d.len as usize).sum();
            let n = room.min(self.input.len());
            let bytes: Vec<u8> = self.input.iter().take(n).copied().collect();
            let written = if scatter(ram, &space, &bytes) {
                self.input.drain(..n);
                n as u32
            } else {
                0
            };
            q.push(ram, head, written)?;
            used = true;
        }
        Ok(used)
    }

    fn transmit(&mut self, ram: &GuestRam<'_>, q: &mut Queue) -> Result<bool, Broken> {
        let mut used = false;
        while let Some((head, chain)) = q.pop(ram)? {
            for d in chain.iter().filter(|d| !d.write) {
                let room = OUTPUT_MAX - self.output.len();
                let n = (d.len as usize).min(room);
                let start = self.output.len();
                self.output.resize(start + n, 0);
                if ram.read(d.addr, &mut self.output[start..]).is_err() {
                    self.output.truncate(start);
                }
            }
            q.push(ram, head, 0)?;
            used = true;
        }
        Ok(used)
    }
}

impl Device for VirtioConsole {
    const ID: u32 = 3;
    const QUEUES: usize = 2;

    /// The console configuration (§5.3.4): cols, rows, max_nr_ports,
    /// emerg_wr, all unused without their features.
    fn config(&self, _: u64) -> u8 {
        0
    }

    fn process(&mut self, ram: &GuestRam<'_>, index: usize, q: &mut Queue) -> Result<bool, Broken> {
        match index {
            RECEIVEQ => self.receive(ram, q),
            TRANSMITQ => self.transmit(ram, q),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::mmio::tests::{desc, offer, ready, used};
    use super::*;
    use alloc::vec;

    const WRITE: u16 = 2;
    const NEXT: u16 = 1;

    #[test]
    fn transmit_becomes_output() {
        let mut mem = vec![0u8; 0x20000];
        let ram = GuestRam::from_slice(&mut mem);
        let mut dev = ready(VirtioConsole::new());
        ram.write(0x6000, b"hello ").unwrap();
        ram.write(0x6100, b"world\n").unwrap();
        desc(&ram, 1, 0, 0x6000, 6, NEXT, 1);
        desc(&ram, 1, 1, 0x6100, 6, 0, 0);
        offer(&ram, 1, 0);
        dev.process(&ram);
        assert_eq!(dev.dev.take_output(), b"hello world\n");
        assert_eq!(used(&ram, 1, 0), (1, 0, 0));
        assert!(dev.irq());
        assert!(dev.dev.take_output().is_empty());
        // A 4 GiB claim, then more: OUTPUT_MAX is kept, no more.
        desc(&ram, 1, 2, 0x6000, u32::MAX, NEXT, 3);
        desc(&ram, 1, 3, 0, 0x100, 0, 0);
        offer(&ram, 1, 2);
        dev.process(&ram);
        assert_eq!(dev.dev.take_output().len(), OUTPUT_MAX);
        // A buffer running past RAM gives nothing.
        desc(&ram, 1, 4, 0x1_f000, 0x2000, 0, 0);
        offer(&ram, 1, 4);
        dev.process(&ram);
        assert!(dev.dev.take_output().is_empty());
    }

    #[test]
    fn input_waits_for_receive_buffers() {
        let mut mem = vec![0u8; 0x20000];
        let ram = GuestRam::from_slice(&mut mem);
        let mut dev = ready(VirtioConsole::new());
        dev.dev.queue_input(b"abcdef");
        dev.process(&ram);
        assert!(!dev.irq(), "no buffer yet");
        // A 4-byte buffer takes "abcd"; the rest waits for the next.
        desc(&ram, 0, 0, 0x7000, 4, WRITE, 0);
        offer(&ram, 0, 0);
        dev.process(&ram);
        let mut b = [0; 4];
        ram.read(0x7000, &mut b).unwrap();
        assert_eq!(&b, b"abcd");
        assert_eq!(used(&ram, 0, 0), (1, 0, 4));
        assert!(dev.dev.has_input());
        desc(&ram, 0, 1, 0x7100, 16, WRITE, 0);
        offer(&ram, 0, 1);
        dev.process(&ram);
        assert_eq!(used(&ram, 0, 1), (2, 1, 2));
        assert!(!dev.dev.has_input());
        // Input past INPUT_MAX is dropped.
        dev.dev.queue_input(&vec![b'x'; INPUT_MAX + 10]);
        assert_eq!(dev.dev.input.len(), INPUT_MAX);
    }
}
