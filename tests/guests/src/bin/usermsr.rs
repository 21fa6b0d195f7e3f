//! The `usermsr` guest: MSRs that neither Mojito nor KVM knows reach the
//! VMM (`KVM_CAP_X86_USER_SPACE_MSR`, reason unknown), which emulates four
//! scratch registers at `abi::guest::VMM_MSR_BASE` and refuses the rest; a
//! refusal, a read the VMM's MSR filter denies (`VMM_MSR_WRITE_ONLY`,
//! `KVM_X86_SET_MSR_FILTER`) and an invalid write to an MSR the hypervisor
//! knows raise #GP.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{VMM_MSR_BASE, VMM_MSR_COUNT, VMM_MSR_WRITE_ONLY};
    use guests::cpu::MSR_MTRR_DEF_TYPE;
    use guests::fault::{GP, try_rdmsr, try_wrmsr};
    use guests::port::exit;
    use guests::{BootInfo, fail, println};

    guests::entry!(run);

    /// What each VMM MSR gets: distinct, with bits in both halves (EDX and
    /// EAX carry them).
    fn pattern(i: u32) -> u64 {
        0x1234_5678_9abc_def0 ^ (u64::from(i) * 0x0101_0101_0101_0101)
    }

    fn run(_boot: BootInfo) -> ! {
        let readable = VMM_MSR_WRITE_ONLY - VMM_MSR_BASE;
        for i in 0..readable {
            match try_rdmsr(VMM_MSR_BASE + i) {
                Ok(0) => {}
                other => fail!("RDMSR {:#x} at start: {other:?}, want 0", VMM_MSR_BASE + i),
            }
        }
        for i in 0..VMM_MSR_COUNT {
            // SAFETY: the VMM's scratch MSRs control nothing.
            if let Err(v) = unsafe { try_wrmsr(VMM_MSR_BASE + i, pattern(i)) } {
                fail!("WRMSR {:#x} raised vector {v}", VMM_MSR_BASE + i);
            }
        }
        for i in 0..readable {
            match try_rdmsr(VMM_MSR_BASE + i) {
                Ok(v) if v == pattern(i) => {}
                other => fail!(
                    "RDMSR {:#x}: {other:?}, want {:#x}",
                    VMM_MSR_BASE + i,
                    pattern(i)
                ),
            }
        }
        println!("vmm msrs: {readable} registers keep what was written");
        // The filter denies the read before anything else looks at it.
        match try_rdmsr(VMM_MSR_WRITE_ONLY) {
            Err(GP) => {}
            other => fail!("RDMSR {VMM_MSR_WRITE_ONLY:#x} (filtered): {other:?}, want #GP"),
        }
        println!("vmm msrs: the filter denies reading {VMM_MSR_WRITE_ONLY:#x}; writing it works");
        let past = VMM_MSR_BASE + VMM_MSR_COUNT;
        match try_rdmsr(past) {
            Err(GP) => {}
            other => fail!("RDMSR {past:#x} (the VMM refuses it): {other:?}, want #GP"),
        }
        // SAFETY: refused, so nothing is written.
        match unsafe { try_wrmsr(past, 1) } {
            Err(GP) => {}
            other => fail!("WRMSR {past:#x} (the VMM refuses it): {other:?}, want #GP"),
        }
        // Bit 12 of MTRR_DEF_TYPE is reserved: the hypervisor refuses the
        // write itself (no exit: the VMM asked only for unknown MSRs).
        // SAFETY: refused, so the MTRRs stay as they are.
        match unsafe { try_wrmsr(MSR_MTRR_DEF_TYPE, 0x1006) } {
            Err(GP) => {}
            other => fail!("WRMSR IA32_MTRR_DEF_TYPE with a reserved bit: {other:?}, want #GP"),
        }
        println!("vmm msrs: #GP for an MSR the VMM refuses and a reserved MTRR_DEF_TYPE bit");
        println!("PASS");
        exit(0)
    }
}
