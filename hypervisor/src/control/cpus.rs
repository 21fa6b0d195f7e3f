//! The control domain's vCPUs on the other CPUs (the SMP issue, D2). The
//! boot CPU runs vCPU 0. `MOJITO_START_CPU` (`start`) posts a start
//! request to CPU n, which has turned VMX/SVM on and waits for one
//! (`wait`); it makes vCPU n in the boot vCPU's 64-bit entry state
//! (`ApTemplate`, `make_vcpu`), answers, and runs it with `control::run`.
//! A guest vCPU that vCPU runs with `KVM_RUN` runs on that CPU.
//!
//! Per-CPU: each CPU has its own mailbox; nothing here is on an exit path.

use super::{COM1_PORTS, KBD_DATA_PORT, KBD_STATUS_PORT};
use crate::arch::percpu::MAX_CPUS;
use crate::guest::GuestRam;
use crate::mm::HostPhys;
use crate::vcpu::cpuid::CpuidTable;
use crate::vcpu::lazy::{Extended, HostXstate};
use crate::virt::{Backend, Frames, GuestCpu, SystemRegs};
use crate::vm::{VmEnv, VmKind};
use abi::kvm::errno::{EEXIST, EIO, ENOMEM, ENXIO};
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

/// What a vCPU of the control domain on another CPU is made from: the
/// boot vCPU's memory, nested tables, CPUID and entry state.
pub struct ApTemplate {
    /// A view of the control domain's RAM (`GuestRam::view`; its frames
    /// are the boot vCPU's VM's to free, and never are).
    pub ram: GuestRam,
    pub nested_root: HostPhys,
    pub cpuid: CpuidTable,
    pub regs: SystemRegs,
}

/// Where a started vCPU begins (`mojito_start_cpu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    pub rip: u64,
    pub rsp: u64,
    pub rdi: u64,
}

/// No answer yet.
const PENDING: i32 = i32::MIN;
/// How long `start` waits for the CPU's answer: it looks every tick.
const ANSWER_US: u64 = 1_000_000;

static READY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static TAKEN: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static MAILBOX: [spin::Mutex<Option<Start>>; MAX_CPUS] =
    [const { spin::Mutex::new(None) }; MAX_CPUS];
static ANSWER: [AtomicI32; MAX_CPUS] = [const { AtomicI32::new(PENDING) }; MAX_CPUS];
/// The control domain's vCPUs running: the boot one, and those started.
static RUNNING: AtomicU32 = AtomicU32::new(1);

/// Whether the control domain runs on more than one CPU: a VM may then go
/// from one CPU to another between requests (`Backend::release`).
pub fn several() -> bool {
    RUNNING.load(Ordering::Relaxed) > 1
}

/// How many of the control domain's vCPUs run.
pub fn running() -> u32 {
    RUNNING.load(Ordering::Relaxed)
}

/// `MOJITO_START_CPU`'s work on the caller's CPU: posts the request to
/// CPU `cpu` and waits for its answer.
pub fn start(cpu: u32, s: Start) -> Result<(), i32> {
    let n = cpu as usize;
    if n == 0 || n >= MAX_CPUS || !READY[n].load(Ordering::SeqCst) {
        return Err(ENXIO);
    }
    if TAKEN[n].swap(true, Ordering::SeqCst) {
        return Err(EEXIST);
    }
    ANSWER[n].store(PENDING, Ordering::SeqCst);
    *MAILBOX[n].lock() = Some(s);
    let khz = match crate::arch::tsc::frequency_khz() {
        0 => 4_000_000,
        k => k,
    };
    let end = crate::arch::instr::rdtsc().saturating_add(khz * ANSWER_US / 1000);
    loop {
        match ANSWER[n].load(Ordering::SeqCst) {
            PENDING if crate::arch::instr::rdtsc() < end => core::hint::spin_loop(),
            PENDING => {
                // It never looked: take the request back if still there.
                if MAILBOX[n].lock().take().is_some() {
                    TAKEN[n].store(false, Ordering::SeqCst);
                }
                return Err(EIO);
            }
            0 => return Ok(()),
            e => {
                TAKEN[n].store(false, Ordering::SeqCst);
                return Err(e);
            }
        }
    }
}

/// On CPU `cpu`, with VMX/SVM on: marks it startable and takes its start
/// request once there is one, calling `idle` between looks.
pub fn wait(cpu: usize, mut idle: impl FnMut()) -> Start {
    let n = cpu.min(MAX_CPUS - 1);
    READY[n].store(true, Ordering::SeqCst);
    loop {
        if let Some(s) = MAILBOX[n].lock().take() {
            return s;
        }
        idle();
    }
}

/// CPU `cpu`'s answer to its start request: Ok once its vCPU is made.
pub fn answer(cpu: usize, r: Result<(), i32>) {
    let n = cpu.min(MAX_CPUS - 1);
    if r.is_ok() {
        RUNNING.fetch_add(1, Ordering::SeqCst);
    }
    ANSWER[n].store(r.err().unwrap_or(0), Ordering::SeqCst);
}

/// A started vCPU stopped (it stays stopped: its CPU parks).
pub fn stopped() {
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

/// Makes a control-domain vCPU on this CPU from `t`, starting at `s`, and
/// the handler state it runs with.
pub fn make_vcpu<B: Backend>(
    backend: &mut B,
    frames: &mut Frames,
    t: &ApTemplate,
    xstate: &HostXstate,
    cpu: usize,
    s: Start,
) -> Result<(B::Vcpu, VmEnv), i32> {
    let ram = t.ram.view().ok_or(ENOMEM)?;
    let cpuid = t.cpuid.try_clone().ok_or(ENOMEM)?;
    let mut name = String::new();
    name.try_reserve(7).map_err(|_| ENOMEM)?;
    name.push_str("control");
    let mut lazy = Extended::new(frames, xstate).map_err(|_| ENOMEM)?;
    let ports = [COM1_PORTS, KBD_DATA_PORT, KBD_STATUS_PORT];
    let mut vcpu = match backend.create_vcpu(frames, 0, t.nested_root, s.rip, &ports) {
        Ok(v) => v,
        Err(_) => {
            lazy.free(frames);
            return Err(ENOMEM);
        }
    };
    if !backend.activate(&mut vcpu) || {
        vcpu.without_nmis();
        vcpu.set_system_regs(&t.regs).is_err()
    } {
        backend.destroy_vcpu(frames, vcpu);
        lazy.free(frames);
        return Err(EIO);
    }
    vcpu.set_rip(s.rip);
    vcpu.set_rsp(s.rsp);
    vcpu.gprs().rdi = s.rdi;
    let mut env = VmEnv::new(0, name, VmKind::Control, ram, cpuid, lazy);
    env.vcpu_id = cpu as u32;
    Ok((vcpu, env))
}

/// `MOJITO_KICK_CPU`: makes the RUN on CPU `cpu` end with `KVM_EXIT_INTR`
/// (or the next one there, if none is on), with an IPI that makes a guest
/// there exit and wakes that CPU's HLT (D2). -ENXIO unless a vCPU of the
/// control domain runs there.
pub fn kick(cpu: u64) -> Result<(), i32> {
    let n = usize::try_from(cpu)
        .ok()
        .filter(|&n| n < MAX_CPUS)
        .ok_or(ENXIO)?;
    if n != 0 && !TAKEN[n].load(Ordering::SeqCst) {
        return Err(ENXIO);
    }
    crate::arch::percpu::raise(n, crate::arch::percpu::attention::KICK);
    #[cfg(target_os = "none")]
    if n != crate::arch::percpu::index()
        && let Some(id) = crate::arch::smp::apic_id(n)
    {
        use crate::arch::apic::{ICR_ASSERT, KICK_VECTOR, send_ipi};
        // Where it cannot be sent, that CPU's next tick sees the flag.
        let _ = send_ipi(id, ICR_ASSERT | u32::from(KICK_VECTOR));
    }
    Ok(())
}

/// Whether this CPU was kicked (and forgets it).
pub fn take_kick() -> bool {
    crate::arch::percpu::take(crate::arch::percpu::attention::KICK)
}

/// Per CPU, a line of its own: whether it is inside a guest's `KVM_RUN`.
#[repr(align(64))]
struct InRun(AtomicBool);

static IN_RUN: [InRun; MAX_CPUS] = [const { InRun(AtomicBool::new(false)) }; MAX_CPUS];

/// This CPU begins a guest's RUN: returns whether another CPU is inside
/// one (the figure behind "guests run at once", in each VM's closing log
/// line). Only this CPU's line is written.
pub fn enter_run() -> bool {
    let me = crate::arch::percpu::index();
    if let Some(f) = IN_RUN.get(me) {
        f.0.store(true, Ordering::Relaxed);
    }
    IN_RUN
        .iter()
        .enumerate()
        .any(|(i, f)| i != me && f.0.load(Ordering::Relaxed))
}

/// This CPU's guest RUN ended.
pub fn leave_run() {
    if let Some(f) = IN_RUN.get(crate::arch::percpu::index()) {
        f.0.store(false, Ordering::Relaxed);
    }
}

/// Whether a reset is coming: every CPU but the boot one leaves VMX/SVM.
pub fn stopping() -> bool {
    #[cfg(target_os = "none")]
    return crate::arch::smp::stopping();
    #[cfg(not(target_os = "none"))]
    false
}

/// Leaves VMX/SVM on this CPU for a reset and stops it.
pub fn leave() -> ! {
    #[cfg(target_os = "none")]
    crate::arch::smp::leave();
    #[cfg(not(target_os = "none"))]
    crate::arch::instr::halt_forever()
}
