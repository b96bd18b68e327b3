//! The job request as it travels: the JSON body of `POST /v1/jobs`, which is also what one
//! node sends another over the job protocol (docs/api.md, schemas/job-request.schema.json).
//! One parse per request, fields read from it; every error is one line naming the field.
//! Unknown fields are refused, so a misspelt limit cannot silently run on defaults.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use miniserde::json::{self, Number, Object, Value};

use alloc::collections::BTreeMap;

use crate::encoding::{base64_decode, base64_encode, hex_decode_array, hex_encode};
use crate::job::files::{Entry, Files, FilesError, FsLimits, Kind, Mount, RequestedFsLimits, MAX_MOUNTS};
use crate::job::RequestedLimits;
use crate::net::peer::PeerName;
use crate::{sha256, Digest};

/// Where the module of a job comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// Sent inline (base64 in the JSON).
    Bytes(Vec<u8>),
    /// Named by SHA-256: uploaded earlier, or sent with an earlier job.
    Sha256(Digest),
}

impl ModuleSource {
    /// The module's SHA-256: what jobs, receipts and stores name it by.
    pub fn sha256(&self) -> Digest {
        match self {
            ModuleSource::Bytes(b) => sha256(b),
            ModuleSource::Sha256(d) => *d,
        }
    }

    /// Bytes the request holds for the module (none when it is named by hash).
    pub fn inline_len(&self) -> usize {
        match self {
            ModuleSource::Bytes(b) => b.len(),
            ModuleSource::Sha256(_) => 0,
        }
    }
}

/// Where a job should run (`placement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// This node.
    Local,
    /// Any connected Phase peer the node chooses.
    Remote,
    /// That peer.
    Peer(PeerName),
}

impl Placement {
    pub fn parse(text: &str) -> Result<Placement, RequestError> {
        match text {
            "local" => Ok(Placement::Local),
            "remote" => Ok(Placement::Remote),
            id => PeerName::parse(id).map(Placement::Peer).map_err(|_| RequestError(format!("placement {id:?} is not local, remote or a peer id"))),
        }
    }
}

/// Why a request body is refused: one line naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError(pub String);

impl core::fmt::Display for RequestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}
impl core::error::Error for RequestError {}


impl From<String> for RequestError {
    fn from(s: String) -> RequestError {
        RequestError(s)
    }
}

/// A job request that parsed: every field has its type; values are judged by the node
/// (limits against its maxima, args and env by `JobSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub module: ModuleSource,
    pub input: Vec<u8>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub limits: RequestedLimits,
    pub idempotency_key: Option<String>,
    /// None = where the node decides.
    pub placement: Option<Placement>,
    /// Run on this many distinct nodes and compare; None = 1.
    pub redundancy: Option<u64>,
    /// The job's files, as sent (docs/api.md, "Files").
    pub files: Option<RequestedFiles>,
}

/// A job's files as a request gives them: each mount's guest name and entries, the file
/// limits asked, and the bytes of the files sent inline (by SHA-256). Files named by SHA-256
/// alone were uploaded earlier. The node resolves the limits and checks the trees
/// (`resolve`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestedFiles {
    pub mounts: Vec<(String, Vec<Entry>)>,
    pub limits: RequestedFsLimits,
    pub data: BTreeMap<Digest, Vec<u8>>,
}

impl RequestedFiles {
    /// The job's files under limits resolved against `max`.
    pub fn resolve(&self, max: &FsLimits) -> Result<Files, FilesError> {
        let limits = FsLimits::resolve(&self.limits, max)?;
        let mounts = self
            .mounts
            .iter()
            .map(|(guest, entries)| Mount::new(guest.clone(), entries.clone(), &limits))
            .collect::<Result<Vec<_>, _>>()?;
        Files::new(mounts, limits)
    }

    /// `files` as a request gives them again, with the bytes in `data` inline (what a node
    /// sends a peer: every limit explicit, so the peer runs the same job).
    pub fn from_files(files: &Files, data: BTreeMap<Digest, Vec<u8>>) -> RequestedFiles {
        RequestedFiles {
            mounts: files.mounts().iter().map(|m| (m.guest().to_string(), m.entries().to_vec())).collect(),
            limits: files.limits.as_requested(),
            data,
        }
    }

    fn parse(v: &Value) -> Result<RequestedFiles, String> {
        let Value::Object(top) = v else { return Err("files must be an object".into()) };
        if let Some(k) = top.keys().find(|k| !["mounts", "limits"].contains(&k.as_str())) {
            return Err(format!("unknown field files.{k}"));
        }
        let limits = match opt(top, "limits") {
            None => RequestedFsLimits::default(),
            Some(Value::Object(l)) => {
                if let Some(k) = l.keys().find(|k| !FS_LIMITS.contains(&k.as_str())) {
                    return Err(format!("unknown field files.limits.{k}"));
                }
                let get = |k: &str| opt_u64(l, k, &format!("files.limits.{k}"));
                RequestedFsLimits {
                    bytes: get("bytes")?,
                    entries: get("entries")?,
                    path_bytes: get("path_bytes")?,
                    depth: get("depth")?,
                    open_files: get("open_files")?,
                }
            }
            Some(_) => return Err("files.limits must be an object".into()),
        };
        let Some(Value::Array(mounts)) = opt(top, "mounts") else { return Err("files.mounts must be an array".into()) };
        if mounts.len() > MAX_MOUNTS {
            return Err(format!("files.mounts holds {} mounts (at most {MAX_MOUNTS})", mounts.len()));
        }
        let mut out = RequestedFiles { limits, ..RequestedFiles::default() };
        for (i, m) in mounts.iter().enumerate() {
            let Value::Object(m) = m else { return Err(format!("files.mounts[{i}] must be an object")) };
            if let Some(k) = m.keys().find(|k| !["guest", "entries"].contains(&k.as_str())) {
                return Err(format!("unknown field files.mounts[{i}].{k}"));
            }
            let guest = opt_str(m, "guest")?.ok_or_else(|| format!("files.mounts[{i}].guest must be a string"))?;
            let entries = match opt(m, "entries") {
                None => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .enumerate()
                    .map(|(j, e)| parse_entry(e, &format!("files.mounts[{i}].entries[{j}]"), &mut out.data))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err(format!("files.mounts[{i}].entries must be an array")),
            };
            out.mounts.push((guest, entries));
        }
        Ok(out)
    }

    /// The request form (`files` of a job request).
    pub fn to_json(&self) -> String {
        self.to_json_with(PeerFiles::Inline)
    }

    /// The request form, with the bytes this request holds inline or every file by hash.
    pub fn to_json_with(&self, files: PeerFiles) -> String {
        let s = |v: &str| json::to_string(&v.to_string());
        let mounts: Vec<String> = self
            .mounts
            .iter()
            .map(|(guest, entries)| {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|e| {
                        let path = s(&e.path);
                        match &e.kind {
                            Kind::Dir => format!("{{\"path\":{path},\"dir\":true}}"),
                            Kind::Symlink { target } => format!("{{\"path\":{path},\"symlink\":{}}}", s(target)),
                            Kind::File { sha256, size, executable } => match self.data.get(sha256).filter(|_| files == PeerFiles::Inline) {
                                Some(bytes) => format!("{{\"path\":{path},\"data\":\"{}\",\"executable\":{executable}}}", base64_encode(bytes)),
                                None => format!("{{\"path\":{path},\"sha256\":\"{}\",\"size\":{size},\"executable\":{executable}}}", hex_encode(sha256)),
                            },
                        }
                    })
                    .collect();
                format!("{{\"guest\":{},\"entries\":[{}]}}", s(guest), entries.join(","))
            })
            .collect();
        let l = &self.limits;
        let limits: Vec<String> = [("bytes", l.bytes), ("entries", l.entries), ("path_bytes", l.path_bytes), ("depth", l.depth), ("open_files", l.open_files)]
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("\"{k}\":{v}")))
            .collect();
        format!("{{\"mounts\":[{}],\"limits\":{{{}}}}}", mounts.join(","), limits.join(","))
    }
}

/// One entry of a request's tree: `{"path", "data"}` (a file sent inline), `{"path", "sha256",
/// "size"}` (uploaded earlier), `{"path", "dir": true}` or `{"path", "symlink"}`; a file may
/// say `"executable": true`.
fn parse_entry(v: &Value, at: &str, data: &mut BTreeMap<Digest, Vec<u8>>) -> Result<Entry, String> {
    let Value::Object(e) = v else { return Err(format!("{at} must be an object")) };
    if let Some(k) = e.keys().find(|k| !["path", "data", "sha256", "size", "dir", "symlink", "executable"].contains(&k.as_str())) {
        return Err(format!("unknown field {at}.{k}"));
    }
    let path = opt_str(e, "path")?.ok_or_else(|| format!("{at}.path must be a string"))?;
    let flag = |k: &str| match opt(e, k) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{at}.{k} must be true or false")),
    };
    let executable = flag("executable")?;
    let kind = match (opt_str(e, "data")?, opt_str(e, "sha256")?, flag("dir")?, opt_str(e, "symlink")?) {
        (Some(b64), None, false, None) => {
            let bytes = base64_decode(&b64).map_err(|err| format!("{at}.data is not base64: {err}"))?;
            let digest = sha256(&bytes);
            let size = bytes.len() as u64;
            data.insert(digest, bytes);
            Kind::File { sha256: digest, size, executable }
        }
        (None, Some(hex), false, None) => Kind::File {
            sha256: hex_decode_array(&hex).map_err(|err| format!("{at}.sha256 is not 64 hex digits: {err}"))?,
            size: opt_u64(e, "size", &format!("{at}.size"))?.ok_or_else(|| format!("{at}.size is needed with sha256"))?,
            executable,
        },
        (None, None, true, None) => Kind::Dir,
        (None, None, false, Some(target)) => Kind::Symlink { target },
        _ => return Err(format!("{at} must be exactly one of a file (data or sha256), a dir or a symlink")),
    };
    Ok(Entry { path, kind })
}

const FIELDS: [&str; 10] =
    ["module", "module_sha256", "input", "args", "env", "limits", "idempotency_key", "placement", "redundancy", "files"];
const FS_LIMITS: [&str; 5] = ["bytes", "entries", "path_bytes", "depth", "open_files"];
const LIMITS: [&str; 4] = ["fuel", "memory_bytes", "output_bytes", "deadline_ms"];

/// A field of a request object: absent and `null` are both "not given".
fn opt<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !matches!(v, Value::Null))
}

fn opt_str(obj: &Object, key: &str) -> Result<Option<String>, String> {
    match opt(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn opt_u64(obj: &Object, key: &str, path: &str) -> Result<Option<u64>, String> {
    match opt(obj, key) {
        None => Ok(None),
        Some(Value::Number(Number::U64(n))) => Ok(Some(*n)),
        Some(_) => Err(format!("{path} must be an unsigned integer")),
    }
}

fn opt_strings(obj: &Object, key: &str) -> Result<Vec<String>, String> {
    match opt(obj, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("{key} must be an array of strings")),
            })
            .collect(),
        Some(_) => Err(format!("{key} must be an array of strings")),
    }
}

impl JobRequest {
    /// Parses a job request body; the error is a one-line reason for a 400.
    pub fn parse(body: &[u8]) -> Result<JobRequest, RequestError> {
        Self::parse_text(body).map_err(RequestError)
    }

    fn parse_text(body: &[u8]) -> Result<JobRequest, String> {
        let text = core::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
        let value: Value = json::from_str(text).map_err(|_| "body is not valid JSON".to_string())?;
        let Value::Object(top) = &value else {
            return Err("body must be a JSON object".into());
        };
        if let Some(k) = top.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!("unknown field {k:?}"));
        }
        let limits = match opt(top, "limits") {
            None => RequestedLimits::default(),
            Some(Value::Object(l)) => {
                if let Some(k) = l.keys().find(|k| !LIMITS.contains(&k.as_str())) {
                    return Err(format!("unknown field limits.{k}"));
                }
                RequestedLimits {
                    fuel: opt_u64(l, "fuel", "limits.fuel")?,
                    memory_bytes: opt_u64(l, "memory_bytes", "limits.memory_bytes")?,
                    output_bytes: opt_u64(l, "output_bytes", "limits.output_bytes")?,
                    deadline_ms: opt_u64(l, "deadline_ms", "limits.deadline_ms")?,
                }
            }
            Some(_) => return Err("limits must be an object".into()),
        };
        let module = match (opt_str(top, "module")?, opt_str(top, "module_sha256")?) {
            (Some(b64), None) => {
                ModuleSource::Bytes(base64_decode(&b64).map_err(|e| format!("module is not base64: {e}"))?)
            }
            (None, Some(hex)) => ModuleSource::Sha256(
                hex_decode_array(&hex).map_err(|e| format!("module_sha256 is not 64 hex digits: {e}"))?,
            ),
            _ => return Err("give exactly one of module (base64) and module_sha256 (hex)".into()),
        };
        let input = match opt_str(top, "input")? {
            Some(b64) => base64_decode(&b64).map_err(|e| format!("input is not base64: {e}"))?,
            None => Vec::new(),
        };
        Ok(JobRequest {
            module,
            input,
            args: opt_strings(top, "args")?,
            env: opt_strings(top, "env")?,
            limits,
            idempotency_key: opt_str(top, "idempotency_key")?,
            placement: opt_str(top, "placement")?.map(|p| Placement::parse(&p)).transpose().map_err(|e| e.0)?,
            redundancy: opt_u64(top, "redundancy", "redundancy")?,
            files: opt(top, "files").map(RequestedFiles::parse).transpose()?,
        })
    }

    /// The body one node sends another for this job: the module inline or by hash, the files
    /// inline or by hash (modules and files travel once), never `placement` or `redundancy`
    /// (the executor runs it where it is).
    pub fn to_peer_json(&self, module: PeerModule<'_>, files: PeerFiles) -> String {
        let s = |v: &str| json::to_string(&v.to_string());
        let list = |l: &[String]| format!("[{}]", l.iter().map(|x| s(x)).collect::<Vec<_>>().join(","));
        let mut fields = Vec::with_capacity(6);
        fields.push(match module {
            PeerModule::Inline(bytes) => format!("\"module\":\"{}\"", base64_encode(bytes)),
            PeerModule::Hash(d) => format!("\"module_sha256\":\"{}\"", hex_encode(d)),
        });
        fields.push(format!("\"input\":\"{}\"", base64_encode(&self.input)));
        fields.push(format!("\"args\":{}", list(&self.args)));
        fields.push(format!("\"env\":{}", list(&self.env)));
        let l = &self.limits;
        let limits: Vec<String> =
            [("fuel", l.fuel), ("memory_bytes", l.memory_bytes), ("output_bytes", l.output_bytes), ("deadline_ms", l.deadline_ms)]
                .iter()
                .filter_map(|(k, v)| v.map(|v| format!("\"{k}\":{v}")))
                .collect();
        fields.push(format!("\"limits\":{{{}}}", limits.join(",")));
        if let Some(k) = &self.idempotency_key {
            fields.push(format!("\"idempotency_key\":{}", s(k)));
        }
        if let Some(f) = &self.files {
            fields.push(format!("\"files\":{}", f.to_json_with(files)));
        }
        format!("{{{}}}", fields.join(","))
    }
}

/// How a job's module goes to a peer.
#[derive(Debug, Clone, Copy)]
pub enum PeerModule<'a> {
    Inline(&'a [u8]),
    Hash(&'a Digest),
}

/// How a job's files go to a peer: each file whose bytes the request holds inline, or every
/// file by hash and size (the peer may hold them already: files travel once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFiles {
    Inline,
    ByHash,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn a_request_round_trips_through_the_peer_form() {
        let body = br#"{"module":"AGFzbQEAAAA=","input":"aGk=","args":["a","\"q\""],"env":["K=V"],"limits":{"fuel":5,"deadline_ms":7},"idempotency_key":"k","placement":"remote","redundancy":2}"#;
        let r = JobRequest::parse(body).unwrap();
        assert_eq!(r.module, ModuleSource::Bytes(b"\0asm\x01\0\0\0".to_vec()));
        assert_eq!((r.input.as_slice(), r.args.len(), r.redundancy), (&b"hi"[..], 2, Some(2)));
        assert_eq!(r.limits, RequestedLimits { fuel: Some(5), deadline_ms: Some(7), ..Default::default() });
        let again = JobRequest::parse(r.to_peer_json(PeerModule::Inline(b"\0asm\x01\0\0\0"), PeerFiles::Inline).as_bytes()).unwrap();
        assert_eq!(again, JobRequest { placement: None, redundancy: None, ..r.clone() });
        let by_hash = JobRequest::parse(r.to_peer_json(PeerModule::Hash(&[7; 32]), PeerFiles::Inline).as_bytes()).unwrap();
        assert_eq!(by_hash.module, ModuleSource::Sha256([7; 32]));
    }

    #[test]
    fn files_parse_resolve_and_travel_to_a_peer_with_their_bytes() {
        let big = sha256(b"123456789");
        let body = format!(r#"{{"module":"AA==","files":{{"mounts":[{{"guest":"/work","entries":[{{"path":"in/a.txt","data":"aGk="}},{{"path":"big","sha256":"{}","size":9,"executable":true}},{{"path":"l","symlink":"in/a.txt"}},{{"path":"out","dir":true}}]}}],"limits":{{"bytes":100}}}}}}"#, hex_encode(&big));
        let r = JobRequest::parse(body.as_bytes()).unwrap();
        let f = r.files.as_ref().unwrap();
        assert_eq!(f.limits, RequestedFsLimits { bytes: Some(100), ..Default::default() });
        assert_eq!(f.data.get(&sha256(b"hi")).map(Vec::as_slice), Some(&b"hi"[..]));
        let files = f.resolve(&FsLimits::MAX).unwrap();
        assert_eq!(files.limits, FsLimits { bytes: 100, ..FsLimits::DEFAULT });
        let paths: Vec<&str> = files.mounts()[0].entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["big", "in", "in/a.txt", "l", "out"]);
        // To a peer: every limit explicit, the bytes the node holds inline, the same files.
        let mut data = f.data.clone();
        data.insert(big, b"123456789".to_vec());
        let peer = JobRequest { files: Some(RequestedFiles::from_files(&files, data)), ..r.clone() };
        let again = JobRequest::parse(peer.to_peer_json(PeerModule::Hash(&[1; 32]), PeerFiles::Inline).as_bytes()).unwrap();
        let back = again.files.unwrap();
        assert_eq!(back.resolve(&FsLimits::MAX).unwrap(), files);
        assert_eq!(back.data.len(), 2);
        // By hash: the same files, no byte of them.
        let bare = JobRequest::parse(peer.to_peer_json(PeerModule::Hash(&[1; 32]), PeerFiles::ByHash).as_bytes()).unwrap();
        let bare = bare.files.unwrap();
        assert_eq!(bare.resolve(&FsLimits::MAX).unwrap(), files);
        assert!(bare.data.is_empty());
        // Limits beyond the node's maxima, and bad trees, are named.
        let small = FsLimits { bytes: 50, ..FsLimits::MAX };
        assert!(matches!(f.resolve(&small), Err(FilesError::LimitAbove { name: "bytes", .. })));
        for (body, says) in [
            (&br#"{"module":"AA==","files":[]}"#[..], "files must be an object"),
            (br#"{"module":"AA==","files":{"mounts":[{"guest":"/w","entries":[{"path":"a"}]}]}}"#, "must be exactly one of"),
            (br#"{"module":"AA==","files":{"mounts":[{"guest":"/w","entries":[{"path":"a","data":"aGk=","dir":true}]}]}}"#, "must be exactly one of"),
            (br#"{"module":"AA==","files":{"mounts":[{"guest":"/w","entries":[{"path":"a","sha256":"00"}]}]}}"#, "sha256 is not 64 hex digits"),
            (br#"{"module":"AA==","files":{"mounts":[{"guest":"/w","entries":[{"path":"a","mode":1}]}]}}"#, "unknown field files.mounts[0].entries[0].mode"),
            (br#"{"module":"AA==","files":{"mounts":[],"limits":{"inodes":1}}}"#, "unknown field files.limits.inodes"),
            (br#"{"module":"AA==","files":{"mounts":{}}}"#, "files.mounts must be an array"),
        ] {
            let e = JobRequest::parse(body).unwrap_err().0;
            assert!(e.contains(says), "{e} for {:?}", core::str::from_utf8(body));
        }
        let bad = JobRequest::parse(br#"{"module":"AA==","files":{"mounts":[{"guest":"/w","entries":[{"path":"../x","dir":true}]}]}}"#).unwrap();
        assert_eq!(bad.files.unwrap().resolve(&FsLimits::MAX), Err(FilesError::BadPath("../x".into())));
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        for (body, says) in [
            (&b"\xff"[..], "not UTF-8"),
            (b"{", "not valid JSON"),
            (b"[]", "must be a JSON object"),
            (br#"{"module":"AA==","limit":{}}"#, "unknown field \"limit\""),
            (br#"{"module":"AA==","limits":{"fuell":1}}"#, "unknown field limits.fuell"),
            (br#"{"module":"AA==","limits":{"fuel":-1}}"#, "limits.fuel must be an unsigned integer"),
            (br#"{"module":"AA==","limits":{"fuel":1.5}}"#, "limits.fuel must be an unsigned integer"),
            (br#"{"module":"AA==","limits":[]}"#, "limits must be an object"),
            (br#"{"module":"AA==","args":[1]}"#, "args must be an array of strings"),
            (br#"{"module":"@@"}"#, "module is not base64"),
            (br#"{"module_sha256":"abc"}"#, "module_sha256 is not 64 hex digits"),
            (br#"{}"#, "give exactly one of module"),
            (br#"{"module":"AA==","module_sha256":"00"}"#, "give exactly one of module"),
            (br#"{"module":"AA==","input":5}"#, "input must be a string"),
            (br#"{"module":"AA==","redundancy":"2"}"#, "redundancy must be an unsigned integer"),
            (br#"{"module":"AA==","placement":"elsewhere"}"#, "placement \"elsewhere\" is not local, remote or a peer id"),
        ] {
            let e = JobRequest::parse(body).unwrap_err().0;
            assert!(e.contains(says), "{e} for {:?}", core::str::from_utf8(body));
        }
        // null is "not given".
        let r = JobRequest::parse(br#"{"module":"AA==","args":null,"limits":null,"input":null}"#).unwrap();
        assert_eq!((r.args, r.input, r.limits), (vec![], vec![], RequestedLimits::default()));
    }
}
