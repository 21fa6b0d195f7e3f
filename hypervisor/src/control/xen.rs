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
pub fn config(c: &kvm_xen_hvm_config) -> Result<Option<XenHvm>, ()> {
    if c.flags & !KVM_XEN_HVM_CONFIG_HYPERCALL_MSR != 0
        || crate::vcpu::msr::PASSTHROUGH.contains(&c.msr)
    {
        return Err(());
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
) -> Result<(), ()> {
    let page = value & (PAGE - 1);
    let gpa = GuestPhys::new(value & !(PAGE - 1));
    if !guest.writable(gpa, PAGE) {
        return Err(());
    }
    let (addr, pages) = if long_mode {
        (x.blob_addr_64, x.blob_pages_64)
    } else {
        (x.blob_addr_32, x.blob_pages_32)
    };
    if x.blob_pages_32 == 0 && x.blob_pages_64 == 0 {
        if page != 0 {
            return Err(());
        }
        let mut stub = [INT3; STUB];
        stub[0] = 0xb8; // mov eax, imm32
        stub[5..8].copy_from_slice(&vmcall);
        stub[8] = 0xc3; // ret
        for i in 0..(PAGE as usize / STUB) {
            stub[1..5].copy_from_slice(&(i as u32).to_le_bytes());
            if !guest.write(GuestPhys::new(gpa.raw() + (i * STUB) as u64), &stub) {
                return Err(());
            }
        }
        return Ok(());
    }
    if page >= u64::from(pages) {
        return Err(());
    }
    // The blob is control-domain memory, read in pieces (no allocation on
    // the exit path); all of it is checked before anything is written.
    let src = addr.checked_add(page * PAGE).ok_or(())?;
    if !cd.covers(GuestPhys::new(src), PAGE) {
        return Err(());
    }
    let mut chunk = [0u8; 256];
    for off in (0..PAGE).step_by(chunk.len()) {
        if !cd.read(GuestPhys::new(src + off), &mut chunk)
            || !guest.write(GuestPhys::new(gpa.raw() + off), &chunk)
        {
            return Err(());
        }
    }
    Ok(())
}
