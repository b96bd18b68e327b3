//! The peer network (rust-libp2p 0.55 on smol, no tokio): TCP + Noise + Yamux, identify,
//! ping, Kademlia on Phase's own protocol name (never the public IPFS DHT), mDNS on the LAN,
//! and a pre-shared swarm key (pnet) for private networks. The libp2p key is the node's own
//! Ed25519 identity, so the PeerId names the key that signs receipts.
//!
//! The swarm runs on its own thread; the rest of the node (sync code) talks to it through a
//! command channel.

mod cancel;
mod jobs;
mod load;
mod notices;
mod swarm;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use libp2p::{Multiaddr, PeerId};
pub use load::Load;

/// Kademlia protocol name: Phase nodes form their own DHT.
pub const KAD_PROTOCOL: &str = "/phase/kad/1.0.0";
/// identify protocol version: peers speaking another one are not Phase nodes.
pub const PROTOCOL_VERSION: &str = "/phase/1.0.0";

/// What this node does for its peers: run the jobs they send, stop them on their sender's
/// word, and say how busy it is.
pub trait Executor: Send + Sync + 'static {
    /// Runs a job another peer sent: the sender, the `POST /v1/jobs` body in, the answer frame
    /// out (off the swarm's thread).
    fn run(&self, from: PeerId, frame: Vec<u8>) -> futures::future::BoxFuture<'static, Vec<u8>>;
    /// Stops a job a peer sent, named by the SHA-256 of its request frame, if that peer sent it
    /// and it runs: true if it was told to stop (called on the swarm's thread: never blocks).
    fn cancel(&self, from: PeerId, request: [u8; 32]) -> bool;
    /// This node's load now, shared with peers by the load protocol.
    fn load(&self) -> Load;
    /// Whether a job could take a slot now: a job request frame is read only then.
    fn has_free_slot(&self) -> bool;
    /// A notice a peer sent on `/phase/release/1.0.0` (a release or a failure report): true
    /// if it was news here (verified and kept), so the swarm passes it on to its other peers.
    /// Called on the swarm's thread: never blocks.
    fn notice(&self, _from: PeerId, _notice: &[u8]) -> bool {
        false
    }
    /// The notices a newly identified peer is told: the newest releases and the failure
    /// reports this node keeps (it drops what it knows).
    fn notices(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

/// How the swarm misbehaves on purpose, for the hostile-peer tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Send peers oversized load records.
    pub bad_load_records: bool,
    /// Job requests to peers announce 16 MiB, send 12 and stall.
    pub stall_frames: bool,
}

#[derive(Clone)]
pub struct P2pConfig {
    pub listen: Vec<Multiaddr>,
    /// Multiaddrs ending in /p2p/<peer id>.
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// The swarm key of a private network: only holders can connect.
    pub swarm_key: Option<String>,
    /// Sent in identify's agent version: "phase/<version> <capabilities>".
    pub agent: String,
    /// Internet mode: AutoNAT, and a relay slot at each bootstrap peer so the node is
    /// reachable behind a NAT (DCUtR then tries a direct connection).
    pub nat: bool,
    /// Largest job request a peer may send (bytes): the node's module + input caps.
    pub max_job_request: usize,
    /// DHT keys to provide beyond the job capabilities (boot releases this node serves).
    pub provide: Vec<String>,
    pub faults: Faults,
    /// Where inbound job frames reserve their memory.
    pub budget: Option<Arc<crate::memory::Budget>>,
    /// Established connections at most, in all and per peer; incoming connections in their
    /// handshake at most (docs/protocol.md).
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub max_pending_incoming: u32,
    /// Peers remembered at most (connected ones are always kept).
    pub max_peers: usize,
}

/// The PeerId an Ed25519 node key derives to (a receipt's signer, as the peer network names it).
pub fn peer_of_key(key: &[u8; 32]) -> Option<PeerId> {
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(libp2p::identity::PublicKey::from(ed).to_peer_id())
}

/// Default bound on peer connections: one per 2 MiB of the memory budget, 16 to 512.
pub fn default_max_connections(budget: u64) -> u32 {
    ((budget >> 21) as u32).clamp(16, 512)
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            swarm_key: None,
            agent: String::new(),
            nat: false,
            max_job_request: jobs::DEFAULT_MAX_REQUEST,
            provide: Vec::new(),
            faults: Faults::default(),
            budget: None,
            max_connections: 128,
            max_connections_per_peer: 3,
            max_pending_incoming: 32,
            max_peers: 4096,
        }
    }
}

/// How often a wait for a peer's answer asks whether to go on.
const ABANDON_CHECK: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub enum P2pError {
    Key(String),
    SwarmKey(String),
    Listen { addr: String, reason: String },
    Bootstrap { addr: String, reason: String },
    Mdns(String),
    /// A job sent to a peer failed in transit (not a job error: those come back as answers).
    Remote { peer: PeerId, reason: String },
    /// A peer that took a job and did not answer within the wait.
    Silent { peer: PeerId, waited: Duration },
    /// The caller stopped waiting for a job's answer (its job was cancelled).
    Abandoned,
    Stopped,
}

impl std::error::Error for P2pError {}

impl fmt::Display for P2pError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            P2pError::Key(e) => write!(f, "p2p identity: {e}"),
            P2pError::SwarmKey(e) => write!(f, "swarm key: {e}"),
            P2pError::Listen { addr, reason } => write!(f, "p2p listen on {addr}: {reason}"),
            P2pError::Bootstrap { addr, reason } => write!(f, "bootstrap peer {addr}: {reason}"),
            P2pError::Mdns(e) => write!(f, "mDNS: {e}"),
            P2pError::Remote { peer, reason } => write!(f, "job to peer {peer}: {reason}"),
            P2pError::Silent { peer, waited } => write!(f, "job to peer {peer}: no answer within {}s", waited.as_secs()),
            P2pError::Abandoned => f.write_str("stopped waiting for the peer's answer"),
            P2pError::Stopped => f.write_str("the p2p service has stopped"),
        }
    }
}

/// What this node knows about a peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    pub addrs: Vec<Multiaddr>,
    /// From identify; empty until the peer has identified itself.
    pub agent: String,
    pub connected: bool,
    /// How we first learnt of it: mdns, dht, bootstrap or inbound.
    pub source: &'static str,
    pub seen_secs_ago: u64,
    pub rtt_ms: Option<u64>,
    /// Its last load record, unless none came or it is stale (older than 30 s).
    pub load: Option<PeerLoad>,
}

/// A peer's load as this node last heard it.
#[derive(Debug, Clone, Copy)]
pub struct PeerLoad {
    pub in_flight: u32,
    pub slots: u32,
    /// Job requests this node sent it after that record, still unanswered: not counted in
    /// `in_flight` yet.
    pub sent_since: u32,
    pub age_ms: u64,
}

impl PeerInfo {
    /// The HTTP API's base URLs at the peer's direct IPv4 addresses (its port from its
    /// capabilities, else the default).
    pub fn http_urls(&self) -> Vec<String> {
        let port = phase_core::net::peer::Capabilities::parse(&self.agent).map_or(phase_core::boot::cmdline::DEFAULT_HTTP_PORT, |c| c.http_port());
        let mut urls: Vec<String> = vec![];
        for a in self.addrs.iter().filter(|a| !a.iter().any(|x| matches!(x, libp2p::multiaddr::Protocol::P2pCircuit))) {
            if let Some(ip) = a.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip),
                _ => None,
            }) {
                let url = format!("http://{ip}:{port}");
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
        }
        urls
    }
}

impl PeerLoad {
    /// Jobs it is likely running now, including ours the record does not know of yet.
    pub fn busy(&self) -> u32 {
        self.in_flight.saturating_add(self.sent_since)
    }
}

/// A running peer network (a handle: clones talk to the same swarm).
#[derive(Clone)]
pub struct P2p {
    commands: smol::channel::Sender<swarm::Command>,
    pub peer_id: PeerId,
}

impl P2p {
    /// Starts the swarm with the node's Ed25519 seed as its key; `executor` runs the jobs
    /// other peers send and tells them how busy this node is.
    pub fn start(seed: [u8; 32], config: P2pConfig, executor: Arc<dyn Executor>) -> Result<P2p, P2pError> {
        let (commands, peer_id) = swarm::spawn(seed, config, executor)?;
        Ok(P2p { commands, peer_id })
    }

    /// Asks `peer` to stop the job whose request frame hashes to `request`, without waiting
    /// (the peer's answer is logged; the job's own answer says how it ended). False if the
    /// swarm's command queue is full or the swarm has stopped.
    pub fn cancel_job(&self, peer: PeerId, request: [u8; 32]) -> bool {
        self.commands.try_send(swarm::Command::CancelJob { peer, request }).is_ok()
    }

    /// Sends the swarm a command and waits up to `wait` for its answer, without a thread:
    /// what the HTTP routes use.
    pub async fn ask_async<T>(&self, wait: Duration, make: impl FnOnce(smol::channel::Sender<T>) -> swarm::Command) -> Result<T, P2pError> {
        let (tx, rx) = smol::channel::bounded(1);
        let command = make(tx);
        // The whole exchange is bounded, queueing the command included.
        smol::future::or(
            async {
                self.commands.send(command).await.ok()?;
                rx.recv().await.ok()
            },
            async {
                smol::Timer::after(wait).await;
                None
            },
        )
        .await
        .ok_or(P2pError::Stopped)
    }

    fn ask<T>(&self, wait: Duration, make: impl FnOnce(smol::channel::Sender<T>) -> swarm::Command) -> Result<T, P2pError> {
        smol::block_on(self.ask_async(wait, make))
    }

    /// Sends a job (a `POST /v1/jobs` body) to `peer` and waits up to `wait` for its answer,
    /// or until `abandon` says to stop (asked every `ABANDON_CHECK`): a cancelled job's wait
    /// ends at once, whatever the peer does.
    pub fn run_job(&self, peer: PeerId, body: Vec<u8>, wait: Duration, abandon: &dyn Fn() -> bool) -> Result<Vec<u8>, P2pError> {
        let give_up = Instant::now() + wait;
        let (tx, rx) = smol::channel::bounded(1);
        let command = swarm::Command::RunJob { peer, body, reply: tx };
        // A peer that took the job and stalls: give up on it, the caller tries another.
        let silent = P2pError::Silent { peer, waited: wait };
        smol::block_on(async {
            let queued = smol::future::or(async { self.commands.send(command).await.is_ok() }, async {
                smol::Timer::at(give_up).await;
                false
            });
            if !queued.await {
                return Err(P2pError::Stopped);
            }
            loop {
                if abandon() {
                    return Err(P2pError::Abandoned);
                }
                let left = give_up.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(silent);
                }
                let step = smol::future::or(async { Some(rx.recv().await) }, async {
                    smol::Timer::after(left.min(ABANDON_CHECK)).await;
                    None
                });
                match step.await {
                    Some(Ok(answer)) => return answer.map_err(|reason| P2pError::Remote { peer, reason }),
                    Some(Err(_)) => return Err(P2pError::Stopped),
                    None => {}
                }
            }
        })
    }

    /// Peers providing a capability key (e.g. `/phase/cap/wasm/x86_64`), by a DHT lookup
    /// (at most 12 s).
    pub async fn find_providers(&self, key: &str) -> Result<Vec<PeerId>, P2pError> {
        let key = key.to_string();
        self.ask_async(Duration::from_secs(12), |reply| swarm::Command::FindProviders { key, reply }).await
    }

    pub async fn peers_async(&self) -> Result<Vec<PeerInfo>, P2pError> {
        self.ask_async(Duration::from_secs(5), swarm::Command::Peers).await
    }

    /// The peer table, for code on worker threads (placement).
    pub fn peers(&self) -> Result<Vec<PeerInfo>, P2pError> {
        self.ask(Duration::from_secs(5), swarm::Command::Peers)
    }

    /// Tells every connected Phase peer but `except` of a release or a failure report (a
    /// notice this node verified). False if the swarm's command queue is full or it stopped.
    pub fn announce(&self, notice: Vec<u8>, except: Option<PeerId>) -> bool {
        self.commands.try_send(swarm::Command::Announce { notice, except }).is_ok()
    }

    /// The addresses this node listens on, each with /p2p/<peer id>.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, P2pError> {
        self.ask_async(Duration::from_secs(5), swarm::Command::ListenAddrs).await
    }
}
