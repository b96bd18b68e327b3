//! Modules and job files by SHA-256: kept in RAM (bounded, least recently used goes first)
//! and, for what is uploaded (`PUT /v1/modules`, `PUT /v1/blobs`) to a node with a data dir,
//! on disk as `<hex>.wasm` or `<hex>.blob` under one byte cap (a full store refuses, it never
//! fills the disk). An upload streams to a temporary file as it arrives (`Upload`), hashed on
//! the way, so it holds no memory while it comes and a blob's size is bounded by the disk cap.
//! Bytes read back are re-hashed.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use phase_core::encoding::hex_encode;
use phase_core::{sha256, Digest};
use sha2::{Digest as _, Sha256};

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
    /// An upload whose bytes do not hash to the name it was sent under.
    NotNamed { named: Digest, got: Digest },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            StoreError::Full { used, max, need } => write!(f, "module store is full: {used} of {max} bytes used; this module needs {need}"),
            StoreError::NotNamed { named, got } => write!(f, "the bytes sent hash to {}, not to the {} they were sent as", hex_encode(got), hex_encode(named)),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::Full { .. } | StoreError::NotNamed { .. } => None,
        }
    }
}

pub struct ModuleStore {
    memory: SizedCache<Vec<u8>>,
    dir: Option<PathBuf>,
    /// Bytes on disk and taken by uploads under way (shared with them: `Upload`).
    disk_bytes: Arc<AtomicU64>,
    max_disk_bytes: u64,
    /// Uploads started: their temporary files' names.
    uploads: AtomicU64,
}

impl ModuleStore {
    pub fn new(dir: Option<PathBuf>, max_memory_bytes: usize, max_disk_bytes: u64) -> Result<ModuleStore, StoreError> {
        let mut used = 0;
        if let Some(d) = &dir {
            let io = |error| StoreError::Io { path: d.clone(), error };
            fs::create_dir_all(d).map_err(io)?;
            for entry in fs::read_dir(d).map_err(io)?.flatten() {
                // An upload cut by a crash or a restart: nobody holds it.
                if entry.file_name().to_string_lossy().starts_with(UPLOAD_PREFIX) {
                    let _ = fs::remove_file(entry.path());
                    continue;
                }
                used += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        Ok(ModuleStore {
            memory: SizedCache::new(1024, max_memory_bytes),
            dir,
            disk_bytes: Arc::new(AtomicU64::new(used)),
            max_disk_bytes,
            uploads: AtomicU64::new(0),
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
        let wasm = self.path(d)?;
        let blob = wasm.with_extension("blob");
        let (path, bytes) = match fs::read(&wasm) {
            Ok(b) => (wasm, b),
            Err(_) => (blob.clone(), fs::read(&blob).ok()?),
        };
        if sha256(&bytes) != *d {
            // A file changed on disk is not what was uploaded: it goes, so that it can be
            // uploaded again.
            if fs::remove_file(&path).is_ok() {
                self.disk_bytes.fetch_sub(bytes.len() as u64, Relaxed);
            }
            return None;
        }
        Some(Arc::new(bytes))
    }

    /// The size of what this node keeps under `d`, without reading it (it is re-hashed when
    /// read: `get`): on disk where there is a data dir (what is only in RAM there is not kept:
    /// a restart loses it), else in RAM.
    pub fn kept(&self, d: &Digest) -> Option<u64> {
        let Some(wasm) = self.path(d) else { return self.memory.get(d).map(|b| b.len() as u64) };
        fs::metadata(&wasm).or_else(|_| fs::metadata(wasm.with_extension("blob"))).ok().map(|m| m.len())
    }

    /// Whether a data dir keeps uploads (else blobs are held in RAM only, like files sent
    /// inline).
    pub fn on_disk(&self) -> bool {
        self.dir.is_some()
    }

    /// Starts an upload of `len` bytes into a temporary file, if it fits under the disk
    /// cap now. Its bytes take their place under the cap as they are written (given back if
    /// the upload fails or turns out known): an upload that trickles holds only what came.
    /// None without a data dir.
    pub fn upload(&self, len: u64) -> Option<Result<Upload, StoreError>> {
        let dir = self.dir.as_ref()?;
        let (used, max) = (self.disk_bytes.load(Relaxed), self.max_disk_bytes);
        if used.saturating_add(len) > max {
            return Some(Err(StoreError::Full { used, max, need: len }));
        }
        // A name nobody holds: created new, never opened over another upload's file.
        let (file, path) = loop {
            let path = dir.join(format!("{UPLOAD_PREFIX}{}-{}", std::process::id(), self.uploads.fetch_add(1, Relaxed)));
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (file, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Some(Err(StoreError::Io { path, error })),
            }
        };
        Some(Ok(Upload { file, path, hash: Sha256::new(), written: 0, len, disk: self.disk_bytes.clone(), max, kept: false }))
    }

    /// Keeps a whole upload as `<hex>.blob` if its bytes hash to `named`: its size, and
    /// whether it was new to this node (a known one is dropped).
    pub fn keep(&self, upload: Upload, named: &Digest) -> Result<(u64, bool), StoreError> {
        let size = upload.written;
        Ok((size, self.settle(upload, named, "blob")?))
    }

    /// Keeps a whole module upload whose bytes (`bytes`, read back and compiled) hash to `d`,
    /// as `<hex>.wasm`, and in RAM. Whether it was new to this node.
    pub fn keep_module(&self, upload: Upload, d: Digest, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let fresh = self.memory.get(&d).is_none() && self.kept(&d).is_none();
        self.settle(upload, &d, "wasm")?;
        let size = bytes.len();
        self.memory.insert(d, Arc::new(bytes), size);
        Ok(fresh)
    }

    /// Moves a whole upload whose bytes hash to `named` to `<hex>.<ext>`, durably (fsync,
    /// rename, fsync of the directory), unless the store has those bytes on disk already (then
    /// the upload is dropped). Whether it was written.
    fn settle(&self, mut upload: Upload, named: &Digest, ext: &str) -> Result<bool, StoreError> {
        let got: Digest = std::mem::take(&mut upload.hash).finalize().into();
        if got != *named {
            return Err(StoreError::NotNamed { named: *named, got });
        }
        let Some(wasm) = self.path(named) else { return Ok(false) };
        if wasm.exists() || wasm.with_extension("blob").exists() {
            return Ok(false);
        }
        let target = wasm.with_extension(ext);
        let io = |error| StoreError::Io { path: target.clone(), error };
        upload.file.sync_all().map_err(io)?;
        fs::rename(&upload.path, &target).map_err(io)?;
        crate::durable::sync_dir(&target).map_err(io)?;
        // Its bytes keep their place under the cap.
        upload.kept = true;
        Ok(true)
    }

    pub fn len(&self) -> usize {
        self.memory.len()
    }

    /// Module bytes held in RAM.
    pub fn memory_bytes(&self) -> usize {
        self.memory.bytes()
    }
}

/// The temporary files of uploads under way (removed at start: a cut upload is nobody's).
const UPLOAD_PREFIX: &str = ".upload-";

/// A blob arriving: written to a temporary file and hashed as its bytes come, at most the
/// length it announced. Dropped before it is kept, it removes its file and gives its place
/// under the disk cap back.
pub struct Upload {
    file: fs::File,
    path: PathBuf,
    hash: Sha256,
    written: u64,
    len: u64,
    /// The store's bytes under its cap, `max`: each write takes its place there first.
    disk: Arc<AtomicU64>,
    max: u64,
    kept: bool,
}

impl Upload {
    /// The bytes announced.
    pub fn announced(&self) -> u64 {
        self.len
    }

    /// What was written, read back from its file (a module, to be compiled).
    pub fn read_back(&self) -> Result<Vec<u8>, StoreError> {
        fs::read(&self.path).map_err(|error| StoreError::Io { path: self.path.clone(), error })
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let n = bytes.len() as u64;
        if self.written + n > self.len {
            return Err(std::io::Error::other(format!("more than the {} bytes announced", self.len)));
        }
        let used = self.disk.fetch_add(n, Relaxed);
        if used.saturating_add(n) > self.max {
            self.disk.fetch_sub(n, Relaxed);
            return Err(std::io::Error::other(StoreError::Full { used, max: self.max, need: self.len - self.written }));
        }
        self.written += n;
        self.file.write_all(bytes)?;
        self.hash.update(bytes);
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
            self.disk.fetch_sub(self.written, Relaxed);
        }
    }
}
