//! The `mmiofail` guest: an instruction outside the MMIO decoder's set on
//! device memory (`fld dword ptr [MMIO_SCRATCH_BASE]`, x87, which KVM's
//! emulator lacks too). The VM must stop with `KVM_EXIT_INTERNAL_ERROR` /
//! `KVM_INTERNAL_ERROR_EMULATION` and the instruction's bytes, as under
//! KVM; nothing after it may run.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::MMIO_SCRATCH_BASE;
    use core::arch::asm;
    use guests::{BootInfo, fail, println};

    guests::entry!(run);

    fn run(_boot: BootInfo) -> ! {
        println!("fld from device memory");
        // SAFETY: a load from the scratch page into the x87 stack; the VM
        // stops here.
        unsafe {
            asm!(
                "fninit",
                "fld dword ptr [{a}]",
                a = in(reg) MMIO_SCRATCH_BASE,
                options(nostack),
            )
        };
        fail!("the fld on device memory ran")
    }
}
