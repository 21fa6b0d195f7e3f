//! A 16550A UART (the PC's COM ports; register set as in the National
//! Semiconductor PC16550D data sheet, "Registers", Table II).
//!
//! Transmission is instantaneous: a byte written to THR becomes serial
//! output at once, so LSR always shows THR empty and the transmitter idle
//! (THRE | TEMT) — a guest that polls LSR before each byte, as Linux's
//! early console does, would spin forever otherwise. Received bytes wait in
//! an input queue (the VMM's side of the line) and are read from RBR; LSR.DR
//! says when one is there. The interrupt line is computed ([`Uart::irq`])
//! for the interrupt controller that will consume it; nothing drives it yet.

use alloc::collections::VecDeque;

use super::{Effect, PortDevice};

/// COM1's base port.
pub const COM1: u16 = 0x3f8;
/// Ports a UART decodes.
pub const UART_LEN: u16 = 8;
/// Bytes of input kept before further input is dropped (and LSR.OE set).
pub const INPUT_MAX: usize = 4096;

// Register offsets.
const RBR_THR_DLL: u16 = 0;
const IER_DLM: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

// IER bits.
const IER_RDA: u8 = 1 << 0;
const IER_THRE: u8 = 1 << 1;
const IER_RLS: u8 = 1 << 2;
const IER_MS: u8 = 1 << 3;

// IIR values: bit 0 clear means an interrupt is pending, bits 1-3 say
// which (highest priority first), bits 6-7 are set while FIFOs are on.
const IIR_NONE: u8 = 0x01;
const IIR_RLS: u8 = 0x06;
const IIR_RDA: u8 = 0x04;
const IIR_THRE: u8 = 0x02;
const IIR_MS: u8 = 0x00;
const IIR_FIFO_ON: u8 = 0xc0;

// FCR bits.
const FCR_ENABLE: u8 = 1 << 0;
const FCR_CLEAR_RX: u8 = 1 << 1;
const FCR_TRIGGER: u8 = 0xc0;

// LCR bit 7: divisor latch access.
const LCR_DLAB: u8 = 1 << 7;

// MCR bits.
const MCR_DTR: u8 = 1 << 0;
const MCR_RTS: u8 = 1 << 1;
const MCR_OUT1: u8 = 1 << 2;
const MCR_OUT2: u8 = 1 << 3;
const MCR_LOOP: u8 = 1 << 4;
const MCR_MASK: u8 = 0x1f;

// LSR bits.
const LSR_DR: u8 = 1 << 0;
const LSR_OE: u8 = 1 << 1;
const LSR_BI: u8 = 1 << 4;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

// MSR bits: deltas in 0-3, lines in 4-7.
const MSR_CTS: u8 = 1 << 4;
const MSR_DSR: u8 = 1 << 5;
const MSR_RI: u8 = 1 << 6;
const MSR_DCD: u8 = 1 << 7;
const MSR_TERI: u8 = 1 << 2;

/// The divisor for 115200 baud from the 1.8432 MHz clock: the reset value
/// firmware leaves behind.
const DIVISOR_115200: u16 = 1;

/// A 16550A UART.
#[derive(Clone, Debug)]
pub struct Uart {
    divisor: u16,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    /// LSR bits that latch until LSR is read (overrun).
    lsr_errors: u8,
    /// MSR delta bits, cleared when MSR is read.
    msr_deltas: u8,
    /// A THR-empty interrupt is pending (set when THR empties with the
    /// interrupt enabled, cleared by an IIR read that reports it or by the
    /// next THR write).
    thre_pending: bool,
    input: VecDeque<u8>,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// A UART in its reset state (16550D data sheet, Table IV), with the
    /// divisor set for 115200 baud.
    pub fn new() -> Self {
        Self {
            divisor: DIVISOR_115200,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            lsr_errors: 0,
            msr_deltas: 0,
            thre_pending: false,
            input: VecDeque::new(),
        }
    }

    /// Queues `bytes` of input for the guest to read from RBR; bytes beyond
    /// [`INPUT_MAX`] are dropped and reported as an overrun (LSR.OE).
    pub fn queue_input(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.receive(b);
        }
    }

    fn receive(&mut self, b: u8) {
        if self.input.len() >= INPUT_MAX {
            self.lsr_errors |= LSR_OE;
        } else {
            self.input.push_back(b);
        }
    }

    /// Bytes of input not yet read by the guest.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }

    /// The divisor latch (DLM:DLL).
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    /// The line-control register (word length, parity, stop bits, DLAB).
    pub fn lcr(&self) -> u8 {
        self.lcr
    }

    fn lsr(&self) -> u8 {
        let dr = if self.input.is_empty() { 0 } else { LSR_DR };
        LSR_THRE | LSR_TEMT | dr | self.lsr_errors
    }

    /// The modem-status lines: in loopback mode the MCR outputs wired back
    /// (RTS → CTS, DTR → DSR, OUT1 → RI, OUT2 → DCD, as the data sheet's
    /// loopback description says); otherwise a peer that is always there
    /// (CTS, DSR, DCD), as QEMU reports.
    fn msr_lines(&self) -> u8 {
        if self.mcr & MCR_LOOP != 0 {
            let m = self.mcr;
            let bit = |mask, line| if m & mask != 0 { line } else { 0 };
            bit(MCR_RTS, MSR_CTS)
                | bit(MCR_DTR, MSR_DSR)
                | bit(MCR_OUT1, MSR_RI)
                | bit(MCR_OUT2, MSR_DCD)
        } else {
            MSR_CTS | MSR_DSR | MSR_DCD
        }
    }

    fn set_mcr(&mut self, value: u8) {
        let before = self.msr_lines();
        self.mcr = value & MCR_MASK;
        let after = self.msr_lines();
        let changed = before ^ after;
        // Delta bits: CTS, DSR, DCD on any change; RI (TERI) only on its
        // trailing edge.
        self.msr_deltas |= (changed & (MSR_CTS | MSR_DSR | MSR_DCD)) >> 4;
        if before & MSR_RI != 0 && after & MSR_RI == 0 {
            self.msr_deltas |= MSR_TERI;
        }
    }

    /// The interrupt the UART asserts now, as IIR reports it (without the
    /// FIFO bits); `IIR_NONE` when none.
    fn interrupt(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.lsr_errors & (LSR_OE | LSR_BI) != 0 {
            IIR_RLS
        } else if self.ier & IER_RDA != 0 && !self.input.is_empty() {
            IIR_RDA
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            IIR_THRE
        } else if self.ier & IER_MS != 0 && self.msr_deltas != 0 {
            IIR_MS
        } else {
            IIR_NONE
        }
    }

    /// Whether a write to THR may be coalesced (`KVM_REGISTER_COALESCED_MMIO`)
    /// and handled later, after the guest has gone on: when nothing the
    /// guest could notice depends on it at once — no THR-empty interrupt
    /// enabled and no loopback (where the byte is received). The byte still
    /// leaves in order, before anything else the VMM handles.
    pub fn thr_coalescable(&self) -> bool {
        self.ier & IER_THRE == 0 && self.mcr & MCR_LOOP == 0
    }

    /// Whether the UART drives its interrupt line (IRQ 4 for COM1): an
    /// interrupt is pending and OUT2 is set (on PCs OUT2 gates the line).
    pub fn irq(&self) -> bool {
        self.interrupt() != IIR_NONE && self.mcr & MCR_OUT2 != 0
    }

    fn read_register(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.divisor.to_le_bytes()[0],
            RBR_THR_DLL => self.input.pop_front().unwrap_or(0),
            IER_DLM if dlab => self.divisor.to_le_bytes()[1],
            IER_DLM => self.ier,
            IIR_FCR => {
                let iir = self.interrupt();
                if iir == IIR_THRE {
                    // Reading IIR while it reports THR empty clears that
                    // interrupt (data sheet, Table IV).
                    self.thre_pending = false;
                }
                let fifo = if self.fcr & FCR_ENABLE != 0 {
                    IIR_FIFO_ON
                } else {
                    0
                };
                iir | fifo
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let v = self.lsr();
                self.lsr_errors = 0;
                v
            }
            MSR => {
                let v = self.msr_lines() | self.msr_deltas;
                self.msr_deltas = 0;
                v
            }
            SCR => self.scr,
            _ => 0xff,
        }
    }

    fn write_register(&mut self, offset: u16, value: u8) -> Effect {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => {
                self.divisor = u16::from_le_bytes([value, self.divisor.to_le_bytes()[1]]);
            }
            RBR_THR_DLL => {
                // The byte leaves at once and THR is empty again.
                self.thre_pending = true;
                if self.mcr & MCR_LOOP != 0 {
                    self.receive(value);
                } else {
                    return Effect::Output(value);
                }
            }
            IER_DLM if dlab => {
                self.divisor = u16::from_le_bytes([self.divisor.to_le_bytes()[0], value]);
            }
            IER_DLM => {
                let enabling_thre = value & IER_THRE != 0 && self.ier & IER_THRE == 0;
                self.ier = value & 0x0f;
                if enabling_thre {
                    // THR is always empty: enabling its interrupt raises it.
                    self.thre_pending = true;
                }
            }
            IIR_FCR => {
                if value & FCR_CLEAR_RX != 0 {
                    self.input.clear();
                }
                self.fcr = value & (FCR_ENABLE | FCR_TRIGGER);
            }
            LCR => self.lcr = value,
            MCR => self.set_mcr(value),
            SCR => self.scr = value,
            // LSR and MSR are read-only.
            _ => {}
        }
        Effect::None
    }
}

impl PortDevice for Uart {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0xff);
        if let Some(b) = data.first_mut() {
            *b = self.read_register(offset);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> Effect {
        match data.first() {
            Some(&b) => self.write_register(offset, b),
            None => Effect::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::PortBus;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    fn rd(u: &mut Uart, off: u16) -> u8 {
        let mut b = [0];
        u.read(off, &mut b);
        b[0]
    }

    fn wr(u: &mut Uart, off: u16, v: u8) -> Effect {
        u.write(off, &[v])
    }

    #[test]
    fn lsr_always_reports_transmitter_empty() {
        let mut u = Uart::new();
        for _ in 0..3 {
            assert_eq!(rd(&mut u, LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
            assert_eq!(wr(&mut u, 0, b'x'), Effect::Output(b'x'));
        }
        assert_eq!(rd(&mut u, LSR), 0x60);
    }

    #[test]
    fn polled_output_through_the_bus() {
        let mut bus = PortBus::new();
        bus.insert(COM1, UART_LEN, Box::new(Uart::new())).unwrap();
        let mut out = Vec::new();
        for &c in b"hi\n" {
            // What an early console does: wait for THRE, then write THR.
            let mut lsr = [0];
            bus.read(COM1 + 5, &mut lsr);
            assert_ne!(lsr[0] & LSR_THRE, 0);
            if let Effect::Output(b) = bus.write(COM1, &[c]) {
                out.push(b);
            }
        }
        assert_eq!(out, b"hi\n");
        assert!(bus.unknown_reads().is_empty());
    }

    #[test]
    fn input_sets_data_ready_and_is_read_in_order() {
        let mut u = Uart::new();
        assert_eq!(rd(&mut u, LSR) & LSR_DR, 0);
        u.queue_input(b"ab");
        assert_eq!(rd(&mut u, LSR) & LSR_DR, LSR_DR);
        assert_eq!(rd(&mut u, 0), b'a');
        assert_eq!(rd(&mut u, 0), b'b');
        assert_eq!(rd(&mut u, LSR) & LSR_DR, 0);
        assert_eq!(u.pending_input(), 0);
    }

    #[test]
    fn overrun_is_reported_once() {
        let mut u = Uart::new();
        u.queue_input(&[0; INPUT_MAX + 1]);
        assert_eq!(rd(&mut u, LSR) & LSR_OE, LSR_OE);
        assert_eq!(rd(&mut u, LSR) & LSR_OE, 0);
        assert_eq!(u.pending_input(), INPUT_MAX);
    }

    #[test]
    fn divisor_latch_and_scratch() {
        let mut u = Uart::new();
        wr(&mut u, LCR, 0x83); // DLAB, 8N1
        assert_eq!(wr(&mut u, 0, 0x0c), Effect::None, "DLL, not output");
        wr(&mut u, 1, 0x00);
        assert_eq!(u.divisor(), 12);
        assert_eq!(rd(&mut u, 0), 0x0c);
        wr(&mut u, LCR, 0x03);
        assert_eq!(u.lcr(), 0x03);
        assert_eq!(rd(&mut u, 1), 0, "IER again");
        wr(&mut u, SCR, 0x5a);
        assert_eq!(rd(&mut u, SCR), 0x5a);
    }

    #[test]
    fn interrupt_identification() {
        let mut u = Uart::new();
        assert_eq!(rd(&mut u, IIR_FCR), IIR_NONE);
        wr(&mut u, IIR_FCR, FCR_ENABLE);
        assert_eq!(rd(&mut u, IIR_FCR), IIR_NONE | IIR_FIFO_ON);
        wr(&mut u, MCR, MCR_OUT2);
        wr(&mut u, IER_DLM, IER_THRE);
        assert!(u.irq());
        assert_eq!(rd(&mut u, IIR_FCR) & 0x0f, IIR_THRE);
        // Reading IIR cleared it.
        assert_eq!(rd(&mut u, IIR_FCR) & 0x0f, IIR_NONE);
        assert!(!u.irq());
        wr(&mut u, 0, b'x');
        assert_eq!(rd(&mut u, IIR_FCR) & 0x0f, IIR_THRE);
        // Received data outranks THR empty.
        wr(&mut u, IER_DLM, IER_THRE | IER_RDA);
        u.queue_input(b"z");
        assert_eq!(rd(&mut u, IIR_FCR) & 0x0f, IIR_RDA);
        rd(&mut u, 0);
        // FCR clears the receive FIFO.
        u.queue_input(b"zz");
        wr(&mut u, IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert_eq!(u.pending_input(), 0);
    }

    #[test]
    fn loopback_as_linux_probes_it() {
        // drivers/tty/serial/8250: MCR = LOOP | OUT2 | RTS must read back
        // as MSR lines CTS | DCD (0x90), and MCR = LOOP alone as 0.
        let mut u = Uart::new();
        wr(&mut u, MCR, MCR_LOOP);
        rd(&mut u, MSR);
        assert_eq!(rd(&mut u, MSR) & 0xf0, 0);
        wr(&mut u, MCR, MCR_LOOP | 0x0a);
        assert_eq!(rd(&mut u, MSR) & 0xf0, 0x90);
        // In loopback THR feeds RBR instead of the line.
        assert_eq!(wr(&mut u, 0, b'q'), Effect::None);
        assert_eq!(rd(&mut u, 0), b'q');
        wr(&mut u, MCR, 0);
        assert_eq!(rd(&mut u, MSR) & 0xf0, MSR_CTS | MSR_DSR | MSR_DCD);
    }

    #[test]
    fn wide_reads_split_into_registers() {
        let mut bus = PortBus::new();
        bus.insert(COM1, UART_LEN, Box::new(Uart::new())).unwrap();
        let mut d = [0; 2];
        bus.read(COM1 + 4, &mut d); // MCR, LSR
        assert_eq!(d, [0, 0x60]);
        let mut d = [0; 4];
        bus.read(COM1 + 6, &mut d); // MSR, SCR, then two absent ports
        assert_eq!(d[2..], [0xff, 0xff]);
        assert!(bus.get_mut::<Uart>(COM1).is_some());
    }
}
