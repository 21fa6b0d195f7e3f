//! Bad requests the hypervisor must refuse with KVM's exact errors and
//! survive (DESIGN.md D7): run at boot, before any guest, so the guests that
//! follow prove the hypervisor is still whole.

use crate::hv;
use crate::println;
use abi::kvm::errno::*;
use abi::kvm::mojito::{
    MOJITO_CLOSE, MOJITO_SET_COALESCED_RING, MOJITO_SET_RUN_PAGES, mojito_coalesced_ring,
    mojito_run_pages,
};
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
/// Mojito's own system requests with bad arguments: each refused before
/// anything happens (a power-off or reset that went ahead would end the
/// boot right here).
fn mojito_requests(c: &mut Checks) {
    use abi::kvm::mojito::*;
    c.expect(
        "power-off with an argument",
        hv::system(MOJITO_POWER_OFF, 1),
        EINVAL,
    );
    c.expect(
        "reboot with an argument",
        hv::system(MOJITO_REBOOT, 1),
        EINVAL,
    );
    c.expect(
        "layout with an argument",
        hv::system(MOJITO_LOG_LAYOUT, 1),
        EINVAL,
    );
    let info = |f: &dyn Fn(&mut mojito_info)| {
        let mut a = mojito_info::default();
        f(&mut a);
        hv::system(MOJITO_INFO, &mut a as *mut mojito_info as u64)
    };
    let start = |f: &dyn Fn(&mut mojito_start_cpu)| {
        let mut a = mojito_start_cpu {
            cpu: 1,
            rip: 0x1000,
            rsp: 0x2000,
            ..Default::default()
        };
        f(&mut a);
        hv::system(MOJITO_START_CPU, &mut a as *mut mojito_start_cpu as u64)
    };
    c.expect(
        "MOJITO_START_CPU with flags",
        start(&|a| a.flags = 1),
        EINVAL,
    );
    c.expect(
        "MOJITO_START_CPU with padding",
        start(&|a| a.padding[3] = 1),
        EINVAL,
    );
    c.expect(
        "MOJITO_START_CPU at a non-canonical RIP",
        start(&|a| a.rip = 1 << 63),
        EINVAL,
    );
    c.expect(
        "MOJITO_START_CPU with a non-canonical stack",
        start(&|a| a.rsp = 0x0000_8000_0000_0000),
        EINVAL,
    );
    c.expect("MOJITO_START_CPU for cpu0", start(&|a| a.cpu = 0), ENXIO);
    c.expect(
        "MOJITO_START_CPU for a CPU there is not",
        start(&|a| a.cpu = 4096),
        ENXIO,
    );
    c.expect(
        "MOJITO_START_CPU outside our RAM",
        hv::system(MOJITO_START_CPU, NOT_OURS),
        EFAULT,
    );
    c.expect(
        "MOJITO_KICK_CPU for a CPU there is not",
        hv::system(MOJITO_KICK_CPU, 4096),
        ENXIO,
    );
    c.expect(
        "MOJITO_KICK_CPU for a vCPU not started",
        hv::system(MOJITO_KICK_CPU, 15),
        ENXIO,
    );
    c.expect("MOJITO_INFO with flags", info(&|a| a.flags = 1), EINVAL);
    c.expect(
        "MOJITO_INFO with platform set",
        info(&|a| a.platform = 1),
        EINVAL,
    );
    c.expect(
        "MOJITO_INFO with padding",
        info(&|a| a.padding[4] = 1),
        EINVAL,
    );
    c.expect(
        "MOJITO_INFO with the RTC time set",
        info(&|a| a.rtc_tsc = 1),
        EINVAL,
    );
    c.expect(
        "MOJITO_INFO outside our RAM",
        hv::system(MOJITO_INFO, NOT_OURS),
        EFAULT,
    );
    let text = *b"x";
    let write = |f: &dyn Fn(&mut mojito_console_write)| {
        let mut a = mojito_console_write {
            len: 1,
            buf: text.as_ptr() as u64,
            ..Default::default()
        };
        f(&mut a);
        hv::system(
            MOJITO_CONSOLE_WRITE,
            &a as *const mojito_console_write as u64,
        )
    };
    c.expect(
        "MOJITO_CONSOLE_WRITE with flags",
        write(&|a| a.flags = 1),
        EINVAL,
    );
    c.expect(
        "MOJITO_CONSOLE_WRITE with padding",
        write(&|a| a.padding[1] = 1),
        EINVAL,
    );
    c.expect(
        "MOJITO_CONSOLE_WRITE of too much",
        write(&|a| a.len = MOJITO_CONSOLE_WRITE_MAX + 1),
        EINVAL,
    );
    c.expect(
        "MOJITO_CONSOLE_WRITE from outside our RAM",
        write(&|a| a.buf = NOT_OURS),
        EFAULT,
    );
    let mut buf = [0u8; 16];
    let mut read = |f: &dyn Fn(&mut mojito_log_read)| {
        let mut a = mojito_log_read {
            len: buf.len() as u32,
            buf: buf.as_mut_ptr() as u64,
            ..Default::default()
        };
        f(&mut a);
        hv::system(MOJITO_READ_LOG, &mut a as *mut mojito_log_read as u64)
    };
    c.expect(
        "MOJITO_READ_LOG with another flag",
        read(&|a| a.flags = 2),
        EINVAL,
    );
    c.expect(
        "MOJITO_READ_LOG at a position without the flag",
        read(&|a| a.at = 5),
        EINVAL,
    );
    c.expect(
        "MOJITO_READ_LOG with next set",
        read(&|a| a.next = 1),
        EINVAL,
    );
}

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
    mojito_requests(&mut c);
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
    // KVM_X86_SET_MSR_FILTER: KVM's refusals, in KVM's order.
    let bitmap = [0xffu8; 8];
    let filter = |flags, range_flags, nmsrs, bitmap: u64| {
        let mut f = kvm_msr_filter {
            flags,
            ..Default::default()
        };
        f.ranges[0] = kvm_msr_filter_range {
            flags: range_flags,
            nmsrs,
            base: 0,
            pad: 0,
            bitmap,
        };
        f
    };
    let here = bitmap.as_ptr() as u64;
    let read = KVM_MSR_FILTER_READ;
    for (what, f, errno) in [
        (
            "MSR filter with unknown flags",
            filter(2, read, 64, here),
            EINVAL,
        ),
        (
            "MSR filter range without flags",
            filter(0, 0, 64, here),
            EINVAL,
        ),
        (
            "MSR filter range with unknown flags",
            filter(0, 4, 64, here),
            EINVAL,
        ),
        (
            "MSR filter bitmap over 0x600 bytes",
            filter(0, read, 0x600 * 8 + 1, here),
            EINVAL,
        ),
        (
            "MSR filter denying all with no range",
            filter(KVM_MSR_FILTER_DEFAULT_DENY, read, 0, here),
            EINVAL,
        ),
        (
            "MSR filter bitmap outside our RAM",
            filter(0, read, 64, NOT_OURS),
            EFAULT,
        ),
    ] {
        c.expect(
            what,
            hv::call(KVM_X86_SET_MSR_FILTER, vm, &f as *const _ as u64),
            errno,
        );
    }
    // KVM_XEN_HVM_CONFIG: only the hypercall-page MSR is offered.
    let xen = kvm_xen_hvm_config {
        flags: KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
        msr: 0x4000_0000,
        ..Default::default()
    };
    c.expect(
        "KVM_XEN_HVM_CONFIG intercepting hypercalls",
        hv::call(KVM_XEN_HVM_CONFIG, vm, &xen as *const _ as u64),
        EINVAL,
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
        "moving a slot onto another backing",
        set(&region(0, 0, 0x40_0000, 0x10_0000, scratch + 0x1000)),
        EINVAL,
    );
    c.expect(
        "making a slot read-only",
        set(&region(0, KVM_MEM_READONLY, 0, 0x10_0000, scratch)),
        EINVAL,
    );
    let log = |slot, bitmap| kvm_dirty_log {
        slot,
        padding1: 0,
        dirty_bitmap: bitmap,
    };
    let get_log = |l: &kvm_dirty_log| hv::call(KVM_GET_DIRTY_LOG, vm, l as *const _ as u64);
    c.expect(
        "dirty log of a slot that does not log",
        get_log(&log(0, scratch)),
        ENOENT,
    );
    c.expect(
        "dirty log of a slot that does not exist",
        get_log(&log(7, scratch)),
        ENOENT,
    );
    c.expect(
        "dirty log of a slot number too high",
        get_log(&log(4096, scratch)),
        EINVAL,
    );
    c.expect(
        "dirty log with its argument outside our RAM",
        hv::call(KVM_GET_DIRTY_LOG, vm, NOT_OURS),
        EFAULT,
    );
    let ok = set(&region(
        0,
        KVM_MEM_LOG_DIRTY_PAGES,
        0x40_0000,
        0x10_0000,
        scratch,
    ));
    if ok != Ok(0) {
        c.failed += 1;
        println!("control: FAIL bad request: moving a slot and logging it was refused: {ok:?}");
    }
    c.expect(
        "dirty log into memory outside our RAM",
        get_log(&log(0, NOT_OURS)),
        EFAULT,
    );
    if get_log(&log(0, scratch + 0x1000)) != Ok(0) {
        c.failed += 1;
        println!("control: FAIL bad request: the dirty log of a logging slot was refused");
    }
    c.expect(
        "dirty log on the system handle",
        hv::system(KVM_GET_DIRTY_LOG, scratch),
        EINVAL,
    );
    c.expect(
        "vCPU id beyond the maximum",
        hv::call(KVM_CREATE_VCPU, vm, 256),
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
            let irq = |irq: u32| kvm_interrupt { irq };
            let interrupt = |i: &kvm_interrupt| hv::call(KVM_INTERRUPT, vcpu, i as *const _ as u64);
            c.expect("KVM_INTERRUPT of vector 256", interrupt(&irq(256)), EINVAL);
            // KVM takes a second one and keeps the last.
            if interrupt(&irq(0x20)) != Ok(0) || interrupt(&irq(0x21)) != Ok(0) {
                c.failed += 1;
                println!(
                    "control: FAIL bad request: KVM_INTERRUPT of vector 0x20 or 0x21 was refused"
                );
            }
            c.expect(
                "KVM_INTERRUPT on a VM handle",
                hv::call(KVM_INTERRUPT, vm, &irq(0x20) as *const _ as u64),
                ENOTTY,
            );
            let debug = |control| kvm_guest_debug {
                control,
                ..Default::default()
            };
            let set_debug =
                |d: &kvm_guest_debug| hv::call(KVM_SET_GUEST_DEBUG, vcpu, d as *const _ as u64);
            c.expect(
                "KVM_SET_GUEST_DEBUG with an unknown flag",
                set_debug(&debug(KVM_GUESTDBG_ENABLE | 0x8000)),
                EINVAL,
            );
            c.expect(
                "KVM_SET_GUEST_DEBUG injecting a #BP",
                set_debug(&debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_INJECT_BP)),
                EINVAL,
            );
            if set_debug(&debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP)) != Ok(0)
                || set_debug(&debug(0)) != Ok(0)
            {
                c.failed += 1;
                println!("control: FAIL bad request: KVM_SET_GUEST_DEBUG single-step was refused");
            }
            // The local APIC and its run states need the split irqchip.
            let mut lapic = kvm_lapic_state::default();
            c.expect(
                "KVM_GET_LAPIC without the split irqchip",
                hv::call(KVM_GET_LAPIC, vcpu, &mut lapic as *mut _ as u64),
                EINVAL,
            );
            let halted = kvm_mp_state {
                mp_state: KVM_MP_STATE_HALTED,
            };
            c.expect(
                "KVM_SET_MP_STATE halted without the split irqchip",
                hv::call(KVM_SET_MP_STATE, vcpu, &halted as *const _ as u64),
                EINVAL,
            );
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
    irqchip_requests(&mut c, scratch);
    coalesced_requests(&mut c, scratch);
    if c.failed == 0 {
        println!(
            "control: bad requests: {} checked, each refused as KVM refuses it",
            c.run
        );
    }
    c.failed == 0
}

/// The split irqchip's requests refused as KVM refuses them, on a VM of
/// its own: the MSI and routing requests without it, the capability's
/// limits and order, bad routing tables, and too many vCPUs.
fn irqchip_requests(c: &mut Checks, scratch: u64) {
    let Ok(vm) = hv::system(KVM_CREATE_VM, 0) else {
        c.failed += 1;
        println!("control: FAIL bad request: KVM_CREATE_VM for the irqchip checks failed");
        return;
    };
    let msi = |data: u32| kvm_msi {
        address_lo: 0xfee0_0000,
        data,
        ..Default::default()
    };
    let signal = |m: &kvm_msi| hv::call(KVM_SIGNAL_MSI, vm, m as *const _ as u64);
    // A routing table at `scratch`: a header and up to two MSI entries.
    let routing = |nr: u32, flags: u32, entries: &[(u32, u32, u32)]| {
        let head = scratch as *mut kvm_irq_routing;
        // SAFETY: `scratch` is 2 MiB of free RAM of ours.
        unsafe {
            head.write(kvm_irq_routing {
                nr,
                flags,
                ..Default::default()
            })
        };
        for (i, &(gsi, type_, data)) in entries.iter().enumerate() {
            let mut e = kvm_irq_routing_entry {
                gsi,
                type_,
                ..Default::default()
            };
            e.u.msi = kvm_irq_routing_msi {
                address_lo: 0xfee0_0000,
                data,
                ..Default::default()
            };
            let at = (scratch + 8) as *mut kvm_irq_routing_entry;
            // SAFETY: as above; the entries follow the header.
            unsafe { at.add(i).write(e) };
        }
        hv::call(KVM_SET_GSI_ROUTING, vm, scratch)
    };
    c.expect(
        "KVM_SIGNAL_MSI without the split irqchip",
        signal(&msi(0x40)),
        EINVAL,
    );
    c.expect(
        "KVM_SET_GSI_ROUTING without the split irqchip",
        routing(0, 0, &[]),
        EINVAL,
    );
    let split = |pins: u64| kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        args: [pins, 0, 0, 0],
        ..Default::default()
    };
    let enable = |e: &kvm_enable_cap| hv::call(KVM_ENABLE_CAP, vm, e as *const _ as u64);
    c.expect("a split irqchip of 49 pins", enable(&split(49)), EINVAL);
    if enable(&split(24)) != Ok(0) {
        c.failed += 1;
        println!("control: FAIL bad request: KVM_CAP_SPLIT_IRQCHIP was refused");
    }
    c.expect("the split irqchip twice", enable(&split(24)), EEXIST);
    // KVM's -1 for an MSI that addresses no APIC.
    c.expect("KVM_SIGNAL_MSI to no vCPU", signal(&msi(0x40)), EPERM);
    let msi_route = KVM_IRQ_ROUTING_MSI;
    c.expect("a routing table of 4097", routing(4097, 0, &[]), EINVAL);
    c.expect("a routing table with flags", routing(0, 1, &[]), EINVAL);
    c.expect(
        "an IOAPIC-pin route with the split irqchip",
        routing(1, 0, &[(2, KVM_IRQ_ROUTING_IRQCHIP, 0)]),
        EINVAL,
    );
    c.expect(
        "two routes for one GSI",
        routing(2, 0, &[(3, msi_route, 0x40), (3, msi_route, 0x41)]),
        EINVAL,
    );
    c.expect(
        "a route for GSI 4096",
        routing(1, 0, &[(4096, msi_route, 0x40)]),
        EINVAL,
    );
    c.expect(
        "a vCPU id of 256",
        hv::call(KVM_CREATE_VCPU, vm, 256),
        EINVAL,
    );
    let made = (0..8u64)
        .filter(|&id| hv::call(KVM_CREATE_VCPU, vm, id).is_ok())
        .count();
    if made != 8 {
        c.failed += 1;
        println!("control: FAIL bad request: {made} of 8 vCPUs made");
    }
    c.expect("a ninth vCPU", hv::call(KVM_CREATE_VCPU, vm, 8), EINVAL);
    let _ = hv::call(MOJITO_CLOSE, vm, 0);
}

/// The coalesced-I/O requests' refusals (docs/api.md §4.34), on a VM of
/// their own: MMIO zones, a bad `pio`, empty and out-of-range port ranges,
/// a full zone table, and bad ring pages.
fn coalesced_requests(c: &mut Checks, scratch: u64) {
    let Ok(vm) = hv::system(KVM_CREATE_VM, 0) else {
        c.failed += 1;
        println!("control: FAIL bad request: KVM_CREATE_VM for the coalesced checks failed");
        return;
    };
    let zone = |req: u32, addr: u64, size: u32, pio: u32| {
        let z = kvm_coalesced_mmio_zone { addr, size, pio };
        hv::call(req, vm, &z as *const _ as u64)
    };
    let reg = KVM_REGISTER_COALESCED_MMIO;
    c.expect(
        "an MMIO coalesced zone",
        zone(reg, 0xd000_0000, 4, 0),
        EINVAL,
    );
    c.expect(
        "a coalesced zone with pio 2",
        zone(reg, 0x3f8, 1, 2),
        EINVAL,
    );
    c.expect("an empty coalesced zone", zone(reg, 0x3f8, 0, 1), EINVAL);
    c.expect(
        "a coalesced zone past port 0xFFFF",
        zone(reg, 0xffff, 2, 1),
        EINVAL,
    );
    let unreg = KVM_UNREGISTER_COALESCED_MMIO;
    c.expect(
        "unregistering an MMIO zone",
        zone(unreg, 0x3f8, 1, 0),
        EINVAL,
    );
    let made = (0..16u64)
        .filter(|&i| zone(reg, 0x3f8 + i, 1, 1) == Ok(0))
        .count();
    if made != 16 {
        c.failed += 1;
        println!("control: FAIL bad request: {made} of 16 coalesced zones made");
    }
    c.expect("a 17th coalesced zone", zone(reg, 0x80, 1, 1), ENOSPC);
    let ring = |flags: u32, gpa: u64| {
        let r = mojito_coalesced_ring {
            flags,
            gpa,
            ..Default::default()
        };
        hv::call(MOJITO_SET_COALESCED_RING, vm, &r as *const _ as u64)
    };
    c.expect("a coalesced ring with flags", ring(1, scratch), EINVAL);
    c.expect("an unaligned coalesced ring", ring(0, scratch + 8), EINVAL);
    c.expect("a coalesced ring outside RAM", ring(0, 1 << 50), EINVAL);
    if ring(0, scratch) != Ok(0) || ring(0, 0) != Ok(0) || zone(unreg, 0x3f8, 1, 1) != Ok(0) {
        c.failed += 1;
        println!("control: FAIL request: a good coalesced ring or zone was refused");
    }
    let _ = hv::call(MOJITO_CLOSE, vm, 0);
}

/// The vCPU-state requests do what KVM's do: round trips and refusals.
/// `scratch` is 2 MiB of free RAM of ours.
pub fn state_requests(scratch: u64) -> bool {
    let mut c = Checks { run: 0, failed: 0 };
    let mut good = |what: &str, ok: bool| {
        c.run += 1;
        if !ok {
            c.failed += 1;
            println!("control: FAIL request: {what}");
        }
    };
    // KVM_CHECK_EXTENSION names what the requests rely on, and only that
    // (the split irqchip, not the whole in-kernel one).
    for (cap, want) in [
        (KVM_CAP_EXT_CPUID, 1),
        (KVM_CAP_XSAVE, 1),
        (KVM_CAP_XCRS, 1),
        (KVM_CAP_ENABLE_CAP_VM, 1),
        (KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE),
        (KVM_CAP_READONLY_MEM, 1),
        (KVM_CAP_SET_GUEST_DEBUG, 1),
        (KVM_CAP_X86_USER_SPACE_MSR, 1),
        (KVM_CAP_X86_MSR_FILTER, 1),
        (KVM_CAP_IRQCHIP, 0),
        (KVM_CAP_SPLIT_IRQCHIP, 1),
        (KVM_CAP_SIGNAL_MSI, 1),
        (KVM_CAP_IRQ_ROUTING, 4096),
        (KVM_CAP_MAX_VCPUS, 8),
        (KVM_CAP_VCPU_EVENTS, 1),
        (KVM_CAP_COALESCED_PIO, 1),
        (KVM_CAP_COALESCED_MMIO, 0),
    ] {
        good(
            "KVM_CHECK_EXTENSION of a state capability",
            hv::system(KVM_CHECK_EXTENSION, u64::from(cap)) == Ok(want),
        );
    }
    // KVM_GET_SUPPORTED_CPUID: -E2BIG with nent = the count needed.
    let cpuid = scratch as *mut kvm_cpuid2;
    // SAFETY: `scratch` is free RAM of ours, large enough for 256 entries.
    unsafe { (*cpuid).nent = 1 };
    let e2big = hv::system(KVM_GET_SUPPORTED_CPUID, scratch) == Err(E2BIG);
    // SAFETY: as above; the hypervisor wrote nent.
    let needed = unsafe { (*cpuid).nent };
    good(
        "KVM_GET_SUPPORTED_CPUID with too small a nent",
        e2big && needed > 1,
    );
    let ok = hv::system(KVM_GET_SUPPORTED_CPUID, scratch).is_ok();
    // SAFETY: the entries follow the header.
    let entries = unsafe {
        core::slice::from_raw_parts((scratch + 8) as *const kvm_cpuid_entry2, needed as usize)
    };
    let signature = entries
        .iter()
        .find(|e| e.function == 0x4000_0000)
        .map(|e| (e.ebx, e.ecx, e.edx));
    let mojito = (
        u32::from_le_bytes(*b"Moji"),
        u32::from_le_bytes(*b"toMo"),
        u32::from_le_bytes(*b"jito"),
    );
    good(
        "KVM_GET_SUPPORTED_CPUID has MojitoMojito",
        ok && signature == Some(mojito),
    );
    let no_vmx = entries
        .iter()
        .find(|e| e.function == 1)
        .is_some_and(|e| e.ecx & (1 << 5) == 0 && e.ecx & (1 << 31) != 0);
    good(
        "KVM_GET_SUPPORTED_CPUID hides VMX and sets the hypervisor bit",
        no_vmx,
    );
    // KVM_GET_MSR_INDEX_LIST.
    let list = scratch as *mut u32;
    // SAFETY: as above.
    unsafe { *list = 0 };
    good(
        "KVM_GET_MSR_INDEX_LIST with nmsrs 0",
        hv::system(KVM_GET_MSR_INDEX_LIST, scratch) == Err(E2BIG),
    );
    good(
        "KVM_GET_MSR_INDEX_LIST",
        hv::system(KVM_GET_MSR_INDEX_LIST, scratch).is_ok(),
    );
    let Ok(vm) = hv::system(KVM_CREATE_VM, 0) else {
        println!("control: FAIL request: KVM_CREATE_VM");
        return false;
    };
    let Ok(vcpu) = hv::call(KVM_CREATE_VCPU, vm, 0) else {
        println!("control: FAIL request: KVM_CREATE_VCPU");
        return false;
    };
    // KVM_SET_MSRS / KVM_GET_MSRS: processes in order, stops at the first bad one.
    #[repr(C)]
    struct Msrs {
        nmsrs: u32,
        pad: u32,
        e: [kvm_msr_entry; 3],
    }
    let entry = |index, data| kvm_msr_entry {
        index,
        reserved: 0,
        data,
    };
    let set = Msrs {
        nmsrs: 3,
        pad: 0,
        e: [
            entry(0xc000_0082, 0xffff_8000_1234_0000),
            entry(0x174, 0x10),
            entry(0xc000_0082, 0x8000_0000_0000),
        ],
    };
    good(
        "KVM_SET_MSRS stops at a non-canonical LSTAR",
        hv::call(KVM_SET_MSRS, vcpu, &set as *const _ as u64) == Ok(2),
    );
    let mut get = Msrs {
        nmsrs: 3,
        pad: 0,
        e: [
            entry(0xc000_0082, 0),
            entry(0x174, 0),
            entry(0x1234_5678, 0),
        ],
    };
    let n = hv::call(KVM_GET_MSRS, vcpu, &mut get as *mut _ as u64);
    good(
        "KVM_GET_MSRS reads back and stops at an unknown MSR",
        n == Ok(2) && get.e[0].data == 0xffff_8000_1234_0000 && get.e[1].data == 0x10,
    );
    // KVM_SET_FPU / KVM_GET_FPU.
    let mut fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    fpu.xmm[3] = [0x5a; 16];
    let set_ok = hv::call(KVM_SET_FPU, vcpu, &fpu as *const _ as u64).is_ok();
    let mut back = kvm_fpu::default();
    let get_ok = hv::call(KVM_GET_FPU, vcpu, &mut back as *mut _ as u64).is_ok();
    good(
        "KVM_SET_FPU / KVM_GET_FPU round trip",
        set_ok && get_ok && back.xmm[3] == [0x5a; 16] && back.mxcsr == 0x1f80,
    );
    fpu.mxcsr = 0xffff_0000;
    good(
        "KVM_SET_FPU with reserved MXCSR bits",
        hv::call(KVM_SET_FPU, vcpu, &fpu as *const _ as u64) == Err(EINVAL),
    );
    // KVM_GET_XSAVE / KVM_SET_XSAVE: a bad header is refused, a good image taken.
    let xsave = scratch as *mut kvm_xsave;
    let got = hv::call(KVM_GET_XSAVE, vcpu, scratch).is_ok();
    // SAFETY: the image is in our scratch RAM.
    let xmm3 = unsafe { (*xsave).region[(160 + 48) / 4] };
    good(
        "KVM_GET_XSAVE sees what KVM_SET_FPU set",
        got && xmm3 == 0x5a5a_5a5a,
    );
    good(
        "KVM_SET_XSAVE of what KVM_GET_XSAVE gave",
        hv::call(KVM_SET_XSAVE, vcpu, scratch).is_ok(),
    );
    // SAFETY: as above; XCOMP_BV (bytes 520..528) set: the compacted form.
    unsafe { (*xsave).region[520 / 4] = 1 << 31 };
    good(
        "KVM_SET_XSAVE in the compacted form",
        hv::call(KVM_SET_XSAVE, vcpu, scratch) == Err(EINVAL),
    );
    // KVM_GET_XCRS / KVM_SET_XCRS.
    let mut xcrs = kvm_xcrs::default();
    let ok = hv::call(KVM_GET_XCRS, vcpu, &mut xcrs as *mut _ as u64).is_ok();
    good(
        "KVM_GET_XCRS: XCR0 = x87 after reset",
        ok && xcrs.nr_xcrs == 1 && xcrs.xcrs[0].value == 1,
    );
    xcrs.xcrs[0].value = 0;
    good(
        "KVM_SET_XCRS with XCR0 = 0",
        hv::call(KVM_SET_XCRS, vcpu, &xcrs as *const _ as u64) == Err(EINVAL),
    );
    // KVM_GET/SET_VCPU_EVENTS: an exception queued, the STI shadow and NMIs
    // masked come back as set (through the VMCS / VMCB), then none.
    let mut events = kvm_vcpu_events {
        flags: KVM_VCPUEVENT_VALID_SHADOW,
        ..Default::default()
    };
    events.exception.injected = 1;
    events.exception.nr = 6;
    events.interrupt.shadow = KVM_X86_SHADOW_INT_MOV_SS;
    events.nmi.masked = 1;
    let set_ok = hv::call(KVM_SET_VCPU_EVENTS, vcpu, &events as *const _ as u64) == Ok(0);
    let mut back = kvm_vcpu_events::default();
    let get_ok = hv::call(KVM_GET_VCPU_EVENTS, vcpu, &mut back as *mut _ as u64) == Ok(0);
    good(
        "KVM_SET_VCPU_EVENTS then KVM_GET_VCPU_EVENTS: #UD queued, MOV SS shadow, NMIs masked",
        set_ok
            && get_ok
            && (back.exception.injected, back.exception.nr) == (1, 6)
            && back.interrupt.shadow & KVM_X86_SHADOW_INT_MOV_SS != 0
            && back.nmi.masked == 1
            && back.flags == KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM,
    );
    events.flags |= 1 << 9;
    good(
        "KVM_SET_VCPU_EVENTS with an unknown flag",
        hv::call(KVM_SET_VCPU_EVENTS, vcpu, &events as *const _ as u64) == Err(EINVAL),
    );
    let none = kvm_vcpu_events {
        flags: KVM_VCPUEVENT_VALID_SHADOW,
        ..Default::default()
    };
    let cleared = hv::call(KVM_SET_VCPU_EVENTS, vcpu, &none as *const _ as u64) == Ok(0)
        && hv::call(KVM_GET_VCPU_EVENTS, vcpu, &mut back as *mut _ as u64) == Ok(0);
    good(
        "KVM_SET_VCPU_EVENTS with none: nothing queued, no shadow, NMIs unmasked",
        cleared
            && back.exception.injected == 0
            && back.interrupt.shadow == 0
            && back.nmi.masked == 0,
    );
    // KVM_ENABLE_CAP.
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_EXIT_HYPERCALL,
        ..Default::default()
    };
    cap.args[0] = 1 << KVM_HC_MAP_GPA_RANGE;
    good(
        "KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL)",
        hv::call(KVM_ENABLE_CAP, vm, &cap as *const _ as u64).is_ok(),
    );
    cap.args[0] = 1 << 3;
    good(
        "KVM_ENABLE_CAP with an unknown hypercall",
        hv::call(KVM_ENABLE_CAP, vm, &cap as *const _ as u64) == Err(EINVAL),
    );
    cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
    cap.args[0] = u64::from(KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL);
    good(
        "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)",
        hv::call(KVM_ENABLE_CAP, vm, &cap as *const _ as u64).is_ok(),
    );
    cap.args[0] = 1 << 3;
    good(
        "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR) with an unknown reason",
        hv::call(KVM_ENABLE_CAP, vm, &cap as *const _ as u64) == Err(EINVAL),
    );
    // Many slots: every one KVM_CAP_NR_MEMSLOTS promises, 4 KiB each and
    // side by side (aliasing one page of ours), then one more number.
    let max = hv::system(KVM_CHECK_EXTENSION, u64::from(KVM_CAP_NR_MEMSLOTS)).unwrap_or(0);
    let slot = |n: u64, size| kvm_userspace_memory_region {
        slot: n as u32,
        flags: 0,
        guest_phys_addr: 0x1000_0000 + n * 4096,
        memory_size: size,
        userspace_addr: scratch,
    };
    let set = |r: &kvm_userspace_memory_region| {
        hv::call(KVM_SET_USER_MEMORY_REGION, vm, r as *const _ as u64)
    };
    let all = (0..max).all(|n| set(&slot(n, 4096)) == Ok(0));
    good(
        "KVM_CAP_NR_MEMSLOTS slots at once",
        max >= 509 && all && set(&slot(max, 4096)) == Err(EINVAL),
    );
    let gone = (0..max).all(|n| set(&slot(n, 0)) == Ok(0));
    good("deleting them all", gone);
    let _ = hv::call(MOJITO_CLOSE, vm, 0);
    if c.failed == 0 {
        println!(
            "control: state requests: {} checked, each as KVM does it",
            c.run
        );
    }
    c.failed == 0
}
