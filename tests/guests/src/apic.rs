//! What the guests that test the local APIC share (`lapic`, `smp`): the
//! xAPIC page mapped into the boot path's tables, and a wait measured on
//! the VMM's PIT.

use crate::port::{inb, outb};
use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

/// The xAPIC page, where every APIC starts (SDM Vol. 3A 11.4.1).
pub const APIC_PAGE: u64 = 0xfee0_0000;

/// The PIT's input clock, and channel 2's count for 50 ms.
pub const PIT_HZ: u32 = 1_193_182;
pub const PIT_50_MS: u16 = 59_659;

/// The page directory for the 4th GiB, where the APIC page lies (the boot
/// path maps only the first GiB).
#[repr(C, align(4096))]
struct Table([u64; 512]);
static mut APIC_PD: Table = Table([0; 512]);

/// Maps the APIC page with a 2 MiB page, uncached (PCD | PWT): PDPT[3] of
/// the boot path's tables gets a page directory of its own. Once, on the
/// BSP, before any other vCPU runs (they share the tables).
pub fn map_apic() {
    const PRESENT_WRITABLE: u64 = 0x3;
    const PWT: u64 = 1 << 3;
    const PCD: u64 = 1 << 4;
    const PS: u64 = 1 << 7;
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    let cr3: u64;
    // SAFETY: reads CR3.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    // SAFETY: the boot path's PML4 and PDPT lie in the identity-mapped
    // first GiB; only one vCPU runs yet, and nothing maps the 4th GiB.
    unsafe {
        let pml4 = (cr3 & ADDR) as *const u64;
        let pdpt = (read_volatile(pml4) & ADDR) as *mut u64;
        let pd = &mut *addr_of_mut!(APIC_PD);
        pd.0[((APIC_PAGE >> 21) & 511) as usize] =
            (APIC_PAGE & !0x1f_ffff) | PS | PCD | PWT | PRESENT_WRITABLE;
        write_volatile(
            pdpt.add(((APIC_PAGE >> 30) & 511) as usize),
            addr_of!(APIC_PD) as u64 | PRESENT_WRITABLE,
        );
        asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags));
    }
}

/// Reads the xAPIC register at `reg` (`map_apic` first).
pub fn xapic_read(reg: u32) -> u32 {
    // SAFETY: the APIC page is mapped (uncached) by `map_apic`; a 32-bit
    // aligned load is how its registers are read.
    unsafe { read_volatile((APIC_PAGE + u64::from(reg)) as *const u32) }
}

/// Writes the xAPIC register at `reg`.
pub fn xapic_write(reg: u32, value: u32) {
    // SAFETY: as in `xapic_read`, a 32-bit aligned store; it changes
    // interrupt state only, which the guest's IDT handles.
    unsafe { write_volatile((APIC_PAGE + u64::from(reg)) as *mut u32, value) };
}

/// Channel 2 of the VMM's PIT counts `count` ticks in mode 0 (gate on
/// through port 0x61, speaker off), as Linux's quick TSC calibration does;
/// returns when OUT2 (port 0x61 bit 5) goes high, with interrupts on while
/// it waits if `interrupts` (the caller's IDT handles what comes), and off
/// after.
pub fn pit_wait(count: u16, interrupts: bool) {
    outb(0x61, (inb(0x61) & !0x02) | 0x01);
    outb(0x43, 0xb0);
    outb(0x42, count as u8);
    outb(0x42, (count >> 8) as u8);
    if interrupts {
        // SAFETY: the caller's IDT handles every vector it raises.
        unsafe { asm!("sti", options(nomem, nostack)) };
    }
    while inb(0x61) & 0x20 == 0 {}
    // SAFETY: CLI only masks interrupts.
    unsafe { asm!("cli", options(nomem, nostack)) };
}
