//! The control domain, seen from the hypervisor: the privileged guest that
//! the hypervisor starts at boot (`boot`), whose hypercalls are the KVM API
//! (`hypercall`), and the loop that runs it (`run`).
//!
//! DESIGN.md D1/D2/D3/D10: the control domain owns COM1 (its ports are
//! passed through), its RAM is most of the machine, and everything it asks
//! for is decoded and checked before anything is done.

pub mod boot;
pub mod coalesced;
pub mod cpus;
pub mod dirty;
pub mod events;
pub mod hypercall;
pub mod info;
pub mod kvm;
pub mod lapic;
pub mod layout;
pub mod memory;
pub mod mmio;
pub mod objects;
pub mod routing;
pub mod state;
pub mod string_io;
pub mod xen;

use crate::vcpu::cpuid::CpuidTable;
use crate::vcpu::lazy::HostXstate;
use crate::vcpu::{self, Action};
use crate::virt::{Backend, Frames, GuestCpu};
use crate::vm::{StopReason, VmEnv};
use objects::Objects;

/// The COM1 ports the control domain drives itself.
pub const COM1_PORTS: core::ops::RangeInclusive<u16> = 0x3f8..=0x3ff;
/// The 8042 keyboard controller's data and status/command ports, which the
/// control domain reads for a shell at the machine's own screen.
pub const KBD_DATA_PORT: core::ops::RangeInclusive<u16> = 0x60..=0x60;
pub const KBD_STATUS_PORT: core::ops::RangeInclusive<u16> = 0x64..=0x64;

/// What the hypervisor keeps for the control domain between hypercalls.
#[derive(Default)]
pub struct ControlState {
    /// How far the control domain has read the log ring.
    pub log_cursor: u64,
    /// The control domain's own part of `MOJITO_LOG_LAYOUT`.
    pub layout: layout::Owner,
}

/// What the control domain's vCPUs share, behind one lock: its VMs and
/// handles, and its log cursor. A `KVM_RUN` holds the lock only to check
/// its VM out and back in (`hypercall::dispatch`).
pub struct Locked<B: Backend> {
    pub objects: Objects<B>,
    pub state: ControlState,
}

/// Everything the control domain's vCPUs on every CPU share (made once at
/// boot, never freed).
pub struct Shared<B: Backend> {
    pub locked: spin::Mutex<Locked<B>>,
    /// The CPUID table new VMs start from.
    pub cpuid: CpuidTable,
    pub xstate: HostXstate,
    /// How to make its vCPUs on the other CPUs (`MOJITO_START_CPU`).
    pub ap: cpus::ApTemplate,
}

/// Runs one vCPU of the control domain on this CPU until it stops or asks
/// for power-off; returns why it ended. The boot CPU runs vCPU 0; each
/// `MOJITO_START_CPU` starts another on its CPU (`cpus`).
pub fn run<B: Backend>(
    backend: &mut B,
    frames: &spin::Mutex<Frames>,
    shared: &Shared<B>,
    cpu: &mut B::Vcpu,
    env: &mut VmEnv,
) -> StopReason {
    let xstate = &shared.xstate;
    env.lazy.load::<B>(xstate);
    let mut new_context = true;
    loop {
        if crate::arch::percpu::index() != 0 {
            if cpus::stopping() {
                // A reset is coming (`arch::smp::stop_aps`).
                cpus::leave();
            }
            #[cfg(target_os = "none")]
            if !crate::arch::smp::stack_intact() {
                crate::boot::fatal(format_args!(
                    "cpu{}: its stack overflowed",
                    crate::arch::percpu::index()
                ));
            }
        }
        if !backend.activate(cpu) {
            break StopReason::EntryFailed {
                what: "the control domain's vCPU could not be made current",
                code: 0,
            };
        }
        let info = backend.run(cpu, new_context);
        new_context = false;
        match vcpu::handle(cpu, env, info, xstate.xcr0_max) {
            Action::Resume
            | Action::Yield
            | Action::ForwardIo(_)
            | Action::ForwardHypercall
            | Action::ForwardMmio(_)
            | Action::ForwardMsr(_)
            | Action::XenPage(_)
            | Action::InterruptWindow => {}
            Action::Stop(reason) => break reason,
            Action::ControlRequest => {
                let g = *cpu.gprs();
                let mut ctx = hypercall::Ctx {
                    backend: &mut *backend,
                    shared: &shared.locked,
                    frames,
                    xstate,
                    cpuid: &shared.cpuid,
                };
                let result = hypercall::dispatch(&mut ctx, env, g.rax, g.rdi, g.rsi);
                if result == hypercall::Outcome::PowerOff {
                    break StopReason::Exited(0);
                }
                // A request may have run a guest here: the control domain's
                // vCPU must be current again, and its TLB context is new.
                if !backend.activate(cpu) {
                    break StopReason::EntryFailed {
                        what: "the control domain's vCPU could not be made current",
                        code: 0,
                    };
                }
                new_context = true;
                cpu.gprs().rax = result.rax();
                if let Action::Stop(reason) =
                    vcpu::complete(cpu, env, info, crate::guest::insn::Kind::Hypercall)
                {
                    break reason;
                }
            }
        }
    }
}
