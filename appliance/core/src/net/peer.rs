//! Peers as other nodes and clients name them: a peer id in its text form (`PeerName`), and
//! what a Phase node announces about itself in identify's agent string (`Capabilities`,
//! docs/protocol.md "Capabilities"): one writer and one reader for what used to be read from
//! the string in several places.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::boot::cmdline::{valid_channel, DEFAULT_HTTP_PORT};
use crate::boot::manifest::Arch;
use crate::encoding::base58_decode;
use crate::job::RequestedLimits;

/// A libp2p peer id as text: base58btc of a multihash, either the identity hash of a public
/// key (at most 42 bytes, how Ed25519 keys are named: `12D3KooW…`) or a SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerName(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPeerName;

impl fmt::Display for BadPeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a peer id (base58 of an identity or SHA-256 multihash)")
    }
}
impl core::error::Error for BadPeerName {}


impl PeerName {
    pub fn parse(text: &str) -> Result<PeerName, BadPeerName> {
        let bytes = base58_decode(text, 2 + 42).map_err(|_| BadPeerName)?;
        let valid = match bytes.as_slice() {
            [0x00, len, digest @ ..] => *len as usize == digest.len() && digest.len() <= 42,
            [0x12, 32, digest @ ..] => digest.len() == 32,
            _ => false,
        };
        if valid {
            Ok(PeerName(text.to_string()))
        } else {
            Err(BadPeerName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a Phase node announces: `phase/<version>` then `key=value` words: `arch`, `cores`,
/// `jobs` (job slots), the highest limits it admits (`fuel`, `memory`, `output`, `deadline`),
/// `http` (its API port) and `boot` (the releases it serves, `channel/arch,…`). Older nodes
/// announce less: what is missing is None, and a limit nobody announced admits anything (the
/// peer itself has the last word). Words this reader does not know are skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub version: String,
    pub arch: Option<String>,
    pub cores: Option<u64>,
    pub jobs: Option<u64>,
    pub max: RequestedLimits,
    pub http_port: Option<u16>,
    pub boot: Vec<(String, Arch)>,
}

/// Longest agent string read (identify's own cap is larger; ours are about 150 bytes).
pub const MAX_AGENT: usize = 4096;

impl Capabilities {
    /// The capabilities in an agent string, or None if it is not a Phase node's.
    pub fn parse(agent: &str) -> Option<Capabilities> {
        if agent.len() > MAX_AGENT {
            return None;
        }
        let mut words = agent.split_whitespace();
        let version = words.next()?.strip_prefix("phase/")?.to_string();
        let mut c = Capabilities { version, ..Default::default() };
        for w in words {
            let Some((key, value)) = w.split_once('=') else { continue };
            let n = || value.parse::<u64>().ok();
            match key {
                "arch" => c.arch = Some(value.to_string()),
                "cores" => c.cores = n(),
                "jobs" => c.jobs = n(),
                "fuel" => c.max.fuel = n(),
                "memory" => c.max.memory_bytes = n(),
                "output" => c.max.output_bytes = n(),
                "deadline" => c.max.deadline_ms = n(),
                "http" => c.http_port = value.parse().ok(),
                "boot" => {
                    c.boot = value
                        .split(',')
                        .filter_map(|r| {
                            let (channel, arch) = r.split_once('/')?;
                            Some((channel.to_string(), Arch::parse(arch)?)).filter(|_| valid_channel(channel))
                        })
                        .collect()
                }
                _ => {}
            }
        }
        Some(c)
    }

    /// The agent string (what `parse` reads back).
    pub fn to_agent(&self) -> String {
        let mut out = format!("phase/{}", self.version);
        let mut word = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                out += &format!(" {key}={v}");
            }
        };
        let s = |v: Option<u64>| v.map(|n| n.to_string());
        word("arch", self.arch.clone());
        word("cores", s(self.cores));
        word("jobs", s(self.jobs));
        word("fuel", s(self.max.fuel));
        word("memory", s(self.max.memory_bytes));
        word("output", s(self.max.output_bytes));
        word("deadline", s(self.max.deadline_ms));
        word("http", self.http_port.map(|p| p.to_string()));
        if !self.boot.is_empty() {
            let list: Vec<String> = self.boot.iter().map(|(c, a)| format!("{c}/{}", a.name())).collect();
            word("boot", Some(list.join(",")));
        }
        out
    }

    /// Whether the announced maxima admit the limits a job asks for.
    pub fn admits(&self, asked: &RequestedLimits) -> bool {
        let m = &self.max;
        [(asked.fuel, m.fuel), (asked.memory_bytes, m.memory_bytes), (asked.output_bytes, m.output_bytes), (asked.deadline_ms, m.deadline_ms)]
            .iter()
            .all(|pair| match pair {
                (Some(asked), Some(max)) => asked <= max,
                _ => true,
            })
    }

    /// Whether it announces serving release `channel`/`arch`.
    pub fn serves(&self, channel: &str, arch: Arch) -> bool {
        self.boot.iter().any(|(c, a)| c == channel && *a == arch)
    }

    /// Its API port (the appliance's default when it announces none).
    pub fn http_port(&self) -> u16 {
        self.http_port.unwrap_or(DEFAULT_HTTP_PORT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_round_trip_and_older_agents_admit_anything() {
        let c = Capabilities {
            version: "0.1.0".into(),
            arch: Some("x86_64".into()),
            cores: Some(2),
            jobs: Some(2),
            max: RequestedLimits { fuel: Some(1000), memory_bytes: Some(65536), output_bytes: Some(10), deadline_ms: Some(500) },
            http_port: Some(8080),
            boot: alloc::vec![("stable".into(), Arch::X86_64), ("edge".into(), Arch::Aarch64)],
        };
        let agent = c.to_agent();
        assert_eq!(agent, "phase/0.1.0 arch=x86_64 cores=2 jobs=2 fuel=1000 memory=65536 output=10 deadline=500 http=8080 boot=stable/x86_64,edge/aarch64");
        assert_eq!(Capabilities::parse(&agent), Some(c.clone()));
        let ask = |fuel, memory_bytes| RequestedLimits { fuel, memory_bytes, ..Default::default() };
        assert!(c.admits(&ask(None, None)) && c.admits(&ask(Some(1000), Some(65536))));
        assert!(!c.admits(&ask(Some(1001), None)) && !c.admits(&ask(None, Some(65537))));
        assert!(!c.admits(&RequestedLimits { deadline_ms: Some(501), ..Default::default() }));
        assert!(c.serves("edge", Arch::Aarch64) && !c.serves("edge", Arch::X86_64));
        // An older node announces nothing beyond its version: asked anyway, on the default port.
        let old = Capabilities::parse("phase/0.0.1").unwrap();
        assert!(old.admits(&ask(Some(u64::MAX), None)));
        assert_eq!(old.http_port(), DEFAULT_HTTP_PORT);
        // Not Phase, unknown and malformed words.
        assert_eq!(Capabilities::parse("go-ipfs/0.1"), None);
        let odd = Capabilities::parse("phase/2 fuelish=3 fuel=7 fuel2 http=x boot=stable/sparc,Bad!/x86_64,edge/amd64").unwrap();
        assert_eq!((odd.max.fuel, odd.http_port, odd.boot), (Some(7), None, alloc::vec![("edge".into(), Arch::X86_64)]));
    }

    #[test]
    fn peer_names_are_identity_or_sha256_multihashes() {
        // An Ed25519 peer id, and a SHA-256 one (a key too large to inline).
        for ok in ["12D3KooW9pP4Seg3kZYhySpuVjn1RPdQBsUFZKiFxGMGQN5MeL6A", "QmV6ZA7mesUUTW7FkQXDN2QJSqcuKLXdrTwneiYYogfPgv"] {
            assert_eq!(PeerName::parse(ok).unwrap().as_str(), ok);
        }
        // A SHA-256 multihash one byte short, a prefix, words, characters outside the alphabet.
        for bad in ["", "local", "12D3KooW", "6PK9WVM7VX1neGf7y44g3x9TA2VyiK23utsUZZXFuicS5", "0OIl"] {
            assert!(PeerName::parse(bad).is_err(), "{bad}");
        }
    }
}
