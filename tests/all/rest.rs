//! The bundled generic REST connector: every classification path, from recorded responses
//! and end to end against the simulated REST destination; and the allowed-hosts rule.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use sluice::sandbox::SourceRecord;
use sluice_sim::faults::Faults;
use sluice_sim::faults::LimitStyle::ServiceUnavailable;
use sluice_sim::faults::RetryAfterStyle::HttpDate;
use sluice_sim::rest::{self, RestConfig, RestMode};
use sluice_sim::validation::Rules;
use sluice_sim::{AuthConfig, SimHandle};

use crate::common::{
    self, Expect, Scenario, assert_summary, assert_summary_of, configured, contacts, is_delivered,
    is_permanent, is_rejected, response, show,
};

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

#[test]
fn bodies_are_bare_arrays_or_wrapped() {
    let batch = vec![
        SourceRecord::new("1".into(), r#"{"id": "1", "n": 1.50}"#.into()),
        SourceRecord::new("2".into(), r#"{"id": "2"}"#.into()),
    ];
    let mut bare = configured("rest", &[("path", "/v1/contacts")]);
    let request = bare
        .build_request(&batch, "sluice-test-key")
        .unwrap()
        .unwrap();
    assert_eq!(
        (request.method.as_str(), request.url.as_str()),
        ("POST", "/v1/contacts")
    );
    assert_eq!(
        String::from_utf8(request.body).unwrap().replace(' ', ""),
        r#"[{"id":"1","n":1.50},{"id":"2"}]"#
    );

    let mut wrapped = configured(
        "rest",
        &[
            ("path", "/v1/contacts"),
            ("method", "PUT"),
            ("records_field", "items"),
        ],
    );
    let request = wrapped
        .build_request(&batch, "sluice-test-key")
        .unwrap()
        .unwrap();
    assert_eq!(request.method, "PUT");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({"items": [{"id": "1", "n": 1.50}, {"id": "2"}]})
    );
}

#[test]
fn settings_are_checked() {
    let connector = common::runtime()
        .load("rest", &common::guest("rest"), Default::default())
        .unwrap();
    for (settings, mention) in [
        (vec![("method", "POST")], "path"),
        (vec![("path", "/x"), ("method", "TELEPORT")], "method"),
        (vec![("path", "/x"), ("bogus", "1")], "bogus"),
    ] {
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let failure = connector
            .instantiate("")
            .unwrap()
            .configure(&settings)
            .unwrap()
            .unwrap_err();
        assert!(
            failure.message.contains(mention),
            "{}: {}",
            failure.code,
            failure.message
        );
    }
}

#[test]
fn every_response_is_classified() {
    let mut plain = configured("rest", &[("path", "/v1/x")]);
    #[rustfmt::skip]
    let cases: &[common::ResponseCase] = &[
        (200, &[], r#"{"accepted": 3}"#, "per-record[delivered(-), delivered(-), delivered(-)]"),
        (204, &[], "", "per-record[delivered(-), delivered(-), delivered(-)]"),
        (400, &[], r#"{"error": {"code": "INVALID_EMAIL", "message": "bad"}}"#, "batch-rejected(INVALID_EMAIL)"),
        (409, &[], r#"{"error": "CONFLICT"}"#, "batch-rejected(CONFLICT)"),
        (422, &[], r#"{"code": "UNPROCESSABLE", "message": "no"}"#, "batch-rejected(UNPROCESSABLE)"),
        (422, &[], "", "batch-rejected(HTTP_422)"),
        (429, &[("retry-after", "3")], "", "rate-limited(after 3000 ms)"),
        (503, &[("retry-after", "Tue, 14 Nov 2023 22:13:25 GMT")], "", "rate-limited(until 1700000005000 ms since the epoch)"),
        (503, &[], "", "rate-limited(no wait given)"),
        (408, &[], "", "transient(HTTP_408)"),
        (500, &[], "", "transient(HTTP_500)"),
        (502, &[], "", "transient(HTTP_502)"),
        (401, &[], "", "auth-expired(HTTP_401)"),
        (403, &[], "", "fatal(HTTP_403)"),
        (404, &[], "", "fatal(HTTP_404)"),
    ];
    common::assert_classified(&mut plain, &keys(3), cases);

    let mut results = configured(
        "rest",
        &[
            ("path", "/v1/x"),
            ("results_pointer", "/data/results"),
            ("id_field", "rid"),
            ("permanent_codes", "PARENT_MISSING, GONE"),
            ("retry_codes", "LOCKED"),
        ],
    );
    let body = json!({"data": {"results": [
        {"rid": "r1", "error": null},
        {"rid": 42},
        {"error": "INVALID_EMAIL"},
        {"error": {"code": "PARENT_MISSING", "message": "no parent", "fields": ["parent"]}},
        {"error": {"code": "LOCKED", "message": "row lock"}},
        {"error": {"code": "GONE", "message": "gone"}},
    ]}});
    let v = results
        .classify(
            &keys(6),
            sluice::sandbox::Operation::Upsert,
            &response(200, &[], &body.to_string()),
        )
        .unwrap();
    assert_eq!(
        show(&v),
        "per-record[delivered(r1), delivered(42), rejected(INVALID_EMAIL), permanent(PARENT_MISSING), retry(LOCKED), permanent(GONE)]"
    );
    for body in [
        "{}",
        r#"{"data": {"results": [{"error": null}]}}"#,
        "[]",
        "garbage",
        "",
    ] {
        let v = results
            .classify(
                &keys(6),
                sluice::sandbox::Operation::Upsert,
                &response(200, &[], body),
            )
            .unwrap();
        assert_eq!(show(&v), "transient(MALFORMED_RESPONSE)", "body {body}");
    }
    // Large bodies are no trap: a long results list of the wrong length, and 10 MiB of text.
    let long = format!(
        "{{\"data\": {{\"results\": [{}]}}}}",
        vec!["{\"error\": null}"; 20_000].join(",")
    );
    let huge = format!(
        "{{\"data\": {{\"results\": \"{}\"}}}}",
        "x".repeat(10 << 20)
    );
    for body in [long, huge] {
        let v = results
            .classify(
                &keys(6),
                sluice::sandbox::Operation::Upsert,
                &response(200, &[], &body),
            )
            .unwrap();
        assert_eq!(show(&v), "transient(MALFORMED_RESPONSE)");
    }
}

fn rules() -> Rules {
    Rules {
        emails: vec!["email".into()],
        required: vec!["email".into()],
        ..Rules::default()
    }
}

async fn sim(mode: RestMode, faults: Faults) -> SimHandle {
    rest::start(RestConfig {
        mode,
        faults,
        rules: rules(),
        ..RestConfig::default()
    })
    .await
    .unwrap()
}

/// `records` to `dest` in batches of `batch` by `workers`, with fast retries.
fn sync(
    dest: &SimHandle,
    records: Vec<serde_json::Value>,
    batch: usize,
    workers: usize,
) -> Scenario {
    Scenario::rest(&dest.base_url())
        .records(records)
        .batches(batch, workers)
        .fast_retries()
}

/// Bisection isolates every bad record of a batch refused as a whole, and stays within
/// 2k*ceil(log2(n/k)) + 1 requests for a batch of n with k bad.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_batch_refusals_are_bisected_to_the_bad_records() {
    let cases: &[(usize, &[usize])] = &[
        (1, &[0]),
        (2, &[1]),
        (7, &[3]),
        (64, &[0, 63]),
        (100, &[5, 6, 7]),
        (137, &[1, 50, 51, 99, 136]),
        (200, &[0]),
        (200, &[13, 77, 150, 151, 152, 199, 42, 8]),
    ];
    for (n, bad) in cases {
        let (n, k) = (*n, bad.len());
        let dest = sim(RestMode::WholeBatch, Faults::default()).await;
        let mut records = contacts(n);
        for &i in *bad {
            records[i]["email"] = json!("not-an-email");
        }
        let ran = sync(&dest, records, 200, 1).run().await;
        let (s, fates) = (ran.summary(), &ran.fates);
        assert_summary_of(
            format!("n={n} k={k}"),
            s,
            Expect::completed()
                .delivered((n - k) as u64)
                .rejected(k as u64)
                .pending(0),
        );
        let expected_bad: Vec<String> = {
            let mut v: Vec<String> = bad.iter().map(|i| format!("c{i:04}")).collect();
            v.sort();
            v
        };
        assert_eq!(fates.keys(is_rejected), expected_bad, "n={n}");
        assert!(fates.codes().values().all(|c| c == "INVALID_EMAIL_ADDRESS"));
        assert_eq!(dest.stored().len(), n - k);
        let bound = 2 * k as u64 * ((n as f64 / k as f64).log2().ceil() as u64) + 1;
        assert!(
            s.requests <= bound,
            "n={n} k={k}: {} requests, bound {bound}",
            s.requests
        );
        assert_eq!(s.requests, dest.stats().requests);
    }
}

/// The reported bug: a record sent in a batch, then in each half a bisection made, was
/// recorded as sent once. Every request that carried a record counts, in the ledger and
/// in the inspector, as the destination saw them; the retry budget is not spent by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_send_of_a_bisected_record_is_counted() {
    let dest = sim(RestMode::WholeBatch, Faults::default()).await;
    let mut records = contacts(7);
    records[3]["email"] = json!("not-an-email");
    let ran = sync(&dest, records, 200, 1).run().await;
    assert_eq!(ran.summary().bisections, 3, "{:?}", ran.summary());
    // Each request's send number of its records, in arrival order, and each record's sends.
    let mut sends: std::collections::BTreeMap<String, u32> = Default::default();
    let mut numbers = Vec::new();
    for request in dest.requests() {
        for key in &request.keys {
            *sends.entry(key.clone()).or_default() += 1;
        }
        numbers.push(sends[&request.keys[0]]);
    }
    let attempts: std::collections::BTreeMap<String, u32> = ran
        .fates
        .all()
        .into_iter()
        .map(|(key, (_, attempts))| (key, attempts))
        .collect();
    assert_eq!(attempts, sends);
    assert!(sends["c0003"] >= 3, "{sends:?}");
    assert_eq!(ran.entry("c0003").attempts, sends["c0003"]);
    // The inspector numbers each request's send of its records the same way.
    let inspector = ran.host.inspector(&ran.setup.config, "s").unwrap();
    let mut numbered: Vec<u32> = inspector
        .list(100, |_| true)
        .unwrap()
        .iter()
        .map(|e| e.attempt)
        .collect();
    numbered.sort_unstable();
    numbers.sort_unstable();
    assert_eq!(numbered, numbers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_record_results_settle_each_record() {
    let faults = Faults::locking(3, 0.2);
    let dest = sim(RestMode::PerRecord, faults).await;
    let mut records = contacts(150);
    records[10]["email"] = json!("bad,email.com");
    records[20].as_object_mut().unwrap().remove("email");
    let ran = sync(&dest, records, 100, 2)
        .settings("{ path = \"/v1/records\", results_pointer = \"/results\", id_field = \"id\", permanent_codes = [\"REQUIRED_FIELD_MISSING\"], retry_codes = \"UNABLE_TO_LOCK_ROW\" }")
        .run()
        .await;
    let (s, fates) = (ran.summary(), &ran.fates);
    assert_summary(
        s,
        Expect::completed()
            .delivered(148)
            .rejected(1)
            .permanent(1)
            .pending(0),
    );
    assert_eq!(
        fates.codes(),
        BTreeMap::from([
            ("c0010".to_string(), "INVALID_EMAIL_ADDRESS".to_string()),
            ("c0020".into(), "REQUIRED_FIELD_MISSING".into())
        ])
    );
    assert_eq!(fates.keys(is_permanent), ["c0020"]);
    let locks = dest.stats().record_errors["UNABLE_TO_LOCK_ROW"];
    assert!(locks > 0);
    assert_eq!(s.retries, locks);
    let (fate, _) = &fates.all()["c0001"];
    assert_eq!(
        *fate,
        sluice::engine::Fate::Delivered(Some(rest::record_id("c0001")))
    );
    let stored: BTreeSet<String> = dest.stored().into_keys().collect();
    assert_eq!(stored, fates.keys(is_delivered).into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_with_an_http_date_pauses_until_that_time() {
    let faults = Faults::rate_limited(2, 1000, ServiceUnavailable, HttpDate);
    let dest = sim(RestMode::AcceptAll, faults).await;
    let ran = sync(&dest, contacts(500), 100, 2).run().await;
    let s = ran.summary();
    assert_summary(s, Expect::completed().delivered(500).pending(0));
    assert_eq!(s.rate_limit_waits, dest.stats().rate_limited);
    common::assert_waits_honoured(&dest, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_past_max_attempts_reject_the_batch() {
    let faults = Faults::error_burst(0, 1000, 502);
    let dest = sim(RestMode::AcceptAll, faults).await;
    let ran = sync(&dest, contacts(150), 100, 2)
        .retry("max_attempts = 3")
        .run()
        .await;
    // Two batches, three attempts each.
    assert_summary(
        ran.summary(),
        Expect::completed()
            .delivered(0)
            .rejected(150)
            .pending(0)
            .requests(6)
            .transient_failures(6),
    );
    assert!(ran.fates.codes().values().all(|c| c == "HTTP_502"));
    assert!(ran.fates.all().values().all(|(_, attempts)| *attempts == 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_without_renewable_credentials_stops_the_run() {
    common::set_env("REST_TOKEN_401", "wrong-token");
    let dest = rest::start(RestConfig {
        auth: Some(AuthConfig {
            tokens: vec!["right-token".into()],
            session_requests: None,
            oauth: None,
        }),
        ..RestConfig::default()
    })
    .await
    .unwrap();
    let ran = sync(&dest, contacts(300), 100, 2)
        .sync("auth = { bearer_env = \"REST_TOKEN_401\" }")
        .run()
        .await;
    let (s, fates) = (ran.summary(), &ran.fates);
    assert_summary(s, Expect::failed().delivered(0).pending(s.read));
    assert!(dest.stored().is_empty());
    assert!(fates.keys(is_delivered).is_empty());
    assert!(!s.error.as_deref().unwrap().contains("wrong-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_forbidden_host_is_refused_before_it_leaves() {
    let dest = sim(RestMode::AcceptAll, Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("hostile.wasm");
    std::fs::write(&hostile, common::guest("test_hostile")).unwrap();
    let ran = Scenario::new(&hostile.display().to_string(), &dest.base_url())
        .records(contacts(30))
        .settings("{ mode = \"forbidden-host\" }")
        .batches(10, 2)
        .run()
        .await;
    let (s, fates) = (ran.summary(), &ran.fates);
    // Nothing was sent.
    assert_summary(s, Expect::failed().delivered(0).requests(0));
    let error = s.error.as_deref().unwrap();
    assert!(
        error.contains("127.0.0.1:1")
            && error.contains("refused before it left")
            && error.contains("allowed_hosts"),
        "{error}"
    );
    assert!(error.contains("connector `c`"), "{error}");
    assert_eq!(dest.stats().requests, 0);
    assert!(fates.keys(is_delivered).is_empty());
}
