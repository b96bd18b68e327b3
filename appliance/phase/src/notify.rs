//! The service manager's side channel (sd_notify(3)) without libsystemd: state lines such as
//! `READY=1` or `WATCHDOG=1` sent as datagrams to the socket named by `$NOTIFY_SOCKET`, and the
//! watchdog interval from `$WATCHDOG_USEC`. Outside a `Type=notify` unit none of these is set
//! and nothing is sent.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

#[derive(Debug)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is set but names no usable socket address.
    BadAddress(String),
    Socket(io::Error),
}

impl std::fmt::Display for NotifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyError::BadAddress(a) => write!(f, "NOTIFY_SOCKET={a:?}: not a unix socket path or abstract name"),
            NotifyError::Socket(e) => write!(f, "notify socket: {e}"),
        }
    }
}

/// A connection to the service manager's notify socket.
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    label: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, or None when the variable is unset (not run by
    /// a service manager that wants notifications).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(name) if !name.is_empty() => Notifier::to(&name).map(Some),
            _ => Ok(None),
        }
    }

    /// `name` is a path, or `@name` for a socket in the abstract namespace.
    pub fn to(name: &str) -> Result<Notifier, NotifyError> {
        let to = socket_address(name)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        Ok(Notifier { socket, to, label: name.to_string() })
    }

    /// Sends one or more `KEY=value` lines as one datagram.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        self.socket.send_to_addr(state.as_bytes(), &self.to).map(drop).map_err(|e| NotifyError::Socket(io::Error::new(e.kind(), format!("{}: {e}", self.label))))
    }
}

fn socket_address(name: &str) -> Result<SocketAddr, NotifyError> {
    let bad = || NotifyError::BadAddress(name.to_string());
    if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(abstract_name.as_bytes()).map_err(|_| bad());
    }
    if !name.starts_with('/') {
        return Err(bad());
    }
    SocketAddr::from_pathname(name).map_err(|_| bad())
}

/// How often the service manager wants `WATCHDOG=1` (`$WATCHDOG_USEC`, when `$WATCHDOG_PID` is
/// unset or this process), or None when it watches nothing.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|u| *u > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

/// Whether the front at `addr` answers `GET /health` within `within`, with any status: it
/// accepts, parses and answers, which is what the watchdog vouches for (a 503 from a front at
/// its connection cap is an answer too: the node is loaded, not hung).
pub fn front_answers(addr: std::net::SocketAddr, within: Duration) -> bool {
    crate::http::health(addr, within).is_some()
}

/// Under a `Type=notify` unit: READY=1 now that the API listens, then WATCHDOG=1 at half the
/// watchdog interval for as long as the HTTP front answers its own `GET /health` (a node whose
/// front hangs stops vouching for itself and the manager restarts it). A notify socket that
/// cannot be used is logged, never fatal: the node serves either way.
pub fn tell_the_service_manager(listening: std::net::SocketAddr) {
    let notifier = match Notifier::from_env() {
        Ok(Some(n)) => n,
        Ok(None) => return,
        Err(e) => return log!("{e}"),
    };
    if let Err(e) = notifier.send(&format!("READY=1\nSTATUS=serving on http://{listening}")) {
        return log!("{e}");
    }
    let Some(interval) = watchdog_interval() else { return };
    let probe = probe_address(listening);
    // A watchdog shorter than this cannot be met by a real request anyway.
    let (every, within) = ((interval / 2).max(Duration::from_millis(10)), (interval / 4).max(Duration::from_millis(50)));
    log!("watchdog: every {} ms, vouched by GET /health on {probe}", every.as_millis());
    let spawned = std::thread::Builder::new().name("watchdog".into()).stack_size(64 << 10).spawn(move || {
        let mut was_ok = true;
        loop {
            std::thread::sleep(every);
            let ok = front_answers(probe, within);
            if ok {
                if let Err(e) = notifier.send("WATCHDOG=1") {
                    log!("watchdog: {e}");
                }
            } else if was_ok {
                log!("watchdog: the HTTP front did not answer GET /health on {probe} within {} ms; not vouching", within.as_millis());
            }
            was_ok = ok;
        }
    });
    if let Err(e) = spawned {
        log!("watchdog: no thread ({e}); the service manager will restart the node");
    }
}

/// Where the node's own front can be reached from inside the host: a wildcard listen address
/// is probed on loopback.
pub fn probe_address(listening: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match listening.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, listening.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_arrive_as_one_datagram_at_a_path_and_at_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("phase-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let manager = UnixDatagram::bind(&path).unwrap();
        Notifier::to(path.to_str().unwrap()).unwrap().send("READY=1\nSTATUS=listening").unwrap();
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=listening");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("phase-notify-test-{}", std::process::id());
        let manager = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        Notifier::to(&format!("@{name}")).unwrap().send("WATCHDOG=1").unwrap();
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn a_relative_or_oversized_name_is_refused_with_its_value() {
        assert!(matches!(Notifier::to("run/notify"), Err(NotifyError::BadAddress(_))));
        let long = format!("/{}", "x".repeat(200));
        let e = Notifier::to(&long).err().expect("longer than sun_path");
        assert!(e.to_string().contains("NOTIFY_SOCKET="), "{e}");
    }

    #[test]
    fn the_watchdog_probe_needs_an_http_answer_not_just_an_accept() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let held = std::thread::spawn({
            let l = silent.try_clone().unwrap();
            move || {
                let held = l.accept();
                std::thread::sleep(Duration::from_millis(800));
                drop(held)
            }
        });
        assert!(!front_answers(silent.local_addr().unwrap(), Duration::from_millis(300)), "accepted, never answered");
        let _ = held.join();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let (mut s, _) = busy.accept().unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").unwrap();
        });
        assert!(front_answers(addr, Duration::from_secs(2)), "a refusal is an answer");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(!front_answers(closed, Duration::from_millis(300)), "nothing listens");
    }

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        assert_eq!(probe_address("0.0.0.0:8700".parse().unwrap()), "127.0.0.1:8700".parse().unwrap());
        assert_eq!(probe_address("[::]:8700".parse().unwrap()), "[::1]:8700".parse().unwrap());
        assert_eq!(probe_address("10.0.2.15:9".parse().unwrap()), "10.0.2.15:9".parse().unwrap());
    }
}
