#![no_main]
//! DHCP messages from any host on the boot LAN: parse never panics, and every answer the
//! ProxyDHCP server could build for a parsed message is a reply that leases no address.
use libfuzzer_sys::fuzz_target;
use phase_core::net::dhcp::{BootProtocol, ClientMessage, ProxyReply, ReplyKind, MIN_MESSAGE};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = ClientMessage::parse(data) else { return };
    let _ = (m.client_arch(), m.is_ipxe());
    let Some(protocol) = m.boot_protocol() else { return };
    let reply = ProxyReply { kind: ReplyKind::Offer, server: [10, 0, 0, 1], boot_file: "snponly.efi".into(), protocol };
    let out = reply.encode(&m).expect("a short boot file always fits");
    assert!(out.len() >= MIN_MESSAGE && out[0] == 2 && out[16..20] == [0, 0, 0, 0]);
    assert_eq!(ClientMessage::parse(&out).err(), Some(phase_core::net::dhcp::DhcpError::NotRequest));
    let _ = BootProtocol::Pxe;
});
