//! Console log lines: `phase: [seconds since boot] message`, to stderr. Stamps use
//! CLOCK_BOOTTIME so PID 1, its services and the kernel's own messages line up.

/// Kept for callers that start the clock early; boot time needs no start.
pub fn init() {}

pub fn uptime() -> f64 {
    crate::sys::boot_time_secs()
}

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("phase: [{:9.3}] {}", $crate::log::uptime(), format_args!($($arg)*))
    };
}
