//! `MOJITO_LOG_LAYOUT`: the hypervisor writes to its log where it keeps its
//! image and heap, each CPU's virtualization structures, and for the
//! control domain and every VM the root of its nested page tables and the
//! memory the hardware reads for its vCPU (VMCS/VMCB, bitmaps) and its
//! extended-state area. A test harness takes a dump of the machine's
//! physical memory, walks every nested table from these roots itself and
//! checks that each leaf maps memory that VM may own and none of this
//! (`tests/src/tables.rs`, docs/security.md). The lines go to the log,
//! which the control domain reads too: it learns where things are (it is
//! trusted with that, as with every guest's memory), never access to them.
//!
//! The format (one line per owner, parsed by the harness):
//! `layout: OWNER: nested 0xROOT; WHAT 0xSTART+BYTES; …` where OWNER is
//! `hypervisor`, `cpuN`, `control domain` or a VM's name (`vm3`), and
//! `nested` appears only for the control domain and VMs. The hypervisor's
//! line also names its own page tables (`cr3 0x…`) and the virtual address
//! of its physical-memory window (`window 0x…`): the harness walks those
//! tables itself and counts every frame they map outside the window as the
//! hypervisor's. A part that did not fit is counted (`N more`).

use super::objects::Objects;
use crate::mm::HostPhys;
use crate::virt::Backend;
use alloc::string::String;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

/// The hypervisor's image in physical memory (from the bootloader).
static IMAGE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Notes where the bootloader loaded the hypervisor's image.
pub fn note_image(start: u64, len: u64) {
    IMAGE[0].store(start, Ordering::Relaxed);
    IMAGE[1].store(len, Ordering::Relaxed);
}

/// The end of the highest memory region the firmware reported: the
/// bootloader's physical-memory window reaches that far.
static MEMORY_END: AtomicU64 = AtomicU64::new(0);

/// Notes a memory region's end (of any kind).
pub fn note_region_end(end: u64) {
    MEMORY_END.fetch_max(end, Ordering::Relaxed);
}

/// The most structures one owner names.
const MAX_PARTS: usize = 24;

/// The other CPUs' own structures, noted as they start (cpu0's come from
/// the back end at each request); on the heap, grown as CPUs come.
static CPUS: spin::Mutex<alloc::vec::Vec<Owner>> = spin::Mutex::new(alloc::vec::Vec::new());

/// Notes memory that CPU `cpu` (≥ 1) uses: its stacks and the structures
/// its back end made (`arch::smp`).
pub fn note_cpu(cpu: usize, what: &'static str, start: HostPhys, bytes: u64) {
    let mut cpus = CPUS.lock();
    if cpus.len() <= cpu {
        let more = cpu + 1 - cpus.len();
        if cpus.try_reserve(more).is_err() {
            CPUS_LOST.store(true, Ordering::Relaxed);
            return;
        }
        cpus.resize(cpu + 1, Owner::new());
    }
    if let Some(o) = cpus.get_mut(cpu) {
        o.add(what, start, bytes);
    }
}

/// A CPU's structures could not be noted (the heap was full).
static CPUS_LOST: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// One owner's part of the layout: its nested root and structures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Owner {
    pub nested: Option<HostPhys>,
    parts: [(&'static str, u64, u64); MAX_PARTS],
    n: usize,
    /// Parts that did not fit.
    lost: usize,
}

impl Owner {
    const fn new() -> Self {
        Self {
            nested: None,
            parts: [("", 0, 0); MAX_PARTS],
            n: 0,
            lost: 0,
        }
    }

    pub fn add(&mut self, what: &'static str, start: HostPhys, bytes: u64) {
        match self.parts.get_mut(self.n) {
            Some(p) => {
                *p = (what, start.raw(), bytes);
                self.n += 1;
            }
            None => self.lost += 1,
        }
    }

    /// The owner of a vCPU (its structures), its nested tables and its
    /// extended-state area.
    pub fn of<B: Backend>(
        backend: &B,
        vcpu: Option<&B::Vcpu>,
        nested: Option<HostPhys>,
        xsave: Option<(HostPhys, u64)>,
    ) -> Self {
        let mut o = Self {
            nested,
            ..Self::default()
        };
        if let Some(v) = vcpu {
            backend.structures(Some(v), &mut |w, s, b| o.add(w, s, b));
        }
        if let Some((s, b)) = xsave {
            o.add("XSAVE area", s, b);
        }
        o
    }

    /// Adds a vCPU's structures.
    pub fn add_vcpu<B: Backend>(&mut self, backend: &B, vcpu: &B::Vcpu) {
        backend.structures(Some(vcpu), &mut |w, s, b| self.add(w, s, b));
    }

    /// `log`, with the hypervisor's own page tables and window first.
    fn log_with_tables(&self, name: &str) -> bool {
        // (Host tests and the fuzzer run in user mode: no CR3 to read.)
        #[cfg(target_os = "none")]
        let cr3 = crate::arch::instr::read_cr3() & !0xfff;
        #[cfg(not(target_os = "none"))]
        let cr3 = 0u64;
        let window = crate::mm::phys::to_virt(HostPhys::new(0)).raw();
        let mut first = String::new();
        if first.try_reserve(64).is_err() {
            return false;
        }
        let size = MEMORY_END.load(Ordering::Relaxed);
        let _ = write!(first, "cr3 {cr3:#x}; window {window:#x}+{size}");
        self.log_prefixed(name, &first)
    }

    /// Writes `layout: NAME: …` to the log; false if the heap is full.
    fn log(&self, name: &str) -> bool {
        self.log_prefixed(name, "")
    }

    fn log_prefixed(&self, name: &str, first: &str) -> bool {
        let mut line = String::new();
        if line.try_reserve(128 + 40 * self.n + first.len()).is_err() {
            return false;
        }
        let _ = write!(line, "layout: {name}:");
        let mut sep = "";
        if !first.is_empty() {
            let _ = write!(line, " {first}");
            sep = ";";
        }
        if let Some(r) = self.nested {
            let _ = write!(line, " nested {:#x}", r.raw());
            sep = ";";
        }
        for &(what, start, bytes) in &self.parts[..self.n] {
            let _ = write!(line, "{sep} {what} {start:#x}+{bytes}");
            sep = ";";
        }
        if self.lost > 0 {
            let _ = write!(line, "{sep} {} more", self.lost);
        }
        crate::log!("{line}");
        true
    }
}

/// Logs the whole layout; returns the number of lines, or `ENOMEM`.
pub fn log<B: Backend>(
    backend: &B,
    objects: &Objects<B>,
    control_domain: &Owner,
) -> Result<u64, i32> {
    let enomem = abi::kvm::errno::ENOMEM;
    let mut hv = Owner::default();
    hv.add(
        "image",
        HostPhys::new(IMAGE[0].load(Ordering::Relaxed)),
        IMAGE[1].load(Ordering::Relaxed),
    );
    // (Host unit tests have no heap of frames.)
    #[cfg(target_os = "none")]
    {
        let (heap, heap_bytes) = crate::mm::heap::range();
        hv.add("heap", heap, heap_bytes);
    }
    let mut cpu = Owner::default();
    backend.structures(None, &mut |w, s, b| cpu.add(w, s, b));
    if !hv.log_with_tables("hypervisor") {
        return Err(enomem);
    }
    let mut lines = 1;
    // The calling CPU's own structures (the others' are noted at boot).
    let here = alloc::format!("cpu{}", crate::arch::percpu::index());
    for (owner, name) in [(&cpu, here.as_str()), (control_domain, "control domain")] {
        if !owner.log(name) {
            return Err(enomem);
        }
        lines += 1;
    }
    if CPUS_LOST.load(Ordering::Relaxed) {
        crate::log!("layout: cpus: no room to note them all; 1 more");
        lines += 1;
    }
    let others = CPUS.lock();
    for (cpu, owner) in others.iter().enumerate().filter(|(_, o)| o.n > 0) {
        let mut name = String::new();
        if name.try_reserve(8).is_err() {
            return Err(enomem);
        }
        let _ = write!(name, "cpu{cpu}");
        if !owner.log(&name) {
            return Err(enomem);
        }
        lines += 1;
    }
    for (name, owner) in objects.layouts(backend) {
        if !owner.log(name) {
            return Err(enomem);
        }
        lines += 1;
    }
    Ok(lines)
}
