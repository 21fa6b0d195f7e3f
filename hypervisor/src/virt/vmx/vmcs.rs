//! VMCS field encodings (SDM Vol. 3D Appendix B) and the instructions that
//! read and write the current VMCS.

use core::arch::asm;

/// A VMCS field. The discriminant is the field's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
#[allow(dead_code)]
pub enum Field {
    // 16-bit control and guest/host state (B.1).
    Vpid = 0x0000,
    GuestEsSelector = 0x0800,
    GuestCsSelector = 0x0802,
    GuestSsSelector = 0x0804,
    GuestDsSelector = 0x0806,
    GuestFsSelector = 0x0808,
    GuestGsSelector = 0x080a,
    GuestLdtrSelector = 0x080c,
    GuestTrSelector = 0x080e,
    HostEsSelector = 0x0c00,
    HostCsSelector = 0x0c02,
    HostSsSelector = 0x0c04,
    HostDsSelector = 0x0c06,
    HostFsSelector = 0x0c08,
    HostGsSelector = 0x0c0a,
    HostTrSelector = 0x0c0c,
    // 64-bit fields (B.2).
    IoBitmapA = 0x2000,
    IoBitmapB = 0x2002,
    MsrBitmap = 0x2004,
    TscOffset = 0x2010,
    EptPointer = 0x201a,
    GuestPhysicalAddress = 0x2400,
    VmcsLinkPointer = 0x2800,
    GuestDebugctl = 0x2802,
    GuestPat = 0x2804,
    GuestEfer = 0x2806,
    GuestPdpte0 = 0x280a,
    GuestPdpte1 = 0x280c,
    GuestPdpte2 = 0x280e,
    GuestPdpte3 = 0x2810,
    HostPat = 0x2c00,
    HostEfer = 0x2c02,
    // 32-bit fields (B.3).
    PinControls = 0x4000,
    ProcControls = 0x4002,
    ExceptionBitmap = 0x4004,
    PageFaultErrorMask = 0x4006,
    PageFaultErrorMatch = 0x4008,
    Cr3TargetCount = 0x400a,
    ExitControls = 0x400c,
    ExitMsrStoreCount = 0x400e,
    ExitMsrLoadCount = 0x4010,
    EntryControls = 0x4012,
    EntryMsrLoadCount = 0x4014,
    EntryInterruptionInfo = 0x4016,
    EntryExceptionErrorCode = 0x4018,
    EntryInstructionLength = 0x401a,
    TprThreshold = 0x401c,
    ProcControls2 = 0x401e,
    InstructionError = 0x4400,
    ExitReason = 0x4402,
    ExitInterruptionInfo = 0x4404,
    ExitInterruptionErrorCode = 0x4406,
    IdtVectoringInfo = 0x4408,
    IdtVectoringErrorCode = 0x440a,
    ExitInstructionLength = 0x440c,
    ExitInstructionInfo = 0x440e,
    GuestEsLimit = 0x4800,
    GuestCsLimit = 0x4802,
    GuestSsLimit = 0x4804,
    GuestDsLimit = 0x4806,
    GuestFsLimit = 0x4808,
    GuestGsLimit = 0x480a,
    GuestLdtrLimit = 0x480c,
    GuestTrLimit = 0x480e,
    GuestGdtrLimit = 0x4810,
    GuestIdtrLimit = 0x4812,
    GuestEsAr = 0x4814,
    GuestCsAr = 0x4816,
    GuestSsAr = 0x4818,
    GuestDsAr = 0x481a,
    GuestFsAr = 0x481c,
    GuestGsAr = 0x481e,
    GuestLdtrAr = 0x4820,
    GuestTrAr = 0x4822,
    GuestInterruptibility = 0x4824,
    GuestActivityState = 0x4826,
    GuestSysenterCs = 0x482a,
    PreemptionTimerValue = 0x482e,
    HostSysenterCs = 0x4c00,
    // Natural-width fields (B.4).
    Cr0GuestHostMask = 0x6000,
    Cr4GuestHostMask = 0x6002,
    Cr0ReadShadow = 0x6004,
    Cr4ReadShadow = 0x6006,
    ExitQualification = 0x6400,
    GuestLinearAddress = 0x640a,
    GuestCr0 = 0x6800,
    GuestCr3 = 0x6802,
    GuestCr4 = 0x6804,
    GuestEsBase = 0x6806,
    GuestCsBase = 0x6808,
    GuestSsBase = 0x680a,
    GuestDsBase = 0x680c,
    GuestFsBase = 0x680e,
    GuestGsBase = 0x6810,
    GuestLdtrBase = 0x6812,
    GuestTrBase = 0x6814,
    GuestGdtrBase = 0x6816,
    GuestIdtrBase = 0x6818,
    GuestDr7 = 0x681a,
    GuestRsp = 0x681c,
    GuestRip = 0x681e,
    GuestRflags = 0x6820,
    GuestPendingDebug = 0x6822,
    GuestSysenterEsp = 0x6824,
    GuestSysenterEip = 0x6826,
    HostCr0 = 0x6c00,
    HostCr3 = 0x6c02,
    HostCr4 = 0x6c04,
    HostFsBase = 0x6c06,
    HostGsBase = 0x6c08,
    HostTrBase = 0x6c0a,
    HostGdtrBase = 0x6c0c,
    HostIdtrBase = 0x6c0e,
    HostSysenterEsp = 0x6c10,
    HostSysenterEip = 0x6c12,
    HostRsp = 0x6c14,
    HostRip = 0x6c16,
}

/// Reads a field of the current VMCS.
///
/// # Safety
/// VMX must be on and a VMCS current on this CPU.
#[inline]
pub unsafe fn read(field: Field) -> u64 {
    let v: u64;
    // SAFETY: guaranteed by the caller; every `Field` is a valid encoding,
    // so VMREAD cannot fail for a supported field.
    unsafe { asm!("vmread {}, {}", out(reg) v, in(reg) field as u64, options(nostack)) };
    v
}

/// Writes a field of the current VMCS; returns false if VMWRITE failed (a
/// field this CPU does not support).
///
/// # Safety
/// VMX must be on and a VMCS current on this CPU.
#[inline]
pub unsafe fn write(field: Field, value: u64) -> bool {
    let ok: u8;
    // SAFETY: guaranteed by the caller. VMWRITE signals failure in CF/ZF.
    unsafe {
        asm!("vmwrite {}, {}", "setna {}", in(reg) field as u64, in(reg) value, out(reg_byte) ok,
             options(nostack))
    };
    ok == 0
}

/// Field widths are encoded in bits 14:13 (SDM Vol. 3D B): 0 = 16-bit,
/// 1 = 64-bit, 2 = 32-bit, 3 = natural width.
pub const fn width_bits(field: Field) -> u32 {
    ((field as u32) >> 13) & 3
}

/// VMX controls (SDM Vol. 3C 25.6 "VM-Execution Control Fields", 25.7, 25.8).
pub mod ctl {
    pub mod pin {
        pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
        pub const NMI_EXITING: u32 = 1 << 3;
        pub const VIRTUAL_NMIS: u32 = 1 << 5;
        pub const PREEMPTION_TIMER: u32 = 1 << 6;
    }
    pub mod proc {
        pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
        pub const USE_TSC_OFFSETTING: u32 = 1 << 3;
        pub const HLT_EXITING: u32 = 1 << 7;
        pub const MWAIT_EXITING: u32 = 1 << 10;
        pub const RDPMC_EXITING: u32 = 1 << 11;
        pub const CR3_LOAD_EXITING: u32 = 1 << 15;
        pub const CR3_STORE_EXITING: u32 = 1 << 16;
        pub const CR8_LOAD_EXITING: u32 = 1 << 19;
        pub const CR8_STORE_EXITING: u32 = 1 << 20;
        /// SDM Vol. 3C 25.6.2: exit when virtual-NMI blocking ends.
        pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
        pub const MOV_DR_EXITING: u32 = 1 << 23;
        pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
        pub const USE_IO_BITMAPS: u32 = 1 << 25;
        pub const USE_MSR_BITMAPS: u32 = 1 << 28;
        pub const MONITOR_EXITING: u32 = 1 << 29;
        pub const ACTIVATE_SECONDARY: u32 = 1 << 31;
    }
    pub mod proc2 {
        pub const ENABLE_EPT: u32 = 1 << 1;
        pub const ENABLE_RDTSCP: u32 = 1 << 3;
        pub const ENABLE_VPID: u32 = 1 << 5;
        pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
        pub const ENABLE_INVPCID: u32 = 1 << 12;
        pub const ENABLE_XSAVES: u32 = 1 << 20;
    }
    pub mod exit {
        pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
        pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
        pub const SAVE_PAT: u32 = 1 << 18;
        pub const LOAD_PAT: u32 = 1 << 19;
        pub const SAVE_EFER: u32 = 1 << 20;
        pub const LOAD_EFER: u32 = 1 << 21;
    }
    pub mod entry {
        pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
        pub const IA32E_MODE_GUEST: u32 = 1 << 9;
        pub const LOAD_PAT: u32 = 1 << 14;
        pub const LOAD_EFER: u32 = 1 << 15;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_widths_match_their_names() {
        assert_eq!(width_bits(Field::Vpid), 0);
        assert_eq!(width_bits(Field::GuestCsSelector), 0);
        assert_eq!(width_bits(Field::EptPointer), 1);
        assert_eq!(width_bits(Field::GuestEfer), 1);
        assert_eq!(width_bits(Field::ProcControls), 2);
        assert_eq!(width_bits(Field::GuestCsAr), 2);
        assert_eq!(width_bits(Field::GuestRip), 3);
        assert_eq!(width_bits(Field::HostRsp), 3);
        // Bit 0 is the access type (full/high): all ours are "full".
        for f in [
            Field::EptPointer,
            Field::GuestPat,
            Field::HostEfer,
            Field::GuestPdpte3,
        ] {
            assert_eq!(f as u32 & 1, 0);
        }
    }
}
