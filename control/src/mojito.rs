//! The VMM's Mojito back end (DESIGN.md D5): the `vmm::api` traits, one
//! hypercall per method (`hv::call`: handle, KVM request code, argument),
//! as `vmm::host` maps them to `/dev/kvm` ioctls.
//!
//! - Handles play the part of file descriptors: dropping a vCPU or a VM
//!   closes its handle (`MOJITO_CLOSE`, the counterpart of `close(2)`).
//! - Pointers in arguments are control-domain guest-physical addresses,
//!   which are our virtual addresses (the hypervisor maps our RAM 1:1), so a
//!   Rust reference's address is the argument.
//! - Guest RAM and run pages come from the heap, page-aligned (D3: guest
//!   memory belongs to the control domain). They go back to the heap only
//!   after the handle that lets the hypervisor reach them is closed; if
//!   closing fails they are kept for good rather than reused under a guest.
//! - What Mojito does not serve gets the error the trait documents, never a
//!   pretended success. Mojito refuses the virtualization MSRs by its own
//!   policy, which [`System::refuses_mojito_msrs`] tells the VMM (so no MSR
//!   filter is needed for them).
//! - Every answer is checked before it is used: a bad one is an error, never
//!   a panic.

use alloc::alloc::{alloc_zeroed, dealloc};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::kvm::errno::{E2BIG, EEXIST, EINVAL, ENOENT, ENOMEM};
use abi::kvm::mojito::{
    MOJITO_CLOSE, MOJITO_SET_COALESCED_RING, MOJITO_SET_RUN_PAGES, mojito_coalesced_ring,
    mojito_run_pages,
};
use abi::kvm::*;
use vmm::api::{self, GuestMemory, GuestRam, Kick, RunPage, System, Vcpu, Vm};

use crate::hv;
use crate::println;

/// Most CPUID entries a table may have (`KVM_SET_CPUID2`'s limit, docs/api.md
/// §4.12; KVM's `KVM_MAX_CPUID_ENTRIES`).
const MAX_CPUID_ENTRIES: usize = 256;
/// Most MSRs in one `KVM_GET_MSRS`/`KVM_SET_MSRS` (docs/api.md §4.14).
const MAX_MSRS: usize = 256;
/// Most routes in one `KVM_SET_GSI_ROUTING` (docs/api.md §4.32; KVM's
/// `KVM_MAX_IRQ_ROUTES`).
const MAX_IRQ_ROUTES: usize = 4096;
/// The largest run area this back end accepts from
/// `KVM_GET_VCPU_MMAP_SIZE` (Mojito's is 2 pages).
const MAX_RUN_AREA: usize = 16 * 4096;
const PAGE: usize = 4096;
const LARGE_PAGE: usize = 2 << 20;

fn small(r: Result<u64, i32>) -> api::Result<u32> {
    u32::try_from(r?).map_err(|_| EINVAL)
}

fn zero(r: Result<u64, i32>) -> api::Result<()> {
    match r? {
        0 => Ok(()),
        _ => Err(EINVAL),
    }
}

/// `MOJITO_CLOSE` on `handle`; says so on COM1 if it fails.
fn close(handle: u64, what: &str) -> bool {
    match hv::call(MOJITO_CLOSE, handle, 0) {
        Ok(_) => true,
        Err(e) => {
            println!("control: closing {what} handle {handle} failed: -{e}; its memory is kept");
            false
        }
    }
}

/// Zeroed, page-aligned memory from the heap, freed on drop.
struct Pages {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the pages are plain memory owned by this value; the pointer is
// only used to build views that copy through raw pointers, to pass the
// address to the hypervisor, and to free the block once.
unsafe impl Send for Pages {}
// SAFETY: as for `Send`.
unsafe impl Sync for Pages {}

impl Pages {
    /// `len` bytes (a non-zero multiple of 4 KiB) aligned to `align`.
    fn new(len: usize, align: usize) -> api::Result<Self> {
        if len == 0 || !len.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        let layout = Layout::from_size_align(len, align).map_err(|_| EINVAL)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(ENOMEM)?;
        Ok(Self { ptr, layout })
    }

    /// The control-domain guest-physical address (= our address).
    fn gpa(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with `layout` and is freed
        // once, here. Owners keep `Pages` alive (or forget them) while the
        // hypervisor may still reach the memory.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// The system handle (an open `/dev/kvm`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mojito;

/// `KVM_GET_SUPPORTED_CPUID`'s and `KVM_SET_CPUID2`'s argument: the header
/// and room for the most entries a table may have.
#[repr(C)]
struct CpuidBuf {
    header: kvm_cpuid2,
    entries: [kvm_cpuid_entry2; MAX_CPUID_ENTRIES],
}

impl CpuidBuf {
    fn new() -> Box<Self> {
        Box::new(Self {
            header: kvm_cpuid2::default(),
            entries: [kvm_cpuid_entry2::default(); MAX_CPUID_ENTRIES],
        })
    }
}

impl System for Mojito {
    type Vm = MojitoVm;

    fn clock(&self) -> alloc::sync::Arc<dyn vmm::clock::Clock> {
        fn rdtsc() -> u64 {
            // SAFETY: RDTSC only reads the time-stamp counter.
            unsafe { core::arch::x86_64::_rdtsc() }
        }
        let info = hv::info().unwrap_or_default();
        alloc::sync::Arc::new(vmm::clock::CycleClock {
            // Without a calibrated TSC (no PIT at boot) the device models'
            // time runs at a nominal 1 GHz.
            khz: if info.tsc_khz == 0 {
                1_000_000
            } else {
                info.tsc_khz
            },
            wall_at: (info.rtc_unix_s != 0)
                .then(|| (info.rtc_tsc, info.rtc_unix_s * vmm::clock::NS_PER_SEC)),
            read: rdtsc,
        })
    }

    fn api_version(&self) -> api::Result<u32> {
        small(hv::system(KVM_GET_API_VERSION, 0))
    }

    fn check_extension(&self, cap: u32) -> api::Result<u32> {
        small(hv::system(KVM_CHECK_EXTENSION, u64::from(cap)))
    }

    fn vcpu_mmap_size(&self) -> api::Result<usize> {
        usize::try_from(hv::system(KVM_GET_VCPU_MMAP_SIZE, 0)?).map_err(|_| EINVAL)
    }

    fn supported_cpuid(&self) -> api::Result<Vec<kvm_cpuid_entry2>> {
        let mut buf = CpuidBuf::new();
        buf.header.nent = MAX_CPUID_ENTRIES as u32;
        let arg = &mut *buf as *mut CpuidBuf as u64;
        zero(hv::system(KVM_GET_SUPPORTED_CPUID, arg))?;
        let n = usize::try_from(buf.header.nent).map_err(|_| EINVAL)?;
        buf.entries.get(..n).map(<[_]>::to_vec).ok_or(E2BIG)
    }

    fn create_vm(&self) -> api::Result<MojitoVm> {
        let handle = hv::system(KVM_CREATE_VM, 0)?;
        Ok(MojitoVm {
            handle,
            slots: BTreeMap::new(),
            ring: None,
        })
    }

    fn refuses_mojito_msrs(&self) -> bool {
        // The hypervisor's MSR policy: VM_CR, VM_HSAVE_PA and the VMX
        // capability MSRs raise #GP, IA32_FEATURE_CONTROL is locked with
        // VMX off (ARCHITECTURE.md, "Guests never touch virtualization
        // state").
        true
    }
}

/// Guest RAM: heap pages, 2 MiB-aligned where the size allows, so that the
/// hypervisor can map them with 2 MiB nested pages (docs/api.md §4.5).
pub struct MojitoMemory(Pages);

impl GuestMemory for MojitoMemory {
    fn ram(&self) -> GuestRam<'_> {
        // SAFETY: the pages are ours, readable and writable, and live as
        // long as `self`; nothing makes Rust references into them.
        unsafe { GuestRam::from_raw(self.0.ptr, self.0.len()) }
    }
}

/// A VM handle and the memory of its slots.
pub struct MojitoVm {
    handle: u64,
    slots: BTreeMap<u32, MojitoMemory>,
    /// The coalesced ring's page, given to the hypervisor with the first
    /// zone (`MOJITO_SET_COALESCED_RING`).
    ring: Option<Pages>,
}

impl MojitoVm {
    /// `KVM_(UN)REGISTER_COALESCED_MMIO` (`request`) of a port zone.
    fn port_zone(&self, request: u32, port: u16, len: u32) -> api::Result<()> {
        let zone = kvm_coalesced_mmio_zone {
            addr: u64::from(port),
            size: len,
            pio: 1,
        };
        let arg = &zone as *const kvm_coalesced_mmio_zone as u64;
        zero(hv::call(request, self.handle, arg))
    }

    fn set_region(&self, region: &kvm_userspace_memory_region) -> api::Result<()> {
        let arg = region as *const kvm_userspace_memory_region as u64;
        zero(hv::call(KVM_SET_USER_MEMORY_REGION, self.handle, arg))
    }
}

impl Drop for MojitoVm {
    fn drop(&mut self) {
        // Closing the VM unmaps its slots; only then may the heap have the
        // memory back.
        if !close(self.handle, "VM") {
            for (_, memory) in core::mem::take(&mut self.slots) {
                core::mem::forget(memory);
            }
            if let Some(ring) = self.ring.take() {
                core::mem::forget(ring);
            }
        }
    }
}

/// Slot `slot` of `memory` at `guest_phys_addr` with `flags`.
fn region(
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory: &MojitoMemory,
) -> kvm_userspace_memory_region {
    kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr,
        memory_size: memory.0.len() as u64,
        userspace_addr: memory.0.gpa(),
    }
}

impl Vm for MojitoVm {
    type Memory = MojitoMemory;
    type Vcpu = MojitoVcpu;

    fn alloc_memory(&mut self, size: u64) -> api::Result<MojitoMemory> {
        let len = usize::try_from(size).map_err(|_| EINVAL)?;
        let align = if len.is_multiple_of(LARGE_PAGE) {
            LARGE_PAGE
        } else {
            PAGE
        };
        Pages::new(len, align).map(MojitoMemory)
    }

    fn set_user_memory_region(
        &mut self,
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
        memory: MojitoMemory,
    ) -> api::Result<()> {
        if self.slots.contains_key(&slot) {
            return Err(EEXIST);
        }
        self.set_region(&region(slot, flags, guest_phys_addr, &memory))?;
        self.slots.insert(slot, memory);
        Ok(())
    }

    fn change_user_memory_region(
        &mut self,
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
    ) -> api::Result<()> {
        let memory = self.slots.get(&slot).ok_or(ENOENT)?;
        self.set_region(&region(slot, flags, guest_phys_addr, memory))
    }

    fn get_dirty_log(&mut self, slot: u32) -> api::Result<Vec<u64>> {
        let memory = self.slots.get(&slot).ok_or(ENOENT)?;
        let words = (memory.0.len() as u64).div_ceil(PAGE as u64 * 64) as usize;
        let mut bits: Vec<u64> = Vec::new();
        bits.try_reserve_exact(words).map_err(|_| ENOMEM)?;
        bits.resize(words, 0);
        // The heap is identity-mapped: the buffer's address is its
        // guest-physical address.
        let log = abi::kvm::kvm_dirty_log {
            slot,
            padding1: 0,
            dirty_bitmap: bits.as_mut_ptr() as u64,
        };
        zero(hv::call(
            abi::kvm::KVM_GET_DIRTY_LOG,
            self.handle,
            &log as *const _ as u64,
        ))?;
        Ok(bits)
    }

    fn delete_user_memory_region(&mut self, slot: u32) -> api::Result<MojitoMemory> {
        let memory = self.slots.get(&slot).ok_or(ENOENT)?;
        self.set_region(&kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: 0,
            userspace_addr: memory.0.gpa(),
        })?;
        self.slots.remove(&slot).ok_or(ENOENT)
    }

    fn memory(&self, slot: u32) -> Option<GuestRam<'_>> {
        self.slots.get(&slot).map(GuestMemory::ram)
    }

    fn create_vcpu(&mut self, id: u32) -> api::Result<MojitoVcpu> {
        let size = Mojito.vcpu_mmap_size()?;
        // The run area must hold kvm_run and be whole pages; a bigger one
        // than any Mojito has offered is refused rather than allocated.
        if size < size_of::<kvm_run>() || !size.is_multiple_of(PAGE) || size > MAX_RUN_AREA {
            return Err(EINVAL);
        }
        let run = Pages::new(size, PAGE)?;
        let handle = hv::call(KVM_CREATE_VCPU, self.handle, u64::from(id))?;
        let vcpu = MojitoVcpu {
            handle,
            run: Some(run),
            kick: Arc::new(AtomicBool::new(false)),
        };
        let area = vcpu.run.as_ref().ok_or(EINVAL)?;
        let pages = mojito_run_pages {
            count: (size / PAGE) as u32,
            gpa: area.gpa(),
            ..Default::default()
        };
        let arg = &pages as *const mojito_run_pages as u64;
        // On failure `vcpu` is dropped: its handle closed, its pages freed.
        zero(hv::call(MOJITO_SET_RUN_PAGES, handle, arg))?;
        Ok(vcpu)
    }

    fn check_extension(&self, cap: u32) -> api::Result<u32> {
        small(hv::call(KVM_CHECK_EXTENSION, self.handle, u64::from(cap)))
    }

    fn enable_cap(&mut self, cap: &kvm_enable_cap) -> api::Result<()> {
        let arg = cap as *const kvm_enable_cap as u64;
        zero(hv::call(KVM_ENABLE_CAP, self.handle, arg))
    }

    fn signal_msi(&mut self, msi: &kvm_msi) -> api::Result<u32> {
        let arg = msi as *const kvm_msi as u64;
        small(hv::call(KVM_SIGNAL_MSI, self.handle, arg))
    }

    fn register_coalesced_pio(&mut self, port: u16, len: u32) -> api::Result<()> {
        if self.ring.is_none() {
            // Zeroed: first = last = 0, empty.
            let page = Pages::new(PAGE, PAGE)?;
            let arg = mojito_coalesced_ring {
                gpa: page.gpa(),
                ..Default::default()
            };
            let arg = &arg as *const mojito_coalesced_ring as u64;
            // On failure the page goes back to the heap: no ring was set.
            zero(hv::call(MOJITO_SET_COALESCED_RING, self.handle, arg))?;
            self.ring = Some(page);
        }
        self.port_zone(KVM_REGISTER_COALESCED_MMIO, port, len)
    }

    fn unregister_coalesced_pio(&mut self, port: u16, len: u32) -> api::Result<()> {
        self.port_zone(KVM_UNREGISTER_COALESCED_MMIO, port, len)
    }

    fn take_coalesced(&mut self, out: &mut Vec<api::CoalescedWrite>) {
        if let Some(ring) = &self.ring {
            // SAFETY: the page is ours, readable and writable, and lives as
            // long as `self`; nothing makes Rust references into it (the
            // hypervisor writes it only inside this VM's RUN).
            let view = unsafe { GuestRam::from_raw(ring.ptr, ring.len()) };
            api::drain_coalesced_ring(&view, out);
        }
    }

    fn set_gsi_routing(&mut self, routes: &[(u32, kvm_irq_routing_msi, u32)]) -> api::Result<()> {
        if routes.len() > MAX_IRQ_ROUTES {
            return Err(EINVAL);
        }
        // `kvm_irq_routing` with its entries after it, as 64-bit words:
        // the header (nr, flags = 0) is one, each 48-byte entry six (gsi
        // and type, flags and pad, then `u.msi`: address_lo and
        // address_hi, data and devid; the rest of the union zero).
        let pair = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
        let mut buf: Vec<u64> = Vec::with_capacity(1 + 6 * routes.len());
        buf.push(routes.len() as u64);
        for &(gsi, msi, flags) in routes {
            buf.extend([
                pair(gsi, KVM_IRQ_ROUTING_MSI),
                pair(flags, 0),
                pair(msi.address_lo, msi.address_hi),
                pair(msi.data, msi.devid),
                0,
                0,
            ]);
        }
        zero(hv::call(
            KVM_SET_GSI_ROUTING,
            self.handle,
            buf.as_ptr() as u64,
        ))
    }

    fn set_msr_filter(
        &mut self,
        flags: u32,
        ranges: &[api::MsrFilterRange<'_>],
    ) -> api::Result<()> {
        if ranges.len() > abi::kvm::KVM_MSR_FILTER_MAX_RANGES as usize {
            return Err(EINVAL);
        }
        let mut filter = abi::kvm::kvm_msr_filter {
            flags,
            ..Default::default()
        };
        for (dst, r) in filter.ranges.iter_mut().zip(ranges) {
            // The hypervisor copies `nmsrs` bits rounded up to 64-bit words.
            if r.bitmap.len() < (r.nmsrs as usize).div_ceil(64) * 8 {
                return Err(EINVAL);
            }
            dst.flags = r.flags;
            dst.nmsrs = r.nmsrs;
            dst.base = r.base;
            // Our memory is identity-mapped: an address is a GPA.
            dst.bitmap = r.bitmap.as_ptr() as u64;
        }
        let arg = &filter as *const abi::kvm::kvm_msr_filter as u64;
        zero(hv::call(KVM_X86_SET_MSR_FILTER, self.handle, arg))
    }

    fn xen_hvm_config(&mut self, msr: u32, blob_32: &[u8], blob_64: &[u8]) -> api::Result<()> {
        let pages = |b: &[u8]| u8::try_from(b.len() / 4096).map_err(|_| EINVAL);
        let c = abi::kvm::kvm_xen_hvm_config {
            flags: 0,
            msr,
            blob_addr_32: blob_32.as_ptr() as u64,
            blob_addr_64: blob_64.as_ptr() as u64,
            blob_size_32: pages(blob_32)?,
            blob_size_64: pages(blob_64)?,
            pad2: [0; 30],
        };
        let arg = &c as *const abi::kvm::kvm_xen_hvm_config as u64;
        zero(hv::call(KVM_XEN_HVM_CONFIG, self.handle, arg))
    }
}

/// Makes the vCPU's next `KVM_RUN` return `EINTR` (through
/// `immediate_exit`). The control domain has one vCPU, so a kick never
/// meets a `RUN` in progress; kicking a guest on another CPU needs the
/// control domain's SMP (an IPI ends that CPU's `RUN`, DESIGN.md D2).
#[derive(Clone, Debug)]
pub struct MojitoKicker(Arc<AtomicBool>);

impl Kick for MojitoKicker {
    fn kick(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A vCPU handle and its run pages.
pub struct MojitoVcpu {
    handle: u64,
    /// Always `Some` until drop (an `Option` so a failed close can forget
    /// the pages).
    run: Option<Pages>,
    kick: Arc<AtomicBool>,
}

impl Drop for MojitoVcpu {
    fn drop(&mut self) {
        if !close(self.handle, "vCPU")
            && let Some(pages) = self.run.take()
        {
            core::mem::forget(pages);
        }
    }
}

impl MojitoVcpu {
    fn page(&mut self) -> Option<RunPage<'_>> {
        let area = self.run.as_ref()?;
        // SAFETY: the run pages are ours, page-aligned and at least
        // `kvm_run` long (checked in `create_vcpu`), and live as long as
        // `self`; the view borrows `self` mutably, so nothing else touches
        // them meanwhile and the vCPU cannot run.
        unsafe { RunPage::from_raw(area.ptr, area.len()) }
    }

    fn get<T: Default>(&self, request: u32) -> api::Result<T> {
        let mut out = T::default();
        zero(hv::call(request, self.handle, &mut out as *mut T as u64))?;
        Ok(out)
    }

    fn set<T>(&mut self, request: u32, arg: &T) -> api::Result<()> {
        zero(hv::call(request, self.handle, arg as *const T as u64))
    }

    /// `KVM_GET_MSRS`/`KVM_SET_MSRS`: `kvm_msrs` with `entries`, as 64-bit
    /// words (the header is one word, each entry two); returns how many
    /// were done and the entries as the hypervisor left them.
    fn msrs(&self, request: u32, entries: &[kvm_msr_entry]) -> api::Result<(usize, Vec<u64>)> {
        if entries.len() > MAX_MSRS {
            return Err(E2BIG);
        }
        let mut buf: Vec<u64> = Vec::with_capacity(1 + 2 * entries.len());
        buf.push(entries.len() as u64); // nmsrs, pad = 0
        for e in entries {
            buf.push(u64::from(e.index));
            buf.push(e.data);
        }
        let n = usize::try_from(hv::call(request, self.handle, buf.as_mut_ptr() as u64)?)
            .map_err(|_| EINVAL)?;
        if n > entries.len() {
            return Err(EINVAL);
        }
        Ok((n, buf))
    }
}

impl Vcpu for MojitoVcpu {
    type Kicker = MojitoKicker;

    fn run(&mut self) -> api::Result<RunPage<'_>> {
        let kicked = self.kick.swap(false, Ordering::SeqCst);
        if kicked && let Some(mut page) = self.page() {
            page.run_mut().immediate_exit = 1;
        }
        let result = hv::call(KVM_RUN, self.handle, 0);
        if kicked && let Some(mut page) = self.page() {
            page.run_mut().immediate_exit = 0;
        }
        result?;
        self.page().ok_or(EINVAL)
    }

    fn run_page(&mut self) -> RunPage<'_> {
        match self.page() {
            Some(page) => page,
            None => no_run_page(),
        }
    }

    fn kicker(&self) -> MojitoKicker {
        MojitoKicker(self.kick.clone())
    }

    fn get_regs(&self) -> api::Result<kvm_regs> {
        self.get(KVM_GET_REGS)
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> api::Result<()> {
        self.set(KVM_SET_REGS, regs)
    }

    fn get_sregs(&self) -> api::Result<kvm_sregs> {
        self.get(KVM_GET_SREGS)
    }

    fn set_sregs(&mut self, sregs: &kvm_sregs) -> api::Result<()> {
        self.set(KVM_SET_SREGS, sregs)
    }

    fn set_guest_debug(&mut self, control: u32, debugreg: [u64; 8]) -> api::Result<()> {
        let debug = abi::kvm::kvm_guest_debug {
            control,
            pad: 0,
            arch: abi::kvm::kvm_guest_debug_arch { debugreg },
        };
        self.set(abi::kvm::KVM_SET_GUEST_DEBUG, &debug)
    }

    fn interrupt(&mut self, vector: u32) -> api::Result<()> {
        self.set(
            abi::kvm::KVM_INTERRUPT,
            &abi::kvm::kvm_interrupt { irq: vector },
        )
    }

    fn set_cpuid2(&mut self, entries: &[kvm_cpuid_entry2]) -> api::Result<()> {
        let mut buf = CpuidBuf::new();
        buf.entries
            .get_mut(..entries.len())
            .ok_or(E2BIG)?
            .copy_from_slice(entries);
        buf.header.nent = entries.len() as u32;
        self.set(KVM_SET_CPUID2, &*buf)
    }

    fn get_msrs(&self, entries: &mut [kvm_msr_entry]) -> api::Result<usize> {
        let (n, buf) = self.msrs(KVM_GET_MSRS, entries)?;
        for (i, e) in entries.iter_mut().enumerate().take(n) {
            e.data = buf.get(2 + 2 * i).copied().ok_or(EINVAL)?;
        }
        Ok(n)
    }

    fn set_msrs(&mut self, entries: &[kvm_msr_entry]) -> api::Result<usize> {
        self.msrs(KVM_SET_MSRS, entries).map(|(n, _)| n)
    }

    fn get_fpu(&self) -> api::Result<kvm_fpu> {
        self.get(KVM_GET_FPU)
    }

    fn set_fpu(&mut self, fpu: &kvm_fpu) -> api::Result<()> {
        self.set(KVM_SET_FPU, fpu)
    }

    fn get_xsave(&self) -> api::Result<kvm_xsave> {
        let mut out = Box::new(kvm_xsave::default());
        zero(hv::call(
            KVM_GET_XSAVE,
            self.handle,
            &mut *out as *mut kvm_xsave as u64,
        ))?;
        Ok(*out)
    }

    fn set_xsave(&mut self, xsave: &kvm_xsave) -> api::Result<()> {
        self.set(KVM_SET_XSAVE, xsave)
    }
}

/// The run pages exist from `create_vcpu` until drop, so `run_page` always
/// has them; this is the report should that ever not hold.
#[cold]
fn no_run_page() -> ! {
    println!("control: FATAL a vCPU lost its run pages");
    hv::power_off();
    crate::bare::halt()
}
