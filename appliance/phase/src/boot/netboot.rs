//! One netboot hop: find providers, fetch and verify the newest release they offer, download
//! its artifacts (failing over to the next provider on any error), then build the next
//! kernel's initrd: the verified initramfs with a second cpio archive appended that carries
//! the kernel, the initramfs and the signed manifest, so the booted node serves them on
//! (docs/netboot.md).

use std::fmt;
use std::time::{Duration, Instant};

/// What one provider gets to answer with a manifest (connect, head and body together).
pub const MANIFEST_TIME: Duration = Duration::from_secs(15);

use phase_core::boot::cpio::CpioWriter;
use phase_core::boot::manifest::{Arch, Floors, Manifest, ManifestError, MANIFEST_FILE};

use super::fetch::{self, DownloadError, FetchError, Url};

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
}

impl fmt::Display for NetbootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetbootError::Fetch(e) => e.fmt(f),
            NetbootError::Manifest { url, reason } => write!(f, "{url}: manifest refused: {reason}"),
            NetbootError::Download(e) => e.fmt(f),
        }
    }
}

/// A verified release, in RAM, and the floors it leaves this machine with.
pub struct Fetched {
    pub floors: Floors,
    pub manifest: Manifest,
    pub manifest_json: String,
    pub kernel: Vec<u8>,
    pub initramfs: Vec<u8>,
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

/// Downloads both artifacts of a verified manifest from `base`, by `give_up` at the latest.
pub fn fetch_artifacts(base: &str, m: &Manifest, progress: &mut dyn FnMut(&str, u64, u64), give_up: Instant) -> Result<(Vec<u8>, Vec<u8>), NetbootError> {
    let base = Url::parse(base).map_err(NetbootError::Fetch)?;
    let b = &m.body;
    let mut get = |which: &str, a: &phase_core::boot::manifest::Artifact| {
        let url = release_url(&base, &b.channel, b.arch, &a.name);
        fetch::download(&url, a, &mut |have, total| progress(which, have, total), give_up).map_err(NetbootError::Download)
    };
    let kernel = get("kernel", &b.kernel)?;
    let initramfs = get("initramfs", &b.initramfs)?;
    Ok((kernel, initramfs))
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
        if m.body.version < plan.floors.version {
            let why = ManifestError::Rollback { version: m.body.version, floor: plan.floors.version };
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
            (m.body.kernel.size + m.body.initramfs.size) as f64 / 1048576.0
        );
        let mut progress = |which: &str, have: u64, total: u64| {
            log!("netboot: {which} {:.1}/{:.1} MiB from {c}", have as f64 / 1048576.0, total as f64 / 1048576.0)
        };
        if Instant::now() >= give_up {
            break;
        }
        match fetch_artifacts(c, &m, &mut progress, give_up) {
            Ok((kernel, initramfs)) => {
                let secs = started.elapsed().as_secs_f64();
                let mib = (kernel.len() + initramfs.len()) as f64 / 1048576.0;
                log!("netboot: artifacts from {c} verified (SHA-256, size): {mib:.1} MiB in {secs:.2}s");
                return Some(Fetched { floors: plan.floors, manifest: m, manifest_json: json, kernel, initramfs, from: c.clone() });
            }
            Err(e) => log!("netboot: provider {c} refused: {e}"),
        }
    }
    None
}

/// Rounds over explicit and discovered providers with backoff until one serves a verifiable
/// release or `deadline` passes (whatever providers do: every exchange is bounded by it): the
/// network and the providers may still be coming up. `discover` gets the time left.
pub fn find_release(explicit: &[String], discover: &mut dyn FnMut(Instant) -> Vec<String>, plan: &mut Plan, deadline: Duration) -> Result<Fetched, String> {
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
            return Err(format!(
                "netboot: no provider served a verifiable {}/{} release of version {} or later within {}s",
                plan.channel,
                plan.arch.name(),
                plan.floors.version,
                deadline.as_secs()
            ));
        }
        // Quick while discovery is starting, then calmer.
        let pause = if candidates.is_empty() { Duration::from_millis(250) } else { Duration::from_millis((500u64 << round.min(4)).min(5000)) };
        std::thread::sleep(pause.min(give_up.saturating_duration_since(Instant::now())));
    }
}

/// Where Debian's ipxe package keeps the network boot programs, and where a carrying initrd
/// puts them so the booted node can answer PXE clients too (`phase.pxe`).
pub const PROGRAMS_DIR: &str = "/usr/lib/ipxe";

/// The next kernel's initrd: the initramfs, then (at the next 4-byte boundary) an
/// uncompressed cpio archive carrying `boot/phase/<channel>/<arch>/{manifest.json, kernel,
/// initramfs}` (the artifacts are compressed already) and the publisher keys this hop trusted
/// (`etc/phase/trust`), so the booted node can verify what it carries and serve it, and the
/// hop after it can verify what it fetches, whatever the release's own image trusts; and the
/// network boot programs this node serves, if any (`usr/lib/ipxe/…`).
pub fn next_initrd(m: &Manifest, manifest_json: &str, kernel: &[u8], initramfs: &[u8], trusted: &[[u8; 32]], programs: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    let b = &m.body;
    let dir = format!("boot/phase/{}/{}", b.channel, b.arch.name());
    let mut w = CpioWriter::after(initramfs.to_vec());
    let e = |e: phase_core::boot::cpio::CpioError| e.to_string();
    for d in ["boot", "boot/phase", &format!("boot/phase/{}", b.channel), &dir] {
        w.dir(d, 0o755).map_err(e)?;
    }
    w.file(&format!("{dir}/{MANIFEST_FILE}"), 0o644, format!("{manifest_json}\n").as_bytes()).map_err(e)?;
    w.file(&format!("{dir}/{}", b.kernel.name), 0o644, kernel).map_err(e)?;
    w.file(&format!("{dir}/{}", b.initramfs.name), 0o644, initramfs).map_err(e)?;
    crate::image::add_trust(&mut w, trusted)?;
    if !programs.is_empty() {
        for d in ["usr", "usr/lib", PROGRAMS_DIR.trim_start_matches('/')] {
            w.dir(d, 0o755).map_err(e)?;
        }
        for (name, bytes) in programs {
            w.file(&format!("{}/{name}", PROGRAMS_DIR.trim_start_matches('/')), 0o644, bytes).map_err(e)?;
        }
    }
    Ok(w.finish())
}

/// The next kernel's command line: the manifest's, then every `phase.*` parameter of this hop
/// whose key the manifest does not set (the manifest wins), then the floors this hop leaves
/// (`phase.floor`, `phase.time_floor`: neither the manifest nor this hop's own may lower them).
pub fn next_cmdline(manifest_cmdline: &str, passthrough: &[String], floors: &Floors) -> String {
    let key = |w: &str| w.split('=').next().unwrap_or("").to_string();
    let floor_key = |w: &str| matches!(key(w).as_str(), "phase.floor" | "phase.time_floor");
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
    }
}
