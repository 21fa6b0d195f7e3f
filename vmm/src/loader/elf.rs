//! ELF program headers through `xmas-elf`, checked first so that no input
//! can make the library panic (it indexes and asserts alignment without
//! checking): the program-header table must lie inside the file, be
//! aligned, and have entries of the class's size.

use alloc::vec::Vec;
use xmas_elf::ElfFile;
use xmas_elf::header::Class;
use xmas_elf::program::Type;

use super::LoadError;

/// A PT_LOAD segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Where it goes in guest-physical memory (`p_paddr`).
    pub paddr: u64,
    /// Where the program expects it (`p_vaddr`).
    pub vaddr: u64,
    /// Bytes from the file (`p_filesz`).
    pub data: &'a [u8],
    /// Size in memory (`p_memsz` ≥ `p_filesz`; the rest is zeroed).
    pub memsz: u64,
}

/// What the loaders need from an ELF file.
#[derive(Clone, Debug)]
pub struct Elf<'a> {
    /// ELFCLASS32 or ELFCLASS64.
    pub class64: bool,
    /// `e_entry`.
    pub entry: u64,
    /// The PT_LOAD segments, in file order.
    pub segments: Vec<Segment<'a>>,
    /// The contents of the PT_NOTE segments, in file order (see [`notes`]).
    pub notes: Vec<&'a [u8]>,
}

/// One ELF note (System V ABI, "Note Section"): its name without the
/// terminating NUL, its type and its descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note<'a> {
    pub name: &'a [u8],
    pub kind: u32,
    pub desc: &'a [u8],
}

/// The notes in one PT_NOTE segment's bytes: 4-byte `namesz`, `descsz`
/// and `type`, then the name and the descriptor, each padded to 4 bytes
/// (the layout of both classes for the notes Linux and Xen use). Stops at
/// the first note that runs past the end.
pub fn notes(mut bytes: &[u8]) -> impl Iterator<Item = Note<'_>> {
    core::iter::from_fn(move || {
        let word = |b: &[u8], at: usize| -> Option<usize> {
            let w = b.get(at..at + 4)?;
            usize::try_from(u32::from_le_bytes(w.try_into().ok()?)).ok()
        };
        let (namesz, descsz, kind) = (word(bytes, 0)?, word(bytes, 4)?, word(bytes, 8)?);
        let name_end = 12usize.checked_add(namesz)?;
        let desc_at = name_end.checked_next_multiple_of(4)?;
        let desc_end = desc_at.checked_add(descsz)?;
        let name = bytes.get(12..name_end)?;
        let desc = bytes.get(desc_at..desc_end)?;
        let next = desc_end.checked_next_multiple_of(4)?.min(bytes.len());
        bytes = &bytes[next..];
        Some(Note {
            name: name.strip_suffix(&[0]).unwrap_or(name),
            kind: kind as u32,
            desc,
        })
    })
}

/// ELF header sizes (32-/64-bit) and program-header entry sizes.
const EHDR32: usize = 52;
const EHDR64: usize = 64;
const PHDR32: u64 = 32;
const PHDR64: u64 = 56;

/// Parses `image`, which must be 8-byte aligned (see [`super::Aligned`]).
pub fn parse(image: &[u8]) -> Result<Elf<'_>, LoadError> {
    if image.len() < EHDR32 || image.get(..4) != Some(&[0x7f, b'E', b'L', b'F'][..]) {
        return Err(LoadError::NotElf);
    }
    if image.as_ptr().align_offset(8) != 0 {
        return Err(LoadError::BadImage("image buffer not 8-byte aligned"));
    }
    let class64 = match image.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(LoadError::BadImage("ELF class neither 32 nor 64 bit")),
    };
    if image.get(5) != Some(&1) {
        return Err(LoadError::BadImage("ELF data not little-endian"));
    }
    if class64 && image.len() < EHDR64 {
        return Err(LoadError::BadImage("ELF header truncated"));
    }
    let file = ElfFile::new(image).map_err(LoadError::BadImage)?;
    let pt2 = &file.header.pt2;
    let (entry_size, align) = if class64 { (PHDR64, 8) } else { (PHDR32, 4) };
    let count = u64::from(pt2.ph_count());
    let offset = pt2.ph_offset();
    if count > 0 {
        if u64::from(pt2.ph_entry_size()) != entry_size {
            return Err(LoadError::BadImage(
                "program-header entry size wrong for the class",
            ));
        }
        let end = count
            .checked_mul(entry_size)
            .and_then(|n| n.checked_add(offset));
        if offset == 0 || end.is_none_or(|e| e > image.len() as u64) {
            return Err(LoadError::BadImage("program headers outside the file"));
        }
        if offset % align != 0 {
            return Err(LoadError::BadImage("program headers misaligned"));
        }
    }
    debug_assert_eq!(
        file.header.pt1.class(),
        if class64 {
            Class::SixtyFour
        } else {
            Class::ThirtyTwo
        }
    );
    let mut segments = Vec::new();
    let mut notes = Vec::new();
    for ph in file.program_iter() {
        if ph.get_type() == Ok(Type::Note) {
            let data = usize::try_from(ph.offset())
                .ok()
                .zip(usize::try_from(ph.file_size()).ok())
                .and_then(|(o, n)| image.get(o..o.checked_add(n)?))
                .ok_or(LoadError::BadImage("note segment outside the file"))?;
            notes.push(data);
            continue;
        }
        if ph.get_type() != Ok(Type::Load) {
            continue;
        }
        let (filesz, memsz, off) = (ph.file_size(), ph.mem_size(), ph.offset());
        if filesz > memsz {
            return Err(LoadError::BadImage(
                "segment file size exceeds its memory size",
            ));
        }
        let data = usize::try_from(off)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(o, n)| image.get(o..o.checked_add(n)?))
            .ok_or(LoadError::BadImage("segment outside the file"))?;
        segments.push(Segment {
            paddr: ph.physical_addr(),
            vaddr: ph.virtual_addr(),
            data,
            memsz,
        });
    }
    Ok(Elf {
        class64,
        entry: pt2.entry_point(),
        segments,
        notes,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loader::Aligned;
    use alloc::vec;

    /// A minimal little-endian ELF: the given (paddr, vaddr, bytes, memsz)
    /// segments, entry `entry`. Segment data follows the headers.
    pub fn build(class64: bool, entry: u64, segs: &[(u64, u64, &[u8], u64)]) -> Vec<u8> {
        let (eh, ph) = if class64 {
            (64usize, 56usize)
        } else {
            (52, 32)
        };
        let mut data_off = eh + ph * segs.len();
        let mut out = vec![0u8; data_off];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = if class64 { 2 } else { 1 };
        out[5] = 1; // little-endian
        out[6] = 1; // version
        let put = |out: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes)
        };
        put(&mut out, 16, &2u16.to_le_bytes()); // ET_EXEC
        put(
            &mut out,
            18,
            &(if class64 { 62u16 } else { 3 }).to_le_bytes(),
        );
        put(&mut out, 20, &1u32.to_le_bytes());
        if class64 {
            put(&mut out, 24, &entry.to_le_bytes());
            put(&mut out, 32, &(eh as u64).to_le_bytes()); // phoff
            put(&mut out, 52, &(eh as u16).to_le_bytes());
            put(&mut out, 54, &(ph as u16).to_le_bytes());
            put(&mut out, 56, &(segs.len() as u16).to_le_bytes());
        } else {
            put(&mut out, 24, &(entry as u32).to_le_bytes());
            put(&mut out, 28, &(eh as u32).to_le_bytes());
            put(&mut out, 40, &(eh as u16).to_le_bytes());
            put(&mut out, 42, &(ph as u16).to_le_bytes());
            put(&mut out, 44, &(segs.len() as u16).to_le_bytes());
        }
        for (i, &(paddr, vaddr, bytes, memsz)) in segs.iter().enumerate() {
            let at = eh + i * ph;
            put(&mut out, at, &1u32.to_le_bytes()); // PT_LOAD
            if class64 {
                put(&mut out, at + 4, &7u32.to_le_bytes());
                put(&mut out, at + 8, &(data_off as u64).to_le_bytes());
                put(&mut out, at + 16, &vaddr.to_le_bytes());
                put(&mut out, at + 24, &paddr.to_le_bytes());
                put(&mut out, at + 32, &(bytes.len() as u64).to_le_bytes());
                put(&mut out, at + 40, &memsz.to_le_bytes());
            } else {
                put(&mut out, at + 4, &(data_off as u32).to_le_bytes());
                put(&mut out, at + 8, &(vaddr as u32).to_le_bytes());
                put(&mut out, at + 12, &(paddr as u32).to_le_bytes());
                put(&mut out, at + 16, &(bytes.len() as u32).to_le_bytes());
                put(&mut out, at + 20, &(memsz as u32).to_le_bytes());
                put(&mut out, at + 24, &7u32.to_le_bytes());
            }
            out.extend_from_slice(bytes);
            data_off += bytes.len();
        }
        out
    }

    #[test]
    fn parses_both_classes() {
        for class64 in [false, true] {
            let img = build(class64, 0x8000, &[(0x8000, 0x8000, b"abc", 0x10)]);
            let a = Aligned::new(&img);
            let elf = parse(a.bytes()).unwrap();
            assert_eq!(elf.class64, class64);
            assert_eq!(elf.entry, 0x8000);
            assert_eq!(
                elf.segments,
                [Segment {
                    paddr: 0x8000,
                    vaddr: 0x8000,
                    data: b"abc",
                    memsz: 0x10
                }]
            );
        }
    }

    #[test]
    fn notes_are_split() {
        let mut b = Vec::new();
        for (name, kind, desc) in [
            (&b"Xen\0"[..], 18u32, &[1u8, 2, 3, 4, 5][..]),
            (b"GNU\0", 3, b""),
        ] {
            b.extend_from_slice(&(name.len() as u32).to_le_bytes());
            b.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            b.extend_from_slice(&kind.to_le_bytes());
            b.extend_from_slice(name);
            b.resize(b.len().next_multiple_of(4), 0);
            b.extend_from_slice(desc);
            b.resize(b.len().next_multiple_of(4), 0);
        }
        let all: Vec<_> = notes(&b).collect();
        assert_eq!(
            all,
            [
                Note {
                    name: b"Xen",
                    kind: 18,
                    desc: &[1, 2, 3, 4, 5]
                },
                Note {
                    name: b"GNU",
                    kind: 3,
                    desc: b""
                }
            ]
        );
        // A descriptor running past the end ends the walk, without a panic.
        assert_eq!(notes(&b[..20]).count(), 0);
        b[4] = 0xff;
        b[5] = 0xff;
        b[6] = 0xff;
        b[7] = 0xff;
        assert_eq!(notes(&b).count(), 0);
    }

    #[test]
    fn bad_images_are_errors_not_panics() {
        let good = build(true, 0, &[(0, 0, b"x", 1)]);
        let mut cases: Vec<Vec<u8>> = vec![vec![], b"\x7fELF".to_vec(), good[..60].to_vec()];
        // Program headers past the end of the file.
        let mut c = good.clone();
        c[32] = 0xf0;
        cases.push(c);
        // Misaligned program headers.
        let mut c = good.clone();
        c[32] = 65;
        cases.push(c);
        // Wrong entry size.
        let mut c = good.clone();
        c[54] = 32;
        cases.push(c);
        // Segment data outside the file.
        let mut c = good.clone();
        c[64 + 8] = 0xff;
        c[64 + 9] = 0xff;
        cases.push(c);
        // filesz > memsz.
        let mut c = good.clone();
        c[64 + 40] = 0;
        cases.push(c);
        // Big-endian.
        let mut c = good.clone();
        c[5] = 2;
        cases.push(c);
        for (i, c) in cases.iter().enumerate() {
            let a = Aligned::new(c);
            assert!(parse(a.bytes()).is_err(), "case {i}");
        }
    }
}
