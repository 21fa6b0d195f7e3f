//! Links the guest binaries with `link.ld` when they are built for the bare
//! target. Host builds (`cargo build --workspace`) get the ordinary host link:
//! there the binaries are empty stubs.

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    // The target links position-independent executables by default, but the
    // 16- and 32-bit boot code needs absolute addresses resolved at link
    // time (R_X86_64_16/32 relocations), and the hypervisor's loader copies
    // segments without relocating them.
    println!("cargo:rustc-link-arg-bins=--no-pie");
    // Nothing remaps the image read-only after loading: no GNU_RELRO header.
    println!("cargo:rustc-link-arg-bins=-znorelro");
}
