//! The nested-page-table check of the hardening issue (docs/security.md):
//! with the emulated machine stopped, the harness reads its physical
//! memory itself (QEMU's `pmemsave`, Bochs's debugger `xp`), walks every
//! NPT/EPT from the roots the hypervisor names in its `layout:` lines
//! (`MOJITO_LOG_LAYOUT`, the shell's `layout`), and proves that each leaf
//! maps memory that VM may own:
//!
//! - the control domain's leaves map none of the hypervisor's image or
//!   heap, no page-table page of any VM, and no control structure
//!   (VMCS/VMCB, bitmaps, host save areas, XSAVE areas);
//! - every VM's leaves map only frames the control domain's own tables map
//!   (guest RAM is the VMM's memory) and, likewise, none of the above;
//! - no two VMs share a frame;
//! - a VM maps exactly the guest-physical pages of its memory slots as the
//!   VMM lists them (`show vm/NAME/memslots`), read-only slots without
//!   write and dirty-logged ones with 4 KiB pages;
//! - under SVM, each VMCB's N_CR3 is the root the walk started from (the
//!   tables walked are the ones in use).
//!
//! The hypervisor only says where the roots and structures are; every
//! entry is read and judged here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Page-table entries of one 4 KiB table.
pub type Table = [u64; 512];

/// Reads the stopped machine's physical memory.
pub trait PhysMem {
    /// The 4 KiB page at `pa` (page-aligned) as 512 little-endian words.
    fn page(&mut self, pa: u64) -> Result<Table, String>;
}

/// The nested-table format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// AMD NPT: the long-mode format (APM Vol. 2 5.4, 15.25).
    Npt,
    /// Intel EPT (SDM Vol. 3C 29.3).
    Ept,
}

/// Bits 51:12 of an entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// PS: the entry maps a 1 GiB (PDPTE) or 2 MiB (PDE) page (both formats).
const PAGE_SIZE_BIT: u64 = 1 << 7;

impl Format {
    fn present(self, e: u64) -> bool {
        match self {
            // P (bit 0).
            Self::Npt => e & 1 != 0,
            // Read, write or execute (bits 2:0).
            Self::Ept => e & 7 != 0,
        }
    }

    fn writable(self, e: u64) -> bool {
        e & 2 != 0
    }

    fn executable(self, e: u64) -> bool {
        match self {
            Self::Npt => e & (1 << 63) == 0,
            Self::Ept => e & 4 != 0,
        }
    }
}

/// One leaf: `size` bytes at guest-physical `gpa` mapped to `hpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub gpa: u64,
    pub hpa: u64,
    pub size: u64,
    pub write: bool,
    pub exec: bool,
}

/// Every table page and leaf reachable from one root.
#[derive(Debug, Default)]
pub struct Walk {
    pub tables: Vec<u64>,
    pub leaves: Vec<Leaf>,
}

/// Walks the 4-level table at `root`.
pub fn walk(mem: &mut dyn PhysMem, root: u64, format: Format) -> Result<Walk, String> {
    walk_except(mem, root, format, None)
}

/// Walks the 4-level table at `root`, except below the PML4 entries
/// `skip` covers.
pub fn walk_except(
    mem: &mut dyn PhysMem,
    root: u64,
    format: Format,
    skip: Option<std::ops::RangeInclusive<usize>>,
) -> Result<Walk, String> {
    let mut w = Walk::default();
    walk_level(mem, format, root, 4, 0, skip, &mut w)?;
    Ok(w)
}

fn walk_level(
    mem: &mut dyn PhysMem,
    format: Format,
    table: u64,
    level: u32,
    base: u64,
    skip: Option<std::ops::RangeInclusive<usize>>,
    w: &mut Walk,
) -> Result<(), String> {
    if w.tables.len() > 100_000 {
        return Err("more than 100,000 table pages: a loop in the tables?".into());
    }
    w.tables.push(table);
    let entries = mem.page(table)?;
    // Each entry at this level covers 4 KiB << 9 * (level - 1).
    let span = 1u64 << (12 + 9 * (level - 1));
    for (i, &e) in entries.iter().enumerate() {
        if !format.present(e) || (level == 4 && skip.as_ref().is_some_and(|s| s.contains(&i))) {
            continue;
        }
        let gpa = base + i as u64 * span;
        let large = level == 3 || level == 2;
        if level == 1 || (large && e & PAGE_SIZE_BIT != 0) {
            w.leaves.push(Leaf {
                gpa,
                hpa: e & ADDR_MASK & !(span - 1),
                size: span,
                write: format.writable(e),
                exec: format.executable(e),
            });
        } else if level == 4 && e & PAGE_SIZE_BIT != 0 {
            return Err(format!("PML4 entry {i} of {table:#x} has PS set: {e:#x}"));
        } else {
            walk_level(mem, format, e & ADDR_MASK, level - 1, gpa, skip.clone(), w)?;
        }
    }
    Ok(())
}

/// Sorted, merged half-open ranges of physical addresses.
#[derive(Clone, Debug, Default)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn new(it: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut v: Vec<(u64, u64)> = it.into_iter().filter(|(s, e)| s < e).collect();
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        Self(out)
    }

    /// Bytes covered.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    /// Whether all of `[s, e)` is inside.
    pub fn covers(&self, s: u64, e: u64) -> bool {
        let i = self.0.partition_point(|r| r.1 <= s);
        self.0.get(i).is_some_and(|r| r.0 <= s && e <= r.1)
    }

    /// The first range of `self` that overlaps `other`, if any.
    pub fn overlap(&self, other: &Self) -> Option<(u64, u64)> {
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let s = a.0.max(b.0);
            let e = a.1.min(b.1);
            if s < e {
                return Some((s, e));
            }
            if a.1 <= b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        None
    }
}

/// One `layout:` line: an owner's nested root and structures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub nested: Option<u64>,
    /// The hypervisor's own page tables and physical-memory window
    /// (virtual address, bytes).
    pub cr3: Option<u64>,
    pub window: Option<(u64, u64)>,
    /// Parts the hypervisor could not list (`N more`).
    pub more: u64,
    /// (what, start, bytes).
    pub parts: Vec<(String, u64, u64)>,
}

/// Parses `mojito: layout: OWNER: nested 0x…; WHAT 0x…+BYTES; …` lines.
pub fn parse_layout(serial: &str) -> Vec<Owner> {
    let mut owners = Vec::new();
    for line in serial.lines() {
        let Some(rest) = line.trim_end().strip_prefix("mojito: layout: ") else {
            continue;
        };
        let Some((name, items)) = rest.split_once(':') else {
            continue;
        };
        let mut o = Owner {
            name: name.to_string(),
            ..Owner::default()
        };
        for item in items.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(root) = item.strip_prefix("nested ") {
                o.nested = parse_hex(root);
                continue;
            }
            if let Some(v) = item.strip_prefix("cr3 ") {
                o.cr3 = parse_hex(v);
                continue;
            }
            if let Some((at, size)) = item.strip_prefix("window ").and_then(|v| v.split_once('+')) {
                o.window = parse_hex(at).zip(size.parse().ok());
                continue;
            }
            if let Some(n) = item
                .strip_suffix(" more")
                .and_then(|n| n.parse::<u64>().ok())
            {
                o.more += n;
                continue;
            }
            let Some((what, at)) = item.rsplit_once(' ') else {
                continue;
            };
            let Some((start, bytes)) = at.split_once('+') else {
                continue;
            };
            if let (Some(s), Ok(b)) = (parse_hex(start), bytes.parse()) {
                o.parts.push((what.to_string(), s, b));
            }
        }
        owners.push(o);
    }
    owners
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().strip_prefix("0x")?, 16).ok()
}

/// A memory slot as `show vm/NAME/memslots` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub first: u64,
    pub last: u64,
    pub readonly: bool,
    pub log_dirty: bool,
}

/// Parses `slot   0: 0x0000000000-0x00003fffff     4 MiB -` lines.
pub fn parse_memslots(serial: &str) -> Vec<Slot> {
    serial
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("slot ")?;
            let (_, rest) = rest.split_once(": ")?;
            let mut words = rest.split_whitespace();
            let (a, b) = words.next()?.split_once('-')?;
            let flags = words.last().unwrap_or("-");
            Some(Slot {
                first: parse_hex(a)?,
                last: parse_hex(b)?,
                readonly: flags.contains("readonly"),
                log_dirty: flags.contains("log-dirty"),
            })
        })
        .collect()
}

/// The VMCB's N_CR3 field (APM Vol. 2 Appendix B, control area offset
/// 0B0h).
const VMCB_N_CR3: usize = 0xb0 / 8;

/// The check's findings.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    /// One line per owner: tables and leaves walked.
    pub summary: Vec<String>,
    /// The VMs (not the control domain) walked.
    pub vms: usize,
    /// Leaves judged, all owners.
    pub leaves: usize,
}

impl Report {
    /// The report as the run directory's `tables.txt` holds it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for l in &self.summary {
            let _ = writeln!(s, "{l}");
        }
        for p in &self.problems {
            let _ = writeln!(s, "problem: {p}");
        }
        let _ = writeln!(
            s,
            "tables: {} leaves of the control domain and {} VMs checked; {} problems",
            self.leaves,
            self.vms,
            self.problems.len()
        );
        s
    }
}

/// Walks and judges every nested table the layout in `serial` names.
/// `slots`: the memory slots of the VM (the only one) the session made.
pub fn check(serial: &str, mem: &mut dyn PhysMem, format: Format, slots: &[Slot]) -> Report {
    let mut r = Report::default();
    let owners = parse_layout(serial);
    let Some(cd) = owners
        .iter()
        .rev()
        .find(|o| o.name == "control domain")
        .cloned()
    else {
        r.problems
            .push("no `mojito: layout: control domain:` line".into());
        return r;
    };
    // The last layout block: from the last `hypervisor` line on.
    let from = owners
        .iter()
        .rposition(|o| o.name == "hypervisor")
        .unwrap_or(0);
    let owners = &owners[from..];
    // Everything the hypervisor keeps: no leaf may map it. First what its
    // own page tables map outside the physical-memory window (its image
    // with .bss, stacks, heap, boot information), walked here.
    let mut kept: Vec<(u64, u64)> = Vec::new();
    match owners.first() {
        Some(hv) if hv.name == "hypervisor" => {
            let (Some(cr3), Some(window)) = (hv.cr3, hv.window) else {
                r.problems
                    .push("the hypervisor's line names no cr3 or window".into());
                return r;
            };
            // The PML4 entries the window takes (512 GiB each).
            let (at, size) = window;
            let first = ((at >> 39) & 511) as usize;
            let last = (((at + size.max(1) - 1) >> 39) & 511) as usize;
            match walk_except(mem, cr3, Format::Npt, Some(first..=last)) {
                Ok(w) => {
                    r.summary.push(format!(
                        "tables: hypervisor: {} table pages, {} leaves outside its window mapping \
                         {} KiB",
                        w.tables.len(),
                        w.leaves.len(),
                        Ranges::new(w.leaves.iter().map(|l| (l.hpa, l.hpa + l.size))).bytes() >> 10
                    ));
                    let ranges = Ranges::new(w.leaves.iter().map(|l| (l.hpa, l.hpa + l.size)));
                    let mut by_va: Vec<&Leaf> = w.leaves.iter().collect();
                    by_va.sort_by_key(|l| std::cmp::Reverse(l.size));
                    r.summary.push(format!(
                        "tables: hypervisor: frames {:x?}; largest leaves {:x?}",
                        ranges.0.iter().take(12).collect::<Vec<_>>(),
                        by_va
                            .iter()
                            .take(4)
                            .map(|l| (l.gpa, l.hpa, l.size))
                            .collect::<Vec<_>>()
                    ));
                    if w.leaves.is_empty() {
                        r.problems.push(
                            "the hypervisor's own tables map nothing outside its window".into(),
                        );
                    }
                    kept.extend(w.tables.iter().map(|&t| (t, t + 4096)));
                    kept.extend(w.leaves.iter().map(|l| (l.hpa, l.hpa + l.size)));
                }
                Err(e) => r
                    .problems
                    .push(format!("hypervisor: walking its tables at {cr3:#x}: {e}")),
            }
            for what in ["image", "heap"] {
                if !hv.parts.iter().any(|(w, _, b)| w == what && *b > 0) {
                    r.problems
                        .push(format!("the hypervisor's line names no {what}"));
                }
            }
        }
        _ => {
            r.problems
                .push("no `mojito: layout: hypervisor:` line".into());
            return r;
        }
    }
    for o in owners {
        if o.more > 0 {
            r.problems.push(format!(
                "{}: {} parts were not listed (the layout is incomplete)",
                o.name, o.more
            ));
        }
        for (what, s, b) in &o.parts {
            if *b == 0 {
                r.problems
                    .push(format!("{}: {what} at {s:#x} has no size", o.name));
            }
            kept.push((*s, s + b));
        }
    }
    let mut walks: Vec<(&Owner, Walk)> = Vec::new();
    for o in owners.iter().filter(|o| o.nested.is_some()) {
        let root = o.nested.unwrap_or_default();
        match walk(mem, root, format) {
            Ok(w) => {
                kept.extend(w.tables.iter().map(|&t| (t, t + 4096)));
                walks.push((o, w));
            }
            Err(e) => r
                .problems
                .push(format!("{}: walking {root:#x}: {e}", o.name)),
        }
        if format == Format::Npt {
            for (what, s, _) in o.parts.iter().filter(|p| p.0 == "VMCB") {
                match mem.page(*s) {
                    Ok(p) if p[VMCB_N_CR3] == root => {}
                    Ok(p) => r.problems.push(format!(
                        "{}: the {what} at {s:#x} has N_CR3 {:#x}, not the root {root:#x}",
                        o.name, p[VMCB_N_CR3]
                    )),
                    Err(e) => r.problems.push(format!("{}: {what}: {e}", o.name)),
                }
            }
        }
    }
    let kept = Ranges::new(kept);
    let mapped = |w: &Walk| Ranges::new(w.leaves.iter().map(|l| (l.hpa, l.hpa + l.size)));
    let Some((_, cd_walk)) = walks.iter().find(|(o, _)| o.name == cd.name) else {
        r.problems
            .push("the control domain's tables were not walked".into());
        return r;
    };
    let cd_frames = mapped(cd_walk);
    let mut seen_frames: Vec<(String, Ranges)> = Vec::new();
    for (o, w) in &walks {
        let frames = mapped(w);
        r.leaves += w.leaves.len();
        r.summary.push(format!(
            "tables: {}: {} table pages, {} leaves mapping {} KiB",
            o.name,
            w.tables.len(),
            w.leaves.len(),
            frames.bytes() >> 10
        ));
        if let Some((s, e)) = frames.overlap(&kept) {
            r.problems.push(format!(
                "{} maps {s:#x}..{e:#x}, which the hypervisor keeps (its image, heap, a \
                 table or a control structure)",
                o.name
            ));
        }
        if o.name == cd.name {
            continue;
        }
        r.vms += 1;
        for l in &w.leaves {
            if !cd_frames.covers(l.hpa, l.hpa + l.size) {
                r.problems.push(format!(
                    "{} maps gpa {:#x} to {:#x}, outside the control domain's memory",
                    o.name, l.gpa, l.hpa
                ));
                break;
            }
        }
        for (other, f) in &seen_frames {
            if let Some((s, e)) = frames.overlap(f) {
                r.problems
                    .push(format!("{} and {other} both map {s:#x}..{e:#x}", o.name));
            }
        }
        seen_frames.push((o.name.clone(), frames));
        check_slots(&o.name, w, slots, &mut r.problems);
    }
    if r.vms != 1 {
        r.problems.push(format!(
            "expected the session's one VM in the layout, found {}",
            r.vms
        ));
    }
    r
}

/// A VM's leaves against its memory slots: exactly their pages, with the
/// slots' rights.
fn check_slots(name: &str, w: &Walk, slots: &[Slot], problems: &mut Vec<String>) {
    if slots.is_empty() {
        problems.push(format!("{name}: no memory slots to compare with"));
        return;
    }
    let gpas = Ranges::new(w.leaves.iter().map(|l| (l.gpa, l.gpa + l.size)));
    let want = Ranges::new(slots.iter().map(|s| (s.first, s.last + 1)));
    if gpas.0 != want.0 {
        problems.push(format!(
            "{name} maps guest-physical {:x?}, its slots are {:x?}",
            gpas.0, want.0
        ));
    }
    for l in &w.leaves {
        let Some(s) = slots.iter().find(|s| s.first <= l.gpa && l.gpa <= s.last) else {
            continue;
        };
        if s.readonly && l.write {
            problems.push(format!(
                "{name}: gpa {:#x} of a read-only slot is writable",
                l.gpa
            ));
        }
        // Dirty logging maps 4 KiB pages (written ones become writable).
        if s.log_dirty && l.size != 4096 {
            problems.push(format!(
                "{name}: gpa {:#x} of a dirty-logged slot is a {} KiB page",
                l.gpa,
                l.size >> 10
            ));
        }
    }
}

/// Physical memory from a map of pages (host tests).
#[derive(Default)]
pub struct Pages(pub BTreeMap<u64, Table>);

impl PhysMem for Pages {
    fn page(&mut self, pa: u64) -> Result<Table, String> {
        self.0
            .get(&pa)
            .copied()
            .ok_or_else(|| format!("no page at {pa:#x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 0x7; // NPT: present, writable, user.

    /// A control domain at 0x100000.. (one 2 MiB page and a 4 KiB table)
    /// and a VM whose one 4 KiB page lies in it.
    fn machine(vm_frame: u64) -> (Pages, String) {
        let mut m = Pages::default();
        let t = |m: &mut Pages, pa: u64, entries: &[(usize, u64)]| {
            let mut p = [0u64; 512];
            for &(i, e) in entries {
                p[i] = e;
            }
            m.0.insert(pa, p);
        };
        // Control domain: PML4 0x1000 → PDPT 0x2000 → PD 0x3000: a 2 MiB
        // page at gpa 0 → hpa 0x400000, and a PT 0x4000 at gpa 2 MiB with
        // one page → 0x600000.
        t(&mut m, 0x1000, &[(0, 0x2000 | P)]);
        t(&mut m, 0x2000, &[(0, 0x3000 | P)]);
        t(
            &mut m,
            0x3000,
            &[(0, 0x40_0000 | P | PAGE_SIZE_BIT), (1, 0x4000 | P)],
        );
        t(&mut m, 0x4000, &[(0, 0x60_0000 | P | (1 << 63))]);
        // The VM: PML4 0x5000 → 0x6000 → 0x7000 → PT 0x8000, gpa 0.
        t(&mut m, 0x5000, &[(0, 0x6000 | P)]);
        t(&mut m, 0x6000, &[(0, 0x7000 | P)]);
        t(&mut m, 0x7000, &[(0, 0x8000 | P)]);
        t(&mut m, 0x8000, &[(0, vm_frame | P)]);
        // VMCBs whose N_CR3 is each root.
        t(&mut m, 0x9000, &[(VMCB_N_CR3, 0x1000)]);
        t(&mut m, 0xa000, &[(VMCB_N_CR3, 0x5000)]);
        // The hypervisor's own tables: PML4 0xd000; entry 256 is the
        // window (never walked: it points nowhere here), entry 1 maps its
        // .bss, a 4 KiB page at 0x70_0000, through 0xe000 and 0xf000.
        t(&mut m, 0xd000, &[(1, 0xe000 | P), (256, 0xdead_0000 | P)]);
        t(&mut m, 0xe000, &[(0, 0xf000 | P)]);
        t(&mut m, 0xf000, &[(0, 0x1_0000 | P)]);
        t(&mut m, 0x1_0000, &[(0, 0x70_0000 | P)]);
        let serial = "mojito: layout: hypervisor: cr3 0xd000; window 0xffff800000000000+4294967296; image 0x800000+65536; heap 0x900000+4096\n\
                      mojito: layout: cpu0: host save area 0xb000+4096\n\
                      mojito: layout: control domain: nested 0x1000; VMCB 0x9000+4096\n\
                      mojito: layout: vm1: nested 0x5000; VMCB 0xa000+4096; XSAVE area 0xc000+4096\n"
            .to_string();
        (m, serial)
    }

    fn slot() -> Vec<Slot> {
        parse_memslots("slot   0: 0x0000000000-0x0000000fff     4 KiB -")
    }

    #[test]
    fn a_sound_machine_passes() {
        let (mut m, serial) = machine(0x40_1000);
        let r = check(&serial, &mut m, Format::Npt, &slot());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.vms, 1);
        assert_eq!(r.leaves, 3);
        assert!(r.summary[0].contains("hypervisor: 4 table pages, 1 leaves outside"));
        assert!(r.summary[2].contains("4 table pages, 2 leaves mapping 2052 KiB"));
        // A layout that lost parts, or lacks the hypervisor's tables.
        let lost = serial.replace("XSAVE area 0xc000+4096", "XSAVE area 0xc000+4096; 2 more");
        let r = check(&lost, &mut m, Format::Npt, &slot());
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("2 parts were not listed"))
        );
        let no_cr3 = serial.replace("cr3 0xd000; ", "");
        let r = check(&no_cr3, &mut m, Format::Npt, &slot());
        assert!(r.problems.iter().any(|p| p.contains("no cr3")));
    }

    #[test]
    fn each_wrong_mapping_is_found() {
        // The VM maps one of its own tables, the heap, the hypervisor's
        // image, memory the control domain does not have, a VMCB, a page
        // only the hypervisor's own tables map, one of those tables.
        for (frame, what) in [
            (0x70_0000, "hypervisor keeps"),
            (0xe000, "hypervisor keeps"),
            (0x8000, "hypervisor keeps"),
            (0x90_0000, "hypervisor keeps"),
            (0x80_0000, "hypervisor keeps"),
            (0x100_0000, "outside the control domain's memory"),
            (0x9000, "hypervisor keeps"),
        ] {
            let (mut m, serial) = machine(frame);
            let r = check(&serial, &mut m, Format::Npt, &slot());
            assert!(
                r.problems.iter().any(|p| p.contains(what)),
                "{frame:#x}: {:?}",
                r.problems
            );
        }
        // The control domain maps a VMCB.
        let (mut m, serial) = machine(0x40_1000);
        m.0.get_mut(&0x4000).unwrap()[1] = 0xa000 | P;
        let r = check(&serial, &mut m, Format::Npt, &slot());
        assert!(
            r.problems
                .iter()
                .any(|p| p.starts_with("control domain maps 0xa000"))
        );
        // A slot larger than what is mapped; a read-only slot mapped writable.
        let (mut m, serial) = machine(0x40_1000);
        let big = parse_memslots("slot   0: 0x0000000000-0x0000001fff     8 KiB -");
        let r = check(&serial, &mut m, Format::Npt, &big);
        assert!(r.problems.iter().any(|p| p.contains("its slots are")));
        let ro = parse_memslots("slot   0: 0x0000000000-0x0000000fff     4 KiB readonly");
        let r = check(&serial, &mut m, Format::Npt, &ro);
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("read-only slot is writable"))
        );
        // A VMCB that does not point at the root walked.
        m.0.get_mut(&0xa000).unwrap()[VMCB_N_CR3] = 0x1000;
        let r = check(&serial, &mut m, Format::Npt, &slot());
        assert!(r.problems.iter().any(|p| p.contains("N_CR3 0x1000")));
    }

    #[test]
    fn ept_entries() {
        // EPT: readable/writable/executable bits, no user bit.
        let mut m = Pages::default();
        let mut l4 = [0u64; 512];
        l4[1] = 0x2000 | 7;
        m.0.insert(0x1000, l4);
        let mut l3 = [0u64; 512];
        l3[2] = 0x4000_0000 | 1 | PAGE_SIZE_BIT; // a read-only 1 GiB page
        m.0.insert(0x2000, l3);
        let w = walk(&mut m, 0x1000, Format::Ept).unwrap();
        assert_eq!(
            w.leaves,
            [Leaf {
                gpa: (1 << 39) + (2 << 30),
                hpa: 0x4000_0000,
                size: 1 << 30,
                write: false,
                exec: false
            }]
        );
    }

    #[test]
    fn ranges() {
        let r = Ranges::new([(10, 20), (15, 30), (40, 50)]);
        assert_eq!(r.0, [(10, 30), (40, 50)]);
        assert!(r.covers(12, 30) && !r.covers(25, 41));
        assert_eq!(r.overlap(&Ranges::new([(30, 41)])), Some((40, 41)));
        assert_eq!(r.overlap(&Ranges::new([(30, 40)])), None);
    }
}
