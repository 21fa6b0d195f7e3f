//! Extended processor state (x87/SSE/AVX, SDM Vol. 1 ch. 13): the host
//! enables XSAVE for itself, and each vCPU owns an XSAVE area into which its
//! state is saved when another vCPU takes this CPU (DESIGN.md D2).
//!
//! The hypervisor is built soft-float and never touches this state itself,
//! so a guest's registers may stay live in the CPU across its exits; only a
//! switch to another vCPU saves and restores them (lazy switching).
//!
//! XCR0 is switched too. Saving and restoring always uses the widest XCR0
//! any guest may enable (`GUEST_XCR0_MAX` ∩ the host), so a component one
//! guest disabled can never carry another guest's values.

/// XCR0 bits (SDM Vol. 1 13.3).
pub mod xcr0 {
    pub const X87: u64 = 1 << 0;
    pub const SSE: u64 = 1 << 1;
    pub const AVX: u64 = 1 << 2;
    pub const OPMASK: u64 = 1 << 5;
    pub const ZMM_HI256: u64 = 1 << 6;
    pub const HI16_ZMM: u64 = 1 << 7;
    pub const AVX512: u64 = OPMASK | ZMM_HI256 | HI16_ZMM;
}

/// Components a guest may enable: x87, SSE, AVX and AVX-512. MPX, PKRU and
/// AMX are not offered (their CPUID bits are hidden).
pub const GUEST_XCR0_MAX: u64 = xcr0::X87 | xcr0::SSE | xcr0::AVX | xcr0::AVX512;

/// Checks a guest's XSETBV value against the architectural rules (SDM Vol.
/// 1 13.3) and what is offered (`allowed`).
pub fn xcr0_valid(value: u64, allowed: u64) -> bool {
    value & !allowed == 0
        && value & xcr0::X87 != 0
        && (value & xcr0::AVX == 0 || value & xcr0::SSE != 0)
        && (value & xcr0::AVX512 == 0
            || (value & xcr0::AVX512 == xcr0::AVX512 && value & xcr0::AVX != 0))
}

/// The legacy FXSAVE image's default control words: FCW 0x37f, MXCSR 0x1f80
/// (the state after FNINIT / reset of SSE).
pub const FCW_DEFAULT: u16 = 0x37f;
pub const MXCSR_DEFAULT: u32 = 0x1f80;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xcr0_rules() {
        let all = GUEST_XCR0_MAX;
        assert!(xcr0_valid(xcr0::X87, all));
        assert!(xcr0_valid(xcr0::X87 | xcr0::SSE, all));
        assert!(xcr0_valid(xcr0::X87 | xcr0::SSE | xcr0::AVX, all));
        assert!(xcr0_valid(all, all));
        assert!(!xcr0_valid(0, all), "x87 must be set");
        assert!(!xcr0_valid(xcr0::SSE, all));
        assert!(!xcr0_valid(xcr0::X87 | xcr0::AVX, all), "AVX needs SSE");
        assert!(
            !xcr0_valid(xcr0::X87 | xcr0::SSE | xcr0::OPMASK | xcr0::AVX, all),
            "AVX-512 is all or none"
        );
        assert!(
            !xcr0_valid(xcr0::X87 | xcr0::SSE | xcr0::AVX512, all),
            "AVX-512 needs AVX"
        );
        assert!(
            !xcr0_valid(xcr0::X87 | (1 << 9), all),
            "PKRU is not offered"
        );
        assert!(!xcr0_valid(
            xcr0::X87 | xcr0::SSE | xcr0::AVX,
            xcr0::X87 | xcr0::SSE
        ));
    }
}
