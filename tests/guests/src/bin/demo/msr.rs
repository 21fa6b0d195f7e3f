//! Mojito's MSR policy as a guest sees it: EFER shows long mode and no SVM;
//! the MSRs an OS programs keep what it writes; the virtualization MSRs and
//! unknown ones raise #GP.

use guests::cpu::{
    EFER_LMA, EFER_LME, EFER_SVME, MSR_EFER, MSR_FEATURE_CONTROL, MSR_KERNEL_GS_BASE, MSR_LSTAR,
    MSR_MTRR_DEF_TYPE, MSR_VM_HSAVE_PA, MSR_VMX_BASIC, rdmsr,
};
use guests::fault::{GP, try_rdmsr, try_wrmsr};
use guests::idt::exception_name;
use guests::{fail, println};

/// An index in no vendor's MSR ranges (Intel's architectural 0–0x1fff and
/// 0xc000_0000–0xc000_1fff, AMD's 0xc001_xxxx, the 0x4000_xxxx synthetic
/// ranges of hypervisors): every CPU and hypervisor must #GP.
const UNKNOWN_MSR: u32 = 0x1234_5678;

/// MTRRs enabled (E, bit 11), default type write-back (6).
const MTRR_ENABLED_WRITE_BACK: u64 = 0x806;

/// FEATURE_CONTROL lock (bit 0) and "VMX outside SMX" (bit 2): what a
/// guest would write to turn VMX on.
const FEATURE_CONTROL_LOCKED_VMX: u64 = 0x5;

pub fn check() {
    let efer = rdmsr(MSR_EFER);
    if efer & (EFER_LME | EFER_LMA) != EFER_LME | EFER_LMA {
        fail!("msr: EFER = {efer:#x}, LME and LMA not both set");
    }
    if efer & EFER_SVME != 0 {
        fail!("msr: EFER = {efer:#x}, SVME set");
    }
    println!("msr: EFER = {efer:#x} (LME, LMA set; SVME clear)");

    // Canonical addresses: WRMSR of a non-canonical one raises #GP.
    round_trip(
        "IA32_KERNEL_GS_BASE",
        MSR_KERNEL_GS_BASE,
        0xffff_8000_0bad_c000,
    );
    round_trip("IA32_LSTAR", MSR_LSTAR, 0xffff_ffff_8123_4560);
    round_trip(
        "IA32_MTRR_DEF_TYPE",
        MSR_MTRR_DEF_TYPE,
        MTRR_ENABLED_WRITE_BACK,
    );
    println!("msr: KERNEL_GS_BASE, LSTAR, MTRR_DEF_TYPE keep what was written");

    expect_gp("RDMSR VM_HSAVE_PA", try_rdmsr(MSR_VM_HSAVE_PA).map(|_| ()));
    expect_gp("RDMSR IA32_VMX_BASIC", try_rdmsr(MSR_VMX_BASIC).map(|_| ()));
    // SAFETY: were the write to succeed, it would only lock the MSR and
    // allow VMXON, which this guest never executes.
    let write = unsafe { try_wrmsr(MSR_FEATURE_CONTROL, FEATURE_CONTROL_LOCKED_VMX) };
    expect_gp("WRMSR IA32_FEATURE_CONTROL", write);
    expect_gp(
        "RDMSR of unknown MSR 0x12345678",
        try_rdmsr(UNKNOWN_MSR).map(|_| ()),
    );
    println!("msr: #GP on VM_HSAVE_PA, VMX_BASIC, FEATURE_CONTROL write, unknown MSR");
}

fn round_trip(name: &str, msr: u32, value: u64) {
    // SAFETY: none of these MSRs is in use here: no SYSCALL, no SWAPGS, and
    // write-back is the memory type the guest already runs with.
    if let Err(vector) = unsafe { try_wrmsr(msr, value) } {
        fail!(
            "msr: WRMSR {name} = {value:#x} raised {}",
            exception_name(vector.into())
        );
    }
    match try_rdmsr(msr) {
        Ok(read) if read == value => {}
        Ok(read) => fail!("msr: {name} reads {read:#x} after writing {value:#x}"),
        Err(vector) => fail!("msr: RDMSR {name} raised {}", exception_name(vector.into())),
    }
}

fn expect_gp(what: &str, outcome: Result<(), u8>) {
    match outcome {
        Err(GP) => {}
        Err(vector) => fail!(
            "msr: {what} raised {}, not #GP",
            exception_name(vector.into())
        ),
        Ok(()) => fail!("msr: {what} did not raise #GP"),
    }
}
