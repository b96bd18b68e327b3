//! Misbehaving on purpose, for the tests of everything that talks to a node (`--fault`,
//! docs/cli.md): one enum, parsed once. Faults live in wrappers around the real components
//! (an executor that lies, an API that exits after a job), the way smoltcp's fault injector
//! wraps a device; only the swarm's codecs and the boot provider's reader take a fault
//! themselves, where the misbehaviour is in the bytes they frame.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use phase_core::job::answer::{Reply, Answer};
use phase_core::job::request::{JobRequest, ModuleSource, PeerFiles, PeerModule};
use phase_core::net::http::RequestHead;
use phase_core::job::receipt::Receipt;
use phase_core::sha256;

use crate::boot::provider::ProviderFault;
use crate::http::{Admission, Handler, Request, Response};
use crate::p2p::{Executor, Load, PeerId};

/// How a node misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Exits once a job's answer is sent, so the boot tests can watch PID 1 restart the node.
    ExitAfterJob,
    /// Misbehaves as an executor for peers.
    Peer(PeerFault),
    /// Sends peers oversized load records.
    PeerBadLoad,
    /// Job requests to peers announce 16 MiB, send 12 and stall.
    PeerBigFrames,
    /// Serves boot artifacts with a flipped byte.
    BootTamper,
    /// Serves boot artifacts cut in half.
    BootDropHalfway,
}

/// How a node misbehaves as an executor for peers, for the hostile-peer tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFault {
    /// Answers with the receipt re-signed by a key that is not this node's.
    WrongKey,
    /// Answers with bytes that are not JSON.
    Garbage,
    /// Takes the job and never answers.
    Stall,
    /// Answers with a different output under a valid receipt signed with its own key: a lie
    /// only redundancy can catch.
    Lie,
    /// Answers with the genuine receipt but another stdout.
    ForgeStdout,
    /// Answers with the genuine answer of another job (one more argument): the same module and
    /// input, another job id.
    OtherJob,
    /// Answers every job `cancelled`, which nobody asked for.
    Cancelled,
    /// Answers with its genuine answer after white space, claiming another executor in a field
    /// of its own: what a node forwards must be the answer it verified, not these bytes.
    Padded,
    /// Answers with one byte more output than the job's output limit, signed with its own key:
    /// an answer that would cost more than its limit says.
    Oversized,
}

const NAMES: [(&str, Fault); 14] = [
    ("exit-after-job", Fault::ExitAfterJob),
    ("peer-wrong-key", Fault::Peer(PeerFault::WrongKey)),
    ("peer-garbage", Fault::Peer(PeerFault::Garbage)),
    ("peer-stall", Fault::Peer(PeerFault::Stall)),
    ("peer-lie", Fault::Peer(PeerFault::Lie)),
    ("peer-forge-stdout", Fault::Peer(PeerFault::ForgeStdout)),
    ("peer-other-job", Fault::Peer(PeerFault::OtherJob)),
    ("peer-cancelled", Fault::Peer(PeerFault::Cancelled)),
    ("peer-padded-answer", Fault::Peer(PeerFault::Padded)),
    ("peer-oversized-answer", Fault::Peer(PeerFault::Oversized)),
    ("peer-bad-load", Fault::PeerBadLoad),
    ("peer-big-frames", Fault::PeerBigFrames),
    ("boot-tamper", Fault::BootTamper),
    ("boot-drop-halfway", Fault::BootDropHalfway),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFault(pub String);

impl fmt::Display for UnknownFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
        write!(f, "unknown fault {:?} (known: {})", self.0, known.join(", "))
    }
}

impl std::error::Error for UnknownFault {}

impl Fault {
    pub fn parse(name: &str) -> Result<Fault, UnknownFault> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).ok_or_else(|| UnknownFault(name.to_string()))
    }

    pub fn name(self) -> &'static str {
        NAMES.iter().find(|(_, f)| *f == self).map_or("", |(n, _)| n)
    }

    /// What the swarm's codecs do wrong.
    pub fn p2p(fault: Option<Fault>) -> crate::p2p::Faults {
        crate::p2p::Faults { bad_load_records: fault == Some(Fault::PeerBadLoad), stall_frames: fault == Some(Fault::PeerBigFrames) }
    }

    /// What the boot provider does wrong.
    pub fn provider(fault: Option<Fault>) -> ProviderFault {
        match fault {
            Some(Fault::BootTamper) => ProviderFault::Tamper,
            Some(Fault::BootDropHalfway) => ProviderFault::DropHalfway,
            _ => ProviderFault::None,
        }
    }
}

/// An executor that misbehaves as `fault` says around an honest one. `key` is the node's own
/// (a lie is signed with it, as a real liar would).
pub struct FaultyExecutor {
    pub inner: Arc<dyn Executor>,
    pub fault: PeerFault,
    pub key: ed25519_compact::KeyPair,
}

impl Executor for FaultyExecutor {
    fn run(&self, from: PeerId, frame: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        match self.fault {
            // Takes the job and never answers (holding no thread).
            PeerFault::Stall => return Box::pin(futures::future::pending()),
            PeerFault::Garbage => return Box::pin(async { b"\x00not json at all".to_vec() }),
            PeerFault::Cancelled => {
                let frame = crate::api::peer::error_frame(&crate::jobs::JobError::Cancelled);
                return Box::pin(async move { frame });
            }
            _ => {}
        }
        let frame = match self.fault {
            PeerFault::OtherJob => another_job(&frame).unwrap_or(frame),
            _ => frame,
        };
        let (fault, key) = (self.fault, self.key.clone());
        let answer = self.inner.run(from, frame);
        Box::pin(async move {
            let bytes = answer.await;
            let Ok(Reply::Done(answer)) = Reply::parse(&bytes) else { return bytes };
            if fault == PeerFault::Padded {
                let json = answer.to_json();
                return format!(" \n{{\"executor\":\"{CLAIMED}\",{}", &json[1..]).into_bytes();
            }
            lie(fault, answer, &key).to_json().into_bytes()
        })
    }

    fn cancel(&self, from: PeerId, request: [u8; 32]) -> bool {
        self.inner.cancel(from, request)
    }

    fn load(&self) -> Load {
        self.inner.load()
    }

    fn has_free_slot(&self) -> bool {
        self.inner.has_free_slot()
    }

    fn notice(&self, from: PeerId, notice: &[u8]) -> bool {
        self.inner.notice(from, notice)
    }

    fn notices(&self) -> Vec<Vec<u8>> {
        self.inner.notices()
    }
}

/// The executor a padded answer claims: a well-formed peer id that is not the padder's.
pub const CLAIMED: &str = "12D3KooW9pP4Seg3kZYhySpuVjn1RPdQBsUFZKiFxGMGQN5MeL6A";

/// The request of another job: one more argument, the module as it came.
fn another_job(frame: &[u8]) -> Option<Vec<u8>> {
    let req = JobRequest::parse(frame).ok()?;
    let req = JobRequest { args: [req.args.clone(), vec!["--another-job".to_string()]].concat(), ..req };
    let module = match &req.module {
        ModuleSource::Bytes(b) => PeerModule::Inline(b),
        ModuleSource::Sha256(d) => PeerModule::Hash(d),
    };
    Some(req.to_peer_json(module, PeerFiles::Inline).into_bytes())
}

/// The answer as the fault tells it.
fn lie(fault: PeerFault, mut a: Answer, key: &ed25519_compact::KeyPair) -> Answer {
    match fault {
        PeerFault::ForgeStdout => a.stdout = b"forged".to_vec(),
        PeerFault::Lie => {
            let mut body = a.receipt.body.clone();
            body.stdout_sha256 = sha256(b"a lie");
            a.receipt = Receipt::sign(body, key);
            a.stdout = b"a lie".to_vec();
        }
        PeerFault::Oversized => {
            let mut body = a.receipt.body.clone();
            a.stdout = vec![b'x'; usize::try_from(body.limits.output_bytes).unwrap_or(0).saturating_add(1).min(32 << 20)];
            a.stderr.clear();
            body.stdout_sha256 = sha256(&a.stdout);
            body.stderr_sha256 = sha256(b"");
            a.receipt = Receipt::sign(body, key);
        }
        PeerFault::WrongKey => {
            let other = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([0x42; 32]));
            a.receipt = Receipt::sign(a.receipt.body.clone(), &other);
        }
        PeerFault::Stall | PeerFault::Garbage | PeerFault::Cancelled | PeerFault::OtherJob | PeerFault::Padded => {}
    }
    a
}

/// An API that exits the process once it has sent a job's answer (`exit-after-job`).
pub struct ExitAfterJob<H>(pub H);

impl<H: Handler> Handler for ExitAfterJob<H> {
    fn admit(&self, head: &RequestHead) -> Result<Admission, Response> {
        self.0.admit(head)
    }

    async fn handle(&self, req: Request) -> Response {
        let job = req.head.method == phase_core::net::http::Method::Post && req.head.path() == "/v1/jobs";
        let resp = self.0.handle(req).await;
        if job && resp.status == 200 {
            return resp.on_sent(|| {
                log!("fault exit-after-job: exiting");
                std::process::exit(70);
            });
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_by_name_and_unknown_ones_are_named() {
        for (name, fault) in NAMES {
            assert_eq!(Fault::parse(name), Ok(fault));
            assert_eq!(fault.name(), name);
        }
        let e = Fault::parse("peer-sulk").unwrap_err().to_string();
        assert!(e.contains("unknown fault \"peer-sulk\"") && e.contains("boot-tamper"), "{e}");
    }
}
