//! Load against a running node (scripts/bench-load): many clients at once, each on its own
//! keep-alive connection, mixing small jobs, jobs with large inputs, module uploads and boot
//! artifact downloads for a fixed time, while the node's RSS is sampled. Prints one
//! `name value unit` line per figure; answers other than 200/201/429/503 (and transport
//! failures) are counted as errors.
//! Usage: bench_load ADDR NODE_PID WASM_DIR ARTIFACT_PATH [CLIENTS] [SECONDS]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phase_core::encoding::{base64_encode, hex_encode};
use phase_core::sha256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    SmallJob,
    LargeInput,
    Upload,
    Download,
}

const KINDS: [Kind; 4] = [Kind::SmallJob, Kind::LargeInput, Kind::Upload, Kind::Download];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::SmallJob => "small_job",
            Kind::LargeInput => "large_input",
            Kind::Upload => "upload",
            Kind::Download => "download",
        }
    }
}

struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    /// One request on the kept-alive connection (reconnecting when the node closed it):
    /// (status, body bytes), or None for a transport failure.
    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Option<(u16, usize)> {
        for _ in 0..2 {
            if self.stream.is_none() {
                let s = TcpStream::connect(self.addr).ok()?;
                s.set_nodelay(true).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
                self.stream = Some(BufReader::new(s));
            }
            match self.exchange(method, path, body) {
                Some(r) => return Some(r),
                None => self.stream = None,
            }
        }
        None
    }

    fn exchange(&mut self, method: &str, path: &str, body: &[u8]) -> Option<(u16, usize)> {
        let r = self.stream.as_mut()?;
        let head = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n", body.len());
        r.get_mut().write_all(head.as_bytes()).ok()?;
        r.get_mut().write_all(body).ok()?;
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
        let (mut len, mut close) = (0usize, false);
        loop {
            line.clear();
            r.read_line(&mut line).ok()?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':')?;
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
            if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                close = true;
            }
        }
        std::io::copy(&mut r.by_ref().take(len as u64), &mut std::io::sink()).ok()?;
        if close {
            self.stream = None;
        }
        Some((status, len))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()))
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    latencies: Vec<(Kind, f64)>,
    statuses: Vec<(Kind, u16)>,
    failures: Vec<Kind>,
    bytes: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: bench_load ADDR NODE_PID WASM_DIR ARTIFACT_PATH [CLIENTS] [SECONDS]");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR");
    let pid: u32 = args[2].parse().expect("NODE_PID");
    let hello = std::fs::read(format!("{}/hello.wasm", args[3])).expect("hello.wasm");
    let sha = std::fs::read(format!("{}/sha256sum.wasm", args[3])).expect("sha256sum.wasm");
    let artifact = args[4].clone();
    let clients: usize = args.get(5).and_then(|v| v.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(6).and_then(|v| v.parse().ok()).unwrap_or(20);

    let mut setup = Conn { addr, stream: None };
    let up = setup.call("PUT", "/v1/modules", &hello).map(|r| r.0);
    assert!(matches!(up, Some(200 | 201)), "uploading hello: {up:?}");
    let small = format!("{{\"module_sha256\":\"{}\",\"input\":\"{}\"}}", hex_encode(&sha256(&hello)), base64_encode(b"Hello, World")).into_bytes();
    // 4 MiB of input, inline module: the largest requests a default node takes, roughly.
    let input: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let large = Arc::new(format!("{{\"module\":\"{}\",\"input\":\"{}\"}}", base64_encode(&sha), base64_encode(&input)).into_bytes());
    let small = Arc::new(small);
    let (hello, artifact) = (Arc::new(hello), Arc::new(artifact));

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (stop, tally, small, large, hello, artifact) = (stop.clone(), tally.clone(), small.clone(), large.clone(), hello.clone(), artifact.clone());
            std::thread::spawn(move || {
                // 60% small jobs, 15% large inputs, 10% uploads, 15% downloads, by client.
                let kind = match i % 20 {
                    0..=11 => Kind::SmallJob,
                    12..=14 => Kind::LargeInput,
                    15 | 16 => Kind::Upload,
                    _ => Kind::Download,
                };
                let mut conn = Conn { addr, stream: None };
                let mut local = Tally::default();
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    n += 1;
                    let t = Instant::now();
                    let result = match kind {
                        Kind::SmallJob => conn.call("POST", "/v1/jobs", &small),
                        Kind::LargeInput => conn.call("POST", "/v1/jobs", &large),
                        Kind::Upload => {
                            // A module of its own every tenth upload (a custom section makes new bytes).
                            let mut m = (*hello).clone();
                            if n % 10 == 0 {
                                let tag = format!("bench-{i}-{n}");
                                m.extend_from_slice(&[0, (tag.len() + 1) as u8, tag.len() as u8]);
                                m.extend_from_slice(tag.as_bytes());
                            }
                            conn.call("PUT", "/v1/modules", &m)
                        }
                        Kind::Download => conn.call("GET", &artifact, b""),
                    };
                    match result {
                        Some((status, len)) => {
                            local.latencies.push((kind, t.elapsed().as_secs_f64() * 1e6));
                            local.statuses.push((kind, status));
                            local.bytes += len as u64;
                            if status == 429 || status == 503 {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                        None => {
                            local.failures.push(kind);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                let mut t = tally.lock().unwrap();
                t.latencies.extend(local.latencies);
                t.statuses.extend(local.statuses);
                t.failures.extend(local.failures);
                t.bytes += local.bytes;
            })
        })
        .collect();
    let mut peak = rss(pid);
    while started.elapsed() < Duration::from_secs(seconds) {
        peak = peak.max(rss(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let t = tally.lock().unwrap();
    println!("clients {clients} clients");
    println!("duration {elapsed:.1} s");
    println!("peak_rss {:.1} MiB", peak as f64 / 1048576.0);
    let ok = t.statuses.iter().filter(|(_, s)| *s == 200 || *s == 201).count();
    println!("throughput_ok {:.0} req/s", ok as f64 / elapsed);
    println!("throughput_bytes {:.1} MiB/s", t.bytes as f64 / elapsed / 1048576.0);
    for kind in KINDS {
        let mut lat: Vec<f64> = t.latencies.iter().filter(|(k, _)| *k == kind).map(|(_, l)| *l).collect();
        lat.sort_by(f64::total_cmp);
        let count = |pred: &dyn Fn(u16) -> bool| t.statuses.iter().filter(|(k, s)| *k == kind && pred(*s)).count();
        println!("{}_ok {} answers", kind.name(), count(&|s| s == 200 || s == 201));
        println!("{}_refused {} answers", kind.name(), count(&|s| s == 429 || s == 503));
        println!("{}_p50 {:.0} us", kind.name(), percentile(&lat, 0.5));
        println!("{}_p99 {:.0} us", kind.name(), percentile(&lat, 0.99));
    }
    let others: Vec<String> = t.statuses.iter().filter(|(_, s)| ![200, 201, 429, 503].contains(s)).map(|(k, s)| format!("{}:{s}", k.name())).collect();
    println!("other_answers {} answers", others.len());
    println!("transport_failures {} requests", t.failures.len());
    if !others.is_empty() {
        let mut uniq = others.clone();
        uniq.sort();
        uniq.dedup();
        eprintln!("answers other than 200/201/429/503: {}", uniq.join(" "));
    }
}
