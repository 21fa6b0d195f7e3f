//! The QEMU command line: firmware, disk, accelerator, serial.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context, Result};

/// OVMF's code (read-only pflash) and the template of its variable store.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The I/O port of QEMU's `isa-debug-exit` device: the hypervisor writes a
/// value there on a fatal error, and QEMU exits with `(value << 1) | 1`.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The TCG CPU with SVM: AMD EPYC (SVM with NPT), minus the features QEMU
/// 7.2's TCG cannot emulate, which it would otherwise warn about one line
/// per feature and CPU at every start (the guest-visible CPU is the same).
pub const TCG_SVM_CPU: &str =
    "EPYC,-rdseed,-sha-ni,-fxsr-opt,-misalignsse,-3dnowprefetch,-osvw,-topoext,-nrip-save,-xsavec";

/// How QEMU runs the CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accel {
    /// KVM with `-cpu host`: needs nested virtualization on the host.
    Kvm,
    /// TCG with this `-cpu` model (`EPYC` gives SVM with NPT).
    Tcg(String),
    /// As `Tcg`, with every vCPU on one host thread (`thread=single`): the
    /// boot tests, `run` and `bench linux`. Multi-threaded TCG (QEMU 7.2)
    /// ends runs with a host triple fault whose first fault is the fetch
    /// of the instruction right after VMRUN on cpu0 (not present, with the
    /// hypervisor's CR3 and its code page, which never changes; traced with
    /// `-d int`): under the test suite's load 3 times in about 20 runs,
    /// and with a Linux guest within minutes in 3 of 3 interactive runs.
    /// Never seen with one thread.
    TcgOneThread(String),
}

/// Picks KVM when it can run Mojito (`/dev/kvm` opens read-write and the
/// host CPU offers VMX or SVM to this kernel, i.e. nested virtualization),
/// else TCG with `-cpu EPYC`. Also returns the reason, for the user.
pub fn choose_accel() -> (Accel, String) {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let ext = cpu_extension(&cpuinfo);
    match (kvm, ext) {
        (Ok(_), Some(ext)) => (
            Accel::Kvm,
            format!("KVM with -cpu host: /dev/kvm works and the host CPU offers {ext}"),
        ),
        (Ok(_), None) => (
            Accel::TcgOneThread(TCG_SVM_CPU.into()),
            "TCG with -cpu EPYC (emulated SVM + NPT) on one thread: /dev/kvm works, but the \
             host CPU offers neither VMX nor SVM (no nested virtualization)"
                .into(),
        ),
        (Err(e), _) => (
            Accel::TcgOneThread(TCG_SVM_CPU.into()),
            format!(
                "TCG with -cpu EPYC (emulated SVM + NPT) on one thread: /dev/kvm cannot be \
                 opened ({e})"
            ),
        ),
    }
}

/// `VMX` or `SVM` when /proc/cpuinfo's flags show it.
fn cpu_extension(cpuinfo: &str) -> Option<&'static str> {
    let flags = cpuinfo.lines().find_map(|l| l.strip_prefix("flags"))?;
    let flags = flags.trim_start().strip_prefix(':')?;
    flags.split_whitespace().find_map(|f| match f {
        "vmx" => Some("VMX"),
        "svm" => Some("SVM"),
        _ => None,
    })
}

/// Which firmware boots which image, and how the disk is attached.
#[derive(Clone, Debug)]
pub enum Boot {
    /// OVMF; the image is a USB stick on an xHCI controller, as a PC boots
    /// it. `vars` is this run's own copy of the variable store.
    UefiUsb { image: PathBuf, vars: PathBuf },
    /// SeaBIOS; the image is the first IDE disk.
    Bios { image: PathBuf },
}

/// Where COM1 goes.
#[derive(Clone, Debug)]
pub enum Serial {
    /// The terminal, multiplexed with the monitor (Ctrl-A X quits).
    Terminal,
    /// A file; the monitor is off.
    File(PathBuf),
    /// A TCP client of this port on 127.0.0.1 (a test that types into the
    /// console listens there); the monitor is off.
    Tcp(u16),
}

/// One QEMU machine.
#[derive(Clone, Debug)]
pub struct Qemu {
    pub boot: Boot,
    pub accel: Accel,
    pub mem_mib: u64,
    pub smp: u32,
    pub serial: Serial,
    /// More arguments, appended last.
    pub extra: Vec<String>,
}

impl Qemu {
    /// The arguments after `qemu-system-x86_64`.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        match &self.accel {
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg(cpu) => push(&["-accel", "tcg", "-cpu", cpu]),
            Accel::TcgOneThread(cpu) => push(&["-accel", "tcg,thread=single", "-cpu", cpu]),
        }
        push(&[
            "-m",
            &format!("{}M", self.mem_mib),
            "-smp",
            &self.smp.to_string(),
        ]);
        match &self.boot {
            Boot::UefiUsb { image, vars } => {
                let code = format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}");
                let vars = format!("if=pflash,format=raw,file={}", opt_path(vars));
                push(&["-drive", &code, "-drive", &vars]);
                // snapshot=on: the image is never written, and runs in
                // parallel may share it.
                let stick = format!(
                    "if=none,id=stick,format=raw,snapshot=on,file={}",
                    opt_path(image)
                );
                push(&[
                    "-device",
                    "qemu-xhci,id=xhci",
                    "-device",
                    "usb-storage,bus=xhci.0,drive=stick",
                ]);
                push(&["-drive", &stick]);
            }
            Boot::Bios { image } => {
                let disk = format!(
                    "if=ide,index=0,media=disk,format=raw,snapshot=on,file={}",
                    opt_path(image)
                );
                push(&["-drive", &disk]);
            }
        }
        let exit = format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04");
        push(&["-device", &exit, "-display", "none", "-no-reboot"]);
        match &self.serial {
            Serial::Terminal => push(&["-serial", "mon:stdio"]),
            Serial::File(path) => {
                let file = format!("file:{}", path.display());
                push(&["-serial", &file, "-monitor", "none"]);
            }
            Serial::Tcp(port) => {
                let dev = format!("tcp:127.0.0.1:{port}");
                push(&["-serial", &dev, "-monitor", "none"]);
            }
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The command that runs this machine.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(self.args());
        cmd
    }
}

/// A path inside a `-drive` option list, where a comma must be doubled.
fn opt_path(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// Copies OVMF's variable store template to `dest` (each run needs a fresh
/// one: OVMF writes boot entries into it).
pub fn fresh_vars(dest: &Path) -> Result<PathBuf> {
    std::fs::copy(OVMF_VARS, dest)
        .with_context(|| format!("cannot copy {OVMF_VARS} to {}", dest.display()))?;
    Ok(dest.to_path_buf())
}

/// What QEMU's exit status says about the run, in words.
pub fn describe_exit(status: ExitStatus) -> String {
    match status.code() {
        Some(0) => "QEMU exited with status 0: the machine powered off (or reset, which \
                    -no-reboot turns into an exit)"
            .into(),
        Some(code) if code % 2 == 1 => format!(
            "QEMU exited with status {code}: the hypervisor wrote {:#x} to the debug-exit port \
             {DEBUG_EXIT_PORT:#x} (a fatal error: see its `mojito: FATAL` line)",
            code >> 1
        ),
        Some(code) => format!("QEMU exited with status {code} (QEMU's own error; see above)"),
        None => format!("QEMU was killed ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_from_cpuinfo() {
        let amd = "processor\t: 0\nflags\t\t: fpu vme svm npt\n";
        assert_eq!(cpu_extension(amd), Some("SVM"));
        assert_eq!(cpu_extension("flags\t: fpu vmx ept\n"), Some("VMX"));
        assert_eq!(cpu_extension("flags\t: fpu sse2 hypervisor\n"), None);
        assert_eq!(cpu_extension("vmx flags\t: ept\n"), None);
    }

    #[test]
    fn uefi_usb_command_line() {
        let q = Qemu {
            boot: Boot::UefiUsb {
                image: "/i.img".into(),
                vars: "/v.fd".into(),
            },
            accel: Accel::Tcg("EPYC".into()),
            mem_mib: 2048,
            smp: 2,
            serial: Serial::File("/s.txt".into()),
            extra: vec![],
        };
        let line = q.args().join(" ");
        for part in [
            "-accel tcg -cpu EPYC -m 2048M -smp 2",
            "-device qemu-xhci,id=xhci -device usb-storage,bus=xhci.0,drive=stick",
            "file=/i.img",
            "-device isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-serial file:/s.txt -monitor none",
        ] {
            assert!(line.contains(part), "{part:?} missing from {line}");
        }
    }
}
