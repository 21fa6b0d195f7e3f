//! The `fpustate` guest: SSE and x87 register state survives exits that go
//! all the way to the VMM and back. It sets the eight x87 registers to the
//! x87's own constants (1, log2 10, log2 e, pi, log10 2, ln 2, 0, -1) and
//! XMM0–XMM15 to a pattern, does 20 INs from a port no device decodes
//! (each one an exit to the VMM), and checks every register.
//!
//! Only instructions that KVM's instruction emulator also runs are used,
//! since `kvm-pvm` emulates all CPL-0 code (see `vmm/tests/host_kvm.rs`):
//! MOVDQU for the XMM registers, FXRSTOR and FXSAVE for the x87 ones. The
//! emulator has no x87 arithmetic or loads (FLD1 stops the guest with
//! `KVM_INTERNAL_ERROR_EMULATION`), nor XGETBV, AVX or LDMXCSR/STMXCSR.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use core::arch::asm;
    use guests::cpu::enable_sse;
    use guests::pattern::word_at;
    use guests::port::{exit, inb};
    use guests::simd::{Xmms, load_xmm, store_xmm};
    use guests::{BootInfo, fail, println};

    /// A port no device decodes: every IN is an exit to the VMM.
    const UNASSIGNED: u16 = 0x1ee;
    /// How many exits the state must survive.
    const EXITS: u32 = 20;

    /// ST0–ST7 as (sign and exponent, significand): what FLD1, FLDL2T,
    /// FLDL2E, FLDPI, FLDLG2, FLDLN2 and FLDZ load when rounding to nearest
    /// (SDM Vol. 2A "FLD1/FLDL2T/FLDL2E/FLDPI/FLDLG2/FLDLN2/FLDZ"), and -1.
    const X87: [(&str, u16, u64); 8] = [
        ("1", 0x3fff, 0x8000_0000_0000_0000),
        ("log2 10", 0x4000, 0xd49a_784b_cd1b_8afe),
        ("log2 e", 0x3fff, 0xb8aa_3b29_5c17_f0bc),
        ("pi", 0x4000, 0xc90f_daa2_2168_c235),
        ("log10 2", 0x3ffd, 0x9a20_9a84_fbcf_f799),
        ("ln 2", 0x3ffe, 0xb172_17f7_d1cf_79ac),
        ("0", 0, 0),
        ("-1", 0xbfff, 0x8000_0000_0000_0000),
    ];

    /// The FXSAVE area (SDM Vol. 1 §10.5.1 "FXSAVE Area", Table 10-2).
    #[repr(C, align(16))]
    struct FxArea([u8; 512]);

    /// Byte offsets in the FXSAVE area.
    const FCW: usize = 0;
    const FSW: usize = 2;
    /// The abridged tag word: one bit per physical register, 1 = in use.
    const FTW: usize = 4;
    const MXCSR: usize = 24;
    /// ST(i) at 32 + 16 i (10 bytes used), XMMi at 160 + 16 i.
    const ST0: usize = 32;
    const XMM0: usize = 160;

    /// All x87 exceptions masked, extended precision, round to nearest:
    /// the FNINIT value (SDM Vol. 1 §8.1.5 "x87 FPU Control Word").
    const FCW_INIT: u16 = 0x037f;
    /// TOP = 0, no exception flags: ST(i) is physical register i.
    const FSW_VALUE: u16 = 0;
    /// Every register in use.
    const FTW_ALL: u8 = 0xff;
    /// MXCSR after reset: all exceptions masked.
    const MXCSR_RESET: u32 = 0x1f80;

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        enable_sse();
        let xmms: Xmms = core::array::from_fn(|i| {
            let at = 16 * i as u64;
            [word_at(at), word_at(at + 8)]
        });
        // FXRSTOR sets the XMM registers too, so the x87 state goes first.
        fxrstor(&x87_image());
        load_xmm(&xmms);
        for _ in 0..EXITS {
            let value = inb(UNASSIGNED);
            if value != 0xff {
                fail!("in {UNASSIGNED:#x} read {value:#x}, expected 0xff");
            }
        }
        for (i, (got, want)) in store_xmm().into_iter().zip(xmms).enumerate() {
            if got != want {
                fail!("xmm{i} = {got:#x?}, expected {want:#x?} after {EXITS} exits");
            }
        }
        check_fxsave(&fxsave(), &xmms);
        println!("xmm and x87 state survive {EXITS} exits to the VMM");
        println!("PASS");
        exit(0)
    }

    /// An FXSAVE image with the x87 registers of `X87` and zero XMMs.
    fn x87_image() -> FxArea {
        let mut area = FxArea([0; 512]);
        let a = &mut area.0;
        a[FCW..FCW + 2].copy_from_slice(&FCW_INIT.to_le_bytes());
        a[FSW..FSW + 2].copy_from_slice(&FSW_VALUE.to_le_bytes());
        a[FTW] = FTW_ALL;
        a[MXCSR..MXCSR + 4].copy_from_slice(&MXCSR_RESET.to_le_bytes());
        for (i, (_, exponent, significand)) in X87.into_iter().enumerate() {
            let at = ST0 + 16 * i;
            a[at..at + 8].copy_from_slice(&significand.to_le_bytes());
            a[at + 8..at + 10].copy_from_slice(&exponent.to_le_bytes());
        }
        area
    }

    /// Compares the fields FXSAVE defines the same way on every CPU: not
    /// the last instruction and operand pointers (AMD saves them only when
    /// an exception is pending), MXCSR_MASK or the reserved bytes.
    fn check_fxsave(area: &FxArea, xmms: &Xmms) {
        let a = &area.0;
        let half = |at: usize| u16::from_le_bytes([a[at], a[at + 1]]);
        let word = |at: usize| u64::from_le_bytes(a[at..at + 8].try_into().unwrap());
        let fields = [
            ("FCW", u64::from(half(FCW)), u64::from(FCW_INIT)),
            ("FSW", u64::from(half(FSW)), u64::from(FSW_VALUE)),
            ("abridged FTW", u64::from(a[FTW]), u64::from(FTW_ALL)),
            (
                "MXCSR",
                u64::from(u32::from_le_bytes(a[MXCSR..MXCSR + 4].try_into().unwrap())),
                u64::from(MXCSR_RESET),
            ),
        ];
        for (name, got, want) in fields {
            if got != want {
                fail!("{name} = {got:#x}, expected {want:#x} after {EXITS} exits");
            }
        }
        for (i, (name, exponent, significand)) in X87.into_iter().enumerate() {
            let at = ST0 + 16 * i;
            let got = (half(at + 8), word(at));
            if got != (exponent, significand) {
                fail!(
                    "st{i} = {:#06x}:{:#018x}, expected {exponent:#06x}:{significand:#018x} \
                     ({name}) after {EXITS} exits",
                    got.0,
                    got.1
                );
            }
        }
        for (i, want) in xmms.iter().enumerate() {
            let at = XMM0 + 16 * i;
            let got = [word(at), word(at + 8)];
            if got != *want {
                fail!("FXSAVE's xmm{i} = {got:#x?}, expected {want:#x?}");
            }
        }
    }

    /// FXRSTOR (64-bit form) from `area`.
    fn fxrstor(area: &FxArea) {
        // SAFETY: reads the 512 aligned bytes of `area`; changes only x87
        // and SSE state, which compiled code never uses on this target.
        unsafe {
            asm!("fxrstor64 [{}]", in(reg) area, options(readonly, nostack, preserves_flags))
        };
    }

    /// FXSAVE (64-bit form).
    fn fxsave() -> FxArea {
        let mut area = FxArea([0; 512]);
        // SAFETY: writes the 512 aligned bytes of `area`.
        unsafe { asm!("fxsave64 [{}]", in(reg) &mut area, options(nostack, preserves_flags)) };
        area
    }
}
