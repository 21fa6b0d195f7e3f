//! `KVM_SET_GSI_ROUTING` with the split irqchip (DESIGN.md D4): the VMM's
//! IOAPIC describes its pins as MSI routes, and an EOI of a
//! level-triggered vector one of the reserved pins (`KVM_CAP_SPLIT_IRQCHIP`'s
//! `args[0]`) routes to this vCPU goes back to the VMM as
//! `KVM_EXIT_IOAPIC_EOI`, so that its IOAPIC can clear the pin's remote IRR
//! (KVM's `kvm_scan_ioapic_routes` and `kvm_ioapic_send_eoi`). The VMM
//! still sends the interrupts themselves with `KVM_SIGNAL_MSI`.

use super::hypercall::read_arg;
use crate::guest::GuestRam;
use crate::vcpu::lapic::Lapic;
use abi::kvm::errno::{EINVAL, ENOMEM};
use abi::kvm::{
    KVM_IRQ_ROUTING_MSI, KVM_MSI_VALID_DEVID, kvm_irq_routing, kvm_irq_routing_entry,
    kvm_irq_routing_msi,
};
use alloc::vec::Vec;

/// KVM's `KVM_MAX_IRQ_ROUTES`: most entries in one request, and the GSIs
/// are below it.
pub const MAX_ROUTES: u32 = 4096;
/// An MSI's address: destination ID 19:12, logical destination bit 2
/// (SDM Vol. 3A 11.11.1); data: vector 7:0, level-triggered bit 15
/// (11.11.2).
const DEST_SHIFT: u32 = 12;
const DEST_LOGICAL: u32 = 1 << 2;
const TRIGGER_LEVEL: u32 = 1 << 15;

/// One GSI's MSI route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    gsi: u32,
    msi: kvm_irq_routing_msi,
}

/// A VM's routes, as the last `KVM_SET_GSI_ROUTING` set them.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
    /// GSIs below this are the VMM's IOAPIC pins.
    reserved_pins: u32,
    /// The vectors of the reserved pins' level-triggered routes: an EOI of
    /// any other is rejected here without looking at the routes.
    level_vectors: [u64; 4],
}

impl Routes {
    /// Whether `l`'s EOI of `vector` goes to the VMM: a level-triggered
    /// route of a reserved pin sends `vector` to it.
    pub fn eoi_exits(&self, l: &Lapic, vector: u8) -> bool {
        let word = self.level_vectors[usize::from(vector >> 6)];
        if word & (1 << (vector & 63)) == 0 {
            return false;
        }
        self.routes.iter().any(|r| {
            r.gsi < self.reserved_pins
                && r.msi.data & TRIGGER_LEVEL != 0
                && (r.msi.data & 0xff) as u8 == vector
                && l.matches(
                    (r.msi.address_lo >> DEST_SHIFT) & 0xff,
                    r.msi.address_lo & DEST_LOGICAL != 0,
                )
        })
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// `KVM_SET_GSI_ROUTING` at `gpa` for a VM with `reserved_pins` (None:
/// no split irqchip). KVM's checks: the irqchip, the count and the flags,
/// then each entry's flags, GSI and type (with the split irqchip only MSI
/// routes; one route per GSI). All or nothing.
pub fn set(ram: &GuestRam, gpa: u64, reserved_pins: Option<u32>) -> Result<Routes, i32> {
    let reserved_pins = reserved_pins.ok_or(EINVAL)?;
    let head: kvm_irq_routing = read_arg(ram, gpa)?;
    if head.nr > MAX_ROUTES || head.flags != 0 {
        return Err(EINVAL);
    }
    let mut routes: Vec<Route> = Vec::new();
    routes
        .try_reserve_exact(head.nr as usize)
        .map_err(|_| ENOMEM)?;
    let size = core::mem::size_of::<kvm_irq_routing_entry>() as u64;
    // The GSIs given a route so far (one each).
    let mut seen = [0u64; MAX_ROUTES as usize / 64];
    let mut level_vectors = [0u64; 4];
    let first = gpa.checked_add(core::mem::size_of::<kvm_irq_routing>() as u64);
    for i in 0..u64::from(head.nr) {
        let at = first
            .and_then(|f| f.checked_add(i * size))
            .ok_or(abi::kvm::errno::EFAULT)?;
        let e: kvm_irq_routing_entry = read_arg(ram, at)?;
        let flags_ok = if e.type_ == KVM_IRQ_ROUTING_MSI {
            e.flags & !KVM_MSI_VALID_DEVID == 0
        } else {
            e.flags == 0
        };
        if !flags_ok || e.gsi >= MAX_ROUTES || e.type_ != KVM_IRQ_ROUTING_MSI {
            return Err(EINVAL);
        }
        let (word, bit) = ((e.gsi / 64) as usize, 1u64 << (e.gsi % 64));
        match seen.get_mut(word) {
            Some(w) if *w & bit == 0 => *w |= bit,
            _ => return Err(EINVAL),
        }
        // SAFETY: the entry's type says `msi` is the member meant; all its
        // fields are plain integers, valid for any bytes.
        let msi = unsafe { e.u.msi };
        if e.gsi < reserved_pins && msi.data & TRIGGER_LEVEL != 0 {
            let v = (msi.data & 0xff) as u8;
            level_vectors[usize::from(v >> 6)] |= 1 << (v & 63);
        }
        routes.push(Route { gsi: e.gsi, msi });
    }
    Ok(Routes {
        routes,
        reserved_pins,
        level_vectors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::GuestPhys;
    use abi::kvm::KVM_IRQ_ROUTING_IRQCHIP;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    /// Two pages of control-domain RAM on the host heap.
    fn ram() -> GuestRam {
        GuestRam::from_host_pages(
            (0..2)
                .map(|_| {
                    let page = alloc::boxed::Box::leak(alloc::boxed::Box::new(Page([0; 4096])));
                    crate::mm::HostPhys::new(page.0.as_ptr() as u64)
                })
                .collect(),
        )
    }

    fn entry(gsi: u32, type_: u32, flags: u32, dest: u32, data: u32) -> kvm_irq_routing_entry {
        let mut e = kvm_irq_routing_entry {
            gsi,
            type_,
            flags,
            ..Default::default()
        };
        e.u.msi = kvm_irq_routing_msi {
            address_lo: 0xfee0_0000 | (dest << DEST_SHIFT),
            data,
            ..Default::default()
        };
        e
    }

    /// Writes a `kvm_irq_routing` with `entries` at 0 and sets it.
    fn set_with(
        ram: &mut GuestRam,
        nr: u32,
        flags: u32,
        entries: &[kvm_irq_routing_entry],
    ) -> Result<Routes, i32> {
        let mut bytes = alloc::vec::Vec::new();
        bytes.extend_from_slice(&nr.to_le_bytes());
        bytes.extend_from_slice(&flags.to_le_bytes());
        for e in entries {
            // SAFETY: a plain-old-data struct of 48 bytes viewed as bytes.
            let b: [u8; 48] = unsafe { core::mem::transmute(*e) };
            bytes.extend_from_slice(&b);
        }
        assert!(ram.write(GuestPhys::new(0), &bytes));
        set(ram, 0, Some(24))
    }

    fn lapic(id: u32) -> Lapic {
        Lapic::new(id, 1_000_000)
    }

    #[test]
    fn level_routes_of_reserved_pins_exit_on_eoi() {
        let mut ram = ram();
        let level = TRIGGER_LEVEL | 0x61;
        let routes = set_with(
            &mut ram,
            4,
            0,
            &[
                entry(3, KVM_IRQ_ROUTING_MSI, 0, 0, level),
                entry(4, KVM_IRQ_ROUTING_MSI, 0, 0, 0x62),
                entry(30, KVM_IRQ_ROUTING_MSI, 0, 0, TRIGGER_LEVEL | 0x63),
                entry(
                    5,
                    KVM_IRQ_ROUTING_MSI,
                    KVM_MSI_VALID_DEVID,
                    1,
                    TRIGGER_LEVEL | 0x64,
                ),
            ],
        )
        .unwrap();
        assert_eq!(routes.len(), 4);
        let (bsp, ap) = (lapic(0), lapic(1));
        assert!(routes.eoi_exits(&bsp, 0x61));
        assert!(!routes.eoi_exits(&ap, 0x61), "another APIC's route");
        assert!(!routes.eoi_exits(&bsp, 0x62), "edge-triggered");
        assert!(!routes.eoi_exits(&bsp, 0x63), "GSI 30 is no reserved pin");
        assert!(routes.eoi_exits(&ap, 0x64));
        assert!(!routes.eoi_exits(&bsp, 0x70), "no route");
    }

    #[test]
    fn bad_tables_are_refused_whole() {
        let mut ram = ram();
        let ok = entry(1, KVM_IRQ_ROUTING_MSI, 0, 0, 0x40);
        assert!(set(&ram, 0, None).is_err(), "no split irqchip");
        assert_eq!(
            set_with(&mut ram, MAX_ROUTES + 1, 0, &[]).err(),
            Some(EINVAL)
        );
        assert_eq!(set_with(&mut ram, 1, 1, &[ok]).err(), Some(EINVAL));
        for bad in [
            entry(1, KVM_IRQ_ROUTING_IRQCHIP, 0, 0, 0),
            entry(1, KVM_IRQ_ROUTING_MSI, 2, 0, 0),
            entry(MAX_ROUTES, KVM_IRQ_ROUTING_MSI, 0, 0, 0),
            entry(1, 9, 0, 0, 0),
        ] {
            assert_eq!(set_with(&mut ram, 2, 0, &[ok, bad]).err(), Some(EINVAL));
        }
        assert_eq!(
            set_with(&mut ram, 2, 0, &[ok, ok]).err(),
            Some(EINVAL),
            "one route per GSI"
        );
        // Entries past the end of the control domain's RAM.
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&1u32.to_le_bytes());
        assert!(ram.write(GuestPhys::new(8192 - 8), &head));
        assert_eq!(
            set(&ram, 8192 - 8, Some(24)).err(),
            Some(abi::kvm::errno::EFAULT)
        );
        assert!(set_with(&mut ram, 0, 0, &[]).unwrap().is_empty());
    }
}
