//! The `debug` guest: guest debugging (`KVM_SET_GUEST_DEBUG`) through the
//! VMM's debugging test port (`abi::guest::DEBUG_PORT`).
//!
//! 1. Single-stepping: one `KVM_EXIT_DEBUG` per instruction, including the
//!    OUT that turned it on (completed by the VMM), CPUID (carried out by
//!    the hypervisor) and the instructions the CPU runs itself: six. (With
//!    `sti; nop; cli` added, Bochs's VMX gives the nine the SDM implies, a
//!    step inside the STI shadow included; QEMU's TCG gives eight, so that
//!    is not part of the test.)
//! 2. Software breakpoints: each INT3 is a `KVM_EXIT_DEBUG` (#BP) instead
//!    of a #BP in the guest; the VMM steps over it: two.
//! 3. Hardware breakpoints: an instruction breakpoint and a write
//!    watchpoint (DR0, DR1), one exit each, while the guest's own DR0–DR3
//!    and DR7 stay its own: it reads its DR0 and writes its DR3 during the
//!    session, and finds all of them as it left them afterwards. The
//!    guest prints how many hits the VMM saw; the boot test knows how many
//!    each emulator delivers (QEMU 7.2's SVM arms no breakpoint from the
//!    VMCB's DR7).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{DEBUG_OFF, DEBUG_PORT, DEBUG_SINGLE_STEP, DEBUG_SW_BREAKPOINTS};
    use core::arch::asm;
    use guests::port::exit;
    use guests::{BootInfo, fail, println};

    /// The debug exits of the session that just ended.
    fn exits() -> u32 {
        let n: u32;
        // SAFETY: port I/O only.
        unsafe {
            asm!("in eax, dx", in("dx") DEBUG_PORT, out("eax") n,
                options(nomem, nostack, preserves_flags))
        };
        n
    }

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        // SAFETY: the OUTs reach the VMM's debugging port; CPUID clobbers
        // EAX-EDX, declared.
        unsafe {
            asm!(
                // RBX (CPUID's) is LLVM's: kept aside before the session.
                "mov {keep}, rbx",
                "mov al, {on}",
                "out {port}, al",
                "nop",
                "nop",
                "mov eax, 1",
                "cpuid",
                "mov al, {off}",
                "out {port}, al",
                "mov rbx, {keep}",
                on = const DEBUG_SINGLE_STEP,
                off = const DEBUG_OFF,
                port = const DEBUG_PORT,
                keep = out(reg) _,
                out("eax") _,
                out("ecx") _,
                out("edx") _,
                options(nomem, nostack),
            );
        }
        let steps = exits();
        if steps != 6 {
            fail!("single-stepping: {steps} debug exits, not 6");
        }
        println!("single-step: 6 debug exits, the OUT that began it and CPUID included");
        // SAFETY: as above; the INT3s become debug exits the VMM steps over.
        unsafe {
            asm!(
                "mov al, {on}",
                "out {port}, al",
                "int3",
                "nop",
                "int3",
                "mov al, {off}",
                "out {port}, al",
                on = const DEBUG_SW_BREAKPOINTS,
                off = const DEBUG_OFF,
                port = const DEBUG_PORT,
                out("eax") _,
                options(nomem, nostack),
            );
        }
        let breaks = exits();
        if breaks != 2 {
            fail!("software breakpoints: {breaks} debug exits, not 2");
        }
        println!("software breakpoints: each INT3 a debug exit, stepped over by the VMM");
        hardware();
        println!("PASS");
        exit(0)
    }

    /// Written under the VMM's write watchpoint.
    static mut WATCHED: u32 = 0;

    fn hardware() {
        // The guest's own debug registers (no breakpoint enabled: DR7 has
        // only LE, GE and the fixed bit).
        const OWN: [u64; 4] = [0x1111_0000, 0x2222_0000, 0x3333_0000, 0x4444_0000];
        const OWN_DR7: u64 = 0x700;
        let (dr0_seen, after): (u64, [u64; 5]);
        // SAFETY: debug registers with no breakpoint of the guest's own
        // enabled; port I/O to the VMM's debugging ports; one store to
        // WATCHED.
        unsafe {
            asm!(
                "mov dr0, {a}",
                "mov dr1, {b}",
                "mov dr2, {c}",
                "mov dr3, {d}",
                "mov dr7, {e}",
                a = in(reg) OWN[0],
                b = in(reg) OWN[1],
                c = in(reg) OWN[2],
                d = in(reg) OWN[3],
                e = in(reg) OWN_DR7,
                options(nomem, nostack),
            );
            asm!(
                // Breakpoint addresses: the instruction at 2:, then WATCHED.
                "lea rax, [rip + 2f]",
                "out dx, eax",
                "mov eax, {watched:e}",
                "or eax, {watch}",
                "out dx, eax",
                "mov al, {hw}",
                "out {port}, al",
                // The guest's own DR0, and a write to its own DR3.
                "mov {seen}, dr0",
                "mov rax, 0x55550000",
                "mov dr3, rax",
                "2:",
                "nop",
                "mov dword ptr [{watched}], 7",
                "mov al, {off}",
                "out {port}, al",
                watched = in(reg) core::ptr::addr_of_mut!(WATCHED),
                watch = const abi::guest::DEBUG_WATCH_WRITE,
                hw = const abi::guest::DEBUG_HW_BREAKPOINTS,
                off = const DEBUG_OFF,
                port = const DEBUG_PORT,
                seen = out(reg) dr0_seen,
                in("dx") abi::guest::DEBUG_ADDR_PORT,
                out("eax") _,
                options(nostack),
            );
            let (r0, r1, r2, r3, r7): (u64, u64, u64, u64, u64);
            asm!(
                "mov {0}, dr0",
                "mov {1}, dr1",
                "mov {2}, dr2",
                "mov {3}, dr3",
                "mov {4}, dr7",
                out(reg) r0,
                out(reg) r1,
                out(reg) r2,
                out(reg) r3,
                out(reg) r7,
                options(nomem, nostack),
            );
            after = [r0, r1, r2, r3, r7];
        }
        let hits = exits();
        // SAFETY: one vCPU.
        let watched = unsafe { core::ptr::addr_of!(WATCHED).read_volatile() };
        if watched != 7 {
            fail!("the watched store did not happen ({watched})");
        }
        if dr0_seen != OWN[0] {
            fail!("during the session the guest's DR0 read {dr0_seen:#x}");
        }
        let want = [OWN[0], OWN[1], OWN[2], 0x5555_0000, OWN_DR7];
        if after != want {
            fail!("the guest's DR0-DR3, DR7 after debugging: {after:x?}, want {want:x?}");
        }
        println!("hardware breakpoints: {hits} hits; the guest's own DR0-DR3 and DR7 kept");
    }
}
