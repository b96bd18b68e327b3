//! `phase node`: its flags, read into a `NodeConfig`, and the node started on it.

use std::io::Read;
use std::path::PathBuf;

use argh::FromArgs;

use super::{keys, Failure, EXIT_ERROR};
use crate::faults::Fault;
use crate::node::{Node, NodeConfig, PeerSettings, PxeSettings};

#[derive(FromArgs)]
/// Run the node: the job API over HTTP.
#[argh(subcommand, name = "node")]
pub struct NodeCmd {
    /// HTTP listen address (default 127.0.0.1:8700; port 0 picks a free one)
    #[argh(option, default = "String::from(DEFAULT_HTTP)")]
    http: String,
    /// keep the node key and uploaded modules here (default: in RAM only)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// jobs that may run at once (default: CPU count)
    #[argh(option)]
    max_concurrent: Option<usize>,
    /// memory the node may commit to requests, jobs and caches, in bytes (default: three
    /// quarters of the memory available at start); limits below derive from it
    #[argh(option)]
    memory_budget: Option<u64>,
    /// bytes of job answers kept, a quarter for idempotency keys and three quarters for asynchronous jobs
    /// (default: a sixteenth of the budget)
    #[argh(option)]
    max_result_bytes: Option<u64>,
    /// asynchronous jobs waiting at most (default 64; beyond: 429 queue_full)
    #[argh(option)]
    max_queued: Option<usize>,
    /// seconds an asynchronous job's answer is kept after it ends (default 3600)
    #[argh(option)]
    result_ttl: Option<u64>,
    /// largest module accepted, in bytes (default: pool/12, at most 64 MiB; hard maximum 64 MiB)
    #[argh(option)]
    max_module_bytes: Option<usize>,
    /// largest job input accepted, in bytes (default: pool/8, at most 16 MiB; hard maximum 64 MiB)
    #[argh(option)]
    max_input_bytes: Option<usize>,
    /// highest fuel a job may ask for
    #[argh(option)]
    max_fuel: Option<u64>,
    /// highest memory cap a job may ask for, in bytes (default: 3/8 of the pool, at most 1 GiB)
    #[argh(option)]
    max_memory_bytes: Option<u64>,
    /// highest output cap a job may ask for, in bytes (default: pool/16, at most 16 MiB)
    #[argh(option)]
    max_output_bytes: Option<u64>,
    /// open HTTP connections at most (default: one per MiB of the budget, 64 to 1024)
    #[argh(option)]
    max_connections: Option<usize>,
    /// open HTTP connections per source address at most (default: an eighth of the total, at least 16)
    #[argh(option)]
    max_connections_per_ip: Option<usize>,
    /// established peer connections at most (default: one per 2 MiB of the budget, 16 to 512)
    #[argh(option)]
    max_peer_connections: Option<u32>,
    /// longest deadline a job may ask for, in milliseconds
    #[argh(option)]
    max_deadline_ms: Option<u64>,
    /// cap on uploaded module bytes kept in the data dir (default 1 GiB)
    #[argh(option)]
    max_disk_module_bytes: Option<u64>,
    /// fault injection for tests: exit-after-job (exit once a job's answer is sent);
    /// peer-wrong-key, peer-garbage, peer-stall, peer-lie, peer-forge-stdout, peer-other-job,
    /// peer-cancelled, peer-padded-answer (misbehave as an executor for peers);
    /// peer-bad-load (send peers oversized load records); peer-big-frames (job requests to
    /// peers announce 16 MiB, send 12 and stall);
    /// boot-tamper, boot-drop-halfway (serve boot artifacts with a flipped byte / cut in half)
    #[argh(option)]
    fault: Option<String>,
    /// join the peer network, listening on this multiaddr (repeatable), e.g. /ip4/0.0.0.0/tcp/4001
    #[argh(option)]
    p2p: Vec<String>,
    /// a bootstrap peer: multiaddr ending in /p2p/<peer id> (repeatable)
    #[argh(option)]
    bootstrap: Vec<String>,
    /// discover peers on the LAN with mDNS
    #[argh(switch)]
    mdns: bool,
    /// internet mode: AutoNAT, and listen through relay slots at the bootstrap peers so the
    /// node is reachable behind a NAT (hole punching with DCUtR where it works)
    #[argh(switch)]
    nat: bool,
    /// private network: the swarm key file (/key/swarm/psk/1.0.0/ format); only holders connect
    #[argh(option)]
    swarm_key: Option<PathBuf>,
    /// serve the boot releases in this store (see `phase publish`) at /v1/boot and announce them
    #[argh(option)]
    boot_store: Option<PathBuf>,
    /// a trusted publisher key, hex (repeatable): with it, every release in --boot-store must
    /// be signed by one of these keys
    #[argh(option)]
    trust: Vec<String>,
    /// the release channel whose new releases the node learns of, passes on and (with
    /// --boot-store) fetches and serves in its rollout wave (default stable)
    #[argh(option)]
    channel: Option<String>,
    /// a file holding the operator token (its first line): with it, `POST /v1/releases`
    /// (`phase publish --node`) takes releases from whoever presents the token
    #[argh(option)]
    operator_token_file: Option<PathBuf>,
    /// boot artifact downloads served at once (default 4); more get 503 + Retry-After
    #[argh(option)]
    max_downloads: Option<usize>,
    /// answer PXE and UEFI HTTP Boot clients on this interface: ProxyDHCP on UDP 67 and 4011
    /// (never an address), TFTP on 69; needs --boot-store with an x86_64 or aarch64 release
    /// and --trust
    #[argh(option)]
    pxe: Option<String>,
    /// where the network boot programs for --pxe are (default /usr/lib/ipxe): undionly.kpxe
    /// and snponly.efi boot x86_64 machines, grubaa64.efi arm64 ones
    #[argh(option)]
    pxe_programs: Option<PathBuf>,
    /// the channel PXE clients boot (default stable)
    #[argh(option)]
    pxe_channel: Option<String>,
    /// a kernel parameter for PXE-booted machines (repeatable), e.g. phase.pxe=on
    #[argh(option)]
    pxe_append: Vec<String>,
    /// with --pxe: answer UEFI HTTP Boot clients and iPXE only (no TFTP, no PXE firmware)
    #[argh(switch)]
    pxe_http_only: bool,
    /// read the whole configuration from this JSON file instead of flags (`-`: stdin; what
    /// PID 1 hands the node it starts, docs/cli.md); no other flag may be given with it
    #[argh(option)]
    config: Option<PathBuf>,
}

const DEFAULT_HTTP: &str = "127.0.0.1:8700";

/// Longest configuration document read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl NodeCmd {
    /// The node these flags describe.
    fn into_config(self) -> Result<NodeConfig, Failure> {
        if self.p2p.is_empty() && (!self.bootstrap.is_empty() || self.mdns || self.nat || self.swarm_key.is_some() || self.max_peer_connections.is_some()) {
            return Err(Failure::new("--bootstrap, --mdns, --nat, --swarm-key and --max-peer-connections need --p2p LISTEN_ADDR"));
        }
        let addrs = |flag: &str, list: &[String]| -> Result<Vec<crate::p2p::Multiaddr>, Failure> {
            list.iter().map(|a| a.parse().map_err(|e| Failure::new(format!("{flag} {a:?} is not a multiaddr: {e}")))).collect()
        };
        let p2p = match self.p2p.is_empty() {
            true => None,
            false => Some(PeerSettings {
                listen: addrs("--p2p", &self.p2p)?,
                bootstrap: addrs("--bootstrap", &self.bootstrap)?,
                mdns: self.mdns,
                nat: self.nat,
                swarm_key: self.swarm_key,
                max_connections: self.max_peer_connections,
            }),
        };
        let pxe = self.pxe.map(|interface| PxeSettings {
            interface,
            programs: self.pxe_programs,
            channel: self.pxe_channel,
            append: self.pxe_append,
            http_only: self.pxe_http_only,
            ports: None,
            address: None,
        });
        Ok(NodeConfig {
            http: self.http,
            data_dir: self.data_dir,
            memory_budget: self.memory_budget,
            max_result_bytes: self.max_result_bytes,
            max_concurrent: self.max_concurrent,
            max_queued: self.max_queued,
            result_ttl: self.result_ttl,
            max_module_bytes: self.max_module_bytes,
            max_input_bytes: self.max_input_bytes,
            max_fuel: self.max_fuel,
            max_memory_bytes: self.max_memory_bytes,
            max_output_bytes: self.max_output_bytes,
            max_deadline_ms: self.max_deadline_ms,
            max_disk_module_bytes: self.max_disk_module_bytes,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            p2p,
            boot_store: self.boot_store,
            max_downloads: self.max_downloads,
            trust: keys("--trust", &self.trust)?,
            channel: match self.channel {
                Some(c) if !phase_core::boot::manifest::valid_channel(&c) => return Err(Failure::new(format!("--channel {c:?}: 1-32 characters of a-z, 0-9 and -"))),
                c => c,
            },
            operator: match &self.operator_token_file {
                Some(p) => Some(super::operator_token_hash(p)?),
                None => None,
            },
            update_handoff: None,
            drain: None,
            trial: false,
            window: None,
            booted_from: None,
            pxe,
            hardware_report: None,
            fault: self.fault.as_deref().map(Fault::parse).transpose()?,
        })
    }
}

/// A configuration document: a file, or stdin for `-`.
fn read_config(path: &std::path::Path) -> Result<NodeConfig, Failure> {
    let mut text = String::new();
    let read = match path.to_str() {
        Some("-") => std::io::stdin().take(MAX_CONFIG_BYTES).read_to_string(&mut text),
        _ => std::fs::File::open(path).and_then(|f| f.take(MAX_CONFIG_BYTES).read_to_string(&mut text)),
    };
    read.map_err(|e| Failure::new(format!("--config {}: {e}", path.display())))?;
    Ok(NodeConfig::from_json(&text)?)
}

pub fn node(mut c: NodeCmd) -> i32 {
    let file = c.config.take();
    let flags = c.into_config();
    let config = match file {
        // A flag given at its default passes unnoticed (argh cannot tell), which changes nothing.
        Some(_) if !matches!(&flags, Ok(f) if *f == NodeConfig::new(DEFAULT_HTTP)) => {
            Err(Failure::new("--config takes the whole configuration: give no other flag with it"))
        }
        Some(path) => read_config(&path),
        None => flags,
    };
    let node = config.and_then(|config| Node::start(config).map_err(Failure::from));
    match node {
        Ok(node) => {
            node.wait();
            0
        }
        Err(e) => super::fail("", e, EXIT_ERROR),
    }
}
