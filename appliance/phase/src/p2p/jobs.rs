//! The job protocol between nodes (`/phase/job/1.0.0`): one request-response exchange per job.
//! Both directions carry the JSON of the HTTP API (docs/api.md): the request is a
//! `POST /v1/jobs` body, the answer the job answer or `{"status","error","message"}`. Frames
//! are a u32 big-endian length and the bytes (phase_core::job::frame), under caps, so a hostile
//! peer cannot make us buffer more than a job may legitimately need. A request frame is read
//! only while the node has a free job slot, as it arrives (memory grows with the bytes that
//! came, never ahead of them by more than 64 KiB) and from the node's memory pool.

use std::io;
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use phase_core::job::frame;

use crate::memory::{Budget, Reservation};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/phase/job/1.0.0");
/// Default request cap: the largest request a node with default limits takes (16 MiB module
/// and 16 MiB input in base64, plus 1 MiB of JSON), as for HTTP bodies (api.rs).
pub const DEFAULT_MAX_REQUEST: usize = (32 << 20) / 3 * 4 + (1 << 20);
/// Output (16 MiB hard max) in base64 (stdout and stderr share it), the receipt and JSON.
pub const MAX_RESPONSE: usize = 24 << 20;
/// Streams per connection (inbound + outbound): with the request cap, bounds what one peer
/// can make this node buffer.
pub const MAX_STREAMS: usize = 8;

/// Bytes a frame's buffer grows ahead of the bytes that arrived, at most.
const READ_STEP: usize = 64 << 10;

/// A job request as it arrived, with the memory it holds from the node's pool.
#[derive(Debug)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub hold: Option<Reservation>,
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Frame {
        Frame { bytes, hold: None }
    }
}

/// Whether the node has a free job slot (a request frame is read only then).
pub type FreeSlot = Arc<dyn Fn() -> bool + Send + Sync>;

/// Frames with caps; the request cap follows the node's own module and input limits.
#[derive(Clone)]
pub struct JobCodec {
    pub max_request: usize,
    /// Where inbound request frames reserve their memory (none: unaccounted, for tests).
    pub budget: Option<Arc<Budget>>,
    pub free_slot: Option<FreeSlot>,
    /// Test fixture (`--fault peer-big-frames`): every job request this node sends announces
    /// 16 MiB, sends 12 MiB, and stalls.
    pub stall_frames: bool,
}

impl Default for JobCodec {
    fn default() -> Self {
        JobCodec { max_request: DEFAULT_MAX_REQUEST, budget: None, free_slot: None, stall_frames: false }
    }
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Reads one frame under `cap`, growing its buffer as bytes arrive and, with a budget, its
/// reservation with it.
pub(super) async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, cap: usize, budget: Option<&Arc<Budget>>) -> io::Result<Frame> {
    let mut prefix = [0u8; frame::PREFIX];
    io.read_exact(&mut prefix).await?;
    let len = frame::declared_len(prefix, cap).map_err(|e| refused(e.to_string()))?;
    let mut hold = match budget {
        Some(b) => Some(b.try_reserve(0).ok_or_else(|| refused("no memory".into()))?),
        None => None,
    };
    let mut buf: Vec<u8> = Vec::new();
    while buf.len() < len {
        let start = buf.len();
        let end = (start + READ_STEP).min(len);
        if buf.capacity() < end {
            // Geometric growth, but never past the declared length.
            let want = (buf.capacity() * 2).max(end).min(len);
            if let Some(h) = hold.as_mut() {
                if !h.try_grow((want - buf.capacity()) as u64) {
                    // The codec is not told the peer; the stream's end is all the peer sees.
                    let why = format!("no memory for a frame of {len} bytes ({start} read)");
                    log!("p2p: job request refused: {why}");
                    return Err(refused(why));
                }
            }
            buf.reserve_exact(want - buf.len());
        }
        buf.resize(end, 0);
        io.read_exact(&mut buf[start..end]).await?;
    }
    Ok(Frame { bytes: buf, hold })
}

pub(super) async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8], cap: usize) -> io::Result<()> {
    let framed = frame::encode(data, cap).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    io.write_all(&framed[..frame::PREFIX]).await?;
    io.write_all(data).await?;
    io.close().await
}

#[async_trait::async_trait]
impl libp2p::request_response::Codec for JobCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame> {
        // A node without a free slot would only answer busy: it does not read the job at all
        // (the requester tries another peer, as for a busy answer).
        if self.free_slot.as_ref().is_some_and(|free| !free()) {
            return Err(refused("all job slots are busy".into()));
        }
        read_frame(io, self.max_request, self.budget.as_ref()).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>> {
        // An answer is awaited for a job this node sent: its size is the output cap's.
        Ok(read_frame(io, MAX_RESPONSE, None).await?.bytes)
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, req: Frame) -> io::Result<()> {
        if self.stall_frames {
            io.write_all(&(16u32 << 20).to_be_bytes()).await?;
            io.write_all(&vec![b' '; 12 << 20]).await?;
            io.flush().await?;
            return futures::future::pending().await;
        }
        write_frame(io, &req.bytes, self.max_request).await
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
            let mut codec = JobCodec { max_request: 1000, ..Default::default() };
            let mut buf = Cursor::new(Vec::new());
            codec.write_request(&PROTOCOL, &mut buf, b"{\"input\":\"\"}".to_vec().into()).await.unwrap();
            let mut rd = Cursor::new(buf.into_inner());
            assert_eq!(codec.read_request(&PROTOCOL, &mut rd).await.unwrap().bytes, b"{\"input\":\"\"}");
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

    #[test]
    fn request_frames_grow_with_what_arrives_and_within_the_budget() {
        smol::block_on(async {
            let budget = Budget::new(300_000);
            let codec = || JobCodec { max_request: 1 << 20, budget: Some(budget.clone()), ..Default::default() };
            // Declares 1 MiB, sends 10 bytes and ends: only what arrived (plus one step) was held.
            let mut short = Cursor::new([&(1u32 << 20).to_be_bytes()[..], b"0123456789"].concat());
            assert!(codec().read_request(&PROTOCOL, &mut short).await.is_err());
            assert_eq!(budget.used(), 0, "given back");
            // A frame that fits, held until dropped.
            let frame = vec![7u8; 200_000];
            let mut ok = Cursor::new([&(frame.len() as u32).to_be_bytes()[..], &frame].concat());
            let got = codec().read_request(&PROTOCOL, &mut ok).await.unwrap();
            assert_eq!(got.bytes, frame);
            assert!(budget.used() >= 200_000 && budget.used() <= 300_000);
            // Another one does not fit beside it: refused, not allocated.
            let mut again = Cursor::new([&(frame.len() as u32).to_be_bytes()[..], &frame].concat());
            assert!(codec().read_request(&PROTOCOL, &mut again).await.unwrap_err().to_string().contains("no memory"));
            drop(got);
            assert_eq!(budget.used(), 0);
            // No free slot: the frame is not read at all.
            let busy = JobCodec { free_slot: Some(Arc::new(|| false)), ..codec() };
            let mut rd = Cursor::new([&3u32.to_be_bytes()[..], b"abc"].concat());
            assert!(busy.clone().read_request(&PROTOCOL, &mut rd).await.unwrap_err().to_string().contains("busy"));
            assert_eq!(rd.position(), 0);
        });
    }
}
