//! `MOJITO_LOG_LAYOUT`: the hypervisor writes to its log where it keeps its
//! image and heap, each CPU's virtualization structures, and for the
//! control domain and every VM the root of its nested page tables and the
//! memory the hardware reads for its vCPU (VMCS/VMCB, bitmaps) and its
//! extended-state area. A test harness takes a dump of the machine's
//! physical memory, walks every nested table from these roots itself and
//! checks that each leaf maps memory that VM may own and none of this
//! (`tests/src/tables.rs`, docs/security.md). The control domain sees no
//! address: the lines go to the log only.
//!
//! The format (one line per owner, parsed by the harness):
//! `layout: OWNER: nested 0xROOT; WHAT 0xSTART+BYTES; …` where OWNER is
//! `hypervisor`, `cpu0`, `control domain` or a VM's name (`vm3`), and
//! `nested` appears only for the control domain and VMs.

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

/// The most structures one owner names.
const MAX_PARTS: usize = 8;

/// The most CPUs whose own structures are listed (cpu0's come from the
/// back end at each request; the others' are noted as they start).
const MAX_CPUS: usize = 16;
static CPUS: spin::Mutex<[Owner; MAX_CPUS]> = spin::Mutex::new([const { Owner::new() }; MAX_CPUS]);

/// Notes memory that CPU `cpu` (≥ 1) uses: its stacks and the structures
/// its back end made (`arch::smp`).
pub fn note_cpu(cpu: usize, what: &'static str, start: HostPhys, bytes: u64) {
    if let Some(o) = CPUS.lock().get_mut(cpu) {
        o.add(what, start, bytes);
    }
}

/// One owner's part of the layout: its nested root and structures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Owner {
    pub nested: Option<HostPhys>,
    parts: [(&'static str, u64, u64); MAX_PARTS],
    n: usize,
}

impl Owner {
    const fn new() -> Self {
        Self {
            nested: None,
            parts: [("", 0, 0); MAX_PARTS],
            n: 0,
        }
    }

    pub fn add(&mut self, what: &'static str, start: HostPhys, bytes: u64) {
        if let Some(p) = self.parts.get_mut(self.n) {
            *p = (what, start.raw(), bytes);
            self.n += 1;
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

    /// Writes `layout: NAME: …` to the log; false if the heap is full.
    fn log(&self, name: &str) -> bool {
        let mut line = String::new();
        if line.try_reserve(64 + 40 * self.n).is_err() {
            return false;
        }
        let _ = write!(line, "layout: {name}:");
        let mut sep = "";
        if let Some(r) = self.nested {
            let _ = write!(line, " nested {:#x}", r.raw());
            sep = ";";
        }
        for &(what, start, bytes) in &self.parts[..self.n] {
            let _ = write!(line, "{sep} {what} {start:#x}+{bytes}");
            sep = ";";
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
    let mut lines = 0;
    for (owner, name) in [
        (&hv, "hypervisor"),
        (&cpu, "cpu0"),
        (control_domain, "control domain"),
    ] {
        if !owner.log(name) {
            return Err(enomem);
        }
        lines += 1;
    }
    let others = *CPUS.lock();
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
