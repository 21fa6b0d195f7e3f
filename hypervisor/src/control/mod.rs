//! The control domain, seen from the hypervisor: the privileged guest that
//! the hypervisor starts at boot (`boot`), whose hypercalls are the KVM API
//! (`hypercall`), and the loop that runs it (`run`).
//!
//! DESIGN.md D1/D2/D3/D10: the control domain owns COM1 (its ports are
//! passed through), its RAM is most of the machine, and everything it asks
//! for is decoded and checked before anything is done.

pub mod boot;
pub mod dirty;
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
use crate::vm::{StopReason, Vm};
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

/// Runs the control domain until it stops or asks for power-off; returns
/// why it ended.
pub fn run<B: Backend>(
    backend: &mut B,
    frames: &spin::Mutex<Frames>,
    cd: &mut Vm<B>,
    cpuid: &CpuidTable,
    xstate: &HostXstate,
) -> StopReason {
    // What was logged so far already went to COM1.
    let mut state = ControlState {
        log_cursor: crate::log::position(),
        layout: layout::Owner::of(
            backend,
            cd.vcpu(),
            cd.nested_root(),
            Some(cd.env.lazy.area()),
        ),
    };
    let mut objects = Objects::<B>::default();
    let Some((cpu, env)) = cd.parts() else {
        return StopReason::Unhandled {
            what: "control domain without a vCPU",
            detail: 0,
            rip: 0,
        };
    };
    env.lazy.load::<B>(xstate);
    // From here on the control domain owns COM1 and echoes the log ring.
    // Drain the UART first: the control domain re-programs it, which resets
    // its FIFO and would drop what is still queued.
    #[cfg(target_os = "none")]
    crate::log::serial::flush();
    crate::log::set_serial(false);
    let mut new_context = true;
    let reason = loop {
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
                    objects: &mut objects,
                    state: &mut state,
                    frames,
                    xstate,
                    cpuid,
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
    };
    crate::log::set_serial(true);
    reason
}
