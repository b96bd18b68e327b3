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
/// Largest record frame: the JSON of two u32s fits with room to spare.
pub const MAX_RECORD: usize = 128;
/// How often the node compares its load with what it last sent.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A record is resent at least this often, so peers can tell a quiet node from a gone one.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// A record not refreshed for this long is stale: the peer's load is unknown again.
pub const TTL: Duration = Duration::from_secs(30);

/// How busy a node is: jobs running and job slots (`--max-concurrent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub in_flight: u32,
    pub slots: u32,
}

/// A load as sent: numbered by its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub load: Load,
}

impl Record {
    pub fn to_json(self) -> String {
        format!("{{\"seq\":{},\"in_flight\":{},\"slots\":{}}}", self.seq, self.load.in_flight, self.load.slots)
    }

    /// Parses a record; anything else (unknown or missing fields, zero slots, more than 128
    /// bytes) is an error naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Record, String> {
        use miniserde::json::{self, Number, Value};
        if bytes.len() > MAX_RECORD {
            return Err(format!("load record of {} bytes is above {MAX_RECORD}", bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "load record is not UTF-8".to_string())?;
        let Ok(Value::Object(map)) = json::from_str::<Value>(text) else {
            return Err("load record is not a JSON object".into());
        };
        let get = |name: &str, max: u64| match map.get(name) {
            Some(Value::Number(Number::U64(n))) if *n <= max => Ok(*n),
            Some(_) => Err(format!("load record field {name:?} is not a number up to {max}")),
            None => Err(format!("load record lacks {name:?}")),
        };
        if let Some(other) = map.keys().find(|k| !["seq", "in_flight", "slots"].contains(&k.as_str())) {
            return Err(format!("load record has an unknown field {other:?}"));
        }
        let u32_max = u32::MAX as u64;
        let load = Load { in_flight: get("in_flight", u32_max)? as u32, slots: get("slots", u32_max)? as u32 };
        if load.slots == 0 {
            return Err("load record has 0 slots".into());
        }
        Ok(Record { seq: get("seq", u64::MAX)?, load })
    }
}

#[derive(Clone, Default)]
pub struct LoadCodec {
    /// Test fixture: write a frame header announcing 1 MiB instead of the record.
    pub oversized: bool,
}

async fn read_record<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Record> {
    let bytes = read_frame(io, MAX_RECORD).await?;
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
    fn records_round_trip_and_bad_ones_are_named() {
        let record = Record { seq: u64::MAX, load: Load { in_flight: 3, slots: 4 } };
        assert_eq!(Record::parse(record.to_json().as_bytes()), Ok(record));
        for (bad, why) in [
            (&b"{\"seq\":1,\"in_flight\":1}"[..], "lacks \"slots\""),
            (b"{\"in_flight\":1,\"slots\":1}", "lacks \"seq\""),
            (b"{\"seq\":1,\"in_flight\":1,\"slots\":0}", "0 slots"),
            (b"{\"seq\":1,\"in_flight\":-1,\"slots\":2}", "not a number up to 4294967295"),
            (b"{\"seq\":1,\"in_flight\":4294967296,\"slots\":2}", "not a number up to 4294967295"),
            (b"{\"seq\":1,\"in_flight\":1,\"slots\":2,\"x\":1}", "unknown field \"x\""),
            (b"[1,2]", "not a JSON object"),
            (b"\xff", "not UTF-8"),
        ] {
            let e = Record::parse(bad).unwrap_err();
            assert!(e.contains(why), "{e} for {:?}", String::from_utf8_lossy(bad));
        }
        assert!(Record::parse(&[b' '; 129]).unwrap_err().contains("above 128"));
    }

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
