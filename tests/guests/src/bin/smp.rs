//! The `smp` guest: two vCPUs under the split irqchip (DESIGN.md D4). Its
//! VMM gives it a BSP and one AP (`vmm::policy::guest_vcpus`); the AP
//! waits for the BSP's INIT and SIPI, as on a PC. Every step prints a line
//! (the BSP prints; the AP reports through shared memory); a mismatch
//! fails the guest, and only the BSP ends it.
//!
//! 1. BSP: CPUID.1:EBX[31:24] (initial APIC ID) 0, the xAPIC's ID 0,
//!    IA32_APIC_BASE 0xfee0_0900 (BSP); the APIC page mapped uncached, the
//!    APIC enabled (SVR 0x1ff), LDR 1 << 24 (flat model).
//! 2. The AP started the SDM's way (Vol. 3A §10.4.4.1 "Typical BSP
//!    Initialization Sequence", §12.6.1 "Interrupt Command Register"): a
//!    real-mode trampoline copied to [`TRAMPOLINE`] (SIPI vector 0x01),
//!    INIT, 10 ms, SIPI, 200 µs, SIPI; the trampoline goes to protected
//!    mode, then to long mode with the BSP's CR3, CR4, EFER and CR0, and
//!    calls `ap_main` on a stack of its own. The AP must come up within a
//!    second.
//! 3. AP: initial APIC ID 1, APIC ID 1, IA32_APIC_BASE 0xfee0_0800 (not
//!    BSP); it enables its APIC, sets LDR 2 << 24 and loads the BSP's IDT
//!    (the handlers count per APIC ID).
//! 4. IPIs: the AP sends fixed vector 0x40 to APIC 0; the BSP 0x41 to
//!    APIC 1, which wakes the AP from `sti; hlt`; a broadcast to all
//!    excluding self (0x42) and a logical, flat-model IPI to destination
//!    0x02 (0x43) reach the AP only.
//! 5. Timers: each vCPU runs its own periodic APIC timer on its own vector
//!    (0x61, 0x62; neither may take the other's) (1 ms: TMICT
//!    1,000,000 at divide 1, KVM's APIC clock being 1 GHz) while the BSP
//!    measures 50 ms on the VMM's PIT: each must count 10 to 60 (the
//!    `lapic` guest's bounds: a tick that comes while the vCPU does not
//!    run is merged with the next, and here the two vCPUs share one CPU).
//! 6. Shared memory both ways: a word and a page written by one vCPU and
//!    read by the other; a spinlock taken with `lock xchg` guards a
//!    counter that each vCPU increments 10,000 times: 20,000 at the end.
//! 7. The AP halts with interrupts off; the BSP prints PASS and exits.
//!
//! The waits for the other vCPU are bounded by the TSC, measured against
//! the PIT first: under Mojito the vCPUs share one control-domain CPU and
//! the other vCPU runs after this one's tick (10 ms); on Linux after the
//! host back end's 1 ms kick.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use core::arch::{asm, global_asm};
    use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
    use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
    use guests::apic::{APIC_PAGE, PIT_50_MS, PIT_HZ, map_apic, pit_wait, xapic_read, xapic_write};
    use guests::cpu::{MSR_EFER, cpuid, rdmsr, rdtsc_fenced};
    use guests::idt::{self, Gate};
    use guests::pattern::word_at;
    use guests::port::exit;
    use guests::{BootInfo, fail, println};

    /// Where the AP's real-mode trampoline is copied: a page below 1 MiB
    /// that guest RAM covers and nothing else uses (the image starts at
    /// `guests::IMAGE_BASE`, 0x8000, and the boot path's real-mode stack
    /// grows down from there, only a few bytes deep). SIPI vector 0x01:
    /// the AP starts at CS = 0x0100, IP = 0.
    const TRAMPOLINE: u64 = 0x1000;
    const SIPI_VECTOR: u32 = (TRAMPOLINE >> 12) as u32;

    /// GDT selectors of the trampoline's table (the boot path's layout).
    const CODE32: u16 = 0x08;
    const DATA: u16 = 0x10;
    const CODE64: u16 = 0x18;

    /// IA32_APIC_BASE and its bits.
    const MSR_APIC_BASE: u32 = 0x1b;
    const APIC_BASE_BSP: u64 = 1 << 8;
    const APIC_BASE_ENABLE: u64 = 1 << 11;

    /// xAPIC register offsets (SDM Vol. 3A Table 12-1).
    const ID: u32 = 0x20;
    const EOI: u32 = 0xb0;
    const LDR: u32 = 0xd0;
    const DFR: u32 = 0xe0;
    const SVR: u32 = 0xf0;
    const ICR_LOW: u32 = 0x300;
    const ICR_HIGH: u32 = 0x310;
    const LVT_TIMER: u32 = 0x320;
    const TMICT: u32 = 0x380;
    const TDCR: u32 = 0x3e0;

    /// SVR: software enable, spurious vector 0xff.
    const SVR_ENABLE: u32 = 1 << 8;
    const SPURIOUS: u8 = 0xff;
    /// ICR fields (SDM Vol. 3A §12.6.1): delivery modes (bits 10:8), the
    /// logical destination mode (bit 11), delivery status (bit 12), level
    /// assert (bit 14), the shorthand "all excluding self" (bits 19:18).
    const ICR_FIXED: u32 = 0b000 << 8;
    /// Delivery mode NMI (the vector is ignored, SDM Vol. 3A 11.6.1).
    const ICR_NMI: u32 = 0b100 << 8;
    /// The NMI's vector (SDM Vol. 3A 6.7).
    const NMI: u8 = 2;
    const ICR_INIT: u32 = 0b101 << 8;
    const ICR_STARTUP: u32 = 0b110 << 8;
    const ICR_LOGICAL: u32 = 1 << 11;
    const ICR_PENDING: u32 = 1 << 12;
    const ICR_ASSERT: u32 = 1 << 14;
    const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;
    /// DFR's flat model (its reset value).
    const DFR_FLAT: u32 = 0xffff_ffff;
    /// The periodic timer mode (LVT bits 18:17), the mask bit, divide by 1.
    const TIMER_PERIODIC: u32 = 0b01 << 17;
    const LVT_MASKED: u32 = 1 << 16;
    const DIVIDE_BY_1: u32 = 0xb;
    /// 1 ms of KVM's 1 GHz APIC timer clock.
    const TIMER_1_MS: u32 = 1_000_000;

    /// The vectors this guest uses.
    const V_AP_TO_BSP: u8 = 0x40;
    const V_BSP_TO_AP: u8 = 0x41;
    const V_ALL_BUT_SELF: u8 = 0x42;
    const V_LOGICAL: u8 = 0x43;
    const V_TIMER: u8 = 0x61;
    /// The AP's timer vector: two timers that were one would show in the
    /// vectors counted.
    const V_AP_TIMER: u8 = 0x62;

    /// The most APIC IDs the interrupt counts keep apart.
    const MAX_APICS: usize = 8;
    /// The AP's APIC ID (vCPU 1).
    const AP: usize = 1;
    /// Each vCPU's increments under the spinlock.
    const INCREMENTS: u64 = 10_000;

    /// Interrupts taken, per APIC ID and vector.
    static COUNTS: [[AtomicU32; 256]; MAX_APICS] =
        [const { [const { AtomicU32::new(0) }; 256] }; MAX_APICS];
    /// Interrupts taken on an APIC ID beyond `MAX_APICS`.
    static STRAY: AtomicU32 = AtomicU32::new(0);

    /// What the BSP hands the trampoline (32-bit reads from 32-bit code)
    /// and the AP's first 64-bit instructions.
    static AP_CR0: AtomicU32 = AtomicU32::new(0);
    static AP_CR3: AtomicU32 = AtomicU32::new(0);
    static AP_CR4: AtomicU32 = AtomicU32::new(0);
    static AP_EFER: AtomicU32 = AtomicU32::new(0);
    static AP_STACK_TOP: AtomicU64 = AtomicU64::new(0);

    /// The AP's stack.
    #[repr(C, align(16))]
    struct Stack([u8; 16384]);
    static mut AP_STACK: Stack = Stack([0; 16384]);

    /// What the AP reports.
    static AP_ALIVE: AtomicU32 = AtomicU32::new(0);
    static AP_CPUID_ID: AtomicU32 = AtomicU32::new(u32::MAX);
    static AP_APIC_ID: AtomicU32 = AtomicU32::new(u32::MAX);
    static AP_APIC_BASE: AtomicU64 = AtomicU64::new(0);
    /// The AP passed its checks and enabled its APIC.
    static AP_READY: AtomicBool = AtomicBool::new(false);
    /// A failed check of the AP ([`ApError`] as a number, 0: none) and the
    /// value it saw.
    static AP_ERROR: AtomicU32 = AtomicU32::new(0);
    static AP_ERROR_VALUE: AtomicU64 = AtomicU64::new(0);

    /// The step the BSP asks the AP to do ([`Stage`]), and the last one the
    /// AP finished.
    static STAGE: AtomicU32 = AtomicU32::new(0);
    static AP_DONE: AtomicU32 = AtomicU32::new(0);
    /// Step 5: the AP's timer runs; the BSP has measured.
    static AP_TIMER_ON: AtomicBool = AtomicBool::new(false);
    static TIMERS_STOP: AtomicBool = AtomicBool::new(false);
    /// Step 6: the word and the pages each vCPU writes for the other.
    static MAILBOX: AtomicU32 = AtomicU32::new(0);
    /// The AP is about to halt with interrupts off for step 7.
    static AP_NMI_WAIT: AtomicBool = AtomicBool::new(false);
    #[repr(C, align(4096))]
    struct Page([u64; 512]);
    static mut BSP_PAGE: Page = Page([0; 512]);
    static mut AP_PAGE: Page = Page([0; 512]);
    /// Step 6: the spinlock (0 free, 1 held) and the counter it guards.
    static LOCK: AtomicU32 = AtomicU32::new(0);
    static mut COUNTER: u64 = 0;

    /// The steps the AP does when the BSP asks.
    #[derive(Clone, Copy)]
    #[repr(u32)]
    enum Stage {
        /// Send 0x40 to APIC 0, then halt until 0x41, 0x42 and 0x43 came.
        Ipis = 1,
        /// Run the periodic timer until `TIMERS_STOP`.
        Timer = 2,
        /// Read the BSP's word and page, write its own.
        Shared = 3,
        /// `INCREMENTS` under the spinlock.
        Spinlock = 4,
        /// Halt with interrupts off until an NMI wakes it.
        Nmi = 5,
        /// Halt with interrupts off.
        Halt = 6,
    }

    /// The AP's failed checks, by number.
    #[derive(Clone, Copy)]
    #[repr(u32)]
    enum ApError {
        CpuidId = 1,
        ApicId = 2,
        ApicBase = 3,
        Svr = 4,
        Mailbox = 5,
        BspPage = 6,
    }

    const MAILBOX_BSP: u32 = 0x5a5a_0001;

    // The AP's trampoline, copied to `TRAMPOLINE` (so its own addresses
    // are `TRAMPOLINE` + the offset from `smp_trampoline_start`), and the
    // AP's first 64-bit code, which stays in the image.
    //
    // Real mode (SDM Vol. 3A §10.9.1 "Switching to Protected Mode"): DS =
    // CS, LGDT, CR0.PE, a far JMP to 32-bit code. Protected mode (§10.8.5
    // "Initializing IA-32e Mode"): CR4 (PAE), CR3, EFER (LME), CR0 (PG),
    // all the BSP's, then a far JMP into the 64-bit code segment. The GDT
    // is the boot path's layout and stays at `TRAMPOLINE`.
    global_asm!(
        r#"
        .pushsection .text.smp_trampoline, "ax"
        .balign 16
        .code16
        .global smp_trampoline_start
    smp_trampoline_start:
        cli
        cld
        mov ax, cs
        mov ds, ax
        // lgdt [smp_gdtr - smp_trampoline_start] (0F 01 /2, disp16: the
        // assembler takes no label difference in a memory operand)
        .byte 0x0f, 0x01, 0x16
        .word smp_gdtr - smp_trampoline_start
        mov eax, cr0
        or eax, 1
        mov cr0, eax
        // jmp far {code32}:protected (66 EA ptr16:32)
        .byte 0x66, 0xea
        .long {base} + (smp_protected - smp_trampoline_start)
        .word {code32}

        .code32
    smp_protected:
        mov ax, {data}
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        mov ss, ax
        mov eax, dword ptr [{cr4}]
        mov cr4, eax
        mov eax, dword ptr [{cr3}]
        mov cr3, eax
        mov ecx, {msr_efer}
        rdmsr
        or eax, dword ptr [{efer}]
        wrmsr
        mov eax, dword ptr [{cr0}]
        mov cr0, eax
        // jmp far {code64}:smp_long_mode (EA ptr16:32)
        .byte 0xea
        .long smp_long_mode
        .word {code64}

        .balign 8
    smp_gdt:
        .quad 0
        .quad 0x00cf9a000000ffff    // {code32}: 32-bit code
        .quad 0x00cf92000000ffff    // {data}: data
        .quad 0x00af9a000000ffff    // {code64}: 64-bit code
    smp_gdt_end:
    smp_gdtr:
        .word smp_gdt_end - smp_gdt - 1
        .long {base} + (smp_gdt - smp_trampoline_start)
        .global smp_trampoline_end
    smp_trampoline_end:
        .popsection

        .pushsection .text.smp_ap, "ax"
        .code64
    smp_long_mode:
        mov ax, {data}
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov rsp, qword ptr [rip + {stack_top}]
        call {ap_main}
        ud2
        .popsection
        "#,
        base = const TRAMPOLINE,
        code32 = const CODE32,
        data = const DATA,
        code64 = const CODE64,
        msr_efer = const MSR_EFER,
        cr0 = sym AP_CR0,
        cr3 = sym AP_CR3,
        cr4 = sym AP_CR4,
        efer = sym AP_EFER,
        stack_top = sym AP_STACK_TOP,
        ap_main = sym ap_main,
    );

    unsafe extern "C" {
        static smp_trampoline_start: u8;
        static smp_trampoline_end: u8;
    }

    static mut IDT: [Gate; 256] = [Gate::MISSING; 256];

    // One stub per vector, as in the `lapic` guest: the vector to
    // `smp_interrupt`, every caller-saved register kept, RSP 16-aligned at
    // the call.
    global_asm!(
        ".macro smp_stub vector",
        ".global smp_stub_\\vector",
        "smp_stub_\\vector:",
        "push rdi",
        "mov edi, \\vector",
        "jmp smp_common",
        ".endm",
        "smp_common:",
        "push rax",
        "push rcx",
        "push rdx",
        "push rsi",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "call {handler}",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rax",
        "pop rdi",
        "iretq",
        "smp_stub 2",
        "smp_stub 0x40",
        "smp_stub 0x41",
        "smp_stub 0x42",
        "smp_stub 0x43",
        "smp_stub 0x61",
        "smp_stub 0x62",
        "smp_stub 0xff",
        handler = sym smp_interrupt,
    );

    unsafe extern "C" {
        fn smp_stub_2();
        fn smp_stub_0x40();
        fn smp_stub_0x41();
        fn smp_stub_0x42();
        fn smp_stub_0x43();
        fn smp_stub_0x61();
        fn smp_stub_0x62();
        fn smp_stub_0xff();
    }

    /// Every interrupt, on either vCPU: counted under the APIC ID of the
    /// vCPU that took it, then EOI (not for the spurious vector).
    extern "C" fn smp_interrupt(vector: u64) {
        let v = (vector & 0xff) as u8;
        match COUNTS.get(apic_id() as usize) {
            Some(counts) => {
                counts[usize::from(v)].fetch_add(1, Relaxed);
            }
            None => {
                STRAY.fetch_add(1, Relaxed);
            }
        }
        // The spurious vector and NMIs take no EOI.
        if v != SPURIOUS && v != NMI {
            apic_write(EOI, 0);
        }
    }

    /// Interrupts of vector `v` taken by APIC `id`.
    fn count(id: usize, v: u8) -> u32 {
        COUNTS[id][usize::from(v)].load(Relaxed)
    }

    /// Each vCPU reaches its own APIC on the one page (`map_apic`, done by
    /// the BSP before any other vCPU runs).
    fn apic_read(reg: u32) -> u32 {
        xapic_read(reg)
    }

    fn apic_write(reg: u32, value: u32) {
        xapic_write(reg, value);
    }

    /// This vCPU's APIC ID (xAPIC ID register bits 31:24).
    fn apic_id() -> u32 {
        apic_read(ID) >> 24
    }

    /// The initial APIC ID CPUID reports (CPUID.1:EBX bits 31:24).
    fn cpuid_apic_id() -> u32 {
        cpuid(1, 0).ebx >> 24
    }

    /// Enables this vCPU's APIC (SVR) in the flat logical model with LDR
    /// bit `24 + id`; returns the SVR read back.
    fn enable_apic(id: u32) -> u32 {
        apic_write(SVR, SVR_ENABLE | u32::from(SPURIOUS));
        apic_write(DFR, DFR_FLAT);
        apic_write(LDR, 1 << (24 + id));
        apic_read(SVR)
    }

    /// Sends an IPI: the destination field (ICR bits 63:56) first, as the
    /// low half's write sends it; then waits (bounded) for the delivery
    /// status to go idle.
    fn send_ipi(destination: u32, low: u32) {
        apic_write(ICR_HIGH, destination << 24);
        apic_write(ICR_LOW, low);
        for _ in 0..1000 {
            if apic_read(ICR_LOW) & ICR_PENDING == 0 {
                return;
            }
            pause();
        }
    }

    fn pause() {
        // SAFETY: PAUSE is a hint; no `nomem`, so the block is a compiler
        // barrier and what the other vCPU writes is read again.
        unsafe { asm!("pause", options(nostack, preserves_flags)) };
    }

    fn cli() {
        // SAFETY: CLI only masks interrupts.
        unsafe { asm!("cli", options(nomem, nostack)) };
    }

    fn sti() {
        // SAFETY: the IDT handles every vector this guest raises.
        unsafe { asm!("sti", options(nomem, nostack)) };
    }

    /// With interrupts on, PAUSE until `done()` holds. (Interrupts stay on
    /// through the whole wait: kvm-pvm, this machine's KVM, takes them only
    /// between batches of the instructions it emulates.)
    fn sti_pause_until(mut done: impl FnMut() -> bool) {
        sti();
        while !done() {
            pause();
        }
        cli();
    }

    /// `sti; hlt`: sleeps until an interrupt (STI's shadow covers the HLT,
    /// so one that is already pending wakes it instead of slipping in).
    fn sti_hlt() {
        // SAFETY: as in `sti_pause`.
        unsafe { asm!("sti", "hlt", "cli", options(nostack)) };
    }

    /// Loads the IDT: the library's exception gates (copied by the BSP)
    /// and the stubs above.
    fn load_idt() {
        let idtr = idt::Pointer {
            limit: (size_of::<[Gate; 256]>() - 1) as u16,
            base: addr_of!(IDT) as u64,
        };
        // SAFETY: the IDT is static and filled by `install_idt` before any
        // vCPU loads it.
        unsafe { asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack, preserves_flags)) };
    }

    /// Fills the IDT (BSP, before the AP starts): the library's exception
    /// gates, so a fault still reports itself, and the stubs.
    fn install_idt() {
        let mut current = idt::Pointer { limit: 0, base: 0 };
        // SAFETY: SIDT stores the 10-byte IDTR into `current`.
        unsafe { asm!("sidt [{}]", in(reg) &mut current, options(nostack, preserves_flags)) };
        let cs: u16;
        // SAFETY: reads CS.
        unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
        let stubs: [(u8, unsafe extern "C" fn()); 8] = [
            (NMI, smp_stub_2),
            (V_AP_TO_BSP, smp_stub_0x40),
            (V_BSP_TO_AP, smp_stub_0x41),
            (V_ALL_BUT_SELF, smp_stub_0x42),
            (V_LOGICAL, smp_stub_0x43),
            (V_TIMER, smp_stub_0x61),
            (V_AP_TIMER, smp_stub_0x62),
            (SPURIOUS, smp_stub_0xff),
        ];
        // SAFETY: only the BSP runs yet, interrupts off: nothing else uses
        // the table; the library's IDT (`current`) has `limit + 1` bytes.
        unsafe {
            let idt = &mut *addr_of_mut!(IDT);
            let exceptions = (usize::from(current.limit) + 1) / size_of::<Gate>();
            let old = core::slice::from_raw_parts(current.base as *const Gate, exceptions);
            idt[..old.len()].copy_from_slice(old);
            for (v, stub) in stubs {
                idt[usize::from(v)] = Gate::interrupt(stub as usize as u64, cs);
            }
        }
        load_idt();
    }

    fn cr(n: u8) -> u64 {
        let value: u64;
        // SAFETY: reading a control register has no side effect.
        unsafe {
            match n {
                0 => asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)),
                3 => asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)),
                _ => asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)),
            }
        }
        value
    }

    /// TSC ticks per millisecond, measured against the PIT (step 1).
    static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);

    /// Why a wait for the AP ended.
    enum Waited {
        Done,
        TimedOut,
        ApFailed(u32, u64),
    }

    /// BSP: with interrupts on, waits until `done()` holds, the AP reports
    /// a failed check, or `ms` milliseconds of the TSC have passed.
    fn wait_for(ms: u64, done: impl Fn() -> bool) -> Waited {
        let deadline = rdtsc_fenced() + ms * TSC_PER_MS.load(Relaxed);
        let mut waited = Waited::Done;
        sti_pause_until(|| {
            if done() {
                return true;
            }
            let e = AP_ERROR.load(Acquire);
            if e != 0 {
                waited = Waited::ApFailed(e, AP_ERROR_VALUE.load(Relaxed));
                return true;
            }
            if rdtsc_fenced() > deadline {
                waited = Waited::TimedOut;
                return true;
            }
            false
        });
        waited
    }

    /// BSP: `wait_for` a second, failing the guest with `what` if it did
    /// not come.
    fn expect(what: &str, done: impl Fn() -> bool) {
        match wait_for(1000, done) {
            Waited::Done => {}
            Waited::TimedOut => fail!("{what}: not within a second"),
            Waited::ApFailed(e, v) => {
                fail!("{what}: the AP failed: {} ({v:#x})", ap_error_text(e))
            }
        }
    }

    fn ap_error_text(e: u32) -> &'static str {
        match e {
            x if x == ApError::CpuidId as u32 => "CPUID.1:EBX[31:24] is not 1",
            x if x == ApError::ApicId as u32 => "its xAPIC ID register does not say 1",
            x if x == ApError::ApicBase as u32 => "IA32_APIC_BASE is not 0xfee00800",
            x if x == ApError::Svr as u32 => "its SVR did not keep 0x1ff",
            x if x == ApError::Mailbox as u32 => "it did not read the BSP's word",
            x if x == ApError::BspPage as u32 => "it did not read the BSP's page",
            _ => "an unknown check",
        }
    }

    /// Asks the AP for `stage` and waits until it has done it.
    fn ap_step(stage: Stage, what: &str) {
        STAGE.store(stage as u32, Release);
        expect(what, || AP_DONE.load(Acquire) == stage as u32);
    }

    /// Takes the spinlock: `lock xchg` until it held 0.
    fn lock() {
        loop {
            let mut old: u32 = 1;
            // SAFETY: an atomic exchange on a static `u32`; no `nomem`, so
            // the block orders the guarded accesses after it.
            unsafe {
                asm!("lock xchg dword ptr [{}], {:e}", in(reg) LOCK.as_ptr(), inout(reg) old,
                    options(nostack, preserves_flags))
            };
            if old == 0 {
                return;
            }
            while LOCK.load(Relaxed) != 0 {
                pause();
            }
        }
    }

    fn unlock() {
        LOCK.store(0, Release);
    }

    /// `INCREMENTS` read-add-writes of `COUNTER`, each under the lock.
    fn count_under_lock() {
        for _ in 0..INCREMENTS {
            lock();
            // SAFETY: the lock gives this vCPU the counter alone; volatile
            // so each increment is a real read and write of memory.
            unsafe {
                let v = read_volatile(addr_of!(COUNTER));
                write_volatile(addr_of_mut!(COUNTER), v + 1);
            }
            unlock();
        }
    }

    /// The AP records a failed check and halts; the BSP reports it.
    fn ap_fail(e: ApError, value: u64) -> ! {
        AP_ERROR_VALUE.store(value, Relaxed);
        AP_ERROR.store(e as u32, Release);
        loop {
            // SAFETY: halts with interrupts off for good.
            unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
        }
    }

    /// The AP waits (interrupts on, PAUSE) until the BSP asks for `stage`.
    fn ap_wait_stage(stage: Stage) {
        sti_pause_until(|| STAGE.load(Acquire) == stage as u32);
    }

    /// The AP's 64-bit entry, from the trampoline, on its own stack.
    extern "C" fn ap_main() -> ! {
        load_idt();
        let cpuid_id = cpuid_apic_id();
        AP_CPUID_ID.store(cpuid_id, Relaxed);
        let id = apic_id();
        AP_APIC_ID.store(id, Relaxed);
        let base = rdmsr(MSR_APIC_BASE);
        AP_APIC_BASE.store(base, Relaxed);
        AP_ALIVE.fetch_add(1, Release);
        if cpuid_id != 1 {
            ap_fail(ApError::CpuidId, u64::from(cpuid_id));
        }
        if id != 1 {
            ap_fail(ApError::ApicId, u64::from(id));
        }
        if base != APIC_PAGE | APIC_BASE_ENABLE {
            ap_fail(ApError::ApicBase, base);
        }
        let svr = enable_apic(id);
        if svr & 0x1ff != 0x1ff {
            ap_fail(ApError::Svr, u64::from(svr));
        }
        AP_READY.store(true, Release);

        // Step 4.
        ap_wait_stage(Stage::Ipis);
        send_ipi(0, ICR_FIXED | ICR_ASSERT | u32::from(V_AP_TO_BSP));
        while [V_BSP_TO_AP, V_ALL_BUT_SELF, V_LOGICAL]
            .iter()
            .any(|&v| count(AP, v) == 0)
        {
            sti_hlt();
        }
        AP_DONE.store(Stage::Ipis as u32, Release);

        // Step 5.
        ap_wait_stage(Stage::Timer);
        start_timer(V_AP_TIMER);
        AP_TIMER_ON.store(true, Release);
        sti_pause_until(|| TIMERS_STOP.load(Acquire));
        stop_timer();
        AP_DONE.store(Stage::Timer as u32, Release);

        // Step 6.
        ap_wait_stage(Stage::Shared);
        let word = MAILBOX.load(Acquire);
        if word != MAILBOX_BSP {
            ap_fail(ApError::Mailbox, u64::from(word));
        }
        // SAFETY: the BSP wrote its page before asking for this step and
        // does not touch it now; the AP's page is the AP's until it says
        // it is done.
        unsafe {
            let bsp = &*addr_of!(BSP_PAGE);
            for (i, w) in bsp.0.iter().enumerate() {
                if read_volatile(w) != word_at(&raw const *w as u64) {
                    ap_fail(ApError::BspPage, i as u64);
                }
            }
            let ap = &mut *addr_of_mut!(AP_PAGE);
            for w in ap.0.iter_mut() {
                let addr = &raw mut *w as u64;
                write_volatile(w, !word_at(addr));
            }
        }
        MAILBOX.store(!word, Release);
        AP_DONE.store(Stage::Shared as u32, Release);

        // Step 6, the spinlock.
        ap_wait_stage(Stage::Spinlock);
        count_under_lock();
        AP_DONE.store(Stage::Spinlock as u32, Release);

        // Step 7: only an NMI ends this HLT (IF = 0).
        ap_wait_stage(Stage::Nmi);
        AP_NMI_WAIT.store(true, Release);
        while count(AP, NMI) == 0 {
            // SAFETY: halts with interrupts off; the handler counts the NMI.
            unsafe { asm!("cli", "hlt", options(nostack)) };
        }
        AP_DONE.store(Stage::Nmi as u32, Release);

        // Step 8.
        ap_wait_stage(Stage::Halt);
        AP_DONE.store(Stage::Halt as u32, SeqCst);
        loop {
            // SAFETY: halts with interrupts off for good.
            unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
        }
    }

    /// This vCPU's periodic APIC timer on `vector`: 1 ms, divide by 1.
    fn start_timer(vector: u8) {
        apic_write(TDCR, DIVIDE_BY_1);
        apic_write(LVT_TIMER, u32::from(vector) | TIMER_PERIODIC);
        apic_write(TMICT, TIMER_1_MS);
    }

    fn stop_timer() {
        apic_write(TMICT, 0);
        apic_write(LVT_TIMER, LVT_MASKED);
    }

    /// Step 1.
    fn bsp_identity() {
        let leaf1 = cpuid(1, 0);
        if leaf1.edx & (1 << 9) == 0 {
            fail!("CPUID.1:EDX does not offer the APIC ({:#x})", leaf1.edx);
        }
        let cpuid_id = cpuid_apic_id();
        if cpuid_id != 0 {
            fail!("bsp: CPUID.1:EBX[31:24] is {cpuid_id}, not 0");
        }
        let base = rdmsr(MSR_APIC_BASE);
        if base != APIC_PAGE | APIC_BASE_ENABLE | APIC_BASE_BSP {
            fail!("bsp: IA32_APIC_BASE is {base:#x}, not 0xfee00900");
        }
        map_apic();
        let id = apic_id();
        if id != 0 {
            fail!(
                "bsp: xAPIC ID register {:#x}: APIC ID {id}, not 0",
                apic_read(ID)
            );
        }
        let svr = enable_apic(0);
        if svr & 0x1ff != 0x1ff {
            fail!("bsp: SVR reads {svr:#x} after writing 0x1ff");
        }
        println!(
            "bsp: initial APIC ID 0, APIC ID 0, IA32_APIC_BASE 0xfee00900 (BSP); SVR 0x1ff, LDR 0x1000000"
        );
        // The TSC against 10 ms of the PIT, for the bounded waits.
        let t0 = rdtsc_fenced();
        pit_wait((PIT_HZ / 100) as u16, false);
        let per_ms = ((rdtsc_fenced() - t0) / 10).max(1);
        TSC_PER_MS.store(per_ms, Relaxed);
    }

    /// Step 2: the trampoline, INIT, SIPI, SIPI.
    fn start_ap() {
        // Only the symbols' addresses are used.
        let (start, end) = (
            addr_of!(smp_trampoline_start) as u64,
            addr_of!(smp_trampoline_end) as u64,
        );
        let len = end - start;
        if len > 4096 || TRAMPOLINE + 4096 > guests::IMAGE_BASE {
            fail!("trampoline: {len} bytes at {TRAMPOLINE:#x} overlap the image or exceed a page");
        }
        let (cr0, cr3, cr4) = (cr(0), cr(3), cr(4));
        if cr3 >> 32 != 0 {
            fail!("trampoline: CR3 {cr3:#x} lies above 4 GiB, out of the AP's 32-bit reach");
        }
        const CR4_PCIDE: u64 = 1 << 17;
        const EFER_LME_NXE: u64 = (1 << 8) | (1 << 11);
        AP_CR0.store(cr0 as u32, Relaxed);
        AP_CR3.store(cr3 as u32, Relaxed);
        // PCIDE may be set in long mode only, and the boot path leaves it
        // clear; never hand it to 32-bit code.
        AP_CR4.store((cr4 & !CR4_PCIDE) as u32, Relaxed);
        AP_EFER.store((rdmsr(MSR_EFER) & EFER_LME_NXE) as u32, Relaxed);
        AP_STACK_TOP.store(
            addr_of!(AP_STACK) as u64 + size_of::<Stack>() as u64,
            Relaxed,
        );
        // SAFETY: `TRAMPOLINE`'s page is guest RAM (identity-mapped) that
        // nothing else uses (checked above); the source is the image's
        // own code.
        unsafe {
            core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE as *mut u8, len as usize)
        };
        // SDM Vol. 3A §10.4.4.1: INIT, 10 ms, SIPI, 200 µs, SIPI.
        send_ipi(AP as u32, ICR_INIT | ICR_ASSERT);
        pit_wait((PIT_HZ / 100) as u16, false);
        send_ipi(AP as u32, ICR_STARTUP | ICR_ASSERT | SIPI_VECTOR);
        pit_wait((PIT_HZ / 5000) as u16, false);
        send_ipi(AP as u32, ICR_STARTUP | ICR_ASSERT | SIPI_VECTOR);
        match wait_for(1000, || AP_ALIVE.load(Acquire) > 0) {
            Waited::Done | Waited::ApFailed(..) => {}
            Waited::TimedOut => fail!("init-sipi: the AP did not come up within a second"),
        }
        if AP_ALIVE.load(Acquire) != 1 {
            fail!("init-sipi: the AP came up {} times", AP_ALIVE.load(Acquire));
        }
        println!(
            "init-sipi: trampoline at {TRAMPOLINE:#x} ({len} bytes, SIPI vector {SIPI_VECTOR:#04x}), \
             CR3 {cr3:#x}; INIT, 10 ms, SIPI, 200 us, SIPI: the AP came up"
        );
    }

    /// Step 3: what the AP found.
    fn ap_identity() {
        let waited = wait_for(1000, || AP_READY.load(Acquire));
        let (cpuid_id, id, base) = (
            AP_CPUID_ID.load(Relaxed),
            AP_APIC_ID.load(Relaxed),
            AP_APIC_BASE.load(Relaxed),
        );
        match waited {
            Waited::Done => {}
            Waited::TimedOut => fail!("ap: it did not enable its APIC within a second"),
            Waited::ApFailed(e, v) => fail!(
                "ap: {} (initial APIC ID {cpuid_id}, APIC ID {id}, IA32_APIC_BASE {base:#x}; \
                 value {v:#x})",
                ap_error_text(e)
            ),
        }
        println!(
            "ap: initial APIC ID {cpuid_id}, APIC ID {id}, IA32_APIC_BASE {base:#x} (not BSP); SVR 0x1ff, LDR 0x2000000, the BSP's IDT"
        );
    }

    /// Step 4.
    fn ipis() {
        STAGE.store(Stage::Ipis as u32, Release);
        expect("ipi: 0x40 from the AP to APIC 0", || {
            count(0, V_AP_TO_BSP) == 1
        });
        send_ipi(AP as u32, ICR_FIXED | ICR_ASSERT | u32::from(V_BSP_TO_AP));
        expect("ipi: 0x41 from the BSP to APIC 1", || {
            count(AP, V_BSP_TO_AP) == 1
        });
        println!("ipi: the AP's 0x40 reached APIC 0; the BSP's 0x41 woke the AP's sti; hlt");
        send_ipi(
            0,
            ICR_FIXED | ICR_ASSERT | ICR_ALL_BUT_SELF | u32::from(V_ALL_BUT_SELF),
        );
        expect("ipi: 0x42 to all excluding self", || {
            count(AP, V_ALL_BUT_SELF) == 1
        });
        send_ipi(
            0x02,
            ICR_FIXED | ICR_ASSERT | ICR_LOGICAL | u32::from(V_LOGICAL),
        );
        expect("ipi: 0x43 to logical destination 0x02", || {
            count(AP, V_LOGICAL) == 1
        });
        expect("ipi: the AP's end of the step", || {
            AP_DONE.load(Acquire) == Stage::Ipis as u32
        });
        // Whatever was pending for the BSP is taken by now.
        wait_for(5, || false);
        let bsp: [u32; 4] =
            [V_AP_TO_BSP, V_BSP_TO_AP, V_ALL_BUT_SELF, V_LOGICAL].map(|v| count(0, v));
        let ap: [u32; 4] =
            [V_AP_TO_BSP, V_BSP_TO_AP, V_ALL_BUT_SELF, V_LOGICAL].map(|v| count(AP, v));
        if bsp != [1, 0, 0, 0] || ap != [0, 1, 1, 1] {
            fail!(
                "ipi: 0x40..0x43 taken by the BSP {bsp:?}, by the AP {ap:?} (want [1, 0, 0, 0], [0, 1, 1, 1])"
            );
        }
        println!(
            "ipi: all excluding self (0x42) and logical destination 0x02 (0x43) reached the AP only"
        );
    }

    /// Step 5.
    fn timers() {
        STAGE.store(Stage::Timer as u32, Release);
        expect("timers: the AP's timer", || AP_TIMER_ON.load(Acquire));
        start_timer(V_TIMER);
        let (bsp0, ap0) = (count(0, V_TIMER), count(AP, V_AP_TIMER));
        pit_wait(PIT_50_MS, true);
        let (bsp, ap) = (count(0, V_TIMER) - bsp0, count(AP, V_AP_TIMER) - ap0);
        stop_timer();
        TIMERS_STOP.store(true, Release);
        expect("timers: the AP's end of the step", || {
            AP_DONE.load(Acquire) == Stage::Timer as u32
        });
        println!(
            "timers: BSP {bsp} (vector {V_TIMER:#x}), AP {ap} ({V_AP_TIMER:#x}) periodic interrupts \
             in 50 ms of the PIT (1 ms each)"
        );
        if !(10..=60).contains(&bsp) || !(10..=60).contains(&ap) {
            fail!("timers: BSP {bsp}, AP {ap} interrupts in 50 ms, want 50 each (10 to 60)");
        }
        // Each vCPU's timer is its own: neither took the other's vector.
        let (crossed_bsp, crossed_ap) = (count(0, V_AP_TIMER), count(AP, V_TIMER));
        if crossed_bsp != 0 || crossed_ap != 0 {
            fail!(
                "timers: the BSP took {crossed_bsp} of the AP's timer interrupts, the AP \
                 {crossed_ap} of the BSP's"
            );
        }
    }

    /// Step 6.
    fn shared_memory() {
        // SAFETY: the AP reads the BSP's page only once asked, after this.
        unsafe {
            let page = &mut *addr_of_mut!(BSP_PAGE);
            for w in page.0.iter_mut() {
                let addr = &raw mut *w as u64;
                write_volatile(w, word_at(addr));
            }
        }
        MAILBOX.store(MAILBOX_BSP, Release);
        ap_step(Stage::Shared, "shared memory: the AP's answer");
        let word = MAILBOX.load(Acquire);
        if word != !MAILBOX_BSP {
            fail!(
                "shared memory: the AP's word reads {word:#x}, want {:#x}",
                !MAILBOX_BSP
            );
        }
        // SAFETY: the AP is done with its page.
        unsafe {
            let page = &*addr_of!(AP_PAGE);
            for w in &page.0 {
                let addr = &raw const *w as u64;
                let got = read_volatile(w);
                if got != !word_at(addr) {
                    fail!("shared memory: the AP's page at {addr:#x} reads {got:#x}");
                }
            }
        }
        println!("shared memory: a word and a page written by each vCPU read back by the other");

        STAGE.store(Stage::Spinlock as u32, Release);
        count_under_lock();
        match wait_for(5000, || AP_DONE.load(Acquire) == Stage::Spinlock as u32) {
            Waited::Done => {}
            _ => fail!("spinlock: the AP did not finish its increments within 5 s"),
        }
        // SAFETY: both vCPUs are done with the counter.
        let total = unsafe { read_volatile(addr_of!(COUNTER)) };
        if total != 2 * INCREMENTS {
            fail!(
                "spinlock: the counter reads {total}, want {}",
                2 * INCREMENTS
            );
        }
        println!("spinlock: lock xchg; {INCREMENTS} increments from each vCPU make {total}");
    }

    /// Step 7: an NMI from the BSP wakes the AP from HLT with interrupts
    /// off, and reaches only it.
    fn nmi() {
        STAGE.store(Stage::Nmi as u32, Release);
        expect("nmi: the AP about to halt", || AP_NMI_WAIT.load(Acquire));
        // Into its HLT first.
        wait_for(2, || false);
        send_ipi(AP as u32, ICR_NMI | ICR_ASSERT);
        expect("nmi: the AP woken from cli; hlt by the BSP's NMI", || {
            AP_DONE.load(Acquire) == Stage::Nmi as u32
        });
        wait_for(5, || false);
        let (bsp, ap) = (count(0, NMI), count(AP, NMI));
        if (bsp, ap) != (0, 1) {
            fail!("nmi: taken by the BSP {bsp} times, by the AP {ap} (want 0, 1)");
        }
        println!("nmi: the BSP's NMI woke the AP's cli; hlt and reached it only");
    }

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        install_idt();
        bsp_identity();
        start_ap();
        ap_identity();
        ipis();
        timers();
        shared_memory();
        nmi();
        ap_step(Stage::Halt, "halt: the AP's last step");
        if count(0, SPURIOUS) != 0 || count(AP, SPURIOUS) != 0 || STRAY.load(Relaxed) != 0 {
            fail!(
                "spurious interrupts: BSP {}, AP {}; {} on other APIC IDs",
                count(0, SPURIOUS),
                count(AP, SPURIOUS),
                STRAY.load(Relaxed)
            );
        }
        println!("ap: halted with interrupts off");
        println!("PASS");
        exit(0)
    }
}
