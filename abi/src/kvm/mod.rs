//! The KVM ABI for x86-64, as the hypervisor and the control domain speak it
//! (DESIGN.md D1).
//!
//! # Layout
//!
//! Every structure here is byte-identical to its counterpart in
//! `linux/kvm.h` (with `asm/kvm.h` for x86): same size, alignment and field
//! offsets. Each one carries compile-time asserts of all three, and
//! `abi/tests/layout.rs` compares them with the `kvm-bindings` crate. Padding
//! the C compiler would insert silently is an explicit field here (named
//! `pad`/`padding` where KVM has no name for it), so every byte of every
//! structure belongs to a named field; the asserts check that too.
//!
//! # Names
//!
//! Types keep KVM's own snake_case names (`kvm_run`, `kvm_regs`, ...), and
//! fields keep the names `kvm.h` gives them, so that anyone who knows KVM
//! recognises them. Two systematic exceptions, both as in `kvm-bindings`:
//! a field called `type` in C is `type_`, and C's `char` arrays are `u8`.
//! Structures that C declares anonymously inside another get the name of
//! their container and member: `kvm_run`'s exit union is [`kvm_run_exit`]
//! (field `exit`), its `io` member is [`kvm_run_io`], and so on.
//!
//! # Pointers are guest-physical addresses
//!
//! Where `kvm.h` has a user-space pointer nested inside an argument
//! (`kvm_dirty_log::dirty_bitmap`, `kvm_msr_filter_range::bitmap`), this ABI
//! has a `u64` holding a *control-domain guest-physical address*. The layout
//! is unchanged (x86-64 pointers are 8 bytes).
//!
//! # Flexible arrays
//!
//! Structures that end in a C flexible array (`kvm_msrs`, `kvm_msr_list`,
//! `kvm_cpuid2`, `kvm_irq_routing`, `kvm_xsave`) are the fixed header here,
//! ending in a zero-length array that names the entries and gives the header
//! the alignment C gives it. The entries follow the header in memory; their
//! count is in the header.
//!
//! # Mojito's own requests
//!
//! [`mojito`] holds what KVM has no counterpart for (closing a handle, run
//! pages, the hypervisor log, the control domain's boot-info page) and the
//! hypercall convention. Its names are not re-exported here, so a `mojito_`
//! name never passes for a KVM one.

#![allow(non_camel_case_types)]

/// Compile-time layout checks in the rust-vmm style: size, alignment, the
/// offset of each field, and (for structs) that the listed fields cover every
/// byte, so the list is complete and there is no implicit padding.
macro_rules! assert_layout {
    (struct $ty:ty, size $size:expr, align $align:expr, { $($field:ident: $off:expr),+ $(,)? }) => {
        const _: () = {
            assert!(::core::mem::size_of::<$ty>() == $size);
            assert!(::core::mem::align_of::<$ty>() == $align);
            $( assert!(::core::mem::offset_of!($ty, $field) == $off); )+
            assert!(
                0 $( + $crate::kvm::field_size(|s: &$ty| &raw const s.$field) )+ == $size,
                "fields do not cover the struct: a field is missing or there is implicit padding"
            );
        };
    };
    (union $ty:ty, size $size:expr, align $align:expr, { $($field:ident),+ $(,)? }) => {
        const _: () = {
            assert!(::core::mem::size_of::<$ty>() == $size);
            assert!(::core::mem::align_of::<$ty>() == $align);
            $(
                assert!(::core::mem::offset_of!($ty, $field) == 0);
                assert!($crate::kvm::field_size(|s: &$ty| &raw const s.$field) <= $size);
            )+
        };
    };
}

/// The size of the field a projection points at; used by `assert_layout!`.
pub(crate) const fn field_size<T, F>(_projection: fn(&T) -> *const F) -> usize {
    core::mem::size_of::<F>()
}

mod coalesced;
mod consts;
mod cpuid;
mod debug;
pub mod errno;
mod events;
mod fpu;
pub mod ioctl;
mod irq;
mod memory;
pub mod mojito;
mod msr;
mod regs;
mod requests;
mod run;
mod run_exit;
mod vm;

pub use coalesced::*;
pub use consts::*;
pub use cpuid::*;
pub use debug::*;
pub use events::*;
pub use fpu::*;
pub use irq::*;
pub use memory::*;
pub use msr::*;
pub use regs::*;
pub use requests::*;
pub use run::*;
pub use run_exit::*;
pub use vm::*;
