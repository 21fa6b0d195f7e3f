//! The host back end: the API traits over Linux `/dev/kvm` through
//! `kvm-ioctls` (DESIGN.md D5), so the VMM and its device models run in
//! plain `cargo test` and as a tiny hosted VMM.
//!
//! # Structures
//!
//! `abi::kvm`'s structures and `kvm-bindings`' have the same layout — size,
//! alignment and every field offset — which `abi/tests/layout.rs` proves
//! for each pair, and all their fields are integers (or arrays and unions
//! of integers), so every bit pattern is valid in both. Conversions are
//! therefore copies of whole values (`same`), whose size check is
//! a compile-time assert.
//!
//! # Kicks
//!
//! A [`HostKicker`] interrupts `KVM_RUN` from another thread the way
//! KVM's documentation says to: set `immediate_exit` in the run page and
//! signal the thread inside `KVM_RUN` (a no-op handler for `SIGRTMIN`,
//! installed without `SA_RESTART`, so the ioctl returns `EINTR`). The
//! kicker only touches the run page and the thread while the vCPU is inside
//! [`Vcpu::run`], under a lock the run takes too, so
//! it never writes to an unmapped page or signals a thread that has exited.
//!
//! # Several vCPUs
//!
//! The VMM runs a VM's vCPUs round robin on one thread (`crate::vm::Vm::run`),
//! moving on at each `KVM_EXIT_INTR`. Linux's `KVM_RUN` does not return on
//! its own while the vCPU cannot run — an AP waiting for SIPI, a vCPU
//! halted in HLT with the APIC in the kernel — nor while it runs guest code
//! that does not exit. So a VM's second vCPU starts a [`Ticker`]: a thread
//! that, every [`TICK`], kicks the vCPU whose turn it is (the last of the
//! VM's vCPUs to enter `KVM_RUN`): its RUN ends, or if the VMM is handling
//! one of its exits just then, its next RUN ends at once — so a turn lasts
//! at most a tick (the ticker's phase is its own, so often less), the
//! counterpart of Mojito's timer tick (DESIGN.md D2). It stops with the VM
//! handle. A VM with one vCPU has none: with the APIC in the kernel, a
//! guest that halts with interrupts off (or waits for a timer it never
//! armed) then keeps `KVM_RUN` until the caller's `StopHandle` kicks it,
//! as under any Linux VMM.
//!
//! # Memory
//!
//! Guest memory is anonymous `mmap`ed memory. Once a slot is set, the VM
//! and each of its vCPUs share ownership of it (an `Arc`), so it is
//! unmapped only after the slot is deleted or every handle that could run
//! the guest is closed.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::Duration;

use abi::kvm as k;
use kvm_bindings as kb;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use crate::api::{
    self, Errno, GuestMemory, GuestRam, Kick, MsrFilterRange, RunPage, System, Vcpu, Vm,
};

/// Converts between an `abi::kvm` structure and its `kvm-bindings` twin.
///
/// # Safety
///
/// `A` and `B` must be a pair that `abi/tests/layout.rs` proves
/// layout-identical, made only of integer fields.
unsafe fn same<A, B>(a: A) -> B {
    const { assert!(size_of::<A>() == size_of::<B>()) };
    // SAFETY: the caller vouches for identical layouts with every bit
    // pattern valid; `transmute_copy` reads size_of::<B>() bytes, which the
    // compile-time assert above makes exactly the size of `a`.
    let b = unsafe { core::mem::transmute_copy::<A, B>(&a) };
    core::mem::forget(a);
    b
}

fn errno_of(e: kvm_ioctls::Error) -> Errno {
    e.errno()
}

fn last_errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(k::errno::EINVAL)
}

/// `/dev/kvm`.
#[derive(Debug)]
pub struct HostKvm {
    kvm: Kvm,
}

impl HostKvm {
    /// Opens `/dev/kvm`.
    pub fn open() -> std::io::Result<Self> {
        Kvm::new()
            .map(|kvm| Self { kvm })
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

impl System for HostKvm {
    type Vm = HostVm;

    fn api_version(&self) -> api::Result<u32> {
        u32::try_from(self.kvm.get_api_version()).map_err(|_| k::errno::EINVAL)
    }

    fn check_extension(&self, cap: u32) -> api::Result<u32> {
        let r = self.kvm.check_extension_raw(libc::c_ulong::from(cap));
        u32::try_from(r).map_err(|_| last_errno())
    }

    fn vcpu_mmap_size(&self) -> api::Result<usize> {
        self.kvm.get_vcpu_mmap_size().map_err(errno_of)
    }

    fn clock(&self) -> Arc<dyn crate::clock::Clock> {
        Arc::new(HostClock(std::time::Instant::now()))
    }

    fn supported_cpuid(&self) -> api::Result<Vec<k::kvm_cpuid_entry2>> {
        let cpuid = self
            .kvm
            .get_supported_cpuid(kb::KVM_MAX_CPUID_ENTRIES)
            .map_err(errno_of)?;
        Ok(cpuid
            .as_slice()
            .iter()
            // SAFETY: kvm_cpuid_entry2 is a proven-identical pair.
            .map(|e| unsafe { same::<kb::kvm_cpuid_entry2, k::kvm_cpuid_entry2>(*e) })
            .collect())
    }

    fn create_vm(&self) -> api::Result<HostVm> {
        let fd = self.kvm.create_vm().map_err(errno_of)?;
        Ok(HostVm {
            fd,
            slots: Arc::new(Mutex::new(BTreeMap::new())),
            kicks: Arc::new(Mutex::new(Vec::new())),
            turn: Arc::new(AtomicUsize::new(0)),
            ticker: None,
            ring: None,
        })
    }
}

/// Anonymous memory from `mmap`.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the pointer is
// only used to build `GuestRam` views (which copy through raw pointers) and
// to unmap it once, in `drop`.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: shared use only reads the pointer and length.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped
        // exactly once, here; no slot refers to the memory any more (see
        // `HostMemory`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Guest memory allocated by the host back end.
#[derive(Debug, Clone)]
pub struct HostMemory(Arc<Mapping>);

impl GuestMemory for HostMemory {
    fn ram(&self) -> GuestRam<'_> {
        // SAFETY: the mapping is readable and writable and lives as long as
        // `self`; nothing makes Rust references into it.
        unsafe { GuestRam::from_raw(self.0.ptr, self.0.len) }
    }
}

type Slots = Arc<Mutex<BTreeMap<u32, HostMemory>>>;

/// A VM on `/dev/kvm`.
#[derive(Debug)]
pub struct HostVm {
    // Field order is drop order: the ticker stops before the fd closes.
    /// From the second vCPU on: ends each vCPU's turn after a [`TICK`].
    ticker: Option<Ticker>,
    fd: VmFd,
    /// Shared with every vCPU, so memory outlives all that can run the
    /// guest.
    slots: Slots,
    /// Each vCPU's kick state, in the order they were made, for the
    /// ticker.
    kicks: Arc<Mutex<Vec<Weak<KickState>>>>,
    /// Whose turn it is: the index in `kicks` of the vCPU that last
    /// entered `KVM_RUN`.
    turn: Arc<AtomicUsize>,
    /// The VM's coalesced ring: page `KVM_COALESCED_MMIO_PAGE_OFFSET` of
    /// the first vCPU's fd (every vCPU's maps the same page), mapped on its
    /// own so that it lives as long as the VM.
    ring: Option<Mapping>,
}

impl HostVm {
    /// Maps the coalesced ring from `vcpu`'s fd, if KVM has one.
    fn map_ring(&mut self, vcpu: &VcpuFd) -> api::Result<()> {
        use std::os::fd::AsRawFd as _;
        const PAGE: usize = 4096;
        let offset = k::KVM_COALESCED_MMIO_PAGE_OFFSET as usize * PAGE;
        if self.ring.is_some()
            || self.check_extension(k::KVM_CAP_COALESCED_MMIO)? == 0
            || self.fd.run_size() < offset + PAGE
        {
            return Ok(());
        }
        // SAFETY: a shared mapping of one page of the vCPU fd, at an address
        // of the kernel's choosing, touches no existing memory; KVM backs
        // that page with the VM's ring.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_errno());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(k::errno::ENOMEM)?;
        self.ring = Some(Mapping { ptr, len: PAGE });
        Ok(())
    }
}

/// How long a vCPU's turn lasts in a VM with several ([`Ticker`]): short
/// enough that a vCPU waiting in the kernel costs the others little, long
/// enough that a running one gets work done (Mojito's tick is 10 ms).
pub const TICK: Duration = Duration::from_millis(1);

/// The thread that kicks the vCPU whose turn it is, in a VM with several,
/// every [`TICK`] (see the module's "Several vCPUs").
#[derive(Debug)]
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts the thread; the error if none could be made.
    fn start(
        kicks: Arc<Mutex<Vec<Weak<KickState>>>>,
        turn: Arc<AtomicUsize>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vmm-ticker".into())
            .spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(TICK);
                    let Ok(list) = kicks.lock() else {
                        return;
                    };
                    let current = list
                        .get(turn.load(Ordering::SeqCst))
                        .and_then(Weak::upgrade);
                    if let Some(k) = current {
                        HostKicker(k).kick();
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Slot `slot` of `memory` at `guest_phys_addr` with `flags`.
fn region(
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory: &HostMemory,
) -> kb::kvm_userspace_memory_region {
    kb::kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr,
        memory_size: memory.0.len as u64,
        userspace_addr: memory.0.ptr.as_ptr() as u64,
    }
}

impl Vm for HostVm {
    type Memory = HostMemory;
    type Vcpu = HostVcpu;

    fn alloc_memory(&mut self, size: u64) -> api::Result<HostMemory> {
        let len = usize::try_from(size).map_err(|_| k::errno::EINVAL)?;
        if len == 0 || len % 4096 != 0 {
            return Err(k::errno::EINVAL);
        }
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_errno());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(k::errno::ENOMEM)?;
        Ok(HostMemory(Arc::new(Mapping { ptr, len })))
    }

    fn set_user_memory_region(
        &mut self,
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
        memory: HostMemory,
    ) -> api::Result<()> {
        let mut slots = self.slots.lock().map_err(|_| k::errno::EINVAL)?;
        if slots.contains_key(&slot) {
            return Err(k::errno::EEXIST);
        }
        // SAFETY: the memory stays mapped while the slot exists: it goes
        // into `slots`, shared with every vCPU, and leaves only through
        // `delete_user_memory_region` after the slot is gone.
        unsafe {
            self.fd
                .set_user_memory_region(region(slot, flags, guest_phys_addr, &memory))
        }
        .map_err(errno_of)?;
        slots.insert(slot, memory);
        Ok(())
    }

    fn delete_user_memory_region(&mut self, slot: u32) -> api::Result<HostMemory> {
        let mut slots = self.slots.lock().map_err(|_| k::errno::EINVAL)?;
        let memory = slots.get(&slot).cloned().ok_or(k::errno::ENOENT)?;
        let region = kb::kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: 0,
            userspace_addr: memory.0.ptr.as_ptr() as u64,
        };
        // SAFETY: deleting a slot makes KVM forget the memory; it stays
        // mapped until then.
        unsafe { self.fd.set_user_memory_region(region) }.map_err(errno_of)?;
        slots.remove(&slot);
        Ok(memory)
    }

    fn change_user_memory_region(
        &mut self,
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
    ) -> api::Result<()> {
        let slots = self.slots.lock().map_err(|_| k::errno::EINVAL)?;
        let memory = slots.get(&slot).ok_or(k::errno::ENOENT)?;
        let r = region(slot, flags, guest_phys_addr, memory);
        // SAFETY: the same memory the slot already has, still mapped.
        unsafe { self.fd.set_user_memory_region(r) }.map_err(errno_of)
    }

    fn get_dirty_log(&mut self, slot: u32) -> api::Result<Vec<u64>> {
        let size = {
            let slots = self.slots.lock().map_err(|_| k::errno::EINVAL)?;
            slots.get(&slot).ok_or(k::errno::ENOENT)?.0.len
        };
        self.fd.get_dirty_log(slot, size).map_err(errno_of)
    }

    fn memory(&self, slot: u32) -> Option<GuestRam<'_>> {
        let slots = self.slots.lock().ok()?;
        let m = slots.get(&slot)?;
        // SAFETY: the mapping outlives the borrow of `self`: only
        // `delete_user_memory_region`, which takes `&mut self`, removes it
        // from `slots`, and the vCPUs that share `slots` never do.
        Some(unsafe { GuestRam::from_raw(m.0.ptr, m.0.len) })
    }

    fn create_vcpu(&mut self, id: u32) -> api::Result<HostVcpu> {
        let mut fd = self.fd.create_vcpu(u64::from(id)).map_err(errno_of)?;
        self.map_ring(&fd)?;
        let run_size = self.fd.run_size();
        let run_ptr = NonNull::from(fd.get_kvm_run()).cast::<u8>();
        install_kick_signal();
        let kick = Arc::new(KickState {
            requested: AtomicBool::new(false),
            inside: Mutex::new(None),
            run_ptr: run_ptr.as_ptr() as usize,
        });
        let mut kicks = self.kicks.lock().map_err(|_| k::errno::EINVAL)?;
        let index = kicks.len();
        kicks.push(Arc::downgrade(&kick));
        drop(kicks);
        if index > 0 && self.ticker.is_none() {
            // Without it a second vCPU could keep KVM_RUN for ever: no vCPU.
            let ticker = Ticker::start(self.kicks.clone(), self.turn.clone())
                .map_err(|_| k::errno::ENOMEM)?;
            self.ticker = Some(ticker);
        }
        Ok(HostVcpu {
            fd,
            run_size,
            kick,
            index,
            turn: self.turn.clone(),
            _slots: self.slots.clone(),
        })
    }

    fn check_extension(&self, cap: u32) -> api::Result<u32> {
        let r = self.fd.check_extension_raw(libc::c_ulong::from(cap));
        u32::try_from(r).map_err(|_| last_errno())
    }

    fn enable_cap(&mut self, cap: &k::kvm_enable_cap) -> api::Result<()> {
        // SAFETY: kvm_enable_cap is a proven-identical pair.
        let cap = unsafe { same::<k::kvm_enable_cap, kb::kvm_enable_cap>(*cap) };
        self.fd.enable_cap(&cap).map_err(errno_of)
    }

    fn signal_msi(&mut self, msi: &k::kvm_msi) -> api::Result<u32> {
        // SAFETY: kvm_msi is a proven-identical pair.
        let msi = unsafe { same::<k::kvm_msi, kb::kvm_msi>(*msi) };
        let delivered = self.fd.signal_msi(msi).map_err(errno_of)?;
        u32::try_from(delivered).map_err(|_| k::errno::EINVAL)
    }

    fn set_gsi_routing(
        &mut self,
        routes: &[(u32, k::kvm_irq_routing_msi, u32)],
    ) -> api::Result<()> {
        let entries: Vec<kb::kvm_irq_routing_entry> = routes
            .iter()
            .map(|&(gsi, msi, flags)| {
                let mut e = k::kvm_irq_routing_entry {
                    gsi,
                    type_: k::KVM_IRQ_ROUTING_MSI,
                    flags,
                    ..Default::default()
                };
                e.u.msi = msi;
                // SAFETY: kvm_irq_routing_entry is a proven-identical pair
                // (its union too), integers only.
                unsafe { same::<k::kvm_irq_routing_entry, kb::kvm_irq_routing_entry>(e) }
            })
            .collect();
        // More than KVM_MAX_IRQ_ROUTES entries: KVM's EINVAL.
        let table = kb::KvmIrqRouting::from_entries(&entries).map_err(|_| k::errno::EINVAL)?;
        self.fd.set_gsi_routing(&table).map_err(errno_of)
    }

    fn register_coalesced_pio(&mut self, port: u16, len: u32) -> api::Result<()> {
        // Without the ring mapped (no vCPU yet, or KVM without one) the
        // writes could not be read back.
        if self.ring.is_none() {
            return Err(k::errno::EINVAL);
        }
        let at = kvm_ioctls::IoEventAddress::Pio(u64::from(port));
        self.fd.register_coalesced_mmio(at, len).map_err(errno_of)
    }

    fn unregister_coalesced_pio(&mut self, port: u16, len: u32) -> api::Result<()> {
        let at = kvm_ioctls::IoEventAddress::Pio(u64::from(port));
        self.fd.unregister_coalesced_mmio(at, len).map_err(errno_of)
    }

    fn take_coalesced(&mut self, out: &mut Vec<api::CoalescedWrite>) {
        if let Some(ring) = &self.ring {
            // SAFETY: the shared page stays mapped as long as `self`;
            // nothing makes Rust references into it (KVM writes it while a
            // vCPU runs: the view only copies).
            let view = unsafe { GuestRam::from_raw(ring.ptr, ring.len) };
            api::drain_coalesced_ring(&view, out);
        }
    }

    fn set_msr_filter(&mut self, flags: u32, ranges: &[MsrFilterRange<'_>]) -> api::Result<()> {
        if ranges.len() > k::KVM_MSR_FILTER_MAX_RANGES as usize {
            return Err(k::errno::EINVAL);
        }
        let mut filter = kb::kvm_msr_filter {
            flags,
            ..Default::default()
        };
        for (dst, r) in filter.ranges.iter_mut().zip(ranges) {
            if r.bitmap.len() < (r.nmsrs as usize).div_ceil(8) {
                return Err(k::errno::EINVAL);
            }
            dst.flags = r.flags;
            dst.nmsrs = r.nmsrs;
            dst.base = r.base;
            // KVM only reads the bitmap (it copies it during the ioctl).
            dst.bitmap = r.bitmap.as_ptr().cast_mut();
        }
        // SAFETY: every bitmap pointer refers to a live slice at least
        // nmsrs bits long (checked above), borrowed for the whole call.
        unsafe { self.fd.set_msr_filter_unchecked(&filter) }.map_err(errno_of)
    }
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn kick_handler(_: libc::c_int) {}

/// Installs the no-op handler for [`kick_signal`] once per process,
/// without `SA_RESTART`, so an interrupted `KVM_RUN` returns `EINTR`.
fn install_kick_signal() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler is async-signal-safe (it does nothing), and
        // SIGRTMIN is not used by the Rust runtime or the test harness.
        unsafe {
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = kick_handler as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(kick_signal(), &action, core::ptr::null_mut());
        }
    });
}

/// What a vCPU and its kickers share.
#[derive(Debug)]
struct KickState {
    /// A kick not yet consumed by a `RUN`.
    requested: AtomicBool,
    /// The thread inside `RUN`, while one is.
    inside: Mutex<Option<libc::pthread_t>>,
    /// The run page's address (valid while a thread is inside `RUN`).
    run_ptr: usize,
}

/// Interrupts a [`HostVcpu`]'s `KVM_RUN` from another thread.
#[derive(Clone, Debug)]
pub struct HostKicker(Arc<KickState>);

impl Kick for HostKicker {
    fn kick(&self) {
        let state = &self.0;
        state.requested.store(true, Ordering::SeqCst);
        let Ok(inside) = state.inside.lock() else {
            return;
        };
        if let Some(thread) = *inside {
            // SAFETY: while `inside` is set (under this lock) the vCPU is in
            // `run`, so its run page is mapped, and `thread` is the live
            // thread inside the call. `immediate_exit` is the byte the
            // kernel reads on entry to KVM_RUN; the signal ends a KVM_RUN
            // already under way.
            unsafe {
                let immediate_exit = (state.run_ptr as *mut u8)
                    .add(core::mem::offset_of!(k::kvm_run, immediate_exit));
                core::ptr::write_volatile(immediate_exit, 1);
                libc::pthread_kill(thread, kick_signal());
            }
        }
    }
}

/// A vCPU on `/dev/kvm`.
#[derive(Debug)]
pub struct HostVcpu {
    // Field order is drop order: the fd closes before the memory it can
    // reach is released.
    fd: VcpuFd,
    run_size: usize,
    kick: Arc<KickState>,
    /// Its place among the VM's vCPUs, and the VM's turn (for the
    /// ticker).
    index: usize,
    turn: Arc<AtomicUsize>,
    _slots: Slots,
}

impl HostVcpu {
    fn set_inside(&self, thread: Option<libc::pthread_t>) {
        if let Ok(mut inside) = self.kick.inside.lock() {
            *inside = thread;
        }
    }
}

impl Vcpu for HostVcpu {
    type Kicker = HostKicker;

    fn run(&mut self) -> api::Result<RunPage<'_>> {
        self.turn.store(self.index, Ordering::SeqCst);
        // SAFETY: pthread_self has no preconditions.
        self.set_inside(Some(unsafe { libc::pthread_self() }));
        let result = if self.kick.requested.swap(false, Ordering::SeqCst) {
            Err(k::errno::EINTR)
        } else {
            // SAFETY: KVM_RUN on a vCPU fd takes no argument; the run page
            // it fills is the mapping `fd` owns.
            let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::c_ulong::from(k::KVM_RUN), 0) };
            if r < 0 { Err(last_errno()) } else { Ok(()) }
        };
        self.set_inside(None);
        // A kick sets immediate_exit; it has done its job (or the RUN ended
        // for another reason first and the kick stays `requested`).
        let run = self.fd.get_kvm_run();
        run.immediate_exit = 0;
        if result == Err(k::errno::EINTR) {
            self.kick.requested.store(false, Ordering::SeqCst);
        }
        result.map(|()| self.run_page())
    }

    fn run_page(&mut self) -> RunPage<'_> {
        let len = self.run_size;
        let ptr = NonNull::from(self.fd.get_kvm_run()).cast::<u8>();
        // SAFETY: kvm-ioctls maps `run_size` bytes for the vCPU (the
        // KVM_GET_VCPU_MMAP_SIZE area, page-aligned, so aligned for
        // kvm_run); the page borrows `self` mutably, so nothing else
        // touches it and the vCPU cannot run meanwhile.
        match unsafe { RunPage::from_raw(ptr, len) } {
            Some(page) => page,
            // The mapping is at least one page and page-aligned, so this
            // cannot happen; a zero-length area would be the kernel's bug.
            None => unreachable_run_page(),
        }
    }

    fn kicker(&self) -> HostKicker {
        HostKicker(self.kick.clone())
    }

    fn get_regs(&self) -> api::Result<k::kvm_regs> {
        let r = self.fd.get_regs().map_err(errno_of)?;
        // SAFETY: kvm_regs is a proven-identical pair.
        Ok(unsafe { same(r) })
    }

    fn set_regs(&mut self, regs: &k::kvm_regs) -> api::Result<()> {
        // SAFETY: as above.
        self.fd.set_regs(&unsafe { same(*regs) }).map_err(errno_of)
    }

    fn get_sregs(&self) -> api::Result<k::kvm_sregs> {
        let s = self.fd.get_sregs().map_err(errno_of)?;
        // SAFETY: kvm_sregs is a proven-identical pair.
        Ok(unsafe { same(s) })
    }

    fn set_sregs(&mut self, sregs: &k::kvm_sregs) -> api::Result<()> {
        // SAFETY: as above.
        self.fd
            .set_sregs(&unsafe { same(*sregs) })
            .map_err(errno_of)
    }

    fn set_guest_debug(&mut self, control: u32, debugreg: [u64; 8]) -> api::Result<()> {
        let debug = kb::kvm_guest_debug {
            control,
            pad: 0,
            arch: kb::kvm_guest_debug_arch { debugreg },
        };
        self.fd.set_guest_debug(&debug).map_err(errno_of)
    }

    fn interrupt(&mut self, vector: u32) -> api::Result<()> {
        let arg = k::kvm_interrupt { irq: vector };
        // SAFETY: KVM_INTERRUPT reads one `kvm_interrupt` (identical layout
        // to the kernel's, checked in abi) from the pointer.
        let r = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::c_ulong::from(k::KVM_INTERRUPT),
                &arg as *const k::kvm_interrupt,
            )
        };
        if r < 0 { Err(last_errno()) } else { Ok(()) }
    }

    fn set_cpuid2(&mut self, entries: &[k::kvm_cpuid_entry2]) -> api::Result<()> {
        let entries: Vec<kb::kvm_cpuid_entry2> = entries
            .iter()
            // SAFETY: kvm_cpuid_entry2 is a proven-identical pair.
            .map(|e| unsafe { same(*e) })
            .collect();
        let cpuid = kb::CpuId::from_entries(&entries).map_err(|_| k::errno::E2BIG)?;
        self.fd.set_cpuid2(&cpuid).map_err(errno_of)
    }

    fn get_msrs(&self, entries: &mut [k::kvm_msr_entry]) -> api::Result<usize> {
        let list: Vec<kb::kvm_msr_entry> = entries
            .iter()
            // SAFETY: kvm_msr_entry is a proven-identical pair.
            .map(|e| unsafe { same(*e) })
            .collect();
        let mut msrs = kb::Msrs::from_entries(&list).map_err(|_| k::errno::E2BIG)?;
        let n = self.fd.get_msrs(&mut msrs).map_err(errno_of)?;
        for (dst, src) in entries.iter_mut().zip(msrs.as_slice()).take(n) {
            // SAFETY: as above.
            *dst = unsafe { same(*src) };
        }
        Ok(n)
    }

    fn set_msrs(&mut self, entries: &[k::kvm_msr_entry]) -> api::Result<usize> {
        let list: Vec<kb::kvm_msr_entry> = entries
            .iter()
            // SAFETY: kvm_msr_entry is a proven-identical pair.
            .map(|e| unsafe { same(*e) })
            .collect();
        let msrs = kb::Msrs::from_entries(&list).map_err(|_| k::errno::E2BIG)?;
        self.fd.set_msrs(&msrs).map_err(errno_of)
    }

    fn get_fpu(&self) -> api::Result<k::kvm_fpu> {
        let f = self.fd.get_fpu().map_err(errno_of)?;
        // SAFETY: kvm_fpu is a proven-identical pair.
        Ok(unsafe { same(f) })
    }

    fn set_fpu(&mut self, fpu: &k::kvm_fpu) -> api::Result<()> {
        // SAFETY: as above.
        self.fd.set_fpu(&unsafe { same(*fpu) }).map_err(errno_of)
    }

    fn get_xsave(&self) -> api::Result<k::kvm_xsave> {
        let x = self.fd.get_xsave().map_err(errno_of)?;
        // SAFETY: kvm_xsave is a proven-identical pair.
        Ok(unsafe { same(x) })
    }

    fn set_xsave(&mut self, xsave: &k::kvm_xsave) -> api::Result<()> {
        // SAFETY: kvm_xsave is a proven-identical pair. KVM_SET_XSAVE reads
        // more than the 4 KiB legacy area only for dynamically enabled
        // features (AMX), which need ARCH_REQ_XCOMP_GUEST_PERM; this
        // process never asks for it.
        unsafe { self.fd.set_xsave(&same(*xsave)) }.map_err(errno_of)
    }
}

#[cold]
fn unreachable_run_page() -> ! {
    // The only panic in this back end: a kernel that maps a vCPU's run area
    // smaller than `kvm_run` (or misaligned) breaks the KVM ABI itself.
    #[allow(clippy::panic)]
    {
        panic!("KVM mapped a run area smaller than kvm_run")
    }
}

/// Whether `/dev/kvm` can be opened here, and if not, why.
pub fn availability() -> Result<(), String> {
    match HostKvm::open() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("/dev/kvm: {e}")),
    }
}

/// `CLOCK_MONOTONIC` (from when the VM was made) and `CLOCK_REALTIME`.
struct HostClock(std::time::Instant);

impl crate::clock::Clock for HostClock {
    fn monotonic_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    fn wall_ns(&self) -> Option<u64> {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_nanos() as u64)
    }
}
