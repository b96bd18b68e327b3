//! The fetching side: a small HTTP/1.1 client (GET with `Range`, `Connection: close`, bounded
//! headers and bodies, timeouts) and artifact downloads into RAM with streaming SHA-256 that
//! resume by byte range after a broken connection. Bodies are never read past the size the
//! signed manifest states.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use phase_core::encoding::hex_encode;
use phase_core::manifest::Artifact;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A provider silent this long mid-body is treated as a broken connection.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADER_BYTES: usize = 16 << 10;
/// Resumes per artifact before this provider is given up.
pub const MAX_RESUMES: u32 = 5;
pub const MAX_MANIFEST_BYTES: u64 = 64 << 10;
/// A provider must average at least this over a whole artifact (after a grace period), so a
/// peer trickling a byte every few seconds cannot hold a netboot for ever.
const MIN_RATE: u64 = 256 << 10;
const RATE_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Url(String),
    Connect { url: String, reason: String },
    Io { url: String, reason: String },
    Http { url: String, status: u16 },
    Protocol { url: String, reason: String },
    TooLarge { url: String, max: u64 },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Url(u) => write!(f, "bad provider URL {u:?}: http://HOST:PORT[/PATH]"),
            FetchError::Connect { url, reason } => write!(f, "{url}: cannot connect: {reason}"),
            FetchError::Io { url, reason } => write!(f, "{url}: connection broke: {reason}"),
            FetchError::Http { url, status } => write!(f, "{url}: HTTP {status}"),
            FetchError::Protocol { url, reason } => write!(f, "{url}: {reason}"),
            FetchError::TooLarge { url, max } => write!(f, "{url}: body larger than {max} bytes"),
        }
    }
}

/// `http://host[:port]/path` split up (no TLS: artifacts are verified by signature and hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, FetchError> {
        let bad = || FetchError::Url(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (authority, 80),
        };
        if host.is_empty() || port == 0 || path.bytes().any(|b| b <= b' ' || b >= 0x7f) || host.bytes().any(|b| b <= b' ' || b == b'@') {
            return Err(bad());
        }
        Ok(Url { host: host.to_string(), port, path: path.to_string() })
    }

    /// This URL with `path` appended to its own (joined with exactly one '/').
    pub fn join(&self, path: &str) -> Url {
        let base = self.path.trim_end_matches('/');
        Url { path: format!("{base}/{}", path.trim_start_matches('/')), ..self.clone() }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// An answer whose headers were read; the body is read from `stream` after `pending`.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pending: Vec<u8>,
    stream: TcpStream,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.pending.is_empty() {
            let n = self.pending.len().min(buf.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        self.stream.read(buf)
    }
}

/// GET `url`, optionally from byte `from` on. Returns once the headers are in.
pub fn get(url: &Url, from: u64) -> Result<Response, FetchError> {
    let u = url.to_string();
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| FetchError::Connect { url: u.clone(), reason: e.to_string() })?
        .collect();
    let addr = addrs.first().ok_or_else(|| FetchError::Connect { url: u.clone(), reason: "no address".into() })?;
    let mut stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).map_err(|e| FetchError::Connect { url: u.clone(), reason: e.to_string() })?;
    let io = |e: std::io::Error| FetchError::Io { url: u.clone(), reason: e.to_string() };
    stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
    let _ = stream.set_nodelay(true);
    let range = if from > 0 { format!("Range: bytes={from}-\r\n") } else { String::new() };
    let request = format!("GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: phase/{}\r\n{range}Connection: close\r\n\r\n", url.path, url.host, url.port, env!("CARGO_PKG_VERSION"));
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Err(FetchError::Protocol { url: u, reason: "connection closed before the response headers".into() });
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if head.len() > MAX_HEADER_BYTES {
            return Err(FetchError::Protocol { url: u, reason: format!("response headers over {MAX_HEADER_BYTES} bytes") });
        }
    };
    let pending = head.split_off(end + 4);
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| FetchError::Protocol { url: u.clone(), reason: format!("not an HTTP status line: {:?}", status_line.chars().take(60).collect::<String>()) })?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    // Bodies are read as raw bytes up to Content-Length or the end of the connection; a
    // chunked body would be read with its framing and fail later for a misleading reason.
    if let Some((_, te)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding")) {
        if !te.eq_ignore_ascii_case("identity") {
            return Err(FetchError::Protocol { url: u, reason: format!("Transfer-Encoding {te:?} is not supported (send Content-Length)") });
        }
    }
    Ok(Response { status, headers, pending, stream })
}

/// GET a small document (a manifest, an index) of at most `max` bytes.
pub fn get_small(url: &Url, max: u64) -> Result<Vec<u8>, FetchError> {
    let u = url.to_string();
    let resp = get(url, 0)?;
    if resp.status != 200 {
        return Err(FetchError::Http { url: u, status: resp.status });
    }
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(FetchError::TooLarge { url: u, max });
    }
    let mut body = Vec::new();
    resp.take(max + 1).read_to_end(&mut body).map_err(|e| FetchError::Io { url: u.clone(), reason: e.to_string() })?;
    if body.len() as u64 > max {
        return Err(FetchError::TooLarge { url: u, max });
    }
    Ok(body)
}

/// Why a download did not produce the signed artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadError {
    Fetch(FetchError),
    /// The bytes arrived but are not the signed ones.
    Mismatch { what: String, expected: String, actual: String },
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadError::Fetch(e) => e.fmt(f),
            DownloadError::Mismatch { what, expected, actual } => write!(f, "{what}: expected {expected}, got {actual}"),
        }
    }
}

/// Progress callback: (bytes so far, total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Downloads `artifact` from `url` into RAM, hashing as it streams, resuming by byte range
/// after a broken connection (up to MAX_RESUMES times), never reading past the signed size,
/// and checking size and SHA-256 at the end. The provider's ETag, when sent, must be the
/// signed hash (so a resumed body cannot splice two different files).
pub fn download(url: &Url, artifact: &Artifact, progress: Progress) -> Result<Vec<u8>, DownloadError> {
    let u = url.to_string();
    let size = artifact.size;
    let want_etag = format!("\"{}\"", hex_encode(&artifact.sha256));
    let mut out: Vec<u8> = Vec::new();
    out.try_reserve_exact(size as usize).map_err(|_| {
        DownloadError::Fetch(FetchError::Protocol { url: u.clone(), reason: format!("cannot allocate {size} bytes for the artifact") })
    })?;
    let mut hasher = sha2::Sha256::new();
    let mut resumes = 0u32;
    let mut buf = vec![0u8; 64 << 10];
    let mut last_report = Instant::now();
    let started = Instant::now();
    let deadline = started + RATE_GRACE + Duration::from_secs(size / MIN_RATE);
    let mismatch = |what: &str, expected: String, actual: String| DownloadError::Mismatch { what: format!("{what} of {u}"), expected, actual };
    while (out.len() as u64) < size {
        let have = out.len() as u64;
        let attempt = (|| -> Result<(), FetchError> {
            let resp = get(url, have)?;
            let expected_status = if have > 0 { 206 } else { 200 };
            if resp.status != expected_status {
                return Err(FetchError::Http { url: u.clone(), status: resp.status });
            }
            if let Some(etag) = resp.header("etag") {
                if etag != want_etag {
                    return Err(FetchError::Protocol { url: u.clone(), reason: format!("ETag {etag} is not the signed SHA-256") });
                }
            }
            if have > 0 {
                let cr = resp.header("content-range").unwrap_or_default().to_string();
                if !cr.starts_with(&format!("bytes {have}-")) {
                    return Err(FetchError::Protocol { url: u.clone(), reason: format!("asked for bytes {have}- and got Content-Range {cr:?}") });
                }
            }
            let remaining = size - have;
            if let Some(n) = resp.content_length() {
                if n != remaining {
                    return Err(FetchError::Protocol { url: u.clone(), reason: format!("Content-Length {n}, the signed size leaves {remaining}") });
                }
            }
            let mut body = resp.take(remaining);
            loop {
                let n = body.read(&mut buf).map_err(|e| FetchError::Io { url: u.clone(), reason: e.to_string() })?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.extend_from_slice(&buf[..n]);
                if Instant::now() > deadline {
                    let why = format!("too slow: {} of {size} bytes after {}s (needs {} KiB/s on average)", out.len(), started.elapsed().as_secs(), MIN_RATE >> 10);
                    return Err(FetchError::Protocol { url: u.clone(), reason: why });
                }
                if last_report.elapsed() >= Duration::from_secs(1) {
                    last_report = Instant::now();
                    progress(out.len() as u64, size);
                }
            }
            if (out.len() as u64) < size {
                return Err(FetchError::Io { url: u.clone(), reason: format!("body ended at byte {} of {size}", out.len()) });
            }
            Ok(())
        })();
        match attempt {
            Ok(()) => {}
            // Only a broken connection is resumed; any other answer is this provider's last.
            Err(FetchError::Io { reason, .. }) if resumes < MAX_RESUMES => {
                resumes += 1;
                log!("netboot: {u}: {reason}; resuming at byte {} ({resumes}/{MAX_RESUMES})", out.len());
                std::thread::sleep(Duration::from_millis(200 * resumes as u64));
            }
            Err(e) => return Err(DownloadError::Fetch(e)),
        }
    }
    progress(out.len() as u64, size);
    let got: [u8; 32] = hasher.finalize().into();
    if got != artifact.sha256 {
        return Err(mismatch("SHA-256", hex_encode(&artifact.sha256), hex_encode(&got)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Url;

    #[test]
    fn urls() {
        let u = Url::parse("http://10.9.0.1:8700").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("10.9.0.1", 8700, "/"));
        assert_eq!(u.join("v1/boot").to_string(), "http://10.9.0.1:8700/v1/boot");
        assert_eq!(Url::parse("http://h/a/").unwrap().join("/b").to_string(), "http://h:80/a/b");
        for bad in ["https://h", "http://", "http://h:0/", "http://h:x/", "http://u@h/", "http://h/a b"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
