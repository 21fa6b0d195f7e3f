//! The `inshole` guest (the hardening issue's malicious-guest suite): a
//! REP INS whose buffer runs from the last 64 bytes of RAM into the
//! guest-physical hole after it. The hypervisor moves INS data into the
//! guest's memory itself, a page at a time; the first batch lands in RAM,
//! and the next one's destination is no RAM at all. The VM must stop with
//! `KVM_EXIT_INTERNAL_ERROR` / `KVM_INTERNAL_ERROR_EMULATION` (docs/api.md
//! §5: Mojito does not emulate INS stores to device memory; KVM does, with
//! MMIO exits), and nothing after it may run.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use core::arch::asm;
    use guests::{BootInfo, fail, println};

    guests::entry!(run);

    /// A port no device claims: it reads as all ones.
    const UNCLAIMED: u16 = 0x2f4;
    /// Bytes read: half into RAM, half into the hole.
    const COUNT: u64 = 128;

    fn run(boot: BootInfo) -> ! {
        let dst = boot.ram_size - COUNT / 2;
        println!(
            "rep insb of {COUNT} bytes at {dst:#x}: RAM's last {} bytes, then the hole",
            COUNT / 2
        );
        // SAFETY: the first half of the buffer is the top of our RAM, which
        // holds nothing of ours (the image and stack lie low); the VM stops
        // at the second half.
        unsafe {
            asm!(
                "cld",
                "rep insb",
                inout("rdi") dst => _,
                inout("rcx") COUNT => _,
                in("dx") UNCLAIMED,
                options(nostack),
            )
        };
        fail!("the rep insb into the hole ran on")
    }
}
