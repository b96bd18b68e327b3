#![no_main]
//! Release notices from untrusted peers (`/phase/release/1.0.0`): a manifest or a failure
//! report; parsed, verified, re-emitted; never a panic.
use libfuzzer_sys::fuzz_target;
use phase_core::boot::manifest::Arch;
use phase_core::boot::rollout::{Notice, POSITIONS};

fuzz_target!(|data: &[u8]| {
    match Notice::parse(data) {
        Ok(Notice::Release(m, _)) => {
            let _ = m.verify(&[[7; 32]], 1_800_000_000, Arch::X86_64, Some(3));
            if let Some(r) = &m.body.rollout {
                for p in [0, POSITIONS / 2, POSITIONS - 1] {
                    let _ = r.starts_at(m.body.created_at, p);
                }
            }
        }
        Ok(Notice::Failure(r)) => {
            let again = Notice::parse(r.to_json().as_bytes()).expect("an emitted report parses");
            assert_eq!(again, Notice::Failure(r));
        }
        Err(_) => {}
    }
});
