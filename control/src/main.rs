//! Mojito's control domain: the privileged guest that owns COM1 and drives
//! the hypervisor through the KVM API (DESIGN.md D1, D10).
//!
//! It starts, checks the hypercall interface and the VMM's Mojito back end,
//! echoes the hypervisor's log ring, and then runs the operator's shell on
//! COM1 (`shell`): the boot bundle's `boot.mojito` and what the operator
//! types create, run and inspect VMs with the VMM (`vmm`, on the back end in
//! `mojito.rs`) until `poweroff` or `reboot`.

#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

#[cfg(target_os = "none")]
mod backend_check;
#[cfg(target_os = "none")]
mod bare;
#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod exhaust;
#[cfg(target_os = "none")]
mod hv;
#[cfg(target_os = "none")]
mod kbd;
// Built on the host too, for its unit tests.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod keymap;
#[cfg(target_os = "none")]
mod mem;
#[cfg(target_os = "none")]
mod mojito;
#[cfg(target_os = "none")]
mod selftest;
#[cfg(target_os = "none")]
mod smp;
// Its parser, line editor and text helpers are built on the host too, for
// their unit tests.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod shell;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the control domain runs inside Mojito: boot it with `cargo xtask run`");
    std::process::exit(2);
}

/// What the control domain does once it runs.
#[cfg(target_os = "none")]
fn run(info: &abi::kvm::mojito::mojito_boot_info) -> ! {
    use abi::kvm::KVM_GET_API_VERSION;
    hv::echo_log();
    match hv::system(KVM_GET_API_VERSION, 0) {
        Ok(v) => println!("control: KVM API version {v}"),
        Err(e) => println!("control: KVM_GET_API_VERSION failed: -{e}"),
    }
    let ram: u64 = info
        .memory
        .iter()
        .take(info.nr_memory as usize)
        .filter(|r| r.type_ == abi::kvm::mojito::MOJITO_MEMORY_RAM)
        .map(|r| r.len)
        .sum();
    let s = if info.nr_vcpus == 1 { "" } else { "s" };
    println!(
        "control: {} MiB of RAM, {} vCPU{s}",
        ram >> 20,
        info.nr_vcpus
    );
    // SAFETY: the boot-info page names the bundle's place in our RAM.
    let bundle = unsafe {
        core::slice::from_raw_parts(info.bundle_gpa as *const u8, info.bundle_len as usize)
    };
    unsafe extern "C" {
        static __image_end: u8;
    }
    let free_start = core::ptr::addr_of!(__image_end) as u64;
    let mut ram = mem::Ram::new(free_start, info.bundle_gpa);
    let boot_area = info
        .memory
        .iter()
        .take(info.nr_memory as usize)
        .find(|r| r.type_ == abi::kvm::mojito::MOJITO_MEMORY_BOOT)
        .map_or(0, |r| r.base);
    let scratch = ram.alloc(2 << 20, 2 << 20);
    match scratch {
        Some(scratch) => {
            selftest::bad_requests(scratch, boot_area);
            selftest::state_requests(scratch);
        }
        None => println!("control: FAIL no RAM for the bad-request checks"),
    }
    // The rest of our free RAM is the heap: the VMM's data and guest RAM.
    match ram.rest(2 << 20).filter(|&(_, len)| len >= mem::HEAP_MIN) {
        Some((start, len)) => {
            mem::init_heap(start, len);
            println!("control: heap: {} MiB at {start:#x}", len >> 20);
        }
        None => {
            println!(
                "control: FATAL less than {} MiB of RAM left for the heap",
                mem::HEAP_MIN >> 20
            );
            hv::power_off();
            bare::halt()
        }
    }
    if let Some(scratch) = scratch {
        exhaust::run(scratch);
    }
    backend_check::run();
    bench::lifecycle();
    hv::echo_log();
    let bundle = match abi::bundle::Bundle::parse(bundle) {
        Ok(b) => {
            println!("control: boot bundle: {} files", b.len());
            b
        }
        Err(e) => {
            println!("control: boot bundle: {e}; the shell runs without it");
            abi::bundle::Bundle::empty()
        }
    };
    smp::start(info.nr_vcpus);
    shell::run(bundle)
}
