//! Rate limits whose stated wait is useless: zero, in the past, absent, or beyond any clock.

use super::*;

/// A 429 whose `Retry-After` says to wait less than the backoff (zero, a time in the past) or
/// nothing: the host waits the backoff ceiling of this batch's consecutive rate-limited
/// answers instead, counts each wait against `max_rate_limit_wait`, and once that is spent
/// leaves the batch pending with `RATE_LIMITED`. No storm: the requests are spaced at least
/// by the ceilings, and there are only as many as the budget allows.
async fn assert_waits_the_backoff(retry_after: Option<&str>) {
    let bench = Bench::new(
        Misbehaviour::RateLimit {
            retry_after: retry_after.map(str::to_owned),
        },
        Some(STORM_GUARD),
        5,
        "",
    )
    .await;
    let (report, fates) = bench.run().await;
    let requests = bench.dest.requests();
    let policy = bench.setup.config.sync("s").unwrap().retry;

    // Hit k has waited ceiling(1) + ... + ceiling(k); another request may follow only while
    // that is within the budget (a host that checks the next pause before sending stops one
    // request earlier).
    let (mut most, mut waited) = (1usize, policy.backoff_ceiling(1));
    while waited <= policy.max_rate_limit_wait {
        most += 1;
        waited += policy.backoff_ceiling(most as u32);
    }
    assert!(
        requests.len() <= most,
        "Retry-After {retry_after:?}: {} requests for one batch, at most {most} fit the budget",
        requests.len()
    );
    assert!(
        requests.len() + 1 >= most,
        "Retry-After {retry_after:?}: gave up after {} requests; {most} fit the budget",
        requests.len()
    );
    for pair in requests.windows(2) {
        let hit = pair[1].seq as u32;
        let gap = pair[1].arrived.duration_since(pair[0].arrived);
        let floor = policy.backoff_ceiling(hit);
        assert!(
            gap >= floor,
            "Retry-After {retry_after:?}: request {} came {gap:?} after rate-limited answer {hit}, \
             before the backoff ceiling {floor:?}",
            pair[1].seq
        );
    }
    assert!(requests.iter().all(|r| r.answer == answer::RATE_LIMITED));

    let sent = requests.len() as u64;
    assert_summary_of(
        format!("Retry-After {retry_after:?}"),
        &report.summary,
        Expect::completed()
            .delivered(0)
            .rejected(0)
            .pending(5)
            .requests(sent)
            .rate_limit_waits(sent),
    );
    assert_eq!(fates, every(&bench.keys, "pending(RATE_LIMITED)"));
    assert_eq!(bench.ledger(), every(&bench.keys, "pending(RATE_LIMITED)"));
    assert!(bench.dest.stored().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_zero_waits_the_backoff_and_spends_the_budget() {
    assert_waits_the_backoff(Some("0")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_date_in_the_past_waits_the_backoff_and_spends_the_budget() {
    assert_waits_the_backoff(Some("Thu, 01 Jan 2015 00:00:00 GMT")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_waits_the_backoff_and_spends_the_budget() {
    assert_waits_the_backoff(None).await;
}

/// A wait too long for any clock (more seconds than fit in u64 milliseconds, or the year
/// 9999) is just longer than the budget: one request, the batch pending, no crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_any_clock_leaves_the_batch_pending_without_overflow() {
    for retry_after in ["99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"] {
        let bench = Bench::new(
            Misbehaviour::RateLimit {
                retry_after: Some(retry_after.into()),
            },
            Some(STORM_GUARD),
            5,
            "",
        )
        .await;
        let (report, fates) = bench.run().await;
        let s = &report.summary;
        assert_summary_of(
            format!("Retry-After {retry_after}"),
            s,
            Expect::completed()
                .delivered(0)
                .pending(5)
                .requests(1)
                .rate_limit_waits(1),
        );
        assert_eq!(s.error, None, "Retry-After {retry_after}");
        assert_eq!(bench.dest.request_count(), 1);
        assert_eq!(fates, every(&bench.keys, "pending(RATE_LIMITED)"));
        assert_eq!(bench.ledger(), every(&bench.keys, "pending(RATE_LIMITED)"));
    }
}
