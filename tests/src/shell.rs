//! The operator's shell, driven over the emulated machine's COM1 (issue 5):
//! the shell image holds the control domain and the `counter` guest and no
//! boot script, and the test types every command, each once the previous
//! one's answer has appeared, then checks the answers in order.

use crate::typist::Keys;

/// One thing typed and the text its answer must contain.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub typed: &'static str,
    pub answer: &'static str,
}

const fn step(typed: &'static str, answer: &'static str) -> Step {
    Step { typed, answer }
}

/// Where the first keys wait for: the shell's ready line.
pub const READY: &str = "control: the shell is ready";

/// Typed after [`BURST_AFTER`]: random bytes, then Ctrl-C and `list`.
const BURST_AFTER: &str = "mojito: cpu0: ";

/// The session. `RANDOM` stands for the burst of random bytes.
pub const RANDOM: &str = "<random bytes>";
/// Stands for the nested-table check (nothing typed).
pub const TABLE_CHECK: &str = "<table check>";
/// Where the check's report goes, in the run directory.
pub const TABLES_REPORT: &str = "tables.txt";

pub const STEPS: &[Step] = &[
    step("help\r", "Your own kernel: `cargo xtask run --kernel FILE`"),
    step("help create\r", "usage: create NAME kernel=PATH"),
    step("info\r", "virtualization: "),
    step("ls\r", "files in the boot bundle"),
    step("frob\r", "unknown command 'frob'; try help"),
    step("lsit\r", "unknown command 'lsit'; did you mean list?"),
    step("start\r", "start: a VM name is missing; usage: start NAME"),
    step("create c1\r", "create: kernel=PATH is missing"),
    step(
        "create c1 kernel=nothere.elf\r",
        "create: c1: no file nothere.elf in the boot bundle",
    ),
    step(
        "create big kernel=guests/counter.elf mem=3G\r",
        "(not enough free memory; list shows who has it); nothing was created",
    ),
    step("list\r", "no VMs; create one"),
    step("info\r", "control domain heap: "),
    step(
        "create c1 kernel=guests/counter.elf\r",
        "control: vm 1 (c1): created with 4 MiB of RAM",
    ),
    step(
        "create c1 kernel=guests/counter.elf\r",
        "create: there is a VM c1 already",
    ),
    step("info\r", "control domain heap: "),
    step("list\r", "created"),
    step("start c1\r", "[c1] counter: wrote port 0x2f0 1000 times"),
    step("stats c1\r", "unclaimed port 0x02f0: 1000 writes"),
    step("pause c1\r", "control: vm 1 (c1): paused"),
    step("list\r", "paused"),
    step("show vm/c1/vcpu0/regs\r", "rip 0x"),
    step("show vm/c1/vcpu0/sregs\r", "cr0 0x"),
    step(
        "show vm/c1/memslots\r",
        "slot   0: 0x0000000000-0x00003fffff",
    ),
    // The hypervisor names where the tables are; the harness stops the
    // machine, walks them in its memory and judges every leaf
    // (`crate::tables`), then lets it go on.
    // (Two CPUs: the hypervisor, cpu0, cpu1, the control domain, c1.)
    step("layout\r", "layout: 5 lines in the hypervisor's log"),
    step(TABLE_CHECK, ""),
    step("show nowhere\r", "show: no such path: nowhere"),
    step("resume c1\r", "control: vm 1 (c1): resumed"),
    step("vms\r", "running"),
    // A reset makes the VM again: the guest starts over and counts anew.
    step("reset c1\r", "[c1] counter: wrote port 0x2f0 1000 times"),
    step("stats c1\r", "unclaimed port 0x02f0: 1000 writes"),
    // Attached: the replay of the ring (the raw line, no `[c1] `) first.
    step("console c1\r", "counter: wrote port 0x2f0 1000 times"),
    step("z", "counter: got z"),
    step("\u{1d}", "console: detached"),
    step("echo c1 off\r", "echo: c1's lines off"),
    // With echo off the guest's line after the reset is not printed (the
    // check below looks for `[c1] ` lines after this step).
    step("reset c1\r", "control: vm 1 (c1): reset"),
    step("log\r", BURST_AFTER),
    step(RANDOM, "   1 c1 "),
    step(
        "destroy c1\r",
        "control: vm 1 (c1): destroyed; 4 MiB of RAM given back",
    ),
    step("info\r", "control domain heap: "),
    step("list\r", "no VMs; create one"),
    step("poweroff\r", "control: powering off"),
];

/// A fixed burst of `n` random bytes: every ASCII control character but
/// CR, LF and Ctrl-] (those would end the line or mean something at a
/// console), printable text, escape sequences, and some multi-byte UTF-8;
/// then Ctrl-C (drop the line) and `list`.
pub fn burst(n: usize) -> String {
    let mut x = 0x853c_49e6_748f_ea9bu64;
    let mut s = String::new();
    while s.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match (x >> 56) as u8 {
            0..=7 => s.push('é'),
            8..=15 => s.push_str("\u{1b}[D"),
            b => {
                let c = char::from(b & 0x7f);
                if !matches!(c, '\r' | '\n' | '\u{1d}' | '\0') {
                    s.push(c);
                }
            }
        }
    }
    s.push_str("\u{3}list\r");
    s
}

/// The keys to type: each step after the previous one's answer.
pub fn keys(burst_len: usize) -> Vec<Keys> {
    let mut after = READY;
    STEPS
        .iter()
        .map(|s| {
            let typed: &'static str = if s.typed == RANDOM {
                Box::leak(burst(burst_len).into_boxed_str())
            } else {
                s.typed
            };
            let k = if s.typed == TABLE_CHECK {
                Keys {
                    after,
                    keys: TABLES_REPORT,
                    via: crate::typist::Via::TableCheck,
                }
            } else {
                Keys::serial(after, typed)
            };
            after = s.answer;
            k
        })
        .collect()
}

/// The keys of the reboot test: `reboot` once the shell is ready.
pub fn reboot_keys() -> Vec<Keys> {
    vec![Keys::serial(READY, "reboot\r")]
}

/// The keys of the Bochs reboot test: `reboot` once the shell is ready,
/// and `poweroff` once it is ready again after the reset.
pub fn reboot_again_keys() -> Vec<Keys> {
    vec![
        Keys::serial(READY, "reboot\r"),
        Keys::serial(READY, "poweroff\r"),
    ]
}

/// What the reboot test's log lacks: the command, its line, and no
/// complaint that the reset did not work (QEMU's `-no-reboot` then ends
/// the run; without a reset it would time out).
pub fn reboot_problems(serial: &str) -> Vec<String> {
    let lines: Vec<&str> = serial.lines().map(str::trim_end).collect();
    let mut problems = Vec::new();
    let Some(at) = lines.iter().position(|l| *l == "mojito> reboot") else {
        return vec!["no line \"mojito> reboot\"".into()];
    };
    if !lines[at..].contains(&"control: rebooting") {
        problems.push("no line \"control: rebooting\" after the command".into());
    }
    // With other CPUs started, each must leave VMX/SVM before the reset.
    let others = lines
        .iter()
        .find_map(|l| l.strip_prefix("mojito: smp: "))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(0, |n| n.saturating_sub(1));
    if others > 0 {
        let want = format!("mojito: smp: {others} of {others} other CPUs left VMX/SVM");
        if !lines[at..].contains(&want.as_str()) {
            problems.push(format!("no line {want:?} after the command"));
        }
    }
    if lines
        .iter()
        .any(|l| l.starts_with("reboot: ") || l.contains("powering off"))
    {
        problems.push("the machine did not reset (or powered off instead)".into());
    }
    // The hypervisor names each method as it tries it: the first must have
    // worked, not the triple fault at last.
    let tried: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("mojito: reset: "))
        .collect();
    if tried.len() != 1 || tried[0].contains("triple fault") {
        problems.push(format!(
            "the reset methods tried: {tried:?} (the first should have worked)"
        ));
    }
    problems
}

/// What the nested-table check's report (`TABLES_REPORT`) says is wrong:
/// every `problem:` line, or its absence.
pub fn table_problems(report: Option<&str>) -> Vec<String> {
    let Some(r) = report else {
        return vec!["no nested-table report (the table check never ran)".into()];
    };
    let mut problems: Vec<String> = r
        .lines()
        .filter_map(|l| l.strip_prefix("problem: "))
        .map(|p| format!("nested tables: {p}"))
        .collect();
    let done = r
        .lines()
        .any(|l| l.starts_with("tables: ") && l.ends_with(" and 1 VMs checked; 0 problems"));
    if problems.is_empty() && !done {
        problems.push(format!("the nested-table report is incomplete:\n{r}"));
    }
    problems
}

/// "N KiB in use" of an `info` heap line.
fn heap_kib(line: &str) -> Option<u64> {
    let rest = line.split_once(", ")?.1;
    rest.split_once(" KiB in use")?.0.parse().ok()
}

/// What the session's log lacks or shows wrongly; empty when all is well.
/// `extension` is `SVM` or `VMX`.
pub fn problems(serial: &str, extension: &str) -> Vec<String> {
    let lines: Vec<&str> = serial
        .lines()
        .map(|l| l.trim_end_matches(['\r', '\n']))
        .collect();
    let mut problems = Vec::new();
    let mut at = match lines.iter().position(|l| l.starts_with(READY)) {
        Some(a) => a,
        None => return vec![format!("no line {READY:?}")],
    };
    // On two CPUs the session's VM (c1, id 1) runs on cpu1, and each command
    // the operator types while it runs fetches it back with a kick (an IPI;
    // D2): its closing line counts them.
    let two_cpus = lines
        .iter()
        .any(|l| l.starts_with("control: 2 vCPUs: the shell on cpu0"));
    let kicked = lines
        .iter()
        .any(|l| l.contains(" closed; exits: ") && l.contains(", by a kick "));
    if two_cpus && !kicked {
        problems.push(
            "no VM's closing line says a RUN ended \"by a kick\": a command typed while c1 ran \
             on cpu1 did not end its RUN there"
                .into(),
        );
    }
    let mut heaps = Vec::new();
    let mut echo_off_at = None;
    for s in STEPS {
        let command = if s.typed == RANDOM {
            Some("list")
        } else if s.typed == TABLE_CHECK {
            None
        } else {
            s.typed.strip_suffix('\r')
        };
        if let Some(c) = command {
            let line = format!("mojito> {c}");
            match lines[at..].iter().position(|l| *l == line) {
                Some(p) => at += p,
                None => {
                    problems.push(format!("no line {line:?} (after line {})", at + 1));
                    return problems;
                }
            }
        }
        match lines[at..].iter().position(|l| l.contains(s.answer)) {
            Some(p) => at += p,
            None => {
                problems.push(format!(
                    "after typing {:?}: no answer {:?}",
                    s.typed, s.answer
                ));
                return problems;
            }
        }
        if s.typed == "console c1\r" && !lines[at].starts_with("counter: wrote") {
            problems.push(format!(
                "`console` replayed no raw line but {:?}",
                lines[at]
            ));
        }
        if s.typed == "echo c1 off\r" {
            echo_off_at = Some(at);
        }
        if s.typed == "info\r" {
            let ext = format!("virtualization: {extension}:");
            let info = &lines[at.saturating_sub(6)..(at + 6).min(lines.len())];
            if s.answer.starts_with("virtualization") && !info.iter().any(|l| l.starts_with(&ext)) {
                problems.push(format!("`info` does not say {ext:?}"));
            }
            if let Some(k) = heap_kib(lines[at]) {
                heaps.push(k);
            }
        }
    }
    if let Some(off) = echo_off_at
        && let Some(l) = lines[off..].iter().find(|l| l.starts_with("[c1] "))
    {
        problems.push(format!(
            "after `echo c1 off` a line of c1 was printed: {l:?}"
        ));
    }
    match heaps.as_slice() {
        [before, with, after] => {
            if *with < before + 4096 {
                problems.push(format!(
                    "the heap grew by less than the guest's 4 MiB: {before} -> {with} KiB"
                ));
            }
            if *after > before + 64 {
                problems.push(format!(
                    "destroy did not give the memory back: {before} KiB before, {after} after"
                ));
            }
        }
        other => problems.push(format!("expected 3 heap figures from info, got {other:?}")),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_is_fixed_and_safe() {
        let b = burst(600);
        assert_eq!(b, burst(600));
        assert!(b.len() >= 600);
        let body = b.strip_suffix("\u{3}list\r").unwrap();
        assert!(!body.contains(['\r', '\n', '\u{1d}']));
        assert!(body.contains('\u{1b}') && body.contains('é') && body.contains('\u{15}'));
    }

    #[test]
    fn keys_follow_the_answers() {
        let k = keys(100);
        assert_eq!(k.len(), STEPS.len());
        assert_eq!(k[0].after, READY);
        assert_eq!(k[1].after, STEPS[0].answer);
        assert!(k.iter().any(|k| k.keys.ends_with("\u{3}list\r")));
    }

    #[test]
    fn heap_figures() {
        let l = "control domain heap: 1.7 GiB, 5123 KiB in use (5246976 bytes; 4 MiB of it guest RAM, 1 VMs)";
        assert_eq!(heap_kib(l), Some(5123));
    }
}
