//! Lengths of the instructions that exit. VMX reports the length of every
//! exiting instruction and SVM does with NRIP save; where it does not (QEMU's
//! TCG, older AMD parts) the hypervisor fetches the bytes at CS:RIP and
//! decodes them here. Only the instructions the hypervisor intercepts are
//! recognised — legacy prefixes, REX, then the opcode — and the decoded
//! instruction must be the one the exit reported, so a guest that rewrote
//! its code between the exit and the fetch gets no surprises.

use crate::virt::{CpuMode, SegmentReg};

/// The longest x86 instruction (SDM Vol. 2A 2.1).
pub const MAX_LEN: usize = 15;

/// An intercepted instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cpuid,
    Rdmsr,
    Wrmsr,
    Hlt,
    Xsetbv,
    /// VMCALL or VMMCALL.
    Hypercall,
    /// INVD or WBINVD.
    CacheFlush,
    Rdpmc,
    /// IN/OUT/INS/OUTS.
    Io,
    /// MOV to/from CRn, CLTS, LMSW.
    CrAccess,
    /// Any other instruction the hypervisor intercepts to raise #UD
    /// (VMX/SVM instructions, MONITOR/MWAIT).
    Privileged,
}

/// Why decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// More than 15 bytes, or the bytes ran out.
    TooLong,
    /// Not one of the intercepted instructions.
    Unknown,
}

fn is_legacy_prefix(b: u8) -> bool {
    matches!(
        b,
        0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65
    )
}

/// Decodes the instruction at the start of `bytes` (the guest executes in
/// `mode`). Returns its kind and length.
pub fn decode(bytes: &[u8], mode: CpuMode) -> Result<(Kind, u8), DecodeError> {
    let bytes = &bytes[..bytes.len().min(MAX_LEN)];
    let mut i = 0;
    while i < bytes.len() && is_legacy_prefix(bytes[i]) {
        i += 1;
    }
    // REX (0x40–0x4f) exists only in 64-bit mode and must come last.
    if mode == CpuMode::Long64 && bytes.get(i).is_some_and(|b| b & 0xf0 == 0x40) {
        i += 1;
    }
    let at = |k: usize| bytes.get(i + k).copied().ok_or(DecodeError::TooLong);
    let (kind, opcode_len) = match at(0)? {
        0xf4 => (Kind::Hlt, 1),
        0xe4..=0xe7 => (Kind::Io, 2),
        0xec..=0xef | 0x6c..=0x6f => (Kind::Io, 1),
        0x0f => match at(1)? {
            0xa2 => (Kind::Cpuid, 2),
            0x32 => (Kind::Rdmsr, 2),
            0x30 => (Kind::Wrmsr, 2),
            0x33 => (Kind::Rdpmc, 2),
            0x06 => (Kind::CrAccess, 2),
            0x08 | 0x09 => (Kind::CacheFlush, 2),
            // MOV r, CRn / MOV CRn, r: ModRM with mod = 11 (register form).
            0x20 | 0x22 => (Kind::CrAccess, 3),
            0x78 | 0x79 => (Kind::Privileged, 3),
            0x37 => (Kind::Privileged, 2),
            0x01 => match at(2)? {
                0xd1 => (Kind::Xsetbv, 3),
                0xc1 | 0xd9 => (Kind::Hypercall, 3),
                // VMLAUNCH/VMRESUME/VMXOFF/VMFUNC, MONITOR/MWAIT,
                // VMRUN/VMLOAD/VMSAVE/STGI/CLGI/SKINIT/INVLPGA.
                0xc2..=0xc4 | 0xd4 | 0xc8 | 0xc9 | 0xd8 | 0xda..=0xdf => (Kind::Privileged, 3),
                // LMSW r/m16 (register form only: memory operands would
                // need a full ModRM decode).
                m if m & 0xf8 == 0xf0 => (Kind::CrAccess, 3),
                _ => return Err(DecodeError::Unknown),
            },
            _ => return Err(DecodeError::Unknown),
        },
        _ => return Err(DecodeError::Unknown),
    };
    let len = i + opcode_len;
    if len > bytes.len() {
        return Err(DecodeError::TooLong);
    }
    Ok((kind, len as u8))
}

/// For `MOV CRn, r` (0F 22 /r, SDM Vol. 2B): the control register and the
/// general register (encoding order, with REX.R and REX.B), as SVM without
/// decode assists must find them itself.
pub fn mov_to_cr(bytes: &[u8], mode: CpuMode) -> Option<(u8, u8)> {
    let bytes = &bytes[..bytes.len().min(MAX_LEN)];
    let mut i = bytes.iter().take_while(|&&b| is_legacy_prefix(b)).count();
    let mut rex = 0;
    if mode == CpuMode::Long64 && bytes.get(i).is_some_and(|b| b & 0xf0 == 0x40) {
        rex = *bytes.get(i)?;
        i += 1;
    }
    if bytes.get(i..i + 2)? != [0x0f, 0x22] {
        return None;
    }
    let modrm = *bytes.get(i + 2)?;
    let cr = ((modrm >> 3) & 7) | ((rex & 4) << 1);
    let gpr = (modrm & 7) | ((rex & 1) << 3);
    Some((cr, gpr))
}

/// What INS/OUTS needs beyond the exit's own report (SDM Vol. 2B "INS",
/// "OUTS"; Vol. 1 3.6.1 for the address size), found the same way on VMX and
/// SVM: from the instruction's prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringIo {
    pub len: u8,
    /// The address size: 2, 4 or 8 bytes (RSI/RDI/RCX are used masked).
    pub addr_size: u8,
    /// OUTS's source segment (DS unless overridden); INS always writes ES.
    pub segment: SegmentReg,
    /// REP (F3; F2 acts the same on INS/OUTS).
    pub rep: bool,
}

/// Decodes INS/OUTS (6C–6F) at the start of `bytes`; None for anything else.
pub fn string_io(bytes: &[u8], mode: CpuMode) -> Option<StringIo> {
    let bytes = &bytes[..bytes.len().min(MAX_LEN)];
    let mut op = StringIo {
        len: 0,
        addr_size: match mode {
            CpuMode::Real | CpuMode::Protected16 => 2,
            CpuMode::Protected32 => 4,
            CpuMode::Long64 => 8,
        },
        segment: SegmentReg::Ds,
        rep: false,
    };
    let mut addr_override = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i).filter(|&&b| is_legacy_prefix(b)) {
        match b {
            0x67 => addr_override = true,
            0xf2 | 0xf3 => op.rep = true,
            0x26 => op.segment = SegmentReg::Es,
            0x2e => op.segment = SegmentReg::Cs,
            0x36 => op.segment = SegmentReg::Ss,
            0x3e => op.segment = SegmentReg::Ds,
            0x64 => op.segment = SegmentReg::Fs,
            0x65 => op.segment = SegmentReg::Gs,
            _ => {}
        }
        i += 1;
    }
    if mode == CpuMode::Long64 && bytes.get(i).is_some_and(|b| b & 0xf0 == 0x40) {
        i += 1;
    }
    if !matches!(bytes.get(i)?, 0x6c..=0x6f) {
        return None;
    }
    if addr_override {
        op.addr_size = match op.addr_size {
            2 => 4,
            _ => {
                if mode == CpuMode::Long64 {
                    4
                } else {
                    2
                }
            }
        };
    }
    op.len = i as u8 + 1;
    Some(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CpuMode::*;

    #[test]
    fn string_io_operands() {
        let plain = |len, addr_size, rep| StringIo {
            len,
            addr_size,
            segment: SegmentReg::Ds,
            rep,
        };
        assert_eq!(string_io(&[0x6e], Long64), Some(plain(1, 8, false)));
        assert_eq!(string_io(&[0xf3, 0x6c], Real), Some(plain(2, 2, true)));
        assert_eq!(
            string_io(&[0xf3, 0x67, 0x6d], Protected32),
            Some(plain(3, 2, true))
        );
        assert_eq!(string_io(&[0x67, 0x6f], Long64), Some(plain(2, 4, false)));
        assert_eq!(string_io(&[0x67, 0x6f], Real), Some(plain(2, 4, false)));
        assert_eq!(
            string_io(&[0x65, 0xf2, 0x66, 0x48, 0x6f], Long64),
            Some(StringIo {
                segment: SegmentReg::Gs,
                ..plain(5, 8, true)
            })
        );
        assert_eq!(string_io(&[0xee], Long64), None);
        assert_eq!(string_io(&[0xf3], Long64), None);
        assert_eq!(string_io(&[], Long64), None);
    }

    #[test]
    fn plain_instructions() {
        assert_eq!(decode(&[0x0f, 0xa2], Long64), Ok((Kind::Cpuid, 2)));
        assert_eq!(decode(&[0x0f, 0x32, 0x90], Real), Ok((Kind::Rdmsr, 2)));
        assert_eq!(decode(&[0x0f, 0x30], Protected32), Ok((Kind::Wrmsr, 2)));
        assert_eq!(decode(&[0xf4, 0xf4], Real), Ok((Kind::Hlt, 1)));
        assert_eq!(decode(&[0x0f, 0x01, 0xd1], Long64), Ok((Kind::Xsetbv, 3)));
        assert_eq!(
            decode(&[0x0f, 0x01, 0xd9], Long64),
            Ok((Kind::Hypercall, 3))
        );
        assert_eq!(
            decode(&[0x0f, 0x01, 0xc1], Long64),
            Ok((Kind::Hypercall, 3))
        );
        assert_eq!(decode(&[0x0f, 0x08], Long64), Ok((Kind::CacheFlush, 2)));
        assert_eq!(decode(&[0x0f, 0x33], Long64), Ok((Kind::Rdpmc, 2)));
        assert_eq!(
            decode(&[0x0f, 0x01, 0xd8], Long64),
            Ok((Kind::Privileged, 3))
        );
        assert_eq!(
            decode(&[0x0f, 0x01, 0xc9], Long64),
            Ok((Kind::Privileged, 3))
        );
        assert_eq!(decode(&[0x0f, 0x22, 0xc0], Long64), Ok((Kind::CrAccess, 3)));
        assert_eq!(decode(&[0x0f, 0x01, 0xf0], Long64), Ok((Kind::CrAccess, 3)));
    }

    #[test]
    fn port_io() {
        assert_eq!(decode(&[0xe6, 0xe9], Real), Ok((Kind::Io, 2)));
        assert_eq!(decode(&[0xec], Long64), Ok((Kind::Io, 1)));
        assert_eq!(decode(&[0x66, 0xef], Protected32), Ok((Kind::Io, 2)));
        assert_eq!(decode(&[0xf3, 0x6e], Long64), Ok((Kind::Io, 2)));
    }

    #[test]
    fn prefixes_and_rex() {
        assert_eq!(decode(&[0x66, 0x0f, 0xa2], Real), Ok((Kind::Cpuid, 3)));
        assert_eq!(
            decode(&[0x2e, 0x3e, 0x66, 0x0f, 0x32], Long64),
            Ok((Kind::Rdmsr, 5))
        );
        assert_eq!(decode(&[0x48, 0x0f, 0x30], Long64), Ok((Kind::Wrmsr, 3)));
        // Outside 64-bit mode 0x48 is DEC EAX, not REX.
        assert_eq!(
            decode(&[0x48, 0x0f, 0x30], Protected32),
            Err(DecodeError::Unknown)
        );
        // 14 prefixes + a 2-byte opcode is 16 bytes: too long.
        let mut long = [0x66u8; 16];
        long[14] = 0x0f;
        long[15] = 0xa2;
        assert_eq!(decode(&long, Long64), Err(DecodeError::TooLong));
        let mut ok = [0x66u8; 15];
        ok[13] = 0x0f;
        ok[14] = 0xa2;
        assert_eq!(decode(&ok, Long64), Ok((Kind::Cpuid, 15)));
    }

    #[test]
    fn truncated_or_unknown() {
        assert_eq!(decode(&[], Long64), Err(DecodeError::TooLong));
        assert_eq!(decode(&[0x0f], Long64), Err(DecodeError::TooLong));
        assert_eq!(decode(&[0x0f, 0x01], Long64), Err(DecodeError::TooLong));
        assert_eq!(decode(&[0x0f, 0x22], Long64), Err(DecodeError::TooLong));
        assert_eq!(decode(&[0x90], Long64), Err(DecodeError::Unknown));
        assert_eq!(decode(&[0x0f, 0x0b], Long64), Err(DecodeError::Unknown));
        assert_eq!(
            decode(&[0x0f, 0x01, 0xd0], Long64),
            Err(DecodeError::Unknown)
        );
    }

    #[test]
    fn mov_to_cr_operands() {
        // mov cr4, rax / mov cr0, rbx / mov cr8, r12 / mov cr4, eax (32-bit)
        assert_eq!(mov_to_cr(&[0x0f, 0x22, 0xe0], Long64), Some((4, 0)));
        assert_eq!(mov_to_cr(&[0x0f, 0x22, 0xc3], Long64), Some((0, 3)));
        assert_eq!(mov_to_cr(&[0x45, 0x0f, 0x22, 0xc4], Long64), Some((8, 12)));
        assert_eq!(mov_to_cr(&[0x0f, 0x22, 0xe0], Protected32), Some((4, 0)));
        assert_eq!(mov_to_cr(&[0x0f, 0x20, 0xe0], Long64), None, "MOV from CR");
        assert_eq!(mov_to_cr(&[0x0f, 0x22], Long64), None);
        assert_eq!(mov_to_cr(&[], Long64), None);
    }

    #[test]
    fn never_panics_on_any_two_bytes_with_prefixes() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for mode in [Real, Protected16, Protected32, Long64] {
                    let _ = decode(&[a, b], mode);
                    let _ = decode(&[0x66, a, b, 0xd1], mode);
                    let _ = decode(&[0x0f, 0x01, a, b], mode);
                    let _ = mov_to_cr(&[a, 0x0f, 0x22, b], mode);
                }
            }
        }
    }
}
