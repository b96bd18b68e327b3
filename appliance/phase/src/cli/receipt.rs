//! `phase keygen` and `phase receipt verify`: a node's key, and checking what a node signed
//! (with the one answer check of phase_core, as the node and the PHP SDK check answers).

use std::path::{Path, PathBuf};

use argh::FromArgs;
use phase_core::encoding::hex_encode;
use phase_core::job::answer::{Answer, Asked};
use phase_core::job::request::JobRequest;
use phase_core::job::receipt::{Outcome, Receipt};
use phase_core::sha256;

use super::{keys, read, report, Failure, Outcome as Done, EXIT_ERROR, EXIT_REFUSED};
use crate::data_dir::DataDir;
use crate::identity::NodeIdentity;

#[derive(FromArgs)]
/// Create a node key (data-dir/node.key, mode 0600) and print its public key.
#[argh(subcommand, name = "keygen")]
pub struct KeygenCmd {
    /// the data dir to hold node.key
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// write the key to this file instead
    #[argh(option)]
    out: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Work with receipts.
#[argh(subcommand, name = "receipt")]
pub struct ReceiptCmd {
    #[argh(subcommand)]
    command: ReceiptSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ReceiptSub {
    Verify(VerifyCmd),
}

#[derive(FromArgs)]
/// Verify a receipt, or a whole job answer: exit 0 only if its signature and every given file
/// match. With --answer and --request: the answer is checked as a client checks it (the job
/// id recomputed from the request, stdout and stderr, exit status and fuel against the receipt).
#[argh(subcommand, name = "verify")]
struct VerifyCmd {
    /// the receipt (JSON); not with --answer
    #[argh(positional)]
    receipt: Option<PathBuf>,
    /// a job answer as POST /v1/jobs gives it (JSON), instead of a receipt
    #[argh(option)]
    answer: Option<PathBuf>,
    /// the job request the answer is for (the POST /v1/jobs body); needed with --answer
    #[argh(option)]
    request: Option<PathBuf>,
    /// the module the job ran
    #[argh(option)]
    module: Option<PathBuf>,
    /// the job's input
    #[argh(option)]
    input: Option<PathBuf>,
    /// the job's stdout
    #[argh(option)]
    stdout: Option<PathBuf>,
    /// require this node public key (hex)
    #[argh(option)]
    key: Option<String>,
}

pub fn keygen(c: KeygenCmd) -> i32 {
    let outcome = (|| -> Done {
        let path = match (c.data_dir, c.out) {
            (Some(d), None) => {
                std::fs::create_dir_all(&d).map_err(|e| Failure::new(format!("{}: {e}", d.display())))?;
                DataDir::new(d).key()
            }
            (None, Some(p)) => p,
            _ => return Err(Failure::new("give exactly one of --data-dir and --out")),
        };
        Ok(NodeIdentity::create(&path)?.public_key_hex())
    })();
    report(outcome, "", EXIT_ERROR)
}

pub fn receipt(c: ReceiptCmd) -> i32 {
    let ReceiptCmd { command: ReceiptSub::Verify(c) } = c;
    report(verify(c), "receipt rejected", EXIT_REFUSED)
}

fn text_of(p: &Path, what: &str) -> Result<String, Failure> {
    String::from_utf8(read(p, what)?).map_err(|_| Failure::new(format!("{what} {}: not UTF-8", p.display())))
}

/// A failure of the file at `p`.
fn named(p: &Path, e: impl std::fmt::Display) -> Failure {
    Failure::new(format!("{}: {e}", p.display()))
}

fn verify(c: VerifyCmd) -> Done {
    let key = keys("--key", c.key.as_slice())?.pop();
    let r = match (&c.receipt, &c.answer, &c.request) {
        (None, Some(a), Some(q)) => {
            let answer = Answer::parse(text_of(a, "answer")?.trim()).map_err(|e| named(a, e))?;
            let req = JobRequest::parse(text_of(q, "request")?.trim().as_bytes()).map_err(|e| named(q, e))?;
            let (module, input) = (req.module.sha256(), sha256(&req.input));
            let asked = Asked { module_sha256: &module, input_sha256: &input, args: &req.args, env: &req.env, limits: &req.limits, signer: key.as_ref(), files: req.files.as_ref() };
            answer.verify(&asked)?;
            answer.receipt
        }
        (Some(p), None, None) => {
            let r = Receipt::from_json(text_of(p, "receipt")?.trim()).map_err(|e| named(p, e))?;
            r.verify_signature()?;
            r
        }
        _ => return Err(Failure::new("give a receipt, or --answer with --request")),
    };
    if let Some(want) = key {
        if want != r.node_key {
            return Err(Failure::new(format!("signed by node {}, not {}", hex_encode(&r.node_key), hex_encode(&want))));
        }
    }
    for (what, path, want) in [("module", &c.module, r.body.module_sha256), ("input", &c.input, r.body.input_sha256), ("stdout", &c.stdout, r.body.stdout_sha256)] {
        if let Some(p) = path {
            if sha256(&read(p, what)?) != want {
                return Err(Failure::new(format!("{what} {} does not match the receipt's {what}_sha256", p.display())));
            }
        }
    }
    let outcome = match r.body.outcome {
        Outcome::Exited(c) => format!("exited {c}"),
        Outcome::Trapped(t) => format!("trapped {t}"),
    };
    Ok(format!("ok: job {} {outcome}, fuel {}, signed by {}", hex_encode(&r.body.job_id), r.body.fuel_used, hex_encode(&r.node_key)))
}
