//! A job's files: the trees a job is given (preopened directories, each a `Mount`) and what it
//! leaves in them (`Changes`). Both have canonical bytes and a digest: the tree's is part of the
//! job id, the changes' is signed in the receipt, so a receipt commits to every input byte and
//! every byte the job left (docs/formats.md, "Job files").
//!
//! A tree holds directories, regular files (by SHA-256 and size, with an executable bit) and
//! symbolic links; no devices, owners or timestamps, which would differ between the machines
//! a tree comes from and are not the job's. A `Mount` that parsed is canonical: entries sorted
//! component by component, every parent present as a directory, every name valid, within its
//! limits.

use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

use crate::Digest;

/// Domain separation of a job's trees and of the changes a job left.
pub const TREE_DOMAIN: &[u8] = b"phase-tree/v1\n";
pub const CHANGES_DOMAIN: &[u8] = b"phase-changes/v1\n";

/// The longest name of one entry (a path component), as on Linux.
pub const MAX_NAME_BYTES: usize = 255;
/// Preopened directories a job may name.
pub const MAX_MOUNTS: usize = 16;

/// Limits of a job's files, part of the job id: what the guest may hold in all its trees at
/// once. A guest that passes one gets the errno a full disk or a table gives (docs/formats.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsLimits {
    /// Bytes of all regular files together (`ENOSPC` beyond).
    pub bytes: u64,
    /// Entries (files, directories, links; each mount's root counts) (`ENOSPC` beyond).
    pub entries: u64,
    /// Bytes of a path a guest passes, and of an entry's path in a tree (`ENAMETOOLONG`).
    pub path_bytes: u64,
    /// Directories below a mount's root an entry may sit in (`ENAMETOOLONG` beyond).
    pub depth: u64,
    /// Descriptors open at once, stdio and preopens included (`EMFILE` beyond).
    pub open_files: u64,
}

impl FsLimits {
    pub const DEFAULT: FsLimits =
        FsLimits { bytes: 16 << 20, entries: 4096, path_bytes: 1024, depth: 64, open_files: 128 };
    pub const MAX: FsLimits =
        FsLimits { bytes: 1 << 30, entries: 1 << 20, path_bytes: 4096, depth: 256, open_files: 4096 };

    fn write_canonical(&self, out: &mut Vec<u8>) {
        for v in [self.bytes, self.entries, self.path_bytes, self.depth, self.open_files] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Each field no larger than `max`'s, or the first that is.
    pub fn check(&self, max: &FsLimits) -> Result<(), FilesError> {
        let fields = [
            ("bytes", self.bytes, max.bytes),
            ("entries", self.entries, max.entries),
            ("path_bytes", self.path_bytes, max.path_bytes),
            ("depth", self.depth, max.depth),
            ("open_files", self.open_files, max.open_files),
        ];
        for (name, value, max) in fields {
            if value > max {
                return Err(FilesError::LimitAbove { name, value, max });
            }
        }
        // Stdio and one mount, and that mount's root.
        if self.open_files < 4 {
            return Err(FilesError::LimitBelow { name: "open_files", value: self.open_files, min: 4 });
        }
        if self.entries < 1 {
            return Err(FilesError::LimitBelow { name: "entries", value: self.entries, min: 1 });
        }
        Ok(())
    }
}

/// File limits as a client asks for them: unset fields take the defaults (within the node's
/// maxima).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestedFsLimits {
    pub bytes: Option<u64>,
    pub entries: Option<u64>,
    pub path_bytes: Option<u64>,
    pub depth: Option<u64>,
    pub open_files: Option<u64>,
}

impl FsLimits {
    /// `asked` with unset fields from `DEFAULT` (capped by `max`), each checked against `max`.
    pub fn resolve(asked: &RequestedFsLimits, max: &FsLimits) -> Result<FsLimits, FilesError> {
        let d = FsLimits::DEFAULT;
        let pick = |v: Option<u64>, default: u64, max: u64| v.unwrap_or(default.min(max));
        let limits = FsLimits {
            bytes: pick(asked.bytes, d.bytes, max.bytes),
            entries: pick(asked.entries, d.entries, max.entries),
            path_bytes: pick(asked.path_bytes, d.path_bytes, max.path_bytes),
            depth: pick(asked.depth, d.depth, max.depth),
            open_files: pick(asked.open_files, d.open_files, max.open_files),
        };
        limits.check(max)?;
        Ok(limits)
    }

    /// Every field, as a client may ask for it again (what a node sends a peer).
    pub fn as_requested(&self) -> RequestedFsLimits {
        RequestedFsLimits {
            bytes: Some(self.bytes),
            entries: Some(self.entries),
            path_bytes: Some(self.path_bytes),
            depth: Some(self.depth),
            open_files: Some(self.open_files),
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { sha256: Digest, size: u64, executable: bool },
    Symlink { target: String },
}

impl Kind {
    fn code(&self) -> u8 {
        match self {
            Kind::Dir => 1,
            Kind::File { .. } => 2,
            Kind::Symlink { .. } => 3,
        }
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.push(self.code());
        match self {
            Kind::Dir => {}
            Kind::File { sha256, size, executable } => {
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(sha256);
                out.push(*executable as u8);
            }
            Kind::Symlink { target } => put_str(out, target),
        }
    }
}

/// One entry of a tree: its path below the mount's root (`a/b.txt`) and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
}

/// One preopened directory: the name the guest sees it by and the tree in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    guest: String,
    entries: Vec<Entry>,
}

/// A job's files: its mounts, in the order the guest gets them (fd 3, 4, …), and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    mounts: Vec<Mount>,
    pub limits: FsLimits,
}

/// Why files were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilesError {
    TooManyMounts(usize),
    /// A mount's guest name is empty, holds a NUL or is named twice.
    BadGuestName(String),
    /// A path is empty, absolute, has an empty, `.` or `..` component, a NUL, or a name over
    /// 255 bytes.
    BadPath(String),
    PathTooLong { path: String, max: u64 },
    TooDeep { path: String, max: u64 },
    Duplicate(String),
    /// An entry's parent is a file or a link.
    ParentNotDir(String),
    /// A link's target is empty, holds a NUL or is longer than the path limit.
    BadTarget(String),
    TooManyEntries { count: u64, max: u64 },
    TooManyBytes { bytes: u64, max: u64 },
    LimitAbove { name: &'static str, value: u64, max: u64 },
    LimitBelow { name: &'static str, value: u64, min: u64 },
}

impl fmt::Display for FilesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilesError::TooManyMounts(n) => write!(f, "{n} mounts (at most {MAX_MOUNTS})"),
            FilesError::BadGuestName(g) => write!(f, "mount name {g:?} is empty, holds a NUL or is used twice"),
            FilesError::BadPath(p) => write!(f, "path {p:?} is not a relative path of valid names"),
            FilesError::PathTooLong { path, max } => write!(f, "path {path:?} is longer than {max} bytes"),
            FilesError::TooDeep { path, max } => write!(f, "path {path:?} is deeper than {max} directories"),
            FilesError::Duplicate(p) => write!(f, "path {p:?} is named twice"),
            FilesError::ParentNotDir(p) => write!(f, "the parent of {p:?} is not a directory"),
            FilesError::BadTarget(p) => write!(f, "the link {p:?} has an empty, overlong or NUL-holding target"),
            FilesError::TooManyEntries { count, max } => write!(f, "{count} entries (the limit is {max})"),
            FilesError::TooManyBytes { bytes, max } => write!(f, "{bytes} bytes of files (the limit is {max})"),
            FilesError::LimitAbove { name, value, max } => write!(f, "file limit {name} = {value} is above the maximum {max}"),
            FilesError::LimitBelow { name, value, min } => write!(f, "file limit {name} = {value} is below the minimum {min}"),
        }
    }
}
impl core::error::Error for FilesError {}

/// Orders paths component by component (`a/b` before `a.b`, as a tree walk meets them).
pub fn path_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// The parent of `path` (`None` at the top level).
pub fn parent(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

fn check_path(path: &str, limits: &FsLimits) -> Result<(), FilesError> {
    let bad = || FilesError::BadPath(path.into());
    if path.is_empty() || path.contains('\0') {
        return Err(bad());
    }
    let mut depth = 0u64;
    for name in path.split('/') {
        if name.is_empty() || name == "." || name == ".." || name.len() > MAX_NAME_BYTES {
            return Err(bad());
        }
        depth += 1;
    }
    if path.len() as u64 > limits.path_bytes {
        return Err(FilesError::PathTooLong { path: path.into(), max: limits.path_bytes });
    }
    // An entry at the top level sits in no directory below the root.
    if depth - 1 > limits.depth {
        return Err(FilesError::TooDeep { path: path.into(), max: limits.depth });
    }
    Ok(())
}

fn check_target(path: &str, target: &str, limits: &FsLimits) -> Result<(), FilesError> {
    if target.is_empty() || target.contains('\0') || target.len() as u64 > limits.path_bytes {
        return Err(FilesError::BadTarget(path.into()));
    }
    Ok(())
}

impl Mount {
    /// A mount of `entries` in any order; missing parent directories are added. Checked
    /// against `limits` except for the totals, which `Files::new` checks over all mounts.
    pub fn new(guest: String, mut entries: Vec<Entry>, limits: &FsLimits) -> Result<Mount, FilesError> {
        if guest.is_empty() || guest.contains('\0') || guest.len() as u64 > limits.path_bytes {
            return Err(FilesError::BadGuestName(guest));
        }
        for e in &entries {
            check_path(&e.path, limits)?;
            if let Kind::Symlink { target } = &e.kind {
                check_target(&e.path, target, limits)?;
            }
        }
        entries.sort_by(|a, b| path_order(&a.path, &b.path));
        let mut all: Vec<Entry> = Vec::with_capacity(entries.len());
        for e in entries {
            if all.last().is_some_and(|l| l.path == e.path) {
                return Err(FilesError::Duplicate(e.path));
            }
            // Parents missing between the last entry and this one are added as directories.
            let mut missing = Vec::new();
            let mut p = parent(&e.path);
            while let Some(dir) = p {
                match all.binary_search_by(|x| path_order(&x.path, dir)) {
                    Ok(i) if all[i].kind == Kind::Dir => break,
                    Ok(_) => return Err(FilesError::ParentNotDir(e.path)),
                    Err(_) => missing.push(String::from(dir)),
                }
                p = parent(dir);
            }
            for dir in missing.into_iter().rev() {
                all.push(Entry { path: dir, kind: Kind::Dir });
            }
            all.push(e);
        }
        if all.len() as u64 >= limits.entries {
            return Err(FilesError::TooManyEntries { count: all.len() as u64 + 1, max: limits.entries });
        }
        Ok(Mount { guest, entries: all })
    }

    pub fn guest(&self) -> &str {
        &self.guest
    }

    /// Entries in canonical order, parents first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                Kind::File { size, .. } => size,
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }
}

impl Files {
    /// Files of `mounts` under `limits` (which `FsLimits::check` has admitted). Mount names
    /// are unique; totals are within the limits (each root is an entry too).
    pub fn new(mounts: Vec<Mount>, limits: FsLimits) -> Result<Files, FilesError> {
        if mounts.len() > MAX_MOUNTS {
            return Err(FilesError::TooManyMounts(mounts.len()));
        }
        for (i, m) in mounts.iter().enumerate() {
            if mounts[..i].iter().any(|o| o.guest == m.guest) {
                return Err(FilesError::BadGuestName(m.guest.clone()));
            }
        }
        let count: u64 = mounts.iter().map(|m| m.entries.len() as u64 + 1).sum();
        if count > limits.entries {
            return Err(FilesError::TooManyEntries { count, max: limits.entries });
        }
        let bytes = mounts.iter().map(Mount::bytes).fold(0u64, u64::saturating_add);
        if bytes > limits.bytes {
            return Err(FilesError::TooManyBytes { bytes, max: limits.bytes });
        }
        // Mounts were checked against their own limits; these must be the same.
        for m in &mounts {
            for e in &m.entries {
                check_path(&e.path, &limits)?;
            }
        }
        if (3 + mounts.len()) as u64 > limits.open_files {
            return Err(FilesError::LimitBelow { name: "open_files", value: limits.open_files, min: 3 + mounts.len() as u64 });
        }
        Ok(Files { mounts, limits })
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Bytes of all files in all mounts.
    pub fn bytes(&self) -> u64 {
        self.mounts.iter().map(Mount::bytes).fold(0u64, u64::saturating_add)
    }

    /// The canonical bytes hashed into the job id (docs/formats.md, "Job files").
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::from(TREE_DOMAIN);
        out.extend_from_slice(&(self.mounts.len() as u32).to_be_bytes());
        for m in &self.mounts {
            put_str(&mut out, &m.guest);
            out.extend_from_slice(&(m.entries.len() as u32).to_be_bytes());
            for e in &m.entries {
                put_str(&mut out, &e.path);
                e.kind.write_canonical(&mut out);
            }
        }
        self.limits.write_canonical(&mut out);
        out
    }

    pub fn digest(&self) -> Digest {
        crate::sha256(&self.canonical_bytes())
    }

    /// Every file's digest and size, each once: what a node must have before the job runs.
    pub fn blobs(&self) -> Vec<(Digest, u64)> {
        let mut all: Vec<(Digest, u64)> = self
            .mounts
            .iter()
            .flat_map(|m| m.entries.iter())
            .filter_map(|e| match e.kind {
                Kind::File { sha256, size, .. } => Some((sha256, size)),
                _ => None,
            })
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// One entry the job left different from what it was given: in mount `mount`, at `path`,
/// now `kind`, or removed (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub mount: u32,
    pub path: String,
    pub kind: Option<Kind>,
}

/// What a job left in its trees, as a list of changes from the trees it was given
/// (docs/decisions.md, "What a receipt signs of a job's files"): entries created or changed,
/// and entries removed, a removed directory's descendants not listed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    changes: Vec<Change>,
}

impl Changes {
    /// Changes in canonical order (by mount, then path). Paths must be valid and each named
    /// once.
    pub fn new(mut changes: Vec<Change>) -> Result<Changes, FilesError> {
        for c in &changes {
            check_path(&c.path, &FsLimits::MAX)?;
            if let Some(Kind::Symlink { target }) = &c.kind {
                check_target(&c.path, target, &FsLimits::MAX)?;
            }
        }
        changes.sort_by(|a, b| a.mount.cmp(&b.mount).then_with(|| path_order(&a.path, &b.path)));
        for w in changes.windows(2) {
            if w[0].mount == w[1].mount && w[0].path == w[1].path {
                return Err(FilesError::Duplicate(w[1].path.clone()));
            }
        }
        Ok(Changes { changes })
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Bytes of the files the changes carry: what the answer must hold within the output cap.
    pub fn file_bytes(&self) -> u64 {
        self.changes
            .iter()
            .map(|c| match c.kind {
                Some(Kind::File { size, .. }) => size,
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }

    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::from(CHANGES_DOMAIN);
        out.extend_from_slice(&(self.changes.len() as u32).to_be_bytes());
        for c in &self.changes {
            out.extend_from_slice(&c.mount.to_be_bytes());
            put_str(&mut out, &c.path);
            match &c.kind {
                None => out.push(0),
                Some(k) => k.write_canonical(&mut out),
            }
        }
        out
    }

    /// The digest a receipt signs.
    pub fn digest(&self) -> Digest {
        crate::sha256(&self.canonical_bytes())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn file(path: &str, byte: u8) -> Entry {
        Entry { path: path.into(), kind: Kind::File { sha256: [byte; 32], size: byte as u64, executable: false } }
    }

    #[test]
    fn a_mount_is_sorted_by_component_with_its_parents_added() {
        let l = FsLimits::DEFAULT;
        let m = Mount::new("/data".into(), vec![file("a.b", 1), file("a/b/c", 2), file("a/x", 3)], &l).unwrap();
        let paths: Vec<&str> = m.entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c", "a/x", "a.b"]);
        assert_eq!(m.entries()[0].kind, Kind::Dir);
        // The same tree given in another order, or with its parents named, is the same value.
        let again = Mount::new(
            "/data".into(),
            vec![file("a/x", 3), Entry { path: "a".into(), kind: Kind::Dir }, file("a.b", 1), file("a/b/c", 2)],
            &l,
        )
        .unwrap();
        assert_eq!(m, again);
    }

    #[test]
    fn bad_trees_are_refused_by_reason() {
        let l = FsLimits { depth: 2, path_bytes: 20, ..FsLimits::DEFAULT };
        let m = |entries: Vec<Entry>| Mount::new("d".into(), entries, &l);
        for bad in ["", "/a", "a//b", "a/./b", "a/../b", "a/", "..", "a\0b"] {
            assert_eq!(m(vec![file(bad, 1)]), Err(FilesError::BadPath(bad.into())), "{bad:?}");
        }
        assert_eq!(m(vec![file(&"n".repeat(256), 1)]), Err(FilesError::BadPath("n".repeat(256))));
        assert!(matches!(m(vec![file("a/b/c/d", 1)]), Err(FilesError::TooDeep { .. })));
        assert!(m(vec![file("a/b/c", 1)]).is_ok());
        assert!(matches!(m(vec![file(&"x".repeat(21), 1)]), Err(FilesError::PathTooLong { .. })));
        assert_eq!(m(vec![file("a", 1), file("a", 2)]), Err(FilesError::Duplicate("a".into())));
        assert_eq!(m(vec![file("a", 1), file("a/b", 2)]), Err(FilesError::ParentNotDir("a/b".into())));
        let link = |t: &str| Entry { path: "l".into(), kind: Kind::Symlink { target: t.into() } };
        assert_eq!(m(vec![link("")]), Err(FilesError::BadTarget("l".into())));
        // A link may point anywhere: it is resolved (and refused) when a guest follows it.
        assert!(m(vec![link("../../etc/passwd")]).is_ok());
        assert!(matches!(Mount::new("".into(), vec![], &l), Err(FilesError::BadGuestName(_))));
    }

    #[test]
    fn files_count_every_mount_against_the_limits() {
        let l = FsLimits { entries: 4, bytes: 5, ..FsLimits::DEFAULT };
        let a = Mount::new("a".into(), vec![file("x", 2)], &l).unwrap();
        let b = Mount::new("b".into(), vec![file("y", 3)], &l).unwrap();
        let files = Files::new(vec![a.clone(), b.clone()], l).unwrap();
        assert_eq!(files.bytes(), 5);
        assert_eq!(files.blobs(), vec![([2; 32], 2), ([3; 32], 3)]);
        let c = Mount::new("c".into(), vec![], &l).unwrap();
        assert!(matches!(Files::new(vec![a.clone(), b.clone(), c], l), Err(FilesError::TooManyEntries { count: 5, .. })));
        let big = Mount::new("c".into(), vec![file("z", 1)], &FsLimits::DEFAULT).unwrap();
        assert!(matches!(Files::new(vec![a.clone(), big], FsLimits { entries: 9, bytes: 2, ..l }), Err(FilesError::TooManyBytes { bytes: 3, .. })));
        assert!(matches!(Files::new(vec![a.clone(), a], l), Err(FilesError::BadGuestName(_))));
    }

    #[test]
    fn the_digest_depends_on_every_part_of_the_files() {
        let l = FsLimits::DEFAULT;
        let make = |guest: &str, entries: Vec<Entry>, limits: FsLimits| {
            Files::new(vec![Mount::new(guest.into(), entries, &limits).unwrap()], limits).unwrap().digest()
        };
        let base = make("/d", vec![file("a", 1)], l);
        let exec = Entry { path: "a".into(), kind: Kind::File { sha256: [1; 32], size: 1, executable: true } };
        let link = Entry { path: "a".into(), kind: Kind::Symlink { target: "b".into() } };
        let dir = Entry { path: "a".into(), kind: Kind::Dir };
        let variants = [
            make("/e", vec![file("a", 1)], l),
            make("/d", vec![file("b", 1)], l),
            make("/d", vec![file("a", 2)], l),
            make("/d", vec![exec], l),
            make("/d", vec![link], l),
            make("/d", vec![dir], l),
            make("/d", vec![file("a", 1)], FsLimits { open_files: 9, ..l }),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {i}");
        }
        assert_eq!(make("/d", vec![file("a", 1)], l), base);
    }

    #[test]
    fn changes_are_canonical_and_their_digest_tells_removal_from_creation() {
        let made = Change { mount: 0, path: "out/r.txt".into(), kind: Some(Kind::File { sha256: [7; 32], size: 3, executable: false }) };
        let gone = Change { mount: 0, path: "in".into(), kind: None };
        let a = Changes::new(vec![made.clone(), gone.clone()]).unwrap();
        let b = Changes::new(vec![gone.clone(), made.clone()]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.file_bytes(), 3);
        let other = Changes::new(vec![made.clone(), Change { kind: Some(Kind::Dir), ..gone.clone() }]).unwrap();
        assert_ne!(a.digest(), other.digest());
        assert_ne!(a.digest(), Changes::default().digest());
        assert_eq!(Changes::new(vec![gone.clone(), gone]), Err(FilesError::Duplicate("in".to_string())));
    }
}
