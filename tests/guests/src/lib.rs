//! Mojito's own test guests: small kernels that the hypervisor loads from
//! ELF files, starting in real mode, and that report over port I/O (the
//! ports are in `abi::guest`).
//!
//! The library holds what every guest shares: the boot path from real mode
//! to long mode (`boot`), the console and exit ports (`console`, `port`),
//! CPU register access (`cpu`, `simd`), and an IDT that turns an expected
//! fault into an `Err` (`fault`). Each guest is one binary in `src/bin/`.
//!
//! Section numbers of the Intel SDM follow its 2024 editions (which added
//! Vol. 3A chapter 4, "Linear-Address Pre-Processing", and so moved later
//! chapters up by one); titles are given so older editions can be searched.
//!
//! On the host (`cargo build --workspace`) only the pure pieces compile, so
//! that `cargo test` can check them; the binaries are empty stubs there.
//!
//! # Vector registers
//!
//! The bare target is soft-float: the compiler never allocates an XMM or
//! YMM register. The guests use that: `simd` sets vector registers in one
//! `asm!` block and reads them in a later one, because their survival across
//! VM exits is exactly what the guests test. Rust code between the two never
//! touches them.

#![cfg_attr(target_os = "none", no_std)]

pub mod pattern;

#[cfg(target_os = "none")]
pub mod apic;

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod fault;
pub mod idt;
#[cfg(target_os = "none")]
pub mod port;
#[cfg(target_os = "none")]
pub mod simd;

/// Where `link.ld` places the image, `_start` (the entry point) first.
pub const IMAGE_BASE: u64 = 0x8000;

// The vCPU starts in real mode with CS = 0, so the entry must lie in the
// first 64 KiB of guest RAM.
const _: () = assert!(abi::guest::GUEST_RAM_BASE + IMAGE_BASE < abi::guest::ENTRY_MAX);

/// What the hypervisor told the guest at entry (see `abi::guest::ENTRY_MAX`).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BootInfo {
    /// `EBX` at entry: the VM's id (1, 2, ...).
    pub vm_id: u64,
    /// `ECX` at entry: the size of guest RAM in bytes, from GPA 0.
    pub ram_size: u64,
}

/// Names the guest's long-mode entry point: `entry!(run)` with
/// `fn run(boot: BootInfo) -> !`. The shared boot path calls it with the
/// IDT loaded, on a 32 KiB stack, with the first GiB identity-mapped.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn mojito_guest_main(boot: $crate::BootInfo) -> ! {
            $main(boot)
        }
    };
}

/// Prints `FAIL: <message>` and ends the VM with status 1.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {{
        $crate::println!("FAIL: {}", format_args!($($arg)*));
        $crate::port::exit(1)
    }};
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fail!("panic: {info}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn linker_script_agrees_on_the_image_base() {
        let script = include_str!("../link.ld");
        let base = format!(". = {:#x};", super::IMAGE_BASE);
        assert!(script.contains(&base), "link.ld must contain `{base}`");
    }
}
