//! The `xenner` guest: the Xen PV-on-HVM hypercall-page protocol of seed
//! 004 against `KVM_XEN_HVM_CONFIG` (seed 001). It finds Xen's CPUID leaves
//! by their signature (scanning 0x4000_0000.. in steps of 0x100, as Linux
//! does), reads the page count and MSR from leaf base + 2, writes the MSR
//! once per page with `GPA | page`, checks the copied bytes against the
//! blobs the VMM gave (`abi::guest::xen_blob_byte`), reads the dirty log
//! after a copy into a logged slot, checks that a page number past the
//! blob and GPAs that are not writable RAM raise #GP, and last calls a
//! hypercall stub in page 0. Its 32-bit boot code writes the MSR too,
//! and must get the 32-bit blob.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod guest {
    use abi::guest::{LOGGED_SLOT_BASE, ROM_BASE, XEN_HYPERCALL_MSR, xen_blob_byte};
    use core::arch::{asm, global_asm};
    use guests::cpu::cpuid;
    use guests::fault::{GP, try_wrmsr};
    use guests::port::{dirty_log_head, exit};
    use guests::{BootInfo, fail, println};

    /// Where the 64-bit pages go, and the 32-bit boot code's page.
    const PAGES_AT: u64 = 0x30_0000;
    const PAGE32_AT: u64 = 0x30_8000;

    // In 32-bit protected mode (paging off): page 1 of the blob to
    // PAGE32_AT. The hook may clobber EAX, EDX and ESI only.
    global_asm!(
        r#"
        .section .text.boot.xenner, "ax"
        .code32
        .global protected_mode_hook
    protected_mode_hook:
        push ecx
        mov ecx, {msr}
        mov eax, {value}
        xor edx, edx
        wrmsr
        pop ecx
        ret
        .code64
        "#,
        msr = const XEN_HYPERCALL_MSR,
        value = const PAGE32_AT as u32 + 1,
    );

    guests::entry!(run);

    fn xen_base() -> Option<u32> {
        (0x4000_0000u32..0x4001_0000).step_by(0x100).find(|&base| {
            let c = cpuid(base, 0);
            [c.ebx, c.ecx, c.edx] == [b"XenV", b"MMXe", b"nVMM"].map(|s| u32::from_le_bytes(*s))
        })
    }

    fn check_page(at: u64, long: bool, page: u32, amd: bool, what: &str) {
        for i in 0..4096usize {
            // SAFETY: the first GiB is identity-mapped; `at` is our RAM.
            let got = unsafe { core::ptr::read_volatile((at as *const u8).add(i)) };
            let want = xen_blob_byte(long, page, i, amd);
            if got != want {
                fail!("{what}: byte {i:#x} is {got:#x}, want {want:#x}");
            }
        }
    }

    fn run(_boot: BootInfo) -> ! {
        let amd = cpuid(0, 0).ebx == u32::from_le_bytes(*b"Auth");
        let Some(base) = xen_base() else {
            fail!("no XenVMMXenVMM signature in CPUID 0x40000000-0x40010000")
        };
        let leaf = cpuid(base + 2, 0);
        let (pages, msr) = (leaf.eax, leaf.ebx);
        println!("xen: signature at {base:#x}, {pages} hypercall pages, MSR {msr:#x}");
        if pages == 0 || pages > 8 {
            fail!("xen: {pages} pages");
        }
        for page in 0..pages {
            let at = PAGES_AT + u64::from(page) * 4096;
            // SAFETY: the MSR only writes our own free RAM at `at`.
            if let Err(v) = unsafe { try_wrmsr(msr, at | u64::from(page)) } {
                fail!("xen: WRMSR {msr:#x} for page {page} raised vector {v}");
            }
            check_page(at, true, page, amd, "xen: 64-bit blob");
        }
        check_page(
            PAGE32_AT,
            false,
            1,
            amd,
            "xen: 32-bit blob (written from 32-bit code)",
        );
        println!("xen: {pages} pages of the 64-bit blob and one of the 32-bit blob copied");
        // A page copied into a slot that logs dirty pages is dirty. Printed,
        // not judged here: a VMM that copies the page itself (a kernel
        // without KVM_CAP_XEN_HVM) bypasses the kernel's log. The boot
        // tests require page 5 under Mojito.
        dirty_log_head();
        let logged = LOGGED_SLOT_BASE + 5 * 4096;
        // SAFETY: the logged slot's page 5, which nothing else uses.
        if let Err(v) = unsafe { try_wrmsr(msr, logged) } {
            fail!("xen: WRMSR {msr:#x} into the logged slot raised vector {v}");
        }
        check_page(logged, true, 0, amd, "xen: the page in the logged slot");
        let log = dirty_log_head();
        println!("xen: dirty log after the copy: {:#x} {:#x}", log[0], log[1]);
        for (value, what) in [
            (PAGES_AT | u64::from(pages), "a page past the blob"),
            (0x8000_0000, "a GPA that is not RAM"),
            (ROM_BASE, "a GPA in a read-only slot"),
        ] {
            // SAFETY: refused, so nothing is written.
            match unsafe { try_wrmsr(msr, value) } {
                Err(GP) => {}
                other => fail!("xen: WRMSR {value:#x} ({what}): {other:?}, want #GP"),
            }
        }
        println!("xen: #GP for a page past the blob, a GPA outside RAM and a read-only one");
        // Call hypercall stub 0x21: mov eax, 0x21; VMCALL/VMMCALL; ret. No
        // hypervisor here knows it: -KVM_ENOSYS.
        let stub = PAGES_AT + 0x21 * 32;
        let rax: u64;
        // SAFETY: the stub was just checked byte for byte: it sets EAX,
        // makes the hypercall (which changes only RAX) and returns.
        unsafe { asm!("call {stub}", stub = in(reg) stub, out("rax") rax, clobber_abi("C")) };
        if rax as i64 != -1000 {
            fail!("xen: hypercall stub 0x21 returned {rax:#x}, want -KVM_ENOSYS");
        }
        println!("xen: hypercall stub 0x21 returned -KVM_ENOSYS");
        println!("PASS");
        exit(0)
    }
}
