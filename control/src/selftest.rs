//! Bad requests the hypervisor must refuse with KVM's exact errors and
//! survive (DESIGN.md D7): run at boot, before any guest, so the guests that
//! follow prove the hypervisor is still whole.

use crate::hv;
use crate::println;
use abi::kvm::errno::*;
use abi::kvm::mojito::{MOJITO_CLOSE, MOJITO_SET_RUN_PAGES, mojito_run_pages};
use abi::kvm::*;

struct Checks {
    run: u32,
    failed: u32,
}

impl Checks {
    fn expect(&mut self, what: &str, got: Result<u64, i32>, want: i32) {
        self.run += 1;
        if got != Err(want) {
            self.failed += 1;
            println!("control: FAIL bad request: {what}: got {got:?}, want -{want}");
        }
    }
}

/// An address far outside the control domain's RAM.
const NOT_OURS: u64 = 0x7fff_ffff_f000;

/// Runs the checks; `scratch` is 2 MiB of free, 2 MiB-aligned RAM of ours
/// and `boot_area` the guest-physical base of the hypervisor's boot area.
pub fn bad_requests(scratch: u64, boot_area: u64) -> bool {
    let mut c = Checks { run: 0, failed: 0 };
    // Unknown requests: KVM's answers per kind of handle.
    c.expect(
        "unknown request on the system",
        hv::system(0xdead_0000, 0),
        EINVAL,
    );
    c.expect(
        "request code above 32 bits",
        hv::call_raw(1 << 40, 0, 0),
        EINVAL,
    );
    c.expect("bad handle", hv::call(KVM_CREATE_VCPU, 999, 0), EBADF);
    c.expect("closing the system", hv::call(MOJITO_CLOSE, 0, 0), EINVAL);
    c.expect(
        "VM of an unknown type",
        hv::system(KVM_CREATE_VM, 7),
        EINVAL,
    );
    let Ok(vm) = hv::system(KVM_CREATE_VM, 0) else {
        println!("control: FAIL bad request: KVM_CREATE_VM failed");
        return false;
    };
    c.expect(
        "unknown request on a VM",
        hv::call(0xdead_0000, vm, 0),
        ENOTTY,
    );
    c.expect(
        "argument outside our RAM",
        hv::call(KVM_SET_USER_MEMORY_REGION, vm, NOT_OURS),
        EFAULT,
    );
    let region = |slot, flags, gpa, size, addr| kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: addr,
    };
    let set = |r: &kvm_userspace_memory_region| {
        hv::call(KVM_SET_USER_MEMORY_REGION, vm, r as *const _ as u64)
    };
    c.expect(
        "misaligned slot",
        set(&region(0, 0, 0x800, 0x1000, scratch)),
        EINVAL,
    );
    c.expect(
        "unknown slot flags",
        set(&region(0, 0x8000, 0, 0x1000, scratch)),
        EINVAL,
    );
    c.expect(
        "slot number too high",
        set(&region(4096, 0, 0, 0x1000, scratch)),
        EINVAL,
    );
    c.expect(
        "memory outside our RAM",
        set(&region(0, 0, 0, 0x1000, NOT_OURS)),
        EFAULT,
    );
    c.expect(
        "memory in the hypervisor's boot area",
        set(&region(0, 0, 0, 0x1000, boot_area)),
        EFAULT,
    );
    c.expect(
        "deleting a slot that does not exist",
        set(&region(3, 0, 0, 0, scratch)),
        EINVAL,
    );
    let ok = set(&region(0, 0, 0, 0x10_0000, scratch));
    if ok != Ok(0) {
        c.failed += 1;
        println!("control: FAIL bad request: a good slot was refused: {ok:?}");
    }
    c.expect(
        "overlapping slots",
        set(&region(1, 0, 0x8_0000, 0x10_0000, scratch)),
        EEXIST,
    );
    c.expect(
        "resizing a slot",
        set(&region(0, 0, 0, 0x20_0000, scratch)),
        EINVAL,
    );
    c.expect(
        "vCPU id beyond the maximum",
        hv::call(KVM_CREATE_VCPU, vm, 5),
        EINVAL,
    );
    match hv::call(KVM_CREATE_VCPU, vm, 0) {
        Ok(vcpu) => {
            c.expect("a second vCPU 0", hv::call(KVM_CREATE_VCPU, vm, 0), EEXIST);
            c.expect(
                "unknown request on a vCPU",
                hv::call(0xdead_0000, vcpu, 0),
                EINVAL,
            );
            c.expect(
                "KVM_RUN without run pages",
                hv::call(KVM_RUN, vcpu, 0),
                EINVAL,
            );
            let pages = mojito_run_pages {
                count: 1,
                gpa: scratch + 0x10_0000,
                ..Default::default()
            };
            c.expect(
                "too few run pages",
                hv::call(MOJITO_SET_RUN_PAGES, vcpu, &pages as *const _ as u64),
                EINVAL,
            );
            c.expect(
                "KVM_GET_REGS to outside our RAM",
                hv::call(KVM_GET_REGS, vcpu, NOT_OURS),
                EFAULT,
            );
            let mut sregs = kvm_sregs::default();
            if hv::call(KVM_GET_SREGS, vcpu, &mut sregs as *mut _ as u64).is_ok() {
                // EFER.LMA without long mode.
                sregs.efer |= 1 << 10;
                c.expect(
                    "KVM_SET_SREGS with EFER.LMA in real mode",
                    hv::call(KVM_SET_SREGS, vcpu, &sregs as *const _ as u64),
                    EINVAL,
                );
            }
            let _ = hv::call(MOJITO_CLOSE, vcpu, 0);
            c.expect("a closed vCPU", hv::call(KVM_RUN, vcpu, 0), EBADF);
        }
        Err(e) => {
            c.failed += 1;
            println!("control: FAIL bad request: KVM_CREATE_VCPU failed: -{e}");
        }
    }
    let _ = hv::call(MOJITO_CLOSE, vm, 0);
    c.expect("a closed VM", hv::call(KVM_CREATE_VCPU, vm, 0), EBADF);
    if c.failed == 0 {
        println!(
            "control: bad requests: {} checked, each refused as KVM refuses it",
            c.run
        );
    }
    c.failed == 0
}
