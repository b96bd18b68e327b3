//! PID 1's side of a netboot hop (`phase.boot=net`): a thread finds and verifies a release
//! (boot::netboot) while the supervisor keeps the network and the node (which discovers
//! providers for it) running; the supervisor then loads the next kernel with
//! kexec_file_load (kexec-tools where the kernel lacks it), stops the services and kexecs.

use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use phase_core::boot::cmdline::BootConfig;
use phase_core::boot::manifest::Arch;

use crate::boot::{self, fetch, netboot};
use crate::sys::{self, RebootCmd};

const KEXEC_TOOLS: &str = "/sbin/kexec";

/// The next kernel, verified and ready to load.
pub struct Next {
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    pub cmdline: String,
    pub what: String,
}

/// Publisher keys: the image's (/etc/phase/trust/*.pub) and `phase.trust=`.
pub fn trusted_keys(config: &BootConfig) -> Vec<[u8; 32]> {
    let mut keys = match boot::read_trust_dir(std::path::Path::new(boot::TRUST_DIR)) {
        Ok(k) => k,
        Err(e) => {
            log!("boot: {e}");
            vec![]
        }
    };
    for k in &config.trust {
        if !keys.contains(k) {
            keys.push(*k);
        }
    }
    keys
}

#[derive(miniserde::Deserialize)]
struct ProviderList {
    providers: Vec<ProviderItem>,
}
#[derive(miniserde::Deserialize)]
struct ProviderItem {
    urls: Vec<String>,
}

/// Providers the local node found on the peer network (mDNS, DHT) for this release (its
/// answer takes up to a DHT lookup: 12 s, within the search's deadline).
fn discover(http_port: u16, channel: &str, arch: Arch, give_up: Instant) -> Vec<String> {
    let Ok(url) = fetch::Url::parse(&format!("http://127.0.0.1:{http_port}/v1/boot/providers?channel={channel}&arch={}", arch.name())) else {
        return vec![];
    };
    let deadline = (Instant::now() + Duration::from_secs(20)).min(give_up);
    let Ok(body) = fetch::get_small(&url, 256 << 10, deadline) else { return vec![] };
    let Ok(list) = miniserde::json::from_str::<ProviderList>(&String::from_utf8_lossy(&body)) else { return vec![] };
    list.providers.into_iter().flat_map(|p| p.urls).collect()
}

/// Starts the search; the supervisor polls the receiver.
/// With `floors` (a file on the data partition), the search starts from the floors it
/// recorded and records the ones of the release it boots before the hop.
pub fn start(config: &BootConfig, trusted: Vec<[u8; 32]>, floors: Option<std::path::PathBuf>) -> Receiver<Result<Next, String>> {
    let (tx, rx) = mpsc::channel();
    let config = config.clone();
    let spawned = std::thread::Builder::new().name("netboot".into()).spawn(move || {
        let _ = tx.send(search(&config, trusted, floors.as_deref()));
    });
    if let Err(e) = spawned {
        let (tx, rx2) = mpsc::channel();
        let _ = tx.send(Err(format!("netboot: cannot start its thread: {e}")));
        return rx2;
    }
    rx
}

fn search(config: &BootConfig, trusted: Vec<[u8; 32]>, floor_file: Option<&std::path::Path>) -> Result<Next, String> {
    let arch = Arch::parse(std::env::consts::ARCH).ok_or("netboot: this machine's arch is not one Phase boots")?;
    if trusted.is_empty() {
        return Err("netboot: no trusted publisher key (phase.trust= or /etc/phase/trust/*.pub): nothing could verify".into());
    }
    let release = format!("{}/{}", config.channel, arch.name());
    // A floor file that cannot be read stops the netboot: floors are never silently lowered.
    let mut kept = floor_file.map(boot::floors::FloorFile::open).transpose().map_err(|e| format!("netboot: floors: {e}"))?;
    let on_disk = kept.as_ref().map(|f| f.get(&release)).unwrap_or_default();
    let floors = phase_core::boot::manifest::Floors {
        version: config.version_floor.max(on_disk.version),
        time: boot::build_time().max(config.time_floor).max(on_disk.time),
    };
    let mut plan = netboot::Plan { channel: config.channel.clone(), arch, trusted, floors, clock: boot::unix_now() };
    log!(
        "netboot: looking for {}/{} version {} or later, time floor {}{} ({} trusted key(s){})",
        plan.channel,
        arch.name(),
        floors.version,
        floors.time,
        if plan.clock < floors.time { format!(" (the clock reads {}: judged at the floor)", plan.clock) } else { String::new() },
        plan.trusted.len(),
        if config.providers.is_empty() { String::new() } else { format!(", providers {}", config.providers.join(" ")) }
    );
    let port = config.http_port;
    let channel = plan.channel.clone();
    let deadline = Duration::from_secs(config.boot_timeout);
    let f = netboot::find_release(&config.providers, &mut |give_up| discover(port, &channel, arch, give_up), &mut plan, deadline)?;
    if let Some(file) = kept.as_mut() {
        file.raise(&release, f.floors).map_err(|e| format!("netboot: recording the floors: {e}"))?;
    }
    // The network boot programs this machine carries go on with the release (a node without
    // them just does not answer PXE clients).
    let programs = crate::pxe::load_programs(std::path::Path::new(netboot::PROGRAMS_DIR)).unwrap_or_default();
    let carried = crate::pxe::carried_for(arch, &programs);
    let initrd = netboot::next_initrd(&f.manifest, &f.manifest_json, &f.kernel, &f.initramfs, &plan.trusted, &carried).map_err(|e| format!("netboot: building the initrd: {e}"))?;
    let cmdline = netboot::next_cmdline(&f.manifest.body.cmdline, &config.passthrough, &f.floors);
    let what = format!("{}/{} version {} from {}", f.manifest.body.channel, arch.name(), f.manifest.body.version, f.from);
    Ok(Next { kernel: f.kernel, initrd, cmdline, what })
}

/// Loads the next kernel: kexec_file_load from memfds, or kexec-tools' kexec_load where the
/// kernel has no KEXEC_FILE (ENOSYS).
pub fn load(next: &Next) -> Result<&'static str, String> {
    let started = Instant::now();
    let kernel = sys::memfd_with("phase-kernel", &next.kernel).map_err(|e| format!("memfd for the kernel: {e}"))?;
    let initrd = sys::memfd_with("phase-initrd", &next.initrd).map_err(|e| format!("memfd for the initrd: {e}"))?;
    match sys::kexec_file_load(&kernel, &initrd, &next.cmdline) {
        Ok(()) => {
            log!("netboot: kexec_file_load done in {:.2}s", started.elapsed().as_secs_f64());
            Ok("kexec_file_load")
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            if !std::path::Path::new(KEXEC_TOOLS).exists() {
                return Err(format!("kexec_file_load: {e} (kernel without KEXEC_FILE) and no {KEXEC_TOOLS} in the image for kexec_load"));
            }
            let dir = std::path::Path::new(super::RUN_DIR).join("next");
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let (kp, ip) = (dir.join("kernel"), dir.join("initrd"));
            std::fs::write(&kp, &next.kernel).map_err(|e| format!("{}: {e}", kp.display()))?;
            std::fs::write(&ip, &next.initrd).map_err(|e| format!("{}: {e}", ip.display()))?;
            let out = std::process::Command::new(KEXEC_TOOLS)
                .arg("-l")
                .arg(&kp)
                .arg(format!("--initrd={}", ip.display()))
                .arg(format!("--command-line={}", next.cmdline))
                .output()
                .map_err(|e| format!("{KEXEC_TOOLS}: {e}"))?;
            if !out.status.success() {
                return Err(format!("{KEXEC_TOOLS} -l: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
            Ok("kexec-tools kexec_load")
        }
        Err(e) => Err(format!("kexec_file_load: {e} (kernel {} bytes, initrd {} bytes)", next.kernel.len(), next.initrd.len())),
    }
}

/// Boots the loaded kernel. Returns only on failure.
pub fn execute() -> String {
    sys::sync();
    match sys::reboot(RebootCmd::Kexec) {
        Ok(()) => "reboot(KEXEC) returned".into(),
        Err(e) => format!("reboot(KEXEC): {e}"),
    }
}
