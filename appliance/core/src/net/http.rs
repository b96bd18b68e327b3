//! HTTP/1.1 message heads as Phase takes them from the network (RFC 9112), parsed strictly:
//! the request heads the node's front reads from any host on the LAN, the response heads its
//! netboot fetcher reads from providers, and `Range` values. Tokens and line syntax are
//! checked by `httparse`; what decides how many bytes follow a head (Content-Length,
//! Transfer-Encoding) is checked here, so a head that parsed has exactly one meaning.
//!
//! Caps: a head is at most [`MAX_HEAD_BYTES`] with at most [`MAX_HEADERS`] fields (431
//! beyond). A request body is framed by one `Content-Length` of decimal digits only;
//! duplicates, signs, lists and overflow are 400, `Transfer-Encoding` beside a length is 400
//! (the ground of request smuggling), and a chunked request without a length is 411.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Largest request or response head (request line or status line, fields, final CRLF).
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other,
}

impl Method {
    fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }
}

/// A request head that parsed: its framing is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The method as sent (for messages about methods a route does not take).
    pub method_name: String,
    /// The request target: an absolute path, with its query if any.
    pub target: String,
    /// HTTP/1.0 (else 1.1).
    pub http10: bool,
    pub headers: Vec<(String, String)>,
    /// The body's length (0 without a Content-Length).
    pub content_length: u64,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before it sends the body.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The target's path (before any `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The value of query parameter `key` (no percent-decoding: Phase's values are plain).
    pub fn query(&self, key: &str) -> Option<&str> {
        let (_, q) = self.target.split_once('?')?;
        q.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    /// The first value of a header field (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// A response head that parsed (the netboot fetcher's side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// None: the body runs to the end of the connection.
    pub content_length: Option<u64>,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Why a head was refused; each maps to the status a server answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Above [`MAX_HEAD_BYTES`] (431).
    TooLarge,
    /// Above [`MAX_HEADERS`] fields (431).
    TooManyHeaders,
    /// Not HTTP/1.x syntax, or a field HTTP/1.1 requires is missing (400).
    Malformed(&'static str),
    /// Not HTTP/1.0 or 1.1 (505).
    Version,
    /// A Content-Length that is not exactly one decimal number, or conflicts (400).
    Length(&'static str),
    /// A chunked request body without a length (411: this server takes lengths only).
    Chunked,
    /// An `Expect` other than 100-continue (417).
    Expectation,
}

impl HeadError {
    /// The status a server answers this with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::Malformed(_) | HeadError::Length(_) => 400,
            HeadError::Version => 505,
            HeadError::Chunked => 411,
            HeadError::Expectation => 417,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => write!(f, "head above {MAX_HEAD_BYTES} bytes"),
            HeadError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header fields"),
            HeadError::Malformed(why) => write!(f, "malformed head: {why}"),
            HeadError::Version => f.write_str("only HTTP/1.0 and HTTP/1.1 are served"),
            HeadError::Length(why) => write!(f, "Content-Length: {why}"),
            HeadError::Chunked => f.write_str("chunked request bodies are not taken: send Content-Length"),
            HeadError::Expectation => f.write_str("the only expectation served is 100-continue"),
        }
    }
}
impl core::error::Error for HeadError {}


/// Where the head at the start of `buf` ends (just past its blank line), after `skip` leading
/// empty lines (RFC 9112 lets a server ignore them). Lines may end in CRLF or a bare LF.
fn head_end(buf: &[u8], skip: usize) -> Option<usize> {
    let b = &buf[skip..];
    let mut i = 0;
    while let Some(lf) = b[i..].iter().position(|&c| c == b'\n') {
        let at = i + lf;
        match (b.get(at + 1), b.get(at + 2)) {
            (Some(b'\n'), _) => return Some(skip + at + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(skip + at + 3),
            _ => i = at + 1,
        }
    }
    None
}

fn leading_empty_lines(buf: &[u8]) -> usize {
    buf.iter().take_while(|&&c| c == b'\r' || c == b'\n').count()
}

/// One Content-Length value: 1*DIGIT, no sign, no list, no overflow.
fn parse_length(v: &str) -> Result<u64, HeadError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeadError::Length("not a decimal number"));
    }
    v.bytes().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0'))).ok_or(HeadError::Length("too large"))
}

fn map_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => HeadError::Version,
        httparse::Error::HeaderName => HeadError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid status"),
        httparse::Error::Token => HeadError::Malformed("invalid token"),
    }
}

fn owned_headers(raw: &[httparse::Header<'_>]) -> Result<Vec<(String, String)>, HeadError> {
    raw.iter()
        .map(|h| {
            let v = core::str::from_utf8(h.value).map_err(|_| HeadError::Malformed("header value is not UTF-8"))?;
            Ok((h.name.to_string(), v.to_string()))
        })
        .collect()
}

/// Comma-separated tokens of every field named `name`, trimmed.
fn tokens<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The body length a head declares, from its one Content-Length; Transfer-Encoding is judged
/// by the caller, which knows whether it is a request or a response.
fn declared_length(headers: &[(String, String)]) -> Result<Option<u64>, HeadError> {
    let mut lengths = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    let Some((_, first)) = lengths.next() else { return Ok(None) };
    if lengths.next().is_some() {
        return Err(HeadError::Length("given more than once"));
    }
    parse_length(first).map(Some)
}

/// Parses the request head at the start of `buf`. `Ok(None)`: not complete yet (read more);
/// `Ok(Some((head, n)))`: the head took the first `n` bytes (the body, if any, follows).
pub fn parse_request(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let skip = leading_empty_lines(buf);
    let Some(end) = head_end(buf, skip) else {
        return if buf.len() - skip > MAX_HEAD_BYTES { Err(HeadError::TooLarge) } else { Ok(None) };
    };
    if end - skip > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(&buf[skip..end]).map_err(map_error)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => return Err(HeadError::Malformed("incomplete request line")),
    }
    let method_name = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("the request target must be an absolute path"));
    }
    let http10 = req.version == Some(0);
    let headers = owned_headers(req.headers)?;
    let content_length = declared_length(&headers)?;
    if tokens(&headers, "transfer-encoding").next().is_some() {
        if content_length.is_some() {
            return Err(HeadError::Length("given together with Transfer-Encoding"));
        }
        // A body whose framing is chunked is one we do not take; any other last coding leaves
        // the length unknowable (RFC 9112 6.3): 400.
        let last = tokens(&headers, "transfer-encoding").last().unwrap_or_default();
        return Err(if last.eq_ignore_ascii_case("chunked") { HeadError::Chunked } else { HeadError::Malformed("unknown transfer coding") });
    }
    let hosts = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("host")).count();
    if hosts > 1 || (hosts == 0 && !http10) {
        return Err(HeadError::Malformed("an HTTP/1.1 request needs exactly one Host"));
    }
    let close = tokens(&headers, "connection").any(|t| t.eq_ignore_ascii_case("close"));
    let keep = tokens(&headers, "connection").any(|t| t.eq_ignore_ascii_case("keep-alive"));
    let keep_alive = !close && (!http10 || keep);
    let mut expect_continue = false;
    for e in tokens(&headers, "expect") {
        if !e.eq_ignore_ascii_case("100-continue") {
            return Err(HeadError::Expectation);
        }
        expect_continue = !http10;
    }
    let head = RequestHead {
        method: Method::parse(&method_name),
        method_name,
        target,
        http10,
        headers,
        content_length: content_length.unwrap_or(0),
        keep_alive,
        expect_continue,
    };
    Ok(Some((head, end)))
}

/// Parses the response head at the start of `buf`, like [`parse_request`]. Bodies framed by
/// a transfer coding other than identity are refused: the fetcher reads raw bytes up to the
/// length or the end of the connection, and would otherwise read the framing as data.
pub fn parse_response(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let Some(end) = head_end(buf, 0) else {
        return if buf.len() > MAX_HEAD_BYTES { Err(HeadError::TooLarge) } else { Ok(None) };
    };
    if end > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(&buf[..end]).map_err(map_error)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => return Err(HeadError::Malformed("incomplete status line")),
    }
    let status = resp.code.unwrap_or(0);
    if !(100..=599).contains(&status) {
        return Err(HeadError::Malformed("status out of range"));
    }
    let headers = owned_headers(resp.headers)?;
    let content_length = declared_length(&headers)?;
    if tokens(&headers, "transfer-encoding").any(|t| !t.eq_ignore_ascii_case("identity")) {
        return Err(HeadError::Malformed("transfer codings are not taken: send Content-Length"));
    }
    Ok(Some((ResponseHead { status, headers, content_length }, end)))
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The whole body (no range, a unit other than bytes, or several ranges: RFC 9110 lets a
    /// server answer those with the whole body).
    Whole,
    /// Bytes `start..=end`, both within the body.
    Part { start: u64, end: u64 },
    /// Nothing of the body satisfies it (416).
    Unsatisfiable,
}

/// Resolves one `Range` header value (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against `size`.
pub fn parse_range(value: &str, size: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Range::Whole };
    if spec.contains(',') {
        return Range::Whole;
    }
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let Some((a, b)) = spec.split_once('-') else { return Range::Unsatisfiable };
    let last = size.saturating_sub(1);
    let parsed = match (a.trim(), b.trim()) {
        ("", suffix) => number(suffix).filter(|&n| n > 0).map(|n| (size.saturating_sub(n), last)),
        (s, "") => number(s).map(|s| (s, last)),
        (s, e) => number(s).zip(number(e)).map(|(s, e)| (s, e.min(last))),
    };
    match parsed {
        Some((start, end)) if size > 0 && start < size && end >= start => Range::Part { start, end },
        _ => Range::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn req(text: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request(text.as_bytes())
    }

    #[test]
    fn a_request_head_parses_with_its_framing() {
        let text = "\r\nPOST /v1/jobs?x=1&cap=wasm HTTP/1.1\r\nHost: n\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello";
        let (h, n) = req(text).unwrap().unwrap();
        assert_eq!((h.method, h.path(), h.query("cap"), h.query("ca"), h.content_length), (Method::Post, "/v1/jobs", Some("wasm"), None, 5));
        assert!(h.keep_alive && h.expect_continue && !h.http10);
        assert_eq!(&text[n..], "hello");
        assert_eq!(h.header("content-LENGTH"), Some("5"));
        // Bare LF line endings, HTTP/1.0 without Host, keep-alive only when asked for.
        let (h, _) = req("GET / HTTP/1.0\n\n").unwrap().unwrap();
        assert!(h.http10 && !h.keep_alive);
        let (h, _) = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(h.keep_alive);
        let (h, _) = req("GET / HTTP/1.1\r\nHost: n\r\nConnection: upgrade, close\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        // Incomplete heads wait for more bytes.
        assert_eq!(req("GET / HTTP/1.1\r\nHost: n\r\n"), Ok(None));
        assert_eq!(req(""), Ok(None));
        assert_eq!(req("\r\n\r\n\r\n"), Ok(None));
    }

    #[test]
    fn framing_is_strict() {
        let with = |fields: &str| req(&format!("POST / HTTP/1.1\r\nHost: n\r\n{fields}\r\n")).map(|r| r.map(|(h, _)| h.content_length));
        assert_eq!(with("Content-Length: 0\r\n"), Ok(Some(0)));
        assert_eq!(with("Content-Length: 007\r\n"), Ok(Some(7)));
        assert_eq!(with("Content-Length: 18446744073709551615\r\n"), Ok(Some(u64::MAX)));
        for bad in ["18446744073709551616", "+5", "-1", "0x10", "5, 5", "5 5", "", "1e3", "５"] {
            let e = with(&format!("Content-Length: {bad}\r\n")).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}: {e}");
        }
        assert_eq!(with("Content-Length: 5\r\ncontent-length: 5\r\n").unwrap_err().status(), 400);
        assert_eq!(with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n").unwrap_err().status(), 400);
        assert_eq!(with("Transfer-Encoding: chunked\r\n").unwrap_err(), HeadError::Chunked);
        assert_eq!(with("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n").unwrap_err(), HeadError::Chunked);
        assert_eq!(with("Transfer-Encoding: gzip\r\n").unwrap_err().status(), 400);
        assert_eq!(with("Expect: 100-Continue\r\n"), Ok(Some(0)));
        assert_eq!(with("Expect: 200-ok\r\n").unwrap_err().status(), 417);
        assert_eq!(with("Host: again\r\n").unwrap_err().status(), 400);
        assert_eq!(req("GET / HTTP/1.1\r\n\r\n").unwrap_err().status(), 400, "HTTP/1.1 without Host");
        assert_eq!(req("GET / HTTP/2.0\r\nHost: n\r\n\r\n").unwrap_err().status(), 505);
        assert_eq!(req("GET http://n/ HTTP/1.1\r\nHost: n\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(req("GET * HTTP/1.1\r\nHost: n\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(req("GET / HTTP/1.1\r\nHost: n\r\nBad Name: v\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(req("GET / HTTP/1.1\r\nHost: n\r\n folded\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(req("GET  / HTTP/1.1\r\nHost: n\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n").unwrap_err().status(), 400);
    }

    #[test]
    fn heads_are_capped() {
        let many: alloc::string::String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(req(&format!("GET / HTTP/1.1\r\nHost: n\r\n{many}\r\n")).unwrap_err() == HeadError::TooManyHeaders);
        let fits: alloc::string::String = (0..MAX_HEADERS - 1).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(req(&format!("GET / HTTP/1.1\r\nHost: n\r\n{fits}\r\n")).unwrap().is_some());
        let long = "a".repeat(MAX_HEAD_BYTES);
        assert_eq!(req(&format!("GET / HTTP/1.1\r\nHost: n\r\nX: {long}\r\n\r\n")), Err(HeadError::TooLarge));
        assert_eq!(req(&format!("GET / HTTP/1.1\r\nHost: n\r\nX: {long}")), Err(HeadError::TooLarge), "never-ending head");
        assert_eq!(HeadError::TooLarge.status(), 431);
    }

    #[test]
    fn response_heads() {
        let text = b"HTTP/1.1 206 Partial Content\r\nContent-Length: 3\r\nETag: \"x\"\r\n\r\nabc";
        let (h, n) = parse_response(text).unwrap().unwrap();
        assert_eq!((h.status, h.content_length, h.header("etag"), &text[n..]), (206, Some(3), Some("\"x\""), &b"abc"[..]));
        let (h, _) = parse_response(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: identity\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.content_length, None);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 999 Nope\r\n\r\n").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(parse_response(&[b'x'; MAX_HEAD_BYTES + 1]), Err(HeadError::TooLarge));
    }

    #[test]
    fn ranges() {
        use Range::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Part { start: 0, end: 99 });
        assert_eq!(parse_range("bytes=900-", 1000), Part { start: 900, end: 999 });
        assert_eq!(parse_range("bytes=-100", 1000), Part { start: 900, end: 999 });
        assert_eq!(parse_range("bytes=-5000", 1000), Part { start: 0, end: 999 });
        assert_eq!(parse_range("bytes=990-5000", 1000), Part { start: 990, end: 999 });
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(parse_range("items=0-1", 1000), Whole);
        for bad in ["bytes=1000-", "bytes=5-1", "bytes=x-1", "bytes=-0", "bytes=+1-2", "bytes=1-+2", "bytes=", "bytes=-", "bytes=99999999999999999999-"] {
            assert_eq!(parse_range(bad, 1000), Unsatisfiable, "{bad}");
        }
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
    }
}
