//! The wall clock, read in one place. Nothing a job computes reads it (the engine's clock is
//! the fuel clock); it dates kept answers and judges manifests' time windows.

/// Unix seconds now (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
