//! Extended page tables (SDM Vol. 3C 29.3): the guest-physical → host-
//! physical translation, built by the shared `mm::paging` builder in this
//! format.

use crate::mm::HostPhys;
use crate::mm::paging::{ADDR_MASK, Format, Perms};

/// EPT entry bits (SDM Vol. 3C Tables 29-1..29-6).
const READ: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const EXEC: u64 = 1 << 2;
/// Bit 7 of a page-directory entry: it maps a 2 MiB page (Table 29-4).
const LARGE: u64 = 1 << 7;
/// Leaf memory type in bits 5:3: 6 = write-back.
const MEMTYPE_WB: u64 = 6 << 3;

/// The EPT format.
#[derive(Debug)]
pub enum Ept {}

impl Format for Ept {
    fn table(table: HostPhys) -> u64 {
        (table.raw() & ADDR_MASK) | READ | WRITE | EXEC
    }
    fn leaf(frame: HostPhys, p: Perms) -> u64 {
        let mut e = (frame.raw() & ADDR_MASK) | MEMTYPE_WB;
        if p.read {
            e |= READ;
        }
        if p.write {
            e |= WRITE;
        }
        if p.exec {
            e |= EXEC;
        }
        e
    }
    fn large_leaf(frame: HostPhys, p: Perms) -> u64 {
        Self::leaf(frame, p) | LARGE
    }
    fn is_large(entry: u64) -> bool {
        entry & LARGE != 0
    }
    fn present(entry: u64) -> bool {
        entry & (READ | WRITE | EXEC) != 0
    }
    fn perms(entry: u64) -> Perms {
        Perms {
            read: entry & READ != 0,
            write: entry & WRITE != 0,
            exec: entry & EXEC != 0,
        }
    }
}

/// The EPT pointer for a 4-level, write-back table at `root` (SDM Vol. 3C
/// 25.6.11): memory type in bits 2:0, page-walk length − 1 in bits 5:3.
pub fn eptp(root: HostPhys) -> u64 {
    const WALK_LENGTH_4: u64 = 3 << 3;
    const EPTP_WB: u64 = 6;
    (root.raw() & ADDR_MASK) | WALK_LENGTH_4 | EPTP_WB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(eptp(HostPhys::new(0x1234_5000)), 0x1234_501e);
        assert_eq!(Ept::table(HostPhys::new(0x5000)), 0x5007);
        assert_eq!(Ept::leaf(HostPhys::new(0x7000), Perms::RWX), 0x7037);
        assert_eq!(Ept::leaf(HostPhys::new(0x7000), Perms::RX), 0x7035);
        assert!(!Ept::present(0x7030));
        assert_eq!(Ept::perms(0x7035), Perms::RX);
        assert_eq!(
            Ept::large_leaf(HostPhys::new(0x20_0000), Perms::RWX),
            0x20_00b7
        );
        assert!(Ept::is_large(0x20_00b7) && !Ept::is_large(0x7037));
    }
}
