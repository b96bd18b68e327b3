//! Incoming connections still in their handshake: at most `max_total` (32 by default), and
//! `MAX_PER_IP` per source address. When a newcomer finds its address's places or all places
//! taken, it displaces one in its way: a silent one first (nothing received, nothing waiting in
//! the kernel; the oldest), else the one older than `GRACE` that has received least (ties: the
//! oldest). Only when every one in its way has spoken and is younger than `GRACE` is it refused.
//! An honest dialer's first bytes arrive right behind its TCP handshake, so an attacker who
//! opens TCP connections to the peer port and says nothing, from however many addresses and
//! however fast, never keeps out a peer that speaks: a silent connection is ended for the next
//! newcomer (handshakes.rs ends it, libp2p cannot). Silent ones have no grace: with one, a
//! flood faster than `max_total` per `GRACE` kept every place young and refused everyone.

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
/// A handshake that has spoken and is younger than this is never ended for a newcomer: an
/// honest one takes milliseconds on a LAN, a few round trips beyond it.
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
    /// if it must; refused when every one in its way has spoken and is younger than `GRACE`.
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

    /// Ends the handshake (from `ip`, or from anywhere) whose socket the transport registered
    /// that is silent (the oldest), else the one older than `GRACE` that received least.
    fn displace(&mut self, ip: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let victim = self
            .pending
            .iter()
            .filter(|(_, p)| ip.is_none_or(|i| p.ip == i))
            .filter_map(|(id, p)| Some((*id, self.handshakes.received(&p.from)?, p.since)))
            .filter(|&(_, received, since)| received == 0 || now.duration_since(since) >= GRACE)
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
    fn newcomers_displace_silent_handshakes_at_once_and_speaking_ones_only_past_the_grace() {
        let h = Handshakes::default();
        let mut g = PendingPerIp::new(8, h.clone());
        // One address: its four places, silent; a fifth ends the oldest of them at once.
        open(&mut g, &h, 9, MAX_PER_IP, 0, 0).unwrap();
        open(&mut g, &h, 9, 1, 0, 4).unwrap();
        assert_eq!(g.displaced, 1);
        assert!(h.received(&addr(9, 0)).is_none(), "the oldest silent one was ended");
        // Another address fills the rest with handshakes that spoke.
        open(&mut g, &h, 7, 2, 5, 10).unwrap();
        open(&mut g, &h, 7, 2, 9, 12).unwrap();
        // All places taken: newcomers end the silent ones, oldest first, never one that spoke.
        open(&mut g, &h, 6, 4, 3, 20).unwrap();
        assert_eq!(g.displaced, 5);
        assert!((1..5).all(|i| h.received(&addr(9, i)).is_none()), "the silent ones were ended");
        assert!((10..14).all(|i| h.received(&addr(7, i)).is_some()), "the speaking ones stay");
        // Every place has spoken and is young: a newcomer is refused, from anywhere.
        assert!(open(&mut g, &h, 5, 1, 0, 30).is_err());
        assert!(open(&mut g, &h, 7, 1, 0, 31).is_err());
        // Past the grace, a newcomer ends the one that said least (ties: the oldest).
        std::thread::sleep(GRACE + Duration::from_millis(20));
        open(&mut g, &h, 5, 1, 0, 40).unwrap();
        assert!(h.received(&addr(6, 20)).is_none(), "3 bytes, the oldest of those");
        assert!((21..24).all(|i| h.received(&addr(6, i)).is_some()));
        assert!((10..14).all(|i| h.received(&addr(7, i)).is_some()));
        // A handshake that ended gives its place back: the next newcomer ends nobody.
        g.done(ConnectionId::new_unchecked(21));
        open(&mut g, &h, 4, 1, 0, 50).unwrap();
        assert_eq!(g.displaced, 6);
    }

    #[test]
    fn bytes_waiting_in_the_kernel_count_as_spoken() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut dialer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, from) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let from: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", from.port()).parse().unwrap();
        let h = Handshakes::default();
        h.register(from.clone(), accepted.try_clone().unwrap());
        assert_eq!(h.received(&from), Some(0), "silent, and the peek did not block");
        dialer.write_all(b"/multistream/1.0.0\n").unwrap();
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        while h.received(&from) == Some(0) && std::time::Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(h.received(&from), Some(19), "unread bytes are seen");
    }
}
