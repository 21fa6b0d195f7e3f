//! What a `KVM_RUN` exit means, decoded once from the run page for every
//! back end (in the style of `kvm-ioctls`' `VcpuExit`, which borrows the
//! run page). Unknown reasons become [`Exit::Other`]; a run page whose
//! fields contradict themselves (an I/O size of 3, data outside the run
//! area) becomes [`Exit::Malformed`] — never a panic.

use abi::kvm::{
    KVM_EXIT_DEBUG, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_HYPERCALL, KVM_EXIT_INTERNAL_ERROR,
    KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT, KVM_EXIT_IOAPIC_EOI,
    KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT,
    KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR, kvm_run,
};

use crate::api::RunPage;

/// One exit, borrowing the run page: data the VMM must fill (IN, MMIO
/// read, RDMSR, hypercall result) is a mutable borrow of the run page
/// itself, so the next `KVM_RUN` completes the instruction with it.
#[derive(Debug)]
pub enum Exit<'a> {
    /// `KVM_EXIT_IO`, direction in: `count` elements of `size` bytes to
    /// fill in `data` (`count` > 1 for INS and REP INS).
    IoIn {
        port: u16,
        size: u8,
        count: u32,
        data: &'a mut [u8],
    },
    /// `KVM_EXIT_IO`, direction out: `count` elements of `size` bytes.
    IoOut {
        port: u16,
        size: u8,
        count: u32,
        data: &'a [u8],
    },
    /// `KVM_EXIT_MMIO` read: fill `data` (`len` bytes).
    MmioRead { addr: u64, data: &'a mut [u8] },
    /// `KVM_EXIT_MMIO` write.
    MmioWrite { addr: u64, data: &'a [u8] },
    /// `KVM_EXIT_HLT`.
    Hlt,
    /// `KVM_EXIT_SHUTDOWN`: a triple fault.
    Shutdown,
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry { reason: u64, cpu: u32 },
    /// `KVM_EXIT_INTERNAL_ERROR`: `suberror` and the first `ndata` words.
    InternalError {
        suberror: u32,
        ndata: u32,
        data: [u64; 16],
    },
    /// `KVM_EXIT_HYPERCALL`: `ret` becomes the guest's RAX.
    Hypercall {
        nr: u64,
        args: [u64; 6],
        ret: &'a mut u64,
    },
    /// `KVM_EXIT_INTR`: the VMM got its CPU back; nothing happened in the
    /// guest.
    Intr,
    /// `KVM_EXIT_IRQ_WINDOW_OPEN`.
    IrqWindowOpen,
    /// `KVM_EXIT_DEBUG`.
    Debug { exception: u32, pc: u64 },
    /// `KVM_EXIT_SYSTEM_EVENT`.
    SystemEvent { kind: u32 },
    /// `KVM_EXIT_X86_RDMSR`: fill `data`, or set `error` to 1 for #GP.
    RdMsr {
        index: u32,
        data: &'a mut u64,
        error: &'a mut u8,
    },
    /// `KVM_EXIT_X86_WRMSR`: set `error` to 1 for #GP.
    WrMsr {
        index: u32,
        data: u64,
        error: &'a mut u8,
    },
    /// `KVM_EXIT_IOAPIC_EOI` (split irqchip): the guest EOIed `vector`,
    /// a level-triggered vector a reserved IOAPIC pin routes to this vCPU;
    /// the EOI is done.
    IoapicEoi { vector: u8 },
    /// Any other exit reason.
    Other(u32),
    /// The run page contradicts itself; the string says how.
    Malformed {
        exit_reason: u32,
        what: &'static str,
    },
}

impl<'a> Exit<'a> {
    /// Decodes the exit the run page describes.
    pub fn decode(page: RunPage<'a>) -> Self {
        let (run, rest) = page.into_parts();
        let reason = run.exit_reason;
        match reason {
            KVM_EXIT_IO => decode_io(run, rest),
            KVM_EXIT_MMIO => {
                // SAFETY: every member of the exit union is plain integers,
                // so any bit pattern is a valid `kvm_run_mmio`.
                let mmio = unsafe { &mut run.exit.mmio };
                let Some(data) = usize::try_from(mmio.len)
                    .ok()
                    .filter(|n| matches!(n, 1 | 2 | 4 | 8))
                    .and_then(|n| mmio.data.get_mut(..n))
                else {
                    return Self::Malformed {
                        exit_reason: reason,
                        what: "MMIO length not 1, 2, 4 or 8",
                    };
                };
                let addr = mmio.phys_addr;
                if mmio.is_write != 0 {
                    Self::MmioWrite { addr, data }
                } else {
                    Self::MmioRead { addr, data }
                }
            }
            KVM_EXIT_HLT => Self::Hlt,
            KVM_EXIT_SHUTDOWN => Self::Shutdown,
            KVM_EXIT_FAIL_ENTRY => {
                // SAFETY: as above (plain integers).
                let f = unsafe { run.exit.fail_entry };
                Self::FailEntry {
                    reason: f.hardware_entry_failure_reason,
                    cpu: f.cpu,
                }
            }
            KVM_EXIT_INTERNAL_ERROR => {
                // SAFETY: as above (plain integers).
                let i = unsafe { run.exit.internal };
                Self::InternalError {
                    suberror: i.suberror,
                    ndata: i.ndata.min(16),
                    data: i.data,
                }
            }
            KVM_EXIT_HYPERCALL => {
                // SAFETY: as above (plain integers).
                let h = unsafe { &mut run.exit.hypercall };
                Self::Hypercall {
                    nr: h.nr,
                    args: h.args,
                    ret: &mut h.ret,
                }
            }
            KVM_EXIT_INTR => Self::Intr,
            KVM_EXIT_IRQ_WINDOW_OPEN => Self::IrqWindowOpen,
            KVM_EXIT_DEBUG => {
                // SAFETY: as above (plain integers).
                let d = unsafe { run.exit.debug };
                Self::Debug {
                    exception: d.arch.exception,
                    pc: d.arch.pc,
                }
            }
            KVM_EXIT_SYSTEM_EVENT => {
                // SAFETY: as above (plain integers).
                let e = unsafe { run.exit.system_event };
                Self::SystemEvent { kind: e.type_ }
            }
            KVM_EXIT_X86_RDMSR | KVM_EXIT_X86_WRMSR => {
                // SAFETY: as above (plain integers).
                let m = unsafe { &mut run.exit.msr };
                if reason == KVM_EXIT_X86_RDMSR {
                    Self::RdMsr {
                        index: m.index,
                        data: &mut m.data,
                        error: &mut m.error,
                    }
                } else {
                    Self::WrMsr {
                        index: m.index,
                        data: m.data,
                        error: &mut m.error,
                    }
                }
            }
            KVM_EXIT_IOAPIC_EOI => {
                // SAFETY: as above (plain integers).
                let e = unsafe { run.exit.eoi };
                Self::IoapicEoi { vector: e.vector }
            }
            other => Self::Other(other),
        }
    }
}

/// `KVM_EXIT_IO`: the data lies at `data_offset` bytes from the start of
/// `kvm_run`, `size * count` bytes (KVM's `api.rst`, "KVM_EXIT_IO").
fn decode_io<'a>(run: &'a mut kvm_run, rest: &'a mut [u8]) -> Exit<'a> {
    // SAFETY: every member of the exit union is plain integers, so any bit
    // pattern is a valid `kvm_run_io`.
    let io = unsafe { run.exit.io };
    let malformed = |what| Exit::Malformed {
        exit_reason: KVM_EXIT_IO,
        what,
    };
    if !matches!(io.size, 1 | 2 | 4) {
        return malformed("I/O size not 1, 2 or 4");
    }
    let Some(len) = usize::try_from(io.count)
        .ok()
        .and_then(|c| c.checked_mul(usize::from(io.size)))
    else {
        return malformed("I/O count too large");
    };
    let Some(data) = usize::try_from(io.data_offset)
        .ok()
        .and_then(|off| off.checked_sub(size_of::<kvm_run>()))
        .and_then(|start| rest.get_mut(start..start.checked_add(len)?))
    else {
        return malformed("I/O data outside the run area");
    };
    match io.direction {
        KVM_EXIT_IO_IN => Exit::IoIn {
            port: io.port,
            size: io.size,
            count: io.count,
            data,
        },
        KVM_EXIT_IO_OUT => Exit::IoOut {
            port: io.port,
            size: io.size,
            count: io.count,
            data,
        },
        _ => malformed("I/O direction neither in nor out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::kvm::{KVM_PIO_PAGE_OFFSET, kvm_run_io};
    use alloc::vec;
    use core::ptr::NonNull;

    const AREA: usize = 8192;

    /// A run area in ordinary memory with `f` applied to its `kvm_run`.
    fn with_page(area: &mut [u64], f: impl FnOnce(&mut kvm_run, &mut [u8])) -> Exit<'_> {
        let ptr = NonNull::new(area.as_mut_ptr().cast::<u8>()).unwrap();
        let len = area.len() * 8;
        // SAFETY: the area is borrowed for the result's lifetime.
        let page = unsafe { RunPage::from_raw(ptr, len) }.unwrap();
        let (run, rest) = page.into_parts();
        f(run, rest);
        // SAFETY: as above; the borrows from `into_parts` ended.
        Exit::decode(unsafe { RunPage::from_raw(ptr, len) }.unwrap())
    }

    #[test]
    fn string_io_out_uses_data_offset_and_count() {
        let mut area = vec![0u64; AREA / 8];
        let off = u64::from(KVM_PIO_PAGE_OFFSET) * 4096;
        let exit = with_page(&mut area, |run, rest| {
            run.exit_reason = KVM_EXIT_IO;
            run.exit.io = kvm_run_io {
                direction: KVM_EXIT_IO_OUT,
                size: 2,
                port: 0x3f8,
                count: 3,
                data_offset: off,
            };
            let start = off as usize - size_of::<kvm_run>();
            rest[start..start + 6].copy_from_slice(&[1, 0, 2, 0, 3, 0]);
        });
        match exit {
            Exit::IoOut {
                port: 0x3f8,
                size: 2,
                count: 3,
                data,
            } => assert_eq!(data, &[1, 0, 2, 0, 3, 0]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_io_is_malformed_not_a_panic() {
        for (size, count, offset) in [
            (3, 1, 4096),
            (4, 1025, 4096),
            (1, 1, 16),
            (1, u32::MAX, 4096),
            (1, 1, u64::MAX),
        ] {
            let mut area = vec![0u64; AREA / 8];
            let exit = with_page(&mut area, |run, _| {
                run.exit_reason = KVM_EXIT_IO;
                run.exit.io = kvm_run_io {
                    direction: KVM_EXIT_IO_IN,
                    size,
                    port: 1,
                    count,
                    data_offset: offset,
                };
            });
            assert!(
                matches!(exit, Exit::Malformed { .. }),
                "{size} {count} {offset}: {exit:?}"
            );
        }
    }

    #[test]
    fn mmio_and_others() {
        let mut area = vec![0u64; AREA / 8];
        let exit = with_page(&mut area, |run, _| {
            run.exit_reason = KVM_EXIT_MMIO;
            run.exit.mmio.phys_addr = 0xfee0_0000;
            run.exit.mmio.len = 4;
            run.exit.mmio.is_write = 1;
            run.exit.mmio.data = [1, 2, 3, 4, 5, 6, 7, 8];
        });
        assert!(matches!(
            exit,
            Exit::MmioWrite {
                addr: 0xfee0_0000,
                data: [1, 2, 3, 4]
            }
        ));
        let mut area = vec![0u64; AREA / 8];
        let exit = with_page(&mut area, |run, _| {
            run.exit_reason = KVM_EXIT_MMIO;
            run.exit.mmio.len = 5;
        });
        assert!(matches!(exit, Exit::Malformed { .. }));
        let mut area = vec![0u64; AREA / 8];
        let exit = with_page(&mut area, |run, _| run.exit_reason = 1234);
        assert!(matches!(exit, Exit::Other(1234)));
        let mut area = vec![0u64; AREA / 8];
        let exit = with_page(&mut area, |run, _| run.exit_reason = KVM_EXIT_SHUTDOWN);
        assert!(matches!(exit, Exit::Shutdown));
        let mut area = vec![0u64; AREA / 8];
        let exit = with_page(&mut area, |run, _| {
            run.exit_reason = KVM_EXIT_IOAPIC_EOI;
            run.exit.eoi.vector = 0x5c;
        });
        assert!(matches!(exit, Exit::IoapicEoi { vector: 0x5c }));
    }
}
