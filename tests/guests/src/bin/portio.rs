//! The `portio` guest: port I/O to ports no device decodes, every form the
//! VMM must forward. OUT and IN of 1, 2 and 4 bytes with the port in DX and
//! as an immediate (an absent device reads as all ones of the access size),
//! then string I/O: `rep outsb` forwards and backwards, `outsw`, and
//! `rep insb` forwards and backwards, `rep outsb` of a line to the console
//! (the serial log shows it arrived in order), and `rep insw`/`rep outsw`
//! of 5000 words across pages (more than one exit's worth). Under KVM,
//! string I/O reaches the VMM one element per exit record, so the exit
//! stream shows each element.
//!
//! Every value read and every register the instructions update is checked
//! against the architectural result (SDM Vol. 2A "IN", Vol. 2B "INS",
//! "OUTS", "REP"): an 8- or 16-bit IN keeps the rest of RAX, a 32-bit IN
//! zero-extends into it; a string instruction steps RSI or RDI by the
//! element size, down when RFLAGS.DF is set, and REP counts RCX to 0.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use core::arch::asm;
    use guests::port::exit;
    use guests::{BootInfo, fail, println};

    /// A port no device decodes, above 0xff: only the DX form reaches it.
    const UNASSIGNED: u16 = 0x1ee;
    /// A port no device decodes, below 0x100, for the imm8 forms.
    const UNASSIGNED_LOW: u8 = 0xee;

    /// What RAX holds before each IN: the IN must keep or clear its upper
    /// bytes, never leave them to chance.
    const RAX_BEFORE: u64 = 0x1122_3344_5566_7788;

    /// The bytes `rep outsb` writes.
    const TEXT: &[u8; 5] = b"hello";
    /// The word `outsw` writes.
    const WORD: u16 = 0xbeef;

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        out_forms();
        in_dx();
        in_imm8();
        outs();
        ins();
        outs_console();
        long_strings();
        println!("PASS");
        exit(0)
    }

    /// OUT of each size in both forms; nothing to read back, but the exit
    /// stream shows port, size and value.
    fn out_forms() {
        // SAFETY: OUT to an absent device touches no memory.
        unsafe {
            asm!(
                "mov al, 0x5a",
                "out dx, al",
                "mov ax, 0x1234",
                "out dx, ax",
                "mov eax, 0x89abcdef",
                "out dx, eax",
                "mov al, 0xa5",
                "out {port}, al",
                "mov ax, 0x4321",
                "out {port}, ax",
                "mov eax, 0xfedcba98",
                "out {port}, eax",
                port = const UNASSIGNED_LOW,
                in("dx") UNASSIGNED,
                out("eax") _,
                options(nomem, nostack, preserves_flags),
            )
        };
        println!(
            "out {UNASSIGNED:#x} and {UNASSIGNED_LOW:#x}: 0x5a, 0x1234, 0x89abcdef; \
             0xa5, 0x4321, 0xfedcba98"
        );
    }

    /// IN of each size with the port in DX.
    fn in_dx() {
        let (mut b, mut w, mut d) = (RAX_BEFORE, RAX_BEFORE, RAX_BEFORE);
        // SAFETY: IN from an absent device writes only RAX.
        unsafe {
            asm!(
                "in al, dx",
                inout("rax") b,
                in("dx") UNASSIGNED,
                options(nomem, nostack, preserves_flags),
            );
            asm!(
                "in ax, dx",
                inout("rax") w,
                in("dx") UNASSIGNED,
                options(nomem, nostack, preserves_flags),
            );
            asm!(
                "in eax, dx",
                inout("rax") d,
                in("dx") UNASSIGNED,
                options(nomem, nostack, preserves_flags),
            );
        }
        check_in("in dx", UNASSIGNED, [b, w, d]);
    }

    /// IN of each size with the port as an immediate.
    fn in_imm8() {
        let (mut b, mut w, mut d) = (RAX_BEFORE, RAX_BEFORE, RAX_BEFORE);
        // SAFETY: as in `in_dx`.
        unsafe {
            asm!(
                "in al, {port}",
                port = const UNASSIGNED_LOW,
                inout("rax") b,
                options(nomem, nostack, preserves_flags),
            );
            asm!(
                "in ax, {port}",
                port = const UNASSIGNED_LOW,
                inout("rax") w,
                options(nomem, nostack, preserves_flags),
            );
            asm!(
                "in eax, {port}",
                port = const UNASSIGNED_LOW,
                inout("rax") d,
                options(nomem, nostack, preserves_flags),
            );
        }
        check_in("in imm8", UNASSIGNED_LOW.into(), [b, w, d]);
    }

    /// `rax` after IN of 1, 2 and 4 bytes from an absent device.
    fn check_in(form: &str, port: u16, rax: [u64; 3]) {
        let want = [
            RAX_BEFORE | 0xff,
            RAX_BEFORE | 0xffff,
            0xffff_ffff, // zero-extended
        ];
        for ((size, got), want) in [1, 2, 4].into_iter().zip(rax).zip(want) {
            if got != want {
                fail!("{form} {port:#x}, {size} bytes: RAX = {got:#x}, expected {want:#x}");
            }
        }
        println!(
            "{form} {port:#x}: {:#x}, {:#x}, {:#x} (RAX upper bits kept, dword zero-extended)",
            rax[0] as u8, rax[1] as u16, rax[2] as u32
        );
    }

    /// `rep outsb` with DF clear and set, then one `outsw`.
    fn outs() {
        let text = TEXT.as_ptr() as u64;
        let len = TEXT.len() as u64;

        let (mut rsi, mut rcx) = (text, len);
        // SAFETY: reads the 5 bytes of TEXT.
        unsafe {
            asm!(
                "rep outsb",
                inout("rsi") rsi, inout("rcx") rcx, in("dx") UNASSIGNED,
                options(readonly, nostack, preserves_flags),
            )
        };
        check_string("rep outsb", "RSI", rsi, text + len, rcx);

        // Backwards from the last byte: the VMM sees "olleh".
        let (mut rsi, mut rcx) = (text + len - 1, len);
        // SAFETY: reads the 5 bytes of TEXT; DF is clear again before the
        // block ends, as the ABI requires.
        unsafe {
            asm!(
                "std",
                "rep outsb",
                "cld",
                inout("rsi") rsi, inout("rcx") rcx, in("dx") UNASSIGNED,
                options(readonly, nostack),
            )
        };
        check_string("std; rep outsb", "RSI", rsi, text - 1, rcx);

        let word = WORD;
        let mut rsi = &raw const word as u64;
        let start = rsi;
        // SAFETY: reads the 2 bytes of `word`.
        unsafe {
            asm!(
                "outsw",
                inout("rsi") rsi, in("dx") UNASSIGNED,
                options(readonly, nostack, preserves_flags),
            )
        };
        check_string("outsw", "RSI", rsi, start + 2, 0);
        println!(
            "outs {UNASSIGNED:#x}: \"hello\" forwards, \"olleh\" backwards (DF set), word {WORD:#x}"
        );
    }

    /// `rep insb` of 4 bytes with DF clear and set.
    fn ins() {
        let mut forwards = [0u8; 4];
        let start = forwards.as_mut_ptr() as u64;
        let (mut rdi, mut rcx) = (start, 4u64);
        // SAFETY: writes the 4 bytes of `forwards`.
        unsafe {
            asm!(
                "rep insb",
                inout("rdi") rdi, inout("rcx") rcx, in("dx") UNASSIGNED,
                options(nostack, preserves_flags),
            )
        };
        check_string("rep insb", "RDI", rdi, start + 4, rcx);

        let mut backwards = [0u8; 4];
        let start = backwards.as_mut_ptr() as u64;
        let (mut rdi, mut rcx) = (start + 3, 4u64);
        // SAFETY: writes the 4 bytes of `backwards`, last first; DF is
        // clear again before the block ends.
        unsafe {
            asm!(
                "std",
                "rep insb",
                "cld",
                inout("rdi") rdi, inout("rcx") rcx, in("dx") UNASSIGNED,
                options(nostack),
            )
        };
        check_string("std; rep insb", "RDI", rdi, start.wrapping_sub(1), rcx);

        for (what, bytes) in [("rep insb", forwards), ("std; rep insb", backwards)] {
            if bytes != [0xff; 4] {
                fail!("{what} from {UNASSIGNED:#x} read {bytes:02x?}, expected all 0xff");
            }
        }
        println!(
            "ins {UNASSIGNED:#x}: {:02x?} forwards, {:02x?} backwards (DF set)",
            forwards, backwards
        );
    }

    /// `rep outsb` to the console port: the text reaches the VMM as the
    /// guest's memory holds it, forwards and (DF set) backwards, which the
    /// serial log shows.
    fn outs_console() {
        let forwards = b"rep outsb to the console, forwards\n";
        let backwards = b"\nsdrawkcab ,elosnoc eht ot bstuo per";
        let (text, len) = (forwards.as_ptr() as u64, forwards.len() as u64);
        let (mut rsi, mut rcx) = (text, len);
        // SAFETY: reads the bytes of `forwards`.
        unsafe {
            asm!(
                "rep outsb",
                inout("rsi") rsi, inout("rcx") rcx, in("dx") abi::guest::CONSOLE_PORT,
                options(readonly, nostack, preserves_flags),
            )
        };
        check_string("rep outsb (console)", "RSI", rsi, text + len, rcx);
        let (text, len) = (backwards.as_ptr() as u64, backwards.len() as u64);
        let (mut rsi, mut rcx) = (text + len - 1, len);
        // SAFETY: reads the bytes of `backwards`; DF is clear again before
        // the block ends.
        unsafe {
            asm!(
                "std",
                "rep outsb",
                "cld",
                inout("rsi") rsi, inout("rcx") rcx, in("dx") abi::guest::CONSOLE_PORT,
                options(readonly, nostack),
            )
        };
        check_string("std; rep outsb (console)", "RSI", rsi, text - 1, rcx);
    }

    /// More than one exit's worth of elements, across page boundaries.
    const LONG: usize = 5000;
    static mut BUF: [u16; LONG] = [0; LONG];

    /// `rep insw`/`rep outsw` of `LONG` words from a buffer that spans
    /// pages: however the VMM's exits split it, every word arrives and
    /// RDI/RSI/RCX end where the instruction says.
    fn long_strings() {
        let start = &raw mut BUF as u64;
        let bytes = (LONG * 2) as u64;
        let (mut rdi, mut rcx) = (start, LONG as u64);
        // SAFETY: writes the `LONG` words of BUF, which only this
        // function touches.
        unsafe {
            asm!(
                "rep insw",
                inout("rdi") rdi, inout("rcx") rcx, in("dx") UNASSIGNED,
                options(nostack, preserves_flags),
            )
        };
        check_string("rep insw (long)", "RDI", rdi, start + bytes, rcx);
        // SAFETY: BUF is only touched here, after the asm wrote it.
        let buf = unsafe { &*(&raw const BUF) };
        if let Some(i) = buf.iter().position(|&w| w != 0xffff) {
            fail!("rep insw (long): word {i} = {:#x}, expected 0xffff", buf[i]);
        }
        let (mut rsi, mut rcx) = (start, LONG as u64);
        // SAFETY: reads the `LONG` words of BUF.
        unsafe {
            asm!(
                "rep outsw",
                inout("rsi") rsi, inout("rcx") rcx, in("dx") UNASSIGNED,
                options(readonly, nostack, preserves_flags),
            )
        };
        check_string("rep outsw (long)", "RSI", rsi, start + bytes, rcx);
        println!("rep insw/outsw of {LONG} words: every word, RDI/RSI/RCX right");
    }

    /// A string instruction left the pointer at `want` and the count at 0.
    fn check_string(what: &str, reg: &str, got: u64, want: u64, rcx: u64) {
        if got != want {
            let off = got.wrapping_sub(want) as i64;
            fail!("{what}: {reg} ends {off} bytes from where it should");
        }
        if rcx != 0 {
            fail!("{what}: RCX = {rcx} after the instruction, expected 0");
        }
    }
}
