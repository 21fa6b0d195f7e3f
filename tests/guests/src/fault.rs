//! Exceptions in long mode. Every vector 0–31 has a stub; the common handler
//! either resumes at a recovery point that a `try_*` function armed (so a
//! check can expect an instruction to fault) or reports the exception and
//! fails the guest.

use crate::boot::CODE64;
use crate::idt::{self, EXCEPTIONS, Gate, exception_name};
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

/// Where the next exception resumes; 0 = none armed (unexpected). Public
/// for [`try_asm!`](crate::try_asm) only.
#[doc(hidden)]
pub static RECOVERY_RIP: AtomicU64 = AtomicU64::new(0);
/// The vector of the last recovered exception, or `NO_FAULT`.
static FAULT_VECTOR: AtomicU64 = AtomicU64::new(NO_FAULT);
const NO_FAULT: u64 = u64::MAX;

/// The vector that a fault raised.
pub type Vector = u8;

/// #GP, the answer to a forbidden MSR access or XCR0 value.
pub const GP: Vector = 13;

global_asm!(
    r#"
    // The stubs' addresses, in vector order, for `install`.
    .pushsection .rodata.exception_stubs, "a"
    .balign 8
    .global mojito_exception_stubs
mojito_exception_stubs:
    .popsection

    .section .text.exception_stubs, "ax"
    .set .Lvector, 0
    .rept {count}
2:
    // Give every frame the same shape: a 0 where the CPU pushes no error
    // code. These vectors push one (SDM Vol. 3A Table 7-1 "Protected-Mode
    // Exceptions and Interrupts"): #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP,
    // #VC, #SX.
    .set .Lhas_error_code, 0
    .irp with_code, 8, 10, 11, 12, 13, 14, 17, 21, 29, 30
    .if .Lvector == \with_code
    .set .Lhas_error_code, 1
    .endif
    .endr
    .if !.Lhas_error_code
    push 0
    .endif
    push .Lvector
    jmp exception_common
    .pushsection .rodata.exception_stubs, "a"
    .quad 2b
    .popsection
    .set .Lvector, .Lvector + 1
    .endr

    // Stack: vector, error code, then the CPU's frame RIP, CS, RFLAGS, RSP,
    // SS (SDM Vol. 3A §7.14.2 "64-Bit Mode Stack Frame").
exception_common:
    push rax
    mov rax, [rip + {recovery}]
    test rax, rax
    jz 3f
    mov [rsp + 24], rax
    mov rax, [rsp + 8]
    mov [rip + {vector}], rax
    mov qword ptr [rip + {recovery}], 0
    pop rax
    add rsp, 16
    iretq
3:
    lea rdi, [rsp + 8]
    and rsp, -16
    call {unexpected}
    ud2
    "#,
    count = const EXCEPTIONS,
    recovery = sym RECOVERY_RIP,
    vector = sym FAULT_VECTOR,
    unexpected = sym unexpected_exception,
);

/// What `exception_common` leaves on the stack.
#[repr(C)]
struct Frame {
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

extern "C" fn unexpected_exception(frame: &Frame) -> ! {
    crate::fail!(
        "unexpected {} (vector {}, error code {:#x}) at rip {:#x}",
        exception_name(frame.vector),
        frame.vector,
        frame.error_code,
        frame.rip
    )
}

/// The IDT. Only `install` writes it, once, before anything can fault.
static mut IDT: [Gate; EXCEPTIONS] = [Gate::MISSING; EXCEPTIONS];

/// Fills and loads the IDT. Called once by the boot path.
pub(crate) fn install() {
    unsafe extern "C" {
        /// The stubs' addresses, in vector order (from the asm above).
        static mojito_exception_stubs: [u64; EXCEPTIONS];
    }
    // SAFETY: single-threaded, and nothing else refers to IDT yet; the
    // table is fully written by the assembler.
    let pointer = unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (gate, stub) in idt.iter_mut().zip(mojito_exception_stubs) {
            *gate = Gate::interrupt(stub, CODE64);
        }
        idt::Pointer {
            limit: (size_of_val(idt) - 1) as u16,
            base: idt.as_ptr() as u64,
        }
    };
    // SAFETY: the IDT is static and its gates point to the stubs above.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) };
}

/// Arms the recovery point for the next `asm!` block.
#[doc(hidden)]
pub fn arm() {
    FAULT_VECTOR.store(NO_FAULT, Ordering::Relaxed);
}

/// After the block: `Err(vector)` if it faulted.
#[doc(hidden)]
pub fn outcome() -> Result<(), Vector> {
    match FAULT_VECTOR.load(Ordering::Relaxed) {
        NO_FAULT => Ok(()),
        vector => Err(vector as Vector),
    }
}

/// Runs instructions that may fault: `Ok(())` if they ran, `Err(vector)`
/// if one faulted (execution resumes after the block; the rest of the
/// block is skipped). `try_asm!("vmxoff")`, or with operands after the
/// instructions, as `asm!` takes them.
///
/// The caller's `unsafe` block vouches for the instructions, should they
/// run. Give no `nomem`/`readonly`/`pure` options (the compiler must not
/// move the block past the fault check) and no `2:` label (the macro's
/// recovery point).
#[macro_export]
macro_rules! try_asm {
    ($($insn:literal),+ $(; $($operands:tt)*)?) => {{
        $crate::fault::arm();
        core::arch::asm!(
            "lea {__scratch}, [rip + 2f]",
            "mov [rip + {__recovery}], {__scratch}",
            $($insn,)+
            "mov qword ptr [rip + {__recovery}], 0",
            "2:",
            __recovery = sym $crate::fault::RECOVERY_RIP,
            __scratch = out(reg) _,
            $($($operands)*)?
        );
        $crate::fault::outcome()
    }};
}

/// RDMSR that reports a fault instead of failing the guest.
pub fn try_rdmsr(msr: u32) -> Result<u64, Vector> {
    let (lo, hi): (u32, u32);
    arm();
    // SAFETY: RDMSR writes only EDX:EAX. If it faults, the handler resumes
    // at label 2 with the stack as it was, and clears the recovery point.
    unsafe {
        asm!(
            "lea rax, [rip + 2f]",
            "mov [rip + {recovery}], rax",
            "rdmsr",
            "mov qword ptr [rip + {recovery}], 0",
            "2:",
            recovery = sym RECOVERY_RIP,
            in("ecx") msr,
            out("eax") lo,
            out("edx") hi,
        );
    }
    outcome().map(|()| u64::from(hi) << 32 | u64::from(lo))
}

/// WRMSR that reports a fault instead of failing the guest.
///
/// # Safety
/// As `cpu::wrmsr`, should the write succeed.
pub unsafe fn try_wrmsr(msr: u32, value: u64) -> Result<(), Vector> {
    arm();
    // SAFETY: the caller vouches for the write; recovery as in `try_rdmsr`.
    unsafe {
        asm!(
            "lea {scratch}, [rip + 2f]",
            "mov [rip + {recovery}], {scratch}",
            "wrmsr",
            "mov qword ptr [rip + {recovery}], 0",
            "2:",
            recovery = sym RECOVERY_RIP,
            scratch = out(reg) _,
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
        );
    }
    outcome()
}

/// XSETBV that reports a fault instead of failing the guest.
///
/// # Safety
/// As `cpu::set_xcr0`, should the write succeed.
pub unsafe fn try_xsetbv(xcr: u32, value: u64) -> Result<(), Vector> {
    arm();
    // SAFETY: the caller vouches for the write; recovery as in `try_rdmsr`.
    unsafe {
        asm!(
            "lea {scratch}, [rip + 2f]",
            "mov [rip + {recovery}], {scratch}",
            "xsetbv",
            "mov qword ptr [rip + {recovery}], 0",
            "2:",
            recovery = sym RECOVERY_RIP,
            scratch = out(reg) _,
            in("ecx") xcr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
        );
    }
    outcome()
}
