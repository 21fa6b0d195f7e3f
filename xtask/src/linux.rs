//! A stock Linux guest for the tests (issue 7): Debian's `linux-image-amd64`
//! kernel and `busybox-static`, fetched with `apt-get download`, unpacked
//! with `dpkg-deb -x` and cached under `target/linux/` (keyed by the
//! package versions, so a newer kernel in the archive means a new
//! directory).
//!
//! - `vmlinux`: the uncompressed kernel with its PVH entry note, taken out
//!   of Debian's bzImage (whose payload is one XZ stream) with `xz`.
//! - `initramfs.cpio`: an uncompressed "newc" archive built here: busybox,
//!   the kernel's own virtio modules, and [`INIT`] as `/init`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::workspace::Workspace;

/// What `/init` prints once userspace runs, then the number of CPUs it
/// sees (`/proc/cpuinfo`).
pub const MARKER: &str = "MOJITO-LINUX-USERSPACE";

/// The initramfs's `/init` (busybox sh): mounts, loads the virtio modules
/// (those whose devices are absent load all the same), prints the marker
/// with the CPU count, reads the first line of the virtio disk (`/dev/vda`,
/// `crate::image::LINUX_DISK_IN` and a nonce), writes it back to sector 1
/// as `LINUX_DISK_OUT` and the nonce, writes `MOJITO-HVC0` and the nonce
/// to the virtio console (`/dev/hvc0`), and powers off (ACPI S5).
pub const INIT: &str = "#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_blk virtio_console; do
  insmod /lib/modules/$m.ko || echo \"init: insmod $m failed\"
done
echo \"MOJITO-LINUX-USERSPACE cpus=$(grep -c ^processor /proc/cpuinfo)\"
for i in 1 2 3 4 5 6 7 8 9 10; do
  [ -b /dev/vda ] && break
  sleep 1
done
if [ -b /dev/vda ]; then
  IN=$(head -c 64 /dev/vda | head -n 1)
  echo \"MOJITO-DISK-READ $IN\"
  echo \"MOJITO-DISK-OUT ${IN#MOJITO-DISK-IN }\" | dd of=/dev/vda bs=512 seek=1 conv=fsync 2>/dev/null
  sync
else
  echo \"init: no /dev/vda\"
fi
for i in 1 2 3 4 5; do
  [ -c /dev/hvc0 ] && break
  sleep 1
done
if [ -c /dev/hvc0 ]; then
  echo \"MOJITO-HVC0 ${IN#MOJITO-DISK-IN }\" > /dev/hvc0
else
  echo \"init: no /dev/hvc0\"
fi
poweroff -f
";

/// The kernel modules the initramfs carries, by path under
/// `lib/modules/VERSION/kernel/` (`INIT` loads them in dependency order).
const MODULES: [&str; 5] = [
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "drivers/block/virtio_blk.ko",
    "drivers/char/virtio_console.ko",
];

/// The files a Linux test boots.
#[derive(Clone, Debug)]
pub struct Assets {
    /// The kernel release, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub vmlinux: PathBuf,
    pub bzimage: PathBuf,
    pub initramfs: PathBuf,
}

/// The Linux assets: the kernel, busybox and the modules fetched on first
/// use; the initramfs written again every time (it is cheap, and follows
/// [`INIT`]).
pub fn assets(ws: &Workspace) -> Result<Assets> {
    let package = kernel_package()?;
    let release = package
        .strip_prefix("linux-image-")
        .unwrap_or(&package)
        .to_owned();
    let dir = ws.target.join("linux").join(&release);
    let assets = Assets {
        release: release.clone(),
        vmlinux: dir.join("vmlinux"),
        bzimage: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio"),
    };
    let busybox = dir.join("busybox");
    let modules = dir.join("modules");
    let have_modules = MODULES
        .iter()
        .all(|m| modules.join(module_name(m)).exists());
    if !(assets.vmlinux.exists() && busybox.exists() && have_modules) {
        fetch(ws, &package, &release, &dir)?;
    }
    let mut files = vec![
        Entry::dir("bin"),
        Entry::dir("dev"),
        Entry::dir("proc"),
        Entry::dir("sys"),
        Entry::dir("lib"),
        Entry::dir("lib/modules"),
        Entry::file("init", INIT.as_bytes().to_vec()),
        Entry::file("bin/busybox", std::fs::read(&busybox)?),
    ];
    for m in MODULES {
        let name = module_name(m);
        let data = std::fs::read(modules.join(&name)).with_context(|| format!("module {m}"))?;
        files.push(Entry::file(&format!("lib/modules/{name}"), data));
    }
    std::fs::write(&assets.initramfs, newc(&files))?;
    Ok(assets)
}

fn module_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Downloads and unpacks the packages into `dir`: `vmlinuz`, `vmlinux`,
/// `busybox` and `modules/`.
fn fetch(ws: &Workspace, package: &str, release: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "linux: fetching {package} and busybox-static (apt-get download) into {}",
        ws.show(dir)
    );
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    run(
        Command::new("apt-get")
            .current_dir(&debs)
            .args(["download", package, "busybox-static"]),
        "apt-get download (Debian's archive must be reachable)",
    )?;
    let unpacked = dir.join("root");
    for deb in std::fs::read_dir(&debs)? {
        let deb = deb?.path();
        run(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
            "dpkg-deb -x",
        )?;
    }
    let bz = unpacked.join("boot").join(format!("vmlinuz-{release}"));
    std::fs::copy(&bz, dir.join("vmlinuz")).with_context(|| format!("no {}", bz.display()))?;
    eprintln!("linux: extracting vmlinux from the bzImage (xz)");
    let vmlinux = extract_vmlinux(&std::fs::read(&bz)?)?;
    std::fs::copy(unpacked.join("bin/busybox"), dir.join("busybox"))?;
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules)?;
    let tree = unpacked.join("lib/modules").join(release).join("kernel");
    for m in MODULES {
        std::fs::copy(tree.join(m), modules.join(module_name(m)))
            .with_context(|| format!("module {m}"))?;
    }
    // Last: its presence says the fetch is complete.
    std::fs::write(dir.join("vmlinux"), vmlinux)?;
    let _ = std::fs::remove_dir_all(&unpacked);
    let _ = std::fs::remove_dir_all(&debs);
    Ok(())
}

/// The kernel package `linux-image-amd64` depends on
/// (`linux-image-6.1.0-NN-amd64`).
fn kernel_package() -> Result<String> {
    let ask = || -> Result<Option<String>> {
        let out = Command::new("apt-cache")
            .args(["depends", "linux-image-amd64"])
            .output()
            .context("apt-cache (a Debian system is needed for the Linux assets)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with("linux-image-"))
            .map(str::to_owned))
    };
    if let Some(p) = ask()? {
        return Ok(p);
    }
    if crate::sysdeps::is_root() {
        eprintln!("linux: no package lists; running `apt-get update`");
        run(
            Command::new("apt-get").args(["update", "-q"]),
            "apt-get update",
        )?;
        if let Some(p) = ask()? {
            return Ok(p);
        }
    }
    bail!(
        "apt-cache depends linux-image-amd64 names no kernel package; run `apt-get update` as root"
    )
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// XZ's stream magic (the XZ file format, §2.1.1.1).
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";

/// The uncompressed kernel inside a bzImage with an XZ payload (Debian's
/// configuration): the first XZ stream, decompressed by `xz`.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>> {
    let at = bzimage
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .context("no XZ stream in the bzImage (not Debian's XZ-compressed kernel?)")?;
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start xz (apt-get install xz-utils)")?;
    let mut stdin = child.stdin.take().context("xz stdin")?;
    let payload = bzimage[at..].to_vec();
    let feeder = std::thread::spawn(move || {
        // xz stops reading after the stream; the rest may not be taken.
        let _ = stdin.write_all(&payload);
    });
    let out = child.wait_with_output()?;
    let _ = feeder.join();
    if !out.status.success() || !out.stdout.starts_with(b"\x7fELF") {
        bail!(
            "xz could not decompress the bzImage's payload: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// One member of an initramfs.
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

impl Entry {
    pub fn dir(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            mode: 0o040_755,
            data: Vec::new(),
        }
    }

    pub fn file(path: &str, data: Vec<u8>) -> Self {
        Self {
            path: path.to_owned(),
            mode: 0o100_755,
            data,
        }
    }
}

/// A cpio archive in the "new ASCII" (newc) format the kernel unpacks as
/// an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst):
/// per member a 110-byte header of hex fields, the NUL-terminated name
/// padded to 4 bytes, the data padded to 4 bytes; then `TRAILER!!!`.
pub fn newc(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut member = |ino: usize, path: &str, mode: u32, data: &[u8]| {
        let nlink = if mode & 0o040_000 != 0 { 2 } else { 1 };
        let fields = [
            ino as u32,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            path.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(path.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    };
    for (i, e) in entries.iter().enumerate() {
        member(i + 1, &e.path, e.mode, &e.data);
    }
    member(0, "TRAILER!!!", 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let a = newc(&[Entry::file("init", b"hello".to_vec())]);
        assert_eq!(&a[..6], b"070701");
        // Header 110 bytes + "init\0" = 115, padded to 116; 5 data bytes
        // padded to 8; then the trailer's header and name.
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..121], b"hello");
        assert_eq!(&a[124..130], b"070701");
        assert_eq!(&a[124 + 110..124 + 121], b"TRAILER!!!\0");
        assert_eq!(a.len() % 4, 0);
        // filesize field (7th) of the first member.
        assert_eq!(&a[6 + 6 * 8..6 + 7 * 8], b"00000005");
    }

    #[test]
    fn no_xz_stream_is_an_error() {
        assert!(extract_vmlinux(b"MZ not a kernel").is_err());
    }
}
