//! What an operator at the machine can type on a console (the screen's keyboard or the serial
//! port), a line each (docs/cmdline.md, "Console commands"):
//!
//! - `update`: the node takes the newest release it knows up now, whatever its wave or
//!   maintenance window (what `POST /v1/update` does with the operator token: sitting at the
//!   machine is the operator's standing). It never brings in a release: only one the node has
//!   verified already, never one reported failed.
//! - `fleet`: prints this node, its peers and the rollouts (what `phase fleet` prints).
//! - `help`: lists them.
//!
//! A console is a tty in canonical mode: the kernel edits and echoes the line, PID 1 reads it
//! once Enter is pressed. Lines are at most MAX_LINE bytes; longer ones and unknown words are
//! answered with the list, never acted on.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest line taken (a tty's canonical line is up to 4095 bytes).
pub const MAX_LINE: usize = 256;

const HELP: &str = "console commands: update (take the newest verified release up now), fleet (this node, its peers and the rollouts), help";

/// A command, parsed from a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Update,
    Fleet,
    Help,
    /// An empty line: nothing.
    Nothing,
    /// Anything else (shown escaped and cut, so a console's garbage cannot fill the log).
    Unknown(String),
}

impl Command {
    pub fn parse(line: &[u8]) -> Command {
        let text = String::from_utf8_lossy(line);
        match text.trim() {
            "" => Command::Nothing,
            "update" => Command::Update,
            "fleet" => Command::Fleet,
            "help" | "?" => Command::Help,
            other => Command::Unknown(other.chars().take(40).flat_map(char::escape_default).collect()),
        }
    }
}

/// Reads commands from every active console (`/sys/class/tty/console/active`, else
/// /dev/console), a thread each; `update_now` is the file the node watches for `update`.
pub fn listen(http_port: u16, update_now: &'static str) {
    let names = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    let mut ttys: Vec<PathBuf> = names.split_whitespace().filter(|n| !n.contains('/')).map(|n| Path::new("/dev").join(n)).collect();
    if ttys.is_empty() {
        ttys.push("/dev/console".into());
    }
    for tty in ttys {
        let name = tty.display().to_string();
        let mut budget = Budget::default();
        let spawned = std::thread::Builder::new().name("console-commands".into()).spawn(move || {
            read_lines(&tty, |line| {
                if budget.spend(Instant::now()) {
                    run(Command::parse(line), http_port, update_now);
                }
            })
        });
        if let Err(e) = spawned {
            log!("console: cannot read commands from {name}: {e}");
        }
    }
}

/// Lines acted on per second per console; a console that sends endless lines (a cable's noise,
/// a stuck key) costs at most this many answers, and the rest are counted once a second.
pub const LINES_PER_SECOND: u32 = 4;

#[derive(Default)]
struct Budget {
    second: Option<Instant>,
    used: u32,
    dropped: u32,
}

impl Budget {
    fn spend(&mut self, now: Instant) -> bool {
        if self.second.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1)) {
            if self.dropped > 0 {
                log!("console: {} line(s) ignored (at most {LINES_PER_SECOND} a second)", self.dropped);
            }
            *self = Budget { second: Some(now), used: 0, dropped: 0 };
        }
        self.used += 1;
        if self.used > LINES_PER_SECOND {
            self.dropped += 1;
        }
        self.used <= LINES_PER_SECOND
    }
}

/// Calls `each` with every line read from `tty` (without its newline); a line longer than
/// MAX_LINE is passed as `b"\0"` once its end comes, so it is answered as unknown.
fn read_lines(tty: &Path, mut each: impl FnMut(&[u8])) {
    let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC).open(tty) {
        Ok(f) => f,
        Err(e) => return log!("console: {}: {e}; no commands from it", tty.display()),
    };
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut too_long = false;
    let mut buf = [0u8; 512];
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return log!("console: {}: read: {e}; no more commands from it", tty.display()),
        };
        if n == 0 {
            // End of file (Ctrl-D, or a hung-up line): the console may come back; look again
            // in a second rather than spinning.
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        for &b in &buf[..n] {
            if b == b'\n' || b == b'\r' {
                if too_long {
                    each(b"\0");
                } else if !line.is_empty() {
                    each(&line);
                }
                line.clear();
                too_long = false;
            } else if line.len() < MAX_LINE {
                line.push(b);
            } else {
                too_long = true;
            }
        }
    }
}

fn run(command: Command, http_port: u16, update_now: &str) {
    match command {
        Command::Nothing => {}
        Command::Help => log!("{HELP}"),
        Command::Unknown(what) => log!("console: unknown command \"{what}\"; {HELP}"),
        Command::Update => match crate::durable::replace(Path::new(update_now), b"console\n") {
            Ok(()) => log!("console: asked the node to take the newest verified release up now (its update: lines follow)"),
            Err(e) => log!("console: {update_now}: {e}; no update asked"),
        },
        Command::Fleet => match crate::update::fleet_text::show(&format!("http://127.0.0.1:{http_port}")) {
            Ok(text) => {
                for l in text.lines() {
                    log!("{l}");
                }
            }
            Err(e) => log!("console: fleet: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_commands_and_anything_else_is_named_cut_and_escaped() {
        assert_eq!(Command::parse(b" update "), Command::Update);
        assert_eq!(Command::parse(b"fleet"), Command::Fleet);
        assert_eq!(Command::parse(b"?"), Command::Help);
        assert_eq!(Command::parse(b"   "), Command::Nothing);
        assert_eq!(Command::parse(b"update now"), Command::Unknown("update now".into()));
        let Command::Unknown(shown) = Command::parse(&[0x1b; 300]) else { panic!("escape bytes are a command") };
        assert_eq!(shown, "\\u{1b}".repeat(40));
    }

    #[test]
    fn a_console_is_answered_at_most_lines_per_second_times_a_second() {
        let mut b = Budget::default();
        let t = Instant::now();
        let taken = (0..100).filter(|_| b.spend(t)).count();
        assert_eq!(taken, LINES_PER_SECOND as usize);
        assert!(b.spend(t + Duration::from_secs(1)), "a new second has a new budget");
    }

    #[test]
    fn lines_are_split_on_enter_and_a_line_too_long_is_one_unknown_command() {
        let dir = std::env::temp_dir().join(format!("phase-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tty");
        let mut input = b"update\r\n\nfleet\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE));
        input.extend(b"\nhelp\n");
        std::fs::write(&path, &input).unwrap();
        // A file ends where a tty would wait: the reader's thread is left sleeping on EOF.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || read_lines(&p, |l| tx.send(Command::parse(l)).unwrap()));
        let got: Vec<Command> = (0..4).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(got, [Command::Update, Command::Fleet, Command::Unknown("\\u{0}".into()), Command::Help]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
