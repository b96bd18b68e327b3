//! The job protocol's side of the API (docs/protocol.md "Jobs"): a peer's job request frame is
//! a `POST /v1/jobs` body, and the answer frame is what that route answers, the job answer or
//! the error body with its status. Jobs run on the node's worker pool, never on the swarm's
//! thread.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::error;
use crate::jobs::{JobError, Jobs};
use crate::p2p::{Executor, Load, PeerId};
use crate::update::Updates;
use crate::workers::Workers;

/// This node as an executor for its peers.
pub struct PeerApi {
    pub jobs: Arc<Jobs>,
    pub workers: Arc<Workers>,
    pub updates: Arc<Updates>,
}

impl Executor for PeerApi {
    fn run(&self, from: PeerId, frame: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let (jobs, workers) = (self.jobs.clone(), self.workers.clone());
        Box::pin(async move { workers.run(move || answer(&jobs, from, &frame)).await.unwrap_or_default() })
    }

    fn cancel(&self, from: PeerId, request: [u8; 32]) -> bool {
        self.jobs.cancel_for_peer(from, request)
    }

    fn load(&self) -> Load {
        let slots = self.jobs.config().max_concurrent.clamp(1, u32::MAX as usize) as u32;
        // A draining node says it is full: peers place their jobs elsewhere.
        let in_flight = if self.jobs.draining().is_some() { slots } else { self.jobs.in_flight().min(u32::MAX as usize) as u32 };
        Load { in_flight, slots }
    }

    fn has_free_slot(&self) -> bool {
        self.jobs.has_free_slot()
    }

    fn notice(&self, from: PeerId, notice: &[u8]) -> bool {
        self.updates.notice(from, notice)
    }

    fn notices(&self) -> Vec<Vec<u8>> {
        self.updates.notices()
    }
}

/// The answer frame for a job peer `from` sent.
pub fn answer(jobs: &Jobs, from: PeerId, frame: &[u8]) -> Vec<u8> {
    match jobs.run_for_peer(from, frame) {
        Ok(finished) => finished.to_json().into_bytes(),
        Err(e) => error_frame(&e),
    }
}

/// The answer frame of a job that gave no answer.
pub fn error_frame(e: &JobError) -> Vec<u8> {
    error::job_json(e).into_bytes()
}
