//! `image --usb PATH`: writes the UEFI image to a file or a whole-disk
//! block device (a USB stick), refusing devices that are in use.

use std::fs;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Copies `image` to `dest`. A block device must be a whole disk that is
/// not mounted, not swap and not held by device-mapper/RAID, and is only
/// overwritten after the user types `yes` (or with `yes` = true).
pub fn write_image(image: &Path, dest: &Path, yes: bool) -> Result<()> {
    let is_block = fs::metadata(dest).is_ok_and(|m| m.file_type().is_block_device());
    if dest.is_dir() {
        bail!(
            "--usb {}: is a directory; give a file name or a device like /dev/sdX",
            dest.display()
        );
    }
    if !is_block && dest.starts_with("/dev") {
        bail!(
            "--usb {}: no such block device; plug the stick in and find its name with `lsblk`",
            dest.display()
        );
    }
    if !is_block {
        fs::copy(image, dest)
            .with_context(|| format!("cannot write {} to {}", image.display(), dest.display()))?;
        println!("wrote {} to {}", image.display(), dest.display());
        return Ok(());
    }
    let device = fs::canonicalize(dest)?;
    let name = device
        .file_name()
        .and_then(|n| n.to_str())
        .context("odd device name")?
        .to_owned();
    let sys = PathBuf::from("/sys/class/block").join(&name);
    if sys.join("partition").exists() {
        bail!(
            "{} is a partition: give the whole disk (e.g. /dev/sdb, not /dev/sdb1); \
             the image has its own partition table",
            device.display()
        );
    }
    refuse_if_in_use(&device, &name, &sys)?;
    let size = read_sys_u64(&sys.join("size")).map(|sectors| sectors * 512);
    let image_len = fs::metadata(image)?.len();
    if size.is_some_and(|s| s < image_len) {
        bail!(
            "{} is smaller than the image ({image_len} bytes)",
            device.display()
        );
    }
    if !yes {
        confirm(&device, &sys, size)?;
    }
    let data = fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .open(&device)
        .with_context(|| {
            format!(
                "cannot open {} for writing (are you root?)",
                device.display()
            )
        })?;
    out.write_all(&data)?;
    out.sync_all()?;
    println!(
        "wrote {} ({} KiB) to {}; it can be removed now",
        image.display(),
        data.len() / 1024,
        device.display()
    );
    Ok(())
}

/// Fails when the disk or one of its partitions is mounted, used as swap,
/// or held by another block device (LVM, dm-crypt, RAID).
fn refuse_if_in_use(device: &Path, name: &str, sys: &Path) -> Result<()> {
    let mut ours = vec![device.to_path_buf()];
    for entry in fs::read_dir(sys).into_iter().flatten().flatten() {
        let part = entry.file_name().to_string_lossy().into_owned();
        if part.starts_with(name) && entry.path().join("partition").exists() {
            if fs::read_dir(entry.path().join("holders")).is_ok_and(|mut h| h.next().is_some()) {
                bail!("/dev/{part} is in use by device-mapper or RAID: release it first");
            }
            ours.push(PathBuf::from("/dev").join(part));
        }
    }
    if fs::read_dir(sys.join("holders")).is_ok_and(|mut h| h.next().is_some()) {
        bail!(
            "{} is in use by device-mapper or RAID: release it first",
            device.display()
        );
    }
    let tables = [
        ("/proc/mounts", "mounted at"),
        ("/proc/swaps", "used as swap"),
    ];
    for (table, how) in tables {
        for line in fs::read_to_string(table).unwrap_or_default().lines() {
            let mut fields = line.split_whitespace();
            let (Some(source), where_) = (fields.next(), fields.next().unwrap_or("")) else {
                continue;
            };
            let source = fs::canonicalize(source).unwrap_or_else(|_| PathBuf::from(source));
            if ours.contains(&source) {
                bail!(
                    "{} is {how} {where_}: unmount it first (`sudo umount {}`), then run this again",
                    source.display(),
                    source.display()
                );
            }
        }
    }
    Ok(())
}

fn confirm(device: &Path, sys: &Path, size: Option<u64>) -> Result<()> {
    let model = fs::read_to_string(sys.join("device/model")).unwrap_or_default();
    let size = size.map(|s| match s >> 20 {
        mib if mib < 1024 => format!("{mib} MiB"),
        mib => format!("{:.1} GiB", mib as f64 / 1024.0),
    });
    let details: Vec<String> = [Some(model.trim().to_owned()), size]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    let what = format!("{} ({})", device.display(), details.join(", "));
    if !std::io::stdin().is_terminal() {
        bail!("refusing to overwrite {what} without confirmation: add --yes");
    }
    print!("This erases everything on {what}. Type yes to go on: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("not confirmed; nothing was written");
    }
    Ok(())
}

fn read_sys_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}
