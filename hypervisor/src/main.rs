//! The Mojito hypervisor's entry point. Everything else lives in the library
//! (`lib.rs`), which also builds for the host so its pure parts are unit
//! tested there.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod bare {
    use bootloader_api::config::{BootloaderConfig, Mapping};
    use bootloader_api::{BootInfo, entry_point};

    /// Ask the bootloader for a map of all physical memory (the hypervisor
    /// reaches page tables, VMCS/VMCB and guest RAM through it) and a
    /// generous stack (exception frames and VM-exit handling nest on it).
    const CONFIG: BootloaderConfig = {
        let mut config = BootloaderConfig::new_default();
        config.mappings.physical_memory = Some(Mapping::Dynamic);
        config.kernel_stack_size = 256 * 1024;
        config
    };

    entry_point!(kernel_main, config = &CONFIG);

    fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
        hypervisor::boot::start(boot_info)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        hypervisor::boot::fatal(format_args!("panic: {info}"))
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor runs on bare metal: build and boot it with `cargo xtask run`");
    std::process::exit(2);
}
