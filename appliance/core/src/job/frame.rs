//! Frames of the peer protocols (`/phase/job/1.0.0`, `/phase/load/1.0.0`, docs/protocol.md): a
//! u32 big-endian length, then that many bytes. The length is judged against the reader's cap
//! before a byte of the payload is read or a byte of memory reserved for it.

use alloc::vec::Vec;
use core::fmt;

/// Bytes of the length prefix.
pub const PREFIX: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The declared length is above the cap.
    TooLarge { len: u64, cap: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, cap } => write!(f, "frame of {len} bytes is above the cap of {cap}"),
        }
    }
}
impl core::error::Error for FrameError {}


/// The payload length a prefix declares, if it is within `cap`.
pub fn declared_len(prefix: [u8; PREFIX], cap: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(n) if n <= cap => Ok(n),
        _ => Err(FrameError::TooLarge { len: u64::from(len), cap }),
    }
}

/// The frame for `payload`.
pub fn encode(payload: &[u8], cap: usize) -> Result<Vec<u8>, FrameError> {
    let len = u32::try_from(payload.len()).ok().filter(|&n| n as usize <= cap).ok_or(FrameError::TooLarge { len: payload.len() as u64, cap })?;
    let mut out = Vec::with_capacity(PREFIX + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The first frame in `buf`: Ok(None) while incomplete, else its payload and the bytes it took.
pub fn decode(buf: &[u8], cap: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(prefix) = buf.get(..PREFIX) else { return Ok(None) };
    let len = declared_len(prefix.try_into().unwrap_or([0; PREFIX]), cap)?;
    Ok(buf.get(PREFIX..PREFIX + len).map(|p| (p, PREFIX + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_lengths_above_the_cap_are_refused_from_the_prefix() {
        let f = encode(b"abc", 10).unwrap();
        assert_eq!(f, b"\0\0\0\x03abc");
        assert_eq!(decode(&f, 10), Ok(Some((&b"abc"[..], 7))));
        assert_eq!(decode(&f[..5], 10), Ok(None));
        assert_eq!(decode(&f[..2], 10), Ok(None));
        assert_eq!(decode(b"\xff\xff\xff\xff", 10), Err(FrameError::TooLarge { len: u32::MAX as u64, cap: 10 }));
        assert_eq!(encode(b"abc", 2), Err(FrameError::TooLarge { len: 3, cap: 2 }));
        assert_eq!(decode(b"\0\0\0\0", 0), Ok(Some((&b""[..], 4))));
    }
}
