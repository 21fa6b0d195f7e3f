//! The Linux errno values a request can fail with. A request returns
//! `-errno` exactly where the KVM ioctl would (DESIGN.md D1); the values are
//! those of `asm-generic/errno-base.h` and `errno.h`, which x86 uses.

/// Operation not permitted.
pub const EPERM: i32 = 1;
/// No such entry (e.g. no such memory slot).
pub const ENOENT: i32 = 2;
/// Interrupted: `KVM_RUN` gave the CPU back (`KVM_EXIT_INTR`).
pub const EINTR: i32 = 4;
/// Input/output error (e.g. no working power-off).
pub const EIO: i32 = 5;
/// No such device or address.
pub const ENXIO: i32 = 6;
/// Argument list too long (e.g. too many MSRs or CPUID entries).
pub const E2BIG: i32 = 7;
/// Bad handle (the counterpart of a bad file descriptor).
pub const EBADF: i32 = 9;
/// Try again: Linux's `KVM_RUN` on a vCPU waiting for SIPI
/// (`KVM_MP_STATE_UNINITIALIZED`) returns it when an event woke the vCPU
/// without a signal; the VMM runs it again.
pub const EAGAIN: i32 = 11;
/// Out of memory (the hypervisor's metadata pool is exhausted).
pub const ENOMEM: i32 = 12;
/// Bad address: an argument outside the control domain's RAM.
pub const EFAULT: i32 = 14;
/// Busy: another caller is inside `KVM_RUN` on the vCPU.
pub const EBUSY: i32 = 16;
/// Already exists (e.g. a vCPU id in use).
pub const EEXIST: i32 = 17;
/// Invalid argument; also KVM's answer to an unknown request on a system
/// or vCPU handle.
pub const EINVAL: i32 = 22;
/// Inappropriate request: KVM's answer to an unknown request on a VM handle.
pub const ENOTTY: i32 = 25;
/// No space left (e.g. no free memory slot).
pub const ENOSPC: i32 = 28;
/// Operation not supported.
pub const EOPNOTSUPP: i32 = 95;
