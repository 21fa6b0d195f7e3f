//! KVM's numbers: API version, exit reasons and their sub-codes, capability
//! numbers, and the paravirtual hypercall numbers and return codes
//! (`linux/kvm_para.h`). Flags that belong to one structure live beside it.

/// What `KVM_GET_API_VERSION` returns; it has not changed since 2007.
pub const KVM_API_VERSION: u32 = 12;

// Exit reasons: `kvm_run::exit_reason`. Numbers with no x86 meaning are
// listed so that a reason is never mistaken for another.

pub const KVM_EXIT_UNKNOWN: u32 = 0;
pub const KVM_EXIT_EXCEPTION: u32 = 1;
pub const KVM_EXIT_IO: u32 = 2;
pub const KVM_EXIT_HYPERCALL: u32 = 3;
pub const KVM_EXIT_DEBUG: u32 = 4;
pub const KVM_EXIT_HLT: u32 = 5;
pub const KVM_EXIT_MMIO: u32 = 6;
pub const KVM_EXIT_IRQ_WINDOW_OPEN: u32 = 7;
pub const KVM_EXIT_SHUTDOWN: u32 = 8;
pub const KVM_EXIT_FAIL_ENTRY: u32 = 9;
pub const KVM_EXIT_INTR: u32 = 10;
pub const KVM_EXIT_SET_TPR: u32 = 11;
pub const KVM_EXIT_TPR_ACCESS: u32 = 12;
pub const KVM_EXIT_S390_SIEIC: u32 = 13;
pub const KVM_EXIT_S390_RESET: u32 = 14;
pub const KVM_EXIT_DCR: u32 = 15;
pub const KVM_EXIT_NMI: u32 = 16;
pub const KVM_EXIT_INTERNAL_ERROR: u32 = 17;
pub const KVM_EXIT_OSI: u32 = 18;
pub const KVM_EXIT_PAPR_HCALL: u32 = 19;
pub const KVM_EXIT_S390_UCONTROL: u32 = 20;
pub const KVM_EXIT_WATCHDOG: u32 = 21;
pub const KVM_EXIT_S390_TSCH: u32 = 22;
pub const KVM_EXIT_EPR: u32 = 23;
pub const KVM_EXIT_SYSTEM_EVENT: u32 = 24;
pub const KVM_EXIT_S390_STSI: u32 = 25;
pub const KVM_EXIT_IOAPIC_EOI: u32 = 26;
pub const KVM_EXIT_HYPERV: u32 = 27;
pub const KVM_EXIT_ARM_NISV: u32 = 28;
pub const KVM_EXIT_X86_RDMSR: u32 = 29;
pub const KVM_EXIT_X86_WRMSR: u32 = 30;
pub const KVM_EXIT_DIRTY_RING_FULL: u32 = 31;
pub const KVM_EXIT_AP_RESET_HOLD: u32 = 32;
pub const KVM_EXIT_X86_BUS_LOCK: u32 = 33;
pub const KVM_EXIT_XEN: u32 = 34;
pub const KVM_EXIT_RISCV_SBI: u32 = 35;
pub const KVM_EXIT_RISCV_CSR: u32 = 36;
pub const KVM_EXIT_NOTIFY: u32 = 37;
pub const KVM_EXIT_LOONGARCH_IOCSR: u32 = 38;
pub const KVM_EXIT_MEMORY_FAULT: u32 = 39;

/// `kvm_run_io::direction`: IN/INS.
pub const KVM_EXIT_IO_IN: u8 = 0;
/// `kvm_run_io::direction`: OUT/OUTS.
pub const KVM_EXIT_IO_OUT: u8 = 1;

/// `kvm_run_internal::suberror`: an instruction could not be emulated.
pub const KVM_INTERNAL_ERROR_EMULATION: u32 = 1;
/// `kvm_run_internal::suberror`: an exception while delivering another
/// during emulation.
pub const KVM_INTERNAL_ERROR_SIMUL_EX: u32 = 2;
/// `kvm_run_internal::suberror`: event delivery failed (e.g. an EPT
/// violation on the IDT).
pub const KVM_INTERNAL_ERROR_DELIVERY_EV: u32 = 3;
/// `kvm_run_internal::suberror`: a hardware exit reason the hypervisor does
/// not handle; `data[0]` holds it.
pub const KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: u32 = 4;
/// `kvm_run_emulation_failure::flags`: `insn_size`/`insn_bytes` are valid.
pub const KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES: u64 = 1 << 0;

/// `kvm_run_system_event::type_`: the guest asked to power off.
pub const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
/// `kvm_run_system_event::type_`: the guest asked to reset.
pub const KVM_SYSTEM_EVENT_RESET: u32 = 2;
/// `kvm_run_system_event::type_`: the guest reported a crash.
pub const KVM_SYSTEM_EVENT_CRASH: u32 = 3;
pub const KVM_SYSTEM_EVENT_WAKEUP: u32 = 4;
pub const KVM_SYSTEM_EVENT_SUSPEND: u32 = 5;
pub const KVM_SYSTEM_EVENT_SEV_TERM: u32 = 6;

/// `kvm_run_msr::reason`: the MSR access would #GP in KVM.
pub const KVM_MSR_EXIT_REASON_INVAL: u32 = 1 << 0;
/// `kvm_run_msr::reason`: KVM does not know the MSR.
pub const KVM_MSR_EXIT_REASON_UNKNOWN: u32 = 1 << 1;
/// `kvm_run_msr::reason`: the MSR filter denied the access.
pub const KVM_MSR_EXIT_REASON_FILTER: u32 = 1 << 2;

// Capabilities: `KVM_CHECK_EXTENSION` and `KVM_ENABLE_CAP` arguments.

pub const KVM_CAP_IRQCHIP: u32 = 0;
pub const KVM_CAP_HLT: u32 = 1;
pub const KVM_CAP_USER_MEMORY: u32 = 3;
pub const KVM_CAP_SET_TSS_ADDR: u32 = 4;
pub const KVM_CAP_EXT_CPUID: u32 = 7;
pub const KVM_CAP_NR_VCPUS: u32 = 9;
pub const KVM_CAP_NR_MEMSLOTS: u32 = 10;
pub const KVM_CAP_NOP_IO_DELAY: u32 = 12;
pub const KVM_CAP_MP_STATE: u32 = 14;
pub const KVM_CAP_COALESCED_MMIO: u32 = 15;
pub const KVM_CAP_SYNC_MMU: u32 = 16;
pub const KVM_CAP_USER_NMI: u32 = 22;
pub const KVM_CAP_SET_GUEST_DEBUG: u32 = 23;
pub const KVM_CAP_IRQ_ROUTING: u32 = 25;
pub const KVM_CAP_IRQ_INJECT_STATUS: u32 = 26;
pub const KVM_CAP_SET_IDENTITY_MAP_ADDR: u32 = 37;
pub const KVM_CAP_XEN_HVM: u32 = 38;
pub const KVM_CAP_ADJUST_CLOCK: u32 = 39;
pub const KVM_CAP_INTERNAL_ERROR_DATA: u32 = 40;
pub const KVM_CAP_VCPU_EVENTS: u32 = 41;
pub const KVM_CAP_INTR_SHADOW: u32 = 49;
pub const KVM_CAP_DEBUGREGS: u32 = 50;
pub const KVM_CAP_ENABLE_CAP: u32 = 54;
pub const KVM_CAP_XSAVE: u32 = 55;
pub const KVM_CAP_XCRS: u32 = 56;
pub const KVM_CAP_MAX_VCPUS: u32 = 66;
pub const KVM_CAP_TSC_DEADLINE_TIMER: u32 = 72;
pub const KVM_CAP_SYNC_REGS: u32 = 74;
pub const KVM_CAP_SIGNAL_MSI: u32 = 77;
pub const KVM_CAP_READONLY_MEM: u32 = 81;
pub const KVM_CAP_EXT_EMUL_CPUID: u32 = 95;
pub const KVM_CAP_ENABLE_CAP_VM: u32 = 98;
pub const KVM_CAP_CHECK_EXTENSION_VM: u32 = 105;
pub const KVM_CAP_GUEST_DEBUG_HW_BPS: u32 = 119;
pub const KVM_CAP_GUEST_DEBUG_HW_WPS: u32 = 120;
pub const KVM_CAP_SPLIT_IRQCHIP: u32 = 121;
pub const KVM_CAP_MAX_VCPU_ID: u32 = 128;
pub const KVM_CAP_X2APIC_API: u32 = 129;
pub const KVM_CAP_IMMEDIATE_EXIT: u32 = 136;
pub const KVM_CAP_X86_DISABLE_EXITS: u32 = 143;
pub const KVM_CAP_GET_MSR_FEATURES: u32 = 153;
pub const KVM_CAP_COALESCED_PIO: u32 = 162;
pub const KVM_CAP_X86_USER_SPACE_MSR: u32 = 188;
pub const KVM_CAP_X86_MSR_FILTER: u32 = 189;
pub const KVM_CAP_SET_GUEST_DEBUG2: u32 = 195;
pub const KVM_CAP_EXIT_HYPERCALL: u32 = 201;
pub const KVM_CAP_EXIT_ON_EMULATION_FAILURE: u32 = 204;
pub const KVM_CAP_XSAVE2: u32 = 208;
pub const KVM_CAP_SYSTEM_EVENT_DATA: u32 = 215;
pub const KVM_CAP_X86_TRIPLE_FAULT_EVENT: u32 = 218;

// Paravirtual hypercalls an ordinary guest makes with VMCALL/VMMCALL: RAX
// holds the number, RBX, RCX, RDX, RSI the arguments, and the result comes
// back in RAX (`linux/kvm_para.h`). Only the x86 numbers are listed.

/// Asks the host to poll the virtual APIC (obsolete; KVM returns 0).
pub const KVM_HC_VAPIC_POLL_IRQ: u64 = 1;
/// Wakes a vCPU halted in a paravirtual spinlock.
pub const KVM_HC_KICK_CPU: u64 = 5;
/// Reads the host's clock and TSC in one step (PTP_KVM).
pub const KVM_HC_CLOCK_PAIRING: u64 = 9;
/// Sends an IPI to many vCPUs at once.
pub const KVM_HC_SEND_IPI: u64 = 10;
/// Yields to the vCPU that holds a lock.
pub const KVM_HC_SCHED_YIELD: u64 = 11;
/// Changes a range's encryption status; the only hypercall that can exit to
/// the VMM (`KVM_EXIT_HYPERCALL`), when `KVM_CAP_EXIT_HYPERCALL` enables it
/// (bit `1 << KVM_HC_MAP_GPA_RANGE` of the capability's argument).
pub const KVM_HC_MAP_GPA_RANGE: u64 = 12;

// What a paravirtual hypercall returns in RAX, negated (RAX = -KVM_ENOSYS).

/// Unknown hypercall number.
pub const KVM_ENOSYS: i32 = 1000;
/// Bad guest address.
pub const KVM_EFAULT: i32 = super::errno::EFAULT;
/// Invalid argument.
pub const KVM_EINVAL: i32 = super::errno::EINVAL;
/// Argument too large.
pub const KVM_E2BIG: i32 = super::errno::E2BIG;
/// Called from CPL > 0.
pub const KVM_EPERM: i32 = super::errno::EPERM;
/// Not supported.
pub const KVM_EOPNOTSUPP: i32 = 95;
