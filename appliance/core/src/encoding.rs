//! Hex and base64 codecs that never panic on hostile input (the earlier Phase's hex decoder
//! sliced strings by byte index and panicked on multibyte UTF-8).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The text has the wrong length (expected, found).
    Length { expected: usize, found: usize },
    /// A character outside the alphabet, at this byte offset.
    Character { offset: usize },
    /// Base64 padding in the wrong place or non-canonical trailing bits.
    Padding,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Length { expected, found } => {
                write!(f, "expected {expected} characters, found {found}")
            }
            DecodeError::Character { offset } => write!(f, "invalid character at offset {offset}"),
            DecodeError::Padding => f.write_str("invalid base64 padding"),
        }
    }
}
impl core::error::Error for DecodeError {}


const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex.
pub fn hex_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly `N` bytes of hex (either case).
pub fn hex_decode_array<const N: usize>(text: &str) -> Result<[u8; N], DecodeError> {
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return Err(DecodeError::Length { expected: N * 2, found: bytes.len() });
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or(DecodeError::Character { offset: 2 * i })?;
        let lo = hex_value(pair[1]).ok_or(DecodeError::Character { offset: 2 * i + 1 })?;
        out[i] = hi << 4 | lo;
    }
    Ok(out)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { B64[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { B64[n as usize & 63] as char } else { '=' });
    }
    out
}

fn b64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some((c - b'A') as u32),
        b'a'..=b'z' => Some((c - b'a' + 26) as u32),
        b'0'..=b'9' => Some((c - b'0' + 52) as u32),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Strict standard base64: padding required, no whitespace, canonical trailing bits.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        let expected = bytes.len().div_ceil(4) * 4;
        return Err(DecodeError::Length { expected, found: bytes.len() });
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (q, quad) in bytes.chunks_exact(4).enumerate() {
        let last = q + 1 == quads;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(DecodeError::Padding);
        }
        let mut n = 0u32;
        for (i, &c) in quad[..4 - pad].iter().enumerate() {
            let v = b64_value(c).ok_or(DecodeError::Character { offset: q * 4 + i })?;
            n |= v << (18 - 6 * i);
        }
        let out_len = 3 - pad;
        // Non-canonical encodings (stray low bits) would give two texts for one value.
        if (pad == 1 && n & 0xff != 0) || (pad == 2 && n & 0xffff != 0) {
            return Err(DecodeError::Padding);
        }
        let b = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&b[..out_len]);
    }
    Ok(out)
}

/// What strict base64 `text` decodes to from `offset`, `max` bytes at most, decoding only the
/// quads that hold them (a chunk of a large kept output costs its own size); and the length of
/// the whole decoded text. The quads decoded are checked as `base64_decode` checks them.
pub fn base64_decode_range(text: &str, offset: usize, max: usize) -> Result<(Vec<u8>, usize), DecodeError> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return Err(DecodeError::Length { expected: bytes.len().div_ceil(4) * 4, found: bytes.len() });
    }
    let pad = bytes.iter().rev().take(2).take_while(|&&c| c == b'=').count();
    let total = bytes.len() / 4 * 3 - pad;
    let start = offset.min(total);
    let end = total.min(start.saturating_add(max));
    if start == end {
        return Ok((Vec::new(), total));
    }
    let (q0, q1) = (start / 3, end.div_ceil(3));
    let quads = text.get(q0 * 4..q1 * 4).ok_or(DecodeError::Character { offset: q0 * 4 })?;
    let decoded = base64_decode(quads)?;
    let skip = start - q0 * 3;
    Ok((decoded[skip..skip + (end - start)].to_vec(), total))
}

const B58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Bitcoin-alphabet base58 (how libp2p writes peer ids), at most `max` bytes decoded: text
/// longer than that can hold is refused before any arithmetic.
pub fn base58_decode(text: &str, max: usize) -> Result<Vec<u8>, DecodeError> {
    // Each character carries log2(58) < 6 bits: 8 bytes need at least 11 characters.
    let limit = max * 138 / 100 + 1;
    if text.is_empty() || text.len() > limit {
        return Err(DecodeError::Length { expected: limit, found: text.len() });
    }
    let zeros = text.bytes().take_while(|&c| c == b'1').count();
    let mut out: Vec<u8> = Vec::with_capacity(max);
    for (offset, c) in text.bytes().enumerate() {
        let mut carry = B58.iter().position(|&a| a == c).ok_or(DecodeError::Character { offset })? as u32;
        for b in out.iter_mut().rev() {
            carry += (*b as u32) * 58;
            *b = carry as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    let mut bytes = alloc::vec![0u8; zeros];
    bytes.extend_from_slice(&out[out.iter().take_while(|&&b| b == 0).count()..]);
    if bytes.len() > max {
        return Err(DecodeError::Length { expected: max, found: bytes.len() });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_of_base64_decodes_only_its_quads_and_agrees_with_the_whole() {
        for len in 0..20usize {
            let data: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let text = base64_encode(&data);
            for offset in 0..len + 2 {
                for max in 0..len + 2 {
                    let want = &data[offset.min(len)..len.min(offset + max)];
                    assert_eq!(base64_decode_range(&text, offset, max), Ok((want.to_vec(), len)), "len {len} offset {offset} max {max}");
                }
            }
        }
        assert!(base64_decode_range("QUJD!", 0, 3).is_err());
        assert!(base64_decode_range("QU*D", 0, 3).is_err());
        assert!(base64_decode_range("QUJ\u{e9}UJD", 3, 3).is_err(), "a character boundary inside a quad is an error, not a panic");
        assert_eq!(base64_decode_range("QUJD", usize::MAX, usize::MAX), Ok((Vec::new(), 3)));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        assert_eq!(hex_encode(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(hex_decode_array::<3>("00ABff"), Ok([0, 0xab, 0xff]));
        assert_eq!(
            hex_decode_array::<2>("abc"),
            Err(DecodeError::Length { expected: 4, found: 3 })
        );
        // Multibyte UTF-8 must be an error, not a panic.
        assert!(hex_decode_array::<2>("aé").is_err());
        assert_eq!(hex_decode_array::<1>("g0"), Err(DecodeError::Character { offset: 0 }));
    }

    #[test]
    fn base64_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in cases {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn base64_rejects_malformed() {
        assert!(base64_decode("Zg=").is_err());
        assert!(base64_decode("Z===").is_err());
        assert!(base64_decode("Zg==Zm9v").is_err());
        assert!(base64_decode("Zh==").is_err(), "non-canonical trailing bits");
        assert!(base64_decode("Zm9 ").is_err());
        assert!(base64_decode("é===").is_err());
    }

    #[test]
    fn base64_all_byte_values() {
        let all: Vec<u8> = (0..=255u8).collect();
        for len in 0..all.len() {
            assert_eq!(base64_decode(&base64_encode(&all[..len])).unwrap(), &all[..len]);
        }
    }

    #[test]
    fn base58_decodes_peer_ids_and_refuses_the_rest() {
        // 0x00 0x01 0x02 -> "15T"; leading zero bytes are leading '1's.
        assert_eq!(base58_decode("15T", 8).unwrap(), [0, 1, 2]);
        assert_eq!(base58_decode("1111", 8).unwrap(), [0, 0, 0, 0]);
        assert_eq!(base58_decode("z", 8).unwrap(), [57]);
        assert!(base58_decode("0OIl", 8).is_err(), "outside the alphabet");
        assert!(base58_decode("", 8).is_err());
        assert!(base58_decode(&"z".repeat(100), 8).is_err(), "too long to fit");
        assert!(base58_decode("zzzzzzzzzzz", 8).is_err(), "decodes to more than the cap");
    }
}
