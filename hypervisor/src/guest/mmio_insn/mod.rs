//! The instruction that faulted on device memory (an EPT violation or NPF on
//! an MMIO page): what it does, with which register or immediate, how many
//! bytes it moves. The exit already gives the guest-physical address, so the
//! addressing bytes (ModRM, SIB, displacement) are only measured, never
//! evaluated.
//!
//! Only the forms compilers emit for device registers are recognised: MOV in
//! and out of memory, MOVZX/MOVSX/MOVSXD loads, ADD/OR/AND/SUB/XOR/CMP/TEST
//! with a memory operand, MOVS and STOS. Anything else is `Unsupported`.
//! The decoder is checked byte for byte against the `iced-x86` decoder on
//! the host (`tests.rs`, `oracle.rs`, and the `fuzz/` target `mmio_decode`).
//!
//! References are to the Intel SDM Vol. 2: 2.1 (instruction format and
//! legacy prefixes), 2.2.1 (REX), Table 2-1 and 2-2 (16- and 32-bit ModRM),
//! Table 2-3 (SIB), 2.2.1.6 (RIP-relative addressing), Appendix A (opcode
//! map: Table A-2 one-byte, A-3 two-byte, A-6 ModRM.reg opcode extensions).

use crate::virt::{CpuMode, SegmentReg};

#[cfg(any(test, feature = "oracle"))]
pub mod oracle;
#[cfg(test)]
mod tests;

/// The longest x86 instruction (SDM Vol. 2A 2.1).
pub const MAX_LEN: usize = 15;

/// A general register as an instruction names it: number 0–15 in the SDM's
/// encoding order (RAX=0, RCX=1, RDX=2, RBX=3, RSP=4, RBP=5, RSI=6, RDI=7,
/// R8..R15=8..15), and for byte registers without a REX prefix, numbers 4–7
/// mean AH, CH, DH, BH (`high_byte` = true: bits 15:8 of register `num - 4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg {
    pub num: u8,
    pub high_byte: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Or,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
}

/// An ALU instruction's operand besides memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// The register operand; for the `op r, r/m` forms it is also the
    /// destination.
    Reg(Reg),
    /// Already sign-extended per the encoding to 64 bits; users mask it to
    /// `size`.
    Imm(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// MOV r/m, r (88, 89) and MOV moffs, AL/eAX/rAX (A2, A3): memory :=
    /// register.
    Store(Reg),
    /// MOV r/m, imm (C6 /0, C7 /0): memory := immediate (C7 with REX.W:
    /// imm32 sign-extended).
    StoreImm(u64),
    /// MOV r, r/m (8A, 8B) and MOV AL/eAX/rAX, moffs (A0, A1): register :=
    /// memory.
    Load(Reg),
    /// MOVZX/MOVSX (0F B6, 0F B7, 0F BE, 0F BF) and MOVSXD (63 /r, 64-bit
    /// mode only; elsewhere 63 is ARPL): register (of `dest_size` bytes) :=
    /// memory (`size` bytes) zero- or sign-extended. MOVSXD without REX.W is
    /// decoded as iced-x86 and the SDM's MOVSXD page do: `r32, r/m32` (size
    /// 4, dest_size 4, a plain 32-bit load) and with 66 `r16, r/m16` (size 2,
    /// dest_size 2).
    LoadExtend {
        reg: Reg,
        dest_size: u8,
        signed: bool,
    },
    /// ALU with a memory operand: 00/01/08/09/20/21/28/29/30/31/38/39 (op
    /// r/m, r: memory is the destination), 02/03/0A/0B/22/23/2A/2B/32/33/
    /// 3A/3B (op r, r/m: the register is the destination), 80/81/83 /0,1,4,
    /// 5,6,7 (op r/m, imm), 84/85 (TEST r/m, r), F6 /0 and F7 /0 (TEST r/m,
    /// imm). `mem_dest`: memory is the first (destination) operand — the
    /// result goes to memory, except that CMP and TEST write nothing; false
    /// for the `op r, r/m` forms. (CMP needs the order: `cmp [m], r`
    /// computes m − r, `cmp r, [m]` r − m.)
    Alu { op: AluOp, src: Src, mem_dest: bool },
    /// MOVS (A4, A5): DS:rSI (or the segment override) to ES:rDI.
    Movs,
    /// STOS (AA, AB): AL/AX/EAX/RAX to ES:rDI.
    Stos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioInsn {
    /// Instruction length in bytes.
    pub len: u8,
    pub op: Op,
    /// Bytes of memory accessed per element: 1, 2, 4 or 8.
    pub size: u8,
    /// Address size in bytes (2, 4, 8): for MOVS/STOS's RSI/RDI/RCX, and
    /// moffs.
    pub addr_size: u8,
    /// REP on MOVS/STOS: F3, or F2, which real CPUs (and iced-x86, as
    /// REPNE) take as REP on these two. Always false on other instructions.
    pub rep: bool,
    /// A segment-override prefix, if any: the last one, except that in
    /// 64-bit mode an FS or GS override is not replaced by a later ES, CS,
    /// SS or DS one (those are ignored there). Reported as written even
    /// where the instruction cannot use it (STOS, MOVS's destination: ES).
    pub segment: Option<SegmentReg>,
    /// LOCK (F0), allowed only on the memory-destination ALU forms other
    /// than CMP and TEST (SDM Vol. 2A "LOCK"); elsewhere it is #UD and the
    /// instruction is `Unsupported`.
    pub lock: bool,
}

/// Why decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// More than 15 bytes, or the bytes ran out.
    TooLong,
    /// Not one of the forms above, or not a memory access.
    Unsupported,
}

/// The bytes of one instruction, at most `MAX_LEN` of them.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::TooLong)?;
        self.pos += 1;
        Ok(b)
    }

    /// A little-endian immediate of 1, 2 or 4 bytes, sign-extended to 64
    /// bits.
    fn imm(&mut self, len: u8) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..len {
            value |= u64::from(self.byte()?) << (8 * i);
        }
        Ok(match len {
            1 => value as i8 as u64,
            2 => value as i16 as u64,
            _ => value as i32 as u64,
        })
    }

    /// Skips a displacement or moffs.
    fn skip(&mut self, len: u8) -> Result<(), DecodeError> {
        self.pos += usize::from(len);
        if self.pos > self.bytes.len() {
            return Err(DecodeError::TooLong);
        }
        Ok(())
    }
}

/// ALU operations in the order of the one-byte map's rows 00–38 and of
/// group 1's ModRM.reg (Table ); ADC and SBB are not emulated.
const ALU_ROWS: [Option<AluOp>; 8] = [
    Some(AluOp::Add),
    Some(AluOp::Or),
    None,
    None,
    Some(AluOp::And),
    Some(AluOp::Sub),
    Some(AluOp::Xor),
    Some(AluOp::Cmp),
];

fn alu_row(n: u8) -> Result<AluOp, DecodeError> {
    ALU_ROWS
        .get(usize::from(n & 7))
        .copied()
        .flatten()
        .ok_or(DecodeError::Unsupported)
}

/// What an opcode with a ModRM byte does, before ModRM is read.
enum Form {
    /// ALU op r/m, r (`to_reg` false) or op r, r/m (true); TEST r/m, r.
    Alu { op: AluOp, to_reg: bool },
    /// Group 1 (80, 81, 83): op r/m, imm of `imm` bytes.
    AluImm { imm: u8 },
    /// F6 /0, F7 /0.
    TestImm { imm: u8 },
    /// MOV r/m, r (`to_reg` false) or MOV r, r/m (true).
    Mov { to_reg: bool },
    /// C6 /0, C7 /0.
    MovImm { imm: u8 },
    /// MOVZX, MOVSX, MOVSXD from `src` bytes.
    Extend { src: u8, signed: bool },
}

/// Decodes the instruction at the start of `bytes` (up to 15 used) executed
/// in `mode`.
pub fn decode(bytes: &[u8], mode: CpuMode) -> Result<MmioInsn, DecodeError> {
    let mut c = Cursor {
        bytes: bytes.get(..MAX_LEN).unwrap_or(bytes),
        pos: 0,
    };
    let long = mode == CpuMode::Long64;

    // Legacy prefixes in any order (2.1.1), then at most one effective REX
    // (2.2.1): a REX followed by anything but the opcode is ignored, and of
    // several REX bytes the last counts.
    let (mut op16, mut addr_override, mut rep, mut lock) = (false, false, false, false);
    let mut segment = None;
    let mut rex = 0u8; // 0: none (every REX byte is 0x40–0x4f)
    let opcode = loop {
        let b = c.byte()?;
        match b {
            0x40..=0x4f if long => {
                rex = b;
                continue;
            }
            0x66 => op16 = true,
            0x67 => addr_override = true,
            0xf0 => lock = true,
            0xf2 | 0xf3 => rep = true,
            // In 64-bit mode ES, CS, SS and DS overrides are ignored: they
            // never replace an FS or GS one.
            0x26 | 0x2e | 0x36 | 0x3e
                if long && matches!(segment, Some(SegmentReg::Fs | SegmentReg::Gs)) => {}
            0x26 => segment = Some(SegmentReg::Es),
            0x2e => segment = Some(SegmentReg::Cs),
            0x36 => segment = Some(SegmentReg::Ss),
            0x3e => segment = Some(SegmentReg::Ds),
            0x64 => segment = Some(SegmentReg::Fs),
            0x65 => segment = Some(SegmentReg::Gs),
            _ => break b,
        };
        rex = 0; // a legacy prefix after a REX cancels it
    };

    let (w, r, has_rex) = (rex & 8 != 0, rex & 4 != 0, rex != 0);
    let default16 = matches!(mode, CpuMode::Real | CpuMode::Protected16);
    // 66 is ignored when REX.W is set.
    let op_size = if w {
        8
    } else if default16 != op16 {
        2
    } else {
        4
    };
    let addr_size = match (mode, addr_override) {
        (CpuMode::Long64, false) => 8,
        (CpuMode::Long64, true) => 4,
        _ if default16 != addr_override => 2,
        _ => 4,
    };
    // Bit 0 of most opcodes here selects byte (0) or full (1) operand size.
    let size = if opcode & 1 == 0 { 1 } else { op_size };
    let acc = Reg {
        num: 0,
        high_byte: false,
    };
    let mut insn = MmioInsn {
        len: 0,
        op: Op::Movs,
        size,
        addr_size,
        rep: false,
        segment,
        lock: false,
    };

    let form = match opcode {
        // MOVS, STOS: no ModRM; LOCK is #UD.
        0xa4 | 0xa5 | 0xaa | 0xab if !lock => {
            insn.op = if opcode < 0xa8 { Op::Movs } else { Op::Stos };
            insn.rep = rep;
            insn.len = c.pos as u8;
            return Ok(insn);
        }
        // MOV with a moffs of the address size, no ModRM.
        0xa0..=0xa3 if !lock => {
            c.skip(addr_size)?;
            insn.op = if opcode & 2 == 0 {
                Op::Load(acc)
            } else {
                Op::Store(acc)
            };
            insn.len = c.pos as u8;
            return Ok(insn);
        }
        0x00..=0x3b if opcode & 7 < 4 => Form::Alu {
            op: alu_row(opcode >> 3)?,
            to_reg: opcode & 2 != 0,
        },
        0x84 | 0x85 => Form::Alu {
            op: AluOp::Test,
            to_reg: false,
        },
        0x80 | 0x83 => Form::AluImm { imm: 1 },
        0x81 => Form::AluImm {
            imm: op_size.min(4),
        },
        0xf6 => Form::TestImm { imm: 1 },
        0xf7 => Form::TestImm {
            imm: op_size.min(4),
        },
        0x88..=0x8b => Form::Mov {
            to_reg: opcode & 2 != 0,
        },
        0xc6 => Form::MovImm { imm: 1 },
        0xc7 => Form::MovImm {
            imm: op_size.min(4),
        },
        // MOVSXD r, r/m32 (r/m16 with 66 and no REX.W).
        0x63 if long => Form::Extend {
            src: op_size.min(4),
            signed: true,
        },
        0x0f => match c.byte()? {
            0xb6 => Form::Extend {
                src: 1,
                signed: false,
            },
            0xb7 => Form::Extend {
                src: 2,
                signed: false,
            },
            0xbe => Form::Extend {
                src: 1,
                signed: true,
            },
            0xbf => Form::Extend {
                src: 2,
                signed: true,
            },
            _ => return Err(DecodeError::Unsupported),
        },
        _ => return Err(DecodeError::Unsupported),
    };

    // ModRM (Tables 2-1, 2-2), then SIB (Table 2-3) and displacement.
    let modrm = c.byte()?;
    let (md, reg_field, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return Err(DecodeError::Unsupported); // a register, not memory
    }
    let disp = if addr_size == 2 {
        match (md, rm) {
            (0, 6) | (2, _) => 2,
            (0, _) => 0,
            _ => 1,
        }
    } else {
        // rm = 4: SIB, whose base 5 with mod 0 means disp32 and no base;
        // rm = 5 with mod 0: disp32 (RIP-relative in 64-bit mode, 2.2.1.6).
        let base = if rm == 4 { c.byte()? & 7 } else { rm };
        match (md, base) {
            (0, 5) | (2, _) => 4,
            (0, _) => 0,
            _ => 1,
        }
    };
    c.skip(disp)?;

    let byte_op = opcode & 1 == 0;
    let reg = Reg {
        num: reg_field | if r { 8 } else { 0 },
        high_byte: byte_op && !has_rex && reg_field >= 4,
    };
    // Only the memory-destination ALU forms, CMP and TEST excepted, take LOCK.
    let mut lockable = false;
    insn.op = match form {
        Form::Alu { op, to_reg } => {
            lockable = !to_reg && !matches!(op, AluOp::Cmp | AluOp::Test);
            Op::Alu {
                op,
                src: Src::Reg(reg),
                mem_dest: !to_reg,
            }
        }
        Form::AluImm { imm } => {
            let op = alu_row(reg_field)?;
            lockable = op != AluOp::Cmp;
            Op::Alu {
                op,
                src: Src::Imm(c.imm(imm)?),
                mem_dest: true,
            }
        }
        Form::TestImm { imm } if reg_field == 0 => Op::Alu {
            op: AluOp::Test,
            src: Src::Imm(c.imm(imm)?),
            mem_dest: true,
        },
        Form::Mov { to_reg: true } => Op::Load(reg),
        Form::Mov { to_reg: false } => Op::Store(reg),
        Form::MovImm { imm } if reg_field == 0 => Op::StoreImm(c.imm(imm)?),
        Form::Extend { src, signed } => {
            insn.size = src;
            Op::LoadExtend {
                reg,
                dest_size: op_size,
                signed,
            }
        }
        // F6/F7 /1–/7 and C6/C7 /1–/7 with a memory operand.
        Form::TestImm { .. } | Form::MovImm { .. } => return Err(DecodeError::Unsupported),
    };
    if lock && !lockable {
        return Err(DecodeError::Unsupported);
    }
    insn.lock = lock;
    insn.len = c.pos as u8;
    Ok(insn)
}
