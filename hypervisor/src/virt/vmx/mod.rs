//! Intel VMX (SDM Vol. 3C chapters 24–29): VMXON, one VMCS per vCPU, EPT,
//! VPID, unrestricted guest. Mirrors `virt::svm` file for file:
//!
//! | here        | svm/        | what                                  |
//! |-------------|-------------|---------------------------------------|
//! | `caps.rs`   | `caps.rs`   | what the CPU offers                   |
//! | `vmcs.rs`   | `vmcb.rs`   | the control structure's layout        |
//! | `vcpu.rs`   | `vcpu.rs`   | one vCPU: set-up and state accessors  |
//! | `exit.rs`   | `exit.rs`   | hardware exit → `virt::Exit`          |
//! | `ept.rs`    | `npt.rs`    | nested page-table format              |
//! | `entry.rs`  | `entry.rs`  | the assembly world switch             |

pub mod caps;
pub mod entry;
pub mod ept;
pub mod exit;
pub mod vcpu;
pub mod vmcs;

use crate::arch::instr::{rdmsr, read_cr0, read_cr4, write_cr0, write_cr4, wrmsr};
use crate::arch::msr;
use crate::mm::{HostPhys, phys};
use crate::virt::{Backend, ExitInfo, Frames, VirtError};
use caps::{adjust, basic, ept_vpid, feature_control};
use core::arch::asm;
pub use vcpu::VmxVcpu;
use vmcs::ctl;

/// CR4.VMXE (SDM Vol. 3A 2.5).
pub const CR4_VMXE: u64 = 1 << 13;
const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;

/// The control values and limits chosen for this CPU.
#[derive(Clone, Copy, Debug)]
pub struct Controls {
    pub pin: u32,
    pub proc: u32,
    pub proc2: u32,
    pub exit: u32,
    pub entry: u32,
    pub revision: u32,
    /// CR0 bits a guest must keep at 1 / may set (unrestricted guest: PE
    /// and PG are free).
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    pub ept_vpid: u64,
    /// The VMX-preemption timer's start value (0: not used): it counts the
    /// TSC divided by 2^IA32_VMX_MISC[4:0] down while a guest runs and makes
    /// it exit at zero (SDM Vol. 3C 26.5.1). It backs up external-interrupt
    /// exiting, which Bochs only honours while the guest has IF = 1, so the
    /// hypervisor's tick always reaches it within about one period.
    pub preemption_timer: u32,
}

impl Controls {
    pub fn vpid(&self) -> bool {
        self.proc2 & ctl::proc2::ENABLE_VPID != 0
    }

    /// Whether guests may get NMIs: virtual NMIs, and NMI-window exiting.
    pub fn guest_nmis(&self) -> bool {
        self.pin & ctl::pin::VIRTUAL_NMIS != 0
    }
}

/// VMX turned on for one CPU.
pub struct Vmx {
    pub controls: Controls,
    vmxon_region: HostPhys,
    /// The VMCS that VMPTRLD made current on this CPU.
    current: Option<HostPhys>,
}

/// Performs VMXON/VMPTRLD/VMCLEAR-style instructions that take the physical
/// address of a region in memory. Returns false on VMfail.
///
/// # Safety
/// The instruction must be valid in the current state (see each caller).
unsafe fn region_op(op: RegionOp, pa: HostPhys) -> bool {
    let addr = pa.raw();
    let failed: u8;
    // SAFETY: guaranteed by the caller; the operand is a pointer to a u64
    // on our stack holding the region's physical address.
    unsafe {
        match op {
            RegionOp::Vmxon => asm!("vmxon [{}]", "setna {}", in(reg) &addr, out(reg_byte) failed),
            RegionOp::Vmclear => {
                asm!("vmclear [{}]", "setna {}", in(reg) &addr, out(reg_byte) failed)
            }
            RegionOp::Vmptrld => {
                asm!("vmptrld [{}]", "setna {}", in(reg) &addr, out(reg_byte) failed)
            }
        }
    }
    failed == 0
}

#[derive(Clone, Copy)]
enum RegionOp {
    Vmxon,
    Vmclear,
    Vmptrld,
}

/// INVEPT/INVVPID types (SDM Vol. 3C 29.4.3).
const INV_SINGLE_CONTEXT: u64 = 1;
const INV_ALL_CONTEXT: u64 = 2;

/// Reads a VMX capability MSR.
///
/// # Safety
/// CPUID must report VMX (then IA32_VMX_BASIC through the CR4 fixed-bit
/// MSRs exist); the secondary-control, EPT/VPID and TRUE_* MSRs must only
/// be read once IA32_VMX_BASIC and the primary controls say they exist.
unsafe fn cap_msr(index: u32) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { rdmsr(index) }
}

impl Vmx {
    fn read_controls() -> Result<Controls, VirtError> {
        // SAFETY: `enable` checked CPUID for VMX.
        let vmx_basic = unsafe { cap_msr(msr::IA32_VMX_BASIC) };
        let true_ctls = vmx_basic & basic::TRUE_CONTROLS != 0;
        // SAFETY: the TRUE_* MSRs are read only when IA32_VMX_BASIC says
        // they exist; the plain ones exist wherever VMX does.
        let cap = |plain: u32, tru: u32| unsafe { cap_msr(if true_ctls { tru } else { plain }) };

        let pin = adjust(
            ctl::pin::EXTERNAL_INTERRUPT_EXITING | ctl::pin::NMI_EXITING,
            ctl::pin::PREEMPTION_TIMER | ctl::pin::VIRTUAL_NMIS,
            cap(
                msr::IA32_VMX_PINBASED_CTLS,
                msr::IA32_VMX_TRUE_PINBASED_CTLS,
            ),
        )
        .map_err(|_| VirtError::Unsupported("VMX external-interrupt/NMI exiting"))?;
        let proc_cap = cap(
            msr::IA32_VMX_PROCBASED_CTLS,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS,
        );
        // A guest's NMIs need both: virtual-NMI blocking to know when its
        // handler IRETs, the NMI window to be told (SDM Vol. 3C 25.6.1,
        // 25.6.2). Without them NMIs for guests are dropped.
        let guest_nmis = (proc_cap >> 32) as u32 & ctl::proc::NMI_WINDOW_EXITING != 0;
        let proc = adjust(
            ctl::proc::HLT_EXITING
                | ctl::proc::CR8_LOAD_EXITING
                | ctl::proc::CR8_STORE_EXITING
                | ctl::proc::USE_IO_BITMAPS
                | ctl::proc::USE_MSR_BITMAPS
                | ctl::proc::MWAIT_EXITING
                | ctl::proc::MONITOR_EXITING
                | ctl::proc::RDPMC_EXITING
                | ctl::proc::USE_TSC_OFFSETTING
                | ctl::proc::ACTIVATE_SECONDARY,
            0,
            proc_cap,
        )
        .map_err(|_| VirtError::Unsupported("VMX I/O and MSR bitmaps or secondary controls"))?;
        // SAFETY: ACTIVATE_SECONDARY is allowed, so the MSR exists.
        let proc2_cap = unsafe { cap_msr(msr::IA32_VMX_PROCBASED_CTLS2) };
        let proc2 = adjust(
            ctl::proc2::ENABLE_EPT | ctl::proc2::UNRESTRICTED_GUEST,
            ctl::proc2::ENABLE_VPID | ctl::proc2::ENABLE_RDTSCP,
            proc2_cap,
        )
        .map_err(|missing| {
            if missing & ctl::proc2::ENABLE_EPT != 0 {
                VirtError::Unsupported("EPT")
            } else {
                VirtError::Unsupported("unrestricted guest")
            }
        })?;
        let exit = adjust(
            ctl::exit::HOST_ADDRESS_SPACE_SIZE
                | ctl::exit::SAVE_EFER
                | ctl::exit::LOAD_EFER
                | ctl::exit::SAVE_PAT
                | ctl::exit::LOAD_PAT,
            ctl::exit::SAVE_DEBUG_CONTROLS,
            cap(msr::IA32_VMX_EXIT_CTLS, msr::IA32_VMX_TRUE_EXIT_CTLS),
        )
        .map_err(|_| VirtError::Unsupported("VMX EFER/PAT switching on exit"))?;
        let entry_cap = cap(msr::IA32_VMX_ENTRY_CTLS, msr::IA32_VMX_TRUE_ENTRY_CTLS);
        let entry = adjust(
            ctl::entry::LOAD_EFER | ctl::entry::LOAD_PAT,
            ctl::entry::LOAD_DEBUG_CONTROLS,
            entry_cap,
        )
        .map_err(|_| VirtError::Unsupported("VMX EFER/PAT loading on entry"))?;
        if (entry_cap >> 32) as u32 & ctl::entry::IA32E_MODE_GUEST == 0 {
            return Err(VirtError::Unsupported("64-bit guests"));
        }
        // SAFETY: EPT is allowed, so the EPT/VPID capability MSR exists.
        let ept_vpid = unsafe { cap_msr(msr::IA32_VMX_EPT_VPID_CAP) };
        if ept_vpid & ept_vpid::PAGE_WALK_4 == 0 || ept_vpid & ept_vpid::MEMORY_TYPE_WB == 0 {
            return Err(VirtError::Unsupported("4-level write-back EPT"));
        }
        if ept_vpid & ept_vpid::INVEPT == 0 {
            return Err(VirtError::Unsupported("INVEPT"));
        }
        let mut proc2 = proc2;
        if ept_vpid & ept_vpid::INVVPID == 0 {
            proc2 &= !ctl::proc2::ENABLE_VPID;
        }
        // SAFETY: the fixed-bit MSRs exist wherever VMX does.
        let fixed = |m| unsafe { cap_msr(m) };
        // SAFETY: IA32_VMX_MISC exists wherever VMX does.
        let rate = unsafe { cap_msr(msr::IA32_VMX_MISC) } & 0x1f;
        let period = crate::arch::apic::period_tsc();
        let mut pin = pin;
        if !guest_nmis {
            pin &= !ctl::pin::VIRTUAL_NMIS;
        }
        let preemption_timer = if pin & ctl::pin::PREEMPTION_TIMER != 0 && period != 0 {
            u32::try_from((period >> rate).max(1)).unwrap_or(u32::MAX)
        } else {
            pin &= !ctl::pin::PREEMPTION_TIMER;
            0
        };
        Ok(Controls {
            preemption_timer,
            pin,
            proc,
            proc2,
            exit,
            entry,
            revision: (vmx_basic & basic::REVISION_MASK) as u32,
            cr0_fixed0: fixed(msr::IA32_VMX_CR0_FIXED0) & !(CR0_PE | CR0_PG),
            cr0_fixed1: fixed(msr::IA32_VMX_CR0_FIXED1),
            cr4_fixed0: fixed(msr::IA32_VMX_CR4_FIXED0),
            cr4_fixed1: fixed(msr::IA32_VMX_CR4_FIXED1),
            ept_vpid,
        })
    }

    /// INVEPT single-context for `eptp` (all-context if single is missing).
    pub fn invept(&self, eptp: u64) {
        let kind = if self.controls.ept_vpid & ept_vpid::INVEPT_SINGLE != 0 {
            INV_SINGLE_CONTEXT
        } else {
            INV_ALL_CONTEXT
        };
        let desc: [u64; 2] = [eptp, 0];
        // SAFETY: VMX is on and INVEPT is supported (checked in `enable`).
        unsafe { asm!("invept {}, [{}]", in(reg) kind, in(reg) &desc, options(nostack)) };
    }

    /// INVVPID single-context for `vpid` (all-context if single is missing).
    pub fn invvpid(&self, vpid: u16) {
        if !self.controls.vpid() {
            return;
        }
        let kind = if self.controls.ept_vpid & ept_vpid::INVVPID_SINGLE != 0 {
            INV_SINGLE_CONTEXT
        } else {
            INV_ALL_CONTEXT
        };
        let desc: [u64; 2] = [u64::from(vpid), 0];
        // SAFETY: VMX is on and INVVPID is supported (VPID is only enabled
        // when it is).
        unsafe { asm!("invvpid {}, [{}]", in(reg) kind, in(reg) &desc, options(nostack)) };
    }
}

impl Backend for Vmx {
    type Vcpu = VmxVcpu;
    type Nested = ept::Ept;
    const NAME: &'static str = "VMX";
    const SWITCHES_SYSCALL_MSRS: bool = false;
    const SWITCHES_CR2: bool = false;
    const SWITCHES_DR6: bool = false;

    fn enable(frames: &mut Frames) -> Result<Self, VirtError> {
        let cpuid = raw_cpuid::CpuId::new();
        if !cpuid.get_feature_info().is_some_and(|f| f.has_vmx()) {
            return Err(VirtError::Unsupported("the CPU does not offer VMX"));
        }
        // SAFETY: IA32_FEATURE_CONTROL exists on every VMX-capable CPU.
        let fc = unsafe { rdmsr(msr::IA32_FEATURE_CONTROL) };
        if fc & feature_control::LOCK == 0 {
            // SAFETY: unlocked, so writable; enabling VMX outside SMX and
            // locking is what firmware normally does.
            unsafe {
                wrmsr(
                    msr::IA32_FEATURE_CONTROL,
                    fc | feature_control::LOCK | feature_control::VMX_OUTSIDE_SMX,
                )
            };
        } else if fc & feature_control::VMX_OUTSIDE_SMX == 0 {
            return Err(VirtError::DisabledByFirmware(
                "VMX (IA32_FEATURE_CONTROL is locked with VMX off; enable VT-x in the firmware setup)",
            ));
        }
        let controls = Self::read_controls()?;
        // SDM Vol. 3C 24.8 "Restrictions on VMX Operation": CR0 and CR4 must
        // respect the fixed bits while in VMX operation.
        // SAFETY: setting bits the CPU requires in VMX operation (NE, VMXE)
        // does not disturb the hypervisor's paging or protection.
        unsafe {
            let fixed0 = rdmsr(msr::IA32_VMX_CR0_FIXED0);
            let fixed1 = rdmsr(msr::IA32_VMX_CR0_FIXED1);
            write_cr0((read_cr0() | fixed0) & fixed1);
            let fixed0 = rdmsr(msr::IA32_VMX_CR4_FIXED0);
            let fixed1 = rdmsr(msr::IA32_VMX_CR4_FIXED1);
            write_cr4(((read_cr4() | CR4_VMXE) | fixed0) & fixed1);
        }
        let region = frames.alloc_zeroed().ok_or(VirtError::NoMemory)?;
        // SAFETY: the frame is ours; the revision identifier goes in its
        // first 4 bytes (SDM Vol. 3C 25.11.5).
        unsafe { phys::ptr::<u32>(region).write(controls.revision) };
        // SAFETY: CR0/CR4 are adjusted and the region is initialised.
        if !unsafe { region_op(RegionOp::Vmxon, region) } {
            return Err(VirtError::Failed("VMXON"));
        }
        Ok(Self {
            controls,
            vmxon_region: region,
            current: None,
        })
    }

    fn describe(&self, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let c = &self.controls;
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "VMX: EPT 4-level write-back (2M pages {}, 1G pages {}, A/D {}), VPID {}, unrestricted guest, \
             RDTSCP {}, preemption timer {}, true controls {}, VMCS revision {:#x}",
            yes(c.ept_vpid & ept_vpid::LARGE_PAGE_2M != 0),
            yes(c.ept_vpid & ept_vpid::LARGE_PAGE_1G != 0),
            yes(c.ept_vpid & ept_vpid::ACCESSED_DIRTY != 0),
            yes(c.vpid()),
            yes(c.proc2 & ctl::proc2::ENABLE_RDTSCP != 0),
            yes(c.preemption_timer != 0),
            // SAFETY: the capability MSR exists (read in `enable`).
            yes(unsafe { cap_msr(msr::IA32_VMX_BASIC) } & basic::TRUE_CONTROLS != 0),
            c.revision
        )
    }

    fn create_vcpu(
        &mut self,
        frames: &mut Frames,
        vm_id: u16,
        nested_root: HostPhys,
        entry: u64,
        open_ports: &[core::ops::RangeInclusive<u16>],
    ) -> Result<VmxVcpu, VirtError> {
        let vcpu = VmxVcpu::new(frames, &self.controls, vm_id, nested_root, open_ports)?;
        // SAFETY: VMX is on; the VMCS was initialised with the revision id.
        if !unsafe { region_op(RegionOp::Vmclear, vcpu.vmcs) } {
            vcpu.free(frames);
            return Err(VirtError::Failed("VMCLEAR"));
        }
        self.current = None;
        let mut vcpu = vcpu;
        if !self.activate(&mut vcpu) {
            vcpu.free(frames);
            return Err(VirtError::Failed("VMPTRLD"));
        }
        if let Err(e) = vcpu.init_vmcs(&self.controls, entry) {
            self.destroy_vcpu(frames, vcpu);
            return Err(e);
        }
        // Stale translations from a VM that used the same EPT root or VPID.
        self.invept(vcpu.eptp);
        self.invvpid(vcpu.vpid);
        Ok(vcpu)
    }

    fn structures(
        &self,
        vcpu: Option<&VmxVcpu>,
        each: &mut dyn FnMut(&'static str, HostPhys, u64),
    ) {
        match vcpu {
            Some(v) => v.structures(each),
            None => each("VMXON region", self.vmxon_region, 4096),
        }
    }

    fn destroy_vcpu(&mut self, frames: &mut Frames, vcpu: VmxVcpu) {
        // SAFETY: VMX is on; VMCLEAR on a VMCS of ours is always valid.
        unsafe { region_op(RegionOp::Vmclear, vcpu.vmcs) };
        if self.current == Some(vcpu.vmcs) {
            self.current = None;
        }
        self.invept(vcpu.eptp);
        self.invvpid(vcpu.vpid);
        vcpu.free(frames);
    }

    fn activate(&mut self, vcpu: &mut VmxVcpu) -> bool {
        if self.current != Some(vcpu.vmcs) {
            // SAFETY: VMX is on and the VMCS was VMCLEARed when made, and
            // by `release` before it left another CPU.
            if !unsafe { region_op(RegionOp::Vmptrld, vcpu.vmcs) } {
                // Whatever VMCS was current may still be: forget it, so that
                // nothing writes another vCPU's VMCS by mistake.
                self.current = None;
                return false;
            }
            self.current = Some(vcpu.vmcs);
            let here = crate::arch::percpu::index();
            if vcpu.cpu != here {
                // Arrived from another CPU: this CPU's TSS, GDT and GS
                // (SDM Vol. 3C 25.5.2), and nothing this CPU's TLB may
                // still hold for it from an earlier stay.
                vcpu.set_host_bases();
                vcpu.cpu = here;
                vcpu.flush_on_entry = true;
                self.invept(vcpu.eptp);
            }
        }
        true
    }

    fn flush_nested(&mut self, vcpu: &mut VmxVcpu) {
        // On entry, on whichever CPU that is (the guest uses no
        // translation before).
        vcpu.flush_ept_on_entry = true;
    }

    fn release(&mut self, vcpu: &mut VmxVcpu) {
        // SAFETY: VMX is on; VMCLEAR on a VMCS of ours is always valid.
        unsafe { region_op(RegionOp::Vmclear, vcpu.vmcs) };
        if self.current == Some(vcpu.vmcs) {
            self.current = None;
        }
        vcpu.launched = false;
    }

    fn run(&mut self, vcpu: &mut VmxVcpu, _new_context: bool) -> ExitInfo {
        // VPID and EPT tag translations per VM: a switch needs no flush.
        if !self.activate(vcpu) {
            return ExitInfo {
                exit: crate::virt::Exit::EntryFailed {
                    what: "VMPTRLD failed",
                    code: 0,
                },
                len: None,
            };
        }
        if vcpu.flush_on_entry {
            vcpu.flush_on_entry = false;
            self.invvpid(vcpu.vpid);
        }
        if vcpu.flush_ept_on_entry {
            vcpu.flush_ept_on_entry = false;
            self.invept(vcpu.eptp);
        }
        vcpu.run()
    }
}
