//! Rollouts (docs/formats.md, "Rollout policy" and "Release notices"): how a publisher spreads
//! a release over a fleet without a server that counts the nodes, and how a node that could not
//! run a release says so.
//!
//! - A [`Rollout`] is part of the signed manifest: waves, each a share of the fleet and a delay
//!   after the release's `created_at`. Every node derives its own place in `0..POSITIONS` from
//!   its node key ([`position`]), so the fleet splits into the same waves on every node, with
//!   no coordination, and a node cannot be talked into an earlier wave by a peer.
//! - A [`FailureReport`] is signed by the node key of a node whose release did not become
//!   healthy: peers that hear it do not update to that release, and its publisher sees why.
//! - A [`Notice`] is what peers send each other on `/phase/release/1.0.0`: a signed manifest
//!   (a release to learn of) or a failure report, at most [`MAX_NOTICE`] bytes of JSON.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use miniserde::json::{self, Number, Value};

use super::manifest::{Arch, Manifest, MANIFEST_FORMAT};
use crate::encoding::{hex_decode_array, hex_encode};

/// A node's place in a rollout is one of this many (a wave's percent covers `percent * 100`).
pub const POSITIONS: u32 = 10_000;
pub const MAX_WAVES: usize = 8;
/// A wave starts at most a year after the release was made.
pub const MAX_WAVE_DELAY: u64 = 366 * 86_400;
const POSITION_DOMAIN: &[u8] = b"phase-rollout-position/v1\n";

/// One wave: every node whose position is below `percent` of the fleet (and not in an earlier
/// wave) may update `after_secs` seconds after the release's `created_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wave {
    pub after_secs: u64,
    pub percent: u8,
}

/// The waves of a release, in order: percents rising to 100, delays rising.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub waves: Vec<Wave>,
}

impl Rollout {
    /// 1 to 8 waves; percents strictly rising from 1 to exactly 100 (every node is in a wave);
    /// delays strictly rising, at most a year.
    pub fn check(&self) -> Result<(), String> {
        let w = &self.waves;
        if w.is_empty() || w.len() > MAX_WAVES {
            return Err(format!("1 to {MAX_WAVES} waves, not {}", w.len()));
        }
        for (i, wave) in w.iter().enumerate() {
            if wave.percent == 0 || wave.percent > 100 {
                return Err(format!("wave {}: percent {} is not 1 to 100", i + 1, wave.percent));
            }
            if wave.after_secs > MAX_WAVE_DELAY {
                return Err(format!("wave {}: after_secs {} is more than a year", i + 1, wave.after_secs));
            }
            if i > 0 && (wave.percent <= w[i - 1].percent || wave.after_secs <= w[i - 1].after_secs) {
                return Err(format!("wave {}: percent and after_secs must both rise from the wave before", i + 1));
            }
        }
        if w[w.len() - 1].percent != 100 {
            return Err("the last wave must cover 100 percent".to_string());
        }
        Ok(())
    }

    /// The wave (0-based) of a node at `position` (`0..POSITIONS`).
    pub fn wave_of(&self, position: u32) -> usize {
        self.waves.iter().position(|w| position < u32::from(w.percent) * (POSITIONS / 100)).unwrap_or(self.waves.len().saturating_sub(1))
    }

    /// When a node at `position` may update to a release made at `created_at` (unix seconds).
    pub fn starts_at(&self, created_at: u64, position: u32) -> u64 {
        created_at.saturating_add(self.waves.get(self.wave_of(position)).map_or(0, |w| w.after_secs))
    }

    /// `0s:10%,600s:100%`, for logs and the fleet page.
    pub fn describe(&self) -> String {
        self.waves.iter().map(|w| format!("{}s:{}%", w.after_secs, w.percent)).collect::<Vec<_>>().join(",")
    }

    /// Parses `AFTER:PERCENT,...` (`0:10,600:100`), the command line's form; checked.
    pub fn parse(text: &str) -> Result<Rollout, String> {
        let mut waves = Vec::new();
        for part in text.split(',') {
            let (after, percent) = part.trim().split_once(':').ok_or_else(|| format!("{part:?} is not AFTER_SECS:PERCENT"))?;
            let after_secs = after.trim().trim_end_matches('s').parse().map_err(|_| format!("{after:?} is not a number of seconds"))?;
            let percent = percent.trim().trim_end_matches('%').parse().map_err(|_| format!("{percent:?} is not a percent"))?;
            waves.push(Wave { after_secs, percent });
        }
        let r = Rollout { waves };
        r.check()?;
        Ok(r)
    }

    /// Appended to a manifest's signed bytes: count, then each wave's delay and percent.
    pub(crate) fn put_signed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.waves.len() as u32).to_be_bytes());
        for w in &self.waves {
            out.extend_from_slice(&w.after_secs.to_be_bytes());
            out.push(w.percent);
        }
    }

    /// `{"waves":[{"after_secs":N,"percent":P},...]}`
    pub(crate) fn to_json(&self) -> String {
        let waves: Vec<String> = self.waves.iter().map(|w| format!("{{\"after_secs\":{},\"percent\":{}}}", w.after_secs, w.percent)).collect();
        format!("{{\"waves\":[{}]}}", waves.join(","))
    }

    pub(crate) fn from_value(v: &Value) -> Result<Rollout, String> {
        let Value::Object(map) = v else { return Err("not an object".into()) };
        if let Some(k) = map.keys().find(|k| k.as_str() != "waves") {
            return Err(format!("unknown field {k:?}"));
        }
        let Some(Value::Array(list)) = map.get("waves") else { return Err("waves: not a list".into()) };
        if list.len() > MAX_WAVES {
            return Err(format!("more than {MAX_WAVES} waves"));
        }
        let mut waves = Vec::new();
        for item in list {
            let Value::Object(w) = item else { return Err("a wave is not an object".into()) };
            if let Some(k) = w.keys().find(|k| !["after_secs", "percent"].contains(&k.as_str())) {
                return Err(format!("a wave has an unknown field {k:?}"));
            }
            let num = |name: &str| match w.get(name) {
                Some(Value::Number(Number::U64(n))) => Ok(*n),
                _ => Err(format!("a wave's {name} is not a whole number")),
            };
            let percent = num("percent")?;
            waves.push(Wave { after_secs: num("after_secs")?, percent: u8::try_from(percent).map_err(|_| format!("percent {percent} is not 1 to 100"))? });
        }
        let r = Rollout { waves };
        r.check()?;
        Ok(r)
    }
}

/// A node's place in the rollouts of `publisher_key`'s `channel`: the first 8 bytes of
/// SHA-256(domain ‖ publisher key ‖ channel ‖ node key), as a number, modulo [`POSITIONS`].
/// The same on every node that computes it; stable across that publisher's releases, so a node
/// in the first wave (a canary) stays one.
pub fn position(publisher_key: &[u8; 32], channel: &str, node_key: &[u8; 32]) -> u32 {
    let mut bytes = Vec::with_capacity(POSITION_DOMAIN.len() + 64 + channel.len());
    bytes.extend_from_slice(POSITION_DOMAIN);
    bytes.extend_from_slice(publisher_key);
    bytes.extend_from_slice(channel.as_bytes());
    bytes.extend_from_slice(node_key);
    let h = crate::sha256(&bytes);
    let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    (n % u64::from(POSITIONS)) as u32
}

pub const FAILURE_DOMAIN: &[u8] = b"phase-release-failure/v1\n";
pub const FAILURE_FORMAT: &str = "phase-release-failure/v1";
/// A reason is cut to this many bytes (at a character boundary) before it is signed.
pub const MAX_REASON: usize = 300;
/// A notice (a manifest or a failure report) is at most this many bytes.
pub const MAX_NOTICE: usize = 16 << 10;

/// Which release: a publisher's version of a channel for an arch (a publisher signs a version
/// once; `phase publish` refuses to sign one it signed before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseId {
    pub publisher_key: [u8; 32],
    pub channel: String,
    pub arch: Arch,
    pub version: u64,
}

impl ReleaseId {
    pub fn of(m: &Manifest) -> ReleaseId {
        ReleaseId { publisher_key: m.publisher_key, channel: m.body.channel.clone(), arch: m.body.arch, version: m.body.version }
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} version {} of publisher {}", self.channel, self.arch.name(), self.version, super::manifest::key_id(&self.publisher_key))
    }
}

/// A node's signed word that a release did not become healthy on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReport {
    pub release: ReleaseId,
    pub node_key: [u8; 32],
    /// Unix seconds by the reporting node's clock.
    pub at: u64,
    pub reason: String,
    pub signature: [u8; 64],
}

/// Why a failure report or a notice was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeError {
    TooLarge(usize),
    Json,
    UnknownFormat(String),
    Field { name: &'static str, reason: String },
    Manifest(super::manifest::ManifestError),
    BadSignature,
}

impl fmt::Display for NoticeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoticeError::TooLarge(n) => write!(f, "notice of {n} bytes is above {MAX_NOTICE}"),
            NoticeError::Json => f.write_str("notice is not a JSON object"),
            NoticeError::UnknownFormat(v) => write!(f, "unknown notice format {v:?}"),
            NoticeError::Field { name, reason } => write!(f, "failure report field {name}: {reason}"),
            NoticeError::Manifest(e) => write!(f, "{e}"),
            NoticeError::BadSignature => f.write_str("failure report: bad signature (not signed by its node key)"),
        }
    }
}
impl core::error::Error for NoticeError {}

/// `reason` cut to MAX_REASON bytes at a character boundary, control characters as spaces.
fn clean_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

impl FailureReport {
    pub fn signed_bytes(release: &ReleaseId, node_key: &[u8; 32], at: u64, reason: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + reason.len());
        out.extend_from_slice(FAILURE_DOMAIN);
        out.extend_from_slice(node_key);
        out.extend_from_slice(&release.publisher_key);
        out.extend_from_slice(&(release.channel.len() as u32).to_be_bytes());
        out.extend_from_slice(release.channel.as_bytes());
        out.push(release.arch.code());
        out.extend_from_slice(&release.version.to_be_bytes());
        out.extend_from_slice(&at.to_be_bytes());
        out.extend_from_slice(&(reason.len() as u32).to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
        out
    }

    /// Signs the report with the node's key (the reason cleaned and cut first).
    pub fn sign(release: ReleaseId, at: u64, reason: &str, node: &ed25519_compact::KeyPair) -> FailureReport {
        let reason = clean_reason(reason);
        let node_key = *node.pk;
        let signature = *node.sk.sign(Self::signed_bytes(&release, &node_key, at, &reason), None);
        FailureReport { release, node_key, at, reason, signature }
    }

    pub fn verify(&self) -> Result<(), NoticeError> {
        let pk = ed25519_compact::PublicKey::from_slice(&self.node_key).map_err(|_| NoticeError::BadSignature)?;
        let sig = ed25519_compact::Signature::from_slice(&self.signature).map_err(|_| NoticeError::BadSignature)?;
        pk.verify(Self::signed_bytes(&self.release, &self.node_key, self.at, &self.reason), &sig).map_err(|_| NoticeError::BadSignature)
    }

    pub fn to_json(&self) -> String {
        let r = &self.release;
        format!(
            "{{\"format\":\"{FAILURE_FORMAT}\",\"node_key\":\"{}\",\"publisher_key\":\"{}\",\"channel\":{},\"arch\":\"{}\",\"version\":{},\"at\":{},\"reason\":{},\"signature\":\"{}\"}}",
            hex_encode(&self.node_key),
            hex_encode(&r.publisher_key),
            json::to_string(&r.channel),
            r.arch.name(),
            r.version,
            self.at,
            json::to_string(&self.reason),
            hex_encode(&self.signature)
        )
    }

    fn from_map(map: &miniserde::json::Object) -> Result<FailureReport, NoticeError> {
        const FIELDS: [&str; 8] = ["format", "node_key", "publisher_key", "channel", "arch", "version", "at", "reason"];
        if let Some(k) = map.keys().find(|k| !FIELDS.contains(&k.as_str()) && k.as_str() != "signature") {
            return Err(NoticeError::Field { name: "format", reason: format!("unknown field {k:?}") });
        }
        let text = |name: &'static str| match map.get(name) {
            Some(Value::String(s)) => Ok(s.as_str()),
            _ => Err(NoticeError::Field { name, reason: "missing or not a string".into() }),
        };
        let num = |name: &'static str| match map.get(name) {
            Some(Value::Number(Number::U64(n))) => Ok(*n),
            _ => Err(NoticeError::Field { name, reason: "missing or not a whole number".into() }),
        };
        let hex32 = |name: &'static str| hex_decode_array::<32>(text(name)?).map_err(|e| NoticeError::Field { name, reason: e.to_string() });
        let channel = text("channel")?;
        if !super::manifest::valid_channel(channel) {
            return Err(NoticeError::Field { name: "channel", reason: "1-32 characters of a-z, 0-9 and -".into() });
        }
        let reason = text("reason")?;
        if reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(NoticeError::Field { name: "reason", reason: format!("at most {MAX_REASON} bytes, no control characters") });
        }
        Ok(FailureReport {
            release: ReleaseId {
                publisher_key: hex32("publisher_key")?,
                channel: channel.to_string(),
                arch: Arch::parse(text("arch")?).ok_or(NoticeError::Field { name: "arch", reason: "x86_64 or aarch64".into() })?,
                version: num("version")?,
            },
            node_key: hex32("node_key")?,
            at: num("at")?,
            reason: reason.to_string(),
            signature: hex_decode_array::<64>(text("signature")?).map_err(|e| NoticeError::Field { name: "signature", reason: e.to_string() })?,
        })
    }
}

/// What one peer tells another about releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A release, as its publisher signed it (parsed; its signature is for the receiver to
    /// verify against the keys it trusts) and the JSON it came as.
    Release(Manifest, String),
    /// A node's signed report that a release failed on it (signature verified at parse).
    Failure(FailureReport),
}

impl Notice {
    /// Parses a notice: a `phase-boot-manifest/v1` or a `phase-release-failure/v1` JSON
    /// object of at most MAX_NOTICE bytes. A failure report's signature is checked here (it
    /// needs no trusted key); a manifest's is not (it does).
    pub fn parse(bytes: &[u8]) -> Result<Notice, NoticeError> {
        if bytes.len() > MAX_NOTICE {
            return Err(NoticeError::TooLarge(bytes.len()));
        }
        let text = core::str::from_utf8(bytes).map_err(|_| NoticeError::Json)?.trim();
        let Ok(Value::Object(map)) = json::from_str::<Value>(text) else { return Err(NoticeError::Json) };
        match map.get("format") {
            Some(Value::String(f)) if f == MANIFEST_FORMAT => Manifest::from_json(text).map(|m| Notice::Release(m, text.to_string())).map_err(NoticeError::Manifest),
            Some(Value::String(f)) if f == FAILURE_FORMAT => {
                let r = FailureReport::from_map(&map)?;
                r.verify()?;
                Ok(Notice::Failure(r))
            }
            Some(Value::String(f)) => Err(NoticeError::UnknownFormat(f.clone())),
            _ => Err(NoticeError::Json),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ed25519_compact::KeyPair {
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([b; 32]))
    }

    #[test]
    fn waves_are_checked_and_place_every_node() {
        let r = Rollout::parse("0:10,600s:50%,1200:100").unwrap();
        assert_eq!(r.describe(), "0s:10%,600s:50%,1200s:100%");
        assert_eq!(r.wave_of(0), 0);
        assert_eq!(r.wave_of(999), 0);
        assert_eq!(r.wave_of(1000), 1);
        assert_eq!(r.wave_of(9999), 2);
        assert_eq!(r.starts_at(1_000, 4_999), 1_600);
        assert_eq!(r.starts_at(u64::MAX, 9_999), u64::MAX);
        for bad in ["", "0:100,10:100", "0:50", "10:10,5:100", "0:0,1:100", "0:101", "x:100", "0:10,1:20,2:30,3:40,4:50,5:60,6:70,7:80,8:100", "40000000:100"] {
            assert!(Rollout::parse(bad).is_err(), "{bad}");
        }
        let back = Rollout::from_value(&json::from_str(&r.to_json()).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(Rollout::from_value(&json::from_str("{\"waves\":[{\"after_secs\":0,\"percent\":356}]}").unwrap()).is_err());
        assert!(Rollout::from_value(&json::from_str("{\"waves\":[{\"after_secs\":0,\"percent\":100,\"x\":1}]}").unwrap()).is_err());
    }

    #[test]
    fn positions_are_spread_and_stable() {
        let p = position(&[1; 32], "stable", &[2; 32]);
        assert_eq!(p, position(&[1; 32], "stable", &[2; 32]));
        assert!(p < POSITIONS);
        assert_ne!(p, position(&[1; 32], "edge", &[2; 32]));
        // 1000 nodes into 10 % / 100 %: about a tenth in the first wave.
        let r = Rollout::parse("0:10,60:100").unwrap();
        let first = (0..1000u32).filter(|i| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            r.wave_of(position(&[1; 32], "stable", &k)) == 0
        });
        let n = first.count();
        assert!((60..140).contains(&n), "{n} of 1000 in a 10 % wave");
    }

    #[test]
    fn failure_reports_are_signed_by_their_node_and_parsed_strictly() {
        let id = ReleaseId { publisher_key: [7; 32], channel: "stable".into(), arch: Arch::X86_64, version: 3 };
        let r = FailureReport::sign(id.clone(), 1_800_000_000, "not healthy within 120 s: no peer\nreached", &key(4));
        assert_eq!(r.reason, "not healthy within 120 s: no peer reached");
        let json = r.to_json();
        assert_eq!(Notice::parse(json.as_bytes()), Ok(Notice::Failure(r.clone())));
        let forged = json.replace("\"version\":3", "\"version\":4");
        assert_eq!(Notice::parse(forged.as_bytes()), Err(NoticeError::BadSignature));
        let long = FailureReport::sign(id, 1, &"é".repeat(400), &key(4));
        assert!(long.reason.len() <= MAX_REASON && long.verify().is_ok());
        for bad in ["{}", "[1]", "{\"format\":\"x\"}", "\u{0}"] {
            assert!(Notice::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(Notice::parse(&[b' '; MAX_NOTICE + 1]), Err(NoticeError::TooLarge(MAX_NOTICE + 1)));
        let extra = json.replacen("{", "{\"more\":1,", 1);
        assert!(Notice::parse(extra.as_bytes()).is_err());
    }
}
