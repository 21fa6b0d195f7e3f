//! A scripted back end for unit tests of the run loop: each `KVM_RUN`
//! writes the next scripted exit into a run area in ordinary memory, as a
//! kernel would, and remembers what the VMM left in it. vCPU 0 follows
//! `script` (then HLT for ever); vCPU `i` > 0 follows `ap_scripts[i - 1]`
//! (then `KVM_EXIT_INTR` for ever, as an AP that is never started).
//!
//! With `KVM_CAP_COALESCED_PIO` among `caps`, a scripted one-element OUT to
//! a registered port zone goes into the VM's ring instead of exiting, and
//! the vCPU goes on to its next scripted exit, as the kernel does.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use abi::kvm::{
    KVM_EXIT_HLT, KVM_EXIT_HYPERCALL, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT,
    KVM_EXIT_IOAPIC_EOI, KVM_EXIT_MMIO, KVM_PIO_PAGE_OFFSET, errno, kvm_cpuid_entry2,
    kvm_enable_cap, kvm_irq_routing_msi, kvm_msi, kvm_msr_entry, kvm_regs, kvm_run, kvm_run_eoi,
    kvm_run_io, kvm_sregs,
};

use crate::api::{self, GuestMemory, GuestRam, Kick, RunPage, System, Vcpu, Vm};

/// One scripted `KVM_RUN` result.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// `KVM_EXIT_IO`: `count` elements of `size` bytes; for OUT, `data`
    /// holds them.
    Io {
        out: bool,
        port: u16,
        size: u8,
        count: u32,
        data: Vec<u8>,
    },
    /// `KVM_EXIT_MMIO`.
    Mmio {
        addr: u64,
        len: u32,
        write: Option<u64>,
    },
    /// `KVM_EXIT_HYPERCALL` with RAX = `nr`.
    Hypercall { nr: u64 },
    /// `KVM_EXIT_IOAPIC_EOI` of `vector`.
    Eoi(u8),
    /// Just this exit reason.
    Reason(u32),
    /// `KVM_RUN` fails with this errno.
    Fail(i32),
}

/// Every `KVM_SET_CPUID2`: the vCPU id and the table.
pub type CpuidLog = Arc<Mutex<Vec<(u32, Vec<kvm_cpuid_entry2>)>>>;

/// Every `KVM_SET_GSI_ROUTING`: its routes (GSI, MSI, flags).
pub type RoutingLog = Arc<Mutex<Vec<Vec<(u32, kvm_irq_routing_msi, u32)>>>>;

/// What the VMM answered, per exit: the IN data or MMIO data or hypercall
/// result it left in the run page.
pub type Answers = Arc<Mutex<Vec<Vec<u8>>>>;

/// The coalesced zones and ring of the fake VM.
#[derive(Debug, Default)]
pub struct FakeRing {
    /// Registered `(port, len)` zones.
    pub zones: Vec<(u16, u32)>,
    /// Writes in the ring, oldest first.
    pub writes: Vec<api::CoalescedWrite>,
    /// Every `KVM_(UN)REGISTER_COALESCED_MMIO`: `(register, port, len)`.
    pub requests: Vec<(bool, u16, u32)>,
}

impl FakeRing {
    fn holds(&self, port: u16, size: u8) -> bool {
        let (p, n) = (u32::from(port), u32::from(size));
        self.zones
            .iter()
            .any(|&(base, len)| p >= u32::from(base) && p + n <= u32::from(base) + len)
    }
}

/// The fake system.
pub struct FakeSystem {
    pub script: Vec<Scripted>,
    /// The scripts of vCPUs 1, 2, ...
    pub ap_scripts: Vec<Vec<Scripted>>,
    /// What `KVM_CHECK_EXTENSION` answers (0 for any other capability);
    /// `KVM_ENABLE_CAP` succeeds for these and fails with `EINVAL` for
    /// the rest.
    pub caps: Vec<(u32, u32)>,
    /// The vCPU id of every `KVM_RUN`, in order.
    pub runs: Arc<Mutex<Vec<u32>>>,
    /// Every `KVM_SET_CPUID2`: the vCPU id and the table.
    pub cpuids: CpuidLog,
    pub answers: Answers,
    /// Every `KVM_INTERRUPT` vector, in order.
    pub interrupts: Arc<Mutex<Vec<u32>>>,
    /// Every `KVM_SIGNAL_MSI`, in order (each answered 1: delivered).
    pub msis: Arc<Mutex<Vec<kvm_msi>>>,
    /// Every `KVM_SET_GSI_ROUTING`, in order (each accepted).
    pub routings: RoutingLog,
    /// What `refuses_mojito_msrs` answers (the fake has no MSR filter).
    pub mojito: bool,
    pub ring: Arc<Mutex<FakeRing>>,
}

impl FakeSystem {
    pub fn new(script: Vec<Scripted>) -> Self {
        Self {
            script,
            ap_scripts: Vec::new(),
            caps: Vec::new(),
            runs: Arc::default(),
            cpuids: Arc::default(),
            answers: Answers::default(),
            interrupts: Arc::default(),
            msis: Arc::default(),
            routings: Arc::default(),
            mojito: false,
            ring: Arc::default(),
        }
    }
}

impl System for FakeSystem {
    type Vm = FakeVm;

    fn api_version(&self) -> api::Result<u32> {
        Ok(12)
    }
    fn check_extension(&self, cap: u32) -> api::Result<u32> {
        Ok(cap_value(&self.caps, cap))
    }
    fn vcpu_mmap_size(&self) -> api::Result<usize> {
        Ok(AREA)
    }
    fn supported_cpuid(&self) -> api::Result<Vec<kvm_cpuid_entry2>> {
        Ok(vec![kvm_cpuid_entry2 {
            function: 1,
            ..Default::default()
        }])
    }
    fn refuses_mojito_msrs(&self) -> bool {
        self.mojito
    }
    fn clock(&self) -> Arc<dyn crate::clock::Clock> {
        // Stands still: scripted runs see the same counts every time.
        Arc::new(crate::clock::ManualClock::new(0))
    }
    fn create_vm(&self) -> api::Result<FakeVm> {
        Ok(FakeVm {
            script: self.script.clone().into(),
            ap_scripts: self.ap_scripts.clone(),
            caps: self.caps.clone(),
            runs: self.runs.clone(),
            cpuids: self.cpuids.clone(),
            answers: self.answers.clone(),
            interrupts: self.interrupts.clone(),
            msis: self.msis.clone(),
            routings: self.routings.clone(),
            ring: self.ring.clone(),
            slot0: None,
        })
    }
}

/// Heap memory standing in for guest RAM.
pub struct FakeMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: owned heap memory, only accessed through `GuestRam` copies.
unsafe impl Send for FakeMemory {}

impl FakeMemory {
    fn new(len: usize) -> Self {
        let boxed: Box<[u8]> = vec![0; len].into_boxed_slice();
        let ptr = NonNull::new(Box::into_raw(boxed).cast::<u8>()).unwrap();
        Self { ptr, len }
    }
}

impl Drop for FakeMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed slice of
        // exactly `len` bytes, freed once, here.
        drop(unsafe {
            Box::from_raw(core::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ))
        });
    }
}

impl GuestMemory for FakeMemory {
    fn ram(&self) -> GuestRam<'_> {
        // SAFETY: the allocation lives as long as `self`; no references
        // into it exist.
        unsafe { GuestRam::from_raw(self.ptr, self.len) }
    }
}

/// What the fake answers `KVM_CHECK_EXTENSION(cap)`.
fn cap_value(caps: &[(u32, u32)], cap: u32) -> u32 {
    caps.iter().find(|(c, _)| *c == cap).map_or(0, |(_, v)| *v)
}

/// The fake VM.
pub struct FakeVm {
    script: VecDeque<Scripted>,
    ap_scripts: Vec<Vec<Scripted>>,
    caps: Vec<(u32, u32)>,
    runs: Arc<Mutex<Vec<u32>>>,
    cpuids: CpuidLog,
    answers: Answers,
    interrupts: Arc<Mutex<Vec<u32>>>,
    msis: Arc<Mutex<Vec<kvm_msi>>>,
    routings: RoutingLog,
    ring: Arc<Mutex<FakeRing>>,
    slot0: Option<FakeMemory>,
}

impl Vm for FakeVm {
    type Memory = FakeMemory;
    type Vcpu = FakeVcpu;

    fn alloc_memory(&mut self, size: u64) -> api::Result<FakeMemory> {
        Ok(FakeMemory::new(size as usize))
    }
    fn set_user_memory_region(
        &mut self,
        slot: u32,
        _flags: u32,
        _gpa: u64,
        memory: FakeMemory,
    ) -> api::Result<()> {
        if slot != 0 || self.slot0.is_some() {
            return Err(errno::EEXIST);
        }
        self.slot0 = Some(memory);
        Ok(())
    }
    fn delete_user_memory_region(&mut self, slot: u32) -> api::Result<FakeMemory> {
        if slot != 0 {
            return Err(errno::ENOENT);
        }
        self.slot0.take().ok_or(errno::ENOENT)
    }
    fn change_user_memory_region(&mut self, slot: u32, _flags: u32, _gpa: u64) -> api::Result<()> {
        if slot != 0 || self.slot0.is_none() {
            return Err(errno::ENOENT);
        }
        Ok(())
    }
    fn get_dirty_log(&mut self, _slot: u32) -> api::Result<Vec<u64>> {
        Err(errno::EINVAL)
    }
    fn memory(&self, slot: u32) -> Option<GuestRam<'_>> {
        (slot == 0).then(|| self.slot0.as_ref().map(GuestMemory::ram))?
    }
    fn create_vcpu(&mut self, id: u32) -> api::Result<FakeVcpu> {
        let script = match id.checked_sub(1) {
            None => std::mem::take(&mut self.script),
            Some(i) => self
                .ap_scripts
                .get(i as usize)
                .cloned()
                .unwrap_or_default()
                .into(),
        };
        Ok(FakeVcpu {
            id,
            area: vec![0; AREA / 8],
            script,
            runs: self.runs.clone(),
            cpuids: self.cpuids.clone(),
            answers: self.answers.clone(),
            interrupts: self.interrupts.clone(),
            ring: self.ring.clone(),
            pending: None,
            regs: kvm_regs::default(),
            sregs: kvm_sregs::default(),
        })
    }
    fn check_extension(&self, cap: u32) -> api::Result<u32> {
        Ok(cap_value(&self.caps, cap))
    }
    fn enable_cap(&mut self, cap: &kvm_enable_cap) -> api::Result<()> {
        if cap_value(&self.caps, cap.cap) == 0 {
            return Err(errno::EINVAL);
        }
        Ok(())
    }
    fn signal_msi(&mut self, msi: &kvm_msi) -> api::Result<u32> {
        self.msis.lock().unwrap().push(*msi);
        Ok(1)
    }
    fn set_gsi_routing(&mut self, routes: &[(u32, kvm_irq_routing_msi, u32)]) -> api::Result<()> {
        self.routings.lock().unwrap().push(routes.to_vec());
        Ok(())
    }
    fn register_coalesced_pio(&mut self, port: u16, len: u32) -> api::Result<()> {
        if cap_value(&self.caps, abi::kvm::KVM_CAP_COALESCED_PIO) == 0 {
            return Err(errno::EINVAL);
        }
        let mut ring = self.ring.lock().unwrap();
        ring.requests.push((true, port, len));
        ring.zones.push((port, len));
        Ok(())
    }
    fn unregister_coalesced_pio(&mut self, port: u16, len: u32) -> api::Result<()> {
        if cap_value(&self.caps, abi::kvm::KVM_CAP_COALESCED_PIO) == 0 {
            return Err(errno::EINVAL);
        }
        let mut ring = self.ring.lock().unwrap();
        ring.requests.push((false, port, len));
        let (p, n) = (u32::from(port), len);
        ring.zones
            .retain(|&(base, l)| !(p >= u32::from(base) && p + n <= u32::from(base) + l));
        Ok(())
    }
    fn take_coalesced(&mut self, out: &mut Vec<api::CoalescedWrite>) {
        out.append(&mut self.ring.lock().unwrap().writes);
    }
}

const AREA: usize = 8192;

/// Kicks nothing: the fake never blocks.
#[derive(Clone)]
pub struct NoKick;

impl Kick for NoKick {
    fn kick(&self) {}
}

/// The fake vCPU.
pub struct FakeVcpu {
    id: u32,
    area: Vec<u64>,
    script: VecDeque<Scripted>,
    runs: Arc<Mutex<Vec<u32>>>,
    cpuids: CpuidLog,
    answers: Answers,
    interrupts: Arc<Mutex<Vec<u32>>>,
    ring: Arc<Mutex<FakeRing>>,
    /// The previous exit, whose answer is collected on the next run.
    pending: Option<Scripted>,
    regs: kvm_regs,
    sregs: kvm_sregs,
}

impl FakeVcpu {
    fn page(&mut self) -> RunPage<'_> {
        let ptr = NonNull::new(self.area.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the area is owned by `self`, 8-byte aligned, AREA bytes,
        // and borrowed mutably for the page's lifetime.
        unsafe { RunPage::from_raw(ptr, AREA) }.unwrap()
    }

    /// What the VMM left in the run page for the previous exit.
    fn collect_answer(&mut self) {
        let Some(prev) = self.pending.take() else {
            return;
        };
        let (run, rest) = self.page().into_parts();
        let answer = match prev {
            Scripted::Io {
                out: false,
                size,
                count,
                ..
            } => {
                let start = PIO_OFFSET - size_of::<kvm_run>();
                rest[start..start + usize::from(size) * count as usize].to_vec()
            }
            Scripted::Mmio {
                len, write: None, ..
            } => {
                // SAFETY: union members of plain integers.
                let data = unsafe { run.exit.mmio.data };
                data[..len as usize].to_vec()
            }
            Scripted::Hypercall { .. } => {
                // SAFETY: as above.
                let ret = unsafe { run.exit.hypercall.ret };
                ret.to_le_bytes().to_vec()
            }
            _ => return,
        };
        self.answers.lock().unwrap().push(answer);
    }
}

const PIO_OFFSET: usize = KVM_PIO_PAGE_OFFSET as usize * 4096;

impl Vcpu for FakeVcpu {
    type Kicker = NoKick;

    fn run(&mut self) -> api::Result<RunPage<'_>> {
        self.collect_answer();
        self.runs.lock().unwrap().push(self.id);
        let done = if self.id == 0 {
            Scripted::Reason(KVM_EXIT_HLT)
        } else {
            Scripted::Fail(errno::EINTR)
        };
        let next = loop {
            let next = self.script.pop_front().unwrap_or(done.clone());
            // A coalesced OUT: into the ring, and on without an exit.
            if let Scripted::Io {
                out: true,
                port,
                size,
                count: 1,
                data,
            } = &next
            {
                let mut ring = self.ring.lock().unwrap();
                if matches!(size, 1 | 2 | 4) && ring.holds(*port, *size) {
                    let mut bytes = [0u8; 4];
                    bytes[..data.len().min(4)].copy_from_slice(&data[..data.len().min(4)]);
                    ring.writes.push(api::CoalescedWrite {
                        port: *port,
                        len: *size,
                        data: bytes,
                    });
                    continue;
                }
            }
            break next;
        };
        self.pending = Some(next.clone());
        let (run, rest) = self.page().into_parts();
        match next {
            Scripted::Io {
                out,
                port,
                size,
                count,
                data,
            } => {
                run.exit_reason = KVM_EXIT_IO;
                run.exit.io = kvm_run_io {
                    direction: if out { KVM_EXIT_IO_OUT } else { KVM_EXIT_IO_IN },
                    size,
                    port,
                    count,
                    data_offset: PIO_OFFSET as u64,
                };
                let start = PIO_OFFSET - size_of::<kvm_run>();
                rest[start..start + data.len()].copy_from_slice(&data);
            }
            Scripted::Mmio { addr, len, write } => {
                run.exit_reason = KVM_EXIT_MMIO;
                run.exit.mmio.phys_addr = addr;
                run.exit.mmio.len = len;
                run.exit.mmio.is_write = u8::from(write.is_some());
                run.exit.mmio.data = write.unwrap_or(0).to_le_bytes();
            }
            Scripted::Hypercall { nr } => {
                run.exit_reason = KVM_EXIT_HYPERCALL;
                run.exit.hypercall.nr = nr;
            }
            Scripted::Eoi(vector) => {
                run.exit_reason = KVM_EXIT_IOAPIC_EOI;
                run.exit.eoi = kvm_run_eoi { vector };
            }
            Scripted::Reason(r) => run.exit_reason = r,
            Scripted::Fail(e) => return Err(e),
        }
        Ok(self.page())
    }
    fn run_page(&mut self) -> RunPage<'_> {
        self.page()
    }
    fn kicker(&self) -> NoKick {
        NoKick
    }
    fn get_regs(&self) -> api::Result<kvm_regs> {
        Ok(self.regs)
    }
    fn set_regs(&mut self, regs: &kvm_regs) -> api::Result<()> {
        self.regs = *regs;
        Ok(())
    }
    fn get_sregs(&self) -> api::Result<kvm_sregs> {
        Ok(self.sregs)
    }
    fn set_sregs(&mut self, sregs: &kvm_sregs) -> api::Result<()> {
        self.sregs = *sregs;
        Ok(())
    }
    fn set_guest_debug(&mut self, _control: u32, _debugreg: [u64; 8]) -> api::Result<()> {
        Ok(())
    }
    fn interrupt(&mut self, vector: u32) -> api::Result<()> {
        self.interrupts
            .lock()
            .map_err(|_| errno::EINVAL)?
            .push(vector);
        Ok(())
    }
    fn set_cpuid2(&mut self, entries: &[kvm_cpuid_entry2]) -> api::Result<()> {
        self.cpuids
            .lock()
            .unwrap()
            .push((self.id, entries.to_vec()));
        Ok(())
    }
    fn get_msrs(&self, _entries: &mut [kvm_msr_entry]) -> api::Result<usize> {
        Ok(0)
    }
    fn set_msrs(&mut self, _entries: &[kvm_msr_entry]) -> api::Result<usize> {
        Ok(0)
    }
}
