//! Jobs that outlive their request (docs/api.md, "Asynchronous jobs"): a bounded queue of
//! submitted jobs, each job's state by id while it is queued, running and for a bounded time
//! after it ended, and cancelling. This module only keeps state; the runners that take jobs
//! from it and run them under the node's slots, limits and memory admission are in
//! `runner.rs`.
//!
//! Bounds: queued jobs by count (`max_queued`) and by memory (each holds a reservation of the
//! node's pool for its request until it runs); ended jobs by age (`result_ttl`) and count
//! (`MAX_KEPT`). Kept answers are never evicted for newer ones (docs/decisions.md, "Kept
//! answers are reserved, not evicted"): a job reserves what keeping its answer may cost when it
//! is queued (`keep_cost`), within `max_result_bytes` and, for an address that already holds
//! some, a quarter of it per submitter address; what cannot be reserved is refused
//! (`results_full`). A done answer is kept as its JSON alone; output reads decode the chunk
//! they ask for. With a data dir, finished answers are also written to `<data>/results/` and
//! read back at start, so a restarted node still answers for them.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use phase_core::job::answer::{output_spans, Answer};
use phase_core::job::error::ErrorCode;

use super::error::KeptFull;
use super::{JobError, JobRequest, Placement};
use crate::clock::unix_now as now;
use crate::engine::Progress;
use crate::memory::Reservation;
use crate::p2p::PeerId;

/// Ended jobs remembered at most, whatever their size.
pub const MAX_KEPT: usize = 10_000;
/// Submitters of one job holding a cancel token each, at most (a submitter beyond them gets
/// its status but no token).
pub const MAX_HOLDERS: usize = 64;
/// What an ended entry costs beyond its answer (id, map entry, order entry).
const ENTRY_OVERHEAD: usize = 256;
/// An answer's JSON beyond the base64 of its output: field names, job id, receipt, executor,
/// trap detail (the engine's, at most 1 KiB), with room to spare.
const ANSWER_OVERHEAD: usize = 8 << 10;
/// An address that already holds reserved or kept answers holds at most 1/`SUBMITTER_SHARE`
/// of `max_result_bytes`.
const SUBMITTER_SHARE: usize = 4;

/// What keeping the answer of a job with `output_bytes` of output at most may cost: its JSON
/// (stdout and stderr in base64, each padded) and the entry.
pub fn keep_cost(output_bytes: u64) -> usize {
    let out = usize::try_from(output_bytes).unwrap_or(usize::MAX);
    out.div_ceil(3).saturating_add(2).saturating_mul(4).saturating_add(ANSWER_OVERHEAD + ENTRY_OVERHEAD)
}

/// The largest output limit whose answer `max_result_bytes` can keep (`keep_cost`'s inverse).
pub fn max_keepable_output(max_result_bytes: usize) -> u64 {
    let quads = max_result_bytes.saturating_sub(ANSWER_OVERHEAD + ENTRY_OVERHEAD) / 4;
    (quads.saturating_sub(2) * 3) as u64
}

/// The queue's bounds (`--max-queued`, `--result-ttl`, and half the results' share of the
/// memory budget for kept answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    pub max_queued: usize,
    pub result_ttl: Duration,
    pub max_result_bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig { max_queued: 64, result_ttl: Duration::from_secs(3600), max_result_bytes: 64 << 20 }
    }
}

/// Where a job is, as `GET /v1/jobs/<id>` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Waiting; `position` 0 is next.
    Queued { position: usize },
    /// Running here (fuel so far) or placed on a peer (`placed`: no fuel is seen).
    Running { fuel_used: u64, placed: bool },
    /// Asked to stop; it ends as cancelled, or done if it finished first.
    Cancelling,
    /// The synchronous answer, receipt included (shared: a status read copies nothing).
    Done { answer: Arc<str> },
    /// The error a synchronous call would have had instead.
    Failed { code: ErrorCode, message: String },
    /// Stopped on request: no receipt.
    Cancelled,
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Queued { .. } => "queued",
            Status::Running { .. } => "running",
            Status::Cancelling => "cancelling",
            Status::Done { .. } => "done",
            Status::Failed { .. } => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn ended(&self) -> bool {
        matches!(self, Status::Done { .. } | Status::Failed { .. } | Status::Cancelled)
    }
}

/// What `GET /v1/jobs/<id>/output` reads from: the live buffers of a job not done, or a done
/// job's answer JSON and where its stdout and stderr are in it (a read decodes its chunk and
/// nothing else). Taken under the lock (reference counts); read outside it.
pub enum Stream {
    Live(Arc<Progress>, &'static str),
    Done { json: Arc<str>, spans: Option<(Range<usize>, Range<usize>)> },
}

impl Stream {
    /// Up to `max` bytes of stdout (`stderr`: stderr) from `offset`, the stream's length so
    /// far, and the job's status name. A failed or cancelled job has no output.
    pub fn read(&self, stderr: bool, offset: usize, max: usize) -> (Vec<u8>, usize, &'static str) {
        let slice = |b: &[u8]| (b[offset.min(b.len())..b.len().min(offset.saturating_add(max))].to_vec(), b.len());
        match self {
            Stream::Live(progress, status) => {
                let out = progress.output.lock().unwrap_or_else(|p| p.into_inner());
                let (bytes, total) = slice(if stderr { &out.stderr } else { &out.stdout });
                (bytes, total, status)
            }
            Stream::Done { json, spans: Some((out, err)) } => {
                let text = &json[if stderr { err.clone() } else { out.clone() }];
                // The span was checked as base64 when the answer was kept; a chunk that does
                // not decode reads as empty rather than failing the node.
                let (bytes, total) = phase_core::encoding::base64_decode_range(text, offset, max).unwrap_or_default();
                (bytes, total, "done")
            }
            Stream::Done { spans: None, .. } => (Vec::new(), 0, "done"),
        }
    }
}

/// A queued job as a runner takes it.
pub struct Taken {
    pub id: String,
    pub request: JobRequest,
    pub progress: Arc<Progress>,
    /// The memory its request was admitted with; the runner drops it when the job's own
    /// admission has taken over.
    pub hold: Option<Reservation>,
}

/// A submitter's cancel token, and whether it has cancelled.
struct Holder {
    token: String,
    released: bool,
}

struct Entry {
    status: Status,
    /// Who may cancel: every submission of the job while it is queued or running got a token
    /// of its own (up to `MAX_HOLDERS`); the job stops when all of them have cancelled, so no
    /// submitter can cancel a job under another one (job ids are computable from requests).
    holders: Vec<Holder>,
    progress: Arc<Progress>,
    /// Queued only: the request and its memory.
    request: Option<(JobRequest, Option<Reservation>)>,
    /// Which runners take it: those for jobs that run here (true), or those for jobs that may
    /// go to a peer, so peers that never answer cannot hold the runners of jobs that run here.
    here: bool,
    /// Done only: where stdout and stderr are in the answer's JSON, for output reads.
    spans: Option<(Range<usize>, Range<usize>)>,
    /// Placed only: the peer its request went to last, and the request frame's SHA-256.
    peer: Option<(PeerId, [u8; 32])>,
    /// Ended only: when (unix seconds). What it costs: reserved for its answer (`keep_cost`)
    /// until it ends, then what its answer costs to keep.
    ended_at: u64,
    size: usize,
    /// The address that queued it, charged for `size` (None: read back from the data dir).
    submitter: Option<IpAddr>,
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Entry>,
    queue: VecDeque<String>,
    /// Ended jobs, oldest first.
    ended: VecDeque<String>,
    /// What the ended entries cost, and what the others reserved for their answers.
    kept_bytes: usize,
    reserved_bytes: usize,
    /// Reserved and kept bytes by submitter address (entries at zero are removed).
    by_submitter: HashMap<IpAddr, usize>,
}

impl Inner {
    /// Moves `who`'s charge from `from` bytes to `to`.
    fn recharge(&mut self, who: Option<IpAddr>, from: usize, to: usize) {
        let Some(ip) = who else { return };
        let held = self.by_submitter.entry(ip).or_default();
        *held = held.saturating_sub(from).saturating_add(to);
        if *held == 0 {
            self.by_submitter.remove(&ip);
        }
    }
}

/// A submission as the submitter sees it: the job's id and status, whether an identical job
/// was there already, and its own cancel token (None once the job has ended or is being
/// cancelled, or beyond `MAX_HOLDERS` submitters).
#[derive(Debug, PartialEq, Eq)]
pub struct Submitted {
    pub id: String,
    pub status: Status,
    pub existing: bool,
    pub cancel_token: Option<String>,
}

/// What cancelling found.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancel {
    /// It was queued: it will never run.
    Cancelled,
    /// It is running here: it stops within a fuel slice.
    Stopping,
    /// It is running on `peer`, which is to be told to stop the request that hashes to
    /// `request`.
    Placed { peer: PeerId, request: [u8; 32] },
    /// This token's hold is released; the job goes on for the `others` submitters still
    /// holding one.
    Released { others: usize },
    /// It has ended already (as `Status::name`).
    Ended(&'static str),
    /// The cancel token is not this job's.
    Forbidden,
}

pub struct Queue {
    config: QueueConfig,
    inner: Mutex<Inner>,
    ready: Condvar,
    /// `<data>/results`, where finished answers are kept across restarts.
    dir: Option<PathBuf>,
}

/// A cancel token: 128 random bits in hex.
fn new_token() -> String {
    phase_core::encoding::hex_encode(&ed25519_compact::Seed::generate()[..16])
}

/// An asynchronous job's handle, what the queue, its URL (`/v1/jobs/<handle>`) and its results
/// file are named by: the job's id (64 lowercase hex digits, the receipt's), and where it was
/// asked to run when the request said (`.local`, `.remote`, `.<peer id>`). Where a job runs
/// is part of what was asked: a job queued for one peer never answers for the same job asked
/// to run here or on another peer.
pub fn handle(job_id: &str, placement: Option<&Placement>) -> String {
    match placement {
        None => job_id.to_string(),
        Some(Placement::Local) => format!("{job_id}.local"),
        Some(Placement::Remote) => format!("{job_id}.remote"),
        Some(Placement::Peer(name)) => format!("{job_id}.{}", name.as_str()),
    }
}

/// Whether `h` is a handle as `handle` makes them (a peer id is at most 128 alphanumerics).
pub fn valid_handle(h: &str) -> bool {
    let (id, place) = match h.split_once('.') {
        Some((id, place)) => (id, Some(place)),
        None => (h, None),
    };
    id.len() == 64
        && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && place.is_none_or(|p| (1..=128).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The job id a valid handle names.
pub fn job_id_of_handle(h: &str) -> &str {
    &h[..h.len().min(64)]
}

impl Queue {
    /// A queue; with `dir` (the data dir's results), finished answers kept there are read back
    /// (those still within the TTL and the byte cap, newest kept first).
    pub fn new(config: QueueConfig, dir: Option<PathBuf>) -> Queue {
        let q = Queue { config, inner: Mutex::new(Inner::default()), ready: Condvar::new(), dir };
        q.load();
        q
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues job `id` for `submitter`, reserving `keep` bytes (`keep_cost`) for its answer, or
    /// finds it: an identical job (same id) that is queued, running or done is not queued again
    /// (`true`: it was there) and reserves nothing more; one that failed or was cancelled is
    /// queued afresh. Each submission of a job that is queued or running gets a cancel token of
    /// its own.
    pub fn submit(&self, id: String, request: JobRequest, hold: Option<Reservation>, here: bool, submitter: IpAddr, keep: usize) -> Result<Submitted, JobError> {
        let mut inner = self.lock();
        self.expire(&mut inner);
        if let Some(e) = inner.jobs.get_mut(&id) {
            if !matches!(e.status, Status::Failed { .. } | Status::Cancelled) {
                let cancel_token = match e.status {
                    Status::Queued { .. } | Status::Running { .. } if e.holders.len() < MAX_HOLDERS => {
                        let token = new_token();
                        e.holders.push(Holder { token: token.clone(), released: false });
                        Some(token)
                    }
                    _ => None,
                };
                let status = self.status_of(&inner, &id).unwrap_or(Status::Cancelled);
                return Ok(Submitted { id, status, existing: true, cancel_token });
            }
            self.forget(&mut inner, &id);
        }
        if inner.queue.len() >= self.config.max_queued {
            return Err(JobError::QueueFull { max: self.config.max_queued });
        }
        self.room_for(&inner, submitter, keep)?;
        inner.reserved_bytes += keep;
        inner.recharge(Some(submitter), 0, keep);
        let position = inner.queue.len();
        let cancel_token = new_token();
        inner.queue.push_back(id.clone());
        inner.jobs.insert(
            id.clone(),
            Entry {
                status: Status::Queued { position },
                holders: vec![Holder { token: cancel_token.clone(), released: false }],
                progress: Arc::new(Progress::watched()),
                request: Some((request, hold)),
                here,
                spans: None,
                peer: None,
                ended_at: 0,
                size: keep,
                submitter: Some(submitter),
            },
        );
        drop(inner);
        // Runners of both kinds wait on the one condition: wake them all, the right one takes it.
        self.ready.notify_all();
        Ok(Submitted { id, status: Status::Queued { position }, existing: false, cancel_token: Some(cancel_token) })
    }

    /// Whether `keep` more bytes of answers can be reserved for `submitter`: within the cap in
    /// all, within its share once it holds some, and within the count of entries.
    fn room_for(&self, inner: &Inner, submitter: IpAddr, keep: usize) -> Result<(), JobError> {
        let max = self.config.max_result_bytes;
        if keep > max {
            return Err(JobError::ResultTooLarge { need: keep, max });
        }
        if inner.jobs.len() >= MAX_KEPT {
            return Err(JobError::ResultsFull { need: keep, free: 0, why: KeptFull::Count(MAX_KEPT) });
        }
        let held = inner.by_submitter.get(&submitter).copied().unwrap_or(0);
        let share = max / SUBMITTER_SHARE;
        if held > 0 && held + keep > share {
            return Err(JobError::ResultsFull { need: keep, free: share.saturating_sub(held), why: KeptFull::Address });
        }
        let free = max.saturating_sub(inner.kept_bytes + inner.reserved_bytes);
        if keep > free {
            return Err(JobError::ResultsFull { need: keep, free, why: KeptFull::Node });
        }
        Ok(())
    }

    /// The job's status now, or None for an id this node does not know (or no longer keeps).
    pub fn status(&self, id: &str) -> Option<Status> {
        let mut inner = self.lock();
        self.expire(&mut inner);
        self.status_of(&inner, id)
    }

    fn status_of(&self, inner: &Inner, id: &str) -> Option<Status> {
        let e = inner.jobs.get(id)?;
        Some(match &e.status {
            Status::Queued { .. } => Status::Queued { position: inner.queue.iter().position(|q| q == id).unwrap_or(0) },
            Status::Running { placed, .. } => Status::Running { fuel_used: e.progress.fuel_used.load(Relaxed), placed: *placed },
            s => s.clone(),
        })
    }

    /// What the job's output is read from, or None for an unknown id.
    pub fn stream(&self, id: &str) -> Option<Stream> {
        let inner = self.lock();
        let e = inner.jobs.get(id)?;
        Some(match &e.status {
            Status::Done { answer } => Stream::Done { json: answer.clone(), spans: e.spans.clone() },
            status => Stream::Live(e.progress.clone(), status.name()),
        })
    }

    /// Releases the hold of `token` on job `id`, and cancels the job once no submitter holds
    /// it any more (None: unknown id).
    pub fn cancel(&self, id: &str, token: &str) -> Option<Cancel> {
        let mut inner = self.lock();
        let e = inner.jobs.get_mut(id)?;
        if e.status.ended() {
            return Some(Cancel::Ended(e.status.name()));
        }
        // Compared in constant time (every holder, whatever matches): tokens are secrets.
        let mut found = None;
        for (i, h) in e.holders.iter().enumerate() {
            let same = h.token.len() == token.len() && h.token.bytes().zip(token.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
            if same {
                found = Some(i);
            }
        }
        let Some(i) = found else { return Some(Cancel::Forbidden) };
        e.holders[i].released = true;
        let others = e.holders.iter().filter(|h| !h.released).count();
        if others > 0 {
            return Some(Cancel::Released { others });
        }
        let result = match &e.status {
            Status::Queued { .. } => {
                e.request = None; // its memory goes back now
                inner.queue.retain(|q| q != id);
                self.end(&mut inner, id, Status::Cancelled);
                Cancel::Cancelled
            }
            Status::Running { placed: true, .. } => {
                e.progress.cancel.store(true, Relaxed);
                e.status = Status::Cancelling;
                match e.peer {
                    Some((peer, request)) => Cancel::Placed { peer, request },
                    None => Cancel::Stopping,
                }
            }
            Status::Running { placed: false, .. } | Status::Cancelling => {
                e.progress.cancel.store(true, Relaxed);
                e.status = Status::Cancelling;
                Cancel::Stopping
            }
            s => Cancel::Ended(s.name()),
        };
        Some(result)
    }

    /// The next queued job that runs here (`here`) or may go to a peer, marked running
    /// (`placed`: decided by the runner after); waits for one (runners live as long as the
    /// node). The queue holds `max_queued` jobs at most: the scan is short.
    pub fn take(&self, here: bool) -> Taken {
        let mut inner = self.lock();
        loop {
            let next = inner.queue.iter().position(|id| inner.jobs.get(id).is_some_and(|e| e.here == here));
            if let Some(id) = next.and_then(|i| inner.queue.remove(i)) {
                let e = inner.jobs.get_mut(&id).expect("a queued id has its entry");
                let (request, hold) = e.request.take().expect("a queued entry has its request");
                e.status = Status::Running { fuel_used: 0, placed: false };
                return Taken { id, request, progress: e.progress.clone(), hold };
            }
            inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A running job's request is about to go to `peer` (`request`: the frame's SHA-256):
    /// marks it placed (no fuel is seen) and keeps where it went, so a cancel can follow it.
    /// False if it was cancelled (checked under the same lock as `cancel` sets it, so a cancel
    /// either stops the send or finds the peer).
    pub fn sent_to(&self, id: &str, peer: PeerId, request: [u8; 32]) -> bool {
        let mut inner = self.lock();
        let Some(e) = inner.jobs.get_mut(id) else { return true };
        if e.progress.cancel.load(Relaxed) {
            return false;
        }
        if matches!(e.status, Status::Running { .. }) {
            e.status = Status::Running { fuel_used: 0, placed: true };
        }
        e.peer = Some((peer, request));
        true
    }

    /// Records how a job ended; a done job's answer goes to the data dir too.
    pub fn finish(&self, id: &str, status: Status) {
        if let (Status::Done { answer }, Some(dir)) = (&status, &self.dir) {
            let write = std::fs::create_dir_all(dir).and_then(|_| crate::durable::replace(&dir.join(format!("{id}.json")), format!("{}\n{answer}", now()).as_bytes()));
            if let Err(e) = write {
                log!("jobs: keeping the result of {} in {}: {e} (kept in RAM only)", &id[..12], dir.display());
            }
        }
        let mut inner = self.lock();
        if inner.jobs.contains_key(id) {
            self.end(&mut inner, id, status);
        }
    }

    /// (queued, running, ended kept, bytes kept, bytes reserved for answers to come) for status
    /// and metrics.
    pub fn counts(&self) -> (usize, usize, usize, usize, usize) {
        let inner = self.lock();
        let running = inner.jobs.values().filter(|e| matches!(e.status, Status::Running { .. } | Status::Cancelling)).count();
        (inner.queue.len(), running, inner.ended.len(), inner.kept_bytes, inner.reserved_bytes)
    }

    /// Ends an entry that has not ended: its reservation becomes what its answer costs.
    fn end(&self, inner: &mut Inner, id: &str, status: Status) {
        let size = match &status {
            Status::Done { answer } => answer.len(),
            Status::Failed { message, .. } => message.len(),
            _ => 0,
        } + ENTRY_OVERHEAD;
        let Some(e) = inner.jobs.get_mut(id) else { return };
        if e.status.ended() {
            return;
        }
        e.spans = match &status {
            Status::Done { answer } => output_spans(answer),
            _ => None,
        };
        e.status = status;
        e.request = None;
        // The answer holds the output now (a cancelled or failed job's partial output goes).
        *e.progress.output.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
        e.ended_at = now();
        let (reserved, who) = (std::mem::replace(&mut e.size, size), e.submitter);
        inner.reserved_bytes -= reserved.min(inner.reserved_bytes);
        inner.kept_bytes += size;
        inner.recharge(who, reserved, size);
        inner.ended.push_back(id.to_string());
        self.expire(inner);
    }

    /// Drops ended jobs past the TTL (never one within it for a newer one: see `room_for`).
    fn expire(&self, inner: &mut Inner) {
        let oldest_kept = now().saturating_sub(self.config.result_ttl.as_secs());
        while let Some(id) = inner.ended.front().cloned() {
            let old = inner.jobs.get(&id).map(|e| e.ended_at < oldest_kept || !e.status.ended()).unwrap_or(true);
            if old {
                inner.ended.pop_front();
                self.remove(inner, &id);
            } else {
                break;
            }
        }
    }

    /// Removes an ended entry anywhere in the order (and its file).
    fn forget(&self, inner: &mut Inner, id: &str) {
        inner.ended.retain(|q| q != id);
        self.remove(inner, id);
    }

    /// Removes an ended entry whose place in `ended` is already gone (and its file).
    fn remove(&self, inner: &mut Inner, id: &str) {
        if inner.jobs.get(id).is_some_and(|e| !e.status.ended()) {
            return;
        }
        if let Some(e) = inner.jobs.remove(id) {
            inner.kept_bytes -= e.size.min(inner.kept_bytes);
            inner.recharge(e.submitter, e.size, 0);
            if matches!(e.status, Status::Done { .. }) {
                if let Some(dir) = &self.dir {
                    let _ = std::fs::remove_file(dir.join(format!("{id}.json")));
                }
            }
        }
    }

    /// Reads back the answers a previous run kept: `<id>.json` files holding the time they
    /// ended and the answer. Files are read newest first (by modification time) while their
    /// sizes fit the byte cap, so a full results dir is never read whole; unreadable,
    /// misnamed, expired and unkept files are removed.
    fn load(&self) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let remove = |path: &std::path::Path, why: &str| {
            log!("jobs: {}: {why}; removed", path.display());
            let _ = std::fs::remove_file(path);
        };
        let mut files = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            match (name.strip_suffix(".json").filter(|i| valid_handle(i)), e.metadata()) {
                (Some(id), Ok(m)) if m.is_file() => files.push((m.modified().ok(), m.len(), id.to_string(), path)),
                _ => remove(&path, "not a kept result"),
            }
        }
        files.sort_by(|a, b| b.0.cmp(&a.0));
        let (mut found, mut bytes) = (Vec::new(), 0u64);
        for (_, len, id, path) in files {
            bytes = bytes.saturating_add(len).saturating_add(ENTRY_OVERHEAD as u64);
            if bytes > self.config.max_result_bytes as u64 || found.len() >= MAX_KEPT {
                remove(&path, "beyond the kept results' cap");
                continue;
            }
            let read = std::fs::read_to_string(&path).ok();
            // Checked as an answer once, then kept as its JSON (and where its output is).
            let parsed = read.as_deref().and_then(|t| t.split_once('\n')).and_then(|(at, json)| {
                Answer::parse(json).ok()?;
                Some((at.parse::<u64>().ok()?, json.to_string(), output_spans(json)?))
            });
            match parsed {
                Some((at, json, spans)) => found.push((at, id, json, spans)),
                None => remove(&path, "not a kept result"),
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut inner = self.lock();
        let n = found.len();
        for (at, id, json, spans) in found {
            let size = json.len() + ENTRY_OVERHEAD;
            // An ended job cannot be cancelled: no token is kept for it.
            let entry = Entry {
                status: Status::Done { answer: json.into() },
                holders: Vec::new(),
                progress: Arc::default(),
                request: None,
                here: true,
                spans: Some(spans),
                peer: None,
                ended_at: at,
                size,
                submitter: None,
            };
            inner.jobs.insert(id.clone(), entry);
            inner.ended.push_back(id);
            inner.kept_bytes += size;
        }
        self.expire(&mut inner);
        if n > 0 {
            log!("jobs: {} kept results read back from {} ({} still kept)", n, dir.display(), inner.ended.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(input: &[u8]) -> JobRequest {
        JobRequest::parse(format!("{{\"module_sha256\":\"{}\",\"input\":\"{}\"}}", "ab".repeat(32), phase_core::encoding::base64_encode(input)).as_bytes()).unwrap()
    }

    fn id(n: u8) -> String {
        phase_core::encoding::hex_encode(&[n; 32])
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    /// Job `n` from address `from`, reserving `keep`, run and done with an answer of
    /// `answer_bytes`.
    fn done_from(q: &Queue, n: u8, from: u8, keep: usize, answer_bytes: usize) {
        let token = q.submit(id(n), request(&[n]), None, true, ip(from), keep).unwrap().cancel_token;
        assert!(token.is_some());
        let t = q.take(true);
        assert_eq!(t.id, id(n));
        q.finish(&id(n), Status::Done { answer: format!("\"{}\"", "x".repeat(answer_bytes)).into() });
    }

    fn done(q: &Queue, n: u8, answer_bytes: usize) {
        done_from(q, n, 1, 1000, answer_bytes)
    }

    #[test]
    fn a_cancel_either_stops_a_placement_before_it_sends_or_finds_the_peer() {
        let q = Queue::new(QueueConfig::default(), None);
        let peer = PeerId::random();
        // Cancelled before the request goes out: nothing is sent.
        let token = q.submit(id(1), request(b"1"), None, true, ip(1), 1000).unwrap().cancel_token;
        let _t = q.take(true);
        assert_eq!(q.cancel(&id(1), &token.unwrap()), Some(Cancel::Stopping));
        assert!(!q.sent_to(&id(1), peer, [1; 32]));
        // Sent first: the cancel names the peer and the request, and the job is cancelling.
        let token = q.submit(id(2), request(b"2"), None, true, ip(1), 1000).unwrap().cancel_token;
        let t = q.take(true);
        assert!(q.sent_to(&id(2), peer, [2; 32]));
        assert_eq!(q.status(&id(2)), Some(Status::Running { fuel_used: 0, placed: true }));
        assert_eq!(q.cancel(&id(2), &token.unwrap()), Some(Cancel::Placed { peer, request: [2; 32] }));
        assert!(t.progress.cancel.load(Relaxed));
        assert_eq!(q.status(&id(2)), Some(Status::Cancelling));
        // A second attempt on another peer is not sent.
        assert!(!q.sent_to(&id(2), PeerId::random(), [3; 32]));
    }

    #[test]
    fn kept_answers_are_reserved_never_evicted_and_an_address_keeps_within_its_share() {
        let cap = 40_000;
        let q = Queue::new(QueueConfig { max_queued: 16, result_ttl: Duration::from_secs(3600), max_result_bytes: cap }, None);
        // An honest client's answer, done and kept.
        done_from(&q, 1, 1, 8_000, 100);
        let kept = q.status(&id(1));
        assert!(matches!(kept, Some(Status::Done { .. })));
        // Another address reserves up to its share: its first job whatever it holds, then
        // within a quarter of the cap.
        q.submit(id(2), request(b"2"), None, true, ip(2), 8_000).unwrap();
        let refused = q.submit(id(3), request(b"3"), None, true, ip(2), 8_000);
        assert!(matches!(refused, Err(JobError::ResultsFull { need: 8_000, free: 2_000, why: KeptFull::Address })), "{refused:?}");
        // Other addresses fill the rest; then the node is full for everyone, and nothing kept
        // was evicted to make room.
        for n in 3..=5u8 {
            q.submit(id(10 + n), request(&[n]), None, true, ip(n), 8_000).unwrap();
        }
        let full = q.submit(id(20), request(b"20"), None, true, ip(9), 8_000);
        assert!(matches!(full, Err(JobError::ResultsFull { why: KeptFull::Node, .. })), "{full:?}");
        assert_eq!(q.status(&id(1)), kept, "a kept answer was evicted for a newer job");
        // A job that ends gives back what its answer does not take.
        let t = q.take(true);
        assert_eq!(t.id, id(2));
        q.finish(&id(2), Status::Done { answer: "\"small\"".into() });
        q.submit(id(20), request(b"20"), None, true, ip(9), 8_000).unwrap();
        // More than the whole cap can never be kept; a zero-output job still reserves its
        // answer's JSON.
        let huge = q.submit(id(21), request(b"21"), None, true, ip(10), cap + 1);
        assert!(matches!(huge, Err(JobError::ResultTooLarge { max: 40_000, .. })), "{huge:?}");
        assert!(keep_cost(0) > ENTRY_OVERHEAD && keep_cost(1 << 20) >= (1 << 20) / 3 * 4);
        assert!(keep_cost(max_keepable_output(cap)) <= cap && keep_cost(max_keepable_output(cap) + 3) > cap);
        // A TTL of zero keeps an answer until the clock moves on.
        let q = Queue::new(QueueConfig { result_ttl: Duration::ZERO, ..QueueConfig::default() }, None);
        done(&q, 1, 10);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(q.status(&id(1)), None);
        assert_eq!(q.counts(), (0, 0, 0, 0, 0), "an expired answer gives its bytes back");
    }

    #[test]
    fn the_queue_is_bounded_identical_jobs_are_one_and_only_the_token_cancels() {
        let q = Queue::new(QueueConfig { max_queued: 2, ..QueueConfig::default() }, None);
        let t1 = q.submit(id(1), request(b"1"), None, true, ip(1), 1000).unwrap().cancel_token;
        q.submit(id(2), request(b"2"), None, true, ip(1), 1000).unwrap();
        assert!(matches!(q.submit(id(3), request(b"3"), None, true, ip(1), 1000), Err(JobError::QueueFull { max: 2 })));
        assert_eq!(q.cancel(&id(1), ""), Some(Cancel::Forbidden));
        assert_eq!(q.cancel(&id(1), &"0".repeat(32)), Some(Cancel::Forbidden));
        assert_eq!(q.cancel(&id(1), t1.as_deref().unwrap()), Some(Cancel::Cancelled));
        assert_eq!(q.status(&id(2)), Some(Status::Queued { position: 0 }), "it moved up");
        assert_eq!(q.cancel(&id(1), t1.as_deref().unwrap()), Some(Cancel::Ended("cancelled")));
        assert_eq!(q.cancel(&id(9), ""), None);
        // A cancelled job submitted again is queued afresh, with a new token.
        let Submitted { status: s, cancel_token: t, .. } = q.submit(id(1), request(b"1"), None, true, ip(1), 1000).unwrap();
        assert_eq!(s, Status::Queued { position: 1 });
        assert!(t.is_some() && t != t1);
    }

    #[test]
    fn every_submitter_holds_its_own_token_and_the_job_stops_only_when_all_have_cancelled() {
        let q = Queue::new(QueueConfig::default(), None);
        // The squatter submits first, then an honest client the same job (ids are computable).
        let squatter = q.submit(id(1), request(b"1"), None, true, ip(1), 1000).unwrap().cancel_token.unwrap();
        let honest = q.submit(id(1), request(b"1"), None, true, ip(1), 1000).unwrap();
        assert!(honest.existing && honest.status == Status::Queued { position: 0 });
        let honest = honest.cancel_token.expect("an identical submission gets a token of its own");
        assert_ne!(honest, squatter);
        assert_eq!(q.cancel(&id(1), &squatter), Some(Cancel::Released { others: 1 }));
        assert_eq!(q.cancel(&id(1), &squatter), Some(Cancel::Released { others: 1 }), "twice is once");
        assert_eq!(q.status(&id(1)), Some(Status::Queued { position: 0 }), "the job goes on for the honest one");
        let t = q.take(true);
        assert_eq!(q.cancel(&id(1), &honest), Some(Cancel::Stopping), "the last holder stops it");
        assert!(t.progress.cancel.load(Relaxed));
        // Holders are bounded; beyond them a submitter gets the status and no token.
        for _ in 0..MAX_HOLDERS {
            q.submit(id(2), request(b"2"), None, true, ip(1), 1000).unwrap();
        }
        let late = q.submit(id(2), request(b"2"), None, true, ip(1), 1000).unwrap();
        assert!(late.existing && late.cancel_token.is_none());
        // A done job hands out no token: there is nothing left to cancel.
        let q = Queue::new(QueueConfig::default(), None);
        done(&q, 3, 10);
        let again = q.submit(id(3), request(b"3"), None, true, ip(1), 1000).unwrap();
        assert!(again.existing && again.cancel_token.is_none() && matches!(again.status, Status::Done { .. }));
    }

    #[test]
    fn kept_results_are_read_back_newest_first_within_the_cap_and_their_output_is_a_value() {
        let vectors: miniserde::json::Value = miniserde::json::from_str(include_str!("../../../../docs/test-vectors/answer-v1.json")).unwrap();
        let miniserde::json::Value::Object(top) = vectors else { panic!() };
        let Some(miniserde::json::Value::Array(v)) = top.get("vectors") else { panic!() };
        let miniserde::json::Value::Object(first) = &v[0] else { panic!() };
        let answer = miniserde::json::to_string(first.get("answer").unwrap());
        let dir = std::env::temp_dir().join(format!("phase-queue-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!("{}\n{answer}", now());
        let t0 = std::time::SystemTime::now();
        for n in 1..=3u8 {
            let path = dir.join(format!("{}.json", id(n)));
            std::fs::write(&path, &text).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(t0 - Duration::from_secs(10 - n as u64)).unwrap();
        }
        std::fs::write(dir.join("stray.json"), "x").unwrap();
        // Room for two files.
        let cap = 2 * (text.len() + ENTRY_OVERHEAD) + 100;
        let q = Queue::new(QueueConfig { max_result_bytes: cap, ..QueueConfig::default() }, Some(dir.clone()));
        assert_eq!(q.status(&id(1)), None, "the oldest is beyond the cap");
        assert!(!dir.join(format!("{}.json", id(1))).exists() && !dir.join("stray.json").exists());
        assert!(matches!(q.status(&id(3)), Some(Status::Done { .. })));
        let stream = q.stream(&id(3)).unwrap();
        assert_eq!(stream.read(false, 0, 5), (b"dlroW".to_vec(), 12, "done"));
        assert_eq!(stream.read(false, 10, 100), (b"eH".to_vec(), 12, "done"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
