//! The local APIC of a KVM-API VM's vCPU, in the hypervisor
//! (`KVM_CAP_SPLIT_IRQCHIP`, DESIGN.md D4): the exits that reach it (xAPIC
//! MMIO, the x2APIC and TSC-deadline MSRs, IA32_APIC_BASE, HLT, CR8),
//! interrupt delivery before each entry, its timer on the host's
//! (`arch::apic::set_guest_deadline`), and the requests about it
//! (`KVM_SIGNAL_MSI`, `KVM_GET_LAPIC`/`KVM_SET_LAPIC`,
//! `KVM_GET_MP_STATE`/`KVM_SET_MP_STATE`). The register logic is
//! `vcpu::lapic`'s; the time it sees is the guest's TSC.
//!
//! A VM's vCPUs take turns on one CPU: an IPI sets the target's IRR (or
//! its pending INIT or SIPI, taken when it next runs, as KVM's pending APIC
//! events), and the sender's RUN ends so that the VMM runs the target. NMI
//! and SMI IPIs are dropped. An EOI of a level-triggered vector a reserved
//! IOAPIC pin routes here ends RUN with `KVM_EXIT_IOAPIC_EOI`
//! (`control::routing`).

use super::kvm::{Intr, RunEnd, internal};
use super::mmio::{self, LocalDevice};
use super::objects::{KvmVcpu, KvmVm, Peers};
use crate::guest::alu::mask;
use crate::guest::insn::Kind;
use crate::vcpu::insn_len;
use crate::vcpu::lapic::{self, Delivery, Effect, Lapic, Mode, Shorthand};
use crate::virt::{Backend, Exit, ExitInfo, Fault, GuestCpu};
use crate::vm::VmEnv;
use abi::kvm::errno::{EINVAL, EPERM};
use abi::kvm::{
    KVM_INTERNAL_ERROR_EMULATION, KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED,
    KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED, KVM_MSI_VALID_DEVID, kvm_lapic_state,
    kvm_msi,
};

/// RFLAGS.IF (SDM Vol. 1 3.4.3.3).
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS after reset and INIT: only the reserved bit 1.
const RFLAGS_RESET: u64 = 1 << 1;
/// KVM's limit on `KVM_CAP_SPLIT_IRQCHIP`'s reserved IOAPIC pins
/// (`MAX_NR_RESERVED_IOAPIC_PINS`).
pub const MAX_RESERVED_PINS: u64 = 48;
/// The ID register's offset in the register page (SDM Vol. 3A Table 11-1).
const APIC_ID_OFFSET: usize = 0x20;
/// IA32_APIC_BASE's address bits, 51:12 (SDM Vol. 3A 11.4.4).
const BASE_ADDRESS: u64 = 0x000f_ffff_ffff_f000;
/// LVT LINT0 (SDM Vol. 3A 11.5.1): where the 8259's ExtINT comes in.
const LVT_LINT0: u32 = 0x350;
/// LVT Timer (SDM Vol. 3A 11.5.1).
const LVT_TIMER: u32 = 0x320;
const LVT_MASKED: u32 = 1 << 16;
/// LVT delivery mode ExtINT (bits 10:8 = 111).
const DELIVERY_EXTINT: u32 = 0b111;
/// An MSI's address (Intel SDM Vol. 3A 11.11.1): destination ID in bits
/// 19:12, destination mode (1: logical) in bit 2.
const MSI_DEST_SHIFT: u32 = 12;
const MSI_DEST_LOGICAL: u32 = 1 << 2;
/// An MSI's data (11.11.2): vector 7:0, delivery mode 10:8, trigger mode
/// (1: level) bit 15.
const MSI_TRIGGER_LEVEL: u32 = 1 << 15;
/// MSI data bits 10:8 = 100: NMI (SDM Vol. 3A 11.11.2).
const MSI_DELIVERY_NMI: u32 = 0b100;

/// What an exit was to the local APIC. (`RunEnd` is built once per exit;
/// boxing it would cost an allocation on the exit path, D8.)
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Not the LAPIC's: the exit loop goes on with it.
    NotMine,
    /// Carried out here; the guest runs on.
    Done,
    /// Carried out here, and another vCPU of the VM got an interrupt (or
    /// INIT/SIPI) it can act on: the VMM should run it (`Intr::Sibling`).
    Sibling,
    /// HLT: the vCPU waits for an interrupt ([`wait`]).
    Halt,
    /// An instruction that cannot be emulated: for the VMM.
    Exit(RunEnd),
}

/// The guest's TSC now.
fn guest_tsc<C: GuestCpu>(cpu: &C) -> u64 {
    crate::arch::instr::rdtsc().wrapping_add(cpu.tsc_offset())
}

fn is_apic_msr(index: u32) -> bool {
    index == lapic::IA32_APIC_BASE
        || index == lapic::IA32_TSC_DEADLINE
        || (lapic::X2APIC_MSR_FIRST..=lapic::X2APIC_MSR_LAST).contains(&index)
}

/// Handles an exit that belongs to the local APIC of `vc`, if it has one.
pub fn exit<B: Backend>(
    vc: &mut KvmVcpu<B>,
    peers: &mut Peers<'_, B>,
    env: &mut VmEnv,
    info: ExitInfo,
) -> Outcome {
    if vc.lapic.is_none() {
        return Outcome::NotMine;
    }
    match info.exit {
        Exit::Rdmsr | Exit::Wrmsr if is_apic_msr(vc.cpu.gprs().rcx as u32) => {
            msr(vc, peers, env, info)
        }
        Exit::NestedPageFault(f)
            if !f.fetch
                && f.final_address
                && !f.during_delivery
                && vc.lapic.as_ref().is_some_and(|l| on_page(l, f.gpa.raw())) =>
        {
            let Some(mut l) = vc.lapic.take() else {
                return Outcome::NotMine;
            };
            let mut dev = Mmio {
                lapic: &mut l,
                now: guest_tsc(&vc.cpu),
                effect: Effect::None,
            };
            let start = mmio::emulate_local(vc, env, f, &mut dev);
            let effect = dev.effect;
            let mut self_nmi = false;
            let applied = apply(&mut l, effect, peers, &mut self_nmi);
            vc.nmi_pending |= self_nmi && vc.cpu.nmi_capable();
            sync_cr8(&mut vc.cpu, &l);
            vc.lapic = Some(l);
            match start {
                mmio::Start::Exit(end) => Outcome::Exit(end),
                mmio::Start::Resume => applied.outcome(),
            }
        }
        Exit::Hlt => {
            let Some(len) = insn_len(&vc.cpu, env, info, Kind::Hlt) else {
                return Outcome::Exit(internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]));
            };
            vc.cpu.skip_instruction(len);
            vc.mp_state = KVM_MP_STATE_HALTED;
            vc.halted_if = vc.cpu.rflags() & RFLAGS_IF != 0;
            vc.halted_nmi_masked = vc.cpu.nmi_masked();
            Outcome::Halt
        }
        _ => Outcome::NotMine,
    }
}

/// After the exit loop carried out a MOV to CR8: the task priority follows.
pub fn cr8_written<B: Backend>(vc: &mut KvmVcpu<B>) {
    let cr8 = vc.cpu.read_cr(8);
    if let Some(l) = vc.lapic.as_mut() {
        // CR8 holds TPR[7:4] (SDM Vol. 3A 11.8.6).
        l.set_tpr(((cr8 & 0xf) << 4) as u8);
    }
}

/// CR8 as the LAPIC's TPR says, after a register write.
fn sync_cr8<C: GuestCpu>(cpu: &mut C, l: &Lapic) {
    let cr8 = u64::from(l.tpr() >> 4);
    if cpu.read_cr(8) != cr8 {
        let _ = cpu.write_cr(8, cr8);
    }
}

/// RDMSR/WRMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC MSR.
/// (KVM_X86_SET_MSR_FILTER does not apply to them: KVM ignores filters on
/// the x2APIC range; for the other two Mojito does the same.)
fn msr<B: Backend>(
    vc: &mut KvmVcpu<B>,
    peers: &mut Peers<'_, B>,
    env: &mut VmEnv,
    info: ExitInfo,
) -> Outcome {
    let write = matches!(info.exit, Exit::Wrmsr);
    let kind = if write { Kind::Wrmsr } else { Kind::Rdmsr };
    let Some(len) = insn_len(&vc.cpu, env, info, kind) else {
        return Outcome::Exit(internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]));
    };
    let now = guest_tsc(&vc.cpu);
    const CPUID_X2APIC: u32 = 1 << 21;
    let plain = crate::vcpu::cpuid::Dynamic {
        apic_id: 0,
        osxsave: false,
        xcr0: 1,
    };
    let x2apic = write && env.cpuid.lookup(1, 0, &plain)[2] & CPUID_X2APIC != 0;
    let Some(l) = vc.lapic.as_mut() else {
        return Outcome::NotMine;
    };
    let g = vc.cpu.gprs();
    let index = g.rcx as u32;
    let mut applied = Applied::Nothing;
    let ok = if write {
        let value = g.edx_eax();
        let r = match index {
            // KVM: #GP for x2APIC mode when the guest's CPUID lacks it.
            lapic::IA32_APIC_BASE if value & lapic::APIC_BASE_X2APIC != 0 && !x2apic => Err(()),
            lapic::IA32_APIC_BASE => l.set_base(value, false).map(|()| Effect::None),
            lapic::IA32_TSC_DEADLINE => Ok(l.set_tsc_deadline(value, now)),
            _ => l.msr_write(index, value, now),
        };
        let mut self_nmi = false;
        let ok = r
            .map(|effect| applied = apply(l, effect, peers, &mut self_nmi))
            .is_ok();
        vc.nmi_pending |= self_nmi && vc.cpu.nmi_capable();
        ok
    } else {
        let r = match index {
            lapic::IA32_APIC_BASE => Ok(l.base()),
            lapic::IA32_TSC_DEADLINE => Ok(l.tsc_deadline()),
            _ => l.msr_read(index, now),
        };
        r.map(|v| g.set_edx_eax(v)).is_ok()
    };
    if ok {
        sync_cr8(&mut vc.cpu, l);
        vc.cpu.skip_instruction(len);
    } else {
        vc.cpu.inject(Fault::GP0);
    }
    applied.outcome()
}

/// What carrying out a register write led to.
enum Applied {
    Nothing,
    /// Another vCPU got something it can act on and may run now.
    Sibling,
    /// An EOI the VMM's IOAPIC must see (`KVM_EXIT_IOAPIC_EOI`).
    Eoi(u8),
}

impl Applied {
    fn outcome(self) -> Outcome {
        match self {
            Self::Nothing => Outcome::Done,
            Self::Sibling => Outcome::Sibling,
            Self::Eoi(vector) => {
                let mut exit = abi::kvm::kvm_run_exit::default();
                exit.eoi = abi::kvm::kvm_run_eoi { vector };
                Outcome::Exit(RunEnd::Exit(abi::kvm::KVM_EXIT_IOAPIC_EOI, exit))
            }
        }
    }
}

/// The xAPIC page, as the MMIO decoder reaches it.
struct Mmio<'a> {
    lapic: &'a mut Lapic,
    now: u64,
    effect: Effect,
}

fn on_page(l: &Lapic, gpa: u64) -> bool {
    gpa & !0xfff == l.base() & BASE_ADDRESS
}

impl LocalDevice for Mmio<'_> {
    fn claims(&self, gpa: u64) -> bool {
        on_page(self.lapic, gpa)
    }

    /// As KVM: all ones while the APIC is off or in x2APIC mode; the bytes
    /// of one 32-bit register at any alignment within it, else nothing.
    fn read(&mut self, gpa: u64, size: u8) -> u64 {
        if self.lapic.mode() != Mode::XApic {
            return mask(size);
        }
        let offset = (gpa & 0xfff) as u32;
        let within = offset & 0xf;
        if within + u32::from(size) > 4 {
            return 0;
        }
        let v = self.lapic.mmio_read(offset & !0xf, self.now);
        u64::from(v >> (8 * within)) & mask(size)
    }

    /// As KVM: only aligned 32-bit writes reach a register.
    fn write(&mut self, gpa: u64, size: u8, value: u64) {
        if self.lapic.mode() != Mode::XApic || size != 4 || gpa & 0xf != 0 {
            return;
        }
        self.effect = self
            .lapic
            .mmio_write((gpa & 0xfff) as u32, value as u32, self.now);
    }
}

/// Carries out what a register write asked for.
fn apply<B: Backend>(
    l: &mut Lapic,
    effect: Effect,
    peers: &mut Peers<'_, B>,
    self_nmi: &mut bool,
) -> Applied {
    let ipi = match effect {
        Effect::Ipi(ipi) => ipi,
        Effect::LevelEoi(vector) if peers.routes.eoi_exits(l, vector) => {
            return Applied::Eoi(vector);
        }
        // The timer is re-armed before the next entry.
        Effect::None | Effect::TimerChanged | Effect::LevelEoi(_) => return Applied::Nothing,
    };
    let (to_self, to_others) = match ipi.shorthand {
        Shorthand::ToSelf => (true, false),
        Shorthand::AllIncludingSelf => (true, true),
        Shorthand::AllExcludingSelf => (false, true),
        Shorthand::None => (l.matches(ipi.dest, ipi.logical), true),
    };
    let addressed = |p: &KvmVcpu<B>| {
        p.lapic
            .as_ref()
            .is_some_and(|pl| ipi.shorthand != Shorthand::None || pl.matches(ipi.dest, ipi.logical))
    };
    let mut woke = false;
    match ipi.delivery {
        Delivery::Fixed | Delivery::LowestPriority => {
            // Lowest priority goes to one of those addressed: the sender
            // if it is, else the first other (KVM picks one too).
            let lowest = ipi.delivery == Delivery::LowestPriority;
            if to_self {
                l.deliver(ipi.vector, ipi.level_triggered);
                if lowest {
                    return Applied::Nothing;
                }
            }
            if to_others {
                // (An APIC that is off or software-disabled takes none.)
                for p in peers.iter_mut().filter(|p| addressed(p)) {
                    let took = p
                        .lapic
                        .as_mut()
                        .is_some_and(|pl| pl.deliver(ipi.vector, ipi.level_triggered));
                    woke |= took;
                    if lowest && took {
                        break;
                    }
                }
            }
        }
        // KVM: INIT unless it is the level de-assert (level-triggered with
        // level 0), which only synchronizes arbitration IDs; a SIPI is
        // latched and taken if the target waits for one. Not to itself.
        Delivery::Init if !ipi.level_triggered || ipi.level_assert => {
            for p in peers.iter_mut().filter(|p| addressed(p)) {
                p.init_pending = true;
                woke = true;
            }
        }
        Delivery::StartUp => {
            for p in peers.iter_mut().filter(|p| addressed(p)) {
                p.sipi_vector = Some(ipi.vector);
                woke = true;
            }
        }
        // SDM Vol. 3A 11.6.1: an NMI ignores the vector; the CPU latches
        // one. To this vCPU too (`self_nmi`: its `KvmVcpu` is the caller's).
        Delivery::Nmi => {
            *self_nmi |= to_self;
            if to_others {
                // (A vCPU that cannot take NMIs drops them.)
                for p in peers
                    .iter_mut()
                    .filter(|p| addressed(p) && p.cpu.nmi_capable())
                {
                    p.nmi_pending = true;
                    woke = true;
                }
            }
        }
        // SMI, ExtINT, the de-assert and reserved modes: dropped.
        _ => {}
    }
    if woke && peers.any_can_run() {
        Applied::Sibling
    } else {
        Applied::Nothing
    }
}

/// Takes the INIT and SIPI other vCPUs sent this one, as KVM's
/// `kvm_apic_accept_events`: INIT resets the vCPU (the BSP runs again from
/// the reset vector, an AP waits for SIPI), a SIPI starts an AP waiting for
/// one in real mode at CS = vector << 8, IP = 0 (SDM Vol. 3A 9.4.4).
pub fn accept_events<B: Backend>(backend: &mut B, vc: &mut KvmVcpu<B>) {
    if core::mem::take(&mut vc.init_pending) {
        // An event half-delivered when it last exited goes too, and NMIs
        // are unblocked (SDM Vol. 3A 9.1.1: INIT's state).
        vc.cpu.cancel_event();
        vc.nmi_pending = false;
        vc.cpu.set_nmi_masked(false);
        vc.cpu.clear_interrupt_shadow();
        *vc.cpu.gprs() = crate::virt::Gprs::default();
        vc.cpu.set_rflags(RFLAGS_RESET);
        super::kvm::reset(backend, vc);
        vc.pending = None;
        if let Some(l) = vc.lapic.as_mut() {
            l.init();
        }
        let _ = vc.cpu.write_cr(8, 0);
        vc.mp_state = if vc.id == 0 {
            KVM_MP_STATE_RUNNABLE
        } else {
            KVM_MP_STATE_INIT_RECEIVED
        };
    }
    if let Some(vector) = vc.sipi_vector.take()
        && vc.mp_state == KVM_MP_STATE_INIT_RECEIVED
    {
        let mut regs = vc.cpu.system_regs();
        regs.cs.selector = u16::from(vector) << 8;
        regs.cs.base = u64::from(vector) << 12;
        let _ = vc.cpu.set_system_regs(&regs);
        vc.cpu.set_rip(0);
        vc.mp_state = KVM_MP_STATE_RUNNABLE;
    }
}

/// An AP that waits for INIT or SIPI: RUN gives the CPU to a sibling that
/// can run, or (none can) waits until the control domain wants its CPU.
pub fn wait_for_start<B: Backend>(peers: &Peers<'_, B>) -> RunEnd {
    loop {
        if peers.any_can_run() {
            return RunEnd::Interrupted(Intr::Sibling);
        }
        if let Some(end) = super::kvm::control_domain_wants_cpu() {
            return end;
        }
        if !crate::arch::apic::timer_running() {
            return RunEnd::Interrupted(Intr::Tick);
        }
        // A sibling's timer may make it runnable first.
        let host_now = crate::arch::instr::rdtsc();
        crate::arch::apic::set_guest_deadline(peers.earliest_deadline(host_now));
        crate::arch::instr::wait_for_interrupt();
    }
}

/// Whether the LAPIC takes the VMM's 8259 interrupts (ExtINT through
/// `KVM_INTERRUPT`): off, or LINT0 unmasked in ExtINT mode (KVM's
/// `kvm_apic_accept_pic_intr`).
pub fn accepts_pic(l: &Lapic) -> bool {
    if l.mode() == Mode::Disabled {
        return true;
    }
    let lvt0 = lvt(l, LVT_LINT0);
    lvt0 & LVT_MASKED == 0 && (lvt0 >> 8) & 0b111 == DELIVERY_EXTINT
}

/// Before an entry: fires the timer if due, arms the host's for the next
/// deadline, and delivers the highest interrupt the priorities allow if the
/// guest can take it now. True if one waits for the guest to be able to
/// (the caller opens the interrupt window).
pub fn before_entry<B: Backend>(vc: &mut KvmVcpu<B>) -> bool {
    let offset = vc.cpu.tsc_offset();
    vc.tsc_offset = offset;
    let Some(l) = vc.lapic.as_mut() else {
        return false;
    };
    let host_now = crate::arch::instr::rdtsc();
    l.update_timer(host_now.wrapping_add(offset));
    let host = host_deadline(l, offset, host_now);
    if crate::arch::apic::guest_deadline() != host {
        crate::arch::apic::set_guest_deadline(host);
    }
    // An NMI goes before any interrupt (SDM Vol. 3A 6.9), one per entry;
    // while the guest blocks NMIs, the NMI window says when it stops.
    if vc.nmi_pending {
        if vc.cpu.nmi_allowed() {
            vc.cpu.inject_nmi();
            vc.cpu.set_nmi_window(false);
            vc.nmi_pending = false;
            // An interrupt waiting behind it: the window says when.
            return l.pending().is_some();
        }
        vc.cpu.set_nmi_window(true);
    }
    // The VMM's ExtINT goes first, as on KVM (its own window logic).
    if vc.irq.is_some() && accepts_pic(l) {
        return false;
    }
    let Some(vector) = l.pending() else {
        return false;
    };
    if !vc.cpu.interrupt_allowed() {
        return true;
    }
    vc.cpu.inject_interrupt(vector);
    l.acknowledge(vector);
    false
}

/// The host timer forgets the guest's (the control domain gets the CPU).
pub fn leave() {
    if crate::arch::apic::guest_deadline().is_some() {
        crate::arch::apic::set_guest_deadline(None);
    }
}

/// A halted vCPU waits on this CPU until an interrupt it can take (with
/// RFLAGS.IF set, as KVM's `kvm_arch_vcpu_runnable`), or until the control
/// domain wants its CPU back: then RUN returns `KVM_EXIT_INTR` and the next
/// RUN waits on. With a sibling that can run, RUN returns at once for the
/// VMM to run that one.
pub fn wait<B: Backend>(vc: &mut KvmVcpu<B>, peers: &Peers<'_, B>) -> Option<RunEnd> {
    loop {
        let offset = vc.cpu.tsc_offset();
        vc.tsc_offset = offset;
        let host_now = crate::arch::instr::rdtsc();
        let Some(l) = vc.lapic.as_mut() else {
            vc.mp_state = KVM_MP_STATE_RUNNABLE;
            return None;
        };
        l.update_timer(host_now.wrapping_add(offset));
        // The same test its siblings make (`KvmVcpu::can_run`).
        if (vc.nmi_pending && !vc.halted_nmi_masked) || (vc.halted_if && has_wakeup(vc, host_now)) {
            vc.mp_state = KVM_MP_STATE_RUNNABLE;
            return None;
        }
        if let Some(end) = super::kvm::control_domain_wants_cpu() {
            return Some(end);
        }
        if peers.any_can_run() {
            return Some(RunEnd::Interrupted(Intr::Sibling));
        }
        if !crate::arch::apic::timer_running() {
            // Nothing would wake this CPU: the control domain polls.
            return Some(RunEnd::Interrupted(Intr::Tick));
        }
        // Its own timer and its siblings': one of them may be the next to
        // have something to do.
        let own = vc
            .lapic
            .as_ref()
            .and_then(|l| host_deadline(l, offset, host_now));
        let next = match (own, peers.earliest_deadline(host_now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        crate::arch::apic::set_guest_deadline(next);
        crate::arch::instr::wait_for_interrupt();
    }
}

/// When `l`'s timer fires, in host TSC cycles, for a vCPU whose guest TSC
/// is the host's + `offset`: measured from now, so that a deadline far in
/// the guest's future or past cannot wrap into the host's past or future.
pub fn host_deadline(l: &Lapic, offset: u64, host_now: u64) -> Option<u64> {
    let guest_now = host_now.wrapping_add(offset);
    l.timer_deadline()
        .map(|d| host_now.saturating_add(d.saturating_sub(guest_now)))
}

/// Whether a halted vCPU has something to wake for, RFLAGS.IF aside: the
/// VMM's ExtINT its LAPIC takes, a deliverable LAPIC vector, or its timer
/// due (`tsc_offset` as of its last run).
pub fn has_wakeup<B: Backend>(vc: &KvmVcpu<B>, host_now: u64) -> bool {
    let Some(l) = vc.lapic.as_ref() else {
        return vc.irq.is_some();
    };
    let guest_now = host_now.wrapping_add(vc.tsc_offset);
    (vc.irq.is_some() && accepts_pic(l))
        || l.pending().is_some()
        || (lvt(l, LVT_TIMER) & LVT_MASKED == 0
            && l.timer_deadline().is_some_and(|d| d <= guest_now))
}

/// An LVT register, in either mode (xAPIC offset; all ones while the APIC
/// is off, which reads as masked).
fn lvt(l: &Lapic, offset: u32) -> u32 {
    match l.mode() {
        Mode::X2Apic => l
            .msr_read(lapic::X2APIC_MSR_FIRST + offset / 16, 0)
            .map_or(u32::MAX, |v| v as u32),
        _ => l.mmio_read(offset, 0),
    }
}

/// `KVM_SIGNAL_MSI`: KVM's answers — -EINVAL without the split irqchip or
/// with unknown flags, -EPERM (KVM's -1) when no APIC is addressed, else
/// how many APICs accepted it (0: the guest's APIC is software-disabled).
/// Fixed and lowest-priority delivery only; others are -EINVAL (not yet).
/// Lowest priority goes to the first APIC addressed.
pub fn signal_msi<B: Backend>(vm: &mut KvmVm<B>, m: &kvm_msi) -> Result<u64, i32> {
    if vm.split_irqchip.is_none() || m.flags & !KVM_MSI_VALID_DEVID != 0 {
        return Err(EINVAL);
    }
    let dest = (m.address_lo >> MSI_DEST_SHIFT) & 0xff;
    let logical = m.address_lo & MSI_DEST_LOGICAL != 0;
    let vector = (m.data & 0xff) as u8;
    let delivery = (m.data >> 8) & 0b111;
    let level = m.data & MSI_TRIGGER_LEVEL != 0;
    // Fixed (000), lowest priority (001) and NMI (100) of the MSI data's
    // delivery modes (SDM Vol. 3A 11.11.2).
    if delivery > 1 && delivery != MSI_DELIVERY_NMI {
        return Err(EINVAL);
    }
    let mut addressed = false;
    let mut accepted = 0;
    for vc in vm.vcpus.iter_mut().flatten() {
        let Some(l) = vc.lapic.as_mut() else {
            continue;
        };
        if l.matches(dest, logical) {
            addressed = true;
            if delivery == MSI_DELIVERY_NMI {
                if vc.cpu.nmi_capable() {
                    vc.nmi_pending = true;
                    accepted += 1;
                }
                continue;
            }
            let took = l.deliver(vector, level);
            accepted += u64::from(took);
            // Lowest priority: the first that takes it.
            if delivery == 1 && took {
                break;
            }
        }
    }
    if addressed { Ok(accepted) } else { Err(EPERM) }
}

/// `KVM_GET_LAPIC`.
pub fn get<B: Backend>(vc: &mut KvmVcpu<B>) -> Result<kvm_lapic_state, i32> {
    let now = guest_tsc(&vc.cpu);
    let l = vc.lapic.as_mut().ok_or(EINVAL)?;
    // A timer that is due has fired by now on KVM (its IRR bit set, the
    // next period begun): so here too, before the image is taken.
    l.update_timer(now);
    let mut regs = l.get_state(now);
    // KVM without KVM_CAP_X2APIC_API (not offered) shows the x2APIC ID as
    // an xAPIC one: shifted into bits 31:24 (`kvm_apic_state_fixup`).
    if l.mode() == Mode::X2Apic
        && let Some(id) = regs.get_mut(APIC_ID_OFFSET..APIC_ID_OFFSET + 4)
    {
        let x2 = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        id.copy_from_slice(&(x2 << 24).to_le_bytes());
    }
    Ok(kvm_lapic_state { regs })
}

/// `KVM_SET_LAPIC`.
pub fn set<B: Backend>(vc: &mut KvmVcpu<B>, s: &kvm_lapic_state) -> Result<u64, i32> {
    let now = guest_tsc(&vc.cpu);
    let l = vc.lapic.as_mut().ok_or(EINVAL)?;
    let mut regs = s.regs;
    // The other half of `get`'s fixup: in x2APIC mode the image's ID is
    // bits 31:24.
    if l.mode() == Mode::X2Apic
        && let Some(id) = regs.get_mut(APIC_ID_OFFSET..APIC_ID_OFFSET + 4)
    {
        let xapic = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        id.copy_from_slice(&(xapic >> 24).to_le_bytes());
    }
    l.set_state(&regs, now).map_err(|()| EINVAL)?;
    sync_cr8(&mut vc.cpu, l);
    Ok(0)
}

/// `KVM_GET_MP_STATE`: runnable; halted only while waiting in HLT with the
/// LAPIC here (without it HLT exits to the VMM and the vCPU stays
/// runnable); uninitialized or INIT received for an AP waiting to start.
pub fn mp_state<B: Backend>(vc: &KvmVcpu<B>) -> u32 {
    vc.mp_state
}

/// `KVM_SET_MP_STATE`: runnable, or with the LAPIC here also halted,
/// uninitialized and INIT received (as KVM, which refuses anything but
/// runnable without it). SIPI received and the rest are -EINVAL.
/// `interrupts_on`: the vCPU's RFLAGS.IF now (whether a halted one wakes).
pub fn set_mp_state<B: Backend>(
    vc: &mut KvmVcpu<B>,
    state: u32,
    interrupts_on: bool,
) -> Result<u64, i32> {
    match state {
        KVM_MP_STATE_RUNNABLE => {}
        KVM_MP_STATE_HALTED | KVM_MP_STATE_UNINITIALIZED | KVM_MP_STATE_INIT_RECEIVED
            if vc.lapic.is_some() => {}
        _ => return Err(EINVAL),
    }
    vc.mp_state = state;
    vc.halted_if = interrupts_on;
    Ok(0)
}
