#![no_main]
//! TFTP packets from any host on the boot LAN: parse never panics, and what the server agrees
//! to for a read request stays within its bounds.
use libfuzzer_sys::fuzz_target;
use phase_core::net::tftp::{Packet, MAX_BLOCK, MAX_NAME, MAX_WINDOW};

fuzz_target!(|data: &[u8]| {
    if let Ok(Packet::Read(r)) = Packet::parse(data) {
        assert!(!r.name.is_empty() && r.name.len() <= MAX_NAME);
        let a = r.agree();
        assert!(a.blksize >= 8 && a.blksize <= MAX_BLOCK && a.windowsize >= 1 && a.windowsize <= MAX_WINDOW);
        let oack = r.oack(&a, u64::MAX);
        assert_eq!(&oack[..2], &[0, 6]);
    }
});
