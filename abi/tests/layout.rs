//! Every KVM structure in `abi::kvm` against its `kvm-bindings` twin: size,
//! alignment, and each field's offset and size (for unions, each member's).
//!
//! `kvm-bindings` names C's anonymous types `<parent>__bindgen_ty_N` and
//! anonymous members `__bindgen_anon_N`; the numbers below are those of
//! kvm-bindings 0.14.2 (pinned in Cargo.toml). Fields that are explicit here
//! but implicit padding in C are marked `=> _`: the size check and the
//! crate's own const asserts (no implicit padding) cover them.

#![cfg(target_arch = "x86_64")]

use std::mem::{align_of, offset_of, size_of};

use abi::kvm as ours;
use kvm_bindings as kb;

fn field_size<T, F>(_projection: fn(&T) -> *const F) -> usize {
    size_of::<F>()
}

macro_rules! same_layout {
    ($ours:ident = $theirs:ty; $($f:ident $(=> $g:tt)?),+ $(,)?) => {{
        assert_eq!(
            size_of::<ours::$ours>(),
            size_of::<$theirs>(),
            "size_of {}",
            stringify!($ours)
        );
        assert_eq!(
            align_of::<ours::$ours>(),
            align_of::<$theirs>(),
            "align_of {}",
            stringify!($ours)
        );
        $( same_layout!(@field ours::$ours, $theirs, $f $(=> $g)?); )+
    }};
    (@field $o:ty, $t:ty, $f:ident) => {
        same_layout!(@field $o, $t, $f => $f)
    };
    (@field $o:ty, $t:ty, $f:ident => _) => {};
    (@field $o:ty, $t:ty, $f:ident => $g:ident) => {
        assert_eq!(
            offset_of!($o, $f),
            offset_of!($t, $g),
            "offset_of {}::{}",
            stringify!($o),
            stringify!($f)
        );
        assert_eq!(
            field_size(|s: &$o| &raw const s.$f),
            field_size(|s: &$t| &raw const s.$g),
            "size of {}::{}",
            stringify!($o),
            stringify!($f)
        );
    };
}

#[test]
fn registers() {
    same_layout!(kvm_regs = kb::kvm_regs;
        rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags,
    );
    same_layout!(kvm_segment = kb::kvm_segment;
        base, limit, selector, type_, present, dpl, db, s, l, g, avl, unusable, padding,
    );
    same_layout!(kvm_dtable = kb::kvm_dtable; base, limit, padding);
    same_layout!(kvm_sregs = kb::kvm_sregs;
        cs, ds, es, fs, gs, ss, tr, ldt, gdt, idt, cr0, cr2, cr3, cr4, cr8, efer, apic_base,
        interrupt_bitmap,
    );
}

#[test]
fn fpu_and_xsave() {
    same_layout!(kvm_fpu = kb::kvm_fpu;
        fpr, fcw, fsw, ftwx, pad1, last_opcode, last_ip, last_dp, xmm, mxcsr, pad2,
    );
    same_layout!(kvm_xsave = kb::kvm_xsave; region, extra);
    same_layout!(kvm_xcr = kb::kvm_xcr; xcr, reserved, value);
    same_layout!(kvm_xcrs = kb::kvm_xcrs; nr_xcrs, flags, xcrs, padding);
}

#[test]
fn msrs() {
    same_layout!(kvm_msr_entry = kb::kvm_msr_entry; index, reserved, data);
    same_layout!(kvm_msrs = kb::kvm_msrs; nmsrs, pad, entries);
    same_layout!(kvm_msr_list = kb::kvm_msr_list; nmsrs, indices);
    same_layout!(kvm_msr_filter_range = kb::kvm_msr_filter_range;
        flags, nmsrs, base, pad => _, bitmap,
    );
    same_layout!(kvm_msr_filter = kb::kvm_msr_filter; flags, pad => _, ranges);
}

#[test]
fn cpuid() {
    same_layout!(kvm_cpuid_entry2 = kb::kvm_cpuid_entry2;
        function, index, flags, eax, ebx, ecx, edx, padding,
    );
    same_layout!(kvm_cpuid2 = kb::kvm_cpuid2; nent, padding, entries);
}

#[test]
fn memory() {
    same_layout!(kvm_userspace_memory_region = kb::kvm_userspace_memory_region;
        slot, flags, guest_phys_addr, memory_size, userspace_addr,
    );
    // C's union { void *dirty_bitmap; __u64 padding2; } is one u64 here.
    same_layout!(kvm_dirty_log = kb::kvm_dirty_log;
        slot, padding1, dirty_bitmap => __bindgen_anon_1,
    );
}

#[test]
fn vm_configuration() {
    same_layout!(kvm_enable_cap = kb::kvm_enable_cap; cap, flags, args, pad);
    same_layout!(kvm_xen_hvm_config = kb::kvm_xen_hvm_config;
        flags, msr, blob_addr_32, blob_addr_64, blob_size_32, blob_size_64, pad2,
    );
}

#[test]
fn debugging() {
    same_layout!(kvm_guest_debug_arch = kb::kvm_guest_debug_arch; debugreg);
    same_layout!(kvm_guest_debug = kb::kvm_guest_debug; control, pad, arch);
    same_layout!(kvm_debug_exit_arch = kb::kvm_debug_exit_arch; exception, pad, pc, dr6, dr7);
}

#[test]
fn coalesced() {
    // C's union { __u32 pad; __u32 pio; } is `pio` here.
    same_layout!(kvm_coalesced_mmio_zone = kb::kvm_coalesced_mmio_zone;
        addr, size, pio => __bindgen_anon_1,
    );
    same_layout!(kvm_coalesced_mmio = kb::kvm_coalesced_mmio;
        phys_addr, len, pio => __bindgen_anon_1, data,
    );
    same_layout!(kvm_coalesced_mmio_ring = kb::kvm_coalesced_mmio_ring;
        first, last, coalesced_mmio,
    );
}

#[test]
fn interrupts() {
    same_layout!(kvm_interrupt = kb::kvm_interrupt; irq);
    same_layout!(kvm_msi = kb::kvm_msi; address_lo, address_hi, data, flags, devid, pad);
    same_layout!(kvm_irq_routing_irqchip = kb::kvm_irq_routing_irqchip; irqchip, pin);
    // C's union { __u32 pad; __u32 devid; } is `devid` here.
    same_layout!(kvm_irq_routing_msi = kb::kvm_irq_routing_msi;
        address_lo, address_hi, data, devid => __bindgen_anon_1,
    );
    same_layout!(kvm_irq_routing_s390_adapter = kb::kvm_irq_routing_s390_adapter;
        ind_addr, summary_addr, ind_offset, summary_offset, adapter_id,
    );
    same_layout!(kvm_irq_routing_hv_sint = kb::kvm_irq_routing_hv_sint; vcpu, sint);
    same_layout!(kvm_irq_routing_xen_evtchn = kb::kvm_irq_routing_xen_evtchn; port, vcpu, priority);
    same_layout!(kvm_irq_routing_entry_u = kb::kvm_irq_routing_entry__bindgen_ty_1;
        irqchip, msi, adapter, hv_sint, xen_evtchn, pad,
    );
    same_layout!(kvm_irq_routing_entry = kb::kvm_irq_routing_entry; gsi, type_, flags, pad, u);
    same_layout!(kvm_irq_routing = kb::kvm_irq_routing; nr, flags, entries);
    same_layout!(kvm_lapic_state = kb::kvm_lapic_state; regs);
}

#[test]
fn vcpu_events_and_mp_state() {
    same_layout!(kvm_vcpu_events_exception = kb::kvm_vcpu_events__bindgen_ty_1;
        injected, nr, has_error_code, pending, error_code,
    );
    same_layout!(kvm_vcpu_events_interrupt = kb::kvm_vcpu_events__bindgen_ty_2;
        injected, nr, soft, shadow,
    );
    same_layout!(kvm_vcpu_events_nmi = kb::kvm_vcpu_events__bindgen_ty_3;
        injected, pending, masked, pad,
    );
    same_layout!(kvm_vcpu_events_smi = kb::kvm_vcpu_events__bindgen_ty_4;
        smm, pending, smm_inside_nmi, latched_init,
    );
    same_layout!(kvm_vcpu_events_triple_fault = kb::kvm_vcpu_events__bindgen_ty_5; pending);
    same_layout!(kvm_vcpu_events = kb::kvm_vcpu_events;
        exception, interrupt, nmi, sipi_vector, flags, smi, triple_fault, reserved,
        exception_has_payload, exception_payload,
    );
    same_layout!(kvm_mp_state = kb::kvm_mp_state; mp_state);
}

#[test]
fn run_page() {
    same_layout!(kvm_run = kb::kvm_run;
        request_interrupt_window, immediate_exit, padding1, exit_reason,
        ready_for_interrupt_injection, if_flag, flags, cr8, apic_base, exit => __bindgen_anon_1,
        kvm_valid_regs, kvm_dirty_regs, s,
    );
    same_layout!(kvm_run_s = kb::kvm_run__bindgen_ty_2; regs, padding);
    same_layout!(kvm_sync_regs = kb::kvm_sync_regs; regs, sregs, events);
    assert_eq!(
        ours::SYNC_REGS_SIZE_BYTES,
        size_of::<kb::kvm_run__bindgen_ty_2>()
    );
}

#[test]
fn run_exit_union() {
    same_layout!(kvm_run_exit = kb::kvm_run__bindgen_ty_1;
        hw, fail_entry, ex, io, debug, mmio, hypercall, tpr_access, internal, emulation_failure,
        system_event, eoi, msr, notify, memory_fault, padding,
    );
}

#[test]
fn run_exit_members() {
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_1 as hw;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_2 as fail_entry;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_3 as ex;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_4 as io;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_5 as debug;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_6 as mmio;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_8 as hypercall;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_9 as tpr_access;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_13 as internal;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_14 as emulation_failure;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_19 as system_event;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_21 as eoi;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_23 as msr;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_26 as notify;
    use kb::kvm_run__bindgen_ty_1__bindgen_ty_27 as memory_fault;

    same_layout!(kvm_run_hw = hw; hardware_exit_reason);
    same_layout!(kvm_run_fail_entry = fail_entry; hardware_entry_failure_reason, cpu, pad => _);
    same_layout!(kvm_run_ex = ex; exception, error_code);
    same_layout!(kvm_run_io = io; direction, size, port, count, data_offset);
    same_layout!(kvm_run_debug = debug; arch);
    same_layout!(kvm_run_mmio = mmio; phys_addr, data, len, is_write, pad => _);
    // C's union { __u32 longmode; __u64 flags; } is `flags` here.
    same_layout!(kvm_run_hypercall = hypercall; nr, args, ret, flags => __bindgen_anon_1);
    same_layout!(kvm_run_tpr_access = tpr_access; rip, is_write, pad);
    same_layout!(kvm_run_internal = internal; suberror, ndata, data);
    same_layout!(kvm_run_emulation_failure = emulation_failure;
        suberror, ndata, flags, insn_size => _, insn_bytes => _,
    );
    // C nests insn_size/insn_bytes in an anonymous union of an anonymous struct.
    {
        use kb::kvm_run__bindgen_ty_1__bindgen_ty_14__bindgen_ty_1__bindgen_ty_1 as insn;
        let base = offset_of!(emulation_failure, __bindgen_anon_1);
        assert_eq!(
            offset_of!(ours::kvm_run_emulation_failure, insn_size),
            base + offset_of!(insn, insn_size)
        );
        assert_eq!(
            offset_of!(ours::kvm_run_emulation_failure, insn_bytes),
            base + offset_of!(insn, insn_bytes)
        );
        assert_eq!(
            field_size(|s: &ours::kvm_run_emulation_failure| &raw const s.insn_bytes),
            field_size(|s: &insn| &raw const s.insn_bytes)
        );
    }
    // C's union { __u64 flags; __u64 data[16]; } is `data` here.
    same_layout!(kvm_run_system_event = system_event; type_, ndata, data => __bindgen_anon_1);
    same_layout!(kvm_run_eoi = eoi; vector);
    same_layout!(kvm_run_msr = msr; error, pad, reason, index, data);
    same_layout!(kvm_run_notify = notify; flags);
    same_layout!(kvm_run_memory_fault = memory_fault; flags, gpa, size);
}
