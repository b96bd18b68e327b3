//! Booting machines that have no Phase (docs/netboot.md, "Booting machines without Phase"):
//! a ProxyDHCP server beside the LAN's own DHCP server (it names a boot file, never an
//! address), a read-only TFTP server for the network boot programs (Debian's iPXE builds for
//! x86, a GRUB image for arm64), and what they then fetch over the HTTP API: a script, the
//! release's kernel, and an initrd carrying the release so the booted machine re-verifies it
//! and serves it in turn.

pub mod dhcp;
pub mod tftp;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use phase_core::net::dhcp::{BootProtocol, ClientArch, ClientMessage};
use phase_core::boot::manifest::{Arch, Floors};

use crate::boot::store::Entry;

/// Network boot programs by name, shared with every transfer and response.
pub type Programs = Vec<(String, Arc<[u8]>)>;

/// The network boot programs served, by the names clients ask for: iPXE for BIOS PXE (over
/// the firmware's UNDI driver) and for x86-64 UEFI (over the firmware's network protocol),
/// GRUB for arm64 UEFI (scripts/build-pxe-programs; Debian has no arm64 iPXE).
pub const BIOS_PROGRAM: &str = "undionly.kpxe";
pub const UEFI_X64_PROGRAM: &str = "snponly.efi";
pub const UEFI_ARM64_PROGRAM: &str = "grubaa64.efi";
const PROGRAM_NAMES: [&str; 3] = [BIOS_PROGRAM, UEFI_X64_PROGRAM, UEFI_ARM64_PROGRAM];
/// Largest program read (Debian's iPXE builds are 74 KB and 174 KB, the GRUB image 594 KB).
const MAX_PROGRAM: u64 = 4 << 20;
/// GRUB sees only the LAN server's DHCPACK, never a ProxyDHCP answer, so it cannot learn
/// where it came from: its embedded configuration holds this placeholder, and the bytes a
/// node serves carry the node's own `address:port` there (padded with spaces, which GRUB's
/// script reads as the end of the word).
pub const SERVER_PLACEHOLDER: &[u8] = b"@@PHASE-SERVER-ADDRESS@@";

#[derive(Debug)]
pub enum PxeError {
    NoRelease(String),
    NoAddress(String),
    Programs(String),
    Socket { what: &'static str, port: u16, reason: String },
    /// The release to boot could not be read back as signed.
    Release(crate::boot::release::ReleaseError),
    Initrd(phase_core::boot::cpio::CpioError),
}

impl std::fmt::Display for PxeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PxeError::NoRelease(why) => write!(f, "pxe: no release to boot: {why}"),
            PxeError::NoAddress(iface) => write!(f, "pxe: interface {iface} has no IPv4 address (ProxyDHCP answers name this node's address)"),
            PxeError::Programs(why) => write!(f, "pxe: network boot programs: {why}"),
            PxeError::Socket { what, port, reason } => write!(f, "pxe: {what} on UDP port {port}: {reason}"),
            PxeError::Release(e) => write!(f, "pxe: the release for booted machines: {e}"),
            PxeError::Initrd(e) => write!(f, "pxe: building the initrd for booted machines: {e}"),
        }
    }
}
impl std::error::Error for PxeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PxeError::Release(e) => Some(e),
            PxeError::Initrd(e) => Some(e),
            _ => None,
        }
    }
}


/// UDP ports (the standard ones unless a test moves them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub dhcp: u16,
    pub proxy: u16,
    pub tftp: u16,
    /// Where an OFFER is broadcast (the client's port).
    pub client: u16,
}

impl Default for Ports {
    fn default() -> Ports {
        Ports { dhcp: phase_core::net::dhcp::SERVER_PORT, proxy: phase_core::net::dhcp::PROXY_PORT, tftp: phase_core::net::tftp::PORT, client: phase_core::net::dhcp::CLIENT_PORT }
    }
}

/// Every bound the LAN can push against (docs/netboot.md lists them with these defaults).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Answers per client (MAC) in any 10 s; beyond it the client's messages are dropped.
    pub answers_per_client: u32,
    /// Clients remembered for the rate limit; a full table is cleared.
    pub clients: usize,
    /// TFTP transfers at once, in all and per client address.
    pub tftp_sessions: usize,
    pub tftp_sessions_per_client: usize,
    /// Wait for an ACK before sending the window again, and how often.
    pub tftp_timeout: Duration,
    pub tftp_retries: u32,
    /// Sending again before the client's first ACK: a transfer nobody acknowledges is let go
    /// sooner.
    pub tftp_first_retries: u32,
    /// A transfer ends after this long whatever the client does.
    pub tftp_session_max: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            answers_per_client: 16,
            clients: 1024,
            tftp_sessions: 8,
            tftp_sessions_per_client: 2,
            tftp_timeout: Duration::from_secs(1),
            tftp_retries: 5,
            tftp_first_retries: 2,
            tftp_session_max: Duration::from_secs(120),
        }
    }
}

/// Counters for /metrics: what the LAN sent and what came of it.
#[derive(Debug, Default)]
pub struct Stats {
    pub dhcp_answered: AtomicU64,
    /// Well-formed messages not for us (ordinary DHCP clients, other message types, arches
    /// without a program or release).
    pub dhcp_ignored: AtomicU64,
    pub dhcp_malformed: AtomicU64,
    pub dhcp_rate_limited: AtomicU64,
    pub tftp_completed: AtomicU64,
    pub tftp_failed: AtomicU64,
    /// Transfers the client ended with an ERROR (UEFI asks for the size that way).
    pub tftp_aborted: AtomicU64,
    /// Read requests refused: unknown file, write requests, too many sessions.
    pub tftp_refused: AtomicU64,
    pub tftp_malformed: AtomicU64,
    /// Transfers nobody had acknowledged, displaced by newer requests (`tftp::MAX_PENDING`).
    pub tftp_displaced: AtomicU64,
}

/// What a booted machine fetches over HTTP, built once when the server starts.
pub struct Boot {
    pub arch: Arch,
    pub channel: String,
    pub version: u64,
    /// The release's kernel file name (served by the boot provider at /v1/boot/…).
    pub kernel: String,
    pub cmdline: String,
    /// The release's initramfs with the release, the trusted keys and the programs carried.
    pub initrd: Arc<[u8]>,
}

pub struct Config {
    pub interface: String,
    pub http_port: u16,
    pub channel: String,
    /// Parameters added to the booted machines' command line (e.g. `phase.pxe=on`).
    pub append: Vec<String>,
    /// Answer UEFI HTTP Boot clients and iPXE only: no PXE (TFTP) answers, no TFTP server.
    pub http_only: bool,
    pub ports: Ports,
    pub limits: Limits,
    /// The address to announce; None: the interface's own.
    pub address: Option<Ipv4Addr>,
}

/// A running PXE service: its address, programs, boots and counters. The sockets live in their
/// threads.
pub struct Pxe {
    pub address: Ipv4Addr,
    pub http_only: bool,
    pub http_port: u16,
    pub programs: Programs,
    pub boots: Vec<Boot>,
    pub stats: Arc<Stats>,
}

impl Pxe {
    /// Binds the ProxyDHCP and TFTP sockets on `config.interface` and starts their threads.
    /// Each architecture with both a release of the channel and its program in `programs_dir`
    /// is served; refuses (with the reason) when none is, or without an address.
    pub fn start(config: Config, releases: &[&Entry], trusted: &[[u8; 32]], programs_dir: &Path) -> Result<Arc<Pxe>, PxeError> {
        let carried = load_programs(programs_dir)?;
        let address = match config.address {
            Some(a) => a,
            None => crate::sys::interface_ipv4(&config.interface).ok_or_else(|| PxeError::NoAddress(config.interface.clone()))?,
        };
        let mut boots = Vec::new();
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let has_program = programs_for(arch).iter().any(|p| carried.iter().any(|(n, _)| n == p));
            if let (true, Some(e)) = (has_program, releases.iter().find(|e| e.channel() == config.channel && e.arch() == arch)) {
                boots.push(boot_for(e, trusted, &config.append, &carried)?);
            }
        }
        if boots.is_empty() {
            return Err(PxeError::NoRelease(format!(
                "the boot store has no {c}/x86_64 release with iPXE ({BIOS_PROGRAM}, {UEFI_X64_PROGRAM}) and no {c}/aarch64 release with {UEFI_ARM64_PROGRAM} in {}",
                programs_dir.display(),
                c = config.channel
            )));
        }
        // What is served: the programs of the arches booted, GRUB's with this node's address.
        let mut programs = Programs::new();
        for (name, bytes) in &carried {
            if boots.iter().any(|b| programs_for(b.arch).contains(&name.as_str())) {
                let bytes = if name == UEFI_ARM64_PROGRAM { Arc::from(with_server(bytes, address, config.http_port)?) } else { bytes.clone() };
                programs.push((name.clone(), bytes));
            }
        }
        let stats = Arc::new(Stats::default());
        let pxe = Arc::new(Pxe { address, http_only: config.http_only, http_port: config.http_port, programs, boots, stats });
        let udp = |what: &'static str, port: u16| -> Result<UdpSocket, PxeError> {
            let err = |e: std::io::Error| PxeError::Socket { what, port, reason: e.to_string() };
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).map_err(err)?;
            crate::sys::bind_to_device(&s, &config.interface).map_err(err)?;
            s.set_broadcast(true).map_err(err)?;
            Ok(s)
        };
        let dhcp_socket = udp("ProxyDHCP", config.ports.dhcp)?;
        let proxy_socket = udp("ProxyDHCP (PXE boot server)", config.ports.proxy)?;
        let tftp_socket = if config.http_only { None } else { Some(udp("TFTP", config.ports.tftp)?) };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).stack_size(256 << 10).spawn(f).map(drop).map_err(|e| PxeError::Socket { what: "thread", port: 0, reason: e.to_string() })
        };
        let (p1, p2, p3) = (pxe.clone(), pxe.clone(), pxe.clone());
        let (ports, limits) = (config.ports, config.limits);
        spawn("pxe-dhcp", Box::new(move || dhcp::serve(&p1, dhcp_socket, dhcp::Port::Dhcp, ports, limits)))?;
        spawn("pxe-proxy", Box::new(move || dhcp::serve(&p2, proxy_socket, dhcp::Port::Proxy, ports, limits)))?;
        let interface = config.interface.clone();
        if let Some(socket) = tftp_socket {
            spawn("pxe-tftp", Box::new(move || tftp::serve(&p3, socket, &interface, limits)))?;
        }
        for b in &pxe.boots {
            log!(
                "pxe: on {} ({address}): ProxyDHCP (UDP {}, {}), {}; they boot {}/{} version {} (initrd {} KiB)",
                config.interface,
                ports.dhcp,
                ports.proxy,
                if config.http_only { "UEFI HTTP Boot and iPXE only".to_string() } else { format!("TFTP (UDP {}) for PXE, and UEFI HTTP Boot", ports.tftp) },
                b.channel,
                b.arch.name(),
                b.version,
                b.initrd.len() >> 10
            );
        }
        Ok(pxe)
    }

    /// The boot file a client's message asks for, or why it gets no answer.
    pub fn choose(&self, m: &ClientMessage<'_>) -> Result<(String, BootProtocol), &'static str> {
        let protocol = m.boot_protocol().ok_or("not a network boot client")?;
        let arch = m.client_arch().ok_or("no client architecture")?;
        let http = |path: &str| format!("http://{}:{}{path}", self.address, self.http_port);
        let (booted, program) = match (protocol, arch) {
            (BootProtocol::Pxe, ClientArch::BiosX86) => (Arch::X86_64, BIOS_PROGRAM),
            (_, ClientArch::EfiX64 | ClientArch::EfiX64Http) => (Arch::X86_64, UEFI_X64_PROGRAM),
            (_, ClientArch::EfiArm64 | ClientArch::EfiArm64Http) => (Arch::Aarch64, UEFI_ARM64_PROGRAM),
            (BootProtocol::Http, ClientArch::BiosX86) => return Err("HTTP Boot is for UEFI only"),
            (_, ClientArch::Other(_)) => return Err("no network boot program for this architecture (BIOS, x86-64 and arm64 UEFI only)"),
        };
        if !self.boots.iter().any(|b| b.arch == booted) {
            return Err("this node boots no release of this architecture");
        }
        if booted == Arch::X86_64 && m.is_ipxe() {
            // iPXE (ours after TFTP, or a NIC's own ROM) fetches the script over HTTP.
            return Ok((http("/v1/pxe/x86_64.ipxe"), protocol));
        }
        if self.program(program).is_none() {
            return Err("the network boot program for this firmware is not here");
        }
        match protocol {
            BootProtocol::Pxe if self.http_only => Err("PXE (TFTP) answers are off (HTTP Boot only)"),
            BootProtocol::Pxe => Ok((program.to_string(), protocol)),
            BootProtocol::Http => Ok((http(&format!("/v1/pxe/{program}")), protocol)),
        }
    }

    pub fn program(&self, name: &str) -> Option<&Arc<[u8]>> {
        self.programs.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// The boot script `name` asks for: `x86_64.ipxe` (iPXE) or `aarch64.grub` (GRUB): the
    /// release's kernel from the boot provider, the carrying initrd, the release's command
    /// line with this node's floors and parameters.
    pub fn script(&self, name: &str) -> Option<String> {
        let (arch, kind) = name.rsplit_once('.')?;
        let b = self.boots.iter().find(|b| b.arch.name() == arch)?;
        let base = format!("http://{}:{}", self.address, self.http_port);
        let (c, a, v) = (&b.channel, b.arch.name(), b.version);
        match (b.arch, kind) {
            (Arch::X86_64, "ipxe") => Some(format!(
                "#!ipxe\necho Phase: booting {c}/{a} version {v} from {base}\nkernel {base}/v1/boot/{c}/{a}/{} initrd=initrd {}\ninitrd --name initrd {base}/v1/pxe/{a}/initrd\nboot\n",
                b.kernel, b.cmdline
            )),
            (Arch::Aarch64, "grub") => {
                // Each parameter single-quoted: the signed command line is data to GRUB's
                // script parser, never syntax ($, ;, braces).
                let quoted: Vec<String> = b.cmdline.split_whitespace().map(|w| format!("'{}'", w.replace('\'', "'\\''"))).collect();
                let server = format!("(http,{}:{})", self.address, self.http_port);
                Some(format!(
                    "echo 'Phase: booting {c}/{a} version {v} from {base}'\nlinux {server}/v1/boot/{c}/{a}/{} {}\ninitrd {server}/v1/pxe/{a}/initrd\nboot\n",
                    b.kernel,
                    quoted.join(" ")
                ))
            }
            _ => None,
        }
    }

    pub fn initrd(&self, arch: &str) -> Option<&Arc<[u8]>> {
        self.boots.iter().find(|b| b.arch.name() == arch).map(|b| &b.initrd)
    }

}

/// The network boot programs in `dir` (those of them that are there, at least one), each at
/// most 4 MiB.
pub fn load_programs(dir: &Path) -> Result<Programs, PxeError> {
    let mut out = Vec::new();
    for name in PROGRAM_NAMES {
        let path = dir.join(name);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(PxeError::Programs(format!("{}: {e}", path.display()))),
        };
        if size > MAX_PROGRAM {
            return Err(PxeError::Programs(format!("{}: {size} bytes, more than {MAX_PROGRAM}", path.display())));
        }
        let bytes = std::fs::read(&path).map_err(|e| PxeError::Programs(format!("{}: {e}", path.display())))?;
        out.push((name.to_string(), Arc::from(bytes)));
    }
    if out.is_empty() {
        return Err(PxeError::Programs(format!(
            "{}: none of {} (Debian's ipxe package installs the first two in /usr/lib/ipxe; scripts/build-pxe-programs gathers all three)",
            dir.display(),
            PROGRAM_NAMES.join(", ")
        )));
    }
    Ok(out)
}

/// The programs that boot `arch`'s machines.
fn programs_for(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &[BIOS_PROGRAM, UEFI_X64_PROGRAM],
        Arch::Aarch64 => &[UEFI_ARM64_PROGRAM],
    }
}

/// What a machine booted with `arch`'s release carries on: the programs that boot machines of
/// its own architecture (it carries and serves no other release).
pub fn carried_for(arch: Arch, programs: &Programs) -> Vec<(&str, &[u8])> {
    programs.iter().filter(|(n, _)| programs_for(arch).contains(&n.as_str())).map(|(n, b)| (n.as_str(), &b[..])).collect()
}

/// The GRUB image as this node serves it: its placeholder replaced by `address:port`.
pub fn with_server(image: &[u8], address: Ipv4Addr, port: u16) -> Result<Vec<u8>, PxeError> {
    let at = |from: usize| image[from..].windows(SERVER_PLACEHOLDER.len()).position(|w| w == SERVER_PLACEHOLDER).map(|i| i + from);
    let Some(first) = at(0) else {
        return Err(PxeError::Programs(format!("{UEFI_ARM64_PROGRAM} has no server placeholder (make it with scripts/build-pxe-programs)")));
    };
    if at(first + 1).is_some() {
        return Err(PxeError::Programs(format!("{UEFI_ARM64_PROGRAM} holds the server placeholder more than once")));
    }
    // "255.255.255.255:65535" is 21 bytes; the placeholder 24.
    let server = format!("{address}:{port}");
    let mut out = image.to_vec();
    let slot = &mut out[first..first + SERVER_PLACEHOLDER.len()];
    slot.fill(b' ');
    slot[..server.len()].copy_from_slice(server.as_bytes());
    Ok(out)
}

fn boot_for(e: &Entry, trusted: &[[u8; 32]], append: &[String], programs: &Programs) -> Result<Boot, PxeError> {
    let release = crate::boot::release::Release::read(e).map_err(PxeError::Release)?;
    let b = release.manifest.body.clone();
    // A booted machine never goes below the release it was given, nor below what this node
    // knows of the time (its build, the release's creation).
    let floors = Floors { version: 0, time: crate::boot::build_time() }.raised(&b);
    let cmdline = crate::boot::netboot::next_cmdline(&b.cmdline, append, &floors);
    let carried = carried_for(b.arch, programs);
    let image = crate::boot::netboot::BootImage::carrying(release, trusted, &carried, cmdline).map_err(PxeError::Initrd)?;
    // The kernel itself is served from the store by the boot provider.
    Ok(Boot { arch: b.arch, channel: b.channel, version: b.version, kernel: b.kernel.name, cmdline: image.cmdline, initrd: Arc::from(image.initrd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grub_image_gets_the_address_in_place_of_its_placeholder_once() {
        let image = [&b"MZ.."[..], SERVER_PLACEHOLDER, b"\nsource"].concat();
        let out = with_server(&image, Ipv4Addr::new(255, 255, 255, 255), 65535).unwrap();
        assert_eq!(&out[4..4 + SERVER_PLACEHOLDER.len()], b"255.255.255.255:65535   ");
        assert_eq!((out.len(), &out[..4], &out[28..]), (image.len(), &b"MZ.."[..], &b"\nsource"[..]));
        let twice = [SERVER_PLACEHOLDER, SERVER_PLACEHOLDER].concat();
        assert!(with_server(&twice, Ipv4Addr::LOCALHOST, 1).unwrap_err().to_string().contains("more than once"));
        assert!(with_server(b"MZ", Ipv4Addr::LOCALHOST, 1).unwrap_err().to_string().contains("no server placeholder"));
    }
}
