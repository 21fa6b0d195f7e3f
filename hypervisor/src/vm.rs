//! A virtual machine: its RAM, nested page tables, one vCPU, and the
//! vendor-neutral state the exit handlers work on. Creating a VM either
//! succeeds completely or gives back everything it took (DESIGN.md D3).

use crate::guest::GuestRam;
use crate::mm::paging::{Perms, Table};
use crate::mm::{GuestPhys, PAGE_SIZE};
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

/// The vendor-neutral state the exit handlers need.
pub struct VmEnv {
    pub id: u16,
    pub name: String,
    pub ram: GuestRam,
    pub cpuid: CpuidTable,
    pub msrs: MsrState,
    pub lazy: Extended,
    pub console: ConsoleLine,
    pub stats: ExitStats,
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
fn load_plan(
    elf: &[u8],
    ram_size: u64,
    mut each: impl FnMut(u64, &[u8]),
) -> Result<u64, CreateError> {
    use xmas_elf::ElfFile;
    use xmas_elf::program::Type;
    let file = ElfFile::new(elf).map_err(|_| CreateError::BadImage("not an ELF file"))?;
    if file.header.pt1.class() != xmas_elf::header::Class::SixtyFour {
        return Err(CreateError::BadImage("not a 64-bit ELF"));
    }
    let entry = file.header.pt2.entry_point();
    if entry >= abi::guest::ENTRY_MAX {
        return Err(CreateError::BadImage(
            "entry point is not below 64 KiB (real mode)",
        ));
    }
    for ph in file.program_iter() {
        if ph.get_type() != Ok(Type::Load) {
            continue;
        }
        let (pa, filesz, memsz, off) = (
            ph.physical_addr(),
            ph.file_size(),
            ph.mem_size(),
            ph.offset(),
        );
        if filesz > memsz || pa.checked_add(memsz).is_none_or(|end| end > ram_size) {
            return Err(CreateError::BadImage("a segment lies outside guest RAM"));
        }
        let data = usize::try_from(off)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(o, n)| elf.get(o..o.checked_add(n)?))
            .ok_or(CreateError::BadImage("a segment lies outside the file"))?;
        each(pa, data);
    }
    Ok(entry)
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
        let entry = load_plan(elf, ram_size, |_, _| {})?;
        // The heap allocations first: a full heap must fail the request, not
        // abort the hypervisor after frames were taken.
        let mut owned_name = String::new();
        owned_name
            .try_reserve_exact(name.len())
            .map_err(|_| CreateError::NoMemory)?;
        owned_name.push_str(name);
        let cpuid = cpuid.try_clone().ok_or(CreateError::NoMemory)?;
        let mut ram = GuestRam::new(frames, ram_size).ok_or(CreateError::NoMemory)?;
        // Every step below undoes the earlier ones on failure.
        let mut loaded = true;
        load_plan(elf, ram_size, |pa, data| {
            loaded &= ram.write(GuestPhys::new(pa), data)
        })?;
        if !loaded {
            ram.free(frames);
            return Err(CreateError::BadImage("a segment lies outside guest RAM"));
        }
        let mut nested = match Table::<B::Nested>::new(frames) {
            Ok(t) => t,
            Err(_) => {
                ram.free(frames);
                return Err(CreateError::NoMemory);
            }
        };
        for (i, &frame) in ram.frames().iter().enumerate() {
            if nested
                .map(
                    frames,
                    GuestPhys::new(i as u64 * PAGE_SIZE),
                    frame,
                    Perms::RWX,
                )
                .is_err()
            {
                nested.destroy(frames);
                ram.free(frames);
                return Err(CreateError::NoMemory);
            }
        }
        let lazy = match Extended::new(frames, xstate) {
            Ok(l) => l,
            Err(_) => {
                nested.destroy(frames);
                ram.free(frames);
                return Err(CreateError::NoMemory);
            }
        };
        let mut vcpu = match backend.create_vcpu(frames, id, nested.root(), entry) {
            Ok(v) => v,
            Err(e) => {
                let mut lazy = lazy;
                lazy.free(frames);
                nested.destroy(frames);
                ram.free(frames);
                return Err(CreateError::Virt(e));
            }
        };
        let g = vcpu.gprs();
        g.rbx = u64::from(id);
        g.rcx = ram.size();
        Ok(Self {
            env: VmEnv {
                id,
                name: owned_name,
                ram,
                cpuid,
                msrs: MsrState::default(),
                lazy,
                console: ConsoleLine::default(),
                stats: ExitStats::default(),
            },
            status: Status::Runnable,
            parts: Some((vcpu, nested)),
        })
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
        self.env.lazy.free(frames);
    }
}
