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

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use miniserde::json::{self, Number, Object, Value};

use crate::encoding::{base64_decode, hex_decode_array, hex_encode};
use crate::job::{JobSpec, RequestedLimits};
use crate::job::receipt::{Outcome, Receipt, TrapKind};
use crate::{sha256, Digest};

/// A parsed job answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub job_id: Digest,
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub fuel_used: u64,
    pub replayed: bool,
    pub receipt: Receipt,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// Not a JSON object of the answer's shape; names the field.
    Shape(&'static str),
    Receipt(crate::job::receipt::ReceiptError),
    /// Signed by another key than the one expected.
    Signer { got: String },
    /// The receipt is for another module, input, limits or job; names which.
    OtherJob(&'static str),
    /// The answer's bodies or figures are not what the receipt signed; names which.
    NotSigned(&'static str),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Shape(field) => write!(f, "the answer's {field} is missing or malformed"),
            AnswerError::Receipt(e) => write!(f, "receipt: {e}"),
            AnswerError::Signer { got } => write!(f, "receipt signed by node key {got}, not the expected one"),
            AnswerError::OtherJob(what) => write!(f, "the receipt is for another {what}"),
            AnswerError::NotSigned(what) => write!(f, "the answer's {what} is not what the receipt signs"),
        }
    }
}

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

impl Answer {
    /// Parses the JSON of a job answer (extra fields, such as `executor`, are ignored).
    pub fn parse(text: &str) -> Result<Answer, AnswerError> {
        let Ok(Value::Object(top)) = json::from_str::<Value>(text) else { return Err(AnswerError::Shape("JSON object")) };
        let job_id = match field(&top, "job_id")? {
            Value::String(s) => hex_decode_array(s).map_err(|_| AnswerError::Shape("job_id"))?,
            _ => return Err(AnswerError::Shape("job_id")),
        };
        let exit_code = uint(&top, "exit_code")?;
        let trap = match field(&top, "trap")? {
            Value::Null => None,
            Value::String(s) => Some(TrapKind::from_name(s).ok_or(AnswerError::Shape("trap"))?),
            _ => return Err(AnswerError::Shape("trap")),
        };
        let outcome = match (exit_code, trap) {
            (Some(code), None) => Outcome::Exited(u32::try_from(code).map_err(|_| AnswerError::Shape("exit_code"))?),
            (None, Some(kind)) => Outcome::Trapped(kind),
            _ => return Err(AnswerError::Shape("exit_code/trap")),
        };
        let replayed = matches!(top.get("replayed"), Some(Value::Bool(true)));
        let receipt = Receipt::from_json(&json::to_string(field(&top, "receipt")?)).map_err(AnswerError::Receipt)?;
        Ok(Answer {
            job_id,
            outcome,
            stdout: bytes(&top, "stdout")?,
            stderr: bytes(&top, "stderr")?,
            fuel_used: uint(&top, "fuel_used")?.ok_or(AnswerError::Shape("fuel_used"))?,
            replayed,
            receipt,
        })
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
        let spec = JobSpec::new(b.module_sha256, b.input_sha256, asked.args.to_vec(), asked.env.to_vec(), b.limits)
            .map_err(|_| AnswerError::OtherJob("args or env"))?;
        if spec.job_id() != b.job_id {
            return Err(AnswerError::OtherJob("job (args, env or limits differ)"));
        }
        if self.job_id != b.job_id {
            return Err(AnswerError::NotSigned("job_id"));
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

    /// What honest executors of one job agree on (job id, output hashes, outcome, fuel).
    pub fn fingerprint(&self) -> (Digest, Digest, Digest, Outcome, u64) {
        let b = &self.receipt.body;
        (b.job_id, b.stdout_sha256, b.stderr_sha256, b.outcome, b.fuel_used)
    }

    /// The node key that signed it.
    pub fn signer(&self) -> [u8; 32] {
        self.receipt.node_key
    }
}

/// The job answer JSON for a verified execution (what a node sends; `Answer::parse` reads it).
pub fn to_json(receipt: &Receipt, stdout: &[u8], stderr: &[u8], detail: Option<&str>, replayed: bool) -> String {
    use alloc::format;
    let s = |v: &str| json::to_string(&v.to_string());
    let b = &receipt.body;
    let (exit_code, trap) = match b.outcome {
        Outcome::Exited(code) => (code.to_string(), "null".to_string()),
        Outcome::Trapped(kind) => ("null".to_string(), s(kind.name())),
    };
    format!(
        "{{\"job_id\":\"{}\",\"exit_code\":{exit_code},\"trap\":{trap},\"trap_detail\":{},\
         \"stdout\":\"{}\",\"stderr\":\"{}\",\"fuel_used\":{},\"wall_time_us\":{},\
         \"replayed\":{replayed},\"receipt\":{}}}",
        hex_encode(&b.job_id),
        detail.map(s).unwrap_or_else(|| "null".into()),
        crate::encoding::base64_encode(stdout),
        crate::encoding::base64_encode(stderr),
        b.fuel_used,
        b.wall_time_us,
        receipt.to_json()
    )
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
        };
        let r = Receipt::sign(body, &kp);
        (to_json(&r, stdout, b"", None, false), r)
    }

    fn asked<'a>(args: &'a [String], limits: &'a RequestedLimits, module: &'a Digest, input: &'a Digest) -> Asked<'a> {
        Asked { module_sha256: module, input_sha256: input, args, env: &[], limits, signer: None }
    }

    #[test]
    fn an_honest_answer_verifies_and_every_lie_is_named() {
        let (module, input) = ([1u8; 32], sha256(b"in"));
        let args = vec!["a".to_string()];
        let limits = RequestedLimits { fuel: Some(Limits::DEFAULT.fuel), ..Default::default() };
        let (json, r) = signed(&["a"], b"out", 9);
        let a = Answer::parse(&json).unwrap();
        a.verify(&asked(&args, &limits, &module, &input)).unwrap();
        assert_eq!(Answer::parse(&json.replacen('{', "{\"executor\":\"x\",", 1)).unwrap(), a);

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
}
