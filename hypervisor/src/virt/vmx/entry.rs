//! The VM entry/exit stub (SDM Vol. 3C 27 "VM Entries", 28.5 "Loading Host
//! State"): loads the guest's general registers, VMLAUNCHes or VMRESUMEs,
//! and on exit (HOST_RIP = `vmx_exit_stub`, HOST_RSP = the stack pointer at
//! entry) stores them back. RSP, RIP and RFLAGS live in the VMCS. The
//! speculation mitigations of `arch::spec`: VERW (where armed) before the
//! guest's registers are loaded, the RSB refilled before the first `ret`
//! after the exit.

use crate::virt::regs::{Gprs, offsets as o};

core::arch::global_asm!(
    ".global vmx_enter",
    "vmx_enter:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    // HOST_RSP = this stack pointer: the exit stub finds the Gprs pointer at [rsp].
    "mov rax, {host_rsp}",
    "vmwrite rax, rsp",
    "mov rax, rdi",
    // Only guest values are loaded after this.
    crate::arch::spec::verw_if_armed!(),
    "test rsi, rsi",
    "mov rbx, [rax + {rbx}]",
    "mov rcx, [rax + {rcx}]",
    "mov rdx, [rax + {rdx}]",
    "mov rsi, [rax + {rsi}]",
    "mov rdi, [rax + {rdi}]",
    "mov rbp, [rax + {rbp}]",
    "mov r8, [rax + {r8}]",
    "mov r9, [rax + {r9}]",
    "mov r10, [rax + {r10}]",
    "mov r11, [rax + {r11}]",
    "mov r12, [rax + {r12}]",
    "mov r13, [rax + {r13}]",
    "mov r14, [rax + {r14}]",
    "mov r15, [rax + {r15}]",
    "mov rax, [rax + {rax}]",
    "jnz 2f",
    "vmlaunch",
    "jmp 3f",
    "2:",
    "vmresume",
    // Reached only when VMLAUNCH/VMRESUME failed (VMfail): the guest never ran.
    "3:",
    "pop rdi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "mov eax, 1",
    "ret",
    "",
    ".global vmx_exit_stub",
    "vmx_exit_stub:",
    "push rax",
    "mov rax, [rsp + 8]",
    "mov [rax + {rbx}], rbx",
    "mov [rax + {rcx}], rcx",
    "mov [rax + {rdx}], rdx",
    "mov [rax + {rsi}], rsi",
    "mov [rax + {rdi}], rdi",
    "mov [rax + {rbp}], rbp",
    "mov [rax + {r8}], r8",
    "mov [rax + {r9}], r9",
    "mov [rax + {r10}], r10",
    "mov [rax + {r11}], r11",
    "mov [rax + {r12}], r12",
    "mov [rax + {r13}], r13",
    "mov [rax + {r14}], r14",
    "mov [rax + {r15}], r15",
    "pop rbx",
    "mov [rax + {rax}], rbx",
    // Before the first `ret`: the guest's return predictions replaced.
    crate::arch::spec::rsb_fill!(),
    "pop rdi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "xor eax, eax",
    "ret",
    host_rsp = const super::vmcs::Field::HostRsp as u32,
    rax = const o::RAX, rbx = const o::RBX, rcx = const o::RCX, rdx = const o::RDX,
    rsi = const o::RSI, rdi = const o::RDI, rbp = const o::RBP, r8 = const o::R8,
    r9 = const o::R9, r10 = const o::R10, r11 = const o::R11, r12 = const o::R12,
    r13 = const o::R13, r14 = const o::R14, r15 = const o::R15,
    verw = sym crate::arch::spec::MOJITO_VERW,
    verw_sel = sym crate::arch::spec::MOJITO_VERW_SELECTOR,
);

unsafe extern "C" {
    /// Enters the guest whose VMCS is current. Returns 0 after a VM exit,
    /// 1 if the VM-entry instruction itself failed.
    fn vmx_enter(regs: *mut Gprs, launched: u64) -> u64;
    /// HOST_RIP: where the CPU lands on every VM exit.
    pub fn vmx_exit_stub();
}

/// Runs the guest until its next VM exit. Returns false if VMLAUNCH or
/// VMRESUME failed (the VM-instruction error field says why).
///
/// # Safety
/// VMX is on, the vCPU's VMCS is current and fully initialised (HOST_RIP =
/// `vmx_exit_stub`), and `regs` is valid for the call.
pub unsafe fn enter(regs: &mut Gprs, launched: bool) -> bool {
    // SAFETY: guaranteed by the caller; the stub saves and restores every
    // callee-saved register and returns on this stack.
    unsafe { vmx_enter(regs, u64::from(launched)) == 0 }
}
