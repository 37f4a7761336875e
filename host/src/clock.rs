//! The wall clock, in milliseconds since the Unix epoch: what the ledger, the inspector,
//! the run history and the progress line call "now". One place reads it, so that every
//! timestamp Sluice writes is on the same scale.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch (0 for a clock set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
