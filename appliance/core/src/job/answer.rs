//! A job answer as a client receives it (the JSON of `POST /v1/jobs`, docs/api.md), and its
//! verification against what was asked: the one check that a result says only what the
//! executor computed for this job. The node checks forwarded and redundant answers with it,
//! `phase receipt verify --answer` checks saved ones, and the PHP SDK does the same steps.
//!
//! An answer verifies when: its receipt's signature holds (and the signer is the one expected,
//! if one is); the receipt names the module and input that were sent and the limits that were
//! asked for (unasked limits are the executor's defaults, and signed); the job id recomputed
//! from module, input, args, env and those limits is the receipt's and the answer's; the
//! stdout and stderr in the answer hash to the receipt's; the exit status or trap and the fuel
//! the answer states are the receipt's.
//!
//! An `Answer` is a value end to end: a node that forwards one emits what it parsed and
//! verified (`to_json`), adds `executor` itself and marks replays on the value. `Reply` is what
//! an executor sends over the job protocol (an answer or an error), `Redundant` the answer to a
//! job run on k nodes.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use miniserde::json::{self, Number, Object, Value};

use crate::encoding::{base64_decode, base64_encode, hex_decode_array, hex_encode};
use crate::job::error::ErrorCode;
use crate::job::{JobSpec, RequestedLimits};
use crate::net::peer::PeerName;
use crate::job::files::{Change, Changes, Files, Kind, Mount};
use crate::job::request::RequestedFiles;
use crate::job::receipt::{Outcome, Receipt, TrapKind};
use crate::{sha256, Digest};

/// The longest trap detail an answer carries (bytes of UTF-8): the detail is not signed, so
/// an executor's (or a peer's) words cost the node and the client a bounded amount.
pub const MAX_TRAP_DETAIL: usize = 1024;

/// A job answer (docs/api.md, docs/formats.md "Answer"). A value that parsed re-emits itself
/// (`to_json`) with every field it holds: a node forwards what it verified, never the bytes it
/// received, and marks a replay or the executor on the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The peer that ran the job, when a node placed it there (that node adds it).
    pub executor: Option<PeerName>,
    pub job_id: Digest,
    pub outcome: Outcome,
    /// What the engine said about a trap (informational, not signed).
    pub trap_detail: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub fuel_used: u64,
    /// Informational, as in the receipt.
    pub wall_time_us: u64,
    /// True when an idempotency key returned a kept answer.
    pub replayed: bool,
    pub receipt: Receipt,
    /// What a job with files left in them, with the bytes of every file named.
    pub files: Option<LeftFiles>,
}

/// The files an answer carries: the changes the receipt signs the digest of, and the bytes
/// of each file they name, by SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeftFiles {
    pub changes: Changes,
    pub data: alloc::collections::BTreeMap<Digest, Vec<u8>>,
}

impl LeftFiles {
    /// Bytes of the files named (what counts against the output limit).
    pub fn bytes(&self) -> u64 {
        self.changes.file_bytes()
    }

    /// The JSON array of the changes, each file with its bytes in base64.
    fn to_json(&self) -> String {
        let entries: Vec<String> = self
            .changes
            .changes()
            .iter()
            .map(|c| {
                let head = format!("{{\"mount\":{},\"path\":{}", c.mount, json::to_string(&c.path));
                match &c.kind {
                    None => format!("{head},\"removed\":true}}"),
                    Some(Kind::Dir) => format!("{head},\"dir\":true}}"),
                    Some(Kind::Symlink { target }) => format!("{head},\"symlink\":{}}}", json::to_string(target)),
                    Some(Kind::File { sha256, size, executable }) => format!(
                        "{head},\"size\":{size},\"sha256\":\"{}\",\"executable\":{executable},\"data\":\"{}\"}}",
                        hex_encode(sha256),
                        base64_encode(self.data.get(sha256).map(Vec::as_slice).unwrap_or_default())
                    ),
                }
            })
            .collect();
        format!("[{}]", entries.join(","))
    }

    fn from_value(v: &Value) -> Result<LeftFiles, AnswerError> {
        let bad = || AnswerError::Shape("files");
        let Value::Array(items) = v else { return Err(bad()) };
        let mut changes = Vec::with_capacity(items.len());
        let mut data = alloc::collections::BTreeMap::new();
        for item in items {
            let Value::Object(o) = item else { return Err(bad()) };
            let mount = uint(o, "mount").ok().flatten().and_then(|m| u32::try_from(m).ok()).ok_or_else(bad)?;
            let path = string(o, "path").ok().flatten().ok_or_else(bad)?.to_string();
            let flag = |name| matches!(o.get(name), Some(Value::Bool(true)));
            let kind = if flag("removed") {
                None
            } else if flag("dir") {
                Some(Kind::Dir)
            } else if let Some(target) = string(o, "symlink").ok().flatten() {
                Some(Kind::Symlink { target: target.to_string() })
            } else {
                let size = uint(o, "size").ok().flatten().ok_or_else(bad)?;
                let sha256: Digest = string(o, "sha256").ok().flatten().and_then(|h| hex_decode_array(h).ok()).ok_or_else(bad)?;
                let executable = matches!(o.get("executable"), Some(Value::Bool(true)));
                let bytes = bytes(o, "data").map_err(|_| bad())?;
                data.insert(sha256, bytes);
                Some(Kind::File { sha256, size, executable })
            };
            changes.push(Change { mount, path, kind });
        }
        let changes = Changes::new(changes).map_err(|_| bad())?;
        Ok(LeftFiles { changes, data })
    }

    /// Each file's bytes are those its entry names, and there are no others.
    fn check_data(&self) -> Result<(), AnswerError> {
        for c in self.changes.changes() {
            if let Some(Kind::File { sha256: digest, size, .. }) = &c.kind {
                match self.data.get(digest) {
                    Some(b) if b.len() as u64 == *size && sha256(b) == *digest => {}
                    _ => return Err(AnswerError::NotSigned("file data")),
                }
            }
        }
        Ok(())
    }
}

/// What the client sent: the answer must be for exactly this.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub module_sha256: &'a Digest,
    pub input_sha256: &'a Digest,
    pub args: &'a [String],
    pub env: &'a [String],
    pub limits: &'a RequestedLimits,
    /// The node key the receipt must be signed with, if the client knows it.
    pub signer: Option<&'a [u8; 32]>,
    /// The files the job was given, if any, with the file limits asked (unasked ones are the
    /// executor's defaults, and signed).
    pub files: Option<&'a RequestedFiles>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// Not JSON at all.
    NotJson,
    /// Not a JSON object of the answer's shape; names the field.
    Shape(&'static str),
    Receipt(crate::job::receipt::ReceiptError),
    /// Signed by another key than the one expected.
    Signer { got: String },
    /// The receipt is for another module, input, limits or job; names which.
    OtherJob(&'static str),
    /// The answer's bodies or figures are not what the receipt signed; names which.
    NotSigned(&'static str),
    /// Stdout and stderr together are more than the output limit the receipt names (an honest
    /// executor stops at it): `len` bytes against `limit`.
    OverLimit { len: usize, limit: u64 },
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::NotJson => f.write_str("the answer is not JSON"),
            AnswerError::Shape(field) => write!(f, "the answer's {field} is missing or malformed"),
            AnswerError::Receipt(e) => write!(f, "receipt: {e}"),
            AnswerError::Signer { got } => write!(f, "receipt signed by node key {got}, not the expected one"),
            AnswerError::OtherJob(what) => write!(f, "the receipt is for another {what}"),
            AnswerError::NotSigned(what) => write!(f, "the answer's {what} is not what the receipt signs"),
            AnswerError::OverLimit { len, limit } => write!(f, "the answer's output ({len} bytes) is beyond the output limit its receipt names ({limit})"),
        }
    }
}
impl core::error::Error for AnswerError {}


fn field<'a>(o: &'a Object, name: &'static str) -> Result<&'a Value, AnswerError> {
    o.get(name).ok_or(AnswerError::Shape(name))
}

fn bytes(o: &Object, name: &'static str) -> Result<Vec<u8>, AnswerError> {
    match field(o, name)? {
        Value::String(s) => base64_decode(s).map_err(|_| AnswerError::Shape(name)),
        _ => Err(AnswerError::Shape(name)),
    }
}

fn uint(o: &Object, name: &'static str) -> Result<Option<u64>, AnswerError> {
    match field(o, name)? {
        Value::Null => Ok(None),
        Value::Number(Number::U64(n)) => Ok(Some(*n)),
        _ => Err(AnswerError::Shape(name)),
    }
}

fn string<'a>(o: &'a Object, name: &'static str) -> Result<Option<&'a str>, AnswerError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AnswerError::Shape(name)),
    }
}

fn parse_object(text: &str) -> Result<Object, AnswerError> {
    match json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(AnswerError::Shape("JSON object")),
        Err(_) => Err(AnswerError::NotJson),
    }
}

impl Answer {
    /// The answer to a job that ran here: its receipt, its output, what the engine said (cut
    /// to `MAX_TRAP_DETAIL` bytes).
    pub fn new(receipt: Receipt, stdout: Vec<u8>, stderr: Vec<u8>, mut trap_detail: Option<String>) -> Answer {
        if let Some(d) = trap_detail.as_mut() {
            let mut end = d.len().min(MAX_TRAP_DETAIL);
            while !d.is_char_boundary(end) {
                end -= 1;
            }
            d.truncate(end);
        }
        let b = &receipt.body;
        Answer {
            executor: None,
            job_id: b.job_id,
            outcome: b.outcome,
            trap_detail,
            stdout,
            stderr,
            fuel_used: b.fuel_used,
            wall_time_us: b.wall_time_us,
            replayed: false,
            receipt,
            files: None,
        }
    }

    /// This answer carrying what the job left in its files.
    pub fn with_files(mut self, files: LeftFiles) -> Answer {
        self.files = Some(files);
        self
    }

    /// Parses the JSON of a job answer. Fields it does not know are not kept.
    pub fn parse(text: &str) -> Result<Answer, AnswerError> {
        Answer::from_object(&parse_object(text)?)
    }

    fn from_object(top: &Object) -> Result<Answer, AnswerError> {
        let job_id = match field(top, "job_id")? {
            Value::String(s) => hex_decode_array(s).map_err(|_| AnswerError::Shape("job_id"))?,
            _ => return Err(AnswerError::Shape("job_id")),
        };
        let exit_code = uint(top, "exit_code")?;
        let trap = match field(top, "trap")? {
            Value::Null => None,
            Value::String(s) => Some(TrapKind::from_name(s).ok_or(AnswerError::Shape("trap"))?),
            _ => return Err(AnswerError::Shape("trap")),
        };
        let outcome = match (exit_code, trap) {
            (Some(code), None) => Outcome::Exited(u32::try_from(code).map_err(|_| AnswerError::Shape("exit_code"))?),
            (None, Some(kind)) => Outcome::Trapped(kind),
            _ => return Err(AnswerError::Shape("exit_code/trap")),
        };
        let replayed = match top.get("replayed") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(AnswerError::Shape("replayed")),
        };
        let executor = match string(top, "executor")? {
            Some(id) => Some(PeerName::parse(id).map_err(|_| AnswerError::Shape("executor"))?),
            None => None,
        };
        let receipt = Receipt::from_json(&json::to_string(field(top, "receipt")?)).map_err(AnswerError::Receipt)?;
        Ok(Answer {
            executor,
            job_id,
            outcome,
            trap_detail: match string(top, "trap_detail")? {
                Some(d) if d.len() > MAX_TRAP_DETAIL => return Err(AnswerError::Shape("trap_detail (at most 1024 bytes)")),
                d => d.map(str::to_string),
            },
            stdout: bytes(top, "stdout")?,
            stderr: bytes(top, "stderr")?,
            fuel_used: uint(top, "fuel_used")?.ok_or(AnswerError::Shape("fuel_used"))?,
            wall_time_us: uint(top, "wall_time_us")?.ok_or(AnswerError::Shape("wall_time_us"))?,
            replayed,
            receipt,
            files: match top.get("files") {
                None | Some(Value::Null) => None,
                Some(v) => Some(LeftFiles::from_value(v)?),
            },
        })
    }

    /// The answer's JSON: `executor` first when there is one, then the fields in the order
    /// docs/api.md gives. `parse` reads back an equal value.
    pub fn to_json(&self) -> String {
        self.to_json_with(self.replayed)
    }

    /// The JSON with `replayed` as given (a kept answer sent again, without copying it).
    pub fn to_json_with(&self, replayed: bool) -> String {
        let s = |v: &str| json::to_string(&v.to_string());
        let (exit_code, trap) = match self.outcome {
            Outcome::Exited(code) => (code.to_string(), "null".to_string()),
            Outcome::Trapped(kind) => ("null".to_string(), s(kind.name())),
        };
        let executor = self.executor.as_ref().map(|p| format!("\"executor\":\"{p}\",")).unwrap_or_default();
        let files = self.files.as_ref().map(|f| format!(",\"files\":{}", f.to_json())).unwrap_or_default();
        format!(
            "{{{executor}\"job_id\":\"{}\",\"exit_code\":{exit_code},\"trap\":{trap},\"trap_detail\":{},\
             \"stdout\":\"{}\",\"stderr\":\"{}\"{files},\"fuel_used\":{},\"wall_time_us\":{},\
             \"replayed\":{},\"receipt\":{}}}",
            hex_encode(&self.job_id),
            self.trap_detail.as_deref().map(s).unwrap_or_else(|| "null".into()),
            base64_encode(&self.stdout),
            base64_encode(&self.stderr),
            self.fuel_used,
            self.wall_time_us,
            replayed,
            self.receipt.to_json()
        )
    }

    /// Verifies the answer against what was asked (see the module's comment).
    pub fn verify(&self, asked: &Asked<'_>) -> Result<(), AnswerError> {
        let r = &self.receipt;
        r.verify_signature().map_err(AnswerError::Receipt)?;
        if let Some(key) = asked.signer {
            if *key != r.node_key {
                return Err(AnswerError::Signer { got: hex_encode(&r.node_key) });
            }
        }
        let b = &r.body;
        if b.module_sha256 != *asked.module_sha256 {
            return Err(AnswerError::OtherJob("module"));
        }
        if b.input_sha256 != *asked.input_sha256 {
            return Err(AnswerError::OtherJob("input"));
        }
        let l = asked.limits;
        let applied = [(l.fuel, b.limits.fuel), (l.memory_bytes, b.limits.memory_bytes), (l.output_bytes, b.limits.output_bytes), (l.deadline_ms, b.limits.deadline_ms)];
        if applied.iter().any(|(want, got)| want.is_some_and(|w| w != *got)) {
            return Err(AnswerError::OtherJob("set of limits"));
        }
        let mut spec = JobSpec::new(b.module_sha256, b.input_sha256, asked.args.to_vec(), asked.env.to_vec(), b.limits)
            .map_err(|_| AnswerError::OtherJob("args or env"))?;
        match (asked.files, &b.files) {
            (None, None) => {}
            (Some(files), Some(signed)) => {
                let (a, l) = (&files.limits, &signed.limits);
                let applied = [(a.bytes, l.bytes), (a.entries, l.entries), (a.path_bytes, l.path_bytes), (a.depth, l.depth), (a.open_files, l.open_files)];
                if applied.iter().any(|(want, got)| want.is_some_and(|w| w != *got)) {
                    return Err(AnswerError::OtherJob("set of file limits"));
                }
                let mounts = files.mounts.iter().map(|(g, e)| Mount::new(g.clone(), e.clone(), l)).collect::<Result<Vec<_>, _>>();
                let given = mounts.and_then(|m| Files::new(m, *l)).map_err(|_| AnswerError::OtherJob("set of files"))?;
                if given.digest() != signed.given {
                    return Err(AnswerError::OtherJob("set of files"));
                }
                spec = spec.with_files(given);
            }
            _ => return Err(AnswerError::OtherJob("set of files")),
        }
        if spec.job_id() != b.job_id {
            return Err(AnswerError::OtherJob("job (args, env or limits differ)"));
        }
        if self.job_id != b.job_id {
            return Err(AnswerError::NotSigned("job_id"));
        }
        let file_bytes = self.files.as_ref().map(LeftFiles::bytes).unwrap_or(0);
        let len = self.stdout.len().saturating_add(self.stderr.len()).saturating_add(file_bytes.min(usize::MAX as u64) as usize);
        if len as u64 > b.limits.output_bytes {
            return Err(AnswerError::OverLimit { len, limit: b.limits.output_bytes });
        }
        match (&self.files, &b.files) {
            (None, None) => {}
            (Some(left), Some(signed)) if left.changes.digest() == signed.left => left.check_data()?,
            _ => return Err(AnswerError::NotSigned("files")),
        }
        if sha256(&self.stdout) != b.stdout_sha256 {
            return Err(AnswerError::NotSigned("stdout"));
        }
        if sha256(&self.stderr) != b.stderr_sha256 {
            return Err(AnswerError::NotSigned("stderr"));
        }
        if self.outcome != b.outcome {
            return Err(AnswerError::NotSigned("exit status"));
        }
        if self.fuel_used != b.fuel_used {
            return Err(AnswerError::NotSigned("fuel_used"));
        }
        Ok(())
    }

    /// What honest executors of one job agree on (job id, output hashes, outcome, fuel, and
    /// what it left in its files).
    pub fn fingerprint(&self) -> (Digest, Digest, Digest, Outcome, u64, Option<Digest>) {
        let b = &self.receipt.body;
        (b.job_id, b.stdout_sha256, b.stderr_sha256, b.outcome, b.fuel_used, b.files.map(|f| f.left))
    }

    /// The node key that signed it.
    pub fn signer(&self) -> [u8; 32] {
        self.receipt.node_key
    }
}

/// What an executor sends back over the job protocol: an answer, or an error answer
/// (`{"status","error","message"}`, docs/protocol.md). The error's code is one the job API
/// has, or None for a code this node does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Done(Answer),
    Failed { code: Option<ErrorCode>, message: String },
}

impl Reply {
    pub fn parse(bytes: &[u8]) -> Result<Reply, AnswerError> {
        let text = core::str::from_utf8(bytes).map_err(|_| AnswerError::NotJson)?;
        let top = parse_object(text)?;
        match string(&top, "error")? {
            // A message that is not text is no message: the code is what counts.
            Some(code) => Ok(Reply::Failed { code: ErrorCode::parse(code), message: string(&top, "message").ok().flatten().unwrap_or("").to_string() }),
            None => Answer::from_object(&top).map(Reply::Done),
        }
    }
}

/// Where an answer's JSON, as `to_json` writes it, holds its output: the byte ranges of the
/// stdout and stderr base64 texts (between their quotes). A node keeps a done job's answer as
/// JSON alone and decodes only the chunk an output read asks for
/// (`encoding::base64_decode_range`). None when the text is not of that shape.
pub fn output_spans(json: &str) -> Option<(core::ops::Range<usize>, core::ops::Range<usize>)> {
    // The first `"stdout":"` is the key: inside a JSON string every quote is escaped, so the
    // pattern cannot start in one, and no nested object (the receipt) has such a key. Key
    // order does not matter (a file written by another encoder may sort them).
    let span = |key: &str| -> Option<core::ops::Range<usize>> {
        let start = json.find(key)? + key.len();
        let len = json.get(start..)?.find('"')?;
        let text = &json.as_bytes()[start..start + len];
        (len % 4 == 0 && text.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=')).then_some(start..start + len)
    };
    Some((span("\"stdout\":\"")?, span("\"stderr\":\"")?))
}

/// The answer to a job run on k nodes (`redundancy`, docs/api.md): each node's answer, and
/// whether they agree (job id, output hashes, exit status and fuel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redundant {
    pub agree: bool,
    pub replayed: bool,
    pub answers: Vec<Answer>,
}

impl Redundant {
    /// Whether every answer has the fingerprint of the first.
    pub fn agreement(answers: &[Answer]) -> bool {
        answers.windows(2).all(|w| w[0].fingerprint() == w[1].fingerprint())
    }

    pub fn to_json(&self) -> String {
        self.to_json_with(self.replayed)
    }

    /// The JSON with `replayed` as given (the answers keep their own).
    pub fn to_json_with(&self, replayed: bool) -> String {
        let answers: Vec<String> = self.answers.iter().map(Answer::to_json).collect();
        format!("{{\"k\":{},\"agree\":{},\"replayed\":{replayed},\"answers\":[{}]}}", self.answers.len(), self.agree, answers.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Limits;
    use crate::job::receipt::ReceiptBody;
    use alloc::vec;

    fn signed(args: &[&str], stdout: &[u8], key: u8) -> (String, Receipt) {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([key; 32]));
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let spec = JobSpec::new([1; 32], sha256(b"in"), args, vec![], Limits::DEFAULT).unwrap();
        let body = ReceiptBody {
            job_id: spec.job_id(),
            module_sha256: [1; 32],
            input_sha256: sha256(b"in"),
            stdout_sha256: sha256(stdout),
            stderr_sha256: sha256(b""),
            outcome: Outcome::Exited(0),
            fuel_used: 42,
            limits: Limits::DEFAULT,
            wall_time_us: 7,
            files: None,
        };
        let r = Receipt::sign(body, &kp);
        (Answer::new(r.clone(), stdout.to_vec(), vec![], None).to_json(), r)
    }

    fn asked<'a>(args: &'a [String], limits: &'a RequestedLimits, module: &'a Digest, input: &'a Digest) -> Asked<'a> {
        Asked { module_sha256: module, input_sha256: input, args, env: &[], limits, signer: None, files: None }
    }

    #[test]
    fn an_answer_with_files_verifies_only_with_the_files_its_receipt_signs() {
        use crate::job::files::{Entry, FsLimits, Mount};
        use crate::job::receipt::FileDigests;
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([3; 32]));
        let given_entry = Entry { path: "in.txt".into(), kind: Kind::File { sha256: sha256(b"in"), size: 2, executable: false } };
        let mount = Mount::new("/work".into(), vec![given_entry], &FsLimits::DEFAULT).unwrap();
        let files = Files::new(vec![mount], FsLimits::DEFAULT).unwrap();
        let out = Kind::File { sha256: sha256(b"result"), size: 6, executable: false };
        let changes = Changes::new(vec![
            Change { mount: 0, path: "out.txt".into(), kind: Some(out) },
            Change { mount: 0, path: "in.txt".into(), kind: None },
            Change { mount: 0, path: "d".into(), kind: Some(Kind::Dir) },
            Change { mount: 0, path: "d/l".into(), kind: Some(Kind::Symlink { target: "../out.txt".into() }) },
        ])
        .unwrap();
        let mut data = alloc::collections::BTreeMap::new();
        data.insert(sha256(b"result"), b"result".to_vec());
        let left = LeftFiles { changes: changes.clone(), data };
        let spec = JobSpec::new([1; 32], sha256(b""), vec![], vec![], Limits::DEFAULT).unwrap().with_files(files.clone());
        let body = ReceiptBody {
            job_id: spec.job_id(),
            module_sha256: [1; 32],
            input_sha256: sha256(b""),
            stdout_sha256: sha256(b""),
            stderr_sha256: sha256(b""),
            outcome: Outcome::Exited(0),
            fuel_used: 5,
            limits: Limits::DEFAULT,
            wall_time_us: 1,
            files: Some(FileDigests { limits: FsLimits::DEFAULT, given: files.digest(), left: changes.digest() }),
        };
        let answer = Answer::new(Receipt::sign(body, &kp), vec![], vec![], None).with_files(left);
        let json = answer.to_json();
        assert!(json.contains(r#""stderr":"","files":[{"mount":0,"path":"d","dir":true},{"mount":0,"path":"d/l","symlink":"../out.txt"},{"mount":0,"path":"in.txt","removed":true},{"mount":0,"path":"out.txt","size":6,"sha256":""#), "{json}");
        let parsed = Answer::parse(&json).unwrap();
        assert_eq!(parsed, answer);
        assert_eq!(parsed.to_json(), json);
        let limits = RequestedLimits::default();
        let (module, input) = ([1u8; 32], sha256(b""));
        let ask = |files| Asked { module_sha256: &module, input_sha256: &input, args: &[], env: &[], limits: &limits, signer: None, files };
        let sent = RequestedFiles::from_files(&files, Default::default());
        let files = RequestedFiles { limits: Default::default(), ..sent.clone() };
        parsed.verify(&ask(Some(&files))).unwrap();
        parsed.verify(&ask(Some(&sent))).unwrap();
        assert_eq!(parsed.verify(&ask(None)), Err(AnswerError::OtherJob("set of files")));
        let other = RequestedFiles::default();
        assert_eq!(parsed.verify(&ask(Some(&other))), Err(AnswerError::OtherJob("set of files")));
        let tighter = RequestedFiles { limits: crate::job::files::RequestedFsLimits { depth: Some(3), ..Default::default() }, ..sent.clone() };
        assert_eq!(parsed.verify(&ask(Some(&tighter))), Err(AnswerError::OtherJob("set of file limits")));
        // Other bytes for a file, a change left out, no files at all: not what was signed.
        let forged = json.replace(&crate::encoding::base64_encode(b"result"), &crate::encoding::base64_encode(b"RESULT"));
        assert_eq!(Answer::parse(&forged).unwrap().verify(&ask(Some(&files))), Err(AnswerError::NotSigned("file data")));
        let dropped = json.replace(r#"{"mount":0,"path":"in.txt","removed":true},"#, "");
        assert_eq!(Answer::parse(&dropped).unwrap().verify(&ask(Some(&files))), Err(AnswerError::NotSigned("files")));
        let none = Answer { files: None, ..parsed.clone() };
        assert_eq!(none.verify(&ask(Some(&files))), Err(AnswerError::NotSigned("files")));
        // Files count against the output limit the receipt names.
        let mut small = parsed.receipt.body.clone();
        small.limits.output_bytes = 5;
        let spec5 = JobSpec::new([1; 32], sha256(b""), vec![], vec![], small.limits).unwrap().with_files(sent.resolve(&FsLimits::MAX).unwrap());
        small.job_id = spec5.job_id();
        let over = Answer { job_id: small.job_id, receipt: Receipt::sign(small, &kp), ..parsed.clone() };
        assert_eq!(over.verify(&ask(Some(&files))), Err(AnswerError::OverLimit { len: 6, limit: 5 }));
    }

    #[test]
    fn an_honest_answer_verifies_and_every_lie_is_named() {
        let (module, input) = ([1u8; 32], sha256(b"in"));
        let args = vec!["a".to_string()];
        let limits = RequestedLimits { fuel: Some(Limits::DEFAULT.fuel), ..Default::default() };
        let (json, r) = signed(&["a"], b"out", 9);
        let a = Answer::parse(&json).unwrap();
        a.verify(&asked(&args, &limits, &module, &input)).unwrap();
        // What parsed re-emits itself, byte for byte; an executor is kept, other fields are not.
        assert_eq!(a.to_json(), json);
        let peer = "12D3KooW9pP4Seg3kZYhySpuVjn1RPdQBsUFZKiFxGMGQN5MeL6A";
        let placed = Answer { executor: Some(PeerName::parse(peer).unwrap()), ..a.clone() };
        assert_eq!(Answer::parse(&placed.to_json()).unwrap(), placed);
        assert!(placed.to_json().starts_with(&format!("{{\"executor\":\"{peer}\",\"job_id\"")));
        let padded = format!(" \n{}", json.replacen('{', "{\"extra\":[1,2],", 1));
        assert_eq!(Answer::parse(&padded).unwrap().to_json(), json);
        assert_eq!(Answer::parse(&json.replacen('{', "{\"executor\":\"x\",", 1)), Err(AnswerError::Shape("executor")));

        // Forged stdout under a genuine receipt.
        let forged = json.replace(&crate::encoding::base64_encode(b"out"), &crate::encoding::base64_encode(b"lie"));
        assert_eq!(Answer::parse(&forged).unwrap().verify(&asked(&args, &limits, &module, &input)), Err(AnswerError::NotSigned("stdout")));
        // A genuine receipt for another job (other args, same module and input).
        let (other, _) = signed(&["b"], b"out", 9);
        assert!(matches!(Answer::parse(&other).unwrap().verify(&asked(&args, &limits, &module, &input)), Err(AnswerError::OtherJob(_))));
        // Another module or input, other limits than asked, another signer.
        assert_eq!(a.verify(&asked(&args, &limits, &[2; 32], &input)), Err(AnswerError::OtherJob("module")));
        assert_eq!(a.verify(&asked(&args, &limits, &module, &[3; 32])), Err(AnswerError::OtherJob("input")));
        let asked_fuel = RequestedLimits { fuel: Some(5), ..Default::default() };
        assert_eq!(a.verify(&asked(&args, &asked_fuel, &module, &input)), Err(AnswerError::OtherJob("set of limits")));
        let other_key = [0u8; 32];
        let mut want = asked(&args, &limits, &module, &input);
        want.signer = Some(&other_key);
        assert!(matches!(a.verify(&want), Err(AnswerError::Signer { .. })));
        want.signer = Some(&r.node_key);
        a.verify(&want).unwrap();
        // Figures that differ from the receipt's.
        let fuel = json.replace("\"fuel_used\":42,\"wall", "\"fuel_used\":41,\"wall");
        assert_eq!(Answer::parse(&fuel).unwrap().verify(&asked(&args, &limits, &module, &input)), Err(AnswerError::NotSigned("fuel_used")));
        let exit = json.replacen("\"exit_code\":0,", "\"exit_code\":1,", 1);
        assert_eq!(Answer::parse(&exit).unwrap().verify(&asked(&args, &limits, &module, &input)), Err(AnswerError::NotSigned("exit status")));
        // A receipt whose signature does not hold.
        let tampered = json.replace("\"fuel_used\":42,\"limits\"", "\"fuel_used\":43,\"limits\"");
        assert!(matches!(Answer::parse(&tampered).map(|a| a.verify(&asked(&args, &limits, &module, &input))), Ok(Err(AnswerError::Receipt(_))) | Err(_)));
        for bad in ["[]", "{}", "{\"job_id\":\"zz\"}"] {
            assert!(Answer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies_are_answers_or_named_errors_and_redundant_answers_count_themselves() {
        let (json, _) = signed(&["a"], b"out", 9);
        let a = Answer::parse(&json).unwrap();
        assert_eq!(Reply::parse(json.as_bytes()), Ok(Reply::Done(a.clone())));
        let busy = br#"{"status":429,"error":"busy","message":"all 2 job slots are busy"}"#;
        assert_eq!(Reply::parse(busy), Ok(Reply::Failed { code: Some(ErrorCode::Busy), message: "all 2 job slots are busy".into() }));
        assert_eq!(Reply::parse(br#"{"error":"melted"}"#), Ok(Reply::Failed { code: None, message: String::new() }));
        assert_eq!(Reply::parse(b"\x00not json at all"), Err(AnswerError::NotJson));
        assert_eq!(Reply::parse(b"[1]"), Err(AnswerError::Shape("JSON object")));
        assert_eq!(Reply::parse(br#"{"job_id":"00"}"#), Err(AnswerError::Shape("job_id")));
        let (other, _) = signed(&["a"], b"other", 7);
        let b = Answer::parse(&other).unwrap();
        assert!(Redundant::agreement(&[a.clone(), a.clone()]) && !Redundant::agreement(&[a.clone(), b.clone()]));
        let r = Redundant { agree: false, replayed: true, answers: vec![a, b] };
        assert_eq!(r.to_json(), format!("{{\"k\":2,\"agree\":false,\"replayed\":true,\"answers\":[{json},{other}]}}"));
    }

    #[test]
    fn output_spans_point_at_the_base64_of_stdout_and_stderr() {
        let (_, r) = signed(&[], b"out", 1);
        let mut a = Answer::new(r, b"hello, world".to_vec(), b"err".to_vec(), Some("\"stdout\":\"x\" in a trap".into()));
        a.executor = None;
        let json = a.to_json();
        let (o, e) = output_spans(&json).unwrap();
        assert_eq!(crate::encoding::base64_decode(&json[o]).unwrap(), b"hello, world");
        assert_eq!(crate::encoding::base64_decode(&json[e]).unwrap(), b"err");
        assert_eq!(output_spans("{\"stdout\":\"ab\",\"stderr\":\"\"}"), None, "not base64");
        assert_eq!(output_spans("{}"), None);
    }

    #[test]
    fn output_beyond_the_signed_limit_and_long_trap_details_are_refused() {
        let (_, r) = signed(&[], b"out", 1);
        let limit = r.body.limits.output_bytes as usize;
        let a = Answer::new(r.clone(), vec![b'x'; limit], b"!".to_vec(), Some("\u{e9}".repeat(600)));
        assert_eq!(a.trap_detail.as_ref().map(String::len), Some(MAX_TRAP_DETAIL), "cut at a character boundary");
        let mut body = r.body.clone();
        (body.stdout_sha256, body.stderr_sha256) = (sha256(&a.stdout), sha256(&a.stderr));
        let key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([1; 32]));
        let over = Answer { receipt: Receipt::sign(body, &key), ..a };
        let (module, input, limits) = (over.receipt.body.module_sha256, over.receipt.body.input_sha256, RequestedLimits::default());
        let asked = Asked { module_sha256: &module, input_sha256: &input, args: &[], env: &[], limits: &limits, signer: None, files: None };
        assert_eq!(over.verify(&asked), Err(AnswerError::OverLimit { len: limit + 1, limit: limit as u64 }));
        let long = over.to_json().replacen("\"trap_detail\":\"", "\"trap_detail\":\"x", 1);
        assert_eq!(Answer::parse(&long), Err(AnswerError::Shape("trap_detail (at most 1024 bytes)")));
    }
}
