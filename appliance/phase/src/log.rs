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

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        if $crate::log::to_journal() {
            eprintln!("{}", format_args!($($arg)*))
        } else {
            eprintln!("phase: [{:9.3}] {}", $crate::log::uptime(), format_args!($($arg)*))
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_journal_stream_is_matched_by_device_and_inode() {
        assert!(super::is_stream("64768:123456", 64768, 123456));
        assert!(!super::is_stream("64768:123456", 64768, 123457));
        assert!(!super::is_stream("garbage", 1, 2));
        assert!(!super::is_stream("", 0, 0));
    }
}
