//! The `spin` guest: prints one line, then loops forever without a single
//! exit. Whoever runs it must get its CPU back anyway: the hypervisor's own
//! timer makes KVM_RUN return to the control domain (KVM_EXIT_INTR), which
//! then stops the guest (DESIGN.md D2).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use guests::{BootInfo, println};

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        println!("spinning without exits");
        loop {
            core::hint::spin_loop();
        }
    }
}
