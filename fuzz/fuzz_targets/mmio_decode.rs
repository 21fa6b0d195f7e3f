//! The MMIO instruction decoder (`hypervisor::guest::mmio_insn`) against
//! iced-x86 on arbitrary bytes, in every CPU mode: the same comparison as
//! the unit tests' (`mmio_insn::oracle::check`). Any difference panics.

#![no_main]

use hypervisor::guest::mmio_insn::oracle;
use hypervisor::virt::CpuMode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for mode in [
        CpuMode::Real,
        CpuMode::Protected16,
        CpuMode::Protected32,
        CpuMode::Long64,
    ] {
        if let Err(difference) = oracle::check(data, mode) {
            panic!("{difference}");
        }
    }
});
