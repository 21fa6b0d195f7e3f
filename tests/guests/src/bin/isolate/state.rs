//! The state each `isolate` instance owns: what it must find at reset, the
//! values it loads (derived from its VM id, so the two instances differ),
//! and the checks.

use core::arch::asm;
use core::fmt;
use guests::cpu::{
    self, MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_LSTAR, MSR_PAT, MSR_SFMASK, MSR_STAR, MSR_TSC_AUX,
    PAT_POWER_ON, XCR0_AVX, XCR0_X87,
};
use guests::fail;
use guests::simd::{Xmms, Ymms, load_xmm, load_ymm, store_xmm, store_ymm};

/// MXCSR after reset: all exceptions masked (SDM Vol. 1 §10.2.3 "MXCSR
/// Control and Status Register").
const MXCSR_RESET: u64 = 0x1f80;

/// What CPUID offers and this guest turned on.
#[derive(Clone, Copy)]
pub struct Features {
    /// XCR0 is readable (CR4.OSXSAVE set).
    xsave: bool,
    /// XCR0 includes AVX: YMM upper halves are checked too.
    avx: bool,
    /// IA32_TSC_AUX exists.
    rdtscp: bool,
}

impl Features {
    /// Enables SSE and XSAVE. XCR0 is checked for its reset value (x87
    /// only) before it is set here, the one check that cannot wait.
    pub fn enable() -> Features {
        cpu::enable_sse();
        let xsave = cpu::enable_xsave();
        if xsave {
            let xcr0 = cpu::xcr0();
            if xcr0 != XCR0_X87 {
                fail!("XCR0 = {xcr0:#x}, expected {XCR0_X87:#x} at start");
            }
            // SAFETY: no XSAVE area is in use; the value is one CPUID offers.
            unsafe { cpu::set_xcr0(cpu::wanted_xcr0()) };
        }
        let avx = xsave && cpu::xcr0() & XCR0_AVX != 0;
        Features {
            xsave,
            avx,
            rdtscp: cpu::has_rdtscp(),
        }
    }
}

/// A 64-bit value owned by VM `id`: the id in the top bits, `k` (which
/// register, which part) in the low ones.
pub fn wide(id: u64, k: u64) -> u64 {
    0x1111_0000_0000_0000u64.wrapping_mul(id).wrapping_add(k)
}

/// The single-value registers, and what each may hold.
#[derive(Clone, Copy)]
enum Register {
    Msr(&'static str, u32, Kind),
    Dr(u8),
    Cr2,
    Mxcsr,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Any 64-bit value.
    Any,
    /// A canonical address (WRMSR of a non-canonical one raises #GP).
    Address,
    /// Bits 63:32 reserved (IA32_FMASK, IA32_TSC_AUX).
    Low32,
    /// IA32_PAT: eight memory types.
    Pat,
}

const REGISTERS: [Register; 12] = [
    Register::Msr("IA32_STAR", MSR_STAR, Kind::Any),
    Register::Msr("IA32_LSTAR", MSR_LSTAR, Kind::Address),
    Register::Msr("IA32_CSTAR", MSR_CSTAR, Kind::Address),
    Register::Msr("IA32_FMASK", MSR_SFMASK, Kind::Low32),
    Register::Msr("IA32_KERNEL_GS_BASE", MSR_KERNEL_GS_BASE, Kind::Address),
    Register::Msr("IA32_TSC_AUX", MSR_TSC_AUX, Kind::Low32),
    Register::Msr("IA32_PAT", MSR_PAT, Kind::Pat),
    Register::Dr(0),
    Register::Dr(1),
    Register::Dr(2),
    Register::Dr(3),
    Register::Cr2,
];

impl Register {
    fn present(self, features: &Features) -> bool {
        !matches!(self, Register::Msr(_, MSR_TSC_AUX, _)) || features.rdtscp
    }

    fn initial(self) -> u64 {
        match self {
            Register::Msr(_, _, Kind::Pat) => PAT_POWER_ON,
            Register::Mxcsr => MXCSR_RESET,
            _ => 0,
        }
    }

    /// VM `id`'s value for the register at index `k` of the table.
    fn value(self, id: u64, k: u64) -> u64 {
        match self {
            Register::Msr(_, _, Kind::Any) | Register::Cr2 => wide(id, k),
            Register::Msr(_, _, Kind::Address) | Register::Dr(_) => (id & 0x7f) << 40 | k << 12,
            Register::Msr(_, _, Kind::Low32) => (id & 0xffff) << 16 | k,
            Register::Msr(_, _, Kind::Pat) => pat(id),
            // Rounding control (bits 14:13) from the id; all exceptions
            // stay masked.
            Register::Mxcsr => MXCSR_RESET | (id % 4) << 13,
        }
    }

    fn read(self) -> u64 {
        match self {
            Register::Msr(_, msr, _) => cpu::rdmsr(msr),
            Register::Dr(0) => cpu::dr0(),
            Register::Dr(1) => cpu::dr1(),
            Register::Dr(2) => cpu::dr2(),
            Register::Dr(_) => cpu::dr3(),
            Register::Cr2 => cpu::cr2(),
            Register::Mxcsr => {
                let mut mxcsr = 0u32;
                // SAFETY: STMXCSR writes the 4 bytes of `mxcsr`.
                unsafe {
                    asm!("stmxcsr [{}]", in(reg) &mut mxcsr, options(nostack, preserves_flags))
                };
                u64::from(mxcsr)
            }
        }
    }

    /// # Safety
    /// `value` must come from `Register::value`: nothing here uses SYSCALL,
    /// SWAPGS, RDTSCP, breakpoints (DR7 stays 0), a page fault address, SSE
    /// rounding or PAT entries 4–7.
    unsafe fn write(self, value: u64) {
        // SAFETY: as the function's contract says.
        unsafe {
            match self {
                Register::Msr(_, msr, _) => cpu::wrmsr(msr, value),
                Register::Dr(0) => cpu::set_dr0(value),
                Register::Dr(1) => cpu::set_dr1(value),
                Register::Dr(2) => cpu::set_dr2(value),
                Register::Dr(_) => cpu::set_dr3(value),
                Register::Cr2 => cpu::set_cr2(value),
                Register::Mxcsr => {
                    let mxcsr = value as u32;
                    asm!(
                        "ldmxcsr [{}]",
                        in(reg) &mxcsr,
                        options(readonly, nostack, preserves_flags),
                    );
                }
            }
        }
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Register::Msr(name, _, _) => f.write_str(name),
            Register::Dr(n) => write!(f, "DR{n}"),
            Register::Cr2 => f.write_str("CR2"),
            Register::Mxcsr => f.write_str("MXCSR"),
        }
    }
}

/// PAT entries 0–3 keep their reset types (the page tables use entry 0);
/// entries 4–7 get four of the six valid memory types, chosen by the id
/// (SDM Vol. 3A "Page Attribute Table (PAT)": UC, WC, WT, WP, WB, UC-).
fn pat(id: u64) -> u64 {
    const TYPES: [u64; 6] = [0, 1, 4, 5, 6, 7];
    let mut value = PAT_POWER_ON & 0xffff_ffff;
    for entry in 0..4 {
        value |= TYPES[(id as usize + entry) % TYPES.len()] << (32 + 8 * entry);
    }
    value
}

/// All scalar registers, MXCSR included, with their table index.
fn scalars(features: &Features) -> impl Iterator<Item = (u64, Register)> + '_ {
    REGISTERS
        .into_iter()
        .chain([Register::Mxcsr])
        .enumerate()
        .map(|(k, register)| (k as u64, register))
        .filter(|(_, register)| register.present(features))
}

/// VM `id`'s vector registers: XMM halves / YMM quarters.
fn vectors(id: u64) -> Ymms {
    core::array::from_fn(|n| core::array::from_fn(|q| wide(id, 0x100 + 4 * n as u64 + q as u64)))
}

fn low_halves(ymms: &Ymms) -> Xmms {
    core::array::from_fn(|n| [ymms[n][0], ymms[n][1]])
}

fn check_vectors(features: &Features, want: &Ymms, when: fmt::Arguments<'_>) {
    let (seen, name) = if features.avx {
        (store_ymm(), "ymm")
    } else {
        let xmms = store_xmm();
        (
            core::array::from_fn(|n| [xmms[n][0], xmms[n][1], want[n][2], want[n][3]]),
            "xmm",
        )
    };
    for (n, (seen, want)) in seen.iter().zip(want).enumerate() {
        if let Some(q) = (0..4).find(|&q| seen[q] != want[q]) {
            fail!(
                "{name}{n} bits {}..{} = {:#x}, expected {:#x} ({when})",
                64 * q,
                64 * q + 63,
                seen[q],
                want[q]
            );
        }
    }
}

/// Checks the reset state; returns what it checked, for the log.
pub fn check_initial(features: &Features) -> impl fmt::Display + '_ {
    check_vectors(features, &[[0; 4]; 16], format_args!("at start"));
    for (_, register) in scalars(features) {
        let value = register.read();
        if value != register.initial() {
            fail!(
                "{register} = {value:#x}, expected {:#x} at start",
                register.initial()
            );
        }
    }
    Checked(features)
}

struct Checked<'a>(&'a Features);

impl fmt::Display for Checked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Features { xsave, avx, rdtscp } = *self.0;
        f.write_str(if avx { "YMM0-15" } else { "XMM0-15" })?;
        if xsave {
            f.write_str(", XCR0")?;
        }
        f.write_str(", MXCSR, STAR/LSTAR/CSTAR/FMASK, KERNEL_GS_BASE")?;
        if rdtscp {
            f.write_str(", TSC_AUX")?;
        }
        f.write_str(", PAT, DR0-3, CR2")
    }
}

/// Loads VM `id`'s values into every register.
pub fn load_values(features: &Features, id: u64) {
    let vectors = vectors(id);
    if features.avx {
        load_ymm(&vectors);
    } else {
        load_xmm(&low_halves(&vectors));
    }
    for (k, register) in scalars(features) {
        // SAFETY: the value comes from `Register::value`.
        unsafe { register.write(register.value(id, k)) };
    }
}

/// Checks that every register still holds VM `id`'s value.
pub fn check_values(features: &Features, id: u64, round: u32) {
    check_vectors(features, &vectors(id), format_args!("after yield {round}"));
    for (k, register) in scalars(features) {
        let (value, want) = (register.read(), register.value(id, k));
        if value != want {
            fail!("{register} = {value:#x}, expected {want:#x} (after yield {round})");
        }
    }
    if features.xsave && cpu::xcr0() != cpu::wanted_xcr0() {
        fail!(
            "XCR0 = {:#x}, expected {:#x} (after yield {round})",
            cpu::xcr0(),
            cpu::wanted_xcr0()
        );
    }
}
