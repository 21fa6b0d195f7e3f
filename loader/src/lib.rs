//! Turns the hypervisor and its boot bundle into bootable disk images.
//!
//! The `bootloader` crate does the heavy lifting (a GPT disk with an EFI
//! system partition for UEFI, an MBR disk for BIOS); this crate packs the
//! boot bundle (`abi::bundle`) that travels as the bootloader's ramdisk and
//! chooses the bootloader's settings.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use bootloader::BootConfig;

/// One file to put into the boot bundle: its name inside the bundle and its
/// contents.
#[derive(Clone, Debug)]
pub struct BundleFile {
    pub name: String,
    pub data: Vec<u8>,
}

impl BundleFile {
    /// Reads `path` from disk and names it `name` in the bundle.
    pub fn from_path(name: impl Into<String>, path: &Path) -> Result<Self, String> {
        let data = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Self { name: name.into(), data })
    }
}

/// Serializes `files` into a boot bundle.
pub fn pack_bundle(files: &[BundleFile]) -> Result<Vec<u8>, String> {
    for (i, f) in files.iter().enumerate() {
        if files[..i].iter().any(|g| g.name == f.name) {
            return Err(format!("two files named {:?} in the boot bundle", f.name));
        }
    }
    let names_and_lens: Vec<(&str, u64)> =
        files.iter().map(|f| (f.name.as_str(), f.data.len() as u64)).collect();
    let (header, entries) = abi::bundle::layout(&names_and_lens).ok_or_else(|| {
        format!(
            "a boot-bundle name is empty, longer than {} bytes or holds a NUL",
            abi::bundle::NAME_MAX
        )
    })?;
    let mut out = vec![0u8; usize::try_from(header.total_len).map_err(|e| e.to_string())?];
    out[..abi::bundle::HEADER_LEN].copy_from_slice(&header.to_bytes());
    for (i, (entry, file)) in entries.zip(files).enumerate() {
        let at = abi::bundle::HEADER_LEN + i * abi::bundle::ENTRY_LEN;
        out[at..at + abi::bundle::ENTRY_LEN].copy_from_slice(&entry.to_bytes());
        let start = entry.offset as usize;
        out[start..start + file.data.len()].copy_from_slice(&file.data);
    }
    Ok(out)
}

/// The bootloader settings Mojito uses: the bootloader's own log turned down
/// to warnings so the serial line carries Mojito's lines (DESIGN.md D10).
pub fn boot_config() -> BootConfig {
    let mut config = BootConfig::default();
    config.log_level = bootloader_boot_config::LevelFilter::Warn;
    config
}

/// Which images to make.
#[derive(Clone, Debug, Default)]
pub struct ImageRequest {
    pub kernel: PathBuf,
    pub files: Vec<BundleFile>,
    /// GPT disk with an EFI system partition (boots on UEFI PCs, from USB).
    pub uefi: Option<PathBuf>,
    /// MBR disk for legacy BIOS (Bochs boots this one).
    pub bios: Option<PathBuf>,
    /// Pad the BIOS image to a multiple of this many bytes (Bochs wants
    /// whole cylinders: 516096 = 16 heads × 63 sectors × 512 bytes).
    pub bios_pad_to: Option<u64>,
}

/// Writes the images `req` asks for.
pub fn make_images(req: &ImageRequest) -> Result<(), String> {
    let bundle = pack_bundle(&req.files)?;
    let mut ramdisk = tempfile_in(req.uefi.as_ref().or(req.bios.as_ref()))?;
    ramdisk
        .1
        .write_all(&bundle)
        .map_err(|e| format!("cannot write the boot bundle: {e}"))?;
    let mut builder = bootloader::DiskImageBuilder::new(req.kernel.clone());
    builder.set_ramdisk(ramdisk.0.clone()).set_boot_config(&boot_config());
    let result = (|| {
        if let Some(uefi) = &req.uefi {
            builder
                .create_uefi_image(uefi)
                .map_err(|e| format!("cannot create the UEFI image {}: {e:#}", uefi.display()))?;
        }
        if let Some(bios) = &req.bios {
            builder
                .create_bios_image(bios)
                .map_err(|e| format!("cannot create the BIOS image {}: {e:#}", bios.display()))?;
            if let Some(pad) = req.bios_pad_to {
                pad_file(bios, pad)?;
            }
        }
        Ok(())
    })();
    let _ = fs::remove_file(&ramdisk.0);
    result
}

fn tempfile_in(next_to: Option<&PathBuf>) -> Result<(PathBuf, fs::File), String> {
    let dir = next_to
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!(".mojito-bundle-{}.bin", std::process::id()));
    let file = fs::File::create(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    Ok((path, file))
}

fn pad_file(path: &Path, multiple: u64) -> Result<(), String> {
    let len = fs::metadata(path).map_err(|e| e.to_string())?.len();
    let padded = len.next_multiple_of(multiple);
    let f = fs::OpenOptions::new().write(true).open(path).map_err(|e| e.to_string())?;
    f.set_len(padded).map_err(|e| format!("cannot pad {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_bundle_parses() {
        let files = vec![
            BundleFile { name: "guests/demo.elf".into(), data: vec![1, 2, 3] },
            BundleFile { name: "b".into(), data: vec![9; 9000] },
        ];
        let bytes = pack_bundle(&files).unwrap();
        let b = abi::bundle::Bundle::parse(&bytes).unwrap();
        assert_eq!(b.get("guests/demo.elf").unwrap().data, &[1, 2, 3]);
        assert_eq!(b.get("b").unwrap().data, &[9; 9000][..]);
    }

    #[test]
    fn rejects_duplicate_and_bad_names() {
        let f = BundleFile { name: "a".into(), data: vec![] };
        assert!(pack_bundle(&[f.clone(), f]).is_err());
        let long = BundleFile { name: "x".repeat(200), data: vec![] };
        assert!(pack_bundle(&[long]).is_err());
    }
}
