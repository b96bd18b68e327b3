//! Why a job did not give an answer: one closed set, whatever the job's path (here, queued,
//! placed on a peer, run for a peer). Each error has a stable code (docs/api.md "Errors"); what
//! a code means to an HTTP client (its status, `Retry-After`) is the api's to say.

use std::fmt;

use phase_core::encoding::hex_encode;
use phase_core::job::error::ErrorCode;
use phase_core::job::files::FilesError;
use phase_core::job::SpecError;
use phase_core::{Digest, LimitError};

use crate::engine::ModuleError;
use crate::modules::StoreError;
use crate::p2p::{P2pError, PeerId};

/// What leaves no room for a kept answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptFull {
    /// The node's kept answers and the reservations of jobs not ended.
    Node,
    /// The submitter's address's share.
    Address,
    /// The count of jobs kept (queued, running and ended), at most this many.
    Count(usize),
}

#[derive(Debug)]
pub enum JobError {
    /// The request is not one this node takes (the message names the field or the rule).
    InvalidRequest(String),
    ModuleNotFound(Digest),
    Module(ModuleError),
    InputTooLarge { size: usize, max: usize },
    Limit(LimitError),
    /// `redundancy` outside 1 to `max`.
    Redundancy { k: usize, max: usize },
    Spec(SpecError),
    /// The job's files are not a valid tree within the limits.
    Files(FilesError),
    /// A file named by SHA-256 that was neither sent nor is held here.
    FileNotFound(Digest),
    /// Every job slot (or every place to wait on a running idempotency key) is taken.
    Busy { max: usize },
    QueueFull { max: usize },
    /// Keeping this asynchronous job's answer (`need` bytes at its output limit) does not fit
    /// in what is left (`free`) for kept answers, in all or within the submitter's share.
    ResultsFull { need: usize, free: usize, why: KeptFull },
    /// An asynchronous job whose answer at its output limit could never be kept here.
    ResultTooLarge { need: usize, max: usize },
    /// What the request needs does not fit in the memory left (`what`: a job, a compilation …).
    NoMemory { what: &'static str, need: u64, free: u64 },
    IdempotencyConflict(String),
    /// A job with this key is still running after the wait allowed for it.
    IdempotencyPending(String),
    /// The host failed the job (memory it had admitted could not be allocated): no result.
    Host(String),
    Storage(StoreError),
    /// A blob larger than this node keeps (`PUT /v1/blobs`).
    BlobTooLarge { size: u64, max: u64 },
    /// Stopped on request before it finished: no result, no receipt.
    Cancelled,
    /// Placement or redundancy on a node without the peer network.
    P2pDisabled(&'static str),
    P2pUnavailable(P2pError),
    NoPeer,
    NotEnoughPeers { k: usize, connected: usize },
    /// The job or its answer did not cross (`reason`: what the transport said).
    PeerUnreachable { peer: PeerId, reason: String },
    PeerTimeout { peer: PeerId, deadline_ms: u64 },
    /// An answer whose receipt is not its executor's or not for this job (`peer`: None for
    /// this node's own part of a redundant run).
    BadReceipt { peer: Option<PeerId>, why: String },
    /// An executor answered with something that is not an answer (or one nobody asked for).
    BadPeerAnswer { peer: PeerId, why: String },
    /// An error the executor answered with (`code`: its code, or `PeerError` for one this
    /// node does not pass on).
    Peer { peer: PeerId, code: ErrorCode, message: String },
    /// An asynchronous job this node does not know (or no longer keeps).
    UnknownJob(String),
    /// A cancel without the job's cancel token.
    Forbidden,
    /// A cancel for a job that has ended (how).
    AlreadyEnded(&'static str),
    /// The node takes no new jobs: it is about to boot a new release (the reason names it).
    Draining(String),
}

impl JobError {
    /// The stable code (docs/api.md).
    pub fn code(&self) -> ErrorCode {
        match self {
            JobError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            JobError::ModuleNotFound(_) => ErrorCode::ModuleNotFound,
            JobError::Module(ModuleError::TooLarge { .. }) => ErrorCode::ModuleTooLarge,
            JobError::Module(_) => ErrorCode::InvalidModule,
            JobError::InputTooLarge { .. } => ErrorCode::InputTooLarge,
            JobError::Limit(_) | JobError::Redundancy { .. } => ErrorCode::LimitOutOfRange,
            JobError::Spec(_) => ErrorCode::InvalidArgsEnv,
            JobError::Files(_) => ErrorCode::InvalidFiles,
            JobError::FileNotFound(_) => ErrorCode::FileNotFound,
            JobError::Busy { .. } => ErrorCode::Busy,
            JobError::QueueFull { .. } => ErrorCode::QueueFull,
            JobError::ResultsFull { .. } => ErrorCode::ResultsFull,
            JobError::ResultTooLarge { .. } => ErrorCode::ResultTooLarge,
            JobError::NoMemory { .. } => ErrorCode::NoMemory,
            JobError::IdempotencyConflict(_) => ErrorCode::IdempotencyConflict,
            JobError::IdempotencyPending(_) => ErrorCode::IdempotencyPending,
            JobError::Host(_) => ErrorCode::HostFailure,
            JobError::Storage(StoreError::NotNamed { .. }) => ErrorCode::InvalidFiles,
            JobError::Storage(_) => ErrorCode::Storage,
            JobError::BlobTooLarge { .. } => ErrorCode::BodyTooLarge,
            JobError::Cancelled => ErrorCode::Cancelled,
            JobError::P2pDisabled(_) => ErrorCode::P2pDisabled,
            JobError::P2pUnavailable(_) => ErrorCode::P2pUnavailable,
            JobError::NoPeer => ErrorCode::NoPeer,
            JobError::NotEnoughPeers { .. } => ErrorCode::NotEnoughPeers,
            JobError::PeerUnreachable { .. } => ErrorCode::PeerUnreachable,
            JobError::PeerTimeout { .. } => ErrorCode::PeerTimeout,
            JobError::BadReceipt { .. } => ErrorCode::BadReceipt,
            JobError::BadPeerAnswer { .. } => ErrorCode::BadPeerAnswer,
            JobError::Peer { code, .. } => *code,
            JobError::UnknownJob(_) => ErrorCode::NotFound,
            JobError::Forbidden => ErrorCode::Forbidden,
            JobError::AlreadyEnded(_) => ErrorCode::AlreadyEnded,
            JobError::Draining(_) => ErrorCode::Stopping,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::InvalidRequest(m) => f.write_str(m),
            JobError::ModuleNotFound(d) => write!(f, "module {} is not on this node; PUT /v1/modules first", hex_encode(d)),
            JobError::Module(e) => write!(f, "{e}"),
            JobError::InputTooLarge { size, max } => write!(f, "input is {size} bytes, the limit is {max}"),
            JobError::Limit(e) => write!(f, "{e}"),
            JobError::Redundancy { k, max } => write!(f, "redundancy {k}: must be 1 to {max}"),
            JobError::Spec(e) => write!(f, "{e}"),
            JobError::Files(e) => write!(f, "files: {e}"),
            JobError::FileNotFound(d) => write!(f, "file {} was not sent and is not held here", hex_encode(d)),
            JobError::Busy { max } => write!(f, "all {max} job slots are busy; retry later"),
            JobError::QueueFull { max } => write!(f, "all {max} queue places are taken; retry later"),
            JobError::ResultsFull { need, free, why: KeptFull::Node } => {
                write!(f, "keeping this job's answer may take {need} bytes and {free} are left for kept answers; retry when older ones expire, or lower limits.output_bytes")
            }
            JobError::ResultsFull { need, free, why: KeptFull::Address } => write!(
                f,
                "keeping this job's answer may take {need} bytes and this address's share of kept answers has {free} left; retry when its older ones expire, or lower limits.output_bytes"
            ),
            JobError::ResultsFull { why: KeptFull::Count(max), .. } => write!(f, "this node keeps {max} asynchronous jobs at most; retry when older ones expire"),
            JobError::ResultTooLarge { need, max } => write!(
                f,
                "keeping this job's answer at its output limit may take {need} bytes and this node keeps {max} at most: lower limits.output_bytes, or run it synchronously"
            ),
            JobError::NoMemory { what, need, free } => write!(f, "{what} needs {need} bytes of memory and {free} are free now; retry later"),
            JobError::IdempotencyConflict(k) => write!(f, "idempotency key {k:?} was used for a different job"),
            JobError::IdempotencyPending(k) => write!(f, "a job with idempotency key {k:?} is still running; retry later"),
            JobError::Host(m) => write!(f, "this node failed the job, no result was signed: {m}; retry, here or elsewhere"),
            JobError::Storage(e @ StoreError::NotNamed { .. }) => write!(f, "{e}"),
            JobError::Storage(e) => write!(f, "module store: {e}"),
            JobError::BlobTooLarge { size, max } => write!(f, "blob is {size} bytes, the most this node keeps is {max}"),
            JobError::Cancelled => f.write_str("the job was cancelled before it finished; no receipt was signed"),
            JobError::P2pDisabled(what) => write!(f, "{what} needs the peer network (phase node --p2p)"),
            JobError::P2pUnavailable(e) => write!(f, "{e}"),
            JobError::NoPeer => f.write_str("no connected Phase peer can take the job (none, or none whose announced maxima admit its limits)"),
            JobError::NotEnoughPeers { k, connected } => write!(f, "redundancy {k} needs {} connected peers; {connected} are", k - 1),
            JobError::PeerUnreachable { peer, reason } => write!(f, "job to peer {peer}: {reason}"),
            JobError::PeerTimeout { peer, deadline_ms } => write!(f, "peer {peer} did not answer within the job's deadline of {deadline_ms} ms + 10 s"),
            JobError::BadReceipt { peer: Some(peer), why } => write!(f, "peer {peer}: {why}"),
            JobError::BadReceipt { peer: None, why } => f.write_str(why),
            JobError::BadPeerAnswer { peer, why } => write!(f, "peer {peer} {why}"),
            JobError::Peer { peer, message, .. } => write!(f, "peer {peer}: {message}"),
            JobError::UnknownJob(id) => write!(f, "no job {id} here (never submitted asynchronously, or no longer kept)"),
            JobError::Forbidden => f.write_str("cancelling needs the job's cancel_token (?token=), given to whoever submitted it"),
            JobError::AlreadyEnded(how) => write!(f, "the job has ended ({how})"),
            JobError::Draining(why) => write!(f, "this node takes no new jobs: {why}; send it to another node"),
        }
    }
}

impl std::error::Error for JobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JobError::Module(e) => Some(e),
            JobError::Limit(e) => Some(e),
            JobError::Spec(e) => Some(e),
            JobError::Files(e) => Some(e),
            JobError::Storage(e) => Some(e),
            JobError::P2pUnavailable(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ModuleError> for JobError {
    fn from(e: ModuleError) -> Self {
        match e {
            ModuleError::NoMemory { need, free } => JobError::NoMemory { what: "compiling the module", need, free },
            e => JobError::Module(e),
        }
    }
}
