//! The release protocol between nodes (`/phase/release/1.0.0`, docs/protocol.md): a node tells
//! its peers of a release it learnt (the publisher's signed manifest) or of a release that
//! failed on a node (that node's signed failure report). The request is one notice, JSON of at
//! most 16 KiB in a u32-length frame (refused from its length, before it is read); the answer
//! is one byte: 1 if the notice was news to the receiver (it verified and keeps it, and tells
//! its own peers), 0 if not (known already, older, untrusted, malformed or over the sender's
//! budget). What a notice means is `update`'s to judge; this file only moves bytes.

use std::io;

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;

use super::cancel::{read_flag, write_flag};
use super::jobs::{read_frame, write_frame};
pub use phase_core::boot::rollout::MAX_NOTICE;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/phase/release/1.0.0");

#[derive(Clone, Default)]
pub struct NoticeCodec;

#[async_trait::async_trait]
impl libp2p::request_response::Codec for NoticeCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    /// Whether the notice was news to the receiver.
    type Response = bool;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>> {
        Ok(read_frame(io, MAX_NOTICE, None).await?.bytes)
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<bool> {
        read_flag(io, "a notice answer").await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, notice: Vec<u8>) -> io::Result<()> {
        write_frame(io, &notice, MAX_NOTICE).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, news: bool) -> io::Result<()> {
        write_flag(io, news).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    #[test]
    fn notices_round_trip_and_oversized_ones_are_refused_before_reading() {
        smol::block_on(async {
            let mut buf = Cursor::new(Vec::new());
            NoticeCodec.write_request(&PROTOCOL, &mut buf, b"{\"format\":\"x\"}".to_vec()).await.unwrap();
            let mut back = Cursor::new(buf.into_inner());
            assert_eq!(NoticeCodec.read_request(&PROTOCOL, &mut back).await.unwrap(), b"{\"format\":\"x\"}");
            // A header announcing more than the cap: refused without reading a body.
            let mut big = (MAX_NOTICE as u32 + 1).to_be_bytes().to_vec();
            big.extend_from_slice(b"{}");
            assert!(NoticeCodec.read_request(&PROTOCOL, &mut Cursor::new(big)).await.is_err());
            assert!(NoticeCodec.read_response(&PROTOCOL, &mut Cursor::new(vec![7u8])).await.is_err());
        });
    }
}
