//! Running the bundle's test guests: one VM per `guests/NAME.elf`, made and
//! run by the VMM (`vmm::vm::Vm`) on its Mojito back end (`crate::mojito`,
//! DESIGN.md D5), round robin on their yield port until all have stopped.
//!
//! The VMM does the work: the VM with its RAM and vCPU, Mojito's CPUID look,
//! the test-guest loader and start state (`abi::guest`), the devices
//! (debug console, debug exit, yield and POST ports, a 16550 at COM1; other
//! ports read as all ones), INS/OUTS, and the exit stream. This module
//! names the VMs, prints their lines, stops each when it ends, and closes
//! it.
//!
//! Each stopped VM's exit stream is printed for the differential test
//! against Linux KVM (issue 3, item 7; `tests/src/differential.rs`): its
//! length and FNV-1a on one line, and, where it is short enough, the
//! records themselves in `vmm::record`'s compact form:
//!
//! ```text
//! control: vm 4 (halt): exit stream: 33 records, fnv1a 0x0123456789abcdef
//! control: stream halt: "halting\_with\_interrupts\_disabled\n" hlt
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;

use abi::kvm::KVM_EXIT_INTR;
use vmm::devices::console::Sink;
use vmm::record::{self, ExitRecord};
use vmm::vm::{Error, Outcome, StopReason, Vm, VmConfig};

use crate::hv;
use crate::mojito::{Mojito, MojitoVm};
use crate::operator::{self, LineReader};
use crate::println;

/// RAM of each test guest.
const GUEST_RAM: u64 = 4 << 20;

/// At most this many guests run (16 × 4 MiB of RAM).
const MAX_GUESTS: usize = 16;

/// A guest that lets this many timer ticks pass in a row without a single
/// exit to us is stopped: it would otherwise keep its CPU forever. Exits the
/// hypervisor handles itself (CPUID, MSRs) do not reach us, so a guest busy
/// with those looks the same; under TCG without icount a tick is only
/// ~20 ms of host time, and 4 ticks once killed the demo in its CPUID
/// benchmark on a loaded machine (that benchmark takes about one tick
/// there). Under icount a tick is ~3 s of host time, so more is costly.
const MAX_TICKS_IN_A_ROW: u32 = 10;

/// A stream is printed record by record up to this many bytes of tokens
/// (all of today's test guests fit; serial output costs ~100 µs a character
/// under Bochs).
const STREAM_PRINT_MAX: usize = 8 * 1024;
/// Tokens per `control: stream` line, at most this many bytes (a longer
/// token has a line to itself).
const STREAM_LINE_MAX: usize = 100;

/// Prints VM `name`'s exit stream (see the module's documentation).
fn print_stream(n: usize, name: &str, records: &[ExitRecord], dropped: u64) {
    let hash = record::fnv1a(records);
    let count = records.len();
    if dropped > 0 {
        println!(
            "control: vm {n} ({name}): exit stream: {count} records ({dropped} more not kept), \
             fnv1a {hash:#018x}"
        );
        return;
    }
    println!("control: vm {n} ({name}): exit stream: {count} records, fnv1a {hash:#018x}");
    let tokens = record::compact(records);
    if tokens.iter().map(|t| t.len() + 1).sum::<usize>() > STREAM_PRINT_MAX {
        return;
    }
    let mut line = alloc::string::String::new();
    for t in &tokens {
        if !line.is_empty() && line.len() + 1 + t.len() > STREAM_LINE_MAX {
            println!("control: stream {name}: {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(t);
    }
    if !line.is_empty() {
        println!("control: stream {name}: {line}");
    }
}

/// A guest's finished console lines go to COM1 as `[NAME] line` (D10).
struct Serial;

impl Sink for Serial {
    fn line(&mut self, name: &str, line: &str) {
        println!("[{name}] {line}");
    }
}

/// A VM of the bundle: its number, name, the VM until it stops, and then
/// why it stopped and its exit count.
struct Guest<'a> {
    n: usize,
    name: &'a str,
    vm: Option<Vm<MojitoVm>>,
    stopped: Option<(StopReason, u64)>,
}

/// Exits the VMM has seen (`KVM_EXIT_INTR` included).
fn total(exits: &vmm::vm::ExitCounts) -> u64 {
    exits.by_reason.values().sum()
}

/// Answers one operator command (`crate::operator`).
fn command(line: &str, guests: &[Guest<'_>]) {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (None, _) => {}
        (Some("help"), None) => {
            println!("commands: help, list (alias vms): the VMs with their state and exits");
        }
        (Some("list" | "vms"), None) => {
            println!("  ID NAME          EXITS STATE");
            for g in guests {
                let (state, exits) = match (&g.vm, &g.stopped) {
                    (Some(vm), _) => (alloc::string::String::from("running"), total(vm.exits())),
                    (None, Some((reason, exits))) => (alloc::format!("stopped: {reason}"), *exits),
                    (None, None) => (alloc::string::String::from("gone"), 0),
                };
                println!("{:>4} {:<12} {exits:>6} {state}", g.n, g.name);
            }
        }
        (Some(word @ ("help" | "list" | "vms")), Some(_)) => {
            println!("{word} takes no arguments")
        }
        (Some(word), _) => println!("unknown command '{word}'; try help"),
    }
}

/// Guests whose exits are not recorded: the bench guest's forwarded round
/// trips measure the VMM's dispatch, not the recorder (test
/// instrumentation for the differential test, which leaves the bench out).
const UNRECORDED: [&str; 1] = ["bench"];

/// Makes VM `n` from the test-guest ELF image `elf`.
fn create(n: usize, name: &str, elf: &[u8]) -> Result<Vm<MojitoVm>, Error> {
    let defaults = VmConfig::new(name).mojito_look().ram(GUEST_RAM);
    let config = VmConfig {
        record_limit: if UNRECORDED.contains(&name) {
            0
        } else {
            defaults.record_limit
        },
        vm_id: n as u32,
        stop_on_yield: true,
        stop_on_intr: true,
        max_intrs_in_a_row: MAX_TICKS_IN_A_ROW,
        ..defaults
    };
    let mut vm = Vm::create(&Mojito, &config, Box::new(Serial))?;
    vm.load_test_guest(elf)?;
    Ok(vm)
}

/// Prints why VM `n` stopped.
fn report(n: usize, name: &str, outcome: &Outcome) {
    let ticks = outcome.exits.get(KVM_EXIT_INTR);
    let head = format_args!("control: vm {n} ({name}): stopped:");
    match outcome.reason {
        StopReason::Exited(status) => {
            println!("{head} exited with status {status} ({ticks} ticks in all)")
        }
        StopReason::NoExit { intrs } => println!(
            "{head} killed after timer ticks without an exit: {intrs} ({ticks} ticks in all)"
        ),
        StopReason::Halted => println!("{head} halted ({ticks} ticks)"),
        StopReason::Shutdown => println!("{head} triple fault ({ticks} ticks)"),
        StopReason::RunFailed(e) => println!("{head} KVM_RUN failed ({e:#x})"),
        StopReason::FailEntry { reason, .. } => println!("{head} VM entry failed ({reason:#x})"),
        StopReason::InternalError { suberror, .. } => match outcome.reason.failed_instruction() {
            Some(bytes) => {
                let mut hex = alloc::string::String::new();
                for b in &bytes {
                    let _ = core::fmt::Write::write_fmt(&mut hex, format_args!(" {b:02x}"));
                }
                println!("{head} internal error ({suberror:#x}), cannot emulate:{hex}")
            }
            None => println!("{head} internal error ({suberror:#x})"),
        },
        StopReason::Unhandled { exit_reason } => {
            println!("{head} unexpected exit ({exit_reason:#x})")
        }
        ref other => println!("{head} {other}"),
    }
}

/// Runs every `guests/NAME.elf` of the bundle, round robin on the yield
/// port, until all have stopped, answering the operator's commands
/// whenever a RUN returns `KVM_EXIT_INTR`.
pub fn run_all(bundle: &abi::bundle::Bundle<'_>) {
    let mut guests: Vec<Guest<'_>> = Vec::new();
    for f in bundle.files() {
        let Some(name) = f
            .name
            .strip_prefix("guests/")
            .and_then(|s| s.strip_suffix(".elf"))
        else {
            continue;
        };
        if guests.len() == MAX_GUESTS {
            println!("control: more than {MAX_GUESTS} guests; {name} is left out");
            continue;
        }
        let n = guests.len() + 1;
        match create(n, name, f.data) {
            Ok(vm) => {
                println!(
                    "control: vm {n} ({name}): created with {} MiB of RAM",
                    GUEST_RAM >> 20
                );
                guests.push(Guest {
                    n,
                    name,
                    vm: Some(vm),
                    stopped: None,
                });
            }
            Err(e) => {
                println!("control: vm {n} ({name}): not created: {e}");
                // The hypervisor's line about the VM it closed.
                hv::echo_log();
            }
        }
    }
    let mut input = LineReader::default();
    loop {
        let mut any = false;
        for i in 0..guests.len() {
            if guests[i].vm.is_none() {
                continue;
            }
            any = true;
            // A KVM_EXIT_INTR (the timer, or COM1 input) gives the operator
            // a turn, then the same guest goes on: switching guests only on
            // yields keeps a guest's measured loops free of other guests.
            let outcome = loop {
                while let Some(line) = operator::poll(&mut input) {
                    command(&line, &guests);
                }
                let Some(vm) = guests[i].vm.as_mut() else {
                    break None;
                };
                let outcome = vm.run();
                if outcome.reason != StopReason::Interrupted {
                    break Some(outcome);
                }
            };
            let g = &mut guests[i];
            let (Some(outcome), Some(vm)) = (outcome, g.vm.as_mut()) else {
                continue;
            };
            if outcome.reason.is_pause() {
                continue;
            }
            hv::echo_log();
            report(g.n, g.name, &outcome);
            let dropped = vm.records_dropped();
            let records = vm.take_records();
            // Dropping the VM closes it (MOJITO_CLOSE): the hypervisor frees
            // what it held and logs its exits; its RAM returns to our heap.
            g.vm = None;
            g.stopped = Some((outcome.reason.clone(), total(&outcome.exits)));
            hv::echo_log();
            print_stream(g.n, g.name, &records, dropped);
        }
        if !any {
            return;
        }
    }
}
