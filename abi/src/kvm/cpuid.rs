//! Guest CPUID: `KVM_SET_CPUID2` and `KVM_GET_SUPPORTED_CPUID`.

/// [`kvm_cpuid_entry2::flags`]: the entry applies to one `index` (ECX on
/// input) of its `function` only. KVM's spelling, typo included.
pub const KVM_CPUID_FLAG_SIGNIFCANT_INDEX: u32 = 1 << 0;
/// Obsolete (stateful leaf 2 of old CPUs); never set by KVM today.
pub const KVM_CPUID_FLAG_STATEFUL_FUNC: u32 = 1 << 1;
/// Obsolete companion of [`KVM_CPUID_FLAG_STATEFUL_FUNC`].
pub const KVM_CPUID_FLAG_STATE_READ_NEXT: u32 = 1 << 2;

/// One CPUID leaf (`function` = EAX, `index` = ECX on input).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_cpuid_entry2 {
    pub function: u32,
    pub index: u32,
    pub flags: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
    pub padding: [u32; 3],
}

assert_layout!(struct kvm_cpuid_entry2, size 40, align 4, {
    function: 0, index: 4, flags: 8, eax: 12, ebx: 16, ecx: 20, edx: 24, padding: 28,
});

/// Header of the `KVM_SET_CPUID2`/`KVM_GET_SUPPORTED_CPUID` argument: `nent`
/// [`kvm_cpuid_entry2`] structures follow it in memory (`entries`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_cpuid2 {
    pub nent: u32,
    pub padding: u32,
    pub entries: [kvm_cpuid_entry2; 0],
}

assert_layout!(struct kvm_cpuid2, size 8, align 4, { nent: 0, padding: 4, entries: 8 });
