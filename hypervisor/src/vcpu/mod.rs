//! The exit loop's handlers, shared by both vendors. Each takes a
//! `virt::Exit`, acts on the vCPU through `GuestCpu`, and says whether the
//! guest resumes, yields or stops. Handlers touch only this VM's state: no
//! allocation, no lock, no logging (DESIGN.md D8) — except a guest's
//! finished console line, which is the console device's whole purpose.

pub mod cpuid;
pub mod decode_cache;
pub mod io;
pub mod lapic;
pub mod lazy;
pub mod linear;
pub mod msr;
pub mod msr_filter;
pub mod pvclock;
pub mod stats;
#[cfg(test)]
pub(crate) mod tests;

use crate::arch::xsave;
use crate::guest::insn::{self, Kind};
use crate::guest::walk::{self, Access, Paging};
use crate::mm::{GuestPhys, GuestVirt};
use crate::virt::exit::IoAccess;
use crate::virt::{CpuMode, CrEffect, Exit, ExitInfo, Fault, GuestCpu, SegmentReg};
use crate::vm::{StopReason, VmEnv, VmKind};

/// What the exit loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Resume,
    /// Give the CPU to the next VM.
    Yield,
    /// The control domain made a hypercall (a KVM API request).
    ControlRequest,
    /// A port access for the VMM of a KVM-API VM: the instruction has not
    /// been stepped over (it completes on the next `KVM_RUN`).
    ForwardIo(IoAccess),
    /// A hypercall for the VMM (`KVM_EXIT_HYPERCALL`); it completes, with
    /// the VMM's return value, on the next `KVM_RUN`.
    ForwardHypercall,
    /// A KVM-API VM's data access to a guest-physical address no memory
    /// slot maps: MMIO for its VMM (`control::mmio`).
    ForwardMmio(crate::virt::exit::NestedFault),
    /// The interrupt window a KVM-API VM's run loop asked for opened.
    InterruptWindow,
    /// A KVM-API VM's MSR access that failed here, for its VMM
    /// (`KVM_CAP_X86_USER_SPACE_MSR`); it completes on the next `KVM_RUN`.
    ForwardMsr(MsrAccess),
    /// A KVM-API VM wrote this value to its Xen hypercall-page MSR
    /// (`KVM_XEN_HVM_CONFIG`); the caller, which reaches the VMM's blobs,
    /// copies the page.
    XenPage(u64),
    Stop(StopReason),
}

/// An MSR access for the VMM (`KVM_EXIT_X86_RDMSR` / `KVM_EXIT_X86_WRMSR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrAccess {
    pub index: u32,
    /// The value a WRMSR writes; None for RDMSR.
    pub write: Option<u64>,
    /// `KVM_MSR_EXIT_REASON_INVAL` or `_UNKNOWN`.
    pub reason: u32,
}

/// Whether the VM's MSR filter (`KVM_X86_SET_MSR_FILTER`) lets the access
/// through.
fn msr_allowed(env: &VmEnv, index: u32, write: bool) -> bool {
    let access = if write {
        abi::kvm::KVM_MSR_FILTER_WRITE
    } else {
        abi::kvm::KVM_MSR_FILTER_READ
    };
    env.msr_filter
        .as_ref()
        .is_none_or(|f| f.allows(index, access))
}

/// Where a failed MSR access goes: to the VMM if it asked for this kind of
/// failure (a KVM-API VM with `KVM_CAP_X86_USER_SPACE_MSR`), else #GP.
/// `filtered`: the VM's MSR filter denied it.
fn msr_failed<C: GuestCpu>(
    cpu: &mut C,
    env: &VmEnv,
    index: u32,
    write: Option<u64>,
    filtered: bool,
) -> Action {
    let reason = if filtered {
        abi::kvm::KVM_MSR_EXIT_REASON_FILTER
    } else if msr::known(index) {
        abi::kvm::KVM_MSR_EXIT_REASON_INVAL
    } else {
        abi::kvm::KVM_MSR_EXIT_REASON_UNKNOWN
    };
    if env.kind == VmKind::Kvm && env.user_msr_exits & reason != 0 {
        Action::ForwardMsr(MsrAccess {
            index,
            write,
            reason,
        })
    } else {
        inject(cpu, Fault::GP0)
    }
}

/// WRMSR of an MSR the hypervisor handles, from the guest or from the VMM
/// (`KVM_SET_MSRS`): kvmclock's write guest memory, and a new TSC moves the
/// registered kvmclock's `tsc_timestamp`.
pub fn write_msr<C: GuestCpu>(
    cpu: &mut C,
    env: &mut VmEnv,
    index: u32,
    value: u64,
) -> Result<(), Fault> {
    if pvclock::is_msr(index) {
        let now = pvclock::Now::read(cpu.tsc_offset());
        env.msrs.kvmclock.write(index, value, &now, &mut env.ram);
        return Ok(());
    }
    msr::write(cpu, &mut env.msrs, index, value)?;
    if index == crate::arch::msr::IA32_TSC {
        let now = pvclock::Now::read(cpu.tsc_offset());
        env.msrs.kvmclock.refresh(&now, &mut env.ram);
    }
    Ok(())
}

/// Hypercall return values KVM gives a guest (include/uapi/linux/kvm_para.h):
/// -KVM_ENOSYS for an unknown number, -KVM_EPERM from CPL > 0.
const KVM_ENOSYS: i64 = 1000;
const KVM_EPERM: i64 = 1;
/// VMCALL (0F 01 C1) and VMMCALL (0F 01 D9) without prefixes.
const HYPERCALL_LEN: u8 = 3;

/// Exceptions both back ends intercept: #DB (1) and #AC (17). Delivering
/// either can raise the same exception again, which loops inside the CPU with
/// no exit at all (CVE-2015-5307, CVE-2015-8104); intercepted, each delivery
/// is a VM exit, and the exception is reflected to the guest.
pub const INTERCEPTED_EXCEPTIONS: u64 = (1 << 1) | (1 << 17);

const RFLAGS_IF: u64 = 1 << 9;
const CR0_TS: u64 = 1 << 3;
pub(crate) const CR0_WP: u64 = 1 << 16;
const CR4_OSXSAVE: u64 = 1 << 18;

/// Handles one exit.
pub fn handle<C: GuestCpu>(cpu: &mut C, env: &mut VmEnv, info: ExitInfo, xcr0_max: u64) -> Action {
    env.stats.count(&info.exit);
    let rip = cpu.rip();
    match info.exit {
        // The bench's floor (abi::guest::BENCH_FLOOR_HYPERCALL): step over
        // the VMCALL/VMMCALL and nothing else. Its length is not decoded
        // where the CPU does not report it (SVM without NRIP save): a
        // prefixed one would only misplace this guest's own RIP. The
        // control domain's hypercalls are requests, all of them.
        Exit::Hypercall
            if env.kind != VmKind::Control
                && cpu.gprs().rax == abi::guest::BENCH_FLOOR_HYPERCALL =>
        {
            cpu.skip_instruction(info.len.unwrap_or(HYPERCALL_LEN));
            Action::Resume
        }
        Exit::Cpuid => {
            let g = cpu.gprs();
            let (leaf, sub) = (g.rax as u32, g.rcx as u32);
            // The live XCR0 (this vCPU owns the CPU's extended state): the
            // guest may have changed it without an exit where the XSETBV
            // intercept is not emulated (QEMU's TCG).
            const XSAVE_LEAF: u32 = 0xd;
            let xcr0 = if leaf == XSAVE_LEAF && xcr0_max != 0 {
                live_xcr0(env.lazy.xcr0)
            } else {
                env.lazy.xcr0
            };
            let d = cpuid::Dynamic {
                apic_id: env.vcpu_id as u8,
                osxsave: cpu.cr4() & CR4_OSXSAVE != 0,
                xcr0,
            };
            let [a, b, c, dx] = env.cpuid.lookup(leaf, sub, &d);
            let g = cpu.gprs();
            (g.rax, g.rbx, g.rcx, g.rdx) = (a.into(), b.into(), c.into(), dx.into());
            skip(cpu, env, info, Kind::Cpuid)
        }
        Exit::Rdmsr => {
            let index = cpu.gprs().rcx as u32;
            if !msr_allowed(env, index, false) {
                return msr_failed(cpu, env, index, None, true);
            }
            match msr::read(cpu, &env.msrs, index) {
                Ok(v) => {
                    cpu.gprs().set_edx_eax(v);
                    skip(cpu, env, info, Kind::Rdmsr)
                }
                // Every failure is #GP (`msr::read`), here or from the VMM.
                Err(_) => msr_failed(cpu, env, index, None, false),
            }
        }
        Exit::Wrmsr => {
            let g = cpu.gprs();
            let (index, value) = (g.rcx as u32, g.edx_eax());
            if !msr_allowed(env, index, true) {
                return msr_failed(cpu, env, index, Some(value), true);
            }
            if env.kind == VmKind::Kvm && env.xen.is_some_and(|x| x.msr == index) {
                return Action::XenPage(value);
            }
            match write_msr(cpu, env, index, value) {
                Ok(()) => skip(cpu, env, info, Kind::Wrmsr),
                Err(_) => msr_failed(cpu, env, index, Some(value), false),
            }
        }
        // The control domain's HLT means "nothing to do until the next
        // event": the CPU sleeps until the hypervisor's own timer (or another
        // interrupt) and the control domain goes on.
        Exit::Hlt if env.kind == VmKind::Control && crate::arch::apic::timer_running() => {
            crate::arch::instr::wait_for_interrupt();
            skip(cpu, env, info, Kind::Hlt)
        }
        Exit::Hlt => {
            // Nothing can interrupt this vCPU yet (no interrupt controller is
            // emulated), so whatever IF says, a HLT never ends.
            let interrupts_enabled = cpu.rflags() & RFLAGS_IF != 0;
            match skip(cpu, env, info, Kind::Hlt) {
                Action::Resume => Action::Stop(StopReason::Halted {
                    rip,
                    interrupts_enabled,
                }),
                other => other,
            }
        }
        Exit::Xsetbv => {
            // SDM Vol. 2C XSETBV: #UD without CR4.OSXSAVE, #GP at CPL > 0, for
            // an XCR other than 0, or for an invalid value.
            if cpu.cr4() & CR4_OSXSAVE == 0 {
                return inject(cpu, Fault::UD);
            }
            let g = cpu.gprs();
            let (index, value) = (g.rcx as u32, g.edx_eax());
            if cpu.cpl() != 0 || index != 0 || !xsave::xcr0_valid(value, xcr0_max) {
                return inject(cpu, Fault::GP0);
            }
            env.lazy.xcr0 = value;
            // This vCPU owns the CPU's extended state (lazy switching).
            // SAFETY: the value was validated against what the host enabled.
            unsafe { crate::arch::instr::xsetbv(0, value) };
            skip(cpu, env, info, Kind::Xsetbv)
        }
        // The control domain's hypercalls are the KVM API: the caller (which
        // owns the objects it names) carries them out, then `complete`s.
        Exit::Hypercall if env.kind == VmKind::Control => Action::ControlRequest,
        // A hypercall the VMM enabled with KVM_CAP_EXIT_HYPERCALL.
        Exit::Hypercall
            if env.kind == VmKind::Kvm
                && cpu.cpl() == 0
                && cpu.gprs().rax < 64
                && env.hypercall_exits & (1 << cpu.gprs().rax) != 0 =>
        {
            Action::ForwardHypercall
        }
        Exit::Hypercall => {
            // As KVM answers a guest (DESIGN.md D1): the KVM API is for the
            // control domain only.
            let ret = if cpu.cpl() != 0 {
                -KVM_EPERM
            } else {
                -KVM_ENOSYS
            };
            let long = cpu.mode() == CpuMode::Long64;
            cpu.gprs().rax = if long {
                ret as u64
            } else {
                u64::from(ret as u32)
            };
            skip(cpu, env, info, Kind::Hypercall)
        }
        Exit::CacheFlush => skip(cpu, env, info, Kind::CacheFlush),
        Exit::Io(io) => port_io(cpu, env, info, io),
        Exit::CrWrite { cr, gpr } => {
            let gpr = match gpr {
                Some(g) => g,
                None => {
                    match fetch_at_rip(cpu, env).and_then(|c| insn::mov_to_cr(c.bytes(), c.mode)) {
                        Some((decoded_cr, g)) if decoded_cr == cr => g,
                        _ => {
                            return Action::Stop(StopReason::Unhandled {
                                what: "instruction that does not match its exit",
                                detail: u64::from(cr),
                                rip,
                            });
                        }
                    }
                }
            };
            let mut value = if gpr == 4 {
                cpu.rsp()
            } else {
                cpu.gprs().get(gpr)
            };
            if cpu.mode() != CpuMode::Long64 {
                value &= 0xffff_ffff;
            }
            write_cr(cpu, env, info, cr, value)
        }
        Exit::CrRead { cr, gpr } => {
            let v = cpu.read_cr(cr);
            if gpr == 4 {
                cpu.set_rsp(v);
            } else {
                cpu.gprs().set(gpr, v);
            }
            skip(cpu, env, info, Kind::CrAccess)
        }
        Exit::Clts => {
            let v = cpu.cr0() & !CR0_TS;
            write_cr(cpu, env, info, 0, v)
        }
        Exit::Lmsw { value } => {
            // LMSW loads CR0 bits 3:0 but cannot clear PE.
            let old = cpu.cr0();
            let v = (old & !0xe) | u64::from(value & 0xf) | (old & 1);
            write_cr(cpu, env, info, 0, v)
        }
        // Only the instruction's own data access is MMIO: one that pushed an
        // event's frame or walked the guest's page tables cannot be
        // emulated from the instruction at RIP.
        Exit::NestedPageFault(f)
            if env.kind == VmKind::Kvm && !f.fetch && f.final_address && !f.during_delivery =>
        {
            Action::ForwardMmio(f)
        }
        Exit::NestedPageFault(f) => Action::Stop(StopReason::UnmappedAccess {
            gpa: f.gpa.raw(),
            write: f.write,
            fetch: f.fetch,
            delivery: f.during_delivery,
            rip,
        }),
        Exit::TripleFault => Action::Stop(StopReason::TripleFault { rip }),
        // The exceptions intercepted (#DB, #AC) belong to the guest: reflect
        // them. Each delivery exits, so a nested-fault loop cannot hang the CPU.
        Exit::Exception { vector, error } => inject(cpu, Fault { vector, error }),
        Exit::Undefined(_) => inject(cpu, Fault::UD),
        Exit::GeneralProtection(_) => inject(cpu, Fault::GP0),
        Exit::Interrupt => {
            crate::arch::instr::take_pending_interrupts();
            Action::Resume
        }
        Exit::InterruptWindow => {
            cpu.set_interrupt_window(false);
            Action::InterruptWindow
        }
        // The NMI waiting for it goes in before the next entry
        // (`control::lapic::before_entry`).
        Exit::NmiWindow => {
            cpu.nmi_window_exit();
            Action::Resume
        }
        // Intercepted only while a KVM-API VM's debugger wants INT3s (the
        // run loop takes it before this); anywhere else, stop.
        Exit::SoftwareInterrupt => Action::Stop(StopReason::Unhandled {
            what: "INT n exit",
            detail: 0,
            rip,
        }),
        // Intercepted only while a KVM-API VM's debugger holds the debug
        // registers (the run loop takes it before this).
        Exit::MovDr { dr, .. } => Action::Stop(StopReason::Unhandled {
            what: "MOV DR exit",
            detail: u64::from(dr),
            rip,
        }),
        Exit::EntryFailed { what, code } => Action::Stop(StopReason::EntryFailed { what, code }),
        Exit::Unknown { reason, .. } => Action::Stop(StopReason::Unhandled {
            what: "exit reason",
            detail: reason,
            rip,
        }),
    }
}

/// XCR0 as the guest left it in the CPU (it owns the extended state while
/// it runs here). Host unit tests see the value the handlers recorded.
fn live_xcr0(recorded: u64) -> u64 {
    #[cfg(not(test))]
    {
        let _ = recorded;
        // SAFETY: only called when the host enabled XSAVE (`xcr0_max` != 0),
        // so CR4.OSXSAVE is set and XGETBV cannot fault.
        unsafe { crate::arch::instr::xgetbv(0) }
    }
    #[cfg(test)]
    recorded
}

fn inject<C: GuestCpu>(cpu: &mut C, fault: Fault) -> Action {
    cpu.inject(fault);
    Action::Resume
}

fn write_cr<C: GuestCpu>(
    cpu: &mut C,
    env: &mut VmEnv,
    info: ExitInfo,
    cr: u8,
    value: u64,
) -> Action {
    match cpu.write_cr(cr, value) {
        Ok(CrEffect::None) => skip(cpu, env, info, Kind::CrAccess),
        Ok(CrEffect::LoadPdptes) => {
            // The four PDPTEs sit at CR3[31:5] (SDM Vol. 3A 4.4.1); a
            // reserved bit in a present one makes the MOV fault.
            let base = cpu.cr3() & 0xffff_ffe0;
            let mut pdptes = [0u64; 4];
            for (i, p) in pdptes.iter_mut().enumerate() {
                let mut b = [0u8; 8];
                if !env.ram.read(GuestPhys::new(base + 8 * i as u64), &mut b) {
                    return inject(cpu, Fault::GP0);
                }
                *p = u64::from_le_bytes(b);
                const PDPTE_RESERVED: u64 = 0b1_1110_0110;
                if *p & 1 != 0 && *p & PDPTE_RESERVED != 0 {
                    return inject(cpu, Fault::GP0);
                }
            }
            cpu.set_pdptes(pdptes);
            skip(cpu, env, info, Kind::CrAccess)
        }
        Err(f) => inject(cpu, f),
    }
}

fn port_io<C: GuestCpu>(cpu: &mut C, env: &mut VmEnv, info: ExitInfo, io: IoAccess) -> Action {
    // KVM-API VMs: everything but the POST port goes to the VMM.
    if env.kind == VmKind::Kvm && io.port != abi::guest::POST_PORT {
        return Action::ForwardIo(io);
    }
    if io.string {
        // INS/OUTS are forwarded for KVM-API VMs (control::string_io); the
        // built-in devices need none, so a test guest's stops the VM.
        return Action::Stop(StopReason::Unhandled {
            what: "string port I/O",
            detail: u64::from(io.port),
            rip: cpu.rip(),
        });
    }
    let mut action = Action::Resume;
    // Only test guests get the built-in devices; the control domain sees an
    // absent device everywhere but the POST port (and COM1, passed through).
    let builtin = env.kind == VmKind::Builtin || io.port == abi::guest::POST_PORT;
    if io.input {
        let v = if builtin {
            u64::from(io::read(io.port, io.size))
        } else {
            u64::from(io::size_mask(io.size))
        };
        let g = cpu.gprs();
        g.rax = match io.size {
            1 => (g.rax & !0xff) | v,
            2 => (g.rax & !0xffff) | v,
            // A 32-bit destination zero-extends into RAX.
            _ => v,
        };
    } else {
        let value = cpu.gprs().rax as u32;
        let out = if builtin {
            io::write(io.port, io.size, value)
        } else {
            io::Output::Nothing
        };
        match out {
            io::Output::Nothing => {}
            io::Output::Console(b) => {
                if let Some(line) = env.console.push(b) {
                    crate::log::guest_line(&env.name, line);
                }
            }
            io::Output::Exit(status) => action = Action::Stop(StopReason::Exited(status)),
            io::Output::Yield => action = Action::Yield,
        }
    }
    match skip(cpu, env, info, Kind::Io) {
        Action::Resume => action,
        stop => stop,
    }
}

/// Steps over an instruction whose exit the caller handled (a control
/// domain's hypercall).
pub fn complete<C: GuestCpu>(
    cpu: &mut C,
    env: &mut VmEnv,
    info: ExitInfo,
    expected: Kind,
) -> Action {
    skip(cpu, env, info, expected)
}

/// The length of the instruction that exited (reported or decoded), if it
/// is the `expected` one.
pub fn insn_len<C: GuestCpu>(
    cpu: &C,
    env: &mut VmEnv,
    info: ExitInfo,
    expected: Kind,
) -> Option<u8> {
    match info.len {
        Some(len) => Some(len),
        None => match decode_at_rip(cpu, env) {
            Ok((kind, len)) if kind == expected => Some(len),
            _ => None,
        },
    }
}

/// Steps over the instruction that exited, whose length the hardware
/// reported or the decoder finds.
fn skip<C: GuestCpu>(cpu: &mut C, env: &mut VmEnv, info: ExitInfo, expected: Kind) -> Action {
    let len = match info.len {
        Some(len) => len,
        None => match decode_at_rip(cpu, env) {
            Ok((kind, len)) if kind == expected => len,
            Ok(_) | Err(_) => {
                return Action::Stop(StopReason::Unhandled {
                    what: "instruction that does not match its exit",
                    detail: 0,
                    rip: cpu.rip(),
                });
            }
        },
    };
    cpu.skip_instruction(len);
    Action::Resume
}

/// The INS/OUTS at CS:RIP, decoded for its prefixes (None if it is not one).
pub fn string_io_at_rip<C: GuestCpu>(cpu: &C, env: &VmEnv) -> Option<insn::StringIo> {
    let code = fetch_at_rip(cpu, env)?;
    insn::string_io(code.bytes(), code.mode)
}

/// Fetches and decodes the instruction at CS:RIP, or finds it in the
/// vCPU's decode cache.
fn decode_at_rip<C: GuestCpu>(cpu: &C, env: &mut VmEnv) -> Result<(Kind, u8), insn::DecodeError> {
    if let Some(hit) = env.decoded.lookup(cpu, &env.ram) {
        return Ok(hit);
    }
    let key = decode_cache::Key::of(cpu);
    let code = fetch_at_rip(cpu, env).ok_or(insn::DecodeError::TooLong)?;
    let (kind, len) = insn::decode(code.bytes(), code.mode)?;
    env.decoded.fill(key, &env.ram, kind, len);
    Ok((kind, len))
}

/// The bytes at CS:RIP and the mode they execute in.
struct Code {
    buf: [u8; insn::MAX_LEN],
    len: usize,
    mode: CpuMode,
}

impl Code {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The bytes at CS:RIP (up to 15; how many were readable) and the mode
/// they execute in.
pub fn fetch_code<C: GuestCpu>(
    cpu: &C,
    env: &VmEnv,
) -> Option<([u8; insn::MAX_LEN], usize, CpuMode)> {
    let code = fetch_at_rip(cpu, env)?;
    Some((code.buf, code.len, code.mode))
}

/// Fetches up to 15 bytes at CS:RIP through the guest's page tables, page
/// by page: the tail may lie on an unmapped page without hurting a short
/// instruction. None if not even the first byte is readable.
fn fetch_at_rip<C: GuestCpu>(cpu: &C, env: &VmEnv) -> Option<Code> {
    let mode = cpu.mode();
    let rip = cpu.rip();
    let linear = if mode == CpuMode::Long64 {
        rip
    } else {
        cpu.segment(SegmentReg::Cs).base.wrapping_add(rip) & 0xffff_ffff
    };
    let (cr0, efer) = (cpu.cr0(), cpu.efer());
    let paging = Paging::from_state(cr0, cpu.cr4(), efer);
    let nxe = efer & crate::arch::msr::efer::NXE != 0;
    let wp = cr0 & CR0_WP != 0;
    let access = Access {
        fetch: true,
        user: cpu.cpl() == 3,
        write: false,
    };
    let cr3 = cpu.cr3();
    let mut code = Code {
        buf: [0; insn::MAX_LEN],
        len: 0,
        mode,
    };
    while code.len < insn::MAX_LEN {
        let la = GuestVirt::new(linear.wrapping_add(code.len as u64));
        let Ok(gpa) = walk::translate(&env.ram, paging, cr3, la, access, nxe, wp) else {
            break;
        };
        let n = (4096 - la.page_offset() as usize).min(insn::MAX_LEN - code.len);
        if !env.ram.read(gpa, &mut code.buf[code.len..code.len + n]) {
            break;
        }
        code.len += n;
    }
    (code.len > 0).then_some(code)
}
