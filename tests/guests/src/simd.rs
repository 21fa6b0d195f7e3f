//! Loading and storing the vector registers as plain data.
//!
//! The values stay in the registers between calls: the bare target is
//! soft-float, so no compiler-generated code uses XMM or YMM registers
//! (see the crate documentation). Needs `cpu::enable_sse`, and for the YMM
//! functions XCR0.AVX; without them the instructions raise #UD, which the
//! IDT reports as a failure.

use core::arch::asm;

/// XMM0–XMM15 as two 64-bit halves each, low half first.
pub type Xmms = [[u64; 2]; 16];
/// YMM0–YMM15 as four 64-bit quarters each, lowest first.
pub type Ymms = [[u64; 4]; 16];

macro_rules! each_vector_register {
    ($insn:literal, $prefix:literal, $size:literal, $dir:ident) => {
        each_vector_register!(@ $insn, $prefix, $size, $dir,
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@ $insn:literal, $prefix:literal, $size:literal, load, $($n:literal)*) => {
        concat!($($insn, " ", $prefix, $n, ", [{p} + ", $size, " * ", $n, "]\n",)*)
    };
    (@ $insn:literal, $prefix:literal, $size:literal, store, $($n:literal)*) => {
        concat!($($insn, " [{p} + ", $size, " * ", $n, "], ", $prefix, $n, "\n",)*)
    };
}

/// Sets XMM0–XMM15.
pub fn load_xmm(values: &Xmms) {
    // SAFETY: reads 256 bytes from `values`; writes only XMM registers,
    // which compiled code never uses on this target.
    unsafe {
        asm!(
            each_vector_register!("movdqu", "xmm", 16, load),
            p = in(reg) values,
            options(readonly, nostack, preserves_flags),
        )
    };
}

/// Reads XMM0–XMM15.
pub fn store_xmm() -> Xmms {
    let mut values = [[0; 2]; 16];
    // SAFETY: writes 256 bytes to `values`.
    unsafe {
        asm!(
            each_vector_register!("movdqu", "xmm", 16, store),
            p = in(reg) &mut values,
            options(nostack, preserves_flags),
        )
    };
    values
}

/// Sets YMM0–YMM15 (and so XMM0–XMM15, their low halves).
pub fn load_ymm(values: &Ymms) {
    // SAFETY: as in `load_xmm`, 512 bytes.
    unsafe {
        asm!(
            each_vector_register!("vmovdqu", "ymm", 32, load),
            p = in(reg) values,
            options(readonly, nostack, preserves_flags),
        )
    };
}

/// Reads YMM0–YMM15.
pub fn store_ymm() -> Ymms {
    let mut values = [[0; 4]; 16];
    // SAFETY: writes 512 bytes to `values`.
    unsafe {
        asm!(
            each_vector_register!("vmovdqu", "ymm", 32, store),
            p = in(reg) &mut values,
            options(nostack, preserves_flags),
        )
    };
    values
}
