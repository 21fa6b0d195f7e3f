//! VMX capabilities: what the CPU supports, read once from CPUID and the
//! capability MSRs (SDM Vol. 3D Appendix A), and how wanted controls are
//! adjusted against them.

/// Combines the controls Mojito needs (`required`) and would like
/// (`optional`) with a capability MSR (bits 31:0 = allowed 0-settings: a 1
/// there forces the control on; bits 63:32 = allowed 1-settings). Returns the
/// control value, or the required bits the CPU lacks.
pub fn adjust(required: u32, optional: u32, cap: u64) -> Result<u32, u32> {
    let must_be_one = cap as u32;
    let may_be_one = (cap >> 32) as u32;
    let value = ((required | optional) & may_be_one) | must_be_one;
    let missing = required & !value;
    if missing == 0 {
        Ok(value)
    } else {
        Err(missing)
    }
}

/// IA32_VMX_BASIC (SDM Vol. 3D A.1).
pub mod basic {
    /// Bits 30:0: the VMCS revision identifier.
    pub const REVISION_MASK: u64 = 0x7fff_ffff;
    /// Bit 55: the TRUE_* control MSRs exist.
    pub const TRUE_CONTROLS: u64 = 1 << 55;
    /// Bit 54: VM exits report INS/OUTS information.
    pub const INS_OUTS_INFO: u64 = 1 << 54;
}

/// IA32_VMX_EPT_VPID_CAP (SDM Vol. 3D A.10).
pub mod ept_vpid {
    pub const PAGE_WALK_4: u64 = 1 << 6;
    pub const MEMORY_TYPE_WB: u64 = 1 << 14;
    pub const LARGE_PAGE_2M: u64 = 1 << 16;
    pub const LARGE_PAGE_1G: u64 = 1 << 17;
    pub const INVEPT: u64 = 1 << 20;
    pub const ACCESSED_DIRTY: u64 = 1 << 21;
    pub const INVEPT_SINGLE: u64 = 1 << 25;
    pub const INVEPT_ALL: u64 = 1 << 26;
    pub const INVVPID: u64 = 1 << 32;
    pub const INVVPID_SINGLE: u64 = 1 << 41;
    pub const INVVPID_ALL: u64 = 1 << 42;
}

/// IA32_FEATURE_CONTROL (SDM Vol. 3C 24.7).
pub mod feature_control {
    pub const LOCK: u64 = 1 << 0;
    pub const VMX_OUTSIDE_SMX: u64 = 1 << 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjust_forces_and_filters() {
        // Bits 1,2,4 must be one; bits 0..=7 may be one.
        let cap = (0xffu64 << 32) | 0x16;
        assert_eq!(adjust(0x01, 0x100, cap), Ok(0x17));
        // Bit 8 is required but not allowed.
        assert_eq!(adjust(0x101, 0, cap), Err(0x100));
        // Optional bits the CPU lacks are dropped silently.
        assert_eq!(adjust(0, 0xff00, cap), Ok(0x16));
    }

    #[test]
    fn adjust_with_bochs_skylake_true_pinbased() {
        // A plausible TRUE_PINBASED value: must-be-one none, may-be-one 0x7f.
        let cap = 0x0000_007f_0000_0016u64;
        assert_eq!(adjust(0x9, 0, cap), Ok(0x1f));
    }
}
