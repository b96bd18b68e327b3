//! The node's job service, independent of transport: resolves modules, applies limits and
//! concurrency caps, runs jobs, signs receipts, and replays results for idempotency keys.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use phase_core::encoding::hex_encode;
use phase_core::job::{JobSpec, RequestedLimits, SpecError};
use phase_core::receipt::{Outcome, Receipt};
use phase_core::{sha256, Digest, LimitError, Limits};

use crate::engine::{Engine, Execution, Job, ModuleError, DEFAULT_MAX_MODULE_BYTES};
use crate::identity::NodeIdentity;
use crate::modules::ModuleStore;

/// Input size: default cap and hard maximum.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 16 << 20;
pub const HARD_MAX_INPUT_BYTES: usize = 64 << 20;
/// Idempotency keys: length cap and how many results are remembered.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
pub const IDEMPOTENCY_ENTRIES: usize = 10_000;

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
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            default_limits: Limits::DEFAULT,
            max_limits: Limits::MAX,
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            max_concurrent: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            data_dir: None,
            max_disk_module_bytes: crate::modules::DEFAULT_MAX_DISK_BYTES,
        }
    }
}

pub enum ModuleSource {
    Bytes(Vec<u8>),
    Sha256(Digest),
}

pub struct JobRequest {
    pub module: ModuleSource,
    pub input: Vec<u8>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub limits: RequestedLimits,
    pub idempotency_key: Option<String>,
    /// `local`, `remote` or a peer id (remote.rs); None = here.
    pub placement: Option<String>,
    /// Run on this many distinct nodes and compare (remote.rs); None = 1.
    pub redundancy: Option<u64>,
}

/// A job that ran: what it was, what happened, and the signed receipt.
pub struct JobOutcome {
    pub spec: JobSpec,
    pub execution: Execution,
    pub receipt: Receipt,
}

/// A finished job as the caller gets it.
pub struct Completed {
    pub outcome: Arc<JobOutcome>,
    /// True when an idempotency key returned an earlier result without running again.
    pub replayed: bool,
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
    IdempotencyConflict(String),
    Storage(String),
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
            ServiceError::IdempotencyConflict(_) => "idempotency_conflict",
            ServiceError::Storage(_) => "storage",
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
            ServiceError::IdempotencyConflict(k) => {
                write!(f, "idempotency key {k:?} was used for a different job")
            }
            ServiceError::Storage(m) => write!(f, "module store: {m}"),
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub jobs_exited: AtomicU64,
    pub jobs_trapped: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub rejected_invalid: AtomicU64,
    pub replays: AtomicU64,
    pub fuel_used: AtomicU64,
}

enum IdemState {
    Running(Digest),
    Done(Digest, Arc<JobOutcome>),
}

#[derive(Default)]
struct Idempotency {
    entries: Mutex<(HashMap<String, IdemState>, VecDeque<String>)>,
    changed: Condvar,
}

/// Releases a job slot and wakes idempotency waiters however the job ends.
struct RunGuard<'a> {
    service: &'a NodeService,
    key: Option<&'a str>,
    done: Option<(Digest, Arc<JobOutcome>)>,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.service.in_flight.fetch_sub(1, Relaxed);
        if let Some(key) = self.key {
            let mut guard = self.service.idem.entries.lock().unwrap_or_else(|p| p.into_inner());
            let (map, order) = &mut *guard;
            match self.done.take() {
                Some((id, outcome)) => {
                    map.insert(key.to_string(), IdemState::Done(id, outcome));
                    order.push_back(key.to_string());
                    while order.len() > IDEMPOTENCY_ENTRIES {
                        if let Some(old) = order.pop_front() {
                            map.remove(&old);
                        }
                    }
                }
                None => {
                    map.remove(key);
                }
            }
            self.service.idem.changed.notify_all();
        }
    }
}

pub struct NodeService {
    engine: Engine,
    identity: NodeIdentity,
    config: NodeConfig,
    modules: ModuleStore,
    idem: Idempotency,
    in_flight: AtomicUsize,
    pub stats: Stats,
    started: Instant,
}

impl NodeService {
    pub fn new(identity: NodeIdentity, mut config: NodeConfig) -> Result<NodeService, String> {
        config.max_limits = config.max_limits.min(&Limits::MAX);
        config.default_limits = config.default_limits.min(&config.max_limits);
        config.max_input_bytes = config.max_input_bytes.min(HARD_MAX_INPUT_BYTES);
        config.max_concurrent = config.max_concurrent.max(1);
        let engine = Engine::new(config.max_module_bytes);
        config.max_module_bytes = engine.max_module_bytes();
        let modules = ModuleStore::new(
            config.data_dir.as_ref().map(|d| d.join("modules")),
            256 << 20,
            config.max_disk_module_bytes,
        )?;
        Ok(NodeService {
            engine,
            identity,
            config,
            modules,
            idem: Idempotency::default(),
            in_flight: AtomicUsize::new(0),
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
    pub fn cached_modules(&self) -> usize {
        self.modules.len()
    }

    /// The bytes of a module this node holds (uploaded or sent inline earlier).
    pub fn module_bytes(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        self.modules.get(d)
    }

    /// Validates and stores a module so jobs can name it by hash. Returns (hash, newly stored).
    pub fn put_module(&self, bytes: Vec<u8>) -> Result<(Digest, bool), ServiceError> {
        let compiled = self.engine.compile(&bytes).map_err(ServiceError::Module)?;
        let fresh = self.modules.put(compiled.sha256, bytes).map_err(ServiceError::Storage)?;
        Ok((compiled.sha256, fresh))
    }

    pub fn submit(&self, req: JobRequest) -> Result<Completed, ServiceError> {
        let result = self.submit_inner(req);
        if let Err(e) = &result {
            match e {
                ServiceError::Busy { .. } => self.stats.rejected_busy.fetch_add(1, Relaxed),
                _ => self.stats.rejected_invalid.fetch_add(1, Relaxed),
            };
        }
        result
    }

    fn submit_inner(&self, req: JobRequest) -> Result<Completed, ServiceError> {
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
        let module = match req.module {
            ModuleSource::Bytes(bytes) => {
                let m = self.engine.compile(&bytes).map_err(ServiceError::Module)?;
                // Keep it in RAM so later jobs may name it by hash; only PUT writes to disk.
                self.modules.remember(m.sha256, bytes);
                m
            }
            ModuleSource::Sha256(d) => match self.engine.cached(&d) {
                Some(m) => m,
                None => {
                    let bytes = self.modules.get(&d).ok_or(ServiceError::ModuleNotFound(d))?;
                    self.engine.compile(&bytes).map_err(ServiceError::Module)?
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
            if let Some(done) = self.claim_key(k, job_id)? {
                self.stats.replays.fetch_add(1, Relaxed);
                return Ok(Completed { outcome: done, replayed: true });
            }
        }
        let max = self.config.max_concurrent;
        let mut guard = RunGuard { service: self, key, done: None };
        if self.in_flight.fetch_add(1, Relaxed) >= max {
            return Err(ServiceError::Busy { max }); // the guard releases slot and key
        }
        let job = Job { spec, module, input: Arc::from(req.input) };
        let execution = self.engine.run(&job);
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
        Ok(Completed { outcome, replayed: false })
    }

    /// Claims an idempotency key for `job_id`: returns an earlier result, waits for a run in
    /// progress with the same key, or marks the key as running.
    fn claim_key(&self, key: &str, job_id: Digest) -> Result<Option<Arc<JobOutcome>>, ServiceError> {
        let mut guard = self.idem.entries.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let conflict = || ServiceError::IdempotencyConflict(key.to_string());
            match guard.0.get(key) {
                None => {
                    guard.0.insert(key.to_string(), IdemState::Running(job_id));
                    return Ok(None);
                }
                Some(IdemState::Done(id, outcome)) => {
                    return if *id == job_id { Ok(Some(outcome.clone())) } else { Err(conflict()) };
                }
                Some(IdemState::Running(id)) if *id != job_id => return Err(conflict()),
                Some(IdemState::Running(_)) => {
                    guard = self.idem.changed.wait(guard).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }
}
