//! Building the hypervisor and the guests, and reporting their sizes.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::workspace::{Workspace, output_of, run_checked};

/// The target both the hypervisor and the guests are built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// The guest binaries of the `guests` crate.
pub const GUESTS: [&str; 25] = [
    "demo", "isolate", "halt", "triple", "spin", "fpustate", "portio", "mmio", "mmiofail",
    "memslots", "irq", "debug", "usermsr", "xenner", "pvclock", "bench", "counter", "hostile",
    "hostio", "soak", "flood", "probe", "inshole", "lapic", "smp",
];

/// What `build` produced.
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub hypervisor: PathBuf,
    /// The control domain's image (`control.elf` in the bundle).
    pub control: PathBuf,
    /// Guest binary name and its ELF file, in `GUESTS` order.
    pub guests: Vec<(&'static str, PathBuf)>,
}

impl Artifacts {
    /// The ELF file of guest binary `name`.
    pub fn guest(&self, name: &str) -> Option<&Path> {
        self.guests
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.as_path())
    }
}

/// Builds the hypervisor, the control domain and the guests (release,
/// `x86_64-unknown-none`).
pub fn build(ws: &Workspace) -> Result<Artifacts> {
    let what =
        format!("cargo build -p hypervisor -p control -p guests --release --target {TARGET}");
    let mut cmd = ws.cargo();
    cmd.args([
        "build",
        "-p",
        "hypervisor",
        "-p",
        "control",
        "-p",
        "guests",
        "--release",
        "--target",
        TARGET,
    ]);
    run_checked(&mut cmd, &what)?;
    let out = ws.target.join(TARGET).join("release");
    let artifacts = Artifacts {
        hypervisor: out.join("hypervisor"),
        control: out.join("control"),
        guests: GUESTS.iter().map(|g| (*g, out.join(g))).collect(),
    };
    let expected = [&artifacts.hypervisor, &artifacts.control]
        .into_iter()
        .chain(artifacts.guests.iter().map(|g| &g.1));
    for path in expected {
        if !path.is_file() {
            bail!(
                "`{what}` succeeded but {} is missing: the hypervisor crate must have a bin \
                 named `hypervisor` and the guests crate bins named {}",
                path.display(),
                GUESTS.join(", ")
            );
        }
    }
    Ok(artifacts)
}

/// The size in bytes of `elf` without symbols and debug information, as
/// `llvm-strip` (from the `llvm-tools` rustup component) leaves it.
pub fn stripped_size(ws: &Workspace, elf: &Path) -> Result<u64> {
    let strip = llvm_tool(ws, "llvm-strip")?;
    let dir = ws.image_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = elf.file_name().and_then(|n| n.to_str()).unwrap_or("image");
    let stripped = dir.join(format!("{name}.stripped"));
    let mut cmd = std::process::Command::new(&strip);
    cmd.arg(elf).arg("-o").arg(&stripped);
    output_of(&mut cmd, "llvm-strip")?;
    Ok(fs::metadata(&stripped)?.len())
}

/// A tool of the `llvm-tools` component of the pinned toolchain.
fn llvm_tool(ws: &Workspace, name: &str) -> Result<PathBuf> {
    let rustc = |args: &[&str]| {
        let mut cmd = std::process::Command::new("rustc");
        cmd.current_dir(&ws.root).args(args);
        output_of(&mut cmd, &format!("rustc {}", args.join(" ")))
    };
    let sysroot = rustc(&["--print", "sysroot"])?;
    let version = rustc(&["-vV"])?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("`rustc -vV` printed no host line")?;
    let tool = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin")
        .join(name);
    if !tool.is_file() {
        bail!(
            "{} is missing: install the toolchain's components with `rustup toolchain install` \
             in {} (or `rustup component add llvm-tools`)",
            tool.display(),
            ws.root.display()
        );
    }
    Ok(tool)
}

/// `n` bytes in KiB, rounded up, for messages.
pub fn kib(n: u64) -> u64 {
    n.div_ceil(1024)
}
