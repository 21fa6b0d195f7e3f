//! Why the run loop returned, and the exit counts it keeps.

use abi::kvm::{
    KVM_EXIT_DEBUG, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_HYPERCALL, KVM_EXIT_INTERNAL_ERROR,
    KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IOAPIC_EOI, KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_MMIO,
    KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT, KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR,
    KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::api::Errno;

/// Why the run loop returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest wrote `status` to the debug-exit port (0 = pass).
    Exited(u32),
    /// The guest powered the machine off (ACPI S5).
    PoweredOff,
    /// The guest reset the machine (the 8042's reset line): the VM stops,
    /// as a VMM run with QEMU's `-no-reboot` does.
    Reset,
    /// HLT with no interrupt source that could wake the vCPU.
    Halted,
    /// `KVM_EXIT_SHUTDOWN`: a triple fault.
    Shutdown,
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry { reason: u64, cpu: u32 },
    /// `KVM_EXIT_INTERNAL_ERROR`: the suberror and its data words.
    InternalError { suberror: u32, data: Vec<u64> },
    /// `KVM_EXIT_SYSTEM_EVENT` of this type.
    SystemEvent(u32),
    /// The guest wrote the yield port and the VM stops on yields
    /// ([`VmConfig::stop_on_yield`]); `run` again to continue.
    Yield,
    /// [`StopHandle::stop`] was called; `run` again to continue.
    Requested,
    /// `KVM_EXIT_INTR` and the VM stops on them
    /// ([`VmConfig::stop_on_intr`]); `run` again to continue.
    Interrupted,
    /// `KVM_RUN` itself failed with this errno.
    RunFailed(Errno),
    /// `intrs` `KVM_EXIT_INTR`s came in a row without another exit
    /// ([`VmConfig::max_intrs_in_a_row`]): the guest keeps its CPU and
    /// never exits to the VMM.
    NoExit { intrs: u32 },
    /// An exit the VMM does not handle.
    Unhandled { exit_reason: u32 },
    /// A run page that contradicts itself.
    Malformed {
        exit_reason: u32,
        what: &'static str,
    },
}

impl StopReason {
    /// Whether the VM only paused (a yield, a stop request, an
    /// interrupted RUN): `run` again continues it.
    pub fn is_pause(&self) -> bool {
        matches!(self, Self::Yield | Self::Requested | Self::Interrupted)
    }

    /// For `KVM_INTERNAL_ERROR_EMULATION` with the instruction bytes
    /// attached (`kvm_run_emulation_failure`): the bytes KVM fetched at the
    /// instruction it could not emulate (`insn_size` of them; KVM reports
    /// its whole 15-byte fetch window, so more than the instruction).
    pub fn failed_instruction(&self) -> Option<Vec<u8>> {
        let Self::InternalError { suberror, data } = self else {
            return None;
        };
        let flags = *data.first()?;
        if *suberror != KVM_INTERNAL_ERROR_EMULATION
            || flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES == 0
        {
            return None;
        }
        // data[1..3] hold insn_size (1 byte) and insn_bytes (15 bytes).
        let bytes: Vec<u8> = data
            .iter()
            .skip(1)
            .take(2)
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let (&size, insn) = bytes.split_first()?;
        insn.get(..usize::from(size).min(insn.len()))
            .map(<[u8]>::to_vec)
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(s) => write!(f, "exited with status {s}"),
            Self::PoweredOff => f.write_str("powered off"),
            Self::Reset => f.write_str("reset by the guest"),
            Self::Halted => f.write_str("halted"),
            Self::Shutdown => f.write_str("triple fault"),
            Self::FailEntry { reason, cpu } => {
                write!(
                    f,
                    "VM entry failed (hardware reason {reason:#x}, cpu {cpu})"
                )
            }
            Self::InternalError { suberror, data } => {
                write!(f, "internal error {suberror} {data:x?}")
            }
            Self::SystemEvent(kind) => write!(f, "system event {kind}"),
            Self::Yield => f.write_str("yielded"),
            Self::Requested => f.write_str("stopped on request"),
            Self::Interrupted => f.write_str("KVM_RUN interrupted"),
            Self::RunFailed(e) => write!(f, "KVM_RUN failed: errno {e}"),
            Self::NoExit { intrs } => {
                write!(f, "no exit to the VMM in {intrs} KVM_EXIT_INTRs in a row")
            }
            Self::Unhandled { exit_reason } => write!(f, "unhandled exit reason {exit_reason}"),
            Self::Malformed { exit_reason, what } => {
                write!(f, "malformed exit (reason {exit_reason}): {what}")
            }
        }
    }
}

/// Exits per `KVM_EXIT_*` reason (before string I/O is flattened), per
/// vCPU, and the MMIO addresses no device claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    pub by_reason: BTreeMap<u32, u64>,
    /// Exits of each vCPU, by vCPU id (`KVM_EXIT_INTR` included, as in
    /// `by_reason`): they add up to the same total.
    pub per_vcpu: Vec<u64>,
    pub mmio_reads: BTreeMap<u64, u64>,
    pub mmio_writes: BTreeMap<u64, u64>,
    /// Port writes that came through the coalesced ring (no exit).
    pub coalesced: u64,
}

impl ExitCounts {
    /// Exits of reason `exit_reason` so far.
    pub fn get(&self, exit_reason: u32) -> u64 {
        self.by_reason.get(&exit_reason).copied().unwrap_or(0)
    }

    pub(super) fn count(&mut self, exit_reason: u32) {
        *self.by_reason.entry(exit_reason).or_default() += 1;
    }
}

/// The name of an exit reason, for reports.
pub fn exit_reason_name(reason: u32) -> &'static str {
    match reason {
        KVM_EXIT_IO => "io",
        KVM_EXIT_HYPERCALL => "hypercall",
        KVM_EXIT_DEBUG => "debug",
        KVM_EXIT_HLT => "hlt",
        KVM_EXIT_MMIO => "mmio",
        KVM_EXIT_IRQ_WINDOW_OPEN => "irq_window_open",
        KVM_EXIT_SHUTDOWN => "shutdown",
        KVM_EXIT_FAIL_ENTRY => "fail_entry",
        KVM_EXIT_INTR => "intr",
        KVM_EXIT_INTERNAL_ERROR => "internal_error",
        KVM_EXIT_SYSTEM_EVENT => "system_event",
        KVM_EXIT_X86_RDMSR => "x86_rdmsr",
        KVM_EXIT_X86_WRMSR => "x86_wrmsr",
        KVM_EXIT_IOAPIC_EOI => "ioapic_eoi",
        _ => "other",
    }
}

impl fmt::Display for ExitCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (reason, n) in &self.by_reason {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{} ({reason}): {n}", exit_reason_name(*reason))?;
        }
        Ok(())
    }
}

/// What `run` returns: why the VM stopped and the exits so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reason: StopReason,
    pub exits: ExitCounts,
}
