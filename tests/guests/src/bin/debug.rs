//! The `debug` guest: guest debugging (`KVM_SET_GUEST_DEBUG`) through the
//! VMM's debugging test port (`abi::guest::DEBUG_PORT`).
//!
//! 1. Single-stepping: one `KVM_EXIT_DEBUG` per instruction, including the
//!    OUT that turned it on (completed by the VMM), CPUID (carried out by
//!    the hypervisor) and the instructions the CPU runs itself: six.
//! 2. Software breakpoints: each INT3 is a `KVM_EXIT_DEBUG` (#BP) instead
//!    of a #BP in the guest; the VMM steps over it: two.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{DEBUG_OFF, DEBUG_PORT, DEBUG_SINGLE_STEP, DEBUG_SW_BREAKPOINTS};
    use core::arch::asm;
    use guests::port::exit;
    use guests::{BootInfo, fail, println};

    /// The debug exits of the session that just ended.
    fn exits() -> u32 {
        let n: u32;
        // SAFETY: port I/O only.
        unsafe {
            asm!("in eax, dx", in("dx") DEBUG_PORT, out("eax") n,
                options(nomem, nostack, preserves_flags))
        };
        n
    }

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        // SAFETY: the OUTs reach the VMM's debugging port; CPUID clobbers
        // EAX-EDX, declared.
        unsafe {
            asm!(
                // RBX (CPUID's) is LLVM's: kept aside before the session.
                "mov {keep}, rbx",
                "mov al, {on}",
                "out {port}, al",
                "nop",
                "nop",
                "mov eax, 1",
                "cpuid",
                "mov al, {off}",
                "out {port}, al",
                "mov rbx, {keep}",
                on = const DEBUG_SINGLE_STEP,
                off = const DEBUG_OFF,
                port = const DEBUG_PORT,
                keep = out(reg) _,
                out("eax") _,
                out("ecx") _,
                out("edx") _,
                options(nomem, nostack),
            );
        }
        let steps = exits();
        if steps != 6 {
            fail!("single-stepping: {steps} debug exits, not 6");
        }
        println!("single-step: 6 debug exits, the OUT that began it and CPUID included");
        // SAFETY: as above; the INT3s become debug exits the VMM steps over.
        unsafe {
            asm!(
                "mov al, {on}",
                "out {port}, al",
                "int3",
                "nop",
                "int3",
                "mov al, {off}",
                "out {port}, al",
                on = const DEBUG_SW_BREAKPOINTS,
                off = const DEBUG_OFF,
                port = const DEBUG_PORT,
                out("eax") _,
                options(nomem, nostack),
            );
        }
        let breaks = exits();
        if breaks != 2 {
            fail!("software breakpoints: {breaks} debug exits, not 2");
        }
        println!("software breakpoints: each INT3 a debug exit, stepped over by the VMM");
        println!("PASS");
        exit(0)
    }
}
