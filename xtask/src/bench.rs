//! `cargo xtask bench`'s figures (issue 9): what the bench guest and the
//! control domain print, the reference figures it is compared with, and the
//! report — a table, JSON and an SVG plot. Pure functions, so the tests can
//! check them; `cmd/bench.rs` runs the machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The bench guest's cases in the order it prints them
/// (`tests/guests/src/bin/bench.rs`), with who handles each exit.
pub const CASES: [(&str, &str); 7] = [
    ("floor", "hypervisor: steps over it, nothing else"),
    ("cpuid", "hypervisor"),
    ("hypercall", "hypervisor: -KVM_ENOSYS"),
    ("in-post", "hypervisor: IN from port 0x80"),
    ("in-vmm", "control domain's VMM: IN, unassigned port"),
    ("mmio-vmm", "control domain's VMM: MMIO read of a hole"),
    ("rdmsr-vmm", "control domain's VMM: userspace MSR exit"),
];

/// Linux 6.1's KVM (kvm_amd) nested in QEMU 7.2 TCG, `-cpu EPYC`,
/// `-icount shift=0`, with a minimal userspace VMM: instructions per round
/// trip with the default mitigations and with `mitigations=off` (issue 9's
/// anchor; not measured by this tool).
pub const KVM_ANCHOR: [(&str, u32, u32); 4] = [
    ("cpuid", 3128, 2779),
    ("hypercall", 3386, 3012),
    ("in-post", 1710, 1452),
    ("in-vmm", 3613, 3139),
];

/// Issue 9's targets for SVM under QEMU: the case and its most
/// instructions per round trip.
pub const TARGETS: [(&str, f64); 3] = [("cpuid", 300.0), ("in-post", 200.0), ("in-vmm", 1200.0)];

/// In-hypervisor exits should cost at most this many times the floor.
pub const FLOOR_RATIO_TARGET: f64 = 1.15;

/// The cases the hypervisor handles itself (compared with the floor).
pub const IN_HYPERVISOR: [&str; 3] = ["cpuid", "hypercall", "in-post"];

/// What Mojito's exit path does against speculative-execution attacks.
pub const MITIGATIONS: &str = "the RSB refilled after every exit (both vendors); VERW before \
    every entry on Intel CPUs without MDS_NO (Bochs: on); IBPB and the L1D flush only when a \
    CPU enters a different VM, where offered (neither emulator offers them); guest-chosen \
    table indexes masked against Spectre v1 (off these paths); no IBRS or SSBD \
    (docs/security.md); the KVM figures are with 6.1's default mitigations and with \
    mitigations=off";

/// The bench guest's figure for `case`: TSC ticks per round trip, from
/// `[bench] bench CASE: T.T ticks per round trip (N iterations)`.
pub fn figure(serial: &str, case: &str) -> Option<f64> {
    let head = format!("[bench] bench {case}: ");
    serial
        .lines()
        .find_map(|l| l.trim_start_matches('\0').strip_prefix(&head))
        .and_then(|rest| rest.split_once(" ticks per round trip")?.0.parse().ok())
}

/// The control domain's lifecycle line, `control: bench lifecycle: N TSC
/// ticks to the first exit (create_vm A, memory B, create_vcpu C, run D),
/// close E`: every number in it by name (`total` for N), in its order.
pub fn lifecycle(serial: &str) -> Option<Steps> {
    let rest = serial.lines().find_map(|l| {
        l.trim_start_matches('\0')
            .strip_prefix("control: bench lifecycle: ")
    })?;
    let (total, rest) = rest.split_once(" TSC ticks to the first exit (")?;
    let mut steps = vec![("total".to_owned(), total.parse().ok()?)];
    for part in rest.split([',', ')']) {
        let mut words = part.split_whitespace();
        if let (Some(name), Some(n), None) = (words.next(), words.next(), words.next()) {
            steps.push((name.to_owned(), n.parse().ok()?));
        }
    }
    Some(steps)
}

/// Named figures in the order they were measured.
pub type Steps = Vec<(String, u64)>;

/// The figure named `name`.
pub fn step(steps: &Steps, name: &str) -> Option<u64> {
    steps.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

/// One back end's run: its figures by case and its lifecycle.
#[derive(Clone, Debug, Default)]
pub struct Backend {
    /// `SVM` or `VMX`.
    pub name: String,
    /// The emulator and CPU, in words.
    pub machine: String,
    pub cases: BTreeMap<String, f64>,
    pub lifecycle: Option<Steps>,
    /// Wall time of the emulator run, seconds.
    pub seconds: f64,
    /// Why figures are missing, if any are.
    pub problem: Option<String>,
}

impl Backend {
    /// Reads a run's serial log.
    pub fn from_serial(name: &str, machine: &str, serial: &str, seconds: f64) -> Self {
        let cases: BTreeMap<String, f64> = CASES
            .iter()
            .filter_map(|(c, _)| Some((c.to_string(), figure(serial, c)?)))
            .collect();
        let lifecycle = lifecycle(serial);
        let problem = (cases.len() < CASES.len() || lifecycle.is_none()).then(|| {
            let missing: Vec<&str> = CASES
                .iter()
                .map(|(c, _)| *c)
                .filter(|c| !cases.contains_key(*c))
                .chain(lifecycle.is_none().then_some("lifecycle"))
                .collect();
            format!("no figure for {}", missing.join(", "))
        });
        Self {
            name: name.to_owned(),
            machine: machine.to_owned(),
            cases,
            lifecycle,
            seconds,
            problem,
        }
    }

    fn ratio(&self, over: &str, under: &str) -> Option<f64> {
        Some(self.cases.get(over)? / self.cases.get(under)?)
    }
}

/// The host's KVM lifecycle in wall time: median nanoseconds per step.
#[derive(Clone, Debug, Default)]
pub struct HostLifecycle {
    pub runs: usize,
    pub steps: Steps,
}

/// Sizes: stripped image bytes and code lines per crate.
#[derive(Clone, Debug, Default)]
pub struct Sizes {
    pub hypervisor_bytes: u64,
    pub control_bytes: u64,
    /// Crate name → lines of code.
    pub lines: BTreeMap<String, usize>,
}

/// Hypervisor size goals (issue 9): NOVA's x86-64 kernel is 90 KB, 14 k lines.
pub const HYPERVISOR_BYTES_GOAL: u64 = 128 * 1024;
pub const HYPERVISOR_LINES_GOAL: usize = 12_000;

/// The lines of code in one Rust file: not blank, not only a comment, and
/// not in the trailing `#[cfg(test)] mod tests` (unit tests are not code
/// the machine runs).
pub fn code_lines(text: &str) -> usize {
    let mut lines = text.lines().map(str::trim).peekable();
    let mut n = 0;
    while let Some(l) = lines.next() {
        if l == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.starts_with("mod tests {"))
        {
            break;
        }
        if !l.is_empty() && !l.starts_with("//") {
            n += 1;
        }
    }
    n
}

/// Everything one `cargo xtask bench` measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub version: String,
    pub backends: Vec<Backend>,
    pub host: Option<HostLifecycle>,
    /// Why the host lifecycle is missing.
    pub host_problem: Option<String>,
    pub sizes: Sizes,
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

impl Report {
    fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// The targets, each with its figure and whether it is met.
    pub fn targets(&self) -> Vec<(String, Option<f64>, bool)> {
        let svm = self.backend("SVM");
        let mut out = Vec::new();
        for (case, max) in TARGETS {
            let v = svm.and_then(|b| b.cases.get(case).copied());
            out.push((
                format!("SVM {case} <= {max}"),
                v,
                v.is_some_and(|v| v <= max),
            ));
        }
        for b in &self.backends {
            for case in IN_HYPERVISOR {
                let r = b.ratio(case, "floor");
                out.push((
                    format!("{} {case} / floor <= {FLOOR_RATIO_TARGET}", b.name),
                    r,
                    r.is_some_and(|r| r <= FLOOR_RATIO_TARGET),
                ));
            }
        }
        let bytes = self.sizes.hypervisor_bytes;
        out.push((
            format!("hypervisor image <= {} KiB", HYPERVISOR_BYTES_GOAL / 1024),
            Some(bytes as f64 / 1024.0),
            bytes <= HYPERVISOR_BYTES_GOAL,
        ));
        let lines = self.sizes.lines.get("hypervisor").copied().unwrap_or(0);
        out.push((
            format!("hypervisor lines <= {HYPERVISOR_LINES_GOAL}"),
            Some(lines as f64),
            lines <= HYPERVISOR_LINES_GOAL,
        ));
        out
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let names: Vec<&str> = self.backends.iter().map(|b| b.name.as_str()).collect();
        let _ = writeln!(
            t,
            "Exit round trips in instructions (guest TSC ticks; QEMU -icount and Bochs count \
             one per instruction; the loop's 4-6 instructions included)"
        );
        for b in &self.backends {
            let _ = writeln!(t, "  {}: {}", b.name, b.machine);
        }
        let _ = write!(t, "\n{:<10} {:<42}", "case", "handled by");
        for n in &names {
            let _ = write!(t, " {n:>8}");
        }
        let _ = writeln!(t, " {:>8} {:>8}", "KVM", "KVM-off");
        for (case, who) in CASES {
            let _ = write!(t, "{case:<10} {who:<42}");
            for b in &self.backends {
                let _ = write!(t, " {:>8}", fmt_opt(b.cases.get(case).copied(), 1));
            }
            let anchor = KVM_ANCHOR.iter().find(|a| a.0 == case);
            let (k, off) = anchor.map_or(("-".into(), "-".into()), |a| {
                (a.1.to_string(), a.2.to_string())
            });
            let _ = writeln!(t, " {k:>8} {off:>8}");
        }

        let _ = writeln!(
            t,
            "(KVM: Linux 6.1 kvm_amd nested in QEMU 7.2 -cpu EPYC -icount, default \
             mitigations; KVM-off: mitigations=off; issue 9's figures)\n"
        );
        let _ = write!(t, "{:<53}", "ratio");
        for n in &names {
            let _ = write!(t, " {n:>8}");
        }
        let _ = writeln!(t, " {:>8}", "KVM");
        let mut ratio = |label: &str, over: &str, under: &str| {
            let _ = write!(t, "{label:<53}");
            for b in &self.backends {
                let _ = write!(t, " {:>8}", fmt_opt(b.ratio(over, under), 2));
            }
            let k = |c: &str| KVM_ANCHOR.iter().find(|a| a.0 == c).map(|a| f64::from(a.1));
            let kvm = k(over).zip(k(under)).map(|(a, b)| a / b);
            let _ = writeln!(t, " {:>8}", fmt_opt(kvm, 2));
        };
        ratio(
            "forwarded / in-hypervisor (in-vmm / in-post)",
            "in-vmm",
            "in-post",
        );
        for case in IN_HYPERVISOR {
            ratio(
                &format!("in-hypervisor / floor ({case} / floor)"),
                case,
                "floor",
            );
        }
        let _ = writeln!(
            t,
            "\nSpeculative-execution mitigations on Mojito's exit path: {MITIGATIONS}\n"
        );
        let _ = writeln!(
            t,
            "VM lifecycle: KVM_CREATE_VM + 4 KiB slot + KVM_CREATE_VCPU + first instruction + \
             exit back"
        );
        for b in &self.backends {
            match &b.lifecycle {
                Some(l) => {
                    let steps: Vec<String> = l
                        .iter()
                        .filter(|(k, _)| *k != "total")
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect();
                    let _ = writeln!(
                        t,
                        "  {}: {} instructions ({})",
                        b.name,
                        step(l, "total").unwrap_or(0),
                        steps.join(", ")
                    );
                }
                None => {
                    let _ = writeln!(t, "  {}: -", b.name);
                }
            }
        }
        match (&self.host, &self.host_problem) {
            (Some(h), _) => {
                let total: u64 = ["create_vm", "memory", "create_vcpu", "run"]
                    .iter()
                    .filter_map(|k| step(&h.steps, k))
                    .sum();
                let steps: Vec<String> = h
                    .steps
                    .iter()
                    .map(|(k, v)| format!("{k} {:.1}", *v as f64 / 1000.0))
                    .collect();
                let _ = writeln!(
                    t,
                    "  host /dev/kvm, wall time, median of {}: {:.1} us ({} us)",
                    h.runs,
                    total as f64 / 1000.0,
                    steps.join(", ")
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(t, "  host /dev/kvm: not measured: {why}");
            }
            (None, None) => {}
        }
        let s = &self.sizes;
        let _ = writeln!(
            t,
            "\nSize: hypervisor {} bytes stripped ({:.1} KiB), control domain {} bytes",
            s.hypervisor_bytes,
            s.hypervisor_bytes as f64 / 1024.0,
            s.control_bytes
        );
        let lines: Vec<String> = s.lines.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            t,
            "Lines of code (no blanks, comments or unit tests): {}",
            lines.join(", ")
        );
        let _ = writeln!(t, "\nTargets (issue 9):");
        for (what, v, met) in self.targets() {
            let _ = writeln!(
                t,
                "  {:<32} {:>10}  {}",
                what,
                fmt_opt(v, 2),
                if met { "met" } else { "not met" }
            );
        }
        t
    }

    /// The machine-readable report.
    pub fn json(&self) -> String {
        let mut j = String::from("{\n");
        let _ = writeln!(j, "  \"version\": {},", json_str(&self.version));
        let _ = writeln!(
            j,
            "  \"unit\": \"instructions per round trip (guest TSC ticks)\","
        );
        j.push_str("  \"backends\": [\n");
        for (i, b) in self.backends.iter().enumerate() {
            let cases: Vec<String> = b
                .cases
                .iter()
                .map(|(k, v)| format!("{}: {}", json_str(k), json_num(*v)))
                .collect();
            let lifecycle = b.lifecycle.as_ref().map_or("null".into(), |l| {
                let items: Vec<String> = l
                    .iter()
                    .map(|(k, v)| format!("{}: {v}", json_str(k)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            });
            let _ = write!(
                j,
                "    {{\"name\": {}, \"machine\": {}, \"seconds\": {:.1}, \"cases\": {{{}}}, \
                 \"lifecycle_instructions\": {lifecycle}, \"problem\": {}}}",
                json_str(&b.name),
                json_str(&b.machine),
                b.seconds,
                cases.join(", "),
                b.problem.as_deref().map_or("null".into(), json_str)
            );
            j.push_str(if i + 1 < self.backends.len() {
                ",\n"
            } else {
                "\n"
            });
        }
        j.push_str("  ],\n");
        let anchor: Vec<String> = KVM_ANCHOR
            .iter()
            .map(|(c, d, off)| {
                format!(
                    "{}: {{\"default\": {d}, \"mitigations_off\": {off}}}",
                    json_str(c)
                )
            })
            .collect();
        let _ = writeln!(j, "  \"kvm_anchor\": {{{}}},", anchor.join(", "));
        let host = self.host.as_ref().map_or("null".into(), |h| {
            let items: Vec<String> = h
                .steps
                .iter()
                .map(|(k, v)| format!("{}: {v}", json_str(k)))
                .collect();
            format!(
                "{{\"runs\": {}, \"median_ns\": {{{}}}}}",
                h.runs,
                items.join(", ")
            )
        });
        let _ = writeln!(j, "  \"host_kvm_lifecycle\": {host},");
        let s = &self.sizes;
        let lines: Vec<String> = s
            .lines
            .iter()
            .map(|(k, v)| format!("{}: {v}", json_str(k)))
            .collect();
        let _ = writeln!(
            j,
            "  \"size\": {{\"hypervisor_stripped_bytes\": {}, \"control_stripped_bytes\": {}, \
             \"lines\": {{{}}}}},",
            s.hypervisor_bytes,
            s.control_bytes,
            lines.join(", ")
        );
        let targets: Vec<String> = self
            .targets()
            .iter()
            .map(|(what, v, met)| {
                format!(
                    "{{\"target\": {}, \"value\": {}, \"met\": {met}}}",
                    json_str(what),
                    v.map_or("null".into(), json_num)
                )
            })
            .collect();
        let _ = writeln!(j, "  \"targets\": [{}],", targets.join(", "));
        let _ = writeln!(j, "  \"mitigations\": {}", json_str(MITIGATIONS));
        j.push_str("}\n");
        j
    }

    /// A bar chart of the exit costs per back end, KVM's anchor beside them.
    pub fn svg(&self) -> String {
        // Series: each back end, then KVM (default mitigations).
        let mut series: Vec<(String, &str, Vec<Option<f64>>)> = Vec::new();
        let colors = ["#d9534f", "#337ab7", "#999999"];
        for (i, b) in self.backends.iter().enumerate() {
            let values = CASES
                .iter()
                .map(|(c, _)| b.cases.get(*c).copied())
                .collect();
            series.push((b.name.clone(), colors[i.min(1)], values));
        }
        let kvm = CASES
            .iter()
            .map(|(c, _)| {
                KVM_ANCHOR
                    .iter()
                    .find(|a| a.0 == *c)
                    .map(|a| f64::from(a.1))
            })
            .collect();
        series.push(("Linux 6.1 KVM (SVM)".into(), colors[2], kvm));
        let max = series
            .iter()
            .flat_map(|s| s.2.iter().flatten())
            .fold(1.0f64, |m, v| m.max(*v));
        let (left, width, bar, gap) = (90.0, 560.0, 12.0, 14.0);
        let group = bar * series.len() as f64 + gap;
        let top = 40.0;
        let height = top + group * CASES.len() as f64 + 40.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"{height:.0}\" \
             font-family=\"sans-serif\" font-size=\"11\">"
        );
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"18\" font-size=\"13\">Mojito {}: instructions per exit round \
             trip (cargo xtask bench)</text>",
            xml(&self.version)
        );
        for (ci, (case, _)) in CASES.iter().enumerate() {
            let y0 = top + group * ci as f64;
            let _ = writeln!(
                s,
                "<text x=\"10\" y=\"{:.0}\">{}</text>",
                y0 + group / 2.0,
                xml(case)
            );
            for (si, (_, color, values)) in series.iter().enumerate() {
                let Some(v) = values[ci] else { continue };
                let y = y0 + bar * si as f64;
                let w = (v / max * width).max(1.0);
                let _ = writeln!(
                    s,
                    "<rect x=\"{left}\" y=\"{y:.0}\" width=\"{w:.0}\" height=\"{:.0}\" \
                     fill=\"{color}\"/><text x=\"{:.0}\" y=\"{:.0}\">{v:.0}</text>",
                    bar - 2.0,
                    left + w + 4.0,
                    y + bar - 3.0
                );
            }
        }
        let ly = height - 20.0;
        for (si, (name, color, _)) in series.iter().enumerate() {
            let x = left + 180.0 * si as f64;
            let _ = writeln!(
                s,
                "<rect x=\"{x}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{color}\"/>\
                 <text x=\"{:.0}\" y=\"{ly:.0}\">{}</text>",
                ly - 9.0,
                x + 14.0,
                xml(name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// `v` as a JSON number (`null` for NaN and the infinities, which JSON
/// cannot hold: a ratio over a zero floor).
fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{}", (v * 1000.0).round() / 1000.0)
    } else {
        "null".into()
    }
}

/// `text` as a JSON string.
fn json_str(text: &str) -> String {
    let mut s = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// `text` escaped for XML.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "mojito: Mojito 0.1.0 starting\n\
        control: bench lifecycle: 5200 TSC ticks to the first exit (create_vm 1000, memory \
        1100, create_vcpu 1200, run 1900), close 700\n\
        [bench] bench floor: 260.0 ticks per round trip (4096 iterations)\n\
        [bench] bench cpuid: 1165.5 ticks per round trip (1024 iterations)\n\
        [bench] bench hypercall: 1148.0 ticks per round trip (1024 iterations)\n\
        [bench] bench in-post: 336.0 ticks per round trip (4096 iterations)\n\
        [bench] bench in-vmm: 2825.0 ticks per round trip (512 iterations)\n\
        [bench] bench mmio-vmm: 4054.3 ticks per round trip (256 iterations)\n\
        [bench] bench rdmsr-vmm: 2100.0 ticks per round trip (512 iterations)\n";

    #[test]
    fn reads_the_figures() {
        assert_eq!(figure(LOG, "cpuid"), Some(1165.5));
        assert_eq!(figure(LOG, "rdmsr"), None);
        let l = lifecycle(LOG).unwrap();
        assert_eq!(step(&l, "total"), Some(5200));
        assert_eq!(step(&l, "create_vcpu"), Some(1200));
        assert_eq!(l[5], ("close".to_owned(), 700));
        assert_eq!(l.len(), 6);
        let b = Backend::from_serial("SVM", "QEMU", LOG, 1.0);
        assert_eq!(b.problem, None);
        let partial = Backend::from_serial("VMX", "Bochs", &LOG.replace("in-vmm", "x"), 1.0);
        assert_eq!(partial.problem.as_deref(), Some("no figure for in-vmm"));
    }

    #[test]
    fn counts_code_lines() {
        let text = "//! doc\n\nfn a() {\n    // note\n    b();\n}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n";
        assert_eq!(code_lines(text), 3);
        // A test module in its own file ends nothing.
        let text = "#[cfg(test)]\nmod tests;\n\nfn a() {}\n";
        assert_eq!(code_lines(text), 3);
    }

    #[test]
    fn report_forms() {
        let r = Report {
            version: "0.1.0".into(),
            backends: vec![Backend::from_serial("SVM", "QEMU <EPYC>", LOG, 3.0)],
            host: None,
            host_problem: Some("no /dev/kvm".into()),
            sizes: Sizes {
                hypervisor_bytes: 200_000,
                control_bytes: 300_000,
                lines: [("hypervisor".to_owned(), 9000)].into(),
            },
        };
        let targets = r.targets();
        assert_eq!(targets[0].0, "SVM cpuid <= 300");
        assert!(!targets[0].2);
        assert!(
            targets
                .iter()
                .any(|t| t.0.starts_with("hypervisor lines") && t.2)
        );
        let table = r.table();
        assert!(table.contains("1165.5"), "{table}");
        assert!(table.contains("3128"), "{table}");
        assert!(table.contains("not measured: no /dev/kvm"), "{table}");
        let json = r.json();
        assert!(json.contains("\"cpuid\": 1165.5"), "{json}");
        assert!(json.contains("\"machine\": \"QEMU <EPYC>\""), "{json}");
        assert_eq!(json.matches('{').count(), json.matches('}').count());
        let svg = r.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 7 + 4 + 2);
    }
}
