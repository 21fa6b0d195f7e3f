//! Walking the guest's own page tables (SDM Vol. 3A 4.3–4.5; APM Vol. 2
//! 5.3): linear → guest-physical, for the few times the hypervisor must read
//! the guest's memory by linear address (fetching the instruction that
//! exited, on CPUs that do not report its length).

use crate::mm::{GuestPhys, GuestVirt};

/// Guest-physical memory as the walker needs it.
pub trait GuestMemory {
    /// The 8 bytes at `gpa` (which need not be aligned), or None if they
    /// are not RAM.
    fn read_u64(&self, gpa: GuestPhys) -> Option<u64>;
}

/// The guest's paging mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// CR0.PG = 0: linear = physical.
    Off,
    /// 32-bit paging; `pse` allows 4 MiB pages.
    Bits32 { pse: bool },
    /// PAE paging (three levels, 2 MiB large pages).
    Pae,
    /// 4-level paging (long mode).
    Level4,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;

impl Paging {
    pub fn from_state(cr0: u64, cr4: u64, efer: u64) -> Self {
        if cr0 & CR0_PG == 0 {
            Self::Off
        } else if efer & crate::arch::msr::efer::LMA != 0 {
            Self::Level4
        } else if cr4 & CR4_PAE != 0 {
            Self::Pae
        } else {
            Self::Bits32 {
                pse: cr4 & CR4_PSE != 0,
            }
        }
    }
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The guest would take a page fault with this error code (bit 0 = the
    /// page was present, bit 1 = write, bit 2 = user, bit 4 = fetch).
    PageFault(u32),
    /// A paging structure lies outside guest RAM.
    NotRam(GuestPhys),
}

/// The kind of access being translated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    pub user: bool,
    pub fetch: bool,
}

impl Access {
    fn error_code(self, present: bool) -> u32 {
        u32::from(present)
            | u32::from(self.write) << 1
            | u32::from(self.user) << 2
            | u32::from(self.fetch) << 4
    }
}

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Translates `gva`. `nxe` is EFER.NXE, `wp` CR0.WP.
pub fn translate(
    mem: &impl GuestMemory,
    paging: Paging,
    cr3: u64,
    gva: GuestVirt,
    access: Access,
    nxe: bool,
    wp: bool,
) -> Result<GuestPhys, WalkError> {
    let la = gva.raw();
    let fault = |present| Err(WalkError::PageFault(access.error_code(present)));
    let read = |gpa: u64| {
        mem.read_u64(GuestPhys::new(gpa))
            .ok_or(WalkError::NotRam(GuestPhys::new(gpa)))
    };
    // Rights accumulate along the walk: every level must allow the access.
    let mut writable = true;
    let mut user = true;
    let mut exec = true;
    let mut check = |e: u64| {
        writable &= e & RW != 0;
        user &= e & US != 0;
        exec &= !(nxe && e & NX != 0);
    };
    let (table, leaf_bits): (u64, u32) = match paging {
        Paging::Off => return Ok(GuestPhys::new(la & 0xffff_ffff)),
        Paging::Bits32 { pse } => {
            let la = la & 0xffff_ffff;
            let pde = read((cr3 & 0xffff_f000) + ((la >> 22) & 0x3ff) * 4)? & 0xffff_ffff;
            if pde & P == 0 {
                return fault(false);
            }
            check(pde);
            let (phys, bits) = if pse && pde & PS != 0 {
                // 4 MiB page: bits 31:22 from the PDE, 39:32 from bits 20:13.
                ((pde & 0xffc0_0000) | ((pde >> 13) & 0xff) << 32, 22)
            } else {
                let pte = read((pde & 0xffff_f000) + ((la >> 12) & 0x3ff) * 4)? & 0xffff_ffff;
                if pte & P == 0 {
                    return fault(false);
                }
                check(pte);
                (pte & 0xffff_f000, 12)
            };
            return finish(phys, bits, la, access, writable, user, exec, wp);
        }
        Paging::Pae => {
            let la = la & 0xffff_ffff;
            let pdpte = read((cr3 & 0xffff_ffe0) + ((la >> 30) & 3) * 8)?;
            if pdpte & P == 0 {
                return fault(false);
            }
            (pdpte & ADDR, 21)
        }
        Paging::Level4 => {
            // Non-canonical addresses fault with #GP in the guest, not #PF;
            // the walker just refuses them.
            if ((la as i64) << 16 >> 16) as u64 != la {
                return fault(false);
            }
            let pml4e = read((cr3 & ADDR) + ((la >> 39) & 0x1ff) * 8)?;
            if pml4e & P == 0 {
                return fault(false);
            }
            check(pml4e);
            let pdpte = read((pml4e & ADDR) + ((la >> 30) & 0x1ff) * 8)?;
            if pdpte & P == 0 {
                return fault(false);
            }
            check(pdpte);
            if pdpte & PS != 0 {
                return finish(
                    pdpte & 0x000f_ffff_c000_0000,
                    30,
                    la,
                    access,
                    writable,
                    user,
                    exec,
                    wp,
                );
            }
            (pdpte & ADDR, 21)
        }
    };
    let _ = leaf_bits;
    let pde = read(table + ((la >> 21) & 0x1ff) * 8)?;
    if pde & P == 0 {
        return fault(false);
    }
    check(pde);
    if pde & PS != 0 {
        return finish(
            pde & 0x000f_ffff_ffe0_0000,
            21,
            la,
            access,
            writable,
            user,
            exec,
            wp,
        );
    }
    let pte = read((pde & ADDR) + ((la >> 12) & 0x1ff) * 8)?;
    if pte & P == 0 {
        return fault(false);
    }
    check(pte);
    finish(pte & ADDR, 12, la, access, writable, user, exec, wp)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    phys: u64,
    page_bits: u32,
    la: u64,
    access: Access,
    writable: bool,
    user: bool,
    exec: bool,
    wp: bool,
) -> Result<GuestPhys, WalkError> {
    let denied = (access.user && !user)
        || (access.write && !writable && (access.user || wp))
        || (access.fetch && !exec);
    if denied {
        return Err(WalkError::PageFault(access.error_code(true)));
    }
    Ok(GuestPhys::new(phys | (la & ((1 << page_bits) - 1))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem(HashMap<u64, u64>);
    impl Mem {
        fn set(&mut self, gpa: u64, v: u64) {
            self.0.insert(gpa, v);
        }
    }
    impl GuestMemory for Mem {
        fn read_u64(&self, gpa: GuestPhys) -> Option<u64> {
            (gpa.raw() < 0x100_0000).then(|| self.0.get(&gpa.raw()).copied().unwrap_or(0))
        }
    }

    const R: Access = Access {
        write: false,
        user: false,
        fetch: false,
    };

    #[test]
    fn no_paging_is_identity() {
        let m = Mem::default();
        assert_eq!(
            translate(&m, Paging::Off, 0, GuestVirt::new(0x1234), R, false, false),
            Ok(GuestPhys::new(0x1234))
        );
    }

    #[test]
    fn four_level_4k_2m_1g() {
        let mut m = Mem::default();
        // PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000, PT at 0x4000.
        m.set(0x1000, 0x2000 | P | RW);
        m.set(0x2000, 0x3000 | P | RW);
        m.set(0x3000, 0x4000 | P | RW);
        m.set(0x4000 + 5 * 8, 0xabc000 | P);
        m.set(0x3000 + 8, 0x40_0000 | P | RW | PS);
        m.set(0x2000 + 8, 0x8000_0000 | P | RW | PS);
        let t = |va| {
            translate(
                &m,
                Paging::Level4,
                0x1000,
                GuestVirt::new(va),
                R,
                true,
                true,
            )
        };
        assert_eq!(t(0x5123), Ok(GuestPhys::new(0xabc123)));
        assert_eq!(t(0x20_1234), Ok(GuestPhys::new(0x40_1234)));
        assert_eq!(t(0x4000_0010), Ok(GuestPhys::new(0x8000_0010)));
        assert_eq!(t(0x6000), Err(WalkError::PageFault(0)));
        assert_eq!(
            t(0x8000_0000_0000),
            Err(WalkError::PageFault(0)),
            "non-canonical"
        );
        // Write to a read-only page with CR0.WP: present + write.
        let w = Access { write: true, ..R };
        assert_eq!(
            translate(
                &m,
                Paging::Level4,
                0x1000,
                GuestVirt::new(0x5000),
                w,
                true,
                true
            ),
            Err(WalkError::PageFault(3))
        );
        // ... allowed for the supervisor without WP.
        assert!(
            translate(
                &m,
                Paging::Level4,
                0x1000,
                GuestVirt::new(0x5000),
                w,
                true,
                false
            )
            .is_ok()
        );
        // A table outside RAM.
        m.set(0x1000 + 8 * 2, 0x200_0000 | P);
        assert_eq!(
            translate(
                &m,
                Paging::Level4,
                0x1000,
                GuestVirt::new(0x100_0000_0000),
                R,
                true,
                true
            ),
            Err(WalkError::NotRam(GuestPhys::new(0x200_0000)))
        );
    }

    #[test]
    fn nx_and_user() {
        let mut m = Mem::default();
        m.set(0x1000, 0x2000 | P | RW | US);
        m.set(0x2000, 0x3000 | P | RW | US);
        m.set(0x3000, 0x0020_0000 | P | RW | PS | NX);
        let f = Access { fetch: true, ..R };
        assert_eq!(
            translate(
                &m,
                Paging::Level4,
                0x1000,
                GuestVirt::new(0x100),
                f,
                true,
                true
            ),
            Err(WalkError::PageFault(0x11))
        );
        // NX is ignored while EFER.NXE is clear.
        assert!(
            translate(
                &m,
                Paging::Level4,
                0x1000,
                GuestVirt::new(0x100),
                f,
                false,
                true
            )
            .is_ok()
        );
        let u = Access { user: true, ..R };
        assert_eq!(
            translate(
                &m,
                Paging::Level4,
                0x1000,
                GuestVirt::new(0x100),
                u,
                true,
                true
            ),
            Err(WalkError::PageFault(5))
        );
    }

    #[test]
    fn legacy_32bit_and_pae() {
        let mut m = Mem::default();
        // 32-bit: PD at 0x1000, PT at 0x2000; a 4 MiB page at PDE 1.
        m.set(0x1000, 0x2000 | P | RW);
        m.set(0x2000 + 3 * 4, 0x0077_7000 | P | RW);
        m.set(0x1004, 0x0080_0000 | P | RW | PS);
        let t = |va, pse| {
            translate(
                &m,
                Paging::Bits32 { pse },
                0x1000,
                GuestVirt::new(va),
                R,
                false,
                false,
            )
        };
        assert_eq!(t(0x3456, false), Ok(GuestPhys::new(0x777456)));
        assert_eq!(t(0x40_1234, true), Ok(GuestPhys::new(0x80_1234)));
        // PAE: PDPT at 0x5000, PD at 0x6000, 2 MiB page.
        let mut m = Mem::default();
        m.set(0x5000, 0x6000 | P);
        m.set(0x6000, 0x0060_0000 | P | RW | PS);
        assert_eq!(
            translate(
                &m,
                Paging::Pae,
                0x5000,
                GuestVirt::new(0x1_2345),
                R,
                false,
                false
            ),
            Ok(GuestPhys::new(0x61_2345))
        );
    }

    #[test]
    fn mode_from_registers() {
        use crate::arch::msr::efer::LMA;
        assert_eq!(Paging::from_state(0x11, 0, 0), Paging::Off);
        assert_eq!(
            Paging::from_state(0x8000_0011, 0, 0),
            Paging::Bits32 { pse: false }
        );
        assert_eq!(Paging::from_state(0x8000_0011, 0x30, 0), Paging::Pae);
        assert_eq!(Paging::from_state(0x8000_0011, 0x20, LMA), Paging::Level4);
    }
}
