//! What `Updates` keeps: the releases and failure reports it learnt, each capped, the notices
//! it judged, every peer's notice budget, and a short log of what happened.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use phase_core::boot::manifest::{Arch, Manifest};
use phase_core::boot::rollout::{FailureReport, ReleaseId};
use phase_core::encoding::hex_encode;
use phase_core::Digest;

use super::{push_bounded, StatusView, MAX_BUDGETS, MAX_FAILURES, MAX_RELEASES, NOTICES_PER_MINUTE, SEEN};
use crate::p2p::PeerId;

/// Lines of the log kept for the status.
const EVENTS: usize = 32;

/// A release learnt and verified.
#[derive(Clone)]
pub(super) struct Known {
    pub manifest: Manifest,
    pub json: String,
    /// Who told this node first (a peer, or an operator here).
    pub from: String,
    pub heard_at: u64,
}

pub(super) struct State {
    /// The release this node was started with (what it booted, on an appliance).
    pub running: Option<ReleaseId>,
    pub releases: Vec<Known>,
    pub failures: VecDeque<FailureReport>,
    seen: VecDeque<Digest>,
    budgets: HashMap<PeerId, (Instant, u32)>,
    events: VecDeque<(u64, String)>,
    /// Notices refused, by count (the reasons of the latest are in the events).
    refused: u64,
    /// Notices received, over budget or not.
    pub received: u64,
    /// An operator asked for the newest release now (`POST /v1/update`), whatever its wave:
    /// the version that was the newest known then.
    pub commanded: Option<u64>,
    /// Where the release served now came from, when this node took it up (a provider's URL,
    /// or `operator`): passed on to the boot that runs it (`phase.from`).
    pub installed_from: Option<String>,
    /// Installs in progress (an operator's publish), and when the last one ended.
    pub installing: u32,
    pub installed_at: Option<Instant>,
}

impl State {
    pub fn new(running: Option<ReleaseId>) -> State {
        State { running, releases: vec![], failures: VecDeque::new(), seen: VecDeque::new(), budgets: HashMap::new(), events: VecDeque::new(), refused: 0, received: 0, commanded: None, installed_from: None, installing: 0, installed_at: None }
    }

    /// Takes one notice from `peer`'s budget: false once it sent NOTICES_PER_MINUTE this minute.
    pub fn spend(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.budgets.contains_key(&peer) && self.budgets.len() >= MAX_BUDGETS {
            if let Some(oldest) = self.budgets.iter().min_by_key(|(_, (t, _))| *t).map(|(p, _)| *p) {
                self.budgets.remove(&oldest);
            }
        }
        let (start, count) = self.budgets.entry(peer).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count <= NOTICES_PER_MINUTE
    }

    /// True the first time these notice bytes are seen (of the last SEEN).
    pub fn first_sight(&mut self, hash: Digest) -> bool {
        if self.seen.contains(&hash) {
            return false;
        }
        push_bounded(&mut self.seen, hash, SEEN);
        true
    }

    pub fn refused(&mut self, why: String) {
        self.refused += 1;
        self.event(format!("refused {why}"));
    }

    pub fn event(&mut self, what: String) {
        push_bounded(&mut self.events, (crate::clock::unix_now(), what), EVENTS);
    }

    /// Keeps a verified release if it is newer than the one known of its publisher, channel
    /// and arch (replacing that one); true if it was news.
    pub fn keep(&mut self, k: Known) -> bool {
        let id = ReleaseId::of(&k.manifest);
        let same = |o: &Known| o.manifest.publisher_key == id.publisher_key && o.manifest.body.channel == id.channel && o.manifest.body.arch == id.arch;
        if let Some(i) = self.releases.iter().position(same) {
            if self.releases[i].manifest.body.version >= id.version {
                return false;
            }
            self.releases.remove(i);
        } else if self.releases.len() >= MAX_RELEASES {
            // The channel is this node's: more than MAX_RELEASES publisher/arch pairs is a
            // flood; the oldest heard goes.
            self.releases.remove(0);
        }
        self.event(format!("learnt of {id} from {}", k.from));
        self.releases.push(k);
        true
    }

    /// Keeps a failure report unless it is known (same node and release); true if news.
    pub fn keep_failure(&mut self, r: FailureReport) -> bool {
        if self.failures.iter().any(|f| f.release == r.release && f.node_key == r.node_key) {
            return false;
        }
        self.event(format!("{} failed on node {}: {}", r.release, &hex_encode(&r.node_key)[..16], r.reason));
        push_bounded(&mut self.failures, r, MAX_FAILURES);
        true
    }

    /// Whether an operator's command covers `version` (the newest known when it was given).
    pub fn commanded_for(&self, version: u64) -> bool {
        self.commanded.is_some_and(|v| version <= v)
    }

    pub fn failure_of(&self, id: &ReleaseId) -> Option<&FailureReport> {
        self.failures.iter().find(|f| f.release == *id)
    }

    /// The newest release known for `channel`/`arch` (of any trusted publisher).
    pub fn newest(&self, channel: &str, arch: Arch) -> Option<&Known> {
        self.releases.iter().filter(|k| k.manifest.body.channel == channel && k.manifest.body.arch == arch).max_by_key(|k| k.manifest.body.version)
    }

    pub fn to_json(&self, v: &StatusView) -> String {
        let q = |s: &str| miniserde::json::to_string(&s.to_string());
        let opt = |n: Option<u64>| n.map_or("null".to_string(), |n| n.to_string());
        let releases: Vec<String> = self
            .releases
            .iter()
            .map(|k| {
                let b = &k.manifest.body;
                let id = ReleaseId::of(&k.manifest);
                let pos = (v.position)(&k.manifest.publisher_key);
                let (wave, starts) = match &b.rollout {
                    Some(r) => (r.wave_of(pos) + 1, r.starts_at(b.created_at, pos)),
                    None => (1, b.created_at),
                };
                format!(
                    "{{\"channel\":{},\"arch\":\"{}\",\"version\":{},\"publisher\":\"{}\",\"created_at\":{},\"rollout\":{},\"wave\":{wave},\"wave_starts_at\":{starts},\"position\":{pos},\"heard_from\":{},\"heard_at\":{},\"failed\":{}}}",
                    q(&b.channel),
                    b.arch.name(),
                    b.version,
                    k.manifest.key_id(),
                    b.created_at,
                    b.rollout.as_ref().map_or("null".into(), |r| q(&r.describe())),
                    q(&k.from),
                    k.heard_at,
                    self.failure_of(&id).is_some()
                )
            })
            .collect();
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|f| {
                format!(
                    "{{\"channel\":{},\"arch\":\"{}\",\"version\":{},\"publisher\":\"{}\",\"node_key\":\"{}\",\"at\":{},\"reason\":{}}}",
                    q(&f.release.channel),
                    f.release.arch.name(),
                    f.release.version,
                    phase_core::boot::manifest::key_id(&f.release.publisher_key),
                    hex_encode(&f.node_key),
                    f.at,
                    q(&f.reason)
                )
            })
            .collect();
        let events: Vec<String> = self.events.iter().map(|(at, what)| format!("{{\"at\":{at},\"what\":{}}}", q(what))).collect();
        format!(
            "{{\"channel\":{},\"arch\":{},\"running\":{},\"serving\":{},\"boots_releases\":{},\"window\":{},\"wave_starts_at\":{},\"now\":{},\"releases\":[{}],\"failures\":[{}],\"notices_received\":{},\"notices_refused\":{},\"events\":[{}]}}",
            q(v.channel),
            v.arch.map_or("null".into(), |a| q(a.name())),
            opt(self.running.as_ref().map(|r| r.version)),
            opt(v.serving),
            v.boots,
            v.window.map_or("null".to_string(), |w| format!("{{\"utc\":\"{w}\",\"open\":{},\"next_open\":{}}}", w.contains(v.now), w.next_open(v.now))),
            opt(v.wave_starts_at),
            v.now,
            releases.join(","),
            failures.join(","),
            self.received,
            self.refused,
            events.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_command_covers_the_release_known_then_not_a_later_one() {
        let mut s = State::new(None);
        assert!(!s.commanded_for(1), "no command given");
        s.commanded = Some(2);
        assert!(s.commanded_for(2) && s.commanded_for(1));
        assert!(!s.commanded_for(3), "a release learnt after the command waits for its wave");
    }
}
