//! Running VMs on this CPU, round robin. A VM runs until it stops or yields
//! (there is no timer preemption yet: that arrives with the hypervisor's own
//! timer in the SMP/APIC issue). Switching between VMs switches the state the
//! hardware leaves alone (`vcpu::lazy`).

use crate::vcpu::lazy::HostXstate;
use crate::vcpu::{self, Action};
use crate::virt::{Backend, Frames};
use crate::vm::{Status, Vm};

/// Runs every VM until all have stopped.
pub fn run_all<B: Backend>(
    backend: &mut B,
    frames: &spin::Mutex<Frames>,
    vms: &mut [Vm<B>],
    xstate: &HostXstate,
) {
    // The VM whose extended state is live in the CPU.
    let mut owner: Option<usize> = None;
    let mut next = 0;
    loop {
        let Some(i) = (0..vms.len())
            .map(|k| (next + k) % vms.len())
            .find(|&k| vms[k].status == Status::Runnable)
        else {
            return;
        };
        next = i + 1;
        let new_context = owner != Some(i);
        if new_context {
            if let Some(prev) = owner.and_then(|p| vms.get_mut(p))
                && prev.status == Status::Runnable
            {
                prev.env.lazy.save::<B>(xstate);
            }
            if let Some(vm) = vms.get(i) {
                vm.env.lazy.load::<B>(xstate);
            }
            owner = Some(i);
        }
        let Some(vm) = vms.get_mut(i) else { return };
        if let Some(reason) = run_until_switch(backend, vm, new_context, xstate.xcr0_max) {
            if let Some((_, env)) = vm.parts()
                && let Some(rest) = env.console.take_rest()
            {
                crate::log::guest_line(&env.name, rest);
            }
            let exits = vm.env.stats.total();
            crate::log!(
                "vm {} ({}): stopped: {} after {} exits",
                vm.env.id,
                vm.env.name,
                reason,
                exits
            );
            vm.stop(backend, &mut frames.lock(), reason);
        }
    }
}

/// Runs one VM until it yields (None) or stops (the reason).
fn run_until_switch<B: Backend>(
    backend: &mut B,
    vm: &mut Vm<B>,
    mut new_context: bool,
    xcr0_max: u64,
) -> Option<crate::vm::StopReason> {
    let (cpu, env) = vm.parts()?;
    if !backend.activate(cpu) {
        return Some(crate::vm::StopReason::EntryFailed {
            what: "the vCPU could not be made current",
            code: 0,
        });
    }
    loop {
        if new_context && env.kind != crate::vm::VmKind::Control {
            crate::arch::spec::entering(env.spec_id);
        }
        let info = backend.run(cpu, new_context);
        new_context = false;
        match vcpu::handle(cpu, env, info, xcr0_max) {
            Action::Resume => {}
            Action::Yield => return None,
            // Test guests are neither the control domain nor KVM-API VMs:
            // `handle` answers their hypercalls and ports itself.
            Action::ControlRequest
            | Action::ForwardIo(_)
            | Action::ForwardHypercall
            | Action::ForwardMmio(_)
            | Action::ForwardMsr(_)
            | Action::XenPage(_)
            | Action::InterruptWindow => {}
            Action::Stop(reason) => return Some(reason),
        }
    }
}
