//! The `triple` guest: prints one line, then triple-faults on purpose. With
//! an IDT limit of 0, the #UD of UD2 cannot be delivered (#GP), nor can
//! that #GP (#DF), nor the #DF: the CPU shuts down (Intel SDM Vol. 3A §7.15,
//! "Interrupt 8—Double Fault Exception"; AMD APM Vol. 2 §8.2.9). The
//! hypervisor must end the VM with the reason "triple fault" / shutdown.
//! (UD2 rather than INT3: a software interrupt takes a different path in
//! some hypervisors' event injection, and a fault is the common case.)

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use core::arch::asm;
    use guests::idt::Pointer;
    use guests::{BootInfo, fail, println};

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        println!("about to triple-fault");
        let empty = Pointer { limit: 0, base: 0 };
        // SAFETY: this ends the VM; nothing after it relies on the IDT.
        unsafe { asm!("lidt [{}]", "ud2", in(reg) &empty, options(nostack)) };
        fail!("still running after the triple fault")
    }
}
