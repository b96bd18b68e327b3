//! The one value a running node is: its job service, the peer network, the boot artifacts it
//! serves, the worker pool, and how it misbehaves on purpose for tests. The API's routes and
//! placement take a `&Node`; nothing of a node lives in process-wide state.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::boot::provider::Provider;
use crate::p2p::P2p;
use crate::service::NodeService;
use crate::workers::Workers;

pub struct Node {
    pub service: Arc<NodeService>,
    pub p2p: Option<P2p>,
    pub boot: Option<Provider>,
    /// Answers PXE clients (`--pxe`): ProxyDHCP, TFTP, and the /v1/pxe routes.
    pub pxe: Option<Arc<crate::pxe::Pxe>>,
    pub workers: Arc<Workers>,
    /// Asynchronous jobs: queued, running, and kept after they end.
    pub queue: crate::queue::Queue,
    /// The port the API listens on (boot discovery leaves this node's own address out).
    pub http_port: u16,
    /// `--fault exit-after-job`: the process exits once a job's answer is sent, so the boot
    /// tests can watch PID 1 restart the node.
    pub exit_after_job: bool,
    /// HTTP requests received.
    pub requests: AtomicU64,
}

/// How a node misbehaves as an executor for peers, for the hostile-peer tests (`--fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFault {
    None,
    /// Answers with the receipt re-signed by a key that is not this node's.
    WrongKey,
    /// Answers with bytes that are not JSON.
    Garbage,
    /// Takes the job and never answers.
    Stall,
    /// Answers with a different output under a valid receipt signed with its own key: a lie
    /// only redundancy can catch.
    Lie,
    /// Answers with the genuine receipt but another stdout.
    ForgeStdout,
    /// Answers with the genuine answer of another job (one more argument): the same module and
    /// input, another job id.
    OtherJob,
    /// Answers every job `cancelled`, which nobody asked for.
    Cancelled,
}
