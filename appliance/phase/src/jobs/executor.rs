//! Running jobs peers send (docs/protocol.md "Jobs"): as if they came to this node's API, but
//! always here (a forwarded job is never forwarded again). A node without a free slot answers
//! busy before it parses or compiles anything. Each such job runs registered by its sender and
//! the SHA-256 of the request frame, so that its sender, and only its sender, can cancel it
//! (`/phase/job-cancel/1.0.0`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use phase_core::sha256;

use super::{Finished, JobError, JobRequest, Jobs};
use crate::engine::Progress;
use crate::p2p::PeerId;

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
/// frame (what the sender names in a cancel). A cancel may overtake its job's frame (another
/// stream): a cancel for nothing running is remembered and the job is refused when it comes; a
/// cancel for a job that ended a moment ago (its answer crossed the cancel) is not, or an
/// identical request sent later would be refused. Running entries exist while a job holds a
/// slot, so they are bounded by the slots.
#[derive(Default)]
pub(super) struct PeerJobs {
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
    fn lock(&self) -> MutexGuard<'_, PeerJobsInner> {
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
    fn cancel(&self, peer: PeerId, request: [u8; 32]) -> bool {
        let mut inner = self.lock();
        let mut found = false;
        for (_, _, progress) in inner.running.iter().filter(|(p, r, _)| *p == peer && *r == request) {
            progress.cancel.store(true, Relaxed);
            found = true;
        }
        if !found && !inner.ended.find(peer, request, false) {
            inner.early.push(peer, request);
        }
        found
    }
}

impl Jobs {
    /// Runs the job in the request frame `frame` that peer `from` sent, here.
    pub fn run_for_peer(&self, from: PeerId, frame: &[u8]) -> Result<Finished, JobError> {
        self.taking_jobs()?;
        let slot = self.slots.run()?;
        let Some(running) = self.from_peers.start(from, sha256(frame)) else {
            log!("p2p: a job from {from} that it cancelled before it came: refused");
            return Err(JobError::Cancelled);
        };
        let req = match JobRequest::parse(frame) {
            Ok(req) => JobRequest { placement: None, redundancy: None, ..req },
            Err(e) => return Err(JobError::InvalidRequest(e.0)),
        };
        self.run_here(Some(slot), req, running.progress.clone())
    }

    /// Peer `from` cancels its job whose request frame hashes to `request`: true if it was
    /// running here and is told to stop (called on the swarm's thread: it never blocks).
    pub fn cancel_for_peer(&self, from: PeerId, request: [u8; 32]) -> bool {
        self.from_peers.cancel(from, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_jobs_sender_stops_it_and_a_cancel_that_overtakes_its_job_refuses_it() {
        let jobs = PeerJobs::default();
        let (sender, stranger) = (PeerId::random(), PeerId::random());
        let running = jobs.start(sender, [1; 32]).unwrap();
        // Another peer naming the same request stops nothing (and only remembers its own cancel).
        assert!(!jobs.cancel(stranger, [1; 32]));
        assert!(!running.progress.cancel.load(Relaxed));
        assert!(jobs.cancel(sender, [1; 32]));
        assert!(running.progress.cancel.load(Relaxed));
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
}
