#![no_main]
//! Boot manifests from untrusted providers: parse and verify against a key; never a panic.
use libfuzzer_sys::fuzz_target;
use phase_core::boot::manifest::{Arch, Manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Manifest::from_json(text) {
        let _ = m.verify(&[[7; 32]], 1_800_000_000, Arch::X86_64, Some(3));
        let _ = m.check_artifact("kernel", data);
        let again = Manifest::from_json(&m.to_json()).expect("an emitted manifest parses");
        assert_eq!(again.to_json(), m.to_json());
    }
});
