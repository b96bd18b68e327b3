//! PID 1 of the appliance (`phase init`, or `phase` started as PID 1): mounts, reads the
//! `phase.*` command line, loads kernel modules, brings up the network, starts and supervises
//! the services, prints `phase: ready` with the boot timing, and shuts down cleanly on
//! SIGTERM/SIGINT/SIGUSR2/SIGPWR or the power button. If PID 1 cannot go on (an error or a
//! panic), it takes the `phase.on_failure` action instead of leaving a hung machine.

mod commands;
mod console;
mod data;
mod hardware;
mod mounts;
mod net;
mod netboot;
mod power;
mod secure_boot;
mod self_test;
mod supervisor;
mod update;

use std::path::Path;
use std::time::Instant;

use phase_core::boot::cmdline::{BootConfig, OnFailure};

use crate::sys::{self, RebootCmd};

/// Where the image lists kernel modules to load, in order (one path per line, then params).
pub const MODULE_LIST: &str = "/etc/phase/modules";
/// Per-boot state (tmpfs): the node's data dir, the DHCP lease marker.
pub const RUN_DIR: &str = "/run/phase";

/// Signals PID 1 handles; blocked in every thread and taken with sigtimedwait.
pub const SIGNALS: [libc::c_int; 6] =
    [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGPWR];

/// Takes the failure action. Never returns.
pub fn fail(action: OnFailure, why: &str) -> ! {
    log!("init failed: {why}");
    sys::sync();
    console::drain();
    match action {
        OnFailure::Shell => {
            log!("phase.on_failure=shell: starting /bin/sh on the console");
            console::drain();
            console::restore();
            let e = sys::exec(Path::new("/bin/sh"));
            log!("cannot start /bin/sh: {e}; powering off");
        }
        OnFailure::Reboot => {
            log!("phase.on_failure=reboot: rebooting");
            console::drain();
            if let Err(e) = sys::reboot(RebootCmd::Restart) {
                log!("reboot failed: {e}; powering off");
            }
        }
        OnFailure::Poweroff => log!("phase.on_failure=poweroff: powering off"),
    }
    console::drain();
    if let Err(e) = sys::reboot(RebootCmd::PowerOff) {
        log!("power off failed: {e}; halting here");
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Boot timing, printed with the ready line.
pub struct Timing {
    pub kernel: f64,
    pub started: Instant,
    pub marks: Vec<(&'static str, f64)>,
}

impl Timing {
    fn mark(&mut self, what: &'static str) {
        self.marks.push((what, self.started.elapsed().as_secs_f64()));
    }
}

/// The PID 1 entry point. Never returns.
pub fn main() -> ! {
    let mut timing = Timing { kernel: sys::boot_time_secs(), started: Instant::now(), marks: vec![] };
    // Until the command line is read, a failure reboots (the safe default for unattended boxes).
    std::panic::set_hook(Box::new(|info| fail(OnFailure::Reboot, &format!("panic: {info}"))));
    if let Err(e) = mounts::early() {
        fail(OnFailure::Reboot, &e.to_string());
    }
    timing.mark("mounts");
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (config, problems) = BootConfig::parse(&cmdline);
    let on_failure = config.on_failure;
    std::panic::set_hook(Box::new(move |info| fail(on_failure, &format!("panic: {info}"))));
    console::mirror();
    log!("phase {} starting as PID 1 (kernel ready at {:.3}s)", env!("CARGO_PKG_VERSION"), timing.kernel);
    if !config.passthrough.is_empty() {
        log!("cmdline: {}", config.passthrough.join(" "));
    }
    for p in &problems {
        log!("cmdline: {p}");
    }
    // A deliberate fault, for the boot tests of the failure path (docs/cmdline.md).
    if cmdline.split_whitespace().any(|w| w == "phase.fault=panic-init") {
        panic!("phase.fault=panic-init was given");
    }
    let signals = sys::SignalSet::of(&SIGNALS);
    if let Err(e) = signals.block() {
        fail(on_failure, &format!("sigprocmask: {e}"));
    }
    if let Err(e) = sys::reboot(RebootCmd::CadOff) {
        log!("cannot route Ctrl-Alt-Del to PID 1 ({e}); it will reboot at once");
    }
    let secure_boot = secure_boot::start();
    load_modules(Path::new(MODULE_LIST));
    let mut hardware = hardware::Hardware::start(secure_boot);
    hardware.scan();
    timing.mark("modules");
    power::watch_power_button();
    let _ = std::fs::create_dir_all(RUN_DIR);
    commands::listen(config.http_port, update::UPDATE_NOW);
    let network = net::start(&config);
    timing.mark("network started");
    let state = data::open(&config);
    timing.mark("state");
    supervisor::run(config, network, hardware, state, signals, timing)
}

/// Loads the modules the image lists, in order. A module that fails is logged; the boot goes
/// on (the network may still come up through a built-in driver).
fn load_modules(list: &Path) {
    let Ok(text) = std::fs::read_to_string(list) else { return };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (path, params) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let compressed = [".xz", ".zst", ".gz"].iter().any(|s| path.ends_with(s));
        let result = std::fs::File::open(path).and_then(|f| sys::finit_module(&f, params.trim(), compressed));
        match result {
            Ok(()) => log!("module {path} loaded"),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => log!("module {path}: finit_module: {e}"),
        }
    }
}
