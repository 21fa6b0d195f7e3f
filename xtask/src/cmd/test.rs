//! `cargo xtask test`: host unit tests, the images, then the boot tests.

use std::time::Instant;

use anyhow::{Context, Result};
use xtask::workspace::run_checked;
use xtask::{Workspace, image, sysdeps};

pub fn test(ws: &Workspace, slow: bool) -> Result<()> {
    if slow {
        println!(
            "xtask: --slow: the normal suite, then the slow tests (memory exhaustion, a soak of \
             ten million exits, an output flood and the isolation probe, under QEMU and Bochs: about 10 minutes)"
        );
    }
    let phases = if slow { 4 } else { 3 };
    sysdeps::ensure(sysdeps::QEMU)?;
    sysdeps::ensure(sysdeps::BOCHS)?;
    let start = Instant::now();
    let mut times = Vec::new();
    let mut phase = |name: &str, step: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        println!("xtask: [{}/{phases}] {name}", times.len() + 1);
        let t = Instant::now();
        let result = step().with_context(|| format!("test step `{name}` failed"));
        times.push(format!("{name} {:.1} s", t.elapsed().as_secs_f64()));
        result
    };
    if !image::loader_path(ws).is_file() {
        println!(
            "xtask: the unit tests build the image builder (loader) too; {}",
            image::FIRST_BUILD_NOTE
        );
    }
    phase("host unit tests", &mut || {
        let what = "cargo test --workspace --exclude mojito-tests";
        run_checked(ws.cargo().args(what.split(' ').skip(1)), what)?;
        // The VMM against the host's /dev/kvm (D5): its `std` back end.
        let what = "cargo test -p vmm --features std";
        run_checked(ws.cargo().args(what.split(' ').skip(1)), what)
    })?;
    phase("images", &mut || {
        image::build_images(ws, &[], image::Purpose::Tests).map(drop)
    })?;
    phase("boot tests: QEMU (SVM) and Bochs (VMX)", &mut || {
        // --show-output: the passing tests' benchmark lines are shown too.
        let what = "cargo test -p mojito-tests -- --show-output";
        let mut cmd = ws.cargo();
        cmd.args(what.split(' ').skip(1))
            .env("MOJITO_IMAGE_DIR", ws.image_dir().join("test"));
        run_checked(&mut cmd, what)
    })?;
    if slow {
        phase("slow tests: exhaustion, soak, flood, probe", &mut || {
            let what = "cargo test -p mojito-tests --test slow -- --ignored --show-output";
            let mut cmd = ws.cargo();
            cmd.args(what.split(' ').skip(1))
                .env("MOJITO_IMAGE_DIR", ws.image_dir().join("test"));
            run_checked(&mut cmd, what)
        })?;
    }
    println!(
        "xtask: all tests passed in {:.1} s ({})",
        start.elapsed().as_secs_f64(),
        times.join(", ")
    );
    Ok(())
}
