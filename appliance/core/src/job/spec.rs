//! A job's identity: what runs (module, input, args, env) under which limits. The job id is
//! SHA-256 over fixed-order canonical bytes, so a client can recompute it and a receipt that
//! names it commits to everything that could change the result.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::Digest;

/// Domain separation for job ids (see docs/formats.md).
pub const JOB_DOMAIN: &[u8] = b"phase-job/v1\n";

/// Resource limits of one job. Every limit has a default and a hard maximum; a node may
/// configure lower maxima of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel budget (wasmi fuel: roughly one unit per executed instruction).
    pub fuel: u64,
    /// Cap on linear memory, in bytes.
    pub memory_bytes: u64,
    /// Cap on captured stdout + stderr together, in bytes.
    pub output_bytes: u64,
    /// Wall-clock deadline in milliseconds. The only limit whose outcome depends on the node.
    pub deadline_ms: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        fuel: 1_000_000_000,
        memory_bytes: 64 << 20,
        output_bytes: 1 << 20,
        deadline_ms: 10_000,
    };
    pub const MAX: Limits = Limits {
        fuel: 1_000_000_000_000,
        memory_bytes: 1 << 30,
        output_bytes: 16 << 20,
        deadline_ms: 300_000,
    };
    pub const MIN: Limits = Limits { fuel: 1, memory_bytes: 0, output_bytes: 0, deadline_ms: 1 };

    /// Fills unset fields from `defaults` and checks each value against `MIN` and `max`.
    pub fn resolve(
        requested: &RequestedLimits,
        defaults: &Limits,
        max: &Limits,
    ) -> Result<Limits, LimitError> {
        let pick = |name: &'static str, value: Option<u64>, default: u64, min: u64, max: u64| {
            let value = value.unwrap_or(default.min(max));
            if value < min {
                Err(LimitError { name, value, bound: min, above: false })
            } else if value > max {
                Err(LimitError { name, value, bound: max, above: true })
            } else {
                Ok(value)
            }
        };
        Ok(Limits {
            fuel: pick("fuel", requested.fuel, defaults.fuel, Self::MIN.fuel, max.fuel)?,
            memory_bytes: pick(
                "memory_bytes",
                requested.memory_bytes,
                defaults.memory_bytes,
                Self::MIN.memory_bytes,
                max.memory_bytes,
            )?,
            output_bytes: pick(
                "output_bytes",
                requested.output_bytes,
                defaults.output_bytes,
                Self::MIN.output_bytes,
                max.output_bytes,
            )?,
            deadline_ms: pick(
                "deadline_ms",
                requested.deadline_ms,
                defaults.deadline_ms,
                Self::MIN.deadline_ms,
                max.deadline_ms,
            )?,
        })
    }

    /// `self` with every field no larger than `cap`'s.
    pub fn min(&self, cap: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.min(cap.fuel),
            memory_bytes: self.memory_bytes.min(cap.memory_bytes),
            output_bytes: self.output_bytes.min(cap.output_bytes),
            deadline_ms: self.deadline_ms.min(cap.deadline_ms),
        }
    }

    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        for v in [self.fuel, self.memory_bytes, self.output_bytes, self.deadline_ms] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Limits as a client asks for them: unset fields take the node's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestedLimits {
    pub fuel: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub output_bytes: Option<u64>,
    pub deadline_ms: Option<u64>,
}

/// A limit outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    pub name: &'static str,
    pub value: u64,
    pub bound: u64,
    pub above: bool,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rel = if self.above { "above the maximum" } else { "below the minimum" };
        write!(f, "limit {} = {} is {rel} {}", self.name, self.value, self.bound)
    }
}
impl core::error::Error for LimitError {}


/// Caps on the shape of a job's arguments and environment.
pub const MAX_ARGS: usize = 256;
pub const MAX_ENV: usize = 256;
/// Total bytes of all args plus all env entries.
pub const MAX_ARGS_ENV_BYTES: usize = 64 * 1024;

/// Why a job's args or env were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    TooManyArgs(usize),
    TooManyEnv(usize),
    ArgsEnvTooLarge(usize),
    /// Args and env become C strings in the guest.
    NulByte { what: &'static str, index: usize },
    /// An env entry must be `KEY=VALUE` with a non-empty key.
    EnvNotKeyValue { index: usize },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::TooManyArgs(n) => write!(f, "{n} args (at most {MAX_ARGS})"),
            SpecError::TooManyEnv(n) => write!(f, "{n} env entries (at most {MAX_ENV})"),
            SpecError::ArgsEnvTooLarge(n) => {
                write!(f, "args and env are {n} bytes (at most {MAX_ARGS_ENV_BYTES})")
            }
            SpecError::NulByte { what, index } => write!(f, "{what}[{index}] contains a NUL byte"),
            SpecError::EnvNotKeyValue { index } => write!(f, "env[{index}] is not KEY=VALUE"),
        }
    }
}
impl core::error::Error for SpecError {}


/// Everything that determines a job's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub module_sha256: Digest,
    pub input_sha256: Digest,
    pub args: Vec<String>,
    /// `KEY=VALUE` entries, in the order the guest sees them.
    pub env: Vec<String>,
    pub limits: Limits,
    /// The trees the job is given and their limits; a job without files has none (and the
    /// job id of a job made before files existed).
    pub files: Option<crate::job::files::Files>,
}

impl JobSpec {
    /// Checks args and env against the caps and WASI's C-string rules.
    pub fn new(
        module_sha256: Digest,
        input_sha256: Digest,
        args: Vec<String>,
        env: Vec<String>,
        limits: Limits,
    ) -> Result<JobSpec, SpecError> {
        if args.len() > MAX_ARGS {
            return Err(SpecError::TooManyArgs(args.len()));
        }
        if env.len() > MAX_ENV {
            return Err(SpecError::TooManyEnv(env.len()));
        }
        let total: usize = args.iter().chain(env.iter()).map(|s| s.len()).sum();
        if total > MAX_ARGS_ENV_BYTES {
            return Err(SpecError::ArgsEnvTooLarge(total));
        }
        if let Some(index) = args.iter().position(|a| a.contains('\0')) {
            return Err(SpecError::NulByte { what: "args", index });
        }
        for (index, e) in env.iter().enumerate() {
            if e.contains('\0') {
                return Err(SpecError::NulByte { what: "env", index });
            }
            match e.find('=') {
                Some(eq) if eq > 0 => {}
                _ => return Err(SpecError::EnvNotKeyValue { index }),
            }
        }
        Ok(JobSpec { module_sha256, input_sha256, args, env, limits, files: None })
    }

    /// The canonical bytes hashed into the job id (docs/formats.md, "Job id").
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + MAX_ARGS_ENV_BYTES.min(1024));
        out.extend_from_slice(JOB_DOMAIN);
        out.extend_from_slice(&self.module_sha256);
        out.extend_from_slice(&self.input_sha256);
        for list in [&self.args, &self.env] {
            out.extend_from_slice(&(list.len() as u32).to_be_bytes());
            for item in list.iter() {
                out.extend_from_slice(&(item.len() as u32).to_be_bytes());
                out.extend_from_slice(item.as_bytes());
            }
        }
        self.limits.write_canonical(&mut out);
        // Last and only when present: every field before it has a fixed or prefixed length.
        if let Some(files) = &self.files {
            out.extend_from_slice(&files.digest());
        }
        out
    }

    /// This spec with `files`.
    pub fn with_files(mut self, files: crate::job::files::Files) -> JobSpec {
        self.files = Some(files);
        self
    }

    pub fn job_id(&self) -> Digest {
        crate::sha256(&self.canonical_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn resolve_fills_defaults_and_rejects_out_of_range() {
        let l = Limits::resolve(&RequestedLimits::default(), &Limits::DEFAULT, &Limits::MAX);
        assert_eq!(l, Ok(Limits::DEFAULT));
        let req = RequestedLimits { fuel: Some(Limits::MAX.fuel + 1), ..Default::default() };
        let err = Limits::resolve(&req, &Limits::DEFAULT, &Limits::MAX).unwrap_err();
        assert_eq!(err.name, "fuel");
        assert!(err.above);
        let req = RequestedLimits { deadline_ms: Some(0), ..Default::default() };
        assert_eq!(
            Limits::resolve(&req, &Limits::DEFAULT, &Limits::MAX).unwrap_err().name,
            "deadline_ms"
        );
        // A node maximum below the default wins over the default.
        let small = Limits { fuel: 10, ..Limits::MAX };
        assert_eq!(
            Limits::resolve(&RequestedLimits::default(), &Limits::DEFAULT, &small).unwrap().fuel,
            10
        );
    }

    #[test]
    fn spec_rejects_bad_args_and_env() {
        let mk = |args: Vec<&str>, env: Vec<&str>| {
            JobSpec::new(
                [0; 32],
                [0; 32],
                args.into_iter().map(|s| s.to_string()).collect(),
                env.into_iter().map(|s| s.to_string()).collect(),
                Limits::DEFAULT,
            )
        };
        assert!(mk(vec!["a"], vec!["K=V", "E="]).is_ok());
        assert_eq!(mk(vec!["a\0"], vec![]), Err(SpecError::NulByte { what: "args", index: 0 }));
        assert_eq!(mk(vec![], vec!["=V"]), Err(SpecError::EnvNotKeyValue { index: 0 }));
        assert_eq!(mk(vec![], vec!["K"]), Err(SpecError::EnvNotKeyValue { index: 0 }));
        let many: Vec<&str> = vec!["x"; MAX_ARGS + 1];
        assert_eq!(mk(many, vec![]), Err(SpecError::TooManyArgs(MAX_ARGS + 1)));
    }

    #[test]
    fn job_id_depends_on_every_field() {
        let base =
            JobSpec::new([1; 32], [2; 32], vec!["a".into()], vec!["K=V".into()], Limits::DEFAULT)
                .unwrap();
        let id = base.job_id();
        let mut variants = vec![];
        let mut s = base.clone();
        s.module_sha256[0] ^= 1;
        variants.push(s);
        let mut s = base.clone();
        s.input_sha256[0] ^= 1;
        variants.push(s);
        let mut s = base.clone();
        s.args = vec!["b".into()];
        variants.push(s);
        // Moving a string between args and env must change the id (length-prefixed lists).
        let mut s = base.clone();
        s.args = vec![];
        s.env = vec!["a".into(), "K=V".into()];
        variants.push(s);
        let mut s = base.clone();
        s.limits.deadline_ms += 1;
        variants.push(s);
        // Files, even empty ones, are part of the id.
        use crate::job::files::{Files, FsLimits};
        variants.push(base.clone().with_files(Files::new(vec![], FsLimits::DEFAULT).unwrap()));
        for v in variants {
            assert_ne!(v.job_id(), id, "{v:?}");
        }
    }
}
