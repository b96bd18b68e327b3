//! NAT traversal between real nodes in network namespaces: a relay R on "the internet", and
//! A and B each behind its own NAT router (iptables MASQUERADE, and a stateful firewall that
//! drops unsolicited inbound connections, as home routers do), so neither can accept a
//! connection. A places a job on B: it gets there through R, then DCUtR punches a hole and A
//! and B hold a direct TCP connection through both NATs.
//! Needs root (ip netns, iptables); nothing leaves the machine.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Lab {
    tag: String,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.tag)
    }

    fn sh(&self, cmd: &str) {
        let ok = Command::new("sh").arg("-c").arg(cmd).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "{cmd}");
    }

    fn node(&mut self, ns: &str, args: &[&str]) -> PathBuf {
        let log = std::env::temp_dir().join(format!("{}.log", self.ns(ns)));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), env!("CARGO_BIN_EXE_phase"), "node", "--http", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.children.push(child);
        log
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in ["pub", "r1", "r2", "a", "b"] {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(n)]).stderr(Stdio::null()).status();
        }
    }
}

fn wait_log(log: &PathBuf, pattern: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(pattern)) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no {pattern:?} in {}:\n{text}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// POSTs a job to a node's API from inside its namespace.
fn post_in(ns: &str, url: &str, body: &str) -> (u16, String) {
    let script = "import sys,urllib.request,urllib.error\n\
        r=urllib.request.Request(sys.argv[1],data=sys.stdin.buffer.read(),method='POST')\n\
        try:\n  x=urllib.request.urlopen(r,timeout=60); print(x.status); print(x.read().decode())\n\
        except urllib.error.HTTPError as e:\n  print(e.code); print(e.read().decode())\n";
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script, url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    let (status, rest) = out.split_once('\n').unwrap_or(("0", ""));
    (status.trim().parse().unwrap_or(0), rest.to_string())
}

#[test]
fn a_job_reaches_a_node_behind_nat_from_a_node_behind_another_nat() {
    assert!(
        std::fs::read_to_string("/proc/self/status").unwrap().lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
        "the NAT test needs root (ip netns, iptables); CI runs as root"
    );
    let mut lab = Lab { tag: format!("n{}", std::process::id() % 100000), children: vec![] };
    for n in ["pub", "r1", "r2", "a", "b"] {
        let _ = Command::new("ip").args(["netns", "del", &lab.ns(n)]).stderr(Stdio::null()).status();
        lab.sh(&format!("ip netns add {0} && ip -n {0} link set lo up", lab.ns(n)));
    }
    let (t, pubn, r1, r2, a, b) = (lab.tag.clone(), lab.ns("pub"), lab.ns("r1"), lab.ns("r2"), lab.ns("a"), lab.ns("b"));
    // The internet: pub (10.1.1.1, 10.1.2.1) routes between the two routers' WAN links.
    lab.sh(&format!("ip link add {t}p1 netns {pubn} type veth peer name {t}w1 netns {r1}"));
    lab.sh(&format!("ip link add {t}p2 netns {pubn} type veth peer name {t}w2 netns {r2}"));
    lab.sh(&format!("ip link add {t}l1 netns {r1} type veth peer name {t}ea netns {a}"));
    lab.sh(&format!("ip link add {t}l2 netns {r2} type veth peer name {t}eb netns {b}"));
    for (ns, dev, ip) in [
        (&pubn, "p1", "10.1.1.1/24"), (&pubn, "p2", "10.1.2.1/24"),
        (&r1, "w1", "10.1.1.2/24"), (&r1, "l1", "10.10.1.1/24"),
        (&r2, "w2", "10.1.2.2/24"), (&r2, "l2", "10.10.2.1/24"),
        (&a, "ea", "10.10.1.2/24"), (&b, "eb", "10.10.2.2/24"),
    ] {
        lab.sh(&format!("ip -n {ns} addr add {ip} dev {t}{dev} && ip -n {ns} link set {t}{dev} up"));
    }
    lab.sh(&format!("ip netns exec {pubn} sysctl -qw net.ipv4.ip_forward=1"));
    for (r, wan, gw) in [(&r1, "w1", "10.1.1.1"), (&r2, "w2", "10.1.2.1")] {
        lab.sh(&format!("ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1"));
        lab.sh(&format!("ip netns exec {r} iptables -t nat -A POSTROUTING -o {t}{wan} -j MASQUERADE"));
        // Unsolicited connections from the WAN are dropped, not refused: a router that answers
        // a hole-punching SYN with a RST keeps a conntrack entry for that pair of addresses,
        // and the other side's SYN then leaves through a different port (no hole).
        lab.sh(&format!("ip netns exec {r} iptables -A INPUT -i {t}{wan} -m conntrack --ctstate NEW -j DROP"));
        lab.sh(&format!("ip -n {r} route add default via {gw}"));
    }
    lab.sh(&format!("ip -n {a} route add default via 10.10.1.1 && ip -n {b} route add default via 10.10.2.1"));

    let relay_log = lab.node("pub", &["--p2p", "/ip4/0.0.0.0/tcp/4001"]);
    let relay = wait_log(&relay_log, "p2p: peer id ", Duration::from_secs(10)).rsplit(' ').next().unwrap().to_string();
    let a_log = lab.node("a", &["--p2p", "/ip4/0.0.0.0/tcp/0", "--nat", "--bootstrap", &format!("/ip4/10.1.1.1/tcp/4001/p2p/{relay}")]);
    let b_log = lab.node("b", &["--p2p", "/ip4/0.0.0.0/tcp/0", "--nat", "--bootstrap", &format!("/ip4/10.1.2.1/tcp/4001/p2p/{relay}")]);
    wait_log(&a_log, "reachable through relay", Duration::from_secs(20));
    wait_log(&b_log, "reachable through relay", Duration::from_secs(20));
    let b_peer = wait_log(&b_log, "p2p: peer id ", Duration::from_secs(1)).rsplit(' ').next().unwrap().to_string();
    let a_http = wait_log(&a_log, "listening on http://", Duration::from_secs(1)).rsplit("http://").next().unwrap().trim().to_string();

    let hello = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../build/wasm/hello.wasm")).expect("build the guests first");
    let body = format!(
        "{{\"module\":\"{}\",\"input\":\"{}\",\"placement\":\"{b_peer}\"}}",
        phase_core::encoding::base64_encode(&hello),
        phase_core::encoding::base64_encode(b"behind two NATs")
    );
    // B's circuit address reaches the DHT shortly after its reservation: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, answer) = loop {
        let (status, answer) = post_in(&a, &format!("http://{a_http}/v1/jobs"), &body);
        if status == 200 || Instant::now() > deadline {
            break (status, answer);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let logs = || format!("--- a ---\n{}\n--- b ---\n{}\n--- relay ---\n{}",
        std::fs::read_to_string(&a_log).unwrap_or_default(), std::fs::read_to_string(&b_log).unwrap_or_default(),
        std::fs::read_to_string(&relay_log).unwrap_or_default());
    assert_eq!(status, 200, "{answer}\n{}", logs());
    assert!(answer.contains(&format!("\"executor\":\"{b_peer}\"")), "{answer}");
    let reversed: String = "behind two NATs".chars().rev().collect();
    assert!(answer.contains(&phase_core::encoding::base64_encode(reversed.as_bytes())), "{answer}");
    // The two NATed nodes never accepted a connection from outside: the path was the relay.
    let relay_text = std::fs::read_to_string(&relay_log).unwrap();
    assert!(relay_text.contains("p2p: relaying"), "{}", logs());
    // Then DCUtR upgraded it: both sides report the punched hole, and A holds a TCP connection
    // straight to B's router (10.1.2.2), which only a hole lets through.
    let a_peer = wait_log(&a_log, "p2p: peer id ", Duration::from_secs(1)).rsplit(' ').next().unwrap().to_string();
    wait_log(&a_log, &format!("direct connection to {b_peer} (hole punched)"), Duration::from_secs(15));
    wait_log(&b_log, &format!("direct connection to {a_peer} (hole punched)"), Duration::from_secs(15));
    let sockets = Command::new("ip").args(["netns", "exec", &a, "ss", "-Htn", "state", "established", "dst", "10.1.2.2"]).output().unwrap();
    let sockets = String::from_utf8_lossy(&sockets.stdout).into_owned();
    assert!(sockets.contains("10.1.2.2:"), "no direct connection from A to B's NAT:\n{sockets}\n{}", logs());
    // With the relay gone, jobs still reach B: over the punched hole.
    let mut relay_node = lab.children.remove(0);
    let _ = relay_node.kill();
    let _ = relay_node.wait();
    let body = format!(
        "{{\"module\":\"{}\",\"input\":\"{}\",\"placement\":\"{b_peer}\"}}",
        phase_core::encoding::base64_encode(&hello),
        phase_core::encoding::base64_encode(b"no relay")
    );
    let (status, answer) = post_in(&a, &format!("http://{a_http}/v1/jobs"), &body);
    assert_eq!(status, 200, "{answer}\n{}", logs());
    assert!(answer.contains(&phase_core::encoding::base64_encode(b"yaler on")), "{answer}");
}
