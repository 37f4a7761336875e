//! The JavaScript CouchDB connector end to end against the simulated CouchDB: conflicts,
//! forbidden documents, oversized requests, rate limits and refused credentials.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_couchdb_retries_conflicts_and_rejects_forbidden_documents() {
    let dest = couch_sim(|c| c.faults = Faults::locking(5, 0.25)).await;
    let mut records = documents(300);
    records[3]["email"] = json!("bad,email.com");
    records[4].as_object_mut().unwrap().remove("name");
    records[5]["_secret"] = json!(1);
    records[6]["id"] = json!("_design/app");
    let ran = couch_sync(&records, &dest, 2).run().await;
    let s = ran.summary();
    ran.expect(
        Expect::completed()
            .read(300)
            .delivered(296)
            .rejected(4)
            .pending(0),
    );
    assert_eq!(
        ran.fates.codes(),
        BTreeMap::from([
            ("doc0003".to_string(), "forbidden".to_string()),
            ("doc0004".into(), "forbidden".into()),
            ("doc0005".into(), "doc_validation".into()),
            ("_design/app".into(), "INVALID_ID".into()),
        ])
    );
    common::locks_each_retried_once(&dest, s);
    let stored = dest.stored();
    assert_eq!(stored.len(), 296);
    for key in ran.fates.keys(is_delivered) {
        // Written once, so at its first revision, which the fate carries.
        assert_eq!(
            ran.fates.all()[&key].0,
            Fate::Delivered(Some(couchdb::revision(&key, 1)))
        );
        assert_eq!(stored[&key]["_id"], json!(key));
    }
    assert!(
        ran.fates
            .keys(is_rejected)
            .iter()
            .all(|k| !stored.contains_key(k))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_couchdb_a_request_too_large_is_bisected_to_the_document() {
    let dest = couch_sim(|c| c.max_request_bytes = Some(20_000)).await;
    let mut records = documents(100);
    records[60]["notes"] = json!("n".repeat(30_000));
    let ran = couch_sync(&records, &dest, 1).run().await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(99).rejected(1));
    assert_eq!(
        ran.fates.codes(),
        BTreeMap::from([("doc0060".to_string(), "too_large".to_string())])
    );
    assert!(
        s.bisections > 0 && s.requests <= 15,
        "{} requests",
        s.requests
    );
    assert_eq!(dest.stored().len(), 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_couchdb_honours_429_with_an_http_date_and_retries_server_errors() {
    let faults = Faults {
        rate_limit: Some(RateLimit {
            requests: 2,
            window: Duration::from_millis(1000),
            style: LimitStyle::TooManyRequests,
            retry_after: RetryAfterStyle::HttpDate,
        }),
        error_burst: Some(ErrorBurst {
            every: 3,
            length: 1,
            status: 502,
        }),
        ..Faults::default()
    };
    let dest = couch_sim(|c| c.faults = faults).await;
    let ran = couch_sync(&documents(500), &dest, 2).run().await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(500).pending(0));
    let stats = dest.stats();
    assert!(stats.rate_limited > 0 && stats.server_errors > 0);
    assert_eq!(s.rate_limit_waits, stats.rate_limited);
    assert_eq!(s.transient_failures, stats.server_errors);
    common::assert_waits_honoured(&dest, 2);
    assert_eq!(dest.stored().len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_couchdb_refused_credentials_stop_the_run() {
    common::set_env("COUCH_TOKEN_401", "wrong-token");
    let auth = AuthConfig {
        tokens: vec!["right-token".into()],
        session_requests: None,
        oauth: None,
    };
    let dest = couch_sim(|c| c.auth = Some(auth)).await;
    let ran = couch_sync(&documents(200), &dest, 2)
        .sync("auth = { bearer_env = \"COUCH_TOKEN_401\" }")
        .run()
        .await;
    ran.expect(Expect::failed().delivered(0).pending(200));
    assert!(dest.stored().is_empty());
    assert!(ran.fates.keys(is_delivered).is_empty());
}
