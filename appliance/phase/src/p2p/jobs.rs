//! The job protocol between nodes (`/phase/job/1.0.0`): one request-response exchange per job.
//! Both directions carry the JSON of the HTTP API (docs/api.md): the request is a
//! `POST /v1/jobs` body, the answer the job answer or `{"status","error","message"}`. Frames
//! are a u32 big-endian length and the bytes, under caps, so a hostile peer cannot make us
//! buffer more than a job may legitimately need.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/phase/job/1.0.0");
/// Default request cap: the largest request a node with default limits takes (16 MiB module
/// and 16 MiB input in base64, plus 1 MiB of JSON), as for HTTP bodies (api.rs).
pub const DEFAULT_MAX_REQUEST: usize = (32 << 20) / 3 * 4 + (1 << 20);
/// Output (16 MiB hard max) in base64 (stdout and stderr share it), the receipt and JSON.
pub const MAX_RESPONSE: usize = 24 << 20;
/// Streams per connection (inbound + outbound): with the request cap, bounds what one peer
/// can make this node buffer.
pub const MAX_STREAMS: usize = 8;

/// Frames with caps; the request cap follows the node's own module and input limits.
#[derive(Clone)]
pub struct JobCodec {
    pub max_request: usize,
}

impl Default for JobCodec {
    fn default() -> Self {
        JobCodec { max_request: DEFAULT_MAX_REQUEST }
    }
}

pub(super) async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, cap: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > cap {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes is above the cap of {cap}")));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

pub(super) async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8], cap: usize) -> io::Result<()> {
    if data.len() > cap {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("frame of {} bytes is above the cap of {cap}", data.len())));
    }
    io.write_all(&(data.len() as u32).to_be_bytes()).await?;
    io.write_all(data).await?;
    io.close().await
}

#[async_trait::async_trait]
impl libp2p::request_response::Codec for JobCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>> {
        read_frame(io, self.max_request).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>> {
        read_frame(io, MAX_RESPONSE).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, req: Vec<u8>) -> io::Result<()> {
        write_frame(io, &req, self.max_request).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, res: Vec<u8>) -> io::Result<()> {
        write_frame(io, &res, MAX_RESPONSE).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    #[test]
    fn frames_round_trip_and_oversized_frames_are_refused_before_reading() {
        smol::block_on(async {
            let mut codec = JobCodec { max_request: 1000 };
            let mut buf = Cursor::new(Vec::new());
            codec.write_request(&PROTOCOL, &mut buf, b"{\"input\":\"\"}".to_vec()).await.unwrap();
            let mut rd = Cursor::new(buf.into_inner());
            assert_eq!(codec.read_request(&PROTOCOL, &mut rd).await.unwrap(), b"{\"input\":\"\"}");
            // A length prefix above the cap: refused without allocating or reading the body.
            let mut huge = Cursor::new(((MAX_RESPONSE + 1) as u32).to_be_bytes().to_vec());
            let e = codec.read_response(&PROTOCOL, &mut huge).await.unwrap_err();
            assert!(e.to_string().contains("above the cap"), "{e}");
            // A truncated frame is an error, not a hang.
            let mut short = Cursor::new([0, 0, 0, 10, b'{'].to_vec());
            assert!(codec.read_request(&PROTOCOL, &mut short).await.is_err());
            // The request cap is the node's: 1000 bytes here.
            let mut over = Cursor::new(1001u32.to_be_bytes().to_vec());
            assert!(codec.read_request(&PROTOCOL, &mut over).await.unwrap_err().to_string().contains("above the cap of 1000"));
        });
    }
}
