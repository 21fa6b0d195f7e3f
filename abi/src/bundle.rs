//! The boot bundle: how the loader hands files to the hypervisor.
//!
//! The bootloader loads one "ramdisk" next to the kernel; Mojito's loader
//! fills it with a bundle — a small archive of named files (guest images, and
//! later the control domain and its boot script). Layout, all little-endian:
//!
//! ```text
//! offset 0      Header   (64 bytes)
//! offset 64     Entry[n] (128 bytes each)
//! ...           file data, each file starting on a 4 KiB boundary
//! ```
//!
//! The parser trusts nothing: every offset and length is checked against the
//! slice, so a corrupt bundle is an error, never a panic or an out-of-bounds
//! read.

/// `Header::magic`.
pub const MAGIC: [u8; 8] = *b"MOJITOB\0";
/// `Header::version` of this layout.
pub const VERSION: u32 = 1;
/// Every file's data starts at a multiple of this (so it can be mapped).
pub const DATA_ALIGN: u64 = 4096;
/// Longest file name, in bytes (the rest of `Entry::name` is NUL padding).
pub const NAME_MAX: usize = 95;

/// The bundle header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    /// Number of `Entry` records that follow the header.
    pub count: u32,
    /// Length of the whole bundle in bytes.
    pub total_len: u64,
    pub flags: u32,
    pub reserved: [u8; 36],
}

/// One file of the bundle.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// UTF-8 path such as `guests/demo.elf`, NUL-padded.
    pub name: [u8; 96],
    /// Offset of the data from the start of the bundle.
    pub offset: u64,
    pub len: u64,
    pub flags: u32,
    pub reserved: [u8; 12],
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_LEN);
const _: () = assert!(core::mem::size_of::<Entry>() == ENTRY_LEN);

/// Size of `Header` in bytes.
pub const HEADER_LEN: usize = 64;
/// Size of `Entry` in bytes.
pub const ENTRY_LEN: usize = 128;

/// Why a bundle was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    TooShort,
    BadMagic,
    BadVersion(u32),
    /// `total_len` or the entry table does not fit the bytes given.
    Truncated,
    /// Entry `n` points outside the bundle or is misaligned.
    BadEntry(u32),
    /// Entry `n`'s name is empty, too long or not UTF-8.
    BadName(u32),
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort => write!(f, "shorter than a bundle header"),
            Self::BadMagic => write!(f, "not a Mojito boot bundle (bad magic)"),
            Self::BadVersion(v) => write!(f, "bundle version {v}, expected {VERSION}"),
            Self::Truncated => write!(f, "bundle is truncated"),
            Self::BadEntry(n) => write!(f, "entry {n} points outside the bundle"),
            Self::BadName(n) => write!(f, "entry {n} has an invalid name"),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut v = [0u8; 8];
    v.copy_from_slice(s);
    Some(u64::from_le_bytes(v))
}

/// A validated bundle borrowed from memory.
#[derive(Clone, Copy, Debug)]
pub struct Bundle<'a> {
    bytes: &'a [u8],
    count: u32,
}

/// A file inside a bundle.
#[derive(Clone, Copy, Debug)]
pub struct File<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
}

impl<'a> Bundle<'a> {
    /// Checks the header and every entry; afterwards no access can fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BundleError> {
        if bytes.len() < HEADER_LEN {
            return Err(BundleError::TooShort);
        }
        if bytes.get(0..8) != Some(&MAGIC[..]) {
            return Err(BundleError::BadMagic);
        }
        let version = u32_at(bytes, 8).ok_or(BundleError::TooShort)?;
        if version != VERSION {
            return Err(BundleError::BadVersion(version));
        }
        let count = u32_at(bytes, 12).ok_or(BundleError::TooShort)?;
        let total = u64_at(bytes, 16).ok_or(BundleError::TooShort)?;
        let total = usize::try_from(total).map_err(|_| BundleError::Truncated)?;
        let bytes = bytes.get(..total).ok_or(BundleError::Truncated)?;
        let table_end = (count as usize)
            .checked_mul(ENTRY_LEN)
            .and_then(|t| t.checked_add(HEADER_LEN))
            .ok_or(BundleError::Truncated)?;
        if table_end > bytes.len() {
            return Err(BundleError::Truncated);
        }
        let bundle = Self { bytes, count };
        for n in 0..count {
            bundle.entry(n)?;
        }
        Ok(bundle)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn entry(&self, n: u32) -> Result<File<'a>, BundleError> {
        let at = HEADER_LEN + n as usize * ENTRY_LEN;
        let raw_name = self
            .bytes
            .get(at..at + 96)
            .ok_or(BundleError::BadEntry(n))?;
        let name_len = raw_name.iter().position(|&c| c == 0).unwrap_or(96);
        if name_len == 0 || name_len > NAME_MAX {
            return Err(BundleError::BadName(n));
        }
        let name =
            core::str::from_utf8(&raw_name[..name_len]).map_err(|_| BundleError::BadName(n))?;
        let offset = u64_at(self.bytes, at + 96).ok_or(BundleError::BadEntry(n))?;
        let len = u64_at(self.bytes, at + 104).ok_or(BundleError::BadEntry(n))?;
        if offset % DATA_ALIGN != 0 {
            return Err(BundleError::BadEntry(n));
        }
        let start = usize::try_from(offset).map_err(|_| BundleError::BadEntry(n))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .ok_or(BundleError::BadEntry(n))?;
        let data = self.bytes.get(start..end).ok_or(BundleError::BadEntry(n))?;
        Ok(File { name, data })
    }

    /// The files, in bundle order.
    pub fn files(&self) -> impl Iterator<Item = File<'a>> + '_ {
        (0..self.count).filter_map(|n| self.entry(n).ok())
    }

    /// The file called `name`, if any.
    pub fn get(&self, name: &str) -> Option<File<'a>> {
        self.files().find(|f| f.name == name)
    }
}

/// Lays out a bundle: returns the header and entries for `files` (name,
/// length) and the offset of each file's data. The loader uses it to write a
/// bundle; keeping the arithmetic here keeps writer and parser in step.
pub fn layout<'a>(
    names_and_lens: &'a [(&'a str, u64)],
) -> Option<(Header, impl Iterator<Item = Entry> + 'a)> {
    let table_end = HEADER_LEN as u64 + names_and_lens.len() as u64 * ENTRY_LEN as u64;
    let mut cursor = table_end.next_multiple_of(DATA_ALIGN);
    let mut total = cursor;
    for (name, len) in names_and_lens {
        if name.is_empty() || name.len() > NAME_MAX || name.as_bytes().contains(&0) {
            return None;
        }
        total = total.checked_add(*len)?.next_multiple_of(DATA_ALIGN);
    }
    let header = Header {
        magic: MAGIC,
        version: VERSION,
        count: u32::try_from(names_and_lens.len()).ok()?,
        total_len: total,
        flags: 0,
        reserved: [0; 36],
    };
    let entries = names_and_lens.iter().map(move |(name, len)| {
        let mut e = Entry {
            name: [0; 96],
            offset: cursor,
            len: *len,
            flags: 0,
            reserved: [0; 12],
        };
        e.name[..name.len()].copy_from_slice(name.as_bytes());
        cursor = (cursor + len).next_multiple_of(DATA_ALIGN);
        e
    });
    Some((header, entries))
}

impl Header {
    /// The header's bytes, little-endian.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&self.magic);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..24].copy_from_slice(&self.total_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.flags.to_le_bytes());
        b
    }
}

impl Entry {
    /// The entry's bytes, little-endian.
    pub fn to_bytes(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0..96].copy_from_slice(&self.name);
        b[96..104].copy_from_slice(&self.offset.to_le_bytes());
        b[104..112].copy_from_slice(&self.len.to_le_bytes());
        b[112..116].copy_from_slice(&self.flags.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn build(files: &[(&str, &[u8])]) -> Vec<u8> {
        let nl: Vec<(&str, u64)> = files.iter().map(|(n, d)| (*n, d.len() as u64)).collect();
        let (h, entries) = layout(&nl).unwrap();
        let mut out = std::vec![0u8; h.total_len as usize];
        out[..HEADER_LEN].copy_from_slice(&h.to_bytes());
        for (i, (e, (_, data))) in entries.zip(files).enumerate() {
            let at = HEADER_LEN + i * ENTRY_LEN;
            out[at..at + ENTRY_LEN].copy_from_slice(&e.to_bytes());
            out[e.offset as usize..][..data.len()].copy_from_slice(data);
        }
        out
    }

    #[test]
    fn round_trip() {
        let b = build(&[
            ("guests/demo.elf", b"hello"),
            ("boot.mojito", b""),
            ("x", &[7u8; 5000]),
        ]);
        let bundle = Bundle::parse(&b).unwrap();
        assert_eq!(bundle.len(), 3);
        let names: Vec<_> = bundle.files().map(|f| f.name).collect();
        assert_eq!(names, ["guests/demo.elf", "boot.mojito", "x"]);
        assert_eq!(bundle.get("guests/demo.elf").unwrap().data, b"hello");
        assert_eq!(bundle.get("x").unwrap().data.len(), 5000);
        assert!(bundle.get("nope").is_none());
        for f in bundle.files() {
            let off = f.data.as_ptr() as usize - b.as_ptr() as usize;
            assert_eq!(off % DATA_ALIGN as usize, 0);
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(Bundle::parse(b"short").unwrap_err(), BundleError::TooShort);
        let good = build(&[("a", b"abc")]);
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::BadMagic);
        let mut bad = good.clone();
        bad[8] = 9;
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::BadVersion(9));
        assert_eq!(
            Bundle::parse(&good[..good.len() - 1]).unwrap_err(),
            BundleError::Truncated
        );
        let mut bad = good.clone();
        bad[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::Truncated);
        // An entry whose length runs past the end.
        let mut bad = good.clone();
        bad[HEADER_LEN + 104..HEADER_LEN + 112].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::BadEntry(0));
        // A misaligned offset.
        let mut bad = good.clone();
        bad[HEADER_LEN + 96] = 1;
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::BadEntry(0));
        // An empty name.
        let mut bad = good.clone();
        bad[HEADER_LEN] = 0;
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::BadName(0));
    }

    #[test]
    fn parse_never_panics_on_mutations() {
        let good = build(&[("guests/a.elf", &[1u8; 300]), ("b", &[2u8; 10])]);
        for i in 0..HEADER_LEN + 2 * ENTRY_LEN {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut m = good.clone();
                m[i] = v;
                if let Ok(b) = Bundle::parse(&m) {
                    for f in b.files() {
                        let _ = f.data.len();
                    }
                }
            }
        }
    }
}
