//! Uploaded modules, by SHA-256: kept in RAM (bounded, least recently used goes first) and,
//! with a data dir, on disk as `<hex>.wasm`. Bytes read back from disk are re-hashed.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use phase_core::encoding::hex_encode;
use phase_core::{sha256, Digest};

use crate::engine::ModuleCache;

pub struct ModuleStore {
    memory: ModuleCache<Vec<u8>>,
    dir: Option<PathBuf>,
}

impl ModuleStore {
    pub fn new(dir: Option<PathBuf>, max_bytes: usize) -> Result<ModuleStore, String> {
        if let Some(d) = &dir {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        Ok(ModuleStore { memory: ModuleCache::new(1024, max_bytes), dir })
    }

    fn path(&self, d: &Digest) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(format!("{}.wasm", hex_encode(d))))
    }

    /// Stores bytes whose hash is `d`. Returns whether they were new to this node.
    pub fn put(&self, d: Digest, bytes: Vec<u8>) -> Result<bool, String> {
        let fresh = self.get(&d).is_none();
        if let Some(path) = self.path(&d).filter(|p| !p.exists()) {
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            let write = || -> std::io::Result<()> {
                let mut f = fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                fs::rename(&tmp, &path)
            };
            write().map_err(|e| {
                let _ = fs::remove_file(&tmp);
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
}
