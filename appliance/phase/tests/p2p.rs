//! The peer network between real `phase node` processes on loopback (and, for mDNS, in two
//! network namespaces joined by a veth pair, so no multicast leaves the machine).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn status(node: &Node) -> String {
    node.request("GET", "/v1/status", b"").text()
}

fn p2p_field(node: &Node, field: &str) -> miniserde::json::Value {
    match json_field(&status(node), "p2p") {
        miniserde::json::Value::Object(m) => m.get(field).cloned().expect(field),
        other => panic!("no p2p in status: {}", miniserde::json::to_string(&other)),
    }
}

fn peer_id(node: &Node) -> String {
    match p2p_field(node, "peer_id") {
        miniserde::json::Value::String(s) => s,
        _ => panic!("peer_id"),
    }
}

fn listen_addr(node: &Node) -> String {
    match p2p_field(node, "listen") {
        miniserde::json::Value::Array(a) => match a.first() {
            Some(miniserde::json::Value::String(s)) => s.clone(),
            _ => panic!("no listen address"),
        },
        _ => panic!("listen"),
    }
}

/// Waits until `node` lists `peer` as connected and identified as a Phase node (a candidate
/// executor from then on).
fn wait_connected(node: &Node, peer: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let text = node.request("GET", "/v1/peers", b"").text();
        if text.split("{\"peer_id\"").any(|p| p.contains(peer) && p.contains("\"connected\":true") && p.contains("\"agent\":\"phase/")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The nodes' logs and every socket on their peer ports, for a failed connection.
fn explain(nodes: &[&Node]) -> String {
    let mut text = String::new();
    for n in nodes {
        let port = listen_addr(n).split("/tcp/").nth(1).and_then(|p| p.split('/').next()).unwrap_or("?").to_string();
        let sockets = std::process::Command::new("ss").args(["-tanepH", "state", "all"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let on_port: Vec<&str> = sockets.lines().filter(|l| l.contains(&format!(":{port} "))).collect();
        text += &format!("--- {} (port {port}) ---\n{}\n--- sockets on {port} ---\n{}\n", peer_id(n), n.log(), on_port.join("\n"));
    }
    text
}

const LOOPBACK: &[&str] = &["--p2p", "/ip4/127.0.0.1/tcp/0"];

#[test]
fn a_node_finds_peers_it_was_not_told_about_through_one_bootstrap_peer() {
    let a = Node::start(LOOPBACK);
    let boot = listen_addr(&a);
    let b = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);
    let c = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);
    assert!(wait_connected(&a, &peer_id(&b), Duration::from_secs(10)), "b -> a");
    // c was only told about a: it must learn b from the DHT.
    assert!(wait_connected(&c, &peer_id(&b), Duration::from_secs(20)), "c never found b: {}", c.request("GET", "/v1/peers", b"").text());
    let peers = a.request("GET", "/v1/peers", b"").text();
    assert!(peers.contains("\"agent\":\"phase/"), "identify carries the agent: {peers}");
}

#[test]
fn a_node_whose_listen_port_is_held_on_another_address_still_dials_its_peers() {
    // Dials bind the listen port on 0.0.0.0 (port reuse). Another program's socket on that
    // port at another address (here a plain listener on 127.0.0.2, as a TIME_WAIT socket of a
    // client there would) makes that bind fail with EADDRINUSE for as long as it is held.
    let a = Node::start(LOOPBACK);
    let (port, _held) = (1024..32768u16)
        .find_map(|p| {
            let free = std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
            free.then(|| std::net::TcpListener::bind(("127.0.0.2", p)).ok().map(|l| (p, l))).flatten()
        })
        .unwrap();
    let b = Node::start(&["--p2p", &format!("/ip4/127.0.0.1/tcp/{port}"), "--bootstrap", &listen_addr(&a)]);
    assert!(wait_connected(&a, &peer_id(&b), Duration::from_secs(10)), "B never reached A\n{}", explain(&[&a, &b]));
    assert!(b.log().contains("from a fresh port"), "the bind did fail: {}", b.log());
}

#[test]
fn a_bootstrap_peer_that_comes_up_late_is_joined_when_it_does() {
    // A's key lives in its data dir, so the A started second is the peer B was told about.
    let dir = std::env::temp_dir().join(format!("phase-late-bootstrap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A fixed port, free while A is down: below the ephemeral range (no node started meanwhile
    // is given it) and at its bottom (the silent-connection tests take theirs from the top).
    let port = (1024..32768).find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()).unwrap();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let args = ["--data-dir", dir.to_str().unwrap(), "--p2p", &listen];
    let first = Node::start(&args);
    let (boot, id) = (listen_addr(&first), peer_id(&first));
    drop(first);
    let b = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);
    let give_up = Instant::now() + Duration::from_secs(10);
    while !b.log().contains(&format!("dial {id} failed")) {
        assert!(Instant::now() < give_up, "B never dialled A\n--- b ---\n{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Down for B's first dial, its DHT bootstrap (the next is in 5 minutes) and the three
    // tries a peer found in the DHT gets (3 s for the larger peer id, then 1 s and 2 s apart);
    // up again now. B's next retry of its bootstrap peer is at most 16 s after its first dial.
    std::thread::sleep(Duration::from_secs(10));
    let a = Node::start(&args);
    assert_eq!(peer_id(&a), id);
    assert!(wait_connected(&a, &peer_id(&b), Duration::from_secs(20)), "B did not dial again\n--- b ---\n{}", b.log());
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_peer_id_is_derived_from_the_key_that_signs_receipts() {
    let a = Node::start(LOOPBACK);
    let key = phase_core::encoding::hex_decode_array::<32>(&json_string(&status(&a), "node_key")).unwrap();
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key).unwrap();
    let derived = libp2p::identity::PublicKey::from(ed).to_peer_id();
    assert_eq!(derived.to_string(), peer_id(&a));
}

#[test]
fn without_the_swarm_key_a_node_cannot_join_a_private_network() {
    let dir = std::env::temp_dir().join(format!("phase-psk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = |name: &str, byte: u8| {
        let path = dir.join(name);
        std::fs::write(&path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", format!("{byte:02x}").repeat(32))).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (k1, k2) = (key("k1", 0x11), key("k2", 0x22));
    let a = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--swarm-key", &k1]);
    let boot = listen_addr(&a);
    let member = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--swarm-key", &k1, "--bootstrap", &boot]);
    let outsider = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--swarm-key", &k2, "--bootstrap", &boot]);
    let public = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);
    assert!(wait_connected(&a, &peer_id(&member), Duration::from_secs(10)), "a key holder joins");
    assert!(!wait_connected(&a, &peer_id(&outsider), Duration::from_secs(3)), "another key must not connect");
    assert!(!wait_connected(&a, &peer_id(&public), Duration::from_secs(1)), "no key must not connect");
    assert!(!wait_connected(&outsider, &peer_id(&a), Duration::from_secs(1)));
    let bad = Node::start_expect_failure(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--swarm-key", "/nonexistent/key"]);
    assert!(bad.contains("swarm key /nonexistent/key"), "{bad}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn p2p_flags_are_checked() {
    let e = Node::start_expect_failure(&["--bootstrap", "/ip4/127.0.0.1/tcp/1"]);
    assert!(e.contains("need --p2p"), "{e}");
    let e = Node::start_expect_failure(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", "/ip4/127.0.0.1/tcp/1"]);
    assert!(e.contains("must end with /p2p/<peer id>"), "{e}");
    let e = Node::start_expect_failure(&["--p2p", "not-an-address"]);
    assert!(e.contains("is not a multiaddr"), "{e}");
    let plain = Node::start(&[]);
    assert_eq!(plain.request("GET", "/v1/peers", b"").status, 404);
}

/// Two hosts in network namespaces of their own, joined by a veth pair: mDNS finds the peer
/// with no configuration and nothing leaves the machine.
#[test]
fn mdns_finds_a_peer_on_the_lan_with_no_configuration() {
    if !nix_root() {
        panic!("the mDNS test needs root (ip netns); CI runs as root");
    }
    let tag = format!("ph{}", std::process::id() % 100000);
    let (ns1, ns2) = (format!("{tag}a"), format!("{tag}b"));
    let sh = |cmd: &str| {
        let ok = std::process::Command::new("sh").arg("-c").arg(cmd).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "{cmd}");
    };
    let cleanup = || {
        let _ = std::process::Command::new("sh").arg("-c").arg(format!("ip netns del {ns1}; ip netns del {ns2}")).stderr(std::process::Stdio::null()).status();
    };
    cleanup();
    sh(&format!("ip netns add {ns1} && ip netns add {ns2}"));
    sh(&format!("ip link add {tag}x netns {ns1} type veth peer name {tag}y netns {ns2}"));
    for (ns, dev, ip) in [(&ns1, format!("{tag}x"), "10.213.0.1/24"), (&ns2, format!("{tag}y"), "10.213.0.2/24")] {
        sh(&format!("ip -n {ns} link set lo up && ip -n {ns} addr add {ip} dev {dev} && ip -n {ns} link set {dev} up"));
    }
    let logs = [&ns1, &ns2].map(|ns| std::env::temp_dir().join(format!("{ns}.log")));
    let mut children: Vec<std::process::Child> = [&ns1, &ns2]
        .iter()
        .zip(&logs)
        .map(|(ns, log)| {
            std::process::Command::new("ip")
                .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_phase"), "node", "--http", "127.0.0.1:0", "--p2p", "/ip4/0.0.0.0/tcp/0", "--mdns"])
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    // Neither node was told of the other, so any connection came from mDNS. Which side's mDNS
    // answer arrives first is a race: the other side may meet the peer as an inbound
    // connection first, so "via mdns" is required of at least one side.
    let deadline = Instant::now() + Duration::from_secs(30);
    let read = |log: &std::path::PathBuf| std::fs::read_to_string(log).unwrap_or_default();
    let done = || {
        let t = [read(&logs[0]), read(&logs[1])];
        t.iter().all(|t| t.contains("p2p: connected")) && t.iter().any(|t| t.contains("via mdns"))
    };
    while Instant::now() < deadline && !done() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let both = done();
    let texts: Vec<String> = logs.iter().map(|l| std::fs::read_to_string(l).unwrap_or_default()).collect();
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    cleanup();
    assert!(both, "mDNS discovery failed:\n--- a ---\n{}\n--- b ---\n{}", texts[0], texts[1]);
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn job(module: &[u8], input: &[u8], extra: &str) -> Vec<u8> {
    use phase_core::encoding::base64_encode;
    format!("{{\"module\":\"{}\",\"input\":\"{}\"{extra}}}", base64_encode(module), base64_encode(input)).into_bytes()
}

fn metric(node: &Node, prefix: &str) -> u64 {
    let text = node.request("GET", "/metrics", b"").text();
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A and B, connected.
fn pair() -> (Node, Node) {
    let a = Node::start(LOOPBACK);
    let b = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &listen_addr(&a)]);
    assert!(wait_connected(&a, &peer_id(&b), Duration::from_secs(10)), "B did not join A\n{}", explain(&[&a, &b]));
    (a, b)
}

#[test]
fn a_job_sent_to_a_runs_on_b_and_a_returns_bs_receipt() {
    let (a, b) = pair();
    let hello = guest("hello");
    for placement in ["remote".to_string(), peer_id(&b)] {
        let r = a.request("POST", "/v1/jobs", &job(&hello, b"Hello, World", &format!(",\"placement\":\"{placement}\"")));
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        assert_eq!(json_string(&text, "executor"), peer_id(&b));
        let out = phase_core::encoding::base64_decode(&json_string(&text, "stdout")).unwrap();
        assert_eq!(out, b"dlroW ,olleH");
        let receipt = phase_core::job::receipt::Receipt::from_json(&receipt_of(&text)).unwrap();
        receipt.verify_signature().unwrap();
        assert_eq!(phase_core::encoding::hex_encode(&receipt.node_key), json_string(&status(&b), "node_key"));
        assert_eq!(phase::p2p::peer_of_key(&receipt.node_key).unwrap().to_string(), peer_id(&b));
    }
    assert_eq!(metric(&a, "phase_jobs_total{outcome=\"exited\"}"), 0, "nothing ran on a");
    assert_eq!(metric(&b, "phase_jobs_total{outcome=\"exited\"}"), 2);
}

#[test]
fn an_async_job_placed_on_a_peer_is_tracked_by_the_node_it_was_submitted_to() {
    let (a, b) = pair();
    let spin = guest("hostile-loop");
    let place = format!(",\"placement\":\"{}\"", peer_id(&b));
    let submit = |placement: &str| {
        let r = http_with(a.addr, "POST", "/v1/jobs", "Prefer: respond-async\r\n", &job(&guest("hello"), b"async remote", placement));
        assert_eq!(r.status, 202, "{}", r.text());
        (json_string(&r.text(), "job_id"), json_string(&r.text(), "location"), r.text())
    };
    let done_at = |location: &str| {
        let give_up = Instant::now() + Duration::from_secs(30);
        let done = loop {
            let s = a.request("GET", location, b"").text();
            if json_string(&s, "status") == "done" {
                break s;
            }
            assert!(Instant::now() < give_up, "{s}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let result = done[done.find("\"result\":").unwrap() + 9..done.len() - 1].to_string();
        (phase_core::job::answer::Answer::parse(&result).unwrap(), result)
    };
    let (id, location, _) = submit(&place);
    // Where a job was asked to run is part of its handle.
    assert_eq!(location, format!("/v1/jobs/{id}.{}", peer_id(&b)));
    let (answer, result) = done_at(&location);
    assert_eq!(answer.stdout, b"etomer cnysa");
    assert_eq!(json_string(&result, "executor"), peer_id(&b));
    assert_eq!(phase_core::encoding::hex_encode(&answer.signer()), json_string(&status(&b), "node_key"), "signed by B");
    assert_eq!(phase_core::encoding::hex_encode(&answer.job_id), id, "the receipt names the job the URL names (limits sent explicit)");
    assert_eq!(metric(&b, "phase_jobs_total{outcome=\"exited\"}"), 1);
    // The same job asked to run here is another queue entry: it is never answered by the
    // peer's run (whoever placed that one), and runs here, signed by A.
    let (same_id, here, text) = submit(",\"placement\":\"local\"");
    assert_eq!((same_id.as_str(), here.as_str()), (id.as_str(), format!("/v1/jobs/{id}.local").as_str()));
    assert!(text.contains("\"existing\":false"), "{text}");
    let (answer, result) = done_at(&here);
    assert!(!result.contains("executor"), "{result}");
    assert_eq!(phase_core::encoding::hex_encode(&answer.signer()), json_string(&status(&a), "node_key"), "signed by A");
    assert_eq!(a.request("GET", &format!("/v1/jobs/{id}"), b"").status, 404, "nothing was asked without a placement");
    // While on the peer it shows as placed; cancelled, the peer stops it (no receipt) long
    // before its deadline, and the job ends cancelled on the node it was submitted to.
    let long = format!("{place},\"limits\":{{\"fuel\":1000000000000,\"deadline_ms\":120000}}");
    let r = http_with(a.addr, "POST", "/v1/jobs", "Prefer: respond-async\r\n", &job(&spin, b"", &long));
    let (id, token) = (json_string(&r.text(), "location"), json_string(&r.text(), "cancel_token"));
    let id = id.strip_prefix("/v1/jobs/").unwrap().to_string();
    let give_up = Instant::now() + Duration::from_secs(10);
    while !a.request("GET", &format!("/v1/jobs/{id}"), b"").text().contains("\"placed\":true") || metric(&b, "phase_jobs_in_flight") != 1 {
        assert!(Instant::now() < give_up, "the job never ran on b");
        std::thread::sleep(Duration::from_millis(20));
    }
    let wrong = a.request("DELETE", &format!("/v1/jobs/{id}?token=00{}", &token[2..]), b"");
    assert_eq!(wrong.status, 403, "only the submitter's token cancels");
    let cancelled_at = Instant::now();
    let c = a.request("DELETE", &format!("/v1/jobs/{id}?token={token}"), b"");
    assert_eq!((c.status, json_string(&c.text(), "status")), (202, "cancelling".to_string()), "{}", c.text());
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let s = a.request("GET", &format!("/v1/jobs/{id}"), b"").text();
        match json_string(&s, "status").as_str() {
            "cancelled" => break,
            "cancelling" | "running" => assert!(Instant::now() < give_up, "still {s}"),
            _ => panic!("a cancelled placed job ended otherwise: {s}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cancelled_at.elapsed() < Duration::from_secs(20));
    assert_eq!(metric(&b, "phase_jobs_cancelled_total"), 1, "b stopped it");
    assert_eq!(metric(&b, "phase_jobs_in_flight"), 0, "b's slot is free again");
    assert_eq!((metric(&b, "phase_jobs_total{outcome=\"exited\"}"), metric(&b, "phase_jobs_total{outcome=\"trapped\"}")), (1, 0), "no receipt for it");
    assert!(b.log().contains("cancels its job request"), "{}", b.log());
}

#[test]
fn a_module_travels_to_a_peer_once() {
    let (a, b) = pair();
    let module = guest("sha256sum");
    let place = format!(",\"placement\":\"{}\"", peer_id(&b));
    for input in [&b"one"[..], b"two", b"three"] {
        let r = a.request("POST", "/v1/jobs", &job(&module, input, &place));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The first job was offered by hash, refused with module_not_found, then sent whole;
    // the next two found the module cached on b.
    assert_eq!(metric(&b, "phase_jobs_rejected_total{reason=\"invalid\"}"), 1);
    assert_eq!(metric(&b, "phase_jobs_total{outcome=\"exited\"}"), 3);
}

#[test]
fn files_travel_to_a_peer_once() {
    let (a, b) = pair();
    let place = format!(",\"placement\":\"{}\"", peer_id(&b));
    for input in [&b"one"[..], b"two", b"three"] {
        let r = a.request("POST", "/v1/jobs", &job(&guest("files"), input, &(work_files() + &place)));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(json_string(&r.text(), "stdout") != "", "{}", r.text());
    }
    // The first job was offered with its module and files by hash: refused with
    // file_not_found, then module_not_found, then sent whole; the next two found both there.
    assert_eq!(metric(&b, "phase_jobs_rejected_total{reason=\"invalid\"}"), 2);
    assert_eq!(metric(&b, "phase_jobs_total{outcome=\"exited\"}"), 3);
}

#[test]
fn a_remote_trap_is_the_answer_and_placement_errors_are_named() {
    let (a, b) = pair();
    let r = a.request("POST", "/v1/jobs", &job(&guest("hostile-loop"), b"", &format!(",\"placement\":\"{}\",\"limits\":{{\"fuel\":1000000}}", peer_id(&b))));
    assert_eq!((r.status, json_string(&r.text(), "trap")), (200, "out_of_fuel".to_string()));
    assert_eq!(metric(&b, "phase_jobs_total{outcome=\"trapped\"}"), 1, "a job error is never retried");
    let bad = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"", ",\"placement\":\"mars\""));
    assert_eq!(bad.status, 400);
    let unknown = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"", ",\"placement\":\"12D3KooWPFVtLAsA3aEb9G3Vo9kKdkhDsbKJuN27YZ2zCaQgUCbg\""));
    assert_eq!((unknown.status, json_string(&unknown.text(), "error")), (502, "peer_unreachable".to_string()), "{}", unknown.text());
    let invalid = a.request("POST", "/v1/jobs", &job(b"\0asm\x01\0\0\0\x05", b"", &format!(",\"placement\":\"{}\"", peer_id(&b))));
    assert_eq!((invalid.status, json_string(&invalid.text(), "error")), (422, "invalid_module".to_string()));
    let lonely = Node::start(LOOPBACK);
    let none = lonely.request("POST", "/v1/jobs", &job(&guest("hello"), b"", ",\"placement\":\"remote\""));
    assert_eq!((none.status, json_string(&none.text(), "error")), (503, "no_peer".to_string()));
    let plain = Node::start(&[]);
    assert_eq!(plain.request("POST", "/v1/jobs", &job(&guest("hello"), b"", ",\"placement\":\"remote\"")).status, 422);
}

#[test]
fn when_the_executor_dies_mid_job_the_job_completes_on_another_peer_once() {
    let a = Node::start(LOOPBACK);
    let boot = listen_addr(&a);
    let mut b = Some(Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]));
    let mut c = Some(Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]));
    for n in [&b, &c] {
        assert!(wait_connected(&a, &peer_id(n.as_ref().unwrap()), Duration::from_secs(10)));
    }
    let (pb, pc) = (peer_id(b.as_ref().unwrap()), peer_id(c.as_ref().unwrap()));
    let addr = a.addr;
    let body = job(&guest("hostile-loop"), b"", ",\"placement\":\"remote\",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":1500}");
    let pending = std::thread::spawn(move || http(addr, "POST", "/v1/jobs", &body));
    // Kill whichever peer took the job, once it is running.
    let deadline = Instant::now() + Duration::from_secs(10);
    let killed = loop {
        if metric(b.as_ref().unwrap(), "phase_jobs_in_flight") == 1 {
            b.take();
            break pb.clone();
        }
        if metric(c.as_ref().unwrap(), "phase_jobs_in_flight") == 1 {
            c.take();
            break pc.clone();
        }
        assert!(Instant::now() < deadline, "no peer took the job");
        std::thread::sleep(Duration::from_millis(20));
    };
    let r = pending.join().unwrap();
    assert_eq!(r.status, 200, "{}\n--- a ---\n{}", r.text(), a.log());
    let survivor = if killed == pb { &pc } else { &pb };
    assert_eq!(&json_string(&r.text(), "executor"), survivor, "completed on the other peer");
    assert_eq!(json_string(&r.text(), "trap"), "deadline");
    let alive = b.as_ref().or(c.as_ref()).unwrap();
    assert_eq!(metric(alive, "phase_jobs_total{outcome=\"trapped\"}"), 1, "ran once on the survivor");
}

/// A, a misbehaving peer B, and an honest peer C, all connected to A.
fn trio(fault: &str) -> (Node, Node, Node) {
    let a = Node::start(LOOPBACK);
    let boot = listen_addr(&a);
    let mut args = vec!["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot];
    if fault != "none" {
        args.extend(["--fault", fault]);
    }
    let b = Node::start(&args);
    let c = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);
    for n in [&b, &c] {
        assert!(wait_connected(&a, &peer_id(n), Duration::from_secs(10)), "{} did not join A\n{}", peer_id(n), explain(&[&a, &b, &c]));
    }
    (a, b, c)
}

#[test]
fn a_receipt_signed_by_a_key_that_is_not_the_peers_is_rejected() {
    let (a, b, c) = trio("peer-wrong-key");
    let hello = guest("hello");
    let r = a.request("POST", "/v1/jobs", &job(&hello, b"x", &format!(",\"placement\":\"{}\"", peer_id(&b))));
    assert_eq!((r.status, json_string(&r.text(), "error")), (502, "bad_receipt".to_string()), "{}\n--- a ---\n{}\n--- b ---\n{}", r.text(), a.log(), b.log());
    assert!(json_string(&r.text(), "message").contains("which is not peer"));
    // With a choice of peers, the job ends on the honest one.
    for _ in 0..3 {
        let r = a.request("POST", "/v1/jobs", &job(&hello, b"x", ",\"placement\":\"remote\""));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(json_string(&r.text(), "executor"), peer_id(&c));
    }
    assert_eq!(a.request("GET", "/health", b"").status, 200, "a keeps serving");
}

#[test]
fn a_peer_that_answers_garbage_is_contained() {
    let (a, b, c) = trio("peer-garbage");
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"x", &format!(",\"placement\":\"{}\"", peer_id(&b))));
    assert_eq!((r.status, json_string(&r.text(), "error")), (502, "bad_peer_answer".to_string()), "{}", r.text());
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"x", ",\"placement\":\"remote\""));
    assert_eq!(json_string(&r.text(), "executor"), peer_id(&c));
}

#[test]
fn a_peer_that_says_cancelled_unasked_is_failing_and_the_job_goes_to_another() {
    let (a, b, c) = trio("peer-cancelled");
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"x", &format!(",\"placement\":\"{}\"", peer_id(&b))));
    assert_eq!((r.status, json_string(&r.text(), "error")), (502, "bad_peer_answer".to_string()), "{}", r.text());
    assert!(json_string(&r.text(), "message").contains("never asked"), "{}", r.text());
    // Asynchronous: the job fails there by the peer's fault; it is not `cancelled`.
    let r = http_with(a.addr, "POST", "/v1/jobs", "Prefer: respond-async\r\n", &job(&guest("hello"), b"y", &format!(",\"placement\":\"{}\"", peer_id(&b))));
    let id = format!("{}.{}", json_string(&r.text(), "job_id"), peer_id(&b));
    let give_up = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = a.request("GET", &format!("/v1/jobs/{id}"), b"").text();
        if !matches!(json_string(&s, "status").as_str(), "queued" | "running") {
            break s;
        }
        assert!(Instant::now() < give_up, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(json_string(&s, "status"), "failed", "{s}");
    assert!(s.contains("\"code\":\"bad_peer_answer\""), "{s}");
    // With a choice of peers, the job ends on the honest one.
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"z", ",\"placement\":\"remote\""));
    assert_eq!((r.status, json_string(&r.text(), "executor")), (200, peer_id(&c)), "{}", r.text());
}

#[test]
fn a_peer_that_takes_a_job_and_never_answers_is_given_up_on() {
    let (a, _b, c) = trio("peer-stall");
    // Deadline 500 ms: a stalled peer is abandoned after deadline + 10 s, then the next runs it.
    let started = Instant::now();
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"x", ",\"placement\":\"remote\",\"limits\":{\"deadline_ms\":500}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json_string(&r.text(), "executor"), peer_id(&c));
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn async_jobs_on_a_silent_peer_hold_neither_local_runners_nor_forwards_and_a_cancel_frees_them_at_once() {
    let (a, b, c) = trio("peer-stall");
    let async_job = |input: &[u8], placement: &str| {
        let r = http_with(a.addr, "POST", "/v1/jobs", "Prefer: respond-async\r\n", &job(&guest("hello"), input, placement));
        assert_eq!(r.status, 202, "{}", r.text());
        (json_string(&r.text(), "location"), json_string(&r.text(), "cancel_token"))
    };
    let wait_for = |location: &str, within: Duration, until: &dyn Fn(&str) -> bool| {
        let give_up = Instant::now() + within;
        loop {
            let s = a.request("GET", location, b"").text();
            if until(&s) {
                return s;
            }
            assert!(Instant::now() < give_up, "{location}: still {s}\n--- a ---\n{}", a.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // As many jobs placed on the silent peer as A has job slots (2), each with a long deadline.
    let silent = format!(",\"placement\":\"{}\",\"limits\":{{\"deadline_ms\":60000}}", peer_id(&b));
    let held: Vec<(String, String)> = (0..2).map(|i| async_job(format!("held {i}").as_bytes(), &silent)).collect();
    for (location, _) in &held {
        wait_for(location, Duration::from_secs(10), &|s| s.contains("\"placed\":true"));
    }
    // A job asked to run here is not queued behind them, and a synchronous job placed on another
    // peer finds a forward permit.
    let (here, _) = async_job(b"here", ",\"placement\":\"local\"");
    wait_for(&here, Duration::from_secs(10), &|s| s.contains("\"status\":\"done\""));
    let sync = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"sync", &format!(",\"placement\":\"{}\"", peer_id(&c))));
    assert_eq!((sync.status, json_string(&sync.text(), "executor")), (200, peer_id(&c)), "{}", sync.text());
    // The submitter's cancel ends the wait for the silent peer at once, not after 70 s.
    let (location, token) = &held[0];
    let cancelled_at = Instant::now();
    let r = a.request("DELETE", &format!("{location}?token={token}"), b"");
    assert_eq!(r.status, 202, "{}", r.text());
    // The wait checks every 0.1 s; 2 s leaves room for a loaded machine, against the 70 s the
    // silent peer would hold it otherwise.
    wait_for(location, Duration::from_secs(2), &|s| s.contains("\"status\":\"cancelled\""));
    assert!(cancelled_at.elapsed() < Duration::from_secs(2), "{:?}", cancelled_at.elapsed());
}

/// A TCP connection to `port` on 127.0.0.1 from 127.0.0.`ip` that will say nothing, from the
/// next free port of `ports`. The ports lie below the kernel's ephemeral range: a node's listen
/// port (ephemeral) is then never one of them. libp2p dials from 0.0.0.0:<listen port>, and
/// Linux refuses that bind-then-connect (EADDRINUSE) while another local socket on that port
/// is connected to the same destination: an attacker on another machine never is, but one in
/// this process would be, 1 000 times over, in 3 % of the runs.
fn silent_connection(ip: u8, ports: &mut impl Iterator<Item = u16>, port: u16, within: Duration) -> Option<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    ports.take(64).find(|&p| s.bind(&std::net::SocketAddr::from(([127, 0, 0, ip], p)).into()).is_ok())?;
    s.connect_timeout(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into(), within).ok()?;
    Some(s)
}

/// The ports below the kernel's ephemeral range, highest first (see `silent_connection`).
fn attacker_ports() -> impl Iterator<Item = u16> {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    (1024..low).rev()
}

#[test]
fn silent_connections_to_the_peer_port_do_not_keep_an_honest_peer_out() {
    let a = Node::start(LOOPBACK);
    let boot = listen_addr(&a);
    let port: u16 = boot.split("/tcp/").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    // 1 000 TCP connections from another address that never say a word, kept open.
    let mut ports = attacker_ports();
    let silent: Vec<socket2::Socket> = (0..1000).filter_map(|_| silent_connection(2, &mut ports, port, Duration::from_secs(2))).collect();
    assert!(silent.len() >= 100, "only {} silent connections", silent.len());
    let b = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);
    assert!(wait_connected(&a, &peer_id(&b), Duration::from_secs(10)), "the honest peer was kept out\n--- a ---\n{}\n--- b ---\n{}", a.log(), b.log());
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"through", &format!(",\"placement\":\"{}\"", peer_id(&b))));
    assert_eq!(r.status, 200, "{}", r.text());
    drop(silent);
}

#[test]
fn silent_connections_from_many_addresses_never_keep_a_speaking_peer_out() {
    let a = Node::start(LOOPBACK);
    let boot = listen_addr(&a);
    let port: u16 = boot.split("/tcp/").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    // Ten addresses (more than the 32 handshake places hold at 4 each) open 40 silent
    // connections every 100 ms and keep them all: every place is always wanted by a newcomer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            let mut ports = attacker_ports();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && held.len() < 1600 {
                for ip in 2..12u8 {
                    held.extend((0..4).filter_map(|_| silent_connection(ip, &mut ports, port, Duration::from_secs(1))));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            held.len()
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let b = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);
    let joined = wait_connected(&a, &peer_id(&b), Duration::from_secs(15));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = attacker.join().unwrap();
    assert!(opened >= 200, "only {opened} silent connections");
    assert!(joined, "the speaking peer was kept out by {opened} silent connections\n--- a ---\n{}\n--- b ---\n{}", a.log(), b.log());
    // Joined by displacing silent connections, never after a refusal and a retry: a flood
    // faster than the places free keeps none of them old, and every newcomer was refused then.
    let log = a.log();
    let refused = log.lines().filter(|l| l.contains("from /ip4/127.0.0.1/") && l.contains("Denied")).count();
    assert_eq!(refused, 0, "the speaking peer was refused\n--- a ---\n{log}");
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"through", &format!(",\"placement\":\"{}\"", peer_id(&b))));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn redundancy_three_on_three_nodes_agrees() {
    let (a, _b, _c) = trio("none");
    let r = a.request("POST", "/v1/jobs", &job(&guest("cpu-bench"), b"200000", ",\"redundancy\":3"));
    assert_eq!(r.status, 200, "{}\n--- a ---\n{}", r.text(), a.log());
    let text = r.text();
    assert!(text.contains("\"agree\":true"), "{text}");
    let answers = match json_field(&text, "answers") {
        miniserde::json::Value::Array(a) => a,
        _ => panic!("answers"),
    };
    assert_eq!(answers.len(), 3);
    let mut keys = std::collections::HashSet::new();
    for answer in &answers {
        let receipt = match answer {
            miniserde::json::Value::Object(m) => miniserde::json::to_string(m.get("receipt").unwrap()),
            _ => panic!("answer"),
        };
        let r = phase_core::job::receipt::Receipt::from_json(&receipt).unwrap();
        r.verify_signature().unwrap();
        keys.insert(r.node_key);
    }
    assert_eq!(keys.len(), 3, "three distinct signers");
    let too_many = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"", ",\"redundancy\":4"));
    assert_eq!((too_many.status, json_string(&too_many.text(), "error")), (503, "not_enough_peers".to_string()));
    let both = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"", ",\"redundancy\":2,\"placement\":\"remote\""));
    assert_eq!(both.status, 400);
    let zero = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"", ",\"redundancy\":0"));
    assert_eq!(zero.status, 422);
    let plain = Node::start(&[]);
    assert_eq!(plain.request("POST", "/v1/jobs", &job(&guest("hello"), b"", ",\"redundancy\":2")).status, 422);
}

#[test]
fn redundancy_above_the_job_slots_is_admitted_on_an_idle_node() {
    // One job slot, so one forward permit: a run on 4 nodes waits on 3 peers at once.
    let a = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--max-concurrent", "1"]);
    let boot = listen_addr(&a);
    let peers: Vec<Node> = (0..3).map(|_| Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot])).collect();
    for p in &peers {
        assert!(wait_connected(&a, &peer_id(p), Duration::from_secs(10)));
    }
    let give_up = Instant::now() + Duration::from_secs(10);
    // Peers are identified (and so placeable) shortly after they connect.
    let r = loop {
        let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"four", ",\"redundancy\":4"));
        if r.status != 503 || Instant::now() > give_up {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"k\":4") && r.text().contains("\"agree\":true"), "{}", r.text());
}

#[test]
fn redundancy_exposes_a_peer_that_signs_a_lie_with_its_own_key() {
    let (a, b, _c) = trio("peer-lie");
    // Alone, the lie is self-consistent: a valid receipt from b's own key.
    let alone = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"truth", &format!(",\"placement\":\"{}\"", peer_id(&b))));
    assert_eq!(alone.status, 200, "{}", alone.text());
    // Redundancy shows it: the three executors disagree.
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"truth", ",\"redundancy\":3"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"agree\":false"), "{}", r.text());
}

#[test]
fn capability_records_are_found_in_the_dht() {
    let (a, b, c) = trio("none");
    let want = [peer_id(&a), peer_id(&b)];
    let arch = std::env::consts::ARCH;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.request("GET", &format!("/v1/providers?cap=wasm/{arch}"), b"");
        assert_eq!(r.status, 200, "{}", r.text());
        if want.iter().all(|p| r.text().contains(p.as_str())) {
            assert!(json_u64(&r.text(), "lookup_us").is_some());
            break;
        }
        assert!(Instant::now() < deadline, "providers never found: {}", r.text());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(c.request("GET", "/v1/providers?cap=../etc", b"").status, 400);
}

#[test]
fn a_retried_idempotency_key_returns_the_placed_answer_even_after_the_executor_is_gone() {
    let a = Node::start(LOOPBACK);
    let boot = listen_addr(&a);
    let b = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);
    let c = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);
    for n in [&b, &c] {
        assert!(wait_connected(&a, &peer_id(n), Duration::from_secs(10)));
    }
    let pb = peer_id(&b);
    let first = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"once", &format!(",\"placement\":\"{pb}\",\"idempotency_key\":\"k-1\"")));
    assert_eq!(first.status, 200, "{}", first.text());
    drop(b); // the executor goes away
    let again = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"once", ",\"placement\":\"remote\",\"idempotency_key\":\"k-1\""));
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(json_string(&again.text(), "executor"), pb, "the first answer, not a second run");
    assert_eq!(receipt_of(&again.text()), receipt_of(&first.text()));
    assert!(again.text().contains("\"replayed\":true"));
    assert_eq!(metric(&c, "phase_jobs_total{outcome=\"exited\"}"), 0, "c never ran it");
    let other = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"twice", ",\"placement\":\"remote\",\"idempotency_key\":\"k-1\""));
    assert_eq!(other.status, 409);
    // B's kept answer satisfies "any peer", never a request for another one.
    let for_c = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"once", &format!(",\"placement\":\"{}\",\"idempotency_key\":\"k-1\"", peer_id(&c))));
    assert_eq!((for_c.status, json_string(&for_c.text(), "error")), (409, "idempotency_conflict".to_string()), "{}", for_c.text());
}

#[test]
fn a_busy_node_places_a_job_without_placement_on_a_peer() {
    let a = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--max-concurrent", "1"]);
    let b = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &listen_addr(&a)]);
    assert!(wait_connected(&a, &peer_id(&b), Duration::from_secs(10)));
    let addr = a.addr;
    let slow = job(&guest("hostile-loop"), b"", ",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":1500}");
    let busy = std::thread::spawn(move || http(addr, "POST", "/v1/jobs", &slow));
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&a, "phase_jobs_in_flight") != 1 {
        assert!(Instant::now() < deadline, "the slow job never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // a's only slot is taken: a job with no placement goes to b instead of a 429.
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"ab", ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json_string(&r.text(), "executor"), peer_id(&b));
    assert_eq!(busy.join().unwrap().status, 200);
    // With a free slot it runs here again (no executor field).
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"ab", ""));
    assert!(!r.text().contains("\"executor\""), "{}", r.text());
}

/// `peer`'s load as `node` last heard it, (in_flight, slots); None while unknown or stale.
fn load_of(node: &Node, peer: &str) -> Option<(u64, u64)> {
    use miniserde::json::{Number, Value};
    let text = node.request("GET", "/v1/peers", b"").text();
    let Value::Array(list) = json_field(&text, "peers") else { panic!("no peers in {text}") };
    let entry = list.iter().find_map(|p| match p {
        Value::Object(m) if matches!(m.get("peer_id"), Some(Value::String(id)) if id == peer) => Some(m.clone()),
        _ => None,
    })?;
    let Some(Value::Object(load)) = entry.get("load") else { return None };
    let n = |k: &str| match load.get(k) {
        Some(Value::Number(Number::U64(n))) => *n,
        other => panic!("load.{k} is {other:?} in {text}"),
    };
    Some((n("in_flight"), n("slots")))
}

/// Waits until `node` has heard `peer`'s load as `want`; returns how long that took.
fn wait_load(node: &Node, peer: &str, want: (u64, u64), within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = load_of(node, peer);
        if now == Some(want) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "after {within:?} {peer}'s load is {now:?}, not {want:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn peers_share_their_current_load_and_placement_prefers_a_free_peer() {
    let a = Node::start(LOOPBACK);
    let boot = listen_addr(&a);
    let b = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot, "--max-concurrent", "1"]);
    let c = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot, "--max-concurrent", "4"]);
    let (pb, pc) = (peer_id(&b), peer_id(&c));
    for p in [&pb, &pc] {
        assert!(wait_connected(&a, p, Duration::from_secs(10)));
    }
    // Identified peers exchange records at once.
    wait_load(&a, &pb, (0, 1), Duration::from_secs(5));
    wait_load(&a, &pc, (0, 4), Duration::from_secs(5));
    // b's only slot is taken by a job of its own.
    let addr = b.addr;
    let slow = job(&guest("hostile-loop"), b"", ",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":4000}");
    let busy = std::thread::spawn(move || http(addr, "POST", "/v1/jobs", &slow));
    let heard = wait_load(&a, &pb, (1, 1), Duration::from_secs(3));
    eprintln!("a heard b's new load after {heard:?}");
    // Whatever the round-trip times, jobs go to c, and b is never asked (never answers busy).
    let mut views = Vec::new();
    for i in 0..4 {
        views.push(a.request("GET", "/v1/peers", b"").text());
        let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), format!("job {i}").as_bytes(), ",\"placement\":\"remote\""));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(json_string(&r.text(), "executor"), pc, "job {i}");
    }
    assert_eq!(metric(&b, "phase_jobs_rejected_total{reason=\"busy\"}"), 0, "b was asked while busy:\n--- a ---\n{}\n--- b ---\n{}\n{views:#?}", a.log(), b.log());
    assert_eq!(metric(&c, "phase_jobs_total{outcome=\"exited\"}"), 4);
    assert_eq!(busy.join().unwrap().status, 200);
    wait_load(&a, &pb, (0, 1), Duration::from_secs(3));
}

#[test]
fn a_peer_whose_announced_maxima_are_below_the_jobs_limits_is_not_asked() {
    let a = Node::start(LOOPBACK);
    let boot = listen_addr(&a);
    let small = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot, "--max-fuel", "1000000"]);
    let big = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot, "--max-concurrent", "4"]);
    for n in [&small, &big] {
        assert!(wait_connected(&a, &peer_id(n), Duration::from_secs(10)));
    }
    // Make the small peer the one placement prefers (big runs a job of its own, small is
    // idle), so only the maxima filter keeps the jobs off it.
    let slots = |n: &Node| loop {
        if let Some((_, slots)) = load_of(&a, &peer_id(n)) {
            break slots;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let big_slots = slots(&big);
    let addr = big.addr;
    let slow = job(&guest("hostile-loop"), b"", ",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":4000}");
    let busy = std::thread::spawn(move || http(addr, "POST", "/v1/jobs", &slow));
    wait_load(&a, &peer_id(&big), (1, big_slots), Duration::from_secs(3));
    wait_load(&a, &peer_id(&small), (0, slots(&small)), Duration::from_secs(3));
    for i in 0..4 {
        let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), format!("{i}").as_bytes(), ",\"placement\":\"remote\",\"limits\":{\"fuel\":5000000}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(json_string(&r.text(), "executor"), peer_id(&big), "job {i}");
    }
    assert_eq!(busy.join().unwrap().status, 200);
}

#[test]
fn a_peer_that_sends_oversized_load_records_is_contained() {
    let (a, b, c) = trio("peer-bad-load");
    let (pb, pc) = (peer_id(&b), peer_id(&c));
    // c's records arrive; b's are refused before they are read, named in the log, and b's
    // load stays unknown.
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = format!("load exchange with {pb} failed: IO error on outbound stream: frame of 1048576 bytes is above the cap of 128");
    while load_of(&a, &pc).is_none() || !a.log().contains(&refused) {
        assert!(Instant::now() < deadline, "--- a ---\n{}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(load_of(&a, &pb), None);
    // The connection and the job protocol are unharmed: b still runs a job placed on it.
    let r = a.request("POST", "/v1/jobs", &job(&guest("hello"), b"still", &format!(",\"placement\":\"{pb}\"")));
    assert_eq!((r.status, json_string(&r.text(), "executor")), (200, pb));
}

#[test]
fn a_peer_that_sends_large_job_frames_and_stalls_is_held_within_the_memory_budget() {
    // A takes 16 MiB inputs but has a 64 MiB memory budget. B places 16 jobs on A at once and
    // each of its frames announces 16 MiB, sends 12 MiB and stalls: 192 MiB if A kept them all.
    let budget = 64u64 << 20;
    let mut a = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--memory-budget", &budget.to_string(), "--max-input-bytes", "16777216"]);
    let b = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &listen_addr(&a), "--fault", "peer-big-frames", "--max-concurrent", "16"]);
    let pa = peer_id(&a);
    assert!(wait_connected(&b, &pa, Duration::from_secs(10)));
    let before = rss_bytes(a.pid());
    let hello = guest("hello");
    let placements: Vec<_> = (0..16)
        .map(|i| {
            let body = job(&hello, format!("stalled {i}").as_bytes(), &format!(",\"placement\":\"{pa}\",\"limits\":{{\"deadline_ms\":1000}}"));
            let addr = b.addr;
            std::thread::spawn(move || http(addr, "POST", "/v1/jobs", &body).status)
        })
        .collect();
    // A holds what fits in its pool and refuses the rest, by name.
    let mut peak = 0;
    for _ in 0..80 {
        peak = peak.max(rss_bytes(a.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Beyond the budget a node keeps at most its allocator's block cache (16 MiB).
    let bound = before + budget + (16 << 20);
    assert!(peak < bound, "RSS grew from {before} to {peak}: more than the {budget}-byte budget and the allocator's cache");
    assert!(a.log().contains("job request refused: no memory for a frame of 16777216 bytes"), "{}", a.log());
    // A serves meanwhile: its own jobs run, and its status answers.
    assert!(a.exited().is_none());
    let r = a.request("POST", "/v1/jobs", &job(&hello, b"honest", ""));
    assert_eq!(r.status, 200, "{}", r.text());
    // B's placements give up at their deadline (+10 s) instead of hanging.
    for p in placements {
        assert!([502, 503, 504].contains(&p.join().unwrap()));
    }
}

#[test]
fn connections_beyond_the_peer_connection_cap_are_refused() {
    let a = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--max-peer-connections", "2"]);
    let boot = listen_addr(&a);
    let others: Vec<Node> = (0..3).map(|_| Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot])).collect();
    let connected = |n: &Node| match json_field(&n.request("GET", "/v1/peers", b"").text(), "peers") {
        miniserde::json::Value::Array(list) => list.iter().filter(|p| matches!(p, miniserde::json::Value::Object(m) if matches!(m.get("connected"), Some(miniserde::json::Value::Bool(true))))).count(),
        _ => 0,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut most = 0;
    while Instant::now() < deadline {
        most = most.max(connected(&a));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(most, 2, "A holds exactly its cap of connections:\n{}", a.log());
    // The one beyond the cap is closed on, and does not hammer A with redials.
    let lost = format!("lost {}", peer_id(&a));
    let closes: usize = others.iter().map(|n| n.log().matches(&lost).count()).sum();
    let all: Vec<&Node> = std::iter::once(&a).chain(&others).collect();
    assert!((1..10).contains(&closes), "{closes} closes by A in 5 s:\n{}", explain(&all));
}

#[test]
fn an_executor_whose_answer_is_not_what_its_receipt_signs_is_caught() {
    // A genuine receipt with a forged stdout, the genuine answer of another job with the same
    // module and input, and a self-signed answer one byte over the job's output limit: the
    // forwarding node recomputes the job id, hashes the bodies and holds the limit.
    for (fault, why) in [
        ("peer-forge-stdout", "stdout is not what the receipt signs"),
        ("peer-other-job", "receipt is for another job"),
        ("peer-oversized-answer", "beyond the output limit its receipt names"),
    ] {
        let (a, b, c) = trio(fault);
        let hello = guest("hello");
        let r = a.request("POST", "/v1/jobs", &job(&hello, b"x", &format!(",\"placement\":\"{}\"", peer_id(&b))));
        assert_eq!((r.status, json_string(&r.text(), "error")), (502, "bad_receipt".to_string()), "{fault}: {}", r.text());
        assert!(json_string(&r.text(), "message").contains(why), "{fault}: {}", r.text());
        // Redundancy names the liar instead of agreeing over a forged answer.
        let r = a.request("POST", "/v1/jobs", &job(&hello, b"x", ",\"redundancy\":3"));
        assert_eq!((r.status, json_string(&r.text(), "error")), (502, "bad_receipt".to_string()), "{fault}: {}", r.text());
        assert!(json_string(&r.text(), "message").contains(&peer_id(&b)), "{fault}: {}", r.text());
        // With a choice of peers the job ends on the honest one.
        let r = a.request("POST", "/v1/jobs", &job(&hello, b"x", ",\"placement\":\"remote\""));
        assert_eq!((r.status, json_string(&r.text(), "executor")), (200, peer_id(&c)), "{fault}: {}", r.text());
    }
}

#[test]
fn redundancy_with_an_idempotency_key_keeps_k_distinct_executors_on_a_retry() {
    let (a, _b, _c) = trio("none");
    let body = job(&guest("cpu-bench"), b"20000", ",\"redundancy\":3,\"idempotency_key\":\"red-1\"");
    let signers = |text: &str| -> std::collections::HashSet<[u8; 32]> {
        let miniserde::json::Value::Array(list) = json_field(text, "answers") else { panic!("{text}") };
        list.iter()
            .map(|answer| phase_core::job::answer::Answer::parse(&miniserde::json::to_string(answer)).expect("an answer").signer())
            .collect()
    };
    let first = a.request("POST", "/v1/jobs", &body);
    assert_eq!(first.status, 200, "{}", first.text());
    let retry = a.request("POST", "/v1/jobs", &body);
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert!(retry.text().contains("\"replayed\":true") && retry.text().contains("\"agree\":true"), "{}", retry.text());
    assert_eq!(signers(&first.text()).len(), 3);
    assert_eq!(signers(&retry.text()), signers(&first.text()), "the retry has the same three executors");
    // The key for another job is a conflict, not a replay.
    let other = a.request("POST", "/v1/jobs", &job(&guest("cpu-bench"), b"30000", ",\"redundancy\":3,\"idempotency_key\":\"red-1\""));
    assert_eq!(other.status, 409, "{}", other.text());
}

#[test]
fn a_padded_answer_claiming_another_executor_reaches_the_client_as_the_answer_verified() {
    // B answers with its genuine answer after white space, with an `executor` field of its own.
    // A must give its client the answer it verified, as JSON, naming B: the executor A sent the
    // job to. Synchronously, replayed from the idempotency key, and asynchronously.
    let (a, b, _c) = trio("peer-padded-answer");
    let hello = guest("hello");
    let (module, input) = (phase_core::sha256(&hello), phase_core::sha256(b"x"));
    let limits = phase_core::job::RequestedLimits::default();
    let asked = phase_core::job::answer::Asked { module_sha256: &module, input_sha256: &input, args: &[], env: &[], limits: &limits, signer: None, files: None };
    let check = |text: &str| {
        let answer = phase_core::job::answer::Answer::parse(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        answer.verify(&asked).unwrap();
        assert_eq!(answer.executor.as_ref().map(|p| p.to_string()), Some(peer_id(&b)), "{text}");
        assert_eq!(text.matches("\"executor\"").count(), 1, "{text}");
        assert!(!text.contains(phase::faults::CLAIMED), "{text}");
        assert!(text.starts_with('{') && text.ends_with('}'), "{text:?}");
        answer
    };
    let body = job(&hello, b"x", &format!(",\"placement\":\"{}\",\"idempotency_key\":\"padded-1\"", peer_id(&b)));
    let first = a.request("POST", "/v1/jobs", &body);
    assert_eq!(first.status, 200, "{}\n--- a ---\n{}", first.text(), a.log());
    assert!(!check(&first.text()).replayed);
    let again = a.request("POST", "/v1/jobs", &body);
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(check(&again.text()).replayed, "the kept answer, marked as a replay: {}", again.text());
    let body = job(&hello, b"x", &format!(",\"placement\":\"{}\"", peer_id(&b)));
    let r = http_with(a.addr, "POST", "/v1/jobs", "Prefer: respond-async\r\n", &body);
    let id = format!("{}.{}", json_string(&r.text(), "job_id"), peer_id(&b));
    let give_up = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = a.request("GET", &format!("/v1/jobs/{id}"), b"").text();
        if !matches!(json_string(&s, "status").as_str(), "queued" | "running") {
            break s;
        }
        assert!(Instant::now() < give_up, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(json_string(&status, "status"), "done", "{status}");
    check(&miniserde::json::to_string(&json_field(&status, "result")));
}

/// The `files` of a job request: `/work` holding in/data.txt, in/old.txt, in/delete-me.txt
/// and in/link, as tests/job_files.rs gives them to the engine.
fn work_files() -> String {
    use phase_core::encoding::base64_encode;
    let file = |path: &str, bytes: &[u8]| format!("{{\"path\":\"{path}\",\"data\":\"{}\"}}", base64_encode(bytes));
    format!(
        ",\"args\":[\"/work\"],\"files\":{{\"mounts\":[{{\"guest\":\"/work\",\"entries\":[{},{},{},{{\"path\":\"in/link\",\"symlink\":\"data.txt\"}}]}}]}}",
        file("in/data.txt", b"alpha\nbravo\ncharlie\n"),
        file("in/old.txt", b"old"),
        file("in/delete-me.txt", b"gone")
    )
}

#[test]
fn a_job_with_files_runs_here_queued_on_a_peer_and_redundantly_with_one_verified_result() {
    use phase_core::job::answer::{Answer, Asked};
    use phase_core::job::request::JobRequest;
    let (a, _b, _c) = trio("none");
    let body = job(&guest("files"), b"", &work_files());
    let req = JobRequest::parse(&body).unwrap();
    let (module, input) = (phase_core::sha256(&guest("files")), phase_core::sha256(b""));
    let asked = Asked { module_sha256: &module, input_sha256: &input, args: &req.args, env: &[], limits: &req.limits, signer: None, files: req.files.as_ref() };
    let verified = |text: &str| {
        let answer = Answer::parse(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        answer.verify(&asked).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(String::from_utf8_lossy(&answer.stdout).starts_with("lines: 3\n"), "{text}");
        answer
    };
    // Here, synchronously: the answer carries the files the job left.
    let r = a.request("POST", "/v1/jobs", &job(&guest("files"), b"", &(work_files() + ",\"placement\":\"local\"")));
    assert_eq!(r.status, 200, "{}", r.text());
    let here = verified(&r.text());
    let left = here.files.as_ref().expect("files in the answer");
    assert_eq!(left.changes.changes().len(), 7);
    // On a peer (the files travel with the job), and asynchronously: the same files left.
    let r = a.request("POST", "/v1/jobs", &job(&guest("files"), b"", &(work_files() + ",\"placement\":\"remote\"")));
    assert_eq!(r.status, 200, "{}", r.text());
    let there = verified(&r.text());
    assert!(there.executor.is_some() && there.signer() != here.signer());
    assert_eq!(there.receipt.body.files.map(|f| f.left), here.receipt.body.files.map(|f| f.left));
    let r = http_with(a.addr, "POST", "/v1/jobs", "Prefer: respond-async\r\n", &body);
    assert_eq!(r.status, 202, "{}", r.text());
    let location = json_string(&r.text(), "location");
    let give_up = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let s = a.request("GET", &location, b"").text();
        if json_string(&s, "status") == "done" {
            break s;
        }
        assert!(Instant::now() < give_up, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let queued = verified(&done[done.find("\"result\":").unwrap() + 9..done.len() - 1]);
    assert_eq!(queued.files, here.files);
    // On three nodes: they agree, their files too.
    let r = a.request("POST", "/v1/jobs", &job(&guest("files"), b"", &(work_files() + ",\"redundancy\":3")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"agree\":true"), "{}", r.text());
    // A file named by hash that nobody sent, and a tree that leaves its mount, are refused.
    let unknown = job(&guest("files"), b"", ",\"files\":{\"mounts\":[{\"guest\":\"/w\",\"entries\":[{\"path\":\"x\",\"sha256\":\"0707070707070707070707070707070707070707070707070707070707070707\",\"size\":1}]}]}");
    let r = a.request("POST", "/v1/jobs", &unknown);
    assert_eq!((r.status, json_string(&r.text(), "error")), (404, "file_not_found".to_string()), "{}", r.text());
    let escape = job(&guest("files"), b"", ",\"files\":{\"mounts\":[{\"guest\":\"/w\",\"entries\":[{\"path\":\"../x\",\"dir\":true}]}]}");
    let r = a.request("POST", "/v1/jobs", &escape);
    assert_eq!((r.status, json_string(&r.text(), "error")), (422, "invalid_files".to_string()), "{}", r.text());
}
