//! The boot bundle: how the loader hands files to the hypervisor.
//!
//! The bootloader loads one "ramdisk" next to the kernel; Mojito's loader
//! fills it with a bundle — an archive of named files: the control domain
//! (`control.elf`) and guest images (`guests/*.elf`).
//!
//! The bundle is a plain **cpio "newc"** archive, the format of Linux's
//! initramfs, so ordinary tools build and inspect it:
//!
//! ```text
//! cd tree && find . | cpio -o -H newc > bundle.cpio    # build one
//! cpio -t < bundle.cpio                                 # list it
//! ```
//!
//! An archive is a sequence of entries, the last one named `TRAILER!!!`:
//!
//! ```text
//! header  110 bytes: "070701", then 13 fields of 8 ASCII hex digits:
//!         ino mode uid gid nlink mtime filesize devmajor devminor
//!         rdevmajor rdevminor namesize check
//! name    namesize bytes, NUL included; NULs pad header + name to 4 bytes
//! data    filesize bytes; NULs pad it to 4 bytes
//! ```
//!
//! Offsets are from the start of the archive, and every header starts at a
//! multiple of 4. `"070702"` ("crc" format) is accepted too: `check` is then
//! the 32-bit sum of the data bytes, and it is verified.
//!
//! Only regular files (`mode & 0o170000 == 0o100000`) are files of the
//! bundle; directories, symbolic links and the rest are skipped, so an
//! archive made with `find . | cpio` works. A leading `./` is dropped from
//! names: `./guests/demo.elf` is `guests/demo.elf`. Bytes after the trailer
//! (cpio pads archives to 512-byte blocks) are ignored.
//!
//! Data alignment: newc itself only aligns data to 4 bytes. Mojito's loader
//! aligns every file's data to [`DATA_ALIGN`] by padding the name field with
//! extra NULs (counted in `namesize`, which cpio and Linux accept), because
//! ELF readers want 8-byte-aligned images. An archive from plain `cpio`
//! gives only 4-byte alignment.
//!
//! The parser trusts nothing: every field, offset and length is checked
//! against the slice up front, so a corrupt bundle is an error, never a panic
//! or an out-of-bounds read, and [`Bundle::files`] cannot fail afterwards.

/// The magic of a newc header.
pub const MAGIC: [u8; 6] = *b"070701";
/// The magic of a newc header whose `check` is the sum of the data bytes.
pub const MAGIC_CRC: [u8; 6] = *b"070702";
/// Size of a newc header in bytes.
pub const HEADER_LEN: usize = 110;
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// `mode` bits holding the file type.
pub const MODE_TYPE_MASK: u32 = 0o170_000;
/// File type of a regular file.
pub const MODE_REGULAR: u32 = 0o100_000;
/// Mojito's loader starts every file's data at a multiple of this many
/// bytes from the start of the bundle; the format itself guarantees 4.
pub const DATA_ALIGN: usize = 16;

/// The 13 numeric fields of a newc header, in order.
const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

/// The numeric fields of one newc header (written with [`MAGIC`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    /// Length of the data in bytes.
    pub filesize: u32,
    pub devmajor: u32,
    pub devminor: u32,
    pub rdevmajor: u32,
    pub rdevminor: u32,
    /// Length of the name field in bytes, its terminating NUL included.
    pub namesize: u32,
    /// 0, or with [`MAGIC_CRC`] the sum of the data bytes.
    pub check: u32,
}

impl Header {
    fn fields(&self) -> [u32; 13] {
        [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            self.devmajor,
            self.devminor,
            self.rdevmajor,
            self.rdevminor,
            self.namesize,
            self.check,
        ]
    }

    fn from_fields(f: [u32; 13]) -> Self {
        Self {
            ino: f[0],
            mode: f[1],
            uid: f[2],
            gid: f[3],
            nlink: f[4],
            mtime: f[5],
            filesize: f[6],
            devmajor: f[7],
            devminor: f[8],
            rdevmajor: f[9],
            rdevminor: f[10],
            namesize: f[11],
            check: f[12],
        }
    }

    /// The header's bytes: [`MAGIC`] and the fields in upper-case hex.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut b = [0u8; HEADER_LEN];
        b[..6].copy_from_slice(&MAGIC);
        for (i, v) in self.fields().into_iter().enumerate() {
            for (j, digit) in b[6 + 8 * i..][..8].iter_mut().enumerate() {
                *digit = HEX[(v >> (28 - 4 * j) & 0xf) as usize];
            }
        }
        b
    }

    /// Whether the entry is a regular file.
    pub fn is_regular(&self) -> bool {
        self.mode & MODE_TYPE_MASK == MODE_REGULAR
    }
}

/// Why a bundle was rejected. `at` is the byte offset of the entry's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// The bytes end before a `TRAILER!!!` entry.
    MissingTrailer,
    /// The entry's header, name or data runs past the end of the bytes.
    Truncated { at: usize },
    /// The entry does not start with "070701" or "070702".
    BadMagic { at: usize },
    /// A header field is not 8 hex digits.
    BadField { at: usize, field: &'static str },
    /// The name is empty, not NUL-terminated, holds bytes after its NUL or
    /// is not UTF-8.
    BadName { at: usize },
    /// A "070702" entry whose data does not sum to its `check` field.
    BadChecksum { at: usize },
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::MissingTrailer => {
                write!(f, "not a complete cpio newc archive (no {TRAILER} entry)")
            }
            Self::Truncated { at } => {
                write!(f, "cpio entry at byte {at} runs past the end of the bundle")
            }
            Self::BadMagic { at } => write!(
                f,
                "no cpio newc header at byte {at} (expected magic 070701 or 070702)"
            ),
            Self::BadField { at, field } => write!(
                f,
                "cpio entry at byte {at}: field {field} is not 8 hex digits"
            ),
            Self::BadName { at } => write!(
                f,
                "cpio entry at byte {at}: name is empty, not NUL-terminated or not UTF-8"
            ),
            Self::BadChecksum { at } => {
                write!(
                    f,
                    "cpio entry at byte {at}: data does not match its checksum"
                )
            }
        }
    }
}

/// Parses 8 ASCII hex digits.
fn hex8(digits: &[u8]) -> Option<u32> {
    if digits.len() != 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |v, &c| {
        let d = (c as char).to_digit(16)?;
        Some(v << 4 | d)
    })
}

/// One entry of the archive, of any type.
#[derive(Clone, Copy)]
struct Raw<'a> {
    header: Header,
    /// Without the leading `./`.
    name: &'a str,
    data: &'a [u8],
}

/// Reads the entry whose header is at `at`: `None` for the trailer, else the
/// entry and the offset of the next header.
fn read_entry(bytes: &[u8], at: usize) -> Result<Option<(Raw<'_>, usize)>, BundleError> {
    let rest = bytes.get(at..).unwrap_or(&[]);
    if rest.is_empty() {
        return Err(BundleError::MissingTrailer);
    }
    let raw_header = rest
        .get(..HEADER_LEN)
        .ok_or(BundleError::Truncated { at })?;
    let crc = match &raw_header[..6] {
        m if m == MAGIC => false,
        m if m == MAGIC_CRC => true,
        _ => return Err(BundleError::BadMagic { at }),
    };
    let mut fields = [0u32; 13];
    for (i, (v, field)) in fields.iter_mut().zip(FIELDS).enumerate() {
        *v = hex8(&raw_header[6 + 8 * i..][..8]).ok_or(BundleError::BadField { at, field })?;
    }
    let header = Header::from_fields(fields);

    let truncated = BundleError::Truncated { at };
    let name_len = header.namesize as usize;
    let name_field = rest
        .get(HEADER_LEN..HEADER_LEN.checked_add(name_len).ok_or(truncated)?)
        .ok_or(truncated)?;
    // The name ends at the first NUL; the field may carry more NULs after it
    // (alignment padding), but nothing else.
    let bad_name = BundleError::BadName { at };
    let nul = name_field.iter().position(|&c| c == 0).ok_or(bad_name)?;
    if nul == 0 || name_field[nul..].iter().any(|&c| c != 0) {
        return Err(bad_name);
    }
    let name = core::str::from_utf8(&name_field[..nul]).map_err(|_| bad_name)?;
    if name == TRAILER {
        return Ok(None);
    }

    let data_start = (HEADER_LEN + name_len).next_multiple_of(4);
    let data_end = data_start
        .checked_add(header.filesize as usize)
        .ok_or(truncated)?;
    let data = rest.get(data_start..data_end).ok_or(truncated)?;
    if crc
        && header.is_regular()
        && data.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b))) != header.check
    {
        return Err(BundleError::BadChecksum { at });
    }
    let mut name = name;
    while let Some(stripped) = name.strip_prefix("./") {
        name = stripped;
    }
    if header.is_regular() && name.is_empty() {
        return Err(bad_name);
    }
    let next = at
        .checked_add(data_end.next_multiple_of(4))
        .ok_or(truncated)?;
    Ok(Some((Raw { header, name, data }, next)))
}

/// A validated bundle borrowed from memory.
#[derive(Clone, Copy, Debug)]
pub struct Bundle<'a> {
    /// The archive (whatever follows the trailer included; never read).
    bytes: &'a [u8],
    /// Number of regular files.
    count: usize,
}

/// A regular file inside a bundle.
#[derive(Clone, Copy, Debug)]
pub struct File<'a> {
    /// Its path, such as `guests/demo.elf` (no leading `./`).
    pub name: &'a str,
    pub data: &'a [u8],
}

impl<'a> Bundle<'a> {
    /// Checks every entry up to the trailer; afterwards no access can fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BundleError> {
        let mut at = 0;
        let mut count = 0;
        while let Some((raw, next)) = read_entry(bytes, at)? {
            count += usize::from(raw.header.is_regular());
            at = next;
        }
        Ok(Self { bytes, count })
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A bundle without files (for a control domain whose bundle did not
    /// parse: its shell still runs).
    pub const fn empty() -> Bundle<'static> {
        Bundle {
            bytes: &[],
            count: 0,
        }
    }

    /// The regular files, in archive order.
    pub fn files(&self) -> impl Iterator<Item = File<'a>> + '_ {
        let bytes = self.bytes;
        let mut at = 0;
        // `parse` read these very entries without error, so `read_entry`
        // returns the same entries here and `.ok()` drops nothing.
        core::iter::from_fn(move || {
            loop {
                let (raw, next) = read_entry(bytes, at).ok().flatten()?;
                at = next;
                if raw.header.is_regular() {
                    return Some(File {
                        name: raw.name,
                        data: raw.data,
                    });
                }
            }
        })
    }

    /// The first file called `name`, if any.
    pub fn get(&self, name: &str) -> Option<File<'a>> {
        self.files().find(|f| f.name == name)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::path::PathBuf;
    use std::println;
    use std::vec::Vec;

    const DIR: u32 = 0o040_755;
    const REG: u32 = 0o100_644;
    const LINK: u32 = 0o120_777;

    /// Appends one entry the way `cpio -o -H newc` does (4-byte alignment).
    fn push_entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
        let h = Header {
            ino,
            mode,
            nlink: 1,
            filesize: data.len() as u32,
            namesize: name.len() as u32 + 1,
            ..Header::default()
        };
        out.extend_from_slice(&h.to_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }

    fn archive(entries: &[(u32, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (mode, name, data)) in entries.iter().enumerate() {
            push_entry(&mut out, i as u32 + 1, *mode, name, data);
        }
        push_entry(&mut out, 0, 0, TRAILER, b"");
        out
    }

    fn names<'a>(b: &Bundle<'a>) -> Vec<&'a str> {
        b.files().map(|f| f.name).collect()
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            ino: 1,
            mode: REG,
            filesize: 0xdead_beef,
            namesize: 16,
            check: u32::MAX,
            ..Header::default()
        };
        let b = h.to_bytes();
        assert_eq!(&b[..14], b"07070100000001");
        assert_eq!(&b[54..62], b"DEADBEEF");
        let mut fields = [0u32; 13];
        for (i, v) in fields.iter_mut().enumerate() {
            *v = hex8(&b[6 + 8 * i..][..8]).unwrap();
        }
        assert_eq!(Header::from_fields(fields), h);
        assert_eq!(hex8(b"0000abCD"), Some(0xabcd));
        assert_eq!(hex8(b"+0000001"), None);
        assert_eq!(hex8(b"0000000g"), None);
    }

    #[test]
    fn round_trip() {
        let big = [7u8; 5000];
        let b = archive(&[
            (DIR, ".", b""),
            (DIR, "./guests", b""),
            (REG, "./guests/demo.elf", b"hello"),
            (REG, "boot.mojito", b""),
            (LINK, "latest", b"guests/demo.elf"),
            (REG, "x", &big),
        ]);
        let bundle = Bundle::parse(&b).unwrap();
        assert_eq!(bundle.len(), 3);
        assert!(!bundle.is_empty());
        assert_eq!(names(&bundle), ["guests/demo.elf", "boot.mojito", "x"]);
        assert_eq!(bundle.get("guests/demo.elf").unwrap().data, b"hello");
        assert_eq!(bundle.get("boot.mojito").unwrap().data, b"");
        assert_eq!(bundle.get("x").unwrap().data, &big[..]);
        assert!(bundle.get("nope").is_none());
        assert!(bundle.get("latest").is_none());
        for f in bundle.files() {
            let off = f.data.as_ptr() as usize - b.as_ptr() as usize;
            assert_eq!(off % 4, 0);
        }

        // Only a trailer: an empty bundle. Bytes after it are ignored.
        let mut empty = archive(&[]);
        empty.extend_from_slice(&[0; 512]);
        let bundle = Bundle::parse(&empty).unwrap();
        assert!(bundle.is_empty());
        assert_eq!(bundle.files().count(), 0);
    }

    #[test]
    fn accepts_name_padding_and_crc_format() {
        // Extra NULs in the name field (how the loader aligns data).
        let mut b = Vec::new();
        let h = Header {
            mode: REG,
            filesize: 3,
            namesize: 2 + 12,
            ..Header::default()
        };
        b.extend_from_slice(&h.to_bytes());
        b.extend_from_slice(b"a\0");
        b.resize(HEADER_LEN + 14, 0);
        b.resize(b.len().next_multiple_of(4), 0);
        let data_at = b.len();
        b.extend_from_slice(b"abc\0");
        push_entry(&mut b, 0, 0, TRAILER, b"");
        let bundle = Bundle::parse(&b).unwrap();
        let f = bundle.get("a").unwrap();
        assert_eq!(f.data, b"abc");
        assert_eq!(f.data.as_ptr() as usize - b.as_ptr() as usize, data_at);

        // "070702": the check field is the byte sum of the data.
        let mut b = archive(&[(REG, "a", b"abc")]);
        b[..6].copy_from_slice(&MAGIC_CRC);
        let sum = u32::from(b'a') + u32::from(b'b') + u32::from(b'c');
        b[102..110].copy_from_slice(format!("{sum:08x}").as_bytes());
        assert_eq!(Bundle::parse(&b).unwrap().get("a").unwrap().data, b"abc");
        b[102..110].copy_from_slice(b"00000000");
        assert_eq!(
            Bundle::parse(&b).unwrap_err(),
            BundleError::BadChecksum { at: 0 }
        );
    }

    #[test]
    fn rejects_bad_input() {
        use BundleError::*;
        assert_eq!(Bundle::parse(b"").unwrap_err(), MissingTrailer);
        assert_eq!(Bundle::parse(b"0707").unwrap_err(), Truncated { at: 0 });
        let good = archive(&[(REG, "a", b"abc")]);
        let second = HEADER_LEN + 2 + 4; // header + "a\0", then "abc" padded
        assert!(Bundle::parse(&good).is_ok());

        // No trailer, and a trailer cut short.
        assert_eq!(Bundle::parse(&good[..second]).unwrap_err(), MissingTrailer);
        assert_eq!(
            Bundle::parse(&good[..second + 50]).unwrap_err(),
            Truncated { at: second }
        );

        let mut bad = good.clone();
        bad[5] = b'7';
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BadMagic { at: 0 });
        let mut bad = good.clone();
        bad[second] = b'X';
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BadMagic { at: second });

        // Non-hex digits in filesize (field 6) and check (field 12).
        let mut bad = good.clone();
        bad[6 + 8 * 6 + 3] = b'g';
        assert_eq!(
            Bundle::parse(&bad).unwrap_err(),
            BadField {
                at: 0,
                field: "filesize"
            }
        );
        let mut bad = good.clone();
        bad[6 + 8 * 12] = b' ';
        assert_eq!(
            Bundle::parse(&bad).unwrap_err(),
            BadField {
                at: 0,
                field: "check"
            }
        );

        // Data or name running past the end.
        let mut bad = good.clone();
        bad[54..62].copy_from_slice(b"FFFFFFFF");
        assert_eq!(Bundle::parse(&bad).unwrap_err(), Truncated { at: 0 });
        let mut bad = good.clone();
        bad[94..102].copy_from_slice(b"00100000");
        assert_eq!(Bundle::parse(&bad).unwrap_err(), Truncated { at: 0 });
        assert_eq!(
            Bundle::parse(&good[..HEADER_LEN + 4]).unwrap_err(),
            Truncated { at: 0 }
        );

        // Names: empty, without NUL, junk after the NUL, not UTF-8.
        let mut bad = good.clone();
        bad[94..102].copy_from_slice(b"00000000");
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BadName { at: 0 });
        let mut bad = good.clone();
        bad[HEADER_LEN] = 0;
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BadName { at: 0 });
        let mut bad = good.clone();
        bad[HEADER_LEN + 1] = b'b';
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BadName { at: 0 });
        let mut bad = good.clone();
        bad[94..102].copy_from_slice(b"00000003");
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BadName { at: 0 });
        let mut bad = good.clone();
        bad[HEADER_LEN] = 0xff;
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BadName { at: 0 });
        let bad = archive(&[(REG, "./", b"")]);
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BadName { at: 0 });

        for e in [
            MissingTrailer,
            Truncated { at: 1 },
            BadMagic { at: 2 },
            BadField {
                at: 3,
                field: "mode",
            },
            BadName { at: 4 },
            BadChecksum { at: 5 },
        ] {
            assert!(!format!("{e}").is_empty());
        }
    }

    #[test]
    fn parse_never_panics_on_mutations() {
        let good = archive(&[
            (DIR, "guests", b""),
            (REG, "guests/a.elf", &[1u8; 30]),
            (REG, "b", &[2u8; 10]),
        ]);
        assert!(good.len() > 300);
        let values = [
            0u8, 1, b'0', b'1', b'7', b'8', b'f', b'F', b'g', b'.', b'/', 0x7f, 0x80, 0xff,
        ];
        for i in 0..300 {
            for v in values {
                let mut m = good.clone();
                m[i] = v;
                if let Ok(b) = Bundle::parse(&m) {
                    assert_eq!(b.files().count(), b.len());
                    for f in b.files() {
                        let _ = (f.name.len(), f.data.len());
                    }
                }
            }
        }
        for end in 0..good.len() {
            let _ = Bundle::parse(&good[..end]);
        }
    }

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir()
                .join(format!("mojito-abi-bundle-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `cpio -o -H format` in `dir` over `list`; `None` if there is no
    /// `cpio`.
    fn cpio_out(dir: &TempDir, format: &str, list: &str) -> Option<Vec<u8>> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = match Command::new("cpio")
            .args(["-o", "--quiet", "-H", format])
            .current_dir(&dir.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                println!("skipped: cannot run cpio ({e}); apt-get install cpio");
                return None;
            }
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(list.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cpio -o -H {format} failed");
        Some(out.stdout)
    }

    #[test]
    fn parses_archives_made_by_cpio() {
        let dir = TempDir::new("cpio");
        let elf: Vec<u8> = (0..=255u8).cycle().take(4099).collect();
        std::fs::create_dir(dir.0.join("guests")).unwrap();
        std::fs::write(dir.0.join("guests/demo.elf"), &elf).unwrap();
        std::fs::write(dir.0.join("boot.mojito"), b"run demo\n").unwrap();
        std::fs::write(dir.0.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("guests/demo.elf", dir.0.join("latest")).unwrap();
        // What `find .` prints: directories, a symlink and "./" everywhere.
        let list = ".\n./guests\n./guests/demo.elf\n./latest\n./boot.mojito\nempty\n";
        for format in ["newc", "crc"] {
            let Some(bytes) = cpio_out(&dir, format, list) else {
                return;
            };
            assert_eq!(bytes.len() % 512, 0, "cpio pads to blocks");
            let b = Bundle::parse(&bytes).unwrap_or_else(|e| panic!("cpio -H {format}: {e}"));
            assert_eq!(names(&b), ["guests/demo.elf", "boot.mojito", "empty"]);
            assert_eq!(b.len(), 3);
            assert_eq!(b.get("guests/demo.elf").unwrap().data, &elf[..]);
            assert_eq!(b.get("boot.mojito").unwrap().data, b"run demo\n");
            assert_eq!(b.get("empty").unwrap().data, b"");
            assert!(b.get("latest").is_none());
            assert!(b.get("guests").is_none());

            // A corrupted copy is rejected, whatever the format.
            let mut bad = bytes.clone();
            // The first data byte: only the crc format notices.
            let data_at =
                b.get("boot.mojito").unwrap().data.as_ptr() as usize - bytes.as_ptr() as usize;
            bad[data_at] ^= 1;
            let r = Bundle::parse(&bad);
            if format == "crc" {
                assert!(matches!(r, Err(BundleError::BadChecksum { .. })), "{r:?}");
            } else {
                assert_eq!(r.unwrap().get("boot.mojito").unwrap().data, b"sun demo\n");
            }
        }
    }
}
