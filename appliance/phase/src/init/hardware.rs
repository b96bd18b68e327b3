//! Drivers and the hardware report. PID 1 loads the kernel module a device asks for (its
//! `modalias`, matched against depmod's index) with the modules it needs, rescanning while
//! it runs so that a USB adapter found late (or plugged in later) gets its driver too. It then
//! says what it found: on the console when something changed, and in `/run/phase/hardware.json`
//! for the node's `GET /v1/status` (phase_core::boot::hardware).
//!
//! The image holds the index of every module the kernel build made, and the modules of the
//! commonest network cards; the rest come in the drivers archive a boot stick loads beside the
//! image. A device whose driver is in the index but not on this boot's files is named as such.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use phase_core::boot::hardware::{HardwareReport, NetDevice, MAX_DEVICES};
use phase_core::boot::kmod::{self, ModuleIndex};

use super::secure_boot::SecureBoot;
use crate::sys;

/// Where PID 1 writes the report for the node.
pub const REPORT: &str = "/run/phase/hardware.json";
/// Kernel log bytes read per scan at most (the ring holds ~128 KiB).
const KMSG_PER_SCAN: usize = 256 * 1024;

/// What became of a device's modalias.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// No module in the index matches it.
    NoDriver,
    /// These modules matched and loaded (or were loaded already).
    Loaded(Vec<String>),
    /// A module matched but its file is not on this boot's files.
    NotCarried(String),
    /// A module matched and did not load.
    Failed(String, String),
}

pub struct Hardware {
    dir: PathBuf,
    index: ModuleIndex,
    /// Modules loaded (or that failed: not retried).
    tried: BTreeMap<String, Result<(), String>>,
    /// sysfs device path → what its modalias gave.
    seen: BTreeMap<PathBuf, Outcome>,
    kmsg: Option<std::fs::File>,
    /// Device slot → firmware files the kernel could not load for it.
    firmware_missing: BTreeMap<String, BTreeSet<String>>,
    secure_boot: SecureBoot,
    /// How many of the kernel's network drivers this boot carries, as the report says it.
    drivers: String,
    last: String,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn link_name(path: &Path) -> Option<String> {
    std::fs::read_link(path).ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// `N of M network drivers on this boot`: the modules under drivers/net/ the index knows and
/// how many of their files this boot has (the image's, or with its drivers archive all).
fn carried(dir: &Path, index: &ModuleIndex) -> String {
    let net: Vec<&str> = index.paths().filter(|p| p.contains("drivers/net/")).collect();
    let here = net.iter().filter(|p| dir.join(p).is_file()).count();
    match here == net.len() {
        true => format!("{here} of {} network drivers on this boot", net.len()),
        false => format!("{here} of {} network drivers on this boot: its drivers archive was not loaded", net.len()),
    }
}

impl Hardware {
    /// Opens the module index of the running kernel. A missing or broken index is logged:
    /// built-in drivers still work.
    pub fn start(secure_boot: SecureBoot) -> Hardware {
        let release = read(Path::new("/proc/sys/kernel/osrelease"));
        let dir = PathBuf::from("/lib/modules").join(&release);
        let alias = std::fs::read_to_string(dir.join("modules.alias")).unwrap_or_default();
        let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
        let index = ModuleIndex::parse(&alias, &dep).unwrap_or_else(|e| {
            log!("drivers: {}: {e}; only built-in drivers", dir.display());
            ModuleIndex::default()
        });
        let kmsg = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map_err(|e| log!("drivers: /dev/kmsg: {e}; missing firmware will not be named"))
            .ok();
        let drivers = carried(&dir, &index);
        Hardware { dir, index, tried: BTreeMap::new(), seen: BTreeMap::new(), kmsg, firmware_missing: BTreeMap::new(), secure_boot, drivers, last: String::new() }
    }

    /// Loads one module with its dependencies; the first failure is the answer.
    fn load(&mut self, module: &str) -> Result<(), Outcome> {
        let Some(order) = self.index.load_order(module) else { return Err(Outcome::NoDriver) };
        let order: Vec<String> = order.into_iter().map(str::to_string).collect();
        for path in order {
            let name = kmod::name_of_path(&path);
            match self.tried.get(&name) {
                Some(Ok(())) => continue,
                Some(Err(e)) => return Err(Outcome::Failed(name, e.clone())),
                None => {}
            }
            let full = self.dir.join(&path);
            let file = match std::fs::File::open(&full) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Outcome::NotCarried(name)),
                Err(e) => {
                    let why = format!("{}: {e}", full.display());
                    self.tried.insert(name.clone(), Err(why.clone()));
                    return Err(Outcome::Failed(name, why));
                }
            };
            let compressed = [".xz", ".zst", ".gz"].iter().any(|s| path.ends_with(s));
            match sys::finit_module(&file, "", compressed) {
                Ok(()) => {
                    log!("drivers: loaded {name}");
                    self.tried.insert(name, Ok(()));
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.tried.insert(name, Ok(()));
                }
                Err(e) => {
                    let why = format!("finit_module {}: {e}", full.display());
                    log!("drivers: {why}");
                    self.tried.insert(name.clone(), Err(why.clone()));
                    return Err(Outcome::Failed(name, why));
                }
            }
        }
        Ok(())
    }

    /// Devices on PCI and USB with a modalias, by sysfs path.
    fn devices() -> Vec<(PathBuf, String)> {
        let mut out = vec![];
        for bus in ["/sys/bus/pci/devices", "/sys/bus/usb/devices"] {
            let Ok(dir) = std::fs::read_dir(bus) else { continue };
            for e in dir.flatten() {
                let path = e.path();
                let alias = read(&path.join("modalias"));
                if !alias.is_empty() {
                    out.push((std::fs::canonicalize(&path).unwrap_or(path), alias));
                }
            }
        }
        out.sort();
        out
    }

    /// Loads drivers for devices not seen before, and reads the kernel log for firmware the
    /// drivers could not find. Cheap when nothing changed (a few sysfs reads).
    pub fn scan(&mut self) {
        for (path, alias) in Hardware::devices() {
            if self.seen.contains_key(&path) {
                continue;
            }
            let modules: Vec<String> = self.index.modules_for(&alias).into_iter().map(str::to_string).collect();
            let mut outcome = if modules.is_empty() { Outcome::NoDriver } else { Outcome::Loaded(vec![]) };
            for m in modules {
                match self.load(&m) {
                    Ok(()) => {
                        if let Outcome::Loaded(list) = &mut outcome {
                            list.push(m);
                        }
                    }
                    Err(e) => {
                        outcome = e;
                        break;
                    }
                }
            }
            self.seen.insert(path, outcome);
        }
        self.read_kmsg();
    }

    fn read_kmsg(&mut self) {
        let Some(kmsg) = &mut self.kmsg else { return };
        let mut buf = vec![0u8; 8192];
        let mut total = 0;
        while total < KMSG_PER_SCAN {
            match kmsg.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    if let Some((device, file)) = kmod::firmware_failure(&String::from_utf8_lossy(&buf[..n])) {
                        let files = self.firmware_missing.entry(device.clone()).or_default();
                        if files.len() < 8 && files.insert(file.clone()) {
                            log!("drivers: {device} needs firmware {file}, which this boot does not have");
                        }
                    }
                }
                // EPIPE: records were overwritten before we read them; read on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
    }

    /// The report of what was found, with `network` as its summary line.
    pub fn report(&self, network: &str) -> HardwareReport {
        let mut devices = vec![];
        let mut left_out = 0u32;
        for (path, outcome) in &self.seen {
            let Some(device) = self.net_device(path, outcome) else { continue };
            if devices.len() < MAX_DEVICES {
                devices.push(device);
            } else {
                left_out += 1;
            }
        }
        HardwareReport {
            secure_boot: self.secure_boot.state.to_string(),
            lockdown: self.secure_boot.lockdown.clone(),
            network: network.to_string(),
            drivers: self.drivers.clone(),
            devices,
            devices_left_out: left_out,
        }
    }

    /// The device as the report lists it, if it is a network device: a PCI network controller
    /// (class 02), a USB interface a network driver took or matched, or a USB communications
    /// interface (CDC ECM/NCM, RNDIS).
    fn net_device(&self, path: &Path, outcome: &Outcome) -> Option<NetDevice> {
        let slot = path.file_name()?.to_string_lossy().into_owned();
        let alias = read(&path.join("modalias"));
        // A virtio card's interface hangs off its virtio device (`…/virtio0/net/eth0`), and
        // that device's driver is the network one.
        let holder = std::iter::once(path.to_path_buf())
            .chain(std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("virtio"))))
            .find(|p| p.join("net").is_dir())
            .unwrap_or_else(|| path.to_path_buf());
        let interface = std::fs::read_dir(holder.join("net")).ok().and_then(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).min());
        let matched_net = match outcome {
            Outcome::Loaded(m) => m.iter().any(|m| self.index.path_of(m).is_some_and(|p| p.contains("drivers/net/"))),
            Outcome::NotCarried(m) | Outcome::Failed(m, _) => self.index.path_of(m).is_some_and(|p| p.contains("drivers/net/")),
            Outcome::NoDriver => false,
        };
        let (bus, id) = if alias.starts_with("pci:") {
            let class = read(&path.join("class"));
            if !class.starts_with("0x02") && interface.is_none() {
                return None;
            }
            let hex = |f: &str| read(&path.join(f)).trim_start_matches("0x").to_string();
            ("pci", format!("{}:{}", hex("vendor"), hex("device")))
        } else if alias.starts_with("usb:") {
            // The interface's class, subclass, protocol: CDC communications (02) with ECM (06)
            // or NCM (0d), RNDIS (02/02/ff or e0/01/03).
            let field = |key: &str| alias.split(key).nth(1).map(|r| r.get(..2).unwrap_or("").to_string()).unwrap_or_default();
            let (ic, isc, ip) = (field("ic"), field("isc"), field("ip"));
            let cdc = ic == "02" && (isc == "06" || isc == "0D" || (isc == "02" && ip == "FF")) || (ic == "E0" && isc == "01" && ip == "03");
            if !(matched_net || cdc || interface.is_some()) {
                return None;
            }
            let parent = path.parent()?;
            ("usb", format!("{}:{}", read(&parent.join("idVendor")), read(&parent.join("idProduct"))))
        } else {
            return None;
        };
        let driver = link_name(&holder.join("driver"));
        let (link, address) = match &interface {
            Some(i) => {
                let carrier = read(&Path::new("/sys/class/net").join(i).join("carrier")) == "1";
                let up = read(&Path::new("/sys/class/net").join(i).join("flags")).trim_start_matches("0x").parse::<u32>().map(|f| f & 1 == 1).unwrap_or(false)
                    || read(&Path::new("/sys/class/net").join(i).join("operstate")) == "up";
                let link = if carrier { "up" } else if up { "no carrier" } else { "down" };
                (Some(link.to_string()), sys::interface_ipv4(i).map(|a| a.to_string()))
            }
            None => (None, None),
        };
        let firmware: Vec<&String> = self.firmware_missing.get(&slot).map(|s| s.iter().collect()).unwrap_or_default();
        let problem = if !firmware.is_empty() {
            let files: Vec<&str> = firmware.iter().map(|f| f.as_str()).collect();
            Some(format!("firmware {} missing (not in this image or its drivers archive)", files.join(", ")))
        } else if driver.is_some() {
            None
        } else {
            Some(match outcome {
                Outcome::NoDriver => "no driver for this device in this image or its drivers archive".to_string(),
                Outcome::NotCarried(m) => format!("its driver {m} is in the drivers archive, which this boot did not load"),
                Outcome::Failed(m, why) => format!("its driver {m} did not load: {why}"),
                Outcome::Loaded(m) => format!("driver {} loaded but did not take the device (see the kernel log)", m.join(", ")),
            })
        };
        Some(NetDevice { bus: bus.into(), slot, id, driver, interface, link, address, problem })
    }

    /// Writes the report for the node and prints it when it changed.
    pub fn publish(&mut self, network: &str) {
        let report = self.report(network);
        let json = report.to_json();
        if json == self.last {
            return;
        }
        for line in report.lines() {
            log!("hardware: {line}");
        }
        // Written aside and renamed, so the node never reads half a report.
        let tmp = format!("{REPORT}.tmp");
        if let Err(e) = std::fs::write(&tmp, json.as_bytes()).and_then(|()| std::fs::rename(&tmp, REPORT)) {
            log!("hardware: {REPORT}: {e}");
        }
        self.last = json;
    }
}
