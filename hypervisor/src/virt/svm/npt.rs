//! Nested page tables (AMD APM Vol. 2 15.25): the guest-physical → host-
//! physical translation, in the ordinary long-mode page-table format,
//! built by the shared `mm::paging` builder.

use crate::mm::HostPhys;
use crate::mm::paging::{ADDR_MASK, Format, Perms};

/// Long-mode page-table entry bits (APM Vol. 2 5.4.1).
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
/// Nested tables are walked as user-mode accesses: every level must have
/// U/S set (APM Vol. 2 15.25.5; QEMU's TCG enforces it, FACTS.md).
const USER: u64 = 1 << 2;
const NO_EXECUTE: u64 = 1 << 63;
/// PS (bit 7) in a page-directory entry: a 2 MiB page.
const PAGE_SIZE: u64 = 1 << 7;

/// The NPT format.
#[derive(Debug)]
pub enum Npt {}

impl Format for Npt {
    fn table(table: HostPhys) -> u64 {
        (table.raw() & ADDR_MASK) | PRESENT | WRITABLE | USER
    }
    fn leaf(frame: HostPhys, p: Perms) -> u64 {
        let mut e = (frame.raw() & ADDR_MASK) | PRESENT | USER;
        if p.write {
            e |= WRITABLE;
        }
        if !p.exec {
            e |= NO_EXECUTE;
        }
        e
    }
    fn large_leaf(frame: HostPhys, p: Perms) -> u64 {
        Self::leaf(frame, p) | PAGE_SIZE
    }
    fn is_large(entry: u64) -> bool {
        entry & PAGE_SIZE != 0
    }
    fn present(entry: u64) -> bool {
        entry & PRESENT != 0
    }
    fn perms(entry: u64) -> Perms {
        Perms {
            read: true,
            write: entry & WRITABLE != 0,
            exec: entry & NO_EXECUTE == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(Npt::table(HostPhys::new(0x5000)), 0x5007);
        assert_eq!(Npt::leaf(HostPhys::new(0x7000), Perms::RWX), 0x7007);
        assert_eq!(Npt::leaf(HostPhys::new(0x7000), Perms::RX), 0x7005);
        assert_eq!(Npt::perms(0x7005), Perms::RX);
        assert!(!Npt::present(0x7006));
        assert_eq!(
            Npt::large_leaf(HostPhys::new(0x20_0000), Perms::RWX),
            0x20_0087
        );
        assert!(Npt::is_large(0x20_0087));
    }
}
