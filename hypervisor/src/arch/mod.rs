//! The host CPU: descriptor tables, exceptions, privileged instructions,
//! MSR numbers, legacy interrupt controllers, COM1's interrupt, the
//! TSC's frequency and power-off/reset.

pub mod apic;
pub mod com1_irq;
pub mod gdt;
#[cfg(target_os = "none")]
pub mod idt;
pub mod instr;
pub mod msr;
pub mod percpu;
#[cfg(target_os = "none")]
pub mod pic;
pub mod power;
pub mod protect;
pub mod rtc;
#[cfg(target_os = "none")]
pub mod smp;
pub mod spec;
pub mod tsc;
pub mod xsave;
