//! `phase node` under a service manager: the sd_notify protocol (READY=1 once the API listens,
//! WATCHDOG=1 while the front answers) and bare log lines when stderr is the journal. The
//! same checks run under real systemd in qemu/deb-test.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A service manager's notify socket in a fresh directory: (directory, socket, its path).
fn manager(name: &str) -> (std::path::PathBuf, UnixDatagram, String) {
    let dir = std::env::temp_dir().join(format!("phase-sm-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (dir, socket, path.to_str().unwrap().to_string())
}

fn datagram(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_node_reports_ready_once_it_listens_and_pings_the_watchdog_while_it_answers() {
    let (dir, manager, path) = manager("ready");
    let node = Node::start_with_env(&[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "400000")], &[]);
    let ready = datagram(&manager);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains(&format!("STATUS=serving on http://{}", node.addr)), "{ready}");
    assert_eq!(node.request("GET", "/health", b"").status, 200, "READY=1 means the API answers");
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        assert_eq!(datagram(&manager), "WATCHDOG=1");
        pings += 1;
    }
    // Three pings at half of 400 ms take about 600 ms; far more means the interval is ignored.
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert!(node.log().contains("watchdog: every 200 ms"), "{}", node.log());
    drop(node);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let (dir, manager, path) = manager("pid");
    let _node = Node::start_with_env(&[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")], &[]);
    assert!(datagram(&manager).starts_with("READY=1"));
    manager.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
    let mut buf = [0u8; 64];
    assert!(manager.recv(&mut buf).is_err(), "WATCHDOG_PID names PID 1: no pings from this node");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broken_notify_socket_name_is_logged_and_the_node_serves() {
    let node = Node::start_with_env(&[("NOTIFY_SOCKET", "relative/path")], &[]);
    assert_eq!(node.request("GET", "/health", b"").status, 200);
    // The line follows "accepting jobs", which is where Node::start stops reading.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node.log().contains("NOTIFY_SOCKET=") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(node.log().contains("NOTIFY_SOCKET=\"relative/path\": not a unix socket path"), "{}", node.log());
}

#[test]
fn log_lines_are_bare_messages_when_stderr_is_the_journal_and_stamped_otherwise() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    for journal in [true, false] {
        let (mut reader, writer) = std::io::pipe().unwrap();
        let meta = std::fs::metadata(format!("/proc/self/fd/{}", writer.as_raw_fd())).unwrap();
        let stream = if journal { format!("{}:{}", meta.dev(), meta.ino()) } else { format!("{}:{}", meta.dev(), meta.ino() + 1) };
        let mut child = Command::new(env!("CARGO_BIN_EXE_phase"))
            .args(["node", "--http", "127.0.0.1:0"])
            .env("JOURNAL_STREAM", stream)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer)
            .spawn()
            .unwrap();
        let mut text = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !text.contains("accepting jobs") && Instant::now() < deadline {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let _ = child.kill();
        let _ = child.wait();
        let line = text.lines().find(|l| l.contains("listening on http://")).unwrap_or_else(|| panic!("{text}"));
        if journal {
            assert!(line.starts_with("listening on http://"), "journal lines carry no stamp: {line:?}");
        } else {
            assert!(line.starts_with("phase: ["), "stamped: {line:?}");
        }
    }
}
