//! The ProxyDHCP server (PXE 2.1): on port 67 it answers a PXE or HTTP Boot client's DISCOVER
//! with an OFFER that names the boot file and leases nothing (the LAN's DHCP server gives the
//! address); on port 4011 it answers the client's REQUEST with an ACK (EDK2 and iPXE ask there
//! before they boot). Everything else, an ordinary DHCP client above all, gets no answer.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use phase_core::net::dhcp::{ClientMessage, MessageType, ProxyReply, ReplyKind};

use super::{Limits, Ports, Pxe};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// 67: DISCOVER -> OFFER, broadcast (or to the relay in giaddr, if it sent the request).
    Dhcp,
    /// 4011: REQUEST -> ACK, to the sender.
    Proxy,
}

const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Answers per client MAC in the current window; a full table starts over (a flood of
/// forged MACs then costs each real client at most one window of silence).
pub struct RateLimit {
    per_client: u32,
    max_clients: usize,
    seen: HashMap<[u8; 6], (Instant, u32)>,
}

impl RateLimit {
    pub fn new(limits: &Limits) -> RateLimit {
        RateLimit { per_client: limits.answers_per_client, max_clients: limits.clients, seen: HashMap::new() }
    }

    pub fn admit(&mut self, mac: [u8; 6], now: Instant) -> bool {
        if self.seen.len() >= self.max_clients && !self.seen.contains_key(&mac) {
            self.seen.clear();
        }
        let entry = self.seen.entry(mac).or_insert((now, 0));
        if now.duration_since(entry.0) >= RATE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_client
    }
}

/// An answer to send: its bytes, where to, and for the log the client and its boot file.
pub struct Answer {
    pub bytes: Vec<u8>,
    pub to: SocketAddr,
    pub mac: [u8; 6],
    pub boot_file: String,
}

/// What to send for one received datagram; None: drop it (counted).
pub fn answer(pxe: &Pxe, packet: &[u8], from: SocketAddr, port: Port, ports: Ports, rate: &mut RateLimit, now: Instant) -> Option<Answer> {
    let stats = &pxe.stats;
    let m = match ClientMessage::parse(packet) {
        Ok(m) => m,
        Err(_) => {
            stats.dhcp_malformed.fetch_add(1, Relaxed);
            return None;
        }
    };
    let kind = match (port, m.kind) {
        (Port::Dhcp, MessageType::Discover) => ReplyKind::Offer,
        (Port::Proxy, MessageType::Request | MessageType::Inform) => ReplyKind::Ack,
        _ => {
            stats.dhcp_ignored.fetch_add(1, Relaxed);
            return None;
        }
    };
    let (boot_file, protocol) = match pxe.choose(&m) {
        Ok(choice) => choice,
        Err(_) => {
            stats.dhcp_ignored.fetch_add(1, Relaxed);
            return None;
        }
    };
    // A relay agent sends from the address it names in giaddr; anything else naming a giaddr
    // would turn this server into a reflector towards any address.
    if port == Port::Dhcp && m.giaddr != [0; 4] && from.ip() != std::net::IpAddr::V4(Ipv4Addr::from(m.giaddr)) {
        stats.dhcp_ignored.fetch_add(1, Relaxed);
        return None;
    }
    if !rate.admit(m.mac, now) {
        stats.dhcp_rate_limited.fetch_add(1, Relaxed);
        return None;
    }
    let reply = ProxyReply { kind, server: pxe.address.octets(), boot_file, protocol };
    let Some(bytes) = reply.encode(&m) else {
        stats.dhcp_ignored.fetch_add(1, Relaxed);
        return None;
    };
    let to = match port {
        Port::Proxy => from,
        Port::Dhcp if m.giaddr != [0; 4] => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(m.giaddr), ports.dhcp)),
        Port::Dhcp => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, ports.client)),
    };
    stats.dhcp_answered.fetch_add(1, Relaxed);
    Some(Answer { bytes, to, mac: m.mac, boot_file: reply.boot_file })
}

/// The server loop of one port; runs for the life of the node.
pub fn serve(pxe: &Pxe, socket: UdpSocket, port: Port, ports: Ports, limits: Limits) {
    let mut rate = RateLimit::new(&limits);
    let mut buf = vec![0u8; 1500];
    let mut logged = 0u32;
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                log!("pxe: ProxyDHCP receive: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if let Some(a) = answer(pxe, &buf[..n], from, port, ports, &mut rate, Instant::now()) {
            if let Err(e) = socket.send_to(&a.bytes, a.to) {
                log!("pxe: ProxyDHCP answer to {}: {e}", a.to);
            } else if logged < 64 {
                // The first answers are logged: they are what a person debugging a boot needs.
                logged += 1;
                let mac = a.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                log!("pxe: {} to {mac} ({}): {}", if port == Port::Dhcp { "offer" } else { "ack" }, a.to, a.boot_file);
            }
        }
    }
}
