//! `KVM_XEN_HVM_CONFIG` (seed 001): the MSR a Xen PV-on-HVM guest writes
//! to have a page of hypercall stubs put into its memory. A write of
//! `GPA | n` (GPA page-aligned, `n` in bits 11:0) copies page `n` of the
//! blob the VMM named — the 64-bit one if the vCPU is in 64-bit mode, else
//! the 32-bit one (EFER.LMA, as KVM's `is_long_mode`) — from control-domain
//! memory into guest RAM at GPA. A page number past the blob (so any, with
//! no blob), a GPA that is not guest RAM the guest may write, or a blob
//! outside the control domain's RAM raise #GP (KVM would exit to a VMM that
//! asked for `KVM_MSR_EXIT_REASON_INVAL`, or fail `KVM_RUN` with `-EFAULT`
//! for the blob); the page written counts as dirty.

use abi::kvm::kvm_xen_hvm_config;

use crate::guest::GuestRam;
use crate::mm::GuestPhys;

const PAGE: u64 = 4096;
/// The MSRs KVM accepts for the hypercall page (0x4000_0000–0x4fff_ffff).
const MSR_RANGE: core::ops::RangeInclusive<u32> = 0x4000_0000..=0x4fff_ffff;

/// A request or a write the hypervisor refuses (`-EINVAL`, or #GP for the
/// guest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

/// A VM's configuration, as checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenHvm {
    pub msr: u32,
    blob_addr_32: u64,
    blob_addr_64: u64,
    blob_pages_32: u8,
    blob_pages_64: u8,
}

/// Checks a request: no flag may be set (intercepting hypercalls, event
/// channels and the rest are not offered; `KVM_XEN_HVM_CONFIG_HYPERCALL_MSR`
/// is a capability bit, not a flag, as in KVM), and the MSR must lie in
/// KVM's range for it. `Ok(None)` for `msr` 0: no hypercall page.
pub fn config(c: &kvm_xen_hvm_config) -> Result<Option<XenHvm>, Refused> {
    if c.flags != 0 || (c.msr != 0 && !MSR_RANGE.contains(&c.msr)) {
        return Err(Refused);
    }
    Ok((c.msr != 0).then_some(XenHvm {
        msr: c.msr,
        blob_addr_32: c.blob_addr_32,
        blob_addr_64: c.blob_addr_64,
        blob_pages_32: c.blob_size_32,
        blob_pages_64: c.blob_size_64,
    }))
}

/// The guest wrote `value` to the MSR with EFER.LMA = `long_mode`: copies
/// the page. Err: the guest gets #GP (nothing was written).
pub fn write_page(
    x: &XenHvm,
    value: u64,
    long_mode: bool,
    cd: &GuestRam,
    guest: &mut GuestRam,
) -> Result<(), Refused> {
    let page = value & (PAGE - 1);
    let gpa = GuestPhys::new(value & !(PAGE - 1));
    if !guest.writable(gpa, PAGE) {
        return Err(Refused);
    }
    let (addr, pages) = if long_mode {
        (x.blob_addr_64, x.blob_pages_64)
    } else {
        (x.blob_addr_32, x.blob_pages_32)
    };
    if page >= u64::from(pages) {
        return Err(Refused);
    }
    // The blob is control-domain memory, read in pieces (no allocation on
    // the exit path); all of it is checked before anything is written.
    let src = addr.checked_add(page * PAGE).ok_or(Refused)?;
    if !cd.covers(GuestPhys::new(src), PAGE) {
        return Err(Refused);
    }
    let mut chunk = [0u8; 256];
    for off in (0..PAGE).step_by(chunk.len()) {
        if !cd.read(GuestPhys::new(src + off), &mut chunk)
            || !guest.write(GuestPhys::new(gpa.raw() + off), &chunk)
        {
            return Err(Refused);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::HostPhys;
    use abi::kvm::{KVM_XEN_HVM_CONFIG_HYPERCALL_MSR, KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL};

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    /// RAM of `n` pages each filled with `fill(i)`.
    fn ram(n: usize, fill: impl Fn(usize) -> u8) -> GuestRam {
        let pages = (0..n)
            .map(|i| HostPhys::new(Box::leak(Box::new(Page([fill(i); 4096]))).0.as_ptr() as u64))
            .collect();
        GuestRam::from_host_pages(pages)
    }

    fn byte(ram: &GuestRam, gpa: u64) -> u8 {
        let mut b = [0];
        assert!(ram.read(GuestPhys::new(gpa), &mut b));
        b[0]
    }

    fn cfg(blobs: bool) -> XenHvm {
        let c = kvm_xen_hvm_config {
            msr: 0x4000_0000,
            blob_addr_64: 0,
            blob_addr_32: 0x2000,
            blob_size_64: if blobs { 2 } else { 0 },
            blob_size_32: if blobs { 1 } else { 0 },
            ..Default::default()
        };
        config(&c).unwrap().unwrap()
    }

    #[test]
    fn config_checks() {
        let mut c = kvm_xen_hvm_config {
            msr: 0x4000_0000,
            ..Default::default()
        };
        assert!(config(&c).unwrap().is_some());
        for flags in [
            KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
            KVM_XEN_HVM_CONFIG_HYPERCALL_MSR,
        ] {
            c.flags = flags;
            assert_eq!(config(&c), Err(Refused), "{flags:#x}");
        }
        c.flags = 0;
        c.msr = crate::arch::msr::IA32_EFER;
        assert_eq!(config(&c), Err(Refused), "outside KVM's range");
        c.msr = 0;
        assert_eq!(config(&c), Ok(None));
    }

    #[test]
    fn pages_by_mode_and_number() {
        // The control domain: the 64-bit blob's pages at 0 and 0x1000, the
        // 32-bit blob's at 0x2000.
        let cd = ram(3, |i| [0x64, 0x65, 0x32][i]);
        let mut guest = ram(4, |_| 0);
        let x = cfg(true);
        assert!(write_page(&x, 0x1000 | 1, true, &cd, &mut guest).is_ok());
        assert_eq!((byte(&guest, 0x1000), byte(&guest, 0x1fff)), (0x65, 0x65));
        assert!(write_page(&x, 0x2000, false, &cd, &mut guest).is_ok());
        assert_eq!(byte(&guest, 0x2abc), 0x32);
        // Past the blob (2 pages in 64-bit mode, 1 in 32-bit), outside RAM.
        assert!(write_page(&x, 0x3000 | 2, true, &cd, &mut guest).is_err());
        assert!(write_page(&x, 0x3000 | 1, false, &cd, &mut guest).is_err());
        assert!(write_page(&x, 0x10_0000, true, &cd, &mut guest).is_err());
        assert_eq!(byte(&guest, 0x3000), 0, "nothing written");
        // A blob outside the control domain's RAM: nothing written either.
        let far = XenHvm {
            blob_addr_64: 0x10_0000,
            ..x
        };
        assert!(write_page(&far, 0x3000, true, &cd, &mut guest).is_err());
        assert_eq!(byte(&guest, 0x3000), 0);
    }

    #[test]
    fn without_blobs_every_page_faults() {
        let cd = ram(1, |_| 0);
        let mut guest = ram(2, |_| 0);
        assert!(write_page(&cfg(false), 0x1000, true, &cd, &mut guest).is_err());
        assert_eq!(byte(&guest, 0x1000), 0);
    }
}
