//! CPU identification, model-specific, control and debug registers.
//!
//! Reads are safe functions: at CPL 0 they cannot break memory safety, and a
//! read that faults ends in the IDT's "unexpected exception" report. Writes
//! are `unsafe fn`: the caller vouches that the value keeps the guest's own
//! paging, segments and stack working.

use core::arch::asm;

/// EFER (Intel SDM Vol. 3A §2.2.1 "Extended Feature Enable Register";
/// AMD APM Vol. 2 §3.1.7).
pub const MSR_EFER: u32 = 0xc000_0080;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const EFER_SVME: u64 = 1 << 12;

/// SYSCALL/SYSRET and SWAPGS MSRs (SDM Vol. 4 Table 2-2; APM Vol. 2 §6.1.1).
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SFMASK: u32 = 0xc000_0084;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const MSR_TSC_AUX: u32 = 0xc000_0103;

/// IA32_PAT and its power-up value (SDM Vol. 3A "Page Attribute Table
/// (PAT)", "PAT Initialization").
pub const MSR_PAT: u32 = 0x277;
pub const PAT_POWER_ON: u64 = 0x0007_0406_0007_0406;

/// IA32_MTRR_DEF_TYPE (SDM Vol. 3A "IA32_MTRR_DEF_TYPE MSR").
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
/// IA32_FEATURE_CONTROL (SDM Vol. 3C "Enabling and Entering VMX Operation")
/// and IA32_VMX_BASIC (SDM Vol. 3D §A.1 "Basic VMX Information").
pub const MSR_FEATURE_CONTROL: u32 = 0x3a;
pub const MSR_VMX_BASIC: u32 = 0x480;
/// VM_HSAVE_PA, SVM's host save area (AMD APM Vol. 2 §15.30.4).
pub const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;

/// CR0 and CR4 bits (SDM Vol. 3A §2.5 "Control Registers").
pub const CR0_PE: u64 = 1 << 0;
pub const CR0_MP: u64 = 1 << 1;
pub const CR0_EM: u64 = 1 << 2;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_OSFXSR: u64 = 1 << 9;
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
pub const CR4_OSXSAVE: u64 = 1 << 18;

/// XCR0 state components (SDM Vol. 1 §13.3 "Enabling the XSAVE Feature Set
/// and XSAVE-Enabled Features").
pub const XCR0_X87: u64 = 1 << 0;
pub const XCR0_SSE: u64 = 1 << 1;
pub const XCR0_AVX: u64 = 1 << 2;

/// The four registers CPUID returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// CPUID with `leaf` in EAX and `subleaf` in ECX.
pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let (eax, ebx, ecx, edx);
    // SAFETY: CPUID only writes the four registers. LLVM reserves RBX, so
    // it is saved in a scratch register around the instruction.
    unsafe {
        asm!(
            "mov {save:r}, rbx",
            "cpuid",
            "xchg {save:r}, rbx",
            save = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        );
    }
    Cpuid { eax, ebx, ecx, edx }
}

/// Whether CPUID leaf 1 ECX has `bit` set (XSAVE = 26, AVX = 28, ...).
pub fn has_leaf1_ecx(bit: u32) -> bool {
    cpuid(1, 0).ecx & (1 << bit) != 0
}

/// Highest extended leaf (CPUID 0x8000_0000 EAX).
pub fn max_extended_leaf() -> u32 {
    cpuid(0x8000_0000, 0).eax
}

/// Whether RDTSCP and IA32_TSC_AUX exist (CPUID 0x8000_0001 EDX bit 27).
pub fn has_rdtscp() -> bool {
    max_extended_leaf() >= 0x8000_0001 && cpuid(0x8000_0001, 0).edx & (1 << 27) != 0
}

/// RDMSR.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR writes only EDX:EAX.
    unsafe {
        asm!(
            "rdmsr",
            in("ecx") msr,
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags),
        )
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// WRMSR.
///
/// # Safety
/// The MSR must not be one that breaks the running code (EFER.LME, PAT
/// entries in use, ...).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and value.
    unsafe {
        asm!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack, preserves_flags),
        );
    }
}

/// RDTSC, ordered after everything before it and before everything after
/// it by LFENCE (SDM Vol. 2B, RDTSC: "If software requires RDTSC to be
/// executed only after all previous instructions have executed ...").
pub fn rdtsc_fenced() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: LFENCE and RDTSC only write EDX:EAX.
    unsafe {
        asm!(
            "lfence",
            "rdtsc",
            "lfence",
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags),
        )
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// XGETBV of XCR0. Needs CR4.OSXSAVE, else #UD.
pub fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV only writes EDX:EAX.
    unsafe {
        asm!(
            "xgetbv",
            in("ecx") 0,
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags),
        )
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// XSETBV of XCR0.
///
/// # Safety
/// Changes which state XSAVE manages; no code here uses XSAVE areas, so any
/// value the CPU accepts is fine. Needs CR4.OSXSAVE.
pub unsafe fn set_xcr0(value: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe {
        asm!(
            "xsetbv",
            in("ecx") 0,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nomem, nostack, preserves_flags),
        )
    };
}

macro_rules! control_register {
    ($read:ident, $write:ident, $reg:literal) => {
        #[doc = concat!("Reads ", $reg, ".")]
        pub fn $read() -> u64 {
            let value: u64;
            // SAFETY: reading a control or debug register at CPL 0 has no side effect.
            unsafe {
                asm!(
                    concat!("mov {}, ", $reg),
                    out(reg) value,
                    options(nomem, nostack, preserves_flags),
                )
            };
            value
        }

        #[doc = concat!("Writes ", $reg, ".")]
        ///
        /// # Safety
        /// The value must keep the guest's paging, protection and
        /// instruction set working (see the SDM for each register).
        pub unsafe fn $write(value: u64) {
            // SAFETY: the caller vouches for the value.
            unsafe {
                asm!(
                    concat!("mov ", $reg, ", {}"),
                    in(reg) value,
                    options(nostack, preserves_flags),
                )
            };
        }
    };
}

control_register!(cr0, set_cr0, "cr0");
control_register!(cr2, set_cr2, "cr2");
control_register!(cr4, set_cr4, "cr4");
control_register!(dr0, set_dr0, "dr0");
control_register!(dr1, set_dr1, "dr1");
control_register!(dr2, set_dr2, "dr2");
control_register!(dr3, set_dr3, "dr3");

/// Lets SSE instructions run: CR0.EM clear, CR0.MP set, CR4.OSFXSR and
/// OSXMMEXCPT set (SDM Vol. 3A "Initialization of the SSE Extensions").
/// Without these, every SSE instruction raises #UD.
pub fn enable_sse() {
    // SAFETY: these bits only enable instructions the compiler never emits
    // on this soft-float target; paging and protection are untouched.
    unsafe {
        set_cr0(cr0() & !CR0_EM | CR0_MP);
        set_cr4(cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT);
    }
}

/// Sets CR4.OSXSAVE if CPUID offers XSAVE (leaf 1 ECX bit 26), so that
/// XGETBV and XSETBV can run. Returns whether it did.
pub fn enable_xsave() -> bool {
    if !has_leaf1_ecx(26) {
        return false;
    }
    // SAFETY: OSXSAVE only enables XSAVE, XGETBV, XSETBV and VEX encodings.
    unsafe { set_cr4(cr4() | CR4_OSXSAVE) };
    true
}

/// The XCR0 the guests ask for: x87 and SSE, plus AVX where CPUID offers
/// it both as an instruction set (leaf 1 ECX bit 28) and as a state
/// component (leaf 0xD sub-leaf 0 EAX, the XCR0 bits the CPU supports).
pub fn wanted_xcr0() -> u64 {
    let base = XCR0_X87 | XCR0_SSE;
    if !has_leaf1_ecx(28) || cpuid(0, 0).eax < 0xd {
        return base;
    }
    base | (u64::from(cpuid(0xd, 0).eax) & XCR0_AVX)
}
