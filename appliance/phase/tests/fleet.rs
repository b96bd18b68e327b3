//! Fleet updates between real `phase node` processes on loopback (docs/netboot.md, "Fleet
//! updates"): a release published on one node reaches the others over the peer network, each
//! fetches, verifies and serves it in the wave its key gives it; hostile notices (unsigned,
//! older, another publisher's, malformed, endless) are refused at bounded cost; a release a
//! node reported as failed is never fetched.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use phase_core::boot::manifest::Manifest;
use phase_core::boot::rollout::{FailureReport, ReleaseId};

struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn new(name: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("phase-fleet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, n, mul) in [("bzImage", 400_000u32, 2654435761u32), ("initramfs.cpio.zst", 300_001, 40503)] {
            let bytes: Vec<u8> = (0..n).map(|i| (i.wrapping_mul(mul) >> 7) as u8).collect();
            std::fs::write(dir.join(file), bytes).unwrap();
        }
        std::fs::write(dir.join("token"), "an-operator-token-of-this-test\n").unwrap();
        Lab { dir }
    }
    fn p(&self, n: &str) -> String {
        self.dir.join(n).to_str().unwrap().to_string()
    }
    fn key(&self, name: &str) -> String {
        let (code, out) = run_phase(&["manifest", "keygen", "--out", &self.p(name)]);
        assert_eq!(code, 0, "{out}");
        out.split_whitespace().next().unwrap().to_string()
    }
    /// `phase publish` of version `version` signed by `key`, into `--store DIR` or `--node URL`.
    fn publish(&self, key: &str, version: u64, to: &[&str], extra: &[&str]) -> (i32, String) {
        let v = version.to_string();
        let (k, i, key) = (self.p("bzImage"), self.p("initramfs.cpio.zst"), self.p(key));
        let mut args = vec!["publish", "--key", &key, "--arch", "x86_64", "--version", &v, "--kernel", &k, "--initramfs", &i, "--cmdline", "console=ttyS0"];
        args.extend_from_slice(to);
        args.extend_from_slice(extra);
        run_phase(&args)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn update(n: &Node) -> String {
    n.request("GET", "/v1/update", b"").text()
}

fn serving(n: &Node) -> Option<u64> {
    json_u64(&update(n), "serving")
}

fn listen_addr(n: &Node) -> String {
    let status = n.request("GET", "/v1/status", b"").text();
    let p2p = json_field(&status, "p2p");
    let miniserde::json::Value::Object(m) = p2p else { panic!("no p2p: {status}") };
    match m.get("listen") {
        Some(miniserde::json::Value::Array(a)) => match a.first() {
            Some(miniserde::json::Value::String(s)) => s.clone(),
            _ => panic!("no listen address"),
        },
        _ => panic!("listen"),
    }
}

fn wait(what: &str, within: Duration, nodes: &[&Node], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs: Vec<String> = nodes.iter().map(|n| format!("{}\n{}", update(n), n.log())).collect();
    panic!("{what} within {within:?}:\n{}", logs.join("\n-----\n"));
}

/// The number after `"field":` in the release entry of `version` in a node's update status.
fn release_field(status: &str, version: u64, field: &str) -> Option<u64> {
    let entry = status.split("{\"channel\"").find(|e| e.contains(&format!("\"version\":{version},")) && e.contains("\"wave\""))?;
    let rest = entry.split(&format!("\"{field}\":")).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[test]
fn a_release_published_on_one_node_rolls_through_the_others_in_their_waves() {
    let lab = Lab::new("waves");
    let publisher = lab.key("pub.key");
    for s in ["a", "b", "c"] {
        let (code, out) = lab.publish("pub.key", 1, &["--store", &lab.p(s)], &[]);
        assert_eq!(code, 0, "{out}");
    }
    let common = |store: String| vec!["--boot-store".to_string(), store, "--trust".into(), publisher.clone(), "--p2p".into(), "/ip4/127.0.0.1/tcp/0".into()];
    let mut a_args = common(lab.p("a"));
    a_args.extend(["--operator-token-file".to_string(), lab.p("token")]);
    let a = Node::start(&a_args.iter().map(String::as_str).collect::<Vec<_>>());
    let boot = listen_addr(&a);
    // Node keys that put b in the first wave (positions below 5000 of 10000) and c in the second.
    let pk = phase_core::encoding::hex_decode_array::<32>(&publisher).unwrap();
    let mut keys: [Option<String>; 2] = [None, None];
    for i in 0..200 {
        let name = format!("node{i}.key");
        let node = phase_core::encoding::hex_decode_array::<32>(&lab.key(&name)).unwrap();
        let wave = usize::from(phase_core::boot::rollout::position(&pk, "stable", &node) >= 5000);
        keys[wave].get_or_insert(name);
        if keys.iter().all(Option::is_some) {
            break;
        }
    }
    let start = |store: &str, key: &Option<String>| {
        let data = lab.dir.join(format!("{store}-data"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::copy(lab.p(key.as_ref().expect("a key for each wave")), data.join("node.key")).unwrap();
        let mut args = common(lab.p(store));
        args.extend(["--bootstrap".to_string(), boot.clone(), "--data-dir".into(), data.to_str().unwrap().into()]);
        Node::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (b, c) = (start("b", &keys[0]), start("c", &keys[1]));
    for n in [&a, &b, &c] {
        assert_eq!(serving(n), Some(1));
    }
    wait("b and c connected to a", Duration::from_secs(20), &[&a, &b, &c], || {
        let peers = a.request("GET", "/v1/peers", b"").text();
        peers.matches("\"connected\":true").count() >= 2
    });

    // Without the operator token nothing is published.
    let (code, out) = lab.publish("pub.key", 2, &["--node", &format!("http://{}", a.addr), "--operator-token-file", &lab.p("pub.key")], &[]);
    assert_ne!(code, 0, "a wrong token: {out}");
    assert!(out.contains("403") && out.contains("operator token"), "{out}");
    assert_eq!(serving(&a), Some(1));

    // Version 2: half of the fleet at once, the rest 12 s later.
    let published = Instant::now();
    let (code, out) = lab.publish("pub.key", 2, &["--node", &format!("http://{}", a.addr), "--operator-token-file", &lab.p("token")], &["--rollout", "0:50,12:100"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("published stable/x86_64 version 2"), "{out}");
    assert_eq!(serving(&a), Some(2), "the node it was published on serves it at once");

    // Each of b and c learns of it, and serves it only once its own wave has started.
    let mut served_at = vec![];
    for n in [&b, &c] {
        wait("version 2 learnt", Duration::from_secs(20), &[&a, n], || release_field(&update(n), 2, "wave").is_some());
        let status = update(n);
        let (wave, starts) = (release_field(&status, 2, "wave").unwrap(), release_field(&status, 2, "wave_starts_at").unwrap());
        served_at.push((n, wave, starts));
    }
    assert_eq!((served_at[0].1, served_at[1].1), (1, 2), "b is in the first wave, c in the second");
    for (n, wave, starts) in served_at {
        wait("version 2 served", Duration::from_secs(60), &[&a, n], || serving(n) == Some(2));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(now >= starts, "served before its wave (wave {wave} starts at {starts}, now {now})");
        if wave == 1 {
            assert!(published.elapsed() < Duration::from_secs(10), "the first wave did not wait: {:?}", published.elapsed());
        } else {
            assert!(published.elapsed() >= Duration::from_secs(10), "a second-wave node waited for its wave: {:?}", published.elapsed());
        }
        // What it serves is the signed release, byte for byte.
        let kernel = n.request("GET", "/v1/boot/stable/x86_64/bzImage", b"");
        assert_eq!(kernel.status, 200);
        assert_eq!(kernel.body, std::fs::read(lab.p("bzImage")).unwrap());
        let manifest = n.request("GET", "/v1/boot/stable/x86_64/manifest.json", b"").text();
        assert!(manifest.contains("\"version\":2") && manifest.contains("\"rollout\""), "{manifest}");
    }
    eprintln!("version 2 on every node {:.1}s after it was published", published.elapsed().as_secs_f64());

    // The fleet view: the page, its JSON with every node's own state, and `phase fleet`.
    let page = a.request("GET", "/", b"");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert!(page.text().contains("/v1/fleet") && !page.text().contains("http://") && !page.text().contains("https://"), "the page loads nothing from elsewhere");
    let fleet = a.request("GET", "/v1/fleet", b"").text();
    // Made at most once per 2 s: asked again at once, the same view (its uptimes too).
    assert_eq!(a.request("GET", "/v1/fleet", b"").text(), fleet);
    let peers = json_field(&fleet, "peers");
    let miniserde::json::Value::Array(peers) = peers else { panic!("{fleet}") };
    assert_eq!(peers.len(), 2, "{fleet}");
    assert!(fleet.matches("\"serving\":2").count() >= 3, "a, b and c each serve v2: {fleet}");
    let (code, out) = run_phase(&["fleet", "--node", &format!("http://{}", a.addr)]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("peer ") && l.contains("current")).count(), 2, "{out}");
    assert!(out.lines().any(|l| l.starts_with("this ") && l.contains("current")), "{out}");
    assert!(out.contains("stable/x86_64 v2") && out.contains("waves 0s:50%,12s:100%"), "{out}");

    // The replaced release is kept beside the served one (the one to return to).
    assert!(lab.dir.join("b/stable/.previous-x86_64/manifest.json").exists());
    // The same release published again is not news, and an older one is refused.
    let (code, out) = lab.publish("pub.key", 1, &["--node", &format!("http://{}", a.addr), "--operator-token-file", &lab.p("token")], &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("rollback") || out.contains("below"), "{out}");
}

#[test]
fn hostile_notices_are_refused_at_bounded_cost_and_a_failed_release_is_never_fetched() {
    let lab = Lab::new("hostile");
    let publisher = lab.key("pub.key");
    lab.key("stranger.key");
    for s in ["a", "b"] {
        let (code, out) = lab.publish("pub.key", 1, &["--store", &lab.p(s)], &[]);
        assert_eq!(code, 0, "{out}");
    }
    let a = Node::start(&["--boot-store", &lab.p("a"), "--trust", &publisher, "--p2p", "/ip4/127.0.0.1/tcp/0", "--operator-token-file", &lab.p("token")]);
    let boot = listen_addr(&a);
    let b = Node::start(&["--boot-store", &lab.p("b"), "--trust", &publisher, "--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &boot]);

    // The hostile peer: a node in this process, whose notices are whatever bytes it likes.
    let mut config = phase::node::NodeConfig::new("127.0.0.1:0");
    config.p2p = Some(phase::node::PeerSettings { listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()], bootstrap: vec![boot.parse().unwrap()], ..Default::default() });
    let hostile = phase::node::Node::start(config).unwrap();
    let net = hostile.network.clone().unwrap();
    wait("the hostile peer connected to both", Duration::from_secs(20), &[&a, &b], || {
        [&a, &b].iter().all(|n| n.request("GET", "/v1/peers", b"").text().contains(&net.peer_id.to_string()))
    });

    let key = |name: &str| phase::identity::NodeIdentity::load(std::path::Path::new(&lab.p(name))).unwrap();
    let v1 = std::fs::read_to_string(lab.dir.join("a/stable/x86_64/manifest.json")).unwrap();
    let m1 = Manifest::from_json(v1.trim()).unwrap();
    let mut body = m1.body.clone();
    body.version = 9;
    let stranger = Manifest::sign(body.clone(), key("stranger.key").key_pair()).unwrap();
    let mut unsigned = Manifest::sign(body.clone(), key("pub.key").key_pair()).unwrap();
    unsigned.signature = [0; 64];
    let mut expired = body.clone();
    (expired.created_at, expired.expires_at) = (1_700_000_000, 1_700_086_400);
    let expired = Manifest::sign(expired, key("pub.key").key_pair()).unwrap();
    // One at a time: a peer takes four notice streams at once and drops more.
    for notice in [unsigned.to_json(), stranger.to_json(), expired.to_json(), v1.trim().to_string(), "{\"format\":\"phase-boot-manifest/v1\"".into(), "[]".into()] {
        net.announce(notice.into_bytes(), None);
        std::thread::sleep(Duration::from_millis(150));
    }
    wait("the refusals recorded", Duration::from_secs(10), &[&b], || json_u64(&update(&b), "notices_refused").unwrap_or(0) >= 5);
    let status = update(&b);
    assert!(status.contains("bad signature") && status.contains("unknown publisher key") && status.contains("expired"), "{status}");
    assert!(!status.contains("\"version\":9"), "no refused release is kept: {status}");
    assert!(!status.contains("\"heard_from\":\"peer"), "the release b serves, sent again, is no news: {status}");
    // Endless notices: past the per-peer budget they are not even parsed.
    let before = json_u64(&update(&b), "notices_received").unwrap();
    for i in 0..600 {
        net.announce(format!("{{\"format\":\"x{i}\"}}").into_bytes(), None);
        if i % 4 == 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    wait("the flood received", Duration::from_secs(20), &[&b], || json_u64(&update(&b), "notices_received").unwrap() >= before + 100);
    let refused = json_u64(&update(&b), "notices_refused").unwrap();
    assert!(refused <= phase::update::NOTICES_PER_MINUTE as u64, "{refused} notices parsed in a minute from one peer");
    assert_eq!(b.request("GET", "/health", b"").status, 200);

    // Version 2 published on a with its waves an hour away: a serves it, b learns of it and waits.
    let later = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600).to_string();
    let node_url = format!("http://{}", a.addr);
    let (code, out) = lab.publish("pub.key", 2, &["--node", &node_url, "--operator-token-file", &lab.p("token")], &["--created-at", &later]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(serving(&a), Some(2));
    wait("b learnt of version 2", Duration::from_secs(20), &[&a, &b], || release_field(&update(&b), 2, "wave").is_some());
    // A failure report for version 2, signed by some node's key, from a fresh peer (the
    // hostile one has spent its budget for this minute).
    let v2_id = ReleaseId { version: 2, ..ReleaseId::of(&m1) };
    let reporter = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([3; 32]));
    let report = FailureReport::sign(v2_id, 1_800_000_000, "not healthy within 120 s: no peer reached", &reporter);
    let mut config = phase::node::NodeConfig::new("127.0.0.1:0");
    config.p2p = Some(phase::node::PeerSettings { listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()], bootstrap: vec![boot.parse().unwrap()], ..Default::default() });
    let witness = phase::node::Node::start(config).unwrap();
    let wnet = witness.network.clone().unwrap();
    wait("the witness connected to b", Duration::from_secs(20), &[&b], || b.request("GET", "/v1/peers", b"").text().contains(&wnet.peer_id.to_string()));
    wnet.announce(report.to_json().into_bytes(), None);
    // It floods: b and a keep it; a withdraws version 2 and serves version 1 again.
    wait("the failure report kept by both", Duration::from_secs(10), &[&a, &b], || update(&a).contains("no peer reached") && update(&b).contains("no peer reached"));
    wait("a serving version 1 again", Duration::from_secs(10), &[&a], || serving(&a) == Some(1));
    let manifest = a.request("GET", "/v1/boot/stable/x86_64/manifest.json", b"").text();
    assert!(manifest.contains("\"version\":1,"), "{manifest}");
    assert!(update(&a).contains("withdrew stable/x86_64 version 2"), "{}", update(&a));
    assert!(release_field(&update(&b), 2, "wave").is_some() && update(&b).contains("\"failed\":true"), "{}", update(&b));
    // Published again, it is refused for its failure.
    let (code, out) = lab.publish("pub.key", 2, &["--node", &node_url, "--operator-token-file", &lab.p("token")], &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("failed on node"), "{out}");
    assert_eq!(serving(&b), Some(1), "b never fetches a release reported failed: {}", update(&b));
    hostile.stop();
    witness.stop();
}

#[test]
fn an_appliance_node_drains_then_hands_its_update_to_pid1() {
    let lab = Lab::new("drain");
    let publisher = lab.key("pub.key");
    let (code, out) = lab.publish("pub.key", 1, &["--store", &lab.p("a")], &[]);
    assert_eq!(code, 0, "{out}");
    // What PID 1 gives an appliance's node: a boot store it may update, and a hand-off file.
    let mut config = phase::node::NodeConfig::new("127.0.0.1:0");
    config.boot_store = Some(lab.p("a").into());
    config.trust = vec![phase_core::encoding::hex_decode_array::<32>(&publisher).unwrap()];
    config.operator = Some(phase_core::sha256(b"an-operator-token-of-this-test"));
    config.update_handoff = Some(lab.p("handoff").into());
    config.drain = Some(60);
    config.max_concurrent = Some(1);
    // As on a stick: the data dir keeps the answers of asynchronous jobs across the update.
    config.data_dir = Some(lab.p("data").into());
    // A maintenance window that is not now: the node takes the release up, boots it only when
    // the window opens or an operator says so.
    let now_min = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60 % 1440;
    let (start, end) = ((now_min + 120) % 1440, (now_min + 180) % 1440);
    config.window = Some(format!("{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60));
    std::fs::write(lab.p("node.json"), config.to_json()).unwrap();
    let mut node = Node::spawn(Command::new(env!("CARGO_BIN_EXE_phase")).args(["node", "--config", &lab.p("node.json")]));

    // A long asynchronous job, started before the update.
    let module = phase_core::encoding::base64_encode(&guest("ticker"));
    let body = format!("{{\"module\":\"{module}\",\"input\":\"{}\",\"limits\":{{\"fuel\":1000000000000,\"deadline_ms\":120000}}}}", phase_core::encoding::base64_encode(b"60 40000000"));
    let r = http_with(node.addr, "POST", "/v1/jobs", "Prefer: respond-async\r\n", body.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    let id = json_string(&r.text(), "job_id");

    let (code, out) = lab.publish("pub.key", 2, &["--node", &format!("http://{}", node.addr), "--operator-token-file", &lab.p("token")], &[]);
    assert_eq!(code, 0, "{out}");
    let hello = format!("{{\"module\":\"{}\",\"input\":\"\"}}", phase_core::encoding::base64_encode(&guest("hello")));
    // Outside its window it serves v2 and keeps taking jobs.
    std::thread::sleep(Duration::from_secs(3));
    assert!(node.exited().is_none() && !node.log().contains("draining"), "{}", node.log());
    assert_eq!(serving(&node), Some(2));
    let status = update(&node);
    assert!(status.contains("\"open\":false"), "{status}");
    // An operator's word (POST /v1/update): it boots v2 now.
    let (code, out) = run_phase(&["fleet", "--node", &format!("http://{}", node.addr), "--update", "--operator-token-file", &lab.p("pub.key")]);
    assert_ne!(code, 0, "a wrong token: {out}");
    let (code, out) = run_phase(&["fleet", "--node", &format!("http://{}", node.addr), "--update", "--operator-token-file", &lab.p("token")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("taking stable/x86_64 version 2"), "{out}");
    // Draining: new jobs are refused with the reason, the running one goes on to its answer.
    wait("new jobs refused while draining", Duration::from_secs(10), &[&node], || {
        let r = node.request("POST", "/v1/jobs", hello.as_bytes());
        r.status == 503 && r.text().contains("takes no new jobs") && r.text().contains("version 2")
    });
    let r = http(node.addr, "GET", &format!("/v1/jobs/{id}"), b"");
    assert_eq!(json_string(&r.text(), "status"), "running", "the job runs on while the node drains: {}", r.text());
    let give_up = Instant::now() + Duration::from_secs(120);
    while node.exited().is_none() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = node.exited().expect("the node exits once drained");
    assert_eq!(status.code(), Some(phase::update::EXIT_UPDATE), "{}", node.log());
    assert_eq!(std::fs::read_to_string(lab.p("handoff")).unwrap(), "2 0 operator\n");
    let log = node.log();
    let (ended, drained) = (log.find(" exited 0 fuel").expect("the job ran to its end"), log.find("drained in").expect("drained"));
    assert!(ended < drained, "the node handed over only after the job ended:\n{log}");
    // The node after the update (here: started again on the same data dir) has the answer.
    let node = Node::spawn(Command::new(env!("CARGO_BIN_EXE_phase")).args(["node", "--config", &lab.p("node.json")]));
    let r = node.request("GET", &format!("/v1/jobs/{id}"), b"");
    assert_eq!((r.status, json_string(&r.text(), "status")), (200, "done".to_string()), "{}", r.text());
    assert_eq!(serving(&node), Some(2));
}
