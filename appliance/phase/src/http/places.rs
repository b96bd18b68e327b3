//! The front's places: open connections in total and per source address, and what each is
//! doing. At a cap a newcomer is not simply refused: it displaces the connection that has done
//! the least (fewest bytes received per second of its life) among those that are only waiting
//! for a client (reading a head or a body, or idle between requests), so connections that make
//! no progress never keep a client that speaks out. A connection whose request is being
//! handled or answered is never displaced. Connections younger than `GRACE` are not displaced
//! either, so a client gets to send its request before the next newcomer comes.
//!
//! Connections that have been answered and are closing (lingering so that the close does not
//! reset the answer) have places of their own, `MAX_LINGERING` at most.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A connection this young is not displaced.
const GRACE: Duration = Duration::from_millis(200);
/// Connections lingering at once after their last answer (beyond: closed at once).
pub const MAX_LINGERING: usize = 64;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for the first byte of a request (a new or kept-alive connection).
    Idle = 0,
    /// Reading a request head.
    Head = 1,
    /// Reading a request body.
    Body = 2,
    /// Its request is being handled.
    Busy = 3,
    /// Its answer is being written.
    Writing = 4,
}

impl Phase {
    fn displaceable(self) -> bool {
        matches!(self, Phase::Idle | Phase::Head | Phase::Body)
    }
}

/// One open connection, as the places see it.
pub struct Conn {
    id: u64,
    ip: IpAddr,
    opened: Instant,
    received: AtomicU64,
    phase: AtomicU8,
    /// Dropped (closing the channel) when the connection is displaced.
    displace: Mutex<Option<smol::channel::Sender<()>>>,
}

impl Conn {
    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }

    pub fn received(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Relaxed);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Relaxed) {
            0 => Phase::Idle,
            1 => Phase::Head,
            2 => Phase::Body,
            3 => Phase::Busy,
            _ => Phase::Writing,
        }
    }

    /// Bytes per second over its life (what ranks it for displacement).
    fn rate(&self, now: Instant) -> u64 {
        let age = now.duration_since(self.opened).as_millis().max(1000) as u64;
        self.received.load(Relaxed).saturating_mul(1000) / age
    }
}

/// A connection's place; given back when dropped (unless it was displaced, which gave it back).
pub struct Place {
    places: Arc<Places>,
    pub conn: Arc<Conn>,
    /// Closed when the connection is displaced.
    pub displaced: smol::channel::Receiver<()>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.places.remove(self.conn.id);
    }
}

/// A lingering place; given back when dropped.
pub struct Lingering(Arc<AtomicUsize>);

impl Drop for Lingering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[derive(Default)]
struct Inner {
    conns: HashMap<u64, Arc<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
    next: u64,
}

pub struct Places {
    max_total: usize,
    max_per_ip: usize,
    inner: Mutex<Inner>,
    lingering: Arc<AtomicUsize>,
    displaced: AtomicU64,
}

impl Places {
    /// The places of a front with these limits.
    pub fn for_limits(limits: &super::Limits) -> Arc<Places> {
        Places::new(limits.max_connections, limits.max_connections_per_ip)
    }

    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Places> {
        Arc::new(Places { max_total: max_total.max(1), max_per_ip: max_per_ip.max(1), inner: Mutex::default(), lingering: Arc::default(), displaced: AtomicU64::new(0) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `ip`: free, or taken from the connection that has done
    /// the least (of `ip`'s own at the per-address cap, of anyone's at the total cap); None
    /// when every connection in the way is busy or new.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Place> {
        let mut inner = self.lock();
        let now = Instant::now();
        let mine = inner.per_ip.get(&ip).copied().unwrap_or(0);
        let full = if mine >= self.max_per_ip {
            Some(Some(ip))
        } else if inner.conns.len() >= self.max_total {
            Some(None)
        } else {
            None
        };
        if let Some(only) = full {
            let victim = inner
                .conns
                .values()
                .filter(|c| only.is_none_or(|ip| c.ip == ip) && c.phase().displaceable() && now.duration_since(c.opened) >= GRACE)
                .min_by_key(|c| (c.rate(now), c.opened))
                .cloned()?;
            Self::take_out(&mut inner, victim.id);
            victim.displace.lock().unwrap_or_else(|p| p.into_inner()).take();
            self.displaced.fetch_add(1, Relaxed);
        }
        let id = inner.next;
        inner.next += 1;
        let (tx, rx) = smol::channel::bounded(1);
        let conn = Arc::new(Conn { id, ip, opened: now, received: AtomicU64::new(0), phase: AtomicU8::new(Phase::Idle as u8), displace: Mutex::new(Some(tx)) });
        inner.conns.insert(id, conn.clone());
        *inner.per_ip.entry(ip).or_default() += 1;
        Some(Place { places: self.clone(), conn, displaced: rx })
    }

    fn take_out(inner: &mut Inner, id: u64) {
        if let Some(c) = inner.conns.remove(&id) {
            match inner.per_ip.get_mut(&c.ip) {
                Some(n) if *n > 1 => *n -= 1,
                _ => {
                    inner.per_ip.remove(&c.ip);
                }
            }
        }
    }

    fn remove(&self, id: u64) {
        Self::take_out(&mut self.lock(), id);
    }

    /// A place to linger in after the last answer, if one is free.
    pub fn linger(&self) -> Option<Lingering> {
        if self.lingering.fetch_add(1, Relaxed) >= MAX_LINGERING {
            self.lingering.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Lingering(self.lingering.clone()))
    }

    /// (open connections, connections displaced so far), for metrics.
    pub fn counts(&self) -> (usize, u64) {
        (self.lock().conns.len(), self.displaced.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_displaces_the_least_active_waiting_connection_never_a_busy_one() {
        let places = Places::new(3, 2);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = places.admit(a).unwrap();
        let second = places.admit(a).unwrap();
        // Too young to be displaced: at its per-address cap, `a` is refused for now.
        assert!(places.admit(a).is_none());
        std::thread::sleep(GRACE);
        second.conn.received(100_000);
        first.conn.set(Phase::Body);
        // `a` displaces its own least active connection (the first: no bytes).
        let third = places.admit(a).unwrap();
        assert!(first.displaced.is_closed() && !second.displaced.is_closed());
        drop(first);
        assert_eq!(places.counts(), (2, 1), "the displaced place was given back once");
        // At the total cap another address displaces too, but never a connection being served.
        let other = places.admit(b).unwrap();
        assert_eq!(places.counts().0, 3);
        for p in [&second, &third, &other] {
            p.conn.set(Phase::Busy);
        }
        std::thread::sleep(GRACE);
        assert!(places.admit(b).is_none(), "everyone is being served");
        third.conn.set(Phase::Idle);
        let fourth = places.admit(b).unwrap();
        assert!(third.displaced.is_closed());
        drop((second, third, other, fourth));
        assert_eq!(places.counts(), (0, 2));
    }

    #[test]
    fn lingering_places_are_capped() {
        let places = Places::new(1, 1);
        let held: Vec<_> = (0..MAX_LINGERING).map(|_| places.linger().unwrap()).collect();
        assert!(places.linger().is_none());
        drop(held);
        assert!(places.linger().is_some());
    }
}
