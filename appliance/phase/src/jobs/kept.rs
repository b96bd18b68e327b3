//! Idempotency keys (docs/api.md "Idempotency"): the jobs running under a key, and the answers
//! kept for keys, bounded by bytes (the memory plan's results share) and by count: answers of
//! jobs that ran here, and answers this node got from peers (placed or redundant jobs). A key
//! names one job: the same key with another job is a conflict, whichever cache holds it.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use phase_core::job::answer::Answer;
use phase_core::{sha256, Digest};

use super::slots::{Slot, Slots};
use super::{Answered, JobError};
use crate::cache::SizedCache;
use crate::memory::MemoryPlan;

/// Idempotency keys: length cap, and how many answers are remembered at most (besides the
/// byte cap of the memory plan).
pub const MAX_KEY_LEN: usize = 256;
pub const MAX_KEPT: usize = 100_000;
/// What a kept answer costs beyond its output: receipt, map entry.
pub const ANSWER_OVERHEAD: usize = 1024;

pub(super) struct Kept {
    running: Mutex<HashMap<String, Digest>>,
    changed: Condvar,
    /// By SHA-256 of the key: (job id, answer) of jobs that ran here.
    here: SizedCache<(Digest, Arc<Answer>)>,
    /// By SHA-256 of the key: (fingerprint of the request, the answer) of jobs this node
    /// placed on peers or ran redundantly.
    placed: SizedCache<(Digest, Answered)>,
}

/// The one rule for a key that holds an answer: the same job gets it again, another job is a
/// conflict; no answer, nothing to replay.
pub(super) fn replay<T: Clone>(kept: Option<Arc<(Digest, T)>>, job: &Digest, key: &str) -> Result<Option<T>, JobError> {
    match kept {
        Some(k) if k.0 == *job => Ok(Some(k.1.clone())),
        Some(_) => Err(JobError::IdempotencyConflict(key.to_string())),
        None => Ok(None),
    }
}

/// A key being run here: released (with its answer kept, if the job gave one) when dropped,
/// however the job ends.
pub(super) struct Claim<'a> {
    kept: &'a Kept,
    key: String,
    pub(super) answer: Option<(Digest, Arc<Answer>)>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut running = self.kept.running.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(&self.key);
        if let Some((id, answer)) = self.answer.take() {
            let size = Answered::One(answer.clone()).size();
            self.kept.here.insert(sha256(self.key.as_bytes()), Arc::new((id, answer)), size);
        }
        self.kept.changed.notify_all();
    }
}

/// What claiming a key found.
pub(super) enum Claimed<'a> {
    /// The job ran under this key before: its answer.
    Kept(Arc<Answer>),
    /// The key is this caller's to run the job under.
    Run(Claim<'a>),
}

impl Kept {
    pub(super) fn new(plan: &MemoryPlan) -> Kept {
        Kept {
            running: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            // Three quarters of the results' share are for asynchronous jobs (queue.rs: their
            // only copy); of the rest, three quarters for jobs run here, a quarter for placed
            // jobs (replays, evicted least recently used first).
            here: SizedCache::new(MAX_KEPT, (plan.results / 16 * 3) as usize),
            placed: SizedCache::new(MAX_KEPT, (plan.results / 16) as usize),
        }
    }

    pub(super) fn bytes(&self) -> usize {
        self.here.bytes() + self.placed.bytes()
    }

    /// Claims `key` for job `job_id`: its kept answer, or the key to run under, waiting (at
    /// most `wait`, and only in one of the places `slots` has for waiters) while the same job
    /// runs under it.
    pub(super) fn claim(&self, key: &str, job_id: Digest, wait: Duration, slots: &Slots) -> Result<Claimed<'_>, JobError> {
        let digest = sha256(key.as_bytes());
        let give_up = Instant::now() + wait;
        let mut waiter: Option<Slot<'_>> = None;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(answer) = replay(self.here.get(&digest), &job_id, key)? {
                return Ok(Claimed::Kept(answer));
            }
            match running.get(key) {
                None => {
                    running.insert(key.to_string(), job_id);
                    return Ok(Claimed::Run(Claim { kept: self, key: key.to_string(), answer: None }));
                }
                Some(id) if *id != job_id => return Err(JobError::IdempotencyConflict(key.to_string())),
                Some(_) => {}
            }
            if waiter.is_none() {
                waiter = Some(slots.wait()?);
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(JobError::IdempotencyPending(key.to_string()));
            }
            running = self.changed.wait_timeout(running, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// The answer kept for a placed (or `redundant`) job under `key`, if it is the same job.
    pub(super) fn placed(&self, key: &str, redundant: bool, fingerprint: &Digest) -> Result<Option<Answered>, JobError> {
        replay(self.placed.get(&placed_slot(key, redundant)), fingerprint, key)
    }

    /// Keeps a placed (or `redundant`) job's answer under `key` (oldest forgotten first).
    pub(super) fn keep_placed(&self, key: &str, redundant: bool, fingerprint: Digest, answer: Answered) {
        let size = answer.size() + key.len();
        self.placed.insert(placed_slot(key, redundant), Arc::new((fingerprint, answer)), size);
    }
}

/// Where a placed job's answer is kept: a redundant run's apart from a single placement's, so
/// neither replays the other's kind of answer.
fn placed_slot(key: &str, redundant: bool) -> Digest {
    match redundant {
        true => sha256(format!("redundancy/{key}").as_bytes()),
        false => sha256(key.as_bytes()),
    }
}
