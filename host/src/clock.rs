//! The wall clock: what the ledger, the inspector, the run history, the scheduler and the
//! progress line call "now", and the milliseconds since the Unix epoch that Sluice stores
//! times in. One place reads it, so that every timestamp is on the same scale.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now.
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Now, in milliseconds since the Unix epoch (0 for a clock set before 1970).
pub fn now_ms() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The time `ms` milliseconds after the Unix epoch (a stored time, for printing).
pub fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_in_ms_reads_back_to_the_same_ms() {
        let ms = now_ms();
        assert!(ms > 1_600_000_000_000, "the clock is past 2020: {ms}");
        assert_eq!(
            at_ms(ms).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
            ms
        );
    }
}
