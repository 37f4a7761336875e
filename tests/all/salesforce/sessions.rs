//! An expired session is renewed and the run completes; one that cannot be renewed stops
//! the run with its records pending.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed_and_the_run_completes() {
    let auth = common::sessions_renewed_by_oauth2(3);
    let dest = sim(Faults::default(), Some(auth)).await;
    let ran = accounts_to(&dest, common::accounts(500))
        .sync(&common::oauth2_renewal("SF_RENEW", &dest.base_url()))
        .run()
        .await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(500).pending(0));
    let stats = dest.stats();
    assert!(
        s.auth_renewals >= 2,
        "10 batches with 3 requests a session need renewals"
    );
    assert_eq!(
        stats.token_refreshes,
        s.auth_renewals + 1,
        "one token at the start, one per renewal"
    );
    // The summary counts what the destination counted: records' requests and tokens'.
    assert_eq!(s.token_requests, stats.token_refreshes);
    assert_eq!(
        s.requests + s.token_requests,
        stats.requests,
        "{s:?}\n{stats:?}"
    );
    assert_eq!(dest.stored().len(), 500);
    // Every data request carried a token the host fetched; none carried a secret.
    for r in dest
        .requests()
        .iter()
        .filter(|r| r.path.contains("/composite/"))
    {
        let auth = r.authorization.as_deref().unwrap_or_default();
        assert!(
            auth.starts_with("Bearer ") && !auth.contains("secret") && !auth.contains("refresh"),
            "{auth}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_cannot_be_renewed_stops_the_run_with_records_pending() {
    common::set_env("SF_STATIC_TOKEN", "static-token");
    let auth = AuthConfig {
        tokens: vec!["static-token".into()],
        session_requests: Some(2),
        oauth: None,
    };
    let dest = sim(Faults::default(), Some(auth)).await;
    let ran = accounts_to(&dest, common::accounts(400))
        .sync("auth = { bearer_env = \"SF_STATIC_TOKEN\" }")
        .run()
        .await;
    let s = ran.summary();
    // Two requests of 50 were accepted before the session expired.
    ran.expect(Expect::failed().delivered(100).pending(s.read - 100));
    let error = s.error.as_deref().unwrap();
    assert!(
        error.contains("refused renewed credentials") && error.contains("INVALID_SESSION_ID"),
        "{error}"
    );
    assert!(
        !error.contains("static-token"),
        "the secret leaked into the error: {error}"
    );
    let stored: BTreeSet<String> = dest.stored().into_keys().collect();
    let delivered: BTreeSet<String> = ran.fates.keys(is_delivered).into_iter().collect();
    assert_eq!(
        stored, delivered,
        "nothing is marked delivered that the destination did not store"
    );
    assert!(!ran.fates.keys(is_pending).is_empty());
    assert_eq!(ran.fates.keys(is_rejected).len(), 0);
}
