//! The `iced-x86` decoder as the oracle for [`decode`]: shared by the unit
//! tests and the `fuzz/` target (through the `oracle` feature), so both
//! compare exactly the same things. Host only.
//!
//! A byte sequence is in the subset iff iced decodes a valid instruction
//! whose mnemonic is one of the emulated ones, with a memory operand and
//! otherwise only general registers and immediates, and whose encoding is
//! not one of the aliases the decoder leaves out (82, F6 /1, F7 /1). In the
//! subset, iced's reading is turned into the `MmioInsn` it implies and
//! must equal ours; outside it, ours must be an error.

use super::{AluOp, DecodeError, MmioInsn, Op, Reg, Src, decode};
use crate::virt::{CpuMode, SegmentReg};
use alloc::format;
use alloc::string::String;
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// Decodes `bytes` with ours and with iced and compares: `Ok(true)` in the
/// subset and equal, `Ok(false)` outside it and rejected, else what differs.
pub fn check(bytes: &[u8], mode: CpuMode) -> Result<bool, String> {
    compare(bytes, mode, decode(bytes, mode))
}

/// Compares `ours` (a decoding of `bytes` in `mode`) with iced's.
pub fn compare(
    bytes: &[u8],
    mode: CpuMode,
    ours: Result<MmioInsn, DecodeError>,
) -> Result<bool, String> {
    let bitness = match mode {
        CpuMode::Real | CpuMode::Protected16 => 16,
        CpuMode::Protected32 => 32,
        CpuMode::Long64 => 64,
    };
    let insn = Decoder::new(bitness, bytes, DecoderOptions::NONE).decode();
    let expected = expected(&insn);
    match (expected, ours) {
        (Some(e), Ok(o)) if e == o => Ok(true),
        (None, Err(_)) => Ok(false),
        (e, o) => Err(format!(
            "{mode:?} {bytes:02x?}: iced {:?} (len {}) means {e:?}, ours {o:?}",
            insn.code(),
            insn.len()
        )),
    }
}

/// The `MmioInsn` iced's decoding implies, or None outside the subset.
fn expected(insn: &Instruction) -> Option<MmioInsn> {
    use Mnemonic::*;
    let alu = match insn.mnemonic() {
        Add => Some(AluOp::Add),
        Or => Some(AluOp::Or),
        And => Some(AluOp::And),
        Sub => Some(AluOp::Sub),
        Xor => Some(AluOp::Xor),
        Cmp => Some(AluOp::Cmp),
        Test => Some(AluOp::Test),
        Mov | Movzx | Movsx | Movsxd | Movsb | Movsw | Movsd | Movsq | Stosb | Stosw | Stosd
        | Stosq => None,
        _ => return None,
    };
    if insn.is_invalid() || is_alias(insn.code()) {
        return None;
    }
    let mut mem = None;
    for i in 0..insn.op_count() {
        match insn.op_kind(i) {
            OpKind::Register if insn.op_register(i).is_gpr() => {}
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => {}
            OpKind::Memory => mem = Some(memory_addr_size(insn)),
            OpKind::MemorySegSI | OpKind::MemoryESDI => mem = Some(2),
            OpKind::MemorySegESI | OpKind::MemoryESEDI => mem = Some(4),
            OpKind::MemorySegRSI | OpKind::MemoryESRDI => mem = Some(8),
            _ => return None, // XMM (SSE MOVSD), segment registers, ...
        }
    }
    let addr_size = mem?;

    let reg = |i| gpr(insn.op_register(i));
    let mem_first = insn.op_kind(0) == OpKind::Memory;
    let src = |i| match insn.op_kind(i) {
        OpKind::Register => Src::Reg(reg(i)),
        _ => Src::Imm(immediate(insn, i)),
    };
    let op = match (alu, insn.mnemonic()) {
        (Some(op), _) if mem_first => Op::Alu {
            op,
            src: src(1),
            mem_dest: true,
        },
        (Some(op), _) => Op::Alu {
            op,
            src: src(0),
            mem_dest: false,
        },
        (None, Mov) if !mem_first => Op::Load(reg(0)),
        (None, Mov) => match insn.op_kind(1) {
            OpKind::Register => Op::Store(reg(1)),
            _ => Op::StoreImm(immediate(insn, 1)),
        },
        (None, Movzx | Movsx | Movsxd) => Op::LoadExtend {
            reg: reg(0),
            dest_size: insn.op_register(0).size() as u8,
            signed: insn.mnemonic() != Movzx,
        },
        (None, Movsb | Movsw | Movsd | Movsq) => Op::Movs,
        _ => Op::Stos,
    };
    let string = matches!(op, Op::Movs | Op::Stos);
    Some(MmioInsn {
        len: insn.len() as u8,
        op,
        size: insn.memory_size().size() as u8,
        addr_size,
        rep: string && (insn.has_rep_prefix() || insn.has_repne_prefix()),
        segment: match insn.segment_prefix() {
            Register::ES => Some(SegmentReg::Es),
            Register::CS => Some(SegmentReg::Cs),
            Register::SS => Some(SegmentReg::Ss),
            Register::DS => Some(SegmentReg::Ds),
            Register::FS => Some(SegmentReg::Fs),
            Register::GS => Some(SegmentReg::Gs),
            _ => None,
        },
        lock: insn.has_lock_prefix(),
    })
}

/// Encodings the decoder deliberately leaves out: 82 (group 1 on byte
/// operands again, invalid in 64-bit mode) and TEST's F6 /1, F7 /1.
fn is_alias(code: Code) -> bool {
    matches!(
        code,
        Code::Add_rm8_imm8_82
            | Code::Or_rm8_imm8_82
            | Code::Adc_rm8_imm8_82
            | Code::Sbb_rm8_imm8_82
            | Code::And_rm8_imm8_82
            | Code::Sub_rm8_imm8_82
            | Code::Xor_rm8_imm8_82
            | Code::Cmp_rm8_imm8_82
            | Code::Test_rm8_imm8_F6r1
            | Code::Test_rm16_imm16_F7r1
            | Code::Test_rm32_imm32_F7r1
            | Code::Test_rm64_imm32_F7r1
    )
}

/// The address size of a ModRM or moffs operand: the width of its base or
/// index register, else of its displacement (iced reports a 64-bit
/// address's disp32 as 8 bytes).
fn memory_addr_size(insn: &Instruction) -> u8 {
    let size = match (insn.memory_base(), insn.memory_index()) {
        (Register::None, Register::None) => insn.memory_displ_size() as usize,
        (Register::None, index) => index.size(),
        (base, _) => base.size(),
    };
    size as u8
}

/// A general register in encoding order; AH–BH are 4–7 with `high_byte`,
/// SPL–DIL 4–7 without, R8L–R15L 8–15 (iced numbers byte registers AL, CL,
/// DL, BL, AH, CH, DH, BH, SPL, BPL, SIL, DIL, R8L..R15L).
fn gpr(reg: Register) -> Reg {
    let n = reg.number() as u8;
    match n {
        4..=7 if reg.is_gpr8() => Reg {
            num: n,
            high_byte: true,
        },
        8..=19 if reg.is_gpr8() => Reg {
            num: n - 4,
            high_byte: false,
        },
        _ => Reg {
            num: n,
            high_byte: false,
        },
    }
}

/// Operand `i`'s immediate, sign-extended from its encoded width (iced
/// zero-extends imm8/16/32 and sign-extends the `to` kinds itself).
fn immediate(insn: &Instruction, i: u32) -> u64 {
    let value = insn.immediate(i);
    match insn.op_kind(i) {
        OpKind::Immediate8 => value as u8 as i8 as u64,
        OpKind::Immediate16 => value as u16 as i16 as u64,
        OpKind::Immediate32 => value as u32 as i32 as u64,
        _ => value,
    }
}
