//! Running a job here: the request checked, its module resolved (sent inline, uploaded, or
//! compiled earlier) and compiled within the pool, its limits resolved against the node's, its
//! idempotency key claimed, a slot taken, its memory admitted at its limits, the engine run,
//! the receipt signed. Every wait is bounded: a request waiting for a job under the same key
//! waits at most that job's deadline plus `WAIT_MARGIN`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use phase_core::encoding::hex_encode;
use phase_core::job::answer::Answer;
use phase_core::job::files::{Files, FsLimits};
use phase_core::job::request::RequestedFiles;
use phase_core::job::{JobSpec, RequestedLimits};
use phase_core::job::receipt::{Outcome, Receipt};
use phase_core::{sha256, Digest, Limits};

use super::kept::{Claimed, MAX_KEY_LEN};
use super::slots::Slot;
use super::{Answered, Finished, JobError, JobRequest, Jobs, ModuleSource};
use crate::engine::{Blobs, CompiledModule, Job, ModuleError, Progress};
use crate::engine::fs::ENTRY_COST;
use crate::memory::job_reservation;
use crate::modules::Upload;

/// A request waiting for a job under the same key waits at most that job's deadline plus this.
const WAIT_MARGIN: Duration = Duration::from_secs(5);

impl Jobs {
    /// The id a request's job will have (its spec's hash), checking what can be checked
    /// without compiling: key, input size, limits, args and env. An asynchronous job is named
    /// by it before it runs.
    pub fn job_id_of(&self, req: &JobRequest) -> Result<Digest, JobError> {
        self.check_request(req)?;
        Ok(self.spec_of(req, req.module.sha256())?.job_id())
    }

    fn spec_of(&self, req: &JobRequest, module: Digest) -> Result<JobSpec, JobError> {
        let spec = self.spec(module, &req.input, req.args.clone(), req.env.clone(), &req.limits)?;
        Ok(match files_of(req)? {
            Some(files) => spec.with_files(files),
            None => spec,
        })
    }

    /// The bytes of every file `files` names: sent with the request, or held here (sent with
    /// an earlier job). Each is remembered for later jobs that name it by hash.
    fn file_bytes(&self, req: &RequestedFiles, files: &Files) -> Result<Blobs, JobError> {
        let mut blobs = Blobs::new();
        for (digest, size) in files.blobs() {
            let bytes: Arc<[u8]> = match req.data.get(&digest) {
                Some(b) => {
                    self.modules.remember(digest, b.clone());
                    Arc::from(b.as_slice())
                }
                None => Arc::from(self.modules.get(&digest).ok_or(JobError::FileNotFound(digest))?.as_slice()),
            };
            if bytes.len() as u64 != size {
                return Err(JobError::InvalidRequest(format!("file {} is {} bytes, not the {size} its entry says", hex_encode(&digest), bytes.len())));
            }
            blobs.insert(digest, bytes);
        }
        Ok(blobs)
    }

    /// `req` with the bytes of every file it names inline (what a peer is sent: it holds none
    /// of them).
    pub(super) fn with_file_bytes(&self, req: &JobRequest) -> Result<JobRequest, JobError> {
        let (Some(asked), Some(files)) = (&req.files, files_of(req)?) else { return Ok(req.clone()) };
        let data = self.file_bytes(asked, &files)?.into_iter().map(|(d, b)| (d, b.to_vec())).collect();
        let files = RequestedFiles { data, ..asked.clone() };
        Ok(JobRequest { files: Some(files), ..req.clone() })
    }

    /// `asked` resolved against this node's defaults and maxima.
    pub(super) fn limits_of(&self, asked: &RequestedLimits) -> Result<Limits, JobError> {
        Limits::resolve(asked, &self.config.default_limits, &self.config.max_limits).map_err(JobError::Limit)
    }

    fn spec(&self, module: Digest, input: &[u8], args: Vec<String>, env: Vec<String>, asked: &RequestedLimits) -> Result<JobSpec, JobError> {
        let limits = self.limits_of(asked)?;
        JobSpec::new(module, sha256(input), args, env, limits).map_err(JobError::Spec)
    }

    fn check_request(&self, req: &JobRequest) -> Result<(), JobError> {
        if let Some(k) = &req.idempotency_key {
            if k.is_empty() || k.len() > MAX_KEY_LEN {
                return Err(JobError::InvalidRequest(format!("idempotency_key must be 1 to {MAX_KEY_LEN} bytes")));
            }
        }
        if req.input.len() > self.config.max_input_bytes {
            return Err(JobError::InputTooLarge { size: req.input.len(), max: self.config.max_input_bytes });
        }
        Ok(())
    }

    fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, JobError> {
        self.engine.compile_within(bytes, Some(&self.pool)).map_err(JobError::from)
    }

    /// Validates and stores a module so jobs can name it by hash. Returns (hash, newly stored).
    pub fn put_module(&self, bytes: Vec<u8>) -> Result<(Digest, bool), JobError> {
        let result = (|| {
            let compiled = self.compile(&bytes)?;
            let fresh = self.modules.put(compiled.sha256, bytes).map_err(JobError::Storage)?;
            Ok((compiled.sha256, fresh))
        })();
        result.map_err(|e| self.count(e))
    }

    /// The largest blob `PUT /v1/blobs` takes: what a job's files may hold at most, and
    /// without a data dir what the RAM share for modules and files holds.
    pub fn max_blob_bytes(&self) -> u64 {
        let most = FsLimits::MAX.bytes;
        if self.modules.on_disk() { most } else { most.min(self.config.memory.module_store) }
    }

    /// A blob upload of `len` bytes streamed to the data dir as it arrives, or None without
    /// one (the body is then read into memory and given to `put_blob`).
    pub fn blob_upload(&self, len: u64) -> Result<Option<Upload>, JobError> {
        if len > self.max_blob_bytes() {
            return Err(JobError::BlobTooLarge { size: len, max: self.max_blob_bytes() });
        }
        self.modules.upload(len).transpose().map_err(JobError::Storage)
    }

    /// A module upload streamed to the data dir as it arrives (at most the module cap), or
    /// None without one (the body is then read into memory and given to `put_module`).
    pub fn module_upload(&self, len: u64) -> Result<Option<Upload>, JobError> {
        let max = self.config.max_module_bytes;
        if len > max as u64 {
            return Err(JobError::Module(ModuleError::TooLarge { size: len as usize, max }));
        }
        self.modules.upload(len).transpose().map_err(JobError::Storage)
    }

    /// Keeps a whole module upload: read back into memory (reserved from the pool), validated
    /// and compiled, then kept under its hash. Its hash, and whether it was new to this node.
    pub fn put_module_upload(&self, upload: Upload) -> Result<(Digest, bool), JobError> {
        let result = (|| {
            let need = upload.announced();
            let _reading = self.pool.try_reserve(need).ok_or(JobError::NoMemory { what: "a module", need, free: self.pool.free() })?;
            let bytes = upload.read_back().map_err(JobError::Storage)?;
            let compiled = self.compile(&bytes)?;
            let fresh = self.modules.keep_module(upload, compiled.sha256, bytes).map_err(JobError::Storage)?;
            Ok((compiled.sha256, fresh))
        })();
        result.map_err(|e| self.count(e))
    }

    /// The size of a blob (or module) this node keeps under `d` (on disk where there is a
    /// data dir).
    pub fn blob_kept(&self, d: &Digest) -> Option<u64> {
        self.modules.kept(d)
    }

    /// Keeps a whole upload whose bytes hash to `named`; later jobs name it in their trees.
    /// Its size, and whether it was new to this node.
    pub fn keep_blob(&self, upload: Upload, named: &Digest) -> Result<(u64, bool), JobError> {
        self.modules.keep(upload, named).map_err(JobError::Storage)
    }

    /// A blob sent to a node without a data dir: kept in RAM like files sent inline, if its
    /// bytes hash to `named`.
    pub fn put_blob(&self, bytes: Vec<u8>, named: &Digest) -> Result<(u64, bool), JobError> {
        let got = sha256(&bytes);
        if got != *named {
            return Err(JobError::Storage(crate::modules::StoreError::NotNamed { named: *named, got }));
        }
        let (size, fresh) = (bytes.len() as u64, self.modules.get(named).is_none());
        self.modules.remember(got, bytes);
        Ok((size, fresh))
    }

    /// The bytes of a module this node holds (uploaded or sent inline earlier).
    pub(super) fn module_bytes(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        self.modules.get(d)
    }

    /// Runs a job here, in `slot` (taken earlier) or in a slot taken when it is due, seen
    /// through `progress` (fuel so far, cancel).
    pub(super) fn run_here(&self, slot: Option<Slot<'_>>, req: JobRequest, progress: Arc<Progress>) -> Result<Finished, JobError> {
        self.run_here_counted(slot, req, progress).map_err(|e| self.count(e))
    }

    fn run_here_counted(&self, slot: Option<Slot<'_>>, req: JobRequest, progress: Arc<Progress>) -> Result<Finished, JobError> {
        self.check_request(&req)?;
        let files = files_of(&req)?;
        let blobs = match (&req.files, &files) {
            (Some(asked), Some(files)) => self.file_bytes(asked, files)?,
            _ => Blobs::new(),
        };
        let JobRequest { module, input, args, env, limits: asked, idempotency_key, .. } = req;
        let module = match module {
            ModuleSource::Bytes(bytes) => {
                let m = self.compile(&bytes)?;
                // Kept in RAM so later jobs may name it by hash; only PUT writes to disk.
                self.modules.remember(m.sha256, bytes);
                m
            }
            ModuleSource::Sha256(d) => match self.engine.cached(&d) {
                Some(m) => m,
                None => {
                    let bytes = self.modules_get(&d)?;
                    self.compile(&bytes)?
                }
            },
        };
        let mut spec = self.spec(module.sha256, &input, args, env, &asked)?;
        // What a job's files may hold in memory: the bytes given, what it may write (copies
        // included), each entry's bookkeeping, and the files it leaves, copied into its answer.
        let files_need = match &files {
            Some(f) => f.bytes().saturating_add(f.limits.bytes).saturating_add(f.limits.entries.saturating_mul(ENTRY_COST)).saturating_add(spec.limits.output_bytes),
            None => 0,
        };
        if let Some(f) = files {
            spec = spec.with_files(f);
        }
        let limits = spec.limits;
        let job_id = spec.job_id();
        let mut claim = None;
        if let Some(key) = &idempotency_key {
            let wait = Duration::from_millis(limits.deadline_ms) + WAIT_MARGIN;
            match self.kept.claim(key, job_id, wait, &self.slots)? {
                Claimed::Kept(answer) => {
                    self.stats.replays.fetch_add(1, Relaxed);
                    return Ok(Finished { answer: Answered::One(answer), replayed: true, hold: None, here: true });
                }
                Claimed::Run(c) => claim = Some(c),
            }
        }
        let _slot = match slot {
            Some(s) => s,
            None => self.slots.run()?,
        };
        // The input lives as long as the job (copied once into the job's Arc), beside what the
        // job itself may take. A watched job's output is copied once more when it ends
        // (engine::Progress).
        let watched_copy = if progress.watched { limits.output_bytes } else { 0 };
        let need = job_reservation(limits.memory_bytes, limits.output_bytes).saturating_add(2 * input.len() as u64).saturating_add(watched_copy).saturating_add(files_need);
        let hold = self.pool.try_reserve(need).ok_or(JobError::NoMemory { what: "the job", need, free: self.pool.free() })?;
        let job = Job { spec, module, input: Arc::from(input), blobs, progress };
        let execution = self.engine.run(&job);
        let short = &hex_encode(&job_id)[..12];
        if execution.cancelled {
            log!("job {short}: cancelled after {} fuel; not signed", execution.fuel_used);
            self.stats.jobs_cancelled.fetch_add(1, Relaxed);
            return Err(JobError::Cancelled);
        }
        if let Some(why) = execution.host_failure {
            log!("job {short}: not signed: {why}");
            self.stats.host_failures.fetch_add(1, Relaxed);
            return Err(JobError::Host(why));
        }
        let receipt = Receipt::sign(execution.receipt_body(&job.spec), self.identity.key_pair());
        match execution.outcome {
            Outcome::Exited(_) => self.stats.jobs_exited.fetch_add(1, Relaxed),
            Outcome::Trapped(_) => self.stats.jobs_trapped.fetch_add(1, Relaxed),
        };
        self.stats.fuel_used.fetch_add(execution.fuel_used, Relaxed);
        log!(
            "job {short} module {} {} fuel {} in {} us{}",
            &hex_encode(&job.spec.module_sha256)[..12],
            match execution.outcome {
                Outcome::Exited(c) => format!("exited {c}"),
                Outcome::Trapped(t) => format!("trapped {t}"),
            },
            execution.fuel_used,
            execution.wall_time.as_micros(),
            execution.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
        );
        let mut answer = Answer::new(receipt, execution.stdout, execution.stderr, execution.detail);
        if let Some(left) = execution.left {
            answer = answer.with_files(left);
        }
        let answer = Arc::new(answer);
        if let Some(c) = claim.as_mut() {
            c.answer = Some((job_id, answer.clone()));
        }
        drop(claim);
        Ok(Finished { answer: Answered::One(answer), replayed: false, hold: Some(hold), here: true })
    }

    fn modules_get(&self, d: &Digest) -> Result<Arc<Vec<u8>>, JobError> {
        self.modules.get(d).ok_or(JobError::ModuleNotFound(*d))
    }
}

/// The job's files, resolved against the hard maxima (memory admits what they may take).
fn files_of(req: &JobRequest) -> Result<Option<Files>, JobError> {
    req.files.as_ref().map(|f| f.resolve(&FsLimits::MAX)).transpose().map_err(JobError::Files)
}
