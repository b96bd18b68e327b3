#![no_main]
//! The netboot fetcher's response heads, from untrusted providers.
use libfuzzer_sys::fuzz_target;
use phase_core::net::http::parse_response;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, used))) = parse_response(data) {
        assert!(used <= data.len());
        assert!((100..=599).contains(&head.status));
        let _ = head.header("etag");
    }
});
