//! General-purpose, segment and control registers: `KVM_GET_REGS`,
//! `KVM_GET_SREGS` and their `SET` twins.

/// General-purpose registers, RIP and RFLAGS (`KVM_GET_REGS`/`KVM_SET_REGS`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

assert_layout!(struct kvm_regs, size 144, align 8, {
    rax: 0, rbx: 8, rcx: 16, rdx: 24, rsi: 32, rdi: 40, rsp: 48, rbp: 56,
    r8: 64, r9: 72, r10: 80, r11: 88, r12: 96, r13: 104, r14: 112, r15: 120,
    rip: 128, rflags: 136,
});

/// One segment register, its hidden part unpacked into fields.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    /// The descriptor's 4-bit type (`type` in C).
    pub type_: u8,
    pub present: u8,
    pub dpl: u8,
    /// Default operation size (D/B).
    pub db: u8,
    /// Code/data (1) or system (0) segment.
    pub s: u8,
    /// 64-bit code segment.
    pub l: u8,
    /// Granularity.
    pub g: u8,
    pub avl: u8,
    pub unusable: u8,
    pub padding: u8,
}

assert_layout!(struct kvm_segment, size 24, align 8, {
    base: 0, limit: 8, selector: 12, type_: 14, present: 15, dpl: 16, db: 17,
    s: 18, l: 19, g: 20, avl: 21, unusable: 22, padding: 23,
});

/// A descriptor-table register (GDTR or IDTR).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_dtable {
    pub base: u64,
    pub limit: u16,
    pub padding: [u16; 3],
}

assert_layout!(struct kvm_dtable, size 16, align 8, { base: 0, limit: 8, padding: 10 });

/// Segment, descriptor-table and control registers (`KVM_GET_SREGS`/
/// `KVM_SET_SREGS`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_sregs {
    pub cs: kvm_segment,
    pub ds: kvm_segment,
    pub es: kvm_segment,
    pub fs: kvm_segment,
    pub gs: kvm_segment,
    pub ss: kvm_segment,
    pub tr: kvm_segment,
    pub ldt: kvm_segment,
    pub gdt: kvm_dtable,
    pub idt: kvm_dtable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
    /// One bit per vector: the interrupt pending injection, if any (at most
    /// one bit is set).
    pub interrupt_bitmap: [u64; 4],
}

assert_layout!(struct kvm_sregs, size 312, align 8, {
    cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168,
    gdt: 192, idt: 208, cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256,
    efer: 264, apic_base: 272, interrupt_bitmap: 280,
});
