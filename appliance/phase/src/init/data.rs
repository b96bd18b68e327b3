//! The data partition (`phase.data=NAME`, docs/image.md "The data partition"): where a boot
//! stick keeps the node key, uploaded modules and the netboot floors across boots.
//!
//! PID 1 waits up to `phase.data_wait` seconds for a partition whose GPT name is NAME (USB
//! storage appears after PID 1 starts), mounts it (vfat) at /data and gives the node
//! `/data/node` as its data dir. When the partition is missing, cannot be mounted, is
//! write-protected or full, the boot goes on with the state in RAM and the console says why;
//! a key (and floors) already on a read-only or full partition are still used, copied to RAM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use phase_core::boot::cmdline::BootConfig;

use crate::sys;

/// Where the data partition is mounted.
pub const MOUNT_POINT: &str = "/data";
/// What a writable partition must take at boot for the state to be kept there: a partition
/// that cannot take this much is full.
const PROBE_BYTES: usize = 64 << 10;
/// The files carried over into RAM from a partition that cannot be written.
const SEED_FILES: [&str; 2] = [crate::data_dir::KEY_FILE, crate::data_dir::FLOORS_FILE];

/// Where this boot keeps the node's state.
pub struct State {
    /// The node's data dir.
    pub dir: PathBuf,
    /// True when `dir` is on the data partition (survives a power cycle).
    pub persistent: bool,
}

/// Finds, mounts and checks the data partition; never fails the boot.
pub fn open(config: &BootConfig) -> State {
    let ram = Path::new(super::RUN_DIR).join("node");
    let in_ram = |why: String| {
        log!("state: in RAM only, lost at power-off: {why}");
        State { dir: ram.clone(), persistent: false }
    };
    let Some(name) = &config.data else {
        return in_ram("no data partition asked for (phase.data)".into());
    };
    let Some(dev) = wait_for_partition(name, Duration::from_secs(config.data_wait)) else {
        return in_ram(format!("no partition named {name} appeared within {}s (phase.data_wait)", config.data_wait));
    };
    let _ = std::fs::create_dir_all(MOUNT_POINT);
    let device = format!("/dev/{dev}");
    // 0600 files and 0700 directories: the node refuses a key file others could read, and vfat
    // has no modes of its own. dirsync: a rename or create is on the stick when it returns.
    let options = "fmask=0177,dmask=0077,errors=remount-ro";
    let flags = libc::MS_NOATIME | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_DIRSYNC;
    let node_dir = Path::new(MOUNT_POINT).join("node");
    match mount_when_ready(&device, flags, options) {
        Ok(()) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES)) => {
            return match mount_when_ready(&device, flags | libc::MS_RDONLY, options) {
                Ok(()) => seeded(&ram, &node_dir, &format!("{device} (partition {name}) is write-protected")),
                Err(e) => in_ram(format!("{device} (partition {name}) is write-protected and cannot be read: mount: {e}")),
            };
        }
        Err(e) => return in_ram(format!("{device} (partition {name}): mount vfat: {e}")),
    }
    if let Err(e) = probe(&node_dir) {
        let why = match e.raw_os_error() {
            Some(libc::ENOSPC) => format!("{device} (partition {name}) is full"),
            Some(libc::EROFS) => format!("{device} (partition {name}) is read-only"),
            _ => format!("{device} (partition {name}) cannot be written: {e}"),
        };
        return seeded(&ram, &node_dir, &why);
    }
    let free = sys::free_bytes(Path::new(MOUNT_POINT)).map(|b| format!(", {} MiB free", b >> 20)).unwrap_or_default();
    log!("state: kept on {device} (partition {name}{free}) in {}", node_dir.display());
    State { dir: node_dir, persistent: true }
}

/// How long a partition that is listed may take before its disk can be opened.
const OPEN_WAIT: Duration = Duration::from_secs(3);

/// Mounts `device` at MOUNT_POINT (vfat). A partition is listed in sysfs while its disk is
/// still being added (a USB stick's write-protect check, its partition scan): opening it then
/// fails with ENXIO (or ENOENT before devtmpfs has its node) for a few milliseconds, so those
/// are retried for up to OPEN_WAIT.
fn mount_when_ready(device: &str, flags: libc::c_ulong, options: &str) -> std::io::Result<()> {
    let started = Instant::now();
    let mut refused = None;
    loop {
        match sys::mount(device, MOUNT_POINT, "vfat", flags, options) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT) | Some(libc::ENODEV)) && started.elapsed() < OPEN_WAIT => {
                refused.get_or_insert(e);
                std::thread::sleep(Duration::from_millis(50));
            }
            other => {
                if let (Some(e), true) = (refused, other.is_ok()) {
                    log!("state: {device} could be opened after {} ms (first: {e})", started.elapsed().as_millis());
                }
                return other;
            }
        }
    }
}

/// The first block device whose GPT partition name is `name`, waiting up to `wait`.
fn wait_for_partition(name: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        let found = partitions_named(name);
        if let Some(first) = found.first() {
            if found.len() > 1 {
                log!("state: partitions {} are all named {name}; using {first}", found.join(", "));
            }
            return Some(first.clone());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Block devices (by kernel name, sorted) whose uevent says `PARTNAME=<name>`.
fn partitions_named(name: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/class/block") else { return vec![] };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let uevent = std::fs::read_to_string(e.path().join("uevent")).ok()?;
            let field = |k: &str| uevent.lines().find_map(|l| l.strip_prefix(k)).map(str::to_string);
            (field("PARTNAME=")?.as_str() == name).then(|| field("DEVNAME="))?
        })
        .filter(|dev| !dev.contains('/') && !dev.is_empty())
        .collect();
    out.sort();
    out
}

/// Writes, syncs and removes a probe file: the partition takes writes now.
fn probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".probe");
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&[0u8; PROBE_BYTES])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// RAM state that starts from the key and floors the partition holds, if any.
fn seeded(ram: &Path, node_dir: &Path, why: &str) -> State {
    let _ = std::fs::create_dir_all(ram);
    let mut kept = vec![];
    for f in SEED_FILES {
        if std::fs::copy(node_dir.join(f), ram.join(f)).is_ok() {
            kept.push(f);
        }
    }
    let from = if kept.is_empty() { String::new() } else { format!(" (starting from its {})", kept.join(" and ")) };
    log!("state: in RAM only, lost at power-off{from}: {why}");
    State { dir: ram.to_path_buf(), persistent: false }
}
