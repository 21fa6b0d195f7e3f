//! Building the control domain at boot: most of the machine's RAM in 2 MiB
//! chunks, its ELF image loaded, the boot bundle copied in, and the state
//! for a 64-bit entry (identity page tables, a GDT, the boot-info page of
//! `abi::kvm::mojito::mojito_boot_info`), all in its own memory. The control
//! domain never learns a host-physical address.
//!
//! Its guest-physical memory map, from the top down:
//!
//! ```text
//! size - 2 MiB .. size     BOOT: boot-info page, GDT, page tables
//! bundle .. size - 2 MiB   BUNDLE: the boot bundle (2 MiB-aligned)
//! 0 .. bundle              RAM: the ELF image (linked at 2 MiB) and free RAM
//! ```

use super::{COM1_PORTS, KBD_DATA_PORT, KBD_STATUS_PORT};
use crate::guest::GuestRam;
use crate::mm::GuestPhys;
use crate::mm::paging::PageSize;
use crate::vcpu::cpuid::CpuidTable;
use crate::vcpu::lazy::HostXstate;
use crate::virt::{Backend, DescTable, Frames, GuestCpu, Segment, SystemRegs};
use crate::vm::{CreateError, Vm, VmSpec};
use abi::kvm::mojito::{self, mojito_boot_info, mojito_memory_region};

const CHUNK: u64 = PageSize::Size2M.bytes();
/// RAM below which the bundle may not start (the image lives there).
const MIN_RAM: u64 = 16 << 20;

/// Where things sit inside the BOOT chunk.
const INFO_OFFSET: u64 = 0x0000;
const GDT_OFFSET: u64 = 0x1000;
const PML4_OFFSET: u64 = 0x2000;
const PDPT_OFFSET: u64 = 0x3000;
const PD_OFFSET: u64 = 0x4000;

/// GDT selectors of the entry state.
const CODE64: u16 = 0x08;
const DATA: u16 = 0x10;
/// The GDT: null, 64-bit code (L, P, DPL 0, execute/read), flat data.
const GDT: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];

/// Page-table bits: present, writable, 2 MiB page (SDM Vol. 3A 5.5).
const PT_P_RW: u64 = 0x3;
const PT_PS: u64 = 1 << 7;

/// Entry-state control registers: CR0 = PE MP ET NE WP PG; CR4 = PAE
/// OSFXSR OSXMMEXCPT; EFER = LME LMA (+ NXE where the CPU has it).
const CR0_ENTRY: u64 = 0x8005_0033;
const CR4_ENTRY: u64 = 0x620;

/// How much of the pool the hypervisor keeps for VM metadata (nested page
/// tables, VMCS/VMCB, bitmaps): an eighth of the free memory, at least 64 MiB
/// and at most 1 GiB. The rest goes to the control domain.
fn reserve(free: u64) -> u64 {
    (free / 8).clamp(64 << 20, 1 << 30)
}

/// Makes the control domain from its ELF image and the boot bundle, with
/// at most `max_ram` bytes of RAM (`mojito.conf`'s `control-ram`), for
/// `nr_vcpus` CPUs (its boot-info page says how many it may start).
#[allow(clippy::too_many_arguments)]
pub fn create<B: Backend>(
    backend: &mut B,
    frames: &mut Frames,
    elf: &[u8],
    bundle: &[u8],
    max_ram: Option<u64>,
    cpuid: &CpuidTable,
    xstate: &HostXstate,
    nr_vcpus: u32,
) -> Result<Vm<B>, CreateError> {
    let image = abi::elf::Elf::parse(elf)
        .map_err(|_| CreateError::BadImage("control.elf is not a usable ELF file"))?;
    let (image_end, entry) = (image.end(), image.entry());
    let keep = reserve(frames.stats().free * 4096);
    let ram = GuestRam::new_large(frames, max_ram.unwrap_or(u64::MAX), keep)
        .ok_or(CreateError::NoMemory)?;
    let size = ram.size();
    let boot = size - CHUNK;
    let bundle_gpa = (boot.saturating_sub(bundle.len() as u64)) & !(CHUNK - 1);
    if bundle_gpa < MIN_RAM.max(image_end) {
        ram.free(frames);
        return Err(CreateError::NoMemory);
    }
    let spec = VmSpec {
        id: 0,
        name: "control",
        entry,
        cpuid,
        kind: crate::vm::VmKind::Control,
        open_ports: &[COM1_PORTS, KBD_DATA_PORT, KBD_STATUS_PORT],
    };
    let mut vm = Vm::assemble(backend, frames, ram, elf, &spec, xstate)?;
    // VMs may be backed by anything below the boot area (D3): the image and
    // the bundle are the control domain's to give away.
    if !super::memory::init(vm.env.ram.frames(), boot) {
        vm.stop(
            backend,
            frames,
            crate::vm::StopReason::Unhandled {
                what: "control domain set-up",
                detail: 0,
                rip: 0,
            },
        );
        return Err(CreateError::NoMemory);
    }
    let nxe = crate::arch::instr::cpuid(0x8000_0001, 0)[3] & (1 << 20) != 0;
    let hypercall = if B::NAME == "VMX" {
        mojito::MOJITO_HYPERCALL_VMCALL
    } else {
        mojito::MOJITO_HYPERCALL_VMMCALL
    };
    let ok = match vm.parts() {
        Some((cpu, env)) => {
            write_boot_area(&mut env.ram, boot, bundle_gpa, bundle, hypercall, nr_vcpus)
                && backend.activate(cpu)
                && {
                    cpu.without_nmis();
                    let regs = entry_state(boot, nxe);
                    let set = cpu.set_system_regs(&regs).is_ok();
                    cpu.gprs().rdi = boot + INFO_OFFSET;
                    set
                }
        }
        None => false,
    };
    if !ok {
        vm.stop(
            backend,
            frames,
            crate::vm::StopReason::Unhandled {
                what: "control domain set-up",
                detail: 0,
                rip: 0,
            },
        );
        return Err(CreateError::NoMemory);
    }
    Ok(vm)
}

/// What the control domain's vCPUs on the other CPUs are made from
/// (`control::cpus`): a view of its RAM, its nested tables, its CPUID and
/// the 64-bit entry state `create` gave its boot vCPU. None without memory.
pub fn ap_template<B: Backend>(cd: &Vm<B>) -> Option<super::cpus::ApTemplate> {
    let size = cd.env.ram.size();
    let nxe = crate::arch::instr::cpuid(0x8000_0001, 0)[3] & (1 << 20) != 0;
    Some(super::cpus::ApTemplate {
        ram: cd.env.ram.view()?,
        nested_root: cd.nested_root()?,
        cpuid: cd.env.cpuid.try_clone()?,
        regs: entry_state(size.checked_sub(CHUNK)?, nxe),
    })
}

/// Writes the bundle, page tables, GDT and boot-info page into the control
/// domain's RAM.
fn write_boot_area(
    ram: &mut GuestRam,
    boot: u64,
    bundle_gpa: u64,
    bundle: &[u8],
    hypercall: u32,
    nr_vcpus: u32,
) -> bool {
    let size = ram.size();
    let w = |ram: &mut GuestRam, gpa: u64, v: u64| ram.write(GuestPhys::new(gpa), &v.to_le_bytes());
    let mut ok = ram.write(GuestPhys::new(bundle_gpa), bundle)
        && ram.zero(GuestPhys::new(boot), CHUNK as usize);
    // Identity map of all RAM with 2 MiB pages: PML4[0] → PDPT → one PD
    // per GiB.
    ok &= w(ram, boot + PML4_OFFSET, (boot + PDPT_OFFSET) | PT_P_RW);
    let gibs = size.div_ceil(1 << 30);
    for g in 0..gibs {
        let pd = boot + PD_OFFSET + g * 0x1000;
        ok &= pd + 0x1000 <= size && w(ram, boot + PDPT_OFFSET + g * 8, pd | PT_P_RW);
        for e in 0..512u64 {
            let pa = (g << 30) + e * CHUNK;
            if pa < size {
                ok &= w(ram, pd + e * 8, pa | PT_P_RW | PT_PS);
            }
        }
    }
    for (i, d) in GDT.iter().enumerate() {
        ok &= w(ram, boot + GDT_OFFSET + 8 * i as u64, *d);
    }
    let mut info = mojito_boot_info {
        hypercall,
        nr_vcpus: nr_vcpus.clamp(1, crate::arch::percpu::MAX_CPUS as u32),
        bundle_gpa,
        bundle_len: bundle.len() as u64,
        ..Default::default()
    };
    let regions = [
        (0, bundle_gpa, mojito::MOJITO_MEMORY_RAM),
        (bundle_gpa, boot - bundle_gpa, mojito::MOJITO_MEMORY_BUNDLE),
        (boot, CHUNK, mojito::MOJITO_MEMORY_BOOT),
    ];
    for (slot, (base, len, type_)) in info.memory.iter_mut().zip(regions) {
        *slot = mojito_memory_region {
            base,
            len,
            type_,
            flags: 0,
        };
    }
    info.nr_memory = regions.len() as u32;
    ok && super::hypercall::write_arg(ram, boot + INFO_OFFSET, &info).is_ok()
}

/// 64-bit mode, flat segments, paging through the identity tables.
fn entry_state(boot: u64, nxe: bool) -> SystemRegs {
    let code = Segment {
        selector: CODE64,
        base: 0,
        limit: 0xffff_ffff,
        ar: 0xa09b,
    };
    let data = Segment {
        selector: DATA,
        base: 0,
        limit: 0xffff_ffff,
        ar: 0xc093,
    };
    let efer = crate::arch::msr::efer::LME
        | crate::arch::msr::efer::LMA
        | if nxe { crate::arch::msr::efer::NXE } else { 0 };
    SystemRegs {
        cs: code,
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        // A busy 64-bit TSS (VM entry wants one) and an unusable LDT.
        tr: Segment {
            selector: 0,
            base: 0,
            limit: 0x67,
            ar: Segment::TSS_BUSY_AR,
        },
        ldtr: Segment {
            selector: 0,
            base: 0,
            limit: 0,
            ar: 1 << 16,
        },
        gdt: DescTable {
            base: boot + GDT_OFFSET,
            limit: (GDT.len() * 8 - 1) as u16,
        },
        idt: DescTable { base: 0, limit: 0 },
        cr0: CR0_ENTRY,
        cr3: boot + PML4_OFFSET,
        cr4: CR4_ENTRY,
        efer,
    }
}
