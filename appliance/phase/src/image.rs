//! Building boot images on the host: a directory tree packed as a cpio newc initramfs.

use std::fmt;
use std::path::{Path, PathBuf};

use phase_core::boot::cpio::{CpioError, CpioWriter};

/// Why a tree could not be packed: the path and what failed.
#[derive(Debug)]
pub enum PackError {
    Io { path: PathBuf, error: std::io::Error },
    /// An entry the archive refused (a name too long, …).
    Entry { path: String, error: CpioError },
    /// A device, socket or FIFO: only files, directories and symlinks are packed.
    Kind { path: String },
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            PackError::Entry { path, error } => write!(f, "{path}: {error}"),
            PackError::Kind { path } => write!(f, "{path}: only files, directories and symlinks can be packed"),
        }
    }
}

impl std::error::Error for PackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PackError::Io { error, .. } => Some(error),
            PackError::Entry { error, .. } => Some(error),
            PackError::Kind { .. } => None,
        }
    }
}

/// Packs `root` (sorted, so the archive is reproducible) plus a /dev/console node, which a
/// tree built without root cannot hold but the kernel needs to give PID 1 a console.
pub fn pack_tree(root: &Path) -> Result<Vec<u8>, PackError> {
    let mut w = CpioWriter::new();
    let mut has_dev = false;
    walk(root, root, &mut w, &mut has_dev)?;
    let entry = |error| PackError::Entry { path: "dev/console".into(), error };
    if !has_dev {
        w.dir("dev", 0o755).map_err(entry)?;
    }
    w.char_device("dev/console", 0o600, 5, 1).map_err(entry)?;
    Ok(w.finish())
}

/// `base` (an initrd, compressed or not) with `root` packed after it as a second archive: the
/// kernel unpacks both, the second over the first (how an image gets its trust keys or a
/// release without being rebuilt).
pub fn pack_tree_after(root: &Path, base: Vec<u8>) -> Result<Vec<u8>, PackError> {
    let mut w = CpioWriter::after(base);
    let mut has_dev = false;
    walk(root, root, &mut w, &mut has_dev)?;
    Ok(w.finish())
}

/// Where an image keeps the publisher keys it trusts (one hex key per `*.pub` file).
pub const TRUST_DIR: &str = "etc/phase/trust";

/// Adds `keys` to an archive being written as TRUST_DIR/<key id>.pub (the directories too).
pub fn add_trust(w: &mut CpioWriter, keys: &[[u8; 32]]) -> Result<(), CpioError> {
    if keys.is_empty() {
        return Ok(());
    }
    for d in ["etc", "etc/phase", TRUST_DIR] {
        w.dir(d, 0o755)?;
    }
    for k in keys {
        let name = format!("{TRUST_DIR}/{}.pub", phase_core::boot::manifest::key_id(k));
        w.file(&name, 0o644, format!("{}\n", phase_core::encoding::hex_encode(k)).as_bytes())?;
    }
    Ok(())
}

fn walk(root: &Path, dir: &Path, w: &mut CpioWriter, has_dev: &mut bool) -> Result<(), PackError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| PackError::Io { path, error }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io(dir))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let perm = meta.permissions().mode() & 0o7777;
        let err = |error| PackError::Entry { path: rel.clone(), error };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(io(&path))?;
            w.symlink(&rel, &target.to_string_lossy()).map_err(err)?;
        } else if meta.is_dir() {
            if rel == "dev" {
                *has_dev = true;
            }
            w.dir(&rel, perm).map_err(err)?;
            walk(root, &path, w, has_dev)?;
        } else if meta.is_file() {
            let data = std::fs::read(&path).map_err(io(&path))?;
            w.file(&rel, perm, &data).map_err(err)?;
        } else {
            return Err(PackError::Kind { path: rel });
        }
    }
    Ok(())
}
