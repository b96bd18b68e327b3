//! `phase run --dir HOST[::GUEST]`: a host directory read into a job's tree, and what the job
//! left written back to it as a live mount would have left it. Only regular files, directories
//! and symbolic links are read (anything else is refused by name); written back, no path ever
//! passes through a symbolic link on the host.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use phase_core::job::files::{Change, Entry, FilesError, FsLimits, Kind, Mount};
use phase_core::job::answer::LeftFiles;
use phase_core::sha256;

use crate::engine::Blobs;

/// A `--dir` argument: the host directory and the name the guest sees it by.
#[derive(Debug, Clone)]
pub struct DirArg {
    pub host: PathBuf,
    pub guest: String,
}

impl DirArg {
    /// `HOST` (seen by the guest under the same name) or `HOST::GUEST`.
    pub fn parse(arg: &str) -> DirArg {
        match arg.split_once("::") {
            Some((host, guest)) => DirArg { host: host.into(), guest: guest.into() },
            None => DirArg { host: arg.into(), guest: arg.into() },
        }
    }
}

/// Why a directory could not be read in or written back.
#[derive(Debug)]
pub enum DirError {
    Io { path: PathBuf, error: std::io::Error },
    /// Not a regular file, a directory or a link (a socket, a device, a FIFO).
    Unsupported(PathBuf),
    NotUtf8(PathBuf),
    Files(FilesError),
    TooLarge { path: PathBuf, limit: u64 },
    /// A parent on the host is not a directory: writing there would leave the tree.
    NotDirOnHost(PathBuf),
}

impl fmt::Display for DirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            DirError::Unsupported(p) => write!(f, "{}: not a regular file, directory or link", p.display()),
            DirError::NotUtf8(p) => write!(f, "{}: the name is not UTF-8", p.display()),
            DirError::Files(e) => write!(f, "{e}"),
            DirError::TooLarge { path, limit } => {
                write!(f, "{}: the directory holds more than the job's {limit} bytes of files", path.display())
            }
            DirError::NotDirOnHost(p) => write!(f, "{}: a parent is not a directory on the host", p.display()),
        }
    }
}

impl std::error::Error for DirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DirError::Io { error, .. } => Some(error),
            DirError::Files(e) => Some(e),
            _ => None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DirError + '_ {
    move |error| DirError::Io { path: path.to_path_buf(), error }
}

/// Reads `dir` into a mount, its files' bytes into `blobs`, within `limits` (`bytes` counts
/// everything read so far in `blobs`).
pub fn read_in(dir: &DirArg, limits: &FsLimits, blobs: &mut Blobs) -> Result<Mount, DirError> {
    let mut entries = Vec::new();
    let mut bytes: u64 = blobs.values().map(|b| b.len() as u64).sum();
    let mut todo = vec![(dir.host.clone(), String::new())];
    while let Some((host, rel)) = todo.pop() {
        for e in std::fs::read_dir(&host).map_err(io(&host))? {
            let e = e.map_err(io(&host))?;
            let path = e.path();
            let name = e.file_name().into_string().map_err(|_| DirError::NotUtf8(path.clone()))?;
            let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
            let kind = if meta.is_dir() {
                todo.push((path.clone(), rel.clone()));
                Kind::Dir
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(io(&path))?;
                Kind::Symlink { target: target.into_os_string().into_string().map_err(|_| DirError::NotUtf8(path.clone()))? }
            } else if meta.is_file() {
                if bytes.saturating_add(meta.len()) > limits.bytes {
                    return Err(DirError::TooLarge { path: dir.host.clone(), limit: limits.bytes });
                }
                let data = std::fs::read(&path).map_err(io(&path))?;
                bytes += data.len() as u64;
                let digest = sha256(&data);
                let size = data.len() as u64;
                blobs.insert(digest, Arc::from(data));
                use std::os::unix::fs::PermissionsExt;
                Kind::File { sha256: digest, size, executable: meta.permissions().mode() & 0o111 != 0 }
            } else {
                return Err(DirError::Unsupported(path));
            };
            entries.push(Entry { path: rel, kind });
            if entries.len() as u64 >= limits.entries {
                return Err(DirError::Files(FilesError::TooManyEntries { count: entries.len() as u64 + 1, max: limits.entries }));
            }
        }
    }
    Mount::new(dir.guest.clone(), entries, limits).map_err(DirError::Files)
}

/// Writes what the job left in mount `index` back to `dir.host`, in canonical order (parents
/// before children; a removed directory goes with everything in it).
pub fn write_back(dir: &DirArg, index: u32, left: &LeftFiles) -> Result<(), DirError> {
    for c in left.changes.changes().iter().filter(|c| c.mount == index) {
        write_change(&dir.host, c, left)?;
    }
    Ok(())
}

fn write_change(root: &Path, c: &Change, left: &LeftFiles) -> Result<(), DirError> {
    let path = root.join(&c.path);
    // Every parent below the root must be a real directory now (not a link to elsewhere).
    let mut parent = root.to_path_buf();
    if let Some((dirs, _)) = c.path.rsplit_once('/') {
        for name in dirs.split('/') {
            parent.push(name);
            match std::fs::symlink_metadata(&parent) {
                Ok(m) if m.is_dir() => {}
                _ => return Err(DirError::NotDirOnHost(path)),
            }
        }
    }
    let existing = std::fs::symlink_metadata(&path).ok();
    let remove = |m: &std::fs::Metadata| match m.is_dir() {
        true => std::fs::remove_dir_all(&path),
        false => std::fs::remove_file(&path),
    };
    match &c.kind {
        None => {
            if let Some(m) = &existing {
                remove(m).map_err(io(&path))?;
            }
        }
        Some(Kind::Dir) => match &existing {
            Some(m) if m.is_dir() => {}
            other => {
                if let Some(m) = other {
                    remove(m).map_err(io(&path))?;
                }
                std::fs::create_dir(&path).map_err(io(&path))?;
            }
        },
        Some(Kind::File { sha256, executable, .. }) => {
            if let Some(m) = &existing {
                if !m.is_file() {
                    remove(m).map_err(io(&path))?;
                }
            }
            let data = left.data.get(sha256).map(Vec::as_slice).unwrap_or_default();
            std::fs::write(&path, data).map_err(io(&path))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = if *executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io(&path))?;
        }
        Some(Kind::Symlink { target }) => {
            if let Some(m) = &existing {
                remove(m).map_err(io(&path))?;
            }
            std::os::unix::fs::symlink(target, &path).map_err(io(&path))?;
        }
    }
    Ok(())
}
