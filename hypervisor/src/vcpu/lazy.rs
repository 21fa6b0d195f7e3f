//! Switching the state the hardware leaves alone between vCPUs that share
//! a physical CPU (DESIGN.md D2): x87/SSE/AVX and XCR0, DR0–DR3 (and DR6,
//! CR2 and the syscall MSRs where the back end does not switch them), and
//! TSC_AUX. The hypervisor itself never uses any of it (it is built
//! soft-float, has no breakpoints and no SYSCALL entry), so a vCPU's values
//! stay live in the CPU across its exits and are saved and restored only
//! when another vCPU takes the CPU.

use crate::arch::instr::{self, rdmsr, wrmsr, xgetbv, xsetbv};
use crate::arch::msr;
use crate::arch::xsave::{FCW_DEFAULT, MXCSR_DEFAULT};
use crate::mm::{HostPhys, PAGE_SIZE, phys};
use crate::virt::{Backend, Frames, VirtError};
use core::arch::asm;

/// How the host saves extended state, fixed at boot.
#[derive(Clone, Copy, Debug)]
pub struct HostXstate {
    /// XSAVE is available (else FXSAVE: x87 and SSE only).
    pub xsave: bool,
    /// The XCR0 used while saving and restoring: every component any guest
    /// may enable.
    pub xcr0_max: u64,
    /// Bytes of the save area for `xcr0_max`.
    pub area_size: u64,
    /// IA32_TSC_AUX exists (RDTSCP or RDPID).
    pub tsc_aux: bool,
    /// MXCSR bits this CPU has (FXSAVE's MXCSR_MASK; SDM Vol. 1 11.6.6):
    /// restoring an MXCSR with others set faults.
    pub mxcsr_mask: u32,
}

/// MXCSR_MASK when FXSAVE reports 0 (SDM Vol. 1 11.6.6).
const MXCSR_MASK_DEFAULT: u32 = 0xffbf;

/// FXSAVE's MXCSR_MASK field.
fn mxcsr_mask() -> u32 {
    #[repr(C, align(16))]
    struct Fx([u8; 512]);
    let mut fx = Fx([0; 512]);
    // SAFETY: FXSAVE writes the 512-byte, 16-byte-aligned buffer; CR4.OSFXSR
    // is set (by `init`).
    unsafe { asm!("fxsave64 [{}]", in(reg) fx.0.as_mut_ptr(), options(nostack)) };
    match u32::from_le_bytes([fx.0[28], fx.0[29], fx.0[30], fx.0[31]]) {
        0 => MXCSR_MASK_DEFAULT,
        m => m,
    }
}

const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;

impl HostXstate {
    /// Enables FXSAVE/XSAVE for the host and sets XCR0 to the widest value
    /// guests may use.
    pub fn init() -> Self {
        let l1 = instr::cpuid(1, 0);
        let xsave = l1[2] & (1 << 26) != 0;
        let ext = instr::cpuid(0x8000_0001, 0);
        let l7 = instr::cpuid(7, 0);
        let tsc_aux = ext[3] & (1 << 27) != 0 || l7[2] & (1 << 22) != 0;
        // SAFETY: enabling FXSAVE/SSE state management (and XSAVE if the CPU
        // has it) changes nothing the soft-float hypervisor depends on.
        unsafe {
            let mut cr4 = instr::read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT;
            if xsave {
                cr4 |= CR4_OSXSAVE;
            }
            instr::write_cr4(cr4);
        }
        let mxcsr_mask = mxcsr_mask();
        if !xsave {
            return Self {
                xsave,
                xcr0_max: 0,
                area_size: 512,
                tsc_aux,
                mxcsr_mask,
            };
        }
        let d = instr::cpuid(0xd, 0);
        let supported = u64::from(d[0]) | (u64::from(d[3]) << 32);
        let xcr0_max = supported & crate::arch::xsave::GUEST_XCR0_MAX;
        // SAFETY: OSXSAVE is set and the value holds only supported
        // components, including x87 (bit 0 is always supported).
        unsafe { xsetbv(0, xcr0_max) };
        // EBX: the size for the XCR0 now in force.
        let area_size = u64::from(instr::cpuid(0xd, 0)[1]);
        Self {
            xsave,
            xcr0_max,
            area_size,
            tsc_aux,
            mxcsr_mask,
        }
    }
}

/// One vCPU's switched state.
pub struct Extended {
    area: HostPhys,
    frames: u64,
    pub xcr0: u64,
    /// DR0–DR3 while another vCPU has the CPU (a debugger's breakpoints
    /// while one holds them: `control::kvm::set_guest_debug`).
    pub dr: [u64; 4],
    dr6: u64,
    cr2: u64,
    syscall: [u64; 5],
    tsc_aux: u64,
}

const SYSCALL_MSRS: [u32; 5] = [
    msr::IA32_STAR,
    msr::IA32_LSTAR,
    msr::IA32_CSTAR,
    msr::IA32_FMASK,
    msr::IA32_KERNEL_GS_BASE,
];

/// XCR0 at reset: x87 only.
pub const XCR0_RESET: u64 = 1;
const DR6_RESET: u64 = 0xffff_0ff0;

impl Extended {
    /// The reset state: x87/SSE/AVX in their initial configuration (an
    /// XSAVE header with XSTATE_BV = 0 restores every component to its init
    /// state; the legacy region holds the default FCW and MXCSR).
    pub fn new(frames: &mut Frames, host: &HostXstate) -> Result<Self, VirtError> {
        let n = host.area_size.div_ceil(PAGE_SIZE).max(1);
        let area = frames.alloc_contiguous(n).ok_or(VirtError::NoMemory)?;
        // SAFETY: the frames were just allocated (and zeroed) for this vCPU;
        // FCW is at byte 0 and MXCSR at byte 24 of the legacy region (SDM
        // Vol. 1 Table 10-2).
        unsafe {
            phys::ptr::<u16>(area).write(FCW_DEFAULT);
            phys::ptr::<u32>(area).add(6).write(MXCSR_DEFAULT);
        }
        Ok(Self {
            area,
            frames: n,
            xcr0: XCR0_RESET,
            dr: [0; 4],
            dr6: DR6_RESET,
            cr2: 0,
            syscall: [0; 5],
            tsc_aux: 0,
        })
    }

    /// State with no save area, for host tests of the handlers (never
    /// loaded or saved).
    #[cfg(test)]
    pub fn detached() -> Self {
        Self {
            area: HostPhys::new(0),
            frames: 0,
            xcr0: XCR0_RESET,
            dr: [0; 4],
            dr6: DR6_RESET,
            cr2: 0,
            syscall: [0; 5],
            tsc_aux: 0,
        }
    }

    /// A saved MSR this module switches (the syscall MSRs where the back
    /// end does not, and TSC_AUX), while the vCPU does not own the CPU.
    pub fn msr<B: Backend>(&self, index: u32) -> Option<u64> {
        if index == msr::IA32_TSC_AUX {
            return Some(self.tsc_aux);
        }
        let i = SYSCALL_MSRS.iter().position(|&m| m == index)?;
        (!B::SWITCHES_SYSCALL_MSRS)
            .then(|| self.syscall.get(i).copied())
            .flatten()
    }

    /// Sets a saved MSR (see `msr`); false if this module does not keep it
    /// or the value would fault when loaded (non-canonical addresses,
    /// reserved bits).
    pub fn set_msr<B: Backend>(&mut self, index: u32, value: u64) -> bool {
        if index == msr::IA32_TSC_AUX {
            // Bits 63:32 are reserved (SDM Vol. 4 Table 2-2).
            if value >> 32 != 0 {
                return false;
            }
            self.tsc_aux = value;
            return true;
        }
        let Some(i) = SYSCALL_MSRS.iter().position(|&m| m == index) else {
            return false;
        };
        let canonical = ((value as i64) << 16 >> 16) as u64 == value;
        let ok = match index {
            msr::IA32_LSTAR | msr::IA32_CSTAR | msr::IA32_KERNEL_GS_BASE => canonical,
            msr::IA32_FMASK => value >> 32 == 0,
            _ => true,
        };
        if B::SWITCHES_SYSCALL_MSRS || !ok {
            return false;
        }
        match self.syscall.get_mut(i) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        }
    }

    /// The save area: the standard-format XSAVE image (or the FXSAVE image).
    pub fn area(&self) -> (HostPhys, u64) {
        (self.area, self.frames * PAGE_SIZE)
    }

    /// The saved CR2 (where the back end does not switch it).
    pub fn cr2(&self) -> u64 {
        self.cr2
    }

    /// Sets the CR2 the next `load` puts into the CPU.
    pub fn set_cr2(&mut self, v: u64) {
        self.cr2 = v;
    }

    /// Gives the save area back; the state must not be loaded or saved
    /// afterwards (the VM has stopped).
    pub fn free(&mut self, frames: &mut Frames) {
        for i in 0..core::mem::take(&mut self.frames) {
            frames.free(HostPhys::new(self.area.raw() + i * PAGE_SIZE));
        }
    }

    /// Saves this vCPU's live state from the CPU (another vCPU is about to
    /// run here).
    pub fn save<B: Backend>(&mut self, host: &HostXstate) {
        let area = phys::ptr::<u8>(self.area);
        // SAFETY: the area is this vCPU's, large enough for `xcr0_max`
        // (`HostXstate::area_size`) and 4 KiB-aligned; XCR0 is widened first
        // so every component any guest may use is saved.
        unsafe {
            if host.xsave {
                // The live XCR0 is the truth: the XSETBV intercept sees every
                // change on real hardware, but QEMU's TCG does not implement
                // it for SVM guests (observed on QEMU 7.2).
                self.xcr0 = xgetbv(0);
                xsetbv(0, host.xcr0_max);
                asm!("xsave64 [{}]", in(reg) area, in("eax") host.xcr0_max as u32,
                     in("edx") (host.xcr0_max >> 32) as u32, options(nostack));
            } else {
                asm!("fxsave64 [{}]", in(reg) area, options(nostack));
            }
        }
        self.dr = [
            instr::read_dr0(),
            instr::read_dr1(),
            instr::read_dr2(),
            instr::read_dr3(),
        ];
        if !B::SWITCHES_DR6 {
            self.dr6 = instr::read_dr6();
        }
        if !B::SWITCHES_CR2 {
            self.cr2 = instr::read_cr2();
        }
        if !B::SWITCHES_SYSCALL_MSRS {
            for (v, m) in self.syscall.iter_mut().zip(SYSCALL_MSRS) {
                // SAFETY: the syscall MSRs exist on every x86-64 CPU.
                *v = unsafe { rdmsr(m) };
            }
        }
        if host.tsc_aux {
            // SAFETY: checked that TSC_AUX exists.
            self.tsc_aux = unsafe { rdmsr(msr::IA32_TSC_AUX) };
        }
    }

    /// Puts this vCPU's state into the CPU (it is about to run here).
    pub fn load<B: Backend>(&self, host: &HostXstate) {
        let area = phys::ptr::<u8>(self.area);
        // SAFETY: as in `save`; the area holds a valid image (written by
        // `new` or `save`), and XCR0 is widened while restoring so that
        // components this vCPU disabled are loaded too (never left holding
        // another vCPU's values), then set to the vCPU's own value, which
        // the XSETBV handler validated.
        unsafe {
            if host.xsave {
                xsetbv(0, host.xcr0_max);
                asm!("xrstor64 [{}]", in(reg) area, in("eax") host.xcr0_max as u32,
                     in("edx") (host.xcr0_max >> 32) as u32, options(nostack));
                // Never more than the components saved and restored above.
                xsetbv(
                    0,
                    (self.xcr0 & host.xcr0_max) | crate::arch::xsave::xcr0::X87,
                );
            } else {
                asm!("fxrstor64 [{}]", in(reg) area, options(nostack));
            }
            instr::write_dr0(self.dr[0]);
            instr::write_dr1(self.dr[1]);
            instr::write_dr2(self.dr[2]);
            instr::write_dr3(self.dr[3]);
            if !B::SWITCHES_DR6 {
                instr::write_dr6(self.dr6);
            }
            if !B::SWITCHES_CR2 {
                instr::write_cr2(self.cr2);
            }
            if !B::SWITCHES_SYSCALL_MSRS {
                for (v, m) in self.syscall.iter().zip(SYSCALL_MSRS) {
                    wrmsr(m, *v);
                }
            }
            if host.tsc_aux {
                wrmsr(msr::IA32_TSC_AUX, self.tsc_aux);
            }
        }
    }
}
