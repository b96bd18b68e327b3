//! The node's Ed25519 identity. With a data dir it lives in its key file (`node.key`, hex
//! seed, mode 0600, written atomically: a 0600 temp file, fsync, then a hard link that fails
//! if another process won the race); without one it is kept in RAM for the life of the process.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_compact::{KeyPair, Seed};

use crate::data_dir::DataDir;
use phase_core::encoding::{hex_decode_array, hex_encode};

#[derive(Debug)]
pub struct IdentityError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node key {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for IdentityError {}

pub struct NodeIdentity {
    key: KeyPair,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeIdentity({})", self.public_key_hex())
    }
}

impl NodeIdentity {
    /// A fresh key that lives only in this process.
    pub fn ephemeral() -> NodeIdentity {
        NodeIdentity { key: KeyPair::from_seed(Seed::generate()) }
    }

    pub fn key_pair(&self) -> &KeyPair {
        &self.key
    }

    /// The Ed25519 seed: the libp2p key is derived from it, so the PeerId names this key.
    pub fn seed(&self) -> [u8; 32] {
        *self.key.sk.seed()
    }

    pub fn public_key(&self) -> [u8; 32] {
        *self.key.pk
    }

    pub fn public_key_hex(&self) -> String {
        hex_encode(&self.public_key())
    }

    /// Loads the data dir's key, creating the directory (0700) and the key (0600) if absent.
    pub fn load_or_create(data: &DataDir) -> Result<NodeIdentity, IdentityError> {
        let (dir, path) = (data.path(), data.key());
        let err = |reason: String| IdentityError { path: path.clone(), reason };
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(format!("cannot create directory: {e}")))?;
        }
        match Self::load(&path) {
            Ok(id) => Ok(id),
            Err(e) if path.exists() => Err(e),
            Err(_) => match Self::create(&path) {
                Ok(id) => Ok(id),
                // Another process created it between our look and our link: use theirs.
                Err(_) if path.exists() => Self::load(&path),
                Err(e) => Err(e),
            },
        }
    }

    /// Loads a key file; refuses one that others can read.
    pub fn load(path: &Path) -> Result<NodeIdentity, IdentityError> {
        let err = |reason: String| IdentityError { path: path.to_path_buf(), reason };
        let meta = fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "mode {:o} lets others read the secret key; chmod 600 it",
                meta.permissions().mode() & 0o777
            )));
        }
        let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let seed = hex_decode_array::<32>(text.trim())
            .map_err(|e| err(format!("not a 64-hex-digit Ed25519 seed ({e})")))?;
        Ok(NodeIdentity { key: KeyPair::from_seed(Seed::new(seed)) })
    }

    /// Creates a new key file at `path`; fails if it already exists.
    pub fn create(path: &Path) -> Result<NodeIdentity, IdentityError> {
        let err = |reason: String| IdentityError { path: path.to_path_buf(), reason };
        let id = NodeIdentity::ephemeral();
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(format!("{}\n", hex_encode(id.key.sk.seed().as_ref())).as_bytes())?;
            f.sync_all()?;
            match fs::hard_link(&tmp, path) {
                // vfat (a boot stick's data partition) has no hard links: rename instead, which
                // cannot lose a race there (PID 1 starts one node per partition).
                Err(e) if e.raw_os_error() == Some(libc::EPERM) && !path.exists() => fs::rename(&tmp, path),
                other => other,
            }?;
            crate::durable::sync_dir(path)
        };
        let result = write();
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(()) => Ok(id),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(err("already exists; refusing to overwrite a key".into()))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("phase-id-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn created_once_then_reloaded_with_mode_0600() {
        let dir = tempdir("reload");
        let data = DataDir::new(&dir);
        let a = NodeIdentity::load_or_create(&data).unwrap();
        let b = NodeIdentity::load_or_create(&data).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let mode = fs::metadata(data.key()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(NodeIdentity::create(&data.key()).is_err(), "never overwrites");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_readable_or_corrupt_keys() {
        let dir = tempdir("bad");
        let data = DataDir::new(&dir);
        NodeIdentity::load_or_create(&data).unwrap();
        let path = data.key();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(NodeIdentity::load(&path).unwrap_err().to_string().contains("chmod 600"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "zz\n").unwrap();
        let e = NodeIdentity::load_or_create(&data).unwrap_err().to_string();
        assert!(e.contains("not a 64-hex-digit"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
