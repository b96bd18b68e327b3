//! Jobs: the one home of everything that runs a job, whoever asks and wherever it runs.
//!
//! `Jobs` owns what jobs share: the engine and its compiled modules, the module store, the
//! node's key, the memory pool jobs reserve from, the job slots and forward permits
//! (`slots`), the answers kept for idempotency keys (`kept`), the asynchronous queue
//! (`queue`) and the table of jobs peers sent (`executor`). How a job runs:
//!
//! - here (`local`): module resolved and compiled, limits resolved against the node's, memory
//!   admitted, run by the engine in a slot, receipt signed;
//! - on a peer (`place`): sent over the job protocol, its answer verified as a client verifies
//!   it, retried on other peers; on k nodes at once (`place`, redundancy);
//! - for a peer (`executor`): as here, registered so that its sender can cancel it;
//! - later (`queue`, `runner`): queued, taken by a runner thread, run as a synchronous job.
//!
//! Every error is a `JobError` with a stable code; nothing here knows HTTP (api/ translates).

mod error;
mod executor;
mod kept;
mod local;
mod place;
mod queue;
mod runner;
mod slots;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use phase_core::job::answer::{Answer, Redundant};
use phase_core::Limits;

pub use error::JobError;
pub use phase_core::job::request::{JobRequest, ModuleSource, Placement};
pub use queue::{job_id_of_handle, valid_handle, QueueConfig, Status, Submitted};
pub use runner::{Cancelled, OutputChunk, MAX_OUTPUT_CHUNK};
pub use slots::Slot;

use crate::data_dir::DataDir;
use crate::engine::{Engine, DEFAULT_MAX_MODULE_BYTES};
use crate::identity::NodeIdentity;
use crate::memory::{Budget, MemoryPlan, Reservation};
use crate::modules::{ModuleStore, StoreError};
use crate::p2p::P2p;

/// Input size: default cap and hard maximum.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 16 << 20;
pub const HARD_MAX_INPUT_BYTES: usize = 64 << 20;

/// What jobs may ask for and what the node holds for them.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    pub default_limits: Limits,
    /// Per-node maxima; never above `Limits::MAX`.
    pub max_limits: Limits,
    pub max_module_bytes: usize,
    pub max_input_bytes: usize,
    /// Job slots: jobs running here at once (and forwards, and waits on a key, each as many).
    pub max_concurrent: usize,
    /// Cap on module bytes kept in the data dir.
    pub max_disk_module_bytes: u64,
    /// How the node's memory budget is split (memory.rs).
    pub memory: MemoryPlan,
    pub queue: QueueConfig,
}

impl JobsConfig {
    /// Limits and caps derived from a memory plan, so that a default job fits the pool several
    /// times and the largest one (every limit at its maximum, the largest input) fits it once
    /// (docs/api.md, "Memory"): memory limit default pool/8 (at most 64 MiB), maximum 3/8 of
    /// the pool (at most 1 GiB); output default pool/32 (at most 1 MiB), maximum pool/16 (at
    /// most 16 MiB); modules pool/12 (what compiling one takes is reserved from its structure;
    /// at most 64 MiB), inputs pool/8 (at most 16 MiB). Kept answers of asynchronous jobs: half the results' share.
    /// Derived sizes are whole multiples of 64 KiB (wasm pages).
    pub fn for_memory(memory: MemoryPlan) -> JobsConfig {
        let pool = memory.pool / 65536 * 65536;
        let page = |n: u64| (n / 65536 * 65536).max(65536);
        let default_limits = Limits {
            memory_bytes: page(pool / 8).min(Limits::DEFAULT.memory_bytes),
            output_bytes: page(pool / 32).min(Limits::DEFAULT.output_bytes),
            ..Limits::DEFAULT
        };
        let async_queue = QueueConfig { max_result_bytes: (memory.results / 4 * 3) as usize, ..QueueConfig::default() };
        // No output limit whose answer an asynchronous job could not keep.
        let keepable = queue::max_keepable_output(async_queue.max_result_bytes);
        let max_limits = Limits {
            memory_bytes: page(pool / 8 * 3).min(Limits::MAX.memory_bytes),
            output_bytes: page((pool / 16).min(keepable)).min(Limits::MAX.output_bytes),
            ..Limits::MAX
        };
        JobsConfig {
            default_limits,
            max_limits,
            max_module_bytes: (page(pool / crate::memory::MODULE_SHARE) as usize).min(DEFAULT_MAX_MODULE_BYTES),
            max_input_bytes: (page(pool / 8) as usize).min(DEFAULT_MAX_INPUT_BYTES),
            max_concurrent: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            max_disk_module_bytes: crate::modules::DEFAULT_MAX_DISK_BYTES,
            memory,
            queue: async_queue,
        }
    }

    /// The largest job request this node takes, over HTTP or from a peer: base64 grows bytes
    /// by 4/3; 1 MiB covers args, env and the JSON around them.
    pub fn max_request_bytes(&self) -> usize {
        (self.max_module_bytes + self.max_input_bytes) / 3 * 4 + (1 << 20)
    }
}

/// Counters for /metrics.
#[derive(Default)]
pub struct Stats {
    pub jobs_exited: AtomicU64,
    pub jobs_cancelled: AtomicU64,
    pub jobs_trapped: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub rejected_memory: AtomicU64,
    pub rejected_invalid: AtomicU64,
    pub replays: AtomicU64,
    pub fuel_used: AtomicU64,
    pub host_failures: AtomicU64,
}

/// A job's answer, or the k answers of a redundant run.
#[derive(Debug, Clone)]
pub enum Answered {
    One(Arc<Answer>),
    Many(Arc<Redundant>),
}

impl Answered {
    /// The JSON a client gets (docs/api.md); a replay says so.
    pub fn to_json(&self, replayed: bool) -> String {
        match self {
            Answered::One(a) => a.to_json_with(replayed || a.replayed),
            Answered::Many(r) => r.to_json_with(replayed || r.replayed),
        }
    }

    /// Bytes a kept copy holds (about).
    fn size(&self) -> usize {
        let one = |a: &Answer| a.stdout.len() + a.stderr.len() + a.trap_detail.as_ref().map_or(0, String::len) + kept::ANSWER_OVERHEAD;
        match self {
            Answered::One(a) => one(a),
            Answered::Many(r) => r.answers.iter().map(one).sum(),
        }
    }
}

/// A finished job as its caller gets it.
pub struct Finished {
    pub answer: Answered,
    /// True when an idempotency key returned a kept answer without running the job again.
    pub replayed: bool,
    /// The memory the job was admitted with, held until its answer is out.
    pub hold: Option<Reservation>,
    /// It ran on this node (not on a peer, not redundantly).
    pub here: bool,
}

impl Finished {
    pub fn to_json(&self) -> String {
        self.answer.to_json(self.replayed)
    }
}

/// Why the job service could not start.
#[derive(Debug)]
pub enum StartError {
    Modules(StoreError),
    Runner(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Modules(e) => write!(f, "module store: {e}"),
            StartError::Runner(e) => write!(f, "job runner thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Modules(e) => Some(e),
            StartError::Runner(e) => Some(e),
        }
    }
}

pub struct Jobs {
    engine: Engine,
    identity: NodeIdentity,
    config: JobsConfig,
    modules: ModuleStore,
    /// The memory plan's pool: what jobs, compilations, queued requests and request bodies
    /// reserve from.
    pool: Arc<Budget>,
    slots: slots::Slots,
    kept: kept::Kept,
    queue: queue::Queue,
    /// Jobs peers sent that run here now, so each sender can cancel its own.
    from_peers: executor::PeerJobs,
    /// The peer network, once joined: where jobs are placed.
    network: OnceLock<P2p>,
    /// Set when the node drains before it boots a new release: why (no new jobs from then on).
    draining: std::sync::Mutex<Option<String>>,
    pub stats: Stats,
}

impl Jobs {
    /// The job service of a node with `identity`; with a data dir, uploaded modules and the
    /// answers of asynchronous jobs are kept there (and read back).
    pub fn new(identity: NodeIdentity, mut config: JobsConfig, data_dir: Option<&DataDir>) -> Result<Jobs, StartError> {
        config.max_limits = config.max_limits.min(&Limits::MAX);
        config.default_limits = config.default_limits.min(&config.max_limits);
        config.max_input_bytes = config.max_input_bytes.min(HARD_MAX_INPUT_BYTES);
        config.max_concurrent = config.max_concurrent.max(1);
        let plan = config.memory;
        let engine = Engine::with_cache(config.max_module_bytes, plan.compiled as usize);
        config.max_module_bytes = engine.max_module_bytes();
        let modules = ModuleStore::new(data_dir.map(DataDir::modules), plan.module_store as usize, config.max_disk_module_bytes).map_err(StartError::Modules)?;
        let results: Option<PathBuf> = data_dir.map(DataDir::results);
        Ok(Jobs {
            engine,
            identity,
            modules,
            pool: Budget::new(plan.pool),
            slots: slots::Slots::new(config.max_concurrent),
            kept: kept::Kept::new(&plan),
            queue: queue::Queue::new(config.queue, results),
            from_peers: executor::PeerJobs::default(),
            network: OnceLock::new(),
            draining: std::sync::Mutex::new(None),
            config,
            stats: Stats::default(),
        })
    }

    /// From now on jobs may be placed on the peer network's nodes.
    pub fn join(&self, network: P2p) {
        let _ = self.network.set(network);
    }

    fn network(&self) -> Option<&P2p> {
        self.network.get()
    }

    pub fn config(&self) -> &JobsConfig {
        &self.config
    }
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }
    /// Jobs running here now.
    pub fn in_flight(&self) -> usize {
        self.slots.running()
    }
    /// Jobs forwarded to peers and awaited now.
    pub fn forwarding(&self) -> usize {
        self.slots.forwarding()
    }
    /// Whether a job could take a slot now (a peer's job frame is read only then).
    pub fn has_free_slot(&self) -> bool {
        !self.slots.all_running() && self.draining().is_none()
    }

    /// From now on no new job is taken, from clients or peers (`Draining`, said with `why`);
    /// what runs and what is queued goes on.
    pub fn drain(&self, why: String) {
        *self.draining.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// Takes jobs again (a drain whose hand-off failed).
    pub fn undrain(&self) {
        *self.draining.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Why the node drains, if it does.
    pub fn draining(&self) -> Option<String> {
        self.draining.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Refuses a new job while the node drains.
    fn taking_jobs(&self) -> Result<(), JobError> {
        match self.draining() {
            Some(why) => Err(JobError::Draining(why)),
            None => Ok(()),
        }
    }

    /// Nothing runs here or waits on a peer for this node, and no asynchronous job is queued.
    pub fn idle(&self) -> bool {
        let (queued, running, ..) = self.queue.counts();
        self.in_flight() == 0 && self.forwarding() == 0 && queued == 0 && running == 0
    }
    pub fn cached_modules(&self) -> usize {
        self.modules.len()
    }
    /// The pool requests and jobs reserve memory from.
    pub fn pool(&self) -> &Arc<Budget> {
        &self.pool
    }
    /// Bytes held now: (kept answers, compiled modules, module bytes in RAM).
    pub fn cache_bytes(&self) -> (usize, usize, usize) {
        (self.kept.bytes(), self.engine.cached_bytes().0, self.modules.memory_bytes())
    }
    /// Asynchronous jobs: (queued, running, ended and kept, bytes kept, bytes reserved).
    pub fn queue_counts(&self) -> (usize, usize, usize, usize, usize) {
        self.queue.counts()
    }

    /// Whether a job request body of `len` bytes is worth reading now: a large one while every
    /// slot is busy, on a node that can only run it here, is refused unread (`busy`). Small
    /// ones are read: they may name a kept answer or a job to wait for.
    pub fn admit_job_body(&self, len: u64) -> Result<(), JobError> {
        if len > EARLY_BUSY_BODY && self.network().is_none() && self.slots.all_running() {
            return Err(self.count(JobError::Busy { max: self.slots.max() }));
        }
        Ok(())
    }

    /// Whether a request body of `len` bytes, which takes `factor` times its length to read and
    /// parse, fits in the memory left now: what does not is refused before a byte of it is
    /// read. (The front then reserves it as its bytes arrive: a body that never comes holds
    /// nothing.)
    pub fn body_fits(&self, len: u64, factor: u64) -> Result<(), JobError> {
        let need = len.saturating_mul(factor);
        match need <= self.pool.free() {
            true => Ok(()),
            false => Err(self.count(JobError::NoMemory { what: "the request body", need, free: self.pool.free() })),
        }
    }

    /// Counts a refusal by its kind, and gives it back.
    fn count(&self, e: JobError) -> JobError {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        match e {
            JobError::Busy { .. } | JobError::QueueFull { .. } => s.rejected_busy.fetch_add(1, Relaxed),
            JobError::NoMemory { .. } => s.rejected_memory.fetch_add(1, Relaxed),
            // Counted where they happen.
            JobError::Host(_) | JobError::Cancelled => 0,
            _ => s.rejected_invalid.fetch_add(1, Relaxed),
        };
        e
    }

    /// A job request body, parsed (a request that does not parse is counted as invalid).
    pub fn request(&self, body: &[u8]) -> Result<JobRequest, JobError> {
        JobRequest::parse(body).map_err(|e| self.count(JobError::InvalidRequest(e.0)))
    }

    /// Runs a job and waits for its answer: on k nodes (`redundancy`), on a peer (`placement`,
    /// or no placement on a node with peers whose slots are all busy), or here.
    pub fn run(&self, req: JobRequest) -> Result<Finished, JobError> {
        self.taking_jobs()?;
        self.run_in(req, None, Default::default(), &place::Unwatched)
    }

    /// Runs `req` as `run` does, here in `slot` if one was taken (with `progress` seen from
    /// outside); `watch` follows it to a peer.
    fn run_in(&self, req: JobRequest, slot: Option<Slot<'_>>, progress: Arc<crate::engine::Progress>, watch: &dyn place::Watch) -> Result<Finished, JobError> {
        if let Some(k) = req.redundancy.filter(|&k| k != 1) {
            if req.placement.is_some() {
                return Err(JobError::InvalidRequest("give placement or redundancy, not both".into()));
            }
            return self.redundant(req, k.min(usize::MAX as u64) as usize);
        }
        let placement = match &req.placement {
            // No placement: here while a slot is free; when every slot is busy, on the peer
            // that answers fastest instead of a busy (load-based placement).
            None if slot.is_none() && self.network().is_some() && self.slots.all_running() => Placement::Remote,
            None => Placement::Local,
            Some(p) => p.clone(),
        };
        match placement {
            Placement::Local => self.run_here(slot, req, progress),
            elsewhere => self.place(req, &elsewhere, watch),
        }
    }
}

/// Job bodies above this are refused unread while every slot is busy (see `admit_job_body`).
const EARLY_BUSY_BODY: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::job_reservation;

    #[test]
    fn limits_derive_from_the_pool_in_whole_pages() {
        // An appliance with 128 MiB of RAM has a budget of about 64 MiB.
        let c = JobsConfig::for_memory(MemoryPlan::new(64 << 20, None));
        let pool = c.memory.pool;
        for v in [c.default_limits.memory_bytes, c.max_limits.memory_bytes, c.max_limits.output_bytes, c.max_module_bytes as u64, c.max_input_bytes as u64] {
            assert_eq!(v % 65536, 0, "{v}");
        }
        // The largest job fits the pool; the default several times over.
        let largest = job_reservation(c.max_limits.memory_bytes, c.max_limits.output_bytes) + 2 * c.max_input_bytes as u64;
        assert!(largest <= pool, "{largest} > {pool}");
        assert!(3 * job_reservation(c.default_limits.memory_bytes, c.default_limits.output_bytes) <= pool);
        // A host's budget leaves the hard defaults as they are.
        let big = JobsConfig::for_memory(MemoryPlan::new(16 << 30, None));
        assert_eq!((big.default_limits, big.max_limits.memory_bytes), (Limits::DEFAULT, Limits::MAX.memory_bytes));
        assert_eq!((big.max_module_bytes, big.max_input_bytes), (DEFAULT_MAX_MODULE_BYTES, DEFAULT_MAX_INPUT_BYTES));
        assert_eq!(big.max_limits.output_bytes, Limits::MAX.output_bytes);
        // CPython for WASI (26 267 204 bytes) is admitted by default on a machine of 1 GiB
        // (800 MiB available; the default budget: three quarters, less the allocator's cache),
        // not with 512 MiB available (docs/api.md, "Memory"); its compilation's bound (276 MB)
        // fits the pool.
        let host = |available: u64| JobsConfig::for_memory(MemoryPlan::new((available - (16 << 20)) / 4 * 3, None));
        assert!(host(800 << 20).max_module_bytes >= 26_267_204 && host(1 << 29).max_module_bytes < 26_267_204);
        assert!(host(800 << 20).memory.pool > 276_000_000 + (64 << 20), "{}", host(800 << 20).memory.pool);
    }

    #[test]
    fn the_largest_output_limit_is_one_an_asynchronous_job_can_keep() {
        for budget in [32u64 << 20, 64 << 20, 192 << 20, 1 << 30, 16 << 30] {
            let c = JobsConfig::for_memory(MemoryPlan::new(budget, None));
            assert!(queue::keep_cost(c.max_limits.output_bytes) <= c.queue.max_result_bytes, "budget {budget}");
        }
        // docs/api.md and decisions.md D38 give this figure: 6.69 MiB, not pool/16 (8.25 MiB).
        let appliance = JobsConfig::for_memory(MemoryPlan::new(192 << 20, None));
        assert_eq!((appliance.queue.max_result_bytes, appliance.max_limits.output_bytes), (9 << 20, 107 * 65536));
    }
}
