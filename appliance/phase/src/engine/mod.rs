//! The job engine: wasmi with fuel metering, a deterministic WASI shim, and a cache of compiled
//! modules keyed by SHA-256, bounded by the memory they really hold. A hostile guest ends with a
//! trap kind in its result; the engine itself never fails because of what a guest does.
//!
//! Each module is compiled in a wasmi engine of its own: wasmi keeps compiled code in its
//! engine until the engine is dropped, so with one shared engine every module ever compiled
//! would stay in memory. Per module, evicting it from the cache frees its code.

pub mod compile_cost;
pub mod fs;
mod wasi;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use phase_core::job::JobSpec;
use phase_core::job::files::Changes;
use phase_core::job::receipt::{FileDigests, Outcome, ReceiptBody, TrapKind};
use phase_core::{sha256, Digest};
use wasmi::{CompilationMode, Config, Error, ExternType, Linker, Module, ResourceLimiter, Store, TypedResumableCall};

use crate::cache::SizedCache;
use crate::memory::{Budget, Reservation};
use wasi::RandomStream;

/// Module size: default cap and hard maximum (bytes). A node's default is also at most its
/// pool / MODULE_SHARE (jobs::JobsConfig::for_memory).
pub const DEFAULT_MAX_MODULE_BYTES: usize = 64 << 20;
pub const HARD_MAX_MODULE_BYTES: usize = 64 << 20;

/// Fuel granted per slice; the deadline is checked between slices.
const FUEL_SLICE: u64 = 5_000_000;
/// Wasm call depth. Deep recursion ends as `stack_overflow`, not a host crash.
const MAX_RECURSION_DEPTH: usize = 10_000;

/// Why a module was refused before any job ran.
#[derive(Debug)]
pub enum ModuleError {
    TooLarge { size: usize, max: usize },
    Invalid(String),
    /// An import Phase does not provide (`module.name`, reason).
    UnsupportedImport { import: String, reason: &'static str },
    /// Compiling (or keeping the compiled module) needs more memory than is free now.
    NoMemory { need: u64, free: u64 },
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::TooLarge { size, max } => {
                write!(f, "module is {size} bytes, the limit is {max}")
            }
            ModuleError::Invalid(e) => write!(f, "invalid wasm module: {e}"),
            ModuleError::UnsupportedImport { import, reason } => {
                write!(f, "module imports {import}: {reason}")
            }
            ModuleError::NoMemory { need, free } => {
                write!(f, "compiling the module needs {need} bytes of memory and {free} are free now")
            }
        }
    }
}
impl std::error::Error for ModuleError {}


/// A validated module ready to instantiate, with the linker that satisfies its imports.
pub struct CompiledModule {
    pub sha256: Digest,
    /// Bytes of wasm.
    pub size: usize,
    /// Bytes the compiled module holds (measured at compile time: its engine, code, linker).
    pub footprint: usize,
    /// The most compiling it held at once (temporaries included), measured.
    pub compile_peak: usize,
    module: Module,
    linker: Linker<JobState>,
    /// For a module too large for the cache: its footprint, reserved while it is in use.
    _hold: Option<Reservation>,
}

/// What a guest did that ends it: raised from host functions, read back as a trap kind.
#[derive(Debug, Clone, Copy)]
pub enum GuestFault {
    OutputLimit,
    /// A host call needed more fuel than the job had left.
    OutOfFuel,
    /// The deadline passed while a host call was taking more fuel.
    Deadline,
}

impl fmt::Display for GuestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuestFault::OutputLimit => "output limit reached",
            GuestFault::OutOfFuel => "fuel budget exhausted in a host call",
            GuestFault::Deadline => "wall-clock deadline passed",
        })
    }
}

impl wasmi::errors::HostError for GuestFault {}

/// Per-job state seen by the WASI shim.
pub struct JobState {
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    input: Arc<[u8]>,
    input_pos: usize,
    /// stdout and stderr, readable from outside while the job runs.
    progress: Arc<Progress>,
    output_cap: usize,
    random: RandomStream,
    /// Fuel handed to the store so far (in slices) and the job's whole budget.
    fuel_granted: u64,
    fuel_limit: u64,
    /// Metered engines only; an unmetered engine grants nothing.
    metered: bool,
    deadline: Instant,
    limiter: MemoryLimiter,
    /// The job's files and descriptors (stdio included).
    fs: fs::Fs,
    /// Time the job slept on its own clock (`poll_oneoff`), in ns.
    slept_ns: u64,
}

impl JobState {
    /// The next slice of fuel to hand the store, or None when the budget is spent.
    fn next_slice(&mut self) -> Option<u64> {
        let left = self.fuel_limit - self.fuel_granted;
        if !self.metered || left == 0 {
            return None;
        }
        let add = left.min(FUEL_SLICE);
        self.fuel_granted += add;
        Some(add)
    }

    /// Captures guest output up to the cap; past it the job ends with `output_limit`.
    fn capture(&mut self, fd: i32, bytes: &[u8]) -> Result<(), GuestFault> {
        let mut out = self.progress.output.lock().unwrap_or_else(|p| p.into_inner());
        let Output { stdout, stderr } = &mut *out;
        let room = self.output_cap - (stdout.len() + stderr.len());
        let sink = if fd == 1 { stdout } else { stderr };
        if bytes.len() > room {
            sink.extend_from_slice(&bytes[..room]);
            return Err(GuestFault::OutputLimit);
        }
        sink.extend_from_slice(bytes);
        Ok(())
    }
}

/// Caps linear memory and tables; remembers that it refused so the trap is named for it, and
/// that the host failed to allocate what it had admitted (then the job's result would depend
/// on the host, not on the job: it is not a result).
struct MemoryLimiter {
    memory_bytes: usize,
    refused: bool,
    host_failed: Option<String>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        if desired > self.memory_bytes {
            self.refused = true;
            return Err(wasmi_core::LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        // Table elements also cost host memory: 1 Mi entries is far beyond real programs.
        if desired > 1 << 20 {
            self.refused = true;
            return Err(wasmi_core::LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(true)
    }
    fn memory_grow_failed(&mut self, error: &wasmi::errors::MemoryError) -> Result<(), wasmi_core::LimiterError> {
        if matches!(error, wasmi::errors::MemoryError::OutOfFuel { .. }) {
            return Ok(()); // deterministic: memory.grow returns -1, as on every node
        }
        self.host_failed = Some(format!("the host could not allocate linear memory it had admitted: {error}"));
        // End the guest now; the job is answered as a node error, not a result.
        Err(wasmi_core::LimiterError::ResourceLimiterDeniedAllocation)
    }
    fn table_grow_failed(&mut self, error: &wasmi::errors::TableError) -> Result<(), wasmi_core::LimiterError> {
        self.host_failed = Some(format!("the host could not allocate a table it had admitted: {error}"));
        Err(wasmi_core::LimiterError::ResourceLimiterDeniedAllocation)
    }
    fn instances(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        16
    }
    fn memories(&self) -> usize {
        1
    }
}

/// A job ready to run: its spec (which fixes its id) and its bytes.
pub struct Job {
    pub spec: JobSpec,
    pub module: Arc<CompiledModule>,
    pub input: Arc<[u8]>,
    /// The bytes of the files `spec.files` names, by SHA-256 (each checked against it).
    pub blobs: Blobs,
    /// Seen from outside while it runs: fuel so far, and a request to stop.
    pub progress: Arc<Progress>,
}

/// File bytes by SHA-256.
pub type Blobs = std::collections::BTreeMap<Digest, Arc<[u8]>>;

/// A running job as others see it (an asynchronous job's status, its cancel). Updated and
/// checked between fuel slices, so a cancel takes effect within one slice of guest work.
#[derive(Debug, Default)]
pub struct Progress {
    pub fuel_used: std::sync::atomic::AtomicU64,
    pub cancel: std::sync::atomic::AtomicBool,
    /// What the guest has written so far (within its output cap).
    pub output: std::sync::Mutex<Output>,
    /// Someone reads the output while the job runs (an asynchronous job): it stays here after
    /// the job ends, as a copy, until the answer replaces it; otherwise it moves out.
    pub watched: bool,
}

impl Progress {
    pub fn watched() -> Progress {
        Progress { watched: true, ..Progress::default() }
    }
}

#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What happened when a job ran.
#[derive(Debug, Clone)]
pub struct Execution {
    pub job_id: Digest,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub outcome: Outcome,
    pub fuel_used: u64,
    pub wall_time: Duration,
    /// Engine detail behind a trap, for logs and error messages (not signed).
    pub detail: Option<String>,
    /// The host failed the job (an allocation it had admitted): not a result to sign.
    pub host_failure: Option<String>,
    /// Stopped on request (`Progress::cancel`): not a result to sign.
    pub cancelled: bool,
    /// What a job with files left in them (none for a job without files).
    pub left: Option<fs::Left>,
}

impl Execution {
    /// A job the host could not start: a host failure, not a result.
    fn not_run(job_id: Digest, why: String) -> Execution {
        Execution {
            job_id,
            stdout: Vec::new(),
            stderr: Vec::new(),
            outcome: Outcome::Trapped(TrapKind::Other),
            fuel_used: 0,
            wall_time: Duration::ZERO,
            detail: Some(why.clone()),
            host_failure: Some(why),
            cancelled: false,
            left: None,
        }
    }

    /// The receipt body for this execution of `spec`.
    pub fn receipt_body(&self, spec: &JobSpec) -> ReceiptBody {
        ReceiptBody {
            job_id: self.job_id,
            module_sha256: spec.module_sha256,
            input_sha256: spec.input_sha256,
            stdout_sha256: sha256(&self.stdout),
            stderr_sha256: sha256(&self.stderr),
            outcome: self.outcome,
            fuel_used: self.fuel_used,
            limits: spec.limits,
            wall_time_us: self.wall_time.as_micros() as u64,
            files: spec.files.as_ref().map(|f| FileDigests {
                limits: f.limits,
                given: f.digest(),
                left: self.left.as_ref().map(|l| l.changes.digest()).unwrap_or_else(|| Changes::default().digest()),
            }),
        }
    }
}

/// The trap detail of a job stopped by `Progress::cancel`.
const CANCELLED: &str = "cancelled on request";

/// Compiled modules kept at most (besides their byte cap).
const MAX_CACHED_MODULES: usize = 1024;
/// The compiled-module cache of an engine built without a node's memory plan (`phase run`).
pub const DEFAULT_COMPILED_CACHE_BYTES: usize = 256 << 20;

/// The engine: the wasmi configuration every module is compiled with, and the module cache.
pub struct Engine {
    config: Config,
    cache: SizedCache<CompiledModule>,
    max_module_bytes: usize,
    metered: bool,
}

impl Engine {
    pub fn new(max_module_bytes: usize) -> Engine {
        Self::build(max_module_bytes.min(HARD_MAX_MODULE_BYTES), DEFAULT_COMPILED_CACHE_BYTES, true)
    }

    /// An engine whose compiled modules take at most `cache_bytes` (by their measured size).
    pub fn with_cache(max_module_bytes: usize, cache_bytes: usize) -> Engine {
        Self::build(max_module_bytes.min(HARD_MAX_MODULE_BYTES), cache_bytes, true)
    }

    /// An engine without a module size cap, for `phase run`: the module is the user's own
    /// file, and the caller checks what compiling it may take against the memory available.
    pub fn any_size() -> Engine {
        Self::build(usize::MAX, DEFAULT_COMPILED_CACHE_BYTES, true)
    }

    /// An engine without fuel metering: for measuring what metering costs (scripts/bench-jobs),
    /// never for serving jobs. Fuel limits do not apply; the deadline is not checked.
    pub fn unmetered(max_module_bytes: usize) -> Engine {
        Self::build(max_module_bytes.min(HARD_MAX_MODULE_BYTES), DEFAULT_COMPILED_CACHE_BYTES, false)
    }

    fn build(max_module_bytes: usize, cache_bytes: usize, metered: bool) -> Engine {
        let mut config = Config::default();
        config.consume_fuel(metered);
        // Lazy translation charges fuel when a function is first called, so a job on a node
        // that had the module cached would use less fuel than on a cold node. Eager keeps fuel
        // a property of the job alone; the cost is paid once per module, then cached.
        config.compilation_mode(CompilationMode::Eager);
        config.set_max_recursion_depth(MAX_RECURSION_DEPTH);
        // A value stack kept for reuse would be memory the module's footprint does not show.
        config.set_max_cached_stacks(0);
        Engine {
            config,
            cache: SizedCache::new(MAX_CACHED_MODULES, cache_bytes),
            max_module_bytes,
            metered,
        }
    }

    /// Bytes the cached compiled modules hold, and the cap.
    pub fn cached_bytes(&self) -> (usize, usize) {
        (self.cache.bytes(), self.cache.max_bytes())
    }

    pub fn max_module_bytes(&self) -> usize {
        self.max_module_bytes
    }

    /// A cached module by hash, if this node has compiled it.
    pub fn cached(&self, sha256: &Digest) -> Option<Arc<CompiledModule>> {
        self.cache.get(sha256)
    }

    /// Validates and compiles `bytes`, or returns the cached compilation of the same bytes.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, ModuleError> {
        self.compile_within(bytes, None)
    }

    /// As `compile`, reserving from `budget` what compiling may take (read from the module's
    /// structure: compile_cost.rs) while it runs, and, for a module too large for the cache,
    /// its measured footprint for as long as it is in use.
    pub fn compile_within(&self, bytes: &[u8], budget: Option<&Arc<Budget>>) -> Result<Arc<CompiledModule>, ModuleError> {
        if bytes.len() > self.max_module_bytes {
            return Err(ModuleError::TooLarge { size: bytes.len(), max: self.max_module_bytes });
        }
        let digest = sha256(bytes);
        if let Some(m) = self.cache.get(&digest) {
            return Ok(m);
        }
        let reserve = |need: u64| match budget {
            None => Ok(None),
            Some(b) => b.try_reserve(need).map(Some).ok_or(ModuleError::NoMemory { need, free: b.free() }),
        };
        let compiling = match budget {
            Some(_) => {
                // Reading the module's structure holds a few bytes per byte of it: paid first.
                let scan = reserve(bytes.len() as u64 * compile_cost::SCAN_BYTES_PER_BYTE)?;
                let bound = compile_cost::compile_bound(bytes).map_err(ModuleError::Invalid)?;
                drop(scan);
                reserve(bound)?
            }
            None => None,
        };
        // Everything this thread allocates and keeps from here on is the module's footprint.
        let before = crate::sys::alloc::start_peak_on_this_thread();
        let wasmi = wasmi::Engine::new(&self.config);
        let module = Module::new(&wasmi, bytes).map_err(|e| ModuleError::Invalid(e.to_string()))?;
        let linker = Self::linker_for(&wasmi, &module)?;
        let footprint = (crate::sys::alloc::net_allocated_on_this_thread() - before).max(0) as usize;
        let compile_peak = (crate::sys::alloc::peak_on_this_thread() - before).max(0) as usize;
        drop(compiling);
        let cacheable = footprint <= self.cache.max_bytes();
        let hold = if cacheable { None } else { reserve(footprint as u64)? };
        let compiled = Arc::new(CompiledModule { sha256: digest, size: bytes.len(), footprint, compile_peak, module, linker, _hold: hold });
        if cacheable {
            self.cache.insert(digest, compiled.clone(), footprint);
        }
        Ok(compiled)
    }

    /// The linker for `module`: the shim's functions, checked against every import, plus
    /// ENOSYS stubs for the WASI functions the shim does not implement.
    fn linker_for(wasmi: &wasmi::Engine, module: &Module) -> Result<Linker<JobState>, ModuleError> {
        let mut extra = Vec::new();
        for import in module.imports() {
            let name = format!("{}.{}", import.module(), import.name());
            let unsupported = |reason| ModuleError::UnsupportedImport { import: name.clone(), reason };
            if import.module() != wasi::MODULE {
                return Err(unsupported("only wasi_snapshot_preview1 functions are provided"));
            }
            let ExternType::Func(ty) = import.ty() else {
                return Err(unsupported("WASI imports must be functions"));
            };
            let sig = wasi::signature(ty);
            match wasi::IMPLEMENTED.iter().find(|(n, _)| *n == import.name()) {
                Some((_, want)) if sig.as_deref() == Some(want) => {}
                Some(_) => return Err(unsupported("signature differs from WASI preview 1")),
                None if ty.results() == [wasmi::ValType::I32] => {
                    extra.push((import.name().to_string(), ty.clone()))
                }
                None => return Err(unsupported("not a WASI preview 1 function")),
            }
        }
        let mut linker = wasi::linker(wasmi).map_err(|e| ModuleError::Invalid(format!("WASI linker: {e}")))?;
        for (name, ty) in extra {
            wasi::define_enosys(&mut linker, &name, ty).map_err(|_| {
                ModuleError::UnsupportedImport { import: name, reason: "imported twice" }
            })?;
        }
        Ok(linker)
    }

    /// Runs a job to completion. Whatever the guest does, this returns an `Execution`.
    pub fn run(&self, job: &Job) -> Execution {
        let started = Instant::now();
        let limits = job.spec.limits;
        let deadline = started + Duration::from_millis(limits.deadline_ms);
        let job_id = job.spec.job_id();
        let no_files;
        let files = match &job.spec.files {
            Some(f) => f,
            None => {
                no_files = phase_core::job::files::Files::new(Vec::new(), phase_core::job::files::FsLimits::DEFAULT)
                    .expect("no mounts are within any limits");
                &no_files
            }
        };
        let fs = match fs::Fs::new(files.clone(), wasi::REALTIME_ORIGIN_NS, |d| job.blobs.get(d).cloned()) {
            Ok(fs) => fs,
            Err(missing) => return Execution::not_run(job_id, format!("the file {} was not given", phase_core::encoding::hex_encode(&missing))),
        };
        let state = JobState {
            args: std::iter::once("job")
                .chain(job.spec.args.iter().map(String::as_str))
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            env: job.spec.env.iter().map(|s| s.as_bytes().to_vec()).collect(),
            input: job.input.clone(),
            input_pos: 0,
            progress: job.progress.clone(),
            output_cap: limits.output_bytes.min(usize::MAX as u64) as usize,
            random: RandomStream::new(job_id),
            fuel_granted: 0,
            fuel_limit: limits.fuel,
            metered: self.metered,
            deadline,
            limiter: MemoryLimiter {
                memory_bytes: limits.memory_bytes.min(usize::MAX as u64) as usize,
                refused: false,
                host_failed: None,
            },
            fs,
            slept_ns: 0,
        };
        let mut store = Store::new(job.module.module.engine(), state);
        store.limiter(|s| &mut s.limiter);
        let (outcome, detail) = match self.execute(&mut store, &job.module, deadline, &job.progress) {
            Ok(outcome) => (outcome, None),
            Err((kind, detail)) => (Outcome::Trapped(kind), Some(detail)),
        };
        let detail_cancelled = detail.as_deref() == Some(CANCELLED);
        let fuel_used = match self.metered {
            true => store.data().fuel_granted - store.get_fuel().unwrap_or(0),
            false => 0,
        };
        let state = store.into_data();
        let mut left = job.spec.files.as_ref().map(|_| state.fs.left());
        let (stdout, stderr) = {
            let mut out = state.progress.output.lock().unwrap_or_else(|p| p.into_inner());
            match state.progress.watched {
                true => (out.stdout.clone(), out.stderr.clone()),
                false => (std::mem::take(&mut out.stdout), std::mem::take(&mut out.stderr)),
            }
        };
        // The files a job leaves are part of its output: past the cap the job ends as
        // `output_limit` and leaves nothing (the answer could not carry it).
        let (mut outcome, mut detail) = (outcome, detail);
        if let Some(l) = &left {
            let total = (stdout.len() + stderr.len()) as u64 + l.bytes();
            if total > limits.output_bytes {
                outcome = Outcome::Trapped(TrapKind::OutputLimit);
                detail = Some(format!("output and the files left are {total} bytes, beyond the output limit"));
                left = Some(fs::Left::default());
            }
        }
        Execution {
            job_id,
            stdout,
            stderr,
            outcome,
            fuel_used,
            wall_time: started.elapsed(),
            detail,
            host_failure: state.limiter.host_failed,
            // Only the engine writes this detail, and only after reading the cancel.
            cancelled: detail_cancelled && job.progress.cancel.load(std::sync::atomic::Ordering::Relaxed),
            left,
        }
    }

    fn execute(
        &self,
        store: &mut Store<JobState>,
        module: &CompiledModule,
        deadline: Instant,
        progress: &Progress,
    ) -> Result<Outcome, (TrapKind, String)> {
        use std::sync::atomic::Ordering::Relaxed;
        let grant = |store: &mut Store<JobState>| -> bool {
            let Some(add) = store.data_mut().next_slice() else { return false };
            let have = store.get_fuel().unwrap_or(0);
            // Metered engines only get here (next_slice is None otherwise): set_fuel succeeds.
            let _ = store.set_fuel(have + add);
            true
        };
        grant(store);
        let instance = module
            .linker
            .instantiate_and_start(&mut *store, &module.module)
            .map_err(|e| classify(store, &e, TrapKind::Instantiation))?;
        let start = instance
            .get_typed_func::<(), ()>(&*store, "_start")
            .map_err(|e| (TrapKind::NoEntryPoint, e.to_string()))?;
        let mut call = start.call_resumable(&mut *store, ());
        loop {
            match call {
                Ok(TypedResumableCall::Finished(())) => return Ok(Outcome::Exited(0)),
                Ok(TypedResumableCall::OutOfFuel(pending)) => {
                    progress.fuel_used.store(store.data().fuel_granted, Relaxed);
                    if progress.cancel.load(Relaxed) {
                        return Err((TrapKind::Other, CANCELLED.into()));
                    }
                    if Instant::now() >= deadline {
                        return Err((TrapKind::Deadline, "wall-clock deadline passed".into()));
                    }
                    if !grant(store) {
                        return Err((TrapKind::OutOfFuel, "fuel budget exhausted".into()));
                    }
                    call = pending.resume(&mut *store);
                }
                Ok(TypedResumableCall::HostTrap(pending)) => {
                    let e = pending.host_error();
                    return match e.i32_exit_status() {
                        Some(code) => Ok(Outcome::Exited(code as u32)),
                        None => Err(classify(store, e, TrapKind::Other)),
                    };
                }
                Err(e) => {
                    return match e.i32_exit_status() {
                        Some(code) => Ok(Outcome::Exited(code as u32)),
                        None => Err(classify(store, &e, TrapKind::Other)),
                    }
                }
            }
        }
    }
}

/// Names the trap behind an engine error.
fn classify(store: &Store<JobState>, e: &Error, fallback: TrapKind) -> (TrapKind, String) {
    use wasmi::TrapCode as T;
    let detail = e.to_string();
    if store.data().limiter.refused && store.data().limiter.host_failed.is_none() {
        return (TrapKind::MemoryLimit, detail);
    }
    match GuestFault::is_fault(e) {
        Some(GuestFault::OutputLimit) => return (TrapKind::OutputLimit, detail),
        Some(GuestFault::OutOfFuel) => return (TrapKind::OutOfFuel, detail),
        Some(GuestFault::Deadline) => return (TrapKind::Deadline, detail),
        None => {}
    }
    let kind = match e.as_trap_code() {
        Some(T::OutOfFuel) => TrapKind::OutOfFuel,
        Some(T::StackOverflow) => TrapKind::StackOverflow,
        Some(T::UnreachableCodeReached) => TrapKind::Unreachable,
        Some(T::MemoryOutOfBounds) => TrapKind::MemoryOutOfBounds,
        Some(T::TableOutOfBounds) => TrapKind::TableOutOfBounds,
        Some(T::IndirectCallToNull) => TrapKind::IndirectCallToNull,
        Some(T::IntegerDivisionByZero) => TrapKind::IntegerDivisionByZero,
        Some(T::IntegerOverflow) => TrapKind::IntegerOverflow,
        Some(T::BadConversionToInteger) => TrapKind::BadConversionToInteger,
        Some(T::BadSignature) => TrapKind::BadSignature,
        _ => fallback,
    };
    (kind, detail)
}
