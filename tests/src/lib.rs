//! Boot tests for Mojito: each test boots a real disk image in an emulator
//! (QEMU for SVM, Bochs for VMX), waits for the machine to stop, and checks
//! the serial log against the hypervisor's contract (`expect`). Boots
//! through the control domain also compare each guest's exit stream with
//! the same guest's on the host's `/dev/kvm` (`differential`).
//!
//! The shell test (`shell`) types a whole operator's session into the
//! shell image's console.
//!
//! The images come from `MOJITO_IMAGE_DIR` (`cargo xtask test` sets it to
//! `target/mojito/test`); without it they are built here, through xtask's
//! library, so `cargo test -p mojito-tests` works on its own.

pub mod differential;
pub mod expect;
pub mod linux;
pub mod machine;
pub mod physmem;
pub mod qmp;
pub mod screen;
pub mod shell;
pub mod slow;
pub mod tables;
pub mod typist;

use std::path::PathBuf;
use std::sync::OnceLock;

use xtask::image::Images;

/// The images every test boots, found or built once per test binary.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    let found = IMAGES.get_or_init(|| match std::env::var_os("MOJITO_IMAGE_DIR") {
        Some(dir) => {
            let images = Images::in_dir(&PathBuf::from(&dir));
            for path in [
                &images.uefi,
                &images.bios,
                &images.shell_bios,
                &images.slow_bios,
                &images.linux_bios,
                &images.linux_bz_bios,
            ] {
                if !path.is_file() {
                    return Err(format!(
                        "MOJITO_IMAGE_DIR={} holds no {}: run `cargo xtask image`, or unset \
                         MOJITO_IMAGE_DIR to build the images here",
                        dir.to_string_lossy(),
                        path.display()
                    ));
                }
            }
            Ok(images)
        }
        None => {
            eprintln!("mojito-tests: MOJITO_IMAGE_DIR is not set; building the images");
            xtask::image::build_images(
                &xtask::Workspace::locate(),
                &[],
                xtask::image::Purpose::Tests,
            )
            .map_err(|e| format!("cannot build the images: {e:#}"))
        }
    });
    match found {
        Ok(images) => images,
        Err(e) => panic!("{e}"),
    }
}

/// Where the runs' own directories go: beside the images.
fn runs_dir() -> PathBuf {
    let images = images();
    images
        .uefi
        .parent()
        .map_or_else(|| PathBuf::from("."), |d| d.join("runs"))
}
