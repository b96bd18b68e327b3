//! The node's HTTP/1.1 front (docs/api.md "Connections and limits", decision D24). Nothing a
//! client sends can crash it or hold what other clients need:
//!
//! - connections are tasks on a small executor, not threads: a slow or idle connection costs a
//!   few KiB and no worker; blocking work (jobs, compiles) goes to the node's worker pool;
//! - heads are parsed strictly and capped (phase_core::net::http), and a body is admitted by its
//!   route (cap, memory reserved) before a byte of it is read;
//! - every wait has a bound: the head, a body below a minimum rate, an idle keep-alive
//!   connection, a write that makes no progress or falls below a minimum rate;
//! - connections are bounded in total and per source address; at a cap a newcomer displaces the
//!   connection that has done the least among those only waiting for their client (places.rs),
//!   and is refused with a canned 503 only when every connection in the way is being served.

mod conn;
mod message;
mod places;

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use phase_core::job::error::ErrorCode;
use phase_core::net::http::RequestHead;

pub use message::{reason, Body, Request, Response};
pub use places::Places;


/// The front's limits (docs/api.md lists each with its default).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most, and per source address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// From a connection's start (or the first byte of a request on a kept-alive connection)
    /// to the end of the request head.
    pub head_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Bodies and responses must move at `min_rate` bytes/s on average once `grace` has passed.
    pub grace: Duration,
    pub min_rate: u64,
    /// A write that makes no progress for this long ends the connection.
    pub write_stall: Duration,
    /// Executor threads for connections (they only wait on sockets and parse heads).
    pub threads: usize,
}

/// Default bound on open connections: one per MiB of the memory budget, 64 to 1024.
pub fn default_max_connections(budget: u64) -> usize {
    ((budget >> 20) as usize).clamp(64, 1024)
}

impl Limits {
    pub fn new(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            max_connections_per_ip: (max_connections / 8).max(16),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
            min_rate: 64 << 10,
            write_stall: Duration::from_secs(10),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4),
        }
    }
}

/// What a handler says about a request from its head alone: where the memory for its body
/// comes from, and how many bytes of it each body byte costs (reading and parsing it). The
/// front reserves it as the body arrives and hands the reservation over with the request.
pub struct Admission {
    pub pay: Option<(Arc<crate::memory::Budget>, u64)>,
    /// Where the body goes as it arrives instead of memory (an upload to disk): the front
    /// holds one read buffer of it at a time and hands the sink back with the request.
    pub sink: Option<Box<dyn BodySink>>,
}

impl Admission {
    /// A body read into memory, paid from `pay` as it arrives.
    pub fn in_memory(pay: Option<(Arc<crate::memory::Budget>, u64)>) -> Admission {
        Admission { pay, sink: None }
    }
}

/// Takes a body's bytes in order as they arrive; an error ends the connection with a 507.
pub trait BodySink: Send + std::any::Any {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Back to the handler's own type (`Request::sink`).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

/// The application behind the front: the node's API.
pub trait Handler: Send + Sync + 'static {
    /// Decides from the head whether the body may be read: Ok with what to hold while it is,
    /// or the answer to send instead (413, 503 …; the body is then never read).
    fn admit(&self, head: &RequestHead) -> Result<Admission, Response>;
    /// Answers a request whose body has been read in full.
    fn handle(&self, req: Request) -> impl Future<Output = Response> + Send;
}

#[derive(Debug)]
pub enum HttpError {
    Bind { addr: String, reason: String },
    Start(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Bind { addr, reason } => write!(f, "cannot listen on {addr}: {reason}"),
            HttpError::Start(e) => write!(f, "cannot start the HTTP front: {e}"),
        }
    }
}
impl std::error::Error for HttpError {}


/// The status with which the front at `addr` answers `GET /health` within `within`, or None
/// when it does not answer (nothing listens, or it accepts and stays silent). The one probe
/// of a node's health: PID 1 waits for 200 before it says ready; the watchdog takes any answer.
pub fn health(addr: SocketAddr, within: Duration) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.set_write_timeout(Some(within)).ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got += n,
        }
    }
    let status = std::str::from_utf8(&head[9..12]).ok()?;
    head.starts_with(b"HTTP/1.1 ").then(|| status.parse().ok()).flatten()
}

/// A bound listening socket (bound before the server starts, so its port can be announced).
pub struct Listener {
    inner: TcpListener,
    pub addr: SocketAddr,
}

impl Listener {
    pub fn bind(addr: &str) -> Result<Listener, HttpError> {
        let bind_err = |e: std::io::Error| HttpError::Bind { addr: addr.to_string(), reason: e.to_string() };
        let inner = TcpListener::bind(addr).map_err(bind_err)?;
        // Linux copies TCP_NODELAY to accepted sockets: an answer written as head + body never
        // waits for the client's delayed ACK (D11).
        crate::sys::set_nodelay_inherited(&inner).map_err(|e| HttpError::Bind { addr: addr.to_string(), reason: format!("setsockopt TCP_NODELAY: {e}") })?;
        let addr = inner.local_addr().map_err(bind_err)?;
        Ok(Listener { inner, addr })
    }
}

/// The canned answer to a connection beyond the caps, made once.
fn refused_answer() -> Vec<u8> {
    let mut r = Response::error(503, ErrorCode::TooManyConnections, "this node is at its connection limit");
    let mut bytes = r.head_bytes(false);
    if let Body::Bytes(body) = &r.body {
        bytes.extend_from_slice(body);
    }
    r.finish(false);
    bytes
}

/// A running front.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<smol::channel::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` with `handler` until stopped, within `places` (made from the same
    /// limits: `Places::for_limits`).
    pub fn serve<H: Handler>(listener: Listener, handler: Arc<H>, limits: Limits, places: Arc<Places>) -> Result<Server, HttpError> {
        let addr = listener.addr;
        let listener = smol::Async::new(listener.inner).map_err(|e| HttpError::Start(e.to_string()))?;
        let ex = Arc::new(smol::Executor::<'static>::new());
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let limits = Arc::new(limits);
        let spawner = ex.clone();
        ex.spawn(accept_loop(listener, handler, limits.clone(), places, spawner)).detach();
        let mut threads = Vec::new();
        for i in 0..limits.threads.max(1) {
            let (ex, stop) = (ex.clone(), stop_rx.clone());
            let t = std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || smol::block_on(ex.run(async move { let _ = stop.recv().await; })))
                .map_err(|e| HttpError::Start(format!("executor thread: {e}")))?;
            threads.push(t);
        }
        Ok(Server { addr, stop: Some(stop_tx), threads })
    }

    /// Stops serving (connections in progress are dropped) and joins the threads.
    pub fn stop(mut self) {
        self.stop.take();
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }

    /// Blocks until the front stops.
    pub fn wait(mut self) {
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }
}

async fn accept_loop<H: Handler>(
    listener: smol::Async<TcpListener>,
    handler: Arc<H>,
    limits: Arc<Limits>,
    places: Arc<Places>,
    ex: Arc<smol::Executor<'static>>,
) {
    let refused = refused_answer();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning.
                log!("http: accept: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        match places.admit(peer.ip().to_canonical()) {
            Some(place) => {
                let (handler, limits, places) = (handler.clone(), limits.clone(), places.clone());
                ex.spawn(conn::serve(stream, peer, handler, limits, place, places)).detach();
            }
            None => refuse(stream, &refused, &places, limits.min_rate, &ex),
        }
    }
}

/// Answers a connection beyond the caps with a canned 503 and closes it. The answer goes out
/// at once (a fresh socket's send buffer is empty); the socket then lingers as an answered
/// connection does (conn::linger), so that closing does not reset the connection before the
/// client has read the answer. Lingering is itself capped (places.rs).
fn refuse(stream: smol::Async<TcpStream>, answer: &[u8], places: &Places, min_rate: u64, ex: &smol::Executor<'static>) {
    use std::io::Write;
    let mut socket: &TcpStream = stream.get_ref();
    let _ = socket.write(answer);
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    let Some(lingering) = places.linger() else { return };
    ex.spawn(async move {
        conn::linger(&stream, min_rate).await;
        drop(lingering);
    })
    .detach();
}
