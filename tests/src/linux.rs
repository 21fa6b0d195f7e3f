//! What the Linux test's serial log must show (issue 7): Debian's kernel,
//! run by the control domain as VM `linux` (`xtask::image::linux_script`),
//! reaches its initramfs's marker (`xtask::linux::MARKER`) seeing every
//! vCPU, loads its modules, and powers off through ACPI S5; the kernel
//! says nothing that shows a platform gap (an MSR it wanted, a warning, a
//! panic).

/// Kernel lines that mean something is wrong with the platform Mojito
/// gives it.
const BAD: &[&str] = &[
    "Kernel panic",
    "unchecked MSR access error",
    "BUG:",
    "Oops",
    // A WARN() splat ("WARNING: CPU: 0 PID: 1 at …"), not the
    // mitigation notes that also start with "WARNING:".
    "WARNING: CPU:",
    "init: insmod",
    "control: FAIL",
    "FATAL",
    "panicked at",
];

/// The problems with `serial`, a run of the Linux image whose VM has
/// `vcpus` vCPUs and whose disk's sector 0 began with `disk_line`
/// (`xtask::image::linux_disk`'s, without the line end).
pub fn problems(serial: &str, vcpus: u32, disk_line: &str) -> Vec<String> {
    let mut problems = Vec::new();
    // The guest read the disk …
    let read = format!("MOJITO-DISK-READ {disk_line}");
    if !serial.lines().any(|l| l.trim_end().ends_with(&read)) {
        problems.push(format!(
            "the guest did not print `{read}`: it did not read the disk"
        ));
    }
    // … and what it wrote is on the disk after it ended.
    let nonce = disk_line
        .strip_prefix(xtask::image::LINUX_DISK_IN)
        .unwrap_or_default()
        .trim();
    let written = format!("sector 1: \"{} {nonce}\"", xtask::image::LINUX_DISK_OUT);
    // … and the virtio console carried a line out.
    let hvc = format!("[linux] MOJITO-HVC0 {nonce}");
    if !serial.lines().any(|l| l.trim_end().ends_with(&hvc)) {
        problems.push(format!(
            "no `{hvc}` line: nothing came through the virtio console"
        ));
    }
    match serial.lines().find(|l| l.contains("(linux): disk: ")) {
        None => problems.push("no `control: vm 1 (linux): disk:` line".into()),
        Some(l) if !l.contains(&written) => {
            problems.push(format!(
                "the disk after the VM ended lacks `{written}`: {l:?}"
            ));
        }
        Some(_) => {}
    }
    let marker = format!("{} cpus=", xtask::linux::MARKER);
    match serial.lines().find_map(|l| l.split_once(&marker)) {
        None => problems.push(format!(
            "no `{marker}N` line: Linux did not reach userspace"
        )),
        Some((_, n)) if n.trim() != vcpus.to_string() => problems.push(format!(
            "Linux saw {} CPUs in /proc/cpuinfo, not {vcpus}",
            n.trim()
        )),
        Some(_) => {}
    }
    // The console's bytes went through the coalesced ring (the UART's THR,
    // docs/api.md §4.34): the hypervisor's closing line counts them.
    if coalesced(serial) < MIN_COALESCED {
        problems.push(format!(
            "fewer than {MIN_COALESCED} port writes coalesced (`io=N (M coalesced)` in the \
             hypervisor's closing line): the UART's bytes did not go through the ring"
        ));
    }
    if !serial.contains("(linux): stopped: powered off") {
        problems.push("VM linux did not stop by powering off (ACPI S5)".into());
    }
    for line in serial.lines() {
        if let Some(bad) = BAD.iter().find(|b| line.contains(*b)) {
            problems.push(format!("`{bad}`: {:?}", line.trim()));
        }
    }
    problems
}

/// The boot log is about 18,000 bytes, one OUT each.
const MIN_COALESCED: u64 = 1000;

/// The most port writes a hypervisor closing line (`vmN closed; exits:
/// ... io=N (M coalesced) ...`) reports coalesced.
fn coalesced(serial: &str) -> u64 {
    serial
        .lines()
        .filter(|l| l.contains("closed; exits:"))
        .filter_map(|l| {
            let (before, _) = l.split_once(" coalesced)")?;
            before.rsplit_once('(')?.1.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// The kernel's own time (its printk clock, kvmclock) at `Run /init`: how
/// long the boot to userspace took as the guest saw it.
pub fn boot_seconds(serial: &str) -> Option<f64> {
    const RUN_INIT: &str = "Run /init as init process";
    let line = serial.lines().find(|l| l.contains(RUN_INIT))?;
    let before = &line[..line.find(RUN_INIT)?];
    let (_, stamp) = before.rsplit_once('[')?;
    let (secs, _) = stamp.split_once(']')?;
    secs.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "control: vm 1 (linux): created with 256 MiB of RAM\n\
        [linux] [    1.000000] Run /init as init process\n\
        mojito> \u{1b}[K[linux] MOJITO-LINUX-USERSPACE cpus=2\n\
        [linux] MOJITO-DISK-READ MOJITO-DISK-IN 00ab\n\
        [linux] MOJITO-HVC0 00ab\n\
        [linux] [    2.000000] reboot: Power down\n\
        control: vm 1 (linux): stopped: powered off\n\
        control: vm 1 (linux): disk: 9 requests; sector 0: \"MOJITO-DISK-IN 00ab\"; \
        sector 1: \"MOJITO-DISK-OUT 00ab\"\n\
        mojito: vm1 closed; exits: cpuid=751 io=37984 (18365 coalesced) npf=1227\n";
    const DISK: &str = "MOJITO-DISK-IN 00ab";

    #[test]
    fn a_good_run_has_no_problems() {
        assert_eq!(problems(GOOD, 2, DISK), Vec::<String>::new());
        assert_eq!(boot_seconds(GOOD), Some(1.0));
    }

    #[test]
    fn each_gap_is_a_problem() {
        assert_eq!(problems(GOOD, 1, DISK).len(), 1, "CPU count");
        let no_marker = GOOD.replace("MOJITO-LINUX-USERSPACE", "other");
        assert_eq!(problems(&no_marker, 2, DISK).len(), 1);
        let no_poweroff = GOOD.replace("powered off", "halted");
        assert_eq!(problems(&no_poweroff, 2, DISK).len(), 1);
        let msr =
            format!("{GOOD}[linux] [ 0.5] unchecked MSR access error: RDMSR from 0xc001001f\n");
        assert!(problems(&msr, 2, DISK)[0].contains("MSR"));
        let insmod = format!("{GOOD}[linux] init: insmod virtio failed\n");
        assert_eq!(problems(&insmod, 2, DISK).len(), 1);
        let no_hvc = GOOD.replace("HVC0", "HVC1");
        assert_eq!(problems(&no_hvc, 2, DISK).len(), 1);
        let unread = GOOD.replace("DISK-READ", "DISK-NOT");
        assert_eq!(problems(&unread, 2, DISK).len(), 1);
        let unwritten = GOOD.replace("DISK-OUT 00ab", "DISK-OUT 00ac");
        assert_eq!(problems(&unwritten, 2, DISK).len(), 1);
        assert_eq!(problems(GOOD, 2, "MOJITO-DISK-IN 00ff").len(), 3);
        let few = GOOD.replace("(18365 coalesced)", "(999 coalesced)");
        assert_eq!(problems(&few, 2, DISK).len(), 1);
        let none = GOOD.replace(" (18365 coalesced)", "");
        assert_eq!(problems(&none, 2, DISK).len(), 1);
    }
}
