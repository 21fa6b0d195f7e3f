//! Typed addresses: host-physical, host-virtual, guest-physical and
//! guest-virtual addresses are four types, so one can never be passed where
//! another is expected. Arithmetic is checked; the types are `Copy` and as
//! cheap as a `u64`.

use core::fmt;

macro_rules! address {
    ($(#[$doc:meta])* $name:ident, $short:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// `self + off`, or `None` on overflow.
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// Offset within its 4 KiB page.
            pub const fn page_offset(self) -> u64 {
                self.0 & 0xfff
            }
            /// The address rounded down to its 4 KiB page.
            pub const fn page_base(self) -> Self {
                Self(self.0 & !0xfff)
            }
            pub const fn is_page_aligned(self) -> bool {
                self.0 & 0xfff == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, ":{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address!(
    /// A host-physical address (what VMCS/VMCB pointers and EPT/NPT leaves hold).
    HostPhys,
    "hpa"
);
address!(
    /// A host-virtual address in the hypervisor's own address space.
    HostVirt,
    "hva"
);
address!(
    /// A guest-physical address (what EPT/NPT translate).
    GuestPhys,
    "gpa"
);
address!(
    /// A guest-virtual (linear) address (what the guest's page tables translate).
    GuestVirt,
    "gva"
);

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(
            GuestPhys::new(0x1000).checked_add(0x10),
            Some(GuestPhys::new(0x1010))
        );
        assert_eq!(HostPhys::new(u64::MAX).checked_add(1), None);
        assert_eq!(GuestVirt::new(0x1234).page_base(), GuestVirt::new(0x1000));
        assert_eq!(GuestVirt::new(0x1234).page_offset(), 0x234);
        assert!(HostPhys::new(0x2000).is_page_aligned());
        assert_eq!(format!("{:?}", GuestPhys::new(0x10)), "gpa:0x10");
    }
}
