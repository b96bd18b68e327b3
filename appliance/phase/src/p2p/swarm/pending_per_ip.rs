//! Incoming connections still in their handshake: at most `max_total` (32 by default), and
//! `MAX_PER_IP` per source address. When a newcomer finds its address's places or all places
//! taken, it displaces the handshake in its way that has received least (ties: the oldest),
//! among those older than `GRACE`; only when every one in the way is younger is it refused. An
//! attacker who opens TCP connections to the peer port and says nothing, from however many
//! addresses, therefore never keeps out a peer that speaks: a silent connection is ended for
//! the next newcomer (handshakes.rs ends it, libp2p cannot).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionDenied, ConnectionId};
use libp2p::Multiaddr;

use super::gates::Refused;
use super::handshakes::Handshakes;

/// Incoming connections in their handshake from one address, at most.
pub const MAX_PER_IP: usize = 4;
/// A handshake younger than this is never ended for a newcomer: an honest one takes
/// milliseconds on a LAN, and every newcomer gets at least this long.
const GRACE: Duration = Duration::from_millis(200);

struct Pending {
    ip: IpAddr,
    from: Multiaddr,
    since: Instant,
}

pub struct PendingPerIp {
    max_total: usize,
    handshakes: Handshakes,
    pending: HashMap<ConnectionId, Pending>,
    per_ip: HashMap<IpAddr, usize>,
    /// Handshakes ended to make room (for the tests).
    displaced: u64,
}

/// The IP address a multiaddr starts with (none for a relay circuit's `/p2p/…`).
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    }
}

impl PendingPerIp {
    pub fn new(max_total: usize, handshakes: Handshakes) -> PendingPerIp {
        PendingPerIp { max_total: max_total.max(1), handshakes, pending: HashMap::new(), per_ip: HashMap::new(), displaced: 0 }
    }

    /// The handshake ended: established, failed, timed out, refused or displaced.
    pub fn done(&mut self, id: ConnectionId) {
        if let Some(p) = self.pending.remove(&id) {
            if let Some(n) = self.per_ip.get_mut(&p.ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&p.ip);
                }
            }
        }
    }

    /// An incoming connection from `remote` starts its handshake, displacing one in its way
    /// if it must; refused when every one in its way is younger than `GRACE`.
    pub fn incoming(&mut self, id: ConnectionId, remote: &Multiaddr) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else { return Ok(()) };
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= MAX_PER_IP && !self.displace(Some(ip)) {
            return Err(ConnectionDenied::new(Refused::TooManyHandshakes(ip)));
        }
        if self.pending.len() >= self.max_total && !self.displace(None) {
            return Err(ConnectionDenied::new(Refused::AllHandshakePlacesBusy(self.max_total)));
        }
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.pending.insert(id, Pending { ip, from: remote.clone(), since: Instant::now() });
        Ok(())
    }

    /// Ends the handshake (from `ip`, or from anywhere) that has received least, among those
    /// older than `GRACE` whose socket the transport registered.
    fn displace(&mut self, ip: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let victim = self
            .pending
            .iter()
            .filter(|(_, p)| ip.is_none_or(|i| p.ip == i) && now.duration_since(p.since) >= GRACE)
            .filter_map(|(id, p)| Some((*id, self.handshakes.received(&p.from)?, p.since)))
            .min_by_key(|&(_, received, since)| (received, since))
            .map(|(id, ..)| id);
        let Some(id) = victim else { return false };
        if let Some(p) = self.pending.get(&id) {
            self.handshakes.end(&p.from);
        }
        self.done(id);
        self.displaced += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: u8, port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.{ip}/tcp/{port}").parse().unwrap()
    }

    /// `n` handshakes from 10.0.0.`ip` that have received `got` bytes, registered as the
    /// transport would, ids from `first`.
    fn open(g: &mut PendingPerIp, h: &Handshakes, ip: u8, n: usize, got: u64, first: usize) -> Result<(), ()> {
        for i in 0..n {
            let a = addr(ip, (first + i) as u16);
            h.fake(&a.to_string(), got);
            g.incoming(ConnectionId::new_unchecked(first + i), &a).map_err(|_| ())?;
        }
        Ok(())
    }

    #[test]
    fn newcomers_displace_the_silent_handshakes_in_their_way_never_young_ones() {
        let h = Handshakes::default();
        let mut g = PendingPerIp::new(8, h.clone());
        // One address: its four places, then a fifth while they are young is refused.
        open(&mut g, &h, 9, MAX_PER_IP, 0, 0).unwrap();
        assert!(open(&mut g, &h, 9, 1, 0, 100).is_err(), "young handshakes are not displaced");
        // Another address fills the rest; all places taken and young: refused.
        open(&mut g, &h, 7, 4, 5, 10).unwrap();
        assert!(open(&mut g, &h, 6, 1, 0, 101).is_err());
        // Once past the grace, a newcomer ends the one that said least (the silent ones of
        // 10.0.0.9, oldest first), never one that spoke.
        std::thread::sleep(GRACE + Duration::from_millis(20));
        open(&mut g, &h, 6, 4, 0, 200).unwrap();
        assert_eq!(g.displaced, 4);
        assert!((10..14).all(|i| h.received(&addr(7, i as u16)) == Some(5)), "the speaking handshakes stay");
        assert!((0..4).all(|i| h.received(&addr(9, i as u16)).is_none()), "the silent ones were ended");
        // Its own address's places: a newcomer from 10.0.0.6 displaces nothing young.
        assert!(open(&mut g, &h, 6, 1, 0, 300).is_err());
        // A handshake that ended gives its place back.
        g.done(ConnectionId::new_unchecked(200));
        open(&mut g, &h, 6, 1, 0, 301).unwrap();
    }
}
