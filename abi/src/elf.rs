//! The little of ELF64 that loading an image into a VM needs: the entry
//! point and the PT_LOAD segments (System V gABI, "ELF Header" and "Program
//! Header"). The hypervisor reads the control domain's and test guests'
//! images from the boot bundle with it, and the control domain its guests'.
//! Hand-written rather than `xmas-elf` because that crate asserts on
//! misaligned input and slices without bounds checks: here every field is
//! read with a checked offset, so a malformed image is an error, never a
//! panic, whatever its alignment inside a bundle.

/// One PT_LOAD segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Where it goes (the physical address).
    pub paddr: u64,
    /// The bytes from the file; the rest of `mem_size` is zero.
    pub data: &'a [u8],
    pub mem_size: u64,
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    Not64BitLittleEndian,
    /// A header or segment lies outside the file, or sizes are inconsistent.
    Truncated,
}

const PT_LOAD: u32 = 1;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A checked ELF64 image.
#[derive(Clone, Copy, Debug)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    entry: u64,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
}

impl<'a> Elf<'a> {
    /// Checks the header and every program header.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.get(..4) != Some(b"\x7fELF") {
            return Err(ElfError::NotElf);
        }
        // EI_CLASS = ELFCLASS64 (2), EI_DATA = ELFDATA2LSB (1).
        if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
            return Err(ElfError::Not64BitLittleEndian);
        }
        let t = ElfError::Truncated;
        let entry = u64_at(bytes, 24).ok_or(t)?;
        let phoff = usize::try_from(u64_at(bytes, 32).ok_or(t)?).map_err(|_| t)?;
        let phentsize = usize::from(u16_at(bytes, 54).ok_or(t)?);
        let phnum = usize::from(u16_at(bytes, 56).ok_or(t)?);
        if phnum > 0 && phentsize < 56 {
            return Err(t);
        }
        let elf = Self {
            bytes,
            entry,
            phoff,
            phentsize,
            phnum,
        };
        for i in 0..phnum {
            elf.header(i)?;
        }
        Ok(elf)
    }

    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Program header `i`: (type, the segment).
    fn header(&self, i: usize) -> Result<(u32, Segment<'a>), ElfError> {
        let t = ElfError::Truncated;
        let at = i
            .checked_mul(self.phentsize)
            .and_then(|o| o.checked_add(self.phoff))
            .ok_or(t)?;
        let b = self.bytes;
        let kind = u32_at(b, at).ok_or(t)?;
        let offset = u64_at(b, at + 8).ok_or(t)?;
        let paddr = u64_at(b, at + 24).ok_or(t)?;
        let filesz = u64_at(b, at + 32).ok_or(t)?;
        let memsz = u64_at(b, at + 40).ok_or(t)?;
        if kind != PT_LOAD {
            return Ok((
                kind,
                Segment {
                    paddr,
                    data: &[],
                    mem_size: 0,
                },
            ));
        }
        if filesz > memsz {
            return Err(t);
        }
        let start = usize::try_from(offset).map_err(|_| t)?;
        let len = usize::try_from(filesz).map_err(|_| t)?;
        let data = b.get(start..start.checked_add(len).ok_or(t)?).ok_or(t)?;
        Ok((
            kind,
            Segment {
                paddr,
                data,
                mem_size: memsz,
            },
        ))
    }

    /// The PT_LOAD segments, in file order.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + '_ {
        (0..self.phnum).filter_map(|i| match self.header(i) {
            Ok((PT_LOAD, s)) => Some(s),
            _ => None,
        })
    }

    /// The highest address any segment reaches (0 without segments).
    pub fn end(&self) -> u64 {
        self.segments()
            .map(|s| s.paddr.saturating_add(s.mem_size))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A minimal ELF64 with the given PT_LOADs (paddr, bytes, memsz).
    fn image(entry: u64, segs: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64usize;
        let data_at = phoff + 56 * segs.len();
        let mut out = vec![0u8; data_at];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (paddr, bytes, memsz)) in segs.iter().enumerate() {
            let h = phoff + 56 * i;
            let off = out.len() as u64;
            out[h..h + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            out[h + 8..h + 16].copy_from_slice(&off.to_le_bytes());
            out[h + 24..h + 32].copy_from_slice(&paddr.to_le_bytes());
            out[h + 32..h + 40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            out[h + 40..h + 48].copy_from_slice(&memsz.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn reads_entry_and_segments() {
        let img = image(0x8000, &[(0x8000, b"code", 4), (0x9000, b"data", 0x100)]);
        let elf = Elf::parse(&img).unwrap();
        assert_eq!(elf.entry(), 0x8000);
        let segs: Vec<_> = elf.segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(
            (segs[1].paddr, segs[1].data, segs[1].mem_size),
            (0x9000, &b"data"[..], 0x100)
        );
        assert_eq!(elf.end(), 0x9100);
    }

    #[test]
    fn works_at_any_alignment() {
        let img = image(0x10, &[(0x10, b"x", 1)]);
        let mut shifted = vec![0u8; 3];
        shifted.extend_from_slice(&img);
        assert_eq!(Elf::parse(&shifted[3..]).unwrap().segments().count(), 1);
    }

    #[test]
    fn rejects_bad_images_without_panicking() {
        assert_eq!(Elf::parse(b"").unwrap_err(), ElfError::NotElf);
        assert_eq!(
            Elf::parse(b"\x7fELF\x01\x01").unwrap_err(),
            ElfError::Not64BitLittleEndian
        );
        let img = image(0, &[(0x10, b"abc", 1)]);
        assert_eq!(
            Elf::parse(&img).unwrap_err(),
            ElfError::Truncated,
            "filesz > memsz"
        );
        let img = image(0, &[(0x10, b"abc", 3)]);
        assert_eq!(
            Elf::parse(&img[..img.len() - 1]).unwrap_err(),
            ElfError::Truncated
        );
        for cut in 0..img.len() {
            let _ = Elf::parse(&img[..cut]);
        }
        for i in 0..img.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut m = img.clone();
                m[i] = v;
                if let Ok(e) = Elf::parse(&m) {
                    let _ = e.segments().count();
                    let _ = e.end();
                }
            }
        }
    }
}
