//! The Linux `_IOC` request encoding (`asm-generic/ioctl.h`, which x86 uses),
//! as `const fn`s: a request code packs a direction, a type byte, a number
//! and the argument's size.
//!
//! ```text
//!  31 30 29               16 15          8 7            0
//! ┌─────┬───────────────────┬─────────────┬──────────────┐
//! │ dir │ size (14 bits)    │ type        │ nr           │
//! └─────┴───────────────────┴─────────────┴──────────────┘
//! ```
//!
//! "Write" and "read" are from the caller's side, as in Linux: `_IOW`
//! passes data to the hypervisor, `_IOR` gets data back. In Mojito's
//! hypercall the direction also says what the argument register holds:
//! [`IOC_NONE`] an integer (or nothing), anything else the control-domain
//! guest-physical address of a `size`-byte argument (DESIGN.md D1).

/// No data transfer: the argument, if any, is an integer.
pub const IOC_NONE: u32 = 0;
/// The caller passes data (`_IOW`).
pub const IOC_WRITE: u32 = 1;
/// The caller receives data (`_IOR`).
pub const IOC_READ: u32 = 2;

/// Width of the `nr` field.
pub const IOC_NRBITS: u32 = 8;
/// Width of the `type` field.
pub const IOC_TYPEBITS: u32 = 8;
/// Width of the `size` field.
pub const IOC_SIZEBITS: u32 = 14;
/// Width of the `dir` field.
pub const IOC_DIRBITS: u32 = 2;

/// Position of the `nr` field.
pub const IOC_NRSHIFT: u32 = 0;
/// Position of the `type` field.
pub const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
/// Position of the `size` field.
pub const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
/// Position of the `dir` field.
pub const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;

/// `_IOC(dir, type, nr, size)`.
///
/// # Panics
///
/// If `dir` or `size` does not fit its field; in a `const` that is a
/// compile error, so an argument structure that outgrows 16 KiB cannot go
/// unnoticed.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(dir < 1 << IOC_DIRBITS, "_IOC direction out of range");
    assert!(
        size < 1 << IOC_SIZEBITS,
        "_IOC argument size does not fit 14 bits"
    );
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
}

/// `_IO(type, nr)`: no argument, or an integer argument.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOR(type, nr, T)` with `size = size_of::<T>()`: the caller receives a `T`.
pub const fn ior(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}

/// `_IOW(type, nr, T)` with `size = size_of::<T>()`: the caller passes a `T`.
pub const fn iow(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}

/// `_IOWR(type, nr, T)` with `size = size_of::<T>()`: a `T` goes both ways.
pub const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// `_IOC_DIR(request)`: [`IOC_NONE`], or [`IOC_READ`] and/or [`IOC_WRITE`].
pub const fn dir(request: u32) -> u32 {
    (request >> IOC_DIRSHIFT) & ((1 << IOC_DIRBITS) - 1)
}

/// `_IOC_TYPE(request)`: the type byte (`type` is a Rust keyword).
pub const fn type_(request: u32) -> u8 {
    ((request >> IOC_TYPESHIFT) & ((1 << IOC_TYPEBITS) - 1)) as u8
}

/// `_IOC_NR(request)`: the number within the type.
pub const fn nr(request: u32) -> u8 {
    ((request >> IOC_NRSHIFT) & ((1 << IOC_NRBITS) - 1)) as u8
}

/// `_IOC_SIZE(request)`: the size of the argument structure in bytes.
pub const fn size(request: u32) -> usize {
    ((request >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}

/// Whether the request's argument is the address of a structure (any
/// direction bit set) rather than an integer.
pub const fn takes_pointer(request: u32) -> bool {
    dir(request) != IOC_NONE
}
