//! Command line (argh). Each subcommand wires components; the logic lives in them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use argh::FromArgs;
use phase_core::encoding::{hex_decode_array, hex_encode};
use phase_core::job::{JobSpec, RequestedLimits};
use phase_core::job::receipt::{Outcome, Receipt};
use phase_core::{sha256, Limits};

use crate::engine::{Engine, Job, DEFAULT_MAX_MODULE_BYTES};
use crate::identity::{NodeIdentity, KEY_FILE};
use crate::memory::MemoryPlan;
use crate::node::{Node, PeerFault};
use crate::service::{NodeConfig, NodeService};
use crate::workers::Workers;

/// Exit code of `phase run` when the guest trapped instead of exiting.
pub const EXIT_TRAPPED: i32 = 125;
/// Exit code for errors of `phase` itself (bad file, invalid module, bad receipt).
pub const EXIT_ERROR: i32 = 2;

#[derive(FromArgs)]
/// Phase: a node of the Phase peer-to-peer compute and boot network.
pub struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Run(RunCmd),
    Node(NodeCmd),
    Keygen(KeygenCmd),
    Receipt(ReceiptCmd),
    Version(VersionCmd),
    Init(InitCmd),
    Initramfs(InitramfsCmd),
    Manifest(ManifestCmd),
    Publish(PublishCmd),
    Carry(CarryCmd),
}

#[derive(FromArgs)]
/// Verify a published release and write what boots it and serves it on: OUT/kernel, OUT/initrd
/// (its initramfs with the release and the trusted keys carried in a second archive) and
/// OUT/cmdline (the manifest's command line). A boot stick made with `scripts/build-usb
/// --release` holds these.
#[argh(subcommand, name = "carry")]
struct CarryCmd {
    /// the boot store (as `phase publish` lays it out)
    #[argh(option)]
    store: PathBuf,
    /// channel (default stable)
    #[argh(option, default = "String::from(\"stable\")")]
    channel: String,
    /// x86_64 or aarch64 (amd64, arm64)
    #[argh(option)]
    arch: String,
    /// a publisher key (hex) that must have signed the release; the booted machine trusts it
    /// (repeatable, at least one)
    #[argh(option)]
    trust: Vec<String>,
    /// the directory to write kernel, initrd and cmdline into
    #[argh(option)]
    out: PathBuf,
    /// also carry the network boot programs for --arch from this directory (x86_64:
    /// undionly.kpxe, snponly.efi; aarch64: grubaa64.efi; scripts/build-pxe-programs), so the
    /// booted machine can answer PXE clients
    #[argh(option)]
    pxe_programs: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Sign a kernel + initramfs and lay them out in a boot store for `phase node --boot-store`
/// (STORE/<channel>/<arch>/); with --carry, also write an initrd that boots and serves them.
#[argh(subcommand, name = "publish")]
struct PublishCmd {
    /// the publisher key file
    #[argh(option)]
    key: PathBuf,
    /// channel (default stable)
    #[argh(option, default = "String::from(\"stable\")")]
    channel: String,
    /// x86_64 or aarch64 (amd64, arm64)
    #[argh(option)]
    arch: String,
    /// the release version; appliances refuse versions below the one they run
    #[argh(option)]
    version: u64,
    /// the kernel image
    #[argh(option)]
    kernel: PathBuf,
    /// the initramfs
    #[argh(option)]
    initramfs: PathBuf,
    /// kernel command line for the booted kernel
    #[argh(option, default = "String::new()")]
    cmdline: String,
    /// days until the manifest expires (default 30)
    #[argh(option, default = "30")]
    valid_days: u64,
    /// creation time, unix seconds (default now)
    #[argh(option)]
    created_at: Option<u64>,
    /// expiry time, unix seconds (default created + valid days)
    #[argh(option)]
    expires_at: Option<u64>,
    /// the boot store directory
    #[argh(option)]
    store: PathBuf,
    /// also write this initrd: the initramfs with the release carried in a second archive, so
    /// a machine booted from it (USB stick, QEMU -initrd) serves the release
    #[argh(option)]
    carry: Option<PathBuf>,
    /// a publisher key (hex) the carried initrd trusts (repeatable): written to its
    /// /etc/phase/trust, so the machine verifies what it carries and fetches without phase.trust=
    #[argh(option)]
    trust: Vec<String>,
}

#[derive(FromArgs)]
/// Boot manifests: publisher keys, signing, verification (docs/formats.md).
#[argh(subcommand, name = "manifest")]
struct ManifestCmd {
    #[argh(subcommand)]
    command: ManifestSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ManifestSub {
    Keygen(ManifestKeygen),
    Sign(ManifestSign),
    Verify(ManifestVerify),
}

#[derive(FromArgs)]
/// Create a publisher key (hex Ed25519 seed, mode 0600; never overwrites) and print its public key.
#[argh(subcommand, name = "keygen")]
struct ManifestKeygen {
    /// the key file to create
    #[argh(option)]
    out: PathBuf,
}

#[derive(FromArgs)]
/// Sign a boot manifest for a kernel and an initramfs.
#[argh(subcommand, name = "sign")]
struct ManifestSign {
    /// the publisher key file
    #[argh(option)]
    key: PathBuf,
    /// channel, e.g. stable
    #[argh(option)]
    channel: String,
    /// x86_64 or aarch64 (amd64, arm64)
    #[argh(option)]
    arch: String,
    /// the release version; appliances refuse versions below the one they run
    #[argh(option)]
    version: u64,
    /// the kernel image
    #[argh(option)]
    kernel: PathBuf,
    /// the initramfs
    #[argh(option)]
    initramfs: PathBuf,
    /// kernel command line for the booted kernel
    #[argh(option, default = "String::new()")]
    cmdline: String,
    /// days until the manifest expires (default 30)
    #[argh(option, default = "30")]
    valid_days: u64,
    /// where to write the manifest (JSON)
    #[argh(option)]
    out: PathBuf,
}

#[derive(FromArgs)]
/// Verify a boot manifest: exit 0 only if it is signed by a trusted key, current (judged at
/// the time floor if the clock is behind it), for this arch, not below the version floor, and
/// every given artifact matches.
#[argh(subcommand, name = "verify")]
struct ManifestVerify {
    /// the manifest (JSON)
    #[argh(positional)]
    manifest: PathBuf,
    /// a trusted publisher public key, hex (repeatable)
    #[argh(option)]
    trust: Vec<String>,
    /// the kernel to check against the manifest
    #[argh(option)]
    kernel: Option<PathBuf>,
    /// the initramfs to check against the manifest
    #[argh(option)]
    initramfs: Option<PathBuf>,
    /// the arch to boot (default: this machine's)
    #[argh(option)]
    arch: Option<String>,
    /// the version floor: lower versions are a rollback (what this machine booted or verified)
    #[argh(option)]
    floor: Option<u64>,
    /// the time floor, unix seconds: a manifest that expired before it is refused whatever
    /// the clock says (default: this build's time)
    #[argh(option)]
    time_floor: Option<u64>,
}


#[derive(FromArgs)]
/// Run a WASM module locally: prints its stdout, exits with its exit code (125 if it trapped).
#[argh(subcommand, name = "run")]
struct RunCmd {
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

#[derive(FromArgs)]
/// Run the node: the job API over HTTP.
#[argh(subcommand, name = "node")]
struct NodeCmd {
    /// HTTP listen address (default 127.0.0.1:8700; port 0 picks a free one)
    #[argh(option, default = "String::from(\"127.0.0.1:8700\")")]
    http: String,
    /// keep the node key and uploaded modules here (default: in RAM only)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// jobs that may run at once (default: CPU count)
    #[argh(option)]
    max_concurrent: Option<usize>,
    /// memory the node may commit to requests, jobs and caches, in bytes (default: three
    /// quarters of the memory available at start); limits below derive from it
    #[argh(option)]
    memory_budget: Option<u64>,
    /// bytes of job answers kept, half for idempotency keys and half for asynchronous jobs
    /// (default: a sixteenth of the budget)
    #[argh(option)]
    max_result_bytes: Option<u64>,
    /// asynchronous jobs waiting at most (default 64; beyond: 429 queue_full)
    #[argh(option)]
    max_queued: Option<usize>,
    /// seconds an asynchronous job's answer is kept after it ends (default 3600)
    #[argh(option)]
    result_ttl: Option<u64>,
    /// largest module accepted, in bytes (default: pool/40, at most 16 MiB; hard maximum 64 MiB)
    #[argh(option)]
    max_module_bytes: Option<usize>,
    /// largest job input accepted, in bytes (default: pool/8, at most 16 MiB; hard maximum 64 MiB)
    #[argh(option)]
    max_input_bytes: Option<usize>,
    /// highest fuel a job may ask for
    #[argh(option)]
    max_fuel: Option<u64>,
    /// highest memory cap a job may ask for, in bytes (default: 3/8 of the pool, at most 1 GiB)
    #[argh(option)]
    max_memory_bytes: Option<u64>,
    /// highest output cap a job may ask for, in bytes (default: pool/16, at most 16 MiB)
    #[argh(option)]
    max_output_bytes: Option<u64>,
    /// open HTTP connections at most (default: one per MiB of the budget, 64 to 1024)
    #[argh(option)]
    max_connections: Option<usize>,
    /// open HTTP connections per source address at most (default: an eighth of the total, at least 16)
    #[argh(option)]
    max_connections_per_ip: Option<usize>,
    /// established peer connections at most (default: one per 2 MiB of the budget, 16 to 512)
    #[argh(option)]
    max_peer_connections: Option<u32>,
    /// longest deadline a job may ask for, in milliseconds
    #[argh(option)]
    max_deadline_ms: Option<u64>,
    /// cap on uploaded module bytes kept in the data dir (default 1 GiB)
    #[argh(option)]
    max_disk_module_bytes: Option<u64>,
    /// fault injection for tests: exit-after-job (exit once a job's answer is sent);
    /// peer-wrong-key, peer-garbage, peer-stall, peer-lie, peer-forge-stdout, peer-other-job,
    /// peer-cancelled (misbehave as an executor for peers);
    /// peer-bad-load (send peers oversized load records); peer-big-frames (job requests to
    /// peers announce 16 MiB, send 12 and stall);
    /// boot-tamper, boot-drop-halfway (serve boot artifacts with a flipped byte / cut in half)
    #[argh(option)]
    fault: Option<String>,
    /// join the peer network, listening on this multiaddr (repeatable), e.g. /ip4/0.0.0.0/tcp/4001
    #[argh(option)]
    p2p: Vec<String>,
    /// a bootstrap peer: multiaddr ending in /p2p/<peer id> (repeatable)
    #[argh(option)]
    bootstrap: Vec<String>,
    /// discover peers on the LAN with mDNS
    #[argh(switch)]
    mdns: bool,
    /// internet mode: AutoNAT, and listen through relay slots at the bootstrap peers so the
    /// node is reachable behind a NAT (hole punching with DCUtR where it works)
    #[argh(switch)]
    nat: bool,
    /// private network: the swarm key file (/key/swarm/psk/1.0.0/ format); only holders connect
    #[argh(option)]
    swarm_key: Option<PathBuf>,
    /// serve the boot releases in this store (see `phase publish`) at /v1/boot and announce them
    #[argh(option)]
    boot_store: Option<PathBuf>,
    /// a trusted publisher key, hex (repeatable): with it, every release in --boot-store must
    /// be signed by one of these keys
    #[argh(option)]
    trust: Vec<String>,
    /// boot artifact downloads served at once (default 4); more get 503 + Retry-After
    #[argh(option)]
    max_downloads: Option<usize>,
    /// answer PXE and UEFI HTTP Boot clients on this interface: ProxyDHCP on UDP 67 and 4011
    /// (never an address), TFTP on 69; needs --boot-store with an x86_64 or aarch64 release
    /// and --trust
    #[argh(option)]
    pxe: Option<String>,
    /// where the network boot programs for --pxe are (default /usr/lib/ipxe): undionly.kpxe
    /// and snponly.efi boot x86_64 machines, grubaa64.efi arm64 ones
    #[argh(option)]
    pxe_programs: Option<PathBuf>,
    /// the channel PXE clients boot (default stable)
    #[argh(option)]
    pxe_channel: Option<String>,
    /// a kernel parameter for PXE-booted machines (repeatable), e.g. phase.pxe=on
    #[argh(option)]
    pxe_append: Vec<String>,
    /// with --pxe: answer UEFI HTTP Boot clients and iPXE only (no TFTP, no PXE firmware)
    #[argh(switch)]
    pxe_http_only: bool,
}

#[derive(FromArgs)]
/// Create a node key (data-dir/node.key, mode 0600) and print its public key.
#[argh(subcommand, name = "keygen")]
struct KeygenCmd {
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
struct ReceiptCmd {
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

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("phase: {msg}");
    EXIT_ERROR
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
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
        Command::Run(c) => run(c),
        Command::Node(c) => node(c),
        Command::Keygen(c) => keygen(c),
        Command::Receipt(ReceiptCmd { command: ReceiptSub::Verify(c) }) => verify(c),
        Command::Init(_) => crate::init::main(),
        Command::Manifest(ManifestCmd { command }) => manifest(command),
        Command::Initramfs(c) => initramfs(c),
        Command::Publish(c) => publish(c),
        Command::Carry(c) => carry(c),
        Command::Version(_) => {
            println!("phase {}", env!("CARGO_PKG_VERSION"));
            0
        }
    }
}

fn run(c: RunCmd) -> i32 {
    let result = (|| -> Result<i32, String> {
        let bytes = read(&c.module, "module")?;
        let input = match &c.input {
            Some(p) => read(p, "input")?,
            None => {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("stdin: {e}"))?;
                buf
            }
        };
        let identity = match &c.data_dir {
            Some(d) => NodeIdentity::load_or_create(d).map_err(|e| e.to_string())?,
            None => NodeIdentity::ephemeral(),
        };
        let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
        let module = engine.compile(&bytes).map_err(|e| format!("{}: {e}", c.module.display()))?;
        let requested = RequestedLimits {
            fuel: c.fuel,
            memory_bytes: c.memory_bytes,
            output_bytes: c.output_bytes,
            deadline_ms: c.deadline_ms,
        };
        let limits = Limits::resolve(&requested, &Limits::DEFAULT, &Limits::MAX).map_err(|e| e.to_string())?;
        let spec = JobSpec::new(module.sha256, sha256(&input), c.arg, c.env, limits)
            .map_err(|e| e.to_string())?;
        let job = Job { spec, module, input: Arc::from(input), progress: Default::default() };
        let ex = engine.run(&job);
        if let Some(why) = &ex.host_failure {
            return Err(format!("this machine failed the job, no receipt signed: {why}"));
        }
        let receipt = Receipt::sign(ex.receipt_body(&job.spec), identity.key_pair());
        if let Some(path) = &c.receipt {
            std::fs::write(path, receipt.to_json() + "\n")
                .map_err(|e| format!("receipt {}: {e}", path.display()))?;
        }
        if c.json {
            let outcome = Arc::new(crate::service::JobOutcome { spec: job.spec, execution: ex, receipt });
            println!("{}", crate::service::Completed { outcome, replayed: false, hold: None }.to_json());
            return Ok(0);
        }
        let _ = std::io::stdout().write_all(&ex.stdout);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(&ex.stderr);
        Ok(match ex.outcome {
            Outcome::Exited(code) => code.min(255) as i32,
            Outcome::Trapped(kind) => {
                eprintln!(
                    "phase: job trapped: {kind}{}",
                    ex.detail.map(|d| format!(" ({d})")).unwrap_or_default()
                );
                EXIT_TRAPPED
            }
        })
    })();
    result.unwrap_or_else(fail)
}

fn node(c: NodeCmd) -> i32 {
    let plan = MemoryPlan::new(c.memory_budget.unwrap_or_else(MemoryPlan::default_budget), c.max_result_bytes);
    let derived = NodeConfig::for_memory(plan);
    let d = derived.max_limits;
    let max = Limits {
        fuel: c.max_fuel.unwrap_or(d.fuel),
        memory_bytes: c.max_memory_bytes.unwrap_or(d.memory_bytes),
        output_bytes: c.max_output_bytes.unwrap_or(d.output_bytes),
        deadline_ms: c.max_deadline_ms.unwrap_or(d.deadline_ms),
    };
    let config = NodeConfig {
        max_limits: max,
        max_module_bytes: c.max_module_bytes.unwrap_or(derived.max_module_bytes),
        max_input_bytes: c.max_input_bytes.unwrap_or(derived.max_input_bytes),
        max_concurrent: c.max_concurrent.unwrap_or(derived.max_concurrent),
        data_dir: c.data_dir.clone(),
        max_disk_module_bytes: c.max_disk_module_bytes.unwrap_or(derived.max_disk_module_bytes),
        ..derived
    };
    let identity = match &c.data_dir {
        Some(d) => match NodeIdentity::load_or_create(d) {
            Ok(id) => id,
            Err(e) => return fail(e),
        },
        None => NodeIdentity::ephemeral(),
    };
    let service = match NodeService::new(identity, config) {
        Ok(s) => Arc::new(s),
        Err(e) => return fail(e),
    };
    let known = ["exit-after-job", "peer-wrong-key", "peer-garbage", "peer-stall", "peer-lie", "peer-forge-stdout", "peer-other-job", "peer-cancelled", "peer-bad-load", "peer-big-frames", "boot-tamper", "boot-drop-halfway"];
    if let Some(f) = c.fault.as_deref().filter(|f| !known.contains(f)) {
        return fail(format!("unknown --fault {f:?} (known: {})", known.join(", ")));
    }
    if c.p2p.is_empty() && (!c.bootstrap.is_empty() || c.mdns || c.nat || c.swarm_key.is_some()) {
        return fail("--bootstrap, --mdns, --nat and --swarm-key need --p2p LISTEN_ADDR");
    }
    let boot = match &c.boot_store {
        Some(dir) => match open_boot_store(dir, &c) {
            Ok(p) => Some(p),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let releases: Vec<(String, phase_core::boot::manifest::Arch, String)> = boot
        .iter()
        .flat_map(|p| p.store.entries.iter().map(|e| (e.channel().to_string(), e.arch(), e.manifest.key_id())))
        .collect();
    // Jobs run on these threads: local ones (a slot each), forwards to peers (a permit each),
    // requests waiting on a running idempotency key (as many as slots), and short work.
    let n = service.config().max_concurrent;
    let workers = match Workers::start("job", 3 * n + 4, WORKER_STACK) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    // The listener first: its port goes into the capabilities the peer network announces.
    let listener = match crate::http::Listener::bind(&c.http) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let http_port = listener.addr.port();
    let p2p = match c.p2p.is_empty() {
        true => None,
        false => match start_p2p(&c, &service, &workers, http_port, &releases) {
            Ok(p2p) => Some(p2p),
            Err(e) => return fail(e),
        },
    };
    let pxe = c.pxe.as_deref().and_then(|iface| start_pxe(iface, &c, boot.as_ref(), http_port));
    let queue = crate::queue::Queue::new(
        crate::queue::Config {
            max_queued: c.max_queued.unwrap_or(crate::queue::Config::default().max_queued),
            result_ttl: std::time::Duration::from_secs(c.result_ttl.unwrap_or(3600)),
            max_result_bytes: (plan.results / 2) as usize,
        },
        c.data_dir.as_deref(),
    );
    let node = Arc::new(Node {
        service: service.clone(),
        p2p,
        boot,
        pxe,
        workers,
        queue,
        http_port,
        exit_after_job: c.fault.as_deref() == Some("exit-after-job"),
        requests: Default::default(),
    });
    let mut limits = crate::http::Limits::new(c.max_connections.unwrap_or_else(|| crate::http::default_max_connections(plan.budget)));
    if let Some(n) = c.max_connections_per_ip {
        limits.max_connections_per_ip = n;
    }
    let (max_conn, per_ip) = (limits.max_connections, limits.max_connections_per_ip);
    if let Err(e) = crate::api::start_runners(node.clone(), n) {
        return fail(e);
    }
    let server = match crate::http::Server::serve(listener, Arc::new(crate::api::Api { node }), limits) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    log!("node key {}", service.identity().public_key_hex());
    log!(
        "memory budget {} MiB: {} MiB for requests and jobs, {} MiB for caches; connections at most {max_conn} ({per_ip} per address)",
        plan.budget >> 20,
        plan.pool >> 20,
        (plan.budget - plan.pool) >> 20
    );
    log!("listening on http://{}", server.addr);
    log!("accepting jobs (max {} at once)", service.config().max_concurrent);
    tell_the_service_manager(server.addr);
    server.wait();
    0
}

/// Under a `Type=notify` unit: READY=1 now that the API listens, then WATCHDOG=1 at half the
/// watchdog interval for as long as the HTTP front answers its own `GET /health` (a node whose
/// front hangs stops vouching for itself and the manager restarts it). A notify socket that
/// cannot be used is logged, never fatal: the node serves either way.
fn tell_the_service_manager(listening: std::net::SocketAddr) {
    use crate::notify::{front_answers, probe_address, watchdog_interval, Notifier};
    let notifier = match Notifier::from_env() {
        Ok(Some(n)) => n,
        Ok(None) => return,
        Err(e) => return log!("{e}"),
    };
    if let Err(e) = notifier.send(&format!("READY=1\nSTATUS=serving on http://{listening}")) {
        return log!("{e}");
    }
    let Some(interval) = watchdog_interval() else { return };
    let probe = probe_address(listening);
    // A watchdog shorter than this cannot be met by a real request anyway.
    let (every, within) = ((interval / 2).max(std::time::Duration::from_millis(10)), (interval / 4).max(std::time::Duration::from_millis(50)));
    log!("watchdog: every {} ms, vouched by GET /health on {probe}", every.as_millis());
    let spawned = std::thread::Builder::new().name("watchdog".into()).stack_size(64 << 10).spawn(move || {
        let mut was_ok = true;
        loop {
            std::thread::sleep(every);
            let ok = front_answers(probe, within);
            if ok {
                if let Err(e) = notifier.send("WATCHDOG=1") {
                    log!("watchdog: {e}");
                }
            } else if was_ok {
                log!("watchdog: the HTTP front did not answer GET /health on {probe} within {} ms; not vouching", within.as_millis());
            }
            was_ok = ok;
        }
    });
    if let Err(e) = spawned {
        log!("watchdog: no thread ({e}); the service manager will restart the node");
    }
}

/// The PXE service, or None with the reason logged: a node that cannot answer PXE clients
/// still serves everything else (PID 1 would otherwise restart it in a loop).
fn start_pxe(interface: &str, c: &NodeCmd, boot: Option<&crate::boot::provider::Provider>, http_port: u16) -> Option<Arc<crate::pxe::Pxe>> {
    let refuse = |why: String| {
        log!("pxe: refused on {interface}: {why}; serving without PXE");
        None
    };
    let Some(boot) = boot else { return refuse("no release is served (--boot-store)".into()) };
    let trust: Vec<[u8; 32]> = c.trust.iter().filter_map(|k| hex_decode_array::<32>(k).ok()).collect();
    if trust.is_empty() {
        return refuse("no --trust key: a PXE-booted machine re-verifies the release with the keys it is given".into());
    }
    let entries: Vec<&crate::boot::store::Entry> = boot.store.entries.iter().collect();
    let config = crate::pxe::Config {
        interface: interface.to_string(),
        http_port,
        channel: c.pxe_channel.clone().unwrap_or_else(|| "stable".into()),
        append: c.pxe_append.clone(),
        http_only: c.pxe_http_only,
        ports: Default::default(),
        limits: Default::default(),
        address: None,
    };
    let dir = c.pxe_programs.clone().unwrap_or_else(|| PathBuf::from(crate::boot::netboot::PROGRAMS_DIR));
    match crate::pxe::Pxe::start(config, &entries, &trust, &dir) {
        Ok(p) => Some(p),
        Err(e) => refuse(e.to_string()),
    }
}

/// Job threads run the interpreter, so each gets a roomy stack.
const WORKER_STACK: usize = 4 << 20;

fn keygen(c: KeygenCmd) -> i32 {
    let path = match (c.data_dir, c.out) {
        (Some(d), None) => {
            if let Err(e) = std::fs::create_dir_all(&d) {
                return fail(format!("{}: {e}", d.display()));
            }
            d.join(KEY_FILE)
        }
        (None, Some(p)) => p,
        _ => return fail("give exactly one of --data-dir and --out"),
    };
    match NodeIdentity::create(&path) {
        Ok(id) => {
            println!("{}", id.public_key_hex());
            0
        }
        Err(e) => fail(e),
    }
}

fn verify(c: VerifyCmd) -> i32 {
    let result = (|| -> Result<String, String> {
        let text_of = |p: &Path, what: &str| String::from_utf8(read(p, what)?).map_err(|_| format!("{what} {}: not UTF-8", p.display()));
        let key = match &c.key {
            Some(k) => Some(hex_decode_array::<32>(k).map_err(|e| format!("--key: {e}"))?),
            None => None,
        };
        let r = match (&c.receipt, &c.answer, &c.request) {
            (None, Some(a), Some(q)) => {
                use phase_core::job::answer::{Answer, Asked};
                use phase_core::job::request::{JobRequest, ModuleSource};
                let answer = Answer::parse(text_of(a, "answer")?.trim()).map_err(|e| format!("{}: {e}", a.display()))?;
                let req = JobRequest::parse(text_of(q, "request")?.trim().as_bytes()).map_err(|e| format!("{}: {e}", q.display()))?;
                let module = match &req.module {
                    ModuleSource::Bytes(b) => sha256(b),
                    ModuleSource::Sha256(d) => *d,
                };
                let input = sha256(&req.input);
                let asked = Asked { module_sha256: &module, input_sha256: &input, args: &req.args, env: &req.env, limits: &req.limits, signer: key.as_ref() };
                answer.verify(&asked).map_err(|e| e.to_string())?;
                answer.receipt
            }
            (Some(p), None, None) => {
                let r = Receipt::from_json(text_of(p, "receipt")?.trim()).map_err(|e| format!("{}: {e}", p.display()))?;
                r.verify_signature().map_err(|e| e.to_string())?;
                r
            }
            _ => return Err("give a receipt, or --answer with --request".into()),
        };
        if let Some(want) = key {
            if want != r.node_key {
                return Err(format!("signed by node {}, not {}", hex_encode(&r.node_key), hex_encode(&want)));
            }
        }
        let checks = [
            ("module", &c.module, r.body.module_sha256),
            ("input", &c.input, r.body.input_sha256),
            ("stdout", &c.stdout, r.body.stdout_sha256),
        ];
        for (what, path, want) in checks {
            if let Some(p) = path {
                if sha256(&read(p, what)?) != want {
                    return Err(format!("{what} {} does not match the receipt's {what}_sha256", p.display()));
                }
            }
        }
        let outcome = match r.body.outcome {
            Outcome::Exited(c) => format!("exited {c}"),
            Outcome::Trapped(t) => format!("trapped {t}"),
        };
        Ok(format!(
            "ok: job {} {outcome}, fuel {}, signed by {}",
            hex_encode(&r.body.job_id),
            r.body.fuel_used,
            hex_encode(&r.node_key)
        ))
    })();
    match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("phase: receipt rejected: {e}");
            1
        }
    }
}

fn initramfs(c: InitramfsCmd) -> i32 {
    let packed = match &c.after {
        Some(base) => read(base, "initrd").and_then(|b| crate::image::pack_tree_after(&c.root, b)),
        None => crate::image::pack_tree(&c.root),
    };
    match packed {
        Ok(bytes) => match std::fs::write(&c.out, &bytes) {
            Ok(()) => {
                println!("{} bytes", bytes.len());
                0
            }
            Err(e) => fail(format!("{}: {e}", c.out.display())),
        },
        Err(e) => fail(e),
    }
}

/// Opens --boot-store (every artifact re-hashed; with --trust, every signature checked).
fn open_boot_store(dir: &Path, c: &NodeCmd) -> Result<crate::boot::provider::Provider, String> {
    use crate::boot::provider::{Provider, ProviderFault, DEFAULT_MAX_DOWNLOADS};
    let trusted = c
        .trust
        .iter()
        .map(|k| hex_decode_array::<32>(k).map_err(|e| format!("--trust {k}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let store = crate::boot::store::BootStore::open(dir, (!trusted.is_empty()).then_some(&trusted[..])).map_err(|e| e.to_string())?;
    // A node with a data dir keeps each release's floors there: it never serves a release
    // older than one it served before (someone swapping the store for an older signed release).
    if let Some(data) = &c.data_dir {
        let mut floors = crate::boot::floors::FloorFile::open(&data.join(crate::boot::floors::FILE))?;
        for e in &store.entries {
            let release = format!("{}/{}", e.channel(), e.arch().name());
            let have = floors.get(&release);
            if e.manifest.body.version < have.version {
                return Err(format!(
                    "boot store {release}: version {} is below the floor {} this node recorded in {}",
                    e.manifest.body.version,
                    have.version,
                    data.join(crate::boot::floors::FILE).display()
                ));
            }
            floors.raise(&release, have.raised(&e.manifest.body))?;
        }
    }
    for e in &store.entries {
        log!(
            "boot: serving {}/{} version {} signed by {} (artifacts verified)",
            e.channel(),
            e.arch().name(),
            e.manifest.body.version,
            e.manifest.key_id()
        );
    }
    let fault = match c.fault.as_deref() {
        Some("boot-tamper") => ProviderFault::Tamper,
        Some("boot-drop-halfway") => ProviderFault::DropHalfway,
        _ => ProviderFault::None,
    };
    Ok(Provider::new(store, c.max_downloads.unwrap_or(DEFAULT_MAX_DOWNLOADS), fault))
}

fn start_p2p(
    c: &NodeCmd,
    service: &Arc<NodeService>,
    workers: &Arc<Workers>,
    http_port: u16,
    releases: &[(String, phase_core::boot::manifest::Arch, String)],
) -> Result<crate::p2p::P2p, String> {
    let parse = |what: &str, s: &String| -> Result<crate::p2p::Multiaddr, String> {
        s.parse().map_err(|e| format!("{what} {s:?} is not a multiaddr: {e}"))
    };
    let listen = c.p2p.iter().map(|a| parse("--p2p", a)).collect::<Result<Vec<_>, _>>()?;
    let bootstrap = c.bootstrap.iter().map(|a| parse("--bootstrap", a)).collect::<Result<Vec<_>, _>>()?;
    let swarm_key = match &c.swarm_key {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("swarm key {}: {e}", p.display()))?),
        None => None,
    };
    let cfg = service.config();
    let mut agent = format!(
        "phase/{} arch={} cores={} jobs={} fuel={} memory={} output={} deadline={} http={http_port}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cfg.max_concurrent,
        cfg.max_limits.fuel,
        cfg.max_limits.memory_bytes,
        cfg.max_limits.output_bytes,
        cfg.max_limits.deadline_ms
    );
    if !releases.is_empty() {
        let list: Vec<String> = releases.iter().map(|(ch, a, _)| format!("{ch}/{}", a.name())).collect();
        agent += &format!(" boot={}", list.join(","));
    }
    let config = crate::p2p::P2pConfig {
        listen,
        bootstrap,
        mdns: c.mdns,
        swarm_key,
        agent,
        nat: c.nat,
        bad_load_records: c.fault.as_deref() == Some("peer-bad-load"),
        stall_frames: c.fault.as_deref() == Some("peer-big-frames"),
        max_job_request: crate::api::max_job_body(cfg),
        budget: Some(service.pool().clone()),
        free_slot: Some({
            let s = service.clone();
            Arc::new(move || s.in_flight() < s.config().max_concurrent)
        }),
        max_connections: c.max_peer_connections.unwrap_or_else(|| crate::p2p::default_max_connections(cfg.memory.budget)),
        // Per channel/arch, and per channel/arch/publisher for clients that trust one key.
        provide: releases
            .iter()
            .flat_map(|(ch, a, key)| {
                let k = crate::boot::provider_key(ch, *a);
                [format!("{k}/{key}"), k]
            })
            .collect(),
        ..Default::default()
    };
    let fault = match c.fault.as_deref() {
        Some("peer-wrong-key") => PeerFault::WrongKey,
        Some("peer-garbage") => PeerFault::Garbage,
        Some("peer-stall") => PeerFault::Stall,
        Some("peer-lie") => PeerFault::Lie,
        Some("peer-forge-stdout") => PeerFault::ForgeStdout,
        Some("peer-other-job") => PeerFault::OtherJob,
        Some("peer-cancelled") => PeerFault::Cancelled,
        _ => PeerFault::None,
    };
    let (executor, pool) = (service.clone(), workers.clone());
    // Peers' jobs running here, so that each sender can cancel its own.
    let peer_jobs = Arc::new(crate::remote::PeerJobs::default());
    let running = peer_jobs.clone();
    let handler: crate::p2p::JobHandler = Arc::new(move |from, body| {
        if fault == PeerFault::Stall {
            // Takes the job and never answers (holding no thread).
            return Box::pin(futures::future::pending());
        }
        let (executor, pool, running) = (executor.clone(), pool.clone(), running.clone());
        Box::pin(async move { pool.run(move || crate::remote::serve_peer_job(&executor, &running, from, body, fault)).await.unwrap_or_default() })
    });
    let cancel: crate::p2p::CancelHandler = Arc::new(move |from, request| peer_jobs.cancel(from, request));
    let load = service.clone();
    let probe: crate::p2p::LoadProbe = Arc::new(move || crate::p2p::Load {
        in_flight: load.in_flight().min(u32::MAX as usize) as u32,
        slots: load.config().max_concurrent.clamp(1, u32::MAX as usize) as u32,
    });
    crate::p2p::P2p::start(service.identity().seed(), config, handler, cancel, probe).map_err(|e| e.to_string())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Signs a release: reads the artifacts, builds the manifest body, signs it.
#[allow(clippy::too_many_arguments)]
fn sign_release(
    key: &Path,
    arch: &str,
    channel: String,
    version: u64,
    kernel: &Path,
    initramfs: &Path,
    cmdline: String,
    valid_days: u64,
    created_at: Option<u64>,
    expires_at: Option<u64>,
) -> Result<(phase_core::boot::manifest::Manifest, Vec<u8>, Vec<u8>), String> {
    use phase_core::boot::manifest::{Arch, Artifact, Manifest, ManifestBody};
    let key = NodeIdentity::load(key).map_err(|e| e.to_string())?;
    let arch = Arch::parse(arch).ok_or_else(|| format!("--arch {arch:?}: x86_64 or aarch64"))?;
    let kernel_bytes = read(kernel, "kernel")?;
    let initramfs_bytes = read(initramfs, "initramfs")?;
    let artifact = |p: &Path, bytes: &[u8]| Artifact {
        name: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        size: bytes.len() as u64,
        sha256: sha256(bytes),
    };
    let created_at = created_at.unwrap_or_else(unix_now);
    let body = ManifestBody {
        channel,
        arch,
        version,
        created_at,
        expires_at: expires_at.unwrap_or(created_at + valid_days.max(1) * 86_400),
        kernel: artifact(kernel, &kernel_bytes),
        initramfs: artifact(initramfs, &initramfs_bytes),
        cmdline,
    };
    let m = Manifest::sign(body, key.key_pair()).map_err(|e| e.to_string())?;
    Ok((m, kernel_bytes, initramfs_bytes))
}

fn publish(c: PublishCmd) -> i32 {
    let result = (|| -> Result<String, String> {
        let (m, kernel, initramfs) =
            sign_release(&c.key, &c.arch, c.channel, c.version, &c.kernel, &c.initramfs, c.cmdline, c.valid_days, c.created_at, c.expires_at)?;
        let dir = crate::boot::store::publish(&c.store, &m, &kernel, &initramfs).map_err(|e| e.to_string())?;
        let mut line = format!("published {}/{} version {} signed by {} in {}", m.body.channel, m.body.arch.name(), m.body.version, m.key_id(), dir.display());
        if let Some(out) = &c.carry {
            let trust = c.trust.iter().map(|k| hex_decode_array::<32>(k).map_err(|e| format!("--trust {k}: {e}"))).collect::<Result<Vec<_>, _>>()?;
            let initrd = crate::boot::netboot::next_initrd(&m, &m.to_json(), &kernel, &initramfs, &trust, &[])?;
            std::fs::write(out, &initrd).map_err(|e| format!("{}: {e}", out.display()))?;
            line += &format!("; carrying initrd {} ({} bytes)", out.display(), initrd.len());
        }
        Ok(line)
    })();
    match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => fail(format!("publish: {e}")),
    }
}

fn carry(c: CarryCmd) -> i32 {
    use phase_core::boot::manifest::Arch;
    let result = (|| -> Result<String, String> {
        let trust = c.trust.iter().map(|k| hex_decode_array::<32>(k).map_err(|e| format!("--trust {k}: {e}"))).collect::<Result<Vec<_>, _>>()?;
        if trust.is_empty() {
            return Err("--trust: at least one publisher key (a carried release nobody can verify is not served)".into());
        }
        let arch = Arch::parse(&c.arch).ok_or_else(|| format!("--arch {:?}: x86_64 or aarch64", c.arch))?;
        let store = crate::boot::store::BootStore::open(&c.store, Some(&trust)).map_err(|e| e.to_string())?;
        let e = store.find(&c.channel, arch).ok_or_else(|| format!("{}: no {}/{} release", c.store.display(), c.channel, arch.name()))?;
        let m = &e.manifest;
        let floors = phase_core::boot::manifest::Floors { version: 0, time: crate::boot::build_time() };
        m.verify_under(&trust, unix_now(), &floors, arch).map_err(|e| format!("{}: {e}", c.store.display()))?;
        let kernel = read(&e.dir.join(&m.body.kernel.name), "kernel")?;
        let initramfs = read(&e.dir.join(&m.body.initramfs.name), "initramfs")?;
        let programs = match &c.pxe_programs {
            Some(dir) => crate::pxe::load_programs(dir).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let carried = crate::pxe::carried_for(arch, &programs);
        let initrd = crate::boot::netboot::next_initrd(m, &e.manifest_json, &kernel, &initramfs, &trust, &carried)?;
        std::fs::create_dir_all(&c.out).map_err(|e| format!("{}: {e}", c.out.display()))?;
        for (name, bytes) in [("kernel", &kernel[..]), ("initrd", &initrd[..]), ("cmdline", m.body.cmdline.as_bytes())] {
            let path = c.out.join(name);
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(format!("carrying {}/{} version {} signed by {} in {} (initrd {} bytes)", m.body.channel, arch.name(), m.body.version, m.key_id(), c.out.display(), initrd.len()))
    })();
    match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => fail(format!("carry: {e}")),
    }
}

fn manifest(cmd: ManifestSub) -> i32 {
    use phase_core::boot::manifest::{Arch, Manifest};
    let result = (|| -> Result<String, String> {
        match cmd {
            ManifestSub::Keygen(c) => {
                let id = NodeIdentity::create(&c.out).map_err(|e| e.to_string())?;
                Ok(format!("{} (key id {})", id.public_key_hex(), phase_core::boot::manifest::key_id(&id.public_key())))
            }
            ManifestSub::Sign(c) => {
                let (m, _, _) = sign_release(&c.key, &c.arch, c.channel, c.version, &c.kernel, &c.initramfs, c.cmdline, c.valid_days, None, None)?;
                std::fs::write(&c.out, m.to_json() + "\n").map_err(|e| format!("{}: {e}", c.out.display()))?;
                Ok(format!("signed {} {} version {} by key {}", m.body.channel, m.body.arch.name(), m.body.version, m.key_id()))
            }
            ManifestSub::Verify(c) => {
                let text = String::from_utf8(read(&c.manifest, "manifest")?).map_err(|_| "manifest is not UTF-8".to_string())?;
                let m = Manifest::from_json(text.trim()).map_err(|e| e.to_string())?;
                let trusted = c
                    .trust
                    .iter()
                    .map(|k| hex_decode_array::<32>(k).map_err(|e| format!("--trust {k}: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                let arch = match &c.arch {
                    Some(a) => Arch::parse(a).ok_or_else(|| format!("--arch {a:?}: x86_64 or aarch64"))?,
                    None => Arch::parse(std::env::consts::ARCH).ok_or("this machine's arch is not one Phase boots")?,
                };
                let floors = phase_core::boot::manifest::Floors { version: c.floor.unwrap_or(0), time: c.time_floor.unwrap_or(0).max(crate::boot::build_time()) };
                m.verify_under(&trusted, unix_now(), &floors, arch).map_err(|e| e.to_string())?;
                if let Some(p) = &c.kernel {
                    m.check_artifact("kernel", &read(p, "kernel")?).map_err(|e| e.to_string())?;
                }
                if let Some(p) = &c.initramfs {
                    m.check_artifact("initramfs", &read(p, "initramfs")?).map_err(|e| e.to_string())?;
                }
                Ok(format!("ok: {} {} version {} signed by key {}", m.body.channel, m.body.arch.name(), m.body.version, m.key_id()))
            }
        }
    })();
    match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("phase: manifest rejected: {e}");
            1
        }
    }
}
