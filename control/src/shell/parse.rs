//! The shell's commands: their names, usage lines and help, and the parser
//! from a typed line to a [`Command`] (DESIGN.md §3 names them).
//!
//! Words are split at spaces; `key="a b"` keeps its spaces (inside the
//! quotes `\"` is a quote and `\\` a backslash). A VM name is 1 to 16 of
//! `A-Z a-z 0-9 _ -`, starting with a letter. Sizes are a number with an
//! optional `K`, `M` or `G` (binary units; no suffix means MiB, as QEMU's
//! `-m`).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help(Option<String>),
    Info,
    List,
    Create(Create),
    Start(String),
    Pause(String),
    Resume(String),
    Reset(String),
    Destroy(String),
    Console(String),
    Echo {
        name: String,
        on: bool,
    },
    Stats(String),
    Show(Option<String>),
    Ls,
    Log,
    /// Has the hypervisor log where it keeps each VM's tables.
    Layout,
    /// Waits (the boot script only) until the named VMs, or all, stopped.
    Wait(Vec<String>),
    /// Whether a stopped VM's exit stream is printed.
    Streams(bool),
    Poweroff,
    Reboot,
}

/// `create`'s arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Create {
    pub name: String,
    pub kernel: String,
    pub initrd: Option<String>,
    /// A bundle file that becomes a Linux guest's virtio disk (a copy: the
    /// bundle is not written).
    pub disk: Option<String>,
    pub cmdline: Option<String>,
    /// Bytes of guest RAM.
    pub mem: u64,
    /// vCPUs asked for (`cpus=`, 1 to [`MAX_CPUS`]); `None`: the guest's
    /// own count (one; two for the `smp` test guest).
    pub cpus: Option<u32>,
}

/// Guest RAM when `create` names none: what a test guest needs.
pub const DEFAULT_MEM: u64 = 4 << 20;
/// Least and most guest RAM `create` accepts.
pub const MIN_MEM: u64 = 1 << 20;
pub const MAX_MEM: u64 = 3 << 30;
/// Longest VM name.
pub const NAME_MAX: usize = 16;
/// Most vCPUs `create` accepts (`vmm::vm::MAX_VCPUS`).
pub const MAX_CPUS: u32 = 8;

/// A command's name, usage line and help.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    pub alias: Option<&'static str>,
    pub usage: &'static str,
    pub summary: &'static str,
    pub more: &'static str,
}

/// Every command, in `help`'s order.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "help",
        alias: None,
        usage: "help [COMMAND]",
        summary: "this list, or one command's usage and details",
        more: "",
    },
    Spec {
        name: "info",
        alias: None,
        usage: "info",
        summary: "Mojito's version, the CPU and its virtualization extension, memory, uptime",
        more: "",
    },
    Spec {
        name: "list",
        alias: Some("vms"),
        usage: "list",
        summary: "the VMs: id, name, state, vCPUs, memory, exits, uptime",
        more: "A stopped VM shows why it stopped (exit status, triple fault, ...) until it is \
               destroyed; its memory is already given back.",
    },
    Spec {
        name: "create",
        alias: None,
        usage: "create NAME kernel=PATH [initrd=PATH] [cmdline=\"...\"] [mem=SIZE] [cpus=N] [disk=PATH]",
        summary: "makes a VM from a file of the boot bundle (see ls); start runs it",
        more: "PATH is a file of the boot bundle (ls lists them). To run your own kernel, \
               put it into the bundle: `cargo xtask run --kernel FILE` (creates and starts it \
               as VM `guest`), or `cargo xtask image --add FILE` and then \
               `create NAME kernel=FILE`. Today a kernel is an ELF test guest (tests/guests, \
               abi::guest), a multiboot v1 kernel (initrd= becomes its module, cmdline= its \
               command line) or Linux, a bzImage or a vmlinux (initrd=, cmdline=, mem=128M or \
               more, cpus=, and disk= a bundle file it sees as a virtio disk, copied; the VM \
               gets ACPI tables, an IOAPIC, a PCI host bridge, a virtio console and \
               kvmclock). mem= is in MiB unless it ends in K, M or G (default 4M). \
               cpus= is 1 to 8 vCPUs (default: the guest's own, 1, or 2 for smp); with more \
               than 1 the local APIC is the hypervisor's (split irqchip) and the APs wait for \
               the guest's INIT and SIPI.",
    },
    Spec {
        name: "start",
        alias: None,
        usage: "start NAME",
        summary: "runs a created VM (a stopped one starts again from its kernel)",
        more: "",
    },
    Spec {
        name: "pause",
        alias: None,
        usage: "pause NAME",
        summary: "stops running a VM's vCPUs; resume goes on",
        more: "",
    },
    Spec {
        name: "resume",
        alias: None,
        usage: "resume NAME",
        summary: "runs a paused VM again",
        more: "",
    },
    Spec {
        name: "reset",
        alias: None,
        usage: "reset NAME",
        summary: "makes the VM again from its kernel, as a power cycle, and runs it",
        more: "The guest's memory and its console output start afresh.",
    },
    Spec {
        name: "destroy",
        alias: None,
        usage: "destroy NAME",
        summary: "ends a VM and gives its memory back",
        more: "",
    },
    Spec {
        name: "console",
        alias: None,
        usage: "console NAME",
        summary: "attaches to a VM's serial port; Ctrl-] detaches",
        more: "The VM's recent output is replayed first. While attached, what you type goes to \
               the VM's COM1 and its output comes as it is; other VMs' lines are not printed \
               meanwhile (their rings keep them for their own console).",
    },
    Spec {
        name: "echo",
        alias: None,
        usage: "echo NAME on|off",
        summary: "whether a VM's output lines are printed as [NAME] line (on by default)",
        more: "The VM's ring keeps its output either way (console replays it).",
    },
    Spec {
        name: "stats",
        alias: None,
        usage: "stats NAME",
        summary: "a VM's exits by reason and the time its vCPUs ran, per vCPU",
        more: "Port writes and reads that no device claimed are counted per port.",
    },
    Spec {
        name: "show",
        alias: None,
        usage: "show [PATH]",
        summary: "a read-only view of a VM's state: vm/NAME/vcpuN/regs, .../sregs, .../msrs, \
                  vm/NAME/memslots",
        more: "Without PATH, or with a directory, it lists what is there.",
    },
    Spec {
        name: "ls",
        alias: None,
        usage: "ls",
        summary: "the files in the boot bundle",
        more: "",
    },
    Spec {
        name: "log",
        alias: None,
        usage: "log",
        summary: "the hypervisor's log: its ring's last 16 KiB",
        more: "",
    },
    Spec {
        name: "layout",
        alias: None,
        usage: "layout",
        summary: "has the hypervisor log where it keeps its image, its heap and each VM's \
                  nested page tables and control structures (host-physical addresses)",
        more: "For checking a dump of the machine's memory (QEMU's pmemsave): the tests walk \
               every nested table from these roots and check each leaf.",
    },
    Spec {
        name: "wait",
        alias: None,
        usage: "wait [NAME...]",
        summary: "(boot script) waits until the named VMs, or all, have stopped",
        more: "Typed commands are answered meanwhile; typed at the prompt it says which VMs \
               still run.",
    },
    Spec {
        name: "streams",
        alias: None,
        usage: "streams on|off",
        summary: "whether VMs created from now on record their exits and print the \
                  stream when they stop (off by default; the boot tests use it)",
        more: "The stream is the VM's exits as the VMM saw them, in vmm::record's compact \
               form, with its length and FNV-1a hash; the tests compare it with the same \
               guest's on Linux KVM.",
    },
    Spec {
        name: "poweroff",
        alias: None,
        usage: "poweroff",
        summary: "ends every VM and powers the machine off (ACPI S5)",
        more: "",
    },
    Spec {
        name: "reboot",
        alias: None,
        usage: "reboot",
        summary: "ends every VM and resets the machine (ACPI reset register, port 0xCF9 or \
                  the keyboard controller)",
        more: "",
    },
];

/// The spec of a command name or alias.
pub fn spec(word: &str) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name == word || s.alias == Some(word))
}

/// Why a line is no command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No command of that name; the closest names.
    Unknown {
        word: String,
        closest: Vec<&'static str>,
    },
    /// Wrong arguments: what is wrong, and the command (for its usage).
    Usage { spec: &'static Spec, what: String },
    /// A quote without its end.
    Quote,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unknown { word, closest } if closest.is_empty() => {
                write!(f, "unknown command '{word}'; try help")
            }
            Self::Unknown { word, closest } => write!(
                f,
                "unknown command '{word}'; did you mean {}? (help lists all)",
                closest.join(", ")
            ),
            Self::Usage { spec, what } => write!(f, "{}: {what}; usage: {}", spec.name, spec.usage),
            Self::Quote => f.write_str("a quote is not closed"),
        }
    }
}

/// Splits a line into words (see the module's documentation).
pub fn words(line: &str) -> Result<Vec<String>, Error> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(Error::Quote),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\')) => word.push(e),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err(Error::Quote),
                        },
                        Some(other) => word.push(other),
                    }
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Edit distance between two short words: insertions, deletions,
/// substitutions and swaps of neighbours each cost 1 (optimal string
/// alignment).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = alloc::vec![alloc::vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The command names closest to `word`: those it begins, or within one
/// edit (two for words longer than four letters), nearest first, at most
/// three.
pub fn closest(word: &str) -> Vec<&'static str> {
    let word: String = word.chars().take(32).collect();
    let mut found: Vec<(usize, &'static str)> = COMMANDS
        .iter()
        .flat_map(|s| core::iter::once(s.name).chain(s.alias))
        .filter_map(|name| {
            let d = if name.starts_with(word.as_str()) && !word.is_empty() {
                0
            } else {
                distance(&word, name)
            };
            let most = if word.chars().count() > 4 { 2 } else { 1 };
            (d <= most).then_some((d, name))
        })
        .collect();
    found.sort();
    found.into_iter().take(3).map(|(_, n)| n).collect()
}

/// Whether `name` may name a VM.
pub fn valid_name(name: &str) -> bool {
    name.len() <= NAME_MAX
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses a size: digits, then an optional `K`, `M` or `G` (`KiB`, `MiB`,
/// `GiB` too); no unit means MiB.
pub fn size(s: &str) -> Option<u64> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 20,
        "K" | "KB" | "KIB" => 10,
        "G" | "GB" | "GIB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Parses one line; `Ok(None)` for an empty one.
pub fn parse(line: &str) -> Result<Option<Command>, Error> {
    let words = words(line)?;
    let Some((first, args)) = words.split_first() else {
        return Ok(None);
    };
    let Some(spec) = spec(first) else {
        return Err(Error::Unknown {
            word: first.chars().take(32).collect(),
            closest: closest(first),
        });
    };
    let usage = |what: &str| Error::Usage {
        spec,
        what: what.to_string(),
    };
    let none = |c: Command| {
        if args.is_empty() {
            Ok(Some(c))
        } else {
            Err(usage("takes no arguments"))
        }
    };
    let one_name = || match args {
        [name] if valid_name(name) => Ok(name.clone()),
        [name] => Err(usage(&format!("'{name}' is no VM name"))),
        [] => Err(usage("a VM name is missing")),
        _ => Err(usage("takes one VM name")),
    };
    match spec.name {
        "help" => match args {
            [] => Ok(Some(Command::Help(None))),
            [c] => Ok(Some(Command::Help(Some(c.clone())))),
            _ => Err(usage("takes at most one command name")),
        },
        "info" => none(Command::Info),
        "list" => none(Command::List),
        "ls" => none(Command::Ls),
        "log" => none(Command::Log),
        "layout" => none(Command::Layout),
        "poweroff" => none(Command::Poweroff),
        "reboot" => none(Command::Reboot),
        "start" => Ok(Some(Command::Start(one_name()?))),
        "pause" => Ok(Some(Command::Pause(one_name()?))),
        "resume" => Ok(Some(Command::Resume(one_name()?))),
        "reset" => Ok(Some(Command::Reset(one_name()?))),
        "destroy" => Ok(Some(Command::Destroy(one_name()?))),
        "console" => Ok(Some(Command::Console(one_name()?))),
        "stats" => Ok(Some(Command::Stats(one_name()?))),
        "echo" => match args {
            [name, on] if valid_name(name) && (on == "on" || on == "off") => {
                Ok(Some(Command::Echo {
                    name: name.clone(),
                    on: on == "on",
                }))
            }
            [name, _] if !valid_name(name) => Err(usage(&format!("'{name}' is no VM name"))),
            _ => Err(usage("needs a VM name and on or off")),
        },
        "show" => match args {
            [] => Ok(Some(Command::Show(None))),
            [p] => Ok(Some(Command::Show(Some(p.clone())))),
            _ => Err(usage("takes one path")),
        },
        "streams" => match args {
            [on] if on == "on" || on == "off" => Ok(Some(Command::Streams(on == "on"))),
            _ => Err(usage("takes on or off")),
        },
        "wait" => match args.iter().find(|n| !valid_name(n)) {
            Some(n) => Err(usage(&format!("'{n}' is no VM name"))),
            None => Ok(Some(Command::Wait(args.to_vec()))),
        },
        "create" => create(args)
            .map(|c| Some(Command::Create(c)))
            .map_err(usage_of(spec)),
        _ => Err(usage("not implemented")),
    }
}

fn usage_of(spec: &'static Spec) -> impl Fn(String) -> Error {
    move |what| Error::Usage { spec, what }
}

fn create(args: &[String]) -> Result<Create, String> {
    let Some((name, options)) = args.split_first() else {
        return Err("a VM name is missing".into());
    };
    if name.contains('=') || !valid_name(name) {
        return Err(format!(
            "'{name}' is no VM name (1 to {NAME_MAX} letters, digits, _ or -, a letter first)"
        ));
    }
    let mut c = Create {
        name: name.clone(),
        kernel: String::new(),
        initrd: None,
        disk: None,
        cmdline: None,
        mem: DEFAULT_MEM,
        cpus: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for o in options {
        let Some((key, value)) = o.split_once('=') else {
            return Err(format!("'{o}' is not KEY=VALUE"));
        };
        if seen.contains(&key) {
            return Err(format!("{key}= is given twice"));
        }
        match key {
            "kernel" | "initrd" | "disk" if value.is_empty() => {
                return Err(format!("{key}= needs a path"));
            }
            "disk" => c.disk = Some(value.into()),
            "kernel" => c.kernel = value.into(),
            "initrd" => c.initrd = Some(value.into()),
            "cmdline" => c.cmdline = Some(value.into()),
            "mem" => {
                c.mem = size(value)
                    .filter(|m| (MIN_MEM..=MAX_MEM).contains(m) && m % 4096 == 0)
                    .ok_or_else(|| {
                        format!("mem={value} is no size from 1M to 3G in whole 4K pages")
                    })?;
            }
            "cpus" => {
                c.cpus = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_CPUS).contains(n))
                        .ok_or_else(|| {
                            format!("cpus={value} is not a count from 1 to {MAX_CPUS}")
                        })?,
                );
            }
            _ => return Err(format!("unknown option {key}=")),
        }
        // `key` borrows from `options`, which outlives `seen`.
        seen.push(key);
    }
    if c.kernel.is_empty() {
        return Err("kernel=PATH is missing".into());
    }
    Ok(c)
}

/// What a `show` path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShowPath {
    /// `/`: lists `vm/`.
    Root,
    /// `vm`: lists the VMs.
    Vms,
    /// `vm/NAME`: lists `vcpu0/` (one per vCPU) and `memslots`.
    Vm(String),
    /// `vm/NAME/vcpuN`: lists `regs`, `sregs`, `msrs`.
    Vcpu(String, u32),
    Regs(String, u32),
    Sregs(String, u32),
    Msrs(String, u32),
    Memslots(String),
}

/// Resolves a `show` path (leading and trailing `/` allowed).
pub fn show_path(path: &str) -> Result<ShowPath, String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let vm = |name: &str| {
        if valid_name(name) {
            Ok(String::from(name))
        } else {
            Err(format!("'{name}' is no VM name"))
        }
    };
    // `vcpuN`, N from 0 to MAX_CPUS - 1 in plain decimal.
    let vcpu = |part: &str| {
        part.strip_prefix("vcpu")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .filter(|n| n.len() == 1 || !n.starts_with('0'))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n < MAX_CPUS)
    };
    let no_such = || Err(format!("no such path: {path} (show lists what there is)"));
    match parts.as_slice() {
        [] => Ok(ShowPath::Root),
        ["vm"] => Ok(ShowPath::Vms),
        ["vm", name] => Ok(ShowPath::Vm(vm(name)?)),
        ["vm", name, "memslots"] => Ok(ShowPath::Memslots(vm(name)?)),
        ["vm", name, cpu, rest @ ..] if cpu.starts_with("vcpu") => {
            let Some(n) = vcpu(cpu) else {
                return Err(format!(
                    "no {cpu}: a VM's vCPUs are vcpu0 up to vcpu{}",
                    MAX_CPUS - 1
                ));
            };
            let name = vm(name)?;
            match rest {
                [] => Ok(ShowPath::Vcpu(name, n)),
                ["regs"] => Ok(ShowPath::Regs(name, n)),
                ["sregs"] => Ok(ShowPath::Sregs(name, n)),
                ["msrs"] => Ok(ShowPath::Msrs(name, n)),
                _ => no_such(),
            }
        }
        _ => no_such(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line).unwrap().unwrap()
    }

    fn err(line: &str) -> String {
        parse(line).unwrap_err().to_string()
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(words("  a  b\tc ").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            words(r#"create x cmdline="console=ttyS0 quiet" mem=8"#).unwrap(),
            ["create", "x", "cmdline=console=ttyS0 quiet", "mem=8"]
        );
        assert_eq!(words(r#"a="q\"x\\" """#).unwrap(), ["a=q\"x\\", ""]);
        assert_eq!(words(r#"a="open"#), Err(Error::Quote));
        assert_eq!(words("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn commands_and_aliases() {
        assert_eq!(parse("   ").unwrap(), None);
        assert_eq!(ok("list"), Command::List);
        assert_eq!(ok("vms"), Command::List);
        assert_eq!(ok("help create"), Command::Help(Some("create".into())));
        assert_eq!(ok("start demo"), Command::Start("demo".into()));
        assert_eq!(
            ok("echo demo off"),
            Command::Echo {
                name: "demo".into(),
                on: false
            }
        );
        assert_eq!(
            ok("show vm/demo/vcpu0/regs"),
            Command::Show(Some("vm/demo/vcpu0/regs".into()))
        );
        assert_eq!(ok("wait a b"), Command::Wait(vec!["a".into(), "b".into()]));
        assert_eq!(ok("poweroff"), Command::Poweroff);
        assert_eq!(ok("streams on"), Command::Streams(true));
        assert!(parse("streams").is_err());
        // Every command's usage names it, and a sample line of each parses
        // (and the samples cover every command).
        let samples = [
            "help",
            "info",
            "list",
            "create a kernel=k",
            "start a",
            "pause a",
            "resume a",
            "reset a",
            "destroy a",
            "console a",
            "echo a on",
            "stats a",
            "show",
            "ls",
            "log",
            "layout",
            "wait",
            "streams off",
            "poweroff",
            "reboot",
        ];
        for s in COMMANDS {
            assert!(s.usage.starts_with(s.name), "{}", s.usage);
            assert!(
                samples.iter().any(|l| l.split(' ').next() == Some(s.name)),
                "no sample for {}",
                s.name
            );
        }
        for l in samples {
            assert!(matches!(parse(l), Ok(Some(_))), "{l}");
        }
    }

    #[test]
    fn create_options() {
        assert_eq!(
            ok(r#"create web kernel=guests/demo.elf initrd=i cmdline="a b" mem=16M cpus=1"#),
            Command::Create(Create {
                name: "web".into(),
                kernel: "guests/demo.elf".into(),
                initrd: Some("i".into()),
                disk: None,
                cmdline: Some("a b".into()),
                mem: 16 << 20,
                cpus: Some(1),
            })
        );
        let Command::Create(c) = ok("create a kernel=k mem=2048K") else {
            panic!()
        };
        assert_eq!((c.mem, c.cpus), (2 << 20, None));
        let Command::Create(c) = ok("create a kernel=k cpus=8") else {
            panic!()
        };
        assert_eq!(c.cpus, Some(8));
        let Command::Create(c) = ok("create l kernel=k disk=disks/linux.img") else {
            panic!()
        };
        assert_eq!(c.disk.as_deref(), Some("disks/linux.img"));
        assert!(parse("create l kernel=k disk=").is_err());
        assert!(parse("create l kernel=k disk=a disk=b").is_err());
        let Command::Create(c) = ok("create a kernel=k mem=1G") else {
            panic!()
        };
        assert_eq!(c.mem, 1 << 30);
        let Command::Create(c) = ok("create a kernel=k") else {
            panic!()
        };
        assert_eq!(c.mem, DEFAULT_MEM);
    }

    #[test]
    fn bad_input_says_what_and_how() {
        assert_eq!(
            err("lsit"),
            "unknown command 'lsit'; did you mean list? (help lists all)"
        );
        assert!(err("lis").contains("did you mean list, ls"));
        assert_eq!(err("frob"), "unknown command 'frob'; try help");
        assert!(err("destory x").contains("did you mean destroy"));
        assert!(err("pow").contains("did you mean poweroff"));
        assert_eq!(err("list all"), "list: takes no arguments; usage: list");
        assert_eq!(
            err("start"),
            "start: a VM name is missing; usage: start NAME"
        );
        assert!(err("start 9lives").contains("'9lives' is no VM name"));
        assert!(err("start a b").contains("takes one VM name"));
        assert!(err("echo demo maybe").contains("usage: echo NAME on|off"));
        assert!(err("create").contains("a VM name is missing"));
        assert!(err("create x").contains("kernel=PATH is missing"));
        assert!(err("create x kernel=").contains("kernel= needs a path"));
        assert!(err("create x kernel=k mem=lots").contains("mem=lots is no size"));
        assert!(parse("create x kernel=k mem=100").is_ok());
        assert!(err("create x kernel=k mem=0").contains("is no size"));
        assert!(err("create x kernel=k mem=1025K").contains("is no size"));
        assert!(err("create x kernel=k cpus=0").contains("cpus=0"));
        assert!(err("create x kernel=k cpus=9").contains("from 1 to 8"));
        assert!(err("create x kernel=k kernel=j").contains("given twice"));
        assert!(err("create x kernel=k colour=red").contains("unknown option colour="));
        assert!(err("create x kernel=k junk").contains("'junk' is not KEY=VALUE"));
        assert!(err("create averyveryverylongname kernel=k").contains("is no VM name"));
        assert_eq!(err("help \"x"), "a quote is not closed");
    }

    #[test]
    fn show_paths() {
        assert_eq!(show_path(""), Ok(ShowPath::Root));
        assert_eq!(show_path("/vm/"), Ok(ShowPath::Vms));
        assert_eq!(show_path("vm/demo"), Ok(ShowPath::Vm("demo".into())));
        assert_eq!(
            show_path("vm/demo/vcpu0/regs"),
            Ok(ShowPath::Regs("demo".into(), 0))
        );
        assert_eq!(
            show_path("vm/demo/vcpu0/sregs/"),
            Ok(ShowPath::Sregs("demo".into(), 0))
        );
        assert_eq!(
            show_path("vm/demo/vcpu0/msrs"),
            Ok(ShowPath::Msrs("demo".into(), 0))
        );
        assert_eq!(
            show_path("vm/smp/vcpu1"),
            Ok(ShowPath::Vcpu("smp".into(), 1))
        );
        assert_eq!(
            show_path("vm/smp/vcpu7/regs"),
            Ok(ShowPath::Regs("smp".into(), 7))
        );
        assert_eq!(
            show_path("vm/demo/memslots"),
            Ok(ShowPath::Memslots("demo".into()))
        );
        for bad in ["vcpu8", "vcpu01", "vcpu", "vcpux", "vcpu-1"] {
            assert!(
                show_path(&format!("vm/demo/{bad}/regs"))
                    .unwrap_err()
                    .contains("vcpu0 up to vcpu7"),
                "{bad}"
            );
        }
        assert!(
            show_path("vm/demo/vcpu1/cr9")
                .unwrap_err()
                .contains("no such path")
        );
        assert!(
            show_path("vm/9/vcpu0/regs")
                .unwrap_err()
                .contains("no VM name")
        );
        assert!(
            show_path("etc/passwd")
                .unwrap_err()
                .contains("no such path")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size("4"), Some(4 << 20));
        assert_eq!(size("4m"), Some(4 << 20));
        assert_eq!(size("4MiB"), Some(4 << 20));
        assert_eq!(size("512K"), Some(512 << 10));
        assert_eq!(size("2G"), Some(2 << 30));
        assert_eq!(size("99999999999999999999G"), None);
        assert_eq!(size("G"), None);
        assert_eq!(size("-1"), None);
    }

    #[test]
    fn random_lines_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut line = String::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pool = b"create kernel= mem=cpus=\"\\ 0123456789KMG listshowecho on off";
                line.push(char::from(pool[(x % pool.len() as u64) as usize]));
            }
            let _ = parse(&line);
        }
    }
}
