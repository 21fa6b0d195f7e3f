//! What the read-only commands print: `help`, `info`, `list`, `ls`,
//! `stats` and `show`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use abi::kvm::{kvm_msr_entry, kvm_segment};
use vmm::api::Vcpu;
use vmm::vm::exit_reason_name;

use super::machine::Shell;
use super::parse::{self, COMMANDS, ShowPath};
use super::text;
use super::vms::{self, State};
use crate::println;

/// Help text lines are wrapped to this width.
const WIDTH: usize = 76;

pub fn help(topic: Option<&str>) {
    let Some(topic) = topic else {
        println!("commands:");
        for s in COMMANDS {
            let name = match s.alias {
                Some(a) => format!("{} ({a})", s.name),
                None => String::from(s.name),
            };
            println!("  {name:<10} {}", s.summary);
        }
        println!("help COMMAND shows its usage and details.");
        println!(
            "Your own kernel: `cargo xtask run --kernel FILE` puts it into the boot bundle and \
             starts it as VM guest; or `cargo xtask image --add FILE`, then here \
             `create NAME kernel=FILE` and `start NAME` (help create)."
        );
        println!(
            "Keys: left/right move, up/down recall, Ctrl-U erases the line, Ctrl-C drops it, \
             Ctrl-] leaves a console."
        );
        return;
    };
    let Some(s) = parse::spec(topic) else {
        println!(
            "{}",
            parse::Error::Unknown {
                word: topic.chars().take(32).collect(),
                closest: parse::closest(topic),
            }
        );
        return;
    };
    println!("usage: {}", s.usage);
    for line in text::wrap(s.summary, WIDTH) {
        println!("  {line}");
    }
    for line in text::wrap(s.more, WIDTH) {
        println!("  {line}");
    }
}

/// The CPU's vendor and brand string, from CPUID (which the hypervisor
/// passes through for these leaves).
fn cpu_name() -> (String, String) {
    let id = |leaf: u32| {
        let r = core::arch::x86_64::__cpuid(leaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    };
    let v = id(0);
    let mut vendor = Vec::new();
    for w in [v[1], v[3], v[2]] {
        vendor.extend_from_slice(&w.to_le_bytes());
    }
    let mut brand = Vec::new();
    if id(0x8000_0000)[0] >= 0x8000_0004 {
        for leaf in 0x8000_0002..=0x8000_0004 {
            for w in id(leaf) {
                brand.extend_from_slice(&w.to_le_bytes());
            }
        }
    }
    let text = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .trim_matches(|c: char| c == '\0' || c == ' ')
            .into()
    };
    (text(&vendor), text(&brand))
}

pub fn info(sh: &Shell) {
    // The hypervisor and the control domain are built together, from one
    // workspace version.
    println!("Mojito {}", env!("CARGO_PKG_VERSION"));
    let (vendor, brand) = cpu_name();
    println!("cpu: {vendor}, {brand}");
    let info = match crate::hv::info() {
        Ok(i) => i,
        Err(e) => {
            println!("info: MOJITO_INFO failed: -{e}");
            return;
        }
    };
    let end = info.extension.iter().position(|&b| b == 0).unwrap_or(128);
    let extension = String::from_utf8_lossy(&info.extension[..end]).into_owned();
    println!("virtualization: {extension}");
    let vcpus = crate::smp::helpers() + 1;
    if vcpus == 1 {
        println!(
            "physical CPUs: {} with VMX/SVM on; guests run on cpu0 with the shell",
            info.cpus
        );
    } else {
        println!(
            "physical CPUs: {} with VMX/SVM on, the control domain on {vcpus}; VM n runs on \
             CPU n mod {vcpus}",
            info.cpus
        );
    }
    println!(
        "memory: {} usable: hypervisor {}, control domain {}, free for VM metadata {} ({} frames)",
        text::size(info.mem_usable),
        text::size(info.mem_hypervisor),
        text::size(info.mem_control),
        text::size(info.mem_free),
        info.mem_free / 4096
    );
    let guests: u64 = sh
        .vms
        .iter()
        .filter(|e| e.vm.is_some())
        .map(|e| e.spec.mem)
        .sum();
    if let Some((size, used)) = crate::mem::heap_usage() {
        println!(
            "control domain heap: {}, {} KiB in use ({used} bytes; {} of it guest RAM, {} VMs)",
            text::size(size as u64),
            used >> 10,
            text::size(guests),
            sh.vms.len()
        );
    }
    if info.tsc_khz > 0 {
        println!(
            "tsc: {}.{:03} MHz (measured against the PIT)",
            info.tsc_khz / 1000,
            info.tsc_khz % 1000
        );
    } else {
        println!("tsc: frequency not measured");
    }
    println!(
        "uptime: {} ({} timer ticks)",
        text::duration(info.uptime_tsc, info.tsc_khz),
        info.timer_ticks
    );
    if info.rtc_unix_s != 0 && info.tsc_khz != 0 {
        // SAFETY: RDTSC only reads the time-stamp counter.
        let now = unsafe { core::arch::x86_64::_rdtsc() };
        let secs = info.rtc_unix_s + now.wrapping_sub(info.rtc_tsc) / (info.tsc_khz * 1000);
        let t = abi::rtc::DateTime::from_unix_seconds(secs);
        println!(
            "time: {}-{:02}-{:02} {:02}:{:02}:{:02} UTC (the RTC at boot, then the TSC)",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        );
    }
}

fn khz() -> u64 {
    crate::hv::info().map_or(0, |i| i.tsc_khz)
}

pub fn list(sh: &Shell) {
    if sh.vms.is_empty() {
        println!("no VMs; create one (help create)");
        return;
    }
    let khz = khz();
    println!("  ID NAME             VCPUS  MEMORY    EXITS  UPTIME      STATE");
    for e in &sh.vms {
        let uptime = match (&e.state, e.started_tsc) {
            (State::Running | State::Paused, Some(t)) => {
                text::duration(vms::rdtsc().wrapping_sub(t), khz)
            }
            _ => String::from("-"),
        };
        println!(
            "{:>4} {:<16} {:>5}  {:<8} {:>6}  {:<11} {}",
            e.id,
            e.name(),
            e.vcpus,
            text::size(e.spec.mem),
            e.total_exits(),
            uptime,
            e.state
        );
    }
}

pub fn ls(sh: &Shell) {
    let mut n = 0;
    for f in sh.bundle.files() {
        println!("{:>10}  {}", f.data.len(), f.name);
        n += 1;
    }
    println!("{n} files in the boot bundle");
}

pub fn stats(sh: &mut Shell, i: usize) {
    let khz = khz();
    let e = &mut sh.vms[i];
    let (exits, writes, reads) = match e.vm.as_mut() {
        Some(vm) => (
            vm.exits().clone(),
            vm.bus().unknown_writes().clone(),
            vm.bus().unknown_reads().clone(),
        ),
        None => (e.exits.clone(), e.port_writes.clone(), e.port_reads.clone()),
    };
    let total: u64 = exits.by_reason.values().sum();
    println!("vm {} ({}): {}", e.id, e.spec.name, e.state);
    let ran = text::duration(e.ran_tsc, khz);
    if exits.per_vcpu.len() > 1 {
        // They take turns on one CPU: the time is the VM's.
        for (n, count) in exits.per_vcpu.iter().enumerate() {
            println!("  vcpu{n}: {count} exits to the VMM");
        }
        println!(
            "  all {} vCPUs: {total} exits, {ran} in KVM_RUN (round robin on one CPU)",
            exits.per_vcpu.len()
        );
    } else {
        println!("  vcpu0: {total} exits to the VMM, {ran} in KVM_RUN");
    }
    let mut line = String::new();
    for (&reason, &n) in &exits.by_reason {
        line.push_str(&format!(" {}={n}", exit_reason_name(reason)));
    }
    if !line.is_empty() {
        println!("  by reason:{line}");
    }
    for (what, ports) in [("writes", &writes), ("reads", &reads)] {
        for (port, n) in ports {
            println!("  unclaimed port {port:#06x}: {n} {what}");
        }
    }
    if !exits.mmio_reads.is_empty() || !exits.mmio_writes.is_empty() {
        let r: u64 = exits.mmio_reads.values().sum();
        let w: u64 = exits.mmio_writes.values().sum();
        println!("  mmio: {r} reads, {w} writes");
    }
}

/// MSRs `show .../msrs` reads (the ones a guest's state is made of).
const SHOW_MSRS: [(u32, &str); 12] = [
    (0xc000_0080, "EFER"),
    (0xc000_0081, "STAR"),
    (0xc000_0082, "LSTAR"),
    (0xc000_0083, "CSTAR"),
    (0xc000_0084, "SFMASK"),
    (0xc000_0102, "KERNEL_GS_BASE"),
    (0x174, "SYSENTER_CS"),
    (0x175, "SYSENTER_ESP"),
    (0x176, "SYSENTER_EIP"),
    (0x277, "PAT"),
    (0x10, "TSC"),
    (0xc000_0103, "TSC_AUX"),
];

fn segment(name: &str, s: &kvm_segment) {
    println!(
        "{name:<4} sel {:#06x} base {:#018x} limit {:#010x} type {:#x} p{} dpl{} db{} s{} l{} g{}{}",
        s.selector,
        s.base,
        s.limit,
        s.type_,
        s.present,
        s.dpl,
        s.db,
        s.s,
        s.l,
        s.g,
        if s.unusable != 0 { " unusable" } else { "" }
    );
}

pub fn show(sh: &mut Shell, path: &str) {
    let target = match parse::show_path(path) {
        Ok(t) => t,
        Err(e) => {
            println!("show: {e}");
            return;
        }
    };
    let name = match &target {
        ShowPath::Root => {
            println!("vm/");
            return;
        }
        ShowPath::Vms => {
            for e in &sh.vms {
                println!("vm/{}/", e.name());
            }
            return;
        }
        ShowPath::Vm(n)
        | ShowPath::Vcpu(n, _)
        | ShowPath::Regs(n, _)
        | ShowPath::Sregs(n, _)
        | ShowPath::Msrs(n, _)
        | ShowPath::Memslots(n) => n.clone(),
    };
    let Some(i) = sh.find(&name) else {
        println!("show: there is no VM {name} (list shows them)");
        return;
    };
    let vcpus = sh.vms[i].vcpus;
    let k = match &target {
        ShowPath::Vm(_) => {
            for k in 0..vcpus {
                println!("vm/{name}/vcpu{k}/");
            }
            println!("vm/{name}/memslots");
            return;
        }
        ShowPath::Vcpu(_, k)
        | ShowPath::Regs(_, k)
        | ShowPath::Sregs(_, k)
        | ShowPath::Msrs(_, k)
            if *k >= vcpus =>
        {
            println!(
                "show: {name} has {vcpus} vCPU{}: vcpu0 up to vcpu{}",
                if vcpus == 1 { "" } else { "s" },
                vcpus.saturating_sub(1)
            );
            return;
        }
        ShowPath::Vcpu(_, k) => {
            for f in ["regs", "sregs", "msrs"] {
                println!("vm/{name}/vcpu{k}/{f}");
            }
            return;
        }
        ShowPath::Regs(_, k) | ShowPath::Sregs(_, k) | ShowPath::Msrs(_, k) => *k as usize,
        _ => 0,
    };
    let e = &mut sh.vms[i];
    let Some(vm) = e.vm.as_mut() else {
        println!("show: {name} has stopped; its vCPUs and memory are gone");
        return;
    };
    if let ShowPath::Memslots(_) = target {
        for m in vm.memslots() {
            let mut flags = Vec::new();
            if m.flags & abi::kvm::KVM_MEM_LOG_DIRTY_PAGES != 0 {
                flags.push("log-dirty");
            }
            if m.flags & abi::kvm::KVM_MEM_READONLY != 0 {
                flags.push("readonly");
            }
            println!(
                "slot {:>3}: {:#012x}-{:#012x} {:>8} {}",
                m.slot,
                m.guest_phys_addr,
                m.guest_phys_addr + m.memory_size - 1,
                text::size(m.memory_size),
                if flags.is_empty() {
                    String::from("-")
                } else {
                    flags.join(",")
                }
            );
        }
        return;
    }
    let Some(vcpu) = vm.vcpu_at(k) else {
        println!("show: {name} has no vcpu{k}");
        return;
    };
    match target {
        ShowPath::Regs(..) => match vcpu.get_regs() {
            Ok(r) => {
                println!(
                    "rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}",
                    r.rax, r.rbx, r.rcx, r.rdx
                );
                println!(
                    "rsi {:#018x} rdi {:#018x} rsp {:#018x} rbp {:#018x}",
                    r.rsi, r.rdi, r.rsp, r.rbp
                );
                println!(
                    "r8  {:#018x} r9  {:#018x} r10 {:#018x} r11 {:#018x}",
                    r.r8, r.r9, r.r10, r.r11
                );
                println!(
                    "r12 {:#018x} r13 {:#018x} r14 {:#018x} r15 {:#018x}",
                    r.r12, r.r13, r.r14, r.r15
                );
                println!("rip {:#018x} rflags {:#010x}", r.rip, r.rflags);
            }
            Err(e) => println!("show: KVM_GET_REGS failed: -{e}"),
        },
        ShowPath::Sregs(..) => match vcpu.get_sregs() {
            Ok(s) => {
                for (n, seg) in [
                    ("cs", &s.cs),
                    ("ds", &s.ds),
                    ("es", &s.es),
                    ("fs", &s.fs),
                    ("gs", &s.gs),
                    ("ss", &s.ss),
                    ("tr", &s.tr),
                    ("ldt", &s.ldt),
                ] {
                    segment(n, seg);
                }
                println!("gdt  base {:#018x} limit {:#06x}", s.gdt.base, s.gdt.limit);
                println!("idt  base {:#018x} limit {:#06x}", s.idt.base, s.idt.limit);
                println!(
                    "cr0 {:#018x} cr2 {:#018x} cr3 {:#018x}",
                    s.cr0, s.cr2, s.cr3
                );
                println!(
                    "cr4 {:#018x} cr8 {:#018x} efer {:#018x}",
                    s.cr4, s.cr8, s.efer
                );
                println!("apic_base {:#018x}", s.apic_base);
            }
            Err(e) => println!("show: KVM_GET_SREGS failed: -{e}"),
        },
        ShowPath::Msrs(..) => {
            for (index, msr) in SHOW_MSRS {
                let mut entry = [kvm_msr_entry {
                    index,
                    ..Default::default()
                }];
                match vcpu.get_msrs(&mut entry) {
                    Ok(1) => println!("{msr:<15} {index:#010x} = {:#018x}", entry[0].data),
                    _ => println!("{msr:<15} {index:#010x}   (not readable)"),
                }
            }
        }
        _ => {}
    }
}
