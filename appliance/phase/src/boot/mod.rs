//! Netboot chains (docs/netboot.md): a store of signed boot artifacts (`store`), the HTTP
//! provider that serves it (`provider`), the client that fetches and verifies from providers
//! with resume and failover (`fetch`), and the hop itself: carry the artifacts into the next
//! kernel's initrd and kexec (`netboot`).

pub mod fetch;
pub mod floors;
pub mod netboot;
pub mod provider;
pub mod release;
pub mod store;

/// Where a booted appliance finds the artifacts it booted from (the second cpio archive of
/// its initrd) and so serves them on.
pub const CARRIED_STORE: &str = "/boot/phase";
/// Publisher keys built into the image: one hex key per `*.pub` file (image.rs writes them).
pub const TRUST_DIR: &str = "/etc/phase/trust";

/// The DHT key under which providers of a channel/arch announce themselves.
pub fn provider_key(channel: &str, arch: phase_core::boot::manifest::Arch) -> String {
    format!("/phase/boot/{channel}/{}", arch.name())
}

/// Why a boot store could not be served.
#[derive(Debug)]
pub enum BootError {
    Store(store::StoreError),
    Floors(floors::FloorError),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::Store(e) => write!(f, "{e}"),
            BootError::Floors(e) => write!(f, "boot store {e}"),
        }
    }
}

impl std::error::Error for BootError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BootError::Store(e) => Some(e),
            BootError::Floors(e) => Some(e),
        }
    }
}

/// A trusted key file that cannot be read or is not a key.
#[derive(Debug)]
pub struct TrustError {
    pub path: std::path::PathBuf,
    pub reason: String,
}

impl std::fmt::Display for TrustError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "trusted key {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for TrustError {}

/// Reads the trusted publisher keys of a directory of `*.pub` files (hex, one per file).
/// A missing directory is no keys; an unreadable or malformed key file is an error.
pub fn read_trust_dir(dir: &std::path::Path) -> Result<Vec<[u8; 32]>, TrustError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(vec![]) };
    let mut keys = vec![];
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("pub") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| TrustError { path: path.clone(), reason: e.to_string() })?;
        let key = phase_core::encoding::hex_decode_array::<32>(text.trim()).map_err(|e| TrustError { path: path.clone(), reason: e.to_string() })?;
        keys.push(key);
    }
    Ok(keys)
}

/// The earliest the time can be on a machine running this build: the build's own time
/// (`PHASE_BUILD_TIME`, unix seconds, which scripts/build-appliance sets from the commit's
/// time, so builds stay reproducible), or 2026-11-07 for builds without it.
pub fn build_time() -> u64 {
    option_env!("PHASE_BUILD_TIME").and_then(|v| v.trim().parse().ok()).unwrap_or(1_794_000_000)
}
