//! Packing the boot bundle and writing the UEFI and BIOS disk images.
//!
//! The images come from the `loader` binary (see `loader/src/main.rs`):
//! xtask does not link the `bootloader` builder, whose first build takes
//! minutes, so that xtask itself compiles in seconds.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::artifacts::{self, Artifacts};
use crate::workspace::{Workspace, run_checked};

/// Bochs wants whole cylinders: 16 heads × 63 sectors × 512 bytes.
pub const BOCHS_DISK_MULTIPLE: u64 = 516_096;

/// The UEFI image's file name in `target/mojito`.
pub const UEFI_IMAGE: &str = "mojito-uefi.img";
/// The BIOS image's file name in `target/mojito`.
pub const BIOS_IMAGE: &str = "mojito-bios.img";
/// A BIOS image without the control domain: the hypervisor runs the test
/// guests itself, with its built-in ports (the core's own test).
pub const BUILTIN_BIOS_IMAGE: &str = "mojito-builtin-bios.img";

/// The shell test's BIOS image: the control domain and the `counter` guest,
/// no boot script (the test types every command).
pub const SHELL_BIOS_IMAGE: &str = "mojito-shell-bios.img";
/// BIOS, the slow tests' (`cargo xtask test --slow`): control domain,
/// `counter`, `soak`, `flood`, `probe` and [`slow_script`].
pub const SLOW_BIOS_IMAGE: &str = "mojito-slow-bios.img";
/// BIOS, the Linux test's: the control domain, Debian's kernel
/// (`kernels/vmlinux`), the initramfs (`kernels/initramfs.cpio`, see
/// [`crate::linux`]) and [`linux_script`].
pub const LINUX_BIOS_IMAGE: &str = "mojito-linux-bios.img";
/// The same with Debian's bzImage (`kernels/vmlinuz`, the boot protocol)
/// instead of the `vmlinux` (PVH).
pub const LINUX_BZ_BIOS_IMAGE: &str = "mojito-linux-bz-bios.img";
/// The Linux test guest's vCPUs and RAM.
pub const LINUX_VCPUS: u32 = 2;
pub const LINUX_MEM: &str = "256M";
/// Its command line: console and panic settings only (issue 7).
pub const LINUX_CMDLINE: &str = "console=ttyS0 panic=-1";
/// The Linux test's disk: a file of the image dir and of the bundle.
pub const LINUX_DISK: &str = "linux-disk.img";
/// Its size: 64 KiB.
pub const LINUX_DISK_SIZE: usize = 64 << 10;
/// What sector 0 of the disk begins with (then a per-build nonce and a
/// line end); the guest writes [`LINUX_DISK_OUT`] and the same nonce to
/// sector 1 (`crate::linux::INIT`).
pub const LINUX_DISK_IN: &str = "MOJITO-DISK-IN";
pub const LINUX_DISK_OUT: &str = "MOJITO-DISK-OUT";

/// The Linux test's disk image: sector 0 holds [`LINUX_DISK_IN`] and
/// `nonce`, the rest zeros.
pub fn linux_disk(nonce: u64) -> Vec<u8> {
    let mut disk = vec![0u8; LINUX_DISK_SIZE];
    let line = format!("{LINUX_DISK_IN} {nonce:016x}\n");
    disk[..line.len()].copy_from_slice(line.as_bytes());
    disk
}

/// The control domain's name in the boot bundle.
pub const CONTROL_ELF: &str = "control.elf";

/// The control domain's boot script in the bundle: shell commands, one a
/// line (DESIGN.md §3; control/src/shell).
pub const BOOT_SCRIPT: &str = "boot.mojito";

/// What the built-in image leaves out: the control domain and its boot
/// script, the guest that never exits, `counter` (it polls a UART, which
/// the built-in devices lack, and never ends), and the guests whose
/// INS/OUTS, MMIO, memory slots, interrupts, debugging, MSRs or forwarded
/// exits need a VMM (`lapic`: the VMM's split irqchip, PIT and MSI port;
/// `smp`: a second vCPU, started through the split irqchip).
pub const CONTROL_ONLY: [&str; 18] = [
    CONTROL_ELF,
    BOOT_SCRIPT,
    "guests/counter.elf",
    "guests/spin.elf",
    "guests/portio.elf",
    "guests/mmio.elf",
    "guests/mmiofail.elf",
    "guests/memslots.elf",
    "guests/irq.elf",
    "guests/debug.elf",
    "guests/usermsr.elf",
    "guests/xenner.elf",
    "guests/pvclock.elf",
    "guests/bench.elf",
    "guests/hostio.elf",
    "guests/inshole.elf",
    "guests/lapic.elf",
    "guests/smp.elf",
];

/// One file of the boot bundle: its name in the bundle and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEntry {
    pub name: String,
    pub path: PathBuf,
}

/// The images `make_images` writes.
#[derive(Clone, Debug)]
pub struct Images {
    pub uefi: PathBuf,
    pub bios: PathBuf,
    /// BIOS, no control domain.
    pub builtin_bios: PathBuf,
    /// BIOS, the shell test's (written for the tests only).
    pub shell_bios: PathBuf,
    /// BIOS, the slow tests' (written for the tests only).
    pub slow_bios: PathBuf,
    /// BIOS, the Linux test's (written for the tests only).
    pub linux_bios: PathBuf,
    /// BIOS, the same with the bzImage (written for the tests only).
    pub linux_bz_bios: PathBuf,
    /// The Linux test's virtio disk as written into that image
    /// ([`linux_disk`]).
    pub linux_disk: PathBuf,
}

impl Images {
    /// The images as they are named in `dir` (e.g. `MOJITO_IMAGE_DIR`).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            uefi: dir.join(UEFI_IMAGE),
            bios: dir.join(BIOS_IMAGE),
            builtin_bios: dir.join(BUILTIN_BIOS_IMAGE),
            shell_bios: dir.join(SHELL_BIOS_IMAGE),
            slow_bios: dir.join(SLOW_BIOS_IMAGE),
            linux_bios: dir.join(LINUX_BIOS_IMAGE),
            linux_bz_bios: dir.join(LINUX_BZ_BIOS_IMAGE),
            linux_disk: dir.join(LINUX_DISK),
        }
    }
}

/// The default bundle: the control domain, and the test guests it starts
/// at boot, in this order (the order gives the VM ids). Without
/// `control.elf` the hypervisor runs the guests itself.
pub fn default_bundle(a: &Artifacts) -> Result<Vec<BundleEntry>> {
    let elf = |bundle_name: &str, guest: &str| -> Result<BundleEntry> {
        let path = a
            .guest(guest)
            .with_context(|| format!("no guest binary named {guest}"))?;
        Ok(BundleEntry {
            name: format!("guests/{bundle_name}.elf"),
            path: path.to_path_buf(),
        })
    };
    Ok(vec![
        BundleEntry {
            name: CONTROL_ELF.into(),
            path: a.control.clone(),
        },
        elf("demo", "demo")?,
        elf("isolate1", "isolate")?,
        elf("isolate2", "isolate")?,
        elf("halt", "halt")?,
        elf("triple", "triple")?,
        elf("spin", "spin")?,
        elf("fpustate", "fpustate")?,
        elf("portio", "portio")?,
        elf("mmio", "mmio")?,
        elf("mmiofail", "mmiofail")?,
        elf("memslots", "memslots")?,
        elf("irq", "irq")?,
        elf("debug", "debug")?,
        elf("usermsr", "usermsr")?,
        elf("xenner", "xenner")?,
        elf("pvclock", "pvclock")?,
        elf("bench", "bench")?,
        elf("hostile", "hostile")?,
        elf("hostio", "hostio")?,
        elf("inshole", "inshole")?,
        elf("lapic", "lapic")?,
        elf("smp", "smp")?,
    ])
}

/// The bundle entry for a file given to `image --add`: an ELF file
/// (`*.elf`) goes to `guests/` (the tests' boot script starts every one;
/// at the shell `create NAME kernel=guests/FILE`); anything else keeps its
/// base name at the top of the bundle (a `boot.mojito` replaces the
/// generated boot script).
pub fn extra_entry(path: &Path) -> Result<BundleEntry> {
    if !path.is_file() {
        bail!("--add {}: no such file", path.display());
    }
    let base = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("--add {}: the file name must be UTF-8", path.display()))?;
    let name = if base.ends_with(".elf") {
        format!("guests/{base}")
    } else {
        base.to_owned()
    };
    Ok(BundleEntry {
        name,
        path: path.to_path_buf(),
    })
}

/// What to tell the user before the image builder's first build.
pub const FIRST_BUILD_NOTE: &str =
    "its first build takes 2-5 minutes (the bootloader crate compiles its own stages)";

/// Where `cargo build -p loader` puts the `loader` binary.
pub fn loader_path(ws: &Workspace) -> PathBuf {
    ws.target.join("debug").join("loader")
}

/// Builds the `loader` binary (dev profile, the only profile its
/// `bootloader` builder is ever built in) and returns its path.
pub fn build_loader(ws: &Workspace) -> Result<PathBuf> {
    let loader = loader_path(ws);
    if !loader.is_file() {
        eprintln!("xtask: building the image builder (loader); {FIRST_BUILD_NOTE}");
    }
    let mut cmd = ws.cargo();
    cmd.args(["build", "-p", "loader"]);
    run_checked(&mut cmd, "cargo build -p loader")?;
    Ok(loader)
}

/// Writes `DIR/mojito-{uefi,bios}.img` holding `kernel` and
/// `bundle` (the BIOS image padded for Bochs), and
/// `mojito-builtin-bios.img` with the same bundle less the control domain.
pub fn make_images(
    ws: &Workspace,
    dir: &Path,
    kernel: &Path,
    bundle: &[BundleEntry],
) -> Result<Images> {
    let loader = build_loader(ws)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let images = Images::in_dir(dir);
    let run =
        |uefi: Option<&Path>, bios: &Path, entries: &mut dyn Iterator<Item = &BundleEntry>| {
            write_images(&loader, kernel, uefi, bios, entries)
        };
    run(Some(&images.uefi), &images.bios, &mut bundle.iter())?;
    // The hypervisor's own round robin does not preempt: `spin` is only for
    // the control domain, which gets its CPU back on the timer; `portio`'s
    // INS/OUTS and `mmio`'s device accesses need a VMM.
    let builtin = |e: &&BundleEntry| !CONTROL_ONLY.contains(&e.name.as_str());
    run(
        None,
        &images.builtin_bios,
        &mut bundle.iter().filter(builtin),
    )?;
    Ok(images)
}

/// Runs the image builder `loader`: a BIOS image (padded for Bochs) and,
/// if asked, a UEFI image, holding `kernel` and a bundle of `entries`.
pub fn write_images(
    loader: &Path,
    kernel: &Path,
    uefi: Option<&Path>,
    bios: &Path,
    entries: &mut dyn Iterator<Item = &BundleEntry>,
) -> Result<()> {
    let mut cmd = std::process::Command::new(loader);
    cmd.arg("--kernel").arg(kernel);
    if let Some(uefi) = uefi {
        cmd.arg("--uefi").arg(uefi);
    }
    cmd.arg("--bios").arg(bios);
    cmd.arg("--bios-pad").arg(BOCHS_DISK_MULTIPLE.to_string());
    for entry in entries {
        let mut arg = std::ffi::OsString::from(format!("{}=", entry.name));
        arg.push(&entry.path);
        cmd.arg("--file").arg(arg);
    }
    run_checked(&mut cmd, "loader (writing the disk images)")
}

/// A kernel for `run --kernel`: the files go into the bundle under
/// `kernels/`, and the boot script creates and starts VM `guest` from them.
#[derive(Clone, Debug, Default)]
pub struct GuestKernel {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    pub cpus: Option<u32>,
    pub mem: Option<String>,
}

/// What the images are for; their boot scripts differ.
#[derive(Clone, Copy, Debug)]
pub enum Purpose<'a> {
    /// The boot tests: every guest of the bundle is created and started,
    /// the script waits for all to stop and powers the machine off.
    Tests,
    /// `run` and `image`: the demo guest (and `run --kernel`'s), then the
    /// prompt.
    Interactive(Option<&'a GuestKernel>),
}

/// The tests' boot script: print exit streams (the differential test reads
/// them), create every `guests/NAME.elf`, start them all, wait, power off.
pub fn test_script(bundle: &[BundleEntry]) -> String {
    let names: Vec<&str> = bundle
        .iter()
        .filter_map(|e| e.name.strip_prefix("guests/")?.strip_suffix(".elf"))
        .collect();
    let mut s = String::from("# The boot tests' script (written by xtask).\nstreams on\n");
    for n in &names {
        s.push_str(&format!("create {n} kernel=guests/{n}.elf\n"));
    }
    for n in &names {
        s.push_str(&format!("start {n}\n"));
    }
    s.push_str("wait\npoweroff\n");
    s
}

/// The Linux test's boot script: Debian's kernel (`kernels/KERNEL`) as
/// VM `linux` with [`LINUX_VCPUS`] vCPUs, then power off when it has
/// stopped.
pub fn linux_script(kernel: &str) -> String {
    format!(
        "# The Linux test's script (written by xtask).\n\
         create linux kernel=kernels/{kernel} initrd=kernels/initramfs.cpio \
         cmdline=\"{LINUX_CMDLINE}\" mem={LINUX_MEM} cpus={LINUX_VCPUS} disk=disks/linux.img\n\
         start linux\nwait\npoweroff\n"
    )
}

/// VMs the slow tests' script tries to make, and the RAM each asks for:
/// more than the control domain of the slow tests' 512 MiB machine holds,
/// so that memory runs out part way (and fewer than the shell's 32).
pub const EXHAUST_VMS: u32 = 24;
pub const EXHAUST_ROUNDS: u32 = 3;
pub const EXHAUST_MEM: &str = "32M";

/// The slow tests' boot script (`cargo xtask test --slow`,
/// `tests/src/slow.rs` reads what it prints): memory exhaustion, three times —
/// `info`, VMs created until memory runs out, `list`, `info`, all
/// destroyed — and `info` again, then
/// the `soak` guest's ten million exits with its `stats`, then the
/// `flood` guest's output flood and its console ring, then the `probe`
/// guest's reads sampling the guest-physical space, and `info` last.
pub fn slow_script() -> String {
    let mut s = String::from("# The slow tests' script (written by xtask).\n");
    // Three times: a leak shows as a difference between the ends of the
    // second and the third (the first may grow the shell's own tables).
    for _ in 0..EXHAUST_ROUNDS {
        s.push_str("info\n");
        for i in 1..=EXHAUST_VMS {
            s.push_str(&format!(
                "create v{i:02} kernel=guests/counter.elf mem={EXHAUST_MEM}\n"
            ));
        }
        s.push_str("list\ninfo\n");
        for i in 1..=EXHAUST_VMS {
            s.push_str(&format!("destroy v{i:02}\n"));
        }
    }
    s.push_str(
        "info\n\
         create soak kernel=guests/soak.elf\n\
         start soak\n\
         wait soak\n\
         stats soak\n\
         destroy soak\n\
         create flood kernel=guests/flood.elf\n\
         start flood\n\
         wait flood\n\
         console flood\n\
         destroy flood\n\
         create probe kernel=guests/probe.elf\n\
         start probe\n\
         wait probe\n\
         destroy probe\n\
         info\n\
         poweroff\n",
    );
    s
}

/// `"…"` for the shell, with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The bundle name of a `run --kernel` file.
fn kernel_entry(path: &Path) -> Result<BundleEntry> {
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    let base = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: the file name must be UTF-8", path.display()))?;
    if base.contains(|c: char| c.is_whitespace() || c == '"') {
        bail!(
            "{}: the file name must not hold spaces or quotes",
            path.display()
        );
    }
    Ok(BundleEntry {
        name: format!("kernels/{base}"),
        path: path.to_path_buf(),
    })
}

/// Refuses what the boot script could not carry: a command line with a
/// line break, a memory size that is not digits and a K/M/G unit.
fn check_guest_kernel(k: &GuestKernel) -> Result<()> {
    if k.append
        .as_deref()
        .is_some_and(|a| a.contains(['\n', '\r']))
    {
        bail!("--append must be one line");
    }
    if let Some(m) = &k.mem {
        let digits = m.len() - m.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let unit = &m[digits..];
        let unit_ok = ["", "K", "M", "G", "k", "m", "g"].contains(&unit);
        if digits == 0 || !unit_ok {
            bail!("--guest-mem {m}: give a size like 64M (K, M or G; no unit is MiB)");
        }
    }
    Ok(())
}

/// `run` and `image`'s boot script: the demo guest, the `counter` guest
/// (which keeps running: `console counter` echoes what is typed), and
/// `kernel`'s VM.
pub fn interactive_script(kernel: Option<(&GuestKernel, &str, Option<&str>)>) -> String {
    let mut s = String::from(
        "# Console commands run at start-up, echoed as if typed (help lists them).\n\
         create demo kernel=guests/demo.elf\n\
         start demo\n\
         create counter kernel=guests/counter.elf\n\
         start counter\n",
    );
    if let Some((k, kernel, initrd)) = kernel {
        let mut line = format!("create guest kernel={kernel}");
        if let Some(i) = initrd {
            line.push_str(&format!(" initrd={i}"));
        }
        if let Some(a) = &k.append {
            line.push_str(&format!(" cmdline={}", quote(a)));
        }
        if let Some(m) = &k.mem {
            line.push_str(&format!(" mem={m}"));
        }
        if let Some(c) = k.cpus {
            line.push_str(&format!(" cpus={c}"));
        }
        s.push_str(&line);
        s.push_str("\nstart guest\n");
    }
    s
}

/// Builds everything and writes the images with the default bundle plus
/// `extra` files (`image --add`) and the boot script `purpose` asks for.
/// What `image`, `run` and the tests use; the tests' images go to
/// `target/mojito/test`, the others to `target/mojito`.
pub fn build_images(ws: &Workspace, extra: &[PathBuf], purpose: Purpose<'_>) -> Result<Images> {
    if let Purpose::Interactive(Some(k)) = purpose {
        check_guest_kernel(k)?;
    }
    let mut extra = extra
        .iter()
        .map(|p| extra_entry(p))
        .collect::<Result<Vec<_>>>()?;
    let dir = match purpose {
        Purpose::Tests => ws.image_dir().join("test"),
        Purpose::Interactive(_) => ws.image_dir(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut kernel_names = None;
    if let Purpose::Interactive(Some(k)) = purpose {
        let kernel = kernel_entry(&k.kernel)?;
        let initrd = k.initrd.as_deref().map(kernel_entry).transpose()?;
        if initrd.as_ref().is_some_and(|i| i.name == kernel.name) {
            bail!("--kernel and --initrd must have different file names");
        }
        kernel_names = Some((kernel.name.clone(), initrd.as_ref().map(|i| i.name.clone())));
        extra.push(kernel);
        extra.extend(initrd);
    }
    let built = artifacts::build(ws)?;
    let mut bundle = default_bundle(&built)?;
    // The interactive images also hold the `counter` guest, which runs
    // until it is stopped and answers its console (the tests' default
    // bundle has the most guests the shell holds, and counter never ends).
    if let Purpose::Interactive(_) = purpose {
        let counter = built
            .guest("counter")
            .context("the guests crate has no `counter` binary")?;
        bundle.push(BundleEntry {
            name: "guests/counter.elf".into(),
            path: counter.to_path_buf(),
        });
    }
    for entry in extra {
        if bundle.iter().any(|e| e.name == entry.name) {
            bail!(
                "--add {}: the bundle already holds {}",
                entry.path.display(),
                entry.name
            );
        }
        bundle.push(entry);
    }
    if !bundle.iter().any(|e| e.name == BOOT_SCRIPT) {
        let script = match purpose {
            Purpose::Tests => test_script(&bundle),
            Purpose::Interactive(k) => interactive_script(
                k.zip(kernel_names.as_ref())
                    .map(|(k, (kernel, initrd))| (k, kernel.as_str(), initrd.as_deref())),
            ),
        };
        let path = dir.join(BOOT_SCRIPT);
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write {}", path.display()))?;
        bundle.push(BundleEntry {
            name: BOOT_SCRIPT.into(),
            path,
        });
    }
    let images = make_images(ws, &dir, &built.hypervisor, &bundle)?;
    if let Purpose::Tests = purpose {
        let counter = built
            .guest("counter")
            .context("the guests crate has no `counter` binary")?;
        let shell = [
            BundleEntry {
                name: CONTROL_ELF.into(),
                path: built.control.clone(),
            },
            BundleEntry {
                name: "guests/counter.elf".into(),
                path: counter.to_path_buf(),
            },
        ];
        write_images(
            &build_loader(ws)?,
            &built.hypervisor,
            None,
            &images.shell_bios,
            &mut shell.iter(),
        )?;
        let script = dir.join("slow.mojito");
        std::fs::write(&script, slow_script())
            .with_context(|| format!("cannot write {}", script.display()))?;
        let mut slow = shell.to_vec();
        for g in ["soak", "flood", "probe"] {
            let path = built
                .guest(g)
                .with_context(|| format!("the guests crate has no `{g}` binary"))?;
            slow.push(BundleEntry {
                name: format!("guests/{g}.elf"),
                path: path.to_path_buf(),
            });
        }
        slow.push(BundleEntry {
            name: BOOT_SCRIPT.into(),
            path: script,
        });
        write_images(
            &build_loader(ws)?,
            &built.hypervisor,
            None,
            &images.slow_bios,
            &mut slow.iter(),
        )?;
        let linux = crate::linux::assets(ws)?;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        std::fs::write(&images.linux_disk, linux_disk(nonce))
            .with_context(|| format!("cannot write {}", images.linux_disk.display()))?;
        for (kernel, path, image) in [
            ("vmlinux", &linux.vmlinux, &images.linux_bios),
            ("vmlinuz", &linux.bzimage, &images.linux_bz_bios),
        ] {
            let script = dir.join(format!("linux-{kernel}.mojito"));
            std::fs::write(&script, linux_script(kernel))
                .with_context(|| format!("cannot write {}", script.display()))?;
            let bundle = [
                shell[0].clone(),
                BundleEntry {
                    name: "disks/linux.img".into(),
                    path: images.linux_disk.clone(),
                },
                BundleEntry {
                    name: format!("kernels/{kernel}"),
                    path: path.clone(),
                },
                BundleEntry {
                    name: "kernels/initramfs.cpio".into(),
                    path: linux.initramfs.clone(),
                },
                BundleEntry {
                    name: BOOT_SCRIPT.into(),
                    path: script,
                },
            ];
            write_images(
                &build_loader(ws)?,
                &built.hypervisor,
                None,
                image,
                &mut bundle.iter(),
            )?;
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_files_are_named_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("extra.elf");
        let txt = dir.path().join("boot.mojito");
        std::fs::write(&elf, b"\x7fELF").unwrap();
        std::fs::write(&txt, b"list\n").unwrap();
        assert_eq!(extra_entry(&elf).unwrap().name, "guests/extra.elf");
        assert_eq!(extra_entry(&txt).unwrap().name, "boot.mojito");
        assert!(extra_entry(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn boot_scripts() {
        let entries = |names: &[&str]| -> Vec<BundleEntry> {
            names
                .iter()
                .map(|n| BundleEntry {
                    name: (*n).into(),
                    path: PathBuf::from(n),
                })
                .collect()
        };
        assert_eq!(
            test_script(&entries(&[
                "control.elf",
                "guests/a.elf",
                "x.txt",
                "guests/b.elf"
            ])),
            "# The boot tests' script (written by xtask).\nstreams on\n\
             create a kernel=guests/a.elf\ncreate b kernel=guests/b.elf\n\
             start a\nstart b\nwait\npoweroff\n"
        );
        let plain = interactive_script(None);
        assert!(plain.ends_with(
            "create demo kernel=guests/demo.elf\nstart demo\n\
             create counter kernel=guests/counter.elf\nstart counter\n"
        ));
        let k = GuestKernel {
            kernel: "bzImage".into(),
            initrd: Some("initrd.img".into()),
            append: Some(r#"console=ttyS0 x="a\b""#.into()),
            cpus: Some(2),
            mem: Some("256M".into()),
        };
        let with = interactive_script(Some((&k, "kernels/bzImage", Some("kernels/initrd.img"))));
        assert!(
            with.ends_with(
                "create guest kernel=kernels/bzImage initrd=kernels/initrd.img \
                 cmdline=\"console=ttyS0 x=\\\"a\\\\b\\\"\" mem=256M cpus=2\nstart guest\n"
            ),
            "{with}"
        );
        let bad = |f: &dyn Fn(&mut GuestKernel)| {
            let mut k = GuestKernel::default();
            f(&mut k);
            check_guest_kernel(&k).is_err()
        };
        assert!(bad(&|k| k.append = Some("a\nb".into())));
        assert!(bad(&|k| k.mem = Some("64 M".into())));
        assert!(bad(&|k| k.mem = Some("lots".into())));
        assert!(!bad(&|k| k.mem = Some("64M".into())));
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("my kernel");
        std::fs::write(&spaced, b"x").unwrap();
        assert!(kernel_entry(&spaced).is_err());
        assert!(kernel_entry(&dir.path().join("none")).is_err());
    }

    #[test]
    fn the_control_domain_runs_every_guest() {
        // The shell holds at most MAX_VMS (32) VMs (control/src/shell/
        // vms.rs): the tests' script creates every guest of the default
        // bundle, so it must fit.
        let a = Artifacts {
            hypervisor: "hv".into(),
            control: "control".into(),
            guests: artifacts::GUESTS
                .iter()
                .map(|g| (*g, PathBuf::from(g)))
                .collect(),
        };
        let guests = default_bundle(&a)
            .unwrap()
            .iter()
            .filter(|e| e.name.starts_with("guests/"))
            .count();
        assert!(guests <= 32, "{guests} guests");
    }

    #[test]
    fn default_bundle_order() {
        let a = Artifacts {
            hypervisor: "hv".into(),
            control: "control".into(),
            guests: artifacts::GUESTS
                .iter()
                .map(|g| (*g, PathBuf::from(g)))
                .collect(),
        };
        let names: Vec<_> = default_bundle(&a)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            names,
            [
                "control.elf",
                "guests/demo.elf",
                "guests/isolate1.elf",
                "guests/isolate2.elf",
                "guests/halt.elf",
                "guests/triple.elf",
                "guests/spin.elf",
                "guests/fpustate.elf",
                "guests/portio.elf",
                "guests/mmio.elf",
                "guests/mmiofail.elf",
                "guests/memslots.elf",
                "guests/irq.elf",
                "guests/debug.elf",
                "guests/usermsr.elf",
                "guests/xenner.elf",
                "guests/pvclock.elf",
                "guests/bench.elf",
                "guests/hostile.elf",
                "guests/hostio.elf",
                "guests/inshole.elf",
                "guests/lapic.elf",
                "guests/smp.elf"
            ]
        );
    }
}
