//! The exit handlers: each exit is answered (devices, all ones for
//! nothing), counted, recorded, and either continues the guest or stops
//! the run loop with a reason.

use abi::kvm::{
    KVM_ENOSYS, KVM_EXIT_DEBUG, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_HYPERCALL,
    KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IOAPIC_EOI,
    KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT,
    KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR,
};

use super::stop::{ExitCounts, StopReason};
use crate::devices::console::Console;
use crate::devices::debug::{DebugPort, LevelIrqPort};
use crate::devices::ioapic::{self, IoApic, Msi};
use crate::devices::scratch::Scratch;
use crate::devices::virtio::blk::Block;
use crate::devices::virtio::console::VirtioConsole;
use crate::devices::virtio::mmio::Mmio;
use crate::devices::virtio::{self, BLK_BASE, CONSOLE_BASE};
use crate::devices::{Effect, PortBus};
use crate::exit::Exit;
use crate::record::{ExitRecord, Recorder};
use alloc::vec::Vec;

/// Everything the exit handlers touch (kept apart from the vCPU, whose
/// run page an exit borrows).
pub(super) struct State {
    pub(super) bus: PortBus,
    pub(super) scratch: Scratch,
    pub(super) console: Console,
    pub(super) recorder: Recorder,
    pub(super) exits: ExitCounts,
    pub(super) uart_base: u16,
    pub(super) stop_on_yield: bool,
    /// `VmConfig::stop_on_intr` (`Vm::run` looks at it).
    pub(super) stop_on_intr: bool,
    /// The interrupt vector raised and not yet injected (userspace
    /// irqchip: `Vm::arm_interrupt`, into the BSP).
    pub(super) pending_irq: Option<u8>,
    /// What `request_interrupt_window` in the BSP's run page says.
    pub(super) window_requested: bool,
    /// The guest asked to be debugged (`abi::guest::DEBUG_PORT`).
    pub(super) debugging: bool,
    /// With hardware breakpoints.
    pub(super) hw_breakpoints: bool,
    /// Per vCPU: its `KVM_EXIT_INTR`s since its last other exit.
    pub(super) intrs_in_a_row: Vec<u32>,
    /// `VmConfig::max_intrs_in_a_row`.
    pub(super) max_intrs_in_a_row: u32,
    /// The VMM's MSRs (`abi::guest::VMM_MSR_BASE`, `VmConfig::user_msrs`).
    pub(super) vmm_msrs: [u64; abi::guest::VMM_MSR_COUNT as usize],
    /// The Xen hypercall-page MSR is emulated here (`VmConfig::xen_hvm`
    /// on a kernel without `KVM_CAP_XEN_HVM`).
    pub(super) xen_emulated: bool,
    /// The PC platform's IOAPIC (`VmConfig::platform`).
    pub(super) ioapic: Option<IoApic>,
    /// What the IOAPIC sent and `Vm::deliver_irqs` has not.
    pub(super) msis: Vec<Msi>,
    /// A redirection entry changed: the GSI routes must be set again.
    pub(super) routes_changed: bool,
    /// The UART's interrupt line as the IOAPIC last saw it.
    pub(super) uart_irq: bool,
    /// Writes to the UART's THR may be coalesced (`VmConfig::platform` on
    /// a back end with `KVM_CAP_COALESCED_PIO`), and whether its zone is
    /// registered now (`Vm::sync_coalescing`).
    pub(super) coalesce: bool,
    pub(super) thr_zone: bool,
    /// The coalesced writes taken from the ring after a RUN.
    pub(super) coalesced: Vec<crate::api::CoalescedWrite>,
    /// The virtio block device (`Vm::attach_disk`) and its line as the
    /// IOAPIC last saw it.
    pub(super) blk: Option<Mmio<Block>>,
    pub(super) blk_irq: bool,
    /// The virtio console (every VM with the platform) and its line.
    pub(super) vcon: Option<Mmio<VirtioConsole>>,
    pub(super) vcon_irq: bool,
}

/// The VMM MSR `index` names, if any.
fn vmm_msr(index: u32) -> Option<usize> {
    let i = index.checked_sub(abi::guest::VMM_MSR_BASE)?;
    (i < abi::guest::VMM_MSR_COUNT).then_some(i as usize)
}

/// What an exit handler decided.
pub(super) enum Next {
    /// The same vCPU goes on.
    Continue,
    /// `KVM_EXIT_INTR`: this vCPU's turn ends; the next one runs (round
    /// robin, `Vm::run`).
    EndTurn,
    Stop(StopReason),
    /// Carry out a memory-slot test command (`Vm::memtest`), then go on.
    Command(u8),
    /// Carry out a debugging command (`Vm::debug_command`), then go on.
    Debug(u8),
    /// Copy the Xen hypercall page the guest asked for (`Vm::xen_page`).
    XenPage(u64),
    /// Send this vector as an MSI (`Vm::signal_msi`), then go on.
    Msi(u8),
    /// A virtio device's queue was notified: carry out its requests
    /// (they need guest RAM), then go on.
    VirtioNotify,
    /// Send the MSI of the test route with this vector (`Vm::level_irq`),
    /// then go on.
    LevelIrq(u8),
    /// Step over the INT3 a software-breakpoint exit stopped at, then go
    /// on.
    SkipBreakpoint,
    /// Set RFLAGS.RF so a hardware breakpoint lets its instruction run,
    /// then go on.
    ResumeBreakpoint,
}

impl State {
    /// The offset of `addr` in the IOAPIC's window, if the VM has one and
    /// `addr` is in it.
    fn ioapic_offset(&self, addr: u64) -> Option<u64> {
        let offset = addr.checked_sub(u64::from(crate::acpi::IOAPIC_ADDR))?;
        (self.ioapic.is_some() && offset < ioapic::MMIO_LEN).then_some(offset)
    }

    /// The offset of `addr` in a virtio window starting at `base`.
    fn virtio_offset(addr: u64, base: u64) -> Option<u64> {
        addr.checked_sub(base).filter(|&o| o < virtio::MMIO_LEN)
    }

    /// Carries out the coalesced writes taken from the ring, in order.
    /// Only the UART's THR is ever registered (`Vm::sync_coalescing`), and
    /// a THR write's only effect is the byte it sends.
    pub(super) fn coalesced_writes(&mut self) {
        for w in core::mem::take(&mut self.coalesced) {
            self.exits.coalesced += 1;
            self.recorder.push_io(true, w.port, w.len, w.bytes());
            if let Effect::Output(b) = self.bus.write(w.port, w.bytes()) {
                self.console.push(b);
            }
        }
    }

    /// Handles an exit of vCPU `vcpu`.
    pub(super) fn handle(&mut self, vcpu: usize, exit: Exit<'_>) -> Next {
        if let Some(n) = self.exits.per_vcpu.get_mut(vcpu) {
            *n += 1;
        }
        if !matches!(exit, Exit::Intr)
            && let Some(n) = self.intrs_in_a_row.get_mut(vcpu)
        {
            *n = 0;
        }
        match exit {
            Exit::IoIn {
                port,
                size,
                count: _,
                data,
            } => {
                self.exits.count(KVM_EXIT_IO);
                for element in data.chunks_exact_mut(usize::from(size)) {
                    self.bus.read(port, element);
                    self.recorder.push_io(false, port, size, element);
                }
                Next::Continue
            }
            Exit::IoOut {
                port,
                size,
                count: _,
                data,
            } => {
                self.exits.count(KVM_EXIT_IO);
                let mut next = Next::Continue;
                for element in data.chunks_exact(usize::from(size)) {
                    self.recorder.push_io(true, port, size, element);
                    match self.bus.write(port, element) {
                        Effect::None => {}
                        Effect::Output(b) => self.console.push(b),
                        Effect::Exit(status) => {
                            // The guest is gone: later elements of a REP
                            // OUTS are not performed.
                            return Next::Stop(StopReason::Exited(status));
                        }
                        Effect::Yield if self.stop_on_yield => next = Next::Stop(StopReason::Yield),
                        Effect::Yield => {}
                        Effect::Command(c) => next = Next::Command(c),
                        Effect::Irq(v) => self.pending_irq = Some(v),
                        Effect::Msi(v) => next = Next::Msi(v),
                        Effect::LevelIrq(v) => next = Next::LevelIrq(v),
                        Effect::Debug(c) => next = Next::Debug(c),
                        Effect::PowerOff => return Next::Stop(StopReason::PoweredOff),
                        Effect::Reset => return Next::Stop(StopReason::Reset),
                    }
                }
                next
            }
            Exit::MmioRead { addr, data } => {
                self.exits.count(KVM_EXIT_MMIO);
                if let Some(offset) = self.ioapic_offset(addr)
                    && let Some(io) = self.ioapic.as_mut()
                {
                    io.read(offset, data);
                } else if let (Some(blk), Some(offset)) =
                    (&self.blk, Self::virtio_offset(addr, BLK_BASE))
                {
                    blk.read(offset, data);
                } else if let (Some(vcon), Some(offset)) =
                    (&self.vcon, Self::virtio_offset(addr, CONSOLE_BASE))
                {
                    vcon.read(offset, data);
                } else if !self.scratch.read(addr, data) {
                    *self.exits.mmio_reads.entry(addr).or_default() += 1;
                    data.fill(0xff);
                }
                self.recorder.push(ExitRecord::MmioRead {
                    addr,
                    len: data.len() as u8,
                    value: le_value(data),
                });
                Next::Continue
            }
            Exit::MmioWrite { addr, data } => {
                self.exits.count(KVM_EXIT_MMIO);
                let mut notify = false;
                if let Some(offset) = self.ioapic_offset(addr)
                    && let Some(io) = self.ioapic.as_mut()
                {
                    self.routes_changed |= io.write(offset, data, &mut self.msis);
                } else if let (Some(blk), Some(offset)) =
                    (self.blk.as_mut(), Self::virtio_offset(addr, BLK_BASE))
                {
                    notify = blk.write(offset, data);
                } else if let (Some(vcon), Some(offset)) =
                    (self.vcon.as_mut(), Self::virtio_offset(addr, CONSOLE_BASE))
                {
                    notify = vcon.write(offset, data);
                } else if !self.scratch.write(addr, data) {
                    *self.exits.mmio_writes.entry(addr).or_default() += 1;
                }
                self.recorder.push(ExitRecord::MmioWrite {
                    addr,
                    len: data.len() as u8,
                    value: le_value(data),
                });
                if notify {
                    Next::VirtioNotify
                } else {
                    Next::Continue
                }
            }
            Exit::Hlt => {
                self.exits.count(KVM_EXIT_HLT);
                self.recorder.push(ExitRecord::Hlt);
                // An interrupt on its way wakes the vCPU (injected on the
                // next RUN); otherwise nothing can.
                if self.pending_irq.is_some() {
                    Next::Continue
                } else {
                    Next::Stop(StopReason::Halted)
                }
            }
            Exit::Shutdown => {
                self.exits.count(KVM_EXIT_SHUTDOWN);
                self.recorder.push(ExitRecord::Shutdown);
                Next::Stop(StopReason::Shutdown)
            }
            Exit::FailEntry { reason, cpu } => {
                self.exits.count(KVM_EXIT_FAIL_ENTRY);
                self.recorder.push(ExitRecord::FailEntry { reason });
                Next::Stop(StopReason::FailEntry { reason, cpu })
            }
            Exit::InternalError {
                suberror,
                ndata,
                data,
            } => {
                self.exits.count(KVM_EXIT_INTERNAL_ERROR);
                self.recorder.push(ExitRecord::InternalError { suberror });
                let n = (ndata as usize).min(data.len());
                Next::Stop(StopReason::InternalError {
                    suberror,
                    data: data.get(..n).unwrap_or_default().to_vec(),
                })
            }
            Exit::Hypercall { nr, ret, .. } => {
                // Only what KVM_CAP_EXIT_HYPERCALL enabled reaches the VMM,
                // and the VMM implements none: answer as KVM answers an
                // unknown hypercall (DESIGN.md D1).
                self.exits.count(KVM_EXIT_HYPERCALL);
                self.recorder.push(ExitRecord::Hypercall { nr });
                *ret = (-i64::from(KVM_ENOSYS)) as u64;
                Next::Continue
            }
            Exit::Intr => {
                // Not recorded: it says when the VMM got its CPU back, not
                // what the guest did.
                self.exits.count(KVM_EXIT_INTR);
                if let Some(n) = self.intrs_in_a_row.get_mut(vcpu) {
                    *n = n.saturating_add(1);
                }
                // The VM keeps its CPU without exiting only if every vCPU
                // does: a halted AP gets nothing but KVM_EXIT_INTR while
                // the BSP works.
                let least = self.intrs_in_a_row.iter().copied().min().unwrap_or(0);
                if self.max_intrs_in_a_row > 0 && least >= self.max_intrs_in_a_row {
                    return Next::Stop(StopReason::NoExit { intrs: least });
                }
                Next::EndTurn
            }
            Exit::IrqWindowOpen => {
                self.exits.count(KVM_EXIT_IRQ_WINDOW_OPEN);
                self.recorder.push(ExitRecord::IrqWindowOpen);
                Next::Continue
            }
            Exit::Debug { exception, .. } => {
                self.exits.count(KVM_EXIT_DEBUG);
                self.recorder.push(ExitRecord::Debug { exception });
                let Some(port) = self
                    .bus
                    .get_mut::<DebugPort>(abi::guest::DEBUG_PORT)
                    .filter(|_| self.debugging)
                else {
                    return Next::Stop(StopReason::Unhandled {
                        exit_reason: KVM_EXIT_DEBUG,
                    });
                };
                port.exits += 1;
                if exception == 3 {
                    Next::SkipBreakpoint
                } else if self.hw_breakpoints {
                    Next::ResumeBreakpoint
                } else {
                    Next::Continue
                }
            }
            Exit::SystemEvent { kind } => {
                self.exits.count(KVM_EXIT_SYSTEM_EVENT);
                self.recorder.push(ExitRecord::SystemEvent { kind });
                Next::Stop(StopReason::SystemEvent(kind))
            }
            Exit::RdMsr { index, data, error } => {
                // The VMM's own MSRs; any other (unknown to the kernel, or
                // one a filter sends here) is refused: #GP, as KVM would.
                self.exits.count(KVM_EXIT_X86_RDMSR);
                self.recorder.push(ExitRecord::RdMsr { index });
                match vmm_msr(index) {
                    Some(i) => *data = self.vmm_msrs[i],
                    None => *error = 1,
                }
                Next::Continue
            }
            Exit::WrMsr { index, data, error } => {
                self.exits.count(KVM_EXIT_X86_WRMSR);
                self.recorder.push(ExitRecord::WrMsr { index, value: data });
                if self.xen_emulated && index == abi::guest::XEN_HYPERCALL_MSR {
                    return Next::XenPage(data);
                }
                match vmm_msr(index) {
                    Some(i) => self.vmm_msrs[i] = data,
                    None => *error = 1,
                }
                Next::Continue
            }
            Exit::IoapicEoi { vector } => {
                // The EOI is done; a VMM's IOAPIC would clear the remote
                // IRR of the pins routed to `vector` here (issue 7). The
                // test port counts its vectors' EOIs.
                self.exits.count(KVM_EXIT_IOAPIC_EOI);
                self.recorder.push(ExitRecord::IoapicEoi { vector });
                if let Some(io) = self.ioapic.as_mut() {
                    io.eoi(vector, &mut self.msis);
                }
                if let Some(port) = self.bus.get_mut::<LevelIrqPort>(abi::guest::LEVEL_IRQ_PORT) {
                    port.count_eoi(vector);
                }
                Next::Continue
            }
            Exit::Other(exit_reason) => {
                self.exits.count(exit_reason);
                self.recorder.push(ExitRecord::Other { exit_reason });
                Next::Stop(StopReason::Unhandled { exit_reason })
            }
            Exit::Malformed { exit_reason, what } => {
                self.exits.count(exit_reason);
                self.recorder.push(ExitRecord::Other { exit_reason });
                Next::Stop(StopReason::Malformed { exit_reason, what })
            }
        }
    }
}

/// Up to 8 bytes, little-endian, as a number.
fn le_value(data: &[u8]) -> u64 {
    let mut v = [0; 8];
    for (d, s) in v.iter_mut().zip(data) {
        *d = *s;
    }
    u64::from_le_bytes(v)
}
