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
//!
//! # The compact form
//!
//! The control domain prints each VM's stream on the serial line for the
//! host side of the test to read back, as whitespace-free tokens
//! ([`compact`], [`parse_compact`]); [`fnv1a`] names a whole stream in one
//! number. Numbers are hexadecimal without `0x`, except repeat counts.
//!
//! | token | records |
//! |---|---|
//! | `in:PORT/SIZE=VALUE`, `out:PORT/SIZE=VALUE` | [`ExitRecord::IoIn`], [`ExitRecord::IoOut`] |
//! | `"TEXT"` | one `out:e9/1=C` (the debug console) per character of TEXT: printable ASCII, with `\_` for a space, `\n` for a newline, `\"` and `\\` |
//! | `mmr:ADDR/LEN=VALUE`, `mmw:ADDR/LEN=VALUE` | MMIO read, write |
//! | `hlt`, `shutdown`, `irqwin` | HLT, shutdown, interrupt window |
//! | `failentry:R`, `internal:S`, `hypercall:NR`, `debug:V`, `sysevent:T`, `rdmsr:I`, `wrmsr:I=V`, `eoi:V`, `exit:R` | the other records |
//! | any of these but `"TEXT"`, then `*N` (decimal) | N identical records in a row |

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

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
    /// `KVM_EXIT_IOAPIC_EOI` with the vector EOIed.
    IoapicEoi { vector: u8 },
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
            Self::IoapicEoi { vector } => write!(f, "ioapic eoi {vector:#x}"),
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
    /// A write to this MSR.
    MsrWrite(u32),
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
    (
        InHypervisor::MsrWrite(abi::guest::XEN_HYPERCALL_MSR),
        "the Xen hypercall-page MSR is handled in the hypervisor (KVM_XEN_HVM_CONFIG); a host \
         KVM without KVM_CAP_XEN_HVM sends it to the VMM as a userspace MSR exit",
    ),
];

impl InHypervisor {
    /// Whether `record` is an exit of this kind.
    pub fn matches(&self, record: &ExitRecord) -> bool {
        match (self, record) {
            (Self::Port(p), ExitRecord::IoIn { port, .. } | ExitRecord::IoOut { port, .. }) => {
                p == port
            }
            (Self::MsrWrite(m), ExitRecord::WrMsr { index, .. }) => m == index,
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

/// Writes the token of one record (no repeat count, no console string).
fn token(r: &ExitRecord, f: &mut impl fmt::Write) -> fmt::Result {
    match *r {
        ExitRecord::IoIn { port, size, value } => write!(f, "in:{port:x}/{size:x}={value:x}"),
        ExitRecord::IoOut { port, size, value } => write!(f, "out:{port:x}/{size:x}={value:x}"),
        ExitRecord::MmioRead { addr, len, value } => write!(f, "mmr:{addr:x}/{len:x}={value:x}"),
        ExitRecord::MmioWrite { addr, len, value } => write!(f, "mmw:{addr:x}/{len:x}={value:x}"),
        ExitRecord::Hlt => f.write_str("hlt"),
        ExitRecord::Shutdown => f.write_str("shutdown"),
        ExitRecord::IrqWindowOpen => f.write_str("irqwin"),
        ExitRecord::FailEntry { reason } => write!(f, "failentry:{reason:x}"),
        ExitRecord::InternalError { suberror } => write!(f, "internal:{suberror:x}"),
        ExitRecord::Hypercall { nr } => write!(f, "hypercall:{nr:x}"),
        ExitRecord::Debug { exception } => write!(f, "debug:{exception:x}"),
        ExitRecord::SystemEvent { kind } => write!(f, "sysevent:{kind:x}"),
        ExitRecord::RdMsr { index } => write!(f, "rdmsr:{index:x}"),
        ExitRecord::WrMsr { index, value } => write!(f, "wrmsr:{index:x}={value:x}"),
        ExitRecord::IoapicEoi { vector } => write!(f, "eoi:{vector:x}"),
        ExitRecord::Other { exit_reason } => write!(f, "exit:{exit_reason:x}"),
    }
}

/// The character a record writes to the debug console, if it is one a
/// `"TEXT"` token can hold.
fn console_char(r: &ExitRecord) -> Option<char> {
    match *r {
        ExitRecord::IoOut {
            port: abi::guest::CONSOLE_PORT,
            size: 1,
            value,
        } if value == u32::from(b'\n') || (0x20..0x7f).contains(&value) => char::from_u32(value),
        _ => None,
    }
}

/// Longest `"TEXT"` token, in characters (a longer run is split).
const STRING_MAX: usize = 64;

/// The stream in compact form, one token per element (see the module's
/// documentation).
pub fn compact(stream: &[ExitRecord]) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(first) = stream.get(i) {
        if console_char(first).is_some() {
            let mut t = String::from("\"");
            let mut n = 0;
            while let Some(c) = stream.get(i).and_then(console_char) {
                if n == STRING_MAX {
                    break;
                }
                match c {
                    ' ' => t.push_str("\\_"),
                    '\n' => t.push_str("\\n"),
                    '"' => t.push_str("\\\""),
                    '\\' => t.push_str("\\\\"),
                    c => t.push(c),
                }
                i += 1;
                n += 1;
            }
            t.push('"');
            tokens.push(t);
            continue;
        }
        let run = stream[i..].iter().take_while(|r| *r == first).count();
        let mut t = String::new();
        let _ = token(first, &mut t);
        if run > 1 {
            let _ = write!(t, "*{run}");
        }
        tokens.push(t);
        i += run;
    }
    tokens
}

/// A token [`parse_compact`] could not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Which token (counting from 0).
    pub token: usize,
    /// What is wrong with it.
    pub what: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token {}: {}", self.token, self.what)
    }
}

/// Most records one `*N` token may stand for (a bound on what a bad
/// serial line can make the reader allocate).
const REPEAT_MAX: usize = RECORD_LIMIT_DEFAULT;

fn hex<T: TryFrom<u64>>(s: &str) -> Result<T, &'static str> {
    u64::from_str_radix(s, 16)
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or("bad number")
}

/// `A/B=C`.
fn triple(s: &str) -> Result<(&str, &str, &str), &'static str> {
    let (ab, c) = s.split_once('=').ok_or("no '='")?;
    let (a, b) = ab.split_once('/').ok_or("no '/'")?;
    Ok((a, b, c))
}

fn parse_one(t: &str) -> Result<ExitRecord, &'static str> {
    let (kind, rest) = t.split_once(':').unwrap_or((t, ""));
    Ok(match kind {
        "in" | "out" => {
            let (port, size, value) = triple(rest)?;
            let (port, size, value) = (hex(port)?, hex(size)?, hex(value)?);
            if kind == "in" {
                ExitRecord::IoIn { port, size, value }
            } else {
                ExitRecord::IoOut { port, size, value }
            }
        }
        "mmr" | "mmw" => {
            let (addr, len, value) = triple(rest)?;
            let (addr, len, value) = (hex(addr)?, hex(len)?, hex(value)?);
            if kind == "mmr" {
                ExitRecord::MmioRead { addr, len, value }
            } else {
                ExitRecord::MmioWrite { addr, len, value }
            }
        }
        "hlt" if rest.is_empty() => ExitRecord::Hlt,
        "shutdown" if rest.is_empty() => ExitRecord::Shutdown,
        "irqwin" if rest.is_empty() => ExitRecord::IrqWindowOpen,
        "failentry" => ExitRecord::FailEntry { reason: hex(rest)? },
        "internal" => ExitRecord::InternalError {
            suberror: hex(rest)?,
        },
        "hypercall" => ExitRecord::Hypercall { nr: hex(rest)? },
        "debug" => ExitRecord::Debug {
            exception: hex(rest)?,
        },
        "sysevent" => ExitRecord::SystemEvent { kind: hex(rest)? },
        "rdmsr" => ExitRecord::RdMsr { index: hex(rest)? },
        "wrmsr" => {
            let (index, value) = rest.split_once('=').ok_or("no '='")?;
            ExitRecord::WrMsr {
                index: hex(index)?,
                value: hex(value)?,
            }
        }
        "eoi" => ExitRecord::IoapicEoi { vector: hex(rest)? },
        "exit" => ExitRecord::Other {
            exit_reason: hex(rest)?,
        },
        _ => return Err("unknown kind"),
    })
}

fn parse_string(body: &str, out: &mut Vec<ExitRecord>) -> Result<(), &'static str> {
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => match chars.next() {
                Some('_') => ' ',
                Some('n') => '\n',
                Some('"') => '"',
                Some('\\') => '\\',
                _ => return Err("bad escape"),
            },
            c if c.is_ascii_graphic() && c != '"' => c,
            _ => return Err("bad character in a string"),
        };
        out.push(ExitRecord::IoOut {
            port: abi::guest::CONSOLE_PORT,
            size: 1,
            value: u32::from(c),
        });
    }
    Ok(())
}

/// Reads the records back from tokens made by [`compact`].
pub fn parse_compact<'a>(
    tokens: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<ExitRecord>, ParseError> {
    let mut out = Vec::new();
    for (i, t) in tokens.into_iter().enumerate() {
        let err = |what| ParseError { token: i, what };
        if let Some(body) = t.strip_prefix('"') {
            let body = body.strip_suffix('"').ok_or(err("unterminated string"))?;
            parse_string(body, &mut out).map_err(err)?;
            continue;
        }
        let (base, n) = match t.split_once('*') {
            Some((base, n)) => (base, n.parse::<usize>().map_err(|_| err("bad count"))?),
            None => (t, 1),
        };
        if n == 0 || n > REPEAT_MAX || out.len() + n > REPEAT_MAX {
            return Err(err("count out of range"));
        }
        let r = parse_one(base).map_err(err)?;
        out.extend(core::iter::repeat_n(r, n));
    }
    Ok(out)
}

/// FNV-1a (64-bit) of the stream: of each record's token (no repeat
/// counts, no console strings) followed by a newline.
pub fn fnv1a(stream: &[ExitRecord]) -> u64 {
    struct Fnv(u64);
    impl fmt::Write for Fnv {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for b in s.bytes() {
                self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            Ok(())
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for r in stream {
        let _ = token(r, &mut h);
        let _ = h.write_str("\n");
    }
    h.0
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
    fn compact_form_round_trips() {
        use ExitRecord::*;
        let out = |port, size, value| IoOut { port, size, value };
        let mut stream: Vec<ExitRecord> = b"hi \"x\\\n"
            .iter()
            .map(|&c| out(0xe9, 1, c.into()))
            .collect();
        stream.extend([
            out(0xe9, 1, 7),
            out(0xe9, 2, 0x41),
            IoIn {
                port: 0x1ee,
                size: 1,
                value: 0xff,
            },
            IoIn {
                port: 0x1ee,
                size: 1,
                value: 0xff,
            },
            IoIn {
                port: 0x1ee,
                size: 1,
                value: 0xff,
            },
            MmioRead {
                addr: 0xfee0_0000,
                len: 4,
                value: 0xffff_ffff,
            },
            MmioWrite {
                addr: 0x2_0020,
                len: 2,
                value: 0xbeef,
            },
            Hlt,
            Shutdown,
            IrqWindowOpen,
            FailEntry { reason: 0x21 },
            InternalError { suberror: 1 },
            Hypercall { nr: 12 },
            Debug { exception: 1 },
            SystemEvent { kind: 2 },
            RdMsr { index: 0xc000_0080 },
            WrMsr {
                index: 0x3a,
                value: 5,
            },
            IoapicEoi { vector: 0x5c },
            Other { exit_reason: 99 },
        ]);
        stream.extend(core::iter::repeat_n(out(0xe9, 1, u32::from(b'=')), 100));
        let tokens = compact(&stream);
        assert_eq!(tokens[0], r#""hi\_\"x\\\n""#);
        assert_eq!(tokens[1], "out:e9/1=7");
        assert_eq!(tokens[3], "in:1ee/1=ff*3");
        assert!(tokens.iter().all(|t| !t.contains(char::is_whitespace)));
        // 100 '=' go as one string of 64 and one of 36.
        assert_eq!(tokens.len(), 4 + 14 + 2);
        let back = parse_compact(tokens.iter().map(String::as_str)).unwrap();
        assert_eq!(back, stream);
        assert_eq!(fnv1a(&back), fnv1a(&stream));
        assert_ne!(fnv1a(&stream[1..]), fnv1a(&stream));
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn bad_compact_tokens_are_errors() {
        for (bad, at) in [
            (&["hlt", "in:1/1"][..], 1),
            (&["\"ab"], 0),
            (&["\"a b\""], 0),
            (&["\"\\x\""], 0),
            (&["out:e9/1=41*0"], 0),
            (&["out:e9/1=41*99999999999"], 0),
            (&["in:10000/1=0"], 0),
            (&["nonsense"], 0),
            (&["hlt:3"], 0),
            (&["eoi:100"], 0),
        ] {
            let e = parse_compact(bad.iter().copied()).unwrap_err();
            assert_eq!(e.token, at, "{bad:?}: {e}");
        }
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
