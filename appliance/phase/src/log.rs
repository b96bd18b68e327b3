//! Console log lines: `phase: [seconds since boot] message`, to stderr. Stamps use
//! CLOCK_BOOTTIME so PID 1, its services and the kernel's own messages line up. When stderr is
//! the systemd journal (`$JOURNAL_STREAM` names it), lines are the bare message: the journal
//! stamps and labels each line itself.

/// Kept for callers that start the clock early; boot time needs no start.
pub fn init() {}

pub fn uptime() -> f64 {
    crate::sys::boot_time_secs()
}

/// Whether stderr is the journal's stream: `$JOURNAL_STREAM` is `device:inode` of the stream
/// systemd connected, and it is still fd 2 (systemd.exec(5)). Decided once: it is a fact about
/// how this process was started, not state.
pub fn to_journal() -> bool {
    static TO_JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TO_JOURNAL.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let Ok(named) = std::env::var("JOURNAL_STREAM") else { return false };
        let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else { return false };
        is_stream(&named, stderr.dev(), stderr.ino())
    })
}

fn is_stream(named: &str, dev: u64, ino: u64) -> bool {
    named.split_once(':').and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))) == Some((dev, ino))
}

/// Writes one log line. The line is formatted first and written with one `write(2)`: Rust's
/// stderr is unbuffered, so `eprintln!` writes each piece of a format apart (a dozen system
/// calls for a job's line, on every job) and lines from two processes on one console could
/// interleave mid-line. A failed write is dropped: logging never stops the node (`eprintln!`
/// panics on a closed pipe).
pub fn line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let stamp = if to_journal() { None } else { Some((uptime() * 1000.0) as u64) };
    let text = format_line(stamp, args);
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `phase: [    s.mmm] message\n`, or the bare message for the journal (`stamp_ms` None).
fn format_line(stamp_ms: Option<u64>, args: std::fmt::Arguments<'_>) -> String {
    match stamp_ms {
        // As `{:9.3}` of the seconds, without formatting a float.
        Some(ms) => format!("phase: [{:5}.{:03}] {args}\n", ms / 1000, ms % 1000),
        None => format!("{args}\n"),
    }
}

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_is_stamped_with_seconds_and_millis_or_bare_for_the_journal() {
        assert_eq!(super::format_line(Some(12_345), format_args!("job {} ok", 7)), "phase: [   12.345] job 7 ok\n");
        assert_eq!(super::format_line(Some(5), format_args!("x")), "phase: [    0.005] x\n");
        assert_eq!(super::format_line(Some(123_456_789), format_args!("x")), "phase: [123456.789] x\n");
        assert_eq!(super::format_line(None, format_args!("job {}", 7)), "job 7\n");
    }

    #[test]
    fn the_journal_stream_is_matched_by_device_and_inode() {
        assert!(super::is_stream("64768:123456", 64768, 123456));
        assert!(!super::is_stream("64768:123456", 64768, 123457));
        assert!(!super::is_stream("garbage", 1, 2));
        assert!(!super::is_stream("", 0, 0));
    }
}
