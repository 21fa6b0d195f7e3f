//! The long-mode IDT's layout (Intel SDM Vol. 3A §7.14.1 "64-Bit Mode IDT";
//! AMD APM Vol. 2 §8.9.1), kept free of hardware access so the host tests
//! can check the encoding.

/// Number of architecturally defined exception vectors (0–31); the guests
/// never enable interrupts, so their IDT ends there.
pub const EXCEPTIONS: usize = 32;

/// Mnemonic of an exception vector, for failure messages.
pub const fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        29 => "#VC",
        30 => "#SX",
        _ => "exception",
    }
}

/// One 16-byte IDT entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Gate {
    offset_low: u16,
    selector: u16,
    /// Bits 2:0 pick an interrupt stack table entry; 0 keeps the current stack.
    ist: u8,
    /// Type (bits 3:0), DPL (6:5), present (7).
    flags: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(size_of::<Gate>() == 16);

/// Present, DPL 0, type 0xE: a 64-bit interrupt gate, which clears RFLAGS.IF
/// on entry (SDM Vol. 3A §7.12.1.3 "Flag Usage By Exception- or
/// Interrupt-Handler Procedure").
const PRESENT_INTERRUPT_GATE: u8 = 0x8e;

impl Gate {
    /// A not-present entry: delivering through it raises #NP.
    pub const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        flags: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// An interrupt gate to `handler` in code segment `selector`.
    pub const fn interrupt(handler: u64, selector: u16) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            ist: 0,
            flags: PRESENT_INTERRUPT_GATE,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }

    /// The handler address the gate points to.
    pub const fn handler(&self) -> u64 {
        self.offset_low as u64 | (self.offset_mid as u64) << 16 | (self.offset_high as u64) << 32
    }
}

/// The operand of LIDT in 64-bit mode: limit, then an 8-byte base.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed)]
pub struct Pointer {
    pub limit: u16,
    pub base: u64,
}

const _: () = assert!(size_of::<Pointer>() == 10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_splits_the_handler_address() {
        let gate = Gate::interrupt(0x1234_5678_9abc_def0, 0x18);
        // SAFETY: Gate is 16 bytes of plain integers with no padding.
        let bytes: [u8; 16] = unsafe { core::mem::transmute(gate) };
        assert_eq!(
            bytes,
            [
                0xf0, 0xde, 0x18, 0x00, 0x00, 0x8e, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0
            ]
        );
        assert_eq!(gate.handler(), 0x1234_5678_9abc_def0);
    }
}
