//! Running the bundle's test guests as VMs through the KVM API, round robin
//! on their yield port: create the VM, give it RAM from ours, load its ELF
//! image, set the real-mode start state of `abi::guest`, and handle the
//! exits that come back (console, end-of-test and yield ports).
//!
//! A stopgap until the VMM with its device models takes over this job.

use crate::hv;
use crate::println;
use abi::guest::{CONSOLE_PORT, EXIT_PORT, YIELD_PORT};
use abi::kvm::mojito::{MOJITO_CLOSE, MOJITO_SET_RUN_PAGES, mojito_run_pages};
use abi::kvm::*;

/// RAM of each test guest.
const GUEST_RAM: u64 = 4 << 20;

/// `len` zeroed bytes at a multiple of `align` from the heap, kept for
/// good (the VM's memory and run pages outlive this runner's use of them).
fn pages(len: u64, align: u64) -> Option<u64> {
    let layout = core::alloc::Layout::from_size_align(len as usize, align as usize).ok()?;
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    (!p.is_null()).then_some(p as u64)
}

struct Guest<'a> {
    name: &'a str,
    vm: u64,
    vcpu: u64,
    run: *mut kvm_run,
    line: [u8; 160],
    len: usize,
    stopped: bool,
    /// KVM_EXIT_INTRs in a row (the timer gave us the CPU back).
    ticks_in_a_row: u32,
    ticks: u64,
}

/// A guest that lets this many timer ticks pass in a row without a single
/// exit to us is stopped: it would otherwise keep its CPU forever. Exits the
/// hypervisor handles itself (CPUID, MSRs) do not reach us, so a guest busy
/// with those looks the same; under TCG without icount a tick is only
/// ~20 ms of host time, and 4 ticks once killed the demo in its CPUID
/// benchmark on a loaded machine (that benchmark takes about one tick
/// there). Under icount a tick is ~3 s of host time, so more is costly.
const MAX_TICKS_IN_A_ROW: u32 = 10;

fn err(e: i32) -> &'static str {
    match e {
        abi::kvm::errno::ENOMEM => "out of memory",
        abi::kvm::errno::EINVAL => "invalid argument",
        abi::kvm::errno::EFAULT => "bad address",
        _ => "error",
    }
}

/// Makes VM `id` from `elf`.
fn create<'a>(id: u64, name: &'a str, elf: &[u8]) -> Result<Guest<'a>, &'static str> {
    let image = abi::elf::Elf::parse(elf).map_err(|_| "not a usable ELF file")?;
    let mem = pages(GUEST_RAM, 2 << 20).ok_or("out of control-domain memory")?;
    for seg in image.segments() {
        if seg.paddr.saturating_add(seg.mem_size) > GUEST_RAM {
            return Err("a segment lies outside guest RAM");
        }
        // SAFETY: the segment fits the guest's RAM, which is ours.
        unsafe {
            core::ptr::copy_nonoverlapping(
                seg.data.as_ptr(),
                (mem + seg.paddr) as *mut u8,
                seg.data.len(),
            )
        };
    }
    let vm = hv::system(KVM_CREATE_VM, 0).map_err(err)?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: GUEST_RAM,
        userspace_addr: mem,
    };
    hv::call(KVM_SET_USER_MEMORY_REGION, vm, &region as *const _ as u64).map_err(err)?;
    let vcpu = hv::call(KVM_CREATE_VCPU, vm, 0).map_err(err)?;
    let run_size = hv::system(KVM_GET_VCPU_MMAP_SIZE, 0).map_err(err)?;
    let run = pages(run_size, 4096).ok_or("out of control-domain memory")?;
    let rp = mojito_run_pages {
        count: (run_size / 4096) as u32,
        gpa: run,
        ..Default::default()
    };
    hv::call(MOJITO_SET_RUN_PAGES, vcpu, &rp as *const _ as u64).map_err(err)?;
    // The test guests' start state (abi::guest): real mode, CS = 0.
    let mut sregs = kvm_sregs::default();
    hv::call(KVM_GET_SREGS, vcpu, &mut sregs as *mut _ as u64).map_err(err)?;
    sregs.cs.selector = 0;
    sregs.cs.base = 0;
    sregs.cr0 = 0x10;
    hv::call(KVM_SET_SREGS, vcpu, &sregs as *const _ as u64).map_err(err)?;
    let regs = kvm_regs {
        rip: image.entry(),
        rflags: 2,
        rbx: id,
        rcx: GUEST_RAM,
        ..Default::default()
    };
    hv::call(KVM_SET_REGS, vcpu, &regs as *const _ as u64).map_err(err)?;
    Ok(Guest {
        name,
        vm,
        vcpu,
        run: run as *mut kvm_run,
        line: [0; 160],
        len: 0,
        stopped: false,
        ticks_in_a_row: 0,
        ticks: 0,
    })
}

/// What one RUN led to.
enum Step {
    Continue,
    Yield,
    Stop(&'static str, u64),
}

impl Guest<'_> {
    fn console(&mut self, b: u8) {
        if b != b'\n' && b != b'\r' && self.len < self.line.len() {
            self.line[self.len] = b;
            self.len += 1;
        }
        if b == b'\n' || self.len == self.line.len() {
            let text = core::str::from_utf8(&self.line[..self.len]).unwrap_or("?");
            println!("[{}] {}", self.name, text);
            self.len = 0;
        }
    }

    /// One RUN and its exit.
    fn step(&mut self) -> Step {
        let r = hv::call(KVM_RUN, self.vcpu, 0);
        // SAFETY: the run page is ours; the hypervisor wrote it during RUN.
        let run = unsafe { &mut *self.run };
        match r {
            Err(abi::kvm::errno::EINTR) => {
                self.ticks += 1;
                self.ticks_in_a_row += 1;
                if self.ticks_in_a_row >= MAX_TICKS_IN_A_ROW {
                    return Step::Stop(
                        "killed after timer ticks without an exit:",
                        u64::from(self.ticks_in_a_row),
                    );
                }
                // The CPU is ours for a moment (the place to serve COM1 once
                // there is a shell); then the same guest goes on.
                return Step::Continue;
            }
            Err(e) => return Step::Stop("KVM_RUN failed", e as u64),
            Ok(_) => self.ticks_in_a_row = 0,
        }
        match run.exit_reason {
            KVM_EXIT_IO => {
                // SAFETY: `io` is the member KVM_EXIT_IO fills.
                let io = unsafe { run.exit.io };
                let size = usize::from(io.size);
                if !matches!(size, 1 | 2 | 4) || size * io.count as usize > 4096 {
                    return Step::Stop("malformed KVM_EXIT_IO", u64::from(io.count));
                }
                // SAFETY: data_offset lies in our run pages (the second
                // page), which hold `count` elements of `size` bytes.
                let data = unsafe {
                    core::slice::from_raw_parts_mut(
                        (self.run as *mut u8).add(io.data_offset as usize),
                        size * io.count as usize,
                    )
                };
                // INS/OUTS come as `count` elements in a row.
                for element in data.chunks_exact_mut(size) {
                    if io.direction == KVM_EXIT_IO_OUT {
                        let mut v = [0u8; 4];
                        v[..size].copy_from_slice(element);
                        let v = u32::from_le_bytes(v);
                        match io.port {
                            CONSOLE_PORT => self.console(v as u8),
                            EXIT_PORT => {
                                return Step::Stop("exited with status", u64::from(v & 0xff));
                            }
                            YIELD_PORT => return Step::Yield,
                            _ => {}
                        }
                    } else {
                        let v: u32 = if io.port == CONSOLE_PORT {
                            0xe9
                        } else {
                            u32::MAX
                        };
                        element.copy_from_slice(&v.to_le_bytes()[..size]);
                    }
                }
                Step::Continue
            }
            KVM_EXIT_HLT => Step::Stop("halted", 0),
            KVM_EXIT_SHUTDOWN => Step::Stop("triple fault", 0),
            // SAFETY: the member for this exit reason.
            KVM_EXIT_FAIL_ENTRY => Step::Stop("VM entry failed", unsafe {
                run.exit.fail_entry.hardware_entry_failure_reason
            }),
            // SAFETY: the member for this exit reason.
            KVM_EXIT_INTERNAL_ERROR => Step::Stop(
                "internal error",
                u64::from(unsafe { run.exit.internal.suberror }),
            ),
            KVM_EXIT_INTR => Step::Continue,
            other => Step::Stop("unexpected exit", u64::from(other)),
        }
    }
}

/// Runs every `guests/NAME.elf` of the bundle, round robin on the yield
/// port, until all have stopped.
pub fn run_all(bundle: &abi::bundle::Bundle<'_>) {
    let mut guests: [Option<Guest<'_>>; 16] = Default::default();
    let mut n = 0;
    for f in bundle.files() {
        let Some(name) = f
            .name
            .strip_prefix("guests/")
            .and_then(|s| s.strip_suffix(".elf"))
        else {
            continue;
        };
        if n == guests.len() {
            println!(
                "control: more than {} guests; {name} is left out",
                guests.len()
            );
            continue;
        }
        match create(n as u64 + 1, name, f.data) {
            Ok(g) => {
                println!(
                    "control: vm {} ({name}): created with {} MiB of RAM",
                    n + 1,
                    GUEST_RAM >> 20
                );
                guests[n] = Some(g);
                n += 1;
            }
            Err(e) => println!("control: vm {} ({name}): not created: {e}", n + 1),
        }
    }
    loop {
        let mut any = false;
        for (i, slot) in guests.iter_mut().enumerate() {
            let Some(g) = slot.as_mut().filter(|g| !g.stopped) else {
                continue;
            };
            any = true;
            loop {
                match g.step() {
                    Step::Continue => {}
                    Step::Yield => break,
                    Step::Stop(why, v) => {
                        hv::echo_log();
                        let (n, name, ticks) = (i + 1, g.name, g.ticks);
                        match why {
                            "exited with status" | "killed after timer ticks without an exit:" => {
                                println!(
                                    "control: vm {n} ({name}): stopped: {why} {v} ({ticks} ticks in all)"
                                )
                            }
                            "halted" | "triple fault" => {
                                println!("control: vm {n} ({name}): stopped: {why} ({ticks} ticks)")
                            }
                            _ => println!("control: vm {n} ({name}): stopped: {why} ({v:#x})"),
                        }
                        let _ = hv::call(MOJITO_CLOSE, g.vm, 0);
                        // The hypervisor's line about the close (its exits).
                        hv::echo_log();
                        g.stopped = true;
                        break;
                    }
                }
            }
        }
        if !any {
            return;
        }
    }
}
