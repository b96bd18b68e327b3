//! Incoming connections still in their handshake, capped per source address.
//!
//! connection_limits caps them in all (32): an attacker who opens TCP connections to the peer
//! port and says nothing keeps that many places taken, each for the handshake timeout, and an
//! honest peer that dials meanwhile is refused. Per address, such connections get
//! `MAX_PER_IP` places, so one address (or a few) cannot take them all.

use std::collections::HashMap;
use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionDenied, ConnectionId};
use libp2p::Multiaddr;

use super::gates::Refused;

/// Incoming connections in their handshake from one address, at most.
pub const MAX_PER_IP: usize = 4;

#[derive(Default)]
pub struct PendingPerIp {
    pending: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
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
    /// The handshake ended: established, failed, timed out or refused.
    pub fn done(&mut self, id: ConnectionId) {
        if let Some(ip) = self.pending.remove(&id) {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }
}

impl PendingPerIp {
    /// An incoming connection from `remote` starts its handshake: refused beyond `MAX_PER_IP`.
    pub fn incoming(&mut self, id: ConnectionId, remote: &Multiaddr) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else { return Ok(()) };
        let n = self.per_ip.entry(ip).or_insert(0);
        if *n >= MAX_PER_IP {
            return Err(ConnectionDenied::new(Refused::TooManyHandshakes(ip)));
        }
        *n += 1;
        self.pending.insert(id, ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_its_share_of_handshake_places_and_they_come_back() {
        let mut g = PendingPerIp::default();
        let (a, b): (Multiaddr, Multiaddr) = ("/ip4/10.0.0.9/tcp/5000".parse().unwrap(), "/ip4/10.0.0.7/tcp/5000".parse().unwrap());
        for i in 0..MAX_PER_IP {
            assert!(g.incoming(ConnectionId::new_unchecked(i), &a).is_ok());
        }
        assert!(g.incoming(ConnectionId::new_unchecked(100), &a).is_err(), "the fifth from one address");
        assert!(g.incoming(ConnectionId::new_unchecked(101), &b).is_ok(), "another address is not held up");
        g.done(ConnectionId::new_unchecked(0));
        assert!(g.incoming(ConnectionId::new_unchecked(102), &a).is_ok(), "a place given back");
    }
}
