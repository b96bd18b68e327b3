//! Asynchronous jobs as callers see them (docs/api.md "Asynchronous jobs"): submitting one to
//! the queue, reading its status and output, cancelling it; and the runner threads that take
//! queued jobs and run them exactly as synchronous ones run (same slots, limits, memory
//! admission, placement, idempotency keys).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use phase_core::encoding::hex_encode;
use phase_core::job::error::ErrorCode;
use phase_core::job::RequestedLimits;

use super::place::Watch;
use super::queue::{self, Cancel, Taken};
use super::{JobError, JobRequest, Jobs, Placement, Status, Submitted};
use crate::memory::Reservation;
use crate::p2p::PeerId;

/// Runner threads run the interpreter, as job workers do.
const RUNNER_STACK: usize = 4 << 20;
/// How often a runner whose job must run here looks for a free slot (slots are given back
/// without a signal).
const SLOT_POLL: Duration = Duration::from_millis(20);
/// Output bytes one read answers at most.
pub const MAX_OUTPUT_CHUNK: usize = 1 << 20;

/// What a cancel did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// The job stops: `Cancelled` (it was queued) or `Cancelling`.
    Stopped(Status),
    /// The caller's hold is released; the job goes on, in `status`, for the `others`
    /// submitters still holding a token.
    Released { status: Status, others: usize },
}

/// Up to `max` bytes of one stream of a job's output from `offset`.
pub struct OutputChunk {
    pub bytes: Vec<u8>,
    /// The stream's length so far.
    pub total: usize,
    /// The job's status name now.
    pub status: &'static str,
    /// The memory the read took, held until the chunk is sent.
    pub hold: Reservation,
}

impl Jobs {
    /// Queues a job for `submitter` (an address), or finds the identical one (same id)
    /// queued, running or done. `hold` is the memory its request was read with; while it waits
    /// it holds what it keeps instead (module bytes and input), and its place among the kept
    /// answers is reserved (queue.rs).
    pub fn submit(&self, mut req: JobRequest, hold: Option<Reservation>, submitter: std::net::IpAddr) -> Result<Submitted, JobError> {
        self.taking_jobs()?;
        if req.redundancy.is_some_and(|k| k != 1) {
            // Its answer is k answers, not one a status can hold and a handle verify as one.
            return Err(JobError::InvalidRequest("redundancy is for synchronous jobs; submit each asynchronous job once".into()));
        }
        // Resolved here and sent explicit: a peer with other defaults runs (and signs) the job
        // this id names, or refuses it; it never answers for another.
        let l = self.limits_of(&req.limits)?;
        req.limits = RequestedLimits { fuel: Some(l.fuel), memory_bytes: Some(l.memory_bytes), output_bytes: Some(l.output_bytes), deadline_ms: Some(l.deadline_ms) };
        let id = queue::handle(&hex_encode(&self.job_id_of(&req)?), req.placement.as_ref());
        drop(hold);
        let keep = (req.input.len() + req.module.inline_len()) as u64;
        let hold = match keep {
            0 => None,
            _ => Some(self.pool.try_reserve(keep).ok_or(JobError::NoMemory { what: "the queued request", need: keep, free: self.pool.free() })?),
        };
        let here = self.runs_here(&req);
        let keep = queue::keep_cost(l.output_bytes);
        self.queue.submit(id, req, hold, here, submitter.to_canonical(), keep).map_err(|e| self.count(e))
    }

    /// An asynchronous job's status now.
    pub fn status(&self, id: &str) -> Result<Status, JobError> {
        self.queue.status(id).ok_or_else(|| JobError::UnknownJob(id.to_string()))
    }

    /// Cancels an asynchronous job for the holder of a cancel token. The job stops once every
    /// submitter holding a token has cancelled: `Cancelled` if it was queued (it never runs),
    /// `Cancelling` if it runs (here it stops within a fuel slice; on a peer the peer is told,
    /// and the job ends cancelled, or done if the peer finished first). Before that, only this
    /// token's hold is released.
    pub fn cancel(&self, id: &str, token: &str) -> Result<Cancelled, JobError> {
        match self.queue.cancel(id, token) {
            None => Err(JobError::UnknownJob(id.to_string())),
            Some(Cancel::Forbidden) => Err(JobError::Forbidden),
            Some(Cancel::Ended(how)) => Err(JobError::AlreadyEnded(how)),
            Some(Cancel::Released { others }) => Ok(Cancelled::Released { status: self.status(id)?, others }),
            Some(Cancel::Cancelled) => Ok(Cancelled::Stopped(Status::Cancelled)),
            Some(Cancel::Stopping) => Ok(Cancelled::Stopped(Status::Cancelling)),
            Some(Cancel::Placed { peer, request }) => {
                if !self.network().is_some_and(|n| n.cancel_job(peer, request)) {
                    log!("jobs: {}: the cancel could not be sent to {peer}; its answer decides", &id[..id.len().min(12)]);
                }
                Ok(Cancelled::Stopped(Status::Cancelling))
            }
        }
    }

    /// Up to `max` (at most `MAX_OUTPUT_CHUNK`) bytes of a job's stdout (`stderr`: stderr) from
    /// `offset`: what the guest has written while it runs, its answer's once done. The chunk
    /// is reserved from the pool first.
    pub fn output(&self, id: &str, stderr: bool, offset: usize, max: usize) -> Result<OutputChunk, JobError> {
        let stream = self.queue.stream(id).ok_or_else(|| JobError::UnknownJob(id.to_string()))?;
        let max = max.min(MAX_OUTPUT_CHUNK);
        let need = max as u64;
        let hold = self.pool.try_reserve(need).ok_or(JobError::NoMemory { what: "reading the job's output", need, free: self.pool.free() })?;
        let (bytes, total, status) = stream.read(stderr, offset, max);
        Ok(OutputChunk { bytes, total, status, hold })
    }

    /// Starts `n` runner threads for queued jobs that run here and `n` for those that may go to
    /// a peer: a peer that never answers holds only runners of the second kind (each for the
    /// job's deadline + 10 s at most, or until its job is cancelled).
    pub fn start_runners(self: &Arc<Self>, n: usize) -> Result<(), std::io::Error> {
        for (kind, here) in [("here", true), ("placed", false)] {
            for i in 0..n {
                let jobs = self.clone();
                std::thread::Builder::new().name(format!("job-runner-{kind}-{i}")).stack_size(RUNNER_STACK).spawn(move || loop {
                    jobs.run_queued(jobs.queue.take(here), here);
                })?;
            }
        }
        Ok(())
    }

    /// Whether a queued job runs on this node whatever happens (its runner waits for a slot),
    /// or may go to a peer (placed, redundant, or no placement on a node with peers).
    fn runs_here(&self, req: &JobRequest) -> bool {
        match &req.placement {
            _ if req.redundancy.is_some_and(|k| k != 1) => false,
            Some(Placement::Local) => true,
            Some(_) => false,
            None => self.network().is_none(),
        }
    }

    /// Runs a job taken from the queue as a synchronous one runs. A job that will run here
    /// takes its slot first, waiting for one, so a queued job never ends as `busy`; one that
    /// may go to a peer (placed, or no placement on a node with peers) does not wait:
    /// placement decides.
    fn run_queued(&self, t: Taken, here: bool) {
        let mut slot = None;
        while here && slot.is_none() {
            match self.slots.run() {
                Ok(s) => slot = Some(s),
                Err(_) if t.progress.cancel.load(Relaxed) => {
                    self.queue.finish(&t.id, Status::Cancelled);
                    return;
                }
                Err(_) => std::thread::sleep(SLOT_POLL),
            }
        }
        drop(t.hold);
        let watch = Followed { jobs: self, id: &t.id, progress: &t.progress };
        let status = match self.run_in(t.request, slot, t.progress.clone(), &watch) {
            Ok(finished) => Status::Done { answer: finished.to_json().into() },
            Err(e) if e.code() == ErrorCode::Cancelled => Status::Cancelled,
            Err(e) => Status::Failed { code: e.code(), message: e.to_string() },
        };
        self.queue.finish(&t.id, status);
    }
}

/// An asynchronous job followed to a peer: its queue entry learns where it went (so a cancel
/// can follow it there), and its cancel stops the placement.
struct Followed<'a> {
    jobs: &'a Jobs,
    id: &'a str,
    progress: &'a crate::engine::Progress,
}

impl Watch for Followed<'_> {
    fn holds_place(&self) -> bool {
        true
    }
    fn sending(&self, peer: PeerId, request: [u8; 32]) -> bool {
        self.jobs.queue.sent_to(self.id, peer, request)
    }
    fn cancelled(&self) -> bool {
        self.progress.cancel.load(Relaxed)
    }
}
