//! An audit of the hypervisor's own address space (the 4-level page tables
//! CR3 points at): every present leaf with its effective rights, as the CPU
//! computes them — writable only if every level allows writes, executable
//! only if no level sets NX, user-accessible only if every level allows it
//! (SDM Vol. 3A 4.6 "Access Rights"). Boot uses it to enforce W^X: no page
//! both writable and executable, nothing user-accessible.
//!
//! The walk is pure (it reads tables through a closure), so it is tested on
//! the host against hand-built tables.

/// Entry bits (SDM Vol. 3A 4.5, Table 4-15 ff.).
pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
pub const USER: u64 = 1 << 2;
/// PS: a 1 GiB (PDPT) or 2 MiB (PD) page.
pub const HUGE: u64 = 1 << 7;
pub const NO_EXECUTE: u64 = 1 << 63;
/// Bits 51:12 of an entry: the next table's or the page's address.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// One present leaf: where it maps, how big, with which rights, and where
/// its entry is (the table's physical address and the index), so a caller
/// can change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub va: u64,
    pub size: u64,
    pub writable: bool,
    pub executable: bool,
    pub user: bool,
    pub table: u64,
    pub index: usize,
}

/// Sign-extends a 48-bit virtual address.
fn canonical(va: u64) -> u64 {
    ((va << 16) as i64 >> 16) as u64
}

/// Calls `visit` for every present leaf under `root` (a PML4's physical
/// address), reading each table with `read`.
pub fn walk(root: u64, read: &dyn Fn(u64) -> [u64; 512], visit: &mut dyn FnMut(Leaf)) {
    walk_level(root, 4, 0, true, true, true, read, visit);
}

#[allow(clippy::too_many_arguments)]
fn walk_level(
    table: u64,
    level: u32,
    base: u64,
    writable: bool,
    executable: bool,
    user: bool,
    read: &dyn Fn(u64) -> [u64; 512],
    visit: &mut dyn FnMut(Leaf),
) {
    let entries = read(table);
    let shift = 12 + 9 * (level - 1);
    for (index, &e) in entries.iter().enumerate() {
        if e & PRESENT == 0 {
            continue;
        }
        let va = canonical(base | ((index as u64) << shift));
        let w = writable && e & WRITABLE != 0;
        let x = executable && e & NO_EXECUTE == 0;
        let u = user && e & USER != 0;
        if level == 1 || (level <= 3 && e & HUGE != 0) {
            visit(Leaf {
                va,
                size: 1 << shift,
                writable: w,
                executable: x,
                user: u,
                table,
                index,
            });
        } else if level > 1 {
            walk_level(e & ADDR_MASK, level - 1, va, w, x, u, read, visit);
        }
    }
}

/// What the audit found, in 4 KiB pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub executable: u64,
    pub writable_executable: u64,
    pub user: u64,
}

impl Summary {
    pub fn add(&mut self, l: &Leaf) {
        let pages = l.size / 4096;
        if l.executable {
            self.executable += pages;
        }
        if l.executable && l.writable {
            self.writable_executable += pages;
        }
        if l.user {
            self.user += pages;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Tables at fake physical addresses.
    fn tables(t: &[(u64, &[(usize, u64)])]) -> HashMap<u64, [u64; 512]> {
        t.iter()
            .map(|(pa, entries)| {
                let mut table = [0u64; 512];
                for &(i, e) in *entries {
                    table[i] = e;
                }
                (*pa, table)
            })
            .collect()
    }

    #[test]
    fn rights_are_the_and_of_every_level() {
        let rw = PRESENT | WRITABLE;
        let t = tables(&[
            // PML4: entry 0 (low half), entry 511 (top, sign-extended).
            (0x1000, &[(0, 0x2000 | rw), (511, 0x5000 | rw | NO_EXECUTE)]),
            // PDPT: a 1 GiB page (read-only), a PD.
            (
                0x2000,
                &[(0, 0x4000_0000 | PRESENT | HUGE), (1, 0x3000 | rw)],
            ),
            // PD: a 2 MiB W+X page, a PT.
            (0x3000, &[(0, 0x20_0000 | rw | HUGE), (1, 0x6000 | rw)]),
            // PT: a user page, a read-only executable one.
            (0x6000, &[(0, 0x7000 | rw | USER), (1, 0x8000 | PRESENT)]),
            // Under the NX PML4 entry: a writable page, not executable.
            (0x5000, &[(0, 0x9000 | rw)]),
            (0x9000, &[(0, 0xa000 | rw)]),
            (0xa000, &[(3, 0xb000 | rw)]),
        ]);
        let read = |pa: u64| t.get(&pa).copied().unwrap_or([0; 512]);
        let mut leaves = Vec::new();
        walk(0x1000, &read, &mut |l| leaves.push(l));
        let find = |va: u64| *leaves.iter().find(|l| l.va == va).unwrap();
        let giant = find(0);
        assert_eq!(
            (giant.size, giant.writable, giant.executable),
            (1 << 30, false, true)
        );
        let big = find(0x4000_0000);
        assert_eq!(
            (big.size, big.writable, big.executable),
            (2 << 20, true, true)
        );
        // The user bit is set at the PT only: not user-accessible.
        let small = find(0x4020_0000);
        assert!(!small.user && small.writable && small.executable);
        let ro = find(0x4020_1000);
        assert!(!ro.writable && ro.executable);
        let top = find(0xffff_ff80_0000_3000);
        assert!(top.writable && !top.executable);
        assert_eq!((top.table, top.index), (0xa000, 3));
        let mut s = Summary::default();
        leaves.iter().for_each(|l| s.add(l));
        // 1 GiB + 2 MiB + 2 pages executable; W+X: the 2 MiB page and the
        // writable 4 KiB one.
        assert_eq!(s.executable, 262_144 + 512 + 2);
        assert_eq!(s.writable_executable, 512 + 1);
        assert_eq!(s.user, 0);
    }
}
