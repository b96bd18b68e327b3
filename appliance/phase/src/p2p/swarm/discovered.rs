//! When to dial the peers discovery found (mDNS on the LAN, the DHT), until they are connected.
//!
//! Two peers that find each other in the same instant (mDNS on a LAN, a PXE wave, the same DHT
//! answer) and dial each other from their listening ports make one TCP connection by
//! simultaneous open, on which both start the Noise handshake as initiator, and both fail. So
//! the smaller peer id dials at once and the larger only after `YIELD` if still unconnected
//! (a one-way firewall); failed dials are retried, `RETRY` apart doubling up to `RETRY_MAX`:
//! LAN peers until connected (mDNS reports a peer once, so nothing else would try again), DHT
//! peers `DHT_TRIES` times in all. Bootstrap peers are dialled the same way after their first
//! dial, until connected, and again whenever their last connection closes (later each time
//! while their connections keep closing soon, `BootstrapPeer`): a node whose
//! bootstrap peer was busy, down or flooded when it started joins when it can, not at the next
//! DHT bootstrap five minutes later.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

pub const YIELD: Duration = Duration::from_secs(3);
pub const RETRY: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);
pub const DHT_TRIES: u32 = 3;

struct Found {
    addrs: Vec<Multiaddr>,
    next: Instant,
    tries: u32,
    /// None: until connected (a LAN peer).
    max_tries: Option<u32>,
}

/// A bootstrap peer's connection that lasted less than this was closed on us (a peer at its
/// connection cap, one restarting in a loop): the next dial waits twice as long as the last.
pub const STEADY: Duration = Duration::from_secs(60);

/// A peer the operator named (`--bootstrap`), dialled again whenever its last connection
/// closes: 1 s later after a steady connection, doubling up to `RETRY_MAX` while each lasts
/// less than `STEADY`, so a peer that keeps closing on us is not hammered.
pub struct BootstrapPeer {
    pub peer: PeerId,
    pub addr: Multiaddr,
    connected_at: Option<Instant>,
    closes: u32,
}

impl BootstrapPeer {
    pub fn new(peer: PeerId, addr: Multiaddr) -> BootstrapPeer {
        BootstrapPeer { peer, addr, connected_at: None, closes: 0 }
    }

    /// Its first connection is up.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// Its last connection closed at `now`: when to dial it again.
    pub fn closed(&mut self, now: Instant) -> Instant {
        let short = self.connected_at.take().is_none_or(|at| now.duration_since(at) < STEADY);
        self.closes = if short { self.closes.saturating_add(1) } else { 0 };
        now + (RETRY * 2u32.pow(self.closes.min(5))).min(RETRY_MAX)
    }
}

/// Peers found and not connected yet, at most `max`, each with at most `max_addrs` addresses.
pub struct Discovered {
    me: PeerId,
    max: usize,
    max_addrs: usize,
    peers: HashMap<PeerId, Found>,
}

impl Discovered {
    pub fn new(me: PeerId, max: usize, max_addrs: usize) -> Discovered {
        Discovered { me, max, max_addrs, peers: HashMap::new() }
    }

    /// Takes note of `peer` found at `addrs` (`lan`: by mDNS, retried until connected).
    pub fn found(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>, lan: bool, now: Instant) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.max {
            return;
        }
        let first = if self.me < peer { now } else { now + YIELD };
        let f = self.peers.entry(peer).or_insert_with(|| Found { addrs: Vec::new(), next: first, tries: 0, max_tries: Some(DHT_TRIES) });
        if lan {
            f.max_tries = None;
        }
        for a in addrs {
            if !f.addrs.contains(&a) && f.addrs.len() < self.max_addrs {
                f.addrs.push(a);
            }
        }
    }

    /// A bootstrap peer dialled already (or whose last connection closed): dialled again at
    /// `at`, then `RETRY` apart doubling, until connected. Not bounded by `max`: the
    /// operator's list is.
    pub fn bootstrap(&mut self, peer: PeerId, addr: Multiaddr, at: Instant) {
        let f = self.peers.entry(peer).or_insert_with(|| Found { addrs: Vec::new(), next: at, tries: 0, max_tries: None });
        f.next = f.next.max(at);
        f.max_tries = None;
        if !f.addrs.contains(&addr) && f.addrs.len() < self.max_addrs {
            f.addrs.push(addr);
        }
    }

    /// The peer is dialled no more: mDNS let its records expire, or a bootstrap peer connected.
    pub fn lost(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// The peers to dial now, with their addresses; forgets those `connected` or out of tries
    /// and schedules the next try of the others.
    pub fn due(&mut self, now: Instant, connected: impl Fn(&PeerId) -> bool) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.peers.retain(|peer, f| !connected(peer) && f.max_tries.is_none_or(|m| f.tries < m));
        let mut due = Vec::new();
        for (peer, f) in self.peers.iter_mut().filter(|(_, f)| f.next <= now) {
            due.push((*peer, f.addrs.clone()));
            f.next = now + (RETRY * 2u32.pow(f.tries.min(5))).min(RETRY_MAX);
            f.tries = f.tries.saturating_add(1);
        }
        due
    }

    /// When the next dial is due, if any.
    pub fn next(&self) -> Option<Instant> {
        self.peers.values().map(|f| f.next).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (PeerId, PeerId) {
        let (a, b) = (PeerId::random(), PeerId::random());
        if a < b { (a, b) } else { (b, a) }
    }

    fn addr() -> Multiaddr {
        "/ip4/10.0.0.2/tcp/4001".parse().unwrap()
    }

    #[test]
    fn the_smaller_peer_dials_at_once_the_larger_after_yield() {
        let (small, large) = pair();
        let now = Instant::now();
        let (mut at_small, mut at_large) = (Discovered::new(small, 8, 4), Discovered::new(large, 8, 4));
        at_small.found(large, [addr()], true, now);
        at_large.found(small, [addr()], true, now);
        assert_eq!(at_small.due(now, |_| false).len(), 1, "the smaller dials at once");
        assert!(at_large.due(now, |_| false).is_empty(), "the larger waits");
        assert!(at_large.due(now + YIELD - Duration::from_millis(1), |_| false).is_empty());
        assert_eq!(at_large.due(now + YIELD, |_| false), vec![(small, vec![addr()])], "then dials, if still unconnected");
    }

    #[test]
    fn lan_peers_are_retried_until_connected_dht_peers_a_few_times() {
        let (me, lan) = pair();
        let dht = loop {
            let p = PeerId::random();
            if me < p {
                break p;
            }
        };
        let mut d = Discovered::new(me, 8, 4);
        let mut now = Instant::now();
        d.found(lan, [addr()], true, now);
        d.found(dht, [addr()], false, now);
        let mut dials: HashMap<PeerId, u32> = HashMap::new();
        let mut gaps = Vec::new();
        for _ in 0..10 {
            for (p, _) in d.due(now, |_| false) {
                *dials.entry(p).or_default() += 1;
            }
            let next = d.next().unwrap();
            gaps.push(next - now);
            now = next;
        }
        assert_eq!(dials[&dht], DHT_TRIES, "a DHT peer: {DHT_TRIES} dials in all");
        assert!(dials[&lan] >= 8, "a LAN peer keeps being dialled: {dials:?}");
        assert!(gaps.iter().all(|g| *g <= RETRY_MAX), "{gaps:?}");
        assert!(gaps.contains(&RETRY) && gaps.contains(&RETRY_MAX), "backoff from {RETRY:?} doubling to {RETRY_MAX:?}: {gaps:?}");
        // Connected: forgotten; expired from mDNS: forgotten.
        assert!(d.due(now, |p| *p == lan).is_empty() && d.next().is_none());
        d.found(lan, [addr()], true, now);
        d.lost(&lan);
        assert!(d.next().is_none());
    }

    #[test]
    fn the_table_and_the_addresses_are_bounded() {
        let me = PeerId::random();
        let mut d = Discovered::new(me, 2, 2);
        let now = Instant::now();
        for _ in 0..5 {
            d.found(PeerId::random(), [addr()], true, now);
        }
        assert_eq!(d.peers.len(), 2);
        let p = *d.peers.keys().next().unwrap();
        d.found(p, (1..9).map(|i| format!("/ip4/10.0.0.{i}/tcp/1").parse().unwrap()), true, now);
        assert_eq!(d.peers[&p].addrs.len(), 2);
    }

    #[test]
    fn bootstrap_peers_are_dialled_again_until_connected() {
        let (me, peer) = pair();
        let mut d = Discovered::new(peer, 8, 4);
        let now = Instant::now();
        d.bootstrap(me, addr(), now + RETRY);
        assert!(d.due(now, |_| false).is_empty(), "the first dial went already");
        let mut at = now + RETRY;
        let mut gaps = Vec::new();
        for _ in 0..8 {
            assert_eq!(d.due(at, |_| false), vec![(me, vec![addr()])]);
            let next = d.next().unwrap();
            gaps.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(gaps, [1, 2, 4, 8, 16, 30, 30, 30], "doubling up to RETRY_MAX, never giving up");
        assert!(d.due(at, |p| *p == me).is_empty(), "connected: forgotten");
        assert!(d.next().is_none());
    }

    #[test]
    fn a_bootstrap_peer_that_keeps_closing_on_us_is_dialled_ever_later() {
        let mut b = BootstrapPeer::new(PeerId::random(), addr());
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..7 {
            b.connected(now);
            now += Duration::from_millis(100);
            let next = b.closed(now);
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
        b.connected(now);
        now += STEADY;
        assert_eq!(b.closed(now) - now, RETRY, "after a steady connection, 1 s again");
    }
}
