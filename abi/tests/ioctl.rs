//! The request codes against Linux's.
//!
//! `kvm-bindings` has no request codes (bindgen drops function-like macros)
//! and `kvm-ioctls` keeps its own private, so the expected values below were
//! produced by a C program printing each `KVM_*` macro of
//! `/usr/include/linux/kvm.h` from Debian's linux-libc-dev 6.1.187
//! (`printf("0x%08lx", (unsigned long)KVM_GET_REGS)` and so on).

use abi::kvm::ioctl::{self, IOC_NONE, IOC_READ, IOC_WRITE};
use abi::kvm::*;

const LINUX: &[(&str, u32, u32)] = &[
    ("KVM_GET_API_VERSION", KVM_GET_API_VERSION, 0x0000_ae00),
    ("KVM_CREATE_VM", KVM_CREATE_VM, 0x0000_ae01),
    (
        "KVM_GET_MSR_INDEX_LIST",
        KVM_GET_MSR_INDEX_LIST,
        0xc004_ae02,
    ),
    ("KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, 0x0000_ae03),
    (
        "KVM_GET_VCPU_MMAP_SIZE",
        KVM_GET_VCPU_MMAP_SIZE,
        0x0000_ae04,
    ),
    (
        "KVM_GET_SUPPORTED_CPUID",
        KVM_GET_SUPPORTED_CPUID,
        0xc008_ae05,
    ),
    (
        "KVM_GET_EMULATED_CPUID",
        KVM_GET_EMULATED_CPUID,
        0xc008_ae09,
    ),
    ("KVM_CREATE_VCPU", KVM_CREATE_VCPU, 0x0000_ae41),
    ("KVM_GET_DIRTY_LOG", KVM_GET_DIRTY_LOG, 0x4010_ae42),
    (
        "KVM_SET_USER_MEMORY_REGION",
        KVM_SET_USER_MEMORY_REGION,
        0x4020_ae46,
    ),
    ("KVM_SET_TSS_ADDR", KVM_SET_TSS_ADDR, 0x0000_ae47),
    (
        "KVM_SET_IDENTITY_MAP_ADDR",
        KVM_SET_IDENTITY_MAP_ADDR,
        0x4008_ae48,
    ),
    ("KVM_CREATE_IRQCHIP", KVM_CREATE_IRQCHIP, 0x0000_ae60),
    ("KVM_SET_GSI_ROUTING", KVM_SET_GSI_ROUTING, 0x4008_ae6a),
    ("KVM_XEN_HVM_CONFIG", KVM_XEN_HVM_CONFIG, 0x4038_ae7a),
    ("KVM_RUN", KVM_RUN, 0x0000_ae80),
    ("KVM_GET_REGS", KVM_GET_REGS, 0x8090_ae81),
    ("KVM_SET_REGS", KVM_SET_REGS, 0x4090_ae82),
    ("KVM_GET_SREGS", KVM_GET_SREGS, 0x8138_ae83),
    ("KVM_SET_SREGS", KVM_SET_SREGS, 0x4138_ae84),
    ("KVM_INTERRUPT", KVM_INTERRUPT, 0x4004_ae86),
    ("KVM_GET_MSRS", KVM_GET_MSRS, 0xc008_ae88),
    ("KVM_SET_MSRS", KVM_SET_MSRS, 0x4008_ae89),
    ("KVM_GET_FPU", KVM_GET_FPU, 0x81a0_ae8c),
    ("KVM_SET_FPU", KVM_SET_FPU, 0x41a0_ae8d),
    ("KVM_GET_LAPIC", KVM_GET_LAPIC, 0x8400_ae8e),
    ("KVM_SET_LAPIC", KVM_SET_LAPIC, 0x4400_ae8f),
    ("KVM_SET_CPUID2", KVM_SET_CPUID2, 0x4008_ae90),
    ("KVM_GET_MP_STATE", KVM_GET_MP_STATE, 0x8004_ae98),
    ("KVM_SET_MP_STATE", KVM_SET_MP_STATE, 0x4004_ae99),
    ("KVM_SET_GUEST_DEBUG", KVM_SET_GUEST_DEBUG, 0x4048_ae9b),
    ("KVM_GET_VCPU_EVENTS", KVM_GET_VCPU_EVENTS, 0x8040_ae9f),
    ("KVM_SET_VCPU_EVENTS", KVM_SET_VCPU_EVENTS, 0x4040_aea0),
    ("KVM_ENABLE_CAP", KVM_ENABLE_CAP, 0x4068_aea3),
    ("KVM_GET_XSAVE", KVM_GET_XSAVE, 0x9000_aea4),
    ("KVM_SET_XSAVE", KVM_SET_XSAVE, 0x5000_aea5),
    ("KVM_SIGNAL_MSI", KVM_SIGNAL_MSI, 0x4020_aea5),
    (
        "KVM_REGISTER_COALESCED_MMIO",
        KVM_REGISTER_COALESCED_MMIO,
        0x4010_ae67,
    ),
    (
        "KVM_UNREGISTER_COALESCED_MMIO",
        KVM_UNREGISTER_COALESCED_MMIO,
        0x4010_ae68,
    ),
    ("KVM_GET_XCRS", KVM_GET_XCRS, 0x8188_aea6),
    ("KVM_SET_XCRS", KVM_SET_XCRS, 0x4188_aea7),
    (
        "KVM_X86_SET_MSR_FILTER",
        KVM_X86_SET_MSR_FILTER,
        0x4188_aec6,
    ),
];

#[test]
fn request_codes_equal_linux() {
    for &(name, ours, linux) in LINUX {
        assert_eq!(
            ours, linux,
            "{name}: ours {ours:#010x}, Linux {linux:#010x}"
        );
    }
}

#[test]
fn request_codes_are_distinct_and_kvm_typed() {
    for (i, &(name, code, _)) in LINUX.iter().enumerate() {
        assert_eq!(ioctl::type_(code), KVMIO, "{name}");
        for &(other, other_code, _) in &LINUX[i + 1..] {
            assert_ne!(code, other_code, "{name} and {other} share a code");
        }
    }
}

#[test]
fn encoding_matches_linux_macros() {
    // _IOWR(KVMIO, 0x88, struct kvm_msrs): both directions, 8 bytes.
    assert_eq!(ioctl::iowr(KVMIO, 0x88, 8), 0xc008_ae88);
    assert_eq!(ioctl::ior(KVMIO, 0x81, 144), 0x8090_ae81);
    assert_eq!(ioctl::iow(KVMIO, 0x82, 144), 0x4090_ae82);
    assert_eq!(ioctl::io(KVMIO, 0x80), 0x0000_ae80);
    // The largest size the 14-bit field holds.
    assert_eq!(ioctl::size(ioctl::iow(0, 0, 0x3fff)), 0x3fff);
}

#[test]
#[should_panic(expected = "14 bits")]
fn encoding_rejects_oversized_arguments() {
    let size = std::hint::black_box(1 << 14);
    ioctl::iow(KVMIO, 0, size);
}

#[test]
fn decoding_inverts_encoding() {
    let code = KVM_GET_MSRS;
    assert_eq!(ioctl::dir(code), IOC_READ | IOC_WRITE);
    assert_eq!(ioctl::type_(code), 0xae);
    assert_eq!(ioctl::nr(code), 0x88);
    assert_eq!(ioctl::size(code), size_of::<kvm_msrs>());

    assert_eq!(ioctl::dir(KVM_GET_XSAVE), IOC_READ);
    assert_eq!(ioctl::size(KVM_GET_XSAVE), 4096);
    assert_eq!(ioctl::dir(KVM_SET_REGS), IOC_WRITE);
    assert_eq!(ioctl::dir(KVM_RUN), IOC_NONE);
    assert_eq!(ioctl::size(KVM_RUN), 0);
}

#[test]
fn integer_and_pointer_arguments() {
    // DESIGN.md D1: the argument register holds an integer for these...
    for code in [
        KVM_CREATE_VM,
        KVM_CHECK_EXTENSION,
        KVM_CREATE_VCPU,
        KVM_SET_TSS_ADDR,
        KVM_RUN,
    ] {
        assert!(!ioctl::takes_pointer(code), "{code:#x}");
    }
    // ...and a control-domain guest-physical address for these.
    for code in [
        KVM_GET_REGS,
        KVM_SET_REGS,
        KVM_GET_MSRS,
        KVM_SET_USER_MEMORY_REGION,
    ] {
        assert!(ioctl::takes_pointer(code), "{code:#x}");
    }
}
