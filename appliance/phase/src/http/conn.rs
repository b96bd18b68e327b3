//! One connection: read a head (bounded in bytes and time), let the handler admit it, read the
//! body (its memory paid as its bytes arrive, at a minimum rate checked on a timer), answer
//! (bounded by a minimum rate and a stall timeout), and go round again while the client keeps
//! the connection alive. Every wait also ends when the connection is displaced (places.rs).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phase_core::job::error::ErrorCode;
use phase_core::net::http::{parse_request, HeadError, Method, RequestHead};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

use super::places::{Phase, Place, Places};
use super::{Body, BodySink, Handler, Limits, Request, Response};
use crate::memory::{Budget, Reservation};

/// Bytes read from a socket at a time while reading a head.
const HEAD_CHUNK: usize = 4096;
/// Bytes written from a reader body at a time.
const BODY_CHUNK: usize = 256 << 10;
/// Bytes of a request body read at a time (into the stack), and the first capacity a body
/// gets once its bytes start to come.
const STEP: usize = 16 << 10;
const BODY_START: usize = 16 << 10;
/// Bodies this small go out in the same write as their head.
const COALESCE: usize = 64 << 10;
/// After an answer that leaves request bytes unread, what still comes is read and dropped
/// before closing, so the close does not reset the connection under the client's feet before
/// it reads the answer (a client that sends its whole body before reading, as most do, would
/// lose the answer). It goes on while the bytes keep the minimum rate after `LINGER_GRACE`,
/// for `LINGER_MAX` at most (nginx's lingering close, bounded by rate as well as time).
const LINGER_GRACE: Duration = Duration::from_secs(2);
const LINGER_MAX: Duration = Duration::from_secs(30);
/// How often a body's progress is judged against the minimum rate.
const RATE_CHECK: Duration = Duration::from_secs(1);

/// How a wait ended.
enum Wait<T> {
    Done(T),
    /// Its deadline passed.
    Late,
    /// The connection was displaced by a newcomer: close without a word.
    Displaced,
}

/// What a connection task holds: its place (displacement ends every wait) and the limits.
struct Connection {
    stream: Async<TcpStream>,
    place: Place,
    limits: Arc<Limits>,
}

impl Connection {
    /// `fut`, unless `deadline` comes first or the connection is displaced.
    async fn wait<T>(&self, deadline: Instant, fut: impl Future<Output = T>) -> Wait<T> {
        let displaced = self.place.displaced.clone();
        smol::future::or(
            smol::future::or(async { Wait::Done(fut.await) }, async {
                smol::Timer::at(deadline).await;
                Wait::Late
            }),
            async move {
                let _ = displaced.recv().await;
                Wait::Displaced
            },
        )
        .await
    }

    async fn read(&self, buf: &mut [u8], deadline: Instant) -> Wait<io::Result<usize>> {
        let got = self.wait(deadline, (&self.stream).read(buf)).await;
        if let Wait::Done(Ok(n)) = got {
            self.place.conn.received(n);
        }
        got
    }
}

/// The time a transfer of `len` bytes may take at the minimum rate, after the grace period.
fn allowance(limits: &Limits, len: u64) -> Duration {
    limits.grace + Duration::from_millis(len.saturating_mul(1000) / limits.min_rate.max(1))
}

enum End {
    /// Close without a word: the client left, idled out between requests, or was displaced.
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

pub(super) async fn serve<H: Handler>(stream: Async<TcpStream>, peer: SocketAddr, handler: Arc<H>, limits: Arc<Limits>, place: Place, places: Arc<Places>) {
    let c = Connection { stream, place, limits };
    let mut buf: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        let (head, used) = match read_head(&c, &mut buf, first).await {
            Ok(h) => h,
            Err(End::Quiet) => return,
            Err(End::Answer(resp)) => return answer_and_close(c, resp, &places).await,
        };
        first = false;
        buf.drain(..used);
        let head_only = head.method == Method::Head;
        let admission = match handler.admit(&head) {
            Ok(a) => a,
            Err(mut resp) => {
                // The body was not read: the connection can only go on if there is none.
                if head.keep_alive && head.content_length == 0 && !resp.close {
                    c.place.conn.set(Phase::Writing);
                    let written = write_response(&c, &mut resp, true, head_only).await.is_ok();
                    resp.finish(written);
                    if written {
                        continue;
                    }
                    return;
                }
                return answer_and_close(c, resp, &places).await;
            }
        };
        if head.expect_continue && head.content_length > buf.len() as u64 {
            let deadline = Instant::now() + c.limits.write_stall;
            if write_all_timed(&c, b"HTTP/1.1 100 Continue\r\n\r\n", deadline).await.is_err() {
                return;
            }
        }
        c.place.conn.set(Phase::Body);
        let read = match admission.sink {
            Some(sink) => read_body_into(&c, &mut buf, head.content_length, sink).await.map(|sink| (Vec::new(), None, Some(sink))),
            None => read_body(&c, &mut buf, head.content_length, admission.pay).await.map(|(body, hold)| (body, hold, None)),
        };
        let (body, hold, sink) = match read {
            Ok(b) => b,
            Err(End::Quiet) => return,
            Err(End::Answer(resp)) => return answer_and_close(c, resp, &places).await,
        };
        let keep_alive = head.keep_alive;
        c.place.conn.set(Phase::Busy);
        let mut resp = handler.handle(Request { head, body, peer, hold, sink }).await;
        let keep = keep_alive && !resp.close;
        c.place.conn.set(Phase::Writing);
        let written = write_response(&c, &mut resp, keep, head_only).await.is_ok();
        resp.finish(written);
        if !keep || !written {
            return;
        }
    }
}

/// Answers and closes: the answer goes out with `Connection: close`, then the connection gives
/// its place back and lingers in a lingering place (if one is free; none: closed at once).
async fn answer_and_close(c: Connection, mut resp: Response, places: &Places) {
    c.place.conn.set(Phase::Writing);
    let written = write_response(&c, &mut resp, false, false).await.is_ok();
    resp.finish(written);
    let Connection { stream, place, limits } = c;
    drop(place);
    let Some(_lingering) = places.linger() else { return };
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    linger(&stream, limits.min_rate).await;
}

/// Reads and drops what the client still sends (see `LINGER_GRACE`), until it stops, falls
/// below `min_rate` on average after the grace, or `LINGER_MAX` has passed; judged every
/// second whether bytes come or not.
pub(super) async fn linger(stream: &Async<TcpStream>, min_rate: u64) {
    let started = Instant::now();
    let mut drained: u64 = 0;
    let mut chunk = [0u8; STEP];
    loop {
        let read = smol::future::or(async { Some((&*stream).read(&mut chunk).await) }, async {
            smol::Timer::after(RATE_CHECK).await;
            None
        });
        match read.await {
            Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(n)) => drained += n as u64,
            None => {}
        }
        let elapsed = started.elapsed();
        let owed = (elapsed.saturating_sub(LINGER_GRACE).as_millis() as u64).saturating_mul(min_rate) / 1000;
        if elapsed >= LINGER_MAX || drained < owed {
            return;
        }
    }
}

/// Reads until `buf` starts with a whole request head. The first request of a connection has
/// `head_timeout` from the connection's start; a later one may idle `idle_timeout` before its
/// first byte and then has `head_timeout` for the rest.
async fn read_head(c: &Connection, buf: &mut Vec<u8>, first: bool) -> Result<(RequestHead, usize), End> {
    let limits = &c.limits;
    let now = Instant::now();
    let mut begun = first || !buf.is_empty();
    c.place.conn.set(if buf.is_empty() { Phase::Idle } else { Phase::Head });
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
        match c.read(&mut chunk, deadline).await {
            Wait::Displaced => return Err(End::Quiet),
            Wait::Late if buf.is_empty() => return Err(End::Quiet),
            Wait::Late => return Err(End::Answer(Response::error(408, ErrorCode::Timeout, &format!("the request head did not arrive within {}s", limits.head_timeout.as_secs())).closing())),
            Wait::Done(Ok(0)) | Wait::Done(Err(_)) => return Err(End::Quiet),
            Wait::Done(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                c.place.conn.set(Phase::Head);
                if !begun {
                    begun = true;
                    deadline = Instant::now() + limits.head_timeout;
                }
            }
        }
    }
}

/// Reads a body of `len` bytes, starting with what is already in `buf`; bytes past it (a
/// pipelined request) stay in `buf`. Its memory is paid as its bytes arrive: they are read into
/// a small buffer on the stack, then moved into the body, whose capacity (and, with `pay` (a
/// pool, and what each body byte costs from it), its reservation) grows at most to twice the
/// bytes received; a body that does not come costs nothing, and one that outgrows the pool is
/// refused (503). The body must arrive at `min_rate` on average once `grace` has passed,
/// judged every second whether bytes come or not.
async fn read_body(c: &Connection, buf: &mut Vec<u8>, len: u64, pay: Option<(Arc<Budget>, u64)>) -> Result<(Vec<u8>, Option<Reservation>), End> {
    let limits = &c.limits;
    let Ok(len) = usize::try_from(len) else {
        return Err(End::Answer(Response::error(413, ErrorCode::BodyTooLarge, "body length beyond this machine").closing()));
    };
    let no_memory = |have: usize| End::Answer(Response::error(503, ErrorCode::NoMemory, &format!("the request body ({have} of {len} bytes read) outgrew the memory left")).closing());
    let mut hold = match &pay {
        Some((pool, _)) if len > 0 => Some(pool.try_reserve(0).ok_or_else(|| no_memory(0))?),
        _ => None,
    };
    let factor = pay.as_ref().map_or(0, |(_, f)| *f);
    let mut body: Vec<u8> = Vec::new();
    // Moves `bytes` into the body, paying for the capacity it grows to first.
    let mut take = |body: &mut Vec<u8>, bytes: &[u8]| -> Result<(), End> {
        let need = body.len() + bytes.len();
        if body.capacity() < need {
            let want = (body.capacity() * 2).max(need).max(BODY_START).min(len);
            if let Some(h) = hold.as_mut() {
                if !h.try_grow(((want - body.capacity()) as u64).saturating_mul(factor)) {
                    return Err(no_memory(body.len()));
                }
            }
            body.try_reserve_exact(want - body.len()).map_err(|_| no_memory(body.len()))?;
        }
        body.extend_from_slice(bytes);
        Ok(())
    };
    // What came with the head first.
    let early = buf.len().min(len);
    take(&mut body, &buf[..early])?;
    buf.drain(..early);
    let started = Instant::now();
    let mut chunk = [0u8; STEP];
    while body.len() < len {
        let (have, spare) = (body.len(), body.capacity() - body.len());
        if spare >= STEP {
            // Capacity paid for already (it doubled with what came): read straight into it.
            body.resize(have + spare.min(len - have), 0);
            let got = c.read(&mut body[have..], Instant::now() + RATE_CHECK).await;
            body.truncate(have + if let Wait::Done(Ok(n)) = got { n } else { 0 });
            if matches!(got, Wait::Displaced | Wait::Done(Ok(0)) | Wait::Done(Err(_))) {
                return Err(End::Quiet);
            }
        } else {
            let want = (len - have).min(STEP);
            match c.read(&mut chunk[..want], Instant::now() + RATE_CHECK).await {
                Wait::Displaced | Wait::Done(Ok(0)) | Wait::Done(Err(_)) => return Err(End::Quiet),
                Wait::Done(Ok(n)) => take(&mut body, &chunk[..n])?,
                Wait::Late => {}
            }
        }
        too_slow(limits, started, body.len() as u64, len as u64)?;
    }
    drop(take);
    Ok((body, hold))
}

/// The minimum rate, on a timer: after the grace period, the bytes so far must be what
/// `min_rate` would have brought since then.
fn too_slow(limits: &Limits, started: Instant, have: u64, len: u64) -> Result<(), End> {
    let late = started.elapsed().saturating_sub(limits.grace);
    let owed = (late.as_millis() as u64).saturating_mul(limits.min_rate) / 1000;
    if have >= owed {
        return Ok(());
    }
    let why = format!(
        "the body arrived too slowly: {have} of {len} bytes in {}s (at least {} KiB/s after {}s)",
        started.elapsed().as_secs(),
        limits.min_rate >> 10,
        limits.grace.as_secs()
    );
    Err(End::Answer(Response::error(408, ErrorCode::Timeout, &why).closing()))
}

/// Reads a body of `len` bytes into `sink` (what came with the head first), one buffer at a
/// time, at the minimum rate as `read_body`; no memory is held beyond the buffer. The sink
/// failing (a full or broken disk) is answered 507. Its writes go to the page cache; what
/// waits on the disk (fsync) is done by the handler, on the worker pool.
async fn read_body_into(c: &Connection, buf: &mut Vec<u8>, len: u64, mut sink: Box<dyn BodySink>) -> Result<Box<dyn BodySink>, End> {
    let failed = |have: u64, e: io::Error| End::Answer(Response::error(507, ErrorCode::Storage, &format!("storing the body failed after {have} of {len} bytes: {e}")).closing());
    let early = (buf.len() as u64).min(len) as usize;
    sink.write(&buf[..early]).map_err(|e| failed(0, e))?;
    buf.drain(..early);
    let mut have = early as u64;
    let started = Instant::now();
    let mut chunk = vec![0u8; STEP];
    while have < len {
        let want = (len - have).min(STEP as u64) as usize;
        match c.read(&mut chunk[..want], Instant::now() + RATE_CHECK).await {
            Wait::Displaced | Wait::Done(Ok(0)) | Wait::Done(Err(_)) => return Err(End::Quiet),
            Wait::Done(Ok(n)) => {
                sink.write(&chunk[..n]).map_err(|e| failed(have, e))?;
                have += n as u64;
            }
            Wait::Late => {}
        }
        too_slow(&c.limits, started, have, len)?;
    }
    Ok(sink)
}

/// Writes all of `data`: each write must make progress within `stall`, and all of it must be
/// out by `deadline`.
async fn write_all_timed(c: &Connection, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        let by = deadline.min(Instant::now() + c.limits.write_stall);
        match c.wait(by, (&c.stream).write(data)).await {
            Wait::Late => return Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")),
            Wait::Displaced => return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "displaced")),
            Wait::Done(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Wait::Done(Ok(n)) => data = &data[n..],
            Wait::Done(Err(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Writes a response (the head only for HEAD), bounded by the minimum rate over its size.
async fn write_response(c: &Connection, resp: &mut Response, keep_alive: bool, head_only: bool) -> io::Result<()> {
    let mut head = resp.head_bytes(keep_alive);
    let body_len = if head_only { 0 } else { resp.body.len() };
    let deadline = Instant::now() + allowance(&c.limits, head.len() as u64 + body_len);
    if head_only {
        return write_all_timed(c, &head, deadline).await;
    }
    match &mut resp.body {
        Body::Bytes(b) if b.len() <= COALESCE => {
            head.extend_from_slice(b);
            write_all_timed(c, &head, deadline).await
        }
        Body::Bytes(b) => {
            write_all_timed(c, &head, deadline).await?;
            write_all_timed(c, b, deadline).await
        }
        Body::Reader { reader, len } => {
            write_all_timed(c, &head, deadline).await?;
            let mut left = *len;
            let mut chunk = vec![0u8; BODY_CHUNK.min(left as usize)];
            while left > 0 {
                let want = chunk.len().min(left as usize);
                // Reads are from files (page cache, tmpfs): short and bounded by the chunk.
                let n = reader.read(&mut chunk[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body ended before its length"));
                }
                write_all_timed(c, &chunk[..n], deadline).await?;
                left -= n as u64;
            }
            Ok(())
        }
    }
}
