//! Guest memory: `KVM_SET_USER_MEMORY_REGION` and `KVM_GET_DIRTY_LOG`.

/// [`kvm_userspace_memory_region::flags`]: track writes for
/// `KVM_GET_DIRTY_LOG`.
pub const KVM_MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
/// [`kvm_userspace_memory_region::flags`]: guest writes exit as MMIO
/// (`KVM_CAP_READONLY_MEM`).
pub const KVM_MEM_READONLY: u32 = 1 << 1;
/// [`kvm_userspace_memory_region::flags`]: backed by guest_memfd (only with
/// `KVM_SET_USER_MEMORY_REGION2`, which Mojito does not offer).
pub const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;

/// A memory slot (`KVM_SET_USER_MEMORY_REGION`). `memory_size` 0 deletes the
/// slot.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_userspace_memory_region {
    pub slot: u32,
    pub flags: u32,
    pub guest_phys_addr: u64,
    /// In bytes.
    pub memory_size: u64,
    /// Start of the backing memory: a control-domain guest-physical address
    /// in Mojito (DESIGN.md D3), a user virtual address in Linux.
    pub userspace_addr: u64,
}

assert_layout!(struct kvm_userspace_memory_region, size 32, align 8, {
    slot: 0, flags: 4, guest_phys_addr: 8, memory_size: 16, userspace_addr: 24,
});

/// The `KVM_GET_DIRTY_LOG` argument.
///
/// In `kvm.h` the last field is a union of a `void *dirty_bitmap` and a
/// `__u64 padding2`; here it is the control-domain guest-physical address of
/// the bitmap (one bit per page of the slot, rounded up to 64 bits).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_dirty_log {
    pub slot: u32,
    pub padding1: u32,
    pub dirty_bitmap: u64,
}

assert_layout!(struct kvm_dirty_log, size 16, align 8, { slot: 0, padding1: 4, dirty_bitmap: 8 });
