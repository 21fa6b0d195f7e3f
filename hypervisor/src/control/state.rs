//! The vCPU-state requests beyond registers: MSRs (`KVM_GET/SET_MSRS`,
//! `KVM_GET_MSR_INDEX_LIST`), CPUID (`KVM_SET_CPUID2`,
//! `KVM_GET_SUPPORTED_CPUID`) and extended state (`KVM_GET/SET_FPU`,
//! `KVM_GET/SET_XSAVE`, `KVM_GET/SET_XCRS`).
//!
//! While the control domain makes these requests it owns the CPU, so a
//! guest vCPU's lazily switched state is in its save area, not in the CPU:
//! that is what these read and write. Everything written is checked first
//! so that loading it later can never fault in the hypervisor (XRSTOR and
//! WRMSR #GP on bad values).

use crate::arch::msr as m;
use crate::arch::xsave::xcr0_valid;
use crate::guest::GuestRam;
use crate::mm::{GuestPhys, phys};
use crate::vcpu::lazy::HostXstate;
use crate::virt::{Backend, GuestCpu};
use crate::vm::VmEnv;
use abi::kvm::errno::{E2BIG, EFAULT, EINVAL};
use abi::kvm::{
    KVM_CPUID_FLAG_SIGNIFCANT_INDEX, kvm_cpuid_entry2, kvm_fpu, kvm_msr_entry, kvm_xcr, kvm_xcrs,
};
use alloc::vec::Vec;

/// Most entries a CPUID table may have (KVM's `KVM_MAX_CPUID_ENTRIES`).
pub const MAX_CPUID_ENTRIES: u32 = 256;
/// Most MSRs one `KVM_GET/SET_MSRS` handles (KVM's `MAX_IO_MSRS`).
pub const MAX_IO_MSRS: u32 = 256;

/// The MSRs `KVM_GET/SET_MSRS` reach, which `KVM_GET_MSR_INDEX_LIST` lists.
pub const MSRS: &[u32] = &[
    m::IA32_SYSENTER_CS,
    m::IA32_SYSENTER_ESP,
    m::IA32_SYSENTER_EIP,
    m::IA32_STAR,
    m::IA32_LSTAR,
    m::IA32_CSTAR,
    m::IA32_FMASK,
    m::IA32_KERNEL_GS_BASE,
    m::IA32_FS_BASE,
    m::IA32_GS_BASE,
    m::IA32_TSC_AUX,
    m::IA32_EFER,
    m::IA32_PAT,
    m::IA32_TSC,
    m::IA32_MTRR_DEF_TYPE,
    m::IA32_MISC_ENABLE,
    crate::vcpu::pvclock::MSR_KVM_WALL_CLOCK,
    crate::vcpu::pvclock::MSR_KVM_SYSTEM_TIME,
    crate::vcpu::pvclock::MSR_KVM_WALL_CLOCK_NEW,
    crate::vcpu::pvclock::MSR_KVM_SYSTEM_TIME_NEW,
];

/// Reads `n` entries of type `T` that follow an 8-byte header at `gpa`.
fn read_array<T: super::hypercall::Pod>(ram: &GuestRam, gpa: u64, n: u32) -> Result<Vec<T>, i32> {
    let mut v = Vec::new();
    v.try_reserve_exact(n as usize)
        .map_err(|_| abi::kvm::errno::ENOMEM)?;
    let size = core::mem::size_of::<T>() as u64;
    for i in 0..u64::from(n) {
        v.push(super::hypercall::read_arg(ram, gpa + 8 + i * size)?);
    }
    Ok(v)
}

fn read_u32(ram: &GuestRam, gpa: u64) -> Result<u32, i32> {
    let mut b = [0u8; 4];
    if ram.read(GuestPhys::new(gpa), &mut b) {
        Ok(u32::from_le_bytes(b))
    } else {
        Err(EFAULT)
    }
}

fn write_u32(ram: &mut GuestRam, gpa: u64, v: u32) -> Result<(), i32> {
    if ram.write(GuestPhys::new(gpa), &v.to_le_bytes()) {
        Ok(())
    } else {
        Err(EFAULT)
    }
}

/// KVM_GET_SUPPORTED_CPUID: the default policy's entries. With `nent` too
/// small, -E2BIG and `nent` set to what is needed (KVM leaves `nent` as it
/// was; setting it saves a VMM its guessing loop and breaks none).
pub fn get_supported_cpuid(
    ram: &mut GuestRam,
    gpa: u64,
    table: &crate::vcpu::cpuid::CpuidTable,
) -> Result<u64, i32> {
    let nent = read_u32(ram, gpa)?;
    let count = table.len() as u32;
    if nent < count {
        write_u32(ram, gpa, count)?;
        return Err(E2BIG);
    }
    for (i, (leaf, subleaf, indexed, mut r)) in table.entries().enumerate() {
        if leaf == 1 {
            r[2] |= crate::vcpu::cpuid::LAPIC_ECX;
            r[3] |= crate::vcpu::cpuid::LAPIC_EDX;
        }
        let e = kvm_cpuid_entry2 {
            function: leaf,
            index: subleaf,
            flags: if indexed {
                KVM_CPUID_FLAG_SIGNIFCANT_INDEX
            } else {
                0
            },
            eax: r[0],
            ebx: r[1],
            ecx: r[2],
            edx: r[3],
            padding: [0; 3],
        };
        super::hypercall::write_arg(ram, gpa + 8 + i as u64 * 40, &e)?;
    }
    write_u32(ram, gpa, count)?;
    Ok(0)
}

/// KVM_SET_CPUID2: the VMM's table, restricted to the policy (D9).
pub fn set_cpuid2(
    cd: &GuestRam,
    gpa: u64,
    vm: &mut VmEnv,
    default: &crate::vcpu::cpuid::CpuidTable,
    lapic: bool,
) -> Result<u64, i32> {
    let nent = read_u32(cd, gpa)?;
    if nent > MAX_CPUID_ENTRIES {
        return Err(E2BIG);
    }
    let entries: Vec<kvm_cpuid_entry2> = read_array(cd, gpa, nent)?;
    let given = entries
        .iter()
        .map(|e| (e.function, e.index, [e.eax, e.ebx, e.ecx, e.edx]));
    vm.cpuid = default
        .restrict(given, lapic)
        .ok_or(abi::kvm::errno::ENOMEM)?;
    Ok(0)
}

/// KVM_GET_MSR_INDEX_LIST: with `nmsrs` too small, -E2BIG and `nmsrs` set.
pub fn get_msr_index_list(ram: &mut GuestRam, gpa: u64) -> Result<u64, i32> {
    let n = read_u32(ram, gpa)?;
    write_u32(ram, gpa, MSRS.len() as u32)?;
    if (n as usize) < MSRS.len() {
        return Err(E2BIG);
    }
    for (i, idx) in MSRS.iter().enumerate() {
        write_u32(ram, gpa + 4 + 4 * i as u64, *idx)?;
    }
    Ok(0)
}

fn get_msr<B: Backend>(cpu: &B::Vcpu, env: &VmEnv, index: u32) -> Option<u64> {
    if !MSRS.contains(&index) {
        return None;
    }
    cpu.hw_msr(index)
        .or_else(|| env.lazy.msr::<B>(index))
        .or_else(|| crate::vcpu::msr::read(cpu, &env.msrs, index).ok())
}

fn set_msr<B: Backend>(cpu: &mut B::Vcpu, env: &mut VmEnv, index: u32, value: u64) -> bool {
    if !MSRS.contains(&index) {
        return false;
    }
    if cpu.hw_msr(index).is_some() {
        return cpu.set_hw_msr(index, value);
    }
    if env.lazy.msr::<B>(index).is_some() {
        return env.lazy.set_msr::<B>(index, value);
    }
    crate::vcpu::write_msr(cpu, env, index, value).is_ok()
}

/// KVM_GET_MSRS / KVM_SET_MSRS: returns how many entries were done, in
/// order, stopping at the first MSR that is not supported or not accepted.
pub fn msrs<B: Backend>(
    cd: &mut GuestRam,
    gpa: u64,
    cpu: &mut B::Vcpu,
    env: &mut VmEnv,
    write: bool,
) -> Result<u64, i32> {
    let n = read_u32(cd, gpa)?;
    if n > MAX_IO_MSRS {
        return Err(E2BIG);
    }
    let mut entries: Vec<kvm_msr_entry> = read_array(cd, gpa, n)?;
    let mut done = 0u64;
    for (i, e) in entries.iter_mut().enumerate() {
        if write {
            if !set_msr::<B>(cpu, env, e.index, e.data) {
                break;
            }
        } else {
            match get_msr::<B>(cpu, env, e.index) {
                Some(v) => {
                    e.data = v;
                    super::hypercall::write_arg(cd, gpa + 8 + 16 * i as u64, e)?;
                }
                None => break,
            }
        }
        done += 1;
    }
    Ok(done)
}

/// Offsets in the FXSAVE/XSAVE legacy region (SDM Vol. 1 Table 10-2) and
/// the XSAVE header (13.4.2).
mod area {
    pub const FCW: usize = 0;
    pub const FSW: usize = 2;
    pub const FTW: usize = 4;
    pub const FOP: usize = 6;
    pub const FIP: usize = 8;
    pub const FDP: usize = 16;
    pub const MXCSR: usize = 24;
    pub const ST0: usize = 32;
    pub const XMM0: usize = 160;
    pub const LEGACY: usize = 512;
    pub const XSTATE_BV: usize = 512;
    pub const XCOMP_BV: usize = 520;
    pub const HEADER_END: usize = 576;
}

/// A vCPU's save area as bytes.
fn area_bytes(env: &VmEnv) -> &'static mut [u8] {
    let (pa, len) = env.lazy.area();
    // SAFETY: the area belongs to this vCPU (`Extended::new`), `len` is its
    // size, and the vCPU does not run while the control domain's request is
    // served, so nothing else touches it now.
    unsafe { core::slice::from_raw_parts_mut(phys::ptr::<u8>(pa), len as usize) }
}

/// KVM_GET_FPU.
pub fn get_fpu(env: &VmEnv) -> kvm_fpu {
    let a = area_bytes(env);
    let u16_at = |o: usize| u16::from_le_bytes([a[o], a[o + 1]]);
    let u64_at = |o: usize| u64::from_le_bytes(a[o..o + 8].try_into().unwrap_or([0; 8]));
    let mut f = kvm_fpu {
        fcw: u16_at(area::FCW),
        fsw: u16_at(area::FSW),
        ftwx: a[area::FTW],
        last_opcode: u16_at(area::FOP),
        last_ip: u64_at(area::FIP),
        last_dp: u64_at(area::FDP),
        mxcsr: u32::from_le_bytes(a[area::MXCSR..area::MXCSR + 4].try_into().unwrap_or([0; 4])),
        ..Default::default()
    };
    for (i, r) in f.fpr.iter_mut().enumerate() {
        r.copy_from_slice(&a[area::ST0 + 16 * i..area::ST0 + 16 * i + 16]);
    }
    for (i, r) in f.xmm.iter_mut().enumerate() {
        r.copy_from_slice(&a[area::XMM0 + 16 * i..area::XMM0 + 16 * i + 16]);
    }
    f
}

/// KVM_SET_FPU. An MXCSR with bits the CPU does not have is -EINVAL (it
/// would make the restore fault).
pub fn set_fpu(env: &mut VmEnv, f: &kvm_fpu, host: &HostXstate) -> Result<u64, i32> {
    if f.mxcsr & !host.mxcsr_mask != 0 {
        return Err(EINVAL);
    }
    let a = area_bytes(env);
    a[area::FCW..area::FCW + 2].copy_from_slice(&f.fcw.to_le_bytes());
    a[area::FSW..area::FSW + 2].copy_from_slice(&f.fsw.to_le_bytes());
    a[area::FTW] = f.ftwx;
    a[area::FOP..area::FOP + 2].copy_from_slice(&f.last_opcode.to_le_bytes());
    a[area::FIP..area::FIP + 8].copy_from_slice(&f.last_ip.to_le_bytes());
    a[area::FDP..area::FDP + 8].copy_from_slice(&f.last_dp.to_le_bytes());
    a[area::MXCSR..area::MXCSR + 4].copy_from_slice(&f.mxcsr.to_le_bytes());
    for (i, r) in f.fpr.iter().enumerate() {
        a[area::ST0 + 16 * i..area::ST0 + 16 * i + 16].copy_from_slice(r);
    }
    for (i, r) in f.xmm.iter().enumerate() {
        a[area::XMM0 + 16 * i..area::XMM0 + 16 * i + 16].copy_from_slice(r);
    }
    if host.xsave {
        // The x87 and SSE components now hold values: mark them in use.
        let bv = u64::from_le_bytes(
            a[area::XSTATE_BV..area::XSTATE_BV + 8]
                .try_into()
                .unwrap_or([0; 8]),
        ) | 0b11;
        a[area::XSTATE_BV..area::XSTATE_BV + 8].copy_from_slice(&bv.to_le_bytes());
    }
    Ok(0)
}

/// KVM_GET_XSAVE into the control domain's `kvm_xsave` at `gpa`: the
/// standard-format image, zero beyond the save area.
pub fn get_xsave(cd: &mut GuestRam, gpa: u64, env: &VmEnv) -> Result<u64, i32> {
    let a = area_bytes(env);
    let n = a.len().min(4096);
    if !cd.write(GuestPhys::new(gpa), &a[..n]) || !cd.zero(GuestPhys::new(gpa + n as u64), 4096 - n)
    {
        return Err(EFAULT);
    }
    Ok(0)
}

/// KVM_SET_XSAVE from `kvm_xsave` at `gpa`. The image is copied, then
/// checked as XRSTOR checks it (SDM Vol. 1 13.8): standard format
/// (XCOMP_BV = 0), no component beyond what guests may use, the reserved
/// header bytes zero, and a valid MXCSR; otherwise -EINVAL and nothing
/// changes.
pub fn set_xsave(cd: &GuestRam, gpa: u64, env: &mut VmEnv, host: &HostXstate) -> Result<u64, i32> {
    let mut image = Vec::new();
    image
        .try_reserve_exact(4096)
        .map_err(|_| abi::kvm::errno::ENOMEM)?;
    image.resize(4096, 0u8);
    if !cd.read(GuestPhys::new(gpa), &mut image) {
        return Err(EFAULT);
    }
    let u64_at = |o: usize| u64::from_le_bytes(image[o..o + 8].try_into().unwrap_or([0; 8]));
    let mxcsr = u32::from_le_bytes(
        image[area::MXCSR..area::MXCSR + 4]
            .try_into()
            .unwrap_or([0; 4]),
    );
    if mxcsr & !host.mxcsr_mask != 0 {
        return Err(EINVAL);
    }
    let a = area_bytes(env);
    let n = if host.xsave {
        if u64_at(area::XSTATE_BV) & !host.xcr0_max != 0
            || u64_at(area::XCOMP_BV) != 0
            || image[area::XCOMP_BV + 8..area::HEADER_END]
                .iter()
                .any(|&b| b != 0)
        {
            return Err(EINVAL);
        }
        a.len().min(4096)
    } else {
        area::LEGACY
    };
    a[..n].copy_from_slice(&image[..n]);
    Ok(0)
}

/// KVM_GET_XCRS.
pub fn get_xcrs(env: &VmEnv) -> kvm_xcrs {
    let mut x = kvm_xcrs {
        nr_xcrs: 1,
        ..Default::default()
    };
    x.xcrs[0] = kvm_xcr {
        xcr: 0,
        reserved: 0,
        value: env.lazy.xcr0,
    };
    x
}

/// KVM_SET_XCRS: only XCR0, checked as XSETBV checks it.
pub fn set_xcrs(env: &mut VmEnv, x: &kvm_xcrs, host: &HostXstate) -> Result<u64, i32> {
    if x.flags != 0 || x.nr_xcrs as usize > x.xcrs.len() {
        return Err(EINVAL);
    }
    let mut xcr0 = env.lazy.xcr0;
    for e in x.xcrs.iter().take(x.nr_xcrs as usize) {
        if e.xcr != 0 || !host.xsave || !xcr0_valid(e.value, host.xcr0_max) {
            return Err(EINVAL);
        }
        xcr0 = e.value;
    }
    env.lazy.xcr0 = xcr0;
    Ok(0)
}
