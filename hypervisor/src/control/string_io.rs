//! INS/OUTS in KVM-API VMs, forwarded as KVM does: one `KVM_EXIT_IO` with
//! `count` elements in the data page. The hypervisor moves the data between
//! the guest's memory (by linear address, through its page tables) and the
//! data page; the VMM sees only port accesses.
//!
//! A REP instruction is done in batches: each exit carries as many elements
//! as lie on the current guest page and fit in 1 KiB (KVM's own read-ahead
//! buffer size), and the instruction runs again (and exits again) until RCX
//! reaches 0, so interrupts are taken between batches as between iterations
//! on bare metal. A page fault on the memory operand is raised before the
//! VMM sees anything. Writes of INS to addresses that are not RAM are
//! dropped, as on a bus with nothing there.

use super::kvm::{PIO_DATA_OFFSET, RunEnd, internal, io_exit};
use super::objects::{KvmVcpu, Pending};
use crate::guest::GuestRam;
use crate::mm::GuestPhys;
use crate::vcpu::linear::{self, LinearError};
use crate::virt::exit::IoAccess;
use crate::virt::{Backend, CpuMode, Fault, GuestCpu, SegmentReg};
use crate::vm::VmEnv;
use abi::kvm::KVM_INTERNAL_ERROR_EMULATION;

/// The most data one exit carries (KVM's `pio read-ahead` buffer).
const MAX_BATCH_BYTES: usize = 1024;
/// RFLAGS.DF (SDM Vol. 1 3.4.3.2): string instructions count down.
const RFLAGS_DF: u64 = 1 << 10;
const PAGE: u64 = 4096;

/// An INS/OUTS batch the VMM is handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringBatch {
    pub input: bool,
    pub size: u8,
    /// Elements in this batch.
    pub n: u16,
    /// The instruction's length, stepped over when the count runs out.
    pub len: u8,
    pub rep: bool,
    /// RSI/RDI/RCX are used under this mask (the address size).
    pub mask: u64,
    /// The lowest linear address the batch touches.
    pub start: u64,
    /// DF was set: element i is at the i-th address counting down.
    pub backward: bool,
}

impl StringBatch {
    fn bytes(&self) -> usize {
        usize::from(self.n) * usize::from(self.size)
    }
}

/// What the start of an INS/OUTS led to. (Returned by value at once, as
/// `RunEnd` is.)
#[allow(clippy::large_enum_variant)]
pub enum Start {
    /// Exit to the VMM (or an internal error).
    Exit(RunEnd),
    /// Done without the VMM (a zero count, a fault raised): run on.
    Resume,
}

pub(super) fn mask_of(addr_size: u8) -> u64 {
    match addr_size {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// `reg` advanced by `delta` under `mask`: a 16-bit update keeps the upper
/// bits, a 32-bit one zero-extends (SDM Vol. 1 3.4.1.1).
pub(super) fn advance(reg: u64, delta: u64, mask: u64) -> u64 {
    let v = reg.wrapping_add(delta) & mask;
    if mask == 0xffff { (reg & !mask) | v } else { v }
}

/// Reverses the order of `size`-byte elements in `buf` (DF set: memory
/// order is the opposite of port order).
fn reverse_elements(buf: &mut [u8], size: usize) {
    buf.reverse();
    for e in buf.chunks_mut(size) {
        e.reverse();
    }
}

fn fault_to_guest<C: GuestCpu>(cpu: &mut C, e: LinearError) -> Start {
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
        LinearError::NotRam => Start::Exit(internal(KVM_INTERNAL_ERROR_EMULATION, &[cpu.rip()])),
    }
}

/// Starts an INS/OUTS the guest just exited on.
pub fn start<B: Backend>(
    vc: &mut KvmVcpu<B>,
    env: &VmEnv,
    cd: &mut GuestRam,
    run_gpa: u64,
    io: IoAccess,
) -> Start {
    let cpu = &mut vc.cpu;
    let Some(op) = crate::vcpu::string_io_at_rip(cpu, env) else {
        return Start::Exit(internal(
            KVM_INTERNAL_ERROR_EMULATION,
            &[cpu.rip(), u64::from(io.port)],
        ));
    };
    let mask = mask_of(op.addr_size);
    let g = *cpu.gprs();
    let count = if op.rep { g.rcx & mask } else { 1 };
    if count == 0 {
        cpu.skip_instruction(op.len);
        return Start::Resume;
    }
    let size = u64::from(io.size);
    let backward = cpu.rflags() & RFLAGS_DF != 0;
    let long = cpu.mode() == CpuMode::Long64;
    let (seg, ea) = if io.input {
        (SegmentReg::Es, g.rdi & mask)
    } else {
        (op.segment, g.rsi & mask)
    };
    // In 64-bit mode only FS and GS have a base (SDM Vol. 3A 3.4.4).
    let base = if !long || matches!(seg, SegmentReg::Fs | SegmentReg::Gs) {
        cpu.segment(seg).base
    } else {
        0
    };
    let mut linear = base.wrapping_add(ea);
    if !long {
        linear &= 0xffff_ffff;
    }
    // Elements on this page, in the direction of travel, that do not wrap
    // the effective address.
    let off = linear % PAGE;
    let (in_page, in_range) = if backward {
        (off / size + 1, ea / size + 1)
    } else {
        (
            (PAGE - off) / size,
            mask.wrapping_sub(ea).saturating_add(1) / size,
        )
    };
    let n = count
        .min(MAX_BATCH_BYTES as u64 / size)
        .min(in_page)
        .min(in_range)
        .max(1);
    let batch = StringBatch {
        input: io.input,
        size: io.size,
        n: n as u16,
        len: op.len,
        rep: op.rep,
        mask,
        start: if backward {
            linear.wrapping_sub((n - 1) * size)
        } else {
            linear
        },
        backward,
    };
    let data_gpa = GuestPhys::new(run_gpa + PIO_DATA_OFFSET);
    if io.input {
        if let Err(e) = linear::check_write_ram(cpu, env, batch.start, batch.bytes()) {
            return fault_to_guest(cpu, e);
        }
    } else {
        let mut buf = [0u8; MAX_BATCH_BYTES];
        let buf = &mut buf[..batch.bytes()];
        if let Err(e) = linear::read(cpu, env, batch.start, buf) {
            return fault_to_guest(cpu, e);
        }
        if backward {
            reverse_elements(buf, usize::from(io.size));
        }
        if !cd.write(data_gpa, buf) {
            return Start::Exit(internal(KVM_INTERNAL_ERROR_EMULATION, &[cpu.rip()]));
        }
    }
    vc.pending = Some(Pending::String(batch));
    Start::Exit(io_exit(io, u32::from(batch.n)))
}

/// Finishes a batch on the next RUN: INS data goes to the guest's memory,
/// then RSI/RDI and RCX move on; the instruction is stepped over once the
/// count runs out.
pub fn complete<C: GuestCpu>(
    cpu: &mut C,
    env: &mut VmEnv,
    cd: &GuestRam,
    run_gpa: u64,
    b: StringBatch,
) -> Result<(), i32> {
    if b.input {
        let mut buf = [0u8; MAX_BATCH_BYTES];
        let buf = &mut buf[..b.bytes()];
        if !cd.read(GuestPhys::new(run_gpa + PIO_DATA_OFFSET), buf) {
            return Err(abi::kvm::errno::EFAULT);
        }
        if b.backward {
            reverse_elements(buf, usize::from(b.size));
        }
        match linear::write(cpu, env, b.start, buf) {
            Ok(()) | Err(LinearError::NotRam) => {}
            // The mapping changed since the exit (it was checked then).
            Err(e @ (LinearError::PageFault { .. } | LinearError::NonCanonical)) => {
                let _ = fault_to_guest(cpu, e);
                return Ok(());
            }
        }
    }
    let bytes = b.bytes() as u64;
    let delta = if b.backward {
        bytes.wrapping_neg()
    } else {
        bytes
    };
    let g = cpu.gprs();
    if b.input {
        g.rdi = advance(g.rdi, delta, b.mask);
    } else {
        g.rsi = advance(g.rsi, delta, b.mask);
    }
    let mut done = true;
    if b.rep {
        g.rcx = advance(g.rcx, u64::from(b.n).wrapping_neg(), b.mask);
        done = g.rcx & b.mask == 0;
    }
    if done {
        cpu.skip_instruction(b.len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_updates_follow_the_address_size() {
        assert_eq!(advance(0xdead_0000_ffff, 1, 0xffff), 0xdead_0000_0000);
        assert_eq!(advance(0xdead_ffff_ffff, 2, 0xffff_ffff), 1);
        assert_eq!(advance(0x1000, 4u64.wrapping_neg(), u64::MAX), 0xffc);
    }

    fn outs_batch(n: u16, rep: bool, mask: u64, backward: bool) -> StringBatch {
        StringBatch {
            input: false,
            size: 2,
            n,
            len: 2,
            rep,
            mask,
            start: 0,
            backward,
        }
    }

    /// A long-mode vCPU at RIP 0x1000 with RSI and RCX set.
    fn cpu(rsi: u64, rcx: u64) -> crate::vcpu::tests::Fake {
        let mut cpu = crate::vcpu::tests::Fake {
            rip: 0x1000,
            cr0: 0x8000_0011,
            efer: 0x500,
            cs_ar: crate::virt::regs::ar::L,
            ..Default::default()
        };
        cpu.gprs.rsi = rsi;
        cpu.gprs.rcx = rcx;
        cpu
    }

    fn finish(cpu: &mut crate::vcpu::tests::Fake, b: StringBatch) {
        let mut env = crate::vcpu::tests::env();
        let cd = GuestRam::empty();
        assert_eq!(complete(cpu, &mut env, &cd, 0, b), Ok(()));
    }

    #[test]
    fn a_rep_batch_runs_the_instruction_again_until_rcx_is_zero() {
        let mut c = cpu(0x2000, 10);
        finish(&mut c, outs_batch(4, true, u64::MAX, false));
        assert_eq!((c.gprs.rsi, c.gprs.rcx, c.rip), (0x2008, 6, 0x1000));
        finish(&mut c, outs_batch(6, true, u64::MAX, false));
        assert_eq!((c.gprs.rsi, c.gprs.rcx, c.rip), (0x200c + 8, 0, 0x1002));
    }

    #[test]
    fn without_rep_one_element_and_the_instruction_is_done() {
        let mut c = cpu(0x2000, 7);
        finish(&mut c, outs_batch(1, false, u64::MAX, true));
        assert_eq!((c.gprs.rsi, c.gprs.rcx, c.rip), (0x1ffe, 7, 0x1002));
    }

    #[test]
    fn sixteen_bit_addresses_wrap_and_keep_the_upper_bits() {
        let mut c = cpu(0xaaaa_0000_fffe, 0x5555_0000_0001);
        finish(&mut c, outs_batch(1, true, 0xffff, false));
        assert_eq!(c.gprs.rsi, 0xaaaa_0000_0000);
        assert_eq!(c.gprs.rcx, 0x5555_0000_0000);
        assert_eq!(c.rip, 0x1002);
    }

    #[test]
    fn backward_data_reverses_elements_not_bytes() {
        let mut b = [1, 2, 3, 4, 5, 6];
        reverse_elements(&mut b, 2);
        assert_eq!(b, [5, 6, 3, 4, 1, 2]);
    }
}
