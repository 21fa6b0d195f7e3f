//! x87/SSE and extended state: `KVM_GET_FPU`, `KVM_GET_XSAVE`,
//! `KVM_GET_XCRS` and their `SET` twins.

/// Legacy FPU and SSE state (`KVM_GET_FPU`/`KVM_SET_FPU`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_fpu {
    /// ST0-ST7 / MM0-MM7, 80 bits each in 16-byte slots.
    pub fpr: [[u8; 16]; 8],
    pub fcw: u16,
    pub fsw: u16,
    /// Abridged tag word, as FXSAVE stores it.
    pub ftwx: u8,
    pub pad1: u8,
    pub last_opcode: u16,
    pub last_ip: u64,
    pub last_dp: u64,
    pub xmm: [[u8; 16]; 16],
    pub mxcsr: u32,
    pub pad2: u32,
}

assert_layout!(struct kvm_fpu, size 416, align 8, {
    fpr: 0, fcw: 128, fsw: 130, ftwx: 132, pad1: 133, last_opcode: 134,
    last_ip: 136, last_dp: 144, xmm: 152, mxcsr: 408, pad2: 412,
});

/// An XSAVE image in the standard (non-compacted) format
/// (`KVM_GET_XSAVE`/`KVM_SET_XSAVE`).
///
/// Only the fixed 4096-byte region is part of this ABI. KVM's `extra`
/// flexible array, used by `KVM_GET_XSAVE2` when `KVM_CAP_XSAVE2` reports
/// a larger size (AMX tile data), is named by the zero-length `extra` but
/// Mojito does not offer `KVM_GET_XSAVE2`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct kvm_xsave {
    pub region: [u32; 1024],
    pub extra: [u32; 0],
}

impl Default for kvm_xsave {
    fn default() -> Self {
        Self {
            region: [0; 1024],
            extra: [],
        }
    }
}

assert_layout!(struct kvm_xsave, size 4096, align 4, { region: 0, extra: 4096 });

/// Maximum number of entries in [`kvm_xcrs::xcrs`].
pub const KVM_MAX_XCRS: u32 = 16;

/// One extended control register (XCR0 is the only one today).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_xcr {
    pub xcr: u32,
    pub reserved: u32,
    pub value: u64,
}

assert_layout!(struct kvm_xcr, size 16, align 8, { xcr: 0, reserved: 4, value: 8 });

/// Extended control registers (`KVM_GET_XCRS`/`KVM_SET_XCRS`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_xcrs {
    /// Entries used in `xcrs`.
    pub nr_xcrs: u32,
    pub flags: u32,
    pub xcrs: [kvm_xcr; KVM_MAX_XCRS as usize],
    pub padding: [u64; 16],
}

assert_layout!(struct kvm_xcrs, size 392, align 8, {
    nr_xcrs: 0, flags: 4, xcrs: 8, padding: 264,
});
