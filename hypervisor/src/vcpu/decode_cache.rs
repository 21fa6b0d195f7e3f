//! The last instruction decoded at an exit whose length the CPU does not
//! report — on SVM without NRIP save that is every CPUID, VMMCALL, MSR
//! access and HLT (AMD APM Vol. 2 15.7.1) — so that a loop of such exits
//! walks the guest's page tables and decodes once, not every time.
//!
//! The cache is exact, not a TLB: an entry is used only when a new walk and
//! decode would find the same. A walk is a function of the paging controls
//! (CR0, CR3, CR4, EFER), the access (CPL, fetch) and the paging-structure
//! entries it reads; a decode is a function of the instruction's bytes and
//! the mode. So a hit needs the same RIP, CS base, mode, CPL and controls,
//! the same value in every entry the walk read (re-read from guest memory
//! at each lookup), and the same bytes in the same guest frame. The host
//! addresses it keeps are valid while the VM's memory slots are unchanged
//! (`GuestRam::generation`). Code on one page only; other misses just walk.

use crate::guest::GuestRam;
use crate::guest::insn::{Kind, MAX_LEN};
use crate::guest::walk::{self, Access, GuestMemory, Paging};
use crate::mm::{GuestPhys, GuestVirt, HostPhys};
use crate::virt::{CpuMode, GuestCpu, SegmentReg};

/// Paging-structure entries a walk reads at most (4-level paging).
const MAX_ENTRIES: usize = 4;
const PAGE: u64 = 4096;
/// Bytes compared at a lookup: the longest instruction, rounded up to
/// two words.
const COMPARED: u64 = 16;

/// What a walk and a decode depend on besides memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    rip: u64,
    cs_base: u64,
    mode: CpuMode,
    cpl: u8,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
}

impl Key {
    pub fn of<C: GuestCpu>(cpu: &C) -> Self {
        Self {
            rip: cpu.rip(),
            cs_base: cpu.segment(SegmentReg::Cs).base,
            mode: cpu.mode(),
            cpl: cpu.cpl(),
            cr0: cpu.cr0(),
            cr3: cpu.cr3(),
            cr4: cpu.cr4(),
            efer: cpu.efer(),
        }
    }

    /// The linear address of the instruction.
    fn linear(&self) -> u64 {
        if self.mode == CpuMode::Long64 {
            self.rip
        } else {
            self.cs_base.wrapping_add(self.rip) & 0xffff_ffff
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: Key,
    generation: u64,
    /// Where each entry the walk read lies in host memory (its address in
    /// the physical-memory window), and its value.
    entries: [(u64, u64); MAX_ENTRIES],
    n_entries: usize,
    /// Where the instruction lies in the window, and its bytes as two
    /// words with the mask of the instruction's own bytes in them (16
    /// bytes are compared, so the 16 lie on the instruction's page).
    code: u64,
    words: [u64; 2],
    masks: [u64; 2],
    kind: Kind,
    len: u8,
}

/// One vCPU's cache: its last decoded instruction.
#[derive(Debug, Default)]
pub struct DecodeCache {
    entry: Option<Entry>,
}

/// Reads 8 bytes of guest memory at window address `va`.
fn read_u64(va: u64) -> u64 {
    // SAFETY: only addresses `fill` found through the guest's RAM are read,
    // and only while its slots are as they were then (the generation).
    unsafe { core::ptr::read_unaligned(va as *const u64) }
}

/// The window address of host-physical `pa`.
fn window(pa: HostPhys) -> u64 {
    crate::mm::phys::to_virt(pa).raw()
}

impl DecodeCache {
    /// The instruction at the vCPU's RIP if the entry is still exact. The
    /// vCPU's state is compared field by field, cheapest and likeliest to
    /// differ first (no key is built on this path).
    pub fn lookup<C: GuestCpu>(&self, cpu: &C, ram: &GuestRam) -> Option<(Kind, u8)> {
        let e = self.entry.as_ref()?;
        let k = &e.key;
        if cpu.rip() != k.rip
            || cpu.cr3() != k.cr3
            || e.generation != ram.generation()
            || cpu.cr0() != k.cr0
            || cpu.cr4() != k.cr4
            || cpu.efer() != k.efer
            || cpu.cpl() != k.cpl
            || cpu.mode() != k.mode
            || (k.mode != CpuMode::Long64 && cpu.segment(SegmentReg::Cs).base != k.cs_base)
        {
            return None;
        }
        for &(host, value) in &e.entries[..e.n_entries] {
            if read_u64(host) != value {
                return None;
            }
        }
        let now = [read_u64(e.code), read_u64(e.code + 8)];
        let same =
            (now[0] ^ e.words[0]) & e.masks[0] == 0 && (now[1] ^ e.words[1]) & e.masks[1] == 0;
        same.then_some((e.kind, e.len))
    }

    /// Remembers that the instruction at `key`'s RIP decoded as `kind` with
    /// `len` bytes, if its walk and bytes can be checked cheaply later.
    pub fn fill(&mut self, key: Key, ram: &GuestRam, kind: Kind, len: u8) {
        self.entry = None;
        let linear = key.linear();
        let n = u64::from(len);
        if n == 0 || usize::from(len) > MAX_LEN || linear % PAGE + COMPARED > PAGE {
            return;
        }
        let recorder = Recorder {
            ram,
            reads: core::cell::Cell::new([(GuestPhys::new(0), 0); MAX_ENTRIES + 1]),
            n: core::cell::Cell::new(0),
        };
        let paging = Paging::from_state(key.cr0, key.cr4, key.efer);
        let access = Access {
            fetch: true,
            user: key.cpl == 3,
            write: false,
        };
        let nxe = key.efer & crate::arch::msr::efer::NXE != 0;
        let wp = key.cr0 & super::CR0_WP != 0;
        let Ok(gpa) = walk::translate(
            &recorder,
            paging,
            key.cr3,
            GuestVirt::new(linear),
            access,
            nxe,
            wp,
        ) else {
            return;
        };
        let reads = recorder.reads.get();
        let n_entries = recorder.n.get();
        if n_entries > MAX_ENTRIES {
            return;
        }
        let mut entries = [(0, 0); MAX_ENTRIES];
        for (slot, &(at, value)) in entries.iter_mut().zip(&reads[..n_entries]) {
            match ram.host_run(at) {
                Some((host, run)) if run >= 8 => *slot = (window(host), value),
                _ => return,
            }
        }
        let code = match ram.host_run(gpa) {
            Some((host, run)) if run >= COMPARED => window(host),
            _ => return,
        };
        let mut bytes = [0; COMPARED as usize];
        if !ram.read(gpa, &mut bytes) {
            return;
        }
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&bytes[8 * i..8 * i + 8]);
            u64::from_le_bytes(w)
        };
        // Byte i of the instruction is bits 8i..8i+8 of the two words.
        let mask = |i: u64| match (8 * n).saturating_sub(64 * i) {
            0 => 0,
            bits @ 1..=63 => (1u64 << bits) - 1,
            _ => u64::MAX,
        };
        self.entry = Some(Entry {
            key,
            generation: ram.generation(),
            entries,
            n_entries,
            code,
            words: [word(0), word(1)],
            masks: [mask(0), mask(1)],
            kind,
            len,
        });
    }
}

/// Guest memory that notes each entry the walker reads.
struct Recorder<'a> {
    ram: &'a GuestRam,
    reads: core::cell::Cell<[(GuestPhys, u64); MAX_ENTRIES + 1]>,
    n: core::cell::Cell<usize>,
}

impl GuestMemory for Recorder<'_> {
    fn read_u64(&self, gpa: GuestPhys) -> Option<u64> {
        let value = self.ram.read_u64(gpa)?;
        let n = self.n.get();
        if n <= MAX_ENTRIES {
            let mut reads = self.reads.get();
            reads[n] = (gpa, value);
            self.reads.set(reads);
        }
        self.n.set(n + 1);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::tests::{env, long_mode};
    use crate::vcpu::{Action, handle};
    use crate::virt::{Exit, ExitInfo};
    use crate::vm::VmEnv;

    /// Host memory for guest page `i`, and its pointer.
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    /// Eight pages of guest RAM with 4-level tables at 0x1000-0x4000 that
    /// map linear 0x5000 to GPA 0x5000.
    fn ram() -> (GuestRam, Vec<*mut u8>) {
        let pages: Vec<*mut u8> = (0..8)
            .map(|_| Box::leak(Box::new(Page([0; 4096]))).0.as_mut_ptr())
            .collect();
        let ram =
            GuestRam::from_host_pages(pages.iter().map(|p| HostPhys::new(*p as u64)).collect());
        let set = |gpa: u64, v: u64| assert!(write(&pages, gpa, &v.to_le_bytes()));
        set(0x1000, 0x2003);
        set(0x2000, 0x3003);
        set(0x3000, 0x4003);
        set(0x4000 + 5 * 8, 0x5003);
        set(0x4000 + 6 * 8, 0x6003);
        (ram, pages)
    }

    fn write(pages: &[*mut u8], gpa: u64, bytes: &[u8]) -> bool {
        let (page, off) = ((gpa / PAGE) as usize, (gpa % PAGE) as usize);
        // SAFETY: the test's own leaked pages.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), pages[page].add(off), bytes.len())
        };
        true
    }

    #[test]
    fn a_hit_needs_the_same_walk_and_bytes() {
        let (ram, pages) = ram();
        let mut env = env();
        env.ram = ram;
        let mut cpu = long_mode();
        cpu.cr3 = 0x1000;
        // CPUID at 0x5010; at 0x6010 the same with an operand-size prefix.
        write(&pages, 0x5010, &[0x0f, 0xa2]);
        write(&pages, 0x6010, &[0x66, 0x0f, 0xa2]);
        let cpuid = |cpu: &mut crate::vcpu::tests::Fake, env: &mut VmEnv| {
            cpu.rip = 0x5010;
            let info = ExitInfo {
                exit: Exit::Cpuid,
                len: None,
            };
            assert_eq!(handle(cpu, env, info, 7), Action::Resume);
            cpu.rip - 0x5010
        };
        assert_eq!(cpuid(&mut cpu, &mut env), 2);
        cpu.rip = 0x5010;
        assert_eq!(env.decoded.lookup(&cpu, &env.ram), Some((Kind::Cpuid, 2)));
        // Bytes after the instruction do not matter.
        write(&pages, 0x5012, &[0x66]);
        assert_eq!(env.decoded.lookup(&cpu, &env.ram), Some((Kind::Cpuid, 2)));
        // Another CR3, RIP or CPL is another key.
        cpu.cpl = 3;
        assert_eq!(env.decoded.lookup(&cpu, &env.ram), None);
        cpu.cpl = 0;
        // The page table now maps the prefixed copy: the walk differs.
        write(&pages, 0x4000 + 5 * 8, &0x6003u64.to_le_bytes());
        assert_eq!(env.decoded.lookup(&cpu, &env.ram), None);
        assert_eq!(cpuid(&mut cpu, &mut env), 3);
        // The bytes change under the same walk.
        write(&pages, 0x6010, &[0x0f, 0xa2, 0x90]);
        cpu.rip = 0x5010;
        assert_eq!(env.decoded.lookup(&cpu, &env.ram), None);
        assert_eq!(cpuid(&mut cpu, &mut env), 2);
        cpu.rip = 0x5010;
        assert!(env.decoded.lookup(&cpu, &env.ram).is_some());
        // A slot change drops it.
        let slot = crate::guest::ram::MemSlot {
            slot: 1,
            flags: 0,
            gpa: 0x10_0000,
            size: 0x1000,
            cd_gpa: 0,
        };
        assert!(env.ram.insert_slot(slot, None).is_ok());
        assert_eq!(env.decoded.lookup(&cpu, &env.ram), None);
    }

    #[test]
    fn an_instruction_across_a_page_is_not_kept() {
        let (ram, pages) = ram();
        let mut env = env();
        env.ram = ram;
        let mut cpu = long_mode();
        cpu.cr3 = 0x1000;
        // 0F at 0x5fff, A2 at 0x6000 (linear 0x6000 maps GPA 0x6000).
        write(&pages, 0x5fff, &[0x0f]);
        write(&pages, 0x6000, &[0xa2]);
        cpu.rip = 0x5fff;
        let info = ExitInfo {
            exit: Exit::Cpuid,
            len: None,
        };
        assert_eq!(handle(&mut cpu, &mut env, info, 7), Action::Resume);
        assert_eq!(cpu.rip, 0x6001);
        cpu.rip = 0x5fff;
        assert_eq!(env.decoded.lookup(&cpu, &env.ram), None);
    }
}
