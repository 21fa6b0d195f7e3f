//! The hypervisor's GDT and TSS. The bootloader leaves TR = 0, but VMX needs
//! a valid host TR (SDM Vol. 3C 26.2.3) and a double fault needs a known-good
//! stack, so we load our own: null, 64-bit code, data, TSS.

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

/// IST slots (1-based in the IDT gate, 0-based in the TSS).
pub const IST_DOUBLE_FAULT: u16 = 1;
pub const IST_NMI: u16 = 2;
pub const IST_MACHINE_CHECK: u16 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

/// An IST stack and, below it, a page that boot unmaps
/// (`protect::harden`): an overflow faults at once instead of running into
/// the stack or static below.
#[repr(C, align(4096))]
struct Stack {
    guard: [u8; 4096],
    stack: [u8; IST_STACK_SIZE],
}

static mut IST_STACKS: [Stack; 3] = [const {
    Stack {
        guard: [0; 4096],
        stack: [0; IST_STACK_SIZE],
    }
}; 3];

/// The guard pages' addresses, for `protect::harden` to unmap.
pub fn ist_guard_pages() -> [u64; 3] {
    // SAFETY: only the addresses of the statics are taken.
    [0, 1, 2].map(|i| unsafe { core::ptr::addr_of!(IST_STACKS[i].guard) } as u64)
}

static TSS: spin::Once<TaskStateSegment> = spin::Once::new();
static GDT: spin::Once<(GlobalDescriptorTable, Selectors)> = spin::Once::new();

/// The selectors and bases VMX's host-state area needs.
#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    pub code: SegmentSelector,
    pub data: SegmentSelector,
    pub tss: SegmentSelector,
}

/// Builds and loads the GDT and TSS on this CPU.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (slot, stack) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK]
            .into_iter()
            .zip(0..)
        {
            // SAFETY: only the address of the static is taken; the stacks are
            // used by the CPU alone, through the TSS.
            let base = unsafe { core::ptr::addr_of!(IST_STACKS[stack].stack) } as u64;
            tss.interrupt_stack_table[usize::from(slot - 1)] =
                VirtAddr::new(base + IST_STACK_SIZE as u64);
        }
        tss
    });
    let (gdt, sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which lives forever.
    unsafe {
        CS::set_reg(sel.code);
        SS::set_reg(sel.data);
        DS::set_reg(sel.data);
        ES::set_reg(sel.data);
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(sel.tss);
    }
    #[cfg(target_os = "none")]
    super::percpu::init(0, tss_base());
}

/// Builds and loads a GDT and TSS of its own on an application processor
/// (a TSS is busy on the CPU that loaded it): the same layout as `init`'s,
/// so the selectors (and the IDT's) are the same, with IST stacks from
/// `stack`, which returns the top of a fresh 16 KiB stack (no guard page:
/// the frames come from the physical-memory window). The tables are never
/// freed.
pub fn init_ap(cpu: usize, mut stack: impl FnMut() -> Option<u64>) -> bool {
    #[cfg(not(target_os = "none"))]
    let _ = cpu;
    let mut tss = TaskStateSegment::new();
    for slot in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK] {
        let Some(top) = stack() else {
            return false;
        };
        tss.interrupt_stack_table[usize::from(slot - 1)] = VirtAddr::new(top);
    }
    let tss: &'static TaskStateSegment = alloc::boxed::Box::leak(alloc::boxed::Box::new(tss));
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = alloc::boxed::Box::leak(alloc::boxed::Box::new(gdt));
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which lives forever.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(tss_sel);
    }
    #[cfg(target_os = "none")]
    super::percpu::init(cpu, core::ptr::from_ref(tss) as u64);
    true
}

/// This CPU's selectors (after `init`).
pub fn selectors() -> Option<Selectors> {
    GDT.get().map(|(_, s)| *s)
}

/// Linear address of the boot CPU's TSS (`arch::percpu::tss_base` has
/// this CPU's).
pub fn tss_base() -> u64 {
    TSS.get().map_or(0, |t| t as *const TaskStateSegment as u64)
}

/// Linear address of the GDT (VMX host GDTR base).
pub fn gdt_base() -> u64 {
    x86_64::instructions::tables::sgdt().base.as_u64()
}
