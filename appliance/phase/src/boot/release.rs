//! A release: a publisher-signed manifest with the kernel and initramfs it names (and its
//! drivers archive, when it has one), the bytes checked against it. Made by signing (`phase
//! publish`, `phase manifest sign`), by reading a store's entry, or by downloading from
//! providers (netboot.rs); booted as a `BootImage`.

use std::fmt;
use std::path::PathBuf;

use phase_core::boot::manifest::{Arch, Artifact, Manifest, ManifestBody, ManifestError};
use phase_core::sha256;

use super::store::Entry;

pub struct Release {
    pub manifest: Manifest,
    /// The manifest as signed and stored (served and carried byte for byte).
    pub manifest_json: String,
    pub kernel: Vec<u8>,
    pub initramfs: Vec<u8>,
    /// The drivers archive the booted kernel loads after the initramfs, when the release has one.
    pub drivers: Option<Vec<u8>>,
}

/// What a publisher states about a release besides its artifacts.
pub struct Unsigned {
    pub channel: String,
    pub arch: Arch,
    pub version: u64,
    pub created_at: u64,
    pub expires_at: u64,
    pub cmdline: String,
    /// How it spreads over a fleet (none: every node at once).
    pub rollout: Option<phase_core::boot::rollout::Rollout>,
}

#[derive(Debug)]
pub enum ReleaseError {
    Io { path: PathBuf, error: std::io::Error },
    Manifest(ManifestError),
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            ReleaseError::Manifest(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReleaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReleaseError::Io { error, .. } => Some(error),
            ReleaseError::Manifest(e) => Some(e),
        }
    }
}

impl Release {
    /// Signs a release of `kernel`, `initramfs` and optionally `drivers` (each a file name and
    /// its bytes).
    pub fn sign(u: Unsigned, kernel: (String, Vec<u8>), initramfs: (String, Vec<u8>), drivers: Option<(String, Vec<u8>)>, key: &ed25519_compact::KeyPair) -> Result<Release, ManifestError> {
        let artifact = |(name, bytes): &(String, Vec<u8>)| Artifact { name: name.clone(), size: bytes.len() as u64, sha256: sha256(bytes) };
        let body = ManifestBody {
            channel: u.channel,
            arch: u.arch,
            version: u.version,
            created_at: u.created_at,
            expires_at: u.expires_at,
            kernel: artifact(&kernel),
            initramfs: artifact(&initramfs),
            cmdline: u.cmdline,
            drivers: drivers.as_ref().map(artifact),
            rollout: u.rollout,
        };
        let manifest = Manifest::sign(body, key)?;
        Ok(Release { manifest_json: manifest.to_json(), manifest, kernel: kernel.1, initramfs: initramfs.1, drivers: drivers.map(|d| d.1) })
    }

    /// Reads the release of a store entry, its artifacts checked again: the bytes a machine
    /// boots must be the signed ones, whatever happened to the files since the store opened.
    pub fn read(entry: &Entry) -> Result<Release, ReleaseError> {
        let m = &entry.manifest;
        let read = |name: &str| {
            let path = entry.dir.join(name);
            std::fs::read(&path).map_err(|error| ReleaseError::Io { path, error })
        };
        let (kernel, initramfs) = (read(&m.body.kernel.name)?, read(&m.body.initramfs.name)?);
        m.check_artifact("kernel", &kernel).map_err(ReleaseError::Manifest)?;
        m.check_artifact("initramfs", &initramfs).map_err(ReleaseError::Manifest)?;
        let drivers = match &m.body.drivers {
            Some(a) => {
                let bytes = read(&a.name)?;
                m.check_artifact("drivers", &bytes).map_err(ReleaseError::Manifest)?;
                Some(bytes)
            }
            None => None,
        };
        Ok(Release { manifest: m.clone(), manifest_json: entry.manifest_json.clone(), kernel, initramfs, drivers })
    }

    /// `channel/arch version N signed by KEY`, for logs.
    pub fn describe(&self) -> String {
        let b = &self.manifest.body;
        format!("{}/{} version {} signed by {}", b.channel, b.arch.name(), b.version, self.manifest.key_id())
    }
}
