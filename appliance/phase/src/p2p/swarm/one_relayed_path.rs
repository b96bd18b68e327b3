//! At most one relayed connection per pair of peers when both dial at once.
//!
//! Two NATed peers that learn of each other together (the relay's DHT table, or one's job and
//! the other's discovery) each dial through the relay. Every relayed connection starts a DCUtR
//! hole punch, so two of them start two punches at once, one per direction; their simultaneous
//! TCP opens cross (both sides act as the dialer on the one TCP connection that forms) and both
//! fail. The failed connection then leaves its address pair in TIME_WAIT for a minute, so every
//! punch retried before that falls back to a fresh port the NAT has no hole for. Measured: one
//! run in twenty of the NAT test under load.
//!
//! So both ends keep the relayed connection dialed by the smaller peer id: a relayed connection
//! dialed by the larger one is refused while the smaller one has its own relayed connection
//! established or a dial to that peer under way (for `DIAL_WINDOW`: a dial still pending then
//! is stuck on an address that does not answer, and must not lock the larger peer out). Both
//! ends apply the same rule, and the smaller peer knows of its own dial before the larger one's
//! connection reaches it. Retries of the smaller peer (same direction) are never refused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionDenied, ConnectionId};
use libp2p::{Multiaddr, PeerId};

use super::gates::Refused;

pub struct OneRelayedPath {
    me: PeerId,
    /// Relayed connections established, by peer: which, and whether the smaller id dialed it.
    relayed: HashMap<PeerId, HashMap<ConnectionId, bool>>,
    /// Our dials under way, by peer (any address: a dial may end on a circuit).
    dialing: HashMap<PeerId, HashMap<ConnectionId, Instant>>,
}

/// How long our own pending dial to a larger peer holds its relayed connections off: a relayed
/// dial succeeds within a few round trips through the relay.
const DIAL_WINDOW: Duration = Duration::from_secs(5);

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

impl OneRelayedPath {
    pub fn new(me: PeerId) -> Self {
        OneRelayedPath { me, relayed: HashMap::new(), dialing: HashMap::new() }
    }

    /// Admits a new relayed connection with `peer` that `we_dialed` (or it did).
    fn admit(&mut self, id: ConnectionId, peer: PeerId, we_dialed: bool) -> Result<(), ConnectionDenied> {
        let we_are_smaller = self.me < peer;
        let by_smaller = we_dialed == we_are_smaller;
        let kept = self.relayed.get(&peer).is_some_and(|c| c.values().any(|s| *s));
        let our_dial_pending = we_are_smaller && self.dialing.get(&peer).is_some_and(|d| d.iter().any(|(c, at)| *c != id && at.elapsed() < DIAL_WINDOW));
        if !by_smaller && (kept || our_dial_pending) {
            return Err(ConnectionDenied::new(Refused::CrossedRelayedDial(peer)));
        }
        self.relayed.entry(peer).or_default().insert(id, by_smaller);
        Ok(())
    }

    fn dial_over(&mut self, peer: &PeerId, id: ConnectionId) {
        if let Some(d) = self.dialing.get_mut(peer) {
            d.remove(&id);
            if d.is_empty() {
                self.dialing.remove(peer);
            }
        }
    }
}

impl OneRelayedPath {
    /// We dial `peer` (any address: the dial may end on a circuit).
    pub fn dialing(&mut self, id: ConnectionId, peer: PeerId) {
        self.dialing.entry(peer).or_default().insert(id, Instant::now());
    }

    /// A connection `peer` dialed is up (`local_addr`: ours); refused if it is a crossing
    /// relayed one.
    pub fn inbound(&mut self, id: ConnectionId, peer: PeerId, local_addr: &Multiaddr) -> Result<(), ConnectionDenied> {
        match is_relayed(local_addr) {
            true => self.admit(id, peer, false),
            false => Ok(()),
        }
    }

    /// A connection we dialed is up (to `addr`); refused if it is a crossing relayed one.
    pub fn outbound(&mut self, id: ConnectionId, peer: PeerId, addr: &Multiaddr) -> Result<(), ConnectionDenied> {
        self.dial_over(&peer, id);
        match is_relayed(addr) {
            true => self.admit(id, peer, true),
            false => Ok(()),
        }
    }

    pub fn dial_failed(&mut self, peer: Option<PeerId>, id: ConnectionId) {
        if let Some(peer) = peer {
            self.dial_over(&peer, id);
        }
    }

    pub fn closed(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(conns) = self.relayed.get_mut(&peer) {
            conns.remove(&id);
            if conns.is_empty() {
                self.relayed.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (PeerId, PeerId) {
        let (a, b) = (PeerId::random(), PeerId::random());
        if a < b { (a, b) } else { (b, a) }
    }

    #[test]
    fn both_ends_keep_the_connection_the_smaller_peer_dialed() {
        let (small, large) = pair();
        let (mut s, mut l) = (OneRelayedPath::new(small), OneRelayedPath::new(large));
        let (by_small, by_large) = (ConnectionId::new_unchecked(1), ConnectionId::new_unchecked(2));
        // Both dial at once: the smaller end sees the larger's connection while its own dial
        // is under way, the larger end sees the smaller's after its own was established.
        s.dialing(by_small, large);
        assert!(s.admit(by_large, large, false).is_err(), "the smaller end refuses the larger's dial");
        assert!(l.admit(by_large, small, true).is_ok());
        assert!(l.admit(by_small, small, false).is_ok(), "the smaller's dial is always taken");
        s.dial_over(&large, by_small);
        assert!(s.admit(by_small, large, true).is_ok());
        // The other order at the larger end: the smaller's connection first, then its own.
        let mut l2 = OneRelayedPath::new(large);
        assert!(l2.admit(by_small, small, false).is_ok());
        assert!(l2.admit(by_large, small, true).is_err(), "the larger end drops its own when the smaller's is there");
        // Retries of the smaller peer, same direction, are never refused.
        assert!(s.admit(ConnectionId::new_unchecked(3), large, true).is_ok());
    }

    #[test]
    fn a_stuck_dial_does_not_lock_the_larger_peer_out() {
        let (small, large) = pair();
        let mut s = OneRelayedPath::new(small);
        let stuck = Instant::now().checked_sub(DIAL_WINDOW + Duration::from_secs(1)).unwrap();
        s.dialing.entry(large).or_default().insert(ConnectionId::new_unchecked(1), stuck);
        assert!(s.admit(ConnectionId::new_unchecked(2), large, false).is_ok());
    }

    #[test]
    fn alone_either_peer_may_dial() {
        let (small, large) = pair();
        assert!(OneRelayedPath::new(small).admit(ConnectionId::new_unchecked(1), large, false).is_ok());
        assert!(OneRelayedPath::new(large).admit(ConnectionId::new_unchecked(1), small, true).is_ok());
    }
}
