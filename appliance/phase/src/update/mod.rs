//! Fleet updates (docs/netboot.md, "Fleet updates"): the releases this node learns of, and
//! what it does with them. One home, `Updates`:
//!
//! - a release reaches it from an operator (`POST /v1/releases`, `phase publish --node`) or
//!   from a peer (`/phase/release/1.0.0`); either way the publisher's signature, key, channel,
//!   time and the node's version floor are checked before anything else is done with it, and
//!   only news is kept and passed on, so a notice floods the network once;
//! - a peer's notices cost a bounded amount: at most `NOTICES_PER_MINUTE` per peer are read
//!   past their length, the same bytes are judged once (`SEEN`), and what is kept is capped
//!   (`MAX_RELEASES`, `MAX_FAILURES`);
//! - when the release's rollout says this node's wave has started (its place derived from its
//!   key: phase_core::boot::rollout), a node that serves releases fetches it from its peers,
//!   verifies it and serves it in place of the old one (kept beside it);
//! - a release some node reported as failed (a signed failure report) is never fetched here.

pub mod fleet_text;
pub mod publish;
mod state;

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use phase_core::boot::manifest::{Arch, Floors, Manifest};
use phase_core::boot::rollout::{position, Notice, ReleaseId};

use crate::boot::provider::Provider;
use crate::jobs::Jobs;
use crate::p2p::{P2p, PeerId};
pub use publish::PublishError;
use state::{Known, State};

/// Notices one peer may send per minute; more are answered "not news" unread.
pub const NOTICES_PER_MINUTE: u32 = 30;
/// Releases kept (the newest per publisher, channel and arch).
pub const MAX_RELEASES: usize = 16;
/// Failure reports kept (the newest).
pub const MAX_FAILURES: usize = 64;
/// Notices remembered as judged, so repeats cost a hash.
pub const SEEN: usize = 512;
/// Peers whose notice budget is tracked (the least recent is forgotten).
pub const MAX_BUDGETS: usize = 1024;
/// Notices a newly identified peer is sent at most.
pub const GREETING: usize = 4;
/// How long a release installed here is served before this node boots it.
pub const SETTLE: Duration = Duration::from_secs(3);
/// How often the node looks whether its wave has come.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// What a fetch of a due release may take before it is tried again.
pub const FETCH_TIME: Duration = Duration::from_secs(120);

/// What the node's updates follow.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// The channel this node follows (releases of other channels are neither kept nor passed on).
    pub channel: String,
    /// Publisher keys it trusts (none: it learns of no release).
    pub trusted: Vec<[u8; 32]>,
    /// SHA-256 of the operator token that `POST /v1/releases` takes (none: no operator).
    pub operator: Option<[u8; 32]>,
    /// The floors file of the data dir: releases below its version floor are refused.
    pub floors: Option<std::path::PathBuf>,
    /// On an appliance: boot a newer release this node serves once its wave starts.
    pub apply: Option<Apply>,
}

/// How an appliance's node hands an update over to PID 1, which boots it.
#[derive(Debug, Clone)]
pub struct Apply {
    /// How long it waits for its jobs to end once it stopped taking new ones.
    pub drain: Duration,
    /// The file it writes (`<version> <connected peers> <where the release came from>`) before
    /// it exits with EXIT_UPDATE.
    pub handoff: std::path::PathBuf,
    /// While this file exists the machine tries a release on trial: nothing else is booted
    /// until PID 1 committed it (the release to return to is the one before the trial).
    pub trial_mark: std::path::PathBuf,
    /// A file PID 1 writes when someone types `update` on a console (init::commands): taken
    /// (and removed) within CHECK_EVERY as an operator's `POST /v1/update`.
    pub update_now: std::path::PathBuf,
    /// The daily maintenance window outside which no release is booted (None: any time).
    pub window: Option<phase_core::boot::cmdline::Window>,
}

/// The node's exit status that asks PID 1 to boot the release it serves (update hand-off).
pub const EXIT_UPDATE: i32 = 75;

/// Why an operator's request was refused.
#[derive(Debug)]
pub enum UpdateError {
    /// No or a wrong operator token.
    Token,
    NoOperator,
    Publish(PublishError),
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Token => f.write_str("operator token missing or wrong (Authorization: Bearer TOKEN)"),
            UpdateError::NoOperator => f.write_str("this node takes no operator requests (it was started without an operator token)"),
            UpdateError::Publish(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UpdateError {}

/// The node's releases and updates.
pub struct Updates {
    config: UpdateConfig,
    arch: Option<Arch>,
    /// This node's key: its place in rollouts.
    node_key: [u8; 32],
    boot: Option<Arc<Provider>>,
    jobs: Arc<Jobs>,
    network: OnceLock<P2p>,
    state: Mutex<State>,
    /// The floors file as last read (at start, then once per CHECK_EVERY by the updates
    /// thread: PID 1 raises it when it commits): notices are judged without touching the disk.
    /// A file that cannot be read or parsed is kept as its error: then nothing is learnt (floors
    /// are never silently lowered).
    floor_file: Mutex<Option<Result<crate::boot::floors::FloorFile, String>>>,
}

impl Updates {
    pub fn new(config: UpdateConfig, jobs: Arc<Jobs>, boot: Option<Arc<Provider>>) -> Updates {
        let node_key = jobs.identity().public_key();
        let arch = Arch::parse(std::env::consts::ARCH);
        let running = match (&boot, arch) {
            (Some(b), Some(a)) => b.find(&config.channel, a).map(|e| ReleaseId::of(&e.manifest)),
            _ => None,
        };
        let mut state = State::new(running);
        // What it serves is known: an older or equal release is no news, and new peers hear of it.
        for e in boot.iter().flat_map(|b| b.entries()).filter(|e| e.channel() == config.channel) {
            state.keep(Known { manifest: e.manifest.clone(), json: e.manifest_json.clone(), from: "this node's boot store".into(), heard_at: crate::clock::unix_now() });
        }
        // An appliance that returned from a release that failed here, or refused to boot one,
        // finds the signed reports in its initrd: kept, so it does not try that release again,
        // and told to its peers.
        if config.apply.is_some() {
            for r in read_reports(std::path::Path::new(crate::boot::netboot::FAILURES_DIR)) {
                log!("update: {} failed on this node: {}", r.release, r.reason);
                state.keep_failure(r);
            }
        }
        let floor_file = Mutex::new(config.floors.as_ref().map(|p| crate::boot::floors::FloorFile::open(p).map_err(|e| e.to_string())));
        Updates { config, arch, node_key, boot, jobs, network: OnceLock::new(), state: Mutex::new(state), floor_file }
    }

    /// Passes news on over `network` from now on.
    pub fn join(&self, network: P2p) {
        let _ = self.network.set(network);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The floors this node holds for its channel and `arch` (its floors file's, as last read).
    fn floors(&self, arch: Arch) -> Result<Floors, String> {
        let cached = self.floor_file.lock().unwrap_or_else(|e| e.into_inner());
        let recorded = match cached.as_ref() {
            Some(Ok(f)) => f.get(&format!("{}/{}", self.config.channel, arch.name())),
            Some(Err(e)) => return Err(format!("floors: {e}")),
            None => Floors::default(),
        };
        Ok(Floors { version: recorded.version, time: recorded.time.max(crate::boot::build_time()) })
    }

    /// Reads the floors file again (it is PID 1's to raise).
    fn reread_floors(&self) {
        if let Some(p) = &self.config.floors {
            let read = crate::boot::floors::FloorFile::open(p).map_err(|e| e.to_string());
            *self.floor_file.lock().unwrap_or_else(|e| e.into_inner()) = Some(read);
        }
    }

    /// Judges a release: a trusted publisher's signature over this channel, within its time
    /// window, not below the floor, newer than what is known of it, not reported failed.
    /// Ok(true) if it is news (then kept).
    fn learn(&self, m: &Manifest, json: &str, from: String) -> Result<bool, String> {
        if m.body.channel != self.config.channel {
            return Err(format!("{}/{}: not this node's channel {}", m.body.channel, m.body.arch.name(), self.config.channel));
        }
        // Releases for the other arch are checked and passed on too: a mixed fleet shares one network.
        m.verify_under(&self.config.trusted, crate::clock::unix_now(), &self.floors(m.body.arch)?, m.body.arch).map_err(|e| e.to_string())?;
        let mut state = self.state();
        let id = ReleaseId::of(m);
        if let Some(f) = state.failure_of(&id) {
            return Err(format!("{id} failed on node {}: {}", &phase_core::encoding::hex_encode(&f.node_key)[..16], f.reason));
        }
        Ok(state.keep(Known { manifest: m.clone(), json: json.to_string(), from, heard_at: crate::clock::unix_now() }))
    }

    /// A notice from `peer`: news or not (`p2p::Executor::notice`). Never blocks for long:
    /// one hash, at most one parse and one signature check.
    pub fn notice(&self, peer: PeerId, bytes: &[u8]) -> bool {
        {
            let mut state = self.state();
            state.received += 1;
            if !state.spend(peer, Instant::now()) {
                return false;
            }
            if !state.first_sight(phase_core::sha256(bytes)) {
                return false;
            }
        }
        match Notice::parse(bytes) {
            Ok(Notice::Release(m, json)) => match self.learn(&m, &json, format!("peer {peer}")) {
                Ok(news) => {
                    if news {
                        log!("update: {peer} tells of {}: verified", ReleaseId::of(&m));
                    }
                    news
                }
                Err(why) => {
                    self.state().refused(format!("a release from {peer}: {why}"));
                    false
                }
            },
            Ok(Notice::Failure(r)) => {
                let news = self.state().keep_failure(r.clone());
                if news {
                    log!("update: {peer} reports {} failed on node {}: {}", r.release, &phase_core::encoding::hex_encode(&r.node_key)[..16], r.reason);
                    self.withdraw(&r.release);
                }
                news
            }
            Err(e) => {
                self.state().refused(format!("a notice from {peer}: {e}"));
                false
            }
        }
    }

    /// A release reported failed that this node serves but does not run is withdrawn: the
    /// release it served before (kept beside it) is served again, so no machine boots the
    /// failed one from here.
    fn withdraw(&self, id: &ReleaseId) {
        let (Some(boot), Some(arch)) = (&self.boot, self.arch) else { return };
        let serves = boot.find(&self.config.channel, arch).is_some_and(|e| ReleaseId::of(&e.manifest) == *id);
        if !serves || self.state().running.as_ref() == Some(id) || id.arch != arch {
            return;
        }
        match boot.restore_previous(&self.config.channel, arch, &self.config.trusted) {
            Ok(e) => self.state().event(format!("withdrew {id}: serving version {} again", e.manifest.body.version)),
            Err(e) => log!("update: {id} failed elsewhere, but the release before it cannot be served again: {e}"),
        }
    }

    /// What a newly identified peer is told: the newest releases, then the latest failure
    /// reports, GREETING at most (a peer takes 4 notice streams at once; the rest it hears
    /// from whoever learns them next, or at the next identify, every 5 minutes).
    pub fn notices(&self) -> Vec<Vec<u8>> {
        let state = self.state();
        let mut releases: Vec<&Known> = state.releases.iter().collect();
        releases.sort_by_key(|k| std::cmp::Reverse(k.manifest.body.version));
        let failures = state.failures.iter().rev().map(|f| f.to_json().into_bytes());
        releases.into_iter().map(|k| k.json.clone().into_bytes()).chain(failures).take(GREETING).collect()
    }

    fn announce(&self, notice: String) {
        if let Some(n) = self.network.get() {
            n.announce(notice.into_bytes(), None);
        }
    }

    /// Checks an operator's `Authorization` header value against the token's hash.
    pub fn authorize(&self, header: Option<&str>) -> Result<(), UpdateError> {
        let Some(want) = self.config.operator else { return Err(UpdateError::NoOperator) };
        let token = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).ok_or(UpdateError::Token)?;
        // Compared as hashes: the comparison says nothing about the token's bytes.
        match phase_core::sha256(token.as_bytes()) == want {
            true => Ok(()),
            false => Err(UpdateError::Token),
        }
    }

    /// An operator publishes a release here (`POST /v1/releases`, body: the manifest JSON on
    /// its first line, then the artifacts in manifest order): verified as a peer's release is,
    /// its bytes checked, served from now on, and announced to the peers.
    pub fn publish(&self, body: &[u8]) -> Result<ReleaseId, UpdateError> {
        let release = publish::read(body).map_err(UpdateError::Publish)?;
        let m = &release.manifest;
        let id = ReleaseId::of(m);
        let news = self.learn(m, &release.manifest_json, "an operator on this node".into()).map_err(|why| UpdateError::Publish(PublishError::Refused(why)))?;
        if !news {
            let why = format!("{id} is not newer than the release of its publisher this node knows (a rollback, or published already)");
            return Err(UpdateError::Publish(PublishError::Refused(why)));
        }
        let Some(boot) = &self.boot else { return Err(UpdateError::Publish(PublishError::NoStore)) };
        // Not booted before this request is answered and the peers are told (see `SETTLE`).
        self.state().installing += 1;
        let installed = boot.install(&release);
        let mut state = self.state();
        state.installing -= 1;
        state.installed_at = Some(Instant::now());
        installed.map_err(|e| UpdateError::Publish(PublishError::Store(e.to_string())))?;
        log!("update: published {} here; telling the peers", release.describe());
        state.event(format!("published {id} here"));
        state.installed_from = Some("operator".into());
        drop(state);
        self.announce(release.manifest_json.clone());
        Ok(id)
    }

    /// An operator's `POST /v1/update` (or `update` typed on the appliance's console: `by`
    /// says which): the newest release known is taken up now, whatever its wave or window
    /// (never one reported failed). What will happen, as JSON.
    pub fn update_now(&self, by: &str) -> String {
        let mut state = self.state();
        let newest = self.arch.and_then(|a| state.newest(&self.config.channel, a)).map(|k| ReleaseId::of(&k.manifest));
        // The command is for the release known now: a later one waits for its own wave.
        state.commanded = state.commanded.max(newest.as_ref().map(|id| id.version));
        let what = match &newest {
            Some(id) if state.failure_of(id).is_some() => format!("{id} was reported failed: not taken up"),
            Some(id) if state.running.as_ref().is_some_and(|r| r.version >= id.version) => format!("this node runs {id} already"),
            Some(id) => format!("taking {id} up now"),
            None => "no release is known".to_string(),
        };
        log!("update: {by} asked for an update: {what}");
        state.event(format!("{by} asked for an update: {what}"));
        format!("{{\"update\":{}}}", miniserde::json::to_string(&what))
    }

    /// This node's place in the rollouts of `publisher`'s channel (0..10000).
    pub fn position(&self, publisher: &[u8; 32]) -> u32 {
        position(publisher, &self.config.channel, &self.node_key)
    }

    /// The release this node should serve now, if it is not serving it yet: the newest known
    /// for its channel and arch, newer than the one served, not failed, its wave started.
    /// With the unix time it becomes due when it is not due yet.
    fn due(&self, now: u64) -> (Option<Known>, Option<u64>) {
        let (Some(boot), Some(arch)) = (&self.boot, self.arch) else { return (None, None) };
        let serving = boot.find(&self.config.channel, arch).map(|e| e.manifest.body.version);
        let state = self.state();
        let Some(k) = state.newest(&self.config.channel, arch) else { return (None, None) };
        if serving.is_some_and(|v| v >= k.manifest.body.version) || state.failure_of(&ReleaseId::of(&k.manifest)).is_some() {
            return (None, None);
        }
        let b = &k.manifest.body;
        let starts = b.rollout.as_ref().map_or(b.created_at, |r| r.starts_at(b.created_at, self.position(&k.manifest.publisher_key)));
        match now >= starts || state.commanded_for(b.version) {
            true => (Some(k.clone()), None),
            false => (None, Some(starts)),
        }
    }

    /// Starts the thread that fetches a release when this node's wave has come.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new().name("updates".into()).spawn(move || me.run()).map(|_| ())
    }

    fn run(&self) {
        let mut waiting_for: Option<(u64, u64)> = None;
        let mut retry_at = Instant::now();
        let mut hand_off_at = Instant::now();
        loop {
            std::thread::sleep(CHECK_EVERY);
            self.reread_floors();
            if let Some(apply) = &self.config.apply {
                if std::fs::remove_file(&apply.update_now).is_ok() {
                    self.update_now("someone at the console");
                }
            }
            let now = crate::clock::unix_now();
            if let (Some(apply), Some(id), true) = (&self.config.apply, self.to_boot(now), Instant::now() >= hand_off_at) {
                self.hand_off(apply, &id);
                // Only back here if the hand-off could not be written: again in a minute.
                hand_off_at = Instant::now() + Duration::from_secs(60);
            }
            match self.due(now) {
                (Some(k), _) if Instant::now() >= retry_at => {
                    if let Err(why) = self.fetch(&k) {
                        log!("update: {}: {why}; trying again in 10s", ReleaseId::of(&k.manifest));
                        self.state().event(format!("fetching {} failed: {why}", ReleaseId::of(&k.manifest)));
                        retry_at = Instant::now() + Duration::from_secs(10);
                    }
                }
                (None, Some(at)) => {
                    let version = self.state().newest(&self.config.channel, self.arch.unwrap_or(Arch::X86_64)).map_or(0, |k| k.manifest.body.version);
                    if waiting_for != Some((version, at)) {
                        waiting_for = Some((version, at));
                        log!("update: version {version} is known; this node's wave starts in {}s", at.saturating_sub(now));
                    }
                }
                _ => {}
            }
        }
    }

    /// The release this node serves but does not run yet, once its wave has started here and
    /// no failure report names it: the one to boot.
    fn to_boot(&self, now: u64) -> Option<ReleaseId> {
        if self.config.apply.as_ref().is_some_and(|a| a.trial_mark.exists()) {
            return None;
        }
        let (boot, arch) = (self.boot.as_ref()?, self.arch?);
        let serving = boot.find(&self.config.channel, arch)?;
        let state = self.state();
        // A release just installed is not booted at once: the operator's request that brought it
        // is answered first, and the peers hear of it from here.
        if state.installing > 0 || state.installed_at.is_some_and(|t| t.elapsed() < SETTLE) {
            return None;
        }
        let id = ReleaseId::of(&serving.manifest);
        let newer = state.running.as_ref().is_none_or(|r| r.version < id.version);
        let b = &serving.manifest.body;
        let starts = b.rollout.as_ref().map_or(b.created_at, |r| r.starts_at(b.created_at, self.position(&serving.manifest.publisher_key)));
        // Within the maintenance window, unless an operator asked for it now.
        let window = self.config.apply.as_ref().and_then(|a| a.window);
        let commanded = state.commanded_for(id.version);
        let open = commanded || window.is_none_or(|w| w.contains(now));
        (newer && open && (now >= starts || commanded) && state.failure_of(&id).is_none()).then_some(id)
    }

    /// Drains (no new jobs; those running and queued may end within the bound), then tells
    /// PID 1 to boot `id` and exits. Returns only if the hand-off file cannot be written.
    fn hand_off(&self, apply: &Apply, id: &ReleaseId) {
        log!("update: {id} is due on this node: draining (at most {}s), then booting it", apply.drain.as_secs());
        self.state().event(format!("draining to boot {id}"));
        self.jobs.drain(format!("it is about to boot {id}"));
        let started = Instant::now();
        while !self.jobs.idle() && started.elapsed() < apply.drain {
            std::thread::sleep(Duration::from_millis(200));
        }
        if !self.jobs.idle() {
            let (queued, running, ..) = self.jobs.queue_counts();
            log!("update: after {}s {} job(s) still run here and {queued} asynchronous job(s) wait ({running} running): booting anyway", apply.drain.as_secs(), self.jobs.in_flight());
        }
        let peers = self.network.get().and_then(|n| n.peers().ok()).map_or(0, |p| p.iter().filter(|p| p.connected && p.agent.starts_with("phase/")).count());
        let from = self.state().installed_from.clone().unwrap_or_else(|| "-".into());
        if let Err(e) = crate::durable::replace(&apply.handoff, format!("{} {peers} {from}\n", id.version).as_bytes()) {
            log!("update: cannot hand {id} over ({}: {e}): staying on this release, taking jobs again", apply.handoff.display());
            self.jobs.undrain();
            return;
        }
        log!("update: drained in {:.1}s; handing over to PID 1 to boot {id}", started.elapsed().as_secs_f64());
        std::process::exit(EXIT_UPDATE);
    }

    /// Fetches a due release from the peers that serve it, verifies it, and serves it.
    fn fetch(&self, k: &Known) -> Result<(), String> {
        let (Some(boot), Some(network)) = (&self.boot, self.network.get()) else { return Err("no boot store or no peer network".into()) };
        let m = &k.manifest;
        let candidates: Vec<String> = network.peers().map_err(|e| e.to_string())?.iter().filter(|p| p.connected).flat_map(|p| p.http_urls()).take(16).collect();
        if candidates.is_empty() {
            return Err("no connected peer serves it yet".into());
        }
        let mut plan = crate::boot::netboot::Plan {
            channel: m.body.channel.clone(),
            arch: m.body.arch,
            trusted: vec![m.publisher_key],
            floors: Floors { version: m.body.version, time: self.floors(m.body.arch)?.time },
            clock: crate::clock::unix_now(),
        };
        let fetched = crate::boot::netboot::try_providers(&candidates, &mut plan, Instant::now() + FETCH_TIME).ok_or("no peer served it verified")?;
        if ReleaseId::of(&fetched.release.manifest) != ReleaseId::of(m) {
            // A newer one than the one due: judged as a peer's notice would be, next round.
            let (newer, json) = (fetched.release.manifest.clone(), fetched.release.manifest_json.clone());
            self.learn(&newer, &json, fetched.from.clone())?;
            return Err(format!("{} offered a newer release; it is judged first", fetched.from));
        }
        boot.install(&fetched.release).map_err(|e| e.to_string())?;
        let mut state = self.state();
        state.event(format!("now serving {} (from {})", ReleaseId::of(m), fetched.from));
        state.installed_from = Some(fetched.from.clone());
        state.installed_at = Some(Instant::now());
        Ok(())
    }

    /// `GET /v1/update`: what this node runs and serves, the releases and failures it knows,
    /// where it stands in their rollouts, and what happened lately.
    pub fn status_json(&self) -> String {
        let now = crate::clock::unix_now();
        let serving = match (&self.boot, self.arch) {
            (Some(b), Some(a)) => b.find(&self.config.channel, a).map(|e| e.manifest.body.version),
            _ => None,
        };
        let (_, waits) = self.due(now);
        let state = self.state();
        let window = self.config.apply.as_ref().and_then(|a| a.window);
        state.to_json(&StatusView { channel: &self.config.channel, arch: self.arch, serving, boots: self.config.apply.is_some(), window, wave_starts_at: waits, now, position: &|p| self.position(p) })
    }
}

/// What `status_json` adds to the state.
pub(crate) struct StatusView<'a> {
    pub channel: &'a str,
    pub arch: Option<Arch>,
    pub serving: Option<u64>,
    /// Whether this node boots the releases it takes up (an appliance) or only serves them.
    pub boots: bool,
    pub window: Option<phase_core::boot::cmdline::Window>,
    pub wave_starts_at: Option<u64>,
    pub now: u64,
    pub position: &'a dyn Fn(&[u8; 32]) -> u32,
}

/// Bounded log lines for the status (newest last).
pub(crate) fn push_bounded<T>(list: &mut VecDeque<T>, item: T, max: usize) {
    if list.len() >= max {
        list.pop_front();
    }
    list.push_back(item);
}

/// The failure reports (`*.json`, at most MAX_FAILURES of at most 16 KiB) in `dir`, each
/// verified; others are logged and left out.
fn read_reports(dir: &std::path::Path) -> Vec<phase_core::boot::rollout::FailureReport> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut out = vec![];
    for e in entries.flatten().take(MAX_FAILURES) {
        let path = e.path();
        let bytes = match std::fs::File::open(&path).and_then(|f| {
            use std::io::Read;
            let mut b = vec![];
            f.take(phase_core::boot::rollout::MAX_NOTICE as u64 + 1).read_to_end(&mut b).map(|_| b)
        }) {
            Ok(b) => b,
            Err(e) => {
                log!("update: {}: {e}", path.display());
                continue;
            }
        };
        match Notice::parse(&bytes) {
            Ok(Notice::Failure(r)) => out.push(r),
            Ok(_) => log!("update: {}: not a failure report", path.display()),
            Err(e) => log!("update: {}: {e}", path.display()),
        }
    }
    out
}
