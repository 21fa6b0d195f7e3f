//! The VM lifecycle benchmark (issue 9, item 2): what it costs to get from
//! nothing to a guest's first exit and back to nothing, on any back end.
//!
//! The steps are the KVM API's own: `KVM_CREATE_VM`, one 4 KiB memory slot
//! holding the reset vector, `KVM_CREATE_VCPU` (its reset state starts at
//! F000:FFF0, so no register needs setting), `KVM_RUN` until the guest's
//! first instruction, an `OUT`, exits to the VMM, and closing the vCPU and
//! the VM. The caller's clock times each step: TSC ticks in the control
//! domain (instructions under QEMU `-icount` and Bochs), nanoseconds on the
//! host.

use alloc::format;
use alloc::string::String;

use abi::kvm::errno::EINTR;

use crate::api::{GuestMemory, System, Vcpu, Vm};
use crate::exit::Exit;

/// The port the guest's first instruction writes (unassigned everywhere).
pub const LIFECYCLE_PORT: u16 = 0xef;

/// RUNs ended by -EINTR that are run again before the benchmark gives up.
const MAX_INTERRUPTED: u32 = 100;

/// Where the slot lies: the last page under 4 GiB, which holds the reset
/// vector 0xffff_fff0 (SDM Vol. 3A 10.1.4, "First Instruction Executed").
const RESET_PAGE: u64 = 0xffff_f000;
/// The reset vector's offset in that page.
const RESET_OFFSET: u64 = 0xff0;
/// `out LIFECYCLE_PORT, al` (E6 ib), then `hlt` should the VMM resume it.
const CODE: [u8; 3] = [0xe6, LIFECYCLE_PORT as u8, 0xf4];

/// Each step's cost in the caller's clock units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// `KVM_CREATE_VM`.
    pub create_vm: u64,
    /// Allocating the 4 KiB, writing the code, `KVM_SET_USER_MEMORY_REGION`.
    pub memory: u64,
    /// `KVM_CREATE_VCPU` (with its run page).
    pub create_vcpu: u64,
    /// `KVM_RUN`: the first instruction and its exit back to the VMM.
    pub first_exit: u64,
    /// Closing the vCPU and the VM.
    pub close: u64,
}

impl Lifecycle {
    /// Everything from `KVM_CREATE_VM` to the first exit (the issue's
    /// figure; closing is reported beside it).
    pub fn to_first_exit(&self) -> u64 {
        self.create_vm + self.memory + self.create_vcpu + self.first_exit
    }
}

/// Runs the lifecycle once on `sys`, timing each step with `now`. An error
/// says which step failed, or what the guest's first exit was instead.
pub fn lifecycle<S: System>(sys: &S, mut now: impl FnMut() -> u64) -> Result<Lifecycle, String> {
    let t0 = now();
    let mut vm = sys
        .create_vm()
        .map_err(|e| format!("KVM_CREATE_VM: -{e}"))?;
    let t1 = now();
    let memory = vm
        .alloc_memory(4096)
        .map_err(|e| format!("allocating 4 KiB: -{e}"))?;
    memory
        .ram()
        .write(RESET_OFFSET, &CODE)
        .map_err(|_| String::from("writing the reset vector"))?;
    vm.set_user_memory_region(0, 0, RESET_PAGE, memory)
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: -{e}"))?;
    let t2 = now();
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: -{e}"))?;
    let t3 = now();
    // A RUN that a timer tick ended (-EINTR: under Mojito the control
    // domain's CPU comes back on every tick) is run again; the time counts.
    let mut interrupted = 0;
    let page = loop {
        match vcpu.run() {
            Err(EINTR) if interrupted < MAX_INTERRUPTED => interrupted += 1,
            Err(e) => return Err(format!("KVM_RUN: -{e}")),
            Ok(_) => break vcpu.run_page(),
        }
    };
    let t4 = now();
    match Exit::decode(page) {
        Exit::IoOut { port, size: 1, .. } if port == LIFECYCLE_PORT => {}
        other => {
            return Err(format!(
                "the first exit was {other:?}, not OUT to {LIFECYCLE_PORT:#x}"
            ));
        }
    }
    drop(vcpu);
    drop(vm);
    let t5 = now();
    Ok(Lifecycle {
        create_vm: t1.wrapping_sub(t0),
        memory: t2.wrapping_sub(t1),
        create_vcpu: t3.wrapping_sub(t2),
        first_exit: t4.wrapping_sub(t3),
        close: t5.wrapping_sub(t4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeSystem, Scripted};

    fn out(port: u16) -> Scripted {
        Scripted::Io {
            out: true,
            port,
            size: 1,
            count: 1,
            data: vec![0],
        }
    }

    #[test]
    fn interrupted_runs_are_run_again() {
        let mut clock = 0;
        let now = || {
            clock += 10;
            clock
        };
        let script = vec![
            Scripted::Fail(EINTR),
            Scripted::Fail(EINTR),
            out(LIFECYCLE_PORT),
        ];
        let l = lifecycle(&FakeSystem::new(script), now).unwrap();
        assert_eq!(l.first_exit, 10);
        assert_eq!(l.to_first_exit(), 40);
    }

    #[test]
    fn another_first_exit_is_an_error() {
        let e = lifecycle(&FakeSystem::new(vec![out(0x80)]), || 0).unwrap_err();
        assert!(e.contains("not OUT to 0xef"), "{e}");
        let e = lifecycle(&FakeSystem::new(vec![Scripted::Fail(14)]), || 0).unwrap_err();
        assert_eq!(e, "KVM_RUN: -14");
    }
}
