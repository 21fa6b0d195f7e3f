//! The control domain's hypercalls (`control::hypercall::dispatch`: decode,
//! then invoke) on a fake back end, driven by a sequence of calls.
//!
//! Input: records of a 6-byte header and a payload.
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | the request: an index into `REQUESTS` (the real request codes), or one of two junk codes |
//! | 1 | the handle: bits 2:0 pick how (0–5 one of the kind the request takes, 6 any handle made so far, 7 a junk value), bits 7:3 which |
//! | 2–3 | the argument (RSI), little-endian: bits 15:14 pick how (0 a small integer, or a GPA in steps of 8 inside the control domain's RAM; 1 that far below the end of its RAM; 2 one of `SPECIAL`; 3 a page number), bits 13:0 the value |
//! | 4–5 | the payload's length, little-endian (cut to what the input has) |
//! | … | the payload, written into the control domain's RAM at the argument before the call (what fits) |
//!
//! So most calls name a live handle of the right kind with a request it
//! takes, and their argument structure lies in the control domain's RAM:
//! they get past the handle and request checks to the argument's own
//! (`Tally` counts how many; `cargo fuzz` prints it every million inputs).
//!
//! After each call: no panic; an error is one of the errnos the ABI
//! defines (`abi::kvm::errno`) and RAX carries it as `-errno`; a value is
//! not in the error range; a bad handle is `-EBADF`; an unknown request is
//! KVM's `-ENOTTY` (VM handle) or `-EINVAL` (system, vCPU); a handle made
//! names an object of its kind. After the input every live handle is
//! closed, and the frame pool and the back end must be back where they
//! started: nothing leaked, nothing freed twice.
//!
//! Left out: `KVM_RUN`, which switches extended state (XSAVE, debug
//! registers) and enters the guest, none of which a host process can do.
//! `MOJITO_REBOOT` answers -EIO on the host and `MOJITO_CONSOLE_WRITE`
//! -ENXIO (no screen) once decoded; both stay in.

use super::backend::FakeBackend;
use crate::control::hypercall::{self, Ctx, Outcome};
use crate::control::objects::{Handle, Objects};
use crate::control::{ControlState, Locked};
use crate::guest::GuestRam;
use crate::mm::frame::WindowMemory;
use crate::mm::{GuestPhys, HostPhys, PAGE_SIZE};
use crate::vcpu::cpuid::{CpuidTable, Options};
use crate::vcpu::lazy::{Extended, HostXstate};
use crate::virt::Frames;
use crate::vm::{VmEnv, VmKind};
use abi::kvm::errno::*;
use abi::kvm::{self as req, mojito};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The control domain's RAM: small, so that zeroing it before each input
/// (what makes an input's outcome its own) costs little.
pub const CD_RAM: u64 = 128 * 1024;
/// The frame pool VM metadata comes from (small enough that -ENOMEM
/// happens).
const POOL: u64 = 4 * 1024 * 1024;

/// Handle kinds, as a mask of where a request is taken.
const SYS: u8 = 1;
const VM: u8 = 2;
const VCPU: u8 = 4;

/// How the argument is meant: an integer or the GPA of a structure.
#[derive(Clone, Copy)]
enum Arg {
    Int,
    Gpa,
}

/// A request code, the handle kinds it is taken on (0: none, a request
/// Mojito does not implement), and its argument.
struct Req(u32, u8, Arg);

/// Every request code of the ABI but `KVM_RUN`, and a few that KVM has
/// and Mojito does not (the answer must be KVM's for an unknown one).
const REQUESTS: &[Req] = &[
    Req(req::KVM_GET_API_VERSION, SYS, Arg::Int),
    Req(req::KVM_CHECK_EXTENSION, SYS | VM, Arg::Int),
    Req(req::KVM_GET_VCPU_MMAP_SIZE, SYS, Arg::Int),
    Req(req::KVM_CREATE_VM, SYS, Arg::Int),
    Req(req::KVM_GET_SUPPORTED_CPUID, SYS, Arg::Gpa),
    Req(req::KVM_GET_MSR_INDEX_LIST, SYS, Arg::Gpa),
    Req(mojito::MOJITO_READ_LOG, SYS, Arg::Gpa),
    Req(mojito::MOJITO_POWER_OFF, SYS, Arg::Int),
    Req(mojito::MOJITO_REBOOT, SYS, Arg::Int),
    Req(mojito::MOJITO_CONSOLE_WRITE, SYS, Arg::Gpa),
    Req(mojito::MOJITO_INFO, SYS, Arg::Gpa),
    Req(mojito::MOJITO_METADATA_POOL, SYS, Arg::Gpa),
    Req(mojito::MOJITO_LOG_LAYOUT, SYS, Arg::Int),
    // No other CPU runs on the host: -ENXIO but for kicking cpu0.
    Req(mojito::MOJITO_START_CPU, SYS, Arg::Gpa),
    Req(mojito::MOJITO_KICK_CPU, SYS, Arg::Int),
    Req(mojito::MOJITO_CLOSE, VM | VCPU, Arg::Int),
    Req(req::KVM_SET_USER_MEMORY_REGION, VM, Arg::Gpa),
    Req(req::KVM_CREATE_VCPU, VM, Arg::Int),
    Req(req::KVM_GET_DIRTY_LOG, VM, Arg::Gpa),
    Req(req::KVM_ENABLE_CAP, VM | VCPU, Arg::Gpa),
    Req(req::KVM_XEN_HVM_CONFIG, VM, Arg::Gpa),
    Req(req::KVM_X86_SET_MSR_FILTER, VM, Arg::Gpa),
    Req(mojito::MOJITO_SET_RUN_PAGES, VCPU, Arg::Gpa),
    Req(req::KVM_SET_GUEST_DEBUG, VCPU, Arg::Gpa),
    Req(req::KVM_INTERRUPT, VCPU, Arg::Gpa),
    Req(req::KVM_GET_REGS, VCPU, Arg::Gpa),
    Req(req::KVM_SET_REGS, VCPU, Arg::Gpa),
    Req(req::KVM_GET_SREGS, VCPU, Arg::Gpa),
    Req(req::KVM_SET_SREGS, VCPU, Arg::Gpa),
    Req(req::KVM_SET_CPUID2, VCPU, Arg::Gpa),
    Req(req::KVM_GET_MSRS, VCPU, Arg::Gpa),
    Req(req::KVM_SET_MSRS, VCPU, Arg::Gpa),
    Req(req::KVM_GET_FPU, VCPU, Arg::Gpa),
    Req(req::KVM_SET_FPU, VCPU, Arg::Gpa),
    Req(req::KVM_GET_XSAVE, VCPU, Arg::Gpa),
    Req(req::KVM_SET_XSAVE, VCPU, Arg::Gpa),
    Req(req::KVM_GET_XCRS, VCPU, Arg::Gpa),
    Req(req::KVM_SET_XCRS, VCPU, Arg::Gpa),
    Req(req::KVM_SIGNAL_MSI, VM, Arg::Gpa),
    Req(req::KVM_SET_GSI_ROUTING, VM, Arg::Gpa),
    Req(req::KVM_GET_LAPIC, VCPU, Arg::Gpa),
    Req(req::KVM_SET_LAPIC, VCPU, Arg::Gpa),
    Req(req::KVM_GET_MP_STATE, VCPU, Arg::Gpa),
    Req(req::KVM_SET_MP_STATE, VCPU, Arg::Gpa),
    Req(req::KVM_GET_VCPU_EVENTS, VCPU, Arg::Gpa),
    Req(req::KVM_SET_VCPU_EVENTS, VCPU, Arg::Gpa),
    // KVM's, not Mojito's.
    Req(req::KVM_GET_EMULATED_CPUID, 0, Arg::Gpa),
    Req(req::KVM_SET_TSS_ADDR, 0, Arg::Int),
    Req(req::KVM_CREATE_IRQCHIP, 0, Arg::Int),
    Req(req::KVM_SET_IDENTITY_MAP_ADDR, 0, Arg::Gpa),
];

/// Junk handles: the system's, never-made ones, ones too large for the
/// table or for 32 bits.
const JUNK_HANDLES: [u64; 8] = [0, 1, 2, 255, 256, 257, 1 << 32 | 1, u64::MAX];

/// Arguments at the edges: address 0, the end of RAM, past 4 GiB, the top.
const SPECIAL: [u64; 8] = [
    0,
    PAGE_SIZE,
    CD_RAM,
    CD_RAM - 1,
    1 << 32,
    1 << 63,
    u64::MAX - 7,
    u64::MAX,
];

/// The errnos of `abi::kvm::errno`, and their names.
const ERRNOS: [i32; 15] = [
    EPERM, ENOENT, EINTR, EIO, ENXIO, E2BIG, EBADF, ENOMEM, EFAULT, EBUSY, EEXIST, EINVAL, ENOTTY,
    ENOSPC, EOPNOTSUPP,
];
const ERRNO_NAMES: &str = concat!(
    "EPERM ENOENT EINTR EIO ENXIO E2BIG EBADF ENOMEM ",
    "EFAULT EBUSY EEXIST EINVAL ENOTTY ENOSPC EOPNOTSUPP"
);

/// Most handles remembered from one input.
const MAX_MADE: usize = 32;

/// What stays between inputs: the frame pool, the control domain (whose
/// RAM the KVM memory slots point into: `control::memory` is set once).
struct World {
    frames: spin::Mutex<Frames>,
    cd: VmEnv,
    backend: FakeBackend,
    xstate: HostXstate,
    cpuid: CpuidTable,
}

static WORLD: spin::Once<spin::Mutex<World>> = spin::Once::new();

/// A fixed CPU (not the host's, so that inputs replay the same anywhere):
/// an Intel family-6 part with XSAVE, AVX and long mode.
fn host_cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    match (leaf, sub) {
        (0, _) => [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
        (1, _) => [0x906ea, 0x0010_0800, 0x1ffa_fbff, 0xbfeb_fbff],
        (7, 0) => [0, 0x029c_6fbf, 0, 0],
        (0xd, 0) => [0x7, 832, 832, 0],
        (0xd, 1) => [0xf, 0, 0, 0],
        (0xd, 2) => [256, 576, 0, 0],
        (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
        (0x8000_0001, _) => [0, 0, 0x121, 0x2c10_0800],
        (0x8000_0008, _) => [0x3027, 0, 0, 0],
        _ => [0; 4],
    }
}

fn build() -> World {
    // Host tests and fuzzing run with the physical window at 0: a
    // "host-physical" address is a pointer into this process.
    assert_eq!(crate::mm::phys::to_virt(HostPhys::new(0)).raw(), 0);
    let layout = core::alloc::Layout::from_size_align(POOL as usize, PAGE_SIZE as usize)
        .expect("a page-aligned layout");
    // SAFETY: the layout has a non-zero size. The memory is leaked: the
    // pool owns it for the life of the process.
    let base = unsafe { alloc::alloc::alloc_zeroed(layout) } as u64;
    assert!(base != 0, "no memory for the frame pool");
    let mut frames = Frames::new(WindowMemory);
    assert!(frames.add_region(base, base + POOL));
    let ram = GuestRam::new(&mut frames, CD_RAM).expect("the control domain's RAM");
    // The pool is fresh, so its first frames come in order: one run, the
    // single "2 MiB chunk" `control::memory` resolves slots through.
    let first = ram.frames()[0];
    assert!(
        ram.frames()
            .iter()
            .enumerate()
            .all(|(i, f)| f.raw() == first.raw() + i as u64 * PAGE_SIZE)
    );
    assert!(crate::control::memory::init(&[first], CD_RAM));
    let xstate = HostXstate {
        xsave: true,
        xcr0_max: 0x7,
        area_size: 832,
        tsc_aux: true,
        mxcsr_mask: 0xffff,
    };
    let cpuid = CpuidTable::build(
        host_cpuid,
        Options {
            xcr0_max: xstate.xcr0_max,
            rdtscp: true,
        },
    );
    let lazy = Extended::new(&mut frames, &xstate).expect("the control domain's save area");
    let cpuid_copy = cpuid.try_clone().expect("a CPUID table");
    let cd = VmEnv::new(0, "control".into(), VmKind::Control, ram, cpuid_copy, lazy);
    World {
        frames: spin::Mutex::new(frames),
        cd,
        backend: FakeBackend::default(),
        xstate,
        cpuid,
    }
}

/// Counts over every input so far.
pub struct Tally {
    pub inputs: u64,
    pub calls: u64,
    /// Calls of a request Mojito implements on a live handle of a kind it
    /// is taken on: past the handle and request checks.
    pub matched: u64,
    /// Matched calls that returned a value.
    pub values: u64,
    /// Matched calls' errors, by errno (`ERRNOS` order).
    pub errors: [u64; ERRNOS.len()],
}

static INPUTS: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);
static MATCHED: AtomicU64 = AtomicU64::new(0);
static VALUES: AtomicU64 = AtomicU64::new(0);
static ERRORS: [AtomicU64; ERRNOS.len()] = [const { AtomicU64::new(0) }; ERRNOS.len()];

/// The counts so far.
pub fn tally() -> Tally {
    Tally {
        inputs: INPUTS.load(Relaxed),
        calls: CALLS.load(Relaxed),
        matched: MATCHED.load(Relaxed),
        values: VALUES.load(Relaxed),
        errors: core::array::from_fn(|i| ERRORS[i].load(Relaxed)),
    }
}

impl core::fmt::Display for Tally {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let pct = |n: u64| n as f64 * 100.0 / self.calls.max(1) as f64;
        write!(
            f,
            "hypercall: {} inputs, {} calls; {:.1}% past the handle and request checks \
             ({:.1}% returned a value; their errors:",
            self.inputs,
            self.calls,
            pct(self.matched),
            pct(self.values),
        )?;
        for (e, n) in ERRNO_NAMES.split(' ').zip(self.errors) {
            if n != 0 {
                write!(f, " {e} {:.1}%", pct(n))?;
            }
        }
        f.write_str(")")
    }
}

/// The kind of a live handle, as a mask bit (0: not live).
/// An empty table of objects, its log cursor at the log's end.
fn fresh() -> spin::Mutex<Locked<FakeBackend>> {
    spin::Mutex::new(Locked {
        objects: Objects::default(),
        state: ControlState {
            log_cursor: crate::log::position(),
            ..Default::default()
        },
    })
}

fn kind_of(objects: &Objects<FakeBackend>, handle: u64) -> u8 {
    match (handle, objects.lookup(handle)) {
        (mojito::MOJITO_SYSTEM_HANDLE, _) => SYS,
        (_, Some(Handle::Vm(_))) => VM,
        (_, Some(Handle::Vcpu(..))) => VCPU,
        (_, None) => 0,
    }
}

/// The handle for selector `sel` on a request taken on `mask`.
fn pick_handle(sel: u8, mask: u8, made: &[(u64, u8)]) -> u64 {
    let n = usize::from(sel >> 3);
    let nth = |want: u8| {
        let of: Vec<u64> = made
            .iter()
            .filter(|(_, k)| k & want != 0)
            .map(|(h, _)| *h)
            .collect();
        (!of.is_empty()).then(|| of[n % of.len()])
    };
    match sel & 7 {
        0..=5 if mask & SYS != 0 && (mask == SYS || n & 1 == 0) => 0,
        0..=5 if mask != 0 => nth(mask & !SYS).unwrap_or(JUNK_HANDLES[n % 8]),
        0..=6 => nth(VM | VCPU).unwrap_or(0),
        _ => JUNK_HANDLES[n % 8],
    }
}

/// The argument for `a` (see the module's table).
fn pick_arg(a: u16, kind: Arg) -> u64 {
    let low = u64::from(a & 0x3fff);
    match (a >> 14, kind) {
        (0, Arg::Int) => low,
        (0, Arg::Gpa) => low * 8,
        (1, _) => CD_RAM - low,
        (2, _) => SPECIAL[(low % 8) as usize],
        _ => low << 12,
    }
}

/// One input's calls: all, matched, and those that returned a value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub calls: u64,
    pub matched: u64,
    pub values: u64,
}

/// Runs one input; panics where an invariant fails.
pub fn check(data: &[u8]) -> Counts {
    let world = WORLD.call_once(|| spin::Mutex::new(build()));
    let mut guard = world.lock();
    let w = &mut *guard;
    // Each input starts from the same state.
    assert!(w.cd.ram.zero(GuestPhys::new(0), CD_RAM as usize));
    w.frames.lock().set_limit(u64::MAX);
    let free = w.frames.lock().stats().free;
    INPUTS.fetch_add(1, Relaxed);

    let objects = fresh();
    let mut made: Vec<(u64, u8)> = Vec::new();
    let mut counts = Counts::default();
    let mut rest = data;
    while let Some((head, tail)) = rest.split_first_chunk::<6>() {
        let len = usize::from(u16::from_le_bytes([head[4], head[5]])).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let a = u16::from_le_bytes([head[2], head[3]]);
        let i = usize::from(head[0]) % (REQUESTS.len() + 2);
        // The two junk codes: a real one with bits 63:32 set, and any 32
        // bits (which may happen to be a real one).
        let (rax, mask, arg_kind, known) = match REQUESTS.get(i) {
            Some(&Req(code, mask, arg)) => (u64::from(code), mask, arg, true),
            None if i == REQUESTS.len() => {
                let code = REQUESTS[usize::from(a) % REQUESTS.len()].0;
                (
                    (u64::from(a | 1) << 32) | u64::from(code),
                    0,
                    Arg::Int,
                    true,
                )
            }
            None => (
                (u64::from(a) * 0x9e37_79b9) & 0xffff_ffff,
                0,
                Arg::Int,
                false,
            ),
        };
        if rax == u64::from(req::KVM_RUN) {
            continue;
        }
        let handle = pick_handle(head[1], mask, &made);
        let arg = pick_arg(a, arg_kind);
        if arg < CD_RAM {
            let n = payload.len().min((CD_RAM - arg) as usize);
            assert!(w.cd.ram.write(GuestPhys::new(arg), &payload[..n]));
        }
        let kind = kind_of(&objects.lock().objects, handle);
        let matched = kind & mask != 0;
        let mut ctx = Ctx {
            backend: &mut w.backend,
            shared: &objects,
            frames: &w.frames,
            xstate: &w.xstate,
            cpuid: &w.cpuid,
        };
        let out = hypercall::dispatch(&mut ctx, &mut w.cd, rax, handle, arg);
        counts.calls += 1;
        counts.matched += u64::from(matched);
        let what = || alloc::format!("rax {rax:#x} handle {handle:#x} arg {arg:#x}: {out:?}");
        match out {
            Outcome::Value(v) => {
                assert!(mojito::decode_return(v) == Ok(v), "{}", what());
                assert!(
                    matched || !known,
                    "a value for a call it does not take: {}",
                    what()
                );
                counts.values += u64::from(matched);
                let new = match rax as u32 {
                    req::KVM_CREATE_VM => VM,
                    req::KVM_CREATE_VCPU => VCPU,
                    _ => 0,
                };
                if new != 0 {
                    assert_eq!(kind_of(&objects.lock().objects, v), new, "{}", what());
                    if made.len() < MAX_MADE {
                        made.push((v, new));
                    }
                }
            }
            Outcome::Error(e) => {
                let at = ERRNOS.iter().position(|&k| k == e);
                assert!(at.is_some(), "not an errno of the ABI: {}", what());
                assert_eq!(mojito::decode_return(out.rax()), Err(e), "{}", what());
                if kind == 0 {
                    assert_eq!(e, EBADF, "a bad handle: {}", what());
                } else if known && !matched {
                    let want = if kind == VM { ENOTTY } else { EINVAL };
                    assert_eq!(e, want, "an unknown request: {}", what());
                }
                if let (true, Some(at)) = (matched, at) {
                    ERRORS[at].fetch_add(1, Relaxed);
                }
            }
            Outcome::PowerOff => {
                assert!(
                    rax == u64::from(mojito::MOJITO_POWER_OFF) && handle == 0 && arg == 0,
                    "{}",
                    what()
                );
            }
        }
    }

    // Close everything; the pool and the back end are back where they were.
    for handle in 1..=256u64 {
        if objects.lock().objects.lookup(handle).is_none() {
            continue;
        }
        let mut ctx = Ctx {
            backend: &mut w.backend,
            shared: &objects,
            frames: &w.frames,
            xstate: &w.xstate,
            cpuid: &w.cpuid,
        };
        let out = hypercall::dispatch(
            &mut ctx,
            &mut w.cd,
            u64::from(mojito::MOJITO_CLOSE),
            handle,
            0,
        );
        assert_eq!(out, Outcome::Value(0), "closing handle {handle}");
    }
    assert_eq!(
        w.backend.live_vcpus, 0,
        "vCPUs left after closing every handle"
    );
    assert_eq!(
        w.frames.lock().stats().free,
        free,
        "frames lost or freed twice after closing every handle"
    );
    CALLS.fetch_add(counts.calls, Relaxed);
    MATCHED.fetch_add(counts.matched, Relaxed);
    VALUES.fetch_add(counts.values, Relaxed);
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record: request index, handle selector, argument, payload.
    fn rec(out: &mut Vec<u8>, code: u32, sel: u8, arg: u16, payload: &[u8]) {
        let i = REQUESTS.iter().position(|r| r.0 == code).unwrap();
        out.push(i as u8);
        out.push(sel);
        out.extend_from_slice(&arg.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        out.extend_from_slice(payload);
    }

    fn bytes<T: hypercall::Pod>(v: &T) -> Vec<u8> {
        // SAFETY: `T: Pod` is plain bytes.
        unsafe {
            core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn a_vm_made_used_and_closed_gives_every_frame_back() {
        let mut d = Vec::new();
        rec(&mut d, req::KVM_GET_API_VERSION, 0, 0, &[]);
        rec(&mut d, req::KVM_CREATE_VM, 0, 0, &[]);
        let region = req::kvm_userspace_memory_region {
            slot: 0,
            flags: req::KVM_MEM_LOG_DIRTY_PAGES,
            guest_phys_addr: 0x10_0000,
            memory_size: 0x8000,
            userspace_addr: 0x8000,
        };
        // At GPA 0x100 (0x20 * 8), on the first VM.
        rec(
            &mut d,
            req::KVM_SET_USER_MEMORY_REGION,
            0,
            0x20,
            &bytes(&region),
        );
        rec(&mut d, req::KVM_CREATE_VCPU, 0, 0, &[]);
        rec(&mut d, req::KVM_GET_REGS, 0, 0x40, &[]);
        rec(&mut d, req::KVM_GET_SREGS, 0, 0x40, &[]);
        rec(&mut d, req::KVM_SET_SREGS, 0, 0x40, &[]);
        rec(&mut d, req::KVM_GET_XSAVE, 0, 0x200, &[]);
        rec(&mut d, req::KVM_SET_XSAVE, 0, 0x200, &[]);
        let log = req::kvm_dirty_log {
            slot: 0,
            padding1: 0,
            dirty_bitmap: 0x1000,
        };
        rec(&mut d, req::KVM_GET_DIRTY_LOG, 0, 0x20, &bytes(&log));
        // A second VM, left open: closing at the end frees it.
        rec(&mut d, req::KVM_CREATE_VM, 0, 0, &[]);
        // Every call made it, and returned a value.
        let n = 11;
        assert_eq!(
            check(&d),
            Counts {
                calls: n,
                matched: n,
                values: n
            }
        );
    }

    #[test]
    fn junk_and_truncated_inputs_pass() {
        check(&[]);
        check(&[0xff; 5]);
        check(&[0xff; 64]);
        check(&[0x2a, 0x07, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        // A pseudo-random walk, for a few thousand calls.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let d: Vec<u8> = (0..256)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            check(&d);
        }
    }

    /// One request on the fake back end, as the control domain makes it.
    fn call(
        w: &mut World,
        objects: &spin::Mutex<Locked<FakeBackend>>,
        rax: u32,
        h: u64,
        arg: u64,
    ) -> Outcome {
        let mut ctx = Ctx {
            backend: &mut w.backend,
            shared: objects,
            frames: &w.frames,
            xstate: &w.xstate,
            cpuid: &w.cpuid,
        };
        hypercall::dispatch(&mut ctx, &mut w.cd, u64::from(rax), h, arg)
    }

    fn value(o: Outcome) -> u64 {
        match o {
            Outcome::Value(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_split_irqchip_on_two_vcpus() {
        let world = WORLD.call_once(|| spin::Mutex::new(build()));
        let mut guard = world.lock();
        let w = &mut *guard;
        let free = w.frames.lock().stats().free;
        let objects = fresh();
        let o = &objects;
        let put =
            |w: &mut World, gpa: u64, b: &[u8]| assert!(w.cd.ram.write(GuestPhys::new(gpa), b));
        let vm = value(call(w, o, req::KVM_CREATE_VM, 0, 0));
        let cap = req::kvm_enable_cap {
            cap: req::KVM_CAP_SPLIT_IRQCHIP,
            args: [24, 0, 0, 0],
            ..Default::default()
        };
        put(w, 0x100, &bytes(&cap));
        assert_eq!(value(call(w, o, req::KVM_ENABLE_CAP, vm, 0x100)), 0);
        let bsp = value(call(w, o, req::KVM_CREATE_VCPU, vm, 0));
        let ap = value(call(w, o, req::KVM_CREATE_VCPU, vm, 1));
        let mp_state = |w: &mut World, o: &spin::Mutex<Locked<FakeBackend>>, h| {
            value(call(w, o, req::KVM_GET_MP_STATE, h, 0x200));
            let mut b = [0u8; 4];
            assert!(w.cd.ram.read(GuestPhys::new(0x200), &mut b));
            u32::from_le_bytes(b)
        };
        assert_eq!(mp_state(w, o, bsp), req::KVM_MP_STATE_RUNNABLE);
        assert_eq!(mp_state(w, o, ap), req::KVM_MP_STATE_UNINITIALIZED);
        // An MSI to APIC 1, software-disabled after reset: not taken (0).
        let msi = |dest: u32| req::kvm_msi {
            address_lo: 0xfee0_0000 | (dest << 12),
            data: 0x40,
            ..Default::default()
        };
        put(w, 0x300, &bytes(&msi(1)));
        assert_eq!(value(call(w, o, req::KVM_SIGNAL_MSI, vm, 0x300)), 0);
        // Enabled through KVM_SET_LAPIC (SVR bit 8), it takes it: IRR.
        value(call(w, o, req::KVM_GET_LAPIC, ap, 0x1000));
        put(w, 0x1000 + 0xf0, &0x1ffu32.to_le_bytes());
        assert_eq!(value(call(w, o, req::KVM_SET_LAPIC, ap, 0x1000)), 0);
        assert_eq!(value(call(w, o, req::KVM_SIGNAL_MSI, vm, 0x300)), 1);
        value(call(w, o, req::KVM_GET_LAPIC, ap, 0x1000));
        let mut irr = [0u8; 4];
        assert!(
            w.cd.ram
                .read(GuestPhys::new(0x1000 + 0x200 + 0x10 * 2), &mut irr)
        );
        assert_eq!(u32::from_le_bytes(irr) & 1, 1, "IRR bit 0x40");
        // The BSP's IRR stays clear.
        value(call(w, o, req::KVM_GET_LAPIC, bsp, 0x1000));
        assert!(
            w.cd.ram
                .read(GuestPhys::new(0x1000 + 0x200 + 0x10 * 2), &mut irr)
        );
        assert_eq!(u32::from_le_bytes(irr), 0);
        // No APIC 7: KVM's -1.
        put(w, 0x300, &bytes(&msi(7)));
        assert_eq!(
            call(w, o, req::KVM_SIGNAL_MSI, vm, 0x300),
            Outcome::Error(EPERM)
        );
        // The run states KVM takes with the LAPIC here, and one it does not.
        for (state, ok) in [
            (req::KVM_MP_STATE_HALTED, true),
            (req::KVM_MP_STATE_INIT_RECEIVED, true),
            (req::KVM_MP_STATE_SIPI_RECEIVED, false),
            (99, false),
        ] {
            put(w, 0x400, &state.to_le_bytes());
            let out = call(w, o, req::KVM_SET_MP_STATE, ap, 0x400);
            assert_eq!(out == Outcome::Value(0), ok, "{state}: {out:?}");
        }
        assert_eq!(mp_state(w, o, ap), req::KVM_MP_STATE_INIT_RECEIVED);
        // An NMI MSI to APIC 1 is pending on the AP; KVM_GET/SET_VCPU_EVENTS
        // show and set it, KVM's refusals first.
        let nmi_msi = req::kvm_msi {
            address_lo: 0xfee0_0000 | (1 << 12),
            data: 0x400,
            ..Default::default()
        };
        put(w, 0x300, &bytes(&nmi_msi));
        assert_eq!(value(call(w, o, req::KVM_SIGNAL_MSI, vm, 0x300)), 1);
        let events = |w: &mut World, o: &spin::Mutex<Locked<FakeBackend>>, h| {
            value(call(w, o, req::KVM_GET_VCPU_EVENTS, h, 0x500));
            let mut b = [0u8; 64];
            assert!(w.cd.ram.read(GuestPhys::new(0x500), &mut b));
            // SAFETY: 64 bytes, a `kvm_vcpu_events` of only integers.
            unsafe { core::ptr::read_unaligned(b.as_ptr().cast::<req::kvm_vcpu_events>()) }
        };
        let got = events(w, o, ap);
        assert_eq!(
            (got.nmi.pending, got.nmi.masked, got.nmi.injected),
            (1, 0, 0)
        );
        assert_eq!(
            got.flags,
            req::KVM_VCPUEVENT_VALID_SHADOW | req::KVM_VCPUEVENT_VALID_SMM
        );
        assert_eq!(events(w, o, bsp).nmi.pending, 0);
        let mut set = req::kvm_vcpu_events {
            flags: req::KVM_VCPUEVENT_VALID_NMI_PENDING | req::KVM_VCPUEVENT_VALID_SHADOW,
            ..Default::default()
        };
        set.nmi.masked = 1;
        set.interrupt.shadow = req::KVM_X86_SHADOW_INT_STI;
        set.exception.injected = 1;
        set.exception.nr = 13;
        set.exception.has_error_code = 1;
        set.exception.error_code = 0x18;
        let refused = [
            (1u32 << 9, 0u8, 0u8),
            (req::KVM_VCPUEVENT_VALID_PAYLOAD, 0, 0),
            (req::KVM_VCPUEVENT_VALID_TRIPLE_FAULT, 0, 0),
            // An exception on the NMI's vector, or past 31.
            (0, 2, 0),
            (0, 32, 0),
            // An exception and an interrupt at once.
            (0, 13, 1),
            // An error code for #UD, which pushes none.
            (0, 6, 0),
        ];
        for (flags, nr, irq) in refused {
            let mut bad = set;
            bad.flags |= flags;
            bad.exception.nr = nr;
            bad.interrupt.injected = irq;
            put(w, 0x600, &bytes(&bad));
            let out = call(w, o, req::KVM_SET_VCPU_EVENTS, ap, 0x600);
            assert_eq!(out, Outcome::Error(EINVAL), "{flags:#x} {nr} {irq}");
        }
        put(w, 0x600, &bytes(&set));
        assert_eq!(value(call(w, o, req::KVM_SET_VCPU_EVENTS, ap, 0x600)), 0);
        let got = events(w, o, ap);
        assert_eq!((got.nmi.pending, got.nmi.masked), (0, 1));
        assert_eq!(got.interrupt.shadow, req::KVM_X86_SHADOW_INT_STI);
        assert_eq!(
            (
                got.exception.injected,
                got.exception.nr,
                got.exception.has_error_code,
                got.exception.error_code
            ),
            (1, 13, 1, 0x18)
        );
        // An NMI pending needs the local APIC's path: not on a VM without.
        let plain = value(call(w, o, req::KVM_CREATE_VM, 0, 0));
        let plain_vcpu = value(call(w, o, req::KVM_CREATE_VCPU, plain, 0));
        let mut nmi = req::kvm_vcpu_events {
            flags: req::KVM_VCPUEVENT_VALID_NMI_PENDING,
            ..Default::default()
        };
        nmi.nmi.pending = 1;
        put(w, 0x600, &bytes(&nmi));
        assert_eq!(
            call(w, o, req::KVM_SET_VCPU_EVENTS, plain_vcpu, 0x600),
            Outcome::Error(EINVAL)
        );
        assert_eq!(value(call(w, o, mojito::MOJITO_CLOSE, plain, 0)), 0);
        // A vCPU id already there, and a routing table.
        assert_eq!(
            call(w, o, req::KVM_CREATE_VCPU, vm, 1),
            Outcome::Error(EEXIST)
        );
        let mut table = Vec::new();
        table.extend_from_slice(&1u32.to_le_bytes());
        table.extend_from_slice(&0u32.to_le_bytes());
        let mut e = req::kvm_irq_routing_entry {
            gsi: 5,
            type_: req::KVM_IRQ_ROUTING_MSI,
            ..Default::default()
        };
        e.u.msi = req::kvm_irq_routing_msi {
            address_lo: 0xfee0_0000,
            data: 0x8061,
            ..Default::default()
        };
        table.extend_from_slice(&bytes(&e));
        put(w, 0x2000, &table);
        assert_eq!(value(call(w, o, req::KVM_SET_GSI_ROUTING, vm, 0x2000)), 0);
        // The layout lists both vCPUs' structures (a line per owner).
        assert!(value(call(w, o, mojito::MOJITO_LOG_LAYOUT, 0, 0)) >= 4);
        // Closing the VM gives back both vCPUs and everything they held.
        assert_eq!(value(call(w, o, mojito::MOJITO_CLOSE, vm, 0)), 0);
        assert_eq!(w.backend.live_vcpus, 0);
        assert_eq!(w.frames.lock().stats().free, free);
    }
}
