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
        Ok(Self {
            name: name.into(),
            data,
        })
    }
}

/// Serializes `files` into a boot bundle: a cpio newc archive of regular
/// files (mode 0644, one link, mtime 0, inode numbers from 1), in order, then
/// the trailer. Each file's data starts at a multiple of
/// `abi::bundle::DATA_ALIGN` from the start of the bundle: the name field is
/// padded with extra NULs to get there (cpio and Linux read such names
/// unchanged), as ELF readers want aligned images.
pub fn pack_bundle(files: &[BundleFile]) -> Result<Vec<u8>, String> {
    use abi::bundle::{DATA_ALIGN, HEADER_LEN, Header, MODE_REGULAR, TRAILER};
    for (i, f) in files.iter().enumerate() {
        if files[..i].iter().any(|g| g.name == f.name) {
            return Err(format!("two files named {:?} in the boot bundle", f.name));
        }
        // Names must read back unchanged: the parser drops a leading "./"
        // and stops at the trailer.
        if f.name.is_empty()
            || f.name.contains('\0')
            || f.name.starts_with("./")
            || f.name == TRAILER
        {
            return Err(format!(
                "boot-bundle name {:?} is empty, holds a NUL, starts with \"./\" or is {TRAILER}",
                f.name
            ));
        }
    }
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let at = out.len();
        let data_at = (at + HEADER_LEN + f.name.len() + 1).next_multiple_of(DATA_ALIGN);
        let header = Header {
            ino: u32::try_from(i + 1).map_err(|_| "too many files for a boot bundle")?,
            mode: MODE_REGULAR | 0o644,
            nlink: 1,
            filesize: u32::try_from(f.data.len())
                .map_err(|_| format!("{} is 4 GiB or more: too big for cpio newc", f.name))?,
            namesize: u32::try_from(data_at - at - HEADER_LEN)
                .map_err(|_| format!("boot-bundle name {:?} is too long", f.name))?,
            ..Header::default()
        };
        push_entry(&mut out, &header, &f.name, &f.data);
    }
    let trailer = Header {
        nlink: 1,
        namesize: TRAILER.len() as u32 + 1,
        ..Header::default()
    };
    push_entry(&mut out, &trailer, TRAILER, &[]);
    Ok(out)
}

/// Appends one newc entry: header, name padded with NULs to `namesize` and
/// then to 4 bytes, data padded to 4 bytes.
fn push_entry(out: &mut Vec<u8>, header: &abi::bundle::Header, name: &str, data: &[u8]) {
    out.extend_from_slice(&header.to_bytes());
    let name_at = out.len();
    out.extend_from_slice(name.as_bytes());
    out.resize(name_at + header.namesize as usize, 0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
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
    builder
        .set_ramdisk(ramdisk.0.clone())
        .set_boot_config(&boot_config());
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
    let file =
        fs::File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    Ok((path, file))
}

fn pad_file(path: &Path, multiple: u64) -> Result<(), String> {
    let len = fs::metadata(path).map_err(|e| e.to_string())?.len();
    let padded = len.next_multiple_of(multiple);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    f.set_len(padded)
        .map_err(|e| format!("cannot pad {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::bundle::{Bundle, DATA_ALIGN, HEADER_LEN, TRAILER};

    fn sample() -> Vec<BundleFile> {
        vec![
            BundleFile {
                name: "guests/demo.elf".into(),
                data: vec![1, 2, 3],
            },
            BundleFile {
                name: "b".into(),
                data: vec![9; 9000],
            },
            BundleFile {
                name: "empty".into(),
                data: vec![],
            },
            BundleFile {
                name: "guests/longer-name.elf".into(),
                data: vec![5; 77],
            },
        ]
    }

    #[test]
    fn packed_bundle_parses() {
        let files = sample();
        let bytes = pack_bundle(&files).unwrap();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        let b = Bundle::parse(&bytes).unwrap();
        assert_eq!(b.len(), files.len());
        let names: Vec<_> = b.files().map(|f| f.name).collect();
        assert_eq!(
            names,
            ["guests/demo.elf", "b", "empty", "guests/longer-name.elf"]
        );
        assert_eq!(b.get("guests/demo.elf").unwrap().data, &[1, 2, 3]);
        assert_eq!(b.get("b").unwrap().data, &[9; 9000][..]);
        assert_eq!(b.get("empty").unwrap().data, &[] as &[u8]);
        assert_eq!(b.get("guests/longer-name.elf").unwrap().data, &[5; 77][..]);
        for f in b.files() {
            let off = f.data.as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(off % DATA_ALIGN, 0, "{}", f.name);
        }
        // First header: ino 1, mode 0100644, uid 0, gid 0, nlink 1, mtime 0,
        // filesize 3.
        let hex = std::str::from_utf8(&bytes[6..6 + 7 * 8]).unwrap();
        assert_eq!(
            hex,
            "00000001000081A4000000000000000000000001000000000000\
             0003"
        );
        // It ends with the trailer.
        assert!(bytes.ends_with(b"TRAILER!!!\0\0\0\0"));
        assert!(
            Bundle::parse(&pack_bundle(&[]).unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn rejects_duplicate_and_bad_names() {
        let f = BundleFile {
            name: "a".into(),
            data: vec![],
        };
        assert!(pack_bundle(&[f.clone(), f]).is_err());
        for name in ["", "a\0b", "./a", TRAILER] {
            let f = BundleFile {
                name: name.into(),
                data: vec![],
            };
            assert!(pack_bundle(&[f]).is_err(), "{name:?}");
        }
        // Long names are fine in newc.
        let long = BundleFile {
            name: "x".repeat(200),
            data: vec![1],
        };
        let bytes = pack_bundle(&[long]).unwrap();
        assert_eq!(
            Bundle::parse(&bytes)
                .unwrap()
                .files()
                .next()
                .unwrap()
                .name
                .len(),
            200
        );
    }

    #[test]
    fn parse_never_panics_on_mutated_packed_bundles() {
        let good = pack_bundle(&sample()).unwrap();
        for i in 0..300.min(good.len()) {
            for v in [0u8, b'0', b'7', b'F', b'z', 0xff] {
                let mut m = good.clone();
                m[i] = v;
                if let Ok(b) = Bundle::parse(&m) {
                    assert_eq!(b.files().count(), b.len());
                }
            }
        }
        assert!(good.len() > HEADER_LEN);
    }

    /// `cpio -t` lists a packed bundle and `cpio -i` extracts it unchanged.
    #[test]
    fn cpio_reads_packed_bundle() {
        use std::process::{Command, Stdio};
        let files = sample();
        let dir = std::env::temp_dir().join(format!("mojito-loader-cpio-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("out")).unwrap();
        let archive = dir.join("bundle.cpio");
        fs::write(&archive, pack_bundle(&files).unwrap()).unwrap();
        let cpio = |args: &[&str]| {
            Command::new("cpio")
                .args(args)
                .current_dir(dir.join("out"))
                .stdin(fs::File::open(&archive).unwrap())
                .stderr(Stdio::piped())
                .output()
        };
        let listed = match cpio(&["-t", "--quiet"]) {
            Ok(out) => out,
            Err(e) => {
                println!("skipped: cannot run cpio ({e}); apt-get install cpio");
                let _ = fs::remove_dir_all(&dir);
                return;
            }
        };
        assert!(
            listed.status.success(),
            "{}",
            String::from_utf8_lossy(&listed.stderr)
        );
        let listed = String::from_utf8(listed.stdout).unwrap();
        let want: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(listed.lines().collect::<Vec<_>>(), want);
        let extracted = cpio(&["-i", "-d", "--quiet"]).unwrap();
        assert!(
            extracted.status.success(),
            "{}",
            String::from_utf8_lossy(&extracted.stderr)
        );
        assert!(
            extracted.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&extracted.stderr)
        );
        for f in &files {
            assert_eq!(
                fs::read(dir.join("out").join(&f.name)).unwrap(),
                f.data,
                "{}",
                f.name
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
