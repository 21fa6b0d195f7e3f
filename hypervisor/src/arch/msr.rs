//! Model-specific register numbers (Intel SDM Vol. 4 "Model-Specific
//! Registers"; AMD APM Vol. 2 Appendix A).

pub const IA32_TSC: u32 = 0x10;
pub const IA32_PLATFORM_ID: u32 = 0x17;
pub const IA32_APIC_BASE: u32 = 0x1b;
/// SDM Vol. 3C 24.1 "Enabling and entering VMX operation".
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
pub const IA32_SYSENTER_CS: u32 = 0x174;
pub const IA32_SYSENTER_ESP: u32 = 0x175;
pub const IA32_SYSENTER_EIP: u32 = 0x176;
pub const IA32_MCG_CAP: u32 = 0x179;
pub const IA32_MCG_STATUS: u32 = 0x17a;
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
pub const IA32_DEBUGCTL: u32 = 0x1d9;
pub const IA32_MTRRCAP: u32 = 0xfe;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;

/// SDM Vol. 3D Appendix A: the VMX capability MSRs.
pub const IA32_VMX_BASIC: u32 = 0x480;
pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
pub const IA32_VMX_MISC: u32 = 0x485;
pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
pub const IA32_VMX_VMFUNC: u32 = 0x491;
/// Last of the VMX capability MSRs a guest must never read.
pub const IA32_VMX_LAST: u32 = 0x492;

pub const IA32_EFER: u32 = 0xc000_0080;
pub const IA32_STAR: u32 = 0xc000_0081;
pub const IA32_LSTAR: u32 = 0xc000_0082;
pub const IA32_CSTAR: u32 = 0xc000_0083;
pub const IA32_FMASK: u32 = 0xc000_0084;
pub const IA32_FS_BASE: u32 = 0xc000_0100;
pub const IA32_GS_BASE: u32 = 0xc000_0101;
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const IA32_TSC_AUX: u32 = 0xc000_0103;

/// AMD APM Vol. 2 15.30.1 "VM_CR MSR".
pub const AMD_VM_CR: u32 = 0xc001_0114;
/// AMD's Northbridge Configuration MSR (BKDG for Family 10h–16h,
/// MSRC001_001F NB_CFG): Linux reads it and sets bit 46 (EnableCf8ExtCfg)
/// on AMD CPUs. KVM reads it as 0 and ignores writes, and so does Mojito.
pub const AMD_NB_CFG: u32 = 0xc001_001f;
/// AMD APM Vol. 2 15.30.4 "VM_HSAVE_PA MSR".
pub const AMD_VM_HSAVE_PA: u32 = 0xc001_0117;

/// EFER bits (SDM Vol. 3A 2.2.1; APM Vol. 2 3.1.7).
pub mod efer {
    pub const SCE: u64 = 1 << 0;
    pub const LME: u64 = 1 << 8;
    pub const LMA: u64 = 1 << 10;
    pub const NXE: u64 = 1 << 11;
    pub const SVME: u64 = 1 << 12;
    pub const FFXSR: u64 = 1 << 14;
}
