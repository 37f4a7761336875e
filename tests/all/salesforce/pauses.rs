//! Rate limits (429, REQUEST_LIMIT_EXCEEDED with an HTTP date) pause every worker; bursts
//! of server errors are retried after backoff.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_every_worker_until_retry_after() {
    let faults = Faults::rate_limited(2, 1000, TooManyRequests, Seconds);
    let dest = sim(faults, None).await;
    let setup = accounts_to(&dest, common::accounts(300)).setup();
    let started = SystemTime::now();
    let ran = common::Ran::of(setup).await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(300).pending(0));
    assert_eq!(dest.stored().len(), 300);
    let limited = dest.stats().rate_limited;
    assert!(limited > 0);
    assert_eq!(
        s.rate_limit_waits, limited,
        "every 429 was seen and waited out"
    );
    assert_eq!(s.retries, 0, "rate-limit waits use no attempts");
    common::assert_waits_honoured(&dest, 3);
    // Six batches at two per second need at least two more windows.
    assert!(started.elapsed().unwrap() >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limit_exceeded_with_an_http_date_is_a_rate_limit() {
    let faults = Faults::rate_limited(3, 1000, RequestLimitExceeded, HttpDate);
    let dest = sim(faults, None).await;
    let ran = accounts_to(&dest, common::accounts(250)).run().await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(250).pending(0));
    assert!(dest.requests().iter().any(|r| r.status == 403));
    assert_eq!(s.rate_limit_waits, dest.stats().rate_limited);
    common::assert_waits_honoured(&dest, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_server_errors_are_retried_after_backoff() {
    let faults = Faults::error_burst(2, 2, 500);
    let dest = sim(faults, None).await;
    let ran = accounts_to(&dest, common::accounts(200)).run().await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(200).rejected(0));
    let errors = dest.stats().server_errors;
    assert!(errors >= 2);
    assert_eq!(s.transient_failures, errors);
    assert_eq!(s.requests, 4 + errors);
    assert_eq!(dest.stored().len(), 200);
}
