//! The cancel protocol between nodes (`/phase/job-cancel/1.0.0`): the node that sent a job
//! asks the executor to stop it. The request names the job request it cancels by the SHA-256
//! of that request's frame (what the executor received; job ids would not do, since each
//! node resolves omitted limits with its own defaults); the answer is one byte: 1 if a job of
//! that requester with that hash was running and is told to stop, 0 otherwise (the executor
//! then remembers the cancel for a while, in case the job frame is still on its way).
//!
//! Frames are fixed-size and read exactly: 32 bytes one way, 1 byte the other.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/phase/job-cancel/1.0.0");

#[derive(Clone, Default)]
pub struct CancelCodec;

#[async_trait::async_trait]
impl libp2p::request_response::Codec for CancelCodec {
    type Protocol = StreamProtocol;
    /// The SHA-256 of the job request frame to stop.
    type Request = [u8; 32];
    /// Whether a running job was told to stop.
    type Response = bool;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<[u8; 32]> {
        let mut digest = [0u8; 32];
        io.read_exact(&mut digest).await?;
        Ok(digest)
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<bool> {
        read_flag(io, "a cancel answer").await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, digest: [u8; 32]) -> io::Result<()> {
        io.write_all(&digest).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, stopping: bool) -> io::Result<()> {
        write_flag(io, stopping).await
    }
}

/// A one-byte yes/no answer (cancels, notices): exactly 0 or 1.
pub(super) async fn read_flag<T: AsyncRead + Unpin + Send>(io: &mut T, what: &str) -> io::Result<bool> {
    let mut byte = [0u8; 1];
    io.read_exact(&mut byte).await?;
    match byte[0] {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(io::Error::new(io::ErrorKind::InvalidData, format!("{what} is 0 or 1, not {b}"))),
    }
}

pub(super) async fn write_flag<T: AsyncWrite + Unpin + Send>(io: &mut T, flag: bool) -> io::Result<()> {
    io.write_all(&[flag as u8]).await?;
    io.close().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    #[test]
    fn frames_round_trip_and_short_or_bad_frames_are_errors() {
        smol::block_on(async {
            let mut buf = Cursor::new(Vec::new());
            CancelCodec.write_request(&PROTOCOL, &mut buf, [7; 32]).await.unwrap();
            assert_eq!(CancelCodec.read_request(&PROTOCOL, &mut Cursor::new(buf.into_inner())).await.unwrap(), [7; 32]);
            let mut buf = Cursor::new(Vec::new());
            CancelCodec.write_response(&PROTOCOL, &mut buf, true).await.unwrap();
            assert!(CancelCodec.read_response(&PROTOCOL, &mut Cursor::new(buf.into_inner())).await.unwrap());
            assert!(CancelCodec.read_request(&PROTOCOL, &mut Cursor::new(vec![1u8; 31])).await.is_err());
            assert!(CancelCodec.read_response(&PROTOCOL, &mut Cursor::new(vec![2u8])).await.is_err());
            assert!(CancelCodec.read_response(&PROTOCOL, &mut Cursor::new(vec![])).await.is_err());
        });
    }
}
