//! Receipts: what a node signs after running a job. Signed bytes are fixed-order binary with a
//! domain prefix (docs/formats.md, "Receipt"), never re-serialised JSON; the JSON form is only
//! the transport, and parsing it yields a value that re-emits the same signed bytes.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use miniserde::{Deserialize, Serialize};

use crate::encoding::{hex_decode_array, hex_encode, DecodeError};
use crate::job::files::FsLimits;
use crate::job::Limits;
use crate::Digest;

/// Domain separation for receipt signatures: v1 for a job without files, v2 for one with.
pub const RECEIPT_DOMAIN: &[u8] = b"phase-receipt/v1\n";
pub const RECEIPT_DOMAIN_V2: &[u8] = b"phase-receipt/v2\n";
/// The `format` value of a v1 (v2) receipt in JSON.
pub const RECEIPT_FORMAT: &str = "phase-receipt/v1";
pub const RECEIPT_FORMAT_V2: &str = "phase-receipt/v2";
/// Length of the signed bytes of a v1 receipt; a v2 receipt's are `V2_EXTRA` bytes longer.
pub const SIGNED_LEN: usize = 17 + 5 * 32 + 1 + 4 + 8 + 4 * 8 + 8 + 32;
pub const V2_EXTRA: usize = 2 * 32 + 5 * 8;

/// What a v2 receipt signs of a job's files (docs/formats.md, "Job files"): the file limits it
/// ran under (as applied, like `limits`), the digest of the files it was given (also in its
/// job id) and of what it left in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigests {
    pub limits: FsLimits,
    pub given: Digest,
    pub left: Digest,
}

/// Why a job ended without exiting by itself. Codes are part of the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    OutOfFuel,
    MemoryLimit,
    Deadline,
    OutputLimit,
    StackOverflow,
    Unreachable,
    MemoryOutOfBounds,
    TableOutOfBounds,
    IndirectCallToNull,
    IntegerDivisionByZero,
    IntegerOverflow,
    BadConversionToInteger,
    BadSignature,
    /// Instantiation failed (e.g. a data segment out of bounds or a trapping start function).
    Instantiation,
    /// The module exports no `_start` function.
    NoEntryPoint,
    /// Any other engine error; the node logs the detail.
    Other,
}

const TRAPS: [(TrapKind, u32, &str); 16] = [
    (TrapKind::OutOfFuel, 1, "out_of_fuel"),
    (TrapKind::MemoryLimit, 2, "memory_limit"),
    (TrapKind::Deadline, 3, "deadline"),
    (TrapKind::OutputLimit, 4, "output_limit"),
    (TrapKind::StackOverflow, 5, "stack_overflow"),
    (TrapKind::Unreachable, 6, "unreachable"),
    (TrapKind::MemoryOutOfBounds, 7, "memory_out_of_bounds"),
    (TrapKind::TableOutOfBounds, 8, "table_out_of_bounds"),
    (TrapKind::IndirectCallToNull, 9, "indirect_call_to_null"),
    (TrapKind::IntegerDivisionByZero, 10, "integer_division_by_zero"),
    (TrapKind::IntegerOverflow, 11, "integer_overflow"),
    (TrapKind::BadConversionToInteger, 12, "bad_conversion_to_integer"),
    (TrapKind::BadSignature, 13, "bad_signature"),
    (TrapKind::Instantiation, 14, "instantiation"),
    (TrapKind::NoEntryPoint, 15, "no_entry_point"),
    (TrapKind::Other, 16, "other"),
];

impl TrapKind {
    pub fn code(self) -> u32 {
        TRAPS.iter().find(|t| t.0 == self).map(|t| t.1).unwrap_or(16)
    }
    pub fn name(self) -> &'static str {
        TRAPS.iter().find(|t| t.0 == self).map(|t| t.2).unwrap_or("other")
    }
    pub fn from_code(code: u32) -> Option<TrapKind> {
        TRAPS.iter().find(|t| t.1 == code).map(|t| t.0)
    }
    pub fn from_name(name: &str) -> Option<TrapKind> {
        TRAPS.iter().find(|t| t.2 == name).map(|t| t.0)
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `_start` returned (code 0) or the guest called `proc_exit(code)`.
    Exited(u32),
    Trapped(TrapKind),
}

/// Everything a receipt states, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptBody {
    pub job_id: Digest,
    pub module_sha256: Digest,
    pub input_sha256: Digest,
    pub stdout_sha256: Digest,
    pub stderr_sha256: Digest,
    pub outcome: Outcome,
    pub fuel_used: u64,
    pub limits: Limits,
    /// Informational: the only field that differs between nodes for the same job.
    pub wall_time_us: u64,
    /// For a job with files (a v2 receipt).
    pub files: Option<FileDigests>,
}

/// A signed receipt. Only `sign` and `from_json` make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub body: ReceiptBody,
    pub node_key: [u8; 32],
    pub signature: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptError {
    /// Not JSON, or JSON of the wrong shape (miniserde gives no detail).
    Json,
    UnknownFormat(String),
    Field { name: &'static str, error: DecodeError },
    /// Exactly one of `exit_code` and `trap` must be set.
    Outcome,
    UnknownTrap(String),
    /// The node key is not a valid Ed25519 public key.
    BadKey,
    /// The signature does not verify under the receipt's node key.
    BadSignature,
}

impl fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptError::Json => f.write_str("receipt is not JSON of the receipt shape"),
            ReceiptError::UnknownFormat(v) => write!(f, "unknown receipt format {v:?}"),
            ReceiptError::Field { name, error } => write!(f, "receipt field {name}: {error}"),
            ReceiptError::Outcome => {
                f.write_str("receipt must set exactly one of exit_code and trap")
            }
            ReceiptError::UnknownTrap(t) => write!(f, "unknown trap kind {t:?}"),
            ReceiptError::BadKey => f.write_str("receipt node_key is not an Ed25519 public key"),
            ReceiptError::BadSignature => f.write_str("receipt signature does not verify"),
        }
    }
}
impl core::error::Error for ReceiptError {}


impl ReceiptBody {
    /// The exact bytes a node signs, given its public key.
    pub fn signed_bytes(&self, node_key: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNED_LEN + V2_EXTRA);
        out.extend_from_slice(match self.files {
            None => RECEIPT_DOMAIN,
            Some(_) => RECEIPT_DOMAIN_V2,
        });
        for d in [
            &self.job_id,
            &self.module_sha256,
            &self.input_sha256,
            &self.stdout_sha256,
            &self.stderr_sha256,
        ] {
            out.extend_from_slice(d);
        }
        if let Some(f) = &self.files {
            out.extend_from_slice(&f.given);
            out.extend_from_slice(&f.left);
            for v in [f.limits.bytes, f.limits.entries, f.limits.path_bytes, f.limits.depth, f.limits.open_files] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        let (tag, code) = match self.outcome {
            Outcome::Exited(code) => (0u8, code),
            Outcome::Trapped(kind) => (1u8, kind.code()),
        };
        out.push(tag);
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(&self.fuel_used.to_be_bytes());
        self.limits.write_canonical(&mut out);
        out.extend_from_slice(&self.wall_time_us.to_be_bytes());
        out.extend_from_slice(node_key);
        debug_assert_eq!(out.len(), SIGNED_LEN + if self.files.is_some() { V2_EXTRA } else { 0 });
        out
    }
}

impl Receipt {
    /// Signs `body` with the node's key. Ed25519 is deterministic: same body, same signature.
    pub fn sign(body: ReceiptBody, key: &ed25519_compact::KeyPair) -> Receipt {
        let node_key = *key.pk;
        let signature = *key.sk.sign(body.signed_bytes(&node_key), None);
        Receipt { body, node_key, signature }
    }

    pub fn signed_bytes(&self) -> Vec<u8> {
        self.body.signed_bytes(&self.node_key)
    }

    /// Checks the signature against the receipt's own node key. Whether that key is one the
    /// caller trusts, and whether the hashes match what was sent, is the caller's check.
    pub fn verify_signature(&self) -> Result<(), ReceiptError> {
        let pk = ed25519_compact::PublicKey::from_slice(&self.node_key)
            .map_err(|_| ReceiptError::BadKey)?;
        let sig = ed25519_compact::Signature::from_slice(&self.signature)
            .map_err(|_| ReceiptError::BadSignature)?;
        pk.verify(self.signed_bytes(), &sig).map_err(|_| ReceiptError::BadSignature)
    }

    /// The JSON form: v1's fields, and for a v2 receipt `files_sha256`, `left_sha256` and
    /// `file_limits` after `stderr_sha256`.
    pub fn to_json(&self) -> String {
        let v1 = miniserde::json::to_string(&self.to_wire());
        let Some(f) = &self.body.files else { return v1 };
        let at = v1.find(",\"exit_code\"").expect("the wire form has exit_code");
        let v2 = v1.replacen(RECEIPT_FORMAT, RECEIPT_FORMAT_V2, 1);
        let at = at + RECEIPT_FORMAT_V2.len() - RECEIPT_FORMAT.len();
        let l = &f.limits;
        format!(
            "{},\"files_sha256\":\"{}\",\"left_sha256\":\"{}\",\"file_limits\":{{\"bytes\":{},\"entries\":{},\"path_bytes\":{},\"depth\":{},\"open_files\":{}}}{}",
            &v2[..at],
            hex_encode(&f.given),
            hex_encode(&f.left),
            l.bytes,
            l.entries,
            l.path_bytes,
            l.depth,
            l.open_files,
            &v2[at..]
        )
    }

    /// Parses the JSON form. The result is structurally valid; call `verify_signature`.
    pub fn from_json(text: &str) -> Result<Receipt, ReceiptError> {
        let wire: ReceiptWireIn = miniserde::json::from_str(text).map_err(|_| ReceiptError::Json)?;
        Receipt::from_wire(&wire)
    }

    fn to_wire(&self) -> ReceiptWire {
        let b = &self.body;
        let (exit_code, trap) = match b.outcome {
            Outcome::Exited(c) => (Some(c), None),
            Outcome::Trapped(t) => (None, Some(t.name().to_string())),
        };
        ReceiptWire {
            format: RECEIPT_FORMAT.to_string(),
            job_id: hex_encode(&b.job_id),
            module_sha256: hex_encode(&b.module_sha256),
            input_sha256: hex_encode(&b.input_sha256),
            stdout_sha256: hex_encode(&b.stdout_sha256),
            stderr_sha256: hex_encode(&b.stderr_sha256),
            exit_code,
            trap,
            fuel_used: b.fuel_used,
            limits: LimitsWire {
                fuel: b.limits.fuel,
                memory_bytes: b.limits.memory_bytes,
                output_bytes: b.limits.output_bytes,
                deadline_ms: b.limits.deadline_ms,
            },
            wall_time_us: b.wall_time_us,
            node_key: hex_encode(&self.node_key),
            signature: hex_encode(&self.signature),
        }
    }

    fn from_wire(w: &ReceiptWireIn) -> Result<Receipt, ReceiptError> {
        fn field<const N: usize>(name: &'static str, v: &str) -> Result<[u8; N], ReceiptError> {
            hex_decode_array::<N>(v).map_err(|error| ReceiptError::Field { name, error })
        }
        let files = match (w.format.as_str(), &w.files_sha256, &w.left_sha256, &w.file_limits) {
            (RECEIPT_FORMAT, None, None, None) => None,
            (RECEIPT_FORMAT_V2, Some(given), Some(left), Some(l)) => Some(FileDigests {
                limits: FsLimits { bytes: l.bytes, entries: l.entries, path_bytes: l.path_bytes, depth: l.depth, open_files: l.open_files },
                given: field("files_sha256", given)?,
                left: field("left_sha256", left)?,
            }),
            (RECEIPT_FORMAT | RECEIPT_FORMAT_V2, _, _, _) => return Err(ReceiptError::Json),
            _ => return Err(ReceiptError::UnknownFormat(w.format.clone())),
        };
        let outcome = match (&w.exit_code, &w.trap) {
            (Some(code), None) => Outcome::Exited(*code),
            (None, Some(name)) => Outcome::Trapped(
                TrapKind::from_name(name).ok_or_else(|| ReceiptError::UnknownTrap(name.clone()))?,
            ),
            _ => return Err(ReceiptError::Outcome),
        };
        Ok(Receipt {
            body: ReceiptBody {
                job_id: field("job_id", &w.job_id)?,
                module_sha256: field("module_sha256", &w.module_sha256)?,
                input_sha256: field("input_sha256", &w.input_sha256)?,
                stdout_sha256: field("stdout_sha256", &w.stdout_sha256)?,
                stderr_sha256: field("stderr_sha256", &w.stderr_sha256)?,
                outcome,
                fuel_used: w.fuel_used,
                limits: Limits {
                    fuel: w.limits.fuel,
                    memory_bytes: w.limits.memory_bytes,
                    output_bytes: w.limits.output_bytes,
                    deadline_ms: w.limits.deadline_ms,
                },
                wall_time_us: w.wall_time_us,
                files,
            },
            node_key: field("node_key", &w.node_key)?,
            signature: field("signature", &w.signature)?,
        })
    }
}

#[derive(Deserialize)]
struct FsLimitsWire {
    bytes: u64,
    entries: u64,
    path_bytes: u64,
    depth: u64,
    open_files: u64,
}

#[derive(Serialize, Deserialize)]
struct LimitsWire {
    fuel: u64,
    memory_bytes: u64,
    output_bytes: u64,
    deadline_ms: u64,
}

/// The JSON of a v1 receipt as written (`to_json` adds a v2 receipt's two fields).
#[derive(Serialize)]
struct ReceiptWire {
    format: String,
    job_id: String,
    module_sha256: String,
    input_sha256: String,
    stdout_sha256: String,
    stderr_sha256: String,
    exit_code: Option<u32>,
    trap: Option<String>,
    fuel_used: u64,
    limits: LimitsWire,
    wall_time_us: u64,
    node_key: String,
    signature: String,
}

/// The JSON of a receipt as read: a v2 receipt holds `files_sha256` and `left_sha256`, a v1
/// neither.
#[derive(Deserialize)]
struct ReceiptWireIn {
    format: String,
    job_id: String,
    module_sha256: String,
    input_sha256: String,
    stdout_sha256: String,
    stderr_sha256: String,
    files_sha256: Option<String>,
    left_sha256: Option<String>,
    file_limits: Option<FsLimitsWire>,
    exit_code: Option<u32>,
    trap: Option<String>,
    fuel_used: u64,
    limits: LimitsWire,
    wall_time_us: u64,
    node_key: String,
    signature: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ed25519_compact::KeyPair {
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]))
    }

    fn body() -> ReceiptBody {
        ReceiptBody {
            job_id: [1; 32],
            module_sha256: [2; 32],
            input_sha256: [3; 32],
            stdout_sha256: [4; 32],
            stderr_sha256: [5; 32],
            outcome: Outcome::Exited(3),
            fuel_used: 12345,
            limits: Limits::DEFAULT,
            wall_time_us: 99,
            files: None,
        }
    }

    #[test]
    fn a_receipt_of_a_job_with_files_is_v2_and_signs_both_digests() {
        let mut b = body();
        b.files = Some(FileDigests { limits: FsLimits::DEFAULT, given: [8; 32], left: [9; 32] });
        let r = Receipt::sign(b.clone(), &key());
        assert_eq!(r.signed_bytes().len(), SIGNED_LEN + V2_EXTRA);
        assert!(r.signed_bytes().starts_with(RECEIPT_DOMAIN_V2));
        let json = r.to_json();
        assert!(json.contains("\"format\":\"phase-receipt/v2\""), "{json}");
        assert!(json.contains(&format!("\"stderr_sha256\":\"{}\",\"files_sha256\":\"{}\",\"left_sha256\":\"{}\",\"file_limits\":{{\"bytes\":16777216,", "05".repeat(32), "08".repeat(32), "09".repeat(32))), "{json}");
        let back = Receipt::from_json(&json).unwrap();
        assert_eq!(back, r);
        back.verify_signature().unwrap();
        // Each digest is signed; a v2 receipt without them, or a v1 with them, is no receipt.
        for (from, to) in [("08".repeat(32), "0a".repeat(32)), ("09".repeat(32), "0a".repeat(32)), ("\"depth\":64".into(), "\"depth\":65".into())] {
            let forged = json.replacen(&from, &to, 1);
            assert_eq!(Receipt::from_json(&forged).unwrap().verify_signature(), Err(ReceiptError::BadSignature));
        }
        let v1_with_files = json.replace("phase-receipt/v2", "phase-receipt/v1");
        assert_eq!(Receipt::from_json(&v1_with_files), Err(ReceiptError::Json));
        let v1 = Receipt::sign(body(), &key()).to_json();
        assert!(!v1.contains("files_sha256") && !v1.contains("null,\"left"), "{v1}");
        let v2_without = v1.replace("phase-receipt/v1", "phase-receipt/v2");
        assert_eq!(Receipt::from_json(&v2_without), Err(ReceiptError::Json));
    }

    #[test]
    fn sign_verify_round_trip_through_json() {
        let r = Receipt::sign(body(), &key());
        assert_eq!(r.signed_bytes().len(), SIGNED_LEN);
        r.verify_signature().unwrap();
        let back = Receipt::from_json(&r.to_json()).unwrap();
        assert_eq!(back, r);
        back.verify_signature().unwrap();
        assert_eq!(back.to_json(), r.to_json());
    }

    #[test]
    fn every_field_is_covered_by_the_signature() {
        let r = Receipt::sign(body(), &key());
        let mutations: [fn(&mut Receipt); 10] = [
            |r| r.body.job_id[0] ^= 1,
            |r| r.body.module_sha256[31] ^= 1,
            |r| r.body.input_sha256[0] ^= 1,
            |r| r.body.stdout_sha256[0] ^= 1,
            |r| r.body.stderr_sha256[0] ^= 1,
            |r| r.body.outcome = Outcome::Exited(0),
            |r| r.body.outcome = Outcome::Trapped(TrapKind::OutOfFuel),
            |r| r.body.fuel_used += 1,
            |r| r.body.limits.memory_bytes += 1,
            |r| r.body.wall_time_us += 1,
        ];
        for (i, m) in mutations.iter().enumerate() {
            let mut t = r.clone();
            m(&mut t);
            assert_eq!(t.verify_signature(), Err(ReceiptError::BadSignature), "mutation {i}");
        }
        let mut t = r.clone();
        t.node_key = *ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([8; 32])).pk;
        assert!(t.verify_signature().is_err());
    }

    #[test]
    fn trap_codes_are_unique_and_round_trip() {
        for (kind, code, name) in TRAPS {
            assert_eq!(TrapKind::from_code(code), Some(kind));
            assert_eq!(TrapKind::from_name(name), Some(kind));
            assert_eq!(kind.code(), code);
        }
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        let good = Receipt::sign(body(), &key()).to_json();
        assert_eq!(Receipt::from_json("{"), Err(ReceiptError::Json));
        assert_eq!(Receipt::from_json("[]"), Err(ReceiptError::Json));
        let wrong_format = good.replace("phase-receipt/v1", "phase-receipt/v9");
        assert!(matches!(Receipt::from_json(&wrong_format), Err(ReceiptError::UnknownFormat(_))));
        let both = good.replace("\"trap\":null", "\"trap\":\"deadline\"");
        assert_eq!(Receipt::from_json(&both), Err(ReceiptError::Outcome));
        let multibyte = good.replacen("\"job_id\":\"01", "\"job_id\":\"é", 1);
        assert!(matches!(
            Receipt::from_json(&multibyte),
            Err(ReceiptError::Field { name: "job_id", .. })
        ));
    }
}
