//! Coalesced port writes (`KVM_REGISTER_COALESCED_MMIO` with `pio` = 1):
//! an OUT to a registered port range goes into the VM's ring, a page of
//! control-domain RAM (`MOJITO_SET_COALESCED_RING`), and the guest goes
//! on without a `KVM_EXIT_IO`. The VMM empties the ring after every RUN
//! before it handles the exit, so the writes reach its devices in order
//! with everything else the vCPUs did (KVM's `coalesced_mmio.c`; api.rst
//! 4.116). A serial console's transmit register is the use: Linux's boot
//! log is one OUT per character.
//!
//! As in KVM, the ring's `first` and `last` are read from the shared page
//! on every write and checked, never trusted: a full ring, a corrupt
//! index, no ring, or a page that cannot be written makes the write exit
//! as usual. MMIO zones (`pio` = 0) are refused (`-EINVAL`): only port
//! writes are coalesced here.

use abi::kvm::errno::{EINVAL, ENOSPC};
use abi::kvm::{KVM_COALESCED_MMIO_MAX, kvm_coalesced_mmio, kvm_coalesced_mmio_zone};

use crate::guest::ram::GuestRam;
use crate::mm::GuestPhys;

/// Zones a VM may register (KVM's bound is the I/O bus's 1000 devices;
/// a VMM needs a handful).
pub const MAX_ZONES: usize = 16;
/// One past the highest port.
const PORT_LIMIT: u64 = 0x1_0000;
/// Bytes of the ring header (`first`, `last`) before the entries.
const HEADER: u64 = 8;
/// Bytes of one entry.
const ENTRY: u64 = core::mem::size_of::<kvm_coalesced_mmio>() as u64;

/// A registered range of ports: `[base, base + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Zone {
    base: u16,
    len: u32,
}

impl Zone {
    /// Whether `[port, port + size)` lies inside (KVM's
    /// `coalesced_mmio_in_range`).
    fn holds(&self, port: u64, size: u64) -> bool {
        port >= u64::from(self.base) && port + size <= u64::from(self.base) + u64::from(self.len)
    }
}

/// A VM's zones and ring.
#[derive(Debug, Default)]
pub struct Coalesced {
    zones: [Option<Zone>; MAX_ZONES],
    /// The ring page's control-domain guest-physical address.
    ring: Option<u64>,
    /// Writes that went into the ring (for the VM's closing log line).
    pub count: u64,
}

impl Coalesced {
    /// `KVM_REGISTER_COALESCED_MMIO`: `-EINVAL` for `pio` ≠ 1 (MMIO zones
    /// are not offered) or a range that is empty or runs past port
    /// 0xFFFF; `-ENOSPC` with [`MAX_ZONES`] registered.
    pub fn register(&mut self, z: &kvm_coalesced_mmio_zone) -> Result<(), i32> {
        let zone = Self::check(z)?;
        let free = self.zones.iter_mut().find(|s| s.is_none()).ok_or(ENOSPC)?;
        *free = Some(zone);
        Ok(())
    }

    /// `KVM_UNREGISTER_COALESCED_MMIO`: removes every zone that holds the
    /// whole range (none may: still 0, as in KVM); `-EINVAL` as for
    /// [`Coalesced::register`].
    pub fn unregister(&mut self, z: &kvm_coalesced_mmio_zone) -> Result<(), i32> {
        let _ = Self::check(z)?;
        for slot in &mut self.zones {
            if slot.is_some_and(|s| s.holds(z.addr, u64::from(z.size))) {
                *slot = None;
            }
        }
        Ok(())
    }

    fn check(z: &kvm_coalesced_mmio_zone) -> Result<Zone, i32> {
        let end = z.addr.checked_add(u64::from(z.size)).ok_or(EINVAL)?;
        if z.pio != 1 || z.size == 0 || end > PORT_LIMIT {
            return Err(EINVAL);
        }
        Ok(Zone {
            base: z.addr as u16,
            len: z.size,
        })
    }

    /// `MOJITO_SET_COALESCED_RING` (the caller checked the page).
    pub fn set_ring(&mut self, gpa: Option<u64>) {
        self.ring = gpa;
    }

    /// Whether an OUT of `size` bytes to `port` is coalesced (a ring is set
    /// and a zone holds it).
    pub fn covers(&self, port: u16, size: u8) -> bool {
        self.ring.is_some()
            && self
                .zones
                .iter()
                .flatten()
                .any(|z| z.holds(u64::from(port), u64::from(size)))
    }

    /// Appends the OUT of the low `size` bytes of `value` to `port` to the
    /// ring in `cd_ram`. False — the write must exit as usual — without a
    /// ring, when it is full, when its `last` is out of range, or when the
    /// page cannot be accessed.
    pub fn push(&mut self, cd_ram: &mut GuestRam, port: u16, size: u8, value: u32) -> bool {
        let Some(ring) = self.ring else {
            return false;
        };
        let mut head = [0u8; HEADER as usize];
        if !cd_ram.read(GuestPhys::new(ring), &mut head) {
            return false;
        }
        let first = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let last = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if last >= KVM_COALESCED_MMIO_MAX || first >= KVM_COALESCED_MMIO_MAX {
            return false;
        }
        let next = (last + 1) % KVM_COALESCED_MMIO_MAX;
        if next == first {
            return false;
        }
        let size = size.min(4);
        let mut entry = [0u8; ENTRY as usize];
        entry[0..8].copy_from_slice(&u64::from(port).to_le_bytes());
        entry[8..12].copy_from_slice(&u32::from(size).to_le_bytes());
        entry[12..16].copy_from_slice(&1u32.to_le_bytes());
        entry[16..16 + usize::from(size)]
            .copy_from_slice(&value.to_le_bytes()[..usize::from(size)]);
        let at = ring + HEADER + u64::from(last) * ENTRY;
        if !cd_ram.write(GuestPhys::new(at), &entry) {
            return false;
        }
        // The entry before the index that publishes it (KVM's smp_wmb; x86
        // keeps stores in order, the fence keeps the compiler from moving
        // them).
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        if !cd_ram.write(GuestPhys::new(ring + 4), &next.to_le_bytes()) {
            return false;
        }
        self.count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::HostPhys;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    fn ram() -> GuestRam {
        let page = alloc::boxed::Box::leak(alloc::boxed::Box::new(Page([0; 4096])));
        GuestRam::from_host_pages(alloc::vec![HostPhys::new(page.0.as_ptr() as u64)])
    }

    fn zone(addr: u64, size: u32, pio: u32) -> kvm_coalesced_mmio_zone {
        kvm_coalesced_mmio_zone { addr, size, pio }
    }

    fn word(ram: &GuestRam, at: u64) -> u32 {
        let mut b = [0u8; 4];
        assert!(ram.read(GuestPhys::new(at), &mut b));
        u32::from_le_bytes(b)
    }

    #[test]
    fn zones_are_checked_as_documented() {
        let mut c = Coalesced::default();
        assert_eq!(c.register(&zone(0x3f8, 1, 0)), Err(EINVAL), "MMIO zone");
        assert_eq!(c.register(&zone(0x3f8, 1, 2)), Err(EINVAL), "pio 2");
        assert_eq!(c.register(&zone(0x3f8, 0, 1)), Err(EINVAL), "empty");
        assert_eq!(c.register(&zone(0xffff, 2, 1)), Err(EINVAL), "past 0xFFFF");
        assert_eq!(c.register(&zone(u64::MAX, 1, 1)), Err(EINVAL), "wraps");
        assert_eq!(c.register(&zone(0xffff, 1, 1)), Ok(()));
        for _ in 1..MAX_ZONES {
            assert_eq!(c.register(&zone(0x3f8, 1, 1)), Ok(()));
        }
        assert_eq!(c.register(&zone(0x3f8, 1, 1)), Err(ENOSPC));
        // Removes every zone holding the range, and nothing else.
        assert_eq!(c.unregister(&zone(0x3f8, 1, 1)), Ok(()));
        assert_eq!(c.zones.iter().flatten().count(), 1);
        assert_eq!(c.unregister(&zone(0x3f8, 1, 1)), Ok(()), "none left: 0");
        assert_eq!(c.unregister(&zone(0x3f8, 1, 0)), Err(EINVAL));
    }

    #[test]
    fn only_a_whole_access_inside_a_zone_with_a_ring_is_covered() {
        let mut c = Coalesced::default();
        c.register(&zone(0x3f8, 2, 1)).unwrap();
        assert!(!c.covers(0x3f8, 1), "no ring yet");
        c.set_ring(Some(0));
        assert!(c.covers(0x3f8, 1));
        assert!(c.covers(0x3f8, 2));
        assert!(c.covers(0x3f9, 1));
        assert!(!c.covers(0x3f9, 2), "runs past the zone");
        assert!(!c.covers(0x3f7, 1));
        assert!(!c.covers(0x3f7, 4));
        c.unregister(&zone(0x3f8, 1, 1)).unwrap();
        assert!(!c.covers(0x3f8, 1), "the zone held 0x3f8");
    }

    #[test]
    fn writes_fill_the_ring_in_order_until_it_is_full() {
        let mut ram = ram();
        let mut c = Coalesced::default();
        c.register(&zone(0x3f8, 1, 1)).unwrap();
        assert!(!c.push(&mut ram, 0x3f8, 1, 0x41), "no ring");
        c.set_ring(Some(0));
        for i in 0..KVM_COALESCED_MMIO_MAX - 1 {
            assert!(c.push(&mut ram, 0x3f8, 1, 0x100 + i), "entry {i}");
        }
        // One slot stays empty: full.
        assert!(!c.push(&mut ram, 0x3f8, 1, 0));
        assert_eq!(word(&ram, 4), KVM_COALESCED_MMIO_MAX - 1);
        assert_eq!(c.count, u64::from(KVM_COALESCED_MMIO_MAX - 1));
        // Entry 1: port, len, pio, then only the low byte of the value.
        let e = HEADER + ENTRY;
        assert_eq!(word(&ram, e), 0x3f8);
        assert_eq!(word(&ram, e + 8), 1);
        assert_eq!(word(&ram, e + 12), 1);
        assert_eq!(word(&ram, e + 16), 0x01);
        // The VMM reads 10: room again, and `last` wraps to 0.
        ram.write(GuestPhys::new(0), &10u32.to_le_bytes());
        assert!(c.push(&mut ram, 0x3f8, 4, 0xdead_beef));
        assert_eq!(word(&ram, 4), 0);
        let e = HEADER + u64::from(KVM_COALESCED_MMIO_MAX - 1) * ENTRY;
        assert_eq!(word(&ram, e + 8), 4);
        assert_eq!(word(&ram, e + 16), 0xdead_beef);
    }

    #[test]
    fn a_corrupt_index_or_a_ring_outside_ram_makes_the_write_exit() {
        let mut ram = ram();
        let mut c = Coalesced::default();
        c.register(&zone(0x3f8, 1, 1)).unwrap();
        c.set_ring(Some(0));
        ram.write(GuestPhys::new(4), &KVM_COALESCED_MMIO_MAX.to_le_bytes());
        assert!(!c.push(&mut ram, 0x3f8, 1, 0));
        ram.write(GuestPhys::new(4), &u32::MAX.to_le_bytes());
        assert!(!c.push(&mut ram, 0x3f8, 1, 0));
        ram.write(GuestPhys::new(4), &0u32.to_le_bytes());
        ram.write(GuestPhys::new(0), &KVM_COALESCED_MMIO_MAX.to_le_bytes());
        assert!(!c.push(&mut ram, 0x3f8, 1, 0), "first out of range");
        c.set_ring(Some(1 << 40));
        assert!(!c.push(&mut ram, 0x3f8, 1, 0));
        assert_eq!(c.count, 0);
    }
}
