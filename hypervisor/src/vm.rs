//! A virtual machine: its RAM, nested page tables, one vCPU, and the
//! vendor-neutral state the exit handlers work on. Creating a VM either
//! succeeds completely or gives back everything it took (DESIGN.md D3).

use crate::guest::GuestRam;
use crate::mm::GuestPhys;
use crate::mm::paging::{Perms, Table};
use crate::vcpu::cpuid::CpuidTable;
use crate::vcpu::io::ConsoleLine;
use crate::vcpu::lazy::{Extended, HostXstate};
use crate::vcpu::msr::MsrState;
use crate::vcpu::stats::ExitStats;
use crate::virt::{Backend, Frames, GuestCpu, VirtError};
use alloc::string::String;
use core::fmt;

/// Why a VM stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest wrote `status` to the end-of-test port.
    Exited(u32),
    /// HLT with nothing that could ever wake the vCPU.
    Halted {
        rip: u64,
        interrupts_enabled: bool,
    },
    TripleFault {
        rip: u64,
    },
    /// The hardware refused to enter the guest.
    EntryFailed {
        what: &'static str,
        code: u64,
    },
    /// A guest-physical access outside RAM (no device there yet).
    UnmappedAccess {
        gpa: u64,
        write: bool,
        fetch: bool,
        /// While an event was being delivered.
        delivery: bool,
        rip: u64,
    },
    /// An exit the hypervisor cannot handle yet.
    Unhandled {
        what: &'static str,
        detail: u64,
        rip: u64,
    },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Exited(status) => write!(f, "exited with status {status}"),
            Self::Halted {
                rip,
                interrupts_enabled,
            } => write!(
                f,
                "halted at rip {rip:#x} with interrupts {} and no interrupt source",
                if interrupts_enabled {
                    "enabled"
                } else {
                    "disabled"
                }
            ),
            Self::TripleFault { rip } => write!(f, "triple fault (rip {rip:#x})"),
            Self::EntryFailed { what, code } => write!(f, "VM entry failed: {what} ({code:#x})"),
            Self::UnmappedAccess {
                gpa,
                write,
                fetch,
                rip,
                ..
            } => write!(
                f,
                "{} of guest-physical {gpa:#x}, which is not RAM, at rip {rip:#x}",
                if fetch {
                    "instruction fetch"
                } else if write {
                    "write"
                } else {
                    "read"
                }
            ),
            Self::Unhandled { what, detail, rip } => {
                write!(f, "unhandled {what} ({detail:#x}) at rip {rip:#x}")
            }
        }
    }
}

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Runnable,
    Stopped(StopReason),
}

/// Who a VM answers to, which decides how its exits are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmKind {
    /// A test guest from the boot bundle, run by the hypervisor itself with
    /// the built-in ports (`vcpu::io`).
    Builtin,
    /// The control domain: its hypercalls are the KVM API (DESIGN.md D1:
    /// only it may use it); it reaches COM1 directly.
    Control,
    /// A VM the control domain made through the KVM API: what the
    /// hypervisor does not handle goes to its `kvm_run` page.
    Kvm,
}

/// What a new VM is.
pub struct VmSpec<'a> {
    pub id: u16,
    pub name: &'a str,
    /// Where the vCPU starts (real mode, CS = 0).
    pub entry: u64,
    pub cpuid: &'a CpuidTable,
    pub kind: VmKind,
    /// Ports the guest reaches directly (the control domain's COM1).
    pub open_ports: &'a [core::ops::RangeInclusive<u16>],
}

/// The vendor-neutral state the exit handlers need.
pub struct VmEnv {
    pub id: u16,
    /// An identity no other VM ever had (`arch::spec::new_vm_id`): entering
    /// a different VM than the last is when predictors are emptied.
    pub spec_id: u64,
    pub name: String,
    pub kind: VmKind,
    /// Hypercalls that exit to the VMM (`KVM_CAP_EXIT_HYPERCALL`'s mask).
    pub hypercall_exits: u64,
    /// Failed MSR accesses that exit to the VMM instead of raising #GP
    /// (`KVM_CAP_X86_USER_SPACE_MSR`'s `KVM_MSR_EXIT_REASON_*` mask).
    pub user_msr_exits: u32,
    /// `KVM_X86_SET_MSR_FILTER`'s filter, if one filters anything.
    pub msr_filter: Option<crate::vcpu::msr_filter::MsrFilter>,
    /// `KVM_XEN_HVM_CONFIG`: the hypercall-page MSR, if set.
    pub xen: Option<crate::control::xen::XenHvm>,
    pub ram: GuestRam,
    pub cpuid: CpuidTable,
    pub msrs: MsrState,
    pub lazy: Extended,
    pub console: ConsoleLine,
    pub stats: ExitStats,
    /// The vCPU's last decoded instruction (exits without a length).
    pub decoded: crate::vcpu::decode_cache::DecodeCache,
    /// The id (APIC ID) of the vCPU whose state this holds (KVM-API VMs
    /// with several vCPUs: `control::objects::KvmVm::select`).
    pub vcpu_id: u32,
}

impl VmEnv {
    /// A VM's handler state before anything ran: no hypercall or MSR
    /// exits, no filter, fresh MSRs, counts and decode cache, vCPU 0.
    pub fn new(
        id: u16,
        name: String,
        kind: VmKind,
        ram: GuestRam,
        cpuid: CpuidTable,
        lazy: Extended,
    ) -> Self {
        Self {
            id,
            spec_id: crate::arch::spec::new_vm_id(),
            name,
            kind,
            hypercall_exits: 0,
            user_msr_exits: 0,
            msr_filter: None,
            xen: None,
            ram,
            cpuid,
            msrs: MsrState::new(),
            lazy,
            console: ConsoleLine::default(),
            stats: ExitStats::default(),
            decoded: Default::default(),
            vcpu_id: 0,
        }
    }
}

/// A VM with one vCPU on back end `B`.
pub struct Vm<B: Backend> {
    pub env: VmEnv,
    pub status: Status,
    parts: Option<(B::Vcpu, Table<B::Nested>)>,
}

/// Why a VM could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The image is not a usable ELF (with what is wrong).
    BadImage(&'static str),
    NoMemory,
    Virt(VirtError),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadImage(what) => write!(f, "bad guest image: {what}"),
            Self::NoMemory => write!(f, "out of memory"),
            Self::Virt(e) => write!(f, "{e}"),
        }
    }
}

/// What is needed to load a test-guest ELF: (destination GPA, bytes to
/// copy, total size) per PT_LOAD segment, and the entry point.
/// Checks an ELF image's PT_LOAD segments against `ram_size` and calls
/// `each(paddr, file bytes, memsz)` for each; returns the entry point.
fn load_plan(
    elf: &[u8],
    ram_size: u64,
    mut each: impl FnMut(u64, &[u8], u64),
) -> Result<u64, CreateError> {
    use abi::elf::{Elf, ElfError};
    let file = Elf::parse(elf).map_err(|e| {
        CreateError::BadImage(match e {
            ElfError::NotElf => "not an ELF file",
            ElfError::Not64BitLittleEndian => "not a 64-bit little-endian ELF",
            ElfError::Truncated => "a header or segment lies outside the file",
        })
    })?;
    for seg in file.segments() {
        if seg
            .paddr
            .checked_add(seg.mem_size)
            .is_none_or(|end| end > ram_size)
        {
            return Err(CreateError::BadImage("a segment lies outside guest RAM"));
        }
    }
    for seg in file.segments() {
        each(seg.paddr, seg.data, seg.mem_size);
    }
    Ok(file.entry())
}

impl<B: Backend> Vm<B> {
    /// Makes a VM from a test-guest ELF (`abi::guest` conventions): `ram_size`
    /// bytes of RAM at GPA 0, the segments copied in, one vCPU in real mode
    /// at the entry point with EBX = `id` and ECX = the RAM size.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        backend: &mut B,
        frames: &mut Frames,
        id: u16,
        name: &str,
        elf: &[u8],
        ram_size: u64,
        cpuid: &CpuidTable,
        xstate: &HostXstate,
    ) -> Result<Self, CreateError> {
        let entry = load_plan(elf, ram_size, |_, _, _| {})?;
        if entry >= abi::guest::ENTRY_MAX {
            return Err(CreateError::BadImage(
                "entry point is not below 64 KiB (real mode)",
            ));
        }
        let ram = GuestRam::new(frames, ram_size).ok_or(CreateError::NoMemory)?;
        let spec = VmSpec {
            id,
            name,
            entry,
            cpuid,
            kind: VmKind::Builtin,
            open_ports: &[],
        };
        let mut vm = Self::assemble(backend, frames, ram, elf, &spec, xstate)?;
        if let Some((vcpu, env)) = vm.parts() {
            let g = vcpu.gprs();
            g.rbx = u64::from(id);
            g.rcx = env.ram.size();
        }
        Ok(vm)
    }

    /// Loads `elf` into `ram`, maps `ram` into new nested tables and makes
    /// the vCPU (in the real-mode reset state at `spec.entry`). Takes `ram`:
    /// on failure everything, `ram` included, goes back to the pool.
    pub fn assemble(
        backend: &mut B,
        frames: &mut Frames,
        mut ram: GuestRam,
        elf: &[u8],
        spec: &VmSpec<'_>,
        xstate: &HostXstate,
    ) -> Result<Self, CreateError> {
        // The heap allocations first: a full heap must fail the request, not
        // abort the hypervisor.
        let heap = || -> Option<(String, CpuidTable)> {
            let mut name = String::new();
            name.try_reserve_exact(spec.name.len()).ok()?;
            name.push_str(spec.name);
            Some((name, spec.cpuid.try_clone()?))
        };
        let Some((name, cpuid)) = heap() else {
            ram.free(frames);
            return Err(CreateError::NoMemory);
        };
        let mut loaded = true;
        let size = ram.size();
        let plan = load_plan(elf, size, |pa, data, memsz| {
            loaded &= ram.write(GuestPhys::new(pa), data);
            // The rest of the segment (.bss) is zero: RAM may not be.
            let tail = (memsz as usize).saturating_sub(data.len());
            loaded &= ram.zero(GuestPhys::new(pa + data.len() as u64), tail);
        });
        if let Err(e) = plan {
            ram.free(frames);
            return Err(e);
        }
        if !loaded {
            ram.free(frames);
            return Err(CreateError::BadImage("a segment lies outside guest RAM"));
        }
        let Ok(mut nested) = Table::<B::Nested>::new(frames) else {
            ram.free(frames);
            return Err(CreateError::NoMemory);
        };
        let page = ram.page_size();
        let mapped = ram.frames().iter().enumerate().all(|(i, &frame)| {
            let gpa = GuestPhys::new(i as u64 * page.bytes());
            nested
                .map_sized(frames, gpa, frame, Perms::RWX, page)
                .is_ok()
        });
        if !mapped {
            nested.destroy(frames);
            ram.free(frames);
            return Err(CreateError::NoMemory);
        }
        let mut lazy = match Extended::new(frames, xstate) {
            Ok(l) => l,
            Err(_) => {
                nested.destroy(frames);
                ram.free(frames);
                return Err(CreateError::NoMemory);
            }
        };
        let vcpu = match backend.create_vcpu(
            frames,
            spec.id,
            nested.root(),
            spec.entry,
            spec.open_ports,
        ) {
            Ok(v) => v,
            Err(e) => {
                lazy.free(frames);
                nested.destroy(frames);
                ram.free(frames);
                return Err(CreateError::Virt(e));
            }
        };
        Ok(Self {
            env: VmEnv::new(spec.id, name, spec.kind, ram, cpuid, lazy),
            status: Status::Runnable,
            parts: Some((vcpu, nested)),
        })
    }

    /// The vCPU, while the VM has one.
    pub fn vcpu(&self) -> Option<&B::Vcpu> {
        self.parts.as_ref().map(|(v, _)| v)
    }

    /// The root of its nested page tables, while it has them.
    pub fn nested_root(&self) -> Option<crate::mm::HostPhys> {
        self.parts.as_ref().map(|(_, t)| t.root())
    }

    /// The vCPU and the handler state, while the VM has them.
    pub fn parts(&mut self) -> Option<(&mut B::Vcpu, &mut VmEnv)> {
        let (vcpu, _) = self.parts.as_mut()?;
        Some((vcpu, &mut self.env))
    }

    /// Stops the VM for good and gives its vCPU, tables and RAM back. The
    /// name, statistics and reason stay for reporting.
    pub fn stop(&mut self, backend: &mut B, frames: &mut Frames, reason: StopReason) {
        self.status = Status::Stopped(reason);
        if let Some((vcpu, nested)) = self.parts.take() {
            backend.destroy_vcpu(frames, vcpu);
            nested.destroy(frames);
        }
        let ram = core::mem::replace(&mut self.env.ram, GuestRam::empty());
        ram.free(frames);
        // Its host addresses were the freed RAM's.
        self.env.decoded = Default::default();
        self.env.lazy.free(frames);
    }
}
