//! Bochs: the VMX path. Debian's build emulates VMX with EPT and
//! unrestricted guest; it has no headless display, starts in its debugger
//! and always exits with status 1, so a run is judged by its serial output.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// Bochs's instructions per emulated second (`cpu: ips=`). Its PIT and TSC
/// both follow it (the TSC ticks once per instruction), so the
/// hypervisor's calibration must find a 50 MHz TSC.
pub const IPS: u64 = 50_000_000;

pub const BIOS_ROM: &str = "/usr/share/bochs/BIOS-bochs-latest";
pub const VGA_ROM: &str = "/usr/share/vgabios/vgabios.bin";
/// The display plugin from `bochs-sdl`, used with SDL's dummy video driver.
pub const SDL2_PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_sdl2_gui.so";

/// The default CPU model: Skylake-X, VMX with EPT (A/D bits, 1G pages),
/// unrestricted guest, VPID, VMCS shadowing.
pub const DEFAULT_MODEL: &str = "corei7_skylake_x";

/// One Bochs machine, run in its own directory `dir`.
#[derive(Clone, Debug)]
pub struct Bochs {
    pub dir: PathBuf,
    /// The BIOS disk image (a multiple of 516096 bytes).
    pub image: PathBuf,
    pub cpu_model: String,
    pub cpus: u32,
    pub mem_mib: u64,
    /// COM1 as a TCP client of this port on 127.0.0.1 (a test that types
    /// into the console listens there) instead of the file `serial.txt`.
    pub com1_tcp: Option<u16>,
    /// The debugger's command script (`-rc`), when the caller drives the
    /// debugger (a FIFO it writes commands into); otherwise a script that
    /// runs the machine to its end.
    pub debugger_script: Option<PathBuf>,
}

impl Bochs {
    /// COM1's output.
    pub fn serial_path(&self) -> PathBuf {
        self.dir.join("serial.txt")
    }

    /// Bochs's own log: it names the VM-entry check that failed.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("bochs.log")
    }

    /// The configuration file's text.
    pub fn config(&self) -> String {
        let Self {
            dir: _,
            image,
            cpu_model,
            cpus,
            mem_mib,
            com1_tcp,
            debugger_script: _,
        } = self;
        let (serial, log) = (self.serial_path(), self.log_path());
        [
            format!("cpu: model={cpu_model}, count={cpus}, ips={IPS}, reset_on_triple_fault=0"),
            format!("megs: {mem_mib}"),
            format!("romimage: file={BIOS_ROM}, options=fastboot"),
            format!("vgaromimage: file={VGA_ROM}"),
            "vga: extension=vbe".into(),
            format!(
                "ata0-master: type=disk, mode=flat, path={}",
                image.display()
            ),
            "boot: disk".into(),
            // The RTC starts at the host's UTC time (the boot tests compare
            // the hypervisor's reading of it with the host's clock).
            "clock: sync=none, time0=utc".into(),
            "panic: action=fatal".into(),
            match com1_tcp {
                Some(port) => format!("com1: enabled=1, mode=socket-client, dev=127.0.0.1:{port}"),
                None => format!("com1: enabled=1, mode=file, dev={}", serial.display()),
            },
            "port_e9_hack: enabled=1".into(),
            "display_library: sdl2".into(),
            "speaker: enabled=0".into(),
            "sound: driver=dummy".into(),
            format!("log: {}", log.display()),
        ]
        .join("\n")
            + "\n"
    }

    /// Writes `bochsrc` and the debugger script into `dir` and returns the
    /// command that runs Bochs there.
    pub fn prepare(&self) -> Result<Command> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = self.dir.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        };
        let rc = write("bochsrc", &self.config())?;
        // Debian's Bochs starts in its debugger: this script lets it run
        // (unless the caller drives the debugger through its own script).
        let script = match &self.debugger_script {
            Some(path) => path.clone(),
            None => write("debugger.rc", "continue\nquit\n")?,
        };
        let mut cmd = Command::new("bochs");
        cmd.args(["-q", "-unlock", "-rc"])
            .arg(script)
            .arg("-f")
            .arg(rc);
        cmd.current_dir(&self.dir)
            .env("SDL_VIDEODRIVER", "dummy")
            .stdin(Stdio::null());
        Ok(cmd)
    }
}

/// The lines of a `bochs.log` that explain a VMX failure: VM entries and
/// exits, VMX errors, panics and errors.
pub fn interesting_log_lines(log: &str) -> Vec<&str> {
    const WORDS: [&str; 6] = ["vmfail", "vmenter", "vmexit", "vmx", "panic", "error"];
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            WORDS.iter().any(|w| l.contains(w))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_the_lines_that_work() {
        let b = Bochs {
            dir: "/run".into(),
            image: "/run/disk.img".into(),
            cpu_model: DEFAULT_MODEL.into(),
            cpus: 1,
            mem_mib: 512,
            com1_tcp: None,
            debugger_script: None,
        };
        let c = b.config();
        assert!(c.contains(
            "cpu: model=corei7_skylake_x, count=1, ips=50000000, reset_on_triple_fault=0\n"
        ));
        assert!(c.contains("ata0-master: type=disk, mode=flat, path=/run/disk.img\n"));
        assert!(c.contains("com1: enabled=1, mode=file, dev=/run/serial.txt\n"));
        assert!(c.contains("megs: 512\n"));
    }

    #[test]
    fn log_filter() {
        let log = "00i[CPU0] VMFAIL: invalid host TR\n00i[MEM0] ok\n00e[CPU0] some ERROR\n";
        assert_eq!(interesting_log_lines(log).len(), 2);
    }
}
