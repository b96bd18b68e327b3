//! PID 1's side of a netboot hop (`phase.boot=net`): a thread finds and verifies a release
//! (boot::netboot) while the supervisor keeps the network and the node (which discovers
//! providers for it) running; the supervisor then loads the `BootImage` (kexec_file_load, or
//! kexec-tools where the kernel lacks it), stops the services and kexecs.

use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use phase_core::boot::cmdline::BootConfig;
use phase_core::boot::manifest::Arch;

use crate::boot::netboot::BootImage;
use crate::boot::{self, fetch, netboot};

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

/// Why the search ended without a kernel to boot.
#[derive(Debug)]
pub enum SearchError {
    /// This machine's arch is not one Phase boots.
    Arch,
    /// No trusted publisher key: nothing could verify.
    NoTrust,
    Floors(boot::floors::FloorError),
    Netboot(netboot::NetbootError),
    Initrd(phase_core::boot::cpio::CpioError),
    Thread(std::io::Error),
}

impl std::fmt::Display for SearchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SearchError::Arch => f.write_str("netboot: this machine's arch is not one Phase boots"),
            SearchError::NoTrust => f.write_str("netboot: no trusted publisher key (phase.trust= or /etc/phase/trust/*.pub): nothing could verify"),
            SearchError::Floors(e) => write!(f, "netboot: floors: {e}"),
            SearchError::Netboot(e) => write!(f, "{e}"),
            SearchError::Initrd(e) => write!(f, "netboot: building the initrd: {e}"),
            SearchError::Thread(e) => write!(f, "netboot: cannot start its thread: {e}"),
        }
    }
}

impl std::error::Error for SearchError {}

/// Starts the search; the supervisor polls the receiver.
/// The search starts from the floors recorded in `floors` (this boot's floors file: on the data
/// partition, or in RAM) and records the ones of the release it boots before the hop.
pub fn start(config: &BootConfig, trusted: Vec<[u8; 32]>, floors: std::path::PathBuf) -> Receiver<Result<BootImage, SearchError>> {
    let (tx, rx) = mpsc::channel();
    let config = config.clone();
    let spawned = std::thread::Builder::new().name("netboot".into()).spawn(move || {
        let _ = tx.send(search(&config, trusted, &floors));
    });
    if let Err(e) = spawned {
        let (tx, rx2) = mpsc::channel();
        let _ = tx.send(Err(SearchError::Thread(e)));
        return rx2;
    }
    rx
}

fn search(config: &BootConfig, trusted: Vec<[u8; 32]>, floor_file: &std::path::Path) -> Result<BootImage, SearchError> {
    let arch = Arch::parse(std::env::consts::ARCH).ok_or(SearchError::Arch)?;
    if trusted.is_empty() {
        return Err(SearchError::NoTrust);
    }
    let release = format!("{}/{}", config.channel, arch.name());
    // A floor file that cannot be read stops the netboot: floors are never silently lowered.
    let mut kept = boot::floors::FloorFile::open(floor_file).map_err(SearchError::Floors)?;
    let on_disk = kept.get(&release);
    let floors = phase_core::boot::manifest::Floors {
        version: config.version_floor.max(on_disk.version),
        time: boot::build_time().max(config.time_floor).max(on_disk.time),
    };
    let mut plan = netboot::Plan { channel: config.channel.clone(), arch, trusted, floors, clock: crate::clock::unix_now() };
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
    let f = netboot::find_release(&config.providers, &mut |give_up| discover(port, &channel, arch, give_up), &mut plan, deadline).map_err(SearchError::Netboot)?;
    kept.raise(&release, f.floors).map_err(SearchError::Floors)?;
    // The network boot programs this machine carries go on with the release (a node without
    // them just does not answer PXE clients).
    let programs = crate::pxe::load_programs(std::path::Path::new(netboot::PROGRAMS_DIR)).unwrap_or_default();
    let carried = crate::pxe::carried_for(arch, &programs);
    let from = f.from;
    let cmdline = netboot::next_cmdline(&f.release.manifest.body.cmdline, &config.passthrough, &f.floors) + &format!(" phase.from={from}");
    let mut image = BootImage::carrying(f.release, &plan.trusted, &carried, cmdline).map_err(SearchError::Initrd)?;
    image.what += &format!(" from {from}");
    Ok(image)
}
