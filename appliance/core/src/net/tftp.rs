//! TFTP packets for a read-only server (RFC 1350, options RFC 2347-2349, windowsize RFC
//! 7440): read requests with their options parsed and bounded, ACKs and ERRORs; DATA, OACK and
//! ERROR written. A `Packet` that parsed is well-formed; write requests parse (so the server can
//! refuse them by name) but are never served.

use alloc::string::String;
use alloc::vec::Vec;

pub const PORT: u16 = 69;
/// RFC 1350's block size, used when the client asks for none.
pub const DEFAULT_BLOCK: u16 = 512;
/// Largest block the server agrees to: a 1500-byte Ethernet frame less IP, UDP and TFTP
/// headers (1500 - 20 - 8 - 4).
pub const MAX_BLOCK: u16 = 1468;
/// Largest window (blocks in flight before an ACK) the server agrees to.
pub const MAX_WINDOW: u16 = 16;
/// Longest file name read.
pub const MAX_NAME: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TftpError {
    Short,
    UnknownOpcode(u16),
    /// A string field without its NUL, or not UTF-8, or a name longer than MAX_NAME.
    BadString,
    BadMode,
    /// An option value that is not a number, out of its RFC range, or repeated.
    BadOption,
    /// Bytes after the last field of a fixed-size packet.
    Trailing,
}

impl core::fmt::Display for TftpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TftpError::Short => write!(f, "packet too short"),
            TftpError::UnknownOpcode(o) => write!(f, "unknown opcode {o}"),
            TftpError::BadString => write!(f, "a name field is not a NUL-terminated UTF-8 string of at most {MAX_NAME} bytes"),
            TftpError::BadMode => write!(f, "mode is neither octet nor netascii"),
            TftpError::BadOption => write!(f, "an option is malformed, out of range or repeated"),
            TftpError::Trailing => write!(f, "bytes after the packet"),
        }
    }
}

/// What a client asked for in a read request (options it did not send are None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub name: String,
    /// RFC 2348: 8 to 65464.
    pub blksize: Option<u16>,
    /// RFC 7440: 1 to 65535.
    pub windowsize: Option<u16>,
    /// RFC 2349: the client asks for the size with 0.
    pub tsize: bool,
    /// RFC 2349: 1 to 255 seconds.
    pub timeout: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Read(ReadRequest),
    Write,
    Ack(u16),
    Error(u16),
}

impl Packet {
    pub fn parse(b: &[u8]) -> Result<Packet, TftpError> {
        let op = u16::from_be_bytes([*b.first().ok_or(TftpError::Short)?, *b.get(1).ok_or(TftpError::Short)?]);
        let rest = &b[2..];
        match op {
            1 => parse_read(rest).map(Packet::Read),
            2 => Ok(Packet::Write),
            4 => match rest {
                [hi, lo] => Ok(Packet::Ack(u16::from_be_bytes([*hi, *lo]))),
                [_, _, ..] => Err(TftpError::Trailing),
                _ => Err(TftpError::Short),
            },
            5 => {
                let [hi, lo, ..] = rest else { return Err(TftpError::Short) };
                Ok(Packet::Error(u16::from_be_bytes([*hi, *lo])))
            }
            3 | 6 => Err(TftpError::UnknownOpcode(op)), // DATA, OACK: a server never receives them
            _ => Err(TftpError::UnknownOpcode(op)),
        }
    }
}

fn fields(mut b: &[u8]) -> Result<Vec<&str>, TftpError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let end = b.iter().position(|c| *c == 0).ok_or(TftpError::BadString)?;
        out.push(core::str::from_utf8(&b[..end]).map_err(|_| TftpError::BadString)?);
        b = &b[end + 1..];
        // name, mode and at most a handful of options; more is not a client we serve
        if out.len() > 2 + 2 * 8 {
            return Err(TftpError::BadOption);
        }
    }
    Ok(out)
}

fn parse_read(b: &[u8]) -> Result<ReadRequest, TftpError> {
    let f = fields(b)?;
    let (name, mode) = match f.as_slice() {
        [name, mode, ..] => (*name, *mode),
        _ => return Err(TftpError::Short),
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(TftpError::BadString);
    }
    if !mode.eq_ignore_ascii_case("octet") && !mode.eq_ignore_ascii_case("netascii") {
        return Err(TftpError::BadMode);
    }
    let opts = &f[2..];
    if opts.len() % 2 != 0 {
        return Err(TftpError::BadOption);
    }
    let mut r = ReadRequest { name: name.into(), blksize: None, windowsize: None, tsize: false, timeout: None };
    let mut seen_tsize = false;
    for pair in opts.chunks(2) {
        let number = |lo: u64, hi: u64| -> Result<u64, TftpError> {
            let n: u64 = pair[1].parse().map_err(|_| TftpError::BadOption)?;
            if (lo..=hi).contains(&n) { Ok(n) } else { Err(TftpError::BadOption) }
        };
        let fresh = |seen: bool| if seen { Err(TftpError::BadOption) } else { Ok(()) };
        match pair[0].to_ascii_lowercase().as_str() {
            "blksize" => {
                fresh(r.blksize.is_some())?;
                r.blksize = Some(number(8, 65464)? as u16);
            }
            "windowsize" => {
                fresh(r.windowsize.is_some())?;
                r.windowsize = Some(number(1, 65535)? as u16);
            }
            "tsize" => {
                fresh(seen_tsize)?;
                seen_tsize = true;
                r.tsize = number(0, u64::MAX)? == 0;
            }
            "timeout" => {
                fresh(r.timeout.is_some())?;
                r.timeout = Some(number(1, 255)? as u8);
            }
            _ => {} // unknown options are ignored (RFC 2347)
        }
    }
    Ok(r)
}

/// What the server agrees to for a request: the option values it will use, and whether to
/// answer with an OACK first (only when the client asked for an option the server honours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    pub blksize: u16,
    pub windowsize: u16,
    pub oack: bool,
}

impl ReadRequest {
    pub fn agree(&self) -> Agreed {
        Agreed {
            blksize: self.blksize.map_or(DEFAULT_BLOCK, |b| b.min(MAX_BLOCK)),
            windowsize: self.windowsize.map_or(1, |w| w.min(MAX_WINDOW)),
            oack: self.blksize.is_some() || self.windowsize.is_some() || self.tsize,
        }
    }

    /// The OACK for this request, file of `size` bytes.
    pub fn oack(&self, agreed: &Agreed, size: u64) -> Vec<u8> {
        let mut b = alloc::vec![0, 6];
        let mut opt = |k: &str, v: u64| {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(alloc::format!("{v}").as_bytes());
            b.push(0);
        };
        if self.blksize.is_some() {
            opt("blksize", agreed.blksize as u64);
        }
        if self.windowsize.is_some() {
            opt("windowsize", agreed.windowsize as u64);
        }
        if self.tsize {
            opt("tsize", size);
        }
        b
    }
}

/// A DATA packet: block number (wrapping) and up to one block of bytes.
pub fn data(block: u16, bytes: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + bytes.len());
    b.extend_from_slice(&[0, 3]);
    b.extend_from_slice(&block.to_be_bytes());
    b.extend_from_slice(bytes);
    b
}

/// TFTP error codes (RFC 1350).
pub const NOT_FOUND: u16 = 1;
pub const ACCESS: u16 = 2;
pub const ILLEGAL: u16 = 4;
pub const OPTION_REFUSED: u16 = 8;

pub fn error(code: u16, message: &str) -> Vec<u8> {
    let mut b = alloc::vec![0, 5];
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(message.as_bytes());
    b.push(0);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(parts: &[&str]) -> Vec<u8> {
        let mut b = alloc::vec![0, 1];
        for p in parts {
            b.extend_from_slice(p.as_bytes());
            b.push(0);
        }
        b
    }

    #[test]
    fn a_read_request_with_options_is_agreed_within_the_servers_bounds() {
        let Packet::Read(r) = Packet::parse(&rrq(&["snponly.efi", "octet", "blksize", "65464", "windowsize", "64", "tsize", "0"])).unwrap() else { panic!() };
        assert_eq!((r.name.as_str(), r.blksize, r.windowsize, r.tsize), ("snponly.efi", Some(65464), Some(64), true));
        let a = r.agree();
        assert_eq!(a, Agreed { blksize: MAX_BLOCK, windowsize: MAX_WINDOW, oack: true });
        assert_eq!(r.oack(&a, 173792), b"\0\x06blksize\x001468\0windowsize\x0016\0tsize\x00173792\0".to_vec());
        let Packet::Read(plain) = Packet::parse(&rrq(&["undionly.kpxe", "OCTET"])).unwrap() else { panic!() };
        assert_eq!(plain.agree(), Agreed { blksize: 512, windowsize: 1, oack: false });
        let Packet::Read(odd) = Packet::parse(&rrq(&["f", "octet", "x-unknown", "1", "blksize", "1024"])).unwrap() else { panic!() };
        assert_eq!(odd.oack(&odd.agree(), 9), b"\0\x06blksize\x001024\0".to_vec(), "unknown options are not echoed");
    }

    #[test]
    fn malformed_requests_are_refused_by_reason() {
        assert_eq!(Packet::parse(&[0]), Err(TftpError::Short));
        assert_eq!(Packet::parse(&[0, 9]), Err(TftpError::UnknownOpcode(9)));
        assert_eq!(Packet::parse(&[0, 3, 0, 1]), Err(TftpError::UnknownOpcode(3)));
        assert_eq!(Packet::parse(b"\0\x01name"), Err(TftpError::BadString), "no NUL");
        assert_eq!(Packet::parse(&rrq(&["name"])), Err(TftpError::Short));
        assert_eq!(Packet::parse(&rrq(&["name", "mail"])), Err(TftpError::BadMode));
        assert_eq!(Packet::parse(&rrq(&["", "octet"])), Err(TftpError::BadString));
        assert_eq!(Packet::parse(&rrq(&[&"n".repeat(129), "octet"])), Err(TftpError::BadString));
        assert_eq!(Packet::parse(&rrq(&["n", "octet", "blksize"])), Err(TftpError::BadOption));
        assert_eq!(Packet::parse(&rrq(&["n", "octet", "blksize", "7"])), Err(TftpError::BadOption));
        assert_eq!(Packet::parse(&rrq(&["n", "octet", "blksize", "1e3"])), Err(TftpError::BadOption));
        assert_eq!(Packet::parse(&rrq(&["n", "octet", "windowsize", "0"])), Err(TftpError::BadOption));
        assert_eq!(Packet::parse(&rrq(&["n", "octet", "blksize", "512", "BLKSIZE", "512"])), Err(TftpError::BadOption));
        let many: Vec<&str> = ["n", "octet"].into_iter().chain(core::iter::repeat_n("x", 20)).collect();
        assert_eq!(Packet::parse(&rrq(&many)), Err(TftpError::BadOption));
        assert_eq!(Packet::parse(&[0, 4, 0, 1, 0]), Err(TftpError::Trailing));
        assert_eq!(Packet::parse(&[0, 4, 0]), Err(TftpError::Short));
        assert_eq!(Packet::parse(&[0, 4, 0xff, 0xff]), Ok(Packet::Ack(65535)));
        assert_eq!(Packet::parse(&rrq(&["n", "octet"])[..2]), Err(TftpError::Short));
        assert_eq!(Packet::parse(&[0, 2, b'x', 0, b'o', 0]), Ok(Packet::Write));
    }

    #[test]
    fn data_and_error_packets_are_laid_out_as_rfc_1350_says() {
        assert_eq!(data(65535, b"ab"), alloc::vec![0, 3, 0xff, 0xff, b'a', b'b']);
        assert_eq!(error(NOT_FOUND, "no such file"), b"\0\x05\0\x01no such file\0".to_vec());
    }
}
