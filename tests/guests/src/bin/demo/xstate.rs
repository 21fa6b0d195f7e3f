//! Extended state: XSETBV/XGETBV of XCR0 (XSETBV exits to the hypervisor,
//! which must refuse invalid values), and vector registers surviving VM
//! exits.

use guests::cpu::{XCR0_AVX, cpuid, enable_sse, enable_xsave, wanted_xcr0, xcr0};
use guests::fault::{GP, try_xsetbv};
use guests::idt::exception_name;
use guests::simd::{load_xmm, load_ymm, store_xmm, store_ymm};
use guests::{fail, println};

/// How many CPUID exits the vector registers must survive.
const EXITS: u32 = 100;

pub fn check() {
    enable_sse();
    let xcr0 = check_xcr0();
    if xcr0 & XCR0_AVX != 0 {
        check_ymm();
    } else {
        check_xmm();
    }
}

/// Sets XCR0 to x87|SSE(|AVX) and reads it back; XCR0 = 0 must #GP (bit 0,
/// x87, must be set: SDM Vol. 1 §13.3). Returns the XCR0 in force.
fn check_xcr0() -> u64 {
    if !enable_xsave() {
        println!("xsave: not offered (CPUID.1:ECX.XSAVE clear), skipped");
        return 0;
    }
    let want = wanted_xcr0();
    // SAFETY: no XSAVE area is in use; the value is one CPUID offers.
    if let Err(vector) = unsafe { try_xsetbv(0, want) } {
        fail!(
            "xsave: XSETBV XCR0 = {want:#x} raised {}",
            exception_name(vector.into())
        );
    }
    if xcr0() != want {
        fail!(
            "xsave: XGETBV reads XCR0 = {:#x} after XSETBV {want:#x}",
            xcr0()
        );
    }
    // SAFETY: as above; the CPU must refuse the value anyway.
    match unsafe { try_xsetbv(0, 0) } {
        Err(GP) => {}
        Err(vector) => fail!(
            "xsave: XSETBV XCR0 = 0 raised {}, not #GP",
            exception_name(vector.into())
        ),
        Ok(()) => fail!("xsave: XSETBV XCR0 = 0 did not raise #GP"),
    }
    if xcr0() != want {
        fail!(
            "xsave: XCR0 = {:#x} after the refused XSETBV, not {want:#x}",
            xcr0()
        );
    }
    println!("xsave: XCR0 = {want:#x} set and read back; XCR0 = 0 raises #GP");
    want
}

fn check_xmm() {
    let pattern: [[u64; 2]; 16] = core::array::from_fn(|n| [word(n, 0), word(n, 1)]);
    load_xmm(&pattern);
    exits();
    let seen = store_xmm();
    for (n, (seen, want)) in seen.iter().zip(&pattern).enumerate() {
        if seen != want {
            fail!(
                "sse: xmm{n} = {:#018x}_{:016x} after {EXITS} CPUID exits",
                seen[1],
                seen[0]
            );
        }
    }
    println!("sse: XMM0-XMM15 survive {EXITS} CPUID exits");
}

fn check_ymm() {
    let pattern: [[u64; 4]; 16] = core::array::from_fn(|n| core::array::from_fn(|q| word(n, q)));
    load_ymm(&pattern);
    exits();
    let seen = store_ymm();
    for (n, (seen, want)) in seen.iter().zip(&pattern).enumerate() {
        if seen != want {
            fail!(
                "avx: ymm{n} quarter {} differs after {EXITS} CPUID exits",
                first_difference(seen, want)
            );
        }
    }
    println!("avx: YMM0-YMM15 survive {EXITS} CPUID exits");
}

fn exits() {
    for _ in 0..EXITS {
        cpuid(0, 0);
    }
}

/// A different word for each register and part.
fn word(register: usize, part: usize) -> u64 {
    0x5eed_0000_0000_0000 | (register as u64) << 8 | part as u64
}

fn first_difference(a: &[u64], b: &[u64]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0)
}
