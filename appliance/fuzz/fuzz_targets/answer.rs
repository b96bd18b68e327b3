#![no_main]
//! Executors' replies and job answers (from peers, and what clients save): parse, emit again,
//! parse back equal; never a panic.
use libfuzzer_sys::fuzz_target;
use phase_core::job::answer::{Answer, Reply};

fuzz_target!(|data: &[u8]| {
    if let Ok(Reply::Done(a)) = Reply::parse(data) {
        let again = Answer::parse(&a.to_json()).expect("an emitted answer parses");
        assert_eq!(again, a);
        assert_eq!(again.to_json(), a.to_json());
    }
});
