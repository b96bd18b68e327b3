//! PID 1's side of a fleet update (docs/netboot.md, "Fleet updates"):
//!
//! - the **update hop**: the node drained and exited with `update::EXIT_UPDATE`; PID 1 reads
//!   the release the node now serves from the carried store, verifies it again (trusted key,
//!   signature, time, not below the committed floor, every artifact's hash) and kexecs into it,
//!   carrying the release it ran (to return to) and `phase.trial=SECONDS`;
//! - the **trial**: a boot with `phase.trial` and a carried previous release must become
//!   healthy within the bound: ready with a verified self-test job, a usable network, and (if
//!   it had peers before) a connected Phase peer. Then it **commits**: the version floor moves
//!   to the new release (on the data partition when there is one) and the previous release is
//!   dropped. If not, it **returns**: it signs a failure report with its node key and kexecs
//!   into the previous release, which tells its peers, so the release stops there.

use std::path::Path;
use std::time::{Duration, Instant};

use phase_core::boot::cmdline::BootConfig;
use phase_core::boot::manifest::{Arch, Floors};
use phase_core::boot::rollout::{FailureReport, ReleaseId};

use crate::boot::netboot::{self, BootImage, Extras, PREVIOUS_STORE};
use crate::boot::release::Release;
use crate::boot::store::BootStore;
use crate::boot::{floors::FloorFile, CARRIED_STORE};

/// Where the node writes its hand-off (`<version> <connected peers> <from>`) before it exits.
pub const HANDOFF: &str = "/run/phase/update-handoff";
/// Present while a release is on trial (the node hands nothing over until it is gone).
pub const TRIAL_MARK: &str = "/run/phase/update-trial";
/// Written when someone types `update` on a console (commands.rs); the node takes it as an
/// operator's `POST /v1/update` (update::Apply, beside the hand-off file).
pub const UPDATE_NOW: &str = "/run/phase/update-now";
/// This boot's command line without its one-boot parameters (`cmdline::hop_local`).
fn this_cmdline() -> String {
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    text.split_whitespace().filter(|w| !phase_core::boot::cmdline::hop_local(w)).collect::<Vec<_>>().join(" ")
}

/// The release of this machine's channel and arch in the store at `root`, every signature and
/// artifact checked against `trusted`.
fn read_release(root: &Path, config: &BootConfig, trusted: &[[u8; 32]]) -> Result<Release, String> {
    let arch = Arch::parse(std::env::consts::ARCH).ok_or("this machine's arch is not one Phase boots")?;
    let store = BootStore::open(root, Some(trusted)).map_err(|e| e.to_string())?;
    let entry = store.find(&config.channel, arch).ok_or_else(|| format!("{}: no {}/{} release", root.display(), config.channel, arch.name()))?;
    Release::read(entry).map_err(|e| e.to_string())
}

/// The floors this boot holds: the command line's and the floors file's.
fn floors(config: &BootConfig, floors_file: &Path) -> Result<Floors, String> {
    let arch = Arch::parse(std::env::consts::ARCH).ok_or("unknown arch")?;
    let kept = FloorFile::open(floors_file).map_err(|e| e.to_string())?.get(&format!("{}/{}", config.channel, arch.name()));
    Ok(Floors { version: config.version_floor.max(kept.version), time: crate::boot::build_time().max(config.time_floor).max(kept.time) })
}

/// The network boot programs this machine carries, passed on with any release it boots.
fn programs() -> crate::pxe::Programs {
    crate::pxe::load_programs(Path::new(netboot::PROGRAMS_DIR)).unwrap_or_default()
}

/// The update hop: the image that boots the release the node serves now, carrying the one this
/// machine runs (the node kept it beside the served one when it took the new one up).
pub fn update_image(config: &BootConfig, trusted: &[[u8; 32]], floors_file: &Path) -> Result<BootImage, String> {
    let (handoff, peers, from) = read_handoff()?;
    let next = read_release(Path::new(CARRIED_STORE), config, trusted)?;
    let floors = floors(config, floors_file)?;
    let arch = next.manifest.body.arch;
    next.manifest.verify_under(trusted, crate::clock::unix_now(), &floors, arch).map_err(|e| format!("{}: {e}", next.describe()))?;
    if next.manifest.body.version != handoff {
        return Err(format!("the node handed over version {handoff}, the store serves {}", next.manifest.body.version));
    }
    // What this machine runs: the release the node replaced, kept beside the served one.
    let previous = crate::boot::store::open_previous(Path::new(CARRIED_STORE), &config.channel, arch, trusted)
        .map_err(|e| e.to_string())
        .and_then(|e| Release::read(&e).map_err(|e| e.to_string()))
        .map_err(|e| format!("the release to return to: {e}"))?;
    let mut cmdline = netboot::next_cmdline(&next.manifest.body.cmdline, &config.passthrough, &floors);
    // The floors stay those of the release that runs now until the new one commits.
    cmdline += &format!(" phase.trial={} phase.trial_peers={} phase.from={from}", config.health_timeout, peers.min(1));
    let programs = programs();
    let carried = crate::pxe::carried_for(arch, &programs);
    let extras = Extras { previous: Some(previous), previous_cmdline: this_cmdline(), failure_reports: vec![] };
    let mut image = BootImage::carrying_with(next, trusted, &carried, cmdline, extras).map_err(|e| e.to_string())?;
    image.what += " (update; trial)";
    Ok(image)
}

fn read_handoff() -> Result<(u64, usize, String), String> {
    let text = std::fs::read_to_string(HANDOFF).map_err(|e| format!("{HANDOFF}: {e}"))?;
    let _ = std::fs::remove_file(HANDOFF);
    let mut w = text.split_whitespace();
    let from = |f: Option<&str>| f.filter(|f| f.len() <= 256 && f.bytes().all(|b| b.is_ascii_graphic())).unwrap_or("-").to_string();
    match (w.next().and_then(|v| v.parse().ok()), w.next().and_then(|v| v.parse().ok())) {
        (Some(v), Some(p)) => Ok((v, p, from(w.next()))),
        _ => Err(format!("{HANDOFF}: not `<version> <peers> <from>`: {text:?}")),
    }
}

/// A trial in progress.
pub struct Trial {
    pub deadline: Instant,
    pub peers: u32,
    pub started: Instant,
}

impl Trial {
    /// The trial this boot is, if it is one: `phase.trial` and a carried release to return to.
    pub fn of(config: &BootConfig) -> Option<Trial> {
        let secs = config.trial?;
        if !Path::new(PREVIOUS_STORE).exists() {
            log!("update: phase.trial={secs} but no release to return to is carried: not a trial");
            return None;
        }
        if let Err(e) = std::fs::create_dir_all(crate::init::RUN_DIR).and_then(|()| std::fs::write(TRIAL_MARK, b"")) {
            log!("update: {TRIAL_MARK}: {e}");
        }
        log!("update: this boot tries a new release: healthy within {secs}s (ready, a verified self-test, a network{}), or back to the release it came from", if config.trial_peers > 0 { format!(", {} connected peer(s)", config.trial_peers) } else { String::new() });
        Some(Trial { deadline: Instant::now() + Duration::from_secs(secs), peers: config.trial_peers, started: Instant::now() })
    }
}

/// Connected Phase peers of the node on `port`, from its `/v1/peers`.
pub fn connected_peers(port: u16) -> usize {
    let Ok(url) = crate::boot::fetch::Url::parse(&format!("http://127.0.0.1:{port}/v1/peers")) else { return 0 };
    let Ok(body) = crate::boot::fetch::get_small(&url, 1 << 20, Instant::now() + Duration::from_secs(2)) else { return 0 };
    String::from_utf8_lossy(&body).split("{\"peer_id\"").filter(|p| p.contains("\"connected\":true") && p.contains("\"agent\":\"phase/")).count()
}

/// The new release is healthy: its version becomes the floor (kept on the data partition when
/// there is one), and the release it came from is dropped. With a data partition (`slot`), the
/// release is also written there: a cold boot of the stick starts it (`committed_image`).
pub fn commit(config: &BootConfig, trusted: &[[u8; 32]], floors_file: &Path, slot: Option<&Path>, trial: &Trial) {
    let release = match read_release(Path::new(CARRIED_STORE), config, trusted) {
        Ok(r) => r,
        Err(e) => {
            log!("update: cannot read the release to commit: {e}");
            return;
        }
    };
    let b = &release.manifest.body;
    let key = format!("{}/{}", b.channel, b.arch.name());
    let result = FloorFile::open(floors_file).and_then(|mut f| f.raise(&key, Floors::default().raised(b)));
    match result {
        Ok(()) => log!("update: {} is healthy after {:.1}s: committed (version floor {})", release.describe(), trial.started.elapsed().as_secs_f64(), b.version),
        Err(e) => log!("update: {} is healthy but its floor could not be kept: {e}", release.describe()),
    }
    let _ = std::fs::remove_dir_all(PREVIOUS_STORE);
    let _ = std::fs::remove_file(TRIAL_MARK);
    if let Some(slot) = slot {
        match crate::boot::store::install(slot, &release) {
            Ok(_) => {
                // One release in the slot: the one it replaced is not kept (the partition's room).
                let _ = std::fs::remove_dir_all(slot.join(&b.channel).join(format!(".previous-{}", b.arch.name())));
                log!("update: {} kept on the data partition: a cold boot starts it", release.describe());
            }
            Err(e) => log!("update: {} could not be kept on the data partition ({e}): a cold boot starts the stick's own release", release.describe()),
        }
    }
}

/// Marks a cold boot's try of the committed release; removed once it is ready.
const ATTEMPT: &str = "attempt";

/// At a cold boot with a data partition: the committed update in `slot`, if it is newer than the
/// release this boot carries, verified, and did not fail to come up last time (a marker written
/// before the kexec and removed at ready: a slot whose marker survives is given up).
pub fn committed_image(config: &BootConfig, trusted: &[[u8; 32]], floors_file: &Path, slot: &Path) -> Option<BootImage> {
    if !slot.join(&config.channel).exists() {
        return None;
    }
    let attempt = slot.join(ATTEMPT);
    if attempt.exists() {
        log!("update: the release kept on the data partition did not become ready last time: booting this one");
        let _ = std::fs::remove_dir_all(slot.join(&config.channel));
        let _ = std::fs::remove_file(&attempt);
        return None;
    }
    let carried = read_release(Path::new(CARRIED_STORE), config, trusted).map(|r| r.manifest.body.version).unwrap_or(0);
    let kept = match read_release(slot, config, trusted) {
        Ok(r) => r,
        Err(e) => {
            log!("update: the release kept on the data partition is refused: {e}");
            return None;
        }
    };
    if kept.manifest.body.version <= carried {
        return None;
    }
    let floors = floors(config, floors_file).ok()?;
    if let Err(e) = kept.manifest.verify_under(trusted, crate::clock::unix_now(), &floors, kept.manifest.body.arch) {
        log!("update: the release kept on the data partition is refused: {e}");
        return None;
    }
    if let Err(e) = std::fs::write(&attempt, b"") {
        log!("update: {}: {e}: not booting the kept release", attempt.display());
        return None;
    }
    log!("update: the data partition keeps {} (committed): booting it", kept.describe());
    let arch = kept.manifest.body.arch;
    let cmdline = netboot::next_cmdline(&kept.manifest.body.cmdline, &config.passthrough, &floors) + " phase.from=data-partition";
    let programs = programs();
    let carried = crate::pxe::carried_for(arch, &programs);
    match BootImage::carrying(kept, trusted, &carried, cmdline) {
        Ok(mut image) => {
            image.what += " (kept on the data partition)";
            Some(image)
        }
        Err(e) => {
            log!("update: the kept release: {e}");
            let _ = std::fs::remove_file(&attempt);
            None
        }
    }
}

/// A boot that is ready: a cold boot's try of the kept release succeeded.
pub fn ready(slot: &Path) {
    let _ = std::fs::remove_file(slot.join(ATTEMPT));
}

/// The new release did not become healthy: the image that returns to the release this machine
/// came from, carrying a failure report signed with the node key.
pub fn return_image(config: &BootConfig, trusted: &[[u8; 32]], floors_file: &Path, key_file: &Path, why: &str) -> Result<BootImage, String> {
    let failed = read_release(Path::new(CARRIED_STORE), config, trusted)?;
    let previous = read_release(Path::new(PREVIOUS_STORE), config, trusted)?;
    let floors = floors(config, floors_file)?;
    let reason = format!("{} not healthy within its trial: {why}", failed.describe());
    let reports = match crate::identity::NodeIdentity::load(key_file) {
        Ok(id) => vec![FailureReport::sign(ReleaseId::of(&failed.manifest), crate::clock::unix_now(), &reason, id.key_pair()).to_json()],
        Err(e) => {
            log!("update: the failure cannot be signed ({e}): returning without a report");
            vec![]
        }
    };
    let arch = previous.manifest.body.arch;
    // The command line it ran with (not this one: the failed release's own parameters may be
    // what failed), with this boot's floors.
    let ran_with = std::fs::read_to_string(netboot::PREVIOUS_CMDLINE).map_err(|e| format!("{}: {e}", netboot::PREVIOUS_CMDLINE))?;
    let cmdline = netboot::next_cmdline(ran_with.trim(), &[], &floors) + &format!(" phase.from=returned-from-version-{}", failed.manifest.body.version);
    let programs = programs();
    let carried = crate::pxe::carried_for(arch, &programs);
    let mut image = BootImage::carrying_with(previous, trusted, &carried, cmdline, Extras { failure_reports: reports, ..Extras::default() }).map_err(|e| e.to_string())?;
    image.what += &format!(" (returning: {reason})");
    Ok(image)
}

/// The update hop could not be made (`why`): the node goes on with the release it runs, and a
/// failure report signed with the node key (in FAILURES_DIR, where the node reads it at start)
/// keeps it from handing the same release over again and tells its peers.
pub fn refuse(config: &BootConfig, key_file: &Path, why: &str) {
    log!("update: cannot boot the release the node handed over: {why}; staying on this release");
    let Some(arch) = Arch::parse(std::env::consts::ARCH) else { return };
    let path = Path::new(CARRIED_STORE).join(&config.channel).join(arch.name()).join(phase_core::boot::manifest::MANIFEST_FILE);
    // Parsed only to name the release in the report.
    let Some(m) = std::fs::read_to_string(&path).ok().and_then(|t| phase_core::boot::manifest::Manifest::from_json(t.trim()).ok()) else { return };
    let Ok(id) = crate::identity::NodeIdentity::load(key_file) else { return };
    let report = FailureReport::sign(ReleaseId::of(&m), crate::clock::unix_now(), &format!("cannot be booted: {why}"), id.key_pair());
    let dir = Path::new(netboot::FAILURES_DIR);
    let file = dir.join(format!("refused-{}.json", m.body.version));
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&file, report.to_json() + "\n")) {
        log!("update: {}: {e}", file.display());
    }
}
