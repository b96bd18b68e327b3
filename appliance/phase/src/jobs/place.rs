//! Running a job on peers (docs/api.md "Placement"): on one peer (`placement`), or on k nodes
//! at once (`redundancy`). Every answer is verified as a client verifies it (phase_core's
//! answer check: receipt, job id recomputed, bodies and figures) and must be signed by the key
//! its executor's PeerId names; the answer this node gives is the value it verified, with
//! `executor` set by this node. Forwarding takes a permit (as many as job slots) and each
//! attempt waits at most the job's deadline plus `TRANSFER_MARGIN`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use phase_core::encoding::hex_encode;
use phase_core::job::answer::{Answer, Asked, Redundant, Reply};
use phase_core::job::error::ErrorCode;
use phase_core::job::request::{PeerFiles, PeerModule};
use phase_core::job::RequestedLimits;
use phase_core::net::peer::{Capabilities, PeerName};
use phase_core::sha256;

use super::{Answered, Finished, JobError, JobRequest, Jobs, Placement};
use crate::p2p::{peer_of_key, P2pError, PeerId, PeerInfo};

/// Attempts across peers for one job (transport errors and busy or failing peers).
const MAX_ATTEMPTS: usize = 3;
/// What an attempt may take beyond the job's deadline: moving the job and its answer.
const TRANSFER_MARGIN: Duration = Duration::from_secs(10);
/// Most nodes one job may be run on at once.
pub const MAX_REDUNDANCY: usize = 16;

/// What watches a placement from outside (an asynchronous job's queue entry): where each
/// request goes, and whether the submitter cancelled the job.
pub(super) trait Watch {
    /// Told before each job request goes to a peer: the peer and the SHA-256 of the request
    /// frame (what a cancel names). False: the job was cancelled, nothing is sent.
    fn sending(&self, _peer: PeerId, _request: [u8; 32]) -> bool {
        true
    }
    fn cancelled(&self) -> bool {
        false
    }
    /// True when the caller holds this placement's place already: a queued job's runner (the
    /// runners are bounded), or a redundant run's one forward permit for all its parts. Then
    /// no forward permit is taken, so queued jobs cannot crowd synchronous forwards out and a
    /// redundant run is admitted by the one permit it needs, whatever its k.
    fn holds_place(&self) -> bool {
        false
    }
}

/// A part of a redundant run: the run holds the forward permit.
struct Part;
impl Watch for Part {
    fn holds_place(&self) -> bool {
        true
    }
}

/// A synchronous job: nobody watches, nobody cancels.
pub(super) struct Unwatched;
impl Watch for Unwatched {}

/// The codes an executor's error is passed on with; any other is `peer_error`. A job or
/// request error (4xx) is the job's answer and ends the placement; the rest mean a busy or
/// failing peer, worth another.
const PASSED_ON: [ErrorCode; 14] = [
    ErrorCode::InvalidRequest,
    ErrorCode::ModuleNotFound,
    ErrorCode::ModuleTooLarge,
    ErrorCode::InvalidModule,
    ErrorCode::InputTooLarge,
    ErrorCode::LimitOutOfRange,
    ErrorCode::InvalidArgsEnv,
    ErrorCode::Busy,
    ErrorCode::IdempotencyConflict,
    ErrorCode::Storage,
    ErrorCode::BadBody,
    ErrorCode::BodyTooLarge,
    ErrorCode::NoMemory,
    ErrorCode::IdempotencyPending,
];

impl JobError {
    /// Whether another peer may do better: a busy or failing peer, a transport error, a lie;
    /// not an error that is the job's own.
    fn worth_another_peer(&self) -> bool {
        match self {
            JobError::Peer { code, .. } => !matches!(
                code,
                ErrorCode::InvalidRequest
                    | ErrorCode::ModuleNotFound
                    | ErrorCode::ModuleTooLarge
                    | ErrorCode::InvalidModule
                    | ErrorCode::InputTooLarge
                    | ErrorCode::LimitOutOfRange
                    | ErrorCode::InvalidArgsEnv
                    | ErrorCode::IdempotencyConflict
                    | ErrorCode::BadBody
                    | ErrorCode::BodyTooLarge
            ),
            JobError::Busy { .. } | JobError::PeerUnreachable { .. } | JobError::PeerTimeout { .. } | JobError::BadReceipt { .. } | JobError::BadPeerAnswer { .. } => true,
            _ => false,
        }
    }

    /// A peer caught answering with a wrong answer: evidence the client must see.
    fn is_a_lie(&self) -> bool {
        matches!(self, JobError::BadReceipt { .. } | JobError::BadPeerAnswer { .. })
    }
}

/// The error a placement reports when every attempt failed: a caught lie outranks a later busy
/// peer or a dropped connection; otherwise the latest attempt's error stands.
fn worse(before: Option<JobError>, now: JobError) -> JobError {
    match before {
        Some(lie) if lie.is_a_lie() && !now.is_a_lie() => lie,
        _ => now,
    }
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

/// Connected Phase peers whose announced maxima admit `limits`, in placement order.
fn placement_order(mut peers: Vec<PeerInfo>, limits: &RequestedLimits) -> Vec<PeerId> {
    peers.retain(|p| p.connected && Capabilities::parse(&p.agent).is_some_and(|c| c.admits(limits)));
    peers.sort_by_key(rank);
    peers.into_iter().map(|p| p.peer_id).collect()
}

/// What the client asked for, as an answer must match it.
fn asked<'a>(req: &'a JobRequest, module: &'a [u8; 32], input: &'a [u8; 32]) -> Asked<'a> {
    Asked { module_sha256: module, input_sha256: input, args: &req.args, env: &req.env, limits: &req.limits, signer: None, files: req.files.as_ref() }
}

/// Checks an answer as a client would, and that it is signed by the key `peer`'s PeerId names
/// (`peer` None: this node's own part of a redundant run, whose signer is checked apart).
fn check(answer: &Answer, peer: Option<PeerId>, asked: &Asked<'_>) -> Result<(), JobError> {
    let bad = |why: String| JobError::BadReceipt { peer, why };
    answer.verify(asked).map_err(|e| bad(e.to_string()))?;
    if let Some(peer) = peer {
        if peer_of_key(&answer.signer()) != Some(peer) {
            return Err(bad(format!("receipt signed by node key {}, which is not peer {peer}'s", hex_encode(&answer.signer()))));
        }
    }
    Ok(())
}

impl Jobs {
    /// Connected Phase peers that may take a job with `limits`, in placement order.
    fn executors(&self, limits: &RequestedLimits) -> Result<Vec<PeerId>, JobError> {
        let network = self.network().ok_or(JobError::P2pDisabled("placement"))?;
        let peers = network.peers().map_err(JobError::P2pUnavailable)?;
        Ok(placement_order(peers, limits))
    }

    /// Runs `req` on a peer as `placement` says and returns the executor's verified answer.
    pub(super) fn place(&self, req: JobRequest, placement: &Placement, watch: &dyn Watch) -> Result<Finished, JobError> {
        let target = match placement {
            Placement::Peer(name) => Some(name.as_str().parse::<PeerId>().map_err(|_| JobError::InvalidRequest(format!("placement {:?} is not local, remote or a peer id", name.as_str())))?),
            _ => None,
        };
        let (answer, replayed) = self.place_one(&req, target, watch)?;
        Ok(Finished { replayed, hold: None, here: false, answer })
    }

    /// Runs `req` on `target`, or on the peers placement order gives; true with a kept answer.
    fn place_one(&self, req: &JobRequest, target: Option<PeerId>, watch: &dyn Watch) -> Result<(Answered, bool), JobError> {
        let Some(network) = self.network() else { return Err(JobError::P2pDisabled("placement")) };
        // Every file's bytes, for an executor that does not hold them; the files are offered by
        // hash first, as the module is: each travels to a peer once.
        let req = &self.with_file_bytes(req)?;
        let has_files = req.files.as_ref().is_some_and(|f| !f.data.is_empty());
        let module_sha256 = req.module.sha256();
        let stored = match &req.module {
            super::ModuleSource::Sha256(d) => self.module_bytes(d),
            super::ModuleSource::Bytes(_) => None,
        };
        let module_bytes: Option<&[u8]> = match &req.module {
            super::ModuleSource::Bytes(b) => Some(b),
            super::ModuleSource::Sha256(_) => stored.as_deref().map(|v| v.as_slice()),
        };
        // The executor first gets the module by hash: this body, built once, is also the key's
        // fingerprint.
        let input_sha256 = sha256(&req.input);
        let by_hash = req.to_peer_json(PeerModule::Hash(&module_sha256), PeerFiles::ByHash).into_bytes();
        let fingerprint = sha256(&by_hash);
        if let Some(key) = &req.idempotency_key {
            if let Some(kept) = self.kept.placed(key, false, &fingerprint)? {
                // A kept answer from one peer satisfies "any peer" (a retry once the executor is
                // gone), never a request for another peer.
                if let Some(peer) = target {
                    let name = peer.to_string();
                    if !matches!(&kept, Answered::One(a) if a.executor.as_ref().is_some_and(|e| e.as_str() == name)) {
                        return Err(JobError::IdempotencyConflict(key.clone()));
                    }
                }
                self.stats.replays.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok((kept, true));
            }
        }
        let _permit = match watch.holds_place() {
            true => None,
            false => Some(self.slots.forward()?),
        };
        // Asked only now: a replayed key needs no peer (and no round trip to the swarm).
        let mut candidates: Vec<PeerId> = match target {
            Some(peer) => vec![peer],
            None => self.executors(&req.limits)?,
        };
        if candidates.is_empty() {
            return Err(JobError::NoPeer);
        }
        // Unvalidated here (the executor checks it): bounded by the hard maximum.
        let deadline_ms = req.limits.deadline_ms.unwrap_or(self.config.default_limits.deadline_ms).min(phase_core::Limits::MAX.deadline_ms);
        let per_attempt = Duration::from_millis(deadline_ms) + TRANSFER_MARGIN;
        let asked = asked(req, &module_sha256, &input_sha256);
        let mut last: Option<JobError> = None;
        for attempt in 0..MAX_ATTEMPTS {
            let Some(&peer) = candidates.get(attempt % candidates.len().max(1)) else { break };
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 << attempt));
            }
            // The module and the files travel inline at most once per attempt, within the
            // attempt's wait.
            let give_up = Instant::now() + per_attempt;
            let (mut inline, mut with_files) = (false, false);
            let outcome = loop {
                let wait = give_up.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    break Err(JobError::PeerTimeout { peer, deadline_ms });
                }
                let files = if with_files { PeerFiles::Inline } else { PeerFiles::ByHash };
                let body = match (inline, module_bytes) {
                    (true, Some(bytes)) => req.to_peer_json(PeerModule::Inline(bytes), files).into_bytes(),
                    _ if with_files => req.to_peer_json(PeerModule::Hash(&module_sha256), files).into_bytes(),
                    _ => by_hash.clone(),
                };
                if !watch.sending(peer, sha256(&body)) {
                    return Err(JobError::Cancelled);
                }
                let raw = match network.run_job(peer, body, wait, &|| watch.cancelled()) {
                    Ok(raw) => raw,
                    Err(P2pError::Abandoned) => return Err(JobError::Cancelled),
                    Err(P2pError::Silent { .. }) => break Err(JobError::PeerTimeout { peer, deadline_ms }),
                    Err(P2pError::Remote { reason, .. }) => break Err(JobError::PeerUnreachable { peer, reason }),
                    Err(other) => break Err(JobError::PeerUnreachable { peer, reason: other.to_string() }),
                };
                match Reply::parse(&raw) {
                    Ok(Reply::Done(answer)) => break Ok(answer),
                    // The executor does not have the module: send it once, then it is cached there.
                    Ok(Reply::Failed { code: Some(ErrorCode::ModuleNotFound), .. }) if !inline && module_bytes.is_some() => inline = true,
                    // Nor some of the files: they go with the job (and are kept there).
                    Ok(Reply::Failed { code: Some(ErrorCode::FileNotFound), .. }) if !with_files && has_files => with_files = true,
                    // Asked by its submitter or not: a peer that stops a job nobody cancelled is
                    // failing, and another peer may take it.
                    Ok(Reply::Failed { code: Some(ErrorCode::Cancelled), .. }) => {
                        break Err(match watch.cancelled() {
                            true => JobError::Cancelled,
                            false => JobError::BadPeerAnswer { peer, why: "says the job was cancelled, which this node never asked".into() },
                        });
                    }
                    Ok(Reply::Failed { code, message }) => {
                        let code = code.filter(|c| PASSED_ON.contains(c)).unwrap_or(ErrorCode::PeerError);
                        break Err(JobError::Peer { peer, code, message });
                    }
                    Err(phase_core::job::answer::AnswerError::NotJson) => {
                        log!("p2p: peer {peer} answered a job with something that is not JSON");
                        break Err(JobError::BadPeerAnswer { peer, why: "answered with something that is not JSON".into() });
                    }
                    Err(e) => break Err(JobError::BadReceipt { peer: Some(peer), why: e.to_string() }),
                }
            };
            let error = match outcome.and_then(|a| check(&a, Some(peer), &asked).map(|_| a)) {
                Ok(mut answer) => {
                    // The executor is who this node sent it to, whatever the answer said.
                    answer.executor = PeerName::parse(&peer.to_string()).ok();
                    let answer = Answered::One(Arc::new(answer));
                    if let Some(key) = &req.idempotency_key {
                        self.kept.keep_placed(key, false, fingerprint, answer.clone());
                    }
                    return Ok((answer, false));
                }
                Err(e) => e,
            };
            if let JobError::BadReceipt { why, .. } = &error {
                log!("p2p: rejected the answer of peer {peer}: {why}");
            }
            if !error.worth_another_peer() {
                return Err(error);
            }
            log!("p2p: job attempt {} on {peer} failed ({}): {error}", attempt + 1, error.code());
            // A peer that took the job and said nothing for its whole deadline is not asked
            // again: another attempt there would hold this wait (and a runner) as long again.
            if matches!(error, JobError::PeerTimeout { .. }) {
                candidates.retain(|p| *p != peer);
            }
            last = Some(worse(last, error));
        }
        Err(last.unwrap_or(JobError::NoPeer))
    }

    /// Runs `req` on `k` distinct nodes (this one and connected peers, in parallel) and
    /// reports whether they agree on job id, output hashes, exit status and fuel: the engine is
    /// deterministic, so honest nodes agree. Every answer is verified as a client verifies it,
    /// and they must come from k distinct node keys. With an idempotency key the whole answer
    /// is kept under it: a retry gets the same k answers back (the parts run without the key,
    /// so no part replays another's answer).
    pub(super) fn redundant(&self, req: JobRequest, k: usize) -> Result<Finished, JobError> {
        if !(1..=MAX_REDUNDANCY).contains(&k) {
            return Err(JobError::Redundancy { k, max: MAX_REDUNDANCY });
        }
        let module_sha256 = req.module.sha256();
        let input_sha256 = sha256(&req.input);
        let part = JobRequest { placement: None, redundancy: None, idempotency_key: None, ..req.clone() };
        let fingerprint = sha256(format!("redundancy {k}\n{}", part.to_peer_json(PeerModule::Hash(&module_sha256), PeerFiles::ByHash)).as_bytes());
        let finished = |answer: Answered, replayed| Ok(Finished { answer, replayed, hold: None, here: false });
        if let Some(key) = &req.idempotency_key {
            if let Some(kept) = self.kept.placed(key, true, &fingerprint)? {
                self.stats.replays.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return finished(kept, true);
            }
        }
        let mut peers: Vec<PeerId> = match (k, self.network()) {
            (1, _) => vec![],
            (_, None) => return Err(JobError::P2pDisabled("redundancy above 1")),
            (_, Some(_)) => self.executors(&req.limits)?,
        };
        if peers.len() < k - 1 {
            return Err(JobError::NotEnoughPeers { k, connected: peers.len() });
        }
        peers.truncate(k - 1);
        // One forward permit for the run: its k - 1 parts wait on peers together.
        let _permit = match peers.is_empty() {
            true => None,
            false => Some(self.slots.forward()?),
        };
        let results: Vec<Result<Answered, JobError>> = std::thread::scope(|scope| {
            let remote: Vec<_> = peers
                .iter()
                .map(|peer| {
                    let r = part.clone();
                    scope.spawn(move || self.place_one(&r, Some(*peer), &Part).map(|(answer, _)| answer))
                })
                .collect();
            let local = self.run_here(None, part.clone(), Default::default()).map(|f| f.answer);
            std::iter::once(local).chain(remote.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(JobError::Host("an executor thread failed".into()))))).collect()
        });
        let asked = asked(&part, &module_sha256, &input_sha256);
        let mut answers: Vec<Answer> = Vec::with_capacity(k);
        for result in results {
            let Answered::One(answer) = result? else { return Err(JobError::Host("a part of a redundant run answered k answers".into())) };
            check(&answer, None, &asked)?;
            if answers.iter().any(|a| a.signer() == answer.signer()) {
                return Err(JobError::BadReceipt { peer: None, why: format!("two answers are signed by one node key {}: not {k} distinct executors", hex_encode(&answer.signer())) });
            }
            answers.push(Arc::unwrap_or_clone(answer));
        }
        let agree = Redundant::agreement(&answers);
        if !agree {
            log!("redundancy: the {k} executors of one job disagree");
        }
        let answer = Answered::Many(Arc::new(Redundant { agree, replayed: false, answers }));
        if let Some(key) = &req.idempotency_key {
            self.kept.keep_placed(key, true, fingerprint, answer.clone());
        }
        finished(answer, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::PeerLoad;

    #[test]
    fn a_caught_lie_outranks_a_later_transport_error() {
        let peer = PeerId::random();
        let lie = || JobError::BadReceipt { peer: Some(peer), why: "signed by another key".into() };
        let gone = || JobError::PeerUnreachable { peer, reason: "connection closed".into() };
        let busy = || JobError::Peer { peer, code: ErrorCode::Busy, message: "all slots taken".into() };
        assert_eq!(worse(Some(lie()), gone()).code(), ErrorCode::BadReceipt);
        assert_eq!(worse(Some(gone()), busy()).code(), ErrorCode::Busy);
        assert_eq!(worse(Some(gone()), lie()).code(), ErrorCode::BadReceipt);
        assert_eq!(worse(Some(busy()), lie()).code(), ErrorCode::BadReceipt);
        // What is the job's own ends the placement; what is the peer's is worth another.
        assert!(busy().worth_another_peer() && gone().worth_another_peer() && lie().worth_another_peer());
        assert!(!JobError::Peer { peer, code: ErrorCode::LimitOutOfRange, message: String::new() }.worth_another_peer());
        assert!(JobError::Peer { peer, code: ErrorCode::PeerError, message: String::new() }.worth_another_peer());
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
}
