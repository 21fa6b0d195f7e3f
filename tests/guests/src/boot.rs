//! The boot path every guest shares: real mode → 32-bit protected mode →
//! long mode → `rust_start` → the guest's `entry!` function.
//!
//! The hypervisor starts the vCPU in real mode at `_start` with CS = 0,
//! EBX = VM id, ECX = RAM size, interrupts off and no usable IDT
//! (`abi::guest::ENTRY_MAX`). Everything the 16-bit code touches lies below
//! 64 KiB (`link.ld` puts `.text.boot*` first, at 0x8000).
//!
//! A guest may add a line of output in 16-bit and in 32-bit code by
//! defining `real_mode_hook` (`.code16`) and
//! `protected_mode_hook` (`.code32`); both may clobber EAX, EDX and ESI
//! only, and may call `print16` / `print32` (a NUL-terminated string at
//! SI / ESI). The weak defaults below just return. (In `.code16`, LLVM's
//! Intel syntax gives `call` and `ret` a 32-bit operand size, 66h prefix:
//! they agree, so only the stack use, 4 bytes a call, differs from 8086.)

use crate::BootInfo;
use crate::cpu::{CR0_PE, CR0_PG, CR4_PAE, EFER_LME, MSR_EFER};
use abi::guest::CONSOLE_PORT;
use core::arch::global_asm;

/// GDT selectors (the table is `boot_gdt` below).
const CODE32: u16 = 0x08;
const DATA: u16 = 0x10;
pub(crate) const CODE64: u16 = 0x18;

/// Page-table entry bits (SDM Vol. 3A §5.5 "4-Level Paging and 5-Level
/// Paging"): present and writable, and for a PDE that maps a 2 MiB page,
/// PS (bit 7).
const PTE_PRESENT_WRITABLE: u32 = 0x3;
const PDE_2MIB_PAGE: u32 = 0x83;

global_asm!(
    r#"
    .section .text.boot, "ax"
    .code16
    .global _start
_start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    // The real-mode stack grows down from 0x8000, below the image.
    mov sp, offset __image_start
    call real_mode_hook

    // SDM Vol. 3A §10.9.1 "Switching to Protected Mode": load a GDT, set
    // CR0.PE, then a far JMP to reload CS.
    lgdt [boot_gdt_pointer]
    mov eax, cr0
    or eax, {cr0_pe}
    mov cr0, eax
    // jmp far {code32}:boot_protected_mode (EA ptr16:16)
    .byte 0xea
    .word boot_protected_mode
    .word {code32}

    .code32
boot_protected_mode:
    mov ax, {data}
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    // Keep the entry registers in .data before .bss (and ECX) is reused.
    mov [boot_vm_id], ebx
    mov [boot_ram_size], ecx

    // Zero .bss: the stack and page tables live there. The hypervisor
    // zeroes RAM the ELF does not fill, but the guest does not rely on it.
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd
    mov esp, offset boot_stack_top
    call protected_mode_hook

    // Identity-map the first GiB with 2 MiB pages: PML4[0] → PDPT,
    // PDPT[0] → PD, PD[i] → i × 2 MiB.
    mov eax, offset boot_pdpt
    or eax, {table}
    mov [boot_pml4], eax
    mov eax, offset boot_pd
    or eax, {table}
    mov [boot_pdpt], eax
    mov edi, offset boot_pd
    mov eax, {page}
    mov ecx, 512
2:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    dec ecx
    jnz 2b

    // SDM Vol. 3A §10.8.5 "Initializing IA-32e Mode": CR4.PAE, CR3,
    // EFER.LME, then CR0.PG; a far JMP into a 64-bit code segment.
    mov eax, offset boot_pml4
    mov cr3, eax
    mov eax, cr4
    or eax, {cr4_pae}
    mov cr4, eax
    mov ecx, {msr_efer}
    rdmsr
    or eax, {efer_lme}
    wrmsr
    mov eax, cr0
    or eax, {cr0_pg}
    mov cr0, eax
    // jmp far {code64}:boot_long_mode (EA ptr16:32)
    .byte 0xea
    .long boot_long_mode
    .word {code64}

    .code64
boot_long_mode:
    mov ax, {data}
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    lea rsp, [rip + boot_stack_top]
    mov edi, dword ptr [rip + boot_vm_id]
    mov esi, dword ptr [rip + boot_ram_size]
    call {rust_start}
    ud2

    // print16: writes the NUL-terminated string at DS:SI to the console.
    .code16
    .global print16
print16:
    mov dx, {console}
2:
    lodsb
    test al, al
    jz 3f
    out dx, al
    jmp 2b
3:
    ret

    .weak real_mode_hook
real_mode_hook:
    ret

    // print32: the same from 32-bit code, string at ESI.
    .code32
    .global print32
print32:
    mov dx, {console}
2:
    lodsb
    test al, al
    jz 3f
    out dx, al
    jmp 2b
3:
    ret

    .weak protected_mode_hook
protected_mode_hook:
    ret

    // Flat segments (SDM Vol. 3A §3.4.5 "Segment Descriptors"): base 0,
    // limit 4 GiB, present, DPL 0; the 64-bit code segment has L = 1.
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    // {code32}: 32-bit code, execute/read
    .quad 0x00cf92000000ffff    // {data}: data, read/write
    .quad 0x00af9a000000ffff    // {code64}: 64-bit code, execute/read
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .code64

    .section .data.boot, "aw"
    .balign 4
boot_vm_id:
    .long 0
boot_ram_size:
    .long 0

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096
    .balign 16
    .skip 32768
boot_stack_top:
    "#,
    code32 = const CODE32,
    data = const DATA,
    code64 = const CODE64,
    table = const PTE_PRESENT_WRITABLE,
    page = const PDE_2MIB_PAGE,
    console = const CONSOLE_PORT,
    cr0_pe = const CR0_PE,
    cr0_pg = const CR0_PG,
    cr4_pae = const CR4_PAE,
    msr_efer = const MSR_EFER,
    efer_lme = const EFER_LME,
    rust_start = sym rust_start,
);

/// First Rust code: called from `boot_long_mode` with the entry EBX and ECX.
extern "C" fn rust_start(vm_id: u32, ram_size: u32) -> ! {
    crate::fault::install();
    unsafe extern "C" {
        /// Defined by the guest's `entry!`.
        fn mojito_guest_main(boot: BootInfo) -> !;
    }
    let boot = BootInfo {
        vm_id: u64::from(vm_id),
        ram_size: u64::from(ram_size),
    };
    // SAFETY: `entry!` defines the function with exactly this signature.
    unsafe { mojito_guest_main(boot) }
}
