//! The slow tests (`cargo xtask test --slow`, issue 10's exhaustion and
//! soak): what the slow image's boot script (`xtask::image::slow_script`)
//! makes the shell print, checked.
//!
//! - **Exhaustion, three times**: `info`, then VMs of 32 MiB until the
//!   control domain's memory runs out (each refusal `errno 12`, nothing
//!   half-made: the full `info` counts exactly the VMs made and their
//!   RAM), all destroyed. The hypervisor's free metadata frames must be
//!   back to the first figure exactly after each round, and the control
//!   domain's heap must end every round, and the whole run, exactly where
//!   the first round ended it, to the byte (a leak grows every round).
//! - **Soak**: the `soak` guest's ten million exits; its own counts against
//!   the VMM's (`stats`: port 0x2f0 writes, MMIO reads, forwarded I/O) and
//!   the hypervisor's (its closing line: hypercalls, I/O exits, nested page
//!   faults), which must add up exactly.
//! - **Flood**: every one of `flood`'s 2000 lines on the console in order,
//!   and its 16 KiB ring reporting exactly the bytes it dropped.
//! - **Probe**: the `probe` guest read every page around its slots and one
//!   address per 2 MiB of the first 512 GiB (one per GiB above, up to
//!   MAXPHYADDR) and found only its own memory and MMIO holes.

/// What the script sets up (`xtask::image::EXHAUST_VMS`, the soak and
/// flood guests' constants).
pub const EXHAUST_VMS: u32 = xtask::image::EXHAUST_VMS;
pub const EXHAUST_MIB: u64 = 32;
pub const SOAK_ROUNDS: u64 = 1_000_000;
pub const FLOOD_LINES: u64 = 2000;
pub const FLOOD_LINE_BYTES: u64 = 64;
/// The VMM's console ring (`vmm::devices::console::RING_DEFAULT`).
pub const RING: u64 = 16 * 1024;

/// The figures of one `info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Free frames of the hypervisor's metadata pool.
    pub frames: u64,
    /// Bytes of the control domain's heap in use.
    pub heap: u64,
    /// Guest RAM the shell's VMs hold (its text, e.g. `0 B`).
    pub guest_ram: String,
    /// VMs in the shell's table.
    pub vms: u64,
}

fn infos(lines: &[&str]) -> Vec<Info> {
    let mut out = Vec::new();
    let mut frames = None;
    for l in lines {
        if let Some(rest) = l.strip_prefix("memory: ")
            && let Some(f) = rest
                .rsplit_once(" frames)")
                .and_then(|(a, _)| a.rsplit_once('('))
        {
            frames = f.1.parse().ok();
        }
        if let Some(rest) = l.strip_prefix("control domain heap: ") {
            let heap = rest
                .split_once(" bytes; ")
                .and_then(|(a, _)| a.rsplit_once('('))
                .and_then(|(_, n)| n.parse().ok());
            let tail = rest.split_once(" bytes; ").map(|(_, b)| b);
            let guest_ram = tail
                .and_then(|b| b.split_once(" of it guest RAM"))
                .map(|(g, _)| g.to_string());
            let vms = tail
                .and_then(|b| b.split_once(" of it guest RAM, "))
                .and_then(|(_, v)| v.split(' ').next()?.parse().ok());
            if let (Some(frames), Some(heap), Some(guest_ram), Some(vms)) =
                (frames.take(), heap, guest_ram, vms)
            {
                out.push(Info {
                    frames,
                    heap,
                    guest_ram,
                    vms,
                });
            }
        }
    }
    out
}

/// `key=N` in a line of `key=N` words.
fn count(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| {
            w.trim_end_matches([';', ','])
                .strip_prefix(key)?
                .strip_prefix('=')
        })
        .and_then(|n| n.parse().ok())
}

fn exhaustion(lines: &[&str], problems: &mut Vec<String>) -> Vec<Info> {
    // Each round: before, full; then after the last round, and at the end
    // (after soak and flood).
    let rounds = xtask::image::EXHAUST_ROUNDS as usize;
    let infos = infos(lines);
    if infos.len() != 2 * rounds + 2 {
        problems.push(format!(
            "expected {} info figures (before and full each round, after, at the end), got {}",
            2 * rounds + 2,
            infos.len()
        ));
        return infos;
    }
    let first = &infos[0];
    // The ends of rounds 1.. = the starts of rounds 2.. and the last after.
    let ends: Vec<&Info> = (1..=rounds).map(|r| &infos[2 * r]).collect();
    for (r, info) in ends.iter().enumerate() {
        if info.frames != first.frames {
            problems.push(format!(
                "after round {} the metadata pool has {} free frames, {} before",
                r + 1,
                info.frames,
                first.frames
            ));
        }
    }
    // The first round grows the shell's own tables (the VM table's
    // capacity: 4 KiB before it, 18 KiB after); every round must end where
    // the one before did, to the byte, and so must the machine after the
    // soak and the flood (the last `info`). The boot script's lines are
    // borrowed from the bundle, so running them frees nothing.
    let last = &infos[2 * rounds + 1];
    if last.heap != ends[0].heap {
        problems.push(format!(
            "the control domain's heap is {} bytes in use at the end, {} after round 1",
            last.heap, ends[0].heap
        ));
    }
    for r in 1..ends.len() {
        if ends[r].heap != ends[r - 1].heap {
            problems.push(format!(
                "the control domain's heap is {} bytes in use after round {}, {} after round {}: \
                 a leak",
                ends[r].heap,
                r + 1,
                ends[r - 1].heap,
                r
            ));
        }
    }
    // Each round: a prefix of the VMs made, the rest refused with ENOMEM.
    let mut per_round = Vec::new();
    let mut made = 0u32;
    let mut refused = 0u32;
    for l in lines {
        if l.starts_with("control: vm ")
            && l.ends_with(&format!("created with {EXHAUST_MIB} MiB of RAM"))
        {
            if refused > 0 {
                problems.push(format!("a VM was created after one was refused: {l:?}"));
            }
            made += 1;
        } else if l.starts_with("create: v") && l.contains("errno 12 (not enough free memory") {
            refused += 1;
        }
        if made + refused == EXHAUST_VMS {
            per_round.push((made, refused));
            (made, refused) = (0, 0);
        }
    }
    if per_round.len() != rounds || per_round.iter().any(|r| *r != per_round[0]) {
        problems.push(format!(
            "expected {rounds} equal rounds of {EXHAUST_VMS} creates, got {per_round:?} (made, \
             refused)"
        ));
    } else if per_round[0].0 == 0 || per_round[0].1 == 0 {
        problems.push(format!(
            "memory did not run out part way: {per_round:?} (made, refused)"
        ));
    } else {
        // When full, the shell holds exactly the VMs made and their RAM.
        let made = u64::from(per_round[0].0);
        for r in 0..rounds {
            let full = &infos[2 * r + 1];
            let want = format!("{} MiB", made * EXHAUST_MIB);
            if full.vms != made || full.guest_ram != want {
                problems.push(format!(
                    "round {}: the full `info` shows {} VMs with {} of guest RAM, not {made} with \
                     {want}",
                    r + 1,
                    full.vms,
                    full.guest_ram
                ));
            }
        }
    }
    infos
}

fn soak(lines: &[&str], problems: &mut Vec<String>) {
    let done = format!(
        "[soak] soak: done: {} hypercalls, {} reads of port 0x80, {} writes to port 0x2f0, {} \
         MMIO reads",
        4 * SOAK_ROUNDS,
        4 * SOAK_ROUNDS,
        SOAK_ROUNDS,
        SOAK_ROUNDS
    );
    if !lines.iter().any(|l| *l == done) {
        problems.push(format!("no line {done:?}"));
    }
    if !lines.contains(&"[soak] PASS") {
        problems.push("no line \"[soak] PASS\"".into());
    }
    let Some(at) = lines.iter().position(|l| *l == "mojito> stats soak") else {
        problems.push("no `stats soak`".into());
        return;
    };
    let stats = &lines[at..lines.len().min(at + 8)];
    let find = |p: &str| stats.iter().find(|l| l.trim_start().starts_with(p));
    let vmm_io = find("by reason:").and_then(|l| count(l, "io"));
    let vmm_mmio = find("by reason:").and_then(|l| count(l, "mmio"));
    let writes = find("unclaimed port 0x02f0:")
        .and_then(|l| l.split(": ").nth(1)?.split(' ').next()?.parse::<u64>().ok());
    let mmio_reads = find("mmio: ").and_then(|l| {
        l.trim_start()
            .strip_prefix("mmio: ")?
            .split(' ')
            .next()?
            .parse::<u64>()
            .ok()
    });
    if writes != Some(SOAK_ROUNDS) {
        problems.push(format!(
            "the VMM counted {writes:?} writes to port 0x2f0, not {SOAK_ROUNDS}"
        ));
    }
    if mmio_reads != Some(SOAK_ROUNDS) || vmm_mmio != Some(SOAK_ROUNDS) {
        problems.push(format!(
            "the VMM counted {mmio_reads:?} MMIO reads in {vmm_mmio:?} MMIO exits, not {SOAK_ROUNDS}"
        ));
    }
    // The hypervisor's closing line for the soak VM (the one with the most
    // hypercalls).
    let closing = lines
        .iter()
        .filter(|l| l.contains("mojito: vm") && l.contains(" closed; exits: "))
        .max_by_key(|l| count(l, "hypercall").unwrap_or(0));
    let Some(closing) = closing else {
        problems.push("no closing line of the hypervisor's for the soak VM".into());
        return;
    };
    let (hv_calls, hv_io, hv_npf) = (
        count(closing, "hypercall"),
        count(closing, "io"),
        count(closing, "npf"),
    );
    if hv_calls != Some(4 * SOAK_ROUNDS) {
        problems.push(format!(
            "the hypervisor counted {hv_calls:?} hypercalls, the guest made {}: {closing:?}",
            4 * SOAK_ROUNDS
        ));
    }
    // Every I/O exit is either port 0x80 (answered by the hypervisor) or
    // forwarded (counted by the VMM); every nested page fault is an MMIO
    // exit the VMM counted.
    match (hv_io, vmm_io) {
        (Some(h), Some(v)) if h == 4 * SOAK_ROUNDS + v => {}
        _ => problems.push(format!(
            "I/O exits do not add up: the hypervisor's {hv_io:?} != {} reads of port 0x80 + the \
             VMM's {vmm_io:?}: {closing:?}",
            4 * SOAK_ROUNDS
        )),
    }
    if hv_npf != vmm_mmio {
        problems.push(format!(
            "nested page faults do not add up: the hypervisor's {hv_npf:?} != the VMM's {vmm_mmio:?} \
             MMIO exits: {closing:?}"
        ));
    }
}

/// Line `i` of the flood guest, without its newline.
pub fn flood_line(i: u64) -> String {
    let letters: String = (0..FLOOD_LINE_BYTES - 13)
        .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
        .collect();
    format!("flood {i:05} {letters}")
}

fn flood(lines: &[&str], problems: &mut Vec<String>) {
    // Every line, in order, as the shell echoed it.
    let echoed: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("[flood] "))
        .collect();
    let want: Vec<String> = (0..FLOOD_LINES).map(flood_line).collect();
    if echoed.len() != want.len() || echoed.iter().zip(&want).any(|(a, b)| a != b) {
        let first_bad = echoed.iter().zip(&want).position(|(a, b)| a != b);
        problems.push(format!(
            "the flood's lines on the console: {} of {}, first difference at {first_bad:?}",
            echoed.len(),
            want.len()
        ));
    }
    // The ring's replay: what it dropped, then its last 16 KiB.
    let dropped = (FLOOD_LINES * FLOOD_LINE_BYTES).saturating_sub(RING);
    let note = format!("({dropped} earlier bytes were dropped from the ring)");
    let Some(at) = lines.iter().position(|l| *l == note) else {
        problems.push(format!("no line {note:?} after `console flood`"));
        return;
    };
    let kept = RING / FLOOD_LINE_BYTES;
    let mut replay: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| !l.starts_with("(end of flood's output)"))
        .copied()
        .collect();
    // The shell ends the replay with a line break of its own.
    while replay.last() == Some(&"") {
        replay.pop();
    }
    let want_replay: Vec<String> = (FLOOD_LINES - kept..FLOOD_LINES).map(flood_line).collect();
    if replay != want_replay {
        problems.push(format!(
            "the ring's replay is not the last {kept} lines: {} lines, first {:?}",
            replay.len(),
            replay.first()
        ));
    }
}

fn probe(lines: &[&str], problems: &mut Vec<String>) {
    let line = lines
        .iter()
        .find(|l| l.starts_with("[probe] probe: ") && l.contains(" addresses up to "));
    // At least one address per 2 MiB of the first 512 GiB (MAXPHYADDR is
    // 39 bits or more on every machine the tests use).
    let n = line.and_then(|l| {
        l.split(" pages around the slots and ")
            .nth(1)?
            .split(' ')
            .next()?
            .parse::<u64>()
            .ok()
    });
    let near = line.and_then(|l| {
        l.strip_prefix("[probe] probe: ")?
            .split(' ')
            .next()?
            .parse::<u64>()
            .ok()
    });
    let top = line.and_then(|l| {
        let hex = l.split(" addresses up to 0x").nth(1)?.split(':').next()?;
        u64::from_str_radix(hex, 16).ok()
    });
    if !n.is_some_and(|n| n >= (1 << 39) / (2 << 20) - 16)
        || !near.is_some_and(|n| n >= 144)
        || !top.is_some_and(|t| t >= 1 << 39)
    {
        problems.push(format!(
            "the probe's count line is missing or short: {line:?}"
        ));
    }
    if !lines.contains(&"[probe] PASS") {
        problems.push("no line \"[probe] PASS\"".into());
    }
}

/// What is wrong with a slow run's serial log.
pub fn problems(serial: &str) -> Vec<String> {
    let lines: Vec<&str> = serial.lines().map(str::trim_end).collect();
    let mut problems = Vec::new();
    let infos = exhaustion(&lines, &mut problems);
    soak(&lines, &mut problems);
    flood(&lines, &mut problems);
    probe(&lines, &mut problems);
    if let (Some(first), Some(last)) = (infos.first(), infos.last())
        && first.frames != last.frames
    {
        problems.push(format!(
            "at the end the metadata pool has {} free frames, {} at the start",
            last.frames, first.frames
        ));
    }
    for l in &lines {
        if l.contains("FATAL") || l.contains("FAIL") {
            problems.push(format!("a failure: {l:?}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_lines_are_64_bytes() {
        assert_eq!(flood_line(0).len() as u64 + 1, FLOOD_LINE_BYTES);
        assert!(flood_line(1999).starts_with("flood 01999 xyzabc"));
        assert_eq!(
            count(
                "mojito: vm3 closed; exits: hypercall=4 io=12 npf=1; RUN",
                "npf"
            ),
            Some(1)
        );
        assert_eq!(count("  by reason: io=5 mmio=7 intr=2", "mmio"), Some(7));
    }

    #[test]
    fn info_figures_are_read() {
        let l = [
            "memory: 512 MiB usable: hypervisor 8.6 MiB, control domain 400 MiB, free for VM metadata 63.5 MiB (16256 frames)",
            "control domain heap: 390 MiB, 4258 KiB in use (4360192 bytes; 0 B of it guest RAM, 0 VMs)",
        ];
        assert_eq!(
            infos(&l),
            vec![Info {
                frames: 16256,
                heap: 4_360_192,
                guest_ram: "0 B".into(),
                vms: 0
            }]
        );
    }
}

/// Checks a kept run's raw serial log (`MOJITO_SLOW_SERIAL=PATH cargo test
/// -p mojito-tests --lib slow::recheck -- --ignored`): for working on
/// these checks without an hour's run.
#[cfg(test)]
#[test]
#[ignore = "needs MOJITO_SLOW_SERIAL"]
fn recheck() {
    let path = std::env::var("MOJITO_SLOW_SERIAL").expect("MOJITO_SLOW_SERIAL=PATH");
    let raw = String::from_utf8_lossy(&std::fs::read(path).expect("read it")).into_owned();
    let p = problems(&xtask::workspace::screen(&raw));
    assert!(p.is_empty(), "{p:#?}");
}
