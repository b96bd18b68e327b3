#![no_main]
//! `Range` header values against bodies of every size: a part is always within the body.
use libfuzzer_sys::fuzz_target;
use phase_core::net::http::{parse_range, Range};

fuzz_target!(|data: &[u8]| {
    let (size, value) = match data.split_first_chunk::<8>() {
        Some((size, rest)) => (u64::from_le_bytes(*size), rest),
        None => (1000, data),
    };
    let Ok(value) = std::str::from_utf8(value) else { return };
    if let Range::Part { start, end } = parse_range(value, size) {
        assert!(start <= end && end < size);
    }
});
