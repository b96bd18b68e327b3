//! Incoming TCP connections in their handshake, as the transport sees them: the bytes each has
//! sent so far, and a way to end one. libp2p cannot abort a pending connection from a
//! behaviour, so the transport registers each incoming socket here (by the address it comes
//! from, which the swarm names the same way) and the gate that caps handshakes
//! (`pending_per_ip.rs`) ends the one that has said least to make room for a newcomer: a
//! silent connection never keeps out a peer that speaks.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::io::{AsyncRead, AsyncWrite};
use libp2p::core::ConnectedPoint;
use libp2p::Multiaddr;

/// Entries at most (twice the handshake cap: ended ones leave as their events arrive), and
/// how long one may stay without its end being heard of (beyond the handshake timeout).
const MAX_ENTRIES: usize = 256;
const STALE: Duration = Duration::from_secs(30);
/// Bytes waiting in the kernel looked at, at most: enough to tell silence from speech.
const PEEK: usize = 64;

/// Bytes waiting on `socket`, up to `PEEK`. Never blocks: the handle is a duplicate of the
/// transport's socket, and O_NONBLOCK (which async-io sets) belongs to the open file both share.
fn waiting(socket: &std::net::TcpStream) -> u64 {
    let mut buf = [0u8; PEEK];
    socket.peek(&mut buf).map_or(0, |n| n as u64)
}

struct Entry {
    received: Arc<AtomicU64>,
    /// A second handle on the socket, to shut it down (None in unit tests).
    socket: Option<std::net::TcpStream>,
    since: Instant,
}

/// The table, shared by the transport (which fills it) and the gate (which reads and ends).
#[derive(Clone, Default)]
pub struct Handshakes(Arc<Mutex<HashMap<Multiaddr, Entry>>>);

impl Handshakes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Multiaddr, Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An incoming socket from `from` starts its handshake: counted from here.
    fn opened(&self, from: Multiaddr, socket: Option<std::net::TcpStream>) -> Arc<AtomicU64> {
        let received = Arc::new(AtomicU64::new(0));
        let mut t = self.lock();
        let now = Instant::now();
        t.retain(|_, e| now.duration_since(e.since) < STALE);
        if t.len() >= MAX_ENTRIES {
            if let Some(oldest) = t.iter().min_by_key(|(_, e)| e.since).map(|(a, _)| a.clone()) {
                t.remove(&oldest);
            }
        }
        t.insert(from, Entry { received: received.clone(), socket, since: now });
        received
    }

    /// Bytes received from `from` so far, read or waiting in the kernel (up to `PEEK` of
    /// those), if its socket is in its handshake. The kernel's share matters: a dialer's first
    /// bytes travel right behind its TCP handshake, but the upgrade task that reads them may
    /// not have run yet on a loaded node, and a peer that spoke is not a silent one.
    pub fn received(&self, from: &Multiaddr) -> Option<u64> {
        self.lock().get(from).map(|e| e.received.load(Relaxed) + e.socket.as_ref().map_or(0, waiting))
    }

    /// The handshake from `from` ended (established or failed): its second handle closes.
    pub fn ended(&self, from: &Multiaddr) {
        self.lock().remove(from);
    }

    /// Ends the handshake from `from` by shutting its socket down (the upgrade then fails and
    /// the swarm drops it). False if it is not here.
    pub fn end(&self, from: &Multiaddr) -> bool {
        match self.lock().remove(from) {
            Some(e) => {
                if let Some(s) = e.socket {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
                true
            }
            None => false,
        }
    }

    /// What the transport does with each TCP socket: an incoming one is registered and counted.
    pub fn watch(&self, socket: libp2p::tcp::async_io::TcpStream, endpoint: ConnectedPoint) -> Counted {
        let received = match endpoint {
            ConnectedPoint::Listener { send_back_addr, .. } => Some(self.opened(send_back_addr, socket.get_ref().try_clone().ok())),
            ConnectedPoint::Dialer { .. } => None,
        };
        Counted { inner: socket, received }
    }

    #[cfg(test)]
    pub fn register(&self, from: Multiaddr, socket: std::net::TcpStream) {
        self.opened(from, Some(socket));
    }

    #[cfg(test)]
    pub fn fake(&self, from: &str, received: u64) {
        self.opened(from.parse().unwrap(), None).store(received, Relaxed);
    }
}

/// A TCP socket that counts what it receives (incoming ones only).
pub struct Counted {
    inner: libp2p::tcp::async_io::TcpStream,
    received: Option<Arc<AtomicU64>>,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(r)) = (&polled, &self.received) {
            r.fetch_add(*n as u64, Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
