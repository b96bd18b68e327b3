//! The artifact provider: serves a boot store over the node's HTTP server (docs/api.md).
//! `GET|HEAD /v1/boot/<channel>/<arch>/<file>` where `<file>` is `manifest.json` or one of the
//! two artifact names the manifest lists, and nothing else: paths are looked up, never joined,
//! so nothing outside the store is reachable. Arch aliases: amd64 = x86_64, arm64 = aarch64.
//! Byte ranges (one range per request), ETag = the artifact's SHA-256, `If-None-Match`, and a
//! cap on concurrent downloads (503 + Retry-After beyond it) so downloads cannot take every
//! HTTP worker from the job API.

use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use tiny_http::{Method, Request, Response};

use phase_core::encoding::hex_encode;
use phase_core::manifest::{Arch, MANIFEST_FILE};

use super::store::BootStore;
use crate::api::header;

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
    pub store: BootStore,
    max_downloads: usize,
    active: AtomicUsize,
    pub served_bytes: AtomicU64,
    fault: ProviderFault,
}

/// Releases a download slot when the response is done (or failed).
struct Slot<'a>(&'a AtomicUsize);
impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A single `bytes=` range resolved against `size`: Ok(None) = whole body; Err = 416.
fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None); // several ranges: RFC 9110 lets a server send the whole body
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (s, "") => (s.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (s, e) => (s.parse().map_err(|_| ())?, e.parse::<u64>().map_err(|_| ())?.min(size.saturating_sub(1))),
    };
    if size == 0 || start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
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

impl Provider {
    pub fn new(store: BootStore, max_downloads: usize, fault: ProviderFault) -> Provider {
        Provider { store, max_downloads: max_downloads.max(1), active: AtomicUsize::new(0), served_bytes: AtomicU64::new(0), fault }
    }

    /// `GET /v1/boot`: what this provider serves.
    pub fn index_json(&self) -> String {
        let items: Vec<String> = self
            .store
            .entries
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

    /// Serves `/v1/boot/<channel>/<arch>/<file>` (`rest` is the part after `/v1/boot/`).
    pub fn serve(&self, req: Request, rest: &str) {
        if !matches!(req.method(), Method::Get | Method::Head) {
            let m = req.method().to_string();
            return crate::api::error(req, 405, "method_not_allowed", &format!("{m} is not allowed on boot artifacts (GET, HEAD)"), &[]);
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let [channel, arch, file] = parts[..] else {
            return crate::api::error(req, 404, "not_found", "boot paths are /v1/boot/<channel>/<arch>/<file>", &[]);
        };
        let Some(arch) = Arch::parse(arch) else {
            return crate::api::error(req, 404, "not_found", &format!("unknown arch {arch:?} (x86_64, amd64, aarch64, arm64)"), &[]);
        };
        let Some(entry) = self.store.find(channel, arch) else {
            return crate::api::error(req, 404, "not_found", &format!("this provider has no {channel}/{} release", arch.name()), &[]);
        };
        if file == MANIFEST_FILE {
            let extra = [("ETag", entry.manifest_etag.clone()), ("Cache-Control", "no-cache".to_string())];
            return crate::api::reply(req, 200, "application/json", entry.manifest_json.clone(), &extra);
        }
        let Some((path, size, sha)) = entry.artifact(file) else {
            return crate::api::error(req, 404, "not_found", &format!("{file:?} is not an artifact of {channel}/{}", arch.name()), &[]);
        };
        let etag = format!("\"{}\"", hex_encode(&sha));
        let get = |name: &'static str| req.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string());
        if get("If-None-Match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
            let _ = req.respond(Response::empty(304).with_header(header("ETag", &etag)));
            return;
        }
        let range = match get("Range").map(|v| parse_range(&v, size)) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(r))) => Some(r),
            Some(Err(())) => {
                let resp = Response::empty(416).with_header(header("Content-Range", &format!("bytes */{size}")));
                let _ = req.respond(resp);
                return;
            }
        };
        if self.active.fetch_add(1, Relaxed) >= self.max_downloads {
            self.active.fetch_sub(1, Relaxed);
            let message = format!("{} downloads in progress, the limit", self.max_downloads);
            return crate::api::error(req, 503, "busy", &message, &[("Retry-After", "1".to_string())]);
        }
        let _slot = Slot(&self.active);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => return crate::api::error(req, 500, "internal", &format!("{}: {e}", path.display()), &[]),
        };
        let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
        let len = if size == 0 { 0 } else { end - start + 1 };
        if start > 0 {
            if let Err(e) = f.seek(SeekFrom::Start(start)) {
                return crate::api::error(req, 500, "internal", &format!("{}: seek: {e}", path.display()), &[]);
            }
        }
        let mut headers = vec![
            ("Content-Type", "application/octet-stream".to_string()),
            ("ETag", etag),
            ("Accept-Ranges", "bytes".to_string()),
        ];
        let status: u16 = if range.is_some() {
            headers.push(("Content-Range", format!("bytes {start}-{end}/{size}")));
            206
        } else {
            200
        };
        let is_get = *req.method() == Method::Get;
        if self.fault != ProviderFault::None {
            let reader = Faulty {
                inner: std::io::BufReader::with_capacity(256 << 10, f.take(len)),
                pos: start,
                flip: (self.fault == ProviderFault::Tamper).then_some(size / 2),
                stop_at: (self.fault == ProviderFault::DropHalfway && range.is_none()).then_some(size / 2),
            };
            let headers = headers.iter().map(|(k, v)| header(k, v)).collect();
            let resp = Response::new(status.into(), headers, reader, Some(len as usize), None).with_chunked_threshold(usize::MAX);
            let _ = req.respond(resp);
            return;
        }
        if stream_file(req, status, &headers, f, len, is_get).is_ok() && is_get {
            self.served_bytes.fetch_add(len, Relaxed);
        }
    }
}

/// Writes a whole response (head, then `len` bytes of `file` unless HEAD) on the raw
/// connection in 1 MiB writes. tiny_http's own path copies through 8 KiB buffers, which
/// measured ~0.7x nginx on a 16 MiB artifact (scripts/bench-netboot).
fn stream_file(req: Request, status: u16, headers: &[(&str, String)], file: std::fs::File, len: u64, body: bool) -> std::io::Result<()> {
    use std::io::Write;
    let reason = if status == 206 { "Partial Content" } else { "OK" };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nServer: phase\r\nContent-Length: {len}\r\n");
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    let mut w = req.into_writer();
    w.write_all(head.as_bytes())?;
    if body {
        let mut file = file.take(len);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])?;
        }
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=990-5000", 1000), Ok(Some((990, 999))));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ok(None));
        assert_eq!(parse_range("items=0-1", 1000), Ok(None));
        assert_eq!(parse_range("bytes=1000-", 1000), Err(()));
        assert_eq!(parse_range("bytes=5-1", 1000), Err(()));
        assert_eq!(parse_range("bytes=x-1", 1000), Err(()));
        assert_eq!(parse_range("bytes=-0", 1000), Err(()));
    }
}
