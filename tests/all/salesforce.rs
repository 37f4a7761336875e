//! The bundled Salesforce connector: every classification path, from recorded responses
//! and end to end against the simulated Salesforce.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde_json::json;
use sluice::sandbox::SourceRecord;
use sluice_sim::faults::{Faults, LimitStyle, RetryAfterStyle};
use sluice_sim::salesforce::{self, SalesforceConfig};
use sluice_sim::validation::{CustomRule, Rules};
use sluice_sim::{AuthConfig, OAuthClient, SimHandle};

use crate::common::{
    self, Expect, Scenario, assert_summary, configured, is_delivered, is_pending, is_permanent,
    is_rejected, response, show,
};

const SETTINGS: &[(&str, &str)] = &[
    ("object", "Account"),
    ("external_id_field", "External_Id__c"),
    ("parent_field", "ParentCrmId"),
];

/// `records` to `dest` as Accounts, in batches of 50 by three workers, with fast retries.
fn accounts_to(dest: &SimHandle, records: Vec<serde_json::Value>) -> Scenario {
    Scenario::new("builtin:salesforce", &dest.base_url())
        .records(records)
        .settings(r#"{ object = "Account", external_id_field = "External_Id__c", parent_field = "ParentCrmId" }"#)
        .batch(50)
        .concurrency(3)
        .fast_retries()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

#[test]
fn settings_are_checked() {
    let connector = common::runtime()
        .load("sf", &common::guest("salesforce"), Default::default())
        .unwrap();
    let mut instance = connector.instantiate("").unwrap();
    let failure = instance
        .configure(&[("object".into(), "Account".into())])
        .unwrap()
        .unwrap_err();
    assert!(
        failure.message.contains("external_id_field"),
        "{}",
        failure.message
    );
    let mut instance = connector.instantiate("").unwrap();
    let settings = [
        ("object".to_string(), "Account".to_string()),
        ("external_id_field".into(), "Ext__c".into()),
        ("colour".into(), "red".into()),
    ];
    let failure = instance.configure(&settings).unwrap().unwrap_err();
    assert_eq!(failure.code, "INVALID_SETTING");
    assert!(failure.message.contains("colour"), "{}", failure.message);
    let limits = configured("salesforce", SETTINGS)
        .configure(
            &SETTINGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(limits.max_batch_records, 200);
}

#[test]
fn precheck_holds_records_without_a_parent_crm_id() {
    let mut sf = configured("salesforce", SETTINGS);
    let batch: Vec<SourceRecord> = [
        r#"{"Name": "ok", "ParentCrmId": "001P"}"#,
        r#"{"Name": "no parent", "ParentCrmId": ""}"#,
        r#"{"Name": "null parent", "ParentCrmId": null}"#,
        r#"{"Name": "absent parent"}"#,
        r#"[1, 2]"#,
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| SourceRecord {
        key: format!("k{i}"),
        payload: p.to_string(),
    })
    .collect();
    let outcomes = sf.precheck(&batch).unwrap();
    let shown: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            None => "send".to_string(),
            Some(sluice::sandbox::PrecheckOutcome::Rejected(f)) => format!("rejected({})", f.code),
            Some(sluice::sandbox::PrecheckOutcome::Permanent(f)) => {
                format!("permanent({})", f.code)
            }
        })
        .collect();
    assert_eq!(
        shown,
        [
            "send",
            "permanent(DACO-02)",
            "permanent(DACO-02)",
            "permanent(DACO-02)",
            "rejected(INVALID_JSON)"
        ]
    );
}

#[test]
fn requests_are_sobject_collection_upserts() {
    let mut sf = configured("salesforce", SETTINGS);
    let batch = vec![
        SourceRecord {
            key: "A1".into(),
            payload: r#"{"Name": "One", "ParentCrmId": "P"}"#.into(),
        },
        SourceRecord {
            key: "A2".into(),
            payload: r#"{"Name": "Two", "External_Id__c": "A2", "ParentCrmId": "P"}"#.into(),
        },
    ];
    let request = sf.build_request(&batch).unwrap().unwrap();
    assert_eq!(request.method, "PATCH");
    assert_eq!(
        request.url,
        "/services/data/v60.0/composite/sobjects/Account/External_Id__c"
    );
    assert!(
        request
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.contains("application/json"))
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["allOrNone"], json!(false));
    assert_eq!(body["records"][0]["attributes"], json!({"type": "Account"}));
    assert_eq!(body["records"][0]["External_Id__c"], json!("A1"));
    assert_eq!(body["records"][0]["Name"], json!("One"));
    assert_eq!(body["records"][1]["External_Id__c"], json!("A2"));
    assert!(
        request
            .headers
            .iter()
            .all(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
    );
}

#[test]
fn every_response_is_classified() {
    let mut sf = configured("salesforce", SETTINGS);
    let results = json!([
        {"id": "001A", "success": true, "errors": [], "created": true},
        {"id": null, "success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked", "fields": []}]},
        {"id": null, "success": false, "errors": [{"statusCode": "INVALID_EMAIL_ADDRESS", "message": "bad", "fields": ["Email"]}]},
        {"id": null, "success": false, "errors": [{"statusCode": "INVALID_CROSS_REFERENCE_KEY", "message": "no parent", "fields": ["ParentCrmId"]}]},
        {"id": null, "success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "m", "fields": ["Name"]}]},
        {"id": null, "success": false, "errors": [{"statusCode": "STRING_TOO_LONG", "message": "m", "fields": ["Name"]}]},
        {"id": null, "success": false, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "m", "fields": []}]},
        {"id": null, "success": false, "errors": [{"statusCode": "DUPLICATE_VALUE", "message": "m", "fields": []}]},
        {"id": null, "success": false, "errors": [{"statusCode": "SOMETHING_NEW", "message": "m", "fields": []}]},
        {"id": "001B", "success": true, "errors": [], "created": false},
    ]);
    let v = sf
        .classify(&keys(10), &response(200, &[], &results.to_string()))
        .unwrap();
    assert_eq!(
        show(&v),
        "per-record[delivered(001A), retry(UNABLE_TO_LOCK_ROW), rejected(INVALID_EMAIL_ADDRESS), \
         permanent(INVALID_CROSS_REFERENCE_KEY), rejected(REQUIRED_FIELD_MISSING), rejected(STRING_TOO_LONG), \
         rejected(FIELD_CUSTOM_VALIDATION_EXCEPTION), rejected(DUPLICATE_VALUE), rejected(SOMETHING_NEW), delivered(001B)]"
    );
    if let sluice::sandbox::Verdict::PerRecord(o) = &v
        && let sluice::sandbox::RecordOutcome::Rejected(f) = &o[2]
    {
        assert_eq!(
            (f.message.as_str(), f.fields.clone()),
            ("bad", vec!["Email".to_string()])
        );
    } else {
        panic!("{}", show(&v));
    }

    let cases: &[common::ResponseCase] = &[
        (
            401,
            &[],
            r#"[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]"#,
            "auth-expired(INVALID_SESSION_ID)",
        ),
        (
            403,
            &[("retry-after", "7")],
            r#"[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]"#,
            "rate-limited(after 7000 ms)",
        ),
        (
            403,
            &[],
            r#"[{"message": "no access", "errorCode": "INSUFFICIENT_ACCESS"}]"#,
            "fatal(INSUFFICIENT_ACCESS)",
        ),
        (
            429,
            &[("retry-after", "Tue, 14 Nov 2023 22:13:30 GMT")],
            "",
            "rate-limited(until 1700000010000 ms since the epoch)",
        ),
        (429, &[], "", "rate-limited(no wait given)"),
        (
            500,
            &[],
            r#"[{"message": "oops", "errorCode": "UNKNOWN_EXCEPTION"}]"#,
            "transient(UNKNOWN_EXCEPTION)",
        ),
        (503, &[], "<html>down</html>", "transient(HTTP_503)"),
        (
            400,
            &[],
            r#"[{"message": "bad json", "errorCode": "JSON_PARSER_ERROR"}]"#,
            "batch-rejected(JSON_PARSER_ERROR)",
        ),
        (
            404,
            &[],
            r#"[{"message": "no such object", "errorCode": "NOT_FOUND"}]"#,
            "fatal(NOT_FOUND)",
        ),
        (200, &[], "not json", "transient(MALFORMED_RESPONSE)"),
        (200, &[], "", "transient(MALFORMED_RESPONSE)"),
        (
            200,
            &[],
            r#"[{"id": "1", "success": true, "errors": []}]"#,
            "transient(MALFORMED_RESPONSE)",
        ),
    ];
    common::assert_classified(&mut sf, &keys(2), cases);
}

fn rules() -> Rules {
    Rules {
        required: vec!["Name".into()],
        emails: vec!["Email".into()],
        max_len: vec![("Name".into(), 40)],
        custom: vec![CustomRule {
            field: "AnnualRevenue".into(),
            forbidden_value: json!(-1),
            message: "Annual revenue cannot be negative".into(),
        }],
        parent_field: Some("ParentCrmId".into()),
        known_parents: Some(BTreeSet::from(["P1".to_string()])),
        ..Rules::default()
    }
}

async fn sim(faults: Faults, auth: Option<AuthConfig>) -> SimHandle {
    salesforce::start(SalesforceConfig {
        faults,
        rules: rules(),
        auth,
        port: 0,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_sync_delivers_every_record_exactly_once() {
    let dest = sim(Faults::default(), None).await;
    let records = common::accounts(230);
    let setup = accounts_to(&dest, records).setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    // 230 records in batches of 50.
    assert_summary(
        s,
        Expect::completed()
            .read(230)
            .delivered(230)
            .rejected(0)
            .permanent(0)
            .pending(0)
            .requests(5),
    );
    let stored = dest.stored();
    assert_eq!(stored.len(), 230);
    assert_eq!(
        dest.stats().records_received,
        230,
        "no record was sent twice"
    );
    assert_eq!(stored["A0007"]["Name"], json!("Account 7"));
    assert_eq!(fates.keys(is_delivered).len(), 230);
    // The destination's ids are kept.
    let (fate, attempts) = &fates.all()["A0007"];
    assert_eq!(
        *fate,
        sluice::engine::Fate::Delivered(Some(salesforce::record_id("Account", "A0007")))
    );
    assert_eq!(*attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_are_rejected_with_the_destination_codes_and_parentless_ones_held() {
    let dest = sim(Faults::default(), None).await;
    let mut records = common::accounts(120);
    let mut expected = BTreeMap::new();
    let mut bad = |i: usize, code: &str, change: &dyn Fn(&mut serde_json::Value)| {
        change(&mut records[i]);
        expected.insert(format!("A{i:04}"), code.to_string());
    };
    bad(3, "INVALID_EMAIL_ADDRESS", &|r| {
        r["Email"] = json!("x@nopain,nogain.com")
    });
    bad(17, "STRING_TOO_LONG", &|r| {
        r["Name"] = json!("N".repeat(41))
    });
    bad(18, "REQUIRED_FIELD_MISSING", &|r| {
        r.as_object_mut().unwrap().remove("Name");
    });
    bad(60, "FIELD_CUSTOM_VALIDATION_EXCEPTION", &|r| {
        r["AnnualRevenue"] = json!(-1)
    });
    bad(61, "INVALID_CROSS_REFERENCE_KEY", &|r| {
        r["ParentCrmId"] = json!("P404")
    });
    bad(99, "DACO-02", &|r| r["ParentCrmId"] = json!(""));
    bad(100, "DACO-02", &|r| {
        r.as_object_mut().unwrap().remove("ParentCrmId");
    });
    let setup = accounts_to(&dest, records).setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(
        s,
        Expect::completed()
            .delivered(113)
            .rejected(4)
            .permanent(3)
            .pending(0),
    );
    assert_eq!(fates.codes(), expected);
    assert_eq!(fates.keys(is_permanent), ["A0061", "A0099", "A0100"]);
    assert_eq!(
        fates.keys(is_rejected),
        ["A0003", "A0017", "A0018", "A0060"]
    );
    // The destination holds exactly the valid records; DACO-02 records never left.
    let stored: BTreeSet<String> = dest.stored().into_keys().collect();
    let valid: BTreeSet<String> = fates.keys(is_delivered).into_iter().collect();
    assert_eq!(stored, valid);
    assert_eq!(dest.stats().records_received, 118);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_rows_are_retried_in_the_run_until_delivered() {
    let faults = Faults::locking(11, 0.3);
    let dest = sim(faults, None).await;
    // Ten attempts: a row locked 30% of the time is locked ten times in a row once in
    // 170,000 tries. (With the default five, about one record in 400 is rejected.)
    let setup = accounts_to(&dest, common::accounts(200))
        .retry("max_attempts = 10")
        .setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(200).rejected(0).pending(0));
    let locks = dest.stats().record_errors["UNABLE_TO_LOCK_ROW"];
    assert!(
        locks > 30,
        "the fault profile locks about 30% of rows, saw {locks}"
    );
    // Every lock caused exactly one more send of that record.
    assert_eq!(s.retries, locks);
    assert_eq!(dest.stats().records_received, 200 + locks);
    assert_eq!(dest.stored().len(), 200);
    let resent = fates
        .all()
        .values()
        .filter(|(_, attempts)| *attempts > 1)
        .count();
    assert!(resent > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_every_worker_until_retry_after() {
    let faults = Faults::rate_limited(
        2,
        1000,
        LimitStyle::TooManyRequests,
        RetryAfterStyle::Seconds,
    );
    let dest = sim(faults, None).await;
    let setup = accounts_to(&dest, common::accounts(300)).setup();
    let started = SystemTime::now();
    let (report, _) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(300).pending(0));
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
    let faults = Faults::rate_limited(
        3,
        1000,
        LimitStyle::RequestLimitExceeded,
        RetryAfterStyle::HttpDate,
    );
    let dest = sim(faults, None).await;
    let setup = accounts_to(&dest, common::accounts(250)).setup();
    let (report, _) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(250).pending(0));
    assert!(dest.requests().iter().any(|r| r.status == 403));
    assert_eq!(s.rate_limit_waits, dest.stats().rate_limited);
    common::assert_waits_honoured(&dest, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_server_errors_are_retried_after_backoff() {
    let faults = Faults::error_burst(2, 2, 500);
    let dest = sim(faults, None).await;
    let setup = accounts_to(&dest, common::accounts(200)).setup();
    let (report, _) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(200).rejected(0));
    let errors = dest.stats().server_errors;
    assert!(errors >= 2);
    assert_eq!(s.transient_failures, errors);
    assert_eq!(s.requests, 4 + errors);
    assert_eq!(dest.stored().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed_and_the_run_completes() {
    common::set_env("SF_RENEW_ID", "client");
    common::set_env("SF_RENEW_SECRET", "secret");
    common::set_env("SF_RENEW_REFRESH", "refresh");
    let auth = AuthConfig {
        tokens: vec![],
        session_requests: Some(3),
        oauth: Some(OAuthClient {
            client_id: "client".into(),
            client_secret: "secret".into(),
            refresh_token: "refresh".into(),
        }),
    };
    let dest = sim(Faults::default(), Some(auth)).await;
    let setup = accounts_to(&dest, common::accounts(500))
        .sync(&format!(
            "auth = {{ oauth2 = {{ token_url = \"{}/oauth2/token\", client_id_env = \"SF_RENEW_ID\", client_secret_env = \"SF_RENEW_SECRET\", refresh_token_env = \"SF_RENEW_REFRESH\" }} }}",
            dest.base_url()
        ))
        .setup();
    let (report, _) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(500).pending(0));
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
    let setup = accounts_to(&dest, common::accounts(400))
        .sync("auth = { bearer_env = \"SF_STATIC_TOKEN\" }")
        .setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    // Two requests of 50 were accepted before the session expired.
    assert_summary(s, Expect::failed().delivered(100).pending(s.read - 100));
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
    let delivered: BTreeSet<String> = fates.keys(is_delivered).into_iter().collect();
    assert_eq!(
        stored, delivered,
        "nothing is marked delivered that the destination did not store"
    );
    assert!(!fates.keys(is_pending).is_empty());
    assert_eq!(fates.keys(is_rejected).len(), 0);
}
