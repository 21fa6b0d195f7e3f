//! The host CPU: descriptor tables, exceptions, privileged instructions,
//! MSR numbers, legacy interrupt controllers and power-off.

pub mod apic;
pub mod gdt;
#[cfg(target_os = "none")]
pub mod idt;
pub mod instr;
pub mod msr;
#[cfg(target_os = "none")]
pub mod pic;
pub mod power;
pub mod xsave;
