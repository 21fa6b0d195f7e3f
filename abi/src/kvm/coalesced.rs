//! Coalesced port I/O: `KVM_REGISTER_COALESCED_MMIO` /
//! `KVM_UNREGISTER_COALESCED_MMIO` with `pio` = 1, and the ring the
//! hypervisor appends such writes to instead of exiting (Linux
//! `virt/kvm/coalesced_mmio.c`; `Documentation/virt/kvm/api.rst` 4.116).

/// The `KVM_(UN)REGISTER_COALESCED_MMIO` argument: writes to `size` bytes
/// (ports when `pio` = 1) from `addr` go to the ring instead of exiting.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_coalesced_mmio_zone {
    pub addr: u64,
    pub size: u32,
    /// 1: a port zone; 0: an MMIO zone. (`pad` in older headers: a union.)
    pub pio: u32,
}

assert_layout!(struct kvm_coalesced_mmio_zone, size 16, align 8, {
    addr: 0, size: 8, pio: 12,
});

/// One coalesced write in the ring: `len` bytes of `data` to `phys_addr`
/// (a port number when `pio` = 1).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_coalesced_mmio {
    pub phys_addr: u64,
    pub len: u32,
    pub pio: u32,
    pub data: [u8; 8],
}

assert_layout!(struct kvm_coalesced_mmio, size 24, align 8, {
    phys_addr: 0, len: 8, pio: 12, data: 16,
});

/// The ring's header: the consumer (the VMM) owns `first`, the producer
/// (the kernel, here the hypervisor) `last`; entries `first..last`
/// (modulo [`KVM_COALESCED_MMIO_MAX`]) are unread. Full when
/// `(last + 1) % MAX == first`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_coalesced_mmio_ring {
    pub first: u32,
    pub last: u32,
    pub coalesced_mmio: [kvm_coalesced_mmio; 0],
}

assert_layout!(struct kvm_coalesced_mmio_ring, size 8, align 8, {
    first: 0, last: 4, coalesced_mmio: 8,
});

/// Entries in the one-page ring (KVM's `KVM_COALESCED_MMIO_MAX`: what fits
/// after the header in 4 KiB).
pub const KVM_COALESCED_MMIO_MAX: u32 = ((4096 - core::mem::size_of::<kvm_coalesced_mmio_ring>())
    / core::mem::size_of::<kvm_coalesced_mmio>()) as u32;

const _: () = assert!(KVM_COALESCED_MMIO_MAX == 170);
