//! The swarm's events, one function per protocol: jobs, cancels, load records, the DHT, the
//! NAT traversal behaviours (relay, DCUtR, AutoNAT), identify, ping, mDNS, and connections.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::request_response::{Event as Rr, InboundFailure, Message, OutboundFailure};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{autonat, dcutr, identify, kad, mdns, ping, relay, Multiaddr, PeerId, Swarm};

use crate::p2p::jobs::Frame;
use crate::p2p::load::Record;
use super::{is_loopback, Behaviour, BehaviourEvent, Peer, State, MAX_ADDRS, PUNCH_AGAIN, PROTOCOL_VERSION};

type Peers = HashMap<PeerId, Peer>;

/// An error and what caused it, on one line: libp2p's outer errors (a refused connection's
/// "connection denied") hide the reason in their sources.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        next = cause.source();
    }
    line
}

/// Whether `e`, or an error it wraps, is EADDRINUSE. The transport's error types (`Either`,
/// io errors wrapping others) hide their inner errors from `source()`, so what the chain says
/// is compared with what the OS error says.
fn address_in_use(e: &(dyn std::error::Error + 'static)) -> bool {
    with_causes(e).contains(&std::io::Error::from_raw_os_error(libc::EADDRINUSE).to_string())
}

pub(super) fn handle(swarm: &mut Swarm<Behaviour>, peers: &mut Peers, state: &mut State, event: SwarmEvent<BehaviourEvent>) {
    match event {
        SwarmEvent::Behaviour(BehaviourEvent::Jobs(e)) => jobs(peers, state, e),
        SwarmEvent::Behaviour(BehaviourEvent::Cancels(e)) => cancels(swarm, state, e),
        SwarmEvent::Behaviour(BehaviourEvent::Load(e)) => load(swarm, peers, state, e),
        SwarmEvent::Behaviour(BehaviourEvent::Notices(e)) => notices(swarm, peers, state, e),
        SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => dht(swarm, peers, state, e),
        SwarmEvent::Behaviour(BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted { relay_peer_id, .. })) => {
            log!("p2p: reachable through relay {relay_peer_id}");
        }
        SwarmEvent::Behaviour(BehaviourEvent::Relay(relay::Event::CircuitReqAccepted { src_peer_id, dst_peer_id, .. })) => {
            log!("p2p: relaying {src_peer_id} -> {dst_peer_id}");
        }
        SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => hole_punch(state, e),
        SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. })) => {
            log!("p2p: NAT status {}", match new {
                autonat::NatStatus::Public(a) => format!("public at {a}"),
                autonat::NatStatus::Private => "private (behind NAT or firewall)".into(),
                autonat::NatStatus::Unknown => "unknown".into(),
            });
        }
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => identified(swarm, peers, state, peer_id, info),
        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. })) => {
            if let Some(p) = peers.get_mut(&peer) {
                p.rtt = Some(rtt);
                p.seen = Instant::now();
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
            for (id, addr) in list {
                let p = entry(peers, state.max_peers, id, "mdns");
                remember_addr(p, &addr);
                swarm.behaviour_mut().kad.add_address(&id, addr.clone());
                if !swarm.is_connected(&id) {
                    state.discovered.found(id, [addr], true, Instant::now());
                }
            }
            // The smaller peer id's dial goes at once; the rest at their time (discovered.rs).
            state.dial_found(swarm);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Expired(list))) => {
            for (id, _) in list {
                state.discovered.lost(&id);
            }
        }
        other => connections(swarm, peers, state, other),
    }
}

/// The job protocol: a peer's job runs off the swarm's thread and its answer comes back
/// through `done`; our jobs' answers go to whoever waits for them.
fn jobs(peers: &mut Peers, state: &mut State, event: Rr<Frame, Vec<u8>>) {
    match event {
        Rr::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
            let (executor, done) = (state.executor.clone(), state.done_tx.clone());
            log!("p2p: job request from {peer} ({} bytes)", request.bytes.len());
            smol::spawn(async move {
                // The frame's memory stays reserved until the job's answer is made.
                let hold = request.hold;
                let answer = executor.run(peer, request.bytes).await;
                drop(hold);
                let _ = done.send((channel, answer)).await;
            })
            .detach();
        }
        Rr::Message { message: Message::Response { request_id, response }, .. } => {
            if let Some(reply) = state.answered(peers, &request_id) {
                let _ = reply.try_send(Ok(response));
            }
        }
        Rr::OutboundFailure { peer, request_id, error, .. } => {
            log!("p2p: job to {peer} failed: {error}");
            if let Some(reply) = state.answered(peers, &request_id) {
                let _ = reply.try_send(Err(error.to_string()));
            }
        }
        Rr::InboundFailure { peer, error, .. } => log!("p2p: job request from {peer} failed: {error}"),
        Rr::ResponseSent { .. } => {}
    }
}

/// The cancel protocol: a sender stops its own job here; our cancels' answers are logged.
fn cancels(swarm: &mut Swarm<Behaviour>, state: &mut State, event: Rr<[u8; 32], bool>) {
    match event {
        Rr::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
            let stopping = state.executor.cancel(peer, request);
            // Only cancels that stop a job are logged: those are bounded by the job slots,
            // while a peer may send cancels for nothing as fast as it likes.
            if stopping {
                log!("p2p: {peer} cancels its job request {}: stopping it", &phase_core::encoding::hex_encode(&request)[..12]);
            }
            let _ = swarm.behaviour_mut().cancels.send_response(channel, stopping);
        }
        Rr::Message { peer, message: Message::Response { response, .. }, .. } => {
            log!("p2p: {peer} {}", if response { "stops the job we cancelled" } else { "was not running the job we cancelled (it will refuse it)" });
        }
        Rr::OutboundFailure { peer, error, .. } => log!("p2p: cancel sent to {peer} failed: {error}"),
        Rr::InboundFailure { .. } | Rr::ResponseSent { .. } => {}
    }
}

/// The load protocol: a record for a record.
fn load(swarm: &mut Swarm<Behaviour>, peers: &mut Peers, state: &mut State, event: Rr<Record, Record>) {
    match event {
        Rr::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
            let mine = state.record();
            let _ = swarm.behaviour_mut().load.send_response(channel, mine);
            if let Some(p) = peers.get_mut(&peer) {
                p.heard(request);
            }
        }
        Rr::Message { peer, message: Message::Response { response, .. }, .. } => {
            if let Some(p) = peers.get_mut(&peer) {
                p.heard(response);
            }
        }
        // A malformed or oversized record is refused by the codec: say who sent it (libp2p
        // drops a request it could not read without an event; a bad answer comes here as an
        // outbound failure). A peer that went away mid-exchange is not news (its connection
        // events say so).
        Rr::InboundFailure { peer, error, .. } if !matches!(error, InboundFailure::ConnectionClosed) => {
            log!("p2p: load record from {peer} refused: {error}");
        }
        Rr::OutboundFailure { peer, error, .. } if !matches!(error, OutboundFailure::ConnectionClosed) => {
            log!("p2p: load exchange with {peer} failed: {error}");
        }
        _ => {}
    }
}

/// The release protocol: a notice that is news here goes on to every other Phase peer (each
/// node passes a notice on once: it is news only the first time), so it floods the network.
fn notices(swarm: &mut Swarm<Behaviour>, peers: &mut Peers, state: &mut State, event: Rr<Vec<u8>, bool>) {
    match event {
        Rr::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
            let news = state.executor.notice(peer, &request);
            let _ = swarm.behaviour_mut().notices.send_response(channel, news);
            if news {
                let to: Vec<PeerId> = peers.iter().filter(|(id, p)| p.is_phase() && **id != peer).map(|(id, _)| *id).collect();
                for other in to {
                    swarm.behaviour_mut().notices.send_request(&other, request.clone());
                }
            }
        }
        Rr::InboundFailure { peer, error, .. } if !matches!(error, InboundFailure::ConnectionClosed) => {
            log!("p2p: notice from {peer} refused: {error}");
        }
        _ => {}
    }
}

/// The DHT: provider lookups, lookups of a peer a job waits for, routing updates, bootstrap.
fn dht(swarm: &mut Swarm<Behaviour>, peers: &mut Peers, state: &mut State, event: kad::Event) {
    match event {
        kad::Event::OutboundQueryProgressed { id, result: kad::QueryResult::GetProviders(result), step, .. } => {
            let me = *swarm.local_peer_id();
            if let Some((_, found)) = state.lookups.get_mut(&id) {
                // Other providers are what a caller wants; this node knows it provides.
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result {
                    found.extend(providers.into_iter().filter(|p| *p != me && !found.contains(p)).collect::<Vec<_>>());
                }
                // Answer at the first result set (what a scheduler needs) or when the query ends.
                if !found.is_empty() || step.last {
                    if let Some((reply, found)) = state.lookups.remove(&id) {
                        let _ = reply.try_send(found);
                    }
                    if let Some(mut q) = swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                }
            }
        }
        kad::Event::OutboundQueryProgressed { result: kad::QueryResult::GetClosestPeers(result), step, .. } => {
            let key = match &result {
                Ok(ok) => ok.key.clone(),
                Err(kad::GetClosestPeersError::Timeout { key, .. }) => key.clone(),
            };
            if let Ok(target) = PeerId::from_bytes(&key) {
                if step.last && state.waiting.contains_key(&target) && !swarm.is_connected(&target) {
                    // Found or not, try now: the job fails with the dial error if unreachable.
                    state.flush(swarm, peers, target);
                }
            }
        }
        kad::Event::RoutingUpdated { peer, addresses, .. } => {
            let p = entry(peers, state.max_peers, peer, "dht");
            for a in addresses.iter() {
                remember_addr(p, a);
            }
            // Know a peer, talk to it: a connection brings identify and ping.
            if p.due_for_dial() {
                state.discovered.found(peer, addresses.iter().cloned(), false, Instant::now());
                state.dial_found(swarm);
            }
        }
        kad::Event::OutboundQueryProgressed { result: kad::QueryResult::Bootstrap(Ok(kad::BootstrapOk { num_remaining: 0, .. })), .. } => {
            log!("p2p: dht bootstrap done, {} peers in the routing table", swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum::<usize>());
            // Announced at start into an empty table, the capability records reached nobody:
            // announce again now that there are peers to store them.
            for key in &state.provide {
                let _ = swarm.behaviour_mut().kad.start_providing(kad::RecordKey::new(key));
            }
        }
        _ => {}
    }
}

/// DCUtR: a direct connection ends the retries; a failure leaves the peer relayed.
fn hole_punch(state: &mut State, event: dcutr::Event) {
    let dcutr::Event { remote_peer_id, result } = event;
    match result {
        Ok(_) => {
            state.punching.remove(&remote_peer_id);
            log!("p2p: direct connection to {remote_peer_id} (hole punched)")
        }
        Err(e) => log!("p2p: hole punch to {remote_peer_id} failed, staying relayed: {e}"),
    }
}

/// identify: a peer that speaks another protocol is dropped; a Phase peer's addresses and
/// capabilities are kept and it learns our load at once.
fn identified(swarm: &mut Swarm<Behaviour>, peers: &mut Peers, state: &mut State, peer_id: PeerId, info: identify::Info) {
    if info.protocol_version != PROTOCOL_VERSION {
        log!("p2p: {peer_id} speaks {:?}, not {PROTOCOL_VERSION}; disconnecting", info.protocol_version);
        let _ = swarm.disconnect_peer_id(peer_id);
        return;
    }
    for addr in info.listen_addrs.iter().take(MAX_ADDRS) {
        swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
    }
    let p = entry(peers, state.max_peers, peer_id, "inbound");
    p.agent = info.agent_version;
    p.addrs = info.listen_addrs.into_iter().take(MAX_ADDRS).collect();
    p.seen = Instant::now();
    if p.is_phase() {
        // A (re)connected Phase peer learns our load now, and we learn its load in the answer
        // (identify runs once per connection, then every 5 minutes).
        let mine = state.record();
        swarm.behaviour_mut().load.send_request(&peer_id, mine);
        // It learns the releases and failures we know (it answers 0 to what it knew).
        for notice in state.executor.notices() {
            swarm.behaviour_mut().notices.send_request(&peer_id, notice);
        }
    }
}

/// Listen addresses, connections and dials.
fn connections(swarm: &mut Swarm<Behaviour>, peers: &mut Peers, state: &mut State, event: SwarmEvent<BehaviourEvent>) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            log!("p2p: listening on {address}/p2p/{}", swarm.local_peer_id());
            // Without --nat a node is reachable where it listens: say so, so that relay
            // reservations (which carry the relay's external addresses) and AutoNAT dial-backs
            // can use it. Loopback is not an address anyone else can reach.
            let loopback = is_loopback(&address);
            let circuit = address.iter().any(|p| p == Protocol::P2pCircuit);
            if !loopback && !circuit && !state.dial_later.is_empty() {
                state.dial_bootstrap_peers(swarm);
            }
            if state.relays.is_empty() && !state.nat && !loopback && !circuit {
                swarm.add_external_address(address);
            }
        }
        SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
            if num_established.get() == 1 {
                state.connected(peer_id);
            }
            if !state.reserved.contains(&peer_id) {
                if let Some(relay) = state.relays.iter().find(|a| matches!(a.iter().last(), Some(Protocol::P2p(id)) if id == peer_id)) {
                    state.reserved.push(peer_id);
                    let circuit = relay.clone().with(Protocol::P2pCircuit);
                    match swarm.listen_on(circuit.clone()) {
                        Ok(_) => log!("p2p: asking relay {peer_id} for a slot"),
                        Err(e) => log!("p2p: cannot listen on {circuit}: {e}"),
                    }
                }
            }
            let circuit = |a: &Multiaddr| a.iter().any(|p| matches!(p, Protocol::P2pCircuit));
            let relayed = match &endpoint {
                libp2p::core::ConnectedPoint::Dialer { address, .. } => circuit(address),
                libp2p::core::ConnectedPoint::Listener { local_addr, .. } => circuit(local_addr),
            };
            if !relayed {
                state.punching.remove(&peer_id);
            } else if *swarm.local_peer_id() < peer_id && !state.punching.contains_key(&peer_id) {
                // One side only asks again (the smaller peer id): two attempts at once, one per
                // direction, are what makes the simultaneous opens cross.
                state.punching.insert(peer_id, (Instant::now() + PUNCH_AGAIN, 0));
            }
            state.flush(swarm, peers, peer_id);
            let p = entry(peers, state.max_peers, peer_id, if endpoint.is_dialer() { "dht" } else { "inbound" });
            p.connections += 1;
            p.seen = Instant::now();
            if p.connections == 1 {
                log!("p2p: connected {peer_id} at {}", endpoint.get_remote_address());
            }
        }
        SwarmEvent::ConnectionClosed { peer_id, cause, num_established, .. } => {
            if num_established == 0 {
                state.lost(peer_id);
            }
            if let Some(p) = peers.get_mut(&peer_id) {
                p.connections = p.connections.saturating_sub(1);
                if p.connections == 0 {
                    // A peer that comes back may have restarted and number its records from 1.
                    p.load = None;
                    log!("p2p: lost {peer_id}{}", cause.map(|c| format!(" ({c})")).unwrap_or_default());
                }
            }
        }
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
            log!("p2p: dial {} failed: {error}", peer_id.map(|p| p.to_string()).unwrap_or_else(|| "?".into()));
            // A dial binds this node's listen port (peers and NATs then see one address). A
            // socket holding that port on another address, without SO_REUSEPORT (another
            // program's), fails the bind with EADDRINUSE for as long as it is held; libp2p
            // falls back to a fresh port only for EADDRNOTAVAIL. Do it for this too, once per
            // failure: a fresh-port dial binds nothing, so it cannot fail this way again.
            if let (Some(peer), DialError::Transport(failed)) = (peer_id, &error) {
                let addrs: Vec<Multiaddr> = failed.iter().filter(|(_, e)| address_in_use(e)).map(|(a, _)| a.clone()).collect();
                if !addrs.is_empty() {
                    log!("p2p: dialling {peer} again from a fresh port: this node's listen port is held elsewhere");
                    let dial = DialOpts::peer_id(peer).addresses(addrs).condition(PeerCondition::Disconnected).allocate_new_port().build();
                    if let Err(e) = swarm.dial(dial) {
                        log!("p2p: dial {peer} failed: {e}");
                    }
                }
            }
        }
        SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
            log!("p2p: inbound connection from {send_back_addr} failed: {}", with_causes(&error));
        }
        _ => {}
    }
}

/// The table entry of peer `id`, made if new. The table is bounded: a new peer beyond `max`
/// entries replaces the disconnected peer seen longest ago (connected peers are bounded by the
/// connection limits, well below it).
fn entry<'a>(peers: &'a mut Peers, max: usize, id: PeerId, source: &'static str) -> &'a mut Peer {
    if !peers.contains_key(&id) && peers.len() >= max {
        let stale = peers.iter().filter(|(_, p)| p.connections == 0).min_by_key(|(_, p)| std::cmp::Reverse(p.seen.elapsed())).map(|(k, _)| *k);
        if let Some(old) = stale {
            peers.remove(&old);
        }
    }
    peers.entry(id).or_insert_with(|| {
        log!("p2p: discovered {id} via {source}");
        Peer::new(vec![], source)
    })
}

/// Adds `addr` to a peer's addresses, keeping at most MAX_ADDRS (the newest).
fn remember_addr(p: &mut Peer, addr: &Multiaddr) {
    if !p.addrs.contains(addr) {
        if p.addrs.len() >= MAX_ADDRS {
            p.addrs.remove(0);
        }
        p.addrs.push(addr.clone());
    }
}
