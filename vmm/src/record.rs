//! The exit stream: one record per exit that reached the VMM, for the
//! differential test (issue 3, item 7) that runs the same guest under
//! Mojito and under Linux KVM and compares what each VMM saw.
//!
//! Rules, so that the two streams are comparable:
//! - String and REP I/O is flattened: an exit with `count` elements becomes
//!   `count` records of one element each, since one hypervisor may exit
//!   once per element where another exits once per instruction.
//! - `KVM_EXIT_INTR` is not recorded: it says when the VMM got its CPU
//!   back, not what the guest did.
//! - IN and MMIO-read records hold the value the VMM answered, so a device
//!   whose state differs shows up too.
//! - Exits Mojito handles inside the hypervisor by design never reach its
//!   VMM; [`IN_HYPERVISOR`] lists them, in this one place, and
//!   [`comparable`] removes them from a host stream before comparing.

use alloc::vec::Vec;
use core::fmt;

/// One exit as the differential test compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitRecord {
    /// One element of an IN/INS: `size` bytes from `port`, answered with
    /// `value`.
    IoIn { port: u16, size: u8, value: u32 },
    /// One element of an OUT/OUTS.
    IoOut { port: u16, size: u8, value: u32 },
    /// An MMIO read of `len` bytes, answered with `value`.
    MmioRead { addr: u64, len: u8, value: u64 },
    /// An MMIO write.
    MmioWrite { addr: u64, len: u8, value: u64 },
    /// `KVM_EXIT_HLT`.
    Hlt,
    /// `KVM_EXIT_SHUTDOWN`.
    Shutdown,
    /// `KVM_EXIT_FAIL_ENTRY` with the hardware reason.
    FailEntry { reason: u64 },
    /// `KVM_EXIT_INTERNAL_ERROR` with its suberror.
    InternalError { suberror: u32 },
    /// `KVM_EXIT_HYPERCALL` with the guest's RAX.
    Hypercall { nr: u64 },
    /// `KVM_EXIT_IRQ_WINDOW_OPEN`.
    IrqWindowOpen,
    /// `KVM_EXIT_DEBUG` with the exception vector.
    Debug { exception: u32 },
    /// `KVM_EXIT_SYSTEM_EVENT` with its type.
    SystemEvent { kind: u32 },
    /// `KVM_EXIT_X86_RDMSR`.
    RdMsr { index: u32 },
    /// `KVM_EXIT_X86_WRMSR`.
    WrMsr { index: u32, value: u64 },
    /// Any other exit reason (or a malformed exit of that reason).
    Other { exit_reason: u32 },
}

impl fmt::Display for ExitRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::IoIn { port, size, value } => write!(f, "in  {port:#06x}/{size} = {value:#x}"),
            Self::IoOut { port, size, value } => {
                write!(f, "out {port:#06x}/{size} <- {value:#x}")?;
                if size == 1 && (0x20..0x7f).contains(&value) {
                    write!(f, " '{}'", char::from(value as u8))?;
                }
                Ok(())
            }
            Self::MmioRead { addr, len, value } => {
                write!(f, "mmio read  {addr:#x}/{len} = {value:#x}")
            }
            Self::MmioWrite { addr, len, value } => {
                write!(f, "mmio write {addr:#x}/{len} <- {value:#x}")
            }
            Self::Hlt => f.write_str("hlt"),
            Self::Shutdown => f.write_str("shutdown"),
            Self::FailEntry { reason } => write!(f, "fail entry {reason:#x}"),
            Self::InternalError { suberror } => write!(f, "internal error {suberror}"),
            Self::Hypercall { nr } => write!(f, "hypercall {nr:#x}"),
            Self::IrqWindowOpen => f.write_str("irq window open"),
            Self::Debug { exception } => write!(f, "debug #{exception}"),
            Self::SystemEvent { kind } => write!(f, "system event {kind}"),
            Self::RdMsr { index } => write!(f, "rdmsr {index:#x}"),
            Self::WrMsr { index, value } => write!(f, "wrmsr {index:#x} <- {value:#x}"),
            Self::Other { exit_reason } => write!(f, "exit reason {exit_reason}"),
        }
    }
}

/// An exit Mojito answers inside the hypervisor, so its VMM never sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InHypervisor {
    /// Any access to this port.
    Port(u16),
    /// CPUID. Listed for completeness: KVM handles CPUID in the kernel as
    /// well, so it never appears in either stream.
    Cpuid,
}

/// The exits Mojito handles inside the hypervisor by design, with the
/// decision behind each. The one list the differential test uses.
pub const IN_HYPERVISOR: &[(InHypervisor, &str)] = &[
    (
        InHypervisor::Port(abi::guest::POST_PORT),
        "port 0x80 (POST / I/O delay) is answered in the hypervisor: reads 0xff, writes ignored",
    ),
    (
        InHypervisor::Cpuid,
        "D9: guest CPUID is answered in the hypervisor from the VMM's table",
    ),
];

impl InHypervisor {
    /// Whether `record` is an exit of this kind.
    pub fn matches(&self, record: &ExitRecord) -> bool {
        match (self, record) {
            (Self::Port(p), ExitRecord::IoIn { port, .. } | ExitRecord::IoOut { port, .. }) => {
                p == port
            }
            _ => false,
        }
    }
}

/// Whether Mojito's VMM would see `record` at all (see [`IN_HYPERVISOR`]).
pub fn reaches_mojito_vmm(record: &ExitRecord) -> bool {
    !IN_HYPERVISOR.iter().any(|(kind, _)| kind.matches(record))
}

/// A host-KVM stream with the exits Mojito handles itself removed.
pub fn comparable(stream: &[ExitRecord]) -> Vec<ExitRecord> {
    stream
        .iter()
        .filter(|r| reaches_mojito_vmm(r))
        .copied()
        .collect()
}

/// The first index where two streams differ (`None` when equal).
pub fn first_difference(a: &[ExitRecord], b: &[ExitRecord]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() == b.len() => None,
        None => Some(a.len().min(b.len())),
    }
}

/// The exit stream of one VM, bounded: a guest that never stops must not
/// take all memory. Records beyond the limit are counted, not kept.
#[derive(Clone, Debug)]
pub struct Recorder {
    records: Vec<ExitRecord>,
    limit: usize,
    dropped: u64,
}

/// Records kept by default (a test guest makes a few thousand).
pub const RECORD_LIMIT_DEFAULT: usize = 1 << 20;

impl Recorder {
    /// A recorder keeping at most `limit` records (0: recording off).
    pub fn new(limit: usize) -> Self {
        Self {
            records: Vec::new(),
            limit,
            dropped: 0,
        }
    }

    /// Adds a record.
    pub fn push(&mut self, record: ExitRecord) {
        if self.records.len() < self.limit {
            self.records.push(record);
        } else {
            self.dropped += 1;
        }
    }

    /// Adds one record per element of a string or REP I/O exit: `data`
    /// holds `data.len() / size` elements of `size` bytes, little-endian.
    pub fn push_io(&mut self, out: bool, port: u16, size: u8, data: &[u8]) {
        let n = usize::from(size).max(1);
        for chunk in data.chunks_exact(n) {
            let mut v = [0; 4];
            for (d, s) in v.iter_mut().zip(chunk) {
                *d = *s;
            }
            let value = u32::from_le_bytes(v);
            self.push(if out {
                ExitRecord::IoOut { port, size, value }
            } else {
                ExitRecord::IoIn { port, size, value }
            });
        }
    }

    /// The records so far.
    pub fn records(&self) -> &[ExitRecord] {
        &self.records
    }

    /// Records not kept because the limit was reached.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes the records, leaving the recorder empty.
    pub fn take(&mut self) -> Vec<ExitRecord> {
        self.dropped = 0;
        core::mem::take(&mut self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn string_io_is_flattened() {
        let mut r = Recorder::new(10);
        r.push_io(true, 0x3f8, 2, &[1, 0, 2, 0, 3, 0]);
        r.push_io(false, 0x60, 1, &[0xff]);
        assert_eq!(
            r.records(),
            [
                ExitRecord::IoOut {
                    port: 0x3f8,
                    size: 2,
                    value: 1
                },
                ExitRecord::IoOut {
                    port: 0x3f8,
                    size: 2,
                    value: 2
                },
                ExitRecord::IoOut {
                    port: 0x3f8,
                    size: 2,
                    value: 3
                },
                ExitRecord::IoIn {
                    port: 0x60,
                    size: 1,
                    value: 0xff
                },
            ]
        );
    }

    #[test]
    fn limit_counts_what_it_drops() {
        let mut r = Recorder::new(2);
        for _ in 0..5 {
            r.push(ExitRecord::Hlt);
        }
        assert_eq!(r.records().len(), 2);
        assert_eq!(r.dropped(), 3);
        assert_eq!(r.take().len(), 2);
        assert!(r.records().is_empty());
    }

    #[test]
    fn in_hypervisor_exits_are_removed() {
        let host = [
            ExitRecord::IoOut {
                port: 0xe9,
                size: 1,
                value: b'a'.into(),
            },
            ExitRecord::IoIn {
                port: 0x80,
                size: 1,
                value: 0xff,
            },
            ExitRecord::IoOut {
                port: 0x80,
                size: 1,
                value: 0,
            },
            ExitRecord::IoOut {
                port: 0xf4,
                size: 1,
                value: 0,
            },
        ];
        let mojito = [
            ExitRecord::IoOut {
                port: 0xe9,
                size: 1,
                value: b'a'.into(),
            },
            ExitRecord::IoOut {
                port: 0xf4,
                size: 1,
                value: 0,
            },
        ];
        assert_eq!(first_difference(&host, &mojito), Some(1));
        assert_eq!(first_difference(&comparable(&host), &mojito), None);
        assert_eq!(first_difference(&mojito, &mojito[..1]), Some(1));
    }

    #[test]
    fn display() {
        let r = ExitRecord::IoOut {
            port: 0xe9,
            size: 1,
            value: 0x41,
        };
        assert_eq!(format!("{r}"), "out 0x00e9/1 <- 0x41 'A'");
        assert_eq!(format!("{}", ExitRecord::Shutdown), "shutdown");
    }
}
