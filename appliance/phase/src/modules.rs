//! Modules by SHA-256: kept in RAM (bounded, least recently used goes first) and, for modules
//! uploaded with `PUT /v1/modules` on a node with a data dir, on disk as `<hex>.wasm` under a
//! byte cap (a full store refuses, it never fills the disk). Bytes read back are re-hashed.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use phase_core::encoding::hex_encode;
use phase_core::{sha256, Digest};

use crate::cache::SizedCache;

/// Default cap on module bytes kept on disk.
pub const DEFAULT_MAX_DISK_BYTES: u64 = 1 << 30;

pub struct ModuleStore {
    memory: SizedCache<Vec<u8>>,
    dir: Option<PathBuf>,
    disk_bytes: AtomicU64,
    max_disk_bytes: u64,
}

impl ModuleStore {
    pub fn new(dir: Option<PathBuf>, max_memory_bytes: usize, max_disk_bytes: u64) -> Result<ModuleStore, String> {
        let mut used = 0;
        if let Some(d) = &dir {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            for entry in fs::read_dir(d).map_err(|e| format!("{}: {e}", d.display()))?.flatten() {
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
    pub fn put(&self, d: Digest, bytes: Vec<u8>) -> Result<bool, String> {
        let fresh = self.get(&d).is_none();
        if let Some(path) = self.path(&d).filter(|p| !p.exists()) {
            let size = bytes.len() as u64;
            let used = self.disk_bytes.fetch_add(size, Relaxed);
            if used + size > self.max_disk_bytes {
                self.disk_bytes.fetch_sub(size, Relaxed);
                return Err(format!(
                    "module store is full: {used} of {} bytes used; this module needs {size}",
                    self.max_disk_bytes
                ));
            }
            // Acknowledged after this returns, so the file and its name must be on disk.
            crate::durable::replace(&path, &bytes).map_err(|e| {
                self.disk_bytes.fetch_sub(size, Relaxed);
                format!("{}: {e}", path.display())
            })?;
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
