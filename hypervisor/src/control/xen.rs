//! `KVM_XEN_HVM_CONFIG` (seed 001): the MSR a Xen PV-on-HVM guest writes
//! to have a page of hypercall stubs put into its memory. A write of
//! `GPA | n` (GPA page-aligned, `n` in bits 11:0) copies page `n` of the
//! blob the VMM named — the 64-bit one if the vCPU is in 64-bit mode, else
//! the 32-bit one — from control-domain memory into guest RAM at GPA. With
//! no blobs (both sizes 0) the hypervisor writes the page itself, as KVM
//! does: entry `i` at `32 × i` is `mov eax, i; VMCALL/VMMCALL; ret`. A page
//! number past the blob, a GPA that is not guest RAM the guest may write,
//! or a blob outside the control domain's RAM raise #GP; the page written
//! counts as dirty.

use abi::kvm::{KVM_XEN_HVM_CONFIG_HYPERCALL_MSR, kvm_xen_hvm_config};

use crate::guest::GuestRam;
use crate::mm::GuestPhys;

const PAGE: u64 = 4096;
/// Bytes per hypercall stub in a generated page (Xen's layout).
const STUB: usize = 32;
/// INT3: what a generated page holds between the stubs.
const INT3: u8 = 0xcc;

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

/// Checks a request: only `KVM_XEN_HVM_CONFIG_HYPERCALL_MSR` may be set
/// (intercepting hypercalls, shared info and event channels are not
/// offered), and the MSR must be one guests cannot reach without an exit.
/// `Ok(None)` for `msr` 0: no hypercall page.
pub fn config(c: &kvm_xen_hvm_config) -> Result<Option<XenHvm>, Refused> {
    if c.flags & !KVM_XEN_HVM_CONFIG_HYPERCALL_MSR != 0
        || crate::vcpu::msr::PASSTHROUGH.contains(&c.msr)
    {
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

/// The guest wrote `value` to the MSR in `long_mode` (64-bit code):
/// copies the page. Err: the guest gets #GP (nothing was written).
/// `vmcall`: the vendor's hypercall instruction, for a generated page.
pub fn write_page(
    x: &XenHvm,
    value: u64,
    long_mode: bool,
    vmcall: [u8; 3],
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
    if x.blob_pages_32 == 0 && x.blob_pages_64 == 0 {
        if page != 0 {
            return Err(Refused);
        }
        let mut stub = [INT3; STUB];
        stub[0] = 0xb8; // mov eax, imm32
        stub[5..8].copy_from_slice(&vmcall);
        stub[8] = 0xc3; // ret
        for i in 0..(PAGE as usize / STUB) {
            stub[1..5].copy_from_slice(&(i as u32).to_le_bytes());
            if !guest.write(GuestPhys::new(gpa.raw() + (i * STUB) as u64), &stub) {
                return Err(Refused);
            }
        }
        return Ok(());
    }
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
    use abi::kvm::KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL;

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
            flags: KVM_XEN_HVM_CONFIG_HYPERCALL_MSR,
            ..Default::default()
        };
        assert!(config(&c).unwrap().is_some());
        c.flags |= KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL;
        assert_eq!(config(&c), Err(Refused));
        c.flags = 0;
        c.msr = crate::arch::msr::IA32_LSTAR;
        assert_eq!(
            config(&c),
            Err(Refused),
            "an MSR guests reach without an exit"
        );
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
        let vmcall = [0x0f, 0x01, 0xc1];
        assert!(write_page(&x, 0x1000 | 1, true, vmcall, &cd, &mut guest).is_ok());
        assert_eq!((byte(&guest, 0x1000), byte(&guest, 0x1fff)), (0x65, 0x65));
        assert!(write_page(&x, 0x2000, false, vmcall, &cd, &mut guest).is_ok());
        assert_eq!(byte(&guest, 0x2abc), 0x32);
        // Past the blob (2 pages in 64-bit mode, 1 in 32-bit), outside RAM.
        assert!(write_page(&x, 0x3000 | 2, true, vmcall, &cd, &mut guest).is_err());
        assert!(write_page(&x, 0x3000 | 1, false, vmcall, &cd, &mut guest).is_err());
        assert!(write_page(&x, 0x10_0000, true, vmcall, &cd, &mut guest).is_err());
        assert_eq!(byte(&guest, 0x3000), 0, "nothing written");
        // A blob outside the control domain's RAM: nothing written either.
        let far = XenHvm {
            blob_addr_64: 0x10_0000,
            ..x
        };
        assert!(write_page(&far, 0x3000, true, vmcall, &cd, &mut guest).is_err());
        assert_eq!(byte(&guest, 0x3000), 0);
    }

    #[test]
    fn without_blobs_the_stubs_are_generated() {
        let cd = ram(1, |_| 0);
        let mut guest = ram(2, |_| 0);
        let x = cfg(false);
        assert!(write_page(&x, 0x1000, true, [0x0f, 0x01, 0xd9], &cd, &mut guest).is_ok());
        let at = 0x1000 + 0x21 * 32;
        let got: [u8; 10] = core::array::from_fn(|i| byte(&guest, at + i as u64));
        assert_eq!(got, [0xb8, 0x21, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3, 0xcc]);
        assert!(write_page(&x, 0x1000 | 1, true, [0x0f, 0x01, 0xd9], &cd, &mut guest).is_err());
    }
}
