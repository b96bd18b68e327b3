//! The load protocol between nodes (`/phase/load/1.0.0`): a node tells a peer how busy it is
//! and gets the peer's load in the answer, so one exchange refreshes both sides. A node sends
//! its record to every connected Phase peer when its load changes (checked every 250 ms) and
//! at least every 10 s; a record older than 30 s is stale and no longer used.
//!
//! Record: `{"seq":S,"in_flight":N,"slots":M}`, JSON, at most 128 bytes in a u32-length frame.
//! `seq` grows with every record a node makes: records cross on concurrent streams, and a
//! receiver keeps only the newest (a request made later may arrive before an older answer).
//! identify's agent string carries the fixed capabilities (it cannot change once sent); DHT
//! records take seconds to spread, too slow for load that changes per job.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::jobs::{read_frame, write_frame};
use libp2p::StreamProtocol;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/phase/load/1.0.0");
pub use phase_core::job::load::{Load, Record, MAX_RECORD};
/// How often the node compares its load with what it last sent.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A record is resent at least this often, so peers can tell a quiet node from a gone one.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// A record not refreshed for this long is stale: the peer's load is unknown again.
pub const TTL: Duration = Duration::from_secs(30);

#[derive(Clone, Default)]
pub struct LoadCodec {
    /// Test fixture: write a frame header announcing 1 MiB instead of the record.
    pub oversized: bool,
}

async fn read_record<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Record> {
    let bytes = read_frame(io, MAX_RECORD, None).await?.bytes;
    Record::parse(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_record<T: AsyncWrite + Unpin + Send>(io: &mut T, record: Record, oversized: bool) -> io::Result<()> {
    if oversized {
        io.write_all(&(1u32 << 20).to_be_bytes()).await?;
        io.write_all(record.to_json().as_bytes()).await?;
        return io.close().await;
    }
    write_frame(io, record.to_json().as_bytes(), MAX_RECORD).await
}

#[async_trait::async_trait]
impl libp2p::request_response::Codec for LoadCodec {
    type Protocol = StreamProtocol;
    type Request = Record;
    type Response = Record;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Record> {
        read_record(io).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Record> {
        read_record(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, record: Record) -> io::Result<()> {
        write_record(io, record, self.oversized).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, record: Record) -> io::Result<()> {
        write_record(io, record, self.oversized).await
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
            let mut buf = Cursor::new(Vec::new());
            let record = Record { seq: 7, load: Load { in_flight: 0, slots: 2 } };
            LoadCodec::default().write_request(&PROTOCOL, &mut buf, record).await.unwrap();
            let mut rd = Cursor::new(buf.into_inner());
            assert_eq!(LoadCodec::default().read_request(&PROTOCOL, &mut rd).await.unwrap(), record);
            let mut huge = Cursor::new(u32::MAX.to_be_bytes().to_vec());
            assert!(LoadCodec::default().read_response(&PROTOCOL, &mut huge).await.unwrap_err().to_string().contains("above the cap of 128"));
            let mut garbage = Cursor::new([0, 0, 0, 2, b'{', b'}'].to_vec());
            assert!(LoadCodec::default().read_request(&PROTOCOL, &mut garbage).await.unwrap_err().to_string().contains("lacks"));
        });
    }
}
