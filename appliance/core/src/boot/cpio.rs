//! The cpio "newc" format (what the kernel unpacks as an initramfs), written in memory.
//! Deterministic: entries in the order given, mtime 0, uid/gid 0, inodes numbered from 1, so
//! the same tree gives the same bytes. No root needed: device nodes are just entries.

use alloc::vec::Vec;
use core::fmt;

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpioError {
    /// Paths are relative, without `..`, NUL or empty components.
    BadPath,
    /// newc sizes are 32-bit.
    TooLarge,
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::BadPath => f.write_str("cpio path must be relative, without '..', NUL or empty parts"),
            CpioError::TooLarge => f.write_str("cpio entry larger than 4 GiB"),
        }
    }
}
impl core::error::Error for CpioError {}


pub struct CpioWriter {
    out: Vec<u8>,
    ino: u32,
}

impl Default for CpioWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn check_path(path: &str) -> Result<(), CpioError> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path.split('/').all(|c| !c.is_empty() && c != "..");
    if ok { Ok(()) } else { Err(CpioError::BadPath) }
}

impl CpioWriter {
    pub fn new() -> CpioWriter {
        CpioWriter { out: Vec::new(), ino: 0 }
    }

    /// An archive that follows `prefix` (e.g. a compressed initramfs) in one buffer: the
    /// prefix is zero-padded to 4 bytes, where the kernel's unpacker looks for a next archive.
    pub fn after(prefix: Vec<u8>) -> CpioWriter {
        let mut w = CpioWriter { out: prefix, ino: 0 };
        w.pad();
        w
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8], rdev: (u32, u32)) -> Result<(), CpioError> {
        if path != "TRAILER!!!" {
            check_path(path)?;
        }
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge)?;
        self.ino += 1;
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        let fields = [
            self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, path.len() as u32 + 1, 0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            for shift in (0..8).rev() {
                self.out.push(HEX[((f >> (shift * 4)) & 15) as usize]);
            }
        }
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        self.entry(path, S_IFDIR | (perm & 0o7777), &[], (0, 0))
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.entry(path, S_IFREG | (perm & 0o7777), data, (0, 0))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.entry(path, S_IFLNK | 0o777, target.as_bytes(), (0, 0))
    }

    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<(), CpioError> {
        self.entry(path, S_IFCHR | (perm & 0o7777), &[], (major, minor))
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        let _ = self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_after_a_prefix_starts_at_a_4_byte_boundary() {
        let mut w = CpioWriter::after(b"zstd!".to_vec());
        w.file("a", 0o644, b"x").unwrap();
        let out = w.finish();
        assert_eq!(&out[..8], b"zstd!\0\0\0");
        assert_eq!(&out[8..14], b"070701");
        let mut alone = CpioWriter::new();
        alone.file("a", 0o644, b"x").unwrap();
        assert_eq!(&out[8..], &alone.finish()[..], "same archive as on its own");
    }

    #[test]
    fn writes_newc_entries_with_padding_and_trailer() {
        let mut w = CpioWriter::new();
        w.dir("dev", 0o755).unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, b"abc").unwrap();
        w.symlink("sh", "busybox").unwrap();
        let a = w.finish();
        assert_eq!(&a[..6], b"070701");
        assert_eq!(a.len() % 4, 0);
        // Header of the first entry: ino 1, mode dir 0755, nlink 2, namesize 4 ("dev\0").
        assert_eq!(&a[6..14], b"00000001");
        assert_eq!(&a[14..22], b"000041ED");
        assert_eq!(&a[38..46], b"00000002");
        assert_eq!(&a[94..102], b"00000004");
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
        // Console: rdev 5:1.
        let console = a.windows(11).position(|w| w == b"dev/console").unwrap();
        let hdr = &a[console - 110..console];
        assert_eq!(&hdr[78..86], b"00000005");
        assert_eq!(&hdr[86..94], b"00000001");
    }

    #[test]
    fn refuses_escaping_paths() {
        let mut w = CpioWriter::new();
        for p in ["/abs", "a/../b", "", "a//b", "a\0b"] {
            assert_eq!(w.file(p, 0o644, b""), Err(CpioError::BadPath), "{p:?}");
        }
    }
}
