//! The guest as the hypervisor sees it from outside: its RAM, its page
//! tables (walked to fetch an instruction) and the length of the instruction
//! that exited. Pure logic lives in `walk` and `insn`, tested on the host.

pub mod insn;
pub mod ram;
pub mod walk;

pub use ram::GuestRam;
