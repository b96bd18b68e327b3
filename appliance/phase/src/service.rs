//! The node's job service, independent of transport: resolves modules, applies limits,
//! concurrency caps and memory admission, runs jobs, signs receipts, and replays results for
//! idempotency keys.
//!
//! Everything it holds is bounded: jobs by their slots (`max_concurrent`), the memory they may
//! use by the pool of the node's memory plan (reserved at its limits before a job runs),
//! compiled modules and module bytes by their measured size, kept results by their bytes, and
//! every wait (for a job running under the same idempotency key) by that job's deadline.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use phase_core::encoding::hex_encode;
use phase_core::job::{JobSpec, SpecError};
use phase_core::job::receipt::{Outcome, Receipt};
use phase_core::{sha256, Digest, LimitError, Limits};

pub use phase_core::job::request::{JobRequest, ModuleSource};

use crate::cache::SizedCache;
use crate::engine::{CompiledModule, Engine, Execution, Job, ModuleError, Progress, DEFAULT_MAX_MODULE_BYTES};
use crate::identity::NodeIdentity;
use crate::memory::{job_reservation, Budget, MemoryPlan, Reservation};
use crate::modules::ModuleStore;

/// Input size: default cap and hard maximum.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 16 << 20;
pub const HARD_MAX_INPUT_BYTES: usize = 64 << 20;
/// Idempotency keys: length cap, and how many results are remembered at most (besides the
/// byte cap of the memory plan).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
pub const MAX_KEPT_RESULTS: usize = 100_000;
/// What a kept result costs beyond its output: receipt, spec, map entry.
const RESULT_OVERHEAD: usize = 1024;
/// A request waiting for a job under the same key waits at most that job's deadline plus this.
const WAIT_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub default_limits: Limits,
    /// Per-node maxima; never above `Limits::MAX`.
    pub max_limits: Limits,
    pub max_module_bytes: usize,
    pub max_input_bytes: usize,
    pub max_concurrent: usize,
    pub data_dir: Option<PathBuf>,
    /// Cap on module bytes kept in the data dir.
    pub max_disk_module_bytes: u64,
    /// How the node's memory budget is split (memory.rs).
    pub memory: MemoryPlan,
}

impl NodeConfig {
    /// Limits and caps derived from a memory plan, so that a default job fits the pool several
    /// times and the largest one (every limit at its maximum, the largest input) fits it once
    /// (docs/api.md, "Memory"): memory limit default pool/8 (at most 64 MiB), maximum 3/8 of
    /// the pool (at most 1 GiB); output default pool/32 (at most 1 MiB), maximum pool/16 (at
    /// most 16 MiB); modules pool/40 (compiling takes up to 40 bytes per byte of wasm), inputs
    /// pool/8 (both at most 16 MiB).
    /// Derived sizes are whole multiples of 64 KiB (wasm pages).
    pub fn for_memory(memory: MemoryPlan) -> NodeConfig {
        let pool = memory.pool / 65536 * 65536;
        let page = |n: u64| (n / 65536 * 65536).max(65536);
        let default_limits = Limits {
            memory_bytes: page(pool / 8).min(Limits::DEFAULT.memory_bytes),
            output_bytes: page(pool / 32).min(Limits::DEFAULT.output_bytes),
            ..Limits::DEFAULT
        };
        let max_limits = Limits {
            memory_bytes: page(pool / 8 * 3).min(Limits::MAX.memory_bytes),
            output_bytes: page(pool / 16).min(Limits::MAX.output_bytes),
            ..Limits::MAX
        };
        NodeConfig {
            default_limits,
            max_limits,
            max_module_bytes: (page(pool / crate::memory::COMPILE_FACTOR) as usize).min(DEFAULT_MAX_MODULE_BYTES),
            max_input_bytes: (page(pool / 8) as usize).min(DEFAULT_MAX_INPUT_BYTES),
            max_concurrent: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            data_dir: None,
            max_disk_module_bytes: crate::modules::DEFAULT_MAX_DISK_BYTES,
            memory,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig::for_memory(MemoryPlan::new(MemoryPlan::default_budget(), None))
    }
}

/// A job that ran: what it was, what happened, and the signed receipt.
pub struct JobOutcome {
    pub spec: JobSpec,
    pub execution: Execution,
    pub receipt: Receipt,
}

impl JobOutcome {
    /// Bytes a kept copy of this outcome holds.
    fn size(&self) -> usize {
        let strings: usize = self.spec.args.iter().chain(&self.spec.env).map(|s| s.len()).sum();
        self.execution.stdout.len() + self.execution.stderr.len() + strings + RESULT_OVERHEAD
    }
}

/// A finished job as the caller gets it.
pub struct Completed {
    pub outcome: Arc<JobOutcome>,
    /// True when an idempotency key returned an earlier result without running again.
    pub replayed: bool,
    /// The memory the job was admitted with, held until its answer is out.
    pub hold: Option<Reservation>,
}

impl Completed {
    /// The JSON answer for a finished job (docs/api.md).
    pub fn to_json(&self) -> String {
        let o = &self.outcome;
        let ex = &o.execution;
        phase_core::job::answer::to_json(&o.receipt, &ex.stdout, &ex.stderr, ex.detail.as_deref(), self.replayed)
    }
}

#[derive(Debug)]
pub enum ServiceError {
    InvalidRequest(String),
    ModuleNotFound(Digest),
    Module(ModuleError),
    InputTooLarge { size: usize, max: usize },
    Limit(LimitError),
    Spec(SpecError),
    Busy { max: usize },
    /// What the request needs does not fit in the memory left (`what`: a job, a compilation).
    NoMemory { what: &'static str, need: u64, free: u64 },
    IdempotencyConflict(String),
    /// A job with this key is still running after the wait allowed for it.
    IdempotencyPending(String),
    /// The host failed the job (memory it had admitted could not be allocated): no result.
    Host(String),
    Storage(String),
    /// Stopped on request before it finished: no result, no receipt.
    Cancelled,
}

impl ServiceError {
    /// Stable machine-readable code (docs/api.md).
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::InvalidRequest(_) => "invalid_request",
            ServiceError::ModuleNotFound(_) => "module_not_found",
            ServiceError::Module(ModuleError::TooLarge { .. }) => "module_too_large",
            ServiceError::Module(_) => "invalid_module",
            ServiceError::InputTooLarge { .. } => "input_too_large",
            ServiceError::Limit(_) => "limit_out_of_range",
            ServiceError::Spec(_) => "invalid_args_env",
            ServiceError::Busy { .. } => "busy",
            ServiceError::NoMemory { .. } => "no_memory",
            ServiceError::IdempotencyConflict(_) => "idempotency_conflict",
            ServiceError::IdempotencyPending(_) => "idempotency_pending",
            ServiceError::Host(_) => "host_failure",
            ServiceError::Storage(_) => "storage",
            ServiceError::Cancelled => "cancelled",
        }
    }

    /// The HTTP status (docs/api.md).
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::InvalidRequest(_) => 400,
            ServiceError::ModuleNotFound(_) => 404,
            ServiceError::Module(ModuleError::TooLarge { .. }) | ServiceError::InputTooLarge { .. } => 413,
            ServiceError::Module(_) | ServiceError::Limit(_) | ServiceError::Spec(_) => 422,
            ServiceError::IdempotencyConflict(_) | ServiceError::Cancelled => 409,
            ServiceError::Busy { .. } => 429,
            ServiceError::NoMemory { .. } | ServiceError::IdempotencyPending(_) | ServiceError::Host(_) => 503,
            ServiceError::Storage(_) => 507,
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::InvalidRequest(m) => f.write_str(m),
            ServiceError::ModuleNotFound(d) => {
                write!(f, "module {} is not on this node; PUT /v1/modules first", hex_encode(d))
            }
            ServiceError::Module(e) => write!(f, "{e}"),
            ServiceError::InputTooLarge { size, max } => {
                write!(f, "input is {size} bytes, the limit is {max}")
            }
            ServiceError::Limit(e) => write!(f, "{e}"),
            ServiceError::Spec(e) => write!(f, "{e}"),
            ServiceError::Busy { max } => write!(f, "all {max} job slots are busy; retry later"),
            ServiceError::NoMemory { what, need, free } => {
                write!(f, "{what} needs {need} bytes of memory and {free} are free now; retry later")
            }
            ServiceError::IdempotencyConflict(k) => {
                write!(f, "idempotency key {k:?} was used for a different job")
            }
            ServiceError::IdempotencyPending(k) => {
                write!(f, "a job with idempotency key {k:?} is still running; retry later")
            }
            ServiceError::Host(m) => write!(f, "this node failed the job, no result was signed: {m}; retry, here or elsewhere"),
            ServiceError::Storage(m) => write!(f, "module store: {m}"),
            ServiceError::Cancelled => f.write_str("the job was cancelled before it finished; no receipt was signed"),
        }
    }
}

impl From<ModuleError> for ServiceError {
    fn from(e: ModuleError) -> Self {
        match e {
            ModuleError::NoMemory { need, free } => ServiceError::NoMemory { what: "compiling the module", need, free },
            e => ServiceError::Module(e),
        }
    }
}

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

/// Idempotency keys: the jobs running under a key, and the results kept (bounded by bytes).
struct Idempotency {
    running: Mutex<HashMap<String, Digest>>,
    changed: Condvar,
    /// By SHA-256 of the key: (job id, outcome).
    done: SizedCache<(Digest, Arc<JobOutcome>)>,
    /// Answers of jobs this node placed on peers, by SHA-256 of the key: (fingerprint of the
    /// request, the executor's answer).
    placed: SizedCache<(Digest, String)>,
}

/// A job slot; given back when dropped.
pub struct Slot<'a> {
    count: &'a AtomicUsize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Relaxed);
    }
}

fn take(count: &AtomicUsize, max: usize) -> Option<Slot<'_>> {
    if count.fetch_add(1, Relaxed) >= max {
        count.fetch_sub(1, Relaxed);
        return None;
    }
    Some(Slot { count })
}

/// Gives back a job's slot and its key (kept as done, or released) however the job ends.
struct RunGuard<'a> {
    service: &'a NodeService,
    key: Option<&'a str>,
    done: Option<(Digest, Arc<JobOutcome>)>,
    _slot: Option<Slot<'a>>,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let idem = &self.service.idem;
        let mut running = idem.running.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(key);
        if let Some((id, outcome)) = self.done.take() {
            let size = outcome.size();
            idem.done.insert(sha256(key.as_bytes()), Arc::new((id, outcome)), size);
        }
        idem.changed.notify_all();
    }
}

pub struct NodeService {
    engine: Engine,
    identity: NodeIdentity,
    config: NodeConfig,
    modules: ModuleStore,
    /// The memory plan's pool: what jobs, compilations and request bodies reserve from.
    pool: Arc<Budget>,
    idem: Idempotency,
    in_flight: AtomicUsize,
    forwarding: AtomicUsize,
    waiting: AtomicUsize,
    pub stats: Stats,
    started: Instant,
}

impl NodeService {
    pub fn new(identity: NodeIdentity, mut config: NodeConfig) -> Result<NodeService, String> {
        config.max_limits = config.max_limits.min(&Limits::MAX);
        config.default_limits = config.default_limits.min(&config.max_limits);
        config.max_input_bytes = config.max_input_bytes.min(HARD_MAX_INPUT_BYTES);
        config.max_concurrent = config.max_concurrent.max(1);
        let plan = config.memory;
        let engine = Engine::with_cache(config.max_module_bytes, plan.compiled as usize);
        config.max_module_bytes = engine.max_module_bytes();
        let modules = ModuleStore::new(
            config.data_dir.as_ref().map(|d| d.join("modules")),
            plan.module_store as usize,
            config.max_disk_module_bytes,
        )?;
        Ok(NodeService {
            engine,
            identity,
            modules,
            pool: Budget::new(plan.pool),
            idem: Idempotency {
                running: Mutex::new(HashMap::new()),
                changed: Condvar::new(),
                // Half the results' share is for asynchronous jobs (queue.rs); of the rest,
                // three quarters for local runs, a quarter for placed jobs.
                done: SizedCache::new(MAX_KEPT_RESULTS, (plan.results / 8 * 3) as usize),
                placed: SizedCache::new(MAX_KEPT_RESULTS, (plan.results / 8) as usize),
            },
            config,
            in_flight: AtomicUsize::new(0),
            forwarding: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            stats: Stats::default(),
            started: Instant::now(),
        })
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }
    pub fn forwarding(&self) -> usize {
        self.forwarding.load(Relaxed)
    }
    pub fn cached_modules(&self) -> usize {
        self.modules.len()
    }
    /// The pool requests and jobs reserve memory from.
    pub fn pool(&self) -> &Arc<Budget> {
        &self.pool
    }
    /// Bytes held now: (kept results, compiled modules, module bytes in RAM).
    pub fn cache_bytes(&self) -> (usize, usize, usize) {
        (self.idem.done.bytes() + self.idem.placed.bytes(), self.engine.cached_bytes().0, self.modules.memory_bytes())
    }

    /// The answer kept for a job placed on a peer under `key`: (request fingerprint, answer).
    pub fn placed(&self, key: &str) -> Option<Arc<(Digest, String)>> {
        self.idem.placed.get(&sha256(key.as_bytes()))
    }

    /// Keeps a placed job's answer under its key (bounded by bytes; oldest forgotten first).
    pub fn keep_placed(&self, key: &str, fingerprint: Digest, answer: String) {
        let size = answer.len() + key.len() + RESULT_OVERHEAD;
        self.idem.placed.insert(sha256(key.as_bytes()), Arc::new((fingerprint, answer)), size);
    }

    /// A job slot, if one is free: taken before a peer's job is even parsed.
    pub fn try_slot(&self) -> Result<Slot<'_>, ServiceError> {
        take(&self.in_flight, self.config.max_concurrent).ok_or(ServiceError::Busy { max: self.config.max_concurrent })
    }

    /// A permit to forward a job to a peer and wait for it (as many at once as job slots).
    pub fn try_forward(&self) -> Result<Slot<'_>, ServiceError> {
        let max = self.config.max_concurrent;
        take(&self.forwarding, max).ok_or(ServiceError::Busy { max })
    }

    /// The bytes of a module this node holds (uploaded or sent inline earlier).
    pub fn module_bytes(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        self.modules.get(d)
    }

    fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, ServiceError> {
        self.engine.compile_within(bytes, Some(&self.pool)).map_err(ServiceError::from)
    }

    /// Validates and stores a module so jobs can name it by hash. Returns (hash, newly stored).
    pub fn put_module(&self, bytes: Vec<u8>) -> Result<(Digest, bool), ServiceError> {
        let compiled = self.compile(&bytes)?;
        let fresh = self.modules.put(compiled.sha256, bytes).map_err(ServiceError::Storage)?;
        Ok((compiled.sha256, fresh))
    }

    pub fn submit(&self, req: JobRequest) -> Result<Completed, ServiceError> {
        self.submit_with(None, req)
    }

    /// Runs a job in `slot` (taken earlier with `try_slot`), or in a slot taken when it is due.
    pub fn submit_with(&self, slot: Option<Slot<'_>>, req: JobRequest) -> Result<Completed, ServiceError> {
        self.submit_watched(slot, req, Default::default())
    }

    /// The id a request's job will have (its spec's hash), checking what can be checked
    /// without compiling: key, input size, limits, args and env. An asynchronous job is named
    /// by it before it runs.
    pub fn job_id_of(&self, req: &JobRequest) -> Result<Digest, ServiceError> {
        self.check_request(req)?;
        let module = match &req.module {
            ModuleSource::Bytes(b) => sha256(b),
            ModuleSource::Sha256(d) => *d,
        };
        let limits = Limits::resolve(&req.limits, &self.config.default_limits, &self.config.max_limits).map_err(ServiceError::Limit)?;
        let spec = JobSpec::new(module, sha256(&req.input), req.args.clone(), req.env.clone(), limits).map_err(ServiceError::Spec)?;
        Ok(spec.job_id())
    }

    fn check_request(&self, req: &JobRequest) -> Result<(), ServiceError> {
        if let Some(k) = &req.idempotency_key {
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN {
                return Err(ServiceError::InvalidRequest(format!(
                    "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes"
                )));
            }
        }
        if req.input.len() > self.config.max_input_bytes {
            return Err(ServiceError::InputTooLarge {
                size: req.input.len(),
                max: self.config.max_input_bytes,
            });
        }
        Ok(())
    }

    /// As `submit_with`, with the running job seen through `progress` (fuel so far, cancel).
    pub fn submit_watched(&self, slot: Option<Slot<'_>>, req: JobRequest, progress: Arc<Progress>) -> Result<Completed, ServiceError> {
        let result = self.submit_inner(slot, req, progress);
        if let Err(e) = &result {
            match e {
                ServiceError::Busy { .. } => self.stats.rejected_busy.fetch_add(1, Relaxed),
                ServiceError::NoMemory { .. } => self.stats.rejected_memory.fetch_add(1, Relaxed),
                ServiceError::Host(_) | ServiceError::Cancelled => 0, // counted where it happens
                _ => self.stats.rejected_invalid.fetch_add(1, Relaxed),
            };
        }
        result
    }

    fn submit_inner(&self, slot: Option<Slot<'_>>, req: JobRequest, progress: Arc<Progress>) -> Result<Completed, ServiceError> {
        self.check_request(&req)?;
        let module = match req.module {
            ModuleSource::Bytes(bytes) => {
                let m = self.compile(&bytes)?;
                // Keep it in RAM so later jobs may name it by hash; only PUT writes to disk.
                self.modules.remember(m.sha256, bytes);
                m
            }
            ModuleSource::Sha256(d) => match self.engine.cached(&d) {
                Some(m) => m,
                None => {
                    let bytes = self.modules.get(&d).ok_or(ServiceError::ModuleNotFound(d))?;
                    self.compile(&bytes)?
                }
            },
        };
        let limits =
            Limits::resolve(&req.limits, &self.config.default_limits, &self.config.max_limits)
                .map_err(ServiceError::Limit)?;
        let spec = JobSpec::new(module.sha256, sha256(&req.input), req.args, req.env, limits)
            .map_err(ServiceError::Spec)?;
        let job_id = spec.job_id();
        let key = req.idempotency_key.as_deref();
        if let Some(k) = key {
            let wait = Duration::from_millis(limits.deadline_ms) + WAIT_MARGIN;
            if let Some(done) = self.claim_key(k, job_id, wait)? {
                self.stats.replays.fetch_add(1, Relaxed);
                return Ok(Completed { outcome: done, replayed: true, hold: None });
            }
        }
        let max = self.config.max_concurrent;
        let mut guard = RunGuard { service: self, key, done: None, _slot: None };
        guard._slot = Some(match slot {
            Some(s) => s,
            None => take(&self.in_flight, max).ok_or(ServiceError::Busy { max })?,
        });
        // The input lives as long as the job (copied once into the job's Arc), beside what the
        // job itself may take.
        // A watched job's output is copied once more when it ends (engine::Progress).
        let watched_copy = if progress.watched { limits.output_bytes } else { 0 };
        let need = job_reservation(limits.memory_bytes, limits.output_bytes).saturating_add(2 * req.input.len() as u64).saturating_add(watched_copy);
        let hold = self.pool.try_reserve(need).ok_or(ServiceError::NoMemory { what: "the job", need, free: self.pool.free() })?;
        let job = Job { spec, module, input: Arc::from(req.input), progress };
        let execution = self.engine.run(&job);
        if execution.cancelled {
            log!("job {}: cancelled after {} fuel; not signed", &hex_encode(&job_id)[..12], execution.fuel_used);
            self.stats.jobs_cancelled.fetch_add(1, Relaxed);
            return Err(ServiceError::Cancelled);
        }
        if let Some(why) = execution.host_failure {
            log!("job {}: not signed: {why}", &hex_encode(&job_id)[..12]);
            self.stats.host_failures.fetch_add(1, Relaxed);
            return Err(ServiceError::Host(why));
        }
        let receipt = Receipt::sign(execution.receipt_body(&job.spec), self.identity.key_pair());
        match execution.outcome {
            Outcome::Exited(_) => self.stats.jobs_exited.fetch_add(1, Relaxed),
            Outcome::Trapped(_) => self.stats.jobs_trapped.fetch_add(1, Relaxed),
        };
        self.stats.fuel_used.fetch_add(execution.fuel_used, Relaxed);
        log!(
            "job {} module {} {} fuel {} in {} us{}",
            &hex_encode(&job_id)[..12],
            &hex_encode(&job.spec.module_sha256)[..12],
            match execution.outcome {
                Outcome::Exited(c) => format!("exited {c}"),
                Outcome::Trapped(t) => format!("trapped {t}"),
            },
            execution.fuel_used,
            execution.wall_time.as_micros(),
            execution.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
        );
        let outcome = Arc::new(JobOutcome { spec: job.spec, execution, receipt });
        guard.done = Some((job_id, outcome.clone()));
        drop(guard);
        Ok(Completed { outcome, replayed: false, hold: Some(hold) })
    }

    /// Claims an idempotency key for `job_id`: returns an earlier result, waits (at most
    /// `wait`, and only as one of at most `max_concurrent` waiters) for a run in progress with
    /// the same key, or marks the key as running.
    fn claim_key(&self, key: &str, job_id: Digest, wait: Duration) -> Result<Option<Arc<JobOutcome>>, ServiceError> {
        let conflict = || ServiceError::IdempotencyConflict(key.to_string());
        let digest = sha256(key.as_bytes());
        let give_up = Instant::now() + wait;
        let mut waiter: Option<Slot<'_>> = None;
        let mut running = self.idem.running.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(done) = self.idem.done.get(&digest) {
                return if done.0 == job_id { Ok(Some(done.1.clone())) } else { Err(conflict()) };
            }
            match running.get(key) {
                None => {
                    running.insert(key.to_string(), job_id);
                    return Ok(None);
                }
                Some(id) if *id != job_id => return Err(conflict()),
                Some(_) => {}
            }
            if waiter.is_none() {
                let max = self.config.max_concurrent;
                waiter = Some(take(&self.waiting, max).ok_or(ServiceError::Busy { max })?);
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ServiceError::IdempotencyPending(key.to_string()));
            }
            running = self.idem.changed.wait_timeout(running, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_derive_from_the_pool_in_whole_pages() {
        // An appliance with 128 MiB of RAM has a budget of about 64 MiB.
        let c = NodeConfig::for_memory(MemoryPlan::new(64 << 20, None));
        let pool = c.memory.pool;
        for v in [c.default_limits.memory_bytes, c.max_limits.memory_bytes, c.max_limits.output_bytes, c.max_module_bytes as u64, c.max_input_bytes as u64] {
            assert_eq!(v % 65536, 0, "{v}");
        }
        // The largest job fits the pool; the default several times over.
        let largest = job_reservation(c.max_limits.memory_bytes, c.max_limits.output_bytes) + 2 * c.max_input_bytes as u64;
        assert!(largest <= pool, "{largest} > {pool}");
        assert!(3 * job_reservation(c.default_limits.memory_bytes, c.default_limits.output_bytes) <= pool);
        // A host's budget leaves the hard defaults as they are.
        let big = NodeConfig::for_memory(MemoryPlan::new(16 << 30, None));
        assert_eq!((big.default_limits, big.max_limits.memory_bytes), (Limits::DEFAULT, Limits::MAX.memory_bytes));
        assert_eq!((big.max_module_bytes, big.max_input_bytes), (DEFAULT_MAX_MODULE_BYTES, DEFAULT_MAX_INPUT_BYTES));
    }
}
