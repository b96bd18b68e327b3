//! One connection: read a head (bounded in bytes and time), let the handler admit it, read the
//! body (bounded by its admitted length and a minimum rate), answer (bounded by a minimum rate
//! and a stall timeout), and go round again while the client keeps the connection alive.

use phase_core::job::error::ErrorCode;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phase_core::net::http::{parse_request, HeadError, Method, RequestHead};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

use super::{Body, Handler, Limits, Request, Response};

/// Bytes read from a socket at a time while reading a head.
const HEAD_CHUNK: usize = 4096;
/// Bytes read (or written from a reader body) at a time.
const BODY_CHUNK: usize = 256 << 10;
/// Bodies this small go out in the same write as their head.
const COALESCE: usize = 64 << 10;
/// After an answer that leaves a body unread, what is still read and dropped before closing, so
/// the close does not reset the connection under the client's feet before it reads the answer:
/// the declared body (up to 64 MiB) at the minimum rate, or 2 s when the length is unknown.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 64 << 20;

/// `fut`, unless `deadline` comes first.
async fn until<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(fut.await) }, async {
        smol::Timer::at(deadline).await;
        None
    })
    .await
}

/// The time a transfer of `len` bytes may take at the minimum rate, after the grace period.
fn allowance(limits: &Limits, len: u64) -> Duration {
    limits.grace + Duration::from_millis(len.saturating_mul(1000) / limits.min_rate.max(1))
}

enum End {
    /// Close without a word: the client left, or idled out between requests.
    Quiet,
    /// Answer, then close.
    Answer(Response),
}

fn head_error(e: &HeadError) -> Response {
    let code = match e {
        HeadError::TooLarge | HeadError::TooManyHeaders => ErrorCode::HeadTooLarge,
        HeadError::Version => ErrorCode::HttpVersion,
        HeadError::Chunked => ErrorCode::LengthRequired,
        HeadError::Expectation => ErrorCode::ExpectationFailed,
        HeadError::Malformed(_) | HeadError::Length(_) => ErrorCode::BadRequest,
    };
    Response::error(e.status(), code, &e.to_string()).closing()
}

pub(super) async fn serve<H: Handler>(stream: Async<TcpStream>, peer: SocketAddr, handler: Arc<H>, limits: Arc<Limits>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        let (head, used) = match read_head(&stream, &mut buf, first, &limits).await {
            Ok(h) => h,
            Err(End::Quiet) => return,
            Err(End::Answer(mut resp)) => {
                let written = write_response(&stream, &mut resp, false, false, &limits).await.is_ok();
                resp.finish(written);
                return linger(&stream, LINGER_BYTES, Instant::now() + LINGER).await;
            }
        };
        first = false;
        buf.drain(..used);
        let head_only = head.method == Method::Head;
        let admission = match handler.admit(&head) {
            Ok(a) => a,
            Err(mut resp) => {
                // The body was not read: the connection can only go on if there is none.
                let keep = head.keep_alive && head.content_length == 0 && !resp.close;
                let written = write_response(&stream, &mut resp, keep, head_only, &limits).await.is_ok();
                resp.finish(written);
                if !keep || !written {
                    let unread = head.content_length.saturating_sub(buf.len() as u64).min(LINGER_BYTES);
                    return linger(&stream, unread, Instant::now() + allowance(&limits, unread)).await;
                }
                continue;
            }
        };
        if head.expect_continue && head.content_length > buf.len() as u64 {
            let deadline = Instant::now() + limits.write_stall;
            if write_all_timed(&stream, b"HTTP/1.1 100 Continue\r\n\r\n", deadline, limits.write_stall).await.is_err() {
                return;
            }
        }
        let body = match read_body(&stream, &mut buf, head.content_length, &limits).await {
            Ok(b) => b,
            Err(End::Quiet) => return,
            Err(End::Answer(mut resp)) => {
                let written = write_response(&stream, &mut resp, false, false, &limits).await.is_ok();
                resp.finish(written);
                return;
            }
        };
        let keep_alive = head.keep_alive;
        let mut resp = handler.handle(Request { head, body, peer, hold: admission.hold }).await;
        let keep = keep_alive && !resp.close;
        let written = write_response(&stream, &mut resp, keep, head_only, &limits).await.is_ok();
        resp.finish(written);
        if !keep || !written {
            return;
        }
    }
}

/// Reads until `buf` starts with a whole request head. The first request of a connection has
/// `head_timeout` from the connection's start; a later one may idle `idle_timeout` before its
/// first byte and then has `head_timeout` for the rest.
async fn read_head(stream: &Async<TcpStream>, buf: &mut Vec<u8>, first: bool, limits: &Limits) -> Result<(RequestHead, usize), End> {
    let now = Instant::now();
    let mut begun = first || !buf.is_empty();
    let mut deadline = now + if begun { limits.head_timeout } else { limits.idle_timeout };
    let mut chunk = [0u8; HEAD_CHUNK];
    loop {
        // Empty lines before a request line are ignored (RFC 9112), and dropped here so a
        // stream of them cannot grow the buffer.
        let blank = buf.iter().take_while(|&&c| c == b'\r' || c == b'\n').count();
        buf.drain(..blank);
        match parse_request(buf) {
            Ok(Some(parsed)) => return Ok(parsed),
            Ok(None) => {}
            Err(e) => return Err(End::Answer(head_error(&e))),
        }
        match until(deadline, (&*stream).read(&mut chunk)).await {
            None if buf.is_empty() => return Err(End::Quiet),
            None => return Err(End::Answer(Response::error(408, ErrorCode::Timeout, &format!("the request head did not arrive within {}s", limits.head_timeout.as_secs())).closing())),
            Some(Ok(0)) | Some(Err(_)) => return Err(End::Quiet),
            Some(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if !begun {
                    begun = true;
                    deadline = Instant::now() + limits.head_timeout;
                }
            }
        }
    }
}

/// Reads a body of `len` bytes (its memory was reserved at admission), starting with what is
/// already in `buf`; bytes past it (a pipelined request) stay in `buf`.
async fn read_body(stream: &Async<TcpStream>, buf: &mut Vec<u8>, len: u64, limits: &Limits) -> Result<Vec<u8>, End> {
    let Ok(len) = usize::try_from(len) else {
        return Err(End::Answer(Response::error(413, ErrorCode::BodyTooLarge, "body length beyond this machine").closing()));
    };
    let mut body = Vec::new();
    if body.try_reserve_exact(len).is_err() {
        return Err(End::Answer(Response::error(503, ErrorCode::NoMemory, &format!("cannot allocate {len} bytes for the body")).closing()));
    }
    let take = buf.len().min(len);
    body.extend(buf.drain(..take));
    let deadline = Instant::now() + allowance(limits, len as u64);
    while body.len() < len {
        let start = body.len();
        body.resize((start + BODY_CHUNK).min(len), 0);
        match until(deadline, (&*stream).read(&mut body[start..])).await {
            None => {
                let why = format!("the body arrived too slowly: {start} of {len} bytes in {}s (at least {} KiB/s after {}s)", allowance(limits, len as u64).as_secs(), limits.min_rate >> 10, limits.grace.as_secs());
                return Err(End::Answer(Response::error(408, ErrorCode::Timeout, &why).closing()));
            }
            Some(Ok(0)) | Some(Err(_)) => return Err(End::Quiet),
            Some(Ok(n)) => body.truncate(start + n),
        }
    }
    Ok(body)
}

/// Writes all of `data`: each write must make progress within `stall`, and all of it must be
/// out by `deadline`.
async fn write_all_timed(stream: &Async<TcpStream>, mut data: &[u8], deadline: Instant, stall: Duration) -> io::Result<()> {
    while !data.is_empty() {
        let by = deadline.min(Instant::now() + stall);
        match until(by, (&*stream).write(data)).await {
            None => return Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")),
            Some(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Some(Ok(n)) => data = &data[n..],
            Some(Err(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Writes a response (the head only for HEAD), bounded by the minimum rate over its size.
async fn write_response(stream: &Async<TcpStream>, resp: &mut Response, keep_alive: bool, head_only: bool, limits: &Limits) -> io::Result<()> {
    let mut head = resp.head_bytes(keep_alive);
    let body_len = if head_only { 0 } else { resp.body.len() };
    let deadline = Instant::now() + allowance(limits, head.len() as u64 + body_len);
    let stall = limits.write_stall;
    if head_only {
        return write_all_timed(stream, &head, deadline, stall).await;
    }
    match &mut resp.body {
        Body::Bytes(b) if b.len() <= COALESCE => {
            head.extend_from_slice(b);
            write_all_timed(stream, &head, deadline, stall).await
        }
        Body::Bytes(b) => {
            write_all_timed(stream, &head, deadline, stall).await?;
            write_all_timed(stream, b, deadline, stall).await
        }
        Body::Reader { reader, len } => {
            write_all_timed(stream, &head, deadline, stall).await?;
            let mut left = *len;
            let mut chunk = vec![0u8; BODY_CHUNK.min(left as usize)];
            while left > 0 {
                let want = chunk.len().min(left as usize);
                // Reads are from files (page cache, tmpfs): short and bounded by the chunk.
                let n = reader.read(&mut chunk[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body ended before its length"));
                }
                write_all_timed(stream, &chunk[..n], deadline, stall).await?;
                left -= n as u64;
            }
            Ok(())
        }
    }
}

/// Closes after an answer that left request bytes unread: stops writing, then reads and drops
/// what still comes for a moment, so the close does not reset the connection before the client
/// has read the answer.
async fn linger(stream: &Async<TcpStream>, bytes: u64, deadline: Instant) {
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    let mut chunk = [0u8; HEAD_CHUNK];
    let mut dropped = 0u64;
    while dropped <= bytes {
        match until(deadline, (&*stream).read(&mut chunk)).await {
            Some(Ok(n)) if n > 0 => dropped += n as u64,
            _ => return,
        }
    }
}
