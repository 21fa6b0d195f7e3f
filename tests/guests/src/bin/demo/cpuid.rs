//! CPUID as Mojito presents it (DESIGN.md D9): the `MojitoMojito` signature
//! at 0x4000_0000, the hypervisor bit set, VMX and SVM never offered.

use guests::cpu::{Cpuid, cpuid, max_extended_leaf};
use guests::{fail, println};

/// CPUID.1:ECX bit 31, "hypervisor present" (AMD APM Vol. 3 §E.3.2 reserves
/// it for that; Intel's SDM Vol. 2A, CPUID, lists it as unused), and bit 5,
/// VMX (SDM Vol. 2A, CPUID, "Feature Information Returned in the ECX
/// Register").
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF1_ECX_VMX: u32 = 1 << 5;
/// CPUID.8000_0001h:ECX bit 2, SVM (APM Vol. 3 Appendix E.4.2).
const EXT1_ECX_SVM: u32 = 1 << 2;

pub fn check() {
    let leaf0 = cpuid(0, 0);
    let mut vendor = [0; 12];
    fill(&mut vendor, &[leaf0.ebx, leaf0.edx, leaf0.ecx]);
    let mut brand = [0; 48];
    if max_extended_leaf() >= 0x8000_0004 {
        for (i, leaf) in (0x8000_0002..=0x8000_0004).enumerate() {
            let Cpuid { eax, ebx, ecx, edx } = cpuid(leaf, 0);
            fill(&mut brand[16 * i..16 * (i + 1)], &[eax, ebx, ecx, edx]);
        }
    }
    match text(&brand) {
        "" => println!("cpuid: vendor {}, no brand string", text(&vendor)),
        brand => println!("cpuid: vendor {}, brand \"{brand}\"", text(&vendor)),
    }

    let hv = cpuid(0x4000_0000, 0);
    let mut signature = [0; 12];
    fill(&mut signature, &[hv.ebx, hv.ecx, hv.edx]);
    if &signature != b"MojitoMojito" {
        fail!(
            "cpuid: leaf 0x40000000 signature \"{}\", not MojitoMojito",
            text(&signature)
        );
    }
    if hv.eax < 0x4000_0000 {
        fail!("cpuid: leaf 0x40000000 EAX (max leaf) = {:#x}", hv.eax);
    }
    println!(
        "cpuid: MojitoMojito signature ok (max hypervisor leaf {:#x})",
        hv.eax
    );

    let leaf1 = cpuid(1, 0);
    if leaf1.ecx & LEAF1_ECX_HYPERVISOR == 0 {
        fail!("cpuid: hypervisor bit (leaf 1 ECX[31]) clear");
    }
    if leaf1.ecx & LEAF1_ECX_VMX != 0 {
        fail!("cpuid: VMX offered (leaf 1 ECX[5])");
    }
    if max_extended_leaf() >= 0x8000_0001 && cpuid(0x8000_0001, 0).ecx & EXT1_ECX_SVM != 0 {
        fail!("cpuid: SVM offered (leaf 0x80000001 ECX[2])");
    }
    println!("cpuid: hypervisor bit set, VMX and SVM hidden");
}

/// CPUID strings are registers' bytes, little-endian, in a given order.
fn fill(out: &mut [u8], registers: &[u32]) {
    for (chunk, register) in out.as_chunks_mut::<4>().0.iter_mut().zip(registers) {
        chunk.copy_from_slice(&register.to_le_bytes());
    }
}

/// The printable part of a CPUID string: NUL padding and the spaces some
/// brand strings start with removed.
fn text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).map_or("(not UTF-8)", str::trim)
}
