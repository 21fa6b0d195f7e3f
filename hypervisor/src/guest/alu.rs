//! The arithmetic MMIO emulation does on a value read from device memory:
//! ADD, OR, AND, SUB, XOR, CMP and TEST at 1, 2, 4 or 8 bytes, with the six
//! status flags as the SDM defines them (Vol. 1 3.4.3.1 and each
//! instruction's "Flags Affected" in Vol. 2). The host tests run the same
//! operations on the host CPU and compare.

use super::mmio_insn::AluOp;

/// RFLAGS status bits (SDM Vol. 1 3.4.3.1).
pub const CF: u64 = 1 << 0;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const OF: u64 = 1 << 11;
pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;

/// The all-ones value of `size` bytes.
pub fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// `dst op src` at `size` bytes: the result (masked to `size`) and `rflags`
/// with its status flags replaced. AF, undefined after AND, OR, XOR and
/// TEST, is cleared there, as Intel and AMD CPUs do.
pub fn alu(op: AluOp, size: u8, dst: u64, src: u64, rflags: u64) -> (u64, u64) {
    let m = mask(size);
    let sign = m ^ (m >> 1);
    let (a, b) = (dst & m, src & m);
    let (res, cf, of, af) = match op {
        AluOp::Add => {
            let r = a.wrapping_add(b) & m;
            let carry = if size == 8 { r < a } else { a + b > m };
            (
                r,
                carry,
                (a ^ r) & (b ^ r) & sign != 0,
                (a ^ b ^ r) & 0x10 != 0,
            )
        }
        AluOp::Sub | AluOp::Cmp => {
            let r = a.wrapping_sub(b) & m;
            (
                r,
                a < b,
                (a ^ b) & (a ^ r) & sign != 0,
                (a ^ b ^ r) & 0x10 != 0,
            )
        }
        AluOp::And | AluOp::Test => (a & b, false, false, false),
        AluOp::Or => (a | b, false, false, false),
        AluOp::Xor => (a ^ b, false, false, false),
    };
    let mut f = rflags & !STATUS;
    for (on, bit) in [
        (cf, CF),
        ((res as u8).count_ones() % 2 == 0, PF),
        (af, AF),
        (res == 0, ZF),
        (res & sign != 0, SF),
        (of, OF),
    ] {
        if on {
            f |= bit;
        }
    }
    (res, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `op` on the host CPU: (result, RFLAGS status bits).
    fn hardware(op: AluOp, size: u8, dst: u64, src: u64, flags_in: u64) -> (u64, u64) {
        macro_rules! run {
            ($insn:literal, $a:literal, $b:literal) => {{
                let mut a = dst;
                let flags: u64;
                // SAFETY: pure register arithmetic; RFLAGS is loaded with
                // status bits only (plus the reserved bit 1) and read back.
                unsafe {
                    core::arch::asm!(
                        "push {fin}",
                        "popfq",
                        concat!($insn, " ", $a, ", ", $b),
                        "pushfq",
                        "pop {fout}",
                        fin = in(reg) (flags_in & STATUS) | 2,
                        fout = out(reg) flags,
                        a = inout(reg) a,
                        b = in(reg) src,
                    );
                }
                (a, flags & STATUS)
            }};
        }
        macro_rules! sized {
            ($insn:literal) => {
                match size {
                    1 => run!($insn, "{a:l}", "{b:l}"),
                    2 => run!($insn, "{a:x}", "{b:x}"),
                    4 => run!($insn, "{a:e}", "{b:e}"),
                    _ => run!($insn, "{a}", "{b}"),
                }
            };
        }
        let (r, f) = match op {
            AluOp::Add => sized!("add"),
            AluOp::Or => sized!("or"),
            AluOp::And => sized!("and"),
            AluOp::Sub => sized!("sub"),
            AluOp::Xor => sized!("xor"),
            AluOp::Cmp => sized!("cmp"),
            AluOp::Test => sized!("test"),
        };
        (r & mask(size), f)
    }

    #[test]
    fn matches_the_host_cpu() {
        let ops = [
            AluOp::Add,
            AluOp::Or,
            AluOp::And,
            AluOp::Sub,
            AluOp::Xor,
            AluOp::Cmp,
            AluOp::Test,
        ];
        let edges = [
            0u64,
            1,
            0x0f,
            0x10,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
            u64::MAX,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut pairs: Vec<(u64, u64)> = edges
            .iter()
            .flat_map(|&a| edges.iter().map(move |&b| (a, b)))
            .collect();
        pairs.extend((0..4000).map(|_| (random(), random())));
        let mut checked = 0;
        for op in ops {
            for size in [1, 2, 4, 8] {
                for &(a, b) in &pairs {
                    for flags_in in [0, STATUS] {
                        let (r, f) = alu(op, size, a, b, flags_in);
                        let logic = matches!(op, AluOp::And | AluOp::Or | AluOp::Xor | AluOp::Test);
                        let (hr, hf) = hardware(op, size, a, b, flags_in);
                        // CMP and TEST keep their operand: compare the
                        // arithmetic result only for the others.
                        if !matches!(op, AluOp::Cmp | AluOp::Test) {
                            assert_eq!(r, hr, "{op:?} size {size}: {a:#x}, {b:#x}");
                        }
                        // AF is undefined after the logic operations.
                        let care = if logic { STATUS & !AF } else { STATUS };
                        assert_eq!(
                            f & care,
                            hf & care,
                            "{op:?} size {size}: {a:#x}, {b:#x}, flags in {flags_in:#x}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 200_000);
    }

    #[test]
    fn other_flags_are_kept() {
        let (r, f) = alu(AluOp::Add, 1, 0xff, 1, 0x202 | CF);
        assert_eq!(r, 0);
        assert_eq!(f, 0x202 | CF | ZF | PF | AF);
        let (r, f) = alu(AluOp::Sub, 4, 0, 1, 0x200);
        assert_eq!(r, 0xffff_ffff);
        assert_eq!(f, 0x200 | CF | SF | PF | AF);
    }
}
