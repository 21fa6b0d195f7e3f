//! The system packages the emulators come from: checked before a run, and
//! installed with `apt-get` where xtask may (as root on Debian/Ubuntu).

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::workspace::{command_line, find_program, run_checked};

/// Something the host must have, and the Debian package that provides it.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    /// A program looked up in `PATH`, or an absolute file path.
    pub what: &'static str,
    pub package: &'static str,
}

impl Need {
    fn present(&self) -> bool {
        if self.what.starts_with('/') {
            Path::new(self.what).is_file()
        } else {
            find_program(self.what).is_some()
        }
    }
}

/// QEMU with OVMF (`cargo xtask run`, the SVM tests).
pub const QEMU: &[Need] = &[
    Need {
        what: "qemu-system-x86_64",
        package: "qemu-system-x86",
    },
    Need {
        what: crate::qemu::OVMF_CODE,
        package: "ovmf",
    },
    Need {
        what: crate::qemu::OVMF_VARS,
        package: "ovmf",
    },
];

/// Bochs with its SDL2 display, BIOS and VGA BIOS (`run --bochs`, the VMX
/// tests).
pub const BOCHS: &[Need] = &[
    Need {
        what: "bochs",
        package: "bochs",
    },
    Need {
        what: crate::bochs::SDL2_PLUGIN,
        package: "bochs-sdl",
    },
    Need {
        what: crate::bochs::BIOS_ROM,
        package: "bochsbios",
    },
    Need {
        what: crate::bochs::VGA_ROM,
        package: "vgabios",
    },
];

/// The packages that provide what is missing of `needs`, each once.
pub fn missing_packages(needs: &[Need]) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for need in needs.iter().filter(|n| !n.present()) {
        if !packages.contains(&need.package) {
            packages.push(need.package);
        }
    }
    packages
}

/// Fails, with the command that fixes it, unless everything in `needs` is
/// there. For the tests, which never install anything themselves.
pub fn check(needs: &[Need]) -> Result<()> {
    let packages = missing_packages(needs);
    if !packages.is_empty() {
        bail!("{}", missing_message(needs, &packages));
    }
    Ok(())
}

/// Makes sure everything in `needs` is there: installs the missing packages
/// when running as root where `apt-get` exists, and otherwise fails with
/// the exact command to run.
pub fn ensure(needs: &[Need]) -> Result<()> {
    let packages = missing_packages(needs);
    if packages.is_empty() {
        return Ok(());
    }
    if !(is_root() && find_program("apt-get").is_some()) {
        bail!("{}", missing_message(needs, &packages));
    }
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(&packages);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    eprintln!(
        "xtask: {}; running: {}",
        missing_list(needs),
        command_line(&install)
    );
    if run_checked(&mut install, "apt-get install").is_err() {
        eprintln!("xtask: the install failed; running `apt-get update` and trying again");
        run_checked(Command::new("apt-get").arg("update"), "apt-get update")?;
        run_checked(&mut install, "apt-get install")?;
    }
    check(needs)
}

fn missing_list(needs: &[Need]) -> String {
    let missing: Vec<_> = needs
        .iter()
        .filter(|n| !n.present())
        .map(|n| n.what)
        .collect();
    format!("missing {}", missing.join(", "))
}

fn missing_message(needs: &[Need], packages: &[&str]) -> String {
    let sudo = if is_root() { "" } else { "sudo " };
    let command = format!("{sudo}apt-get install -y {}", packages.join(" "));
    if find_program("apt-get").is_some() {
        format!("{}; install them with: {command}", missing_list(needs))
    } else {
        format!(
            "{}; install them with your package manager (on Debian/Ubuntu: {command})",
            missing_list(needs)
        )
    }
}

/// Whether this process runs as root (the effective uid in
/// `/proc/self/status` is 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uids = s.lines().find_map(|l| l.strip_prefix("Uid:"))?.to_owned();
            uids.split_whitespace().nth(1).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_its_package_and_the_command() {
        let needs = [
            Need {
                what: "/nonexistent/mojito/a",
                package: "pkg-a",
            },
            Need {
                what: "/nonexistent/mojito/b",
                package: "pkg-a",
            },
            Need {
                what: "sh",
                package: "dash",
            },
        ];
        assert_eq!(missing_packages(&needs), ["pkg-a"]);
        let e = check(&needs).unwrap_err().to_string();
        assert!(
            e.starts_with("missing /nonexistent/mojito/a, /nonexistent/mojito/b;"),
            "{e}"
        );
        assert!(e.contains("apt-get install -y pkg-a"), "{e}");
    }
}
