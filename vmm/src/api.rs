//! The KVM-API trait the VMM is written against (DESIGN.md D5).
//!
//! Three traits mirror KVM's three kinds of file descriptor, one method per
//! ioctl the VMM uses, so that a back end maps each method to one request:
//!
//! | trait | KVM handle | methods (ioctl) |
//! |---|---|---|
//! | [`System`] | `/dev/kvm` | `api_version` (`KVM_GET_API_VERSION`), `check_extension` (`KVM_CHECK_EXTENSION`), `vcpu_mmap_size` (`KVM_GET_VCPU_MMAP_SIZE`), `supported_cpuid` (`KVM_GET_SUPPORTED_CPUID`), `create_vm` (`KVM_CREATE_VM`); `refuses_mojito_msrs` (no request: what the hypervisor behind the back end does by itself) |
//! | [`Vm`] | VM fd | `alloc_memory` (the back end's counterpart of `mmap`), `set_user_memory_region` / `delete_user_memory_region` (`KVM_SET_USER_MEMORY_REGION`), `memory`, `create_vcpu` (`KVM_CREATE_VCPU`), `check_extension` (`KVM_CHECK_EXTENSION` on the VM), `enable_cap` (`KVM_ENABLE_CAP`), `set_msr_filter` (`KVM_X86_SET_MSR_FILTER`), `signal_msi` (`KVM_SIGNAL_MSI`), `set_gsi_routing` (`KVM_SET_GSI_ROUTING`) |
//! | [`Vcpu`] | vCPU fd | `run` (`KVM_RUN`), `run_page` (the `mmap` of the vCPU fd), `kicker`, `get_regs`/`set_regs`, `get_sregs`/`set_sregs`, `set_cpuid2`, `get_msrs`/`set_msrs`, `get_fpu`/`set_fpu`, `get_xsave`/`set_xsave` (`KVM_GET_*`/`KVM_SET_*`) |
//!
//! Two back ends implement them: `crate::host` over Linux `/dev/kvm`
//! (`kvm-ioctls`, feature `std`), and the control domain's, which issues
//! one Mojito hypercall per method (DESIGN.md D1: handle, request code,
//! argument GPA).
//!
//! # Conventions
//!
//! - Structures are `abi::kvm`'s, byte-identical to `linux/kvm.h`.
//! - Errors are positive errno values ([`Errno`], `abi::kvm::errno`), where
//!   the ioctl would fail with them. A back end that lacks an optional
//!   request (FPU, XSAVE, MSR filter) answers `EINVAL`, as KVM answers an
//!   unknown vCPU request.
//! - The traits are generic (associated types, static dispatch), not object
//!   safe: a VMM is built for one back end.
//!
//! # Guest memory
//!
//! The back end allocates guest RAM ([`Vm::alloc_memory`]: anonymous `mmap`
//! on Linux, control-domain pages under Mojito) and the VM owns it once it
//! is mapped: [`Vm::set_user_memory_region`] takes the allocation, and
//! [`Vm::delete_user_memory_region`] gives it back only after the slot is
//! gone. So memory a guest can reach is never freed under it. The VMM reads
//! and writes RAM through [`GuestRam`], a view that copies bytes in and out
//! and never hands out a Rust reference into memory the guest may change.
//!
//! # The run page
//!
//! [`Vcpu::run`] returns the vCPU's [`RunPage`]: `kvm_run` followed by the
//! port-I/O data page, exactly as KVM's `mmap` of a vCPU fd lays them out
//! (`io.data_offset` counts from the start of `kvm_run`). What an exit
//! means is decoded once, for both back ends, by [`crate::exit::Exit::decode`].
//! `RUN` failing with `EINTR` is KVM's `KVM_EXIT_INTR` (also after
//! `immediate_exit`, DESIGN.md D2): the run loop treats both the same.

use core::marker::PhantomData;
use core::ptr::NonNull;

use abi::kvm::{
    kvm_cpuid_entry2, kvm_enable_cap, kvm_fpu, kvm_irq_routing_msi, kvm_msi, kvm_msr_entry,
    kvm_regs, kvm_run, kvm_sregs, kvm_xsave,
};
use alloc::vec::Vec;

/// A positive errno value (`abi::kvm::errno`): what the ioctl failed with.
pub type Errno = i32;

/// The result of a request.
pub type Result<T> = core::result::Result<T, Errno>;

/// The system handle (`/dev/kvm`).
pub trait System {
    /// A VM made by [`System::create_vm`].
    type Vm: Vm;

    /// `KVM_GET_API_VERSION`: 12.
    fn api_version(&self) -> Result<u32>;
    /// `KVM_CHECK_EXTENSION`: 0 when `cap` is not offered, else a positive
    /// value whose meaning depends on `cap`.
    fn check_extension(&self, cap: u32) -> Result<u32>;
    /// `KVM_GET_VCPU_MMAP_SIZE`: the size of a vCPU's run area.
    fn vcpu_mmap_size(&self) -> Result<usize>;
    /// `KVM_GET_SUPPORTED_CPUID`: every leaf the back end can offer a guest.
    fn supported_cpuid(&self) -> Result<Vec<kvm_cpuid_entry2>>;
    /// `KVM_CREATE_VM` with the default machine type.
    fn create_vm(&self) -> Result<Self::Vm>;
    /// Whether the hypervisor behind this back end refuses the MSRs of
    /// [`crate::policy::MOJITO_DENIED_MSRS`] by itself (#GP), so that
    /// [`crate::VmConfig::deny_mojito_msrs`] needs no MSR filter: Mojito's
    /// MSR policy does; KVM does not (the default). Not a KVM request.
    fn refuses_mojito_msrs(&self) -> bool {
        false
    }
    /// The clock the device models follow (not a KVM request: a VMM on
    /// Linux reads `CLOCK_MONOTONIC` and `CLOCK_REALTIME`).
    fn clock(&self) -> alloc::sync::Arc<dyn crate::clock::Clock>;
}

/// A VM handle.
pub trait Vm {
    /// A block of memory the back end allocated for guest RAM.
    type Memory: GuestMemory;
    /// A vCPU made by [`Vm::create_vcpu`].
    type Vcpu: Vcpu;

    /// Allocates `size` bytes (a multiple of 4 KiB) of zeroed memory that
    /// can back a memory slot.
    fn alloc_memory(&mut self, size: u64) -> Result<Self::Memory>;
    /// `KVM_SET_USER_MEMORY_REGION`: maps `memory` at `guest_phys_addr` as
    /// slot `slot` with `flags` (`KVM_MEM_*`), replacing nothing: the slot
    /// must be free. The VM keeps `memory` until the slot is deleted.
    fn set_user_memory_region(
        &mut self,
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
        memory: Self::Memory,
    ) -> Result<()>;
    /// `KVM_SET_USER_MEMORY_REGION` with `memory_size` 0: deletes slot
    /// `slot` and returns its memory. `ENOENT` when there is no such slot.
    fn delete_user_memory_region(&mut self, slot: u32) -> Result<Self::Memory>;
    /// `KVM_SET_USER_MEMORY_REGION` on an existing slot: the same memory at
    /// `guest_phys_addr` with `flags` (KVM allows a move and turning
    /// `KVM_MEM_LOG_DIRTY_PAGES` on or off). `ENOENT` when there is no such
    /// slot.
    fn change_user_memory_region(
        &mut self,
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
    ) -> Result<()>;
    /// `KVM_GET_DIRTY_LOG`: the pages of slot `slot` written since the last
    /// call, one bit per 4 KiB page in 64-bit words.
    fn get_dirty_log(&mut self, slot: u32) -> Result<Vec<u64>>;
    /// The memory of slot `slot`, if it exists.
    fn memory(&self, slot: u32) -> Option<GuestRam<'_>>;
    /// `KVM_CREATE_VCPU` with vCPU id `id`.
    fn create_vcpu(&mut self, id: u32) -> Result<Self::Vcpu>;
    /// `KVM_CHECK_EXTENSION` on the VM handle (`KVM_CAP_CHECK_EXTENSION_VM`).
    fn check_extension(&self, cap: u32) -> Result<u32>;
    /// `KVM_ENABLE_CAP` on the VM handle.
    fn enable_cap(&mut self, cap: &kvm_enable_cap) -> Result<()>;
    /// `KVM_SIGNAL_MSI`: sends one message-signalled interrupt to the
    /// in-kernel local APICs (split irqchip). Returns KVM's value: > 0
    /// delivered (to that many APICs), 0 blocked (e.g. the guest masked
    /// it). `EINVAL` without an in-kernel irqchip, as KVM answers.
    fn signal_msi(&mut self, msi: &kvm_msi) -> Result<u32>;
    /// `KVM_SET_GSI_ROUTING` with MSI routes only (`KVM_IRQ_ROUTING_MSI`):
    /// each `(gsi, msi, flags)` routes GSI `gsi` to the message `msi`, with
    /// the entry's `flags` (0, or `KVM_MSI_VALID_DEVID`). Replaces the
    /// whole table. With the split irqchip, the level-triggered routes of
    /// the reserved IOAPIC pins (GSIs below `KVM_CAP_SPLIT_IRQCHIP`'s
    /// `args[0]`) make the addressed vCPUs' EOIs of their vectors exit
    /// with `KVM_EXIT_IOAPIC_EOI`. `EINVAL` without an in-kernel irqchip,
    /// for more than 4096 routes or a GSI given two, as KVM answers.
    fn set_gsi_routing(&mut self, routes: &[(u32, kvm_irq_routing_msi, u32)]) -> Result<()>;
    /// `KVM_X86_SET_MSR_FILTER`: `flags` is `KVM_MSR_FILTER_DEFAULT_*`; at
    /// most `KVM_MSR_FILTER_MAX_RANGES` ranges. Back ends without MSR
    /// filtering answer `EINVAL`.
    fn set_msr_filter(&mut self, flags: u32, ranges: &[MsrFilterRange<'_>]) -> Result<()> {
        let _ = (flags, ranges);
        Err(abi::kvm::errno::EINVAL)
    }
    /// `KVM_XEN_HVM_CONFIG`: on a write of `GPA | n` to `msr`, the kernel
    /// copies page `n` of `blob_64` (64-bit mode) or `blob_32` into the
    /// guest. The blobs are whole pages and stay alive with the VM. Back
    /// ends without `KVM_CAP_XEN_HVM` answer `EINVAL`.
    fn xen_hvm_config(&mut self, msr: u32, blob_32: &[u8], blob_64: &[u8]) -> Result<()> {
        let _ = (msr, blob_32, blob_64);
        Err(abi::kvm::errno::EINVAL)
    }
    /// `KVM_REGISTER_COALESCED_MMIO` with `pio` = 1: OUTs to ports
    /// `port..port + len` go to the VM's ring without an exit, for
    /// [`Vm::take_coalesced`] (`KVM_CAP_COALESCED_PIO`). Back ends without
    /// it answer `EINVAL`.
    fn register_coalesced_pio(&mut self, port: u16, len: u32) -> Result<()> {
        let _ = (port, len);
        Err(abi::kvm::errno::EINVAL)
    }
    /// `KVM_UNREGISTER_COALESCED_MMIO` with `pio` = 1: removes the zones
    /// that hold `port..port + len`.
    fn unregister_coalesced_pio(&mut self, port: u16, len: u32) -> Result<()> {
        let _ = (port, len);
        Err(abi::kvm::errno::EINVAL)
    }
    /// Empties the VM's coalesced ring into `out`, oldest first. The VMM
    /// calls it after every `KVM_RUN` before it handles the exit, so that
    /// the writes reach the devices in the order the guest made them.
    fn take_coalesced(&mut self, out: &mut Vec<CoalescedWrite>) {
        let _ = out;
    }
}

/// A port write the ring held (`kvm_coalesced_mmio` with `pio` = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoalescedWrite {
    pub port: u16,
    /// 1, 2 or 4.
    pub len: u8,
    pub data: [u8; 4],
}

impl CoalescedWrite {
    /// The bytes written.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

/// Empties a `kvm_coalesced_mmio_ring` page (KVM's, or the one Mojito
/// fills): its port writes go to `out`, oldest first, and `first` moves
/// up to `last`. The producer's page is not trusted: with a `last` out of
/// range nothing is read, a `first` out of range drops what the ring held,
/// and entries that are not port writes of 1, 2 or 4 bytes are skipped.
pub fn drain_coalesced_ring(ring: &GuestRam<'_>, out: &mut Vec<CoalescedWrite>) {
    use abi::kvm::{KVM_COALESCED_MMIO_MAX as MAX, kvm_coalesced_mmio, kvm_coalesced_mmio_ring};
    let header = core::mem::size_of::<kvm_coalesced_mmio_ring>() as u64;
    let entry = core::mem::size_of::<kvm_coalesced_mmio>() as u64;
    let (Ok(mut first), Ok(last)) = (ring.read_u32(0), ring.read_u32(4)) else {
        return;
    };
    if last >= MAX {
        return;
    }
    if first >= MAX {
        first = last;
    }
    // The entries are read after the index that published them.
    core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
    while first != last {
        let at = header + u64::from(first) * entry;
        let mut e = [0u8; 24];
        if ring.read(at, &mut e).is_err() {
            break;
        }
        let word = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let (addr, len, pio) = (
            u64::from(word(0)) | (u64::from(word(4)) << 32),
            word(8),
            word(12),
        );
        if pio == 1 && matches!(len, 1 | 2 | 4) && addr <= u64::from(u16::MAX) {
            out.push(CoalescedWrite {
                port: addr as u16,
                len: len as u8,
                data: [e[16], e[17], e[18], e[19]],
            });
        }
        first = (first + 1) % MAX;
    }
    let _ = ring.write_u32(0, first);
}

/// One range of a `KVM_X86_SET_MSR_FILTER` request (`kvm_msr_filter_range`
/// with its bitmap as a slice; the back end turns it into the address its
/// ABI wants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrFilterRange<'a> {
    /// `KVM_MSR_FILTER_READ` and/or `KVM_MSR_FILTER_WRITE`.
    pub flags: u32,
    /// First MSR index of the range.
    pub base: u32,
    /// MSRs in the range; `bitmap` holds at least `nmsrs` bits.
    pub nmsrs: u32,
    /// Bit `i` set: access to `base + i` allowed; clear: denied (#GP).
    pub bitmap: &'a [u8],
}

/// A vCPU handle.
pub trait Vcpu {
    /// Makes a `RUN` in progress (or the next one) return `EINTR` from
    /// another thread or CPU.
    type Kicker: Kick;

    /// `KVM_RUN`: runs the vCPU until an exit the VMM must handle, and
    /// returns the run page describing it. `Err(EINTR)` is `KVM_EXIT_INTR`.
    fn run(&mut self) -> Result<RunPage<'_>>;
    /// The run page, e.g. to set `immediate_exit` or
    /// `request_interrupt_window` before [`Vcpu::run`].
    fn run_page(&mut self) -> RunPage<'_>;
    /// A handle that can interrupt [`Vcpu::run`] from elsewhere.
    fn kicker(&self) -> Self::Kicker;
    /// `KVM_GET_REGS`.
    fn get_regs(&self) -> Result<kvm_regs>;
    /// `KVM_SET_REGS`.
    fn set_regs(&mut self, regs: &kvm_regs) -> Result<()>;
    /// `KVM_GET_SREGS`.
    fn get_sregs(&self) -> Result<kvm_sregs>;
    /// `KVM_SET_SREGS`.
    fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<()>;
    /// `KVM_SET_CPUID2`: the guest's whole CPUID table.
    fn set_cpuid2(&mut self, entries: &[kvm_cpuid_entry2]) -> Result<()>;
    /// `KVM_INTERRUPT` (userspace irqchip): queues external interrupt
    /// `vector` (replacing one still queued), delivered when the guest can
    /// take it; `EINVAL` for a vector ≥ 256.
    fn interrupt(&mut self, vector: u32) -> Result<()>;
    /// `KVM_SET_GUEST_DEBUG` with `control` (`KVM_GUESTDBG_*`) and, for
    /// `KVM_GUESTDBG_USE_HW_BP`, `debugreg` (DR0–DR3, -, -, DR6, DR7).
    fn set_guest_debug(&mut self, control: u32, debugreg: [u64; 8]) -> Result<()>;
    /// `KVM_GET_MSRS`: fills `data` of each entry in turn; returns how many
    /// were read (it stops at the first MSR it cannot read).
    fn get_msrs(&self, entries: &mut [kvm_msr_entry]) -> Result<usize>;
    /// `KVM_SET_MSRS`: returns how many entries were written.
    fn set_msrs(&mut self, entries: &[kvm_msr_entry]) -> Result<usize>;
    /// `KVM_GET_FPU` (optional).
    fn get_fpu(&self) -> Result<kvm_fpu> {
        Err(abi::kvm::errno::EINVAL)
    }
    /// `KVM_SET_FPU` (optional).
    fn set_fpu(&mut self, fpu: &kvm_fpu) -> Result<()> {
        let _ = fpu;
        Err(abi::kvm::errno::EINVAL)
    }
    /// `KVM_GET_XSAVE` (optional).
    fn get_xsave(&self) -> Result<kvm_xsave> {
        Err(abi::kvm::errno::EINVAL)
    }
    /// `KVM_SET_XSAVE` (optional).
    fn set_xsave(&mut self, xsave: &kvm_xsave) -> Result<()> {
        let _ = xsave;
        Err(abi::kvm::errno::EINVAL)
    }
}

/// Interrupts a vCPU's `RUN` from another thread (host) or CPU (Mojito).
pub trait Kick: Clone + Send + Sync {
    /// Makes the `RUN` in progress, or the next one, return `EINTR`
    /// (`KVM_EXIT_INTR`) soon. Consumed by the `RUN` it ends.
    fn kick(&self);
}

/// A block of memory a back end allocated for guest RAM.
pub trait GuestMemory {
    /// The memory as the VMM reads and writes it.
    fn ram(&self) -> GuestRam<'_>;
}

/// A view of guest RAM (one memory slot's backing memory). Every access
/// copies: no Rust reference into guest memory is ever made, because the
/// guest may change it at any time. Offsets are from the start of the
/// block; an access outside it fails with `Err(OutOfRange)` and touches
/// nothing.
#[derive(Clone, Copy, Debug)]
pub struct GuestRam<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _memory: PhantomData<&'a [u8]>,
}

/// An access outside a [`GuestRam`] block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

impl<'a> GuestRam<'a> {
    /// A view of `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must be memory this process may read and write for
    /// all of `'a`, and nothing may hold a Rust reference into it while the
    /// view is used (the guest writing it concurrently is fine: the view
    /// only copies bytes in and out through raw pointers).
    pub const unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Self {
        Self {
            ptr,
            len,
            _memory: PhantomData,
        }
    }

    /// A view of a byte slice, for tests and for building images in
    /// ordinary memory.
    pub fn from_slice(bytes: &'a mut [u8]) -> Self {
        let len = bytes.len();
        // SAFETY: the exclusive borrow of `bytes` lasts for 'a, so the
        // memory stays valid and nothing else references it meanwhile.
        unsafe { Self::from_raw(NonNull::from(bytes).cast(), len) }
    }

    /// Size in bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the block is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pointer to `offset..offset + n`, if that lies inside the block.
    fn at(&self, offset: u64, n: usize) -> core::result::Result<*mut u8, OutOfRange> {
        let start = usize::try_from(offset).map_err(|_| OutOfRange)?;
        let end = start.checked_add(n).ok_or(OutOfRange)?;
        if end > self.len {
            return Err(OutOfRange);
        }
        // SAFETY: start <= len, so the result stays inside the block (or
        // one past its end when n == 0).
        Ok(unsafe { self.ptr.as_ptr().add(start) })
    }

    /// Copies guest bytes at `offset` into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> core::result::Result<(), OutOfRange> {
        let src = self.at(offset, buf.len())?;
        // SAFETY: `at` checked the range lies in the block, which
        // `from_raw`'s contract makes readable; `buf` is a distinct Rust
        // buffer, so the two cannot overlap.
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `bytes` into guest memory at `offset`.
    pub fn write(&self, offset: u64, bytes: &[u8]) -> core::result::Result<(), OutOfRange> {
        let dst = self.at(offset, bytes.len())?;
        // SAFETY: as in `read`, and the block is writable.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `value`.
    pub fn fill(&self, offset: u64, len: usize, value: u8) -> core::result::Result<(), OutOfRange> {
        let dst = self.at(offset, len)?;
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(dst, value, len) };
        Ok(())
    }

    /// Reads a little-endian `u16`.
    pub fn read_u16(&self, offset: u64) -> core::result::Result<u16, OutOfRange> {
        let mut b = [0; 2];
        self.read(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Writes a little-endian `u16`.
    pub fn write_u16(&self, offset: u64, value: u16) -> core::result::Result<(), OutOfRange> {
        self.write(offset, &value.to_le_bytes())
    }

    /// Reads a little-endian `u32`.
    pub fn read_u32(&self, offset: u64) -> core::result::Result<u32, OutOfRange> {
        let mut b = [0; 4];
        self.read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes a little-endian `u32`.
    pub fn write_u32(&self, offset: u64, value: u32) -> core::result::Result<(), OutOfRange> {
        self.write(offset, &value.to_le_bytes())
    }

    /// Reads a little-endian `u64`.
    pub fn read_u64(&self, offset: u64) -> core::result::Result<u64, OutOfRange> {
        let mut b = [0; 8];
        self.read(offset, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u64`.
    pub fn write_u64(&self, offset: u64, value: u64) -> core::result::Result<(), OutOfRange> {
        self.write(offset, &value.to_le_bytes())
    }
}

// SAFETY: a view is a pointer and a length into memory that `from_raw`'s
// contract keeps valid for 'a; every access copies through raw pointers,
// so sharing or sending the view cannot create a data race on Rust-owned
// data (the bytes themselves are shared with the guest by design).
unsafe impl Send for GuestRam<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for GuestRam<'_> {}

/// A vCPU's run area: `kvm_run` at offset 0, then the port-I/O data page
/// (`KVM_PIO_PAGE_OFFSET`), `len` bytes in all. Borrowed from the vCPU, so
/// it cannot be used while the vCPU runs.
#[derive(Debug)]
pub struct RunPage<'a> {
    ptr: NonNull<kvm_run>,
    len: usize,
    _vcpu: PhantomData<&'a mut kvm_run>,
}

impl<'a> RunPage<'a> {
    /// A view of the run area at `ptr`, `len` bytes long; `None` if the
    /// area is too small for `kvm_run` or misaligned for it.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must be readable and writable for all of `'a`, and
    /// nothing else (the vCPU included: it must not be running) may access
    /// it meanwhile.
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Option<Self> {
        if len < size_of::<kvm_run>() || !ptr.cast::<kvm_run>().is_aligned() {
            return None;
        }
        Some(Self {
            ptr: ptr.cast(),
            len,
            _vcpu: PhantomData,
        })
    }

    /// `kvm_run`.
    pub fn run(&self) -> &kvm_run {
        // SAFETY: `from_raw` checked size and alignment, its contract makes
        // the memory valid and unshared for 'a, and every bit pattern is a
        // valid `kvm_run` (integers, arrays and unions of them).
        unsafe { self.ptr.as_ref() }
    }

    /// `kvm_run`, to change.
    pub fn run_mut(&mut self) -> &mut kvm_run {
        // SAFETY: as in `run`; `&mut self` makes the borrow exclusive.
        unsafe { self.ptr.as_mut() }
    }

    /// The bytes `offset..offset + n` of the run area, if they lie inside
    /// it and do not overlap `kvm_run`'s fixed part.
    pub fn data_mut(&mut self, offset: u64, n: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(n)?;
        if start < size_of::<kvm_run>() || end > self.len {
            return None;
        }
        // SAFETY: start..end lies inside the area `from_raw` vouches for and
        // outside the `kvm_run` that `run`/`run_mut` borrow; `&mut self`
        // makes the borrow exclusive.
        Some(unsafe {
            core::slice::from_raw_parts_mut(self.ptr.cast::<u8>().as_ptr().add(start), n)
        })
    }

    /// Gives up the view for `kvm_run` and the rest of the area after it
    /// (which starts at byte `size_of::<kvm_run>()` of the area), both
    /// borrowed for all of `'a`.
    pub fn into_parts(self) -> (&'a mut kvm_run, &'a mut [u8]) {
        let head = size_of::<kvm_run>();
        // SAFETY: `from_raw` checked len >= head, and its contract gives
        // this view exclusive use of the area for 'a; `self` is consumed,
        // so these two disjoint borrows are the only ones left.
        unsafe {
            let rest = core::slice::from_raw_parts_mut(
                self.ptr.cast::<u8>().as_ptr().add(head),
                self.len - head,
            );
            (&mut *self.ptr.as_ptr(), rest)
        }
    }

    /// Size of the area in bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Never true: a run area holds at least `kvm_run`.
    pub const fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ram_checks_every_access() {
        let mut buf = [0u8; 16];
        let ram = GuestRam::from_slice(&mut buf);
        ram.write_u32(12, 0xdead_beef).unwrap();
        assert_eq!(ram.read_u32(12), Ok(0xdead_beef));
        assert_eq!(ram.write_u32(13, 1), Err(OutOfRange));
        assert_eq!(ram.read_u64(u64::MAX), Err(OutOfRange));
        assert_eq!(ram.fill(0, 17, 0), Err(OutOfRange));
        ram.fill(0, 4, 0xaa).unwrap();
        let mut out = [0; 4];
        ram.read(0, &mut out).unwrap();
        assert_eq!(out, [0xaa; 4]);
        assert_eq!(ram.write(16, &[]), Ok(()));
        assert_eq!(ram.len(), 16);
    }

    #[test]
    fn run_page_bounds() {
        let mut area = alloc::vec![0u64; 1024]; // 8 KiB, 8-aligned
        let ptr = NonNull::new(area.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `area` outlives the view and nothing else touches it.
        let mut page = unsafe { RunPage::from_raw(ptr, 8192) }.unwrap();
        assert!(page.data_mut(4096, 4096).is_some());
        assert!(page.data_mut(4096, 4097).is_none());
        assert!(page.data_mut(0, 1).is_none(), "overlaps kvm_run");
        page.run_mut().exit_reason = 5;
        assert_eq!(page.run().exit_reason, 5);
        // SAFETY: as above.
        assert!(unsafe { RunPage::from_raw(ptr, 100) }.is_none());
        // SAFETY: as above; a misaligned pointer is refused before use.
        let odd = unsafe { NonNull::new_unchecked(ptr.as_ptr().add(1)) };
        // SAFETY: refused before any access.
        assert!(unsafe { RunPage::from_raw(odd, 4096) }.is_none());
    }
}
