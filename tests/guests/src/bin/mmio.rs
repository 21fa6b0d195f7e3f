//! The `mmio` guest: every instruction form the MMIO decoder handles, run
//! once on RAM and once on the VMM's MMIO scratch page
//! (`abi::guest::MMIO_SCRATCH_BASE`, which keeps what is written), from
//! the same starting memory, registers and flags. The two runs must leave
//! the same registers, status flags and memory: the device path (an exit
//! per access, the instruction finished by the hypervisor) must be
//! indistinguishable from the CPU's own.
//!
//! Forms: MOV store (register incl. AH, immediate, 8–64 bits) and load
//! (8/16-bit loads keep the rest of RAX, 32-bit zero-extends), MOV with a
//! 64-bit absolute address (moffs), MOVZX/MOVSX/MOVSXD, ADD/OR/AND/SUB/XOR
//! with the device as destination and as source, CMP both ways, TEST, the
//! immediate forms (80/81/83, F6/F7), LOCK, STOS and MOVS with REP,
//! forwards and backwards, RAM to device, device to RAM and device to
//! device. Then an address nothing decodes: reads are all ones, writes
//! vanish.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::MMIO_SCRATCH_BASE;
    use core::arch::asm;
    use core::ptr::{read_volatile, write_volatile};
    use guests::port::exit;
    use guests::{BootInfo, fail, println};

    /// Device memory nothing decodes (outside RAM and the scratch page).
    const NOTHING: u64 = 0x3000_0000;
    /// The 32 bytes each check starts from.
    const INIT: [u64; 4] = [
        0x8877_6655_4433_2211,
        0xf0e1_d2c3_b4a5_9687,
        0x0000_0000_0000_0001,
        0x7fff_ffff_ffff_ffff,
    ];
    /// RAX and the operand register before each check.
    const RAX0: u64 = 0x1122_3344_5566_7788;
    const V: u64 = 0x0123_4567_89ab_cdef;
    /// RFLAGS before each check: every status flag but AF set (bit 1 is
    /// reserved, always 1), so a flag an instruction leaves alone shows.
    const FLAGS0: u64 = 0x2 | 0x1 | 0x4 | 0x40 | 0x80 | 0x800;
    /// CF PF AF ZF SF OF.
    const STATUS: u64 = 0x8d5;

    /// RAM twin of the scratch page's first 32 bytes.
    static mut RAM: [u64; 4] = [0; 4];

    static mut CHECKS: u32 = 0;

    fn ram() -> *mut u64 {
        core::ptr::addr_of_mut!(RAM) as *mut u64
    }

    fn dev() -> *mut u64 {
        MMIO_SCRATCH_BASE as *mut u64
    }

    fn set(p: *mut u64) {
        for (i, v) in INIT.iter().enumerate() {
            // SAFETY: RAM or the scratch page, 32 bytes of either.
            unsafe { write_volatile(p.add(i), *v) };
        }
    }

    fn get(p: *mut u64) -> [u64; 4] {
        // SAFETY: as in `set`.
        core::array::from_fn(|i| unsafe { read_volatile(p.add(i)) })
    }

    /// What one run of a check leaves: RAX, RDX, status flags, memory.
    type Outcome = (u64, u64, u64, [u64; 4]);

    /// Runs `exec` on RAM and on the device from the same state and
    /// compares everything it leaves.
    fn compare(name: &str, exec: fn(*mut u64) -> (u64, u64, u64)) {
        let run = |p: *mut u64| -> Outcome {
            set(p);
            let (rax, rdx, flags) = exec(p);
            (rax, rdx, flags & STATUS, get(p))
        };
        let on_ram = run(ram());
        let on_dev = run(dev());
        if on_ram != on_dev {
            fail!("{name}: RAM leaves {on_ram:x?}, the device {on_dev:x?}");
        }
        // SAFETY: one vCPU.
        unsafe { CHECKS += 1 };
    }

    /// One instruction (template with `{p}` the memory, `{v}` = V, RAX =
    /// RAX0, RDX = V) checked on RAM and on the device.
    macro_rules! check {
        ($insn:literal) => {{
            fn exec(p: *mut u64) -> (u64, u64, u64) {
                let (mut rax, mut rdx, flags): (u64, u64, u64);
                // SAFETY: the instruction touches the 32 bytes at `p` (RAM or
                // the scratch page); flags are set and read on the stack.
                unsafe {
                    asm!(
                        "push {f0}",
                        "popfq",
                        $insn,
                        // (Names `{v}` for the templates that do not use it.)
                        "/* {v} */",
                        "pushfq",
                        "pop {f}",
                        p = in(reg) p,
                        v = in(reg) V,
                        f0 = in(reg) FLAGS0,
                        f = lateout(reg) flags,
                        inout("rax") RAX0 => rax,
                        inout("rdx") V => rdx,
                    );
                }
                (rax, rdx, flags)
            }
            compare($insn, exec);
        }};
    }

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        stores();
        loads();
        alu();
        strings();
        nothing_there();
        self_modifying();
        // SAFETY: one vCPU.
        let n = unsafe { CHECKS };
        println!("{n} forms: the device and RAM agree");
        println!("PASS");
        exit(0)
    }

    fn stores() {
        check!("mov byte ptr [{p}], 0x5a");
        check!("mov word ptr [{p} + 2], 0x1234");
        check!("mov dword ptr [{p} + 4], 0x89abcdef");
        check!("mov qword ptr [{p} + 8], -2");
        check!("mov byte ptr [{p} + 1], ah");
        check!("mov byte ptr [{p} + 3], {v:l}");
        check!("mov word ptr [{p} + 6], {v:x}");
        check!("mov dword ptr [{p} + 12], {v:e}");
        check!("mov qword ptr [{p} + 16], {v}");
        // A 64-bit absolute address (moffs), on the device only: RAM's
        // address is no constant.
        // SAFETY: the scratch page.
        unsafe {
            asm!(
                "movabs [{a}], rax",
                "movabs [{b}], eax",
                "movabs [{c}], al",
                a = const MMIO_SCRATCH_BASE + 0x100,
                b = const MMIO_SCRATCH_BASE + 0x108,
                c = const MMIO_SCRATCH_BASE + 0x10c,
                in("rax") RAX0,
            );
        }
        // SAFETY: the scratch page.
        let back = unsafe { read_volatile((MMIO_SCRATCH_BASE + 0x100) as *const [u8; 13]) };
        if back
            != [
                0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55, 0x88,
            ]
        {
            fail!("movabs stores: {back:x?}");
        }
        println!("stores: mov of 8-64 bits from registers (incl. AH), immediates and moffs");
    }

    fn loads() {
        check!("mov al, byte ptr [{p} + 5]");
        check!("mov ah, byte ptr [{p} + 6]");
        check!("mov ax, word ptr [{p} + 6]");
        check!("mov eax, dword ptr [{p} + 9]");
        check!("mov rax, qword ptr [{p} + 8]");
        check!("mov rdx, qword ptr [{p} + 24]");
        check!("movzx eax, byte ptr [{p} + 7]");
        check!("movzx rax, word ptr [{p} + 14]");
        check!("movsx eax, byte ptr [{p} + 7]");
        check!("movsx ax, byte ptr [{p} + 1]");
        check!("movsx rax, word ptr [{p} + 14]");
        check!("movsxd rax, dword ptr [{p} + 12]");
        let (a, b): (u64, u64);
        // SAFETY: the scratch page, written just before.
        unsafe {
            write_volatile((MMIO_SCRATCH_BASE + 0x200) as *mut u64, V);
            asm!(
                "movabs rax, [{a}]",
                "mov rdx, rax",
                "mov rax, {r0}",
                "movabs ax, [{b}]",
                a = const MMIO_SCRATCH_BASE + 0x200,
                b = const MMIO_SCRATCH_BASE + 0x202,
                r0 = in(reg) RAX0,
                out("rax") a,
                out("rdx") b,
            );
        }
        if (b, a) != (V, 0x1122_3344_5566_89ab) {
            fail!("movabs loads: {b:#x}, {a:#x}");
        }
        println!("loads: mov of 8-64 bits (incl. AH, moffs), movzx, movsx, movsxd");
    }

    fn alu() {
        // The device as destination.
        check!("add byte ptr [{p}], {v:l}");
        check!("add word ptr [{p} + 2], {v:x}");
        check!("add dword ptr [{p} + 24], {v:e}");
        check!("add qword ptr [{p} + 24], {v}");
        check!("or dword ptr [{p} + 4], {v:e}");
        check!("and qword ptr [{p} + 8], {v}");
        check!("sub byte ptr [{p} + 16], {v:l}");
        check!("sub qword ptr [{p} + 16], {v}");
        check!("xor word ptr [{p} + 10], {v:x}");
        check!("lock add dword ptr [{p}], {v:e}");
        // The device as source.
        check!("add rax, qword ptr [{p}]");
        check!("or eax, dword ptr [{p} + 4]");
        check!("and ax, word ptr [{p} + 8]");
        check!("sub al, byte ptr [{p} + 16]");
        check!("xor rdx, qword ptr [{p} + 24]");
        // CMP both ways, TEST.
        check!("cmp qword ptr [{p} + 16], {v}");
        check!("cmp {v}, qword ptr [{p} + 16]");
        check!("cmp byte ptr [{p}], {v:l}");
        check!("cmp al, byte ptr [{p} + 1]");
        check!("test dword ptr [{p} + 4], {v:e}");
        check!("test byte ptr [{p} + 31], {v:l}");
        // Immediates: 80, 81, 83 and F6/F7.
        check!("add byte ptr [{p} + 3], 0x7f");
        check!("sub dword ptr [{p} + 20], 0x12345678");
        check!("add qword ptr [{p} + 24], 1");
        check!("and qword ptr [{p}], -16");
        check!("or word ptr [{p} + 6], 0x8000");
        check!("xor dword ptr [{p} + 8], -1");
        check!("cmp dword ptr [{p} + 16], 1");
        check!("cmp qword ptr [{p} + 24], -1");
        check!("test byte ptr [{p} + 7], 0x80");
        check!("test qword ptr [{p} + 8], 0x7fffffff");
        println!(
            "alu: add, or, and, sub, xor (device as destination and source), cmp, test, lock, immediates"
        );
    }

    /// A string instruction: `exec(src, dst, count, backwards)` returns
    /// how far RSI and RDI moved and RCX after.
    type StringExec = fn(u64, u64, u64, bool) -> (u64, u64, u64);

    macro_rules! string_op {
        ($insn:literal) => {{
            fn exec(src: u64, dst: u64, count: u64, back: bool) -> (u64, u64, u64) {
                let (rsi, rdi, rcx): (u64, u64, u64);
                // SAFETY: at most 16 bytes on each side, RAM or the scratch
                // page; DF is cleared again at once.
                unsafe {
                    if back {
                        asm!(
                            "std",
                            $insn,
                            "cld",
                            inout("rsi") src => rsi,
                            inout("rdi") dst => rdi,
                            inout("rcx") count => rcx,
                            in("rax") RAX0,
                        );
                    } else {
                        asm!(
                            $insn,
                            inout("rsi") src => rsi,
                            inout("rdi") dst => rdi,
                            inout("rcx") count => rcx,
                            in("rax") RAX0,
                        );
                    }
                }
                (rsi.wrapping_sub(src), rdi.wrapping_sub(dst), rcx)
            }
            exec as StringExec
        }};
    }

    /// Runs a string instruction with its source (the second 16 bytes) and
    /// destination (the first 16) on RAM, then with them where `src_dev`
    /// and `dst_dev` say, and compares the registers and the destination.
    fn string(name: &str, exec: StringExec, count: u64, src_dev: bool, dst_dev: bool, back: bool) {
        let run = |src: *mut u64, dst: *mut u64| {
            set(src);
            set(dst);
            let off = if back { 8 } else { 0 };
            let regs = exec(src as u64 + 16 + off, dst as u64 + off, count, back);
            (regs, get(dst))
        };
        let on_ram = run(ram(), ram());
        let pick = |on_dev: bool| if on_dev { dev() } else { ram() };
        let on_dev = run(pick(src_dev), pick(dst_dev));
        if on_ram != on_dev {
            fail!("{name}: RAM leaves {on_ram:x?}, the device {on_dev:x?}");
        }
        // SAFETY: one vCPU.
        unsafe { CHECKS += 1 };
    }

    /// REP MOVSB whose source and destination overlap by all but a byte,
    /// forwards (each byte read after the previous one was written: the
    /// first byte spreads) and backwards (a true move), within RAM and
    /// then within the device: both must leave the same bytes.
    fn overlapping() {
        for (name, back, src_off, dst_off) in [
            ("overlapping rep movsb forwards", false, 0u64, 1u64),
            ("overlapping rep movsb backwards", true, 15, 16),
        ] {
            let run = |p: *mut u64| {
                set(p);
                let regs =
                    string_op!("rep movsb")(p as u64 + src_off, p as u64 + dst_off, 16, back);
                (regs, get(p))
            };
            let on_ram = run(ram());
            let on_dev = run(dev());
            if on_ram != on_dev {
                fail!("{name}: RAM leaves {on_ram:x?}, the device {on_dev:x?}");
            }
            // SAFETY: one vCPU.
            unsafe { CHECKS += 1 };
        }
    }

    fn strings() {
        overlapping();
        string(
            "rep stosd to the device",
            string_op!("rep stosd"),
            4,
            true,
            true,
            false,
        );
        string(
            "rep stosb backwards",
            string_op!("rep stosb"),
            5,
            true,
            true,
            true,
        );
        string(
            "movsb within the device",
            string_op!("movsb"),
            1,
            true,
            true,
            false,
        );
        string(
            "rep movsw device to device",
            string_op!("rep movsw"),
            3,
            true,
            true,
            false,
        );
        string(
            "rep movsb RAM to device",
            string_op!("rep movsb"),
            13,
            false,
            true,
            false,
        );
        string(
            "rep movsq device to RAM",
            string_op!("rep movsq"),
            2,
            true,
            false,
            false,
        );
        string(
            "rep movsd backwards, RAM to device",
            string_op!("rep movsd"),
            3,
            false,
            true,
            true,
        );
        string(
            "rep movsq with RCX = 0",
            string_op!("rep movsq"),
            0,
            true,
            true,
            false,
        );
        println!(
            "strings: rep stos, rep movs forwards and backwards, RAM/device in both directions"
        );
    }

    /// A page of code the guest rewrites (INT3 where nothing is written).
    #[repr(C, align(4096))]
    struct Code([u8; 4096]);
    static mut CODE: Code = Code([0xcc; 4096]);

    /// Writes `bytes` at the start of `CODE` and calls it with RDI = the
    /// scratch page, RAX = `rax`, RCX = 0; returns RAX and RCX.
    fn call_code(bytes: &[u8], rax: u64) -> (u64, u64) {
        let code = core::ptr::addr_of_mut!(CODE) as *mut u8;
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: within the page; nothing runs it meanwhile.
            unsafe { write_volatile(code.add(i), *b) };
        }
        let (mut a, mut c) = (rax, 0u64);
        // SAFETY: the code is one MOV on the scratch page and RET; it
        // changes RAX or RCX only (the target has no red zone for the
        // return address to clobber).
        unsafe {
            asm!("call {code}", code = in(reg) code, in("rdi") dev(),
                 inout("rax") a, inout("rcx") c);
        }
        (a, c)
    }

    /// Self-modifying code on device memory: one RIP runs, twice each, a
    /// 4-byte load, then (rewritten) a 1-byte store, then an 8-byte load
    /// into another register, then a load with a displacement. The
    /// hypervisor decodes each device access from the bytes at RIP and
    /// keeps the decoding for the next exit at the same RIP only while
    /// those bytes are unchanged: a stale decoding would load instead of
    /// store, or fill the wrong register, and show here.
    fn self_modifying() {
        set(dev());
        let low = INIT[0] & 0xffff_ffff;
        for _ in 0..2 {
            // mov eax, [rdi]; ret
            let (a, _) = call_code(&[0x8b, 0x07, 0xc3], RAX0);
            if a != low {
                fail!("smc: mov eax, [rdi] loaded {a:#x}, not {low:#x}");
            }
        }
        let stored = (INIT[0] & !0xff) | 0x5a;
        for _ in 0..2 {
            // mov [rdi], al; ret
            let (a, _) = call_code(&[0x88, 0x07, 0xc3], 0x5a);
            let got = get(dev())[0];
            if a != 0x5a || got != stored {
                fail!("smc: mov [rdi], al left rax {a:#x} and memory {got:#x}, not {stored:#x}");
            }
        }
        for _ in 0..2 {
            // mov rcx, [rdi]; ret
            let (a, c) = call_code(&[0x48, 0x8b, 0x0f, 0xc3], RAX0);
            if (a, c) != (RAX0, stored) {
                fail!("smc: mov rcx, [rdi] left rax {a:#x} rcx {c:#x}, not rcx {stored:#x}");
            }
        }
        let second = INIT[1] & 0xffff_ffff;
        for _ in 0..2 {
            // mov eax, [rdi + 8]; ret
            let (a, _) = call_code(&[0x8b, 0x47, 0x08, 0xc3], RAX0);
            if a != second {
                fail!("smc: mov eax, [rdi + 8] loaded {a:#x}, not {second:#x}");
            }
        }
        println!(
            "smc: one RIP rewritten between device accesses: load, store, wider load, displacement"
        );
        // The same for an exit whose length the hypervisor may decode (and
        // cache) itself: CPUID with prefixes that change its length. A stale
        // length would resume in the middle of the code.
        let max_leaf = guests::cpu::cpuid(0, 0).eax;
        for code in [
            &[0x53, 0x0f, 0xa2, 0x5b, 0xc3][..],
            &[0x53, 0x66, 0x0f, 0xa2, 0x5b, 0xc3],
            &[0x53, 0xf3, 0x66, 0x0f, 0xa2, 0x5b, 0xc3],
            &[0x53, 0x0f, 0xa2, 0x5b, 0xc3],
        ] {
            for _ in 0..2 {
                if call_cpuid(code) != max_leaf {
                    fail!("smc: CPUID at a rewritten RIP ({code:02x?}) returned otherwise");
                }
            }
        }
        println!("smc: one RIP rewritten between CPUID exits of 2, 3 and 4 bytes");
    }

    /// Writes `bytes` (push rbx; CPUID with prefixes; pop rbx; ret) at the
    /// start of `CODE` and calls it for leaf 0; returns EAX.
    fn call_cpuid(bytes: &[u8]) -> u32 {
        let code = core::ptr::addr_of_mut!(CODE) as *mut u8;
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: within the page; nothing runs it meanwhile.
            unsafe { write_volatile(code.add(i), *b) };
        }
        let a: u64;
        // SAFETY: the code saves RBX around CPUID, which writes EAX-EDX.
        unsafe {
            asm!("call {code}", code = in(reg) code, inout("rax") 0u64 => a,
                 inout("rcx") 0u64 => _, out("rdx") _);
        }
        a as u32
    }

    fn nothing_there() {
        let (r, w): (u64, u64);
        // SAFETY: device memory nothing decodes: reads are all ones and
        // writes vanish.
        unsafe {
            write_volatile(NOTHING as *mut u64, V);
            r = read_volatile(NOTHING as *const u64);
            w = u64::from(read_volatile((NOTHING + 0x10) as *const u8));
        }
        if (r, w) != (u64::MAX, 0xff) {
            fail!("unassigned MMIO: read {r:#x}, byte {w:#x}");
        }
        println!("unassigned MMIO: writes vanish, reads are all ones");
    }
}
