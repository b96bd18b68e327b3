//! Boot manifests (`phase-boot-manifest/v1`): what a publisher signs so that appliances boot a
//! kernel + initramfs (and, optionally, a drivers archive) from anyone who serves them. One
//! format, signed over fixed-order canonical bytes (docs/formats.md), verified fail-closed with
//! one named reason per failure.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use miniserde::{Deserialize, Serialize};

use super::rollout::Rollout;
use crate::encoding::{hex_decode_array, hex_encode};
use crate::Digest;

pub const MANIFEST_DOMAIN: &[u8] = b"phase-boot-manifest/v1\n";
pub const MANIFEST_FORMAT: &str = "phase-boot-manifest/v1";
/// Caps that keep a hostile manifest small to parse and to act on.
pub const MAX_NAME: usize = 64;
pub const MAX_CHANNEL: usize = 32;
pub const MAX_CMDLINE: usize = 4096;
pub const MAX_ARTIFACT_BYTES: u64 = 512 << 20;

/// The architectures Phase boots, with the names others use for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn parse(name: &str) -> Option<Arch> {
        match name {
            "x86_64" | "amd64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
    pub(crate) fn code(self) -> u8 {
        match self {
            Arch::X86_64 => 1,
            Arch::Aarch64 => 2,
        }
    }
}

/// One boot artifact: its file name, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
}

/// How bytes differ from a signed artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Size { expected: u64, actual: u64 },
    Hash { expected: Digest, actual: Digest },
}

impl Artifact {
    /// The one check of bytes against what was signed: their length and SHA-256 (hashed by
    /// the caller, who may have streamed them).
    pub fn check(&self, size: u64, sha256: &Digest) -> Result<(), Mismatch> {
        if size != self.size {
            return Err(Mismatch::Size { expected: self.size, actual: size });
        }
        if *sha256 != self.sha256 {
            return Err(Mismatch::Hash { expected: self.sha256, actual: *sha256 });
        }
        Ok(())
    }
}

/// Everything a manifest states, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBody {
    pub channel: String,
    pub arch: Arch,
    /// Monotonically increasing: an appliance refuses a version below the one it runs.
    pub version: u64,
    /// Unix seconds.
    pub created_at: u64,
    pub expires_at: u64,
    pub kernel: Artifact,
    pub initramfs: Artifact,
    /// Kernel command line for the booted kernel (the `phase.*` of the current hop are added).
    pub cmdline: String,
    /// A second archive the booted kernel loads after `initramfs`: the network drivers and
    /// firmware that do not fit in every image. Optional; signed after `cmdline` when present.
    pub drivers: Option<Artifact>,
    /// How the release spreads over a fleet (rollout.rs). Optional; signed after `drivers`
    /// when present. Without it every node may update as soon as it learns of the release.
    pub rollout: Option<Rollout>,
}

/// What a machine knows about versions and time without trusting its clock (docs/netboot.md,
/// "Floors"): the lowest version it may boot (the highest it has booted or verified on its
/// channel) and the earliest the time may be (its build time, and the newest `created_at` of
/// every manifest it verified). Both only move forward: hops pass them on, disks keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Floors {
    pub version: u64,
    pub time: u64,
}

impl ManifestBody {
    /// The one rollback check: a version below `floor` (one this machine booted, verified or
    /// served) is refused.
    pub fn check_floor(&self, floor: u64) -> Result<(), ManifestError> {
        match self.version < floor {
            true => Err(ManifestError::Rollback { version: self.version, floor }),
            false => Ok(()),
        }
    }
}

impl Floors {
    /// The time a manifest is judged at: the clock, unless it is behind the time floor (an
    /// unset clock, a board without an RTC, a clock set back); then the floor, or the
    /// manifest's own creation if later (such a clock cannot call a manifest "from the
    /// future"). A manifest that expired before the floor is refused whatever the clock says.
    pub fn judged_time(&self, clock: u64, m: &ManifestBody) -> u64 {
        if clock >= self.time {
            clock
        } else {
            self.time.max(m.created_at)
        }
    }

    /// The floors after verifying `m`: at least its version and its creation time.
    pub fn raised(self, m: &ManifestBody) -> Floors {
        Floors { version: self.version.max(m.version), time: self.time.max(m.created_at) }
    }
}

/// A signed manifest. Only `sign` and `from_json` make one; `from_json` checks every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub body: ManifestBody,
    pub publisher_key: [u8; 32],
    pub signature: [u8; 64],
}

/// Why a manifest or an artifact is refused. Each names what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    Json,
    UnknownFormat(String),
    Field { name: &'static str, reason: String },
    BadSignature,
    UnknownKey { key_id: String },
    Expired { expires_at: u64, now: u64 },
    NotYetValid { created_at: u64, now: u64 },
    /// Below the version floor: what this machine has booted or verified before.
    Rollback { version: u64, floor: u64 },
    WrongArch { manifest: Arch, running: Arch },
    Oversized { artifact: &'static str, size: u64, max: u64 },
    SizeMismatch { artifact: &'static str, expected: u64, actual: u64 },
    HashMismatch { artifact: &'static str },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ManifestError::*;
        match self {
            Json => f.write_str("manifest is not JSON of the manifest shape"),
            UnknownFormat(v) => write!(f, "unknown manifest format {v:?}"),
            Field { name, reason } => write!(f, "manifest field {name}: {reason}"),
            BadSignature => f.write_str("bad signature: the manifest was not signed by its publisher key"),
            UnknownKey { key_id } => write!(f, "unknown publisher key {key_id}: not among the trusted keys"),
            Expired { expires_at, now } => write!(f, "expired at {expires_at} (now {now})"),
            NotYetValid { created_at, now } => write!(f, "created at {created_at}, in the future (now {now})"),
            Rollback { version, floor } => write!(f, "rollback: version {version} is below the floor {floor} (a version this machine booted or verified)"),
            WrongArch { manifest, running } => {
                write!(f, "wrong arch: manifest is for {}, this machine is {}", manifest.name(), running.name())
            }
            Oversized { artifact, size, max } => write!(f, "{artifact} is {size} bytes, above the limit of {max}"),
            SizeMismatch { artifact, expected, actual } => {
                write!(f, "{artifact} size mismatch: manifest says {expected} bytes, got {actual}")
            }
            HashMismatch { artifact } => write!(f, "{artifact} hash mismatch: not the signed {artifact}"),
        }
    }
}
impl core::error::Error for ManifestError {}


/// The manifest's file name in a provider's store, next to its artifacts.
pub const MANIFEST_FILE: &str = "manifest.json";

/// 1-32 characters of a-z, 0-9 and `-`.
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_CHANNEL && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A short, stable name for a publisher key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(key: &[u8; 32]) -> String {
    hex_encode(&crate::sha256(key)[..8])
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl ManifestBody {
    /// The exact bytes a publisher signs.
    pub fn signed_bytes(&self, publisher_key: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.cmdline.len());
        out.extend_from_slice(MANIFEST_DOMAIN);
        out.extend_from_slice(publisher_key);
        put_str(&mut out, &self.channel);
        out.push(self.arch.code());
        for v in [self.version, self.created_at, self.expires_at] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for a in [&self.kernel, &self.initramfs] {
            put_str(&mut out, &a.name);
            out.extend_from_slice(&a.size.to_be_bytes());
            out.extend_from_slice(&a.sha256);
        }
        put_str(&mut out, &self.cmdline);
        // Absent, the bytes are the ones signed before drivers existed: those signatures hold.
        if let Some(a) = &self.drivers {
            out.push(1);
            put_str(&mut out, &a.name);
            out.extend_from_slice(&a.size.to_be_bytes());
            out.extend_from_slice(&a.sha256);
        }
        if let Some(r) = &self.rollout {
            out.push(2);
            r.put_signed(&mut out);
        }
        out
    }

    /// The artifacts with the names `check_artifact` and errors use.
    pub fn artifacts(&self) -> impl Iterator<Item = (&'static str, &Artifact)> {
        [("kernel", &self.kernel), ("initramfs", &self.initramfs)].into_iter().chain(self.drivers.as_ref().map(|a| ("drivers", a)))
    }

    /// Checks field shapes (also applied to parsed manifests).
    fn check(&self) -> Result<(), ManifestError> {
        let field = |name, reason: &str| Err(ManifestError::Field { name, reason: reason.to_string() });
        if !valid_channel(&self.channel) {
            return field("channel", "1-32 characters of a-z, 0-9 and -");
        }
        let label = |which: &str| match which {
            "kernel" => "kernel.name",
            "initramfs" => "initramfs.name",
            _ => "drivers.name",
        };
        for (which, a) in self.artifacts() {
            if a.name.is_empty()
                || a.name.len() > MAX_NAME
                || a.name.starts_with('.')
                || !a.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return field(label(which), "1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'");
            }
        }
        // All are files in one directory next to the manifest (the provider's store).
        let names: Vec<(&str, &str)> = self.artifacts().map(|(which, a)| (which, a.name.as_str())).collect();
        for (i, (which, n)) in names.iter().enumerate() {
            if *n == MANIFEST_FILE || names[..i].iter().any(|(_, m)| m == n) {
                return field(label(which), "kernel, initramfs, drivers and manifest.json need different names");
            }
        }
        if self.cmdline.len() > MAX_CMDLINE || self.cmdline.contains('\0') {
            return field("cmdline", "at most 4096 bytes, no NUL");
        }
        if self.expires_at <= self.created_at {
            return field("expires_at", "must be after created_at");
        }
        if let Some(Err(e)) = self.rollout.as_ref().map(Rollout::check) {
            return Err(ManifestError::Field { name: "rollout", reason: e });
        }
        Ok(())
    }
}

impl Manifest {
    pub fn sign(body: ManifestBody, key: &ed25519_compact::KeyPair) -> Result<Manifest, ManifestError> {
        body.check()?;
        let publisher_key = *key.pk;
        let signature = *key.sk.sign(body.signed_bytes(&publisher_key), None);
        Ok(Manifest { body, publisher_key, signature })
    }

    pub fn key_id(&self) -> String {
        key_id(&self.publisher_key)
    }

    /// Verifies, fail-closed, in this order: trusted key, signature, time window, arch,
    /// rollback, artifact sizes. `now` is unix seconds; `running` the version this node runs.
    pub fn verify(
        &self,
        trusted: &[[u8; 32]],
        now: u64,
        arch: Arch,
        running: Option<u64>,
    ) -> Result<(), ManifestError> {
        if !trusted.contains(&self.publisher_key) {
            return Err(ManifestError::UnknownKey { key_id: self.key_id() });
        }
        let pk = ed25519_compact::PublicKey::from_slice(&self.publisher_key).map_err(|_| ManifestError::BadSignature)?;
        let sig = ed25519_compact::Signature::from_slice(&self.signature).map_err(|_| ManifestError::BadSignature)?;
        pk.verify(self.body.signed_bytes(&self.publisher_key), &sig).map_err(|_| ManifestError::BadSignature)?;
        let b = &self.body;
        if now >= b.expires_at {
            return Err(ManifestError::Expired { expires_at: b.expires_at, now });
        }
        // A clock a little behind the publisher's is normal; a day is not.
        if b.created_at > now.saturating_add(86_400) {
            return Err(ManifestError::NotYetValid { created_at: b.created_at, now });
        }
        if b.arch != arch {
            return Err(ManifestError::WrongArch { manifest: b.arch, running: arch });
        }
        if let Some(floor) = running {
            b.check_floor(floor)?;
        }
        for (name, a) in b.artifacts() {
            if a.size > MAX_ARTIFACT_BYTES {
                return Err(ManifestError::Oversized { artifact: name, size: a.size, max: MAX_ARTIFACT_BYTES });
            }
        }
        Ok(())
    }

    /// `verify` for a machine that knows its floors: versions below the version floor are a
    /// rollback, and the time is judged by `Floors::judged_time`.
    pub fn verify_under(&self, trusted: &[[u8; 32]], clock: u64, floors: &Floors, arch: Arch) -> Result<(), ManifestError> {
        self.verify(trusted, floors.judged_time(clock, &self.body), arch, Some(floors.version))
    }

    /// Checks downloaded artifact bytes against the signed size and hash.
    pub fn check_artifact(&self, which: &'static str, bytes: &[u8]) -> Result<(), ManifestError> {
        let Some((which, a)) = self.body.artifacts().find(|(name, _)| *name == which) else {
            return Err(ManifestError::Field { name: "drivers", reason: "this release has no drivers archive".into() });
        };
        a.check(bytes.len() as u64, &crate::sha256(bytes)).map_err(|m| match m {
            Mismatch::Size { expected, actual } => ManifestError::SizeMismatch { artifact: which, expected, actual },
            Mismatch::Hash { .. } => ManifestError::HashMismatch { artifact: which },
        })
    }

    /// The JSON form (docs/formats.md): optional fields are left out when absent, not `null`,
    /// so a manifest without them has the JSON from before they existed.
    pub fn to_json(&self) -> String {
        let b = &self.body;
        let art = |a: &Artifact| miniserde::json::to_string(&ArtifactWire { name: a.name.clone(), size: a.size, sha256: hex_encode(&a.sha256) });
        let mut out = miniserde::json::to_string(&ManifestWire {
            format: MANIFEST_FORMAT.to_string(),
            publisher_key: hex_encode(&self.publisher_key),
            channel: b.channel.clone(),
            arch: b.arch.name().to_string(),
            version: b.version,
            created_at: b.created_at,
            expires_at: b.expires_at,
        });
        out.pop(); // the closing brace: the rest follows in signing order
        out += &alloc::format!(",\"kernel\":{},\"initramfs\":{},\"cmdline\":{}", art(&b.kernel), art(&b.initramfs), miniserde::json::to_string(&b.cmdline));
        if let Some(d) = &b.drivers {
            out += &alloc::format!(",\"drivers\":{}", art(d));
        }
        if let Some(r) = &b.rollout {
            out += &alloc::format!(",\"rollout\":{}", r.to_json());
        }
        out + &alloc::format!(",\"signature\":\"{}\"}}", hex_encode(&self.signature))
    }

    /// Parses and checks the shape of every field; the signature is checked by `verify`.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let w: ManifestWireIn = miniserde::json::from_str(text).map_err(|_| ManifestError::Json)?;
        if w.format != MANIFEST_FORMAT {
            return Err(ManifestError::UnknownFormat(w.format));
        }
        let hex_err = |name: &'static str| move |e: crate::encoding::DecodeError| ManifestError::Field { name, reason: e.to_string() };
        let art = |a: &ArtifactWire, name: &'static str| -> Result<Artifact, ManifestError> {
            Ok(Artifact { name: a.name.clone(), size: a.size, sha256: hex_decode_array(&a.sha256).map_err(hex_err(name))? })
        };
        let body = ManifestBody {
            channel: w.channel,
            arch: Arch::parse(&w.arch).ok_or(ManifestError::Field { name: "arch", reason: "x86_64 or aarch64 (amd64, arm64)".into() })?,
            version: w.version,
            created_at: w.created_at,
            expires_at: w.expires_at,
            kernel: art(&w.kernel, "kernel.sha256")?,
            initramfs: art(&w.initramfs, "initramfs.sha256")?,
            cmdline: w.cmdline,
            drivers: w.drivers.as_ref().map(|a| art(a, "drivers.sha256")).transpose()?,
            rollout: w.rollout.as_ref().map(|v| Rollout::from_value(v).map_err(|reason| ManifestError::Field { name: "rollout", reason })).transpose()?,
        };
        body.check()?;
        Ok(Manifest {
            body,
            publisher_key: hex_decode_array(&w.publisher_key).map_err(hex_err("publisher_key"))?,
            signature: hex_decode_array(&w.signature).map_err(hex_err("signature"))?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ArtifactWire {
    name: String,
    size: u64,
    sha256: String,
}

/// The JSON's leading fields; the rest is appended in signing order (`to_json`).
#[derive(Serialize)]
struct ManifestWire {
    format: String,
    publisher_key: String,
    channel: String,
    arch: String,
    version: u64,
    created_at: u64,
    expires_at: u64,
}

#[derive(Deserialize)]
struct ManifestWireIn {
    format: String,
    publisher_key: String,
    channel: String,
    arch: String,
    version: u64,
    created_at: u64,
    expires_at: u64,
    kernel: ArtifactWire,
    initramfs: ArtifactWire,
    cmdline: String,
    drivers: Option<ArtifactWire>,
    rollout: Option<miniserde::json::Value>,
    signature: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ed25519_compact::KeyPair {
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([b; 32]))
    }

    fn body() -> ManifestBody {
        ManifestBody {
            channel: "stable".into(),
            arch: Arch::X86_64,
            version: 7,
            created_at: 1_000,
            expires_at: 2_000,
            kernel: Artifact { name: "kernel".into(), size: 3, sha256: crate::sha256(b"abc") },
            initramfs: Artifact { name: "initramfs.cpio.zst".into(), size: 2, sha256: crate::sha256(b"xy") },
            cmdline: "console=ttyS0 phase.mode=local".into(),
            drivers: None,
            rollout: None,
        }
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let m = Manifest::sign(body(), &key(1)).unwrap();
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_json(), m.to_json());
        back.verify(&[*key(1).pk], 1_500, Arch::X86_64, Some(7)).unwrap();
        m.check_artifact("kernel", b"abc").unwrap();
        m.check_artifact("initramfs", b"xy").unwrap();
    }

    #[test]
    fn every_refusal_names_its_reason() {
        let m = Manifest::sign(body(), &key(1)).unwrap();
        let trusted = [*key(1).pk];
        use ManifestError::*;
        assert!(matches!(m.verify(&[*key(2).pk], 1_500, Arch::X86_64, None), Err(UnknownKey { .. })));
        assert_eq!(m.verify(&trusted, 2_000, Arch::X86_64, None), Err(Expired { expires_at: 2_000, now: 2_000 }));
        assert!(matches!(m.verify(&trusted, 1_500, Arch::Aarch64, None), Err(WrongArch { .. })));
        assert_eq!(m.verify(&trusted, 1_500, Arch::X86_64, Some(8)), Err(Rollback { version: 7, floor: 8 }));
        // Floors: a clock behind the time floor is not trusted; the floor judges expiry.
        let floors = Floors { version: 7, time: 2_500 };
        assert_eq!(m.verify_under(&trusted, 1_500, &floors, Arch::X86_64), Err(Expired { expires_at: 2_000, now: 2_500 }));
        assert_eq!(m.verify_under(&trusted, 1_500, &Floors { version: 8, time: 0 }, Arch::X86_64), Err(Rollback { version: 7, floor: 8 }));
        m.verify_under(&trusted, 10, &Floors { version: 7, time: 900 }, Arch::X86_64).expect("an unset clock judges at the floor and never calls a manifest from the future");
        assert_eq!(floors.raised(&m.body), Floors { version: 7, time: 2_500 });
        assert_eq!(Floors::default().raised(&m.body), Floors { version: 7, time: m.body.created_at });
        let mut tampered = m.clone();
        tampered.body.cmdline.push_str(" init=/bin/sh");
        assert_eq!(tampered.verify(&trusted, 1_500, Arch::X86_64, None), Err(BadSignature));
        let mut tampered = m.clone();
        tampered.body.kernel.sha256[0] ^= 1;
        assert_eq!(tampered.verify(&trusted, 1_500, Arch::X86_64, None), Err(BadSignature));
        assert_eq!(m.check_artifact("kernel", b"abd"), Err(HashMismatch { artifact: "kernel" }));
        assert!(matches!(m.check_artifact("kernel", b"abcd"), Err(SizeMismatch { .. })));
        let mut big = body();
        big.kernel.size = MAX_ARTIFACT_BYTES + 1;
        let big = Manifest::sign(big, &key(1)).unwrap();
        assert!(matches!(big.verify(&trusted, 1_500, Arch::X86_64, None), Err(Oversized { artifact: "kernel", .. })));
        // Created more than a day after the verifier's clock: refused; a few hours: tolerated.
        let mut future = body();
        future.created_at = 200_000;
        future.expires_at = 300_000;
        let future = Manifest::sign(future, &key(1)).unwrap();
        assert_eq!(future.verify(&trusted, 1_000, Arch::X86_64, None), Err(NotYetValid { created_at: 200_000, now: 1_000 }));
        future.verify(&trusted, 190_000, Arch::X86_64, None).unwrap();
    }

    #[test]
    fn a_drivers_archive_is_signed_checked_and_named() {
        let plain = Manifest::sign(body(), &key(1)).unwrap();
        assert!(!plain.to_json().contains("drivers"), "without drivers the JSON is the one from before drivers");
        let mut b = body();
        b.drivers = Some(Artifact { name: "drivers.cpio.zst".into(), size: 4, sha256: crate::sha256(b"mods") });
        let m = Manifest::sign(b.clone(), &key(1)).unwrap();
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        back.verify(&[*key(1).pk], 1_500, Arch::X86_64, None).unwrap();
        back.check_artifact("drivers", b"mods").unwrap();
        assert_eq!(back.check_artifact("drivers", b"modz"), Err(ManifestError::HashMismatch { artifact: "drivers" }));
        assert!(plain.check_artifact("drivers", b"mods").is_err(), "a release without drivers has none to check");
        // The drivers are under the signature: dropped, swapped or changed, it no longer verifies.
        let mut dropped = m.clone();
        dropped.body.drivers = None;
        assert_eq!(dropped.verify(&[*key(1).pk], 1_500, Arch::X86_64, None), Err(ManifestError::BadSignature));
        let mut changed = m.clone();
        changed.body.drivers.as_mut().unwrap().sha256[0] ^= 1;
        assert_eq!(changed.verify(&[*key(1).pk], 1_500, Arch::X86_64, None), Err(ManifestError::BadSignature));
        let mut grafted = plain.clone();
        grafted.body.drivers = b.drivers.clone();
        assert_eq!(grafted.verify(&[*key(1).pk], 1_500, Arch::X86_64, None), Err(ManifestError::BadSignature));
        // Names: no path, not another artifact's, not the manifest's; size capped.
        for name in ["../x", "kernel", "manifest.json", ".hidden"] {
            let mut bad = b.clone();
            bad.drivers.as_mut().unwrap().name = name.into();
            assert!(matches!(Manifest::sign(bad, &key(1)), Err(ManifestError::Field { name: "drivers.name", .. })), "{name}");
        }
        let mut big = b.clone();
        big.drivers.as_mut().unwrap().size = MAX_ARTIFACT_BYTES + 1;
        let big = Manifest::sign(big, &key(1)).unwrap();
        assert!(matches!(big.verify(&[*key(1).pk], 1_500, Arch::X86_64, None), Err(ManifestError::Oversized { artifact: "drivers", .. })));
    }

    #[test]
    fn hostile_fields_are_refused_at_parse() {
        let good = Manifest::sign(body(), &key(1)).unwrap().to_json();
        for (from, to) in [
            ("\"kernel\",\"size\"", "\"../etc/passwd\",\"size\""),
            ("\"channel\":\"stable\"", "\"channel\":\"Stable Channel\""),
            ("\"arch\":\"x86_64\"", "\"arch\":\"riscv64\""),
            ("\"expires_at\":2000", "\"expires_at\":10"),
            ("phase-boot-manifest/v1", "phase-boot-manifest/v2"),
        ] {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from}");
            assert!(Manifest::from_json(&bad).is_err(), "{to}");
        }
        assert_eq!(Manifest::from_json("{"), Err(ManifestError::Json));
        assert_eq!(Arch::parse("arm64"), Some(Arch::Aarch64));
        assert_eq!(Arch::parse("amd64"), Some(Arch::X86_64));
    }
}
