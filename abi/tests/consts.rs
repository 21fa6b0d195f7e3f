//! KVM's numbers in `abi::kvm` against `kvm-bindings`, errno values against
//! `libc`, and the few numbers neither crate has against the kernel headers.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use abi::kvm as ours;
use abi::kvm::errno;
use kvm_bindings as kb;

/// Compares values as `i128`, whatever the integer type on either side
/// (`kvm-bindings` makes every constant a `u32`; some are `u8`, `u16` or
/// `u64` here to match the field they go in).
macro_rules! same_values {
    ($($name:ident),+ $(,)?) => {
        $( assert_eq!(ours::$name as i128, kb::$name as i128, stringify!($name)); )+
    };
}

#[test]
fn api_version_and_type_byte() {
    same_values!(KVM_API_VERSION, KVMIO);
}

#[test]
fn exit_reasons() {
    same_values!(
        KVM_EXIT_UNKNOWN,
        KVM_EXIT_EXCEPTION,
        KVM_EXIT_IO,
        KVM_EXIT_HYPERCALL,
        KVM_EXIT_DEBUG,
        KVM_EXIT_HLT,
        KVM_EXIT_MMIO,
        KVM_EXIT_IRQ_WINDOW_OPEN,
        KVM_EXIT_SHUTDOWN,
        KVM_EXIT_FAIL_ENTRY,
        KVM_EXIT_INTR,
        KVM_EXIT_SET_TPR,
        KVM_EXIT_TPR_ACCESS,
        KVM_EXIT_S390_SIEIC,
        KVM_EXIT_S390_RESET,
        KVM_EXIT_DCR,
        KVM_EXIT_NMI,
        KVM_EXIT_INTERNAL_ERROR,
        KVM_EXIT_OSI,
        KVM_EXIT_PAPR_HCALL,
        KVM_EXIT_S390_UCONTROL,
        KVM_EXIT_WATCHDOG,
        KVM_EXIT_S390_TSCH,
        KVM_EXIT_EPR,
        KVM_EXIT_SYSTEM_EVENT,
        KVM_EXIT_S390_STSI,
        KVM_EXIT_IOAPIC_EOI,
        KVM_EXIT_HYPERV,
        KVM_EXIT_ARM_NISV,
        KVM_EXIT_X86_RDMSR,
        KVM_EXIT_X86_WRMSR,
        KVM_EXIT_DIRTY_RING_FULL,
        KVM_EXIT_AP_RESET_HOLD,
        KVM_EXIT_X86_BUS_LOCK,
        KVM_EXIT_XEN,
        KVM_EXIT_RISCV_SBI,
        KVM_EXIT_RISCV_CSR,
        KVM_EXIT_NOTIFY,
        KVM_EXIT_LOONGARCH_IOCSR,
        KVM_EXIT_MEMORY_FAULT,
    );
}

#[test]
fn exit_sub_codes() {
    same_values!(
        KVM_EXIT_IO_IN,
        KVM_EXIT_IO_OUT,
        KVM_INTERNAL_ERROR_EMULATION,
        KVM_INTERNAL_ERROR_SIMUL_EX,
        KVM_INTERNAL_ERROR_DELIVERY_EV,
        KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
        KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
        KVM_SYSTEM_EVENT_SHUTDOWN,
        KVM_SYSTEM_EVENT_RESET,
        KVM_SYSTEM_EVENT_CRASH,
        KVM_SYSTEM_EVENT_WAKEUP,
        KVM_SYSTEM_EVENT_SUSPEND,
        KVM_SYSTEM_EVENT_SEV_TERM,
        KVM_MSR_EXIT_REASON_INVAL,
        KVM_MSR_EXIT_REASON_UNKNOWN,
        KVM_MSR_EXIT_REASON_FILTER,
    );
    // Not in kvm-bindings 0.14.2 (bindgen cannot evaluate `_BITULL(0)`):
    // arch/x86/include/uapi/asm/kvm.h defines it as bit 0.
    assert_eq!(ours::KVM_EXIT_HYPERCALL_LONG_MODE, 1);
}

#[test]
fn run_page_constants() {
    same_values!(
        KVM_PIO_PAGE_OFFSET,
        KVM_COALESCED_MMIO_PAGE_OFFSET,
        KVM_SYNC_X86_REGS,
        KVM_SYNC_X86_SREGS,
        KVM_SYNC_X86_EVENTS,
        KVM_RUN_X86_SMM,
        KVM_RUN_X86_BUS_LOCK,
        KVM_RUN_X86_GUEST_MODE,
    );
}

#[test]
fn capabilities() {
    same_values!(
        KVM_CAP_IRQCHIP,
        KVM_CAP_HLT,
        KVM_CAP_USER_MEMORY,
        KVM_CAP_SET_TSS_ADDR,
        KVM_CAP_EXT_CPUID,
        KVM_CAP_NR_VCPUS,
        KVM_CAP_NR_MEMSLOTS,
        KVM_CAP_NOP_IO_DELAY,
        KVM_CAP_MP_STATE,
        KVM_CAP_COALESCED_MMIO,
        KVM_CAP_SYNC_MMU,
        KVM_CAP_USER_NMI,
        KVM_CAP_SET_GUEST_DEBUG,
        KVM_CAP_IRQ_ROUTING,
        KVM_CAP_IRQ_INJECT_STATUS,
        KVM_CAP_SET_IDENTITY_MAP_ADDR,
        KVM_CAP_XEN_HVM,
        KVM_CAP_ADJUST_CLOCK,
        KVM_CAP_INTERNAL_ERROR_DATA,
        KVM_CAP_VCPU_EVENTS,
        KVM_CAP_INTR_SHADOW,
        KVM_CAP_DEBUGREGS,
        KVM_CAP_ENABLE_CAP,
        KVM_CAP_XSAVE,
        KVM_CAP_XCRS,
        KVM_CAP_MAX_VCPUS,
        KVM_CAP_TSC_DEADLINE_TIMER,
        KVM_CAP_SYNC_REGS,
        KVM_CAP_SIGNAL_MSI,
        KVM_CAP_READONLY_MEM,
        KVM_CAP_EXT_EMUL_CPUID,
        KVM_CAP_ENABLE_CAP_VM,
        KVM_CAP_CHECK_EXTENSION_VM,
        KVM_CAP_GUEST_DEBUG_HW_BPS,
        KVM_CAP_GUEST_DEBUG_HW_WPS,
        KVM_CAP_SPLIT_IRQCHIP,
        KVM_CAP_MAX_VCPU_ID,
        KVM_CAP_X2APIC_API,
        KVM_CAP_IMMEDIATE_EXIT,
        KVM_CAP_X86_DISABLE_EXITS,
        KVM_CAP_COALESCED_PIO,
        KVM_CAP_GET_MSR_FEATURES,
        KVM_CAP_X86_USER_SPACE_MSR,
        KVM_CAP_X86_MSR_FILTER,
        KVM_CAP_SET_GUEST_DEBUG2,
        KVM_CAP_EXIT_HYPERCALL,
        KVM_CAP_EXIT_ON_EMULATION_FAILURE,
        KVM_CAP_XSAVE2,
        KVM_CAP_SYSTEM_EVENT_DATA,
        KVM_CAP_X86_TRIPLE_FAULT_EVENT,
    );
}

#[test]
fn structure_flags() {
    same_values!(
        KVM_MEM_LOG_DIRTY_PAGES,
        KVM_MEM_READONLY,
        KVM_MEM_GUEST_MEMFD,
        KVM_GUESTDBG_ENABLE,
        KVM_GUESTDBG_SINGLESTEP,
        KVM_GUESTDBG_USE_SW_BP,
        KVM_GUESTDBG_USE_HW_BP,
        KVM_GUESTDBG_INJECT_DB,
        KVM_GUESTDBG_INJECT_BP,
        KVM_GUESTDBG_BLOCKIRQ,
        KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        KVM_CPUID_FLAG_STATEFUL_FUNC,
        KVM_CPUID_FLAG_STATE_READ_NEXT,
        KVM_MAX_XCRS,
        KVM_MSR_FILTER_MAX_RANGES,
        KVM_MSR_FILTER_MAX_BITMAP_SIZE,
        KVM_MSR_FILTER_READ,
        KVM_MSR_FILTER_WRITE,
        KVM_MSR_FILTER_DEFAULT_ALLOW,
        KVM_MSR_FILTER_DEFAULT_DENY,
        KVM_VCPUEVENT_VALID_NMI_PENDING,
        KVM_VCPUEVENT_VALID_SIPI_VECTOR,
        KVM_VCPUEVENT_VALID_SHADOW,
        KVM_VCPUEVENT_VALID_SMM,
        KVM_VCPUEVENT_VALID_PAYLOAD,
        KVM_VCPUEVENT_VALID_TRIPLE_FAULT,
        KVM_X86_SHADOW_INT_MOV_SS,
        KVM_X86_SHADOW_INT_STI,
        KVM_MP_STATE_RUNNABLE,
        KVM_MP_STATE_UNINITIALIZED,
        KVM_MP_STATE_INIT_RECEIVED,
        KVM_MP_STATE_HALTED,
        KVM_MP_STATE_SIPI_RECEIVED,
        KVM_MP_STATE_AP_RESET_HOLD,
        KVM_MSI_VALID_DEVID,
        KVM_IRQ_ROUTING_IRQCHIP,
        KVM_IRQ_ROUTING_MSI,
        KVM_IRQ_ROUTING_S390_ADAPTER,
        KVM_IRQ_ROUTING_HV_SINT,
        KVM_IRQ_ROUTING_XEN_EVTCHN,
        KVM_IRQCHIP_PIC_MASTER,
        KVM_IRQCHIP_PIC_SLAVE,
        KVM_IRQCHIP_IOAPIC,
        KVM_APIC_REG_SIZE,
        KVM_XEN_HVM_CONFIG_HYPERCALL_MSR,
        KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
    );
}

#[test]
fn paravirtual_hypercalls() {
    // Not in kvm-bindings: from include/uapi/linux/kvm_para.h
    // (linux-libc-dev 6.1.187).
    assert_eq!(ours::KVM_HC_VAPIC_POLL_IRQ, 1);
    assert_eq!(ours::KVM_HC_KICK_CPU, 5);
    assert_eq!(ours::KVM_HC_CLOCK_PAIRING, 9);
    assert_eq!(ours::KVM_HC_SEND_IPI, 10);
    assert_eq!(ours::KVM_HC_SCHED_YIELD, 11);
    assert_eq!(ours::KVM_HC_MAP_GPA_RANGE, 12);
    assert_eq!(ours::KVM_ENOSYS, 1000);
    assert_eq!(ours::KVM_EFAULT, libc::EFAULT);
    assert_eq!(ours::KVM_EINVAL, libc::EINVAL);
    assert_eq!(ours::KVM_E2BIG, libc::E2BIG);
    assert_eq!(ours::KVM_EPERM, libc::EPERM);
    assert_eq!(ours::KVM_EOPNOTSUPP, libc::EOPNOTSUPP);
}

#[test]
fn errno_values() {
    let pairs = [
        (errno::EPERM, libc::EPERM),
        (errno::ENOENT, libc::ENOENT),
        (errno::EINTR, libc::EINTR),
        (errno::EIO, libc::EIO),
        (errno::ENXIO, libc::ENXIO),
        (errno::E2BIG, libc::E2BIG),
        (errno::EBADF, libc::EBADF),
        (errno::ENOMEM, libc::ENOMEM),
        (errno::EFAULT, libc::EFAULT),
        (errno::EBUSY, libc::EBUSY),
        (errno::EEXIST, libc::EEXIST),
        (errno::EINVAL, libc::EINVAL),
        (errno::ENOTTY, libc::ENOTTY),
        (errno::ENOSPC, libc::ENOSPC),
        (errno::EOPNOTSUPP, libc::EOPNOTSUPP),
    ];
    for (ours, linux) in pairs {
        assert_eq!(ours, linux);
    }
}
