//! One netboot hop: find providers, fetch and verify the newest release they offer, download
//! its artifacts (failing over to the next provider on any error), then build the next
//! kernel's initrd: the verified initramfs (and drivers archive, when the release has one) with
//! a cpio archive appended that carries the kernel, the initramfs, the drivers and the signed
//! manifest, so the booted node serves them on (docs/netboot.md).

use std::fmt;
use std::time::{Duration, Instant};

/// What one provider gets to answer with a manifest (connect, head and body together).
pub const MANIFEST_TIME: Duration = Duration::from_secs(15);

use phase_core::boot::cpio::{CpioError, CpioWriter};
use phase_core::boot::manifest::{Arch, Floors, Manifest, ManifestError, MANIFEST_FILE};

use super::fetch::{self, DownloadError, FetchError, Url};
use super::release::Release;
use super::CARRIED_STORE;

#[derive(Debug, Clone)]
pub struct Plan {
    pub channel: String,
    pub arch: Arch,
    pub trusted: Vec<[u8; 32]>,
    /// The version and time floors (phase_core::boot::manifest::Floors): raised by every manifest the
    /// search verifies, so once it has seen a version it never boots an older one.
    pub floors: Floors,
    /// Unix seconds from the local clock.
    pub clock: u64,
}

#[derive(Debug)]
pub enum NetbootError {
    Fetch(FetchError),
    Manifest { url: String, reason: ManifestError },
    Download(DownloadError),
    /// No provider served a verifiable release in time.
    NotFound { release: String, floor: u64, secs: u64 },
}

impl fmt::Display for NetbootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetbootError::Fetch(e) => e.fmt(f),
            NetbootError::Manifest { url, reason } => write!(f, "{url}: manifest refused: {reason}"),
            NetbootError::Download(e) => e.fmt(f),
            NetbootError::NotFound { release, floor, secs } => {
                write!(f, "netboot: no provider served a verifiable {release} release of version {floor} or later within {secs}s")
            }
        }
    }
}
impl std::error::Error for NetbootError {}


/// A verified release, in RAM, and the floors it leaves this machine with.
pub struct Fetched {
    pub floors: Floors,
    pub release: Release,
    pub from: String,
}

fn release_url(base: &Url, m_channel: &str, arch: Arch, file: &str) -> Url {
    base.join(&format!("v1/boot/{m_channel}/{}/{file}", arch.name()))
}

/// Fetches and verifies the manifest a provider offers for the plan's channel and arch, by
/// `deadline` at the latest.
pub fn fetch_manifest(base: &str, plan: &Plan, deadline: Instant) -> Result<(Manifest, String), NetbootError> {
    let base = Url::parse(base).map_err(NetbootError::Fetch)?;
    let url = release_url(&base, &plan.channel, plan.arch, MANIFEST_FILE);
    let body = fetch::get_small(&url, fetch::MAX_MANIFEST_BYTES, deadline).map_err(NetbootError::Fetch)?;
    let bad = |reason| NetbootError::Manifest { url: url.to_string(), reason };
    let text = String::from_utf8(body).map_err(|_| bad(ManifestError::Json))?;
    let m = Manifest::from_json(text.trim()).map_err(bad)?;
    if m.body.channel != plan.channel {
        return Err(bad(ManifestError::Field { name: "channel", reason: format!("{:?}, asked for {:?}", m.body.channel, plan.channel) }));
    }
    m.verify_under(&plan.trusted, plan.clock, &plan.floors, plan.arch).map_err(bad)?;
    Ok((m, text.trim().to_string()))
}

/// Downloads the artifacts of a verified manifest from `base` (kernel, initramfs and drivers
/// archive if there is one), by `give_up` at the latest.
pub fn fetch_artifacts(base: &str, m: &Manifest, progress: &mut dyn FnMut(&str, u64, u64), give_up: Instant) -> Result<(Vec<u8>, Vec<u8>, Option<Vec<u8>>), NetbootError> {
    let base = Url::parse(base).map_err(NetbootError::Fetch)?;
    let b = &m.body;
    let mut get = |which: &str, a: &phase_core::boot::manifest::Artifact| {
        let url = release_url(&base, &b.channel, b.arch, &a.name);
        fetch::download(&url, a, &mut |have, total| progress(which, have, total), give_up).map_err(NetbootError::Download)
    };
    let kernel = get("kernel", &b.kernel)?;
    let initramfs = get("initramfs", &b.initramfs)?;
    let drivers = match &b.drivers {
        Some(a) => Some(get("drivers", a)?),
        None => None,
    };
    Ok((kernel, initramfs, drivers))
}

/// One round over the candidates: every manifest is fetched and verified first (each
/// provider within MANIFEST_TIME) and raises the plan's floors; then the newest version is
/// downloaded from the providers that offer it, in order, until one works; all of it by
/// `give_up`. Older offers are refused as rollbacks even when the newest cannot be had (the
/// caller goes round again until its deadline): a hostile provider that corrupts the newest
/// release cannot make a node boot an older one. Each refusal is logged with its reason.
pub fn try_providers(candidates: &[String], plan: &mut Plan, give_up: Instant) -> Option<Fetched> {
    let mut offers: Vec<(Manifest, String, &String)> = vec![];
    for c in candidates {
        if Instant::now() >= give_up {
            break;
        }
        match fetch_manifest(c, plan, (Instant::now() + MANIFEST_TIME).min(give_up)) {
            Ok((m, json)) => offers.push((m, json, c)),
            Err(e) => log!("netboot: provider {c} refused: {e}"),
        }
    }
    for (m, _, _) in &offers {
        plan.floors = plan.floors.raised(&m.body);
    }
    // Newest first; among equals, the order given (explicit providers first).
    offers.sort_by_key(|o| std::cmp::Reverse(o.0.body.version));
    for (m, json, c) in offers {
        if let Err(why) = m.body.check_floor(plan.floors.version) {
            log!("netboot: provider {c} refused: {why}");
            continue;
        }
        let started = Instant::now();
        log!(
            "netboot: {c} offers {}/{} version {} signed by {}: verified, downloading {:.1} MiB",
            m.body.channel,
            m.body.arch.name(),
            m.body.version,
            m.key_id(),
            m.body.artifacts().map(|(_, a)| a.size).sum::<u64>() as f64 / 1048576.0
        );
        let mut progress = |which: &str, have: u64, total: u64| {
            log!("netboot: {which} {:.1}/{:.1} MiB from {c}", have as f64 / 1048576.0, total as f64 / 1048576.0)
        };
        if Instant::now() >= give_up {
            break;
        }
        match fetch_artifacts(c, &m, &mut progress, give_up) {
            Ok((kernel, initramfs, drivers)) => {
                let secs = started.elapsed().as_secs_f64();
                let mib = (kernel.len() + initramfs.len() + drivers.as_ref().map_or(0, Vec::len)) as f64 / 1048576.0;
                log!("netboot: artifacts from {c} verified (SHA-256, size): {mib:.1} MiB in {secs:.2}s");
                return Some(Fetched { floors: plan.floors, release: Release { manifest: m, manifest_json: json, kernel, initramfs, drivers }, from: c.clone() });
            }
            Err(e) => log!("netboot: provider {c} refused: {e}"),
        }
    }
    None
}

/// Rounds over explicit and discovered providers with backoff until one serves a verifiable
/// release or `deadline` passes (whatever providers do: every exchange is bounded by it): the
/// network and the providers may still be coming up. `discover` gets the time left.
pub fn find_release(explicit: &[String], discover: &mut dyn FnMut(Instant) -> Vec<String>, plan: &mut Plan, deadline: Duration) -> Result<Fetched, NetbootError> {
    let started = Instant::now();
    let give_up = started + deadline;
    let mut round = 0u32;
    loop {
        let mut candidates: Vec<String> = explicit.to_vec();
        for d in discover(give_up) {
            if !candidates.contains(&d) {
                candidates.push(d);
            }
        }
        if candidates.is_empty() {
            if round % 5 == 0 {
                log!("netboot: no provider of {}/{} found yet ({:.0}s)", plan.channel, plan.arch.name(), started.elapsed().as_secs_f64());
            }
        } else if let Some(f) = try_providers(&candidates, plan, give_up) {
            return Ok(f);
        }
        round += 1;
        if Instant::now() >= give_up {
            return Err(NetbootError::NotFound { release: format!("{}/{}", plan.channel, plan.arch.name()), floor: plan.floors.version, secs: deadline.as_secs() });
        }
        // Quick while discovery is starting, then calmer.
        let pause = if candidates.is_empty() { Duration::from_millis(250) } else { Duration::from_millis((500u64 << round.min(4)).min(5000)) };
        std::thread::sleep(pause.min(give_up.saturating_duration_since(Instant::now())));
    }
}

/// Where Debian's ipxe package keeps the network boot programs, and where a carrying initrd
/// puts them so the booted node can answer PXE clients too (`phase.pxe`).
pub const PROGRAMS_DIR: &str = "/usr/lib/ipxe";

/// What a machine boots next: a kernel, its initrd and its command line (u-root's `OSImage`):
/// made once, from a verified release, then loaded and executed by kexec (a netboot hop),
/// written to files (`phase carry`), or served to machines that boot by PXE.
pub struct BootImage {
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    pub cmdline: String,
    /// What it is, for logs: `channel/arch version N`.
    pub what: String,
}

impl BootImage {
    /// The image that boots `release` and carries it on: its kernel; as initrd its initramfs,
    /// then its drivers archive if it has one, then (each at the next 4-byte boundary) an
    /// uncompressed cpio archive carrying
    /// `boot/phase/<channel>/<arch>/{manifest.json, kernel, initramfs[, drivers]}` (the artifacts are
    /// compressed already) and the publisher keys trusted here (`etc/phase/trust`), so the
    /// booted node can verify what it carries and serve it, and the hop after it can verify
    /// what it fetches, whatever the release's own image trusts; and the network boot programs
    /// this node serves, if any (`usr/lib/ipxe/…`).
    pub fn carrying(release: Release, trusted: &[[u8; 32]], programs: &[(&str, &[u8])], cmdline: String) -> Result<BootImage, CpioError> {
        Self::carrying_with(release, trusted, programs, cmdline, Extras::default())
    }

    /// `carrying`, with what an update hop adds (`Extras`).
    pub fn carrying_with(release: Release, trusted: &[[u8; 32]], programs: &[(&str, &[u8])], cmdline: String, extras: Extras) -> Result<BootImage, CpioError> {
        let Release { manifest: m, manifest_json, kernel, initramfs, drivers } = release;
        let b = &m.body;
        let mut first = initramfs.clone();
        if let Some(d) = &drivers {
            // The kernel's unpacker skips the zeros between archives.
            first.resize(first.len().next_multiple_of(4), 0);
            first.extend_from_slice(d);
        }
        let mut w = CpioWriter::after(first);
        let mut made = vec![];
        let carried = Release { manifest: m.clone(), manifest_json, kernel: Vec::new(), initramfs, drivers };
        add_release(&mut w, &mut made, CARRIED_STORE, &carried, &kernel)?;
        drop(carried);
        if let Some(prev) = &extras.previous {
            add_release(&mut w, &mut made, PREVIOUS_STORE, prev, &prev.kernel)?;
            w.file(PREVIOUS_CMDLINE.trim_start_matches('/'), 0o644, format!("{}\n", extras.previous_cmdline).as_bytes())?;
        }
        if !extras.failure_reports.is_empty() {
            let dir = FAILURES_DIR.trim_start_matches('/');
            dirs(&mut w, &mut made, dir)?;
            for (i, r) in extras.failure_reports.iter().enumerate() {
                w.file(&format!("{dir}/{i}.json"), 0o644, format!("{r}\n").as_bytes())?;
            }
        }
        crate::image::add_trust(&mut w, trusted)?;
        if !programs.is_empty() {
            for d in ["usr", "usr/lib", PROGRAMS_DIR.trim_start_matches('/')] {
                w.dir(d, 0o755)?;
            }
            for (name, bytes) in programs {
                w.file(&format!("{}/{name}", PROGRAMS_DIR.trim_start_matches('/')), 0o644, bytes)?;
            }
        }
        Ok(BootImage { kernel, initrd: w.finish(), cmdline, what: format!("{}/{} version {}", b.channel, b.arch.name(), b.version) })
    }
}

/// Where a booted node finds the release an update came from (carried by the update hop, so
/// the node can return to it), and the failure reports it is to tell its peers.
pub const PREVIOUS_STORE: &str = "/boot/phase-previous";
pub const FAILURES_DIR: &str = "/boot/phase-failures";

/// What an update hop carries besides the release it boots.
#[derive(Default)]
pub struct Extras {
    /// The release this machine ran: the one to return to if the new one is not healthy.
    pub previous: Option<Release>,
    /// The command line the machine ran `previous` with (to return with it).
    pub previous_cmdline: String,
    /// Failure reports (JSON) for the booted node to keep and tell its peers.
    pub failure_reports: Vec<String>,
}

/// The file beside the carried previous release that holds its command line.
pub const PREVIOUS_CMDLINE: &str = "/boot/phase-previous/cmdline";

/// Writes the directories of `path` (relative) not in `made` yet, each once.
fn dirs(w: &mut CpioWriter, made: &mut Vec<String>, path: &str) -> Result<(), CpioError> {
    let mut at = String::new();
    for part in path.split('/') {
        at = if at.is_empty() { part.to_string() } else { format!("{at}/{part}") };
        if !made.contains(&at) {
            w.dir(&at, 0o755)?;
            made.push(at.clone());
        }
    }
    Ok(())
}

/// Writes `release` as a store entry under `root` (`<root>/<channel>/<arch>/…`) into the archive;
/// its kernel is `kernel` (the caller may have moved it out of the release).
fn add_release(w: &mut CpioWriter, made: &mut Vec<String>, root: &str, release: &Release, kernel: &[u8]) -> Result<(), CpioError> {
    let b = &release.manifest.body;
    let root = root.trim_start_matches('/');
    let dir = format!("{root}/{}/{}", b.channel, b.arch.name());
    dirs(w, made, &dir)?;
    w.file(&format!("{dir}/{MANIFEST_FILE}"), 0o644, format!("{}\n", release.manifest_json).as_bytes())?;
    w.file(&format!("{dir}/{}", b.kernel.name), 0o644, kernel)?;
    w.file(&format!("{dir}/{}", b.initramfs.name), 0o644, &release.initramfs)?;
    if let (Some(a), Some(d)) = (&b.drivers, &release.drivers) {
        w.file(&format!("{dir}/{}", a.name), 0o644, d)?;
    }
    Ok(())
}

/// Where kexec-tools looks for the kernel and initrd it loads (a tmpfs on the appliance).
const KEXEC_TOOLS: &str = "/sbin/kexec";
const KEXEC_SCRATCH: &str = "/run/phase/next";

/// Why the next kernel could not be loaded or started.
#[derive(Debug)]
pub enum KexecError {
    /// A syscall or file (what, and what the OS said).
    Os { what: String, error: std::io::Error },
    /// kexec-tools refused (its own words).
    Tools(String),
}

impl fmt::Display for KexecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KexecError::Os { what, error } => write!(f, "{what}: {error}"),
            KexecError::Tools(why) => write!(f, "{KEXEC_TOOLS} -l: {why}"),
        }
    }
}

impl std::error::Error for KexecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KexecError::Os { error, .. } => Some(error),
            KexecError::Tools(_) => None,
        }
    }
}

impl BootImage {
    /// Loads it as the next kernel: kexec_file_load from memfds, or kexec-tools' kexec_load
    /// where the kernel has no KEXEC_FILE (ENOSYS). Returns how.
    pub fn load(&self) -> Result<&'static str, KexecError> {
        use crate::sys;
        let os = |what: String| move |error| KexecError::Os { what, error };
        let started = Instant::now();
        let kernel = sys::memfd_with("phase-kernel", &self.kernel).map_err(os("memfd for the kernel".into()))?;
        let initrd = sys::memfd_with("phase-initrd", &self.initrd).map_err(os("memfd for the initrd".into()))?;
        match sys::kexec_file_load(&kernel, &initrd, &self.cmdline) {
            Ok(()) => {
                log!("netboot: kexec_file_load done in {:.2}s", started.elapsed().as_secs_f64());
                Ok("kexec_file_load")
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                if !std::path::Path::new(KEXEC_TOOLS).exists() {
                    return Err(KexecError::Os { what: format!("kexec_file_load (kernel without KEXEC_FILE) and no {KEXEC_TOOLS} in the image for kexec_load"), error: e });
                }
                let dir = std::path::Path::new(KEXEC_SCRATCH);
                std::fs::create_dir_all(dir).map_err(os(dir.display().to_string()))?;
                let (kp, ip) = (dir.join("kernel"), dir.join("initrd"));
                std::fs::write(&kp, &self.kernel).map_err(os(kp.display().to_string()))?;
                std::fs::write(&ip, &self.initrd).map_err(os(ip.display().to_string()))?;
                let out = std::process::Command::new(KEXEC_TOOLS)
                    .arg("-l")
                    .arg(&kp)
                    .arg(format!("--initrd={}", ip.display()))
                    .arg(format!("--command-line={}", self.cmdline))
                    .output()
                    .map_err(os(KEXEC_TOOLS.into()))?;
                if !out.status.success() {
                    return Err(KexecError::Tools(String::from_utf8_lossy(&out.stderr).trim().to_string()));
                }
                Ok("kexec-tools kexec_load")
            }
            // Locked down (Secure Boot), the kernel checks the next kernel's PE signature against
            // the keys the firmware trusts (docs/decisions.md D43).
            Err(error) if matches!(error.raw_os_error(), Some(libc::EPERM | libc::EKEYREJECTED | libc::ENOKEY | libc::EBADMSG | libc::ENODATA)) && locked_down() => {
                Err(KexecError::Os {
                    what: format!(
                        "kexec_file_load: this machine runs under Secure Boot (kernel lockdown) and the release's kernel ({} bytes) carries no signature by a key its firmware trusts (db or shim's MOK list)",
                        self.kernel.len()
                    ),
                    error,
                })
            }
            Err(error) => Err(KexecError::Os { what: format!("kexec_file_load (kernel {} bytes, initrd {} bytes)", self.kernel.len(), self.initrd.len()), error }),
        }
    }

    /// Boots the loaded kernel. Returns only on failure.
    pub fn execute() -> KexecError {
        crate::sys::sync();
        match crate::sys::reboot(crate::sys::RebootCmd::Kexec) {
            Ok(()) => KexecError::Os { what: "reboot(KEXEC) returned".into(), error: std::io::Error::other("no error, but still running") },
            Err(error) => KexecError::Os { what: "reboot(KEXEC)".into(), error },
        }
    }
}

/// The next kernel's command line: the manifest's, then every `phase.*` parameter of this hop
/// whose key the manifest does not set (the manifest wins), then the floors this hop leaves
/// (`phase.floor`, `phase.time_floor`: neither the manifest nor this hop's own may lower them).
/// Parameters of one boot only (`cmdline::hop_local`: floors, an update's trial) are not passed on.
pub fn next_cmdline(manifest_cmdline: &str, passthrough: &[String], floors: &Floors) -> String {
    let key = |w: &str| w.split('=').next().unwrap_or("").to_string();
    let floor_key = |w: &str| phase_core::boot::cmdline::hop_local(w);
    let set: Vec<String> = manifest_cmdline.split_whitespace().filter(|w| w.starts_with("phase.")).map(key).collect();
    let mut words: Vec<String> = manifest_cmdline.split_whitespace().filter(|w| !floor_key(w)).map(str::to_string).collect();
    for p in passthrough {
        if !set.contains(&key(p)) && !floor_key(p) {
            words.push(p.clone());
        }
    }
    words.push(format!("phase.floor={}", floors.version));
    words.push(format!("phase.time_floor={}", floors.time));
    words.join(" ")
}

/// True when the kernel is locked down (integrity or confidentiality).
fn locked_down() -> bool {
    std::fs::read_to_string("/sys/kernel/security/lockdown").is_ok_and(|t| !t.contains("[none]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_passes_phase_parameters_on_and_the_manifest_wins() {
        let pass = vec!["phase.mode=local".to_string(), "phase.channel=edge".to_string(), "phase.boot=net".to_string(), "phase.floor=2".to_string()];
        let floors = Floors { version: 5, time: 1_800_000_000 };
        assert_eq!(
            next_cmdline("console=ttyS0 phase.channel=stable phase.floor=1", &pass, &floors),
            "console=ttyS0 phase.channel=stable phase.mode=local phase.boot=net phase.floor=5 phase.time_floor=1800000000"
        );
        assert_eq!(next_cmdline("", &pass[..1], &floors), "phase.mode=local phase.floor=5 phase.time_floor=1800000000");
        // An update's trial is one boot's: neither passed on nor settable by a manifest.
        let trial = vec!["phase.trial=120".to_string(), "phase.trial_peers=1".to_string(), "phase.health_timeout=60".to_string()];
        assert_eq!(next_cmdline("phase.trial=9999", &trial, &floors), "phase.health_timeout=60 phase.floor=5 phase.time_floor=1800000000");
    }
}
