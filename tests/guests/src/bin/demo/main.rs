//! The `demo` guest, the one shown to users: it prints a line from each CPU
//! mode on the way to long mode, then checks, one line each, what Mojito
//! promises a guest (CPUID, MSR policy, XSAVE, memory, port I/O,
//! hypercalls), and ends with `PASS` (status 0) or `FAIL: <what>` (status
//! 1). The `bench` guest times the exits.
//! It never executes HLT: the `halt` guest covers that.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod cpuid;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod msr;
#[cfg(target_os = "none")]
mod xstate;

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::POST_PORT;
    use core::arch::global_asm;
    use guests::port::{exit, inb};
    use guests::{BootInfo, fail, println};

    // The lines from 16- and 32-bit code, through the boot path's hooks
    // (see the library's `boot.rs`). Strings sit next to the code: the
    // 16-bit code can only reach the first 64 KiB.
    global_asm!(
        r#"
        .section .text.boot.demo, "ax"
        .code16
        .global real_mode_hook
    real_mode_hook:
        mov si, offset demo_real_mode_line
        call print16
        ret
    demo_real_mode_line:
        .asciz "real mode: hello from 16-bit code\n"

        .code32
        .global protected_mode_hook
    protected_mode_hook:
        mov esi, offset demo_protected_mode_line
        call print32
        ret
    demo_protected_mode_line:
        .asciz "protected mode: hello from 32-bit code\n"
        .code64
        "#
    );

    guests::entry!(run);

    fn run(boot: BootInfo) -> ! {
        println!(
            "long mode: VM {}, {} KiB of RAM",
            boot.vm_id,
            boot.ram_size / 1024
        );
        super::cpuid::check();
        super::msr::check();
        super::xstate::check();
        super::memory::check(boot.ram_size);
        check_post_port();
        super::hypercall::check();
        println!("PASS");
        exit(0)
    }

    /// The hypervisor answers the POST port itself: reads are 0xff.
    fn check_post_port() {
        match inb(POST_PORT) {
            0xff => println!("port i/o: IN from port {POST_PORT:#x} reads 0xff"),
            other => fail!("port i/o: IN from port {POST_PORT:#x} reads {other:#x}, not 0xff"),
        }
    }
}
