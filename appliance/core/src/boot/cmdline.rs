//! The appliance's configuration: `phase.*` parameters on the kernel command line
//! (docs/cmdline.md). Parsing never fails: a bad value is reported and the default kept, an
//! unknown `phase.*` key is reported, so a typo cannot pass silently and cannot stop a boot.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

/// Peer network mode (used by the peer-network issue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Internet,
    Private,
}

/// How the appliance gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Dhcp,
    Static { addr: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr> },
    None,
}

/// What PID 1 does when it cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Reboot,
    Shell,
    Poweroff,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    pub mode: Mode,
    pub network: Network,
    /// Interface to configure; `None` = the first Ethernet link.
    pub iface: Option<String>,
    pub dns: Vec<Ipv4Addr>,
    pub http_port: u16,
    /// Concurrent job slots; `None` = CPU count.
    pub jobs: Option<usize>,
    pub on_failure: OnFailure,
    /// libp2p TCP port; `None` = the peer network is off (`phase.p2p=off`).
    pub p2p_port: Option<u16>,
    /// Bootstrap peers: multiaddrs ending in /p2p/<peer id> (checked by the p2p layer).
    pub bootstrap: Vec<String>,
    /// `phase.boot=net`: fetch a signed kernel + initramfs from a provider and kexec into it.
    pub netboot: bool,
    /// `phase.provider=URL[,URL]`: providers to try before discovered ones.
    pub providers: Vec<String>,
    /// `phase.trust=HEX[,HEX]`: publisher keys trusted in addition to the image's own.
    pub trust: Vec<[u8; 32]>,
    /// `phase.channel=NAME`: the release channel to netboot and to serve.
    pub channel: String,
    /// `phase.lan=ADDR/PREFIX`: a second Ethernet link, configured statically (a boot LAN).
    pub lan: Option<(Ipv4Addr, u8)>,
    /// `phase.floor=N`: the lowest release version this machine may boot (the previous hop's
    /// version, or what the stick's data partition remembers).
    pub version_floor: u64,
    /// `phase.time_floor=UNIX`: the earliest this machine's time may be, whatever its clock says
    /// (the newest `created_at` the previous hops verified).
    pub time_floor: u64,
    /// `phase.boot_timeout=SECONDS` (10-3600): how long a netboot looks for a verifiable release.
    pub boot_timeout: u64,
    /// `phase.data=NAME`: the GPT partition name of the data partition that keeps the node key,
    /// modules and floors across boots (a boot stick's); `None` = state in RAM only.
    pub data: Option<String>,
    /// `phase.data_wait=SECONDS` (0-60): how long PID 1 waits for that partition to appear
    /// (USB storage is found after the kernel has started PID 1).
    pub data_wait: u64,
    /// `phase.pxe=on|http`: answer PXE and UEFI HTTP Boot clients (`http`: HTTP Boot and iPXE
    /// only, no TFTP) on the boot LAN (the `phase.lan` link, else the primary one) with the
    /// release this machine serves.
    pub pxe: Pxe,
    /// `phase.operator=HEX`: the SHA-256 of the operator token that `POST /v1/releases` takes.
    pub operator: Option<[u8; 32]>,
    /// `phase.drain=SECONDS` (0-3600): how long a node that updates itself waits for the jobs
    /// it runs to end before it boots the new release.
    pub drain: u64,
    /// `phase.trial=SECONDS` (10-3600): this boot tries an update: it must become healthy
    /// within this long, or the machine returns to the release it came from (carried along).
    pub trial: Option<u64>,
    /// `phase.trial_peers=N` (0-64): during a trial, healthy needs this many connected peers.
    pub trial_peers: u32,
    /// `phase.health_timeout=SECONDS` (10-3600): the trial an update hop gives the release it
    /// boots (its `phase.trial`).
    pub health_timeout: u64,
    /// `phase.window=HH:MM-HH:MM` (UTC): the node boots a new release only within this daily
    /// maintenance window (it fetches and serves it at any time); `None` = any time.
    pub window: Option<Window>,
    /// `phase.from=URL`: where the running release came from (set by the hop that booted it).
    pub from: Option<String>,
    /// Every `phase.*` parameter as given, to pass on to the next kexec hop.
    pub passthrough: Vec<String>,
}

/// A daily maintenance window in UTC, minutes since midnight: `start` up to (not including)
/// `end`; one that ends before it starts runs over midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

impl Window {
    /// `HH:MM-HH:MM`, hours 0-23, minutes 0-59, start and end different.
    pub fn parse(text: &str) -> Option<Window> {
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && t.len() == 5).then_some(h * 60 + m)
        };
        let (a, b) = text.split_once('-')?;
        let w = Window { start: minutes(a)?, end: minutes(b)? };
        (w.start != w.end).then_some(w)
    }

    /// Whether unix time `t` falls in the window.
    pub fn contains(&self, t: u64) -> bool {
        let m = ((t % 86_400) / 60) as u16;
        match self.start < self.end {
            true => (self.start..self.end).contains(&m),
            false => m >= self.start || m < self.end,
        }
    }

    /// The next unix time at or after `t` within the window.
    pub fn next_open(&self, t: u64) -> u64 {
        if self.contains(t) {
            return t;
        }
        let day = t - t % 86_400;
        let open = day + u64::from(self.start) * 60;
        if open > t { open } else { open + 86_400 }
    }
}

impl core::fmt::Display for Window {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02}:{:02}-{:02}:{:02}", self.start / 60, self.start % 60, self.end / 60, self.end % 60)
    }
}

/// Parameters that describe one boot only and are never passed on to the next hop: the floors
/// (each hop sets its own) and an update's trial.
pub fn hop_local(param: &str) -> bool {
    let key = param.split('=').next().unwrap_or("");
    matches!(key, "phase.floor" | "phase.time_floor" | "phase.trial" | "phase.trial_peers" | "phase.from")
}

/// How long a node drains by default before it boots a new release, in seconds.
pub const DEFAULT_DRAIN: u64 = 60;
/// How long a new release has by default to become healthy, in seconds.
pub const DEFAULT_HEALTH_TIMEOUT: u64 = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pxe {
    Off,
    On,
    HttpOnly,
}

/// The `phase.*` parameters a PXE-booted machine inherits from the appliance that boots it:
/// those that describe the network it joins, not this machine (its addresses, its data
/// partition, how it booted).
pub fn inherited_by_other_machines(param: &str) -> bool {
    let key = param.split('=').next().unwrap_or("");
    matches!(key, "phase.mode" | "phase.p2p" | "phase.bootstrap" | "phase.channel" | "phase.pxe" | "phase.on_failure" | "phase.jobs" | "phase.http")
}

/// How long a netboot looks for a verifiable release by default, in seconds.
pub const DEFAULT_BOOT_TIMEOUT: u64 = 180;
/// How long PID 1 waits for the data partition by default, in seconds.
pub const DEFAULT_DATA_WAIT: u64 = 10;

/// A GPT partition name Phase accepts for `phase.data`: 1-36 of `A-Z a-z 0-9 - _` (GPT names
/// are at most 36 UTF-16 units; the kernel shows them in sysfs as PARTNAME).
pub fn valid_partition_name(name: &str) -> bool {
    (1..=36).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            mode: Mode::Local,
            network: Network::Dhcp,
            iface: None,
            dns: Vec::new(),
            http_port: DEFAULT_HTTP_PORT,
            jobs: None,
            on_failure: OnFailure::Reboot,
            p2p_port: Some(DEFAULT_P2P_PORT),
            bootstrap: Vec::new(),
            netboot: false,
            providers: Vec::new(),
            trust: Vec::new(),
            channel: DEFAULT_CHANNEL.to_string(),
            lan: None,
            version_floor: 0,
            time_floor: 0,
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
            data: None,
            data_wait: DEFAULT_DATA_WAIT,
            pxe: Pxe::Off,
            operator: None,
            drain: DEFAULT_DRAIN,
            trial: None,
            trial_peers: 0,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            window: None,
            from: None,
            passthrough: Vec::new(),
        }
    }
}

pub const DEFAULT_HTTP_PORT: u16 = 8700;
pub const DEFAULT_CHANNEL: &str = "stable";

/// A channel name as manifests allow it (1-32 of a-z 0-9 -): safe as a path segment and as
/// part of a DHT key.
pub fn valid_channel(name: &str) -> bool {
    crate::boot::manifest::valid_channel(name)
}
pub const DEFAULT_P2P_PORT: u16 = 4001;

/// A parameter that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    UnknownKey(String),
    BadValue { key: String, value: String, expected: &'static str },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownKey(k) => write!(f, "unknown parameter {k} (ignored; see docs/cmdline.md)"),
            Problem::BadValue { key, value, expected } => {
                write!(f, "{key}={value:?} is not {expected}; using the default")
            }
        }
    }
}

/// Splits a kernel command line into words, honouring double quotes as the kernel does.
fn words(cmdline: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = cmdline.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        let mut quoted = false;
        while i < bytes.len() && (quoted || !bytes[i].is_ascii_whitespace()) {
            if bytes[i] == b'"' {
                quoted = !quoted;
            }
            i += 1;
        }
        if i > start {
            out.push(&cmdline[start..i]);
        }
    }
    out
}

fn parse_cidr(v: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = v.split_once('/')?;
    let prefix: u8 = p.parse().ok()?;
    (prefix <= 32).then_some(())?;
    Some((a.parse().ok()?, prefix))
}

impl BootConfig {
    /// Parses `/proc/cmdline`. Returns the config and every problem found.
    pub fn parse(cmdline: &str) -> (BootConfig, Vec<Problem>) {
        let mut c = BootConfig::default();
        let mut problems = Vec::new();
        let (mut net, mut ip, mut gw): (Option<&str>, Option<(Ipv4Addr, u8)>, Option<Ipv4Addr>) =
            (None, None, None);
        for word in words(cmdline) {
            let Some(rest) = word.strip_prefix("phase.") else { continue };
            c.passthrough.push(word.to_string());
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            let value = value.trim_matches('"');
            let mut bad = |expected: &'static str| {
                problems.push(Problem::BadValue {
                    key: ["phase.", key].concat(),
                    value: value.to_string(),
                    expected,
                })
            };
            match key {
                "mode" => match value {
                    "local" => c.mode = Mode::Local,
                    "internet" => c.mode = Mode::Internet,
                    "private" => c.mode = Mode::Private,
                    _ => bad("local, internet or private"),
                },
                "net" => match value {
                    "dhcp" | "static" | "none" => net = Some(value),
                    _ => bad("dhcp, static or none"),
                },
                "ip" => match parse_cidr(value) {
                    Some(v) => ip = Some(v),
                    None => bad("an IPv4 address with prefix, like 10.0.2.15/24"),
                },
                "gw" => match value.parse() {
                    Ok(v) => gw = Some(v),
                    Err(_) => bad("an IPv4 address"),
                },
                "dns" => {
                    let parsed: Option<Vec<Ipv4Addr>> =
                        value.split(',').map(|s| s.parse().ok()).collect();
                    match parsed {
                        Some(v) if !v.is_empty() => c.dns = v,
                        _ => bad("comma-separated IPv4 addresses"),
                    }
                }
                "iface" => match value {
                    v if !v.is_empty() && v.len() < 16 && !v.contains('/') => {
                        c.iface = Some(v.to_string())
                    }
                    _ => bad("an interface name (1-15 characters, no '/')"),
                },
                "http" => match value.parse::<u16>() {
                    Ok(p) if p > 0 => c.http_port = p,
                    _ => bad("a TCP port 1-65535"),
                },
                "jobs" => match value.parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) => c.jobs = Some(n),
                    _ => bad("a number of job slots 1-1024"),
                },
                "p2p" => match value {
                    "off" => c.p2p_port = None,
                    v => match v.parse::<u16>() {
                        Ok(p) if p > 0 => c.p2p_port = Some(p),
                        _ => bad("a TCP port 1-65535 or off"),
                    },
                },
                "bootstrap" => {
                    let list: Vec<String> = value.split(',').filter(|a| !a.is_empty()).map(|a| a.to_string()).collect();
                    if !list.is_empty() && list.iter().all(|a| a.starts_with('/') && a.contains("/p2p/")) {
                        c.bootstrap = list;
                    } else {
                        bad("comma-separated multiaddrs ending in /p2p/<peer id>");
                    }
                }
                "boot" => match value {
                    "net" => c.netboot = true,
                    "local" => c.netboot = false,
                    _ => bad("net or local"),
                },
                "provider" => {
                    let list: Vec<String> = value.split(',').filter(|u| !u.is_empty()).map(|u| u.to_string()).collect();
                    if !list.is_empty() && list.iter().all(|u| u.starts_with("http://") && u.len() > 7) {
                        c.providers = list;
                    } else {
                        bad("comma-separated http:// URLs");
                    }
                }
                "trust" => {
                    let keys: Option<Vec<[u8; 32]>> =
                        value.split(',').map(|k| crate::encoding::hex_decode_array::<32>(k).ok()).collect();
                    match keys {
                        Some(k) if !k.is_empty() => c.trust = k,
                        _ => bad("comma-separated Ed25519 public keys (64 hex digits each)"),
                    }
                }
                "channel" => match value {
                    v if valid_channel(v) => c.channel = v.to_string(),
                    _ => bad("a channel name: 1-32 of a-z 0-9 -"),
                },
                "lan" => match parse_cidr(value) {
                    Some(v) => c.lan = Some(v),
                    None => bad("an IPv4 address with prefix, like 10.9.0.2/24"),
                },
                "floor" => match value.parse::<u64>() {
                    Ok(v) => c.version_floor = v,
                    Err(_) => bad("a release version (an unsigned integer)"),
                },
                "time_floor" => match value.parse::<u64>() {
                    Ok(v) => c.time_floor = v,
                    Err(_) => bad("unix seconds"),
                },
                "boot_timeout" => match value.parse::<u64>() {
                    Ok(v) if (10..=3600).contains(&v) => c.boot_timeout = v,
                    _ => bad("seconds, 10-3600"),
                },
                "data" => match value {
                    "none" => c.data = None,
                    v if valid_partition_name(v) => c.data = Some(v.to_string()),
                    _ => bad("a GPT partition name (1-36 of A-Z a-z 0-9 - _) or none"),
                },
                "data_wait" => match value.parse::<u64>() {
                    Ok(v) if v <= 60 => c.data_wait = v,
                    _ => bad("seconds, 0-60"),
                },
                "pxe" => match value {
                    "on" => c.pxe = Pxe::On,
                    "http" => c.pxe = Pxe::HttpOnly,
                    "off" => c.pxe = Pxe::Off,
                    _ => bad("on, http or off"),
                },
                "operator" => match crate::encoding::hex_decode_array::<32>(value) {
                    Ok(h) => c.operator = Some(h),
                    Err(_) => bad("the SHA-256 of the operator token (64 hex digits)"),
                },
                "drain" => match value.parse::<u64>() {
                    Ok(v) if v <= 3600 => c.drain = v,
                    _ => bad("seconds, 0-3600"),
                },
                "trial" => match value.parse::<u64>() {
                    Ok(v) if (10..=3600).contains(&v) => c.trial = Some(v),
                    _ => bad("seconds, 10-3600"),
                },
                "health_timeout" => match value.parse::<u64>() {
                    Ok(v) if (10..=3600).contains(&v) => c.health_timeout = v,
                    _ => bad("seconds, 10-3600"),
                },
                "window" => match Window::parse(value) {
                    Some(w) => c.window = Some(w),
                    None => bad("HH:MM-HH:MM in UTC, start and end different"),
                },
                "from" => match value {
                    v if !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| b.is_ascii_graphic()) => c.from = Some(v.to_string()),
                    _ => bad("a URL of at most 256 printable characters"),
                },
                "trial_peers" => match value.parse::<u32>() {
                    Ok(v) if v <= 64 => c.trial_peers = v,
                    _ => bad("a number of peers, 0-64"),
                },
                "fault" => {}
                "on_failure" => match value {
                    "reboot" => c.on_failure = OnFailure::Reboot,
                    "shell" => c.on_failure = OnFailure::Shell,
                    "poweroff" => c.on_failure = OnFailure::Poweroff,
                    _ => bad("reboot, shell or poweroff"),
                },
                _ => problems.push(Problem::UnknownKey(["phase.", key].concat())),
            }
        }
        c.network = match (net, ip) {
            (Some("none"), _) => Network::None,
            (Some("static"), Some((addr, prefix))) | (None, Some((addr, prefix))) => {
                Network::Static { addr, prefix, gateway: gw }
            }
            (Some("static"), None) => {
                problems.push(Problem::BadValue {
                    key: "phase.net".into(),
                    value: "static".into(),
                    expected: "usable without phase.ip=ADDR/PREFIX",
                });
                Network::Dhcp
            }
            _ => Network::Dhcp,
        };
        (c, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pxe_is_on_or_off_and_other_machines_inherit_only_the_networks_parameters() {
        let (c, p) = BootConfig::parse("phase.pxe=on phase.lan=10.9.0.2/24 phase.mode=local phase.data=phase-data phase.boot=net");
        assert!(c.pxe == Pxe::On && p.is_empty());
        let inherited: Vec<&String> = c.passthrough.iter().filter(|w| inherited_by_other_machines(w)).collect();
        assert_eq!(inherited, ["phase.pxe=on", "phase.mode=local"]);
        assert_eq!(BootConfig::parse("phase.pxe=http").0.pxe, Pxe::HttpOnly);
        let (c, p) = BootConfig::parse("phase.pxe=yes");
        assert!(c.pxe == Pxe::Off && p.len() == 1);
    }
    use alloc::vec;

    #[test]
    fn defaults_without_phase_parameters() {
        let (c, p) = BootConfig::parse("console=ttyS0 quiet root=/dev/ram0\n");
        assert_eq!(c, BootConfig::default());
        assert!(p.is_empty());
    }

    #[test]
    fn full_static_configuration() {
        let (c, p) = BootConfig::parse(
            "console=ttyS0 phase.mode=internet phase.ip=10.0.2.15/24 phase.gw=10.0.2.2 \
             phase.dns=1.1.1.1,9.9.9.9 phase.http=9000 phase.jobs=3 phase.on_failure=shell \
             phase.iface=eth1",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.mode, Mode::Internet);
        assert_eq!(
            c.network,
            Network::Static {
                addr: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2))
            }
        );
        assert_eq!(c.dns.len(), 2);
        assert_eq!((c.http_port, c.jobs, c.on_failure), (9000, Some(3), OnFailure::Shell));
        assert_eq!(c.iface.as_deref(), Some("eth1"));
        assert_eq!(c.passthrough.len(), 8);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_reported_and_defaults_kept() {
        let (c, p) = BootConfig::parse(
            "phase.http=0 phase.mode=fast phase.ip=10.0.2.15 phase.colour=blue phase.jobs=x \
             phase.net=static",
        );
        assert_eq!(c.http_port, DEFAULT_HTTP_PORT);
        assert_eq!(c.mode, Mode::Local);
        assert_eq!(c.network, Network::Dhcp);
        let text: Vec<String> = p.iter().map(|x| x.to_string()).collect();
        assert_eq!(p.len(), 6, "{text:?}");
        assert!(text.iter().any(|t| t.contains("unknown parameter phase.colour")));
        assert!(text.iter().any(|t| t.contains("phase.http=\"0\" is not a TCP port")));
    }

    #[test]
    fn peer_network_parameters() {
        let (c, p) = BootConfig::parse("phase.p2p=4100 phase.bootstrap=/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWA,/dns4/x/tcp/1/p2p/12D3KooWB");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.p2p_port, Some(4100));
        assert_eq!(c.bootstrap.len(), 2);
        let (c, p) = BootConfig::parse("phase.p2p=off phase.bootstrap=10.0.0.1:4001");
        assert_eq!(c.p2p_port, None);
        assert!(c.bootstrap.is_empty());
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(BootConfig::parse("").0.p2p_port, Some(DEFAULT_P2P_PORT));
    }

    #[test]
    fn netboot_parameters() {
        let key = "11".repeat(32);
        let (c, p) = BootConfig::parse(&alloc::format!(
            "phase.boot=net phase.provider=http://10.9.0.1:8700,http://10.9.0.3:8700 phase.trust={key} \
             phase.channel=edge phase.lan=10.9.0.2/24"
        ));
        assert!(p.is_empty(), "{p:?}");
        assert!(c.netboot);
        assert_eq!(c.providers, ["http://10.9.0.1:8700", "http://10.9.0.3:8700"]);
        assert_eq!(c.trust, [[0x11; 32]]);
        assert_eq!(c.channel, "edge");
        assert_eq!(c.lan, Some((Ipv4Addr::new(10, 9, 0, 2), 24)));
        assert_eq!(c.passthrough.len(), 5);
        let (c, p) = BootConfig::parse("phase.boot=usb phase.provider=ftp://x phase.trust=abc phase.channel=../x phase.lan=1.2.3.4");
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(!c.netboot && c.providers.is_empty() && c.trust.is_empty() && c.lan.is_none());
        assert_eq!(c.channel, DEFAULT_CHANNEL);
        let (c, p) = BootConfig::parse("phase.trial=120 phase.trial_peers=1 phase.drain=30 phase.health_timeout=45 phase.operator=0101010101010101010101010101010101010101010101010101010101010101");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((c.trial, c.trial_peers, c.drain, c.health_timeout, c.operator), (Some(120), 1, 30, 45, Some([1; 32])));
        let (c, p) = BootConfig::parse("phase.trial=5 phase.trial_peers=65 phase.drain=4000 phase.operator=secret");
        assert_eq!((p.len(), c.trial, c.trial_peers, c.drain, c.operator), (4, None, 0, DEFAULT_DRAIN, None));
        assert!(hop_local("phase.trial=60") && hop_local("phase.floor=3") && hop_local("phase.from=http://x") && !hop_local("phase.mode=local"));
        let (c, p) = BootConfig::parse("phase.window=22:30-02:00 phase.from=http://10.9.0.1:8700");
        assert!(p.is_empty(), "{p:?}");
        let w = c.window.unwrap();
        assert_eq!((w.to_string(), c.from.as_deref()), ("22:30-02:00".to_string(), Some("http://10.9.0.1:8700")));
        // Over midnight: 23:00 and 01:59 in, 02:00 and 12:00 out; the next opening is 22:30.
        let day = 1_800_000_000 - 1_800_000_000 % 86_400;
        assert!(w.contains(day + 23 * 3600) && w.contains(day + 3600 + 59 * 60) && !w.contains(day + 2 * 3600) && !w.contains(day + 12 * 3600));
        assert_eq!(w.next_open(day + 12 * 3600), day + 22 * 3600 + 1800);
        assert_eq!(w.next_open(day + 23 * 3600), day + 23 * 3600);
        let day_w = Window::parse("02:00-04:00").unwrap();
        assert_eq!(day_w.next_open(day + 5 * 3600), day + 86_400 + 2 * 3600);
        for bad in ["2:00-04:00", "02:00-02:00", "24:00-01:00", "02:60-03:00", "0200-0300"] {
            assert!(Window::parse(bad).is_none(), "{bad}");
        }
        let (c, p) = BootConfig::parse("phase.floor=7 phase.time_floor=1800000000 phase.boot_timeout=30");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((c.version_floor, c.time_floor, c.boot_timeout), (7, 1_800_000_000, 30));
        let (c, p) = BootConfig::parse("phase.floor=-1 phase.time_floor=soon phase.boot_timeout=5");
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!((c.version_floor, c.time_floor, c.boot_timeout), (0, 0, DEFAULT_BOOT_TIMEOUT));
    }

    #[test]
    fn data_partition_parameters() {
        let (c, p) = BootConfig::parse("phase.data=phase-data phase.data_wait=3");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((c.data.as_deref(), c.data_wait), (Some("phase-data"), 3));
        let (c, p) = BootConfig::parse("phase.data=../sda1 phase.data_wait=61");
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!((c.data, c.data_wait), (None, DEFAULT_DATA_WAIT));
        let long = "x".repeat(37);
        assert_eq!(BootConfig::parse(&alloc::format!("phase.data={long}")).1.len(), 1);
        assert_eq!(BootConfig::parse("phase.data=a phase.data=none").0.data, None);
    }

    #[test]
    fn quotes_and_none() {
        let (c, p) = BootConfig::parse("phase.net=none  phase.dns=\"8.8.8.8\"");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.network, Network::None);
        assert_eq!(c.dns, vec![Ipv4Addr::new(8, 8, 8, 8)]);
        assert_eq!(words("a \"b c\" d"), vec!["a", "\"b c\"", "d"]);
    }
}
