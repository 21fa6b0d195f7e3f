//! Conventions between Mojito's own test guests and whoever runs them: the
//! control domain's VMM, or the hypervisor's built-in device set in an image
//! without a control domain. DESIGN.md §3 fixes the end-of-test port.

/// Debug console: every byte written (OUT of any width writes its low byte)
/// is appended to the guest's output line, printed as `[NAME] line`.
/// Reads return 0xe9, as Bochs's and QEMU's port-E9 hacks do, so a guest can
/// probe for it.
pub const CONSOLE_PORT: u16 = 0xe9;

/// End of test: writing `v` ends the VM with status `v` (0 = pass). The same
/// port and meaning as QEMU's `isa-debug-exit,iobase=0xf4` (DESIGN.md §3).
pub const EXIT_PORT: u16 = 0xf4;

/// Scheduling point: a write yields the physical CPU to the next runnable VM.
/// Test guests use it to interleave with each other and prove that no
/// register state leaks between them.
pub const YIELD_PORT: u16 = 0xf5;

/// The POST/delay port, handled in the hypervisor itself: writes are ignored
/// and reads return 0xff.
pub const POST_PORT: u16 = 0x80;

/// A port no device claims, which the `counter` test guest writes exactly
/// [`COUNTER_WRITES`] times: the operator's `stats` must show that count
/// (the shell test).
pub const COUNTER_PORT: u16 = 0x2f0;
/// How many times the `counter` guest writes [`COUNTER_PORT`].
pub const COUNTER_WRITES: u32 = 1000;

/// The bench's floor (issue 9): a hypercall (VMCALL on Intel, VMMCALL on
/// AMD) with this number in RAX does nothing but step over the 3-byte
/// instruction, in every VM but the control domain (whose hypercalls are
/// KVM API requests). Its round trip is the bare entry/exit path
/// that the cost of every other exit is compared with. KVM's hypercall
/// numbers are small, so this one names none of them; KVM itself answers
/// it -KVM_ENOSYS.
pub const BENCH_FLOOR_HYPERCALL: u64 = 0x4d4f_4a49;

/// MSRs the VMM of Mojito's test guests emulates through userspace MSR
/// exits (`KVM_CAP_X86_USER_SPACE_MSR`, reason unknown): scratch registers
/// that keep what is written, 0 at start. Neither Mojito nor KVM knows
/// them; any other MSR that reaches that VMM is refused (#GP).
pub const VMM_MSR_BASE: u32 = 0x4d4f_0000;
pub const VMM_MSR_COUNT: u32 = 4;
/// The last of them is write-only: the VMM's MSR filter
/// (`KVM_X86_SET_MSR_FILTER`) denies reads of it, so they raise #GP
/// without an exit.
pub const VMM_MSR_WRITE_ONLY: u32 = VMM_MSR_BASE + VMM_MSR_COUNT - 1;

/// The Xen hypercall-page MSR the test guests' VMM configures
/// (`KVM_XEN_HVM_CONFIG`, seed 001), and the page count of its blobs. The
/// VMM announces Xen at CPUID 0x4000_0200 (signature `XenVMMXenVMM`; leaf
/// 0x4000_0202: EAX pages, EBX the MSR), after Mojito's own leaves and
/// KVM's (`KVM_CPUID_BASE`), as Xen itself does beside Viridian's.
pub const XEN_HYPERCALL_MSR: u32 = 0x4d4f_1000;
pub const XEN_BLOB_PAGES: u32 = 2;
pub const XEN_CPUID_BASE: u32 = 0x4000_0200;

/// Where the test VMM offers KVM's paravirtual leaves (DESIGN.md D9):
/// `KVMKVMKVM\0\0\0` at 0x4000_0100, the features at 0x4000_0101 (EAX:
/// `KVM_FEATURE_CLOCKSOURCE`, `_CLOCKSOURCE2`, `_CLOCKSOURCE_STABLE_BIT`:
/// kvmclock).
pub const KVM_CPUID_BASE: u32 = 0x4000_0100;
/// `KVM_FEATURE_*` bits of EAX of `KVM_CPUID_BASE + 1`
/// (include/uapi/asm/kvm_para.h).
pub const KVM_FEATURE_CLOCKSOURCE: u32 = 1 << 0;
pub const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;
pub const KVM_FEATURE_CLOCKSOURCE_STABLE_BIT: u32 = 1 << 24;

/// Byte `i` of page `page` of the test VMM's Xen blob for 64-bit (`long`)
/// or 32-bit guests. Page 0 holds the hypercall stubs (entry `n` at
/// `32 n`: `mov eax, n; VMCALL or VMMCALL; ret`, INT3 between them); page 1
/// a pattern that differs between the two blobs.
pub const fn xen_blob_byte(long: bool, page: u32, i: usize, vmmcall: bool) -> u8 {
    if page == 0 {
        let n = (i / 32) as u32;
        return match i % 32 {
            0 => 0xb8,
            k @ 1..=4 => n.to_le_bytes()[k - 1],
            5 => 0x0f,
            6 => 0x01,
            7 if vmmcall => 0xd9,
            7 => 0xc1,
            8 => 0xc3,
            _ => 0xcc,
        };
    }
    (i as u8).wrapping_mul(7) ^ if long { 0x64 } else { 0x32 } ^ (page as u8)
}

/// A guest-physical address no memory slot and no device of the VMM's
/// covers: a read exits as `KVM_EXIT_MMIO` and returns all ones (the bench
/// guest's forwarded MMIO read). Inside the first GiB, which test guests
/// identity-map.
pub const BENCH_MMIO_HOLE: u64 = 0x3000_0000;

/// The MMIO scratch device: a page of device memory (no memory slot maps
/// it, so every access exits as `KVM_EXIT_MMIO`) that keeps what is written
/// and returns it. Inside the first GiB, which test guests identity-map.
/// Guest-physical addresses outside RAM and this page read as all ones.
pub const MMIO_SCRATCH_BASE: u64 = 0x2000_0000;
pub const MMIO_SCRATCH_SIZE: u64 = 0x1000;

/// The interrupt test port: writing `v` makes the VMM raise external
/// interrupt vector `v` (userspace irqchip): it injects it with
/// `KVM_INTERRUPT` as soon as `ready_for_interrupt_injection` says the guest
/// can take it, asking for the interrupt window meanwhile, and wakes a
/// guest halted in HLT with it.
pub const IRQ_PORT: u16 = 0xf7;

/// The debugging test port: writing 1 has the VMM single-step the guest
/// (`KVM_SET_GUEST_DEBUG` with `KVM_GUESTDBG_SINGLESTEP`), 2 take its INT3s
/// as breakpoints (`KVM_GUESTDBG_USE_SW_BP`; the VMM steps over each), 0
/// stop debugging. A 4-byte read returns the `KVM_EXIT_DEBUG`s of the last
/// session.
pub const DEBUG_PORT: u16 = 0xf8;
pub const DEBUG_OFF: u8 = 0;
pub const DEBUG_SINGLE_STEP: u8 = 1;
pub const DEBUG_SW_BREAKPOINTS: u8 = 2;
/// Hardware breakpoints at the addresses written to [`DEBUG_ADDR_PORT`]
/// (DR0 up): an instruction breakpoint, or with [`DEBUG_WATCH_WRITE`] a
/// 4-byte write watchpoint. The VMM resumes each hit (with RFLAGS.RF).
pub const DEBUG_HW_BREAKPOINTS: u8 = 3;
/// 4-byte writes: breakpoint addresses for [`DEBUG_HW_BREAKPOINTS`] (up to
/// four; a command starts the list anew).
pub const DEBUG_ADDR_PORT: u16 = 0xf9;
pub const DEBUG_WATCH_WRITE: u32 = 1 << 31;

/// The MSI test port (split irqchip, DESIGN.md D4): writing vector `v`
/// makes the VMM send a message-signalled interrupt with `KVM_SIGNAL_MSI`
/// to the local APIC with ID 0: address 0xfee0_0000 (physical destination
/// 0), data `v` (fixed delivery, edge). A 4-byte read returns what the
/// last `KVM_SIGNAL_MSI` returned (> 0 delivered, 0 blocked, -errno), or
/// all ones before the first.
pub const MSI_PORT: u16 = 0xfa;
/// The MSI address of local APIC 0: the interrupt area (0xfee0_0000),
/// destination ID 0 in bits 19:12, physical destination mode, no
/// redirection hint (SDM Vol. 3A §12.11.1 "Message Address Register
/// Format").
pub const MSI_ADDRESS_APIC0: u32 = 0xfee0_0000;
/// MSI data bit 15: trigger mode, set for level-triggered (SDM Vol. 3A
/// §12.11.2 "Message Data Register Format").
pub const MSI_DATA_LEVEL: u32 = 1 << 15;

/// The level-triggered interrupt test port (split irqchip, DESIGN.md D4).
/// At creation the VMM of a VM with the split irqchip sets the GSI routes
/// of [`LEVEL_IRQ_ROUTES`] (`KVM_SET_GSI_ROUTING`: MSI routes to local
/// APIC 0). Writing one of their vectors makes the VMM send
/// `KVM_SIGNAL_MSI` with exactly that route's address and data (any other
/// byte sends nothing). A 4-byte read returns how many
/// `KVM_EXIT_IOAPIC_EOI` exits the VMM has seen with [`LEVEL_VECTOR`] in
/// bits 7:0, with [`LEVEL_VECTOR_UNRESERVED`] in bits 15:8 and with
/// [`EDGE_VECTOR`] in bits 23:16 (each stops at 255). Only the first's
/// EOIs exit: the kernel reports the EOI of a level-triggered vector that a
/// reserved IOAPIC pin (a GSI below `KVM_CAP_SPLIT_IRQCHIP`'s `args[0]`,
/// 24 here) routes to the vCPU.
pub const LEVEL_IRQ_PORT: u16 = 0xfb;
/// GSI 5's vector: a reserved IOAPIC pin, level-triggered.
pub const LEVEL_VECTOR: u8 = 0x5c;
/// GSI 30's vector: level-triggered, but GSI 30 is no reserved pin.
pub const LEVEL_VECTOR_UNRESERVED: u8 = 0x5d;
/// GSI 6's vector: a reserved pin, edge-triggered.
pub const EDGE_VECTOR: u8 = 0x5e;
/// The test routes: (GSI, MSI data); each MSI goes to
/// [`MSI_ADDRESS_APIC0`] with fixed delivery.
pub const LEVEL_IRQ_ROUTES: [(u32, u32); 3] = [
    (5, MSI_DATA_LEVEL | LEVEL_VECTOR as u32),
    (30, MSI_DATA_LEVEL | LEVEL_VECTOR_UNRESERVED as u32),
    (6, EDGE_VECTOR as u32),
];

/// The memory-slot test port. Writes are commands to the VMM: 1 fetches
/// the dirty log of the logged slot (`KVM_GET_DIRTY_LOG`); 2 moves the
/// logged slot to [`MOVED_SLOT_BASE`], 3 moves it back. A 4-byte read
/// returns the next page index of the last fetched log, or `0xffff_ffff`
/// when there is none left.
pub const MEMTEST_PORT: u16 = 0xf6;
pub const MEMTEST_FETCH_DIRTY_LOG: u8 = 1;
pub const MEMTEST_MOVE_AWAY: u8 = 2;
pub const MEMTEST_MOVE_BACK: u8 = 3;
/// No more page indices.
pub const MEMTEST_END: u32 = 0xffff_ffff;

/// The logged slot: RAM with `KVM_MEM_LOG_DIRTY_PAGES` (slot 1), zeroed.
pub const LOGGED_SLOT_BASE: u64 = 0x1000_0000;
pub const LOGGED_SLOT_PAGES: u64 = 16;
/// Where `MEMTEST_MOVE_AWAY` moves it.
pub const MOVED_SLOT_BASE: u64 = 0x1200_0000;
/// The read-only slot (slot 2, `KVM_MEM_READONLY`): byte `i` holds
/// [`rom_byte`]`(i)`; the guest's writes exit as MMIO and change nothing.
pub const ROM_BASE: u64 = 0x1100_0000;
pub const ROM_SIZE: u64 = 0x1_0000;

/// The read-only slot's contents at offset `i`.
pub const fn rom_byte(i: u64) -> u8 {
    (i as u8).wrapping_mul(7) ^ (i >> 8) as u8 ^ 0x5a
}

/// Guest-physical address at which a test guest's RAM begins.
pub const GUEST_RAM_BASE: u64 = 0;

/// Register state at a test guest's first instruction: real mode, `CS` = 0,
/// `IP` = the ELF entry point (which must lie below 64 KiB), every general
/// register 0 except `EBX`, which holds the VM's id (1, 2, ...), and `ECX`,
/// which holds the size of the guest's RAM in bytes.
pub const ENTRY_MAX: u64 = 0x1_0000;
