//! The hardware report (docs/formats.md, "Hardware report"): what an appliance found at boot
//! and since, for a person at its screen and for `GET /v1/status`. PID 1 writes it, the node
//! serves it; this is its one type and codec.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use miniserde::{Deserialize, Serialize};

/// The report's largest JSON: devices beyond what fits are left out and counted.
pub const MAX_BYTES: usize = 64 * 1024;
/// Devices listed at most.
pub const MAX_DEVICES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareReport {
    /// `on`, `off`, `setup` (the firmware takes new keys and checks nothing), or `no-uefi`.
    pub secure_boot: String,
    /// The kernel's lockdown: `none`, `integrity` or `confidentiality`.
    pub lockdown: String,
    /// One line: the network this machine uses, or why it has none.
    pub network: String,
    /// One line: how many of the kernel's network drivers this boot carries (the image's, and
    /// the drivers archive's when it was loaded).
    pub drivers: String,
    pub devices: Vec<NetDevice>,
    /// Devices found beyond MAX_DEVICES.
    pub devices_left_out: u32,
}

/// A network device on a bus, with a driver or without.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDevice {
    /// `pci` or `usb`.
    pub bus: String,
    /// Its place on the bus (`0000:00:03.0`, `1-1:1.0`).
    pub slot: String,
    /// `vendor:device` in hex (PCI ids or USB vendor:product).
    pub id: String,
    /// The driver bound to it.
    pub driver: Option<String>,
    /// The network interface it became.
    pub interface: Option<String>,
    /// `up` (carrier), `no carrier`, or `down`.
    pub link: Option<String>,
    /// The IPv4 address it obtained, with its prefix.
    pub address: Option<String>,
    /// Why it does not work, by name: the driver or firmware file that is missing.
    pub problem: Option<String>,
}

impl HardwareReport {
    pub fn to_json(&self) -> String {
        miniserde::json::to_string(self)
    }

    pub fn parse(text: &str) -> Option<HardwareReport> {
        if text.len() > MAX_BYTES {
            return None;
        }
        miniserde::json::from_str(text).ok()
    }

    /// The lines shown on the console, one per device and one for the network.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.push(alloc::format!("secure boot {}, lockdown {}", self.secure_boot, self.lockdown));
        for d in &self.devices {
            let mut line = alloc::format!("{} {} [{}]", d.bus, d.slot, d.id);
            match &d.driver {
                Some(drv) => line += &alloc::format!(" driver {drv}"),
                None => line += " no driver",
            }
            if let Some(i) = &d.interface {
                line += &alloc::format!(", {i}");
            }
            if let Some(l) = &d.link {
                line += &alloc::format!(" link {l}");
            }
            if let Some(a) = &d.address {
                line += &alloc::format!(" address {a}");
            }
            if let Some(p) = &d.problem {
                line += &alloc::format!(": {p}");
            }
            out.push(line);
        }
        if self.devices_left_out > 0 {
            out.push(alloc::format!("{} more network devices not listed", self.devices_left_out));
        }
        if self.devices.is_empty() {
            out.push("no network device found on PCI or USB".to_string());
        }
        out.push(alloc::format!("drivers: {}", self.drivers));
        out.push(alloc::format!("network: {}", self.network));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_says_what_is_missing_by_name_and_reads_back() {
        let report = HardwareReport {
            secure_boot: "on".into(),
            lockdown: "integrity".into(),
            network: "none usable: jobs are served on this machine only".into(),
            drivers: "17 of 35 network drivers on this boot: its drivers archive was not loaded".into(),
            devices: alloc::vec![NetDevice {
                bus: "pci".into(),
                slot: "0000:00:03.0".into(),
                id: "1022:2000".into(),
                driver: None,
                interface: None,
                link: None,
                address: None,
                problem: Some("no driver for this device in the image or its drivers archive".into()),
            }],
            devices_left_out: 0,
        };
        let json = report.to_json();
        assert_eq!(HardwareReport::parse(&json), Some(report.clone()));
        let lines = report.lines();
        assert!(lines.iter().any(|l| l.contains("[1022:2000] no driver: no driver for this device")), "{lines:?}");
        assert!(HardwareReport::parse("{\"secure_boot\":1}").is_none());
    }
}
