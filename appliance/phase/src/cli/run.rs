//! `phase run`: one job, here, without a node: its output, exit code and receipt.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use argh::FromArgs;
use phase_core::job::answer::Answer;
use phase_core::job::files::{Files, FsLimits, RequestedFsLimits};
use phase_core::job::{JobSpec, RequestedLimits};
use phase_core::job::receipt::{Outcome, Receipt};
use phase_core::{sha256, Limits};

use super::dirs::{self, DirArg, DirError};
use super::{read, Failure, EXIT_ERROR, EXIT_TRAPPED};
use crate::data_dir::DataDir;
use crate::engine::{compile_cost, Blobs, Engine, Job};
use crate::identity::NodeIdentity;

#[derive(FromArgs)]
/// Run a WASM module locally: prints its stdout, exits with its exit code (125 if it trapped).
#[argh(subcommand, name = "run")]
pub struct RunCmd {
    /// the module (.wasm)
    #[argh(positional)]
    module: PathBuf,
    /// read the job input from this file instead of stdin
    #[argh(option)]
    input: Option<PathBuf>,
    /// an argument for the guest (repeatable)
    #[argh(option)]
    arg: Vec<String>,
    /// an environment entry KEY=VALUE for the guest (repeatable)
    #[argh(option)]
    env: Vec<String>,
    /// a host directory the guest gets as a preopened directory, HOST or HOST::GUEST
    /// (repeatable): read into the job's files before it runs, and what the job left there
    /// written back after
    #[argh(option)]
    dir: Vec<String>,
    /// file limit of the --dir trees: bytes of all regular files (default 16 MiB)
    #[argh(option)]
    files_bytes: Option<u64>,
    /// file limit: entries, each mount's root included (default 4096)
    #[argh(option)]
    files_entries: Option<u64>,
    /// file limit: bytes of a path (default 1024)
    #[argh(option)]
    files_path_bytes: Option<u64>,
    /// file limit: directories below a mount's root (default 64)
    #[argh(option)]
    files_depth: Option<u64>,
    /// file limit: descriptors open at once, stdio and preopens included (default 128)
    #[argh(option)]
    files_open_files: Option<u64>,
    /// fuel budget (about one unit per wasm instruction)
    #[argh(option)]
    fuel: Option<u64>,
    /// linear memory cap in bytes
    #[argh(option)]
    memory_bytes: Option<u64>,
    /// cap on stdout + stderr together, in bytes
    #[argh(option)]
    output_bytes: Option<u64>,
    /// wall-clock deadline in milliseconds
    #[argh(option)]
    deadline_ms: Option<u64>,
    /// write the signed receipt (JSON) to this file
    #[argh(option)]
    receipt: Option<PathBuf>,
    /// sign with the key in this data dir (default: a throwaway key)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// print the answer as POST /v1/jobs gives it (JSON with output, status and receipt)
    /// instead of the guest's output; exits 0 whenever the job ran
    #[argh(switch)]
    json: bool,
}

pub fn run(c: RunCmd) -> i32 {
    run_job(c).unwrap_or_else(|e| super::fail("", e, EXIT_ERROR))
}

fn run_job(c: RunCmd) -> Result<i32, Failure> {
    let bytes = read(&c.module, "module")?;
    let input = match &c.input {
        Some(p) => read(p, "input")?,
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| Failure::new(format!("stdin: {e}")))?;
            buf
        }
    };
    let identity = match &c.data_dir {
        Some(d) => NodeIdentity::load_or_create(&DataDir::new(d))?,
        None => NodeIdentity::ephemeral(),
    };
    // Modules of any size this machine can compile: what compiling one may take, read from
    // its structure, must fit in the memory available now.
    let path = c.module.display();
    let bound = compile_cost::compile_bound(&bytes).map_err(|e| Failure::new(format!("{path}: invalid wasm module: {e}")))?;
    fits(bound, bytes.len() as u64, crate::sys::memory_available()).map_err(|why| Failure::new(format!("{path}: {why}")))?;
    let engine = Engine::any_size();
    let module = engine.compile(&bytes).map_err(|e| Failure::new(format!("{path}: {e}")))?;
    let requested = RequestedLimits { fuel: c.fuel, memory_bytes: c.memory_bytes, output_bytes: c.output_bytes, deadline_ms: c.deadline_ms };
    let limits = Limits::resolve(&requested, &Limits::DEFAULT, &Limits::MAX)?;
    let mut spec = JobSpec::new(module.sha256, sha256(&input), c.arg, c.env, limits)?;
    let dirs: Vec<DirArg> = c.dir.iter().map(|d| DirArg::parse(d)).collect();
    let mut blobs = Blobs::new();
    let asked = RequestedFsLimits {
        bytes: c.files_bytes,
        entries: c.files_entries,
        path_bytes: c.files_path_bytes,
        depth: c.files_depth,
        open_files: c.files_open_files,
    };
    if dirs.is_empty() && asked != RequestedFsLimits::default() {
        return Err(Failure::new("--files-* limits are the limits of --dir trees: give a --dir"));
    }
    if !dirs.is_empty() {
        let fs_limits = FsLimits::resolve(&asked, &FsLimits::MAX).map_err(DirError::Files)?;
        let mounts = dirs.iter().map(|d| dirs::read_in(d, &fs_limits, &mut blobs)).collect::<Result<Vec<_>, _>>()?;
        spec = spec.with_files(Files::new(mounts, fs_limits).map_err(DirError::Files)?);
    }
    let job = Job { spec, module, input: Arc::from(input), blobs, progress: Default::default() };
    let ex = engine.run(&job);
    if let Some(why) = &ex.host_failure {
        return Err(Failure::new(format!("this machine failed the job, no receipt signed: {why}")));
    }
    let receipt = Receipt::sign(ex.receipt_body(&job.spec), identity.key_pair());
    if let Some(path) = &c.receipt {
        std::fs::write(path, receipt.to_json() + "\n").map_err(|e| Failure::new(format!("receipt {}: {e}", path.display())))?;
    }
    let outcome = ex.outcome;
    if let Some(left) = &ex.left {
        for (index, d) in dirs.iter().enumerate() {
            dirs::write_back(d, index as u32, left)?;
        }
    }
    if c.json {
        let mut answer = Answer::new(receipt, ex.stdout, ex.stderr, ex.detail);
        if let Some(left) = ex.left {
            answer = answer.with_files(left);
        }
        println!("{}", answer.to_json());
        return Ok(0);
    }
    let _ = std::io::stdout().write_all(&ex.stdout);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(&ex.stderr);
    Ok(match outcome {
        Outcome::Exited(code) => code.min(255) as i32,
        Outcome::Trapped(kind) => {
            let detail = ex.detail.map(|d| format!(" ({d})")).unwrap_or_default();
            let _ = std::io::stderr().write_all(format!("phase: job trapped: {kind}{detail}\n").as_bytes());
            EXIT_TRAPPED
        }
    })
}

/// Whether a module of `len` bytes whose compilation may take `bound` fits in the memory
/// available (`None`: not known, so not judged), or why not.
fn fits(bound: u64, len: u64, available: Option<u64>) -> Result<(), String> {
    match available {
        Some(free) if bound.saturating_add(len) > free => Err(format!("compiling it may take {bound} bytes; this machine has {free} available")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::fits;

    #[test]
    fn a_module_is_run_only_if_its_compilation_fits_the_memory_available() {
        assert_eq!(fits(900, 100, Some(1000)), Ok(()));
        assert_eq!(fits(901, 100, Some(1000)).unwrap_err(), "compiling it may take 901 bytes; this machine has 1000 available");
        assert_eq!(fits(u64::MAX, u64::MAX, None), Ok(()), "unknown: not judged");
    }
}
