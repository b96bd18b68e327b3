//! Engine and HTTP figures for scripts/bench-jobs. Prints one `name value unit` line per figure.
//! Usage: bench_jobs WASM_DIR
//!        bench_jobs WASM_DIR cpu-once metered|unmetered   (one cpu-bench run, for callgrind)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phase::engine::{Engine, Job, DEFAULT_MAX_MODULE_BYTES};
use phase::node::{Node, NodeConfig};
use phase_core::encoding::{base64_encode, hex_encode};
use phase_core::job::JobSpec;
use phase_core::job::receipt::Outcome;
use phase_core::{sha256, Limits};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn job(engine: &Engine, bytes: &[u8], input: &[u8]) -> Job {
    let module = engine.compile(bytes).expect("compiles");
    let spec = JobSpec::new(module.sha256, sha256(input), vec![], vec![], Limits::DEFAULT).unwrap();
    Job { spec, module, input: Arc::from(input), blobs: Default::default(), progress: Default::default() }
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        Client { reader: BufReader::new(s.try_clone().unwrap()), writer: s }
    }

    fn post(&mut self, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
        self.writer.write_all(head.as_bytes()).unwrap();
        self.writer.write_all(body).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut len = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).unwrap();
        (status, body)
    }
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: bench_jobs WASM_DIR");
    let read = |n: &str| std::fs::read(format!("{dir}/{n}.wasm")).expect("guest");
    let hello = read("hello");
    let cpu = read("cpu-bench");
    let n = std::env::var("CPU_N").unwrap_or_else(|_| "3000000".into());

    if std::env::args().nth(2).as_deref() == Some("cpu-once") {
        let engine = match std::env::args().nth(3).as_deref() {
            Some("unmetered") => Engine::unmetered(DEFAULT_MAX_MODULE_BYTES),
            _ => Engine::new(DEFAULT_MAX_MODULE_BYTES),
        };
        let ex = engine.run(&job(&engine, &cpu, n.as_bytes()));
        assert_eq!(ex.outcome, Outcome::Exited(0));
        return;
    }

    // 1. instantiate + run of hello, in-process, module cached.
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let hello_job = job(&engine, &hello, b"Hello, World");
    let mut samples = Vec::new();
    for i in 0..2200 {
        let t = Instant::now();
        let ex = engine.run(&hello_job);
        let us = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(ex.outcome, Outcome::Exited(0));
        if i >= 200 {
            samples.push(us);
        }
    }
    samples.sort_by(f64::total_cmp);
    println!("hello_run_p50 {:.1} us", percentile(&samples, 0.5));
    println!("hello_run_p99 {:.1} us", percentile(&samples, 0.99));
    let t = Instant::now();
    let fresh = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    fresh.compile(&hello).unwrap();
    println!("hello_compile {:.1} us", t.elapsed().as_secs_f64() * 1e6);

    // 2. fuel metering on vs off on the CPU kernel.
    // Interleaved rounds, best of each: the machine's noise hits both sides alike.
    let unmetered_engine = Engine::unmetered(DEFAULT_MAX_MODULE_BYTES);
    let jobs = [job(&engine, &cpu, n.as_bytes()), job(&unmetered_engine, &cpu, n.as_bytes())];
    let mut best = [f64::MAX; 2];
    for _ in 0..5 {
        for (i, eng) in [&engine, &unmetered_engine].into_iter().enumerate() {
            let t = Instant::now();
            let ex = eng.run(&jobs[i]);
            assert_eq!(ex.outcome, Outcome::Exited(0), "{:?}", ex.detail);
            best[i] = best[i].min(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let [metered, unmetered] = best;
    println!("cpu_metered {metered:.1} ms");
    println!("cpu_unmetered {unmetered:.1} ms");
    println!("metering_overhead {:.1} %", (metered / unmetered - 1.0) * 100.0);

    // 3. jobs through POST /v1/jobs on loopback (module uploaded once, named by hash).
    // A node as `phase node --http 127.0.0.1:0 --max-concurrent 2 --max-connections 256` starts one.
    let mut config = NodeConfig::new("127.0.0.1:0");
    config.max_concurrent = Some(2);
    config.max_connections = Some(256);
    let server = Node::start(config).expect("a node");
    server.jobs.put_module(hello.clone()).unwrap();
    let body = format!(
        "{{\"module_sha256\":\"{}\",\"input\":\"{}\"}}",
        hex_encode(&sha256(&hello)),
        base64_encode(b"Hello, World")
    )
    .into_bytes();
    let mut client = Client::connect(server.addr());
    let mut lat = Vec::new();
    for i in 0..2200 {
        let t = Instant::now();
        let (status, _) = client.post("/v1/jobs", &body);
        assert_eq!(status, 200);
        if i >= 200 {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    lat.sort_by(f64::total_cmp);
    println!("http_job_p50 {:.0} us", percentile(&lat, 0.5));
    println!("http_job_p99 {:.0} us", percentile(&lat, 0.99));
    let addr = server.addr();
    let window = Duration::from_secs(2);
    let counts: Vec<_> = (0..2)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < window {
                    assert_eq!(c.post("/v1/jobs", &body).0, 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = counts.into_iter().map(|h| h.join().unwrap()).sum();
    println!("http_jobs_per_sec_2_clients {:.0} jobs/s", total as f64 / window.as_secs_f64());
    drop(client);
    server.stop();
}
