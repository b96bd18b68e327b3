//! The body of `POST /v1/releases`: the signed manifest's JSON on the first line, then its
//! artifacts in manifest order (kernel, initramfs, drivers if any), exactly as long as the
//! manifest says; `phase publish --node` sends it. Read into a `Release` whose bytes match
//! their signed sizes and hashes (the signature itself is `Updates::learn`'s to judge).

use std::fmt;

use phase_core::boot::manifest::Manifest;

use crate::boot::release::Release;

#[derive(Debug)]
pub enum PublishError {
    Body(String),
    /// The release was judged and refused (key, signature, channel, time, floor, failed).
    Refused(String),
    /// This node serves no boot store to publish into.
    NoStore,
    Store(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Body(why) => write!(f, "release body: {why}"),
            PublishError::Refused(why) => write!(f, "release refused: {why}"),
            PublishError::NoStore => f.write_str("this node serves no boot store to publish into (phase node --boot-store)"),
            PublishError::Store(why) => write!(f, "boot store: {why}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// The body for `release`.
pub fn body(release: &Release) -> Vec<u8> {
    let mut out = release.manifest_json.clone().into_bytes();
    out.push(b'\n');
    out.extend_from_slice(&release.kernel);
    out.extend_from_slice(&release.initramfs);
    if let Some(d) = &release.drivers {
        out.extend_from_slice(d);
    }
    out
}

pub fn read(body: &[u8]) -> Result<Release, PublishError> {
    let bad = |why: String| PublishError::Body(why);
    let cut = body.iter().take(phase_core::boot::rollout::MAX_NOTICE).position(|b| *b == b'\n').ok_or_else(|| bad("no manifest line (at most 16 KiB, then a newline)".into()))?;
    let text = std::str::from_utf8(&body[..cut]).map_err(|_| bad("the manifest line is not UTF-8".into()))?;
    let manifest = Manifest::from_json(text.trim()).map_err(|e| bad(e.to_string()))?;
    let rest = &body[cut + 1..];
    let want = manifest.body.artifacts().try_fold(0u64, |sum, (_, a)| sum.checked_add(a.size)).ok_or_else(|| bad("artifact sizes overflow".into()))?;
    if rest.len() as u64 != want {
        return Err(bad(format!("{} bytes of artifacts after the manifest, it names {want}", rest.len())));
    }
    let mut parts = vec![];
    let mut at = 0usize;
    for (which, a) in manifest.body.artifacts() {
        let bytes = &rest[at..at + a.size as usize];
        manifest.check_artifact(which, bytes).map_err(|e| bad(e.to_string()))?;
        parts.push(bytes.to_vec());
        at += a.size as usize;
    }
    let drivers = (parts.len() == 3).then(|| parts.pop()).flatten();
    let initramfs = parts.pop().unwrap_or_default();
    let kernel = parts.pop().unwrap_or_default();
    Ok(Release { manifest_json: text.trim().to_string(), manifest, kernel, initramfs, drivers })
}
