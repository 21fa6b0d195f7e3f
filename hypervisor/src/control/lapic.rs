//! The local APIC of a KVM-API VM's vCPU, in the hypervisor
//! (`KVM_CAP_SPLIT_IRQCHIP`, DESIGN.md D4): the exits that reach it (xAPIC
//! MMIO, the x2APIC and TSC-deadline MSRs, IA32_APIC_BASE, HLT, CR8),
//! interrupt delivery before each entry, its timer on the host's
//! (`arch::apic::set_guest_deadline`), and the requests about it
//! (`KVM_SIGNAL_MSI`, `KVM_GET_LAPIC`/`KVM_SET_LAPIC`,
//! `KVM_GET_MP_STATE`/`KVM_SET_MP_STATE`). The register logic is
//! `vcpu::lapic`'s; the time it sees is the guest's TSC.
//!
//! One vCPU per VM so far: an IPI reaches this vCPU only (INIT, SIPI, NMI
//! and SMI IPIs are dropped), and a level-triggered EOI asks nothing of
//! the VMM (no `KVM_SET_GSI_ROUTING` yet, so no vector is on an IOAPIC
//! route, as on KVM without routes).

use super::kvm::{Intr, RunEnd, internal};
use super::mmio::{self, LocalDevice};
use super::objects::{KvmVcpu, KvmVm};
use crate::guest::alu::mask;
use crate::guest::insn::Kind;
use crate::vcpu::insn_len;
use crate::vcpu::lapic::{self, Delivery, Effect, Lapic, Mode, Shorthand};
use crate::virt::{Backend, Exit, ExitInfo, Fault, GuestCpu};
use crate::vm::VmEnv;
use abi::kvm::errno::{EINVAL, EPERM};
use abi::kvm::{
    KVM_INTERNAL_ERROR_EMULATION, KVM_MP_STATE_HALTED, KVM_MP_STATE_RUNNABLE, KVM_MSI_VALID_DEVID,
    kvm_lapic_state, kvm_msi,
};

/// RFLAGS.IF (SDM Vol. 1 3.4.3.3).
const RFLAGS_IF: u64 = 1 << 9;
/// KVM's limit on `KVM_CAP_SPLIT_IRQCHIP`'s reserved IOAPIC pins
/// (`MAX_NR_RESERVED_IOAPIC_PINS`).
pub const MAX_RESERVED_PINS: u64 = 48;
/// IA32_APIC_BASE's address bits, 51:12 (SDM Vol. 3A 11.4.4).
const BASE_ADDRESS: u64 = 0x000f_ffff_ffff_f000;
/// LVT LINT0 (SDM Vol. 3A 11.5.1): where the 8259's ExtINT comes in.
const LVT_LINT0: u32 = 0x350;
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

/// What an exit was to the local APIC. (`RunEnd` is built once per exit;
/// boxing it would cost an allocation on the exit path, D8.)
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Not the LAPIC's: the exit loop goes on with it.
    NotMine,
    /// Carried out here; the guest runs on.
    Done,
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
pub fn exit<B: Backend>(vc: &mut KvmVcpu<B>, env: &mut VmEnv, info: ExitInfo) -> Outcome {
    if vc.lapic.is_none() {
        return Outcome::NotMine;
    }
    match info.exit {
        Exit::Rdmsr | Exit::Wrmsr if is_apic_msr(vc.cpu.gprs().rcx as u32) => msr(vc, env, info),
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
            apply(&mut l, effect);
            sync_cr8(&mut vc.cpu, &l);
            vc.lapic = Some(l);
            match start {
                mmio::Start::Exit(end) => Outcome::Exit(end),
                mmio::Start::Resume => Outcome::Done,
            }
        }
        Exit::Hlt => {
            let Some(len) = insn_len(&vc.cpu, env, info, Kind::Hlt) else {
                return Outcome::Exit(internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]));
            };
            vc.cpu.skip_instruction(len);
            vc.halted = true;
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
fn msr<B: Backend>(vc: &mut KvmVcpu<B>, env: &mut VmEnv, info: ExitInfo) -> Outcome {
    let write = matches!(info.exit, Exit::Wrmsr);
    let kind = if write { Kind::Wrmsr } else { Kind::Rdmsr };
    let Some(len) = insn_len(&vc.cpu, env, info, kind) else {
        return Outcome::Exit(internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]));
    };
    let now = guest_tsc(&vc.cpu);
    let Some(l) = vc.lapic.as_mut() else {
        return Outcome::NotMine;
    };
    let g = vc.cpu.gprs();
    let index = g.rcx as u32;
    let ok = if write {
        let value = g.edx_eax();
        let r = match index {
            lapic::IA32_APIC_BASE => l.set_base(value, false).map(|()| Effect::None),
            lapic::IA32_TSC_DEADLINE => Ok(l.set_tsc_deadline(value, now)),
            _ => l.msr_write(index, value, now),
        };
        r.map(|effect| apply(l, effect)).is_ok()
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
    Outcome::Done
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
fn apply(l: &mut Lapic, effect: Effect) {
    match effect {
        // Re-armed before the next entry; no vector is on an IOAPIC route.
        Effect::None | Effect::TimerChanged | Effect::LevelEoi(_) => {}
        Effect::Ipi(ipi) => {
            let to_self = match ipi.shorthand {
                Shorthand::ToSelf | Shorthand::AllIncludingSelf => true,
                Shorthand::AllExcludingSelf => false,
                Shorthand::None => l.matches(ipi.dest, ipi.logical),
            };
            if to_self && matches!(ipi.delivery, Delivery::Fixed | Delivery::LowestPriority) {
                l.deliver(ipi.vector, ipi.level_triggered);
            }
        }
    }
}

/// Whether the LAPIC takes the VMM's 8259 interrupts (ExtINT through
/// `KVM_INTERRUPT`): off, or LINT0 unmasked in ExtINT mode (KVM's
/// `kvm_apic_accept_pic_intr`).
pub fn accepts_pic(l: &Lapic) -> bool {
    if l.mode() == Mode::Disabled {
        return true;
    }
    let lvt0 = l.mmio_read(LVT_LINT0, 0);
    lvt0 & LVT_MASKED == 0 && (lvt0 >> 8) & 0b111 == DELIVERY_EXTINT
}

/// Before an entry: fires the timer if due, arms the host's for the next
/// deadline, and delivers the highest interrupt the priorities allow if the
/// guest can take it now. True if one waits for the guest to be able to
/// (the caller opens the interrupt window).
pub fn before_entry<B: Backend>(vc: &mut KvmVcpu<B>) -> bool {
    let offset = vc.cpu.tsc_offset();
    let Some(l) = vc.lapic.as_mut() else {
        return false;
    };
    let now = crate::arch::instr::rdtsc().wrapping_add(offset);
    l.update_timer(now);
    let host = l.timer_deadline().map(|d| d.wrapping_sub(offset));
    if crate::arch::apic::guest_deadline() != host {
        crate::arch::apic::set_guest_deadline(host);
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
/// RUN waits on.
pub fn wait<B: Backend>(vc: &mut KvmVcpu<B>) -> Option<RunEnd> {
    loop {
        let offset = vc.cpu.tsc_offset();
        let interrupts_on = vc.cpu.rflags() & RFLAGS_IF != 0;
        let Some(l) = vc.lapic.as_mut() else {
            vc.halted = false;
            return None;
        };
        let now = crate::arch::instr::rdtsc().wrapping_add(offset);
        l.update_timer(now);
        let extint = vc.irq.is_some() && accepts_pic(l);
        if interrupts_on && (extint || l.pending().is_some()) {
            vc.halted = false;
            return None;
        }
        if let Some(end) = super::kvm::control_domain_wants_cpu() {
            return Some(end);
        }
        if !crate::arch::apic::timer_running() {
            // Nothing would wake this CPU: the control domain polls.
            return Some(RunEnd::Interrupted(Intr::Tick));
        }
        let host = l.timer_deadline().map(|d| d.wrapping_sub(offset));
        crate::arch::apic::set_guest_deadline(host);
        crate::arch::instr::wait_for_interrupt();
    }
}

/// `KVM_SIGNAL_MSI`: KVM's answers — -EINVAL without the split irqchip or
/// with unknown flags, -EPERM (KVM's -1) when no APIC is addressed, else
/// how many APICs accepted it (0: the guest's APIC is software-disabled).
/// Fixed and lowest-priority delivery only; others are -EINVAL (not yet).
pub fn signal_msi<B: Backend>(vm: &mut KvmVm<B>, m: &kvm_msi) -> Result<u64, i32> {
    if vm.split_irqchip.is_none() || m.flags & !KVM_MSI_VALID_DEVID != 0 {
        return Err(EINVAL);
    }
    let dest = (m.address_lo >> MSI_DEST_SHIFT) & 0xff;
    let logical = m.address_lo & MSI_DEST_LOGICAL != 0;
    let vector = (m.data & 0xff) as u8;
    let delivery = (m.data >> 8) & 0b111;
    let level = m.data & MSI_TRIGGER_LEVEL != 0;
    // Fixed (000) and lowest priority (001) of the MSI data's delivery
    // modes (SDM Vol. 3A 11.11.2).
    if delivery > 1 {
        return Err(EINVAL);
    }
    let Some(l) = vm.vcpu.as_mut().and_then(|vc| vc.lapic.as_mut()) else {
        return Err(EPERM);
    };
    if !l.matches(dest, logical) {
        return Err(EPERM);
    }
    Ok(u64::from(l.deliver(vector, level)))
}

/// `KVM_GET_LAPIC`.
pub fn get<B: Backend>(vc: &mut KvmVcpu<B>) -> Result<kvm_lapic_state, i32> {
    let now = guest_tsc(&vc.cpu);
    let l = vc.lapic.as_ref().ok_or(EINVAL)?;
    Ok(kvm_lapic_state {
        regs: l.get_state(now),
    })
}

/// `KVM_SET_LAPIC`.
pub fn set<B: Backend>(vc: &mut KvmVcpu<B>, s: &kvm_lapic_state) -> Result<u64, i32> {
    let now = guest_tsc(&vc.cpu);
    let l = vc.lapic.as_mut().ok_or(EINVAL)?;
    l.set_state(&s.regs, now).map_err(|()| EINVAL)?;
    sync_cr8(&mut vc.cpu, l);
    Ok(0)
}

/// `KVM_GET_MP_STATE`: halted only while waiting in HLT with the LAPIC
/// here (without it HLT exits to the VMM and the vCPU stays runnable).
pub fn mp_state<B: Backend>(vc: &KvmVcpu<B>) -> u32 {
    if vc.halted {
        KVM_MP_STATE_HALTED
    } else {
        KVM_MP_STATE_RUNNABLE
    }
}

/// `KVM_SET_MP_STATE`: runnable, or halted with the LAPIC here (as KVM,
/// which refuses anything but runnable without it). The INIT/SIPI states
/// come with guest SMP: -EINVAL until then.
pub fn set_mp_state<B: Backend>(vc: &mut KvmVcpu<B>, state: u32) -> Result<u64, i32> {
    match state {
        KVM_MP_STATE_RUNNABLE => vc.halted = false,
        KVM_MP_STATE_HALTED if vc.lapic.is_some() => vc.halted = true,
        _ => return Err(EINVAL),
    }
    Ok(0)
}
