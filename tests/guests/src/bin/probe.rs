//! The `probe` guest (issue 10's isolation probe, in the slow tests): reads
//! every 4 KiB page around each of its memory slots and one address per
//! 2 MiB of the guest-physical space up to 512 GiB (one per GiB above, up
//! to the CPU's MAXPHYADDR), and requires each read to find either its own
//! memory (inside its slots: its RAM, the dirty-logged slot, the read-only
//! slot with its known bytes) or an MMIO exit that the VMM answers with all
//! ones. Anything else — a value that is neither — would be memory the
//! hypervisor mapped into its nested page tables that is not its own.
//! Addresses above the first GiB (which the boot code maps) are read
//! through a 2 MiB window whose page-directory entry it moves.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{
        LOGGED_SLOT_BASE, LOGGED_SLOT_PAGES, MMIO_SCRATCH_BASE, MMIO_SCRATCH_SIZE, ROM_BASE,
        ROM_SIZE, rom_byte,
    };
    use core::arch::asm;
    use core::ptr::{read_volatile, write_volatile};
    use guests::cpu::cpuid;
    use guests::port::exit;
    use guests::{BootInfo, fail, println};

    guests::entry!(run);

    const PAGE: u64 = 4096;
    const GIB: u64 = 1 << 30;
    /// One probe per 2 MiB below this, one per GiB above.
    const FINE_STEP: u64 = 2 << 20;
    const FINE_LIMIT: u64 = 1 << 39;
    /// Present, writable, page size (a 2 MiB page in a page directory).
    const HUGE: u64 = 0x83;
    const TABLE: u64 = 0x3;
    /// How far around each slot every page is read.
    const AROUND: u64 = 64 * 1024;

    /// The window: the second GiB of linear addresses, whose PDPT entry
    /// points at one page directory (at `WINDOW_PD`) whose first entry is
    /// moved to each 2 MiB block probed (2 MiB pages need no CPUID feature;
    /// 1 GiB pages are not offered everywhere).
    const WINDOW: u64 = GIB;
    const WINDOW_PD: u64 = 0x30_0000;

    /// Sets the window up; returns the PDE pointer.
    fn window() -> *mut u64 {
        let cr3: u64;
        // SAFETY: reading CR3 changes nothing.
        unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
        let pml4 = (cr3 & !0xfff) as *const u64;
        // SAFETY: the boot code's PML4 and PDPT are in the identity-mapped
        // first GiB; PDPT[1] maps nothing yet; WINDOW_PD is free RAM.
        unsafe {
            let pdpt = (read_volatile(pml4) & 0x000f_ffff_ffff_f000) as *mut u64;
            core::ptr::write_bytes(WINDOW_PD as *mut u8, 0, PAGE as usize);
            write_volatile(pdpt.add(1), WINDOW_PD | TABLE);
            asm!("mov cr3, {}", in(reg) cr3, options(nostack));
        }
        WINDOW_PD as *mut u64
    }

    /// Reads the 8 bytes at `gpa` through the window.
    fn read_gpa(pde: *mut u64, gpa: u64) -> u64 {
        if gpa < GIB {
            // SAFETY: the first GiB is identity-mapped; a hole exits.
            return unsafe { read_volatile(gpa as *const u64) };
        }
        let block = gpa & !(FINE_STEP - 1);
        // SAFETY: the window's PDE is ours; INVLPG drops the old block's
        // translation; the read of a hole exits to the VMM.
        unsafe {
            write_volatile(pde, block | HUGE);
            let va = WINDOW + (gpa - block);
            asm!("invlpg [{}]", in(reg) va, options(nostack));
            read_volatile(va as *const u64)
        }
    }

    /// What a read of the 8 bytes at `gpa` must find: Some(bytes) inside
    /// our slots, None for "all ones" (nothing there), or the scratch MMIO
    /// device's page, which we skip.
    enum Want {
        Own(Option<u64>),
        AllOnes,
        Skip,
    }

    fn want(gpa: u64, ram: u64) -> Want {
        let rom = |a: u64| {
            u64::from_le_bytes(core::array::from_fn(|i| rom_byte(a - ROM_BASE + i as u64)))
        };
        let logged = LOGGED_SLOT_BASE..LOGGED_SLOT_BASE + LOGGED_SLOT_PAGES * PAGE;
        if gpa < ram || logged.contains(&gpa) {
            Want::Own(None)
        } else if (ROM_BASE..ROM_BASE + ROM_SIZE).contains(&gpa) {
            Want::Own(Some(rom(gpa)))
        } else if (MMIO_SCRATCH_BASE..MMIO_SCRATCH_BASE + MMIO_SCRATCH_SIZE).contains(&gpa) {
            Want::Skip
        } else {
            Want::AllOnes
        }
    }

    fn probe(pde: *mut u64, gpa: u64, ram: u64, count: &mut u64) {
        let w = want(gpa, ram);
        if matches!(w, Want::Skip) {
            return;
        }
        let v = read_gpa(pde, gpa);
        *count += 1;
        match w {
            Want::AllOnes if v != u64::MAX => {
                fail!("GPA {gpa:#x} read {v:#018x}: not the VM's memory and not an MMIO hole")
            }
            Want::Own(Some(bytes)) if v != bytes => {
                fail!("GPA {gpa:#x} in the read-only slot read {v:#018x}, not {bytes:#018x}")
            }
            _ => {}
        }
    }

    fn run(boot: BootInfo) -> ! {
        let ram = boot.ram_size;
        if ram < WINDOW_PD + PAGE {
            fail!("probe needs more than {WINDOW_PD:#x} bytes of RAM, has {ram:#x}");
        }
        // MAXPHYADDR, or 36 bits where the CPU does not say.
        let maxphyaddr = if cpuid(0x8000_0000, 0).eax >= 0x8000_0008 {
            cpuid(0x8000_0008, 0).eax & 0xff
        } else {
            36
        };
        let top = 1u64 << maxphyaddr.min(52);
        let pde = window();
        println!("probe: MAXPHYADDR {maxphyaddr}");
        let mut count = 0;
        // Every page around each slot (and the slot's edges inside it).
        for (base, end) in [
            (0, ram),
            (
                LOGGED_SLOT_BASE,
                LOGGED_SLOT_BASE + LOGGED_SLOT_PAGES * PAGE,
            ),
            (ROM_BASE, ROM_BASE + ROM_SIZE),
        ] {
            let from = base.saturating_sub(AROUND);
            let mut a = from;
            while a < end + AROUND {
                // Inside a big slot only its edges.
                if a < base + AROUND || a + AROUND >= end {
                    probe(pde, a, ram, &mut count);
                }
                a += PAGE;
            }
        }
        let near = count;
        // One address per 2 MiB (offset into the block so as not to hit
        // only block starts), then one per GiB.
        let mut a = 0x1_0008;
        while a < top {
            probe(pde, a, ram, &mut count);
            a += if a < FINE_LIMIT { FINE_STEP } else { GIB };
        }
        println!(
            "probe: {near} pages around the slots and {} addresses up to {:#x}: only the VM's own memory and MMIO holes",
            count - near,
            top
        );
        println!("PASS");
        exit(0)
    }
}
