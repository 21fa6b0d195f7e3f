//! The objects the control domain makes through the KVM API — VMs and their
//! vCPUs — and the handles that name them, the counterpart of file
//! descriptors on `/dev/kvm` (DESIGN.md D1). Handle 0 is the system; the
//! others index a table. Closing a VM frees everything it held (D2, D3).

use crate::guest::GuestRam;
use crate::guest::ram::MemSlot;
use crate::mm::GuestPhys;
use crate::mm::paging::{PageSize, Perms, Table};
use crate::vcpu::cpuid::CpuidTable;
use crate::vcpu::lazy::{Extended, HostXstate};
use crate::vcpu::msr::MsrState;
use crate::virt::{Backend, Frames, GuestCpu};
use crate::vm::{VmEnv, VmKind};
use abi::kvm::errno::{EBADF, EBUSY, EEXIST, EFAULT, EINVAL, ENOMEM, ENOSPC};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// Most VMs at once (VM ids 1..=MAX_VMS tag their TLB entries).
pub const MAX_VMS: usize = 64;
/// Memory slots per VM (`KVM_CAP_NR_MEMSLOTS`): KVM's classic x86 count
/// (`KVM_USER_MEM_SLOTS` before 5.x; today's KVM offers 32764).
pub const MAX_MEMSLOTS: u32 = 509;
/// vCPUs per VM (`KVM_CAP_MAX_VCPUS`). Several need the split irqchip
/// to start (their APs wait for INIT and SIPI from the guest's BSP); they
/// take turns on the CPU of the control-domain vCPU that runs them.
pub const MAX_VCPUS: u32 = 8;
/// vCPU ids are below this (`KVM_CAP_MAX_VCPU_ID`): the id is the APIC ID,
/// 8 bits in xAPIC mode.
pub const MAX_VCPU_ID: u32 = 256;
/// Most handles at once.
const MAX_HANDLES: usize = 256;

/// An exit forwarded to the VMM that completes on the next RUN, and the
/// length of the instruction to step over then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// IN (the data comes from the data page) or OUT.
    Io { input: bool, size: u8, len: u8 },
    /// VMCALL/VMMCALL: RAX gets `kvm_run.hypercall.ret`.
    Hypercall { len: u8, long_mode: bool },
    /// A batch of INS/OUTS elements.
    String(super::string_io::StringBatch),
    /// A device access (`KVM_EXIT_MMIO`).
    Mmio(super::mmio::MmioAccess),
    /// RDMSR (EDX:EAX get `kvm_run.msr.data`) or WRMSR; #GP instead if
    /// the VMM set `kvm_run.msr.error`.
    Msr { read: bool, len: u8 },
}

/// A vCPU made with `KVM_CREATE_VCPU`.
pub struct KvmVcpu<B: Backend> {
    pub cpu: B::Vcpu,
    pub id: u32,
    /// Its run pages (control-domain GPA), set by `MOJITO_SET_RUN_PAGES`.
    pub run_pages: Option<u64>,
    pub pending: Option<Pending>,
    /// The vector `KVM_INTERRUPT` queued, injected as soon as the guest can
    /// take it.
    pub irq: Option<u8>,
    /// `KVM_SET_GUEST_DEBUG`'s control bits (0: not debugged).
    pub debug: u32,
    /// The guest's own DR0–DR3 and DR7 while a debugger's hardware
    /// breakpoints hold the registers.
    pub guest_dr: Option<([u64; 4], u64)>,
    /// Its local APIC, in the hypervisor (`KVM_CAP_SPLIT_IRQCHIP`).
    pub lapic: Option<crate::vcpu::lapic::Lapic>,
    /// `KVM_MP_STATE_*`: runnable; halted in HLT with its LAPIC here (RUN
    /// waits for an interrupt before entering it); an AP waiting for INIT
    /// (uninitialized) or for SIPI (INIT received).
    pub mp_state: u32,
    /// INIT and SIPI another vCPU sent it, taken when it next runs (KVM's
    /// pending APIC events).
    pub init_pending: bool,
    pub sipi_vector: Option<u8>,
    /// An NMI sent to it (an IPI, an MSI, `KVM_SET_VCPU_EVENTS`), injected
    /// once the guest does not block NMIs; more before then make one (the
    /// CPU latches one NMI).
    pub nmi_pending: bool,
    /// Whether the guest blocked NMIs when it halted (inside an NMI
    /// handler): then a pending NMI does not wake it (KVM's
    /// `kvm_vcpu_has_events` asks `nmi_allowed`).
    pub halted_nmi_masked: bool,
    /// RFLAGS.IF when it halted (or the VMM set its registers or run
    /// state): whether an interrupt can wake it.
    pub halted_if: bool,
    /// Its TSC offset as of its last run, for its siblings to see when its
    /// timer is due (another vCPU's VMCS cannot be read on VMX).
    pub tsc_offset: u64,
    /// Its extended state and MSRs while the VM's `env` holds another
    /// vCPU's (`KvmVm::select`).
    pub own: PerVcpu,
}

/// What each vCPU of a VM has of its own among the things `VmEnv` holds.
pub struct PerVcpu {
    pub lazy: Extended,
    pub msrs: MsrState,
}

impl PerVcpu {
    /// Trades places with what `env` holds.
    fn swap(&mut self, env: &mut VmEnv) {
        core::mem::swap(&mut self.lazy, &mut env.lazy);
        core::mem::swap(&mut self.msrs, &mut env.msrs);
    }
}

impl<B: Backend> KvmVcpu<B> {
    pub fn halted(&self) -> bool {
        self.mp_state == abi::kvm::KVM_MP_STATE_HALTED
    }

    /// Whether RUN could enter it now (for its siblings: a halted or
    /// unstarted vCPU gives the CPU back at once when another can run).
    pub fn can_run(&self) -> bool {
        use abi::kvm::{KVM_MP_STATE_HALTED, KVM_MP_STATE_RUNNABLE};
        match self.mp_state {
            KVM_MP_STATE_RUNNABLE => true,
            KVM_MP_STATE_HALTED => {
                // An NMI wakes HLT whatever RFLAGS.IF is (not inside an NMI
                // handler).
                self.init_pending
                    || self.sipi_vector.is_some()
                    || (self.nmi_pending && !self.halted_nmi_masked)
                    || (self.halted_if
                        && super::lapic::has_wakeup(self, crate::arch::instr::rdtsc()))
            }
            _ => self.init_pending || self.sipi_vector.is_some(),
        }
    }
}

/// The rest of a VM beside the vCPU running: the other vCPUs, the
/// interrupt routes, the coalesced ring, and when the running vCPU's turn
/// began (TSC).
pub struct Peers<'a, B: Backend> {
    pub before: &'a mut [Option<KvmVcpu<B>>],
    pub after: &'a mut [Option<KvmVcpu<B>>],
    pub routes: &'a super::routing::Routes,
    pub coalesced: &'a mut super::coalesced::Coalesced,
    pub turn_began: u64,
    /// Whether there are other vCPUs at all (the common case, one, pays
    /// for nothing else on the exit path).
    pub siblings: bool,
}

impl<B: Backend> Peers<'_, B> {
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut KvmVcpu<B>> {
        self.before
            .iter_mut()
            .chain(self.after.iter_mut())
            .flatten()
    }

    /// A sibling can run and this vCPU has had the CPU for a tick: it
    /// gives the CPU back so that the VMM runs the other (its RUNs that
    /// went to the VMM and back do not make a new turn).
    #[inline]
    pub fn turn_over(&self) -> bool {
        self.siblings && self.turn_over_slow()
    }

    fn turn_over_slow(&self) -> bool {
        let tick = crate::arch::apic::period_tsc();
        self.any_can_run()
            && tick != 0
            && crate::arch::instr::rdtsc().wrapping_sub(self.turn_began) >= tick
    }

    /// The nearest timer deadline still to come of the other vCPUs that a
    /// timer interrupt would wake (halted with interrupts on), in host TSC
    /// cycles. (One already due makes its vCPU runnable: `any_can_run`.)
    pub fn earliest_deadline(&self, host_now: u64) -> Option<u64> {
        self.before
            .iter()
            .chain(self.after.iter())
            .flatten()
            .filter(|p| p.halted() && p.halted_if)
            .filter_map(|p| {
                let l = p.lapic.as_ref()?;
                super::lapic::host_deadline(l, p.tsc_offset, host_now)
            })
            .filter(|&d| d > host_now)
            .min()
    }

    pub fn any_can_run(&self) -> bool {
        self.before
            .iter()
            .chain(self.after.iter())
            .flatten()
            .any(KvmVcpu::can_run)
    }
}

/// A VM made with `KVM_CREATE_VM`.
pub struct KvmVm<B: Backend> {
    /// Tags its TLB entries (VPID / ASID): 1..=MAX_VMS.
    pub vm_id: u16,
    pub env: VmEnv,
    pub nested: Table<B::Nested>,
    /// Its vCPUs, by the order they were made (the handle's slot).
    pub vcpus: Vec<Option<KvmVcpu<B>>>,
    /// The vCPU whose extended state and MSRs `env` holds.
    pub current: Option<usize>,
    /// Why its RUNs returned -EINTR, for its closing log line.
    pub intrs: IntrCounts,
    /// `KVM_CAP_SPLIT_IRQCHIP`'s count of reserved IOAPIC pins, once
    /// enabled: each vCPU then gets a local APIC in the hypervisor.
    pub split_irqchip: Option<u32>,
    /// `KVM_SET_GSI_ROUTING`'s MSI routes.
    pub routes: super::routing::Routes,
    /// Whose turn on the CPU it is among its vCPUs, and since when (TSC).
    pub turn: (usize, u64),
    /// Its coalesced port ranges and ring.
    pub coalesced: super::coalesced::Coalesced,
}

/// RUNs that returned -EINTR, by cause.
#[derive(Clone, Copy, Debug, Default)]
pub struct IntrCounts {
    pub immediate_exit: u64,
    pub tick: u64,
    pub input: u64,
    /// The vCPU gave the CPU to a sibling that could run.
    pub sibling: u64,
    /// Another control-domain vCPU kicked its CPU.
    pub kick: u64,
    /// RUNs on each CPU (`arch::percpu::index`): where its vCPUs ran.
    pub on_cpu: [u64; crate::arch::percpu::MAX_CPUS],
    /// RUNs begun while another CPU was inside a guest's RUN.
    pub alongside: u64,
}

impl IntrCounts {
    pub fn count(&mut self, why: super::kvm::Intr) {
        use super::kvm::Intr;
        let n = match why {
            Intr::ImmediateExit => &mut self.immediate_exit,
            Intr::Tick => &mut self.tick,
            Intr::Input => &mut self.input,
            Intr::Sibling => &mut self.sibling,
            Intr::Kick => &mut self.kick,
        };
        *n += 1;
    }
}

/// What a handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handle {
    Vm(usize),
    /// The VM's index and the vCPU's slot in it.
    Vcpu(usize, usize),
}

/// Every VM and handle of the control domain. The control domain's vCPUs
/// share it (behind one lock, `control::Shared`); a VM inside `KVM_RUN` on
/// one of them is checked out (`checkout`): its slot stays taken, and every
/// other request on it gets -EBUSY (D2) until `checkin`.
pub struct Objects<B: Backend> {
    /// Boxed, so that a checkout moves a pointer, not the VM.
    vms: Vec<Option<Box<KvmVm<B>>>>,
    /// Bit i: VM i is checked out (`MAX_VMS` is 64).
    busy: u64,
    handles: Vec<Option<Handle>>,
}

impl<B: Backend> Default for Objects<B> {
    fn default() -> Self {
        Self {
            vms: Vec::new(),
            busy: 0,
            handles: Vec::new(),
        }
    }
}

/// `v` in a new box, or `v` back if the heap has no room (`Box::new` would
/// stop the hypervisor instead).
fn try_box<T>(v: T) -> Result<Box<T>, T> {
    let layout = core::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(v));
    }
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
    if p.is_null() {
        return Err(v);
    }
    // SAFETY: `p` is a fresh allocation of `T`'s layout; writing `v` there
    // initialises it, and the global allocator's block is what `Box`
    // frees.
    unsafe {
        p.write(v);
        Ok(Box::from_raw(p))
    }
}

/// Where a mapping of `offset` into a slot goes: a 2 MiB page where both
/// addresses are 2 MiB-aligned and 2 MiB remain, else 4 KiB. Mapping and
/// unmapping use the same rule.
fn page_at(slot: &MemSlot, offset: u64) -> PageSize {
    let big = PageSize::Size2M.bytes();
    // Dirty logging opens one 4 KiB page at a time.
    if !slot.logs_dirty()
        && (slot.gpa + offset).is_multiple_of(big)
        && (slot.cd_gpa + offset).is_multiple_of(big)
        && slot.size - offset >= big
    {
        PageSize::Size2M
    } else {
        PageSize::Size4K
    }
}

impl<B: Backend> Objects<B> {
    /// What `handle` names (handle 0, the system, is not in the table).
    pub fn lookup(&self, handle: u64) -> Option<Handle> {
        let i = usize::try_from(handle.checked_sub(1)?).ok()?;
        *self.handles.get(i)?
    }

    fn new_handle(&mut self, h: Handle) -> Result<u64, i32> {
        let i = match self.handles.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.handles.len() < MAX_HANDLES => {
                self.handles.try_reserve(1).map_err(|_| ENOMEM)?;
                self.handles.push(None);
                self.handles.len() - 1
            }
            None => return Err(ENOSPC),
        };
        self.handles[i] = Some(h);
        Ok(i as u64 + 1)
    }

    /// Each VM's name and layout (`MOJITO_LOG_LAYOUT`).
    pub fn layouts<'a>(
        &'a self,
        backend: &'a B,
    ) -> impl Iterator<Item = (&'a str, super::layout::Owner)> + 'a {
        self.vms.iter().flatten().map(move |v| {
            let mut owner = super::layout::Owner::of(
                backend,
                None,
                Some(v.nested.root()),
                Some(v.env.lazy.area()),
            );
            for vc in v.vcpus.iter().flatten() {
                owner.add_vcpu(backend, &vc.cpu);
                let (start, bytes) = vc.own.lazy.area();
                owner.add("XSAVE area", start, bytes);
            }
            (v.env.name.as_str(), owner)
        })
    }

    pub fn vm(&mut self, i: usize) -> Option<&mut KvmVm<B>> {
        self.vms.get_mut(i)?.as_deref_mut()
    }

    /// VM `i`: -EBUSY while it is checked out, -EBADF if there is none.
    pub fn vm_here(&mut self, i: usize) -> Result<&mut KvmVm<B>, i32> {
        if self.is_busy(i) {
            return Err(EBUSY);
        }
        self.vm(i).ok_or(EBADF)
    }

    fn is_busy(&self, i: usize) -> bool {
        i < MAX_VMS && self.busy & (1 << i) != 0
    }

    /// Takes VM `i` out of the table for a `KVM_RUN` on this CPU: -EBUSY
    /// if another one has it.
    pub fn checkout(&mut self, i: usize) -> Result<Box<KvmVm<B>>, i32> {
        if self.is_busy(i) {
            return Err(EBUSY);
        }
        let vm = self.vms.get_mut(i).and_then(Option::take).ok_or(EBADF)?;
        self.busy |= 1 << i;
        Ok(vm)
    }

    /// Puts back what `checkout(i)` took.
    pub fn checkin(&mut self, i: usize, vm: Box<KvmVm<B>>) {
        if let Some(slot) = self.vms.get_mut(i) {
            *slot = Some(vm);
        }
        self.busy &= !(1 << (i % MAX_VMS));
    }

    /// KVM_CREATE_VM: an empty VM (no memory, no vCPU).
    pub fn create_vm(
        &mut self,
        frames: &mut Frames,
        cpuid: &CpuidTable,
        xstate: &HostXstate,
    ) -> Result<u64, i32> {
        let busy = self.busy;
        let free = |(i, v): (usize, &Option<Box<KvmVm<B>>>)| {
            (v.is_none() && busy & (1 << i) == 0).then_some(i)
        };
        let i = match self.vms.iter().enumerate().find_map(free) {
            Some(i) => i,
            None if self.vms.len() < MAX_VMS => {
                self.vms.try_reserve(1).map_err(|_| ENOMEM)?;
                self.vms.push(None);
                self.vms.len() - 1
            }
            None => return Err(ENOSPC),
        };
        if self.handles.iter().all(Option::is_some) && self.handles.len() >= MAX_HANDLES {
            return Err(ENOSPC);
        }
        let vm_id = i as u16 + 1;
        let mut name = String::new();
        name.try_reserve(8).map_err(|_| ENOMEM)?;
        let _ = core::fmt::Write::write_fmt(&mut name, format_args!("vm{vm_id}"));
        let cpuid = cpuid.try_clone().ok_or(ENOMEM)?;
        let nested = Table::<B::Nested>::new(frames).map_err(|_| ENOMEM)?;
        let lazy = match Extended::new(frames, xstate) {
            Ok(l) => l,
            Err(_) => {
                nested.destroy(frames);
                return Err(ENOMEM);
            }
        };
        let env = VmEnv::new(vm_id, name, VmKind::Kvm, GuestRam::empty(), cpuid, lazy);
        let vm = try_box(KvmVm {
            vm_id,
            env,
            nested,
            vcpus: Vec::new(),
            current: None,
            intrs: IntrCounts::default(),
            split_irqchip: None,
            routes: Default::default(),
            turn: (usize::MAX, 0),
            coalesced: Default::default(),
        });
        let vm = match vm {
            Ok(vm) => vm,
            Err(vm) => {
                destroy_vm(None, frames, vm);
                return Err(ENOMEM);
            }
        };
        self.vms[i] = Some(vm);
        match self.new_handle(Handle::Vm(i)) {
            Ok(h) => Ok(h),
            Err(e) => {
                if let Some(vm) = self.vms[i].take() {
                    destroy_vm(None, frames, *vm);
                }
                Err(e)
            }
        }
    }

    /// KVM_CREATE_VCPU: KVM's checks in its order (the id, the count,
    /// then a duplicate id).
    pub fn create_vcpu(
        &mut self,
        backend: &mut B,
        frames: &mut Frames,
        xstate: &HostXstate,
        vm: usize,
        id: u64,
    ) -> Result<u64, i32> {
        let v = self.vm_here(vm)?;
        let id = u32::try_from(id).map_err(|_| EINVAL)?;
        let made = v.vcpus.iter().flatten().count();
        if id >= MAX_VCPU_ID || made >= MAX_VCPUS as usize {
            return Err(EINVAL);
        }
        if v.vcpus.iter().flatten().any(|c| c.id == id) {
            return Err(EEXIST);
        }
        let slot = match v.vcpus.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                v.vcpus.try_reserve(1).map_err(|_| ENOMEM)?;
                v.vcpus.push(None);
                v.vcpus.len() - 1
            }
        };
        let lazy = Extended::new(frames, xstate).map_err(|_| ENOMEM)?;
        // Each vCPU tags its TLB entries apart (VPID / ASID): VMX switches
        // between vCPUs without a flush, so the guest TLBs of two vCPUs of
        // a VM must not meet (SDM Vol. 3C 29.1).
        let tag = v.vm_id + (slot as u16) * MAX_VMS as u16;
        // KVM's reset state: real mode at F000:FFF0 (set by `reset`).
        let cpu = match backend.create_vcpu(frames, tag, v.nested.root(), RESET_RIP, &[]) {
            Ok(c) => c,
            Err(e) => {
                let mut lazy = lazy;
                lazy.free(frames);
                return Err(match e {
                    crate::virt::VirtError::NoMemory => ENOMEM,
                    _ => EINVAL,
                });
            }
        };
        let epoch = v.env.msrs.kvmclock.epoch_tsc;
        // With the LAPIC here, KVM starts every vCPU but the BSP (id 0)
        // waiting for INIT and SIPI.
        let mp_state = if v.split_irqchip.is_some() && id != 0 {
            abi::kvm::KVM_MP_STATE_UNINITIALIZED
        } else {
            abi::kvm::KVM_MP_STATE_RUNNABLE
        };
        v.vcpus[slot] = Some(KvmVcpu {
            cpu,
            id,
            run_pages: None,
            pending: None,
            irq: None,
            debug: 0,
            guest_dr: None,
            lapic: v
                .split_irqchip
                .map(|_| crate::vcpu::lapic::Lapic::new(id, crate::arch::tsc::frequency_khz())),
            mp_state,
            init_pending: false,
            nmi_pending: false,
            halted_nmi_masked: false,
            sipi_vector: None,
            halted_if: false,
            tsc_offset: 0,
            own: PerVcpu {
                lazy,
                msrs: MsrState {
                    // kvmclock counts from the VM's creation on every vCPU:
                    // the same time everywhere, as KVM's per-VM offset.
                    kvmclock: crate::vcpu::pvclock::KvmClock::new(epoch),
                    ..MsrState::new()
                },
            },
        });
        let handle = self.new_handle(Handle::Vcpu(vm, slot));
        match (handle, self.vm(vm)) {
            (Ok(h), Some(v)) => {
                if let Some(vc) = v.vcpus.get_mut(slot).and_then(Option::as_mut) {
                    super::kvm::reset(backend, vc);
                    // TPR changes must exit while the LAPIC is here
                    // (`control::lapic`).
                    if vc.lapic.is_some() && backend.activate(&mut vc.cpu) {
                        vc.cpu.set_cr8_write_intercept(true);
                    }
                }
                Ok(h)
            }
            (Err(e), Some(v)) => {
                v.remove_vcpu(backend, frames, slot);
                Err(e)
            }
            (r, None) => r,
        }
    }

    /// KVM_SET_USER_MEMORY_REGION (arguments already copied): add, delete,
    /// move (a new `guest_phys_addr`, same size and backing) or turn
    /// `KVM_MEM_LOG_DIRTY_PAGES` on or off, with KVM's rules; nothing
    /// half-made on failure.
    pub fn set_memory(
        &mut self,
        backend: &mut B,
        frames: &mut Frames,
        vm: usize,
        r: &abi::kvm::kvm_userspace_memory_region,
    ) -> Result<u64, i32> {
        use abi::kvm::{KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
        const PAGE: u64 = 4096;
        let v = self.vm_here(vm)?;
        if r.slot >= MAX_MEMSLOTS
            || r.flags & !(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY) != 0
            || !r.guest_phys_addr.is_multiple_of(PAGE)
            || !r.memory_size.is_multiple_of(PAGE)
            || !r.userspace_addr.is_multiple_of(PAGE)
            || r.guest_phys_addr
                .checked_add(r.memory_size)
                .is_none_or(|e| e > crate::mm::paging::MAX_GPA)
        {
            return Err(EINVAL);
        }
        let existing = v.env.ram.slots().iter().find(|s| s.slot == r.slot).copied();
        if r.memory_size == 0 {
            // Deleting: KVM answers -EINVAL for a slot that does not exist.
            let old = existing.ok_or(EINVAL)?;
            unmap_slot(v, frames, &old);
            v.env.ram.remove_slot(old.slot);
            flush(backend, v);
            return Ok(0);
        }
        let new = MemSlot {
            slot: r.slot,
            flags: r.flags,
            gpa: r.guest_phys_addr,
            size: r.memory_size,
            cd_gpa: r.userspace_addr,
        };
        if let Some(old) = existing {
            // KVM: an existing slot keeps its size, backing and
            // read-only-ness (resizing is deleting and adding again); it may
            // move, or turn dirty logging on or off. The same again is a
            // no-op.
            if old.size != new.size
                || old.cd_gpa != new.cd_gpa
                || (old.flags ^ new.flags) & KVM_MEM_READONLY != 0
            {
                return Err(EINVAL);
            }
            if old == new {
                return Ok(0);
            }
        }
        let end = new.gpa + new.size;
        if v.env
            .ram
            .slots()
            .iter()
            .any(|s| s.slot != new.slot && new.gpa < s.gpa + s.size && s.gpa < end)
        {
            return Err(EEXIST);
        }
        if !super::memory::usable(new.cd_gpa, new.size) {
            return Err(EFAULT);
        }
        // The old slot comes out whole (it goes back without allocating); a
        // slot that keeps logging keeps its bitmap, as in KVM.
        let mut taken = existing.and_then(|o| v.env.ram.take_slot(o.slot));
        let reuse = if new.logs_dirty() {
            taken.as_mut().and_then(|t| t.1.take())
        } else {
            None
        };
        if let Err(bits) = v.env.ram.insert_slot(new, reuse) {
            if let Some(mut t) = taken {
                t.1 = t.1.or(bits);
                v.env.ram.restore_slot(t);
            }
            return Err(ENOMEM);
        }
        if let Some((old, _)) = &taken {
            unmap_slot(v, frames, old);
        }
        if let Err(e) = map_slot(v, frames, &new) {
            // Nothing half-made: the old slot, mapping and bitmap come back
            // (the tables just freed make room for its mapping again).
            let new_bits = v.env.ram.take_slot(new.slot).and_then(|t| t.1);
            if let Some(mut t) = taken {
                let old = t.0;
                t.1 = t.1.or(new_bits);
                v.env.ram.restore_slot(t);
                if map_slot(v, frames, &old).is_err() {
                    v.env.ram.remove_slot(old.slot);
                    crate::log!(
                        "{}: slot {} could not be moved nor put back (no frames for its page \
                         tables): deleted",
                        v.env.name,
                        old.slot
                    );
                }
            }
            flush(backend, v);
            return Err(e);
        }
        flush(backend, v);
        Ok(0)
    }

    /// Closes `handle`: a vCPU goes, or a VM with everything it holds.
    pub fn close(&mut self, backend: &mut B, frames: &mut Frames, handle: u64) -> Result<u64, i32> {
        let h = self.lookup(handle).ok_or(EBADF)?;
        if let Handle::Vm(vm) | Handle::Vcpu(vm, _) = h
            && self.is_busy(vm)
        {
            return Err(EBUSY);
        }
        match h {
            Handle::Vcpu(vm, slot) => {
                if let Some(v) = self.vm(vm) {
                    v.remove_vcpu(backend, frames, slot);
                }
                self.forget(handle);
            }
            Handle::Vm(vm) => {
                for slot in self.handles.iter_mut() {
                    if matches!(*slot, Some(Handle::Vm(i) | Handle::Vcpu(i, _)) if i == vm) {
                        *slot = None;
                    }
                }
                if let Some(v) = self.vms.get_mut(vm).and_then(Option::take) {
                    log_exits(&v.env, &v.intrs, v.coalesced.count);
                    destroy_vm(Some(backend), frames, *v);
                }
            }
        }
        Ok(0)
    }

    fn forget(&mut self, handle: u64) {
        if let Some(slot) = usize::try_from(handle - 1)
            .ok()
            .and_then(|i| self.handles.get_mut(i))
        {
            *slot = None;
        }
    }
}

/// Logs a closing VM's exits by kind (what the hypervisor handled and what
/// went to the VMM), as the built-in runner does for its guests, and why
/// its RUNs returned -EINTR:
///
/// ```text
/// vm 7 (spin) closed; exits: intr=10; RUN ended by the timer 9 times, by COM1 input 1 time
/// ```
///
/// Coalesced port writes are counted among the `io` exits and also
/// apart, as `io=N (M coalesced)`.
fn log_exits(env: &VmEnv, intrs: &IntrCounts, coalesced: u64) {
    use core::fmt::Write;
    let mut line = String::new();
    for (kind, n) in env.stats.nonzero() {
        let _ = write!(line, " {kind}={n}");
        if kind == "io" && coalesced > 0 {
            let _ = write!(line, " ({coalesced} coalesced)");
        }
    }
    if line.is_empty() {
        crate::log!("{} closed; it never ran", env.name);
        return;
    }
    let times = |n: u64| if n == 1 { "time" } else { "times" };
    if intrs.tick + intrs.input + intrs.immediate_exit + intrs.sibling + intrs.kick == 0 {
        crate::log!("{} closed; exits:{line}{}", env.name, Cpus(intrs));
        return;
    }
    let _ = write!(
        line,
        "; RUN ended by the timer {} {}, by COM1 input {} {}",
        intrs.tick,
        times(intrs.tick),
        intrs.input,
        times(intrs.input)
    );
    if intrs.sibling > 0 {
        let _ = write!(
            line,
            ", for a sibling vCPU {} {}",
            intrs.sibling,
            times(intrs.sibling)
        );
    }
    if intrs.immediate_exit > 0 {
        let _ = write!(
            line,
            ", by immediate_exit {} {}",
            intrs.immediate_exit,
            times(intrs.immediate_exit)
        );
    }
    if intrs.kick > 0 {
        let _ = write!(line, ", by a kick {} {}", intrs.kick, times(intrs.kick));
    }
    crate::log!("{} closed; exits:{line}{}", env.name, Cpus(intrs));
}

/// `; RUN on cpu0 5 times, cpu1 7 times`: where a VM's vCPUs ran (D2: on
/// the CPUs of the control-domain vCPUs that called RUN).
struct Cpus<'a>(&'a IntrCounts);

impl core::fmt::Display for Cpus<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut sep = "; RUN on ";
        for (cpu, &n) in self.0.on_cpu.iter().enumerate().filter(|(_, n)| **n > 0) {
            let times = if n == 1 { "time" } else { "times" };
            write!(f, "{sep}cpu{cpu} {n} {times}")?;
            sep = ", ";
        }
        if self.0.alongside > 0 {
            write!(f, " ({} while another CPU ran a guest)", self.0.alongside)?;
        }
        Ok(())
    }
}

/// The reset state's RIP (CS base 0xffff_0000 makes it 0xffff_fff0).
pub const RESET_RIP: u64 = 0xfff0;

fn unmap_slot<B: Backend>(v: &mut KvmVm<B>, frames: &mut Frames, slot: &MemSlot) {
    let mut offset = 0;
    while offset < slot.size {
        let size = page_at(slot, offset);
        v.nested
            .unmap(frames, GuestPhys::new(slot.gpa + offset), size);
        offset += size.bytes();
    }
}

/// How a slot's pages are mapped: read-only slots, and slots that log dirty
/// pages, without write (a write to the first exits as MMIO; to the second
/// it marks the page dirty and opens it, `control::dirty`).
fn perms_of(slot: &MemSlot) -> Perms {
    if slot.readonly() || slot.logs_dirty() {
        Perms::RX
    } else {
        Perms::RWX
    }
}

/// Maps every page of `slot`; on failure unmaps what it mapped (and frees
/// the tables made for it) and answers `-ENOMEM` (or `-EFAULT` for memory
/// that stopped being the control domain's).
fn map_slot<B: Backend>(v: &mut KvmVm<B>, frames: &mut Frames, slot: &MemSlot) -> Result<(), i32> {
    let perms = perms_of(slot);
    let mut offset = 0;
    while offset < slot.size {
        let size = page_at(slot, offset);
        let result = match super::memory::host_run(slot.cd_gpa + offset) {
            Some((host, _)) => v
                .nested
                .map_sized(frames, GuestPhys::new(slot.gpa + offset), host, perms, size)
                .map_err(|_| ENOMEM),
            None => Err(EFAULT),
        };
        if let Err(e) = result {
            let partial = MemSlot {
                size: offset,
                ..*slot
            };
            unmap_slot(v, frames, &partial);
            return Err(e);
        }
        offset += size.bytes();
    }
    Ok(())
}

fn flush<B: Backend>(backend: &mut B, v: &mut KvmVm<B>) {
    for vc in v.vcpus.iter_mut().flatten() {
        backend.flush_nested(&mut vc.cpu);
    }
}

/// Frees a VM: its vCPU, nested tables and extended-state area (its RAM is
/// the control domain's and stays).
fn destroy_vm<B: Backend>(backend: Option<&mut B>, frames: &mut Frames, mut v: KvmVm<B>) {
    if let Some(b) = backend {
        for slot in 0..v.vcpus.len() {
            v.remove_vcpu(b, frames, slot);
        }
    }
    v.nested.destroy(frames);
    v.env.lazy.free(frames);
}

impl<B: Backend> KvmVm<B> {
    /// Makes vCPU `slot`'s extended state and MSRs the ones `env` holds
    /// (the handlers find a vCPU's state there), and returns it.
    pub fn select(&mut self, slot: usize) -> Option<&mut KvmVcpu<B>> {
        if self.current != Some(slot) {
            // The VM's own placeholder goes back into `env` first.
            if let Some(c) = self
                .current
                .and_then(|c| self.vcpus.get_mut(c))
                .and_then(Option::as_mut)
            {
                c.own.swap(&mut self.env);
            }
            self.current = None;
            let vc = self.vcpus.get_mut(slot)?.as_mut()?;
            vc.own.swap(&mut self.env);
            self.env.vcpu_id = vc.id;
            self.current = Some(slot);
        }
        self.vcpus.get_mut(slot)?.as_mut()
    }

    /// Frees vCPU `slot` and its state.
    fn remove_vcpu(&mut self, backend: &mut B, frames: &mut Frames, slot: usize) {
        if self.current == Some(slot) {
            if let Some(c) = self.vcpus.get_mut(slot).and_then(Option::as_mut) {
                c.own.swap(&mut self.env);
            }
            self.current = None;
        }
        if let Some(mut vc) = self.vcpus.get_mut(slot).and_then(Option::take) {
            vc.own.lazy.free(frames);
            backend.destroy_vcpu(frames, vc.cpu);
        }
    }
}
