//! Host-mode protections, set up at boot: SMEP (no instruction fetch from
//! user pages in supervisor mode) and SMAP (no data access to user pages in
//! supervisor mode without EFLAGS.AC), SDM Vol. 3A 5.6 "Access Rights",
//! AMD APM Vol. 2 5.6 — the hypervisor maps nothing user-accessible for
//! itself, so these only turn a mistake, a stray pointer into memory a
//! lower privilege controls, into a fault; and W^X with guard pages
//! ([`harden`]): only the hypervisor's code is executable and none of it
//! writable, and every stack has an unmapped page below it.

use super::instr::{cpuid, read_cr4, write_cr4};

/// CPUID.(EAX=7, ECX=0):EBX.
const CPUID7_EBX_SMEP: u32 = 1 << 7;
const CPUID7_EBX_SMAP: u32 = 1 << 20;
/// CR4 bits (SDM Vol. 3A 2.5).
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;

/// What [`enable`] turned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protections {
    pub smep: bool,
    pub smap: bool,
}

/// Turns on SMEP and SMAP where the CPU has them.
pub fn enable() -> Protections {
    let ebx = if cpuid(0, 0)[0] >= 7 {
        cpuid(7, 0)[1]
    } else {
        0
    };
    let p = Protections {
        smep: ebx & CPUID7_EBX_SMEP != 0,
        smap: ebx & CPUID7_EBX_SMAP != 0,
    };
    let bits = if p.smep { CR4_SMEP } else { 0 } | if p.smap { CR4_SMAP } else { 0 };
    if bits != 0 {
        // SAFETY: the CPU supports both bits (CPUID above); the
        // hypervisor's mappings (the bootloader's kernel, stack and
        // physical-memory window) are all supervisor pages, so nothing it
        // does fetches from or touches a user page.
        unsafe { write_cr4(read_cr4() | bits) };
    }
    p
}

/// What [`harden`] found and did to the hypervisor's own address space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hardening {
    /// Executable 4 KiB pages, all within the hypervisor's image.
    pub executable: u64,
    /// Executable pages outside the image (the bootloader's trampoline)
    /// made NX.
    pub made_nx: u64,
    /// Pages both writable and executable, or user-accessible, afterwards
    /// (W^X holds when both are 0), and executable pages outside the image.
    pub writable_executable: u64,
    pub user: u64,
    pub stray_executable: u64,
    /// Stacks with an unmapped page below them: the boot stack and the
    /// IST stacks.
    pub guarded_stacks: u32,
    pub stacks: u32,
    /// CR0.WP and EFER.NXE: without them the CPU ignores read-only in ring
    /// 0 and NX, and the audit would mean nothing.
    pub write_protect: bool,
    pub no_execute: bool,
}

impl Hardening {
    /// Whether W^X, no user pages and the guard pages all hold.
    pub fn holds(&self) -> bool {
        self.writable_executable == 0
            && self.user == 0
            && self.stray_executable == 0
            && self.guarded_stacks == self.stacks
            && self.write_protect
            && self.no_execute
    }
}

/// Enforces W^X on the hypervisor's own page tables (the bootloader's): the
/// executable pages outside the hypervisor's code `[text, text_end)` (from
/// the linker: the image's start and `etext`) are made NX — but never a
/// page that overlaps the image `[text, image_end)`, which the audit then
/// reports instead —
/// the IST stacks' guard pages are unmapped, and the result is audited
/// (`mm::audit`): nothing writable and executable, nothing user-accessible,
/// and an unmapped page below every stack (the bootloader leaves one below
/// the boot stack, `boot_stack_bottom`).
#[cfg(target_os = "none")]
pub fn harden(boot_stack_bottom: u64) -> Hardening {
    use crate::mm::HostPhys;
    use crate::mm::audit::{self, Leaf, NO_EXECUTE, PRESENT};
    let root = x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64();
    let read = |pa: u64| {
        // SAFETY: a page table of the active hierarchy, read through the
        // physical window; nothing else changes it while boot runs.
        unsafe { *crate::mm::phys::ptr::<[u64; 512]>(HostPhys::new(pa)) }
    };
    unsafe extern "C" {
        /// The ELF header, the image's first byte, and the ends of its
        /// code and of the whole image (lld defines them, SysV ABI names).
        static __ehdr_start: u8;
        static etext: u8;
        static end: u8;
    }
    let text = core::ptr::addr_of!(__ehdr_start) as u64;
    // The page `etext` falls in is code too.
    let text_end = (core::ptr::addr_of!(etext) as u64).next_multiple_of(4096);
    let image_end = core::ptr::addr_of!(end) as u64;
    // Overflow-safe: a leaf may end at the top of the address space.
    let inside =
        |l: &Leaf, lo: u64, hi: u64| l.va >= lo && l.va - lo < hi - lo && l.size <= hi - l.va;
    let in_image = |l: &Leaf| inside(l, text, text_end);
    let overlaps_image = |l: &Leaf| l.va < image_end && l.va.wrapping_add(l.size - 1) >= text;
    /// Sets or clears `bits` in a leaf's entry and drops its translations.
    fn change(l: &Leaf, set: u64, clear: u64) {
        let entry = crate::mm::phys::ptr::<u64>(HostPhys::new(l.table + 8 * l.index as u64));
        // SAFETY: the entry of a leaf of the active page tables, which only
        // boot changes; the pages it maps are the bootloader's trampoline
        // (never executed again) or a guard page (never touched). The walk
        // reads each table into a copy first, so changing an entry does
        // not disturb it.
        unsafe { *entry = (*entry | set) & !clear };
        // INVLPG drops the whole page, whatever its size.
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(l.va));
    }
    let mut h = Hardening::default();
    let guards = super::gdt::ist_guard_pages();
    // First pass: make the stray executable pages NX, unmap the guards.
    audit::walk(root, &read, &mut |l| {
        if l.executable && !in_image(&l) && !overlaps_image(&l) {
            change(&l, NO_EXECUTE, 0);
            h.made_nx += l.size / 4096;
        }
        if l.size == 4096 && guards.contains(&l.va) {
            change(&l, 0, PRESENT);
        }
    });
    // Second pass: the audit, and which stacks have nothing mapped below.
    let below: [u64; 4] = [
        boot_stack_bottom.wrapping_sub(4096),
        guards[0],
        guards[1],
        guards[2],
    ];
    let mut mapped = [false; 4];
    let mut s = audit::Summary::default();
    audit::walk(root, &read, &mut |l| {
        s.add(&l);
        if l.executable && !in_image(&l) {
            h.stray_executable += l.size / 4096;
        }
        for (m, &va) in mapped.iter_mut().zip(&below) {
            *m |= va >= l.va && va - l.va < l.size;
        }
    });
    h.executable = s.executable;
    h.writable_executable = s.writable_executable;
    h.user = s.user;
    h.stacks = below.len() as u32;
    h.guarded_stacks = mapped.iter().filter(|&&m| !m).count() as u32;
    const CR0_WP: u64 = 1 << 16;
    h.write_protect = crate::arch::instr::read_cr0() & CR0_WP != 0;
    // SAFETY: reading EFER has no side effect.
    let efer = unsafe { crate::arch::instr::rdmsr(crate::arch::msr::IA32_EFER) };
    h.no_execute = efer & crate::arch::msr::efer::NXE != 0;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_only_when_everything_does() {
        let good = Hardening {
            executable: 64,
            made_nx: 3,
            stacks: 4,
            guarded_stacks: 4,
            write_protect: true,
            no_execute: true,
            ..Default::default()
        };
        assert!(good.holds());
        assert!(
            !Hardening {
                write_protect: false,
                ..good
            }
            .holds()
        );
        assert!(
            !Hardening {
                no_execute: false,
                ..good
            }
            .holds()
        );
        assert!(
            !Hardening {
                writable_executable: 1,
                ..good
            }
            .holds()
        );
        assert!(!Hardening { user: 1, ..good }.holds());
        assert!(
            !Hardening {
                stray_executable: 2,
                ..good
            }
            .holds()
        );
        assert!(
            !Hardening {
                guarded_stacks: 3,
                ..good
            }
            .holds()
        );
    }
}
