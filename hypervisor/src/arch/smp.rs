//! Host SMP, first part (the SMP issue, item 1): the application
//! processors (APs) the MADT lists are started with INIT-SIPI-SIPI (SDM
//! Vol. 3A 9.4.4 "MP Initialization Example"), brought to long mode on the
//! hypervisor's page tables with a GDT, TSS and IST stacks of their own and
//! the shared IDT, turn VMX or SVM on, log it (`cpuN: VMX: …`) and wait
//! with interrupts off. Guests still run on the boot CPU only: running
//! vCPUs on the APs (per-CPU exit paths, IPIs to kick them) is the rest of
//! that issue.
//!
//! The start-up code runs in real mode at a page below 1 MiB (the SIPI
//! vector names it), so boot keeps [`LOW_PAGES`] pages there out of the
//! frame allocator ([`reserve_low`]): the trampoline and a temporary PML4
//! (the hypervisor's upper entries plus entry 0 identity-mapping the first
//! 2 MiB, where the trampoline is), its PDPT and PD. The trampoline goes
//! from real mode straight to long mode (PAE, LME and NXE, then PE and PG
//! at once, then a far jump to a 64-bit code segment) and jumps to
//! [`ap_entry`], which moves to the hypervisor's own CR3 at once.

use super::instr::{
    rdmsr, rdtsc, read_cr0, read_cr3, read_cr4, write_cr0, write_cr3, write_cr4, wrmsr,
};
use super::msr::IA32_EFER;
use crate::mm::{HostPhys, phys};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Pages kept below 1 MiB: the trampoline, the temporary PML4, PDPT, PD.
pub const LOW_PAGES: u64 = 4;
const PAGE: u64 = 4096;
/// Where real mode can run code a SIPI names: below 1 MiB, and below the
/// EBDA and video memory (0xA0000).
const LOW_LIMIT: u64 = 0xa_0000;
static LOW: AtomicU64 = AtomicU64::new(0);

/// Takes [`LOW_PAGES`] pages below 640 KiB from the usable region
/// `start..end` (page 0 never) for starting APs, the first time one fits;
/// returns where the region's rest starts.
pub fn reserve_low(start: u64, end: u64) -> u64 {
    let first = start.max(PAGE).next_multiple_of(PAGE);
    let last = first + LOW_PAGES * PAGE;
    if LOW.load(Ordering::Relaxed) != 0 || last > end.min(LOW_LIMIT) {
        return start;
    }
    LOW.store(first, Ordering::Relaxed);
    last
}

/// Page-table entry bits (SDM Vol. 3A 5.5): present, writable, PS.
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const LARGE: u64 = 1 << 7;
/// EFER bits: LME (8), LMA (10, read-only), NXE (11), SVME (12).
const EFER_LMA: u64 = 1 << 10;
const EFER_SVME: u64 = 1 << 12;
/// CR4.VMXE (13) and CR4.OSXSAVE (18).
const CR4_VMXE: u64 = 1 << 13;
const CR4_OSXSAVE: u64 = 1 << 18;

/// Offsets in the trampoline page of what the boot CPU fills in (the
/// layout `trampoline` below starts with).
mod at {
    pub const GDT: u64 = 8;
    pub const GDTR_BASE: u64 = 34;
    pub const JUMP: u64 = 40;
    pub const CR3: u64 = 48;
    pub const STACK: u64 = 56;
    pub const ARG: u64 = 64;
    pub const ENTRY: u64 = 72;
}

core::arch::global_asm!(
    r#"
    .section .text.mojito_ap, "ax"
    .global mojito_ap_start, mojito_ap_long, mojito_ap_end
    .code16
mojito_ap_start:
    jmp 2f
    .balign 8
    // at::GDT: null, 64-bit code (0x08), data (0x10).
    .quad 0
    .quad 0x00209a0000000000
    .quad 0x0000920000000000
    // 32: the GDTR (limit, base at at::GDTR_BASE = 34).
    .word 23
    .long 0
    .balign 8
    // at::JUMP: the far pointer to mojito_ap_long (offset, selector).
    .long 0
    .word 0x08
    .balign 8
1:  // at::CR3, at::STACK, at::ARG, at::ENTRY.
    .quad 0, 0, 0, 0
2:
    cli
    cld
    mov ax, cs
    mov ds, ax
    lgdt [32]
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, dword ptr [48]
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x900
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax
    // jmp far dword [at::JUMP] (66 FF /5, disp16): into 64-bit code.
    .byte 0x66, 0xff, 0x2e
    .word 40
    .code64
mojito_ap_long:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, qword ptr [rip + 1b + 8]
    mov rdi, qword ptr [rip + 1b + 16]
    mov rax, qword ptr [rip + 1b + 24]
    push 0
    jmp rax
mojito_ap_end:
    .text
"#
);

unsafe extern "C" {
    static mojito_ap_start: u8;
    static mojito_ap_long: u8;
    static mojito_ap_end: u8;
}

/// What an AP needs from the boot CPU.
#[repr(C)]
struct ApArgs {
    cpu: usize,
    cr3: u64,
    cr0: u64,
    cr4: u64,
    efer: u64,
    xcr0: u64,
    main: fn(usize) -> !,
}

/// APs that reached `ap_entry`, and that finished (VMX/SVM on or not).
static STARTED: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
static UP: AtomicU32 = AtomicU32::new(0);
/// Set before a reset: the APs leave VMX/SVM (`stop_aps`), counting out.
static STOP: AtomicBool = AtomicBool::new(false);
static STOPPED: AtomicU32 = AtomicU32::new(0);

/// An AP's stack: 64 pages, as the boot CPU's (the control domain's
/// vCPU runs guests from it).
const AP_STACK_PAGES: u64 = 64;
/// Written at the bottom of each AP's stack: gone means it overflowed.
const STACK_CANARY: u64 = 0x4d6f_6a69_746f_5354;
static STACK_BOTTOMS: [AtomicU64; super::percpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; super::percpu::MAX_CPUS];

/// Whether this AP's stack still has its canary (no AP, or the boot CPU:
/// true). The exit loop checks it, and stops the CPU loudly rather than
/// let an overflow corrupt the frames below the stack.
pub fn stack_intact() -> bool {
    let Some(bottom) = STACK_BOTTOMS
        .get(super::percpu::index())
        .map(|b| b.load(Ordering::Relaxed))
        .filter(|&b| b != 0)
    else {
        return true;
    };
    // SAFETY: the frame `start_aps` gave this AP's stack, mapped by the
    // window; only read.
    unsafe { phys::ptr::<u64>(HostPhys::new(bottom)).read_volatile() == STACK_CANARY }
}

/// How deep AP `cpu`'s stack has gone so far, in bytes (the first word
/// from the bottom no longer holding the fill).
pub fn stack_used(cpu: usize) -> Option<u64> {
    let bottom = STACK_BOTTOMS.get(cpu)?.load(Ordering::Relaxed);
    if bottom == 0 {
        return None;
    }
    let words = AP_STACK_PAGES * PAGE / 8;
    let first = (0..words).find(|&w| {
        // SAFETY: a word of that AP's stack, through the window; only read.
        unsafe { phys::ptr::<u64>(HostPhys::new(bottom + w * 8)).read_volatile() != STACK_CANARY }
    })?;
    Some((words - first) * 8)
}

/// Each CPU's local APIC id, by `percpu::index` (for IPIs to it).
static APIC_IDS: [AtomicU32; super::percpu::MAX_CPUS] =
    [const { AtomicU32::new(u32::MAX) }; super::percpu::MAX_CPUS];

/// CPU `cpu`'s local APIC id, once it was started.
pub fn apic_id(cpu: usize) -> Option<u32> {
    let id = APIC_IDS.get(cpu)?.load(Ordering::Relaxed);
    (id != u32::MAX).then_some(id)
}

/// Physical CPUs with the extension on: 1 + the APs that turned it on.
pub fn cpus_up() -> u32 {
    1 + UP.load(Ordering::Relaxed)
}

/// An AP's first Rust code, on its own stack, on the temporary tables.
extern "sysv64" fn ap_entry(args: &'static ApArgs) -> ! {
    // SAFETY: the boot CPU's values, which map and protect the hypervisor
    // as on the boot CPU (its upper half is in the temporary tables too, so
    // the code and stack stay mapped across the switch). VMXE is left to
    // `turn_on`; EFER keeps the long mode the trampoline set.
    unsafe {
        write_cr3(args.cr3);
        write_cr0(args.cr0);
        write_cr4(args.cr4 & !CR4_VMXE);
        let efer = rdmsr(IA32_EFER);
        wrmsr(IA32_EFER, efer | (args.efer & !(EFER_LMA | EFER_SVME)));
        if args.cr4 & CR4_OSXSAVE != 0 {
            super::instr::xsetbv(0, args.xcr0);
        }
    }
    let stacks = super::gdt::init_ap(args.cpu, || stack(args.cpu, 4).map(|(_, top)| top));
    super::idt::init();
    STARTED.fetch_add(1, Ordering::SeqCst);
    if !stacks {
        crate::log!("cpu{}: no memory for its interrupt stacks", args.cpu);
        turned_on(false);
        park()
    }
    (args.main)(args.cpu)
}

/// An AP's `main` says whether it turned VMX/SVM on (`start_aps` waits for
/// this).
pub fn turned_on(on: bool) {
    if on {
        UP.fetch_add(1, Ordering::SeqCst);
    }
    DONE.fetch_add(1, Ordering::SeqCst);
}

/// Whether `stop_aps` asked the APs to leave VMX/SVM.
pub fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// An AP with nothing to do waits here with interrupts off; an NMI
/// (`stop_aps`) wakes it to leave VMX/SVM.
pub fn park() -> ! {
    loop {
        // SAFETY: waiting with interrupts off; an NMI returns here.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
        if stopping() {
            leave();
        }
    }
}

/// Leaves VMX/SVM on this AP for a reset, counts it, and stops.
pub fn leave() -> ! {
    // SAFETY: interrupts off for good: nothing runs here again.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    super::power::leave_virtualization();
    STOPPED.fetch_add(1, Ordering::SeqCst);
    super::instr::halt_forever()
}

/// Between looks for work on an AP: sleeps until the next tick (or any
/// interrupt) where the timer runs, leaving VMX/SVM if a reset is coming.
pub fn idle() {
    if stopping() {
        leave();
    }
    if super::apic::timer_running() {
        // SAFETY: the hypervisor's interrupt handlers only acknowledge and
        // count; interrupts are off again before anything else runs.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    } else {
        core::hint::spin_loop();
    }
}

/// Has every AP leave VMX/SVM operation (before a reset: INIT, which a
/// reset may come down to, is blocked in VMX operation, and firmware finds
/// IA32_FEATURE_CONTROL locked): an NMI to all but this CPU wakes them;
/// waits up to 100 ms for them.
pub fn stop_aps() {
    let started = DONE.load(Ordering::SeqCst);
    if started == 0 {
        return;
    }
    STOP.store(true, Ordering::SeqCst);
    use super::apic::{ICR_ALL_BUT_SELF, ICR_ASSERT, ICR_NMI, send_ipi};
    if send_ipi(0, ICR_NMI | ICR_ASSERT | ICR_ALL_BUT_SELF) {
        let _ = wait_for(&STOPPED, started - 1, 100_000);
    }
    crate::log!(
        "smp: {} of {started} other CPUs left VMX/SVM",
        STOPPED.load(Ordering::SeqCst)
    );
}

/// A stack of `pages` from the frame pool for CPU `cpu`: (bottom frame,
/// top address). `MOJITO_LOG_LAYOUT` lists it.
fn stack(cpu: usize, pages: u64) -> Option<(HostPhys, u64)> {
    let base = crate::mm::frame::FRAMES.lock().alloc_contiguous(pages)?;
    crate::control::layout::note_cpu(cpu, "stack", base, pages * PAGE);
    Some((base, phys::to_virt(base).raw() + pages * PAGE))
}

/// The boot CPU's local APIC id: its ID register, else CPUID's initial id
/// (1:EBX[31:24]; leaf 0Bh's x2APIC id where there is one).
fn my_apic_id() -> u32 {
    if let Some(id) = super::apic::id() {
        return id;
    }
    let [_, b, _, _] = super::instr::cpuid(1, 0);
    let max = super::instr::cpuid(0, 0)[0];
    if max >= 0xb {
        let [_, ebx, _, edx] = super::instr::cpuid(0xb, 0);
        if ebx != 0 {
            return edx;
        }
    }
    b >> 24
}

/// The TSC's frequency in kHz; where it was not measured, 4 GHz (faster
/// than any TSC, so the waits below are at least as long as asked).
fn tsc_khz() -> u64 {
    match super::tsc::frequency_khz() {
        0 => 4_000_000,
        khz => khz,
    }
}

/// Spins for `us` microseconds of the TSC.
fn wait_us(us: u64) {
    let khz = tsc_khz();
    let end = rdtsc() + khz * us / 1000;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Waits up to `us` for `counter` to pass `from`.
fn wait_for(counter: &AtomicU32, from: u32, us: u64) -> bool {
    let khz = tsc_khz();
    let end = rdtsc() + khz * us / 1000;
    while rdtsc() < end {
        if counter.load(Ordering::SeqCst) > from {
            return true;
        }
        core::hint::spin_loop();
    }
    counter.load(Ordering::SeqCst) > from
}

/// Writes `v` at byte `off` of the physical page `page`.
///
/// # Safety
/// `page` must be one of the pages `reserve_low` kept, and `off` + the
/// size of `T` within it.
unsafe fn poke<T>(page: u64, off: u64, v: T) {
    // SAFETY: as the caller guarantees; the window maps every page.
    unsafe { phys::ptr::<T>(HostPhys::new(page + off)).write_unaligned(v) };
}

/// Starts every AP the MADT lists; each runs `main(cpu)`, which turns the
/// extension on, logs its line, says so (`turned_on`) and then waits for
/// work. Logs the outcome.
pub fn start_aps(main: fn(usize) -> !, name: &str) {
    let ids = super::power::processors();
    let me = my_apic_id();
    APIC_IDS[0].store(me, Ordering::Relaxed);
    let others: Vec<u32> = ids.iter().copied().filter(|&i| i != me).collect();
    if ids.is_empty() {
        crate::log!("smp: no MADT; using the boot CPU only");
        return;
    }
    if others.is_empty() {
        crate::log!("smp: 1 CPU (local APIC id {me})");
        return;
    }
    let low = LOW.load(Ordering::Relaxed);
    if low == 0 {
        crate::log!(
            "smp: {} CPUs, but no free page below 640 KiB to start the others from; using cpu0 only",
            ids.len()
        );
        return;
    }
    let (start, long, end) = (
        core::ptr::addr_of!(mojito_ap_start) as u64,
        core::ptr::addr_of!(mojito_ap_long) as u64,
        core::ptr::addr_of!(mojito_ap_end) as u64,
    );
    let len = end - start;
    // The temporary PML4: the hypervisor's, with entry 0 (the lowest 512
    // GiB; the bootloader identity-maps its hand-over code there) replaced
    // by the identity map of the first 2 MiB. The AP leaves these tables
    // before it touches anything else: its code, stack and arguments must
    // lie above 512 GiB (the image and the physical-memory window do where
    // the bootloader places them dynamically).
    let cr3 = read_cr3() & !0xfff;
    let pml4 = phys::ptr::<[u64; 512]>(HostPhys::new(cr3));
    // SAFETY: CR3's PML4, read through the window.
    let mut copy = unsafe { pml4.read() };
    let low_half = |va: u64| va >> 39 == 0;
    if low_half(phys::to_virt(HostPhys::new(0)).raw())
        || low_half(ap_entry as *const () as u64)
        || len > PAGE
    {
        crate::log!("smp: the hypervisor lies in the lowest 512 GiB; using cpu0 only");
        return;
    }
    let (tramp, tpml4, tpdpt, tpd) = (low, low + PAGE, low + 2 * PAGE, low + 3 * PAGE);
    copy[0] = tpdpt | PRESENT | WRITABLE;
    let mut pdpt = [0u64; 512];
    pdpt[0] = tpd | PRESENT | WRITABLE;
    let mut pd = [0u64; 512];
    pd[0] = PRESENT | WRITABLE | LARGE;
    // SAFETY: the pages `reserve_low` kept, whole tables from offset 0.
    unsafe {
        poke(tpml4, 0, copy);
        poke(tpdpt, 0, pdpt);
        poke(tpd, 0, pd);
    }
    // SAFETY: `len` bytes of the trampoline's code and data, into its page.
    unsafe {
        core::ptr::copy_nonoverlapping(
            start as *const u8,
            phys::ptr::<u8>(HostPhys::new(tramp)),
            len as usize,
        );
    }
    // SAFETY: the trampoline's page, its fields (`at`).
    unsafe {
        poke(tramp, at::GDTR_BASE, (tramp + at::GDT) as u32);
        poke(tramp, at::JUMP, (tramp + (long - start)) as u32);
        poke(tramp, at::CR3, tpml4);
        poke(tramp, at::ENTRY, ap_entry as *const () as u64);
    }
    let xcr0 = if read_cr4() & CR4_OSXSAVE != 0 {
        // SAFETY: OSXSAVE is set.
        unsafe { super::instr::xgetbv(0) }
    } else {
        0
    };
    let mut started = 0;
    // CPUs past `percpu::MAX_CPUS` stay off.
    for (i, &id) in others.iter().enumerate().take(super::percpu::MAX_CPUS - 1) {
        let cpu = i + 1;
        let (Some((bottom, top)), Ok(args)) = (
            stack(cpu, AP_STACK_PAGES),
            Ok::<_, ()>(alloc::boxed::Box::new(ApArgs {
                cpu,
                cr3: read_cr3(),
                cr0: read_cr0(),
                cr4: read_cr4(),
                // SAFETY: EFER exists on every x86-64 CPU.
                efer: unsafe { rdmsr(IA32_EFER) },
                xcr0,
                main,
            })),
        ) else {
            crate::log!("smp: no memory to start cpu{cpu}");
            break;
        };
        let args: &'static ApArgs = alloc::boxed::Box::leak(args);
        APIC_IDS[cpu].store(id, Ordering::Relaxed);
        if let Some(slot) = STACK_BOTTOMS.get(cpu) {
            // SAFETY: the stack's words, ours until the AP runs: the
            // lowest keeps the canary, the rest a fill whose first
            // overwritten word says how deep the stack went.
            unsafe {
                let words = (AP_STACK_PAGES * PAGE / 8) as usize;
                for w in 0..words {
                    phys::ptr::<u64>(bottom).add(w).write_volatile(STACK_CANARY);
                }
            }
            slot.store(bottom.raw(), Ordering::Relaxed);
        }
        // SAFETY: the trampoline's page, its fields (`at`).
        unsafe {
            poke(tramp, at::STACK, top);
            poke(tramp, at::ARG, args as *const ApArgs as u64);
        }
        let before = STARTED.load(Ordering::SeqCst);
        let done_before = DONE.load(Ordering::SeqCst);
        use super::apic::{ICR_ASSERT, ICR_INIT, ICR_STARTUP, send_ipi};
        let vector = (tramp / PAGE) as u32;
        let sent = send_ipi(id, ICR_INIT | ICR_ASSERT) && {
            wait_us(10_000);
            send_ipi(id, ICR_STARTUP | vector)
        };
        if !sent {
            crate::log!(
                "smp: cannot send IPIs to local APIC id {id}; using the CPUs started so far"
            );
            break;
        }
        if !wait_for(&STARTED, before, 200) && !send_ipi(id, ICR_STARTUP | vector) {
            break;
        }
        // Up to a second to reach Rust, and as long again to turn on.
        if !wait_for(&STARTED, before, 1_000_000) {
            // A late start would read the next CPU's arguments from the
            // trampoline: start no more.
            crate::log!("smp: cpu{cpu} (local APIC id {id}) did not start; starting no more");
            break;
        }
        if !wait_for(&DONE, done_before, 1_000_000) {
            crate::log!("smp: cpu{cpu} (local APIC id {id}) did not finish turning {name} on");
        }
        started += 1;
    }
    crate::control::info::note_cpus(cpus_up());
    crate::log!(
        "smp: {} CPUs in the MADT; {} with {name} on (cpu0 and {started} started); each waits \
         for the control domain to start its vCPU there",
        ids.len(),
        cpus_up()
    );
}
