//! The legacy 8259 PICs: remapped away from the exception vectors and
//! masked but for the lines the hypervisor takes (COM1's, `com1_irq`). The
//! firmware may leave the PIT ticking through them; with the hypervisor's
//! interrupts disabled such an interrupt would stay pending and make every
//! guest exit at once, forever.

use super::instr::{inb, outb};

const PIC1_CMD: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xa0;
const PIC2_DATA: u16 = 0xa1;
/// First vector of the master and slave PIC after remapping.
pub const PIC1_BASE: u8 = 0x20;
pub const PIC2_BASE: u8 = 0x28;
/// Non-specific end of interrupt (OCW2).
const EOI: u8 = 0x20;

/// Remaps the PICs to vectors 0x20–0x2f and masks every line.
pub fn init_masked() {
    // SAFETY: the PIC ports belong to the hypervisor; ICW1–ICW4 is the
    // documented initialisation sequence (8259A datasheet), and masking
    // every line leaves no interrupt source enabled.
    unsafe {
        outb(PIC1_CMD, 0x11);
        outb(PIC2_CMD, 0x11);
        outb(PIC1_DATA, PIC1_BASE);
        outb(PIC2_DATA, PIC2_BASE);
        outb(PIC1_DATA, 4);
        outb(PIC2_DATA, 2);
        outb(PIC1_DATA, 1);
        outb(PIC2_DATA, 1);
        outb(PIC1_DATA, 0xff);
        outb(PIC2_DATA, 0xff);
        let _ = inb(PIC1_DATA);
    }
}

/// Unmasks line `irq` (0–7) of the master PIC.
pub fn unmask(irq: u8) {
    if irq >= 8 {
        return;
    }
    // SAFETY: the PIC's mask register (OCW1) belongs to the hypervisor;
    // clearing one bit enables that line only.
    unsafe {
        let mask = inb(PIC1_DATA);
        outb(PIC1_DATA, mask & !(1 << irq));
    }
}

/// Acknowledges an interrupt taken on `vector`.
pub fn acknowledge(vector: u8) {
    if !(PIC1_BASE..PIC2_BASE + 8).contains(&vector) {
        return;
    }
    // SAFETY: an EOI to the PIC that raised the interrupt.
    unsafe {
        if vector >= PIC2_BASE {
            outb(PIC2_CMD, EOI);
        }
        outb(PIC1_CMD, EOI);
    }
}
