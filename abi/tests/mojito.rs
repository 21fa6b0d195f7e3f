//! Mojito's own requests, boot-info page and hypercall return convention.

use abi::kvm::errno::{EBADF, EINVAL};
use abi::kvm::ioctl::{self, IOC_NONE, IOC_READ, IOC_WRITE};
use abi::kvm::mojito::*;
use abi::kvm::{KVM_HC_MAP_GPA_RANGE, KVMIO};

#[test]
fn requests_have_their_own_type_byte() {
    assert_ne!(MOJITO_IOCTL_TYPE, KVMIO);
    for (code, dir, size) in [
        (MOJITO_CLOSE, IOC_NONE, 0),
        (
            MOJITO_SET_RUN_PAGES,
            IOC_WRITE,
            size_of::<mojito_run_pages>(),
        ),
        (
            MOJITO_READ_LOG,
            IOC_READ | IOC_WRITE,
            size_of::<mojito_log_read>(),
        ),
        (MOJITO_POWER_OFF, IOC_NONE, 0),
        (
            MOJITO_METADATA_POOL,
            IOC_READ | IOC_WRITE,
            size_of::<mojito_metadata_pool>(),
        ),
    ] {
        assert_eq!(ioctl::type_(code), MOJITO_IOCTL_TYPE);
        assert_eq!(ioctl::dir(code), dir);
        assert_eq!(ioctl::size(code), size);
        // A request code can never be mistaken for a paravirtual hypercall
        // number, so an ordinary guest gets -KVM_ENOSYS for it.
        assert!(u64::from(code) > KVM_HC_MAP_GPA_RANGE);
    }
    assert_eq!(MOJITO_SET_RUN_PAGES, 0x4040_b801);
    assert_eq!(MOJITO_READ_LOG, 0xc040_b802);
    assert_eq!(MOJITO_METADATA_POOL, 0xc040_b804);
}

#[test]
fn return_values() {
    assert_eq!(error_return(EINVAL), (-22i64) as u64);
    assert_eq!(decode_return(error_return(EBADF)), Err(EBADF));
    assert_eq!(decode_return(error_return(4095)), Err(4095));
    assert_eq!(decode_return(0), Ok(0));
    assert_eq!(decode_return(12), Ok(12));
    // Just below the error range is a value.
    assert_eq!(decode_return(u64::MAX - 4095), Ok(u64::MAX - 4095));
}

#[test]
fn boot_info_page() {
    assert_eq!(size_of::<mojito_boot_info>(), 4096);
    assert_eq!(&MOJITO_BOOT_INFO_MAGIC.to_le_bytes(), b"MojitoBI");
    let info = mojito_boot_info::default();
    assert_eq!(info.magic, MOJITO_BOOT_INFO_MAGIC);
    assert_eq!(info.version, MOJITO_BOOT_INFO_VERSION);
    assert_eq!(info.size as usize, MOJITO_BOOT_INFO_SIZE);
    assert_eq!(info.flags, 0);
    assert!(info.padding.iter().all(|&p| p == 0));
    assert_eq!(info.memory.len(), MOJITO_BOOT_INFO_MAX_MEMORY);
    assert_ne!(MOJITO_HYPERCALL_VMCALL, MOJITO_HYPERCALL_VMMCALL);
}
