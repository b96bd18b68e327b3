//! Modules by SHA-256: kept in RAM (bounded, least recently used goes first) and, for modules
//! uploaded with `PUT /v1/modules` on a node with a data dir, on disk as `<hex>.wasm` under a
//! byte cap (a full store refuses, it never fills the disk). Bytes read back are re-hashed.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use phase_core::encoding::hex_encode;
use phase_core::{sha256, Digest};

use crate::cache::SizedCache;

/// Default cap on module bytes kept on disk.
pub const DEFAULT_MAX_DISK_BYTES: u64 = 1 << 30;

/// Why a module could not be stored.
#[derive(Debug)]
pub enum StoreError {
    /// The store's directory or a module file (path, what the OS said).
    Io { path: PathBuf, error: std::io::Error },
    /// Storing would pass the disk cap.
    Full { used: u64, max: u64, need: u64 },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            StoreError::Full { used, max, need } => write!(f, "module store is full: {used} of {max} bytes used; this module needs {need}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::Full { .. } => None,
        }
    }
}

pub struct ModuleStore {
    memory: SizedCache<Vec<u8>>,
    dir: Option<PathBuf>,
    disk_bytes: AtomicU64,
    max_disk_bytes: u64,
}

impl ModuleStore {
    pub fn new(dir: Option<PathBuf>, max_memory_bytes: usize, max_disk_bytes: u64) -> Result<ModuleStore, StoreError> {
        let mut used = 0;
        if let Some(d) = &dir {
            let io = |error| StoreError::Io { path: d.clone(), error };
            fs::create_dir_all(d).map_err(io)?;
            for entry in fs::read_dir(d).map_err(io)?.flatten() {
                used += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        Ok(ModuleStore {
            memory: SizedCache::new(1024, max_memory_bytes),
            dir,
            disk_bytes: AtomicU64::new(used),
            max_disk_bytes,
        })
    }

    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Relaxed)
    }

    fn path(&self, d: &Digest) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(format!("{}.wasm", hex_encode(d))))
    }

    /// Keeps bytes whose hash is `d` in RAM only (modules sent inline with a job).
    pub fn remember(&self, d: Digest, bytes: Vec<u8>) {
        let size = bytes.len();
        self.memory.insert(d, Arc::new(bytes), size);
    }

    /// Stores bytes whose hash is `d`, on disk too when there is a data dir. Returns whether
    /// they were new to this node.
    pub fn put(&self, d: Digest, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let fresh = self.get(&d).is_none();
        if let Some(path) = self.path(&d).filter(|p| !p.exists()) {
            let size = bytes.len() as u64;
            let used = self.disk_bytes.fetch_add(size, Relaxed);
            if used + size > self.max_disk_bytes {
                self.disk_bytes.fetch_sub(size, Relaxed);
                return Err(StoreError::Full { used, max: self.max_disk_bytes, need: size });
            }
            // Acknowledged after this returns, so the file and its name must be on disk.
            if let Err(error) = crate::durable::replace(&path, &bytes) {
                self.disk_bytes.fetch_sub(size, Relaxed);
                return Err(StoreError::Io { path, error });
            }
        }
        let size = bytes.len();
        self.memory.insert(d, Arc::new(bytes), size);
        Ok(fresh)
    }

    pub fn get(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        if let Some(b) = self.memory.get(d) {
            return Some(b);
        }
        let bytes = fs::read(self.path(d)?).ok()?;
        // A file changed on disk is not the module that was uploaded.
        (sha256(&bytes) == *d).then(|| Arc::new(bytes))
    }

    pub fn len(&self) -> usize {
        self.memory.len()
    }

    /// Module bytes held in RAM.
    pub fn memory_bytes(&self) -> usize {
        self.memory.bytes()
    }
}
