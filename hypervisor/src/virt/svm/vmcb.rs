//! The VMCB (AMD APM Vol. 2 Appendix B "Layout of VMCB"): a typed
//! `#[repr(C)]` struct whose every field offset is asserted against the
//! manual's table, plus the intercept and exit-code constants.

/// A segment in the save area (APM Vol. 2 Table B-2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VmcbSegment {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

/// The control area, offsets 0x000–0x3ff (APM Vol. 2 Table B-1).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Control {
    pub intercept_cr: u32,
    pub intercept_dr: u32,
    pub intercept_exceptions: u32,
    pub intercept_misc1: u32,
    pub intercept_misc2: u32,
    pub intercept_misc3: u32,
    _reserved1: [u8; 0x24],
    pub pause_filter_threshold: u16,
    pub pause_filter_count: u16,
    pub iopm_base_pa: u64,
    pub msrpm_base_pa: u64,
    pub tsc_offset: u64,
    pub guest_asid: u32,
    pub tlb_control: u8,
    _reserved2: [u8; 3],
    pub vintr: u64,
    pub interrupt_shadow: u64,
    pub exit_code: u64,
    pub exit_info1: u64,
    pub exit_info2: u64,
    pub exit_int_info: u64,
    pub np_control: u64,
    pub avic_apic_bar: u64,
    pub ghcb_pa: u64,
    pub event_inj: u64,
    pub n_cr3: u64,
    pub virt_ext: u64,
    pub clean_bits: u32,
    _reserved3: u32,
    pub next_rip: u64,
    pub insn_len: u8,
    pub insn_bytes: [u8; 15],
    _reserved4: [u8; 0x320],
}

/// The state-save area, offsets 0x400–0xfff (APM Vol. 2 Table B-2).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Save {
    pub es: VmcbSegment,
    pub cs: VmcbSegment,
    pub ss: VmcbSegment,
    pub ds: VmcbSegment,
    pub fs: VmcbSegment,
    pub gs: VmcbSegment,
    pub gdtr: VmcbSegment,
    pub ldtr: VmcbSegment,
    pub idtr: VmcbSegment,
    pub tr: VmcbSegment,
    _reserved1: [u8; 0x2b],
    pub cpl: u8,
    _reserved2: u32,
    pub efer: u64,
    _reserved3: [u8; 0x70],
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    _reserved4: [u8; 0x58],
    pub rsp: u64,
    pub s_cet: u64,
    pub ssp: u64,
    pub isst_addr: u64,
    pub rax: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub cr2: u64,
    _reserved5: [u8; 0x20],
    pub g_pat: u64,
    pub dbgctl: u64,
    pub br_from: u64,
    pub br_to: u64,
    pub last_excp_from: u64,
    pub last_excp_to: u64,
    _reserved6: [u8; 0x968],
}

/// A whole VMCB: one 4 KiB page.
#[repr(C, align(4096))]
#[derive(Clone, Copy, Debug)]
pub struct Vmcb {
    pub control: Control,
    pub save: Save,
}

macro_rules! assert_offsets {
    ($ty:ty { $($field:ident: $off:expr),* $(,)? }) => {
        const _: () = { $(assert!(core::mem::offset_of!($ty, $field) == $off);)* };
    };
}

assert_offsets!(Control {
    intercept_cr: 0x000,
    intercept_dr: 0x004,
    intercept_exceptions: 0x008,
    intercept_misc1: 0x00c,
    intercept_misc2: 0x010,
    intercept_misc3: 0x014,
    pause_filter_threshold: 0x03c,
    pause_filter_count: 0x03e,
    iopm_base_pa: 0x040,
    msrpm_base_pa: 0x048,
    tsc_offset: 0x050,
    guest_asid: 0x058,
    tlb_control: 0x05c,
    vintr: 0x060,
    interrupt_shadow: 0x068,
    exit_code: 0x070,
    exit_info1: 0x078,
    exit_info2: 0x080,
    exit_int_info: 0x088,
    np_control: 0x090,
    avic_apic_bar: 0x098,
    ghcb_pa: 0x0a0,
    event_inj: 0x0a8,
    n_cr3: 0x0b0,
    virt_ext: 0x0b8,
    clean_bits: 0x0c0,
    next_rip: 0x0c8,
    insn_len: 0x0d0,
    insn_bytes: 0x0d1,
});
assert_offsets!(Save {
    es: 0x000,
    cs: 0x010,
    ss: 0x020,
    ds: 0x030,
    fs: 0x040,
    gs: 0x050,
    gdtr: 0x060,
    ldtr: 0x070,
    idtr: 0x080,
    tr: 0x090,
    cpl: 0x0cb,
    efer: 0x0d0,
    cr4: 0x148,
    cr3: 0x150,
    cr0: 0x158,
    dr7: 0x160,
    dr6: 0x168,
    rflags: 0x170,
    rip: 0x178,
    rsp: 0x1d8,
    s_cet: 0x1e0,
    ssp: 0x1e8,
    isst_addr: 0x1f0,
    rax: 0x1f8,
    star: 0x200,
    lstar: 0x208,
    cstar: 0x210,
    sfmask: 0x218,
    kernel_gs_base: 0x220,
    sysenter_cs: 0x228,
    sysenter_esp: 0x230,
    sysenter_eip: 0x238,
    cr2: 0x240,
    g_pat: 0x268,
    dbgctl: 0x270,
    br_from: 0x278,
    br_to: 0x280,
    last_excp_from: 0x288,
    last_excp_to: 0x290,
});
const _: () = assert!(core::mem::size_of::<Control>() == 0x400);
const _: () = assert!(core::mem::size_of::<Save>() == 0xc00);
const _: () = assert!(core::mem::size_of::<Vmcb>() == 0x1000);
const _: () = assert!(core::mem::offset_of!(Vmcb, save) == 0x400);

/// `intercept_cr` bit for writes to CR4 (writes are bits 31:16).
pub const CR4_WRITE_INTERCEPT: u32 = 1 << (16 + 4);
/// `intercept_cr` bit for writes to CR8 (APM Vol. 2 15.9; taken even with
/// V_INTR_MASKING, 15.21.5).
pub const CR8_WRITE_INTERCEPT: u32 = 1 << (16 + 8);

/// Intercept vector 3 (`intercept_misc1`, APM Vol. 2 Table B-1 offset 0x0c).
pub mod misc1 {
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const SMI: u32 = 1 << 2;
    pub const INIT: u32 = 1 << 3;
    pub const VINTR: u32 = 1 << 4;
    pub const RDPMC: u32 = 1 << 15;
    pub const CPUID: u32 = 1 << 18;
    pub const IRET: u32 = 1 << 20;
    pub const INTN: u32 = 1 << 21;
    pub const INVD: u32 = 1 << 22;
    pub const HLT: u32 = 1 << 24;
    pub const INVLPGA: u32 = 1 << 26;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const FERR_FREEZE: u32 = 1 << 30;
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept vector 4 (`intercept_misc2`, offset 0x10).
pub mod misc2 {
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
    pub const MONITOR: u32 = 1 << 10;
    pub const MWAIT: u32 = 1 << 11;
    pub const MWAIT_CONDITIONAL: u32 = 1 << 12;
    pub const XSETBV: u32 = 1 << 13;
}

/// `vintr` bits (offset 0x60).
pub mod vintr {
    pub const V_TPR_MASK: u64 = 0xf;
    /// A virtual interrupt is pending (with VINTR intercepted: exit once the
    /// guest could take it).
    pub const V_IRQ: u64 = 1 << 8;
    pub const V_GIF: u64 = 1 << 9;
    /// The pending virtual interrupt ignores the guest's TPR.
    pub const V_IGN_TPR: u64 = 1 << 20;
    pub const V_INTR_MASKING: u64 = 1 << 24;
    pub const V_GIF_ENABLE: u64 = 1 << 25;
}

/// `tlb_control` values (offset 0x5c).
pub mod tlb {
    pub const NONE: u8 = 0;
    pub const FLUSH_ALL: u8 = 1;
    pub const FLUSH_ASID: u8 = 3;
}

/// `np_control` bit 0: nested paging on.
pub const NP_ENABLE: u64 = 1 << 0;

/// EVENTINJ / EXITINTINFO (APM Vol. 2 15.20): vector 7:0, type 10:8
/// (3 = exception), error-code-valid bit 11, valid bit 31, error code 63:32.
pub mod event {
    pub const TYPE_MASK: u64 = 7 << 8;
    pub const TYPE_INTR: u64 = 0;
    /// NMI (APM Vol. 2 15.20), vector 2.
    pub const TYPE_NMI: u64 = 2 << 8;
    pub const TYPE_EXCEPTION: u64 = 3 << 8;
    pub const TYPE_SOFTWARE_INTERRUPT: u64 = 4 << 8;
    pub const ERROR_VALID: u64 = 1 << 11;
    pub const VALID: u64 = 1 << 31;

    /// An event an instruction raised: INTn (type 4), or INT3/INTO (the #BP
    /// and #OF exceptions, vectors 3 and 4).
    pub const fn from_instruction(ev: u64) -> bool {
        let ty = ev & TYPE_MASK;
        let vector = ev & 0xff;
        ty == TYPE_SOFTWARE_INTERRUPT || (ty == TYPE_EXCEPTION && (vector == 3 || vector == 4))
    }
}

/// Exit codes (APM Vol. 2 Appendix C, Table C-1).
pub mod code {
    pub const CR0_READ: u64 = 0x00;
    pub const CR0_WRITE: u64 = 0x10;
    pub const DR0_READ: u64 = 0x20;
    pub const DR7_READ: u64 = 0x27;
    pub const DR0_WRITE: u64 = 0x30;
    pub const DR7_WRITE: u64 = 0x37;
    pub const CR15_WRITE: u64 = 0x1f;
    pub const EXCEPTION_FIRST: u64 = 0x40;
    pub const EXCEPTION_LAST: u64 = 0x5f;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const SMI: u64 = 0x62;
    pub const INIT: u64 = 0x63;
    pub const VINTR: u64 = 0x64;
    /// IRET (APM Vol. 2 Appendix C), intercepted before it executes.
    pub const IRET: u64 = 0x74;
    pub const RDPMC: u64 = 0x6f;
    pub const CPUID: u64 = 0x72;
    pub const INVD: u64 = 0x76;
    pub const SWINT: u64 = 0x75;
    pub const HLT: u64 = 0x78;
    pub const INVLPGA: u64 = 0x7a;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const FERR_FREEZE: u64 = 0x7e;
    pub const SHUTDOWN: u64 = 0x7f;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const VMLOAD: u64 = 0x82;
    pub const VMSAVE: u64 = 0x83;
    pub const STGI: u64 = 0x84;
    pub const CLGI: u64 = 0x85;
    pub const SKINIT: u64 = 0x86;
    pub const WBINVD: u64 = 0x89;
    pub const MONITOR: u64 = 0x8a;
    pub const MWAIT: u64 = 0x8b;
    pub const MWAIT_CONDITIONAL: u64 = 0x8c;
    pub const XSETBV: u64 = 0x8d;
    pub const NPF: u64 = 0x400;
    /// VMEXIT_INVALID (-1). QEMU's TCG stores it as 0xffff_ffff: compare
    /// the low 32 bits (FACTS.md).
    pub const INVALID_LOW32: u64 = 0xffff_ffff;
}

/// Where an MSR's intercept bits live in the 8 KiB MSR permission map (APM
/// Vol. 2 15.11): two bits per MSR (read, then write) in three 2 KiB ranges.
/// Returns (byte, read bit); the write bit is the next one. None for MSRs
/// outside the ranges (those always exit).
pub fn msrpm_bits(msr: u32) -> Option<(usize, u8)> {
    let (base, index) = match msr {
        0..=0x1fff => (0x000, msr),
        0xc000_0000..=0xc000_1fff => (0x800, msr - 0xc000_0000),
        0xc001_0000..=0xc001_1fff => (0x1000, msr - 0xc001_0000),
        _ => return None,
    };
    let bit = index as usize * 2;
    Some((base + bit / 8, (bit % 8) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_from_instructions() {
        assert!(event::from_instruction(
            event::VALID | event::TYPE_SOFTWARE_INTERRUPT | 0x80
        ));
        assert!(event::from_instruction(
            event::VALID | event::TYPE_EXCEPTION | 3
        ));
        assert!(!event::from_instruction(
            event::VALID | event::TYPE_EXCEPTION | 14
        ));
        assert!(!event::from_instruction(event::VALID | 0x20));
    }

    #[test]
    fn msrpm_layout() {
        assert_eq!(msrpm_bits(0), Some((0, 0)));
        assert_eq!(msrpm_bits(0x10), Some((4, 0)));
        assert_eq!(msrpm_bits(0x11), Some((4, 2)));
        assert_eq!(msrpm_bits(0xc000_0082), Some((0x800 + 0x20, 4)));
        assert_eq!(msrpm_bits(0xc001_0117), Some((0x1000 + 0x45, 6)));
        assert_eq!(msrpm_bits(0x2000), None);
        assert_eq!(msrpm_bits(0xc000_2000), None);
    }
}
