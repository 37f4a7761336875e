//! How long a rate-limited batch waits, and when it gives up: a pure function of the
//! answer, the clock values it came with and what the batch has waited so far, so that
//! every wait a destination can state (zero, in the past, absent, absurdly long) is
//! covered by tests rather than met in production.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::RetryPolicy;
use crate::sandbox::Wait;

/// The shortest wait after any rate-limited answer, even with `initial_backoff = 0`: a
/// throttled destination must never be hit again at once, in a loop.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// What the host does after one rate-limited answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStep {
    /// How long after the answer arrived the next request may leave.
    pub wait: Duration,
    /// The batch's rate-limit waits so far, this one included.
    pub waited: Duration,
    /// The waits add up to more than `max_rate_limit_wait`: the batch stays pending.
    pub give_up: bool,
}

/// The wait the destination stated, measured from when its answer arrived
/// (`received_at_ms`, on the wall clock); zero when it stated none or a time already past.
pub fn stated_wait(wait: Option<&Wait>, received_at_ms: u64) -> Duration {
    match wait {
        Some(Wait::AfterMs(ms)) => Duration::from_millis(*ms),
        Some(Wait::UntilUnixMs(at_ms)) => {
            Duration::from_millis(at_ms.saturating_sub(received_at_ms))
        }
        None => Duration::ZERO,
    }
}

/// The step after the `hits`-th consecutive rate-limited answer to one batch (counted from
/// 1), which had already waited `waited`.
///
/// A stated wait shorter than `retry.initial_backoff` (zero, in the past, or absent) is
/// replaced by the backoff ceiling for `hits`, so a destination that keeps saying "now"
/// sees exponentially spaced requests; a longer one is kept. Every answer's wait counts
/// towards `max_rate_limit_wait`, so the batch gives up after a bounded number of answers.
/// Saturating arithmetic throughout: `u64::MAX` milliseconds is merely "past the budget".
pub fn step(
    policy: &RetryPolicy,
    wait: Option<&Wait>,
    received_at_ms: u64,
    hits: u32,
    waited: Duration,
) -> RateLimitStep {
    let floor = policy.initial_backoff.max(MIN_WAIT);
    let stated = stated_wait(wait, received_at_ms);
    let wait = if stated < floor {
        policy.backoff_ceiling(hits).max(floor)
    } else {
        stated
    };
    let waited = waited.saturating_add(wait);
    RateLimitStep {
        wait,
        waited,
        give_up: waited > policy.max_rate_limit_wait,
    }
}

/// `from + wait`, or a time decades away when that cannot be represented: a wait too long
/// for the clock is still a wait, never a panic.
pub fn deadline(from: Instant, wait: Duration) -> Instant {
    const DECADES: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    from.checked_add(wait)
        .or_else(|| from.checked_add(DECADES))
        .unwrap_or(from)
}

/// Whole milliseconds of `d`, saturating at `u64::MAX`.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            ..RetryPolicy::default()
        }
    }

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_zero_past_or_absent_wait_becomes_the_growing_backoff() {
        let p = policy();
        for wait in [
            Some(Wait::AfterMs(0)),
            Some(Wait::AfterMs(499)),
            Some(Wait::UntilUnixMs(NOW - 60_000)),
            Some(Wait::UntilUnixMs(0)),
            None,
        ] {
            let waits: Vec<u128> = (1..=8)
                .map(|hits| {
                    step(&p, wait.as_ref(), NOW, hits, Duration::ZERO)
                        .wait
                        .as_millis()
                })
                .collect();
            assert_eq!(
                waits,
                [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000],
                "{wait:?}"
            );
        }
    }

    #[test]
    fn a_longer_stated_wait_is_kept() {
        let p = policy();
        let after = step(&p, Some(&Wait::AfterMs(2_000)), NOW, 5, Duration::ZERO);
        assert_eq!(after.wait, Duration::from_secs(2));
        let until = step(
            &p,
            Some(&Wait::UntilUnixMs(NOW + 7_000)),
            NOW,
            1,
            Duration::ZERO,
        );
        assert_eq!(until.wait, Duration::from_secs(7));
        assert!(!after.give_up && !until.give_up);
    }

    #[test]
    fn an_endless_wait_gives_up_without_overflow() {
        let p = policy();
        for wait in [Wait::AfterMs(u64::MAX), Wait::UntilUnixMs(u64::MAX)] {
            let s = step(&p, Some(&wait), NOW, u32::MAX, Duration::MAX);
            assert!(s.give_up);
            assert_eq!(s.waited, Duration::MAX);
            let s = step(&p, Some(&wait), 0, 1, Duration::ZERO);
            assert!(s.give_up);
        }
        let far = deadline(Instant::now(), Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(365 * 24 * 3600));
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn every_answer_counts_towards_the_budget() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(80),
            max_rate_limit_wait: Duration::from_millis(300),
            ..policy()
        };
        // 20, 40, 80, 80, 80: 300ms, not past the budget; the sixth answer is.
        let mut waited = Duration::ZERO;
        let mut answers = 0;
        loop {
            answers += 1;
            let s = step(&p, Some(&Wait::AfterMs(0)), NOW, answers, waited);
            waited = s.waited;
            if s.give_up {
                break;
            }
        }
        assert_eq!((answers, waited.as_millis()), (6, 380));
    }

    fn arbitrary_wait() -> impl Strategy<Value = Option<Wait>> {
        prop_oneof![
            Just(None),
            any::<u64>().prop_map(|ms| Some(Wait::AfterMs(ms))),
            (0u64..120_000).prop_map(|ms| Some(Wait::AfterMs(ms))),
            any::<u64>().prop_map(|at| Some(Wait::UntilUnixMs(at))),
            (-120_000i64..120_000)
                .prop_map(|d| Some(Wait::UntilUnixMs(NOW.saturating_add_signed(d)))),
        ]
    }

    fn arbitrary_policy(max_budget_ms: u64) -> impl Strategy<Value = RetryPolicy> {
        (0u64..5_000, 0u64..120_000, 1.0f64..16.0, 0..max_budget_ms).prop_map(
            |(initial, extra, multiplier, budget)| RetryPolicy {
                initial_backoff: Duration::from_millis(initial),
                max_backoff: Duration::from_millis(initial + extra),
                multiplier,
                max_rate_limit_wait: Duration::from_millis(budget),
                ..RetryPolicy::default()
            },
        )
    }

    fn arbitrary_received() -> impl Strategy<Value = u64> {
        prop_oneof![any::<u64>(), Just(NOW), Just(0), Just(u64::MAX)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Never under the floor, never shorter than the destination asked, never a
        /// panic; the budget is spent exactly by the waits, and past it the batch gives up.
        #[test]
        fn one_answer(
            p in arbitrary_policy(3_600_000),
            wait in arbitrary_wait(),
            received in arbitrary_received(),
            hits in any::<u32>(),
            waited_ms in prop_oneof![any::<u64>(), 0u64..3_600_000],
        ) {
            let waited = Duration::from_millis(waited_ms);
            let s = step(&p, wait.as_ref(), received, hits, waited);
            prop_assert!(s.wait >= p.initial_backoff && s.wait >= MIN_WAIT);
            prop_assert!(s.wait >= stated_wait(wait.as_ref(), received));
            prop_assert_eq!(s.waited, waited.saturating_add(s.wait));
            prop_assert_eq!(s.give_up, s.waited > p.max_rate_limit_wait);
            let _ = deadline(Instant::now(), s.wait);
        }

        /// Whatever a destination keeps answering, a batch gives up after at most
        /// `budget / floor + 1` rate-limited answers.
        #[test]
        fn a_run_of_answers_ends(
            p in arbitrary_policy(20_000),
            waits in proptest::collection::vec(arbitrary_wait(), 1..64),
            received in arbitrary_received(),
        ) {
            let floor = p.initial_backoff.max(MIN_WAIT);
            let bound = p.max_rate_limit_wait.as_nanos() / floor.as_nanos() + 1;
            let mut waited = Duration::ZERO;
            let mut hits = 0u32;
            let mut gave_up = false;
            // Cycle through the answers until the batch gives up or the bound is passed.
            for wait in waits.iter().cycle().take(bound as usize + 1) {
                hits += 1;
                let s = step(&p, wait.as_ref(), received, hits, waited);
                prop_assert!(s.waited <= p.max_rate_limit_wait || s.give_up);
                waited = s.waited;
                if s.give_up {
                    gave_up = true;
                    break;
                }
            }
            prop_assert!(gave_up, "no give-up after {hits} answers (bound {bound})");
            prop_assert!(u128::from(hits) <= bound);
        }
    }
}
