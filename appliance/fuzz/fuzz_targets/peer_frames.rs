#![no_main]
//! Peer-protocol frames and what they carry: job requests and load records.
use libfuzzer_sys::fuzz_target;
use phase_core::job::{frame, load::Record, request::JobRequest};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((payload, used))) = frame::decode(rest, 1 << 20) {
        assert_eq!(used, frame::PREFIX + payload.len());
        if let Ok(r) = Record::parse(payload) {
            assert_eq!(Record::parse(r.to_json().as_bytes()), Ok(r));
        }
        let _ = JobRequest::parse(payload);
        rest = &rest[used..];
    }
});
