//! The hypervisor's IDT. Every vector has a 16-byte assembly stub that
//! pushes the vector (and a zero where the CPU pushes no error code), saves
//! the general registers and calls `isr_dispatch`.
//!
//! An exception in the hypervisor is always a bug: it is reported with the
//! vector, error code, RIP, CR2 and registers, and the CPU stops — never a
//! silent triple fault. Vectors 32–255 are interrupts, taken only inside
//! the short window the exit loop opens after an external-interrupt exit:
//! they are acknowledged and counted.

use super::gdt;
use core::sync::atomic::{AtomicU64, Ordering};

core::arch::global_asm!(
    ".section .text.isr_stubs, \"ax\"",
    ".global isr_stubs",
    ".align 16",
    "isr_stubs:",
    ".set vec, 0",
    ".rept 256",
    ".align 16",
    // Vectors with a CPU-pushed error code (SDM Vol. 3A 6.13).
    ".if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)",
    ".else",
    "push 0",
    ".endif",
    "push vec",
    "jmp isr_common",
    ".set vec, vec + 1",
    ".endr",
    "isr_common:",
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rdi, rsp",
    "mov rbx, rsp",
    "and rsp, -16",
    "call {dispatch}",
    "mov rsp, rbx",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "add rsp, 16",
    "iretq",
    dispatch = sym isr_dispatch,
);

unsafe extern "C" {
    static isr_stubs: u8;
}

/// What the stubs leave on the stack.
#[repr(C)]
#[derive(Debug)]
pub struct IsrFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: spin::Once<Idt> = spin::Once::new();

/// Interrupts taken (all vectors ≥ 32), for `stats`.
pub static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// A present 64-bit interrupt gate, DPL 0 (SDM Vol. 3A 6.14.1).
const INTERRUPT_GATE: u8 = 0x8e;

/// Builds (once) and loads the IDT on this CPU.
pub fn init() {
    let idt = IDT.call_once(|| {
        let code = gdt::selectors().map_or(0x08, |s| s.code.0);
        let base = core::ptr::addr_of!(isr_stubs) as u64;
        let mut gates = [Gate::default(); 256];
        for (v, gate) in gates.iter_mut().enumerate() {
            let handler = base + 16 * v as u64;
            let ist = match v {
                8 => gdt::IST_DOUBLE_FAULT,
                2 => gdt::IST_NMI,
                18 => gdt::IST_MACHINE_CHECK,
                _ => 0,
            };
            *gate = Gate {
                offset_low: handler as u16,
                selector: code,
                ist: ist as u8,
                type_attr: INTERRUPT_GATE,
                offset_mid: (handler >> 16) as u16,
                offset_high: (handler >> 32) as u32,
                reserved: 0,
            };
        }
        Idt(gates)
    });
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is static and every gate points at a valid stub.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization exception",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security exception",
    "reserved",
];

extern "C" fn isr_dispatch(f: &mut IsrFrame) {
    let v = f.vector;
    if v >= 32 {
        INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        if (super::pic::PIC1_BASE..super::pic::PIC2_BASE + 8).contains(&(v as u8)) {
            if v as u8 == super::pic::PIC1_BASE + super::com1_irq::IRQ
                || v as u8 == super::pic::PIC1_BASE + super::com1_irq::KBD_IRQ
            {
                super::com1_irq::on_interrupt();
            }
            super::pic::acknowledge(v as u8);
        } else {
            if v as u8 == super::apic::TIMER_VECTOR {
                super::apic::on_tick();
            }
            // The spurious vector takes no EOI (SDM Vol. 3A 11.9).
            if v as u8 != super::apic::SPURIOUS_VECTOR {
                super::apic::eoi();
            }
        }
        return;
    }
    if v == 2 {
        // An NMI while the hypervisor runs: nothing of ours raises one.
        INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        return;
    }

    let name = NAMES.get(v as usize).copied().unwrap_or("?");
    crate::log::emergency(format_args!(
        "FATAL exception {name} (vector {v}) error {:#x} at rip {:#x} cs {:#x} rflags {:#x} rsp {:#x} cr2 {:#x}",
        f.error,
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        super::instr::read_cr2()
    ));
    crate::log::emergency(format_args!(
        "  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}",
        f.rax, f.rbx, f.rcx, f.rdx
    ));
    crate::log::emergency(format_args!(
        "  rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}",
        f.rsi, f.rdi, f.rbp, f.r8
    ));
    crate::log::emergency(format_args!(
        "  r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}",
        f.r9, f.r10, f.r11, f.r12
    ));
    crate::log::emergency(format_args!(
        "  r13 {:#018x} r14 {:#018x} r15 {:#018x} cr3 {:#018x}",
        f.r13,
        f.r14,
        f.r15,
        super::instr::read_cr3()
    ));
    crate::boot::stop_cpu()
}
