//! Network bring-up as a state machine the supervisor advances on every tick: wait for an
//! Ethernet link, bring it up, wait for carrier, then configure it statically or run udhcpc
//! (a supervised service, so DHCP is retried with backoff and leases renew). Commands are
//! busybox `ip`, run synchronously from the supervisor thread (see supervisor.rs for why).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use phase_core::boot::cmdline::{BootConfig, Network};

/// The udhcpc script writes the leased address here once the interface is configured.
pub const LEASE_MARKER: &str = "/run/phase/net-address";
pub const UDHCPC_SCRIPT: &str = "/etc/phase/udhcpc.script";
/// A machine with no Ethernet interface this long after PID 1 started is ready without one.
pub const NO_LINK_AFTER: Duration = Duration::from_secs(10);
/// A link without carrier or lease this long after PID 1 started: ready without a network.
pub const NO_ADDRESS_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    WaitingForLink,
    WaitingForCarrier(String),
    /// udhcpc is (to be) running on this interface.
    Dhcp(String),
    Ready(String),
    Disabled,
}

pub struct Net {
    pub state: State,
    /// The primary link, once found; `phase.lan=` configures the first other one.
    primary: Option<String>,
    /// `phase.lan=`: the second link's address, once configured.
    lan: Option<String>,
    /// The link `phase.lan=` configured.
    lan_link: Option<String>,
    config: BootConfig,
    since: Instant,
    last_report: Instant,
}

/// What the supervisor must do after a step.
pub enum Action {
    None,
    StartDhcp(String),
}

pub fn start(config: &BootConfig) -> Net {
    ip(&["link", "set", "lo", "up"]);
    let state = if config.network == Network::None { State::Disabled } else { State::WaitingForLink };
    Net { state, primary: None, lan: None, lan_link: None, config: config.clone(), since: Instant::now(), last_report: Instant::now() }
}

/// Runs busybox `ip`; logs a failure with its stderr.
fn ip(args: &[&str]) -> bool {
    match Command::new("/bin/ip").args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            log!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
            false
        }
        Err(e) => {
            log!("ip {}: cannot run /bin/ip: {e}", args.join(" "));
            false
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Ethernet interfaces (ARPHRD_ETHER = 1), sorted by name.
fn ether_links() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return vec![] };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo" && read(&format!("/sys/class/net/{n}/type")) == "1")
        .collect();
    names.sort();
    names
}

/// The first Ethernet interface (ARPHRD_ETHER = 1), by name, or the configured one.
fn find_link(want: Option<&str>) -> Option<String> {
    if let Some(name) = want {
        return Path::new("/sys/class/net").join(name).exists().then(|| name.to_string());
    }
    ether_links().into_iter().next()
}

impl Net {
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(_) | State::Disabled) && (self.config.lan.is_none() || self.lan.is_some())
    }

    /// The boot LAN's link: the `phase.lan` one, else the primary one.
    pub fn boot_lan_link(&self) -> Option<String> {
        self.lan_link.clone().or_else(|| self.primary.clone())
    }

    /// Why this machine has no usable network, once it has waited long enough to say so: no
    /// Ethernet interface after NO_LINK_AFTER (no driver took a device), no carrier or no
    /// lease after NO_ADDRESS_AFTER. The search goes on; a link found later is used.
    pub fn unusable(&self) -> Option<String> {
        let waited = self.since.elapsed();
        let why = match &self.state {
            State::WaitingForLink if waited >= NO_LINK_AFTER => "no Ethernet interface: no driver took a network device (see the hardware report)".to_string(),
            State::WaitingForCarrier(l) if waited >= NO_ADDRESS_AFTER => format!("no carrier on {l} (is a cable plugged in?)"),
            State::Dhcp(l) if waited >= NO_ADDRESS_AFTER => format!("no DHCP answer on {l}"),
            _ => return None,
        };
        Some(format!("none usable yet ({why}): jobs are served on this machine only"))
    }

    pub fn describe(&self) -> String {
        if let Some(why) = self.unusable() {
            return why;
        }
        match &self.state {
            State::Ready(a) => match &self.lan {
                Some(l) => format!("{a}, LAN {l}"),
                None => a.clone(),
            },
            State::Disabled => "disabled (phase.net=none)".into(),
            State::WaitingForLink => "waiting for an Ethernet interface".into(),
            State::WaitingForCarrier(l) => format!("waiting for carrier on {l}"),
            State::Dhcp(l) => format!("waiting for a DHCP lease on {l}"),
        }
    }

    fn report(&mut self, what: &str) {
        // Every 5 s while the boot waits; once it went on without a network, every minute.
        let every = if self.unusable().is_some() { Duration::from_secs(60) } else { Duration::from_secs(5) };
        if self.last_report.elapsed() >= every {
            self.last_report = Instant::now();
            log!("network: still {what} after {:.0}s", self.since.elapsed().as_secs_f64());
        }
    }

    /// `phase.lan=`: the first Ethernet link other than the primary one gets a static address
    /// (no gateway: a boot LAN beside the uplink).
    fn step_lan(&mut self, primary: &str) {
        let Some((addr, prefix)) = self.config.lan else { return };
        if self.lan.is_some() {
            return;
        }
        let Some(link) = ether_links().into_iter().find(|l| l != primary) else {
            return self.report("waiting for a second Ethernet interface for phase.lan");
        };
        let cidr = format!("{addr}/{prefix}");
        if ip(&["link", "set", &link, "up"]) && ip(&["addr", "add", &cidr, "dev", &link]) {
            log!("network: LAN {link} configured statically as {cidr}");
            self.lan = Some(format!("{addr} ({link})"));
            self.lan_link = Some(link);
        }
    }

    /// Advances the state machine by at most one step.
    pub fn step(&mut self) -> Action {
        // With phase.net=none there is no primary link: the LAN takes the first one.
        if self.primary.is_some() || self.state == State::Disabled {
            let p = self.primary.clone().unwrap_or_default();
            self.step_lan(&p);
        }
        match self.state.clone() {
            State::WaitingForLink => match find_link(self.config.iface.as_deref()) {
                Some(link) => {
                    ip(&["link", "set", &link, "up"]);
                    log!("network: link {link} up, waiting for carrier");
                    self.primary = Some(link.clone());
                    self.state = State::WaitingForCarrier(link);
                }
                None => self.report("waiting for an Ethernet interface"),
            },
            State::WaitingForCarrier(link) => {
                if read(&format!("/sys/class/net/{link}/carrier")) != "1" {
                    self.report(&format!("waiting for carrier on {link}"));
                    return Action::None;
                }
                match &self.config.network {
                    Network::Static { addr, prefix, gateway } => {
                        let cidr = format!("{addr}/{prefix}");
                        let mut ok = ip(&["addr", "add", &cidr, "dev", &link]);
                        if let Some(gw) = gateway {
                            ok &= ip(&["route", "add", "default", "via", &gw.to_string(), "dev", &link]);
                        }
                        self.write_dns();
                        if ok {
                            log!("network: {link} configured statically as {cidr}");
                            self.state = State::Ready(format!("{addr} ({link}, static)"));
                        }
                    }
                    _ => {
                        self.state = State::Dhcp(link.clone());
                        return Action::StartDhcp(link);
                    }
                }
            }
            State::Dhcp(link) => {
                let addr = read(LEASE_MARKER);
                if !addr.is_empty() {
                    self.write_dns();
                    log!("network: {link} leased {addr} by DHCP");
                    let ip = addr.split('/').next().unwrap_or(&addr).to_string();
                    self.state = State::Ready(format!("{ip} ({link}, DHCP)"));
                } else {
                    self.report(&format!("waiting for a DHCP lease on {link}"));
                }
            }
            State::Ready(_) | State::Disabled => {}
        }
        Action::None
    }

    /// `phase.dns=` overrides what DHCP offered.
    fn write_dns(&self) {
        if self.config.dns.is_empty() {
            return;
        }
        let text: String = self.config.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        if let Err(e) = std::fs::write("/etc/resolv.conf", text) {
            log!("network: /etc/resolv.conf: {e}");
        }
    }
}

/// argv of the supervised DHCP client: stays in the foreground, renews leases, and retries
/// with backoff (3 discovers 1 s apart, then a 2 s pause) until it gets a lease.
pub fn udhcpc_argv(link: &str) -> Vec<String> {
    ["/bin/udhcpc", "-f", "-i", link, "-s", UDHCPC_SCRIPT, "-t", "3", "-T", "1", "-A", "2", "-S"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
