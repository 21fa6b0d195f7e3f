//! A hypercall from an ordinary guest is answered as KVM answers a guest's
//! (DESIGN.md D1): -KVM_ENOSYS in RAX for a number it does not know — also
//! for a number that is one of the control domain's requests — and never
//! #UD. The instruction is the vendor's: VMCALL on Intel, VMMCALL on AMD.

use guests::cpu::cpuid;
use guests::{fail, println};

/// -KVM_ENOSYS (include/uapi/linux/kvm_para.h).
const KVM_ENOSYS: i64 = -1000;
/// KVM_GET_API_VERSION's request code: the control domain's first request.
const KVM_GET_API_VERSION: u64 = 0xae00;

fn hypercall(nr: u64) -> u64 {
    let intel = cpuid(0, 0).ebx == u32::from_le_bytes(*b"Genu");
    let rax: u64;
    // SAFETY: VMCALL/VMMCALL only exits to the hypervisor, which answers in
    // RAX and preserves everything else.
    unsafe {
        if intel {
            core::arch::asm!("vmcall", inlateout("rax") nr => rax, in("rdi") 0u64, in("rsi") 0u64);
        } else {
            core::arch::asm!("vmmcall", inlateout("rax") nr => rax, in("rdi") 0u64, in("rsi") 0u64);
        }
    }
    rax
}

pub fn check() {
    for nr in [0x1234_5678, KVM_GET_API_VERSION] {
        let got = hypercall(nr) as i64;
        if got != KVM_ENOSYS {
            fail!("hypercall {nr:#x}: RAX = {got}, want -KVM_ENOSYS");
        }
    }
    println!("hypercall: unknown numbers and the KVM API's own get -KVM_ENOSYS");
}
