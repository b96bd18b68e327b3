//! The swarm thread: builds the transport and behaviours, then runs the event loop on smol:
//! commands from the node and timers here, the behaviours' events by protocol in `events`.

mod discovered;
mod events;
mod gates;
mod handshakes;
mod one_relayed_path;
mod pending_per_ip;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport};
use libp2p::core::upgrade;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::{autonat, connection_limits, dcutr, identify, kad, mdns, noise, ping, pnet, relay, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};

use super::cancel::{self, CancelCodec};
use super::jobs::{JobCodec, MAX_STREAMS, PROTOCOL as JOB_PROTOCOL};
use super::load::{self, Load, LoadCodec, Record};
use super::notices::{self, NoticeCodec};
use super::{Executor, P2pConfig, P2pError, PeerInfo, PeerLoad, KAD_PROTOCOL, PROTOCOL_VERSION};

/// A job may run for its whole deadline (300 s at most) before its answer is due.
const JOB_TIMEOUT: Duration = Duration::from_secs(310);

pub enum Command {
    Peers(smol::channel::Sender<Vec<PeerInfo>>),
    ListenAddrs(smol::channel::Sender<Vec<Multiaddr>>),
    RunJob { peer: PeerId, body: Vec<u8>, reply: smol::channel::Sender<Result<Vec<u8>, String>> },
    FindProviders { key: String, reply: smol::channel::Sender<Vec<PeerId>> },
    /// Asks a peer to stop a job this node sent it (p2p/cancel.rs).
    CancelJob { peer: PeerId, request: [u8; 32] },
    /// Tells every connected Phase peer but `except` of a release or a failure (p2p/notices.rs).
    Announce { notice: Vec<u8>, except: Option<PeerId> },
}

/// Capability keys this node provides in the DHT (docs/protocol.md).
pub fn capability_keys() -> Vec<String> {
    vec![format!("/phase/cap/wasm/{}", std::env::consts::ARCH), "/phase/cap/wasm".to_string()]
}

/// Addresses kept per peer (identify and mDNS announce them: the peer chooses how many).
const MAX_ADDRS: usize = 16;
/// Discovery dials a peer at most this often.
const REDIAL_AFTER: Duration = Duration::from_secs(10);

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// Refuses connections beyond the caps before any other behaviour sees them.
    limits: connection_limits::Behaviour,
    /// Second: it refuses connections too (gates.rs says why it must come before the others).
    gates: gates::Gates,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    mdns: Toggle<mdns::async_io::Behaviour>,
    jobs: request_response::Behaviour<JobCodec>,
    load: request_response::Behaviour<LoadCodec>,
    cancels: request_response::Behaviour<CancelCodec>,
    notices: request_response::Behaviour<NoticeCodec>,
    /// Every node relays for others (limits sized for jobs, below).
    relay: relay::Behaviour,
    relay_client: relay::client::Behaviour,
    dcutr: dcutr::Behaviour,
    autonat: Toggle<autonat::Behaviour>,
}

struct Peer {
    addrs: Vec<Multiaddr>,
    agent: String,
    connections: usize,
    source: &'static str,
    seen: Instant,
    rtt: Option<Duration>,
    /// Its newest load record and when it came.
    load: Option<(Record, Instant)>,
    /// Our job requests sent after that record and not answered yet (it does not count them).
    sent_since_load: u32,
    /// When this node last dialed it on its own account (discovery), for the backoff.
    dialed: Option<Instant>,
}

impl Peer {
    fn new(addrs: Vec<Multiaddr>, source: &'static str) -> Peer {
        Peer { addrs, agent: String::new(), connections: 0, source, seen: Instant::now(), rtt: None, load: None, sent_since_load: 0, dialed: None }
    }

    /// Whether discovery should dial it now: not connected, and not dialed in the last
    /// REDIAL_AFTER (a peer at its connection cap closes at once; without this, every routing
    /// update would dial it again).
    fn due_for_dial(&mut self) -> bool {
        if self.connections > 0 || self.dialed.is_some_and(|t| t.elapsed() < REDIAL_AFTER) {
            return false;
        }
        self.dialed = Some(Instant::now());
        true
    }

    /// Connected and identified as a Phase node: it speaks the job and load protocols.
    fn is_phase(&self) -> bool {
        self.connections > 0 && self.agent.starts_with("phase/")
    }

    /// Keeps a load record unless a newer one (higher seq) came first.
    fn heard(&mut self, record: Record) {
        if !matches!(self.load, Some((known, _)) if known.seq >= record.seq) {
            self.load = Some((record, Instant::now()));
            self.sent_since_load = 0;
        }
    }
}

/// TCP (then the private-network handshake if there is a swarm key) or a relay circuit, then
/// Noise and Yamux.
fn transport(
    key: &Keypair,
    psk: Option<pnet::PreSharedKey>,
    relayed: relay::client::Transport,
    handshakes: handshakes::Handshakes,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, P2pError> {
    let noise = noise::Config::new(key).map_err(|e| P2pError::Key(e.to_string()))?;
    // Incoming sockets are registered and counted, so the gates can end a silent handshake
    // for a newcomer (handshakes.rs).
    let tcp = tcp::async_io::Transport::new(tcp::Config::default().nodelay(true)).map(move |socket, endpoint| handshakes.watch(socket, endpoint));
    // The whole handshake (TCP, Noise, Yamux; or a circuit's): one that says nothing holds an
    // incoming place this long. Milliseconds on a LAN, a few round trips through a relay.
    let timeout = Duration::from_secs(10);
    Ok(match psk {
        Some(psk) => relayed
            .or_transport(tcp.and_then(move |socket, _| pnet::PnetConfig::new(psk).handshake(socket)))
            .upgrade(upgrade::Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(timeout)
            .boxed(),
        None => relayed
            .or_transport(tcp)
            .upgrade(upgrade::Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(timeout)
            .boxed(),
    })
}

pub fn spawn(seed: [u8; 32], config: P2pConfig, executor: Arc<dyn Executor>) -> Result<(smol::channel::Sender<Command>, PeerId), P2pError> {
    let mut seed_bytes = seed;
    let key = Keypair::ed25519_from_bytes(&mut seed_bytes).map_err(|e| P2pError::Key(e.to_string()))?;
    let peer_id = key.public().to_peer_id();
    let psk = match &config.swarm_key {
        Some(text) => Some(text.parse::<pnet::PreSharedKey>().map_err(|e| P2pError::SwarmKey(e.to_string()))?),
        None => None,
    };
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(Duration::from_secs(10));
    // Capability records expire unless refreshed: a node that leaves stops being found.
    kad_config.set_provider_record_ttl(Some(Duration::from_secs(15 * 60)));
    kad_config.set_provider_publication_interval(Some(Duration::from_secs(5 * 60)));
    let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Nodes are reachable on the networks they join (LAN, loopback): serve the DHT.
    kad.set_mode(Some(kad::Mode::Server));
    let mdns = match config.mdns {
        // Re-query every 5 s instead of every 5 min: a node whose first probes were missed
        // (both sides starting at once) is found in seconds, for one small packet per node.
        true => {
            let cfg = mdns::Config { query_interval: Duration::from_secs(5), ..Default::default() };
            Some(mdns::async_io::Behaviour::new(cfg, peer_id).map_err(|e| P2pError::Mdns(e.to_string()))?)
        }
        false => None,
    };
    let (relayed, relay_client) = relay::client::new(peer_id);
    // Relayed jobs carry modules and answers: circuits may move up to 64 MiB for 10 minutes
    // (the defaults, 128 KiB and 2 minutes, are sized for hole-punching handshakes only).
    let relay_config = relay::Config {
        max_circuit_bytes: 64 << 20,
        max_circuit_duration: Duration::from_secs(600),
        ..Default::default()
    };
    let autonat = config.nat.then(|| {
        autonat::Behaviour::new(
            peer_id,
            autonat::Config {
                boot_delay: Duration::from_secs(2),
                retry_interval: Duration::from_secs(30),
                throttle_server_period: Duration::from_secs(10),
                // LANs and test networks use private addresses too.
                only_global_ips: false,
                ..Default::default()
            },
        )
    });
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        // The gates hold incoming handshakes to `max_pending_incoming`, ending silent ones for
        // newcomers; an ended one counts here until its failure is processed, so this backstop
        // is twice that.
        .with_max_pending_incoming(Some(config.max_pending_incoming.saturating_mul(2)));
    let handshakes = handshakes::Handshakes::default();
    let behaviour = Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(
            identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                .with_agent_version(config.agent.clone())
                .with_push_listen_addr_updates(true),
        ),
        ping: ping::Behaviour::default(),
        kad,
        mdns: mdns.into(),
        jobs: request_response::Behaviour::with_codec(
            JobCodec {
                max_request: config.max_job_request,
                budget: config.budget.clone(),
                free_slot: Some({
                    let executor = executor.clone();
                    Arc::new(move || executor.has_free_slot())
                }),
                stall_frames: config.faults.stall_frames,
            },
            [(JOB_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(JOB_TIMEOUT)
                .with_max_concurrent_streams(MAX_STREAMS),
        ),
        load: request_response::Behaviour::with_codec(
            LoadCodec { oversized: config.faults.bad_load_records },
            [(load::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(10)).with_max_concurrent_streams(4),
        ),
        cancels: request_response::Behaviour::with_codec(
            CancelCodec,
            [(cancel::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(10)).with_max_concurrent_streams(4),
        ),
        // Notices are small and answered at once: a few streams per connection bound what one
        // peer can have in flight.
        notices: request_response::Behaviour::with_codec(
            NoticeCodec,
            [(notices::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(10)).with_max_concurrent_streams(4),
        ),
        relay: relay::Behaviour::new(peer_id, relay_config),
        relay_client,
        dcutr: dcutr::Behaviour::new(peer_id),
        autonat: autonat.into(),
        gates: gates::Gates::new(peer_id, config.max_pending_incoming as usize, handshakes.clone()),
    };
    let swarm_config = libp2p::swarm::Config::with_executor(|f| {
        smol::spawn(f).detach();
    })
    .with_idle_connection_timeout(Duration::from_secs(120));
    let mut swarm = Swarm::new(transport(&key, psk, relayed, handshakes)?, behaviour, peer_id, swarm_config);
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| P2pError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
    }
    let provide: Vec<String> = capability_keys().into_iter().chain(config.provide.iter().cloned()).collect();
    for key in &provide {
        if let Err(e) = swarm.behaviour_mut().kad.start_providing(kad::RecordKey::new(key)) {
            log!("p2p: cannot provide {key}: {e}");
        }
    }
    let mut peers: HashMap<PeerId, Peer> = HashMap::new();
    // A dial reuses the listening port only once the listener has reported the interface
    // addresses (libp2p-tcp binds a dial to a registered listen address). Dialled earlier, the
    // connection to a bootstrap peer or relay leaves from an ephemeral port, the peer observes
    // that port, and a hole punch aimed at it finds nothing behind the NAT. So a node listening
    // beyond loopback dials once its first such address is up (or after 1 s).
    let wait_for_interfaces = config.listen.iter().any(|a| !is_loopback(a));
    let mut discovered = discovered::Discovered::new(peer_id, config.max_peers.max(16), MAX_ADDRS);
    let mut bootstrap_peers = Vec::new();
    let mut dial_later = Vec::new();
    for addr in &config.bootstrap {
        let Some(Protocol::P2p(id)) = addr.iter().last() else {
            return Err(P2pError::Bootstrap { addr: addr.to_string(), reason: "must end with /p2p/<peer id>".into() });
        };
        swarm.behaviour_mut().kad.add_address(&id, addr.clone());
        peers.insert(id, Peer::new(vec![addr.clone()], "bootstrap"));
        bootstrap_peers.push(discovered::BootstrapPeer::new(id, addr.clone()));
        if wait_for_interfaces {
            dial_later.push((id, addr.clone()));
        } else {
            dial_bootstrap(&mut swarm, &mut discovered, id, addr);
        }
    }
    let (tx, rx) = smol::channel::bounded::<Command>(64);
    let bootstrap = !config.bootstrap.is_empty();
    // Behind a NAT only outbound connections work: with --nat, the node also listens through
    // a relay slot at each bootstrap peer, so others reach it by a circuit address.
    let relays: Vec<Multiaddr> = if config.nat { config.bootstrap.clone() } else { Vec::new() };
    let (done_tx, done_rx) = smol::channel::unbounded();
    let state = State {
        lookups: HashMap::new(),
        executor,
        outbound: HashMap::new(),
        sent: None,
        seq: 0,
        done_tx,
        nat: config.nat,
        relays,
        reserved: Vec::new(),
        waiting: HashMap::new(),
        provide,
        dial_by: (!dial_later.is_empty()).then(|| Instant::now() + Duration::from_secs(1)),
        dial_later,
        max_peers: config.max_peers.max(16),
        punching: HashMap::new(),
        discovered,
        bootstrap_peers,
    };
    std::thread::Builder::new()
        .name("p2p".into())
        .spawn(move || smol::block_on(run(swarm, rx, done_rx, peers, bootstrap, state)))
        .map_err(|e| P2pError::Listen { addr: "-".into(), reason: format!("cannot start the p2p thread: {e}") })?;
    log!("p2p: peer id {peer_id}");
    Ok((tx, peer_id))
}

/// The first dial of a bootstrap peer; if it fails, `discovered` dials it again (until it is
/// connected).
fn dial_bootstrap(swarm: &mut Swarm<Behaviour>, discovered: &mut discovered::Discovered, peer: PeerId, addr: &Multiaddr) {
    if let Err(e) = swarm.dial(addr.clone()) {
        log!("p2p: dial bootstrap {addr}: {e}");
    }
    discovered.bootstrap(peer, addr.clone(), Instant::now() + discovered::RETRY);
}

fn is_loopback(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// Where the answer of a job sent to a peer goes (or why it did not come).
type AnswerTx = smol::channel::Sender<Result<Vec<u8>, String>>;

/// What the event loop keeps beside the swarm and the peer table: jobs in flight (ours on
/// other peers, and other peers' on our node), load records, relays, pending bootstrap dials.
pub(super) struct State {
    /// Provider lookups in flight, with what they found so far.
    pub(super) lookups: HashMap<kad::QueryId, (smol::channel::Sender<Vec<PeerId>>, Vec<PeerId>)>,
    /// Runs peers' jobs, stops them, says how busy this node is.
    pub(super) executor: Arc<dyn Executor>,
    /// Our job requests awaiting an answer: the peer, the seq of its load record when sent
    /// (its `sent_since_load` counts the request until a newer record or the answer), the
    /// answer's way back.
    outbound: HashMap<OutboundRequestId, (PeerId, Option<u64>, AnswerTx)>,
    /// The record last sent to peers (with when).
    sent: Option<(Load, Instant)>,
    /// Sequence number of the last record made.
    seq: u64,
    /// Answers of inbound jobs, computed off the swarm thread, to send from it.
    done_tx: smol::channel::Sender<(ResponseChannel<Vec<u8>>, Vec<u8>)>,
    /// Behind a NAT (--nat): listen addresses are not external addresses.
    nat: bool,
    /// Relays to hold a slot at (--nat), and those we asked already.
    relays: Vec<Multiaddr>,
    reserved: Vec<PeerId>,
    /// Jobs for peers we are not connected to, waiting for a DHT lookup of their addresses.
    waiting: HashMap<PeerId, Vec<(Vec<u8>, AnswerTx)>>,
    /// Every DHT key this node provides: capabilities and served boot releases.
    provide: Vec<String>,
    /// Bootstrap peers to dial once a listen address beyond loopback is up, or at `dial_by`.
    dial_later: Vec<(PeerId, Multiaddr)>,
    dial_by: Option<Instant>,
    /// Bound on the peer table.
    max_peers: usize,
    /// Peers we reach only through a relay, waiting for DCUtR's direct connection: when to
    /// ask again, attempts made.
    punching: HashMap<PeerId, (Instant, u32)>,
    /// Peers found (mDNS, the DHT) or given (bootstrap) and not connected yet: when to dial
    /// them (discovered.rs).
    discovered: discovered::Discovered,
    /// The bootstrap peers: dialled again whenever their last connection closes.
    bootstrap_peers: Vec<discovered::BootstrapPeer>,
}

/// libp2p-dcutr does not retry a failure on the dialer's side (crossed attempts are prevented
/// in `one_relayed_path`). A new relayed connection starts a new attempt; this many,
/// `PUNCH_AGAIN` apart, doubling.
const PUNCH_RETRIES: u32 = 3;
const PUNCH_AGAIN: Duration = Duration::from_secs(5);

impl State {
    /// Dials again through the relay the peers still without a direct connection (a new
    /// relayed connection is a new DCUtR attempt), then forgets them after PUNCH_RETRIES.
    fn punch_again(&mut self, swarm: &mut Swarm<Behaviour>) {
        let now = Instant::now();
        let due: Vec<PeerId> = self.punching.iter().filter(|(_, (at, _))| *at <= now).map(|(p, _)| *p).collect();
        for peer in due {
            let tries = self.punching.get(&peer).map_or(PUNCH_RETRIES, |(_, t)| *t);
            if tries >= PUNCH_RETRIES || !swarm.is_connected(&peer) {
                self.punching.remove(&peer);
                continue;
            }
            log!("p2p: no direct connection to {peer} yet: a new relayed connection for another hole punch ({} of {PUNCH_RETRIES})", tries + 1);
            // Without addresses: the peer's known ones, its relay circuits among them.
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer).condition(libp2p::swarm::dial_opts::PeerCondition::Always).build();
            if let Err(e) = swarm.dial(opts) {
                log!("p2p: dial {peer} through the relay: {e}");
            }
            self.punching.insert(peer, (now + PUNCH_AGAIN * 2u32.pow(tries + 1), tries + 1));
        }
    }

    /// Dials the found peers that are due (discovered.rs).
    fn dial_found(&mut self, swarm: &mut Swarm<Behaviour>) {
        for (peer, addrs) in self.discovered.due(Instant::now(), |p| swarm.is_connected(p)) {
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(addrs).build();
            // DisconnectedAndNotDialing (the default) refuses while a dial is under way: fine.
            let _ = swarm.dial(opts);
        }
    }

    fn dial_bootstrap_peers(&mut self, swarm: &mut Swarm<Behaviour>) {
        self.dial_by = None;
        for (peer, addr) in std::mem::take(&mut self.dial_later) {
            dial_bootstrap(swarm, &mut self.discovered, peer, &addr);
        }
    }

    /// The first connection to `peer` is up: a bootstrap peer's dials after a failure stop
    /// (those after a close follow `BootstrapPeer::closed`).
    pub(super) fn connected(&mut self, peer: PeerId) {
        if let Some(b) = self.bootstrap_peers.iter_mut().find(|b| b.peer == peer) {
            b.connected(Instant::now());
            self.discovered.lost(&peer);
        }
    }

    /// The last connection to `peer` closed: a bootstrap peer is dialled again (discovered.rs).
    pub(super) fn lost(&mut self, peer: PeerId) {
        if let Some(b) = self.bootstrap_peers.iter_mut().find(|b| b.peer == peer) {
            let at = b.closed(Instant::now());
            self.discovered.bootstrap(peer, b.addr.clone(), at);
        }
    }

    /// Sends the jobs waiting for `peer` (connected now, or its lookup is over).
    fn flush(&mut self, swarm: &mut Swarm<Behaviour>, peers: &mut HashMap<PeerId, Peer>, peer: PeerId) {
        for (body, reply) in self.waiting.remove(&peer).unwrap_or_default() {
            self.send(swarm, peers, peer, body, reply);
        }
    }

    fn send(&mut self, swarm: &mut Swarm<Behaviour>, peers: &mut HashMap<PeerId, Peer>, peer: PeerId, body: Vec<u8>, reply: AnswerTx) {
        let id = swarm.behaviour_mut().jobs.send_request(&peer, body.into());
        let seq = peers.get_mut(&peer).and_then(|p| {
            p.sent_since_load += 1;
            p.load.map(|(r, _)| r.seq)
        });
        self.outbound.insert(id, (peer, seq, reply));
    }

    /// The answer (or failure) of a job request: returns where it goes, and stops counting the
    /// request as load on its peer unless a newer load record already counts it.
    fn answered(&mut self, peers: &mut HashMap<PeerId, Peer>, id: &OutboundRequestId) -> Option<AnswerTx> {
        let (peer, seq, reply) = self.outbound.remove(id)?;
        if let Some(p) = peers.get_mut(&peer) {
            if p.load.map(|(r, _)| r.seq) == seq {
                p.sent_since_load = p.sent_since_load.saturating_sub(1);
            }
        }
        Some(reply)
    }

    /// Sends this node's load to every connected Phase peer if it changed since the last
    /// record or the last one is due for refresh.
    fn share_load(&mut self, swarm: &mut Swarm<Behaviour>, peers: &HashMap<PeerId, Peer>) {
        let now = self.executor.load();
        if matches!(self.sent, Some((last, at)) if last == now && at.elapsed() < load::REFRESH_EVERY) {
            return;
        }
        self.sent = Some((now, Instant::now()));
        let record = self.number(now);
        for (id, _) in peers.iter().filter(|(_, p)| p.is_phase()) {
            swarm.behaviour_mut().load.send_request(id, record);
        }
    }

    /// This node's load now, numbered.
    fn record(&mut self) -> Record {
        let now = self.executor.load();
        self.number(now)
    }

    fn number(&mut self, load: Load) -> Record {
        self.seq += 1;
        Record { seq: self.seq, load }
    }
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    commands: smol::channel::Receiver<Command>,
    done_rx: smol::channel::Receiver<(ResponseChannel<Vec<u8>>, Vec<u8>)>,
    mut peers: HashMap<PeerId, Peer>,
    bootstrap: bool,
    mut state: State,
) {
    // Kademlia bootstrap: now (if there are bootstrap peers) and then every 5 minutes, so the
    // routing table fills beyond the peers we were told about.
    let mut next_bootstrap = Instant::now() + if bootstrap { Duration::from_millis(500) } else { Duration::from_secs(300) };
    let mut next_load_check = Instant::now() + load::CHECK_EVERY;
    loop {
        let next_punch = state.punching.values().map(|(at, _)| *at).min().unwrap_or(next_load_check);
        let next_lan = state.discovered.next().unwrap_or(next_load_check);
        let wake = next_bootstrap.min(next_load_check).min(next_punch).min(next_lan).min(state.dial_by.unwrap_or(next_load_check)).saturating_duration_since(Instant::now());
        let event = smol::future::or(
            async { Some(Ev::Swarm(swarm.select_next_some().await)) },
            smol::future::or(
                async { commands.recv().await.ok().map(Ev::Command) },
                smol::future::or(async { done_rx.recv().await.ok().map(|(c, a)| Ev::Done(c, a)) }, async {
                    smol::Timer::after(wake).await;
                    Some(Ev::Tick)
                }),
            ),
        )
        .await;
        match event {
            None => return, // every sender is gone: the node is stopping
            Some(Ev::Tick) => {
                if state.dial_by.is_some_and(|by| Instant::now() >= by) {
                    state.dial_bootstrap_peers(&mut swarm);
                }
                state.punch_again(&mut swarm);
                state.dial_found(&mut swarm);
                if Instant::now() >= next_load_check {
                    next_load_check = Instant::now() + load::CHECK_EVERY;
                    state.share_load(&mut swarm, &peers);
                }
                if Instant::now() >= next_bootstrap {
                    next_bootstrap = Instant::now() + Duration::from_secs(300);
                    if let Err(e) = swarm.behaviour_mut().kad.bootstrap() {
                        log!("p2p: dht bootstrap skipped: {e}");
                    }
                }
            }
            Some(Ev::Command(Command::Peers(reply))) => {
                let list = peers
                    .iter()
                    .map(|(id, p)| PeerInfo {
                        peer_id: *id,
                        addrs: p.addrs.clone(),
                        agent: p.agent.clone(),
                        connected: p.connections > 0,
                        source: p.source,
                        seen_secs_ago: p.seen.elapsed().as_secs(),
                        rtt_ms: p.rtt.map(|d| d.as_millis() as u64),
                        load: p.load.filter(|(_, at)| at.elapsed() < load::TTL).map(|(r, at)| PeerLoad {
                            in_flight: r.load.in_flight,
                            slots: r.load.slots,
                            sent_since: p.sent_since_load,
                            age_ms: at.elapsed().as_millis() as u64,
                        }),
                    })
                    .collect();
                let _ = reply.try_send(list);
            }
            Some(Ev::Command(Command::ListenAddrs(reply))) => {
                let me = *swarm.local_peer_id();
                let addrs = swarm.listeners().map(|a| a.clone().with(Protocol::P2p(me))).collect();
                let _ = reply.try_send(addrs);
            }
            Some(Ev::Command(Command::RunJob { peer, body, reply })) => {
                if swarm.is_connected(&peer) {
                    state.send(&mut swarm, &mut peers, peer, body, reply);
                } else {
                    // Ask the DHT where the peer is now (behind a NAT: a relay circuit), then
                    // send when connected or when the lookup ends.
                    let first = !state.waiting.contains_key(&peer);
                    state.waiting.entry(peer).or_default().push((body, reply));
                    if first {
                        swarm.behaviour_mut().kad.get_closest_peers(peer);
                    }
                }
            }
            Some(Ev::Command(Command::CancelJob { peer, request })) => {
                // Only over a connection: a job that was sent has one, or is lost anyway.
                if swarm.is_connected(&peer) {
                    swarm.behaviour_mut().cancels.send_request(&peer, request);
                } else {
                    log!("p2p: cannot cancel a job on {peer}: not connected");
                }
            }
            Some(Ev::Command(Command::Announce { notice, except })) => {
                let to: Vec<PeerId> = peers.iter().filter(|(id, p)| p.is_phase() && Some(**id) != except).map(|(id, _)| *id).collect();
                for peer in to {
                    swarm.behaviour_mut().notices.send_request(&peer, notice.clone());
                }
            }
            Some(Ev::Command(Command::FindProviders { key, reply })) => {
                let id = swarm.behaviour_mut().kad.get_providers(kad::RecordKey::new(&key));
                state.lookups.insert(id, (reply, Vec::new()));
            }
            Some(Ev::Done(channel, answer)) => {
                if swarm.behaviour_mut().jobs.send_response(channel, answer).is_err() {
                    log!("p2p: a job's requester left before its answer");
                }
            }
            Some(Ev::Swarm(event)) => events::handle(&mut swarm, &mut peers, &mut state, event),
        }
    }
}

enum Ev {
    Swarm(SwarmEvent<BehaviourEvent>),
    Command(Command),
    Done(ResponseChannel<Vec<u8>>, Vec<u8>),
    Tick,
}

