//! `cargo xtask build` and `cargo xtask image`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xtask::artifacts::{self, kib};
use xtask::{Workspace, image, usb};

fn size_kib(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| kib(m.len())).unwrap_or(0)
}

/// Builds the hypervisor and the guests and prints their sizes.
pub fn build(ws: &Workspace) -> Result<()> {
    let built = artifacts::build(ws)?;
    let hv = &built.hypervisor;
    println!("{}: {} KiB", ws.show(hv), size_kib(hv));
    for (_, path) in &built.guests {
        println!("{}: {} KiB", ws.show(path), size_kib(path));
    }
    match artifacts::stripped_size(ws, hv) {
        Ok(bytes) => println!("hypervisor: {} KiB (stripped)", kib(bytes)),
        Err(e) => println!("hypervisor: stripped size unknown: {e:#}"),
    }
    Ok(())
}

/// Builds, writes both images, and copies them where the user asked.
pub fn image(
    ws: &Workspace,
    usb_dest: Option<PathBuf>,
    bios_dest: Option<PathBuf>,
    add: &[PathBuf],
    yes: bool,
) -> Result<()> {
    let images = image::build_images(ws, add, image::Purpose::Interactive(None))?;
    let (uefi, bios) = (&images.uefi, &images.bios);
    println!(
        "UEFI image: {} ({} KiB): for USB sticks and OVMF",
        ws.show(uefi),
        size_kib(uefi)
    );
    println!(
        "BIOS image: {} ({} KiB): for Bochs and SeaBIOS",
        ws.show(bios),
        size_kib(bios)
    );
    if let Some(dest) = usb_dest {
        usb::write_image(uefi, &dest, yes)?;
    }
    if let Some(dest) = bios_dest {
        std::fs::copy(bios, &dest)
            .with_context(|| format!("cannot write the BIOS image to {}", dest.display()))?;
        println!("wrote {} to {}", ws.show(bios), dest.display());
    }
    Ok(())
}
