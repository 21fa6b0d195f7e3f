//! The `irq` guest: interrupt injection with the interrupt controller in
//! the VMM (KVM's userspace irqchip: `KVM_INTERRUPT`,
//! `request_interrupt_window`, `ready_for_interrupt_injection`,
//! `KVM_EXIT_IRQ_WINDOW_OPEN`), through the VMM's interrupt test port
//! (`abi::guest::IRQ_PORT`), which raises the vector written.
//!
//! 1. With interrupts on, vector 0x40 arrives right after the OUT that
//!    raised it.
//! 2. With interrupts off, 0x41 waits (the VMM asks for the interrupt
//!    window) and arrives after `sti` and the one instruction its shadow
//!    covers.
//! 3. Raised with interrupts off and followed by `sti; hlt`, 0x42 wakes the
//!    guest from HLT (the VMM sees `KVM_EXIT_HLT` and injects it).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::IRQ_PORT;
    use core::arch::{asm, global_asm};
    use core::ptr::{addr_of, addr_of_mut, read_volatile};
    use guests::idt::Gate;
    use guests::port::{exit, outb};
    use guests::{BootInfo, fail, println};

    /// Interrupts taken, and their vectors in order.
    #[unsafe(no_mangle)]
    static mut IRQ_COUNT: u64 = 0;
    #[unsafe(no_mangle)]
    static mut IRQ_LOG: [u8; 16] = [0; 16];

    static mut IDT: [Gate; 256] = [Gate::MISSING; 256];

    // One stub per vector: log the vector, count, return. (IRET restores
    // RFLAGS.IF, which the interrupt gate cleared.)
    global_asm!(
        ".macro irq_stub vector",
        ".global irq_stub_\\vector",
        "irq_stub_\\vector:",
        "push rax",
        "push rcx",
        "mov rax, [rip + IRQ_COUNT]",
        "and rax, 15",
        "lea rcx, [rip + IRQ_LOG]",
        "mov byte ptr [rcx + rax], \\vector",
        "inc qword ptr [rip + IRQ_COUNT]",
        "pop rcx",
        "pop rax",
        "iretq",
        ".endm",
        "irq_stub 0x40",
        "irq_stub 0x41",
        "irq_stub 0x42",
    );

    unsafe extern "C" {
        fn irq_stub_0x40();
        fn irq_stub_0x41();
        fn irq_stub_0x42();
    }

    #[repr(C, packed)]
    struct Idtr {
        limit: u16,
        base: u64,
    }

    fn count() -> u64 {
        // SAFETY: one vCPU; the handler's update is a single store.
        unsafe { read_volatile(addr_of!(IRQ_COUNT)) }
    }

    fn install() {
        let cs: u16;
        // SAFETY: reads CS.
        unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
        // SAFETY: one vCPU, interrupts off: nothing else uses the IDT yet.
        unsafe {
            let idt = &mut *addr_of_mut!(IDT);
            idt[0x40] = Gate::interrupt(irq_stub_0x40 as *const () as u64, cs);
            idt[0x41] = Gate::interrupt(irq_stub_0x41 as *const () as u64, cs);
            idt[0x42] = Gate::interrupt(irq_stub_0x42 as *const () as u64, cs);
            let idtr = Idtr {
                limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
                base: addr_of!(IDT) as u64,
            };
            asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack, preserves_flags));
        }
    }

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        install();
        // 1. Interrupts on: taken right after the OUT.
        // SAFETY: the IDT has handlers for the vectors raised.
        unsafe { asm!("sti", options(nomem, nostack)) };
        outb(IRQ_PORT, 0x40);
        let after_out = count();
        if after_out != 1 {
            fail!("with IF = 1, vector 0x40 had not arrived after the OUT ({after_out})");
        }
        println!("interrupts on: 0x40 arrived right after the OUT that raised it");

        // 2. Interrupts off: it waits for the window, which opens after the
        //    instruction that follows STI.
        let (before_sti, after_nop): (u64, u64);
        // SAFETY: as above; the counter is read around STI and NOP.
        unsafe {
            asm!("cli", options(nomem, nostack));
            outb(IRQ_PORT, 0x41);
            println!("interrupts off: 0x41 raised, waiting");
            asm!(
                "mov {b}, [rip + IRQ_COUNT]",
                "sti",
                "mov {a}, [rip + IRQ_COUNT]",
                "nop",
                "nop",
                b = out(reg) before_sti,
                a = out(reg) _,
                options(nostack),
            );
            after_nop = count();
        }
        if (before_sti, after_nop) != (1, 2) {
            fail!("0x41: {before_sti} taken before STI, {after_nop} after (want 1, 2)");
        }
        println!("interrupts off: 0x41 arrived once STI's shadow had passed");

        // 3. HLT: the raised interrupt wakes the guest.
        // SAFETY: as above.
        unsafe {
            asm!("cli", options(nomem, nostack));
            outb(IRQ_PORT, 0x42);
            asm!("sti", "hlt", options(nomem, nostack));
        }
        let after_hlt = count();
        if after_hlt != 3 {
            fail!("0x42 did not wake the HLT ({after_hlt})");
        }
        // SAFETY: one vCPU; interrupts off from here.
        let log = unsafe {
            asm!("cli", options(nomem, nostack));
            read_volatile(addr_of!(IRQ_LOG))
        };
        if log[..3] != [0x40, 0x41, 0x42] {
            fail!("vectors taken: {:x?}", &log[..3]);
        }
        println!("hlt: 0x42 woke the guest; vectors in order 0x40 0x41 0x42");
        println!("PASS");
        exit(0)
    }
}
