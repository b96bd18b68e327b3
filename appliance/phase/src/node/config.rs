//! What a node is told to be: `NodeConfig`. Every setting is typed; a setting left out (None)
//! takes the value derived from the machine (docs/cli.md lists each default). Two sources
//! build one: `phase node`'s flags, and PID 1 from the appliance's boot parameters, which
//! hands it to the node it starts as JSON on the node's stdin (`phase node --config -`):
//! `to_json` and `from_json` are that hand-over's one codec, and nothing else reads it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use miniserde::json::{self, Array, Number, Object, Value};
use phase_core::encoding::{hex_decode_array, hex_encode};

use crate::faults::Fault;
use crate::p2p::Multiaddr;
use crate::pxe::Ports;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The API's listen address (port 0 picks a free one).
    pub http: String,
    pub data_dir: Option<PathBuf>,
    pub memory_budget: Option<u64>,
    pub max_result_bytes: Option<u64>,
    pub max_concurrent: Option<usize>,
    pub max_queued: Option<usize>,
    /// Seconds an asynchronous job's answer is kept.
    pub result_ttl: Option<u64>,
    pub max_module_bytes: Option<usize>,
    pub max_input_bytes: Option<usize>,
    pub max_fuel: Option<u64>,
    pub max_memory_bytes: Option<u64>,
    pub max_output_bytes: Option<u64>,
    pub max_deadline_ms: Option<u64>,
    pub max_disk_module_bytes: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    /// Joins the peer network.
    pub p2p: Option<PeerSettings>,
    /// Serves the releases in this boot store.
    pub boot_store: Option<PathBuf>,
    pub max_downloads: Option<usize>,
    /// Trusted publisher keys: with them, every served release must be signed by one.
    pub trust: Vec<[u8; 32]>,
    /// The release channel whose updates the node follows (default stable).
    pub channel: Option<String>,
    /// SHA-256 of the operator token: operator requests (`POST /v1/releases`) need the token.
    pub operator: Option<[u8; 32]>,
    /// An appliance's node: boot newer releases it serves (update.rs) by writing this file and
    /// exiting with `update::EXIT_UPDATE` for PID 1, after draining for `drain` seconds at most.
    pub update_handoff: Option<PathBuf>,
    pub drain: Option<u64>,
    /// This boot tries an update (PID 1 commits it or returns): the floors do not follow the
    /// served store until then.
    pub trial: bool,
    /// The daily maintenance window (`HH:MM-HH:MM`, UTC) outside which it boots no new release.
    pub window: Option<String>,
    /// Where the release this machine runs came from (`phase.from`), for the status and page.
    pub booted_from: Option<String>,
    /// Answers PXE clients.
    pub pxe: Option<PxeSettings>,
    /// The hardware report PID 1 keeps current (an appliance's), served in `/v1/status`.
    pub hardware_report: Option<PathBuf>,
    pub fault: Option<Fault>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerSettings {
    pub listen: Vec<Multiaddr>,
    /// Multiaddrs ending in /p2p/<peer id>.
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// AutoNAT and relay slots at the bootstrap peers.
    pub nat: bool,
    /// The private network's swarm key file.
    pub swarm_key: Option<PathBuf>,
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PxeSettings {
    pub interface: String,
    /// Where the network boot programs are (default /usr/lib/ipxe).
    pub programs: Option<PathBuf>,
    /// The channel PXE clients boot (default stable).
    pub channel: Option<String>,
    /// Kernel parameters for the machines it boots.
    pub append: Vec<String>,
    /// UEFI HTTP Boot and iPXE only.
    pub http_only: bool,
    /// UDP ports other than the standard ones (tests run unprivileged).
    pub ports: Option<Ports>,
    /// The address announced, when not the interface's own.
    pub address: Option<Ipv4Addr>,
}

impl NodeConfig {
    /// A node on `http` with every other setting at its default.
    pub fn new(http: impl Into<String>) -> NodeConfig {
        NodeConfig {
            http: http.into(),
            data_dir: None,
            memory_budget: None,
            max_result_bytes: None,
            max_concurrent: None,
            max_queued: None,
            result_ttl: None,
            max_module_bytes: None,
            max_input_bytes: None,
            max_fuel: None,
            max_memory_bytes: None,
            max_output_bytes: None,
            max_deadline_ms: None,
            max_disk_module_bytes: None,
            max_connections: None,
            max_connections_per_ip: None,
            p2p: None,
            boot_store: None,
            hardware_report: None,
            max_downloads: None,
            trust: vec![],
            channel: None,
            operator: None,
            update_handoff: None,
            drain: None,
            trial: false,
            window: None,
            booted_from: None,
            pxe: None,
            fault: None,
        }
    }
}

/// Why a configuration document was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad(field: &str, what: &str) -> ConfigError {
    ConfigError(format!("{field} must be {what}"))
}

/// Writes fields, leaving out what is unset.
struct Writer(Object);

impl Writer {
    fn text(&mut self, k: &str, v: Option<String>) {
        if let Some(v) = v {
            self.0.insert(k.into(), Value::String(v));
        }
    }
    fn num(&mut self, k: &str, v: Option<u64>) {
        if let Some(v) = v {
            self.0.insert(k.into(), Value::Number(Number::U64(v)));
        }
    }
    fn flag(&mut self, k: &str, v: bool) {
        if v {
            self.0.insert(k.into(), Value::Bool(true));
        }
    }
    fn list(&mut self, k: &str, v: Vec<String>) {
        if !v.is_empty() {
            self.0.insert(k.into(), Value::Array(v.into_iter().map(Value::String).collect::<Array>()));
        }
    }
    fn object(&mut self, k: &str, v: Option<Object>) {
        if let Some(v) = v {
            self.0.insert(k.into(), Value::Object(v));
        }
    }
}

/// Reads fields, refusing unknown ones and values of the wrong type.
struct Reader<'a> {
    o: &'a Object,
    path: &'static str,
}

impl<'a> Reader<'a> {
    fn new(o: &'a Object, path: &'static str, known: &[&str]) -> Result<Reader<'a>, ConfigError> {
        match o.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ConfigError(format!("unknown field {path}{k}"))),
            None => Ok(Reader { o, path }),
        }
    }
    fn name(&self, k: &str) -> String {
        format!("{}{k}", self.path)
    }
    fn text(&self, k: &str) -> Result<Option<String>, ConfigError> {
        match self.o.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(&self.name(k), "a string")),
        }
    }
    fn num(&self, k: &str) -> Result<Option<u64>, ConfigError> {
        match self.o.get(k) {
            None => Ok(None),
            Some(Value::Number(Number::U64(n))) => Ok(Some(*n)),
            Some(_) => Err(bad(&self.name(k), "an unsigned integer")),
        }
    }
    fn size(&self, k: &str) -> Result<Option<usize>, ConfigError> {
        self.num(k)?.map(|n| usize::try_from(n).map_err(|_| bad(&self.name(k), "a size this machine can hold"))).transpose()
    }
    fn flag(&self, k: &str) -> Result<bool, ConfigError> {
        match self.o.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(&self.name(k), "true or false")),
        }
    }
    fn list(&self, k: &str) -> Result<Vec<String>, ConfigError> {
        match self.o.get(k) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a.iter().map(|v| if let Value::String(s) = v { Ok(s.clone()) } else { Err(bad(&self.name(k), "a list of strings")) }).collect(),
            Some(_) => Err(bad(&self.name(k), "a list of strings")),
        }
    }
    fn object(&self, k: &str) -> Result<Option<&'a Object>, ConfigError> {
        match self.o.get(k) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(bad(&self.name(k), "an object")),
        }
    }
}

fn multiaddrs(field: &str, list: Vec<String>) -> Result<Vec<Multiaddr>, ConfigError> {
    list.iter().map(|a| a.parse().map_err(|e| ConfigError(format!("{field} {a:?} is not a multiaddr: {e}")))).collect()
}

const FIELDS: [&str; 30] = [
    "http", "data_dir", "memory_budget", "max_result_bytes", "max_concurrent", "max_queued", "result_ttl", "max_module_bytes", "max_input_bytes", "max_fuel",
    "max_memory_bytes", "max_output_bytes", "max_deadline_ms", "max_disk_module_bytes", "max_connections", "max_connections_per_ip", "p2p", "boot_store",
    "max_downloads", "trust", "pxe", "hardware_report", "fault", "channel", "operator", "update_handoff", "drain", "trial", "window", "booted_from",
];
const P2P_FIELDS: [&str; 6] = ["listen", "bootstrap", "mdns", "nat", "swarm_key", "max_connections"];
const PXE_FIELDS: [&str; 7] = ["interface", "programs", "channel", "append", "http_only", "ports", "address"];
const PORT_FIELDS: [&str; 4] = ["dhcp", "proxy", "tftp", "client"];

impl NodeConfig {
    /// The configuration as JSON (what `from_json` reads back equal).
    pub fn to_json(&self) -> String {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let n = |v: Option<usize>| v.map(|v| v as u64);
        let mut w = Writer(Object::new());
        w.text("http", Some(self.http.clone()));
        w.text("data_dir", path(&self.data_dir));
        w.num("memory_budget", self.memory_budget);
        w.num("max_result_bytes", self.max_result_bytes);
        w.num("max_concurrent", n(self.max_concurrent));
        w.num("max_queued", n(self.max_queued));
        w.num("result_ttl", self.result_ttl);
        w.num("max_module_bytes", n(self.max_module_bytes));
        w.num("max_input_bytes", n(self.max_input_bytes));
        w.num("max_fuel", self.max_fuel);
        w.num("max_memory_bytes", self.max_memory_bytes);
        w.num("max_output_bytes", self.max_output_bytes);
        w.num("max_deadline_ms", self.max_deadline_ms);
        w.num("max_disk_module_bytes", self.max_disk_module_bytes);
        w.num("max_connections", n(self.max_connections));
        w.num("max_connections_per_ip", n(self.max_connections_per_ip));
        w.object(
            "p2p",
            self.p2p.as_ref().map(|p| {
                let mut w = Writer(Object::new());
                w.list("listen", p.listen.iter().map(|a| a.to_string()).collect());
                w.list("bootstrap", p.bootstrap.iter().map(|a| a.to_string()).collect());
                w.flag("mdns", p.mdns);
                w.flag("nat", p.nat);
                w.text("swarm_key", path(&p.swarm_key));
                w.num("max_connections", p.max_connections.map(u64::from));
                w.0
            }),
        );
        w.text("boot_store", path(&self.boot_store));
        w.text("hardware_report", path(&self.hardware_report));
        w.num("max_downloads", n(self.max_downloads));
        w.list("trust", self.trust.iter().map(|k| hex_encode(k)).collect());
        w.text("channel", self.channel.clone());
        w.text("operator", self.operator.map(|h| hex_encode(&h)));
        w.text("update_handoff", path(&self.update_handoff));
        w.num("drain", self.drain);
        w.flag("trial", self.trial);
        w.text("window", self.window.clone());
        w.text("booted_from", self.booted_from.clone());
        w.object(
            "pxe",
            self.pxe.as_ref().map(|p| {
                let mut w = Writer(Object::new());
                w.text("interface", Some(p.interface.clone()));
                w.text("programs", path(&p.programs));
                w.text("channel", p.channel.clone());
                w.list("append", p.append.clone());
                w.flag("http_only", p.http_only);
                w.object(
                    "ports",
                    p.ports.map(|ports| {
                        let mut w = Writer(Object::new());
                        for (k, v) in PORT_FIELDS.iter().zip([ports.dhcp, ports.proxy, ports.tftp, ports.client]) {
                            w.num(k, Some(v as u64));
                        }
                        w.0
                    }),
                );
                w.text("address", p.address.map(|a| a.to_string()));
                w.0
            }),
        );
        w.text("fault", self.fault.map(|f| f.name().to_string()));
        json::to_string(&Value::Object(w.0))
    }

    /// Reads a configuration written by `to_json` (unknown fields are refused).
    pub fn from_json(text: &str) -> Result<NodeConfig, ConfigError> {
        let Ok(Value::Object(top)) = json::from_str::<Value>(text) else { return Err(ConfigError("not a JSON object".into())) };
        let r = Reader::new(&top, "", &FIELDS)?;
        let path = |v: Option<String>| v.map(PathBuf::from);
        let p2p = match r.object("p2p")? {
            Some(o) => {
                let r = Reader::new(o, "p2p.", &P2P_FIELDS)?;
                Some(PeerSettings {
                    listen: multiaddrs("p2p.listen", r.list("listen")?)?,
                    bootstrap: multiaddrs("p2p.bootstrap", r.list("bootstrap")?)?,
                    mdns: r.flag("mdns")?,
                    nat: r.flag("nat")?,
                    swarm_key: path(r.text("swarm_key")?),
                    max_connections: r.num("max_connections")?.map(|n| u32::try_from(n).map_err(|_| bad("p2p.max_connections", "below 2^32"))).transpose()?,
                })
            }
            None => None,
        };
        let pxe = match r.object("pxe")? {
            Some(o) => {
                let r = Reader::new(o, "pxe.", &PXE_FIELDS)?;
                let ports = match r.object("ports")? {
                    Some(o) => {
                        let r = Reader::new(o, "pxe.ports.", &PORT_FIELDS)?;
                        let port = |k: &str| -> Result<u16, ConfigError> {
                            r.num(k)?.and_then(|n| u16::try_from(n).ok()).ok_or_else(|| bad(&format!("pxe.ports.{k}"), "a UDP port"))
                        };
                        Some(Ports { dhcp: port("dhcp")?, proxy: port("proxy")?, tftp: port("tftp")?, client: port("client")? })
                    }
                    None => None,
                };
                Some(PxeSettings {
                    interface: r.text("interface")?.ok_or_else(|| bad("pxe.interface", "given"))?,
                    programs: path(r.text("programs")?),
                    channel: r.text("channel")?,
                    append: r.list("append")?,
                    http_only: r.flag("http_only")?,
                    ports,
                    address: r.text("address")?.map(|a| a.parse().map_err(|_| bad("pxe.address", "an IPv4 address"))).transpose()?,
                })
            }
            None => None,
        };
        Ok(NodeConfig {
            http: r.text("http")?.ok_or_else(|| bad("http", "given"))?,
            data_dir: path(r.text("data_dir")?),
            memory_budget: r.num("memory_budget")?,
            max_result_bytes: r.num("max_result_bytes")?,
            max_concurrent: r.size("max_concurrent")?,
            max_queued: r.size("max_queued")?,
            result_ttl: r.num("result_ttl")?,
            max_module_bytes: r.size("max_module_bytes")?,
            max_input_bytes: r.size("max_input_bytes")?,
            max_fuel: r.num("max_fuel")?,
            max_memory_bytes: r.num("max_memory_bytes")?,
            max_output_bytes: r.num("max_output_bytes")?,
            max_deadline_ms: r.num("max_deadline_ms")?,
            max_disk_module_bytes: r.num("max_disk_module_bytes")?,
            max_connections: r.size("max_connections")?,
            max_connections_per_ip: r.size("max_connections_per_ip")?,
            p2p,
            boot_store: path(r.text("boot_store")?),
            hardware_report: path(r.text("hardware_report")?),
            max_downloads: r.size("max_downloads")?,
            trust: r.list("trust")?.iter().map(|k| hex_decode_array::<32>(k).map_err(|e| ConfigError(format!("trust {k:?}: {e}")))).collect::<Result<_, _>>()?,
            channel: r.text("channel")?,
            operator: r.text("operator")?.map(|h| hex_decode_array::<32>(&h).map_err(|e| ConfigError(format!("operator: {e}")))).transpose()?,
            update_handoff: path(r.text("update_handoff")?),
            drain: r.num("drain")?,
            trial: r.flag("trial")?,
            window: match r.text("window")? {
                Some(w) if phase_core::boot::cmdline::Window::parse(&w).is_none() => return Err(bad("window", "HH:MM-HH:MM in UTC")),
                w => w,
            },
            booted_from: r.text("booted_from")?,
            pxe,
            fault: r.text("fault")?.map(|f| Fault::parse(&f).map_err(|e| ConfigError(e.to_string()))).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_survives_the_hand_over_and_bad_ones_are_named() {
        let mut c = NodeConfig::new("0.0.0.0:8700");
        assert_eq!(NodeConfig::from_json(&c.to_json()), Ok(c.clone()));
        c.data_dir = Some("/run/phase/node".into());
        c.max_concurrent = Some(2);
        c.result_ttl = Some(60);
        c.max_fuel = Some(u64::MAX);
        c.p2p = Some(PeerSettings {
            listen: vec!["/ip4/0.0.0.0/tcp/4001".parse().unwrap()],
            bootstrap: vec!["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW9pP4Seg3kZYhySpuVjn1RPdQBsUFZKiFxGMGQN5MeL6A".parse().unwrap()],
            mdns: true,
            nat: false,
            swarm_key: Some("/etc/phase/swarm.key".into()),
            max_connections: Some(64),
        });
        c.boot_store = Some("/boot/phase".into());
        c.hardware_report = Some("/run/phase/hardware.json".into());
        c.trust = vec![[7; 32]];
        c.channel = Some("edge".into());
        c.operator = Some([9; 32]);
        c.update_handoff = Some("/run/phase/update".into());
        c.drain = Some(30);
        c.trial = true;
        c.window = Some("02:00-04:00".into());
        c.booted_from = Some("http://10.9.0.1:8700".into());
        c.pxe = Some(PxeSettings {
            interface: "eth1".into(),
            channel: Some("edge".into()),
            append: vec!["phase.pxe=on".into(), "quote=\"x\"".into()],
            http_only: true,
            ports: Some(Ports { dhcp: 6700, proxy: 4011, tftp: 6900, client: 6800 }),
            address: Some(Ipv4Addr::new(10, 9, 0, 1)),
            ..Default::default()
        });
        c.fault = Some(Fault::ExitAfterJob);
        assert_eq!(NodeConfig::from_json(&c.to_json()), Ok(c));
        for (text, says) in [
            ("[]", "not a JSON object"),
            ("{}", "http must be given"),
            (r#"{"http":"x","max_fule":1}"#, "unknown field max_fule"),
            (r#"{"http":"x","max_fuel":-1}"#, "max_fuel must be an unsigned integer"),
            (r#"{"http":"x","p2p":{"listen":["nowhere"]}}"#, "p2p.listen \"nowhere\" is not a multiaddr"),
            (r#"{"http":"x","pxe":{"interface":"e","ports":{"dhcp":70000}}}"#, "pxe.ports.dhcp must be a UDP port"),
            (r#"{"http":"x","trust":["00"]}"#, "trust \"00\""),
            (r#"{"http":"x","fault":"sulk"}"#, "unknown fault \"sulk\""),
        ] {
            let e = NodeConfig::from_json(text).unwrap_err().to_string();
            assert!(e.contains(says), "{e} for {text}");
        }
    }
}
