//! The VMRUN world switch (AMD APM Vol. 2 15.5 "VMRUN Instruction", 15.6
//! "#VMEXIT"). VMRUN saves and restores only RAX, RSP, RIP and RFLAGS of the
//! guest (through the VMCB) and part of the host state (through the host
//! save area); this stub moves the other general registers, and VMLOAD /
//! VMSAVE switch FS, GS, TR, LDTR, KERNEL_GS_BASE, STAR/LSTAR/CSTAR/SFMASK
//! and the SYSENTER MSRs. GIF is clear from before VMLOAD until after the
//! host's state is back. The speculation mitigations of `arch::spec`: VERW
//! (where armed) right before VMRUN, the RSB refilled before the first
//! `ret` after the exit.

use crate::virt::regs::{Gprs, offsets as o};

core::arch::global_asm!(
    ".global svm_enter",
    "svm_enter:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "push rdx",
    "mov rax, rsi",
    "mov rbx, [rdi + {rbx}]",
    "mov rcx, [rdi + {rcx}]",
    "mov rdx, [rdi + {rdx}]",
    "mov rsi, [rdi + {rsi}]",
    "mov rbp, [rdi + {rbp}]",
    "mov r8, [rdi + {r8}]",
    "mov r9, [rdi + {r9}]",
    "mov r10, [rdi + {r10}]",
    "mov r11, [rdi + {r11}]",
    "mov r12, [rdi + {r12}]",
    "mov r13, [rdi + {r13}]",
    "mov r14, [rdi + {r14}]",
    "mov r15, [rdi + {r15}]",
    "mov rdi, [rdi + {rdi}]",
    // GIF = 0 holds interrupts back in the host; RFLAGS.IF = 1 across VMRUN
    // lets a physical interrupt make the guest exit (with V_INTR_MASKING the
    // host's IF still gates physical interrupts, APM Vol. 2 15.21.1).
    "clgi",
    "sti",
    "vmload rax",
    crate::arch::spec::verw_if_armed!(),
    "vmrun rax",
    "vmsave rax",
    // Stack: [rsp] = host save-state VMCB, [rsp + 8] = the Gprs pointer.
    "push rdi",
    "mov rdi, [rsp + 16]",
    "mov [rdi + {rbx}], rbx",
    "mov [rdi + {rcx}], rcx",
    "mov [rdi + {rdx}], rdx",
    "mov [rdi + {rsi}], rsi",
    "mov [rdi + {rbp}], rbp",
    "mov [rdi + {r8}], r8",
    "mov [rdi + {r9}], r9",
    "mov [rdi + {r10}], r10",
    "mov [rdi + {r11}], r11",
    "mov [rdi + {r12}], r12",
    "mov [rdi + {r13}], r13",
    "mov [rdi + {r14}], r14",
    "mov [rdi + {r15}], r15",
    "pop rax",
    "mov [rdi + {rdi}], rax",
    "pop rax",
    "vmload rax",
    // Before the first `ret`, and before STGI lets a pending NMI's handler
    // run (NMIs exit the guest and wait for GIF): the guest's return
    // predictions replaced.
    crate::arch::spec::rsb_fill!(),
    "cli",
    "stgi",
    "pop rdi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    rbx = const o::RBX, rcx = const o::RCX, rdx = const o::RDX,
    rsi = const o::RSI, rdi = const o::RDI, rbp = const o::RBP, r8 = const o::R8,
    r9 = const o::R9, r10 = const o::R10, r11 = const o::R11, r12 = const o::R12,
    r13 = const o::R13, r14 = const o::R14, r15 = const o::R15,
    verw = sym crate::arch::spec::MOJITO_VERW,
    verw_sel = sym crate::arch::spec::MOJITO_VERW_SELECTOR,
);

unsafe extern "C" {
    fn svm_enter(regs: *mut Gprs, guest_vmcb: u64, host_vmcb: u64);
}

/// Runs the guest until its next #VMEXIT. RAX travels in the VMCB.
///
/// # Safety
/// SVM is on (EFER.SVME, VM_HSAVE_PA), `guest_vmcb` is a valid VMCB and
/// `host_vmcb` holds the host's VMSAVE state.
pub unsafe fn enter(regs: &mut Gprs, guest_vmcb: u64, host_vmcb: u64) {
    // SAFETY: guaranteed by the caller; the stub restores every callee-saved
    // register, RSP comes back through the host save area.
    unsafe { svm_enter(regs, guest_vmcb, host_vmcb) }
}
