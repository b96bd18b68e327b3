#![no_main]
//! Job request bodies (HTTP and peers): what parsed emits a peer form that parses to the same.
use libfuzzer_sys::fuzz_target;
use phase_core::job::request::{JobRequest, PeerFiles, PeerModule};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = JobRequest::parse(data) {
        let again = JobRequest::parse(req.to_peer_json(PeerModule::Hash(&[0; 32]), PeerFiles::Inline).as_bytes()).expect("the peer form parses");
        assert_eq!((&again.input, &again.args, &again.env, again.limits), (&req.input, &req.args, &req.env, req.limits));
    }
});
