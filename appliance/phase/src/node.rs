//! A running node, and the one place that wires one: `Node::start(NodeConfig)` builds the job
//! service, the boot provider, the worker pool, the HTTP front, the peer network and the PXE
//! service from a typed configuration, whether it came from `phase node`'s flags (cli/node.rs)
//! or from the appliance's boot parameters (init/supervisor.rs hands it over as JSON, the one
//! codec in `config`). Nothing of a node lives in process-wide state: two nodes can run in
//! one process (the tests do).

pub mod config;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use phase_core::net::peer::Capabilities;
use phase_core::{job::RequestedLimits, Limits};

pub use config::{NodeConfig, PeerSettings, PxeSettings};

use crate::api::peer::PeerApi;
use crate::api::{Api, Parts};
use crate::boot::provider::{Provider, DEFAULT_MAX_DOWNLOADS};
use crate::data_dir::DataDir;
use crate::faults::{ExitAfterJob, Fault, FaultyExecutor};
use crate::identity::{IdentityError, NodeIdentity};
use crate::jobs::{Jobs, JobsConfig, QueueConfig};
use crate::memory::MemoryPlan;
use crate::p2p::{Executor, P2p, P2pConfig, P2pError};
use crate::pxe::Pxe;
use crate::update::{UpdateConfig, Updates};
use crate::workers::Workers;

/// Job threads run the interpreter, so each gets a roomy stack.
const WORKER_STACK: usize = 4 << 20;

/// Why a node could not start.
#[derive(Debug)]
pub enum NodeError {
    Identity(IdentityError),
    Jobs(crate::jobs::StartError),
    BootStore(crate::boot::BootError),
    Workers(std::io::Error),
    Http(crate::http::HttpError),
    SwarmKey { path: PathBuf, error: std::io::Error },
    P2p(P2pError),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Identity(e) => write!(f, "{e}"),
            NodeError::Jobs(e) => write!(f, "{e}"),
            NodeError::BootStore(e) => write!(f, "{e}"),
            NodeError::Workers(e) => write!(f, "cannot start the worker threads: {e}"),
            NodeError::Http(e) => write!(f, "{e}"),
            NodeError::SwarmKey { path, error } => write!(f, "swarm key {}: {error}", path.display()),
            NodeError::P2p(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NodeError::Identity(e) => Some(e),
            NodeError::Jobs(e) => Some(e),
            NodeError::BootStore(e) => Some(e),
            NodeError::Workers(e) | NodeError::SwarmKey { error: e, .. } => Some(e),
            NodeError::Http(e) => Some(e),
            NodeError::P2p(e) => Some(e),
        }
    }
}

/// A running node.
pub struct Node {
    server: crate::http::Server,
    pub jobs: Arc<Jobs>,
    pub updates: Arc<Updates>,
    pub network: Option<P2p>,
    workers: Arc<Workers>,
}

impl Node {
    /// Starts a node as `config` says, and returns once its API listens.
    pub fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let plan = MemoryPlan::new(config.memory_budget.unwrap_or_else(MemoryPlan::default_budget), config.max_result_bytes);
        let data_dir = config.data_dir.as_ref().map(DataDir::new);
        let identity = match &data_dir {
            Some(d) => NodeIdentity::load_or_create(d).map_err(NodeError::Identity)?,
            None => NodeIdentity::ephemeral(),
        };
        let seed = identity.seed();
        let jobs = Arc::new(Jobs::new(identity, jobs_config(&config, plan), data_dir.as_ref()).map_err(NodeError::Jobs)?);
        let boot = match &config.boot_store {
            Some(dir) => {
                let fault = Fault::provider(config.fault);
                let max = config.max_downloads.unwrap_or(DEFAULT_MAX_DOWNLOADS);
                // During an update's trial the floors move when PID 1 commits, not now.
                let floors = if config.trial { None } else { data_dir.as_ref() };
                match Provider::open(dir, &config.trust, floors, max, fault) {
                    Ok(p) => Some(Arc::new(p)),
                    // A release below a floor this node recorded is refused, and only it: the
                    // node serves jobs without it rather than exit (an appliance's supervisor
                    // would restart it into the same refusal, forever).
                    Err(e @ crate::boot::BootError::Floors(_)) => {
                        log!("boot: not serving {}: {e}", dir.display());
                        None
                    }
                    Err(e) => return Err(NodeError::BootStore(e)),
                }
            }
            None => None,
        };
        let updates = Arc::new(Updates::new(
            UpdateConfig {
                channel: config.channel.clone().unwrap_or_else(|| phase_core::boot::cmdline::DEFAULT_CHANNEL.into()),
                trusted: config.trust.clone(),
                operator: config.operator,
                floors: data_dir.as_ref().map(DataDir::floors),
                apply: config.update_handoff.clone().map(|handoff| crate::update::Apply {
                    drain: Duration::from_secs(config.drain.unwrap_or(phase_core::boot::cmdline::DEFAULT_DRAIN)),
                    trial_mark: handoff.with_file_name("update-trial"),
                    update_now: handoff.with_file_name("update-now"),
                    window: config.window.as_deref().and_then(phase_core::boot::cmdline::Window::parse),
                    handoff,
                }),
            },
            jobs.clone(),
            boot.clone(),
        ));
        // Jobs run on these threads: local ones (a slot each), forwards to peers (a permit each),
        // requests waiting on a running idempotency key (as many as slots), and short work.
        let n = jobs.config().max_concurrent;
        let workers = Workers::start("job", 3 * n + 4, WORKER_STACK).map_err(NodeError::Workers)?;
        // The listener first: its port goes into the capabilities the peer network announces.
        let listener = crate::http::Listener::bind(&config.http).map_err(NodeError::Http)?;
        let http_port = listener.addr.port();
        let network = match &config.p2p {
            Some(p2p) => {
                let executor: Arc<dyn Executor> = Arc::new(PeerApi { jobs: jobs.clone(), workers: workers.clone(), updates: updates.clone() });
                let executor = match config.fault {
                    Some(Fault::Peer(fault)) => Arc::new(FaultyExecutor { inner: executor, fault, key: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed)) }),
                    _ => executor,
                };
                let network = P2p::start(seed, p2p_config(p2p, &config, &jobs, http_port, boot.as_deref())?, executor).map_err(NodeError::P2p)?;
                jobs.join(network.clone());
                updates.join(network.clone());
                Some(network)
            }
            None => None,
        };
        let pxe = config.pxe.as_ref().and_then(|p| start_pxe(p, &config.trust, boot.as_deref(), http_port));
        jobs.start_runners(n).map_err(|e| NodeError::Jobs(crate::jobs::StartError::Runner(e)))?;
        updates.start().map_err(NodeError::Workers)?;
        let mut limits = crate::http::Limits::new(config.max_connections.unwrap_or_else(|| crate::http::default_max_connections(plan.budget)));
        if let Some(n) = config.max_connections_per_ip {
            limits.max_connections_per_ip = n;
        }
        let (max_conn, per_ip) = (limits.max_connections, limits.max_connections_per_ip);
        let connections = crate::http::Places::for_limits(&limits);
        let api = Api::new(Parts { booted_from: config.booted_from.clone(), jobs: jobs.clone(), updates: updates.clone(), network: network.clone(), boot, pxe, workers: workers.clone(), http_port, connections: connections.clone(), hardware_report: config.hardware_report.clone() });
        let server = match config.fault {
            Some(Fault::ExitAfterJob) => crate::http::Server::serve(listener, Arc::new(ExitAfterJob(api)), limits, connections),
            _ => crate::http::Server::serve(listener, Arc::new(api), limits, connections),
        }
        .map_err(NodeError::Http)?;
        log!("node key {}", jobs.identity().public_key_hex());
        log!(
            "memory budget {} MiB: {} MiB for requests and jobs, {} MiB for caches; connections at most {max_conn} ({per_ip} per address)",
            plan.budget >> 20,
            plan.pool >> 20,
            (plan.budget - plan.pool) >> 20
        );
        log!("listening on http://{}", server.addr);
        log!("accepting jobs (max {n} at once)");
        crate::notify::tell_the_service_manager(server.addr);
        Ok(Node { server, jobs, updates, network, workers })
    }

    /// Where the API listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Serves until the process ends.
    pub fn wait(self) {
        self.server.wait();
    }

    /// Stops serving HTTP and lets the work in hand finish (tests and benchmarks).
    pub fn stop(self) {
        self.server.stop();
        self.workers.stop();
    }
}

/// What jobs may ask for: derived from the memory plan, then the flags that override it.
fn jobs_config(c: &NodeConfig, plan: MemoryPlan) -> JobsConfig {
    let derived = JobsConfig::for_memory(plan);
    let d = derived.max_limits;
    let queue = QueueConfig {
        max_queued: c.max_queued.unwrap_or(derived.queue.max_queued),
        result_ttl: c.result_ttl.map(Duration::from_secs).unwrap_or(derived.queue.result_ttl),
        ..derived.queue
    };
    JobsConfig {
        max_limits: Limits {
            fuel: c.max_fuel.unwrap_or(d.fuel),
            memory_bytes: c.max_memory_bytes.unwrap_or(d.memory_bytes),
            output_bytes: c.max_output_bytes.unwrap_or(d.output_bytes),
            deadline_ms: c.max_deadline_ms.unwrap_or(d.deadline_ms),
        },
        max_module_bytes: c.max_module_bytes.unwrap_or(derived.max_module_bytes),
        max_input_bytes: c.max_input_bytes.unwrap_or(derived.max_input_bytes),
        max_concurrent: c.max_concurrent.unwrap_or(derived.max_concurrent),
        max_disk_module_bytes: c.max_disk_module_bytes.unwrap_or(derived.max_disk_module_bytes),
        queue,
        ..derived
    }
}

/// The peer network's configuration, with the capabilities this node announces.
fn p2p_config(p: &PeerSettings, c: &NodeConfig, jobs: &Jobs, http_port: u16, boot: Option<&Provider>) -> Result<P2pConfig, NodeError> {
    let swarm_key = match &p.swarm_key {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|error| NodeError::SwarmKey { path: path.clone(), error })?),
        None => None,
    };
    let cfg = jobs.config();
    let releases: Vec<_> = boot.map(|b| b.entries()).unwrap_or_default();
    let max = cfg.max_limits;
    let capabilities = Capabilities {
        version: env!("CARGO_PKG_VERSION").into(),
        arch: Some(std::env::consts::ARCH.into()),
        cores: Some(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u64),
        jobs: Some(cfg.max_concurrent as u64),
        max: RequestedLimits { fuel: Some(max.fuel), memory_bytes: Some(max.memory_bytes), output_bytes: Some(max.output_bytes), deadline_ms: Some(max.deadline_ms) },
        http_port: Some(http_port),
        boot: releases.iter().map(|e| (e.channel().to_string(), e.arch())).collect(),
    };
    Ok(P2pConfig {
        listen: p.listen.clone(),
        bootstrap: p.bootstrap.clone(),
        mdns: p.mdns,
        swarm_key,
        agent: capabilities.to_agent(),
        nat: p.nat,
        faults: Fault::p2p(c.fault),
        max_job_request: cfg.max_request_bytes(),
        budget: Some(jobs.pool().clone()),
        max_connections: p.max_connections.unwrap_or_else(|| crate::p2p::default_max_connections(cfg.memory.budget)),
        // Per channel/arch, and per channel/arch/publisher for clients that trust one key.
        provide: releases
            .iter()
            .flat_map(|e| {
                let k = crate::boot::provider_key(e.channel(), e.arch());
                [format!("{k}/{}", e.manifest.key_id()), k]
            })
            .collect(),
        ..Default::default()
    })
}

/// The PXE service, or None with the reason logged: a node that cannot answer PXE clients
/// still serves everything else (PID 1 would otherwise restart it in a loop).
fn start_pxe(p: &PxeSettings, trust: &[[u8; 32]], boot: Option<&Provider>, http_port: u16) -> Option<Arc<Pxe>> {
    let refuse = |why: String| {
        log!("pxe: refused on {}: {why}; serving without PXE", p.interface);
        None
    };
    let Some(boot) = boot else { return refuse("no release is served (--boot-store)".into()) };
    if trust.is_empty() {
        return refuse("no --trust key: a PXE-booted machine re-verifies the release with the keys it is given".into());
    }
    let entries = boot.entries();
    let entries: Vec<&crate::boot::store::Entry> = entries.iter().collect();
    let config = crate::pxe::Config {
        interface: p.interface.clone(),
        http_port,
        channel: p.channel.clone().unwrap_or_else(|| phase_core::boot::cmdline::DEFAULT_CHANNEL.into()),
        append: p.append.clone(),
        http_only: p.http_only,
        ports: p.ports.unwrap_or_default(),
        limits: Default::default(),
        address: p.address,
    };
    let dir = p.programs.clone().unwrap_or_else(|| PathBuf::from(crate::boot::netboot::PROGRAMS_DIR));
    match Pxe::start(config, &entries, trust, &dir) {
        Ok(pxe) => Some(pxe),
        Err(e) => refuse(e.to_string()),
    }
}
