//! The vCPU requests of the KVM API: registers in and out in KVM's
//! structures, the reset state, and `KVM_RUN` — a CPU donation (DESIGN.md
//! D2): the control domain's vCPU waits while the guest's runs on this CPU,
//! until an exit the hypervisor does not handle, which is written to the
//! guest vCPU's `kvm_run` page.

use super::objects::{KvmVcpu, KvmVm, Peers, Pending};
use crate::guest::GuestRam;
use crate::guest::insn::Kind;
use crate::mm::GuestPhys;
use crate::vcpu::lazy::HostXstate;
use crate::vcpu::{self, Action};
use crate::virt::exit::IoAccess;
use crate::virt::{Backend, CrEffect, DescTable, Frames, GuestCpu, Segment, SystemRegs};
use crate::vm::{StopReason, VmEnv};
use abi::kvm::errno::{EFAULT, EINTR, EINVAL};
use abi::kvm::{
    KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_HYPERCALL, KVM_EXIT_HYPERCALL_LONG_MODE,
    KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT,
    KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_SHUTDOWN, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, kvm_dtable, kvm_regs, kvm_run_exit,
    kvm_run_fail_entry, kvm_run_hypercall, kvm_run_internal, kvm_run_io, kvm_segment, kvm_sregs,
};

/// `KVM_GET_VCPU_MMAP_SIZE`: the run page and the port-I/O data page.
pub const RUN_PAGES: u64 = 2;
/// Where port-I/O data sits in the run area (`io.data_offset`).
pub const PIO_DATA_OFFSET: u64 = 4096;
/// IA32_APIC_BASE as reported: xAPIC at 0xfee00000, enabled, BSP.
pub const APIC_BASE_DEFAULT: u64 = 0xfee0_0900;

/// Offsets of the fields RUN writes in `kvm_run` (asserted in `abi`).
pub(super) mod run_offset {
    /// `request_interrupt_window`, then `immediate_exit` at 1.
    pub const REQUEST_INTERRUPT_WINDOW: u64 = 0;
    pub const EXIT_REASON: u64 = 8;
    pub const READY_FOR_INTERRUPT_INJECTION: u64 = 12;
    pub const IF_FLAG: u64 = 13;
    pub const CR8: u64 = 16;
    pub const APIC_BASE: u64 = 24;
    pub const EXIT: u64 = 32;
}

/// `kvm_segment` → the vendor-neutral segment (VMX access-rights layout).
pub fn segment_from_kvm(s: &kvm_segment) -> Segment {
    let b = |v: u8, shift: u32| u32::from(v & 1) << shift;
    let ar = u32::from(s.type_ & 0xf)
        | b(s.s, 4)
        | (u32::from(s.dpl & 3) << 5)
        | b(s.present, 7)
        | b(s.avl, 12)
        | b(s.l, 13)
        | b(s.db, 14)
        | b(s.g, 15)
        | b(s.unusable, 16);
    Segment {
        selector: s.selector,
        base: s.base,
        limit: s.limit,
        ar,
    }
}

/// The vendor-neutral segment → `kvm_segment`.
pub fn segment_to_kvm(s: &Segment) -> kvm_segment {
    let bit = |shift: u32| ((s.ar >> shift) & 1) as u8;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (s.ar & 0xf) as u8,
        present: bit(7),
        dpl: ((s.ar >> 5) & 3) as u8,
        db: bit(14),
        s: bit(4),
        l: bit(13),
        g: bit(15),
        avl: bit(12),
        unusable: bit(16),
        padding: 0,
    }
}

fn dtable(d: &DescTable) -> kvm_dtable {
    kvm_dtable {
        base: d.base,
        limit: d.limit,
        padding: [0; 3],
    }
}

/// KVM's vCPU reset state (what `KVM_CREATE_VCPU` leaves): real mode at
/// F000:FFF0 with CS.base = 0xffff0000, CR0 = CD | NW | ET, RDX = the CPU
/// signature (SDM Vol. 3A 9.1.1).
pub fn reset<B: Backend>(backend: &mut B, vc: &mut KvmVcpu<B>) {
    vc.irq = None;
    if !backend.activate(&mut vc.cpu) {
        return;
    }
    let data = Segment {
        selector: 0,
        base: 0,
        limit: 0xffff,
        ar: Segment::REAL_DATA_AR,
    };
    let regs = SystemRegs {
        cs: Segment {
            selector: 0xf000,
            base: 0xffff_0000,
            limit: 0xffff,
            ar: Segment::REAL_CODE_AR,
        },
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment {
            selector: 0,
            base: 0,
            limit: 0xffff,
            ar: Segment::TSS_BUSY_AR,
        },
        ldtr: Segment {
            selector: 0,
            base: 0,
            limit: 0xffff,
            ar: Segment::LDT_AR,
        },
        gdt: DescTable {
            base: 0,
            limit: 0xffff,
        },
        idt: DescTable {
            base: 0,
            limit: 0xffff,
        },
        cr0: 0x6000_0010,
        cr3: 0,
        cr4: 0,
        efer: 0,
    };
    let _ = vc.cpu.set_system_regs(&regs);
    vc.cpu.gprs().rdx = u64::from(crate::arch::instr::cpuid(1, 0)[0]);
}

/// KVM_GET_REGS.
pub fn get_regs<C: GuestCpu>(cpu: &mut C) -> kvm_regs {
    let (rip, rsp, rflags) = (cpu.rip(), cpu.rsp(), cpu.rflags());
    let g = cpu.gprs();
    kvm_regs {
        rax: g.rax,
        rbx: g.rbx,
        rcx: g.rcx,
        rdx: g.rdx,
        rsi: g.rsi,
        rdi: g.rdi,
        rsp,
        rbp: g.rbp,
        r8: g.r8,
        r9: g.r9,
        r10: g.r10,
        r11: g.r11,
        r12: g.r12,
        r13: g.r13,
        r14: g.r14,
        r15: g.r15,
        rip,
        rflags,
    }
}

/// KVM_SET_REGS. RFLAGS bit 1 always reads as 1, as on hardware.
pub fn set_regs<C: GuestCpu>(cpu: &mut C, r: &kvm_regs) {
    let g = cpu.gprs();
    (g.rax, g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rbp) =
        (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp);
    (g.r8, g.r9, g.r10, g.r11, g.r12, g.r13, g.r14, g.r15) =
        (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15);
    cpu.set_rsp(r.rsp);
    cpu.set_rip(r.rip);
    cpu.set_rflags(r.rflags | 2);
}

/// KVM_GET_SREGS. CR2 is read from where it lives while the control
/// domain runs: the saved extended state (VMX) or the VMCB (SVM).
pub fn get_sregs<B: Backend>(cpu: &B::Vcpu, env: &VmEnv) -> kvm_sregs {
    let r = cpu.system_regs();
    kvm_sregs {
        cs: segment_to_kvm(&r.cs),
        ds: segment_to_kvm(&r.ds),
        es: segment_to_kvm(&r.es),
        fs: segment_to_kvm(&r.fs),
        gs: segment_to_kvm(&r.gs),
        ss: segment_to_kvm(&r.ss),
        tr: segment_to_kvm(&r.tr),
        ldt: segment_to_kvm(&r.ldtr),
        gdt: dtable(&r.gdt),
        idt: dtable(&r.idt),
        cr0: r.cr0,
        cr2: if B::SWITCHES_CR2 {
            cpu.cr2()
        } else {
            env.lazy.cr2()
        },
        cr3: r.cr3,
        cr4: r.cr4,
        cr8: cpu.read_cr(8),
        efer: r.efer,
        apic_base: APIC_BASE_DEFAULT,
        interrupt_bitmap: [0; 4],
    }
}

/// KVM_SET_SREGS, with KVM's consistency checks (`kvm_is_valid_sregs`):
/// long mode needs PAE and LMA with LME and PG; LMA without them is refused.
pub fn set_sregs<B: Backend>(cpu: &mut B::Vcpu, env: &mut VmEnv, s: &kvm_sregs) -> Result<(), i32> {
    use crate::arch::msr::efer::{LMA, LME};
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;
    let long = s.efer & LME != 0 && s.cr0 & CR0_PG != 0;
    if (long && (s.cr4 & CR4_PAE == 0 || s.efer & LMA == 0))
        || (!long && s.efer & LMA != 0)
        || s.cr8 > 15
    {
        return Err(EINVAL);
    }
    if s.interrupt_bitmap != [0; 4] {
        // Pending interrupts come with interrupt injection (next part).
        return Err(EINVAL);
    }
    let regs = SystemRegs {
        cs: segment_from_kvm(&s.cs),
        ds: segment_from_kvm(&s.ds),
        es: segment_from_kvm(&s.es),
        fs: segment_from_kvm(&s.fs),
        gs: segment_from_kvm(&s.gs),
        ss: segment_from_kvm(&s.ss),
        tr: segment_from_kvm(&s.tr),
        ldtr: segment_from_kvm(&s.ldt),
        gdt: DescTable {
            base: s.gdt.base,
            limit: s.gdt.limit,
        },
        idt: DescTable {
            base: s.idt.base,
            limit: s.idt.limit,
        },
        cr0: s.cr0,
        cr3: s.cr3,
        cr4: s.cr4,
        efer: s.efer,
    };
    match cpu.set_system_regs(&regs) {
        Ok(CrEffect::None) => {}
        Ok(CrEffect::LoadPdptes) => cpu.set_pdptes(read_pdptes(&env.ram, s.cr3).ok_or(EINVAL)?),
        Err(_) => return Err(EINVAL),
    }
    let _ = cpu.write_cr(8, s.cr8);
    if B::SWITCHES_CR2 {
        cpu.set_cr2(s.cr2);
    } else {
        env.lazy.set_cr2(s.cr2);
    }
    Ok(())
}

fn read_pdptes(ram: &GuestRam, cr3: u64) -> Option<[u64; 4]> {
    let mut p = [0u64; 4];
    for (i, e) in p.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        if !ram.read(GuestPhys::new((cr3 & 0xffff_ffe0) + 8 * i as u64), &mut b) {
            return None;
        }
        *e = u64::from_le_bytes(b);
    }
    Some(p)
}

/// How a RUN ended. (`kvm_run_exit` is 256 bytes, built once per exit:
/// boxing it would cost an allocation on the path D8 keeps short.)
#[allow(clippy::large_enum_variant)]
pub enum RunEnd {
    /// RUN returns 0 with this exit in the run page.
    Exit(u32, kvm_run_exit),
    /// RUN returns -EINTR with KVM_EXIT_INTR.
    Interrupted(Intr),
}

/// Why a RUN returned -EINTR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intr {
    /// `immediate_exit` was set.
    ImmediateExit,
    /// The hypervisor's timer ticked.
    Tick,
    /// COM1 input came for the control domain.
    Input,
    /// Another vCPU of the control domain kicked this CPU
    /// (`MOJITO_KICK_CPU`).
    Kick,
    /// The vCPU cannot run (halted, or an AP waiting for SIPI) while
    /// another vCPU of its VM can, or it just sent that one an interrupt:
    /// the VMM runs the other.
    Sibling,
}

/// KVM_RUN on a vCPU with run pages. `cd_env` is the control domain's
/// (its RAM holds the run pages; its extended state is switched out and
/// back in).
pub fn run<B: Backend>(
    backend: &mut B,
    vm: &mut KvmVm<B>,
    slot: usize,
    cd_env: &mut VmEnv,
    frames: &spin::Mutex<Frames>,
    xstate: &HostXstate,
) -> Result<u64, i32> {
    vm.select(slot).ok_or(EINVAL)?;
    // A new turn when another vCPU of the VM ran last.
    if vm.turn.0 != slot {
        vm.turn = (slot, crate::arch::instr::rdtsc());
    }
    let KvmVm {
        env,
        vcpus,
        intrs,
        nested,
        routes,
        turn,
        coalesced,
        ..
    } = vm;
    let at = slot.min(vcpus.len());
    let (before, rest) = vcpus.split_at_mut(at);
    let (me, after) = rest.split_first_mut().ok_or(EINVAL)?;
    let vc = me.as_mut().ok_or(EINVAL)?;
    let siblings = before.iter().chain(after.iter()).any(Option::is_some);
    let mut peers = Peers {
        before,
        after,
        routes,
        coalesced,
        turn_began: turn.1,
        siblings,
    };
    let run_gpa = vc.run_pages.ok_or(EINVAL)?;
    // request_interrupt_window and immediate_exit.
    let mut head = [0u8; 2];
    if !cd_env.ram.read(
        GuestPhys::new(run_gpa + run_offset::REQUEST_INTERRUPT_WINDOW),
        &mut head,
    ) {
        return Err(EFAULT);
    }
    let (want_window, immediate) = (head[0] != 0, head[1] != 0);
    if !backend.activate(&mut vc.cpu) {
        return Err(EINVAL);
    }
    // INIT and SIPI from its siblings.
    if vc.init_pending || vc.sipi_vector.is_some() {
        super::lapic::accept_events(backend, vc);
    }
    // Finish the exit the VMM handled since the last RUN; an instruction
    // with a second device access exits again at once.
    let mut next = None;
    if let Some(p) = vc.pending.take() {
        let rip = vc.cpu.rip();
        match complete(vc, env, &cd_env.ram, run_gpa, p) {
            Ok(end) => next = end,
            Err(e) => {
                vc.pending = Some(p);
                return Err(e);
            }
        }
        // Single-stepping: the instruction the VMM completed was a step.
        if next.is_none() && single_stepping(vc) && vc.cpu.rip() != rip {
            next = Some(debug_exit(&vc.cpu, DB_VECTOR));
        }
    }
    let end = if let Some(end) = next {
        end
    } else if immediate {
        RunEnd::Interrupted(Intr::ImmediateExit)
    } else if want_window
        && vc.irq.is_none()
        && vc.cpu.interrupt_allowed()
        && vc.lapic.as_ref().is_none_or(super::lapic::accepts_pic)
    {
        // The window is open already (KVM would enter and exit at once).
        RunEnd::Exit(KVM_EXIT_IRQ_WINDOW_OPEN, kvm_run_exit::default())
    } else if crate::arch::com1_irq::take_input() {
        // Input that came while the control domain ran: it may have read it
        // already, but may as well have checked COM1 just before.
        RunEnd::Interrupted(Intr::Input)
    } else if !matches!(
        vc.mp_state,
        abi::kvm::KVM_MP_STATE_RUNNABLE | abi::kvm::KVM_MP_STATE_HALTED
    ) {
        // An AP waiting for INIT or SIPI.
        super::lapic::wait_for_start(&peers)
    } else {
        cd_env.lazy.save::<B>(xstate);
        env.lazy.load::<B>(xstate);
        let mem = NestedMemory { nested, frames };
        let end = run_guest(
            backend,
            (vc, &mut peers),
            env,
            mem,
            cd_env,
            (run_gpa, want_window),
            xstate,
        );
        env.lazy.save::<B>(xstate);
        cd_env.lazy.load::<B>(xstate);
        super::lapic::leave();
        end
    };
    // The exit is written from where it lies (no copy of the union). With
    // the LAPIC here, the VMM's 8259 needs it to take ExtINT (KVM's
    // `kvm_cpu_accept_dm_intr`).
    let ready = vc.irq.is_none()
        && vc.cpu.interrupt_allowed()
        && vc.lapic.as_ref().is_none_or(super::lapic::accepts_pic);
    let ram = &mut cd_env.ram;
    match &end {
        RunEnd::Exit(reason, exit) => {
            write_run_page(ram, run_gpa, *reason, Some(exit), vc, ready)?;
            Ok(0)
        }
        RunEnd::Interrupted(why) => {
            intrs.count(*why);
            write_run_page(ram, run_gpa, KVM_EXIT_INTR, None, vc, ready)?;
            Err(EINTR)
        }
    }
}

/// Completes a forwarded exit with what the VMM left in the run pages.
fn complete<B: Backend>(
    vc: &mut KvmVcpu<B>,
    env: &mut VmEnv,
    cd: &GuestRam,
    run_gpa: u64,
    p: Pending,
) -> Result<Option<RunEnd>, i32> {
    match p {
        Pending::Io { input, size, len } => {
            if input {
                let mut data = [0u8; 4];
                let n = usize::from(size).min(4);
                if !cd.read(GuestPhys::new(run_gpa + PIO_DATA_OFFSET), &mut data[..n]) {
                    return Err(EFAULT);
                }
                let v = u64::from(u32::from_le_bytes(data));
                let g = vc.cpu.gprs();
                g.rax = match size {
                    1 => (g.rax & !0xff) | (v & 0xff),
                    2 => (g.rax & !0xffff) | (v & 0xffff),
                    _ => v,
                };
            }
            vc.cpu.skip_instruction(len);
        }
        Pending::Hypercall { len, long_mode } => {
            let mut ret = [0u8; 8];
            if !cd.read(
                GuestPhys::new(run_gpa + run_offset::EXIT + HYPERCALL_RET_OFFSET),
                &mut ret,
            ) {
                return Err(EFAULT);
            }
            let ret = u64::from_le_bytes(ret);
            vc.cpu.gprs().rax = if long_mode { ret } else { ret & 0xffff_ffff };
            vc.cpu.skip_instruction(len);
        }
        Pending::Msr { read, len } => {
            // `kvm_run_msr`: error (byte 0), data (bytes 16..24).
            let mut m = [0u8; 24];
            if !cd.read(GuestPhys::new(run_gpa + run_offset::EXIT), &mut m) {
                return Err(EFAULT);
            }
            if m[0] != 0 {
                // The instruction faults: RIP stays.
                vc.cpu.inject(crate::virt::Fault::GP0);
            } else {
                if read {
                    let mut data = [0u8; 8];
                    data.copy_from_slice(&m[16..24]);
                    vc.cpu.gprs().set_edx_eax(u64::from_le_bytes(data));
                }
                vc.cpu.skip_instruction(len);
            }
        }
        Pending::String(b) => super::string_io::complete(&mut vc.cpu, env, cd, run_gpa, b)?,
        Pending::Mmio(a) => return super::mmio::complete(vc, env, cd, run_gpa, a),
    }
    Ok(None)
}

/// `KVM_SET_GUEST_DEBUG`: single-stepping (`KVM_EXIT_DEBUG` after every
/// instruction), software breakpoints (INT3 exits instead of #BP) and
/// hardware breakpoints and watchpoints (`debugreg`: DR0–DR3 and DR7).
/// While a debugger's breakpoints hold the debug registers, the guest's
/// own DR0–DR3 and DR7 are kept aside and its MOV DR work on them (they
/// are intercepted); they come back when debugging stops. The injection
/// flags (`KVM_GUESTDBG_INJECT_*`, `BLOCKIRQ`) are `-EINVAL`.
pub fn set_guest_debug<B: Backend>(
    vc: &mut KvmVcpu<B>,
    env: &mut VmEnv,
    d: &abi::kvm::kvm_guest_debug,
) -> Result<u64, i32> {
    use abi::kvm::{
        KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
        KVM_GUESTDBG_USE_SW_BP,
    };
    let known = KVM_GUESTDBG_ENABLE
        | KVM_GUESTDBG_SINGLESTEP
        | KVM_GUESTDBG_USE_SW_BP
        | KVM_GUESTDBG_USE_HW_BP;
    if d.control & !known != 0 {
        return Err(EINVAL);
    }
    vc.debug = if d.control & KVM_GUESTDBG_ENABLE != 0 {
        d.control
    } else {
        0
    };
    let sw_bp = vc.debug & KVM_GUESTDBG_USE_SW_BP != 0;
    vc.cpu.set_exception_intercept(BP_VECTOR, sw_bp);
    vc.cpu.set_int_n_intercept(sw_bp);
    // The debug registers: the debugger's go where the guest's were (the
    // lazy switch loads DR0–DR3 when the vCPU runs; DR7 is in the VMCS /
    // VMCB), the guest's are kept aside.
    let hw = vc.debug & KVM_GUESTDBG_USE_HW_BP != 0;
    match (hw, vc.guest_dr) {
        (true, None) => vc.guest_dr = Some((env.lazy.dr, vc.cpu.dr7())),
        (false, Some((dr, dr7))) => {
            env.lazy.dr = dr;
            vc.cpu.set_dr7(dr7);
            vc.guest_dr = None;
        }
        _ => {}
    }
    if hw {
        let r = d.arch.debugreg;
        env.lazy.dr = [r[0], r[1], r[2], r[3]];
        // Bit 10 reads as one; GD (13) and the reserved bits stay clear.
        vc.cpu.set_dr7((r[7] | DR7_FIXED) & DR7_DEBUGGER_BITS);
    }
    vc.cpu.set_dr_intercept(hw);
    Ok(0)
}

/// DR7 bit 10, always one, and the bits a debugger may set: the enables
/// (7:0), LE/GE (9:8) and the conditions and lengths (31:16) (SDM Vol. 3B
/// 18.2.4).
const DR7_FIXED: u64 = 1 << 10;
const DR7_DEBUGGER_BITS: u64 = 0xffff_03ff | DR7_FIXED;
/// DR6 B0–B3: which breakpoint hit.
const DR6_HITS: u64 = 0xf;

/// A MOV to or from a debug register while the debugger holds them: the
/// guest's own DR0–DR3 and DR7 (kept aside) or its live DR6. Returns false
/// if the instruction cannot be found.
fn mov_dr<B: Backend>(vc: &mut KvmVcpu<B>, env: &VmEnv, info: crate::virt::ExitInfo) -> bool {
    let crate::virt::Exit::MovDr { dr, gpr, write } = info.exit else {
        return false;
    };
    // The general register and length where the hardware did not say: MOV
    // DR is [REX] 0F 21/23 /r, DR in ModRM.reg, the register in ModRM.rm.
    let (gpr, len) = match (gpr, info.len) {
        (Some(g), Some(len)) => (g, len),
        _ => {
            let Some((b, n, mode)) = crate::vcpu::fetch_code(&vc.cpu, env) else {
                return false;
            };
            let bytes = &b[..n];
            let rex = match bytes.first() {
                Some(&r) if mode == crate::virt::CpuMode::Long64 && r & 0xf0 == 0x40 => r,
                _ => 0,
            };
            let at = usize::from(rex != 0);
            match bytes.get(at..at + 3) {
                Some(&[0x0f, 0x21 | 0x23, modrm]) => {
                    (gpr.unwrap_or((modrm & 7) | ((rex & 1) << 3)), at as u8 + 3)
                }
                _ => return false,
            }
        }
    };
    let Some((regs, dr7)) = vc.guest_dr.as_mut() else {
        return false;
    };
    let long = vc.cpu.mode() == crate::virt::CpuMode::Long64;
    let value = if gpr == 4 {
        vc.cpu.rsp()
    } else {
        vc.cpu.gprs().get(gpr)
    };
    let value = if long { value } else { value & 0xffff_ffff };
    // SDM Vol. 2B "MOV—Move to/from Debug Registers": DR6 and DR7 take no
    // bits above 31 (#GP); the CPU checks it after the exit, so here.
    if write && dr >= 4 && value >> 32 != 0 {
        vc.cpu.inject(crate::virt::Fault::GP0);
        return true;
    }
    let read = match (dr, write) {
        (0..=3, true) => {
            regs[usize::from(dr)] = value;
            None
        }
        (0..=3, false) => Some(regs[usize::from(dr)]),
        (5 | 7, true) => {
            *dr7 = value;
            None
        }
        (5 | 7, false) => Some(*dr7),
        (_, true) => {
            vc.cpu.set_dr6(value);
            None
        }
        (_, false) => Some(vc.cpu.dr6()),
    };
    if let Some(v) = read {
        if gpr == 4 {
            vc.cpu.set_rsp(v);
        } else {
            vc.cpu.gprs().set(gpr, v);
        }
    }
    vc.cpu.skip_instruction(len);
    true
}

/// #DB and #BP.
const DB_VECTOR: u8 = 1;
const BP_VECTOR: u8 = 3;
/// RFLAGS.TF.
const RFLAGS_TF: u64 = 1 << 8;
/// DR6 of a single-step trap: BS (bit 14) and the bits that read as ones.
const DR6_SINGLE_STEP: u64 = 0xffff_4ff0;

fn single_stepping<B: Backend>(vc: &KvmVcpu<B>) -> bool {
    vc.debug & abi::kvm::KVM_GUESTDBG_SINGLESTEP != 0
}

/// `KVM_EXIT_DEBUG` for exception `vector` at the guest's RIP (as a linear
/// address, as KVM reports it).
fn debug_exit<C: GuestCpu>(cpu: &C, vector: u8) -> RunEnd {
    debug_exit_dr6(
        cpu,
        vector,
        if vector == DB_VECTOR {
            DR6_SINGLE_STEP
        } else {
            0
        },
    )
}

fn debug_exit_dr6<C: GuestCpu>(cpu: &C, vector: u8, dr6: u64) -> RunEnd {
    let base = cpu.segment(crate::virt::SegmentReg::Cs).base;
    let mut exit = kvm_run_exit::default();
    exit.debug = abi::kvm::kvm_run_debug {
        arch: abi::kvm::kvm_debug_exit_arch {
            exception: u32::from(vector),
            pad: 0,
            pc: if cpu.mode() == crate::virt::CpuMode::Long64 {
                cpu.rip()
            } else {
                base.wrapping_add(cpu.rip()) & 0xffff_ffff
            },
            dr6,
            dr7: cpu.dr7(),
        },
    };
    RunEnd::Exit(abi::kvm::KVM_EXIT_DEBUG, exit)
}

/// `kvm_run_hypercall::ret`'s offset in the exit union.
const HYPERCALL_RET_OFFSET: u64 = 56;

/// The hypervisor's timer ticked, or COM1 input came: the control domain
/// gets its CPU back (`KVM_EXIT_INTR`, RUN returns -EINTR; D2).
pub(super) fn control_domain_wants_cpu() -> Option<RunEnd> {
    if !crate::arch::percpu::attention() {
        return None;
    }
    if crate::arch::com1_irq::take_input() {
        crate::arch::apic::take_tick();
        return Some(RunEnd::Interrupted(Intr::Input));
    }
    if super::cpus::take_kick() {
        crate::arch::apic::take_tick();
        return Some(RunEnd::Interrupted(Intr::Kick));
    }
    crate::arch::apic::take_tick().then_some(RunEnd::Interrupted(Intr::Tick))
}

/// The VM's nested page tables and the pool their frames come from (dirty
/// logging changes the rights of a page while the guest runs).
struct NestedMemory<'a, B: Backend> {
    nested: &'a mut crate::mm::paging::Table<B::Nested>,
    frames: &'a spin::Mutex<Frames>,
}

/// Runs the guest until an exit for the VMM.
fn run_guest<B: Backend>(
    backend: &mut B,
    (vc, peers): (&mut KvmVcpu<B>, &mut Peers<'_, B>),
    env: &mut VmEnv,
    mem: NestedMemory<'_, B>,
    cd_env: &mut VmEnv,
    (run_gpa, want_window): (u64, bool),
    xstate: &HostXstate,
) -> RunEnd {
    let mut new_context = true;
    // A kvmclock registered before its memory existed, or under a slot
    // that moved since: written now.
    if env.msrs.kvmclock.needs_refresh(&env.ram) {
        let now = crate::vcpu::pvclock::Now::read(vc.cpu.tsc_offset());
        env.msrs.kvmclock.refresh(&now, &mut env.ram);
    }
    // A tick that came while the control domain ran is no reason to stop —
    // unless the VM's vCPUs take turns: then every tick ends one, so that a
    // vCPU that keeps going to the VMM and back does not keep the CPU.
    if !peers.any_can_run() {
        crate::arch::apic::take_tick();
    }
    // Whether the interrupt-window exit is on (set once here, then only
    // when it must change).
    let mut window = vc.irq.is_some() || want_window;
    vc.cpu.set_interrupt_window(window);
    // A vCPU halted with its LAPIC here waits for an interrupt first.
    if vc.halted()
        && let Some(end) = super::lapic::wait(vc, peers)
    {
        return end;
    }
    loop {
        // KVM_INTERRUPT's vector goes in as soon as the guest can take it
        // (userspace irqchip, or ExtINT the LAPIC here takes); until then
        // the window exit is on.
        // With the LAPIC here the VMM's 8259 gets through only while the
        // LAPIC takes ExtINT (KVM's `kvm_cpu_accept_dm_intr`): neither its
        // vector nor the window the VMM asked for before then.
        let pic_ok = vc.lapic.as_ref().is_none_or(super::lapic::accepts_pic);
        let extint = vc.irq.is_some() && pic_ok;
        if let Some(vector) = vc.irq
            && extint
            && vc.cpu.interrupt_allowed()
        {
            vc.cpu.inject_interrupt(vector);
            vc.irq = None;
        }
        // The LAPIC's timer and interrupts (nothing without one).
        let lapic_waits = vc.lapic.is_some() && super::lapic::before_entry(vc);
        let want = (extint && vc.irq.is_some()) || (want_window && pic_ok) || lapic_waits;
        if want != window {
            vc.cpu.set_interrupt_window(want);
            window = want;
        }
        // Nothing of this on the path of a VM nobody debugs.
        let debugging = vc.debug != 0;
        let stepping = debugging && single_stepping(vc);
        // B0–B3 after the exit must be this run's hits only.
        if vc.guest_dr.is_some() {
            let dr6 = vc.cpu.dr6();
            if dr6 & DR6_HITS != 0 {
                vc.cpu.set_dr6(dr6 & !DR6_HITS);
            }
        }
        let guest_tf = stepping && vc.cpu.rflags() & RFLAGS_TF != 0;
        if stepping {
            vc.cpu.arm_single_step();
        }
        if new_context {
            crate::arch::spec::entering(env.spec_id);
        }
        let info = backend.run(&mut vc.cpu, new_context);
        new_context = false;
        if stepping {
            vc.cpu.disarm_single_step(guest_tf);
        }
        // INT n intercepted for the debugger (QEMU's SVM takes INT3 so):
        // INT3 is a breakpoint, any other INT n goes on to the guest.
        if debugging && matches!(info.exit, crate::virt::Exit::SoftwareInterrupt) {
            match crate::vcpu::fetch_code(&vc.cpu, env) {
                Some((b, n, _)) if n >= 1 && b[0] == 0xcc => {
                    return debug_exit(&vc.cpu, BP_VECTOR);
                }
                Some((b, n, _)) if n >= 2 && b[0] == 0xcd => {
                    vc.cpu.inject_software_interrupt(b[1], 2);
                    // A guest looping here must not keep the CPU.
                    if let Some(end) = control_domain_wants_cpu() {
                        return end;
                    }
                    continue;
                }
                _ => return internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]),
            }
        }
        // A debugger's hardware breakpoint hit: the VMM's (B0–B3 cleared
        // from the guest's DR6).
        if debugging
            && vc.guest_dr.is_some()
            && matches!(
                info.exit,
                crate::virt::Exit::Exception {
                    vector: DB_VECTOR,
                    ..
                }
            )
        {
            let dr6 = vc.cpu.dr6();
            if dr6 & DR6_HITS != 0 {
                vc.cpu.set_dr6(dr6 & !DR6_HITS);
                return debug_exit_dr6(&vc.cpu, DB_VECTOR, dr6);
            }
        }
        if debugging && matches!(info.exit, crate::virt::Exit::MovDr { .. }) {
            let rip = vc.cpu.rip();
            if !mov_dr(vc, env, info) {
                return internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]);
            }
            if stepping && vc.cpu.rip() != rip {
                return debug_exit(&vc.cpu, DB_VECTOR);
            }
            if let Some(end) = control_domain_wants_cpu() {
                return end;
            }
            continue;
        }
        // The debugger's exceptions go to the VMM, not to the guest.
        if debugging
            && let crate::virt::Exit::Exception { vector, .. } = info.exit
            && ((vector == DB_VECTOR && stepping)
                || (vector == BP_VECTOR && vc.debug & abi::kvm::KVM_GUESTDBG_USE_SW_BP != 0))
        {
            return debug_exit(&vc.cpu, vector);
        }
        let rip = if stepping { vc.cpu.rip() } else { 0 };
        // (Nothing of the LAPIC's on the path of a VM without one.)
        let lapic = if vc.lapic.is_some() {
            super::lapic::exit(vc, peers, env, info)
        } else {
            super::lapic::Outcome::NotMine
        };
        if !matches!(lapic, super::lapic::Outcome::NotMine) {
            env.stats.count(&info.exit);
        }
        match lapic {
            super::lapic::Outcome::NotMine => {}
            super::lapic::Outcome::Exit(end) => return end,
            super::lapic::Outcome::Done
            | super::lapic::Outcome::Sibling
            | super::lapic::Outcome::Halt
                if stepping && vc.cpu.rip() != rip =>
            {
                vc.mp_state = abi::kvm::KVM_MP_STATE_RUNNABLE;
                return debug_exit(&vc.cpu, DB_VECTOR);
            }
            super::lapic::Outcome::Sibling => return RunEnd::Interrupted(Intr::Sibling),
            super::lapic::Outcome::Done => {
                if let Some(end) = control_domain_wants_cpu() {
                    return end;
                }
                if peers.turn_over() {
                    return RunEnd::Interrupted(Intr::Sibling);
                }
                continue;
            }
            super::lapic::Outcome::Halt => {
                if let Some(end) = super::lapic::wait(vc, peers) {
                    return end;
                }
                continue;
            }
        }
        let cr8_write = matches!(info.exit, crate::virt::Exit::CrWrite { cr: 8, .. });
        let action = vcpu::handle(&mut vc.cpu, env, info, xstate.xcr0_max);
        if cr8_write && action == Action::Resume {
            super::lapic::cr8_written(vc);
        }
        match action {
            // An instruction the hypervisor carried out was a step too.
            Action::Resume if stepping && vc.cpu.rip() != rip => {
                return debug_exit(&vc.cpu, DB_VECTOR);
            }
            Action::Resume | Action::Yield | Action::ControlRequest => {}
            Action::ForwardIo(io) if io.string => {
                match super::string_io::start(vc, env, &mut cd_env.ram, run_gpa, io) {
                    super::string_io::Start::Exit(end) => return end,
                    // A zero count steps over the instruction: a step too.
                    super::string_io::Start::Resume if stepping && vc.cpu.rip() != rip => {
                        return debug_exit(&vc.cpu, DB_VECTOR);
                    }
                    super::string_io::Start::Resume => {}
                }
            }
            Action::ForwardIo(io) => {
                let Some(len) = vcpu::insn_len(&vc.cpu, env, info, Kind::Io) else {
                    return internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]);
                };
                // An OUT to a coalesced port goes into the ring, and the
                // guest goes on (a single step still exits for the VMM).
                let value = vc.cpu.gprs().rax as u32;
                if io.input
                    || stepping
                    || !peers.coalesced.covers(io.port, io.size)
                    || !peers
                        .coalesced
                        .push(&mut cd_env.ram, io.port, io.size, value)
                {
                    return forward_io(vc, cd_env, run_gpa, io, len);
                }
                vc.cpu.skip_instruction(len);
            }
            // A first write to a page of a slot that logs dirty pages.
            Action::ForwardMmio(f)
                if f.write
                    && super::dirty::write_fault(
                        backend,
                        mem.frames,
                        env,
                        mem.nested,
                        vc,
                        f.gpa.raw(),
                    ) => {}
            Action::ForwardMmio(f) => match super::mmio::start(vc, env, f) {
                super::mmio::Start::Exit(end) => return end,
                super::mmio::Start::Resume if stepping && vc.cpu.rip() != rip => {
                    return debug_exit(&vc.cpu, DB_VECTOR);
                }
                super::mmio::Start::Resume => {}
            },
            Action::InterruptWindow => {
                // `vcpu::handle` turned the window exit off.
                window = false;
                if want_window
                    && vc.irq.is_none()
                    && vc.lapic.as_ref().is_none_or(super::lapic::accepts_pic)
                {
                    return RunEnd::Exit(KVM_EXIT_IRQ_WINDOW_OPEN, kvm_run_exit::default());
                }
            }
            Action::XenPage(value) => {
                let Some(len) = vcpu::insn_len(&vc.cpu, env, info, Kind::Wrmsr) else {
                    return internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]);
                };
                // KVM's is_long_mode(): EFER.LMA, so compatibility mode gets
                // the 64-bit blob too.
                let long_mode = vc.cpu.efer() & crate::arch::msr::efer::LMA != 0;
                let copied = env.xen.is_some_and(|x| {
                    super::xen::write_page(&x, value, long_mode, &cd_env.ram, &mut env.ram).is_ok()
                });
                if copied {
                    vc.cpu.skip_instruction(len);
                    if stepping && vc.cpu.rip() != rip {
                        return debug_exit(&vc.cpu, DB_VECTOR);
                    }
                } else {
                    vc.cpu.inject(crate::virt::Fault::GP0);
                }
            }
            Action::ForwardMsr(m) => {
                let kind = if m.write.is_some() {
                    Kind::Wrmsr
                } else {
                    Kind::Rdmsr
                };
                let Some(len) = vcpu::insn_len(&vc.cpu, env, info, kind) else {
                    return internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]);
                };
                vc.pending = Some(Pending::Msr {
                    read: m.write.is_none(),
                    len,
                });
                let mut exit = kvm_run_exit::default();
                exit.msr = abi::kvm::kvm_run_msr {
                    error: 0,
                    pad: [0; 7],
                    reason: m.reason,
                    index: m.index,
                    data: m.write.unwrap_or(0),
                };
                let reason = if m.write.is_some() {
                    abi::kvm::KVM_EXIT_X86_WRMSR
                } else {
                    abi::kvm::KVM_EXIT_X86_RDMSR
                };
                return RunEnd::Exit(reason, exit);
            }
            Action::ForwardHypercall => {
                let Some(len) = vcpu::insn_len(&vc.cpu, env, info, Kind::Hypercall) else {
                    return internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]);
                };
                let long_mode = vc.cpu.mode() == crate::virt::CpuMode::Long64;
                vc.pending = Some(Pending::Hypercall { len, long_mode });
                let g = *vc.cpu.gprs();
                // Zeroed whole first: a union literal would leave the bytes
                // past the variant uninitialised, and all 256 go to the page.
                let mut exit = kvm_run_exit::default();
                exit.hypercall = kvm_run_hypercall {
                    nr: g.rax,
                    args: [g.rbx, g.rcx, g.rdx, g.rsi, 0, 0],
                    ret: 0,
                    flags: if long_mode {
                        KVM_EXIT_HYPERCALL_LONG_MODE
                    } else {
                        0
                    },
                };
                return RunEnd::Exit(KVM_EXIT_HYPERCALL, exit);
            }
            Action::Stop(reason) => return stop_exit(reason),
        }
        // Whatever the guest does without an exit to the VMM (a loop of
        // CPUIDs, of zero-count string I/O, of first writes to logged
        // pages …), the control domain gets its CPU back on time.
        if let Some(end) = control_domain_wants_cpu() {
            return end;
        }
        if peers.turn_over() {
            return RunEnd::Interrupted(Intr::Sibling);
        }
    }
}

/// KVM_EXIT_IO: the access goes to the VMM; OUT data (the low bytes of
/// RAX) goes to the data page now, IN data comes back on the next RUN.
fn forward_io<B: Backend>(
    vc: &mut KvmVcpu<B>,
    cd_env: &mut VmEnv,
    run_gpa: u64,
    io: IoAccess,
    len: u8,
) -> RunEnd {
    if !io.input {
        let v = (vc.cpu.gprs().rax as u32).to_le_bytes();
        let n = usize::from(io.size).min(4);
        if !cd_env
            .ram
            .write(GuestPhys::new(run_gpa + PIO_DATA_OFFSET), &v[..n])
        {
            return internal(KVM_INTERNAL_ERROR_EMULATION, &[vc.cpu.rip()]);
        }
    }
    vc.pending = Some(Pending::Io {
        input: io.input,
        size: io.size,
        len,
    });
    io_exit(io, 1)
}

/// `KVM_EXIT_IO` for `count` elements of `io` in the data page.
pub(super) fn io_exit(io: IoAccess, count: u32) -> RunEnd {
    let mut exit = kvm_run_exit::default();
    exit.io = kvm_run_io {
        direction: if io.input {
            KVM_EXIT_IO_IN
        } else {
            KVM_EXIT_IO_OUT
        },
        size: io.size,
        port: io.port,
        count,
        data_offset: PIO_DATA_OFFSET,
    };
    RunEnd::Exit(KVM_EXIT_IO, exit)
}

pub(super) fn internal(suberror: u32, data: &[u64]) -> RunEnd {
    let mut e = kvm_run_internal {
        suberror,
        ndata: 0,
        data: [0; 16],
    };
    for (slot, v) in e.data.iter_mut().zip(data) {
        *slot = *v;
        e.ndata += 1;
    }
    let mut exit = kvm_run_exit::default();
    exit.internal = e;
    RunEnd::Exit(KVM_EXIT_INTERNAL_ERROR, exit)
}

/// What a stopped guest looks like through the KVM API.
fn stop_exit(reason: StopReason) -> RunEnd {
    match reason {
        // HLT in userspace-irqchip mode: RIP is past the HLT, as in KVM.
        StopReason::Halted { .. } => RunEnd::Exit(KVM_EXIT_HLT, kvm_run_exit::default()),
        StopReason::TripleFault { .. } => RunEnd::Exit(KVM_EXIT_SHUTDOWN, kvm_run_exit::default()),
        StopReason::EntryFailed { code, .. } => {
            let mut exit = kvm_run_exit::default();
            exit.fail_entry = kvm_run_fail_entry {
                hardware_entry_failure_reason: code,
                cpu: 0,
                pad: 0,
            };
            RunEnd::Exit(KVM_EXIT_FAIL_ENTRY, exit)
        }
        // KVM: a fault while delivering an event is DELIVERY_EV (with the
        // address); any other access it cannot emulate, EMULATION.
        StopReason::UnmappedAccess {
            gpa,
            rip,
            delivery: true,
            ..
        } => internal(abi::kvm::KVM_INTERNAL_ERROR_DELIVERY_EV, &[rip, gpa]),
        StopReason::UnmappedAccess { gpa, rip, .. } => {
            internal(KVM_INTERNAL_ERROR_EMULATION, &[rip, gpa])
        }
        StopReason::Unhandled { detail, rip, .. } => {
            internal(KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, &[detail, rip])
        }
        StopReason::Exited(status) => internal(
            KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
            &[u64::from(status)],
        ),
    }
}

/// Writes what RUN reports into the run page (only those fields: the rest
/// is the VMM's).
fn write_run_page<B: Backend>(
    ram: &mut GuestRam,
    run_gpa: u64,
    reason: u32,
    exit: Option<&kvm_run_exit>,
    vc: &mut KvmVcpu<B>,
    ready_for_interrupt: bool,
) -> Result<(), i32> {
    let apic_base = vc.lapic.as_ref().map_or(APIC_BASE_DEFAULT, |l| l.base());
    let cpu = &mut vc.cpu;
    const RFLAGS_IF: u64 = 1 << 9;
    let at = |off: u64| GuestPhys::new(run_gpa + off);
    let if_flag = u8::from(cpu.rflags() & RFLAGS_IF != 0);
    let exit_bytes: &[u8] = match exit {
        // SAFETY: `kvm_run_exit` is a 256-byte union of plain integers;
        // viewing it as bytes reads initialised memory: every exit starts
        // as `kvm_run_exit::default()`, which zeroes all 256 bytes, and a
        // variant is then assigned over it (no union literal in this crate
        // builds one, which would leave the bytes past the variant
        // uninitialised).
        Some(exit) => unsafe {
            core::slice::from_raw_parts(
                (exit as *const kvm_run_exit).cast::<u8>(),
                core::mem::size_of::<kvm_run_exit>(),
            )
        },
        None => &[],
    };
    // exit_reason .. the exit's own member of the union is one contiguous
    // run of the page (`kvm_run` offsets 8..32 + its size): one copy per
    // exit. The rest of the union keeps what it held, as KVM leaves it.
    // `flags` (14) is 0, as KVM leaves it outside SMM.
    const START: u64 = run_offset::EXIT_REASON;
    const HEAD: usize = (run_offset::EXIT - START) as usize;
    let mut head = [0u8; HEAD + MAX_EXIT_BYTES];
    let mut put = |off: u64, bytes: &[u8]| {
        let i = (off - START) as usize;
        head[i..i + bytes.len()].copy_from_slice(bytes);
    };
    put(run_offset::EXIT_REASON, &reason.to_le_bytes());
    put(
        run_offset::READY_FOR_INTERRUPT_INJECTION,
        &[u8::from(ready_for_interrupt)],
    );
    put(run_offset::IF_FLAG, &[if_flag]);
    put(run_offset::CR8, &cpu.read_cr(8).to_le_bytes());
    put(run_offset::APIC_BASE, &apic_base.to_le_bytes());
    let n = exit_size(reason).min(exit_bytes.len());
    put(run_offset::EXIT, &exit_bytes[..n]);
    if ram.write(at(START), &head[..HEAD + n]) {
        Ok(())
    } else {
        Err(EFAULT)
    }
}

/// The size of the exit union's member for `reason`: what the page gets.
fn exit_size(reason: u32) -> usize {
    use core::mem::size_of;
    match reason {
        abi::kvm::KVM_EXIT_HLT
        | abi::kvm::KVM_EXIT_SHUTDOWN
        | abi::kvm::KVM_EXIT_INTR
        | abi::kvm::KVM_EXIT_IRQ_WINDOW_OPEN => 0,
        abi::kvm::KVM_EXIT_IO => size_of::<kvm_run_io>(),
        abi::kvm::KVM_EXIT_MMIO => size_of::<abi::kvm::kvm_run_mmio>(),
        abi::kvm::KVM_EXIT_DEBUG => size_of::<abi::kvm::kvm_run_debug>(),
        abi::kvm::KVM_EXIT_HYPERCALL => size_of::<kvm_run_hypercall>(),
        abi::kvm::KVM_EXIT_FAIL_ENTRY => size_of::<abi::kvm::kvm_run_fail_entry>(),
        abi::kvm::KVM_EXIT_INTERNAL_ERROR => size_of::<kvm_run_internal>(),
        abi::kvm::KVM_EXIT_X86_RDMSR | abi::kvm::KVM_EXIT_X86_WRMSR => {
            size_of::<abi::kvm::kvm_run_msr>()
        }
        abi::kvm::KVM_EXIT_IOAPIC_EOI => size_of::<abi::kvm::kvm_run_eoi>(),
        _ => MAX_EXIT_BYTES,
    }
}

/// The exit union's size.
const MAX_EXIT_BYTES: usize = core::mem::size_of::<kvm_run_exit>();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for ar in [0x9b, 0x93, 0xa09b, 0xc093, 0x8b, 0x82, 0x1_0000, 0xf0fb] {
            let s = Segment {
                selector: 0x10,
                base: 0x1234,
                limit: 0xfffff,
                ar,
            };
            assert_eq!(segment_from_kvm(&segment_to_kvm(&s)), s, "{ar:#x}");
        }
        let k = segment_to_kvm(&Segment {
            selector: 8,
            base: 0,
            limit: u32::MAX,
            ar: 0xa09b,
        });
        assert_eq!(
            (k.type_, k.s, k.dpl, k.present, k.l, k.db, k.g),
            (0xb, 1, 0, 1, 1, 0, 1)
        );
    }
}
