//! Vendor-neutral register state.

/// The general registers the entry stubs save and restore (RSP and RIP live
/// in the VMCS/VMCB). `#[repr(C)]`: the stubs use the offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gprs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// Offsets the assembly stubs rely on.
pub mod offsets {
    pub const RAX: usize = 0;
    pub const RBX: usize = 8;
    pub const RCX: usize = 16;
    pub const RDX: usize = 24;
    pub const RSI: usize = 32;
    pub const RDI: usize = 40;
    pub const RBP: usize = 48;
    pub const R8: usize = 56;
    pub const R9: usize = 64;
    pub const R10: usize = 72;
    pub const R11: usize = 80;
    pub const R12: usize = 88;
    pub const R13: usize = 96;
    pub const R14: usize = 104;
    pub const R15: usize = 112;
}

const _: () = {
    assert!(core::mem::offset_of!(Gprs, rax) == offsets::RAX);
    assert!(core::mem::offset_of!(Gprs, rdi) == offsets::RDI);
    assert!(core::mem::offset_of!(Gprs, r15) == offsets::R15);
    assert!(core::mem::size_of::<Gprs>() == 120);
};

impl Gprs {
    /// Register `n` in the ModRM/instruction-encoding order (0 = RAX … 15 =
    /// R15), except that 4 (RSP) is not here: callers read RSP from the
    /// VMCS/VMCB.
    pub fn get(&self, n: u8) -> u64 {
        match n & 15 {
            0 => self.rax,
            1 => self.rcx,
            2 => self.rdx,
            3 => self.rbx,
            5 => self.rbp,
            6 => self.rsi,
            7 => self.rdi,
            8 => self.r8,
            9 => self.r9,
            10 => self.r10,
            11 => self.r11,
            12 => self.r12,
            13 => self.r13,
            14 => self.r14,
            15 => self.r15,
            _ => 0,
        }
    }

    /// Sets register `n` (encoding order; 4 = RSP is ignored here).
    pub fn set(&mut self, n: u8, v: u64) {
        match n & 15 {
            0 => self.rax = v,
            1 => self.rcx = v,
            2 => self.rdx = v,
            3 => self.rbx = v,
            5 => self.rbp = v,
            6 => self.rsi = v,
            7 => self.rdi = v,
            8 => self.r8 = v,
            9 => self.r9 = v,
            10 => self.r10 = v,
            11 => self.r11 = v,
            12 => self.r12 = v,
            13 => self.r13 = v,
            14 => self.r14 = v,
            15 => self.r15 = v,
            _ => {}
        }
    }

    /// EDX:EAX as one 64-bit value (RDMSR/WRMSR/XSETBV operands).
    pub fn edx_eax(&self) -> u64 {
        (self.rdx << 32) | (self.rax & 0xffff_ffff)
    }

    /// Loads EDX:EAX, zero-extending each into its 64-bit register.
    pub fn set_edx_eax(&mut self, v: u64) {
        self.rax = v & 0xffff_ffff;
        self.rdx = v >> 32;
    }
}

/// Segment registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentReg {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
    Ldtr,
    Tr,
}

/// A segment register's hidden state. `ar` uses VMX's access-rights layout
/// (SDM Vol. 3C 25.4.1): type 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13, D/B 14,
/// G 15, unusable 16. SVM's packed attribute converts with `to_svm_attrib`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    pub ar: u32,
}

/// Access-rights bits.
pub mod ar {
    pub const L: u32 = 1 << 13;
    pub const DB: u32 = 1 << 14;
}

impl Segment {
    /// VMX access rights → SVM attribute (APM Vol. 2 15.5.1: type..P in bits
    /// 7:0, AVL..G in bits 11:8).
    pub const fn to_svm_attrib(ar: u32) -> u16 {
        ((ar & 0xff) | ((ar >> 4) & 0xf00)) as u16
    }

    /// SVM attribute → VMX access rights.
    pub const fn from_svm_attrib(attrib: u16) -> u32 {
        let a = attrib as u32;
        (a & 0xff) | ((a & 0xf00) << 4)
    }

    /// Real-mode segments at reset: base 0, limit 64 KiB, present,
    /// read/write (data) or execute/read (code), accessed.
    pub const REAL_CODE_AR: u32 = 0x9b;
    pub const REAL_DATA_AR: u32 = 0x93;
    /// An LDT descriptor, present.
    pub const LDT_AR: u32 = 0x82;
    /// A busy 32-bit TSS, present (VM entry wants one even in real mode).
    pub const TSS_BUSY_AR: u32 = 0x8b;
}

/// A descriptor-table register (GDTR, IDTR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DescTable {
    pub base: u64,
    pub limit: u16,
}

/// The system state that `KVM_GET/SET_SREGS` and the control domain's
/// 64-bit entry set as a whole: segments, descriptor tables, CR0/CR3/CR4
/// and EFER. (CR2, CR8 and the APIC base travel separately.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemRegs {
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub gdt: DescTable,
    pub idt: DescTable,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

impl SystemRegs {
    /// (register, segment) pairs, for back ends that set them one by one.
    pub fn segments(&self) -> [(SegmentReg, Segment); 8] {
        [
            (SegmentReg::Es, self.es),
            (SegmentReg::Cs, self.cs),
            (SegmentReg::Ss, self.ss),
            (SegmentReg::Ds, self.ds),
            (SegmentReg::Fs, self.fs),
            (SegmentReg::Gs, self.gs),
            (SegmentReg::Ldtr, self.ldtr),
            (SegmentReg::Tr, self.tr),
        ]
    }
}

/// CR4 bits (SDM Vol. 3A 2.5) and which a guest may own.
pub mod cr4 {
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const UMIP: u64 = 1 << 11;
    pub const VMXE: u64 = 1 << 13;
    pub const FSGSBASE: u64 = 1 << 16;
    pub const PCIDE: u64 = 1 << 17;
    pub const OSXSAVE: u64 = 1 << 18;
    pub const SMEP: u64 = 1 << 20;
    pub const SMAP: u64 = 1 << 21;
    /// VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT: every x86-64
    /// CPU has them.
    pub const ALWAYS: u64 = 0x7ff;
    /// Every bit a guest may own where the CPU has the feature. Not VMXE,
    /// SMXE, LA57, PKE, CET, ...: those features are not offered.
    pub const GUEST_ALLOWED: u64 = ALWAYS | UMIP | FSGSBASE | PCIDE | OSXSAVE | SMEP | SMAP;
}

/// The guest's operating mode (SDM Vol. 3A 2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    Real,
    /// Protected mode (or compatibility mode) with a 16-bit code segment.
    Protected16,
    /// Protected mode (or compatibility mode) with a 32-bit code segment.
    Protected32,
    /// 64-bit mode.
    Long64,
}

impl CpuMode {
    pub fn from_state(cr0: u64, efer: u64, cs_ar: u32) -> Self {
        const CR0_PE: u64 = 1;
        if cr0 & CR0_PE == 0 {
            Self::Real
        } else if efer & crate::arch::msr::efer::LMA != 0 && cs_ar & ar::L != 0 {
            Self::Long64
        } else if cs_ar & ar::DB != 0 {
            Self::Protected32
        } else {
            Self::Protected16
        }
    }

    /// Default operand/address size in bytes for this mode.
    pub fn default_size(self) -> u8 {
        match self {
            Self::Real | Self::Protected16 => 2,
            Self::Protected32 | Self::Long64 => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svm_attrib_round_trip() {
        // 64-bit code: P, S, type 0xb, L, G.
        let ar = 0xa09b;
        assert_eq!(Segment::to_svm_attrib(ar), 0xa9b);
        assert_eq!(Segment::from_svm_attrib(0xa9b), ar);
        assert_eq!(Segment::to_svm_attrib(Segment::REAL_DATA_AR), 0x93);
    }

    #[test]
    fn modes() {
        use crate::arch::msr::efer::LMA;
        assert_eq!(CpuMode::from_state(0x10, 0, 0x9b), CpuMode::Real);
        assert_eq!(CpuMode::from_state(0x11, 0, 0x9b), CpuMode::Protected16);
        assert_eq!(CpuMode::from_state(0x11, 0, 0xc09b), CpuMode::Protected32);
        assert_eq!(
            CpuMode::from_state(0x8000_0011, LMA, 0xa09b),
            CpuMode::Long64
        );
        assert_eq!(
            CpuMode::from_state(0x8000_0011, LMA, 0xc09b),
            CpuMode::Protected32
        );
    }

    #[test]
    fn gpr_encoding_order() {
        let mut g = Gprs::default();
        for n in 0..16u8 {
            g.set(n, 100 + u64::from(n));
        }
        assert_eq!(g.rax, 100);
        assert_eq!(g.rcx, 101);
        assert_eq!(g.rbx, 103);
        assert_eq!(g.get(4), 0, "RSP is not a Gprs field");
        assert_eq!(g.r15, 115);
        g.set_edx_eax(0x1234_5678_9abc_def0);
        assert_eq!((g.rdx, g.rax), (0x1234_5678, 0x9abc_def0));
        assert_eq!(g.edx_eax(), 0x1234_5678_9abc_def0);
    }
}
