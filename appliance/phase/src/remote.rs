//! Placement: a job sent to this node with `placement` runs on a peer (docs/api.md). The
//! executor's answer and its signed receipt come back unchanged; this node only checks that the
//! receipt is the executor's (signed by the key its PeerId names) and is for what was sent.
//! Forwarding takes a permit (as many as job slots) and waits at most the job's deadline.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use miniserde::json::{self, Value};
use phase_core::encoding::{base64_encode, hex_encode};
use phase_core::job::RequestedLimits;
use phase_core::job::receipt::Receipt;
use phase_core::sha256;
use phase_core::job::answer::{Answer, Asked};
use phase_core::job::request::{error_json, PeerModule};

use crate::engine::Progress;
use crate::node::{Node, PeerFault};
use crate::p2p::{P2p, PeerId, PeerInfo};
use crate::service::{JobRequest, ModuleSource, NodeService, ServiceError};

/// Where a job should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Local,
    /// Any connected Phase peer, lowest round-trip time first.
    Remote,
    Peer(PeerId),
}

impl Placement {
    pub fn parse(text: &str) -> Result<Placement, String> {
        match text {
            "local" => Ok(Placement::Local),
            "remote" => Ok(Placement::Remote),
            id => id
                .parse()
                .map(Placement::Peer)
                .map_err(|_| format!("placement {id:?} is not local, remote or a peer id")),
        }
    }
}

/// Attempts across peers for one job (transport errors and busy or failing peers).
const MAX_ATTEMPTS: usize = 3;

/// What watches a placement from outside (an asynchronous job's queue entry): where each
/// request goes, and whether the submitter cancelled the job.
pub trait Watch {
    /// Told before each job request goes to a peer: the peer and the SHA-256 of the request
    /// frame (what a cancel names). False: the job was cancelled, nothing is sent.
    fn sending(&self, _peer: PeerId, _request: [u8; 32]) -> bool {
        true
    }
    fn cancelled(&self) -> bool {
        false
    }
}

/// A synchronous job: nobody watches, nobody cancels.
pub struct Unwatched;
impl Watch for Unwatched {}

/// The placement error of a job cancelled by its submitter.
fn cancelled() -> PlaceError {
    service_error(ServiceError::Cancelled)
}

/// Why a job could not be placed: (HTTP status, error code, message).
pub type PlaceError = (u16, &'static str, String);

fn service_error(e: ServiceError) -> PlaceError {
    (e.status(), e.code(), e.to_string())
}

/// What an executor remembers of peer jobs that are not running (cancels that came before
/// their job, jobs that ended), at most, in all and per sender, and for how long.
const REMEMBERED: usize = 1024;
const REMEMBERED_PER_PEER: usize = 16;
const REMEMBERED_FOR: Duration = Duration::from_secs(60);

/// Requests (sender, frame hash) remembered for a while, within the bounds above: when one more
/// comes, the sender's own oldest goes first, then anyone's, so a peer crowds out only itself
/// beyond its share.
#[derive(Default)]
struct Recent(VecDeque<(PeerId, [u8; 32], Instant)>);

impl Recent {
    fn push(&mut self, peer: PeerId, request: [u8; 32]) {
        self.expire();
        if self.0.iter().filter(|(p, _, _)| *p == peer).count() >= REMEMBERED_PER_PEER {
            if let Some(i) = self.0.iter().position(|(p, _, _)| *p == peer) {
                self.0.remove(i);
            }
        }
        if self.0.len() >= REMEMBERED {
            self.0.pop_front();
        }
        self.0.push_back((peer, request, Instant::now()));
    }

    /// Whether (`peer`, `request`) is remembered; `forget` removes it.
    fn find(&mut self, peer: PeerId, request: [u8; 32], forget: bool) -> bool {
        self.expire();
        match self.0.iter().position(|(p, r, _)| *p == peer && *r == request) {
            Some(i) => {
                if forget {
                    self.0.remove(i);
                }
                true
            }
            None => false,
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        self.0.retain(|(_, _, at)| now.duration_since(*at) < REMEMBERED_FOR);
    }
}

/// The jobs peers sent this node that are running now, by sender and the SHA-256 of the request
/// frame (what the sender names in a cancel; p2p/cancel.rs). A cancel may overtake its job's
/// frame (another stream): a cancel for nothing running is remembered and the job is refused
/// when it comes; a cancel for a job that ended a moment ago (its answer crossed the cancel) is
/// not, or an identical request sent later would be refused. Only the sender of a job can stop
/// it. Running entries exist while a job holds a slot, so they are bounded by the slots.
#[derive(Default)]
pub struct PeerJobs {
    inner: Mutex<PeerJobsInner>,
}

#[derive(Default)]
struct PeerJobsInner {
    running: Vec<(PeerId, [u8; 32], Arc<Progress>)>,
    early: Recent,
    ended: Recent,
}

/// A job registered as running; it leaves the table, and is remembered as ended, when this
/// drops.
struct RunningPeerJob<'a> {
    jobs: &'a PeerJobs,
    peer: PeerId,
    request: [u8; 32],
    progress: Arc<Progress>,
}

impl Drop for RunningPeerJob<'_> {
    fn drop(&mut self) {
        let mut inner = self.jobs.lock();
        inner.running.retain(|(_, _, p)| !Arc::ptr_eq(p, &self.progress));
        inner.ended.push(self.peer, self.request);
    }
}

impl PeerJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, PeerJobsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a job about to run; None if its sender cancelled it before it came.
    fn start(&self, peer: PeerId, request: [u8; 32]) -> Option<RunningPeerJob<'_>> {
        let mut inner = self.lock();
        if inner.early.find(peer, request, true) {
            return None;
        }
        let progress = Arc::new(Progress::default());
        inner.running.push((peer, request, progress.clone()));
        Some(RunningPeerJob { jobs: self, peer, request, progress })
    }

    /// `peer` cancels its job `request`: true if one was running (it stops within a fuel
    /// slice); otherwise, unless it ended a moment ago, the cancel is remembered for the job's
    /// arrival.
    pub fn cancel(&self, peer: PeerId, request: [u8; 32]) -> bool {
        let mut inner = self.lock();
        let mut found = false;
        for (_, _, progress) in inner.running.iter().filter(|(p, r, _)| *p == peer && *r == request) {
            progress.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            found = true;
        }
        if !found && !inner.ended.find(peer, request, false) {
            inner.early.push(peer, request);
        }
        found
    }
}

/// Runs a job a peer sent us, as if it came to our API, but always here: a forwarded job is
/// never forwarded again. A node without a free slot answers busy before it parses or
/// compiles anything. The job runs registered in `jobs`, so its sender can cancel it.
/// (`PeerFault::Stall` never gets here: the node's wiring never answers.)
pub fn serve_peer_job(service: &NodeService, jobs: &PeerJobs, from: PeerId, body: Vec<u8>, fault: PeerFault) -> Vec<u8> {
    let slot = match service.try_slot() {
        Ok(s) => s,
        Err(e) => return error_json(e.status(), e.code(), &e.to_string()).into_bytes(),
    };
    let Some(running) = jobs.start(from, sha256(&body)) else {
        log!("p2p: a job from {from} that it cancelled before it came: refused");
        let e = ServiceError::Cancelled;
        return error_json(e.status(), e.code(), &e.to_string()).into_bytes();
    };
    let req = match JobRequest::parse(&body) {
        Ok(req) => JobRequest { placement: None, redundancy: None, ..req },
        Err(msg) => return error_json(400, "invalid_request", &msg).into_bytes(),
    };
    match fault {
        PeerFault::Garbage => return b"\x00not json at all".to_vec(),
        PeerFault::Cancelled => {
            let e = ServiceError::Cancelled;
            return error_json(e.status(), e.code(), &e.to_string()).into_bytes();
        }
        _ => {}
    }
    let req = match fault {
        PeerFault::OtherJob => JobRequest { args: [req.args, vec!["--another-job".to_string()]].concat(), ..req },
        _ => req,
    };
    let done = match service.submit_watched(Some(slot), req, running.progress.clone()) {
        Ok(done) => done,
        Err(e) => return error_json(e.status(), e.code(), &e.to_string()).into_bytes(),
    };
    let answer = done.to_json();
    let receipt = &done.outcome.receipt;
    match fault {
        PeerFault::None | PeerFault::Stall | PeerFault::Garbage | PeerFault::OtherJob | PeerFault::Cancelled => answer,
        PeerFault::ForgeStdout => answer.replacen(
            &format!("\"stdout\":\"{}\"", base64_encode(&done.outcome.execution.stdout)),
            &format!("\"stdout\":\"{}\"", base64_encode(b"forged")),
            1,
        ),
        PeerFault::Lie => {
            let mut body = receipt.body.clone();
            body.stdout_sha256 = sha256(b"a lie");
            let lie = Receipt::sign(body, service.identity().key_pair());
            answer.replace(&receipt.to_json(), &lie.to_json()).replace(&base64_encode(&done.outcome.execution.stdout), &base64_encode(b"a lie"))
        }
        PeerFault::WrongKey => {
            let other = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([0x42; 32]));
            let forged = Receipt::sign(receipt.body.clone(), &other);
            answer.replace(&receipt.to_json(), &forged.to_json())
        }
    }
    .into_bytes()
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(name),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// A maximum a peer announces in its identify agent string (`fuel=…`); None if it does not.
fn announced(agent: &str, key: &str) -> Option<u64> {
    agent.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Whether a peer's announced maxima admit the limits a job asks for (an unannounced maximum
/// admits anything: the peer itself has the last word).
fn admits(agent: &str, limits: &RequestedLimits) -> bool {
    [("fuel", limits.fuel), ("memory", limits.memory_bytes), ("output", limits.output_bytes), ("deadline", limits.deadline_ms)]
        .iter()
        .all(|(key, asked)| match (asked, announced(agent, key)) {
            (Some(asked), Some(max)) => *asked <= max,
            _ => true,
        })
}

/// Placement order: peers with a free slot (least loaded first), then peers whose load is
/// unknown, then full ones; round-trip time breaks ties.
fn rank(p: &PeerInfo) -> (u8, u64, u64) {
    let rtt = p.rtt_ms.unwrap_or(u64::MAX);
    match p.load {
        Some(l) if l.busy() < l.slots => (0, l.busy() as u64 * 1000 / l.slots as u64, rtt),
        Some(l) => (2, l.busy() as u64 * 1000 / l.slots as u64, rtt),
        None => (1, 0, rtt),
    }
}

/// Connected Phase peers whose announced maxima admit the job's limits, in placement order.
fn executors(p2p: &P2p, limits: &RequestedLimits) -> Result<Vec<PeerId>, PlaceError> {
    let peers = p2p.peers().map_err(|e| (503, "p2p_unavailable", e.to_string()))?;
    Ok(placement_order(peers, limits))
}

fn placement_order(mut peers: Vec<PeerInfo>, limits: &RequestedLimits) -> Vec<PeerId> {
    peers.retain(|p| p.connected && p.agent.starts_with("phase/") && admits(&p.agent, limits));
    peers.sort_by_key(rank);
    peers.into_iter().map(|p| p.peer_id).collect()
}

/// The PeerId an Ed25519 node key derives to.
pub fn peer_of_key(key: &[u8; 32]) -> Option<PeerId> {
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(libp2p::identity::PublicKey::from(ed).to_peer_id())
}

/// Checks an executor's answer: a receipt signed by the executor's own key, for this module
/// and input. Returns the reason when it is not.
/// What the client asked for, as an answer must match it.
fn asked<'a>(req: &'a JobRequest, module: &'a [u8; 32], input: &'a [u8; 32]) -> Asked<'a> {
    Asked { module_sha256: module, input_sha256: input, args: &req.args, env: &req.env, limits: &req.limits, signer: None }
}

/// Checks an answer as a client would (phase_core::job::answer: signature, job id recomputed,
/// bodies, status and fuel), and that its receipt is signed by the key `peer`'s PeerId names.
fn check_answer(raw: &str, peer: Option<&PeerId>, asked: &Asked<'_>) -> Result<Answer, String> {
    let answer = Answer::parse(raw).map_err(|e| e.to_string())?;
    answer.verify(asked).map_err(|e| e.to_string())?;
    if let Some(peer) = peer {
        if peer_of_key(&answer.signer()).as_ref() != Some(peer) {
            return Err(format!("receipt signed by node key {}, which is not peer {peer}'s", hex_encode(&answer.signer())));
        }
    }
    Ok(answer)
}

/// Runs `req` on a peer as `placement` says. Returns the executor's answer JSON with an
/// `executor` field added. Each attempt waits at most the job's deadline plus 10 s for moving
/// the job and its answer, so the whole placement ends within MAX_ATTEMPTS times that.
pub fn place(node: &Node, req: JobRequest, placement: Placement, watch: &dyn Watch) -> Result<String, PlaceError> {
    let service = &node.service;
    let Some(p2p) = node.p2p.as_ref() else {
        return Err((422, "p2p_disabled", "placement needs the peer network (phase node --p2p)".into()));
    };
    let stored: Option<Arc<Vec<u8>>>;
    let (module_sha256, module_bytes): ([u8; 32], Option<&[u8]>) = match &req.module {
        ModuleSource::Bytes(b) => (sha256(b), Some(b.as_slice())),
        ModuleSource::Sha256(d) => {
            stored = service.module_bytes(d);
            (*d, stored.as_deref().map(|v| v.as_slice()))
        }
    };
    // The executor first gets the module by hash: this body, built once, is also the key's
    // fingerprint.
    let input_sha256 = sha256(&req.input);
    let by_hash = req.to_peer_json(PeerModule::Hash(&module_sha256)).into_bytes();
    let fingerprint = sha256(&by_hash);
    if let Some(key) = &req.idempotency_key {
        match service.placed(key) {
            Some(kept) if kept.0 == fingerprint => return Ok(kept.1.replacen("\"replayed\":false", "\"replayed\":true", 1)),
            Some(_) => return Err((409, "idempotency_conflict", format!("idempotency key {key:?} was used for a different job"))),
            None => {}
        }
    }
    let _permit = service.try_forward().map_err(service_error)?;
    // Asked only now: a replayed key needs no peer (and no round trip to the swarm).
    let candidates: Vec<PeerId> = match placement {
        Placement::Peer(id) => vec![id],
        _ => executors(p2p, &req.limits)?,
    };
    if candidates.is_empty() {
        return Err((503, "no_peer", "no connected Phase peer can take the job (none, or none whose announced maxima admit its limits)".into()));
    }
    // Unvalidated here (the executor checks it): bounded by the hard maximum.
    let deadline_ms = req
        .limits
        .deadline_ms
        .unwrap_or(service.config().default_limits.deadline_ms)
        .min(phase_core::Limits::MAX.deadline_ms);
    let per_attempt = Duration::from_millis(deadline_ms) + Duration::from_secs(10);
    let mut last: PlaceError = (502, "peer_unreachable", "no attempt made".into());
    for attempt in 0..MAX_ATTEMPTS {
        let peer = candidates[attempt % candidates.len()];
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(100 << attempt));
        }
        // The module travels inline at most once per attempt, within the attempt's wait.
        let give_up = std::time::Instant::now() + per_attempt;
        let mut inline = false;
        let answer = loop {
            let wait = give_up.saturating_duration_since(std::time::Instant::now());
            if wait.is_zero() {
                break Err((504, "peer_timeout", format!("peer {peer} did not answer within the job's deadline of {deadline_ms} ms + 10 s")));
            }
            let body = match (inline, module_bytes) {
                (true, Some(bytes)) => req.to_peer_json(PeerModule::Inline(bytes)).into_bytes(),
                _ => by_hash.clone(),
            };
            if !watch.sending(peer, sha256(&body)) {
                return Err(cancelled());
            }
            let raw = match p2p.run_job(peer, body, wait) {
                Ok(raw) => raw,
                Err(e) => break Err((502, "peer_unreachable", e.to_string())),
            };
            let Some(value) = std::str::from_utf8(&raw).ok().and_then(|t| json::from_str::<Value>(t).ok()) else {
                log!("p2p: peer {peer} answered a job with something that is not JSON");
                break Err((502, "bad_peer_answer", format!("peer {peer} answered with something that is not JSON")));
            };
            match text(field(&value, "error")) {
                // The executor does not have the module: send it once, then it is cached there.
                Some("module_not_found") if !inline && module_bytes.is_some() => inline = true,
                // Asked by its submitter or not: a peer that stops a job nobody cancelled is
                // failing, and another peer may take it.
                Some("cancelled") => {
                    break Err(if watch.cancelled() {
                        cancelled()
                    } else {
                        (502, "bad_peer_answer", format!("peer {peer} says the job was cancelled, which this node never asked"))
                    });
                }
                Some(code) => {
                    let status = match field(&value, "status") {
                        Some(Value::Number(json::Number::U64(n))) if (400..600).contains(n) => *n as u16,
                        _ => 502,
                    };
                    let message = text(field(&value, "message")).unwrap_or("").to_string();
                    break Err((status, static_code(code), format!("peer {peer}: {message}")));
                }
                None => break Ok((value, raw)),
            }
        };
        match answer {
            Ok((_, raw)) => match check_answer(&String::from_utf8_lossy(&raw), Some(&peer), &asked(&req, &module_sha256, &input_sha256)) {
                Ok(_) => {
                    let raw = String::from_utf8_lossy(&raw);
                    let answer = format!("{{\"executor\":\"{peer}\",{}", &raw[1..]);
                    if let Some(key) = &req.idempotency_key {
                        service.keep_placed(key, fingerprint, answer.clone());
                    }
                    return Ok(answer);
                }
                Err(why) => {
                    log!("p2p: rejected the answer of peer {peer}: {why}");
                    last = worse(last, (502, "bad_receipt", format!("peer {peer}: {why}")));
                }
            },
            // Busy or failing peers and transport errors are worth another peer; a job error
            // or a bad request is the job's answer and is never retried.
            Err(e) if e.0 == 429 || e.0 >= 500 => {
                log!("p2p: job attempt {} on {peer} failed ({} {}): {}", attempt + 1, e.0, e.1, e.2);
                last = worse(last, e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The error a placement reports when every attempt failed: a peer caught signing a wrong
/// answer is evidence the client must see, so it outranks a later busy peer or a dropped
/// connection; otherwise the latest attempt's error stands.
fn worse(before: PlaceError, now: PlaceError) -> PlaceError {
    let lie = |e: &PlaceError| matches!(e.1, "bad_receipt" | "bad_peer_answer");
    if lie(&before) && !lie(&now) {
        before
    } else {
        now
    }
}

/// Error codes are a closed set (docs/api.md); an unknown code from a peer is reported as such.
fn static_code(code: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "invalid_request", "module_not_found", "module_too_large", "invalid_module", "input_too_large",
        "limit_out_of_range", "invalid_args_env", "busy", "idempotency_conflict", "storage", "bad_body",
        "body_too_large", "no_memory", "idempotency_pending",
    ];
    KNOWN.iter().find(|k| **k == code).copied().unwrap_or("peer_error")
}

/// Most nodes one job may be run on at once.
pub const MAX_REDUNDANCY: usize = 16;

/// Runs `req` on `k` distinct nodes (this one and connected peers, in parallel) and reports
/// whether they agree on job id, output hashes, exit status and fuel: the engine is
/// deterministic, so honest nodes agree. Every answer is verified as a client verifies it, and
/// they must come from k distinct node keys. Answer: `{"k":…,"agree":…,"replayed":…,
/// "answers":[…]}`. With an idempotency key the whole answer is kept under it: a retry gets the
/// same k answers back (the parts run without the key, so no part replays another's result).
pub fn redundant(node: &Node, req: JobRequest, k: usize) -> Result<String, PlaceError> {
    let (service, p2p) = (&node.service, node.p2p.as_ref());
    if !(1..=MAX_REDUNDANCY).contains(&k) {
        return Err((422, "invalid_request", format!("redundancy must be 1 to {MAX_REDUNDANCY}")));
    }
    let module_sha256 = match &req.module {
        ModuleSource::Bytes(b) => sha256(b),
        ModuleSource::Sha256(d) => *d,
    };
    let input_sha256 = sha256(&req.input);
    let part = JobRequest { placement: None, redundancy: None, idempotency_key: None, ..req.clone() };
    let fingerprint = sha256(format!("redundancy {k}\n{}", part.to_peer_json(PeerModule::Hash(&module_sha256))).as_bytes());
    let kept_key = req.idempotency_key.as_ref().map(|key| format!("redundancy/{key}"));
    if let Some(key) = &kept_key {
        match service.placed(key) {
            Some(kept) if kept.0 == fingerprint => return Ok(kept.1.replacen("\"replayed\":false", "\"replayed\":true", 1)),
            Some(_) => return Err((409, "idempotency_conflict", format!("idempotency key {:?} was used for a different job", req.idempotency_key.as_deref().unwrap_or("")))),
            None => {}
        }
    }
    let mut peers: Vec<PeerId> = match (k, p2p) {
        (1, _) => vec![],
        (_, None) => return Err((422, "p2p_disabled", "redundancy above 1 needs the peer network (phase node --p2p)".into())),
        (_, Some(p2p)) => executors(p2p, &req.limits)?,
    };
    if peers.len() < k - 1 {
        return Err((503, "not_enough_peers", format!("redundancy {k} needs {} connected peers; {} are", k - 1, peers.len())));
    }
    peers.truncate(k - 1);
    let answers: Vec<Result<String, PlaceError>> = std::thread::scope(|scope| {
        let remote: Vec<_> = peers
            .iter()
            .map(|peer| {
                let r = part.clone();
                scope.spawn(move || place(node, r, Placement::Peer(*peer), &Unwatched))
            })
            .collect();
        let local = service.submit(part.clone()).map(|done| done.to_json()).map_err(service_error);
        std::iter::once(local).chain(remote.into_iter().map(|h| h.join().unwrap_or_else(|_| Err((500, "peer_error", "executor thread failed".into()))))).collect()
    });
    let asked = asked(&part, &module_sha256, &input_sha256);
    let mut bodies = Vec::with_capacity(k);
    let mut prints = Vec::with_capacity(k);
    let mut signers: Vec<[u8; 32]> = Vec::with_capacity(k);
    for a in answers {
        let body = a?;
        let answer = check_answer(&body, None, &asked).map_err(|why| (502, "bad_receipt", why))?;
        if signers.contains(&answer.signer()) {
            return Err((502, "bad_receipt", format!("two answers are signed by one node key {}: not {k} distinct executors", hex_encode(&answer.signer()))));
        }
        signers.push(answer.signer());
        prints.push(answer.fingerprint());
        bodies.push(body);
    }
    let agree = prints.windows(2).all(|w| w[0] == w[1]);
    if !agree {
        log!("redundancy: the {k} executors of one job disagree");
    }
    let combined = format!("{{\"k\":{k},\"agree\":{agree},\"replayed\":false,\"answers\":[{}]}}", bodies.join(","));
    if let Some(key) = &kept_key {
        service.keep_placed(key, fingerprint, combined.clone());
    }
    Ok(combined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::PeerLoad;

    #[test]
    fn only_a_jobs_sender_stops_it_and_a_cancel_that_overtakes_its_job_refuses_it() {
        let jobs = PeerJobs::default();
        let (sender, stranger) = (PeerId::random(), PeerId::random());
        let running = jobs.start(sender, [1; 32]).unwrap();
        // Another peer naming the same request stops nothing (and only remembers its own cancel).
        assert!(!jobs.cancel(stranger, [1; 32]));
        assert!(!running.progress.cancel.load(std::sync::atomic::Ordering::Relaxed));
        assert!(jobs.cancel(sender, [1; 32]));
        assert!(running.progress.cancel.load(std::sync::atomic::Ordering::Relaxed));
        drop(running);
        assert!(jobs.lock().running.is_empty(), "an ended job leaves the table");
        // A cancel before its job: the job is refused once, then the same request runs again.
        assert!(!jobs.cancel(sender, [2; 32]));
        assert!(jobs.start(sender, [2; 32]).is_none());
        assert!(jobs.start(sender, [2; 32]).is_some());
        // The stranger's remembered cancel is its own: the sender's identical request runs.
        assert!(jobs.start(sender, [1; 32]).is_some());
        // A cancel that crosses the answer of a job that just ended leaves nothing behind: the
        // same request sent again runs.
        drop(jobs.start(sender, [3; 32]).unwrap());
        assert!(!jobs.cancel(sender, [3; 32]));
        assert!(jobs.start(sender, [3; 32]).is_some());
        // Remembered cancels are bounded per sender and in all.
        let flood = PeerId::random();
        for n in 0..100u8 {
            jobs.cancel(flood, [n; 32]);
        }
        assert_eq!(jobs.lock().early.0.iter().filter(|(p, _, _)| *p == flood).count(), REMEMBERED_PER_PEER);
        assert!(jobs.start(flood, [99; 32]).is_none(), "its newest are kept");
        for _ in 0..REMEMBERED + 10 {
            jobs.cancel(PeerId::random(), [0; 32]);
        }
        assert_eq!(jobs.lock().early.0.len(), REMEMBERED);
    }

    #[test]
    fn a_caught_lie_outranks_a_later_transport_error() {
        let lie: PlaceError = (502, "bad_receipt", "signed by another key".into());
        let gone: PlaceError = (502, "peer_unreachable", "connection closed".into());
        let busy: PlaceError = (429, "busy", "all slots taken".into());
        assert_eq!(worse(lie.clone(), gone.clone()).1, "bad_receipt");
        assert_eq!(worse(gone.clone(), busy.clone()).1, "busy");
        assert_eq!(worse(gone, lie.clone()).1, "bad_receipt");
        assert_eq!(worse(busy, lie).1, "bad_receipt");
    }

    fn peer(n: u8, rtt: u64, load: Option<(u32, u32, u32)>) -> PeerInfo {
        PeerInfo {
            peer_id: peer_of_key(&[n; 32]).unwrap_or_else(PeerId::random),
            addrs: vec![],
            agent: "phase/0 fuel=1000".into(),
            connected: true,
            source: "dht",
            seen_secs_ago: 0,
            rtt_ms: Some(rtt),
            load: load.map(|(in_flight, slots, sent_since)| PeerLoad { in_flight, slots, sent_since, age_ms: 0 }),
        }
    }

    #[test]
    fn free_peers_come_first_least_loaded_then_unknown_then_full() {
        let full = peer(1, 1, Some((2, 2, 0)));
        let full_by_our_jobs = peer(2, 1, Some((0, 1, 1)));
        let unknown = peer(3, 1, None);
        let half = peer(4, 9, Some((1, 2, 0)));
        let idle_far = peer(5, 50, Some((0, 4, 0)));
        let idle_near = peer(6, 2, Some((0, 4, 0)));
        let mut gone = peer(7, 0, Some((0, 4, 0)));
        gone.connected = false;
        let mut stranger = peer(8, 0, Some((0, 4, 0)));
        stranger.agent = "go-ipfs/0.1".into();
        let list = [&full, &full_by_our_jobs, &unknown, &half, &gone, &stranger, &idle_far, &idle_near];
        let order = placement_order(list.iter().map(|p| (*p).clone()).collect(), &RequestedLimits::default());
        assert_eq!(order, [idle_near.peer_id, idle_far.peer_id, half.peer_id, unknown.peer_id, full.peer_id, full_by_our_jobs.peer_id]);
        // A job above every announced fuel maximum has no candidate.
        let greedy = RequestedLimits { fuel: Some(1001), ..Default::default() };
        assert!(placement_order(list.iter().map(|p| (*p).clone()).collect(), &greedy).is_empty());
    }

    #[test]
    fn announced_maxima_filter_peers() {
        let agent = "phase/0.1.0 arch=x86_64 cores=2 jobs=2 fuel=1000 memory=65536 output=10 deadline=500 http=8080";
        let ask = |fuel, memory_bytes| RequestedLimits { fuel, memory_bytes, output_bytes: None, deadline_ms: None };
        assert!(admits(agent, &ask(None, None)));
        assert!(admits(agent, &ask(Some(1000), Some(65536))));
        assert!(!admits(agent, &ask(Some(1001), None)));
        assert!(!admits(agent, &ask(None, Some(65537))));
        assert!(!admits(agent, &RequestedLimits { deadline_ms: Some(501), ..ask(None, None) }));
        // An older peer that announces nothing is asked anyway.
        assert!(admits("phase/0.0.1", &ask(Some(u64::MAX), None)));
        assert_eq!(announced("x fuelish=3 fuel=7", "fuel"), Some(7));
    }
}
