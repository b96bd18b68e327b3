//! Hostile clients against a real `phase node` on loopback: lengths it cannot honour, heads
//! too large, slow and idle connections, connection floods, replies it must keep in bounded
//! memory. Each case ends with the node alive and answering honest clients at once.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use phase_core::encoding::base64_encode;

fn job_body(module: &[u8], input: &[u8], extra: &str) -> Vec<u8> {
    format!("{{\"module\":\"{}\",\"input\":\"{}\"{extra}}}", base64_encode(module), base64_encode(input)).into_bytes()
}

/// Sends `head` (and nothing else) on a fresh connection; the status the node answered.
fn answer_to(addr: SocketAddr, head: &str) -> Option<u16> {
    let mut c = Raw::connect(addr);
    c.send(head.as_bytes()).unwrap();
    c.status()
}

/// An honest request that must be answered within `within`, however busy the node's
/// connections are: (status, body).
fn honest(addr: SocketAddr, method: &str, path: &str, body: &[u8], within: Duration) -> (u16, String) {
    let started = Instant::now();
    let mut c = Raw::connect(addr);
    c.stream.set_read_timeout(Some(within)).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
    c.send(head.as_bytes()).unwrap();
    c.send(body).unwrap();
    let raw = c.read_all();
    let status = status_of(&raw).unwrap_or_else(|| panic!("{method} {path}: no answer within {within:?}"));
    assert!(started.elapsed() < within, "{method} {path} took {:?}", started.elapsed());
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (status, String::from_utf8_lossy(&raw[split + 4..]).into_owned())
}

fn alive(node: &mut Node) {
    assert!(node.exited().is_none(), "the node died: {:?}\n{}", node.exited(), node.log());
    assert_eq!(honest(node.addr, "GET", "/health", b"", Duration::from_secs(2)).0, 200);
}

#[test]
fn lengths_that_cannot_be_honoured_are_refused_and_the_node_survives() {
    let mut node = Node::start(&[]);
    let a = node.addr;
    let cases: &[(&str, u16)] = &[
        // Bodies above the route's cap: refused before anything is read or allocated.
        ("GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775808\r\n\r\n", 413),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n", 413),
        ("PUT /v1/modules HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n", 413),
        // Lengths that are not one decimal number.
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400),
        // Duplicates and conflicts: the ground of request smuggling.
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
        ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 411),
        // Not HTTP/1.x, no Host, a request target that is not a path.
        ("GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("GET /health HTTP/1.1\r\n\r\n", 400),
        ("GET http://x/health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n", 417),
    ];
    for (head, want) in cases {
        assert_eq!(answer_to(a, head), Some(*want), "{head:?}");
        alive(&mut node);
    }
}

#[test]
fn heads_too_large_or_not_http_get_an_answer_or_a_close() {
    let mut node = Node::start(&[]);
    let a = node.addr;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(answer_to(a, &format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n")), Some(431));
    let long = "a".repeat(17 << 10);
    assert_eq!(answer_to(a, &format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Long: {long}\r\n\r\n")), Some(431));
    // A head that never ends is cut at the cap, not buffered for ever.
    assert_eq!(answer_to(a, &format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Long: {long}")), Some(431));
    assert_eq!(answer_to(a, &format!("GET /{long} HTTP/1.1\r\nHost: x\r\n\r\n")), Some(431));
    for junk in [&b"\x00\xff\xfe\r\n\r\n"[..], b"GET\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", b"\r\n\r\n\r\n"] {
        let mut c = Raw::connect(a);
        c.send(junk).unwrap();
        let got = c.read_all();
        assert!(got.is_empty() || status_of(&got) == Some(400), "{junk:?} -> {:?}", String::from_utf8_lossy(&got));
        alive(&mut node);
    }
    // Every byte value in a request line and a header: an answer or a close, never a crash.
    for b in 0..=255u8 {
        let mut c = Raw::connect(a);
        let mut req = b"GET /hea".to_vec();
        req.push(b);
        req.extend_from_slice(b"lth HTTP/1.1\r\nHost: x\r\nX: a");
        req.push(b);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        c.send(&req).unwrap();
        let got = c.read_all();
        assert!(got.is_empty() || status_of(&got).is_some(), "byte {b}: {:?}", String::from_utf8_lossy(&got));
    }
    alive(&mut node);
}

#[test]
fn slow_and_idle_connections_cost_no_worker_and_are_cut() {
    // One job slot: on a server with a worker per connection, a handful of slow clients would
    // already hold every worker.
    let mut node = Node::start(&["--max-concurrent", "1"]);
    let a = node.addr;
    let started = Instant::now();
    // Job requests whose bodies stall after 10 bytes.
    let mut stalled: Vec<Raw> = (0..24)
        .map(|_| {
            let mut c = Raw::connect(a);
            c.send(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"module\":").unwrap();
            c
        })
        .collect();
    // Connections that never send a byte.
    let mut idle: Vec<Raw> = (0..24).map(|_| Raw::connect(a)).collect();
    // Heads trickled a byte every 300 ms (each byte well within any per-read timeout).
    let trickles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Raw::connect(a);
                let t0 = Instant::now();
                for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain(b"a".repeat(200).iter()) {
                    if c.send(&[*b]).is_err() {
                        return Some(t0.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                None
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // Honest clients are served at once meanwhile.
    let (st, body) = honest(a, "POST", "/v1/jobs", &job_body(&guest("hello"), b"honest", ""), Duration::from_secs(5));
    assert_eq!(st, 200, "{body}");
    assert_eq!(honest(a, "GET", "/health", b"", Duration::from_secs(1)).0, 200);
    assert_eq!(honest(a, "GET", "/v1/status", b"", Duration::from_secs(1)).0, 200);

    // And the slow ones are cut: stalled bodies and idle connections within ~10 s (the body's
    // and the head's timeouts), trickled heads by the head's overall timeout.
    for c in stalled.iter_mut().chain(idle.iter_mut()) {
        assert!(c.closed_within(Duration::from_secs(25).saturating_sub(started.elapsed())), "a slow connection was not cut");
    }
    for t in trickles {
        let cut = t.join().unwrap().expect("a trickled head was never cut");
        assert!(cut < Duration::from_secs(25), "trickled head cut after {cut:?}");
    }
    assert!(started.elapsed() >= Duration::from_secs(8), "cut too early ({:?}): honest slow links need time", started.elapsed());
    alive(&mut node);
}

/// A silent connection from `source`, old enough to be displaced.
fn silent_from(a: SocketAddr, source: [u8; 4]) -> Raw {
    Raw::connect_from(a, source)
}

/// How many of `conns` the node has closed within `within`.
fn closed(conns: &mut [Raw], within: Duration) -> usize {
    let until = Instant::now() + within;
    conns.iter_mut().map(|c| c.closed_within(until.saturating_duration_since(Instant::now()).max(Duration::from_millis(50)))).filter(|&gone| gone).count()
}

#[test]
fn at_the_caps_a_newcomer_displaces_the_least_active_connection_never_one_being_served() {
    let mut node = Node::start(&["--max-connections", "8", "--max-connections-per-ip", "4", "--max-concurrent", "4"]);
    let a = node.addr;
    // The per-address cap: four silent connections, then a fifth from the same host that
    // speaks is served, and one silent connection is closed to make room.
    let mut mine: Vec<Raw> = (0..4).map(|_| silent_from(a, [127, 0, 0, 1])).collect();
    std::thread::sleep(Duration::from_millis(400));
    let mut fifth = Raw::connect(a);
    fifth.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(fifth.status(), Some(200));
    assert_eq!(closed(&mut mine, Duration::from_secs(1)), 1, "one silent connection made room");
    // Connections being served are never displaced: four slow jobs fill another host's cap;
    // its fifth connection is refused with the canned 503, at once.
    let slow = job_body(&guest("hostile-loop"), b"", ",\"limits\":{\"deadline_ms\":3000,\"fuel\":1000000000000}");
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let body = slow.clone();
            std::thread::spawn(move || {
                let mut c = Raw::connect_from(a, [127, 0, 0, 5]);
                c.send(format!("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).unwrap();
                c.send(&body).unwrap();
                c.status()
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(2);
    while metric(&node, "phase_jobs_in_flight") < 4 {
        assert!(Instant::now() < until, "the four slow jobs did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut refused = Raw::connect_from(a, [127, 0, 0, 5]);
    refused.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let t = Instant::now();
    let raw = refused.read_all();
    assert_eq!(status_of(&raw), Some(503), "{}", String::from_utf8_lossy(&raw));
    assert!(t.elapsed() < Duration::from_secs(2));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
    assert_eq!((len, json_string(body, "error").as_str()), (body.len(), "too_many_connections"), "{text}");
    assert!(head.contains("Retry-After: 1"), "{head}");
    for b in busy {
        assert_eq!(b.join().unwrap(), Some(200), "a job being served was never cut");
    }
    // The total cap: eight silent connections from two more hosts fill it; a newcomer from a
    // fourth host is served, and one silent connection goes.
    drop(mine);
    std::thread::sleep(Duration::from_millis(300));
    let mut silent: Vec<Raw> = (0..8).map(|i| silent_from(a, [127, 0, 0, 6 + (i % 2) as u8])).collect();
    std::thread::sleep(Duration::from_millis(400));
    let mut newcomer = Raw::connect_from(a, [127, 0, 0, 8]);
    newcomer.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(newcomer.status(), Some(200));
    assert!(closed(&mut silent, Duration::from_secs(1)) >= 1, "a silent connection made room");
    assert!(metric(&node, "phase_http_connections_displaced_total") >= 2);
    drop(silent);
    std::thread::sleep(Duration::from_millis(200));
    alive(&mut node);
}

fn metric(node: &Node, name: &str) -> u64 {
    let text = node.request("GET", "/metrics", b"").text();
    text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn bodies_that_never_come_hold_no_memory_and_slow_ones_are_cut_at_the_minimum_rate() {
    // An appliance's budget: 192 MiB.
    let mut node = Node::start(&["--memory-budget", "201326592", "--max-concurrent", "2"]);
    let a = node.addr;
    let free = memory(&node, "free_bytes");
    let max_input = json_u64(&node.request("GET", "/v1/status", b"").text(), "max_input_bytes").unwrap();
    let declared = max_input / 3 * 4 + 1000;
    // Forty heads of large job bodies, from five hosts, that send no body byte: the memory
    // their bodies would take is not held while nothing comes.
    let mut waiting: Vec<Raw> = (0..40)
        .map(|i| {
            let mut c = Raw::connect_from(a, [127, 0, 1, (i % 5) as u8 + 1]);
            c.send(format!("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n").as_bytes()).unwrap();
            c
        })
        .collect();
    // And four that trickle a byte a second (far below 64 KiB/s).
    let trickles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Raw::connect_from(a, [127, 0, 2, i + 1]);
                c.send(format!("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n").as_bytes()).unwrap();
                let t0 = Instant::now();
                while c.send(b"{").is_ok() && t0.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(1000));
                }
                t0.elapsed()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(memory(&node, "free_bytes") >= free - (8 << 20), "bodies that did not come hold no memory: {} of {free} free", memory(&node, "free_bytes"));
    // Honest jobs are served meanwhile, a large one too.
    let (st, body) = honest(a, "POST", "/v1/jobs", &job_body(&guest("hello"), b"honest", ""), Duration::from_secs(5));
    assert_eq!(st, 200, "{body}");
    let big = job_body(&guest("sha256sum"), &vec![7u8; (max_input / 2) as usize], "");
    let (st, body) = honest(a, "POST", "/v1/jobs", &big, Duration::from_secs(20));
    assert_eq!(st, 200, "{body}");
    // After the 10 s grace, a body below the minimum rate is cut within a second or two.
    for c in waiting.iter_mut() {
        assert!(c.closed_within(Duration::from_secs(16)), "a body that never came was not cut");
    }
    // A trickle is cut at 10-11 s (the grace, judged each second), then lingers at most 3 s
    // (2 s of grace, judged each second, its rate far below the minimum); sending a byte a
    // second, the client sees the reset one or two sends later: 18 s at most.
    for t in trickles {
        let cut = t.join().unwrap();
        assert!(cut >= Duration::from_secs(9) && cut < Duration::from_secs(18), "a trickled body was cut after {cut:?}");
    }
    alive(&mut node);
}

/// Sends 1 KiB every `every` on a clone of `c`'s socket until a write fails or `until` has
/// passed since `started`; the time it stopped and whether a write failed.
fn sender(c: &Raw, every: Duration, chunk: usize, started: Instant, until: Duration) -> std::thread::JoinHandle<(Duration, bool)> {
    let mut s = c.stream.try_clone().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        let bytes = vec![b'x'; chunk];
        loop {
            if s.write_all(&bytes).is_err() {
                return (started.elapsed(), true);
            }
            if started.elapsed() >= until {
                return (started.elapsed(), false);
            }
            std::thread::sleep(every);
        }
    })
}

#[test]
fn a_refused_connection_lingers_outside_the_caps_while_its_client_keeps_sending() {
    let mut node = Node::start(&["--max-connections", "8", "--max-connections-per-ip", "8"]);
    let a = node.addr;
    let head = b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n";
    // Eight heads whose bodies are above the cap: each is answered 413 and its connection
    // leaves the caps at once. Seven trickle (10 KiB/s, below the minimum rate): cut once the
    // 2 s grace has passed. One sends as an honest client does, 2.5 MiB/s for 6 s, longer than
    // the grace, and only then reads: its writes never fail and the answer is there.
    let mut refused: Vec<Raw> = (0..8)
        .map(|_| {
            let mut c = Raw::connect(a);
            c.send(head).unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    let fast = sender(&refused[0], Duration::from_millis(100), 256 << 10, started, Duration::from_secs(6));
    let slow: Vec<_> = refused[1..].iter().map(|c| sender(c, Duration::from_millis(100), 1024, started, Duration::from_secs(20))).collect();
    std::thread::sleep(Duration::from_millis(300));
    // The caps are free for others at once.
    assert_eq!(honest(a, "GET", "/health", b"", Duration::from_secs(1)).0, 200);
    for c in refused[1..].iter_mut() {
        assert_eq!(status_of(&c.read_all()), Some(413));
    }
    for s in slow {
        let (stopped, failed) = s.join().unwrap();
        assert!(failed && stopped < Duration::from_secs(8), "a trickling refused client could keep sending for {stopped:?}");
    }
    let (stopped, failed) = fast.join().unwrap();
    assert!(!failed, "the node cut a refused client sending at 2.5 MiB/s after {stopped:?}");
    assert_eq!(status_of(&refused[0].read_all()), Some(413), "the answer to a client that read after sending was lost");
    alive(&mut node);
}

#[test]
fn keep_alive_pipelining_head_and_expect_continue_work() {
    let node = Node::start(&[]);
    let mut c = Raw::connect(node.addr);
    // Two requests in one write, answered in order on one connection.
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let text = String::from_utf8_lossy(&c.read_all()).into_owned();
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    assert!(text.contains("{\"status\":\"ok\"}") && text.contains("\"node_key\""), "{text}");
    // HEAD: the GET's length, no body.
    let mut c = Raw::connect(node.addr);
    c.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let text = String::from_utf8_lossy(&c.read_all()).into_owned();
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("Content-Length: 15\r\n") && text.ends_with("\r\n\r\n"), "{text}");
    // Expect: 100-continue gets its interim answer before the body is sent (curl sends it).
    let body = job_body(&guest("hello"), b"continue", "");
    let mut c = Raw::connect(node.addr);
    let head = format!("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    c.send(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    std::io::Read::read_exact(&mut c.stream, &mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(&body).unwrap();
    assert_eq!(c.status(), Some(200));
    // A body above the cap with Expect is refused before it is sent.
    let mut c = Raw::connect(node.addr);
    c.send(b"PUT /v1/modules HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 999999999\r\n\r\n").unwrap();
    assert_eq!(c.status(), Some(413));
}

/// The memory this node accounts for, from /v1/status.
fn memory(node: &Node, field: &str) -> u64 {
    let text = node.request("GET", "/v1/status", b"").text();
    match json_field(&text, "memory") {
        miniserde::json::Value::Object(m) => match m.get(field) {
            Some(miniserde::json::Value::Number(miniserde::json::Number::U64(n))) => *n,
            _ => panic!("no memory.{field} in {text}"),
        },
        _ => panic!("no memory in {text}"),
    }
}

#[test]
fn job_results_kept_for_idempotency_are_bounded_by_bytes() {
    let node = Node::start(&["--max-result-bytes", "7000000"]);
    let flood = guest("hostile-output");
    // Each job keeps 1 MiB of output; the answers of keyed jobs run here get 3/16 of the 7 MB
    // (1.3 MB): one fits, four do not.
    let run = |key: &str| {
        let extra = format!(",\"limits\":{{\"output_bytes\":1048576}},\"idempotency_key\":\"{key}\"");
        let r = node.request("POST", "/v1/jobs", &job_body(&flood, b"", &extra));
        assert_eq!(r.status, 200, "{}", r.text());
        matches!(json_field(&r.text(), "replayed"), miniserde::json::Value::Bool(true))
    };
    for k in ["k1", "k2", "k3", "k4"] {
        assert!(!run(k), "{k} ran");
    }
    assert!(run("k4"), "the newest result is kept");
    assert!(!run("k1"), "the oldest result was forgotten to stay under the byte cap, so k1 ran again");
    assert!(memory(&node, "results_bytes") <= 7_000_000 / 16 * 3);
}

#[test]
fn memory_admission_refuses_what_does_not_fit_and_the_node_stays_within_its_budget() {
    let budget = 96u64 << 20;
    // The memory limit a job may ask for is allowed up to 1 GiB, so what stops a large one is
    // the memory left, not the limit.
    let mut node = Node::start(&["--memory-budget", &budget.to_string(), "--max-concurrent", "8", "--max-memory-bytes", "1073741824"]);
    let a = node.addr;
    let free = memory(&node, "free_bytes");
    assert!(free < budget, "caches take their share of the budget first");
    // A job whose memory limit is above what is free is refused without running.
    let greedy = format!(",\"limits\":{{\"memory_bytes\":{}}}", free + (1 << 20));
    let r = node.request("POST", "/v1/jobs", &job_body(&guest("hello"), b"x", &greedy));
    assert_eq!((r.status, json_string(&r.text(), "error").as_str()), (503, "no_memory"), "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    // Jobs that each take a third of it (and their output and overhead besides): two run at
    // once, the others are refused, none waits.
    let each = free / 3;
    let slow = job_body(&guest("hostile-loop"), b"", &format!(",\"limits\":{{\"memory_bytes\":{each},\"deadline_ms\":2000,\"fuel\":1000000000000}}"));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let body = slow.clone();
            std::thread::spawn(move || http(a, "POST", "/v1/jobs", &body).status)
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 503].contains(s)), "{statuses:?}");
    // Request bodies are memory too: 24 clients sending job bodies with the largest input at
    // once; those that do not fit are refused before their bodies are read, and the process
    // stays within its budget.
    let max_input = json_u64(&node.request("GET", "/v1/status", b"").text(), "max_input_bytes").unwrap() as usize;
    let big = vec![b'A'; max_input / 3 * 4];
    let body = format!("{{\"input\":\"{}\",\"module\":\"AA\"}}", String::from_utf8_lossy(&big)).into_bytes();
    let before = rss_bytes(node.pid());
    let handles: Vec<_> = (0..24)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || http(a, "POST", "/v1/jobs", &body).status)
        })
        .collect();
    let mut peak = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        peak = peak.max(rss_bytes(node.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.contains(&503), "some bodies cannot fit: {statuses:?}");
    assert!(statuses.iter().all(|s| [400, 413, 422, 503].contains(s)), "{statuses:?}");
    // Beyond the budget a node keeps at most its allocator's block cache (16 MiB).
    assert!(peak < before + budget + (16 << 20), "RSS grew from {before} to {peak}, beyond the {budget}-byte budget and the allocator's cache");
    alive(&mut node);
}
