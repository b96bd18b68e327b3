//! Writes that survive a power cut once they return: the node's data dir may be a boot stick
//! that is pulled at any moment (docs/image.md, "The data partition").

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes`: a temporary file beside it, fsync, rename over `path`, fsync
/// of the directory. A crash leaves the old content or the new, never a part; a failed write
/// removes its temporary file.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(path)
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Makes a new directory entry durable: fsync of the directory holding `path`.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}
