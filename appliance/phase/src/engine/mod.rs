//! The job engine: wasmi with fuel metering, a deterministic WASI shim, and a cache of compiled
//! modules keyed by SHA-256. A hostile guest ends with a trap kind in its result; the engine
//! itself never fails because of what a guest does.

mod cache;
mod wasi;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use phase_core::job::JobSpec;
use phase_core::receipt::{Outcome, ReceiptBody, TrapKind};
use phase_core::{sha256, Digest, Limits};
use wasmi::{CompilationMode, Config, Error, ExternType, Linker, Module, ResourceLimiter, Store, TypedResumableCall};

pub use cache::ModuleCache;
use wasi::RandomStream;

/// Module size: default cap and hard maximum (bytes).
pub const DEFAULT_MAX_MODULE_BYTES: usize = 16 << 20;
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
        }
    }
}

/// A validated module ready to instantiate, with the linker that satisfies its imports.
pub struct CompiledModule {
    pub sha256: Digest,
    pub size: usize,
    module: Module,
    linker: Arc<Linker<JobState>>,
}

/// What a guest did that ends it: raised from host functions, read back as a trap kind.
#[derive(Debug, Clone, Copy)]
pub enum GuestFault {
    OutputLimit,
}

impl fmt::Display for GuestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("output limit reached")
    }
}

impl wasmi::errors::HostError for GuestFault {}

/// Per-job state seen by the WASI shim.
pub struct JobState {
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    input: Arc<[u8]>,
    input_pos: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    output_cap: usize,
    random: RandomStream,
    fuel_granted: u64,
    limiter: MemoryLimiter,
}

impl JobState {
    /// Captures guest output up to the cap; past it the job ends with `output_limit`.
    fn capture(&mut self, fd: i32, bytes: &[u8]) -> Result<(), GuestFault> {
        let room = self.output_cap - (self.stdout.len() + self.stderr.len());
        let sink = if fd == 1 { &mut self.stdout } else { &mut self.stderr };
        if bytes.len() > room {
            sink.extend_from_slice(&bytes[..room]);
            return Err(GuestFault::OutputLimit);
        }
        sink.extend_from_slice(bytes);
        Ok(())
    }
}

/// Caps linear memory and tables; remembers that it refused so the trap is named for it.
struct MemoryLimiter {
    memory_bytes: usize,
    refused: bool,
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
}

impl Execution {
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
        }
    }
}

/// The engine: one wasmi engine, the WASI linker, and the module cache.
pub struct Engine {
    wasmi: wasmi::Engine,
    linker: Arc<Linker<JobState>>,
    cache: ModuleCache<CompiledModule>,
    max_module_bytes: usize,
    metered: bool,
}

impl Engine {
    pub fn new(max_module_bytes: usize) -> Engine {
        Self::build(max_module_bytes, true)
    }

    /// An engine without fuel metering: for measuring what metering costs (scripts/bench-jobs),
    /// never for serving jobs. Fuel limits do not apply; the deadline is not checked.
    pub fn unmetered(max_module_bytes: usize) -> Engine {
        Self::build(max_module_bytes, false)
    }

    fn build(max_module_bytes: usize, metered: bool) -> Engine {
        let mut config = Config::default();
        config.consume_fuel(metered);
        // Lazy translation charges fuel when a function is first called, so a job on a node
        // that had the module cached would use less fuel than on a cold node. Eager keeps fuel
        // a property of the job alone; the cost is paid once per module, then cached.
        config.compilation_mode(CompilationMode::Eager);
        config.set_max_recursion_depth(MAX_RECURSION_DEPTH);
        let wasmi = wasmi::Engine::new(&config);
        let linker = Arc::new(wasi::linker(&wasmi).expect("WASI function names are unique"));
        Engine {
            wasmi,
            linker,
            cache: ModuleCache::new(64, 256 << 20),
            max_module_bytes: max_module_bytes.min(HARD_MAX_MODULE_BYTES),
            metered,
        }
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
        if bytes.len() > self.max_module_bytes {
            return Err(ModuleError::TooLarge { size: bytes.len(), max: self.max_module_bytes });
        }
        let digest = sha256(bytes);
        if let Some(m) = self.cache.get(&digest) {
            return Ok(m);
        }
        let module =
            Module::new(&self.wasmi, bytes).map_err(|e| ModuleError::Invalid(e.to_string()))?;
        let linker = self.linker_for(&module)?;
        let compiled = Arc::new(CompiledModule { sha256: digest, size: bytes.len(), module, linker });
        self.cache.insert(digest, compiled.clone(), bytes.len());
        Ok(compiled)
    }

    /// Checks every import against the shim; unimplemented WASI functions get ENOSYS stubs.
    fn linker_for(&self, module: &Module) -> Result<Arc<Linker<JobState>>, ModuleError> {
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
        if extra.is_empty() {
            return Ok(self.linker.clone());
        }
        let mut linker = (*self.linker).clone();
        for (name, ty) in extra {
            wasi::define_enosys(&mut linker, &name, ty).map_err(|_| {
                ModuleError::UnsupportedImport { import: name, reason: "imported twice" }
            })?;
        }
        Ok(Arc::new(linker))
    }

    /// Runs a job to completion. Whatever the guest does, this returns an `Execution`.
    pub fn run(&self, job: &Job) -> Execution {
        let started = Instant::now();
        let limits = job.spec.limits;
        let deadline = started + Duration::from_millis(limits.deadline_ms);
        let job_id = job.spec.job_id();
        let state = JobState {
            args: std::iter::once("job")
                .chain(job.spec.args.iter().map(String::as_str))
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            env: job.spec.env.iter().map(|s| s.as_bytes().to_vec()).collect(),
            input: job.input.clone(),
            input_pos: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            output_cap: limits.output_bytes.min(usize::MAX as u64) as usize,
            random: RandomStream::new(job_id),
            fuel_granted: 0,
            limiter: MemoryLimiter {
                memory_bytes: limits.memory_bytes.min(usize::MAX as u64) as usize,
                refused: false,
            },
        };
        let mut store = Store::new(&self.wasmi, state);
        store.limiter(|s| &mut s.limiter);
        let (outcome, detail) = match self.execute(&mut store, &job.module, &limits, deadline) {
            Ok(outcome) => (outcome, None),
            Err((kind, detail)) => (Outcome::Trapped(kind), Some(detail)),
        };
        let fuel_used = match self.metered {
            true => store.data().fuel_granted - store.get_fuel().unwrap_or(0),
            false => 0,
        };
        let state = store.into_data();
        Execution {
            job_id,
            stdout: state.stdout,
            stderr: state.stderr,
            outcome,
            fuel_used,
            wall_time: started.elapsed(),
            detail,
        }
    }

    fn execute(
        &self,
        store: &mut Store<JobState>,
        module: &CompiledModule,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<Outcome, (TrapKind, String)> {
        let metered = self.metered;
        let grant = |store: &mut Store<JobState>| -> bool {
            if !metered {
                return false;
            }
            let left = limits.fuel - store.data().fuel_granted;
            if left == 0 {
                return false;
            }
            let add = left.min(FUEL_SLICE);
            let have = store.get_fuel().unwrap_or(0);
            store.set_fuel(have + add).expect("fuel metering is enabled");
            store.data_mut().fuel_granted += add;
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
    if store.data().limiter.refused {
        return (TrapKind::MemoryLimit, detail);
    }
    if let Some(GuestFault::OutputLimit) = GuestFault::is_fault(e) {
        return (TrapKind::OutputLimit, detail);
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
