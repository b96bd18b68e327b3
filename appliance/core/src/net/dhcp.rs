//! DHCP messages as a PXE ProxyDHCP server sees them (RFC 2131/2132, PXE 2.1, RFC 4578,
//! UEFI HTTP Boot): the client's DISCOVER or REQUEST parsed into what a boot answer depends on,
//! and the ProxyDHCP OFFER/ACK that names a boot file and never an address.
//!
//! A `ClientMessage` that parsed is a well-formed BOOTREQUEST from an Ethernet client with a
//! DHCP message type; everything else is an error, which the server counts and drops.

use alloc::string::String;
use alloc::vec::Vec;

/// Ports: DHCP server, DHCP client, PXE boot server (ProxyDHCP requests after the offer).
pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
pub const PROXY_PORT: u16 = 4011;

const FIXED: usize = 236;
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The smallest BOOTP message (RFC 951); replies are padded to it.
pub const MIN_MESSAGE: usize = 300;
/// Longest boot file name the `file` field holds with its NUL.
pub const MAX_BOOT_FILE: usize = 127;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpError {
    Short,
    NotRequest,
    NotEthernet,
    NoCookie,
    /// An option runs past the end of the message, or no End option before it (RFC 2132 §2).
    Truncated,
    /// One of the options a boot answer depends on appears twice, or has a wrong length.
    BadOption(u8),
    NoMessageType,
}

impl core::fmt::Display for DhcpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DhcpError::Short => write!(f, "shorter than a BOOTP header"),
            DhcpError::NotRequest => write!(f, "not a BOOTREQUEST"),
            DhcpError::NotEthernet => write!(f, "hardware type is not Ethernet"),
            DhcpError::NoCookie => write!(f, "no DHCP magic cookie"),
            DhcpError::Truncated => write!(f, "options run past the message"),
            DhcpError::BadOption(o) => write!(f, "option {o} repeated or of a wrong length"),
            DhcpError::NoMessageType => write!(f, "no DHCP message type"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Request,
    Inform,
    /// Any other type (OFFER, ACK, DECLINE, RELEASE …): not for a ProxyDHCP server.
    Other(u8),
}

/// The firmware's boot protocol, from the vendor class (option 60).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootProtocol {
    /// `PXEClient…`: TFTP.
    Pxe,
    /// `HTTPClient…`: UEFI HTTP Boot, a URL.
    Http,
}

/// Client system architectures (option 93, RFC 4578 and IANA's registry) Phase can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientArch {
    /// 0: x86 BIOS.
    BiosX86,
    /// 7 and 9: x86-64 UEFI (9 is what most firmware sends as "EFI BC").
    EfiX64,
    /// 11: arm64 UEFI.
    EfiArm64,
    /// 16: x86-64 UEFI HTTP Boot.
    EfiX64Http,
    /// 19: arm64 UEFI HTTP Boot.
    EfiArm64Http,
    Other(u16),
}

impl ClientArch {
    pub fn from_code(code: u16) -> ClientArch {
        match code {
            0 => ClientArch::BiosX86,
            7 | 9 => ClientArch::EfiX64,
            11 => ClientArch::EfiArm64,
            16 => ClientArch::EfiX64Http,
            19 => ClientArch::EfiArm64Http,
            c => ClientArch::Other(c),
        }
    }
}

/// What a client asked, borrowed from its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage<'a> {
    pub kind: MessageType,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: [u8; 4],
    pub giaddr: [u8; 4],
    pub mac: [u8; 6],
    /// Option 60.
    pub vendor_class: Option<&'a [u8]>,
    /// Option 77 (iPXE sends `iPXE`).
    pub user_class: Option<&'a [u8]>,
    /// Option 93, the first entry.
    pub arch: Option<u16>,
    /// Option 97: type 0 and a 16-byte GUID, echoed in the answer (PXE 2.1 asks for it).
    pub machine_id: Option<[u8; 17]>,
}

impl<'a> ClientMessage<'a> {
    pub fn parse(b: &'a [u8]) -> Result<ClientMessage<'a>, DhcpError> {
        if b.len() < FIXED + COOKIE.len() {
            return Err(DhcpError::Short);
        }
        if b[0] != 1 {
            return Err(DhcpError::NotRequest);
        }
        if b[1] != 1 || b[2] != 6 {
            return Err(DhcpError::NotEthernet);
        }
        if b[FIXED..FIXED + 4] != COOKIE {
            return Err(DhcpError::NoCookie);
        }
        let quad = |at: usize| [b[at], b[at + 1], b[at + 2], b[at + 3]];
        let mut m = ClientMessage {
            kind: MessageType::Other(0),
            xid: u32::from_be_bytes(quad(4)),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: quad(12),
            giaddr: quad(24),
            mac: [b[28], b[29], b[30], b[31], b[32], b[33]],
            vendor_class: None,
            user_class: None,
            arch: None,
            machine_id: None,
        };
        let mut kind = None;
        let mut at = FIXED + 4;
        loop {
            let Some(&code) = b.get(at) else { return Err(DhcpError::Truncated) };
            match code {
                0 => {
                    at += 1;
                    continue;
                }
                255 => break,
                _ => {}
            }
            let len = *b.get(at + 1).ok_or(DhcpError::Truncated)? as usize;
            let value = b.get(at + 2..at + 2 + len).ok_or(DhcpError::Truncated)?;
            at += 2 + len;
            let once = |seen: bool| if seen { Err(DhcpError::BadOption(code)) } else { Ok(()) };
            match code {
                53 => {
                    once(kind.is_some())?;
                    let [t] = value else { return Err(DhcpError::BadOption(53)) };
                    kind = Some(match t {
                        1 => MessageType::Discover,
                        3 => MessageType::Request,
                        8 => MessageType::Inform,
                        t => MessageType::Other(*t),
                    });
                }
                60 => {
                    once(m.vendor_class.is_some())?;
                    m.vendor_class = Some(value);
                }
                77 => {
                    once(m.user_class.is_some())?;
                    m.user_class = Some(value);
                }
                93 => {
                    once(m.arch.is_some())?;
                    if value.len() < 2 || value.len() % 2 != 0 {
                        return Err(DhcpError::BadOption(93));
                    }
                    m.arch = Some(u16::from_be_bytes([value[0], value[1]]));
                }
                97 => {
                    once(m.machine_id.is_some())?;
                    // Type 0 + GUID; other forms are legal DHCP but nothing to echo.
                    if let Ok(id) = <[u8; 17]>::try_from(value) {
                        if id[0] == 0 {
                            m.machine_id = Some(id);
                        }
                    }
                }
                _ => {}
            }
        }
        m.kind = kind.ok_or(DhcpError::NoMessageType)?;
        Ok(m)
    }

    /// The boot protocol the vendor class names, or None for a client that is not booting
    /// from the network (an ordinary DHCP client: never answered).
    pub fn boot_protocol(&self) -> Option<BootProtocol> {
        let class = self.vendor_class?;
        if class.starts_with(b"PXEClient") {
            Some(BootProtocol::Pxe)
        } else if class.starts_with(b"HTTPClient") {
            Some(BootProtocol::Http)
        } else {
            None
        }
    }

    /// The architecture: option 93, else the `Arch:xxxxx` field of the vendor class.
    pub fn client_arch(&self) -> Option<ClientArch> {
        if let Some(code) = self.arch {
            return Some(ClientArch::from_code(code));
        }
        let class = core::str::from_utf8(self.vendor_class?).ok()?;
        let code = class.split(':').skip_while(|f| *f != "Arch").nth(1)?.parse::<u16>().ok()?;
        Some(ClientArch::from_code(code))
    }

    /// iPXE announces itself with user class `iPXE`: it can fetch a script over HTTP.
    pub fn is_ipxe(&self) -> bool {
        self.user_class.is_some_and(|u| u == b"iPXE" || u.get(1..) == Some(b"iPXE".as_slice()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// On port 67, to a DISCOVER.
    Offer,
    /// On port 4011 (or 67), to a REQUEST.
    Ack,
}

/// A ProxyDHCP answer: the boot file and the server, no address (yiaddr 0.0.0.0), no lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyReply {
    pub kind: ReplyKind,
    /// This server's address: option 54, and siaddr (the TFTP server) for PXE.
    pub server: [u8; 4],
    /// A TFTP file name for PXE, a URL for HTTP Boot and iPXE; at most MAX_BOOT_FILE bytes.
    pub boot_file: String,
    pub protocol: BootProtocol,
}

impl ProxyReply {
    /// The answer to `to`, or None when the boot file does not fit the `file` field.
    pub fn encode(&self, to: &ClientMessage<'_>) -> Option<Vec<u8>> {
        let file = self.boot_file.as_bytes();
        if file.is_empty() || file.len() > MAX_BOOT_FILE || file.contains(&0) {
            return None;
        }
        let mut b = alloc::vec![0u8; FIXED];
        b[0] = 2;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&to.xid.to_be_bytes());
        b[10..12].copy_from_slice(&(to.flags & 0x8000).to_be_bytes());
        b[12..16].copy_from_slice(&to.ciaddr);
        // yiaddr stays 0.0.0.0: that is what makes this a proxy answer.
        b[20..24].copy_from_slice(&self.server);
        b[24..28].copy_from_slice(&to.giaddr);
        b[28..34].copy_from_slice(&to.mac);
        b[108..108 + file.len()].copy_from_slice(file);
        b.extend_from_slice(&COOKIE);
        let mut option = |code: u8, value: &[u8]| {
            b.push(code);
            b.push(value.len() as u8);
            b.extend_from_slice(value);
        };
        option(53, &[if self.kind == ReplyKind::Offer { 2 } else { 5 }]);
        option(54, &self.server);
        match self.protocol {
            BootProtocol::Pxe => {
                option(60, b"PXEClient");
                // PXE discovery control: bit 3, boot the file named here (no menu, no
                // boot server discovery).
                option(43, &[6, 1, 8, 255]);
            }
            BootProtocol::Http => {
                option(60, b"HTTPClient");
                option(67, file);
            }
        }
        if let Some(id) = &to.machine_id {
            option(97, id);
        }
        b.push(255);
        if b.len() < MIN_MESSAGE {
            b.resize(MIN_MESSAGE, 0);
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DISCOVER as OVMF sends it: vendor class, arch 7, machine id, and some options a
    /// ProxyDHCP server does not read.
    fn discover(options: &[u8]) -> Vec<u8> {
        let mut b = alloc::vec![0u8; FIXED];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[10] = 0x80;
        b[28..34].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        b.extend_from_slice(&COOKIE);
        b.extend_from_slice(options);
        b
    }

    const PXE_X64: &[u8] = b"PXEClient:Arch:00007:UNDI:003016";

    fn options(vendor: &[u8], arch: u16, extra: &[u8]) -> Vec<u8> {
        let mut o = alloc::vec![53, 1, 1, 60, vendor.len() as u8];
        o.extend_from_slice(vendor);
        o.extend_from_slice(&[93, 2]);
        o.extend_from_slice(&arch.to_be_bytes());
        o.extend_from_slice(&[97, 17, 0]);
        o.extend_from_slice(&[0xAB; 16]);
        o.extend_from_slice(extra);
        o.push(255);
        o
    }

    #[test]
    fn a_pxe_discover_parses_into_what_the_answer_needs() {
        let b = discover(&options(PXE_X64, 7, &[55, 3, 1, 3, 6, 0, 0]));
        let m = ClientMessage::parse(&b).unwrap();
        assert_eq!(m.kind, MessageType::Discover);
        assert_eq!(m.xid, 0x1234_5678);
        assert_eq!(m.mac, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(m.boot_protocol(), Some(BootProtocol::Pxe));
        assert_eq!(m.client_arch(), Some(ClientArch::EfiX64));
        assert!(!m.is_ipxe());
        assert_eq!(m.machine_id.unwrap()[1..], [0xAB; 16]);
    }

    #[test]
    fn ordinary_dhcp_clients_are_not_booting_and_ipxe_is_recognised() {
        let plain = discover(&[53, 1, 1, 60, 4, b'u', b'd', b'h', b'c', 255]);
        assert_eq!(ClientMessage::parse(&plain).unwrap().boot_protocol(), None);
        let none = discover(&[53, 1, 1, 255]);
        assert_eq!(ClientMessage::parse(&none).unwrap().boot_protocol(), None);
        let ipxe = discover(&options(b"PXEClient:Arch:00000:UNDI:002001", 0, &[77, 4, b'i', b'P', b'X', b'E']));
        let m = ClientMessage::parse(&ipxe).unwrap();
        assert!(m.is_ipxe());
        assert_eq!(m.client_arch(), Some(ClientArch::BiosX86));
        let http = discover(&options(b"HTTPClient:Arch:00016:UNDI:003001", 16, &[]));
        assert_eq!(ClientMessage::parse(&http).unwrap().boot_protocol(), Some(BootProtocol::Http));
        // No option 93: the arch comes from the vendor class.
        let mut o = alloc::vec![53, 1, 1, 60, PXE_X64.len() as u8];
        o.extend_from_slice(PXE_X64);
        o.push(255);
        assert_eq!(ClientMessage::parse(&discover(&o)).unwrap().client_arch(), Some(ClientArch::EfiX64));
    }

    #[test]
    fn malformed_messages_are_refused_by_reason() {
        let good = discover(&options(PXE_X64, 7, &[]));
        assert_eq!(ClientMessage::parse(&good[..100]), Err(DhcpError::Short));
        let mut reply = good.clone();
        reply[0] = 2;
        assert_eq!(ClientMessage::parse(&reply), Err(DhcpError::NotRequest));
        let mut token_ring = good.clone();
        token_ring[1] = 6;
        assert_eq!(ClientMessage::parse(&token_ring), Err(DhcpError::NotEthernet));
        let mut no_cookie = good.clone();
        no_cookie[FIXED] = 0;
        assert_eq!(ClientMessage::parse(&no_cookie), Err(DhcpError::NoCookie));
        assert_eq!(ClientMessage::parse(&good[..good.len() - 1]), Err(DhcpError::Truncated), "no End");
        assert_eq!(ClientMessage::parse(&discover(&[53, 1, 1, 60, 200, b'P'])), Err(DhcpError::Truncated));
        assert_eq!(ClientMessage::parse(&discover(&[53, 1, 1, 53, 1, 3, 255])), Err(DhcpError::BadOption(53)));
        assert_eq!(ClientMessage::parse(&discover(&[53, 2, 1, 1, 255])), Err(DhcpError::BadOption(53)));
        assert_eq!(ClientMessage::parse(&discover(&[53, 1, 1, 93, 3, 0, 7, 0, 255])), Err(DhcpError::BadOption(93)));
        assert_eq!(ClientMessage::parse(&discover(&[60, 1, b'x', 255])), Err(DhcpError::NoMessageType));
    }

    #[test]
    fn a_proxy_offer_names_the_file_and_the_server_and_leases_nothing() {
        let b = discover(&options(PXE_X64, 7, &[]));
        let m = ClientMessage::parse(&b).unwrap();
        let reply = ProxyReply { kind: ReplyKind::Offer, server: [10, 9, 0, 2], boot_file: "snponly.efi".into(), protocol: BootProtocol::Pxe };
        let out = reply.encode(&m).unwrap();
        assert!(out.len() >= MIN_MESSAGE);
        assert_eq!((out[0], &out[4..8], &out[10..12]), (2, &0x1234_5678u32.to_be_bytes()[..], &[0x80, 0][..]));
        assert_eq!(&out[16..20], &[0, 0, 0, 0], "yiaddr: no address");
        assert_eq!(&out[20..24], &[10, 9, 0, 2], "siaddr: the TFTP server");
        assert_eq!(&out[28..34], &m.mac);
        assert_eq!(&out[108..120], b"snponly.efi\0");
        let opts = &out[FIXED + 4..];
        assert_eq!(&opts[..3], &[53, 1, 2]);
        assert_eq!(&opts[3..9], &[54, 4, 10, 9, 0, 2]);
        assert_eq!(&opts[9..20], b"\x3c\x09PXEClient");
        assert_eq!(&opts[20..26], &[43, 4, 6, 1, 8, 255]);
        assert_eq!(&opts[26..28], &[97, 17]);
        assert_eq!(opts[45], 255);
        let ack = ProxyReply { kind: ReplyKind::Ack, ..reply.clone() }.encode(&m).unwrap();
        assert_eq!(&ack[FIXED + 4..FIXED + 7], &[53, 1, 5]);
        let too_long = ProxyReply { boot_file: "x".repeat(128), ..reply };
        assert_eq!(too_long.encode(&m), None);
    }

    #[test]
    fn an_answer_is_at_most_410_bytes_and_the_smallest_answered_request_260() {
        // docs/threat-model.md: what a flood of forged requests can turn into.
        let smallest = discover(&[53, 1, 1, 60, 10, b'H', b'T', b'T', b'P', b'C', b'l', b'i', b'e', b'n', b't', 93, 2, 0, 16, 255]);
        assert_eq!(smallest.len(), 260);
        let m = ClientMessage::parse(&smallest).unwrap();
        assert!(m.boot_protocol().is_some() && m.client_arch().is_some(), "it would be answered");
        let b = discover(&options(b"HTTPClient:Arch:00016", 16, &[]));
        let with_id = ClientMessage::parse(&b).unwrap();
        let longest = ProxyReply { kind: ReplyKind::Offer, server: [10, 9, 0, 2], boot_file: "h".repeat(MAX_BOOT_FILE), protocol: BootProtocol::Http };
        assert_eq!(longest.encode(&with_id).unwrap().len(), 410);
        let pxe = ProxyReply { protocol: BootProtocol::Pxe, ..longest };
        assert_eq!(pxe.encode(&with_id).unwrap().len(), MIN_MESSAGE);
    }

    #[test]
    fn an_http_boot_answer_carries_the_url_in_option_67_too() {
        let b = discover(&options(b"HTTPClient:Arch:00016", 16, &[]));
        let m = ClientMessage::parse(&b).unwrap();
        let url = "http://10.9.0.2:8700/v1/pxe/snponly.efi";
        let out = ProxyReply { kind: ReplyKind::Offer, server: [10, 9, 0, 2], boot_file: url.into(), protocol: BootProtocol::Http }.encode(&m).unwrap();
        let opts = &out[FIXED + 4..];
        assert_eq!(&opts[9..21], b"\x3c\x0aHTTPClient");
        assert_eq!(opts[21], 67);
        assert_eq!(&opts[23..23 + url.len()], url.as_bytes());
    }
}
