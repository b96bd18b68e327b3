#![no_main]
//! The HTTP front's request heads: any bytes give a head, "need more", or an error with a
//! status to answer; a head that parsed has one body length.
use libfuzzer_sys::fuzz_target;
use phase_core::net::http::{parse_request, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(Some((head, used))) => {
            assert!(used <= data.len());
            assert!(head.target.starts_with('/'));
            let _ = (head.path(), head.query("cap"), head.header("host"));
        }
        Ok(None) => assert!(data.len() <= MAX_HEAD_BYTES + data.iter().take_while(|&&c| c == b'\r' || c == b'\n').count()),
        Err(e) => assert!([400, 411, 417, 431, 505].contains(&e.status())),
    }
});
