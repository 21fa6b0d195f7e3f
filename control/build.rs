//! Links the control domain at 2 MiB with `link.ld` (bare target only; on
//! the host the binary is an empty stub).

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    // The hypervisor copies segments to their physical addresses without
    // relocating them: a position-dependent image.
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-znorelro");
}
