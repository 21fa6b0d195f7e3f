//! The guest as the hypervisor sees it from outside: its RAM, its page
//! tables (walked to fetch an instruction), the length of the instruction
//! that exited, and what MMIO emulation needs: the decoder of the
//! instructions guests use on device memory (`mmio_insn`) and their
//! arithmetic (`alu`). Pure logic, tested on the host.

pub mod alu;
pub mod insn;
pub mod mmio_insn;
pub mod ram;
pub mod walk;

pub use ram::GuestRam;
