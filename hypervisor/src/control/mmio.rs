//! MMIO in KVM-API VMs (`KVM_EXIT_MMIO`), as KVM does it: an access to a
//! guest-physical address that no memory slot maps faults to the hypervisor
//! (EPT violation / nested page fault), which fetches the instruction at
//! CS:RIP through the guest's page tables, decodes it
//! (`guest::mmio_insn`: the MOV forms, MOVZX/MOVSX, the ALU forms,
//! MOVS/STOS) and exits to the VMM once per device access. A read is
//! completed on the next RUN with the data the VMM left in `kvm_run.mmio`;
//! a write needs nothing back. An instruction that both reads and writes
//! device memory (`add [mmio], eax`; MOVS between two devices) exits twice,
//! read first. The instruction is stepped over once its last access is
//! done; REP MOVS/STOS do one element per exit and run again until RCX is
//! 0. An instruction outside the decoder's set ends in
//! `KVM_EXIT_INTERNAL_ERROR` / `KVM_INTERNAL_ERROR_EMULATION` with the
//! instruction's bytes, as in KVM.

use super::kvm::{RunEnd, run_offset};
use super::objects::{KvmVcpu, Pending};
use super::string_io::{advance, mask_of};
use crate::guest::GuestRam;
use crate::guest::alu::{self, mask};
use crate::guest::mmio_insn::{self, AluOp, MmioInsn, Op, Reg, Src};
use crate::mm::GuestPhys;
use crate::vcpu::linear::{self, LinearError};
use crate::virt::exit::NestedFault;
use crate::virt::{Backend, CpuMode, Fault, GuestCpu, SegmentReg};
use crate::vm::VmEnv;
use abi::kvm::{
    KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_MMIO, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, kvm_run_exit, kvm_run_internal,
    kvm_run_mmio,
};

/// RFLAGS.DF (SDM Vol. 1 3.4.3.2).
const RFLAGS_DF: u64 = 1 << 10;
/// `kvm_run_mmio::data`'s offset in the exit union.
const MMIO_DATA_OFFSET: u64 = 8;

/// After a read exit, what the data is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Finish the instruction with it (a load, an ALU form, the read half of
    /// a read-modify-write, which then exits again to write).
    Finish,
    /// MOVS from a device: write it to the destination, device (another
    /// exit) or RAM.
    MovsTo(Dest),
}

/// Where MOVS writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    Device(u64),
    /// RAM at this linear address.
    Ram(u64),
}

/// A device access the VMM is handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    pub insn: MmioInsn,
    /// The device address of this access.
    pub gpa: u64,
    /// A read (completed with the VMM's data) or a write.
    pub read: Option<Then>,
}

/// The instruction's bytes for `KVM_INTERNAL_ERROR_EMULATION`, laid out as
/// `kvm_run.emulation_failure`: flags, then the length and up to 15 bytes;
/// without bytes (none could be fetched), no data, as in KVM.
fn emulation_failure(bytes: &[u8]) -> RunEnd {
    if bytes.is_empty() {
        return super::kvm::internal(KVM_INTERNAL_ERROR_EMULATION, &[]);
    }
    let n = bytes.len().min(crate::guest::insn::MAX_LEN);
    let mut packed = [0u8; 16];
    packed[0] = n as u8;
    packed[1..1 + n].copy_from_slice(&bytes[..n]);
    let word = |k: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&packed[k * 8..k * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let mut e = kvm_run_internal {
        suberror: KVM_INTERNAL_ERROR_EMULATION,
        ndata: 3,
        data: [0; 16],
    };
    e.data[0] = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
    e.data[1] = word(0);
    e.data[2] = word(1);
    let mut exit = kvm_run_exit::default();
    exit.internal = e;
    RunEnd::Exit(KVM_EXIT_INTERNAL_ERROR, exit)
}

fn mmio_exit(gpa: u64, size: u8, write: Option<u64>) -> RunEnd {
    let mut m = kvm_run_mmio {
        phys_addr: gpa,
        len: u32::from(size),
        is_write: u8::from(write.is_some()),
        ..Default::default()
    };
    if let Some(v) = write {
        let bytes = v.to_le_bytes();
        m.data[..usize::from(size)].copy_from_slice(&bytes[..usize::from(size)]);
    }
    let mut exit = kvm_run_exit::default();
    exit.mmio = m;
    RunEnd::Exit(KVM_EXIT_MMIO, exit)
}

/// Register `r` (`size` bytes; AH–BH for high-byte registers).
fn get_reg<C: GuestCpu>(cpu: &mut C, r: Reg, size: u8) -> u64 {
    let full = if r.num == 4 && !r.high_byte {
        cpu.rsp()
    } else if r.high_byte {
        return (cpu.gprs().get(r.num - 4) >> 8) & 0xff;
    } else {
        cpu.gprs().get(r.num)
    };
    full & mask(size)
}

/// Writes `v` to register `r` as an instruction with operand size `size`
/// does: 8 and 16 bits merge, 32 bits zero-extend, 64 bits replace (KVM
/// zero-extends 32-bit results outside 64-bit mode too).
fn set_reg<C: GuestCpu>(cpu: &mut C, r: Reg, size: u8, v: u64) {
    let (num, shift) = if r.high_byte {
        (r.num - 4, 8)
    } else {
        (r.num, 0)
    };
    let old = if num == 4 {
        cpu.rsp()
    } else {
        cpu.gprs().get(num)
    };
    let new = match size {
        1 | 2 => (old & !(mask(size) << shift)) | ((v & mask(size)) << shift),
        4 => v & 0xffff_ffff,
        _ => v,
    };
    if num == 4 {
        cpu.set_rsp(new);
    } else {
        cpu.gprs().set(num, new);
    }
}

/// The linear address of `seg`:`ea` (in 64-bit mode only FS and GS have a
/// base; SDM Vol. 3A 3.4.4).
fn linear_of<C: GuestCpu>(cpu: &C, seg: SegmentReg, ea: u64) -> u64 {
    let long = cpu.mode() == CpuMode::Long64;
    let base = if !long || matches!(seg, SegmentReg::Fs | SegmentReg::Gs) {
        cpu.segment(seg).base
    } else {
        0
    };
    let l = base.wrapping_add(ea);
    if long { l } else { l & 0xffff_ffff }
}

/// What starting an access led to.
#[allow(clippy::large_enum_variant)]
pub enum Start {
    Exit(RunEnd),
    /// Done without the VMM (a fault raised): run on.
    Resume,
}

fn page_fault<C: GuestCpu>(cpu: &mut C, e: LinearError) -> Start {
    match e {
        LinearError::PageFault { addr, code } => {
            cpu.set_cr2(addr);
            cpu.inject(Fault::page_fault(code));
            Start::Resume
        }
        LinearError::NonCanonical => {
            cpu.inject(Fault::GP0);
            Start::Resume
        }
        LinearError::NotRam => Start::Exit(emulation_failure(&[])),
    }
}

/// Starts the access the guest just faulted on at `f.gpa`.
pub fn start<B: Backend>(vc: &mut KvmVcpu<B>, env: &mut VmEnv, f: NestedFault) -> Start {
    let cpu = &mut vc.cpu;
    let Some((bytes, n, mode)) = crate::vcpu::fetch_code(cpu, env) else {
        return Start::Exit(emulation_failure(&[]));
    };
    let code = &bytes[..n];
    let Ok(insn) = mmio_insn::decode(code, mode) else {
        return Start::Exit(emulation_failure(code));
    };
    let gpa = f.gpa.raw();
    let size = insn.size;
    let read = |then| {
        Pending::Mmio(MmioAccess {
            insn,
            gpa,
            read: Some(then),
        })
    };
    let (pending, end) = match insn.op {
        Op::Store(r) => (
            Pending::Mmio(MmioAccess {
                insn,
                gpa,
                read: None,
            }),
            mmio_exit(gpa, size, Some(get_reg(cpu, r, size))),
        ),
        Op::StoreImm(imm) => (
            Pending::Mmio(MmioAccess {
                insn,
                gpa,
                read: None,
            }),
            mmio_exit(gpa, size, Some(imm & mask(size))),
        ),
        Op::Load(_) | Op::LoadExtend { .. } | Op::Alu { .. } => {
            // A read-only slot is RAM for reads: only the write exits.
            let mut data = [0u8; 8];
            if env.ram.read(f.gpa, &mut data[..usize::from(size)]) {
                let a = MmioAccess {
                    insn,
                    gpa,
                    read: Some(Then::Finish),
                };
                return match finish_read(vc, env, a, data) {
                    Some(end) => Start::Exit(end),
                    None => Start::Resume,
                };
            }
            (read(Then::Finish), mmio_exit(gpa, size, None))
        }
        Op::Stos | Op::Movs => {
            let amask = mask_of(insn.addr_size);
            let g = *cpu.gprs();
            if insn.rep && g.rcx & amask == 0 {
                // Nothing to do (no access could have faulted): done.
                cpu.skip_instruction(insn.len);
                return Start::Resume;
            }
            if insn.op == Op::Stos {
                let v = g.rax & mask(size);
                (
                    Pending::Mmio(MmioAccess {
                        insn,
                        gpa,
                        read: None,
                    }),
                    mmio_exit(gpa, size, Some(v)),
                )
            } else {
                let src = linear_of(cpu, insn.segment.unwrap_or(SegmentReg::Ds), g.rsi & amask);
                let dst = linear_of(cpu, SegmentReg::Es, g.rdi & amask);
                let mut buf = [0u8; 8];
                let buf = &mut buf[..usize::from(size)];
                match linear::read(cpu, env, src, buf) {
                    // The source is RAM: the destination is the device.
                    Ok(()) => {
                        let mut v = [0u8; 8];
                        v[..buf.len()].copy_from_slice(buf);
                        (
                            Pending::Mmio(MmioAccess {
                                insn,
                                gpa,
                                read: None,
                            }),
                            mmio_exit(gpa, size, Some(u64::from_le_bytes(v))),
                        )
                    }
                    Err(LinearError::NotRam) => {
                        // The source is the device; the destination may be
                        // another.
                        let dest = match linear::check_write(cpu, env, dst, buf.len()) {
                            Ok(()) => Dest::Ram(dst),
                            Err(LinearError::NotRam) => match device_gpa(cpu, env, dst) {
                                Some(d) => Dest::Device(d),
                                None => return Start::Exit(emulation_failure(code)),
                            },
                            Err(e) => return page_fault(cpu, e),
                        };
                        (read(Then::MovsTo(dest)), mmio_exit(gpa, size, None))
                    }
                    Err(e) => return page_fault(cpu, e),
                }
            }
        }
    };
    vc.pending = Some(pending);
    Start::Exit(end)
}

/// The guest-physical address `linear` translates to for a write (a page
/// that is no RAM).
fn device_gpa<C: GuestCpu>(cpu: &C, env: &VmEnv, linear: u64) -> Option<u64> {
    linear::translate_write(cpu, env, linear).ok()
}

/// Steps over a MOVS/STOS element: RSI/RDI move on, RCX counts down, and
/// the instruction is done when the count runs out (or without REP).
fn string_step<C: GuestCpu>(cpu: &mut C, insn: &MmioInsn) {
    let amask = mask_of(insn.addr_size);
    let size = u64::from(insn.size);
    let delta = if cpu.rflags() & RFLAGS_DF != 0 {
        size.wrapping_neg()
    } else {
        size
    };
    let g = cpu.gprs();
    g.rdi = advance(g.rdi, delta, amask);
    if insn.op == Op::Movs {
        g.rsi = advance(g.rsi, delta, amask);
    }
    let mut done = true;
    if insn.rep {
        g.rcx = advance(g.rcx, u64::MAX, amask);
        done = g.rcx & amask == 0;
    }
    if done {
        cpu.skip_instruction(insn.len);
    }
}

/// Finishes the access on the next RUN. Returns another exit when the
/// instruction has a second device access (the write of a
/// read-modify-write, MOVS between devices).
pub fn complete<B: Backend>(
    vc: &mut KvmVcpu<B>,
    env: &mut VmEnv,
    cd: &GuestRam,
    run_gpa: u64,
    a: MmioAccess,
) -> Result<Option<RunEnd>, i32> {
    let mut data = [0u8; 8];
    if a.read.is_some()
        && !cd.read(
            GuestPhys::new(run_gpa + run_offset::EXIT + MMIO_DATA_OFFSET),
            &mut data,
        )
    {
        return Err(abi::kvm::errno::EFAULT);
    }
    Ok(complete_with(vc, env, a, data))
}

/// Finishes the access with `data` (what a read returned; ignored for a
/// write).
fn complete_with<B: Backend>(
    vc: &mut KvmVcpu<B>,
    env: &mut VmEnv,
    a: MmioAccess,
    data: [u8; 8],
) -> Option<RunEnd> {
    let insn = a.insn;
    if a.read.is_none() {
        // A write: the instruction is done.
        match insn.op {
            Op::Movs | Op::Stos => string_step(&mut vc.cpu, &insn),
            _ => vc.cpu.skip_instruction(insn.len),
        }
        return None;
    }
    finish_read(vc, env, a, data)
}

/// A device the hypervisor emulates itself (the local APIC): its accesses
/// never reach the VMM.
pub trait LocalDevice {
    /// Whether `gpa` is this device's.
    fn claims(&self, gpa: u64) -> bool;
    fn read(&mut self, gpa: u64, size: u8) -> u64;
    fn write(&mut self, gpa: u64, size: u8, value: u64);
}

/// Carries out the access the guest faulted on at `f.gpa`, a `dev`
/// address, with the instruction decoder the VMM's devices use: each of
/// the instruction's accesses to `dev` is done here, one to another
/// device (MOVS from the APIC to a VMM device) still exits.
pub fn emulate_local<B: Backend>(
    vc: &mut KvmVcpu<B>,
    env: &mut VmEnv,
    f: NestedFault,
    dev: &mut dyn LocalDevice,
) -> Start {
    let mut s = start(vc, env, f);
    // An instruction has at most two device accesses (a read-modify-write,
    // MOVS between devices); REP MOVS/STOS repeat only on later entries.
    for _ in 0..2 {
        let Start::Exit(RunEnd::Exit(KVM_EXIT_MMIO, exit)) = &s else {
            return s;
        };
        // SAFETY: KVM_EXIT_MMIO's exit was built as `mmio` (`mmio_exit`);
        // its fields are plain integers, valid for any bytes.
        let m = unsafe { exit.mmio };
        let size = m.len.min(8) as u8;
        if !dev.claims(m.phys_addr) {
            return s;
        }
        let Some(Pending::Mmio(a)) = vc.pending.take() else {
            return s;
        };
        let data = if m.is_write != 0 {
            dev.write(m.phys_addr, size, u64::from_le_bytes(m.data));
            [0; 8]
        } else {
            dev.read(m.phys_addr, size).to_le_bytes()
        };
        s = match complete_with(vc, env, a, data) {
            Some(end) => Start::Exit(end),
            None => Start::Resume,
        };
    }
    s
}

/// Finishes a read access with the bytes read: returns the exit of the
/// instruction's second access, if it has one.
fn finish_read<B: Backend>(
    vc: &mut KvmVcpu<B>,
    env: &mut VmEnv,
    a: MmioAccess,
    data: [u8; 8],
) -> Option<RunEnd> {
    let cpu = &mut vc.cpu;
    let insn = a.insn;
    let size = insn.size;
    let then = a.read?;
    let v = u64::from_le_bytes(data) & mask(size);
    match (insn.op, then) {
        (Op::Load(r), _) => set_reg(cpu, r, size, v),
        (
            Op::LoadExtend {
                reg,
                dest_size,
                signed,
            },
            _,
        ) => {
            let bits = u32::from(size) * 8;
            let x = if signed && bits < 64 {
                (((v << (64 - bits)) as i64) >> (64 - bits)) as u64
            } else {
                v
            };
            set_reg(cpu, reg, dest_size, x);
        }
        (Op::Alu { op, src, mem_dest }, _) => {
            let other = match src {
                Src::Reg(r) => get_reg(cpu, r, size),
                Src::Imm(i) => i & mask(size),
            };
            let (dst, s) = if mem_dest { (v, other) } else { (other, v) };
            let (res, flags) = alu::alu(op, size, dst, s, cpu.rflags());
            cpu.set_rflags(flags);
            match (op, mem_dest, src) {
                (AluOp::Cmp | AluOp::Test, ..) => {}
                // The write half: one more exit; the instruction is stepped
                // over when it completes.
                (_, true, _) => {
                    vc.pending = Some(Pending::Mmio(MmioAccess {
                        insn,
                        gpa: a.gpa,
                        read: None,
                    }));
                    return Some(mmio_exit(a.gpa, size, Some(res)));
                }
                (_, false, Src::Reg(r)) => set_reg(cpu, r, size, res),
                (_, false, Src::Imm(_)) => {}
            }
        }
        (Op::Movs, Then::MovsTo(Dest::Ram(linear))) => {
            match linear::write(cpu, env, linear, &data[..usize::from(size)]) {
                Ok(()) | Err(LinearError::NotRam) => {}
                Err(e) => {
                    // The mapping changed since the exit.
                    let _ = page_fault(cpu, e);
                    return None;
                }
            }
        }
        (Op::Movs, Then::MovsTo(Dest::Device(gpa))) => {
            vc.pending = Some(Pending::Mmio(MmioAccess {
                insn,
                gpa,
                read: None,
            }));
            return Some(mmio_exit(gpa, size, Some(v)));
        }
        // Stores never read; MOVS always says where it writes.
        _ => return Some(emulation_failure(&[])),
    }
    match insn.op {
        Op::Movs | Op::Stos => string_step(cpu, &insn),
        _ => cpu.skip_instruction(insn.len),
    }
    None
}
