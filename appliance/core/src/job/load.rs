//! Load records (`/phase/load/1.0.0`, docs/protocol.md): how busy a node is, as it tells its
//! peers. `{"seq":S,"in_flight":N,"slots":M}`, JSON, at most [`MAX_RECORD`] bytes; `seq` grows
//! with every record a node makes, so a receiver keeps only the newest.

use alloc::format;
use alloc::string::{String, ToString};

use miniserde::json::{self, Number, Value};

/// Largest record: the JSON of a u64 and two u32s fits with room to spare.
pub const MAX_RECORD: usize = 128;

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
                if bytes.len() > MAX_RECORD {
            return Err(format!("load record of {} bytes is above {MAX_RECORD}", bytes.len()));
        }
        let text = core::str::from_utf8(bytes).map_err(|_| "load record is not UTF-8".to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
