//! The wall clock as the host stores and compares it: Unix seconds, and milliseconds for the
//! connectors' caches. One place for it: seven copies had grown, two of them reading time
//! through another crate (code review of stop 39).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 for a clock set before it (a VM at boot), which makes
/// everything look expired rather than panicking.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch, as [`unix_now`].
pub fn unix_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
