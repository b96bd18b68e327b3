//! PID 1's main loop: one thread that starts services, reaps every child (services and
//! orphans) with waitpid(-1), restarts crashed services with backoff, advances the network,
//! prints the ready line once, and shuts down on a signal.
//!
//! Single-threaded on purpose: a reaper thread would steal the exit status of the short `ip`
//! commands the network steps run with `Command::output`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phase_core::boot::cmdline::BootConfig;

use super::hardware::{Hardware, REPORT};
use super::net::{self, Action, Net};
use super::Timing;
use crate::boot::netboot::BootImage;
use crate::node::{NodeConfig, PeerSettings, PxeSettings};
use crate::sys::{self, ChildExit, RebootCmd, SignalSet};

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A service that ran this long before exiting starts again from the minimum backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often PID 1 looks for new devices (a USB adapter enumerates seconds after boot, or is
/// plugged in later) and refreshes the hardware report.
const HARDWARE_SCAN: Duration = Duration::from_secs(1);
/// The swarm key of a private network, put into the image by its builder.
const SWARM_KEY: &str = "/etc/phase/swarm.key";

struct Service {
    name: &'static str,
    argv: Vec<String>,
    /// Written to its stdin when it starts (the node's configuration), then closed.
    stdin: Option<Vec<u8>>,
    pid: Option<i32>,
    started: Instant,
    backoff: Duration,
    next_start: Option<Instant>,
}

impl Service {
    fn new(name: &'static str, argv: Vec<String>) -> Service {
        Service { name, argv, stdin: None, pid: None, started: Instant::now(), backoff: BACKOFF_MIN, next_start: Some(Instant::now()) }
    }

    /// The node, started as `phase node --config -` with its configuration on stdin.
    fn node(config: &NodeConfig) -> Service {
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "/bin/phase".into());
        let argv = vec![exe, "node".into(), "--config".into(), "-".into()];
        Service { stdin: Some(config.to_json().into_bytes()), ..Service::new("node", argv) }
    }

    fn start(&mut self) {
        self.next_start = None;
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        if self.stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        SignalSet::of(&super::SIGNALS).unblock_in_child(&mut cmd);
        match cmd.spawn() {
            Ok(mut child) => {
                // A few KiB into an empty pipe: written at once; closed so the node reads to
                // its end.
                if let (Some(bytes), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
                    if let Err(e) = pipe.write_all(bytes) {
                        log!("service {}: writing its configuration: {e}", self.name);
                    }
                }
                self.pid = Some(child.id() as i32);
                self.started = Instant::now();
                // The child is reaped by waitpid(-1) in the loop, not through `child`.
                std::mem::forget(child);
            }
            Err(e) => {
                log!("service {}: cannot start {}: {e}", self.name, self.argv[0]);
                self.schedule_restart();
            }
        }
    }

    fn schedule_restart(&mut self) {
        if self.started.elapsed() >= HEALTHY_RUN {
            self.backoff = BACKOFF_MIN;
        }
        log!("service {}: restarting in {}s", self.name, self.backoff.as_secs());
        self.next_start = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// The node this boot runs: its API on every interface, its state in `data_dir`, the peer
/// network as `phase.mode` says, the carried release served (and answering PXE clients on
/// `pxe` with `phase.pxe`).
fn node_config(config: &BootConfig, data_dir: &std::path::Path, carried: bool, trusted: &[[u8; 32]], pxe: Option<&str>, trial: bool) -> NodeConfig {
    use phase_core::boot::cmdline::Mode;
    let mut node = NodeConfig::new(format!("0.0.0.0:{}", config.http_port));
    node.data_dir = Some(data_dir.to_path_buf());
    node.max_concurrent = config.jobs;
    if let Some(port) = config.p2p_port {
        let listen = format!("/ip4/0.0.0.0/tcp/{port}").parse().into_iter().collect();
        // The command line checked their shape; one libp2p cannot read is said and left out.
        let bootstrap = config
            .bootstrap
            .iter()
            .filter_map(|b| b.parse().map_err(|e| log!("cmdline: phase.bootstrap {b:?} is not a multiaddr ({e}): left out")).ok())
            .collect();
        let mut p2p = PeerSettings { listen, bootstrap, ..Default::default() };
        let joined = match config.mode {
            Mode::Local => {
                p2p.mdns = true;
                true
            }
            Mode::Internet => {
                p2p.nat = true;
                true
            }
            Mode::Private if std::path::Path::new(SWARM_KEY).exists() => {
                p2p.swarm_key = Some(SWARM_KEY.into());
                true
            }
            // Fail closed: a private node without its key joins no network at all.
            Mode::Private => {
                log!("phase.mode=private but {SWARM_KEY} is missing: not joining any peer network");
                false
            }
        };
        node.p2p = joined.then_some(p2p);
    }
    if carried {
        node.boot_store = Some(crate::boot::CARRIED_STORE.into());
        node.trust = trusted.to_vec();
        // It boots the newer releases it takes up (update.rs), through PID 1.
        node.update_handoff = Some(super::update::HANDOFF.into());
        node.drain = Some(config.drain);
        node.trial = trial;
    }
    node.channel = Some(config.channel.clone());
    node.operator = config.operator;
    node.window = config.window.map(|w| w.to_string());
    node.booted_from = config.from.clone();
    node.pxe = pxe.map(|link| PxeSettings {
        interface: link.to_string(),
        channel: Some(config.channel.clone()),
        http_only: config.pxe == phase_core::boot::cmdline::Pxe::HttpOnly,
        append: config.passthrough.iter().filter(|p| phase_core::boot::cmdline::inherited_by_other_machines(p)).cloned().collect(),
        ..Default::default()
    });
    node.hardware_report = Some(REPORT.into());
    if config.passthrough.iter().any(|p| p == "phase.fault=node-exit-after-job") {
        node.fault = Some(crate::faults::Fault::ExitAfterJob);
    }
    node
}

/// True when the node answers GET /health with 200 on loopback.
fn node_healthy(port: u16) -> bool {
    crate::http::health(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(300)) == Some(200)
}

pub fn run(config: BootConfig, mut net: Net, mut hardware: Hardware, state: super::data::State, signals: SignalSet, mut timing: Timing) -> ! {
    let trusted = super::netboot::trusted_keys(&config);
    // Booted from a netboot hop (or a carrying initrd): serve what we booted (verified against
    // the trusted keys when the node opens it), do not netboot.
    let carrying = std::path::Path::new(crate::boot::CARRIED_STORE).exists();
    if carrying && trusted.is_empty() {
        log!("boot: the carried release is not served: no trusted publisher key to verify it (phase.trust= or /etc/phase/trust/*.pub)");
    }
    let carried = carrying && !trusted.is_empty();
    // The floors file of this boot's state, also when it is in RAM: a write-protected or full
    // partition's floors were copied there (data.rs) and must hold the search as firmly.
    let floors = crate::data_dir::DataDir::new(&state.dir).floors();
    let mut netboot = (config.netboot && !carrying).then(|| super::netboot::start(&config, trusted.clone(), floors));
    // With phase.pxe=on the node starts once the boot LAN has its address (ProxyDHCP answers
    // name it); otherwise at once.
    let pxe = config.pxe != phase_core::boot::cmdline::Pxe::Off;
    let mut trial = super::update::Trial::of(&config);
    let in_trial = trial.is_some();
    let data = crate::data_dir::DataDir::new(&state.dir);
    // A stick's cold boot: the update committed on its data partition, if there is a newer one.
    if carried && state.persistent && !in_trial {
        if let Some(image) = super::update::committed_image(&config, &trusted, &data.floors(), &data.release()) {
            let Err(e) = try_kexec(&mut [], image, config.on_failure);
            log!("update: cannot boot the kept release: {e}; booting this one");
        }
    }
    let mut services = if pxe { vec![] } else { vec![Service::node(&node_config(&config, &state.dir, carried, &trusted, None, in_trial))] };
    if pxe && !carried {
        log!("pxe: phase.pxe=on but this machine serves no release (it carries none): no PXE answers");
    }
    let mut ready = false;
    let mut self_test_ok = false;
    let mut peers_checked = Instant::now();
    let mut self_test: Option<std::sync::mpsc::Receiver<(Option<crate::identity::NodeIdentity>, Result<(String, u64), String>)>> = None;
    let mut last_described = net.describe();
    hardware.publish(&last_described);
    let mut scanned = Instant::now();
    loop {
        if let Some(rx) = &netboot {
            match rx.try_recv() {
                Ok(Ok(next)) => kexec(&mut services, next, config.on_failure),
                Ok(Err(e)) => super::fail(config.on_failure, &e.to_string()),
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    netboot = None;
                    log!("netboot: the search thread ended without an answer");
                }
            }
        }
        for s in services.iter_mut() {
            if s.next_start.is_some_and(|t| Instant::now() >= t) {
                s.start();
            }
        }
        if pxe && net.is_ready() && !services.iter().any(|s| s.name == "node") {
            let link = if carried { net.boot_lan_link() } else { None };
            services.push(Service::node(&node_config(&config, &state.dir, carried, &trusted, link.as_deref(), in_trial)));
            continue;
        }
        if let Action::StartDhcp(link) = net.step() {
            log!("network: starting DHCP on {link}");
            services.push(Service::new("udhcpc", net::udhcpc_argv(&link)));
            continue;
        }
        // The report follows the network at once (the address is in it), devices every scan.
        let described = net.describe();
        if scanned.elapsed() >= HARDWARE_SCAN {
            scanned = Instant::now();
            hardware.scan();
            hardware.publish(&described);
        } else if described != last_described {
            hardware.publish(&described);
        }
        last_described = described;
        // Without a usable network the node still serves jobs on this machine: ready, and said.
        // Ready once the self-test job's answer verified (or failed, said): it is then the only
        // job the boot itself runs, never one competing with a client's first.
        if !ready && self_test.is_none() && netboot.is_none() && (net.is_ready() || net.unusable().is_some()) && node_healthy(config.http_port) {
            let (tx, rx) = std::sync::mpsc::channel();
            let identity = crate::identity::NodeIdentity::load(&crate::data_dir::DataDir::new(&state.dir).key()).ok();
            let port = config.http_port;
            // On its own thread: the loop goes on reaping while the job runs.
            std::thread::spawn(move || {
                let outcome = match &identity {
                    Some(id) => super::self_test::run(port, &id.public_key()).map_err(|e| format!("self-test failed: {e}")),
                    None => Err("self-test skipped: the node key cannot be read".to_string()),
                };
                let _ = tx.send((identity, outcome));
            });
            self_test = Some(rx);
        }
        if let Some(Ok((identity, outcome))) = (!ready).then(|| self_test.as_ref().map(|rx| rx.try_recv())).flatten() {
            ready = true;
            timing.marks.push(("node ready", timing.started.elapsed().as_secs_f64()));
            let total = sys::boot_time_secs();
            let mut line = format!("ready in {total:.2}s: kernel {:.2}s", timing.kernel);
            let mut last = 0.0;
            for (what, at) in &timing.marks {
                line += &format!(", {what} +{:.2}s", at - last);
                last = *at;
            }
            if state.persistent {
                super::update::ready(&data.release());
            }
            // The key a user pins (PHP SDK, receipts): on the console beside the address.
            let key = identity.as_ref().map(|id| format!("; node key {}", id.public_key_hex())).unwrap_or_default();
            let kept = if state.persistent { "kept on the data partition" } else { "in RAM" };
            log!("{line}; job API on port {} at {}{key} (state {kept})", config.http_port, net.describe());
            match outcome {
                Ok((job, fuel)) => {
                    self_test_ok = true;
                    log!("self-test: a job ran here and its receipt verified (job {}, fuel {fuel})", &job[..16])
                }
                Err(e) => log!("{e}"),
            }
        }
        // An update on trial: committed once healthy, or back to the release it came from.
        if let Some(t) = &trial {
            let healthy = ready && self_test_ok && net.is_ready();
            if healthy && (t.peers == 0 || (peers_checked.elapsed() >= Duration::from_secs(1) && super::update::connected_peers(config.http_port) >= t.peers as usize)) {
                let slot = data.release();
                super::update::commit(&config, &trusted, &data.floors(), state.persistent.then_some(slot.as_path()), t);
                trial = None;
            } else if Instant::now() >= t.deadline {
                let why = if !ready {
                    "it never became ready".to_string()
                } else if !self_test_ok {
                    "its self-test job failed".to_string()
                } else if !net.is_ready() {
                    format!("no usable network ({})", net.describe())
                } else {
                    format!("{} of {} peer(s) connected", super::update::connected_peers(config.http_port), t.peers)
                };
                log!("update: the new release is not healthy after {:.0}s: {why}; returning to the release this machine came from", t.started.elapsed().as_secs_f64());
                match super::update::return_image(&config, &trusted, &data.floors(), &data.key(), &why) {
                    Ok(image) => {
                        let Err(e) = try_kexec(&mut services, image, config.on_failure);
                        log!("update: cannot return: {e}; staying on this release");
                        let _ = std::fs::remove_file(super::update::TRIAL_MARK);
                        trial = None;
                    }
                    Err(e) => {
                        log!("update: cannot return: {e}; staying on this release");
                        let _ = std::fs::remove_file(super::update::TRIAL_MARK);
                        trial = None;
                    }
                }
            }
            if peers_checked.elapsed() >= Duration::from_secs(1) {
                peers_checked = Instant::now();
            }
        }
        let tick = if ready { Duration::from_secs(1) } else { Duration::from_millis(20) };
        match signals.wait(tick) {
            Some(libc::SIGCHLD) => {
                if reap(&mut services) {
                    match super::update::update_image(&config, &trusted, &data.floors()) {
                        Ok(image) => {
                            let Err(e) = try_kexec(&mut services, image, config.on_failure);
                            super::update::refuse(&config, &data.key(), &e.to_string());
                        }
                        Err(e) => super::update::refuse(&config, &data.key(), &e),
                    }
                }
            }
            Some(sig) => shutdown(&mut services, sig),
            None => {}
        }
    }
}

/// Reaps every child that ended and schedules its service's restart; true if the node ended
/// asking for an update hop (`update::EXIT_UPDATE`).
fn reap(services: &mut [Service]) -> bool {
    let mut update = false;
    while let Some((pid, how)) = sys::reap_any() {
        if let Some(s) = services.iter_mut().find(|s| s.pid == Some(pid)) {
            s.pid = None;
            match how {
                ChildExit::Code(crate::update::EXIT_UPDATE) if s.name == "node" => {
                    log!("service node (pid {pid}) drained and handed over an update");
                    update = true;
                    s.next_start = Some(Instant::now());
                    continue;
                }
                ChildExit::Code(c) => log!("service {} (pid {pid}) exited with code {c}", s.name),
                ChildExit::Signal(n) => log!("service {} (pid {pid}) killed by signal {n}", s.name),
            }
            s.schedule_restart();
        }
    }
    update
}

/// Loads the next kernel, stops the services and kexecs; on any failure, the failure action.
fn kexec(services: &mut [Service], next: BootImage, on_failure: phase_core::boot::cmdline::OnFailure) -> ! {
    let Err(e) = try_kexec(services, next, on_failure);
    super::fail(on_failure, &format!("netboot: {e}"))
}

/// Loads the next kernel, then stops the services and kexecs. A kernel that cannot be loaded
/// is returned as the error with the services still running (an update or a return can stay
/// on the release it runs); past the load, a failure takes the failure action.
fn try_kexec(services: &mut [Service], next: BootImage, on_failure: phase_core::boot::cmdline::OnFailure) -> Result<std::convert::Infallible, crate::boot::netboot::KexecError> {
    let how = next.load()?;
    log!("netboot: booting {} ({how}, cmdline {:?})", next.what, next.cmdline);
    drop(next);
    stop_services(services);
    super::console::drain();
    let e = BootImage::execute();
    super::fail(on_failure, &format!("netboot: {e}"))
}

fn shutdown(services: &mut [Service], signal: libc::c_int) -> ! {
    log!("signal {signal}: shutting down");
    stop_services(services);
    log!("powering off");
    super::console::drain();
    let e = sys::reboot(RebootCmd::PowerOff).err().map(|e| e.to_string()).unwrap_or_default();
    super::fail(phase_core::boot::cmdline::OnFailure::Poweroff, &format!("reboot(POWER_OFF) failed: {e}"))
}

/// SIGTERM to every service and process, a grace period, then SIGKILL; then sync.
fn stop_services(services: &mut [Service]) {
    for s in services.iter() {
        if let Some(pid) = s.pid {
            let _ = sys::kill(pid, libc::SIGTERM);
        }
    }
    let _ = sys::kill(-1, libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while services.iter().any(|s| s.pid.is_some()) && Instant::now() < deadline {
        while let Some((pid, _)) = sys::reap_any() {
            if let Some(s) = services.iter_mut().find(|s| s.pid == Some(pid)) {
                s.pid = None;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in services.iter().filter(|s| s.pid.is_some()) {
        log!("service {} did not stop within {}s of SIGTERM: killing it", s.name, STOP_GRACE.as_secs());
    }
    let _ = sys::kill(-1, libc::SIGKILL);
    sys::sync();
}
