//! `phase manifest keygen|sign|verify`, `phase publish` and `phase carry`: a publisher's side
//! of releases (docs/netboot.md). Signing, laying out a store and building the image that boots
//! a release are `boot::release`, `boot::store` and `boot::netboot`'s; these read the flags.

use std::path::PathBuf;

use argh::FromArgs;
use phase_core::boot::manifest::{Arch, Floors, Manifest};

use super::{keys, read, report, write, Failure, Outcome, EXIT_ERROR, EXIT_REFUSED};
use crate::boot::netboot::BootImage;
use crate::boot::release::{Release, Unsigned};
use crate::boot::store::BootStore;
use crate::clock::unix_now;
use crate::identity::NodeIdentity;

#[derive(FromArgs)]
/// Verify a published release and write what boots it and serves it on: OUT/kernel, OUT/initrd
/// (its initramfs with the release and the trusted keys carried in a second archive) and
/// OUT/cmdline (the manifest's command line). A boot stick made with `scripts/build-usb
/// --release` holds these.
#[argh(subcommand, name = "carry")]
pub struct CarryCmd {
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
pub struct PublishCmd {
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
    /// the drivers archive (scripts/build-initramfs: drivers.cpio.zst), signed with the
    /// release: the booted kernel loads it after the initramfs, and hops carry it on
    #[argh(option)]
    drivers: Option<PathBuf>,
    /// kernel command line for the booted kernel
    #[argh(option, default = "String::new()")]
    cmdline: String,
    /// how the release spreads over a fleet: waves AFTER_SECS:PERCENT,... (e.g. 0:10,600:100:
    /// a tenth of the nodes at once, all after ten minutes; default: every node at once)
    #[argh(option, from_str_fn(rollout))]
    rollout: Option<phase_core::boot::rollout::Rollout>,
    /// days until the manifest expires (default 30)
    #[argh(option, default = "30")]
    valid_days: u64,
    /// creation time, unix seconds (default now)
    #[argh(option)]
    created_at: Option<u64>,
    /// expiry time, unix seconds (default created + valid days)
    #[argh(option)]
    expires_at: Option<u64>,
    /// the boot store directory (or --node)
    #[argh(option)]
    store: Option<PathBuf>,
    /// publish on a running node instead (its API's base URL, e.g. http://10.0.0.5:8080): it
    /// verifies the release, serves it and tells its peers, and the fleet follows the rollout
    #[argh(option)]
    node: Option<String>,
    /// with --node: the file holding that node's operator token
    #[argh(option)]
    operator_token_file: Option<PathBuf>,
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
pub struct ManifestCmd {
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
    /// the drivers archive (scripts/build-initramfs: drivers.cpio.zst), signed with the
    /// release: the booted kernel loads it after the initramfs, and hops carry it on
    #[argh(option)]
    drivers: Option<PathBuf>,
    /// kernel command line for the booted kernel
    #[argh(option, default = "String::new()")]
    cmdline: String,
    /// how the release spreads over a fleet: waves AFTER_SECS:PERCENT,... (e.g. 0:10,600:100:
    /// a tenth of the nodes at once, all after ten minutes; default: every node at once)
    #[argh(option, from_str_fn(rollout))]
    rollout: Option<phase_core::boot::rollout::Rollout>,
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
    /// the drivers archive to check against the manifest
    #[argh(option)]
    drivers: Option<PathBuf>,
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

fn arch(name: &str) -> Result<Arch, Failure> {
    Arch::parse(name).ok_or_else(|| Failure::new(format!("--arch {name:?}: x86_64 or aarch64")))
}

fn rollout(text: &str) -> Result<phase_core::boot::rollout::Rollout, String> {
    phase_core::boot::rollout::Rollout::parse(text)
}

/// Signs a release of the files `kernel`, `initramfs` and `drivers` with the key in `key`.
#[allow(clippy::too_many_arguments)]
fn sign(key: &std::path::Path, arch_name: &str, channel: String, version: u64, kernel: &std::path::Path, initramfs: &std::path::Path, drivers: Option<&std::path::Path>, cmdline: String, rollout: Option<phase_core::boot::rollout::Rollout>, valid_days: u64, created_at: Option<u64>, expires_at: Option<u64>) -> Result<Release, Failure> {
    let key = NodeIdentity::load(key)?;
    let named = |p: &std::path::Path, what: &str| -> Result<(String, Vec<u8>), Failure> {
        Ok((p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), read(p, what)?))
    };
    let created_at = created_at.unwrap_or_else(unix_now);
    let unsigned = Unsigned { channel, arch: arch(arch_name)?, version, created_at, expires_at: expires_at.unwrap_or(created_at + valid_days.max(1) * 86_400), cmdline, rollout };
    let drivers = drivers.map(|p| named(p, "drivers archive")).transpose()?;
    Ok(Release::sign(unsigned, named(kernel, "kernel")?, named(initramfs, "initramfs")?, drivers, key.key_pair())?)
}

pub fn publish(c: PublishCmd) -> i32 {
    let outcome = (|| -> Outcome {
        let trust = keys("--trust", &c.trust)?;
        let release = sign(&c.key, &c.arch, c.channel, c.version, &c.kernel, &c.initramfs, c.drivers.as_deref(), c.cmdline, c.rollout, c.valid_days, c.created_at, c.expires_at)?;
        let mut line = match (&c.store, &c.node) {
            (Some(store), None) => format!("published {} in {}", release.describe(), crate::boot::store::publish(store, &release)?.display()),
            (None, Some(node)) => {
                let token = c.operator_token_file.as_deref().ok_or_else(|| Failure::new("--node needs --operator-token-file"))?;
                publish_on_node(node, &super::operator_token(token)?, &release)?
            }
            _ => return Err(Failure::new("give --store DIR or --node URL (one of them)")),
        };
        if let Some(out) = &c.carry {
            let image = BootImage::carrying(release, &trust, &[], String::new())?;
            write(out, &image.initrd)?;
            line += &format!("; carrying initrd {} ({} bytes)", out.display(), image.initrd.len());
        }
        Ok(line)
    })();
    report(outcome, "publish", EXIT_ERROR)
}

/// Sends a signed release to a node's `POST /v1/releases`; its answer, or why not.
fn publish_on_node(node: &str, token: &str, release: &Release) -> Result<String, Failure> {
    use crate::boot::fetch;
    let base = fetch::Url::parse(node).map_err(|e| Failure::new(format!("--node {node}: {e}")))?;
    let url = base.join("v1/releases");
    let body = crate::update::publish::body(release);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let resp = fetch::post(&url, &format!("Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"), &body, deadline).map_err(|e| Failure::new(e.to_string()))?;
    let status = resp.status;
    let answer = fetch::read_small(resp, &url, 64 << 10).map_err(|e| Failure::new(e.to_string()))?;
    let text = String::from_utf8_lossy(&answer).trim().to_string();
    match status {
        201 => Ok(format!("published {} on {node}: {text}", release.describe())),
        _ => Err(Failure::new(format!("{url} answered {status}: {text}"))),
    }
}

pub fn carry(c: CarryCmd) -> i32 {
    let outcome = (|| -> Outcome {
        let trust = keys("--trust", &c.trust)?;
        if trust.is_empty() {
            return Err(Failure::new("--trust: at least one publisher key (a carried release nobody can verify is not served)"));
        }
        let arch = arch(&c.arch)?;
        let store = BootStore::open(&c.store, Some(&trust))?;
        let e = store.find(&c.channel, arch).ok_or_else(|| Failure::new(format!("{}: no {}/{} release", c.store.display(), c.channel, arch.name())))?;
        let floors = Floors { version: 0, time: crate::boot::build_time() };
        e.manifest.verify_under(&trust, unix_now(), &floors, arch).map_err(|err| Failure::new(format!("{}: {err}", c.store.display())))?;
        let release = Release::read(e)?;
        let programs = match &c.pxe_programs {
            Some(dir) => crate::pxe::load_programs(dir)?,
            None => Vec::new(),
        };
        let described = release.describe();
        let cmdline = release.manifest.body.cmdline.clone();
        let image = BootImage::carrying(release, &trust, &crate::pxe::carried_for(arch, &programs), cmdline)?;
        std::fs::create_dir_all(&c.out).map_err(|err| Failure::new(format!("{}: {err}", c.out.display())))?;
        for (name, bytes) in [("kernel", &image.kernel[..]), ("initrd", &image.initrd[..]), ("cmdline", image.cmdline.as_bytes())] {
            write(&c.out.join(name), bytes)?;
        }
        Ok(format!("carrying {described} in {} (initrd {} bytes)", c.out.display(), image.initrd.len()))
    })();
    report(outcome, "carry", EXIT_ERROR)
}

pub fn manifest(c: ManifestCmd) -> i32 {
    let outcome = (|| -> Outcome {
        match c.command {
            ManifestSub::Keygen(c) => {
                let id = NodeIdentity::create(&c.out)?;
                Ok(format!("{} (key id {})", id.public_key_hex(), phase_core::boot::manifest::key_id(&id.public_key())))
            }
            ManifestSub::Sign(c) => {
                let release = sign(&c.key, &c.arch, c.channel, c.version, &c.kernel, &c.initramfs, c.drivers.as_deref(), c.cmdline, c.rollout, c.valid_days, None, None)?;
                let m = &release.manifest;
                write(&c.out, (release.manifest_json.clone() + "\n").as_bytes())?;
                Ok(format!("signed {} {} version {} by key {}", m.body.channel, m.body.arch.name(), m.body.version, m.key_id()))
            }
            ManifestSub::Verify(c) => {
                let text = String::from_utf8(read(&c.manifest, "manifest")?).map_err(|_| Failure::new("manifest is not UTF-8"))?;
                let m = Manifest::from_json(text.trim())?;
                let trusted = keys("--trust", &c.trust)?;
                let arch = match &c.arch {
                    Some(a) => arch(a)?,
                    None => Arch::parse(std::env::consts::ARCH).ok_or_else(|| Failure::new("this machine's arch is not one Phase boots"))?,
                };
                let floors = Floors { version: c.floor.unwrap_or(0), time: c.time_floor.unwrap_or(0).max(crate::boot::build_time()) };
                m.verify_under(&trusted, unix_now(), &floors, arch)?;
                if let Some(p) = &c.kernel {
                    m.check_artifact("kernel", &read(p, "kernel")?)?;
                }
                if let Some(p) = &c.initramfs {
                    m.check_artifact("initramfs", &read(p, "initramfs")?)?;
                }
                if let Some(p) = &c.drivers {
                    m.check_artifact("drivers", &read(p, "drivers archive")?)?;
                }
                Ok(format!("ok: {} {} version {} signed by key {}", m.body.channel, m.body.arch.name(), m.body.version, m.key_id()))
            }
        }
    })();
    report(outcome, "manifest rejected", EXIT_REFUSED)
}
