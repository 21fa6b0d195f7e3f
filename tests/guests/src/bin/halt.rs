//! The `halt` guest: prints one line, then executes HLT with interrupts
//! disabled. With no interrupt that could ever wake the vCPU, the hypervisor
//! ends the VM with the reason "halted".

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use core::arch::asm;
    use guests::{BootInfo, fail, println};

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        println!("halting with interrupts disabled");
        // SAFETY: CLI and HLT change no memory.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
        fail!("hlt returned")
    }
}
