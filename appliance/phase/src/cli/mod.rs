//! The command line (argh, docs/cli.md): flags and subcommands only. Each subcommand turns its
//! flags into the typed values of the component it runs (a `NodeConfig`, a job, a release) and
//! prints what came back; the logic lives in the components.

mod dirs;
mod fleet;
mod node;
mod receipt;
mod release;
mod run;

use std::fmt;
use std::path::{Path, PathBuf};

use argh::FromArgs;
use phase_core::encoding::hex_decode_array;

/// Exit code of `phase run` when the guest trapped instead of exiting.
pub const EXIT_TRAPPED: i32 = 125;
/// Exit code for errors of `phase` itself (bad file, invalid module, bad flags).
pub const EXIT_ERROR: i32 = 2;
/// Exit code of a verification that refused (a receipt, an answer, a manifest).
pub const EXIT_REFUSED: i32 = 1;

#[derive(FromArgs)]
/// Phase: a node of the Phase peer-to-peer compute and boot network.
pub struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Run(run::RunCmd),
    Node(node::NodeCmd),
    Keygen(receipt::KeygenCmd),
    Receipt(receipt::ReceiptCmd),
    Version(VersionCmd),
    Init(InitCmd),
    Initramfs(InitramfsCmd),
    Manifest(release::ManifestCmd),
    Publish(release::PublishCmd),
    Carry(release::CarryCmd),
    Fleet(fleet::FleetCmd),
}

#[derive(FromArgs)]
/// Run as PID 1 of the appliance (what `phase` does when the kernel starts it as /init).
#[argh(subcommand, name = "init")]
struct InitCmd {}

#[derive(FromArgs)]
/// Pack a directory tree into a cpio newc archive (an initramfs), with /dev/console.
#[argh(subcommand, name = "initramfs")]
struct InitramfsCmd {
    /// the tree to pack (owners and times are not kept: everything is root's, mtime 0)
    #[argh(option)]
    root: PathBuf,
    /// the archive to write (uncompressed)
    #[argh(option)]
    out: PathBuf,
    /// write this initrd (compressed or not) first, the tree as a second archive after it:
    /// the kernel unpacks both (e.g. trust keys added to a built image)
    #[argh(option)]
    after: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Print the version.
#[argh(subcommand, name = "version")]
struct VersionCmd {}

/// Why a command failed: one line, naming what (a flag, a file) and why.
pub struct Failure(String);

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Failure {
    pub fn new(why: impl fmt::Display) -> Failure {
        Failure(why.to_string())
    }
}

/// A command's outcome: the line to print, or why it failed.
type Outcome = Result<String, Failure>;

/// Prints a failure as `phase: <what>: <why>` (one write; a closed stderr is no panic) and
/// gives the exit code for it.
fn fail(what: &str, e: impl fmt::Display, code: i32) -> i32 {
    use std::io::Write;
    let line = match what {
        "" => format!("phase: {e}\n"),
        _ => format!("phase: {what}: {e}\n"),
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
    code
}

/// Prints a command's line (exit 0), or its failure as `fail` does.
fn report(outcome: Outcome, what: &str, code: i32) -> i32 {
    match outcome {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => fail(what, e, code),
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(format!("{what} {}: {e}", path.display())))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

/// The one reader of key flags (`--trust`, `--key`): hex Ed25519 public keys, each bad one
/// named.
fn keys(flag: &str, values: &[String]) -> Result<Vec<[u8; 32]>, Failure> {
    values.iter().map(|k| hex_decode_array::<32>(k).map_err(|e| Failure(format!("{flag} {k}: {e}")))).collect()
}

/// Parses arguments and runs the command; returns the process exit code.
pub fn main() -> i32 {
    crate::log::init();
    // The kernel starts /init with no useful arguments: as PID 1, be init whatever argv says.
    if std::process::id() == 1 {
        crate::init::main();
    }
    let cli: Cli = argh::from_env();
    match cli.command {
        Command::Run(c) => run::run(c),
        Command::Node(c) => node::node(c),
        Command::Keygen(c) => receipt::keygen(c),
        Command::Receipt(c) => receipt::receipt(c),
        Command::Init(_) => crate::init::main(),
        Command::Manifest(c) => release::manifest(c),
        Command::Initramfs(c) => initramfs(c),
        Command::Publish(c) => release::publish(c),
        Command::Carry(c) => release::carry(c),
        Command::Fleet(c) => fleet::fleet(c),
        Command::Version(_) => {
            println!("phase {}", env!("CARGO_PKG_VERSION"));
            0
        }
    }
}

fn initramfs(c: InitramfsCmd) -> i32 {
    let outcome = (|| {
        let bytes = match &c.after {
            Some(base) => crate::image::pack_tree_after(&c.root, read(base, "initrd")?)?,
            None => crate::image::pack_tree(&c.root)?,
        };
        write(&c.out, &bytes)?;
        Ok(format!("{} bytes", bytes.len()))
    })();
    report(outcome, "", EXIT_ERROR)
}

/// The SHA-256 of the operator token in `path` (its first line, trimmed; at least 16 bytes).
pub fn operator_token_hash(path: &std::path::Path) -> Result<[u8; 32], Failure> {
    let token = operator_token(path)?;
    Ok(phase_core::sha256(token.as_bytes()))
}

/// The operator token in `path`: its first line, trimmed, at least 16 bytes.
pub fn operator_token(path: &std::path::Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 {
        return Err(Failure::new(format!("{}: an operator token is at least 16 characters on the first line", path.display())));
    }
    Ok(token)
}
