#![no_main]
//! What peers announce and name: agent strings (capabilities) and peer ids; a capabilities
//! record that parsed is written again and reads back equal; never a panic.
use libfuzzer_sys::fuzz_target;
use phase_core::net::peer::{Capabilities, PeerName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = PeerName::parse(text) {
        assert_eq!(p.as_str(), text);
    }
    if let Some(c) = Capabilities::parse(text) {
        let again = Capabilities::parse(&c.to_agent()).expect("a written agent string parses");
        assert_eq!(again.admits(&Default::default()), true);
        assert_eq!(again.to_agent(), c.to_agent());
    }
});
