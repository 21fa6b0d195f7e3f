//! The control domain, seen from the hypervisor: the privileged guest that
//! the hypervisor starts at boot (`boot`), whose hypercalls are the KVM API
//! (`hypercall`), and the loop that runs it (`run`).
//!
//! DESIGN.md D1/D2/D3/D10: the control domain owns COM1 (its ports are
//! passed through), its RAM is most of the machine, and everything it asks
//! for is decoded and checked before anything is done.

pub mod boot;
pub mod hypercall;

use crate::vcpu::lazy::HostXstate;
use crate::vcpu::{self, Action};
use crate::virt::{Backend, Frames, GuestCpu};
use crate::vm::{StopReason, Vm};

/// The COM1 ports the control domain drives itself.
pub const COM1_PORTS: core::ops::RangeInclusive<u16> = 0x3f8..=0x3ff;

/// What the hypervisor keeps for the control domain between hypercalls.
#[derive(Default)]
pub struct ControlState {
    /// How far the control domain has read the log ring.
    pub log_cursor: u64,
}

/// Runs the control domain until it stops or asks for power-off; returns
/// why it ended.
pub fn run<B: Backend>(
    backend: &mut B,
    frames: &spin::Mutex<Frames>,
    cd: &mut Vm<B>,
    xstate: &HostXstate,
) -> StopReason {
    // What was logged so far already went to COM1.
    let mut state = ControlState {
        log_cursor: crate::log::position(),
    };
    let Some((cpu, env)) = cd.parts() else {
        return StopReason::Unhandled {
            what: "control domain without a vCPU",
            detail: 0,
            rip: 0,
        };
    };
    env.lazy.load::<B>(xstate);
    if !backend.activate(cpu) {
        return StopReason::EntryFailed {
            what: "the control domain's vCPU could not be made current",
            code: 0,
        };
    }
    // From here on the control domain owns COM1 and echoes the log ring.
    crate::log::set_serial(false);
    let mut new_context = true;
    loop {
        let info = backend.run(cpu, new_context);
        new_context = false;
        match vcpu::handle(cpu, env, info, xstate.xcr0_max) {
            Action::Resume | Action::Yield => {}
            Action::Stop(reason) => {
                crate::log::set_serial(true);
                return reason;
            }
            Action::ControlRequest => {
                let g = *cpu.gprs();
                let result = hypercall::dispatch(&mut state, env, frames, g.rax, g.rdi, g.rsi);
                if let hypercall::Outcome::PowerOff = result {
                    crate::log::set_serial(true);
                    return StopReason::Exited(0);
                }
                cpu.gprs().rax = result.rax();
                if let Action::Stop(reason) =
                    vcpu::complete(cpu, env, info, crate::guest::insn::Kind::Hypercall)
                {
                    crate::log::set_serial(true);
                    return reason;
                }
            }
        }
    }
}
