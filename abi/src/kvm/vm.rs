//! VM- and vCPU-wide configuration: `KVM_ENABLE_CAP` and
//! `KVM_XEN_HVM_CONFIG`.

/// The `KVM_ENABLE_CAP` argument (on a VM or a vCPU handle).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct kvm_enable_cap {
    /// A `KVM_CAP_*` number.
    pub cap: u32,
    /// Must be 0.
    pub flags: u32,
    /// Meaning depends on `cap`.
    pub args: [u64; 4],
    pub pad: [u8; 64],
}

impl Default for kvm_enable_cap {
    fn default() -> Self {
        Self {
            cap: 0,
            flags: 0,
            args: [0; 4],
            pad: [0; 64],
        }
    }
}

assert_layout!(struct kvm_enable_cap, size 104, align 8, { cap: 0, flags: 4, args: 8, pad: 40 });

/// [`kvm_xen_hvm_config::flags`]: KVM writes the hypercall page itself on
/// a write to `msr`.
pub const KVM_XEN_HVM_CONFIG_HYPERCALL_MSR: u32 = 1 << 0;
/// [`kvm_xen_hvm_config::flags`]: Xen hypercalls exit as `KVM_EXIT_XEN`.
pub const KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL: u32 = 1 << 1;

/// The `KVM_XEN_HVM_CONFIG` argument: the MSR whose write asks for the Xen
/// hypercall page, and where the page's contents come from.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_xen_hvm_config {
    pub flags: u32,
    pub msr: u32,
    /// Control-domain guest-physical address of the 32-bit blob.
    pub blob_addr_32: u64,
    /// Control-domain guest-physical address of the 64-bit blob.
    pub blob_addr_64: u64,
    /// In pages.
    pub blob_size_32: u8,
    /// In pages.
    pub blob_size_64: u8,
    pub pad2: [u8; 30],
}

assert_layout!(struct kvm_xen_hvm_config, size 56, align 8, {
    flags: 0, msr: 4, blob_addr_32: 8, blob_addr_64: 16, blob_size_32: 24,
    blob_size_64: 25, pad2: 26,
});
