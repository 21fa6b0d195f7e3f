//! Checks at boot that the Mojito back end (`crate::mojito`) maps every
//! `vmm::api` method to its request correctly — also the ones the run loop
//! does not use yet (MSRs, FPU, XSAVE, slot deletion, ENABLE_CAP,
//! KVM_SIGNAL_MSI and KVM_SET_GSI_ROUTING without an irqchip, kicks) —
//! on a VM of its own that never runs. A wrong answer is a `control: FAIL`
//! line (which the boot tests look for), never a panic.

use alloc::format;
use alloc::string::String;

use abi::kvm::errno::{EEXIST, EINTR, EINVAL, ENOENT};
use abi::kvm::{
    KVM_CAP_EXIT_HYPERCALL, KVM_CAP_X86_MSR_FILTER, KVM_HC_MAP_GPA_RANGE, kvm_enable_cap, kvm_fpu,
    kvm_irq_routing_msi, kvm_msi, kvm_msr_entry,
};
use vmm::api::{GuestMemory, Kick, System, Vcpu, Vm};

use crate::mojito::Mojito;
use crate::println;

const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// An MSR no CPU has.
const NO_SUCH_MSR: u32 = 0x4b56_0000;

struct Checks {
    run: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.run += 1;
        if !ok {
            self.failed += 1;
            println!("control: FAIL Mojito back end: {what}: {}", detail());
        }
    }
}

fn msr(index: u32, data: u64) -> kvm_msr_entry {
    kvm_msr_entry {
        index,
        reserved: 0,
        data,
    }
}

/// Runs the checks and prints a summary line; false if any failed.
pub fn run() -> bool {
    let mut c = Checks { run: 0, failed: 0 };
    let sys = Mojito;
    let v = sys.api_version();
    c.check("api_version", v == Ok(12), || format!("{v:?}"));
    let size = sys.vcpu_mmap_size();
    c.check("vcpu_mmap_size", size == Ok(8192), || format!("{size:?}"));
    let cpuid = sys.supported_cpuid();
    let signed = cpuid.as_ref().is_ok_and(|t| {
        t.iter()
            .any(|e| e.function == 0x4000_0000 && e.ebx == u32::from_le_bytes(*b"Moji"))
    });
    c.check("supported_cpuid has MojitoMojito", signed, || {
        format!("{} entries", cpuid.as_ref().map_or(0, |t| t.len()))
    });
    let mut vm = match sys.create_vm() {
        Ok(vm) => vm,
        Err(e) => {
            c.check("create_vm", false, || format!("-{e}"));
            return false;
        }
    };

    // Memory slots: set, no double use, delete, set again.
    let set = vm
        .alloc_memory(2 << 20)
        .and_then(|m| vm.set_user_memory_region(0, 0, 0, m));
    c.check("set_user_memory_region", set.is_ok(), || format!("{set:?}"));
    let again = vm
        .alloc_memory(4096)
        .and_then(|m| vm.set_user_memory_region(0, 0, 0x40_0000, m));
    c.check("a used slot", again == Err(EEXIST), || format!("{again:?}"));
    let len = vm.memory(0).map(|r| r.len());
    c.check("memory", len == Some(2 << 20), || format!("{len:?}"));
    let deleted = vm.delete_user_memory_region(0);
    let back = deleted.as_ref().map(|m| m.ram().len());
    c.check("delete_user_memory_region", back == Ok(2 << 20), || {
        format!("{back:?}")
    });
    let gone = vm.delete_user_memory_region(0).map(|_| ());
    c.check("deleting a free slot", gone == Err(ENOENT), || {
        format!("{gone:?}")
    });
    let reset = deleted.and_then(|m| vm.set_user_memory_region(0, 0, 0, m));
    c.check("a deleted slot's memory set again", reset.is_ok(), || {
        format!("{reset:?}")
    });

    // The MSR filter: offered; a deny-all filter without ranges is
    // refused as KVM refuses it; an allow-all one with a range is set.
    let filter = vm.check_extension(KVM_CAP_X86_MSR_FILTER);
    let refused = vm.set_msr_filter(abi::kvm::KVM_MSR_FILTER_DEFAULT_DENY, &[]);
    let allowed = [0xffu8; 8];
    let range = vmm::api::MsrFilterRange {
        flags: abi::kvm::KVM_MSR_FILTER_READ,
        base: 0x10,
        nmsrs: 64,
        bitmap: &allowed,
    };
    let set = vm.set_msr_filter(abi::kvm::KVM_MSR_FILTER_DEFAULT_ALLOW, &[range]);
    c.check(
        "MSR filter: the capability reads 1, an empty deny-all EINVAL, a range set",
        filter == Ok(1) && refused == Err(EINVAL) && set.is_ok() && sys.refuses_mojito_msrs(),
        || format!("{filter:?}, {refused:?}, {set:?}"),
    );
    let cap = kvm_enable_cap {
        cap: KVM_CAP_EXIT_HYPERCALL,
        args: [1 << KVM_HC_MAP_GPA_RANGE, 0, 0, 0],
        ..Default::default()
    };
    let enabled = vm.enable_cap(&cap);
    c.check(
        "enable_cap(KVM_CAP_EXIT_HYPERCALL)",
        enabled.is_ok(),
        || format!("{enabled:?}"),
    );

    // An MSI needs an in-kernel irqchip (this VM has none): KVM's EINVAL.
    let msi = kvm_msi {
        address_lo: abi::guest::MSI_ADDRESS_APIC0,
        data: 0x58,
        ..Default::default()
    };
    let sent = vm.signal_msi(&msi);
    c.check("signal_msi without an irqchip", sent == Err(EINVAL), || {
        format!("{sent:?}")
    });
    // So do routes.
    let route = kvm_irq_routing_msi {
        address_lo: abi::guest::MSI_ADDRESS_APIC0,
        data: 0x58,
        ..Default::default()
    };
    let routed = vm.set_gsi_routing(&[(5, route, 0)]);
    c.check(
        "set_gsi_routing without an irqchip",
        routed == Err(EINVAL),
        || format!("{routed:?}"),
    );

    let mut vcpu = match vm.create_vcpu(0) {
        Ok(v) => v,
        Err(e) => {
            c.check("create_vcpu", false, || format!("-{e}"));
            return false;
        }
    };
    // Registers round trip.
    let regs = vcpu.get_regs().map(|mut r| {
        r.rax = 0x1234_5678_9abc_def0;
        r.r15 = 7;
        r
    });
    let same = regs.and_then(|r| {
        vcpu.set_regs(&r)?;
        Ok(vcpu.get_regs()? == r)
    });
    c.check("set_regs / get_regs", same == Ok(true), || {
        format!("{same:?}")
    });
    let sregs = vcpu.get_sregs().and_then(|s| {
        vcpu.set_sregs(&s)?;
        Ok(vcpu.get_sregs()? == s)
    });
    c.check("get_sregs / set_sregs", sregs == Ok(true), || {
        format!("{sregs:?}")
    });
    let table = cpuid.map(|t| vmm::policy::mojito_look(&t));
    let cpuid_set = table.and_then(|t| vcpu.set_cpuid2(&t));
    c.check("set_cpuid2 (Mojito's look)", cpuid_set.is_ok(), || {
        format!("{cpuid_set:?}")
    });

    // MSRs: both written, read back; reading stops at an unknown one.
    let lstar = 0xffff_8000_0010_0000;
    let wrote = vcpu.set_msrs(&[msr(IA32_LSTAR, lstar), msr(IA32_KERNEL_GS_BASE, 0x5000)]);
    c.check("set_msrs", wrote == Ok(2), || format!("{wrote:?}"));
    let mut read = [
        msr(IA32_KERNEL_GS_BASE, 0),
        msr(IA32_LSTAR, 0),
        msr(NO_SUCH_MSR, 0),
    ];
    let n = vcpu.get_msrs(&mut read);
    c.check(
        "get_msrs reads back and stops at an unknown MSR",
        n == Ok(2) && read[0].data == 0x5000 && read[1].data == lstar,
        || format!("{n:?} {read:x?}"),
    );

    // FPU and XSAVE.
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        xmm: [[0xa5; 16]; 16],
        ..Default::default()
    };
    let fpu_back = vcpu.set_fpu(&fpu).and_then(|()| vcpu.get_fpu());
    c.check(
        "set_fpu / get_fpu",
        fpu_back.is_ok_and(|f| f.xmm == fpu.xmm && f.mxcsr == fpu.mxcsr && f.fcw == fpu.fcw),
        || format!("{:?}", fpu_back.map(|f| (f.fcw, f.mxcsr))),
    );
    let xsave = vcpu.get_xsave().and_then(|x| vcpu.set_xsave(&x));
    c.check("get_xsave / set_xsave", xsave.is_ok(), || {
        format!("{xsave:?}")
    });

    // A kick makes the next RUN return EINTR without entering the guest
    // (whose reset RIP has no memory behind it), and is used up by it.
    vcpu.kicker().kick();
    let kicked = vcpu.run().map(|_| ());
    let cleared = vcpu.run_page().run().immediate_exit == 0;
    c.check(
        "a kick ends the next run with EINTR",
        kicked == Err(EINTR) && cleared,
        || format!("{kicked:?}, immediate_exit cleared: {cleared}"),
    );
    drop(vcpu);
    drop(vm);
    if c.failed == 0 {
        println!(
            "control: Mojito back end: {} checks, each as vmm::api says",
            c.run
        );
    }
    c.failed == 0
}
