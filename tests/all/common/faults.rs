//! The fault profiles the tests give simulated destinations, one constructor each.

use std::time::Duration;

use sluice_sim::faults::{ErrorBurst, Faults, LimitStyle, RateLimit, RetryAfterStyle};

/// Answers `length` requests in a row with `status`, every `every` requests (0: from the
/// first request on).
pub fn error_burst(every: u64, length: u64, status: u16) -> Faults {
    Faults {
        error_burst: Some(ErrorBurst {
            every,
            length,
            status,
        }),
        ..Faults::default()
    }
}

/// Takes `requests` requests per window of `window_ms`, and answers the others in `style`,
/// saying when the window ends as `retry_after`.
pub fn rate_limited(
    requests: u32,
    window_ms: u64,
    style: LimitStyle,
    retry_after: RetryAfterStyle,
) -> Faults {
    Faults {
        rate_limit: Some(RateLimit {
            requests,
            window: Duration::from_millis(window_ms),
            style,
            retry_after,
        }),
        ..Faults::default()
    }
}

/// Fails each record with a row lock with `probability`, drawn from `seed`.
pub fn locking(seed: u64, probability: f64) -> Faults {
    Faults {
        seed,
        lock_probability: probability,
        ..Faults::default()
    }
}
