//! Every console gets PID 1's and the services' lines. The kernel prints its own messages on
//! every `console=` it was given (a stick boots with the screen and the serial port), but
//! /dev/console, where PID 1's stdout and stderr point, is only the last of them. With more
//! than one active console, PID 1 points stdout and stderr (inherited by every service) at a
//! pipe, and a thread copies what arrives to each console, so the ready line, the address and
//! the node key reach a monitor as well as the serial port.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use crate::sys;

const ACTIVE: &str = "/sys/class/tty/console/active";

/// Starts the mirror when more than one console is active; otherwise leaves stdout and stderr
/// on /dev/console. Failures leave them there too (and say so).
pub fn mirror() {
    let names = std::fs::read_to_string(ACTIVE).unwrap_or_default();
    let mut consoles: Vec<File> = names
        .split_whitespace()
        .filter(|n| !n.contains('/'))
        .filter_map(|n| OpenOptions::new().write(true).custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC).open(format!("/dev/{n}")).ok())
        .collect();
    if consoles.len() < 2 {
        return;
    }
    let (mut rx, tx) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return log!("console: pipe: {e}; lines go to /dev/console only"),
    };
    let spawned = std::thread::Builder::new().name("console".into()).spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match rx.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    for c in consoles.iter_mut() {
                        let _ = c.write_all(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    if let Err(e) = spawned {
        return log!("console: cannot start the mirror thread: {e}; lines go to /dev/console only");
    }
    if let Err(e) = sys::dup_onto(&tx, 1).and_then(|()| sys::dup_onto(&tx, 2)) {
        log!("console: dup2: {e}");
    }
    log!("console: lines go to {}", names.split_whitespace().collect::<Vec<_>>().join(" and "));
}

/// Waits (at most 1 s) until the mirror has taken every line written so far, so that lines
/// logged just before a power-off, reboot or kexec reach the consoles.
pub fn drain() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while sys::pipe_pending(2).is_some_and(|n| n > 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if sys::pipe_pending(2).is_some() {
        // The mirror may still be writing the last chunk it took.
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
}

/// Points stdout and stderr back at /dev/console, for a program PID 1 execs in its place
/// (the mirror thread ends with PID 1's image).
pub fn restore() {
    if let Ok(c) = OpenOptions::new().write(true).custom_flags(libc::O_NOCTTY).open("/dev/console") {
        let _ = sys::dup_onto(&c, 1);
        let _ = sys::dup_onto(&c, 2);
    }
}
