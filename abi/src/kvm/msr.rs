//! Model-specific registers: `KVM_GET_MSRS`/`KVM_SET_MSRS`,
//! `KVM_GET_MSR_INDEX_LIST` and `KVM_X86_SET_MSR_FILTER`.

/// One MSR and its value.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_msr_entry {
    pub index: u32,
    pub reserved: u32,
    pub data: u64,
}

assert_layout!(struct kvm_msr_entry, size 16, align 8, { index: 0, reserved: 4, data: 8 });

/// Header of the `KVM_GET_MSRS`/`KVM_SET_MSRS` argument: `nmsrs`
/// [`kvm_msr_entry`] structures follow it in memory (`entries`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_msrs {
    pub nmsrs: u32,
    pub pad: u32,
    pub entries: [kvm_msr_entry; 0],
}

assert_layout!(struct kvm_msrs, size 8, align 8, { nmsrs: 0, pad: 4, entries: 8 });

/// Header of the `KVM_GET_MSR_INDEX_LIST` argument: room for `nmsrs` `u32`
/// MSR indices follows it (`indices`). On return `nmsrs` holds the number of
/// indices KVM has (and `-E2BIG` if they did not fit).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_msr_list {
    pub nmsrs: u32,
    pub indices: [u32; 0],
}

assert_layout!(struct kvm_msr_list, size 4, align 4, { nmsrs: 0, indices: 4 });

/// Maximum number of ranges in a [`kvm_msr_filter`].
pub const KVM_MSR_FILTER_MAX_RANGES: u32 = 16;
/// Maximum size in bytes of one range's bitmap.
pub const KVM_MSR_FILTER_MAX_BITMAP_SIZE: u32 = 0x600;
/// [`kvm_msr_filter_range::flags`]: the range filters RDMSR.
pub const KVM_MSR_FILTER_READ: u32 = 1 << 0;
/// [`kvm_msr_filter_range::flags`]: the range filters WRMSR.
pub const KVM_MSR_FILTER_WRITE: u32 = 1 << 1;
/// [`kvm_msr_filter::flags`]: MSRs outside every range are allowed.
pub const KVM_MSR_FILTER_DEFAULT_ALLOW: u32 = 0;
/// [`kvm_msr_filter::flags`]: MSRs outside every range are denied.
pub const KVM_MSR_FILTER_DEFAULT_DENY: u32 = 1 << 0;

/// One range of an MSR filter: `nmsrs` MSRs from `base`, one bit each in
/// `bitmap` (1 = allowed).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_msr_filter_range {
    pub flags: u32,
    pub nmsrs: u32,
    pub base: u32,
    /// Implicit in C (alignment of `bitmap`).
    pub pad: u32,
    /// Control-domain guest-physical address of the bitmap (a `__u8 *` in
    /// `kvm.h`).
    pub bitmap: u64,
}

assert_layout!(struct kvm_msr_filter_range, size 24, align 8, {
    flags: 0, nmsrs: 4, base: 8, pad: 12, bitmap: 16,
});

/// The `KVM_X86_SET_MSR_FILTER` argument.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_msr_filter {
    pub flags: u32,
    /// Implicit in C (alignment of `ranges`).
    pub pad: u32,
    pub ranges: [kvm_msr_filter_range; KVM_MSR_FILTER_MAX_RANGES as usize],
}

assert_layout!(struct kvm_msr_filter, size 392, align 8, { flags: 0, pad: 4, ranges: 8 });
