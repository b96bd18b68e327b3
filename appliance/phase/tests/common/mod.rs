//! Shared test fixtures: the guest programs built by scripts/build-wasm-examples.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bytes of guest `name`; fails loudly if the guests were not built.
pub fn guest(name: &str) -> Vec<u8> {
    let path = repo_root().join("build/wasm").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; build the guests first with scripts/build-wasm-examples", path.display())
    })
}

pub fn guest_path(name: &str) -> PathBuf {
    let path = repo_root().join("build/wasm").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} missing: run scripts/build-wasm-examples", path.display());
    path
}

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs `phase ARGS…`: its exit code and its stdout then stderr.
pub fn run_phase(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phase")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// A `phase node` process on a free loopback port; killed (by PID) when dropped.
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    /// Its log lines so far (for failure messages).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Node {
    pub fn start(extra: &[&str]) -> Node {
        Node::spawn(Command::new(env!("CARGO_BIN_EXE_phase")).args(["node", "--http", "127.0.0.1:0"]).args(extra))
    }

    /// A node started with these environment variables set.
    pub fn start_with_env(env: &[(&str, &str)], extra: &[&str]) -> Node {
        Node::spawn(Command::new(env!("CARGO_BIN_EXE_phase")).args(["node", "--http", "127.0.0.1:0"]).args(extra).envs(env.iter().copied()))
    }

    /// A node whose address space is limited to `kib` KiB (`ulimit -v`), so that large
    /// allocations fail as on a host out of memory.
    pub fn start_with_address_space(kib: u64, extra: &[&str]) -> Node {
        let script = format!("ulimit -v {kib} && exec \"$0\" node --http 127.0.0.1:0 \"$@\"");
        Node::spawn(Command::new("sh").args(["-c", &script, env!("CARGO_BIN_EXE_phase")]).args(extra))
    }

    /// A node started by `cmd` (a `phase node` command line of the test's making).
    pub fn spawn(cmd: &mut Command) -> Node {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn phase node");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut addr = None;
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for line in lines.by_ref() {
            let line = line.expect("read node log");
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("listening on http://").nth(1) {
                addr = Some(rest.trim().parse().expect("address"));
            }
            if line.contains("accepting jobs") {
                break;
            }
        }
        // Keep draining the log so the node never blocks on a full pipe.
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        let addr = addr.unwrap_or_else(|| {
            let status = child.wait().ok();
            panic!("node did not start: {status:?}")
        });
        Node { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the node process has ended (crashed or aborted: tests never stop it early).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Starts a node that must refuse to start; returns its error output.
    pub fn start_expect_failure(extra: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_phase"))
            .args(["node", "--http", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("spawn phase node");
        assert!(!out.status.success(), "node started but should have refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        http(self.addr, method, path, body)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client over std (one request per connection).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    http_with(addr, method, path, "", body)
}

/// As `http`, with extra header lines (each ending in CRLF).
pub fn http_with(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (e.g. 413) and close before reading a large body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    HttpResponse { status, headers, body: raw[split + 4..].to_vec() }
}

/// Pulls a top-level field out of a JSON object by parsing it with miniserde.
pub fn json_field(text: &str, field: &str) -> miniserde::json::Value {
    use miniserde::json::{self, Value};
    match json::from_str::<Value>(text).expect("JSON") {
        Value::Object(map) => map.get(field).cloned().unwrap_or(Value::Null),
        _ => panic!("not an object: {text}"),
    }
}

pub fn json_string(text: &str, field: &str) -> String {
    match json_field(text, field) {
        miniserde::json::Value::String(s) => s,
        other => panic!("{field} is not a string: {:?} in {text}", miniserde::json::to_string(&other)),
    }
}

pub fn json_u64(text: &str, field: &str) -> Option<u64> {
    match json_field(text, field) {
        miniserde::json::Value::Number(miniserde::json::Number::U64(n)) => Some(n),
        _ => None,
    }
}

/// The `receipt` object of a job response, re-serialised.
pub fn receipt_of(text: &str) -> String {
    miniserde::json::to_string(&json_field(text, "receipt"))
}

/// A raw TCP connection to a node, for hostile-client tests: what to send is up to the test,
/// and a source address other than 127.0.0.1 (any of 127/8) stands for another host.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::connect_from(addr, [127, 0, 0, 1])
    }

    pub fn connect_from(addr: SocketAddr, source: [u8; 4]) -> Raw {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.bind(&SocketAddr::from((source, 0)).into()).expect("bind source address");
        s.connect(&addr.into()).expect("connect");
        let stream: TcpStream = s.into();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw { stream }
    }

    /// Shrinks the receive buffer, so a client that stops reading stalls the server's writes
    /// after a few KiB instead of after the kernel's default megabytes.
    pub fn small_receive_buffer(&self) {
        let s = socket2::SockRef::from(&self.stream);
        s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads until the server closes (or the read timeout): everything it sent.
    pub fn read_all(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Reads one response (head and a `Content-Length` body) on a connection that stays open;
    /// its status, or None if the server closed or sent something else first.
    pub fn one_response(&mut self) -> Option<u16> {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            match self.stream.read(&mut byte) {
                Ok(1) => got.push(byte[0]),
                _ => return None,
            }
        }
        let head = String::from_utf8_lossy(&got).into_owned();
        let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: "))?.trim().parse().ok()?;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).ok()?;
        status_of(&got)
    }

    /// The status code of the first response in what the server sent before closing.
    pub fn status(&mut self) -> Option<u16> {
        status_of(&self.read_all())
    }

    /// True once the server has closed the connection (a read returns end of file or a
    /// reset) within `within`; bytes it sends first are skipped.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        let mut buf = [0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
                Err(_) => return true,
            }
        }
    }
}

/// The status code at the start of an HTTP/1.1 response.
pub fn status_of(raw: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(raw.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// The node process's resident set size, in bytes (Linux /proc).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
