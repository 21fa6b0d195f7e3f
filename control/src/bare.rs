//! Entry, stack and panic handler.

use crate::{console, hv, println};
use abi::kvm::mojito::{MOJITO_BOOT_INFO_MAGIC, MOJITO_BOOT_INFO_VERSION, mojito_boot_info};

/// The boot stack (the hypervisor's page tables map all RAM, so any static
/// memory will do).
const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

#[unsafe(no_mangle)]
static mut BOOT_STACK: Stack = Stack([0; STACK_SIZE]);

core::arch::global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    // RDI holds the boot-info page's address: keep it for `control_main`.
    "lea rsp, [rip + BOOT_STACK + {size}]",
    "xor ebp, ebp",
    "call {main}",
    "2:",
    "hlt",
    "jmp 2b",
    size = const STACK_SIZE,
    main = sym control_main,
);

extern "sysv64" fn control_main(boot_info: u64) -> ! {
    console::init();
    println!(
        "control: Mojito control domain {} starting",
        env!("CARGO_PKG_VERSION")
    );
    // SAFETY: the hypervisor put the boot-info page at this address of our
    // identity-mapped RAM; it is read once, as plain data.
    let info = unsafe { &*(boot_info as *const mojito_boot_info) };
    if info.magic != MOJITO_BOOT_INFO_MAGIC || info.version != MOJITO_BOOT_INFO_VERSION {
        println!("control: FATAL the boot-info page is not one this control domain understands");
        halt();
    }
    hv::init(info.hypercall);
    // From here on the console is mirrored on the screen, if there is one.
    if hv::info().is_ok_and(|i| i.platform & abi::kvm::mojito::MOJITO_PLATFORM_SCREEN != 0) {
        console::enable_screen();
    }
    crate::run(info)
}

/// Stops this vCPU for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: CLI; HLT only parks the vCPU.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::panic_line(format_args!("control: FATAL panic: {info}"));
    crate::mem::report();
    hv::power_off();
    halt()
}
