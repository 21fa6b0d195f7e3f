//! SVM capabilities: CPUID Fn8000_000A (AMD APM Vol. 3 E.4.9 / Vol. 2
//! 15.4 "Enabling SVM").

/// VM_CR bit 4: SVMDIS; bit 3: LOCK (APM Vol. 2 15.30.1).
pub const VM_CR_SVMDIS: u64 = 1 << 4;
pub const VM_CR_LOCK: u64 = 1 << 3;

/// What this CPU's SVM offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub revision: u8,
    pub asids: u32,
    pub npt: bool,
    pub lbrv: bool,
    pub nrip_save: bool,
    pub vmcb_clean: bool,
    pub flush_by_asid: bool,
    pub decode_assists: bool,
    pub pause_filter: bool,
    pub vgif: bool,
}

impl Features {
    /// Reads Fn8000_000A through `raw-cpuid` (None without SVM).
    pub fn from_cpuid<R: raw_cpuid::CpuIdReader>(cpuid: &raw_cpuid::CpuId<R>) -> Option<Self> {
        let svm = cpuid.get_svm_info()?;
        Some(Self {
            revision: svm.revision(),
            asids: svm.supported_asids(),
            npt: svm.has_nested_paging(),
            lbrv: svm.has_lbr_virtualization(),
            nrip_save: svm.has_nrip(),
            vmcb_clean: svm.has_vmcb_clean_bits(),
            flush_by_asid: svm.has_flush_by_asid(),
            decode_assists: svm.has_decode_assists(),
            pause_filter: svm.has_pause_filter(),
            vgif: svm.has_gif(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raw_cpuid::{CpuId, CpuIdResult};

    fn qemu_epyc(vgif: bool) -> impl Fn(u32, u32) -> CpuIdResult + Clone {
        move |leaf, _| {
            let (eax, ebx, ecx, edx) = match leaf {
                0 => (0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65), // AuthenticAMD
                0x8000_0000 => (0x8000_000a, 0, 0, 0),
                0x8000_0001 => (0, 0, 1 << 2, 0), // SVM
                // QEMU 7.2 TCG -cpu EPYC: revision 1, 16 ASIDs, NPT only (FACTS.md).
                0x8000_000a => (1, 16, 0, 1 | if vgif { 1 << 16 } else { 0 }),
                _ => (0, 0, 0, 0),
            };
            CpuIdResult { eax, ebx, ecx, edx }
        }
    }

    #[test]
    fn decodes_qemu_tcg() {
        let f = Features::from_cpuid(&CpuId::with_cpuid_fn(qemu_epyc(false))).unwrap();
        assert!(f.npt && !f.nrip_save && !f.vgif && !f.flush_by_asid && !f.decode_assists);
        assert_eq!((f.asids, f.revision), (16, 1));
        assert!(
            Features::from_cpuid(&CpuId::with_cpuid_fn(qemu_epyc(true)))
                .unwrap()
                .vgif
        );
    }

    #[test]
    fn no_svm_no_features() {
        let no_svm = |leaf, sub| {
            let mut r = qemu_epyc(false)(leaf, sub);
            if leaf == 0x8000_0001 {
                r.ecx = 0;
            }
            r
        };
        assert_eq!(Features::from_cpuid(&CpuId::with_cpuid_fn(no_svm)), None);
    }
}
