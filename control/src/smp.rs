//! The control domain's other vCPUs (the SMP issue, D2). At boot it starts
//! one on each further CPU the hypervisor offers (`MOJITO_START_CPU`, up to
//! `mojito_boot_info::nr_vcpus`); each is a helper that runs the VMs the
//! shell lends it, so guests run on every CPU at once: a guest vCPU runs on
//! the CPU of the control-domain vCPU that calls `KVM_RUN` on it.
//!
//! The shell (on vCPU 0) keeps everything else — the console, the commands,
//! the VM table. VM `id` runs on CPU `id` modulo the vCPUs (`home`: where a
//! VM runs never depends on timing); one whose home is not cpu0 the shell
//! lends to that CPU's helper whenever it is idle (`lend`), which
//! runs it with the VMM until it yields or stops, or until a
//! `KVM_EXIT_INTR` after the shell asked for it back (`recall`: before every
//! command); the shell then takes it back (`collect`) and handles its
//! outcome as if it had run it itself. A guest's console lines are printed
//! from the helper's CPU (the console takes a lock).

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vmm::vm::{Outcome, StopReason, Vm};

use crate::hv;
use crate::mojito::MojitoVm;
use crate::println;

/// Helpers at most (the hypervisor's CPU limit, less the boot CPU).
pub const MAX_HELPERS: usize = 15;
/// Each helper's stack.
const STACK_SIZE: usize = 64 * 1024;

/// A VM on loan: its id in the shell's table, the VMM's VM, and what its
/// run came to.
pub struct Job {
    pub id: u32,
    pub vm: Vm<MojitoVm>,
    pub outcome: Option<Outcome>,
    /// TSC cycles it spent in RUN on the helper.
    pub ran_tsc: u64,
}

struct Helper {
    /// It runs and takes work (false again once it gave no VM back).
    started: AtomicBool,
    /// The id of the VM lent to it.
    lent: AtomicU32,
    /// Lent and not yet collected.
    busy: AtomicBool,
    /// The shell wants the VM back at its next `KVM_EXIT_INTR`.
    recall: AtomicBool,
    todo: spin::Mutex<Option<Job>>,
    done: spin::Mutex<Option<Job>>,
}

// SAFETY: a `Job` is used by one vCPU at a time — the shell's until it
// lends it, the helper's until it puts it in `done`, the shell's again after
// `collect` — and its VM holds only plain data and handle numbers (no
// references to one vCPU's state).
unsafe impl Send for Job {}

static HELPERS: [Helper; MAX_HELPERS] = [const {
    Helper {
        started: AtomicBool::new(false),
        lent: AtomicU32::new(0),
        busy: AtomicBool::new(false),
        recall: AtomicBool::new(false),
        todo: spin::Mutex::new(None),
        done: spin::Mutex::new(None),
    }
}; MAX_HELPERS];

/// Helpers started.
static STARTED: AtomicU32 = AtomicU32::new(0);

/// How many helpers run.
pub fn helpers() -> u32 {
    STARTED.load(Ordering::Relaxed)
}

/// Starts a helper on each of CPUs 1..`nr_vcpus` (the heap must be up:
/// their stacks come from it), and checks that a second start of one is
/// refused. Prints one line.
pub fn start(nr_vcpus: u32) {
    use abi::kvm::mojito::{MOJITO_START_CPU, mojito_start_cpu};
    let wanted = (nr_vcpus.max(1) - 1).min(MAX_HELPERS as u32);
    for cpu in 1..=wanted {
        let stack = match alloc::alloc::Layout::from_size_align(STACK_SIZE, 16) {
            // SAFETY: the layout has a non-zero size.
            Ok(l) => unsafe { alloc::alloc::alloc(l) },
            Err(_) => core::ptr::null_mut(),
        };
        if stack.is_null() {
            println!("control: FAIL no memory for cpu{cpu}'s stack");
            break;
        }
        let mut a = mojito_start_cpu {
            cpu,
            rip: helper_entry as *const () as u64,
            // The ABI's alignment at a function's entry (a return address
            // pushed on a 16-byte-aligned stack).
            rsp: stack as u64 + STACK_SIZE as u64 - 8,
            rdi: u64::from(cpu),
            ..Default::default()
        };
        match hv::system(MOJITO_START_CPU, &mut a as *mut mojito_start_cpu as u64) {
            Ok(_) => {}
            Err(e) => {
                println!("control: FAIL MOJITO_START_CPU for cpu{cpu}: -{e}");
                break;
            }
        }
    }
    // Each helper says it runs before it takes work.
    for _ in 0..1_000_000 {
        if helpers() >= wanted {
            break;
        }
        core::hint::spin_loop();
    }
    let again = (wanted > 0).then(|| {
        let mut a = mojito_start_cpu {
            cpu: 1,
            rip: helper_entry as *const () as u64,
            rsp: 0x1000,
            ..Default::default()
        };
        hv::system(MOJITO_START_CPU, &mut a as *mut mojito_start_cpu as u64)
    });
    if let Some(r) = again
        && r != Err(abi::kvm::errno::EEXIST)
    {
        println!("control: FAIL a second MOJITO_START_CPU for cpu1 answered {r:?}, not -EEXIST");
    }
    let n = helpers() + 1;
    match n {
        1 => println!("control: 1 vCPU: the shell on cpu0 runs every VM"),
        2 => println!(
            "control: 2 vCPUs: the shell on cpu0, a helper on cpu1; VM n runs on CPU n mod 2"
        ),
        _ => println!(
            "control: {n} vCPUs: the shell on cpu0, helpers on cpu1..cpu{}; VM n runs on CPU n mod {n}",
            n - 1
        ),
    }
}

/// A started vCPU's first Rust code: `cpu` is its number.
extern "sysv64" fn helper_entry(cpu: u64) -> ! {
    let Some(h) = HELPERS.get((cpu as usize).wrapping_sub(1)) else {
        crate::bare::halt()
    };
    h.started.store(true, Ordering::SeqCst);
    STARTED.fetch_add(1, Ordering::SeqCst);
    loop {
        let job = h.todo.lock().take();
        let Some(mut job) = job else {
            // Nothing lent: sleep until this CPU's next tick.
            // SAFETY: HLT only parks the vCPU; the hypervisor wakes it on
            // its timer (D2).
            unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
            continue;
        };
        loop {
            let start = rdtsc();
            let outcome = job.vm.run();
            job.ran_tsc += rdtsc().wrapping_sub(start);
            if outcome.reason == StopReason::Interrupted && !h.recall.load(Ordering::SeqCst) {
                continue;
            }
            job.outcome = Some(outcome);
            break;
        }
        *h.done.lock() = Some(job);
    }
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The CPU VM `id` runs on: `id` modulo the control domain's vCPUs, so
/// where a VM runs does not depend on timing (cpu0: the shell's).
pub fn home(id: u32) -> usize {
    (id % (helpers() + 1)) as usize
}

/// Lends `job` to the helper on CPU `cpu` (1 up); gives it back if that
/// one is busy or not there.
pub fn lend(cpu: usize, job: Job) -> Option<Job> {
    let Some(h) = HELPERS.get(cpu.wrapping_sub(1)) else {
        return Some(job);
    };
    if h.started.load(Ordering::SeqCst)
        && h.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        h.recall.store(false, Ordering::SeqCst);
        h.lent.store(job.id, Ordering::SeqCst);
        *h.todo.lock() = Some(job);
        return None;
    }
    Some(job)
}

/// Takes back every job whose run has ended.
pub fn collect(mut each: impl FnMut(Job)) {
    for h in HELPERS.iter().filter(|h| h.busy.load(Ordering::SeqCst)) {
        let job = h.done.lock().take();
        if let Some(job) = job {
            h.busy.store(false, Ordering::SeqCst);
            each(job);
        }
    }
}

/// How long `recall` waits for a helper, in TSC cycles at most (its VM's
/// next `KVM_EXIT_INTR` comes within a tick: 10 ms).
const RECALL_MS: u64 = 2_000;

/// Asks every helper for its VM back, kicking its CPU, and waits until
/// each has given it (at its VM's next `KVM_EXIT_INTR`: at once, or at
/// the next tick where the IPI could not be sent), then takes them
/// (`collect`). A helper that gives nothing back within `RECALL_MS` (its
/// vCPU stopped: the hypervisor's log says why) gets no more work; the id
/// of the VM it had goes to `lost`.
pub fn recall(mut each: impl FnMut(Job), mut lost: impl FnMut(u32)) {
    for (i, h) in HELPERS.iter().enumerate() {
        h.recall.store(true, Ordering::SeqCst);
        if h.busy.load(Ordering::SeqCst) {
            // Its guest exits and its RUN ends now, not at the next tick
            // (`MOJITO_KICK_CPU`: an IPI to that CPU).
            let _ = hv::system(abi::kvm::mojito::MOJITO_KICK_CPU, i as u64 + 1);
        }
    }
    let khz = match hv::info().map_or(0, |i| i.tsc_khz) {
        0 => 4_000_000,
        k => k,
    };
    let end = rdtsc().saturating_add(khz * RECALL_MS);
    let waiting = |h: &Helper| h.busy.load(Ordering::SeqCst) && h.done.lock().is_none();
    while HELPERS.iter().any(waiting) && rdtsc() < end {
        core::hint::spin_loop();
    }
    for (i, h) in HELPERS.iter().enumerate().filter(|(_, h)| waiting(h)) {
        h.started.store(false, Ordering::SeqCst);
        let id = h.lent.load(Ordering::SeqCst);
        println!(
            "control: FAIL the helper on cpu{} did not give VM {id} back within {RECALL_MS} ms; \
             it gets no more VMs",
            i + 1
        );
        match h.todo.lock().take() {
            // It never took it: the VM is whole.
            Some(job) => {
                h.busy.store(false, Ordering::SeqCst);
                each(job);
            }
            None => lost(id),
        }
    }
    collect(&mut each);
}
