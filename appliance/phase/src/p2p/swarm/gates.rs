//! The swarm's own admission rules, as one behaviour: incoming handshakes per source address
//! (`pending_per_ip`) and one relayed path per pair of peers (`one_relayed_path`). It refuses
//! connections, so it comes right after connection_limits, before any behaviour that counts a
//! connection when it is established (request_response keeps such a connection in its table
//! for ever if a later behaviour refuses it, and requests sent on it are never answered).

use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm};
use libp2p::{Multiaddr, PeerId};

use super::handshakes::Handshakes;
use super::one_relayed_path::OneRelayedPath;
use super::pending_per_ip::PendingPerIp;

/// Why a gate refused a connection (libp2p logs it with the failed connection).
#[derive(Debug)]
pub enum Refused {
    /// A relayed connection the larger peer id dialed, while the smaller one's is kept.
    CrossedRelayedDial(PeerId),
    /// `pending_per_ip::MAX_PER_IP` incoming handshakes from this address already, all
    /// younger than the grace a handshake gets.
    TooManyHandshakes(std::net::IpAddr),
    /// This many incoming handshakes in all already, all younger than that grace.
    AllHandshakePlacesBusy(usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::CrossedRelayedDial(peer) => write!(f, "a relayed connection with {peer} dialed by the smaller peer id is kept instead"),
            Refused::TooManyHandshakes(ip) => write!(f, "{} incoming connections from {ip} already in their handshake", super::pending_per_ip::MAX_PER_IP),
            Refused::AllHandshakePlacesBusy(n) => write!(f, "{n} incoming connections already in their handshake, none old enough to end"),
        }
    }
}

impl std::error::Error for Refused {}

pub struct Gates {
    relayed: OneRelayedPath,
    pending: PendingPerIp,
    handshakes: Handshakes,
}

impl Gates {
    /// `max_pending`: incoming handshakes at most; `handshakes`: the transport's table of them.
    pub fn new(me: PeerId, max_pending: usize, handshakes: Handshakes) -> Gates {
        Gates { relayed: OneRelayedPath::new(me), pending: PendingPerIp::new(max_pending, handshakes.clone()), handshakes }
    }
}

impl NetworkBehaviour for Gates {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(&mut self, id: ConnectionId, _: &Multiaddr, remote: &Multiaddr) -> Result<(), ConnectionDenied> {
        self.pending.incoming(id, remote)
    }

    fn handle_pending_outbound_connection(&mut self, id: ConnectionId, peer: Option<PeerId>, _: &[Multiaddr], _: Endpoint) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = peer {
            self.relayed.dialing(id, peer);
        }
        Ok(vec![])
    }

    fn handle_established_inbound_connection(&mut self, id: ConnectionId, peer: PeerId, local_addr: &Multiaddr, remote: &Multiaddr) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending.done(id);
        self.handshakes.ended(remote);
        self.relayed.inbound(id, peer, local_addr)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(&mut self, id: ConnectionId, peer: PeerId, addr: &Multiaddr, _: Endpoint, _: PortUse) -> Result<THandler<Self>, ConnectionDenied> {
        self.relayed.outbound(id, peer, addr)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            // Failed or timed out in its handshake, or refused by a behaviour after this one.
            FromSwarm::ListenFailure(f) => {
                self.pending.done(f.connection_id);
                self.handshakes.ended(f.send_back_addr);
            }
            FromSwarm::ConnectionEstablished(c) => self.pending.done(c.connection_id),
            FromSwarm::DialFailure(f) => self.relayed.dial_failed(f.peer_id, f.connection_id),
            FromSwarm::ConnectionClosed(c) => self.relayed.closed(c.peer_id, c.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
