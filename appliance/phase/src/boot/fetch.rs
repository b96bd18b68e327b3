//! The fetching side: a small HTTP/1.1 client (GET with `Range`, `Connection: close`, bounded
//! headers and bodies, timeouts) and artifact downloads into RAM with streaming SHA-256 that
//! resume by byte range after a broken connection. Bodies are never read past the size the
//! signed manifest states. Every exchange has a deadline for the whole of it (connect, head and
//! body), not only per read: a provider that sends a byte now and then cannot hold the caller.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use phase_core::encoding::hex_encode;
use phase_core::boot::manifest::{Artifact, Mismatch};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A provider silent this long mid-body is treated as a broken connection.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// The exchange's deadline passed.
    Timeout { url: String, what: &'static str },
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
            FetchError::Timeout { url, what } => write!(f, "{url}: {what} did not arrive in time"),
        }
    }
}
impl std::error::Error for FetchError {}


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

/// An answer whose head was read; the body is read from `stream` after `pending`, and ends
/// with a TimedOut error once the exchange's deadline has passed.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    content_length: Option<u64>,
    pending: Vec<u8>,
    stream: TcpStream,
    deadline: Instant,
    url: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
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
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "the exchange's deadline passed");
        arm(&self.stream, self.deadline, &self.url, "the body").map_err(|_| timed_out())?;
        match self.stream.read(buf) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) && Instant::now() >= self.deadline => Err(timed_out()),
            other => other,
        }
    }
}

/// Sets the socket's read timeout to what is left before `deadline` (at most READ_TIMEOUT);
/// past it, the exchange has timed out.
fn arm(stream: &TcpStream, deadline: Instant, url: &str, what: &'static str) -> Result<(), FetchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(FetchError::Timeout { url: url.to_string(), what });
    }
    stream.set_read_timeout(Some(left.min(READ_TIMEOUT))).map_err(|e| FetchError::Io { url: url.to_string(), reason: e.to_string() })
}

/// GET `url`, optionally from byte `from` on. Returns once the head is in, all of it by
/// `deadline`.
pub fn get(url: &Url, from: u64, deadline: Instant) -> Result<Response, FetchError> {
    let range = if from > 0 { format!("Range: bytes={from}-\r\n") } else { String::new() };
    exchange(url, "GET", &range, &[], deadline)
}

/// POST `body` to `url` with the extra header lines `headers` (each ending in CRLF). Returns
/// once the response head is in, all of it by `deadline`.
pub fn post(url: &Url, headers: &str, body: &[u8], deadline: Instant) -> Result<Response, FetchError> {
    exchange(url, "POST", &format!("{headers}Content-Length: {}\r\n", body.len()), body, deadline)
}

fn exchange(url: &Url, method: &str, headers: &str, body: &[u8], deadline: Instant) -> Result<Response, FetchError> {
    let u = url.to_string();
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| FetchError::Connect { url: u.clone(), reason: e.to_string() })?
        .collect();
    let addr = addrs.first().ok_or_else(|| FetchError::Connect { url: u.clone(), reason: "no address".into() })?;
    let connect = CONNECT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
    if connect.is_zero() {
        return Err(FetchError::Timeout { url: u, what: "a connection" });
    }
    let mut stream = TcpStream::connect_timeout(addr, connect).map_err(|e| FetchError::Connect { url: u.clone(), reason: e.to_string() })?;
    let io = |e: std::io::Error| FetchError::Io { url: u.clone(), reason: e.to_string() };
    stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
    let _ = stream.set_nodelay(true);
    let request = format!("{method} {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: phase/{}\r\n{headers}Connection: close\r\n\r\n", url.path, url.host, url.port, env!("CARGO_PKG_VERSION"));
    stream.write_all(request.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let (parsed, end) = loop {
        match phase_core::net::http::parse_response(&head) {
            Ok(Some(done)) => break done,
            Ok(None) => {}
            Err(e) => return Err(FetchError::Protocol { url: u, reason: format!("response head: {e}") }),
        }
        arm(&stream, deadline, &u, "the response head")?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) && Instant::now() >= deadline => {
                return Err(FetchError::Timeout { url: u, what: "the response head" })
            }
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            return Err(FetchError::Protocol { url: u, reason: "connection closed before the response headers".into() });
        }
        head.extend_from_slice(&buf[..n]);
    };
    let pending = head.split_off(end);
    Ok(Response { status: parsed.status, headers: parsed.headers, content_length: parsed.content_length, pending, stream, deadline, url: u })
}

/// GET a small document (a manifest, an index) of at most `max` bytes, all of it by `deadline`.
pub fn get_small(url: &Url, max: u64, deadline: Instant) -> Result<Vec<u8>, FetchError> {
    let resp = get(url, 0, deadline)?;
    if resp.status != 200 {
        return Err(FetchError::Http { url: url.to_string(), status: resp.status });
    }
    read_small(resp, url, max)
}

/// The body of a response, at most `max` bytes, by the exchange's deadline.
pub fn read_small(resp: Response, url: &Url, max: u64) -> Result<Vec<u8>, FetchError> {
    let u = url.to_string();
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(FetchError::TooLarge { url: u, max });
    }
    let mut body = Vec::new();
    resp.take(max + 1).read_to_end(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut => FetchError::Timeout { url: u.clone(), what: "the body" },
        _ => FetchError::Io { url: u.clone(), reason: e.to_string() },
    })?;
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
impl std::error::Error for DownloadError {}


/// Progress callback: (bytes so far, total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Downloads `artifact` from `url` into RAM, hashing as it streams, resuming by byte range
/// after a broken connection (up to MAX_RESUMES times), never reading past the signed size,
/// and checking size and SHA-256 at the end. The provider's ETag, when sent, must be the
/// signed hash (so a resumed body cannot splice two different files). It ends by `give_up`
/// and sooner if the provider averages less than MIN_RATE after RATE_GRACE.
pub fn download(url: &Url, artifact: &Artifact, progress: Progress, give_up: Instant) -> Result<Vec<u8>, DownloadError> {
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
    let deadline = (started + RATE_GRACE + Duration::from_secs(size / MIN_RATE)).min(give_up);
    let mismatch = |what: &str, expected: String, actual: String| DownloadError::Mismatch { what: format!("{what} of {u}"), expected, actual };
    while (out.len() as u64) < size {
        let have = out.len() as u64;
        let attempt = (|| -> Result<(), FetchError> {
            let resp = get(url, have, deadline)?;
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
            let too_slow = |got: usize| {
                let why = format!("too slow: {got} of {size} bytes after {}s (needs {} KiB/s on average, and the search's deadline)", started.elapsed().as_secs(), MIN_RATE >> 10);
                FetchError::Protocol { url: u.clone(), reason: why }
            };
            loop {
                let n = match body.read(&mut buf) {
                    Ok(n) => n,
                    Err(_) if Instant::now() >= deadline => return Err(too_slow(out.len())),
                    Err(e) => return Err(FetchError::Io { url: u.clone(), reason: e.to_string() }),
                };
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.extend_from_slice(&buf[..n]);
                if Instant::now() > deadline {
                    return Err(too_slow(out.len()));
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
    artifact.check(out.len() as u64, &got).map_err(|m| match m {
        Mismatch::Size { expected, actual } => mismatch("size", format!("{expected} bytes"), format!("{actual}")),
        Mismatch::Hash { expected, actual } => mismatch("SHA-256", hex_encode(&expected), hex_encode(&actual)),
    })?;
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
