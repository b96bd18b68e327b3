//! The artifact provider: serves a boot store over the node's HTTP server (docs/api.md).
//! `GET|HEAD /v1/boot/<channel>/<arch>/<file>` where `<file>` is `manifest.json` or one of the
//! two artifact names the manifest lists, and nothing else: paths are looked up, never joined,
//! so nothing outside the store is reachable. Arch aliases: amd64 = x86_64, arm64 = aarch64.
//! Byte ranges (one range per request), ETag = the artifact's SHA-256, `If-None-Match`, and a
//! cap on concurrent downloads (503 + Retry-After beyond it). Bodies are read from the file as
//! the front writes them, under its write timeouts: a client that stops reading loses its
//! download slot.

use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use phase_core::encoding::hex_encode;
use phase_core::net::http::{parse_range, Method, Range, RequestHead};
use phase_core::boot::manifest::{Arch, MANIFEST_FILE};
use phase_core::job::error::ErrorCode;

use super::store::BootStore;
use crate::http::{Body, Response};

pub const DEFAULT_MAX_DOWNLOADS: usize = 4;

/// Deliberate misbehaviour, for the tests of the fetching side (docs/cmdline.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderFault {
    None,
    /// Serve artifacts with one byte flipped in the middle (the store itself is intact).
    Tamper,
    /// Close the connection after half of each artifact body, on every full-body request.
    DropHalfway,
}

pub struct Provider {
    /// What it serves: a release learnt later is installed beside (update.rs).
    store: std::sync::RwLock<BootStore>,
    max_downloads: usize,
    active: Arc<AtomicUsize>,
    pub served_bytes: Arc<AtomicU64>,
    pub fault: ProviderFault,
    /// The last machines that downloaded a whole kernel from here (who booted from this node).
    served_to: Arc<std::sync::Mutex<std::collections::VecDeque<Served>>>,
}

/// A kernel download this provider finished: to whom, which release, when (unix seconds).
#[derive(Clone)]
struct Served {
    client: std::net::IpAddr,
    release: String,
    at: u64,
}

/// Downloads remembered in `served_to`.
const SERVED_KEPT: usize = 32;

/// A download slot, given back when the response is done (or failed).
pub struct Slot(Arc<AtomicUsize>);
impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Reads `inner`, flipping the byte at `flip` (absolute file offset) and/or ending early.
struct Faulty<R> {
    inner: R,
    pos: u64,
    flip: Option<u64>,
    stop_at: Option<u64>,
}

impl<R: Read> Read for Faulty<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut want = buf.len();
        if let Some(stop) = self.stop_at {
            if self.pos >= stop {
                return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "fault: drop-halfway"));
            }
            want = want.min((stop - self.pos) as usize);
        }
        let n = self.inner.read(&mut buf[..want])?;
        if let Some(f) = self.flip {
            if f >= self.pos && f < self.pos + n as u64 {
                buf[(f - self.pos) as usize] ^= 0x01;
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn not_found(message: &str) -> Response {
    Response::error(404, ErrorCode::NotFound, message)
}

impl Provider {
    /// Serves the store in `dir`: every artifact re-hashed; with `trust` keys, every signature
    /// checked; with a data dir, held to the floors recorded there (a release older than one
    /// served before is refused).
    pub fn open(dir: &std::path::Path, trust: &[[u8; 32]], data_dir: Option<&crate::data_dir::DataDir>, max_downloads: usize, fault: ProviderFault) -> Result<Provider, super::BootError> {
        let store = BootStore::open(dir, (!trust.is_empty()).then_some(trust)).map_err(super::BootError::Store)?;
        if let Some(data) = data_dir {
            let mut floors = super::floors::FloorFile::open(&data.floors()).map_err(super::BootError::Floors)?;
            floors.hold(&store).map_err(super::BootError::Floors)?;
        }
        for e in &store.entries {
            log!("boot: serving {}/{} version {} signed by {} (artifacts verified)", e.channel(), e.arch().name(), e.manifest.body.version, e.manifest.key_id());
        }
        Ok(Provider::new(store, max_downloads, fault))
    }

    pub fn new(store: BootStore, max_downloads: usize, fault: ProviderFault) -> Provider {
        Provider {
            store: std::sync::RwLock::new(store),
            max_downloads: max_downloads.max(1),
            active: Arc::new(AtomicUsize::new(0)),
            served_bytes: Arc::new(AtomicU64::new(0)),
            fault,
            served_to: Arc::default(),
        }
    }

    /// One of the `--max-downloads` slots, held by a response until it is sent (or fails), or
    /// the 503 + Retry-After to answer instead. Every large download takes one: artifacts, and
    /// the PXE initrd and programs.
    pub fn download_slot(&self) -> Result<Slot, Response> {
        if self.active.fetch_add(1, Relaxed) >= self.max_downloads {
            self.active.fetch_sub(1, Relaxed);
            let message = format!("{} downloads in progress, the limit", self.max_downloads);
            return Err(Response::error(503, ErrorCode::Busy, &message));
        }
        Ok(Slot(self.active.clone()))
    }

    /// The releases it serves now.
    pub fn entries(&self) -> Vec<super::store::Entry> {
        self.store.read().unwrap_or_else(|e| e.into_inner()).entries.clone()
    }

    /// The release of `channel`/`arch` it serves now.
    pub fn find(&self, channel: &str, arch: Arch) -> Option<super::store::Entry> {
        self.store.read().unwrap_or_else(|e| e.into_inner()).find(channel, arch).cloned()
    }

    /// Serves `release` from now on instead of the one of its channel and arch (store::install;
    /// the caller verified it).
    pub fn install(&self, release: &super::release::Release) -> Result<super::store::Entry, super::store::StoreError> {
        let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
        let entry = super::store::install(&store.root, release)?;
        store.entries.retain(|e| !(e.channel() == entry.channel() && e.arch() == entry.arch()));
        store.entries.push(entry.clone());
        log!("boot: serving {}/{} version {} signed by {} (artifacts verified)", entry.channel(), entry.arch().name(), entry.manifest.body.version, entry.manifest.key_id());
        Ok(entry)
    }

    /// Serves the release kept beside `channel`/`arch` again instead of the one served
    /// (store::restore_previous): the served one failed on a node.
    pub fn restore_previous(&self, channel: &str, arch: Arch, trusted: &[[u8; 32]]) -> Result<super::store::Entry, super::store::StoreError> {
        let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
        let entry = super::store::restore_previous(&store.root, channel, arch, trusted)?;
        store.entries.retain(|e| !(e.channel() == channel && e.arch() == arch));
        store.entries.push(entry.clone());
        log!("boot: serving {}/{} version {} again", channel, arch.name(), entry.manifest.body.version);
        Ok(entry)
    }

    /// Who booted from here lately: `[{"client","release","at"}]`, newest last.
    pub fn served_json(&self) -> String {
        let list = self.served_to.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let items: Vec<String> = list.iter().map(|s| format!("{{\"client\":\"{}\",\"release\":\"{}\",\"at\":{}}}", s.client, s.release, s.at)).collect();
        format!("[{}]", items.join(","))
    }

    /// `GET /v1/boot`: what this provider serves.
    pub fn index_json(&self) -> String {
        let items: Vec<String> = self
            .entries()
            .iter()
            .map(|e| {
                format!(
                    "{{\"channel\":\"{}\",\"arch\":\"{}\",\"version\":{},\"publisher\":\"{}\",\"expires_at\":{},\"manifest\":\"/v1/boot/{}/{}/{MANIFEST_FILE}\"}}",
                    e.channel(),
                    e.arch().name(),
                    e.manifest.body.version,
                    e.manifest.key_id(),
                    e.manifest.body.expires_at,
                    e.channel(),
                    e.arch().name()
                )
            })
            .collect();
        format!("{{\"entries\":[{}]}}", items.join(","))
    }

    /// Answers `/v1/boot/<channel>/<arch>/<file>` (`rest` is the part after `/v1/boot/`).
    pub fn serve(&self, head: &RequestHead, rest: &str, client: std::net::IpAddr) -> Response {
        if !matches!(head.method, Method::Get | Method::Head) {
            return Response::error(405, ErrorCode::MethodNotAllowed, &format!("{} is not allowed on boot artifacts (GET, HEAD)", head.method_name));
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let [channel, arch, file] = parts[..] else {
            return not_found("boot paths are /v1/boot/<channel>/<arch>/<file>");
        };
        let Some(arch) = Arch::parse(arch) else {
            return not_found(&format!("unknown arch {arch:?} (x86_64, amd64, aarch64, arm64)"));
        };
        let Some(entry) = self.find(channel, arch) else {
            return not_found(&format!("this provider has no {channel}/{} release", arch.name()));
        };
        if file == MANIFEST_FILE {
            return Response::json(200, entry.manifest_json.clone()).header("ETag", entry.manifest_etag.clone()).header("Cache-Control", "no-cache");
        }
        let Some((path, size, sha)) = entry.artifact(file) else {
            return not_found(&format!("{file:?} is not an artifact of {channel}/{}", arch.name()));
        };
        let etag = format!("\"{}\"", hex_encode(&sha));
        if head.header("If-None-Match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
            return Response::empty(304).header("ETag", etag);
        }
        let range = match head.header("Range").map(|v| parse_range(v, size)) {
            None | Some(Range::Whole) => None,
            Some(Range::Part { start, end }) => Some((start, end)),
            Some(Range::Unsatisfiable) => return Response::empty(416).header("Content-Range", format!("bytes */{size}")),
        };
        let slot = match self.download_slot() {
            Ok(slot) => slot,
            Err(busy) => return busy,
        };
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => return Response::error(500, ErrorCode::Internal, &format!("{}: {e}", path.display())),
        };
        let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
        let len = if size == 0 { 0 } else { end - start + 1 };
        if start > 0 {
            if let Err(e) = f.seek(SeekFrom::Start(start)) {
                return Response::error(500, ErrorCode::Internal, &format!("{}: seek: {e}", path.display()));
            }
        }
        let reader: Box<dyn Read + Send> = match self.fault {
            ProviderFault::Tamper | ProviderFault::DropHalfway => Box::new(Faulty {
                inner: f.take(len),
                pos: start,
                flip: (self.fault == ProviderFault::Tamper).then_some(size / 2),
                stop_at: (self.fault == ProviderFault::DropHalfway && range.is_none()).then_some(size / 2),
            }),
            ProviderFault::None => Box::new(f.take(len)),
        };
        let mut resp = Response::new(if range.is_some() { 206 } else { 200 }, "application/octet-stream", Body::Reader { reader, len })
            .header("ETag", etag)
            .header("Accept-Ranges", "bytes")
            .hold(slot);
        if range.is_some() {
            resp = resp.header("Content-Range", format!("bytes {start}-{end}/{size}"));
        }
        if head.method == Method::Get {
            let served = self.served_bytes.clone();
            // A kernel sent to its last byte: a machine booting (or updating to) this release.
            let booted = (file == entry.manifest.body.kernel.name && end + 1 == size).then(|| {
                let release = format!("{}/{} version {}", entry.channel(), entry.arch().name(), entry.manifest.body.version);
                (self.served_to.clone(), Served { client, release, at: crate::clock::unix_now() })
            });
            resp = resp.on_sent(move || {
                served.fetch_add(len, Relaxed);
                if let Some((list, s)) = booted {
                    let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
                    if list.len() >= SERVED_KEPT {
                        list.pop_front();
                    }
                    list.push_back(s);
                }
            });
        }
        resp
    }
}
