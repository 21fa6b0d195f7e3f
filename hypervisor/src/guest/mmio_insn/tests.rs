use super::oracle::{check, compare};
use super::*;
use CpuMode::*;

const MODES: [CpuMode; 4] = [Real, Protected16, Protected32, Long64];

/// Legacy prefixes and a few REX bytes (0x40–0x4f are INC/DEC outside
/// 64-bit mode, which the oracle then rejects along with ours).
const PREFIXES: [u8; 16] = [
    0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x40, 0x41, 0x44, 0x48, 0x4f,
];

/// The first byte of every form in the subset; 0x0f is followed by one of
/// `TWO_BYTE`.
const OPCODES: [u8; 48] = [
    0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0a, 0x0b, 0x20, 0x21, 0x22, 0x23, 0x28, 0x29, 0x2a, 0x2b,
    0x30, 0x31, 0x32, 0x33, 0x38, 0x39, 0x3a, 0x3b, 0x84, 0x85, 0x80, 0x81, 0x83, 0xf6, 0xf7, 0x88,
    0x89, 0x8a, 0x8b, 0xc6, 0xc7, 0x63, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xaa, 0xab, 0x0f, 0x82,
];
const TWO_BYTE: [u8; 4] = [0xb6, 0xb7, 0xbe, 0xbf];

/// Displacement and immediate bytes after the opcode and ModRM/SIB: sign
/// bits set, so sign extension shows.
const TAIL: [u8; 12] = [
    0x88, 0x99, 0xaa, 0xfb, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
];

/// Counts what the oracle saw.
#[derive(Default)]
struct Tally {
    checked: u64,
    in_subset: u64,
}

impl Tally {
    /// Checks `prefix ++ body ++ TAIL` (cut to 15 bytes) in `mode`.
    fn check(&mut self, mode: CpuMode, parts: &[&[u8]]) {
        let mut bytes = [0u8; MAX_LEN];
        let all = parts.iter().flat_map(|p| p.iter()).chain(TAIL.iter());
        for (slot, &b) in bytes.iter_mut().zip(all) {
            *slot = b;
        }
        self.check_bytes(mode, &bytes);
    }

    fn check_bytes(&mut self, mode: CpuMode, bytes: &[u8]) {
        match check(bytes, mode) {
            Ok(hit) => {
                self.checked += 1;
                self.in_subset += u64::from(hit);
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn report(&self, what: &str, start: std::time::Instant) {
        println!(
            "mmio_insn oracle, {what}: {} sequences checked, {} in the subset, {:?}",
            self.checked,
            self.in_subset,
            start.elapsed()
        );
    }
}

/// Every opcode of the subset × every ModRM byte × a few SIB bytes, with
/// operand/address-size and REX variations.
#[test]
fn oracle_every_modrm() {
    let start = std::time::Instant::now();
    let mut t = Tally::default();
    let variants: [&[u8]; 9] = [
        &[],
        &[0x66],
        &[0x67],
        &[0x66, 0x67],
        &[0x48],
        &[0x66, 0x48],
        &[0x45],
        &[0x4a],
        &[0x40],
    ];
    for mode in MODES {
        for prefix in variants {
            for op in OPCODES {
                for second in if op == 0x0f { &TWO_BYTE[..] } else { &[][..] }
                    .iter()
                    .map(Some)
                    .chain((op != 0x0f).then_some(None))
                {
                    let opcode = [op];
                    let opcode2 = second.map(|&b| [b]);
                    let opcode2: &[u8] = opcode2.as_ref().map_or(&[], |b| &b[..]);
                    for modrm in 0..=255u8 {
                        let sibs: &[u8] = if modrm & 7 == 4 && modrm < 0xc0 {
                            &[0x00, 0x25, 0x65, 0xe4, 0x9d]
                        } else {
                            &[]
                        };
                        t.check(mode, &[prefix, &opcode, opcode2, &[modrm]]);
                        for &sib in sibs {
                            t.check(mode, &[prefix, &opcode, opcode2, &[modrm, sib]]);
                        }
                    }
                }
            }
        }
    }
    t.report("opcode x ModRM x SIB x 66/67/REX", start);
    assert!(t.in_subset > t.checked / 4);
}

/// Every one-, two- and three-byte combination of prefixes in front of a
/// few forms.
#[test]
fn oracle_prefix_combinations() {
    let start = std::time::Instant::now();
    let mut t = Tally::default();
    let forms: [&[u8]; 14] = [
        &[0x89, 0x00],       // mov [eax], eax
        &[0x8a, 0x65, 0x08], // mov ah, [ebp+8]
        &[0xc7, 0x05],       // mov [disp32 / rip+disp32], imm
        &[0x83, 0x38],       // cmp [eax], imm8
        &[0x80, 0x30],       // xor byte [eax], imm8
        &[0x01, 0x04, 0x24], // add [esp], eax
        &[0x85, 0x00],       // test [eax], eax
        &[0xf6, 0x00],       // test byte [eax], imm8
        &[0xa5],             // movs
        &[0xaa],             // stos
        &[0xa1],             // mov eax, moffs
        &[0x0f, 0xbf, 0x00], // movsx eax, word [eax]
        &[0x63, 0x00],       // movsxd / arpl
        &[0x89, 0xc0],       // mov eax, eax: no memory
    ];
    for mode in MODES {
        for form in forms {
            t.check(mode, &[form]);
            for a in PREFIXES {
                t.check(mode, &[&[a], form]);
                for b in PREFIXES {
                    t.check(mode, &[&[a, b], form]);
                    for c in PREFIXES {
                        t.check(mode, &[&[a, b, c], form]);
                    }
                }
            }
        }
    }
    t.report("1-3 prefixes x 14 forms", start);
    assert!(t.in_subset > t.checked / 4);
}

/// A deterministic pseudo-random sweep, weighted toward prefixes and the
/// subset's opcodes, ModRM with a memory operand.
#[test]
fn oracle_random() {
    let start = std::time::Instant::now();
    let mut t = Tally::default();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        // xorshift64 (Marsaglia).
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for mode in MODES {
        for _ in 0..200_000 {
            let mut bytes = [0u8; MAX_LEN];
            for b in bytes.iter_mut() {
                *b = next() as u8;
            }
            let r = next();
            // 0–15 prefixes, mostly few.
            let prefixes = ((r & 0xf) * ((r >> 4) & 0xf) / 15) as usize;
            let mut i = 0;
            while i < prefixes {
                let pick = (next() % PREFIXES.len() as u64) as usize;
                bytes[i] = PREFIXES[pick];
                i += 1;
            }
            if i < MAX_LEN && (r >> 8) % 8 != 0 {
                bytes[i] = OPCODES[((r >> 12) % OPCODES.len() as u64) as usize];
                i += 1;
                if bytes[i - 1] == 0x0f && i < MAX_LEN {
                    bytes[i] = TWO_BYTE[((r >> 20) % 4) as usize];
                    i += 1;
                }
                if i < MAX_LEN && (r >> 24) % 4 != 0 {
                    bytes[i] &= 0xbf; // mod 0 or 2: memory
                }
            }
            t.check_bytes(mode, &bytes);
            // The same bytes cut short must not decode past their end.
            t.check_bytes(mode, &bytes[..(r >> 32) as usize % MAX_LEN]);
        }
    }
    t.report("random", start);
    assert!(t.in_subset > t.checked / 10);
}

/// The oracle must catch a wrong answer: a wrong length, size, register or
/// a decoding where iced says invalid.
#[test]
fn oracle_catches_mistakes() {
    let bytes = [0x66, 0x89, 0x48, 0x10]; // mov [rax+0x10], cx
    let good = decode(&bytes, Long64);
    assert_eq!(compare(&bytes, Long64, good), Ok(true));
    let Ok(good) = good else { panic!("{good:?}") };
    for bad in [
        MmioInsn {
            len: good.len + 1,
            ..good
        },
        MmioInsn { size: 4, ..good },
        MmioInsn {
            op: Op::Store(Reg {
                num: 2,
                high_byte: false,
            }),
            ..good
        },
        MmioInsn {
            addr_size: 4,
            ..good
        },
        MmioInsn {
            segment: Some(SegmentReg::Ds),
            ..good
        },
    ] {
        assert!(compare(&bytes, Long64, Ok(bad)).is_err(), "{bad:?}");
    }
    assert!(compare(&bytes, Long64, Err(DecodeError::Unsupported)).is_err());
    // LOCK MOV is #UD: iced rejects it, so a decoding must be caught.
    let locked = [0xf0, 0x89, 0x08];
    assert!(compare(&locked, Long64, Ok(MmioInsn { len: 3, ..good })).is_err());
}

#[test]
fn examples() {
    let r = |num| Reg {
        num,
        high_byte: false,
    };
    let plain = |len, op, size, addr_size| MmioInsn {
        len,
        op,
        size,
        addr_size,
        rep: false,
        segment: None,
        lock: false,
    };
    // mov [rax], ecx
    assert_eq!(
        decode(&[0x89, 0x08], Long64),
        Ok(plain(2, Op::Store(r(1)), 4, 8))
    );
    // mov ah, [bx+si]
    assert_eq!(
        decode(&[0x8a, 0x20], Real),
        Ok(plain(
            2,
            Op::Load(Reg {
                num: 4,
                high_byte: true
            }),
            1,
            2
        ))
    );
    // mov spl, [rax] (REX: SPL, not AH)
    assert_eq!(
        decode(&[0x40, 0x8a, 0x20], Long64),
        Ok(plain(3, Op::Load(r(4)), 1, 8))
    );
    // mov dword [rip+0x10], 0x80000000 → sign-extended when REX.W
    assert_eq!(
        decode(&[0x48, 0xc7, 0x05, 0x10, 0, 0, 0, 0, 0, 0, 0x80], Long64),
        Ok(plain(11, Op::StoreImm(0xffff_ffff_8000_0000), 8, 8))
    );
    // lock or word [esi+edi*4+0x12345678], -1 (83 /1 ib), 32-bit mode, 66
    assert_eq!(
        decode(
            &[0xf0, 0x66, 0x83, 0x8c, 0xbe, 0x78, 0x56, 0x34, 0x12, 0xff],
            Protected32
        ),
        Ok(MmioInsn {
            lock: true,
            ..plain(
                10,
                Op::Alu {
                    op: AluOp::Or,
                    src: Src::Imm(u64::MAX),
                    mem_dest: true
                },
                2,
                4
            )
        })
    );
    // movzx r9, word [fs:rbx] → size 2, dest 8
    assert_eq!(
        decode(&[0x64, 0x4c, 0x0f, 0xb7, 0x0b], Long64),
        Ok(MmioInsn {
            segment: Some(SegmentReg::Fs),
            ..plain(
                5,
                Op::LoadExtend {
                    reg: r(9),
                    dest_size: 8,
                    signed: false
                },
                2,
                8
            )
        })
    );
    // rep movsd with a 16-bit address in 32-bit mode; F2 is REP too
    for rep in [0xf3, 0xf2] {
        assert_eq!(
            decode(&[rep, 0x67, 0xa5], Protected32),
            Ok(MmioInsn {
                rep: true,
                ..plain(3, Op::Movs, 4, 2)
            })
        );
    }
    // mov al, [moffs64]
    assert_eq!(
        decode(&[0xa0, 1, 2, 3, 4, 5, 6, 7, 8], Long64),
        Ok(plain(9, Op::Load(r(0)), 1, 8))
    );
    // Not memory, not emulated, #UD, or cut short.
    assert_eq!(decode(&[0x89, 0xc0], Long64), Err(DecodeError::Unsupported));
    assert_eq!(decode(&[0x11, 0x00], Long64), Err(DecodeError::Unsupported));
    assert_eq!(
        decode(&[0xf0, 0x39, 0x00], Long64),
        Err(DecodeError::Unsupported)
    );
    assert_eq!(
        decode(&[0xc7, 0x00, 1, 2], Real),
        Ok(plain(4, Op::StoreImm(0x201), 2, 2))
    );
    assert_eq!(
        decode(&[0xc7, 0x00, 1, 2], Protected32),
        Err(DecodeError::TooLong)
    );
    assert_eq!(decode(&[], Long64), Err(DecodeError::TooLong));
    let mut long = [0x66u8; 16];
    long[14] = 0x89;
    long[15] = 0x00;
    assert_eq!(decode(&long, Long64), Err(DecodeError::TooLong));
    assert_eq!(decode(&long[1..], Long64).map(|i| i.len), Ok(15));
}
