//! The boot's self-test: once the node is up, PID 1 sends it one small job over loopback and
//! verifies the answer as any client does (phase_core's one check, signed by this node's own
//! key). It shows on the console that this machine runs jobs, network or not.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use phase_core::encoding::base64_encode;
use phase_core::job::answer::{Answer, Asked};
use phase_core::job::RequestedLimits;

/// A WASI module that writes `phase self-test ok\n` to stdout (147 bytes), as:
/// `(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
///  (memory (export "memory") 1) (data (i32.const 16) "phase self-test ok\n")
///  (func (export "_start") (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 19))
///   (drop (call 0 (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`
pub const MODULE: [u8; 147] = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x02, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00, 0x02,
    0x23, 0x01, 0x16, 0x77, 0x61, 0x73, 0x69, 0x5f, 0x73, 0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72, 0x65, 0x76, 0x69, 0x65,
    0x77, 0x31, 0x08, 0x66, 0x64, 0x5f, 0x77, 0x72, 0x69, 0x74, 0x65, 0x00, 0x00, 0x03, 0x02, 0x01, 0x01, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07,
    0x13, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x01, 0x0a, 0x1d, 0x01,
    0x1b, 0x00, 0x41, 0x00, 0x41, 0x10, 0x36, 0x02, 0x00, 0x41, 0x04, 0x41, 0x13, 0x36, 0x02, 0x00, 0x41, 0x01, 0x41, 0x00, 0x41, 0x01, 0x41,
    0x08, 0x10, 0x00, 0x1a, 0x0b, 0x0b, 0x19, 0x01, 0x00, 0x41, 0x10, 0x0b, 0x13, 0x70, 0x68, 0x61, 0x73, 0x65, 0x20, 0x73, 0x65, 0x6c, 0x66,
    0x2d, 0x74, 0x65, 0x73, 0x74, 0x20, 0x6f, 0x6b, 0x0a,
];
pub const OUTPUT: &[u8] = b"phase self-test ok\n";
/// The whole exchange, connect to last byte.
const WITHIN: Duration = Duration::from_secs(10);
/// The answer is a few KiB; more is not an answer.
const MAX_REPLY: u64 = 64 * 1024;

/// Runs the job on the node at `port` and checks its answer: signed by `key`, for this job,
/// with the output the module writes. Ok carries the receipt's job id (hex) and fuel.
pub fn run(port: u16, key: &[u8; 32]) -> Result<(String, u64), String> {
    let body = format!("{{\"module\":\"{}\",\"input\":\"\"}}", base64_encode(&MODULE));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = TcpStream::connect_timeout(&addr, WITHIN).map_err(|e| format!("connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(WITHIN)).and_then(|()| conn.set_write_timeout(Some(WITHIN))).map_err(|e| format!("{addr}: {e}"))?;
    let request = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).map_err(|e| format!("sending the job: {e}"))?;
    let mut reply = Vec::new();
    conn.take(MAX_REPLY).read_to_end(&mut reply).map_err(|e| format!("reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("the answer has no HTTP head")?;
    let status = head.split_ascii_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("the node answered {status}: {}", body.trim()));
    }
    let answer = Answer::parse(body).map_err(|e| format!("the answer: {e}"))?;
    let limits = RequestedLimits::default();
    let asked = Asked {
        module_sha256: &phase_core::sha256(&MODULE),
        input_sha256: &phase_core::sha256(b""),
        args: &[],
        env: &[],
        limits: &limits,
        signer: Some(key),
        files: None,
    };
    answer.verify(&asked).map_err(|e| format!("the answer does not verify: {e}"))?;
    if answer.stdout != OUTPUT {
        return Err(format!("the job wrote {:?}, not {:?}", String::from_utf8_lossy(&answer.stdout), String::from_utf8_lossy(OUTPUT)));
    }
    Ok((phase_core::encoding::hex_encode(&answer.job_id), answer.fuel_used))
}
