//! Seeded, deterministic failure injection shared by both simulators.
//!
//! Every fault is a pure function of the configuration, the seed and what the client has
//! sent so far (request ordinals, how often a key was seen, the clock for rate windows), so
//! a test that fails can be replayed exactly. Nothing here draws from a global random
//! source: the hash below is written out so that its output never changes with a Rust or
//! crate upgrade, which `std`'s hashers do not promise.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which faults a simulator injects. The default injects none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Seeds every pseudo-random decision (row locks, issued token names).
    pub seed: u64,
    /// Probability in `[0, 1]` that one record's write fails with `UNABLE_TO_LOCK_ROW`.
    /// Decided from `(seed, key, n)`, where `n` counts earlier appearances of the key, so a
    /// retried record eventually gets through and the outcome does not depend on how
    /// concurrent requests interleave.
    pub lock_probability: f64,
    /// Throttling by fixed windows; see [`RateLimit`].
    pub rate_limit: Option<RateLimit>,
    /// Periodic runs of whole-request server errors; see [`ErrorBurst`].
    pub error_burst: Option<ErrorBurst>,
    /// Slow responses; see [`Latency`].
    pub latency: Option<Latency>,
}

/// One constructor per fault profile the tests use.
impl Faults {
    /// Answers `length` requests in a row with `status`, every `every` requests (0: from
    /// the first request on).
    pub fn error_burst(every: u64, length: u64, status: u16) -> Self {
        Faults {
            error_burst: Some(ErrorBurst {
                every,
                length,
                status,
            }),
            ..Faults::default()
        }
    }

    /// Takes `requests` requests per window of `window_ms`, and answers the others in
    /// `style`, saying when the window ends as `retry_after`.
    pub fn rate_limited(
        requests: u32,
        window_ms: u64,
        style: LimitStyle,
        retry_after: RetryAfterStyle,
    ) -> Self {
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

    /// Delays every `every`th request by `delay_ms` before answering it.
    pub fn slow(every: u64, delay_ms: u64) -> Self {
        Faults {
            latency: Some(Latency {
                every,
                delay: Duration::from_millis(delay_ms),
            }),
            ..Faults::default()
        }
    }

    /// Fails each record with a row lock with `probability`, drawn from `seed`.
    pub fn locking(seed: u64, probability: f64) -> Self {
        Faults {
            seed,
            lock_probability: probability,
            ..Faults::default()
        }
    }
}

/// Fixed-window throttling.
///
/// Time is cut into windows of `window`, counted from the simulator's start. At most
/// `requests` requests are served in one window; a request over that is refused without
/// being processed and told to come back when the window ends (see [`RetryAfterStyle`]).
///
/// Once it has refused a request the simulator stays closed until the time it announced,
/// even if a new window has begun meanwhile: a client that comes back early is refused
/// again (with a fresh, later announcement), which is how tests catch a client that ignores
/// `Retry-After`. Refused requests do not use up a window's budget: they were not served,
/// and counting them would let an impatient client lock itself out for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests served per window; at least 1 to serve anything.
    pub requests: u32,
    /// Length of a window; must not be zero.
    pub window: Duration,
    /// How a refusal looks on the wire.
    pub style: LimitStyle,
    /// How a refusal says when to come back.
    pub retry_after: RetryAfterStyle,
}

/// The status and body a throttled request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitStyle {
    /// HTTP 429 Too Many Requests.
    TooManyRequests,
    /// HTTP 403 with Salesforce's `REQUEST_LIMIT_EXCEEDED` error.
    RequestLimitExceeded,
    /// HTTP 503 Service Unavailable, as some REST APIs throttle.
    ServiceUnavailable,
}

impl LimitStyle {
    /// The HTTP status of a refusal in this style.
    pub fn status(self) -> u16 {
        match self {
            LimitStyle::TooManyRequests => 429,
            LimitStyle::RequestLimitExceeded => 403,
            LimitStyle::ServiceUnavailable => 503,
        }
    }
}

/// How a throttled response tells the client when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfterStyle {
    /// `Retry-After: <seconds>`: the time until the window ends, rounded up to a whole
    /// second, at least 1.
    Seconds,
    /// `Retry-After: <HTTP-date>`: the window's end rounded up to the next whole second
    /// (HTTP-dates have one-second resolution).
    HttpDate,
    /// No `Retry-After` header: the client must fall back on its own backoff. The
    /// announcement's `not_before` is then the time of the refusal (nothing was promised),
    /// and the simulator is closed only until the window ends.
    Absent,
}

/// Periodic whole-request server errors, decided by request ordinal.
///
/// Requests that pass authentication and the rate limit are numbered 0, 1, 2, ... in
/// arrival order. Ordinal `i` fails when `i % (every + length) >= every`: `every` requests
/// are served, then `length` fail with `status`, and so on. Failed requests are not
/// processed and store nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorBurst {
    /// Requests served between bursts.
    pub every: u64,
    /// Requests failed in each burst.
    pub length: u64,
    /// The status they fail with, for example 500 or 502 (a 5xx other than 500 gets an
    /// HTML body, as a proxy in front of the API would send).
    pub status: u16,
}

impl ErrorBurst {
    /// Whether the request with this ordinal falls in a burst.
    pub fn hits(&self, ordinal: u64) -> bool {
        let period = self.every.saturating_add(self.length);
        period != 0 && ordinal % period >= self.every
    }
}

/// Slow responses: every `every`-th data request (counted from 1 in arrival order; 1 means
/// all, 0 none) waits `delay` before it is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub every: u64,
    pub delay: Duration,
}

impl Latency {
    /// Whether the data request with this 0-based ordinal is delayed.
    pub fn applies(&self, ordinal: u64) -> bool {
        self.every != 0 && (ordinal + 1).is_multiple_of(self.every)
    }
}

/// Whether the `n`-th appearance (0-based) of `key` finds its row locked.
pub fn row_locked(seed: u64, probability: f64, key: &str, n: u64) -> bool {
    if probability <= 0.0 {
        return false;
    }
    let mut h = StableHash::new(seed);
    h.bytes(b"row-lock");
    h.bytes(key.as_bytes());
    h.u64(n);
    unit_interval(h.finish()) < probability
}

/// Maps a hash to `[0, 1)` with 53 bits of precision.
fn unit_interval(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A small, fixed hash: FNV-1a over length-prefixed parts, finished with SplitMix64 so
/// that nearby inputs spread over the whole output range.
#[derive(Debug, Clone)]
pub(crate) struct StableHash(u64);

impl StableHash {
    pub(crate) fn new(seed: u64) -> Self {
        let mut h = StableHash(0xcbf2_9ce4_8422_2325);
        h.u64(seed);
        h
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.raw(&(bytes.len() as u64).to_le_bytes());
        self.raw(bytes);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }

    fn raw(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// What the rate limiter decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LimitDecision {
    Serve,
    Refuse {
        /// The `Retry-After` header value, if the style sends one.
        retry_after: Option<String>,
        /// The earliest time the refusal told the client it may come back.
        not_before: SystemTime,
    },
}

/// Fixed-window counter plus the "closed until" promise; see [`RateLimit`].
#[derive(Debug)]
pub(crate) struct Limiter {
    config: RateLimit,
    epoch: Instant,
    window_index: u128,
    served: u32,
    closed_until: Option<Instant>,
}

impl Limiter {
    pub(crate) fn new(config: RateLimit, epoch: Instant) -> Self {
        Limiter {
            config,
            epoch,
            window_index: 0,
            served: 0,
            closed_until: None,
        }
    }

    /// Decides one request arriving at `now` (`now_wall` is the same moment on the wall
    /// clock, which announcements and HTTP-dates are expressed in).
    pub(crate) fn decide(&mut self, now: Instant, now_wall: SystemTime) -> LimitDecision {
        if let Some(until) = self.closed_until {
            if now < until {
                return self.refuse(now, now_wall, until);
            }
            self.closed_until = None;
        }
        let window = self.config.window.as_nanos().max(1);
        let index = now.saturating_duration_since(self.epoch).as_nanos() / window;
        if index != self.window_index {
            self.window_index = index;
            self.served = 0;
        }
        if self.served < self.config.requests {
            self.served += 1;
            return LimitDecision::Serve;
        }
        let end_nanos = u64::try_from((index + 1) * window).unwrap_or(u64::MAX);
        let window_end = self.epoch + Duration::from_nanos(end_nanos);
        self.refuse(now, now_wall, window_end)
    }

    /// Refuses a request and announces `target` (rounded as the style requires), keeping
    /// the simulator closed until the announced time.
    fn refuse(&mut self, now: Instant, now_wall: SystemTime, target: Instant) -> LimitDecision {
        let wait = target.saturating_duration_since(now);
        let (retry_after, delay) = match self.config.retry_after {
            RetryAfterStyle::Seconds => {
                let secs = ceil_seconds(wait).max(1);
                (Some(secs.to_string()), Duration::from_secs(secs))
            }
            RetryAfterStyle::HttpDate => {
                let date = ceil_to_second(now_wall + wait);
                let delay = date.duration_since(now_wall).unwrap_or_default();
                (Some(httpdate::fmt_http_date(date)), delay)
            }
            RetryAfterStyle::Absent => {
                return LimitDecision::Refuse {
                    retry_after: None,
                    not_before: now_wall,
                };
            }
        };
        let reopen = now + delay;
        self.closed_until = Some(self.closed_until.map_or(reopen, |c| c.max(reopen)));
        LimitDecision::Refuse {
            retry_after,
            not_before: now_wall + delay,
        }
    }
}

fn ceil_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn ceil_to_second(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(ceil_seconds(d)),
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Retry-After` and reopening of a request that must be refused (the `nth`).
    fn refused(
        l: &mut Limiter,
        epoch: Instant,
        wall: SystemTime,
        nth: &str,
    ) -> (Option<String>, SystemTime) {
        match l.decide(epoch, wall) {
            LimitDecision::Refuse {
                retry_after,
                not_before,
            } => (retry_after, not_before),
            LimitDecision::Serve => panic!("the {nth} request must be refused"),
        }
    }

    fn limiter(requests: u32, window_ms: u64, style: RetryAfterStyle) -> (Limiter, Instant) {
        let epoch = Instant::now();
        let config = RateLimit {
            requests,
            window: Duration::from_millis(window_ms),
            style: LimitStyle::TooManyRequests,
            retry_after: style,
        };
        (Limiter::new(config, epoch), epoch)
    }

    #[test]
    fn burst_pattern_is_periodic() {
        let b = ErrorBurst {
            every: 3,
            length: 2,
            status: 500,
        };
        let hits: Vec<bool> = (0..10).map(|i| b.hits(i)).collect();
        assert_eq!(
            hits,
            [
                false, false, false, true, true, false, false, false, true, true
            ]
        );
        assert!(
            !ErrorBurst {
                every: 0,
                length: 0,
                status: 500
            }
            .hits(5)
        );
        assert!(
            ErrorBurst {
                every: 0,
                length: 1,
                status: 500
            }
            .hits(5)
        );
    }

    #[test]
    fn latency_every_nth() {
        let l = Latency {
            every: 3,
            delay: Duration::ZERO,
        };
        let hits: Vec<bool> = (0..6).map(|i| l.applies(i)).collect();
        assert_eq!(hits, [false, false, true, false, false, true]);
        assert!(
            !Latency {
                every: 0,
                delay: Duration::ZERO
            }
            .applies(0)
        );
    }

    #[test]
    fn row_locks_are_deterministic_and_roughly_calibrated() {
        let locked = (0..10_000)
            .filter(|i| row_locked(7, 0.3, &format!("k{i}"), 0))
            .count();
        assert!((2_700..3_300).contains(&locked), "{locked}");
        for i in 0..100 {
            let key = format!("k{i}");
            assert_eq!(row_locked(7, 0.3, &key, 2), row_locked(7, 0.3, &key, 2));
        }
        assert!(!row_locked(7, 0.0, "k", 0));
        assert!(row_locked(7, 1.0, "k", 0));
    }

    #[test]
    fn window_budget_then_refusal_then_stays_closed() {
        let (mut l, epoch) = limiter(2, 100, RetryAfterStyle::Seconds);
        let wall = SystemTime::now();
        assert_eq!(l.decide(epoch, wall), LimitDecision::Serve);
        assert_eq!(l.decide(epoch, wall), LimitDecision::Serve);
        let (retry_after, not_before) = refused(&mut l, epoch, wall, "third");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(not_before, wall + Duration::from_secs(1));
        // A new window has begun, but the announced second has not passed.
        let later = epoch + Duration::from_millis(500);
        let again = l.decide(later, wall + Duration::from_millis(500));
        assert!(matches!(again, LimitDecision::Refuse { .. }));
        // Coming back early pushed the reopening further out, to 1.5 s.
        assert!(matches!(
            l.decide(epoch + Duration::from_millis(1_200), wall),
            LimitDecision::Refuse { .. }
        ));
        let reopened = epoch + Duration::from_millis(2_600);
        assert_eq!(l.decide(reopened, wall), LimitDecision::Serve);
    }

    #[test]
    fn http_date_is_the_window_end_rounded_up() {
        let (mut l, epoch) = limiter(1, 300, RetryAfterStyle::HttpDate);
        let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(l.decide(epoch, wall), LimitDecision::Serve);
        let (retry_after, not_before) = refused(&mut l, epoch, wall, "second");
        // The window ends at ...000.550; the next whole second is ...001.
        assert_eq!(not_before, UNIX_EPOCH + Duration::from_secs(1_700_000_001));
        let parsed = httpdate::parse_http_date(retry_after.as_deref().unwrap_or_default());
        assert_eq!(parsed.ok(), Some(not_before));
    }

    #[test]
    fn absent_retry_after_closes_only_for_the_window() {
        let (mut l, epoch) = limiter(1, 100, RetryAfterStyle::Absent);
        let wall = SystemTime::now();
        assert_eq!(l.decide(epoch, wall), LimitDecision::Serve);
        assert_eq!(
            l.decide(epoch, wall),
            LimitDecision::Refuse {
                retry_after: None,
                not_before: wall
            }
        );
        assert_eq!(
            l.decide(epoch + Duration::from_millis(100), wall),
            LimitDecision::Serve
        );
    }
}
