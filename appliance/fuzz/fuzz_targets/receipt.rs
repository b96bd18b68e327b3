#![no_main]
//! Receipts from executors and clients: parse, emit again, verify; never a panic.
use libfuzzer_sys::fuzz_target;
use phase_core::job::receipt::Receipt;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Receipt::from_json(text) {
        let _ = r.verify_signature();
        let again = Receipt::from_json(&r.to_json()).expect("an emitted receipt parses");
        assert_eq!(again.to_json(), r.to_json());
    }
});
