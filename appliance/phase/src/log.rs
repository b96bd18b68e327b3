//! Console log lines: `phase: [uptime] message`, to stderr.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Starts the uptime clock (call early in main).
pub fn init() {
    START.get_or_init(Instant::now);
}

pub fn uptime() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("phase: [{:9.3}] {}", $crate::log::uptime(), format_args!($($arg)*))
    };
}
