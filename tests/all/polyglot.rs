//! Connectors written in Python and JavaScript (examples/connectors/): built from source
//! with their pinned tools, classified from recorded responses, and run end to end through
//! the host against their simulated destinations, as the Rust ones are.
//!
//! The components are built once per test process by `examples/connectors/build.sh` into
//! `<target>/polyglot` (needs python3 and node with npm); the script skips a component
//! whose inputs have not changed, so later runs take a moment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sluice::engine::Fate;
use sluice::sandbox::{ConnectorInstance, SandboxLimits, SourceRecord};
use sluice_sim::couchdb::{self, CouchDbConfig};
use sluice_sim::faults::{ErrorBurst, Faults, LimitStyle, RateLimit, RetryAfterStyle};
use sluice_sim::hubspot::{self, HubSpotConfig};
use sluice_sim::validation::Rules;
use sluice_sim::{AuthConfig, OAuthClient, SimHandle};

use crate::common::{
    self, Expect, Scenario, assert_summary, is_delivered, is_pending, is_rejected, response, show,
};

/// The folder build.sh wrote the components to; built on first use.
fn built() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(dir) => dir,
        Err(message) => panic!("{message}"),
    }
}

fn build() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is in the repository");
    let missing: Vec<&str> = [
        ("python3", "python3 (with venv and pip)"),
        ("node", "Node.js 18 or later"),
        ("npm", "npm"),
    ]
    .into_iter()
    .filter(|(tool, _)| Command::new(tool).arg("--version").output().is_err())
    .map(|(_, what)| what)
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the Python and JavaScript connector tests need {} to build the connectors; \
             install them (Debian: apt-get install python3 python3-venv nodejs npm) and run \
             the tests again",
            missing.join(", ")
        ));
    }
    // build.sh's own default, `$CARGO_TARGET_DIR/polyglot`, so that a build run before the
    // tests (as CI does) is the one they use.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the tmp folder is inside the target folder");
    let out = target.join("polyglot");
    let script = root.join("examples/connectors/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out)
}

pub(crate) fn component(name: &str) -> PathBuf {
    built().join(format!("{name}.wasm"))
}

/// An instance of a built component, configured with `settings`.
fn configured(name: &str, settings: &[(&str, &str)]) -> ConnectorInstance {
    let wasm = std::fs::read(component(name)).unwrap();
    let connector = common::runtime()
        .load(name, &wasm, SandboxLimits::default())
        .unwrap();
    let mut instance = connector.instantiate("test").unwrap();
    match instance.configure(&owned(settings)).unwrap() {
        Ok(_) => instance,
        Err(f) => panic!("configure refused: {}: {}", f.code, f.message),
    }
}

/// What `configure` answers for these settings: the limits, or the failure's code and
/// message.
fn configure(name: &str, settings: &[(&str, &str)]) -> Result<(u32, u64), (String, String)> {
    let wasm = std::fs::read(component(name)).unwrap();
    let connector = common::runtime()
        .load(name, &wasm, SandboxLimits::default())
        .unwrap();
    let mut instance = connector.instantiate("test").unwrap();
    instance
        .configure(&owned(settings))
        .unwrap()
        .map(|l| (l.max_batch_records, l.max_batch_bytes))
        .map_err(|f| (f.code, f.message))
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn record(key: &str, payload: &str) -> SourceRecord {
    SourceRecord {
        key: key.into(),
        payload: payload.into(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A short form of a precheck answer: `-` to send, else `rejected(CODE)`.
fn show_precheck(instance: &mut ConnectorInstance, batch: &[SourceRecord]) -> Vec<String> {
    use sluice::sandbox::PrecheckOutcome as P;
    instance
        .precheck(batch)
        .unwrap()
        .iter()
        .map(|o| match o {
            None => "-".to_string(),
            Some(P::Rejected(f)) => format!("rejected({})", f.code),
            Some(P::Permanent(f)) => format!("permanent({})", f.code),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Python: a HubSpot-like batch upsert.

const EMAIL_KEYS: &[&str] = &[
    "a@example.com",
    "b@example.com",
    "c@example.com",
    "d@example.com",
];

#[test]
fn python_hubspot_checks_its_settings() {
    assert_eq!(configure("python-hubspot", &[]), Ok((100, 3_000_000)));
    assert_eq!(
        configure(
            "python-hubspot",
            &[("max_batch_records", "10"), ("id_property", "external_id")]
        ),
        Ok((10, 3_000_000))
    );
    for (settings, mention) in [
        (&[("idproperty", "email")][..], "idproperty"),
        (&[("object", "contacts/../x")], "object"),
        (&[("max_batch_records", "101")], "from 1 to 100"),
        (&[("max_batch_records", "ten")], "max_batch_records"),
        (&[("object", "a"), ("object", "b")], "more than once"),
    ] {
        let (code, message) = configure("python-hubspot", settings).unwrap_err();
        assert_eq!(code, "INVALID_SETTING", "{settings:?}");
        assert!(message.contains(mention), "{settings:?}: {message}");
    }
}

#[test]
fn python_hubspot_builds_batch_upserts() {
    let mut hs = configured("python-hubspot", &[]);
    let batch = [
        record(
            "a@example.com",
            r#"{"firstname": "Ann", "score": 12345678901234567890123, "ratio": 1.50, "vip": true, "phone": null}"#,
        ),
        record("b@example.com", "{}"),
    ];
    let request = hs.build_request(&batch).unwrap().unwrap();
    assert_eq!(
        (request.method.as_str(), request.url.as_str()),
        ("POST", "/crm/v3/objects/contacts/batch/upsert")
    );
    assert!(
        request
            .headers
            .contains(&("content-type".into(), "application/json".into()))
    );
    // Property values are strings, numbers spelled as the source spelled them.
    assert_eq!(
        String::from_utf8(request.body).unwrap(),
        r#"{"inputs":[{"idProperty":"email","id":"a@example.com","properties":{"firstname":"Ann","score":"12345678901234567890123","ratio":"1.50","vip":"true","phone":""}},{"idProperty":"email","id":"b@example.com","properties":{}}]}"#
    );

    let mut companies = configured(
        "python-hubspot",
        &[("object", "companies"), ("id_property", "domain")],
    );
    let request = companies
        .build_request(&[record("acme.example", r#"{"name": "Acme"}"#)])
        .unwrap()
        .unwrap();
    assert_eq!(request.url, "/crm/v3/objects/companies/batch/upsert");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["inputs"][0]["idProperty"], "domain");

    let checked = show_precheck(
        &mut hs,
        &[
            record("a@example.com", "{}"),
            record("not-an-email", "{}"),
            record("c@example.com", r#"{"address": {"city": "Oslo"}}"#),
            record("d@example.com", "[1]"),
            record("e@example.com", "{"),
        ],
    );
    assert_eq!(
        checked,
        [
            "-",
            "rejected(INVALID_EMAIL)",
            "rejected(INVALID_PROPERTY_VALUE)",
            "rejected(INVALID_JSON)",
            "rejected(INVALID_JSON)"
        ]
    );
    // A batch it cannot express is an error that names the record.
    let failure = hs
        .build_request(&[record("x@example.com", "[]")])
        .unwrap()
        .unwrap_err();
    assert!(
        failure.code == "INVALID_JSON" && failure.message.contains("x@example.com"),
        "{failure:?}"
    );
}

#[test]
fn python_hubspot_classifies_recorded_responses() {
    let mut hs = configured("python-hubspot", &[]);
    let keys = strings(EMAIL_KEYS);
    let classify = |hs: &mut ConnectorInstance, status, headers: &[(&str, &str)], body: &str| {
        show(
            &hs.classify(&keys, &response(status, headers, body))
                .unwrap(),
        )
    };
    // Results in another order than the inputs, one with the email in other case.
    let complete = json!({"status": "COMPLETE", "results": [
        {"id": "104", "properties": {"email": "d@example.com"}},
        {"id": "101", "properties": {"email": "A@Example.com"}},
        {"id": "103", "properties": {"email": "c@example.com"}},
        {"id": 102, "properties": {"email": "b@example.com"}},
    ]});
    assert_eq!(
        classify(&mut hs, 200, &[], &complete.to_string()),
        "per-record[delivered(101), delivered(102), delivered(103), delivered(104)]"
    );
    // Errors name records by id in their context, several at once; a record neither
    // written nor refused is retried, never taken as delivered.
    let multi = json!({"status": "COMPLETE", "numErrors": 2,
    "results": [{"id": "101", "properties": {"email": "a@example.com"}}],
    "errors": [
        {"status": "error", "category": "VALIDATION_ERROR", "subCategory": "INVALID_EMAIL_ADDRESS",
         "message": "bad email", "context": {"ids": ["c@example.com"], "propertyName": ["email"]}},
        {"status": "error", "category": "CONFLICT", "message": "busy",
         "context": {"ids": ["b@example.com", "nobody@example.com"]}},
        {"status": "error", "category": "VALIDATION_ERROR", "message": "no context"},
    ]});
    assert_eq!(
        classify(&mut hs, 207, &[], &multi.to_string()),
        "per-record[delivered(101), retry(CONFLICT), rejected(INVALID_EMAIL_ADDRESS), retry(NO_RESULT)]"
    );
    let Ok(sluice::sandbox::Verdict::PerRecord(outcomes)) =
        hs.classify(&keys, &response(207, &[], &multi.to_string()))
    else {
        panic!()
    };
    let sluice::sandbox::RecordOutcome::Rejected(f) = &outcomes[2] else {
        panic!()
    };
    assert_eq!(
        (f.message.as_str(), f.fields.clone()),
        ("bad email", strings(&["email"]))
    );

    let cases: &[common::ResponseCase] = &[
        (
            429,
            &[("retry-after", "7")],
            r#"{"policyName": "TEN_SECONDLY_ROLLING"}"#,
            "rate-limited(after 7000 ms)",
        ),
        (
            429,
            &[("retry-after", "Tue, 14 Nov 2023 22:13:25 GMT")],
            "",
            "rate-limited(until 1700000005000 ms since the epoch)",
        ),
        (
            429,
            &[],
            r#"{"policyName": "SECONDLY"}"#,
            "rate-limited(after 1000 ms)",
        ),
        (
            429,
            &[],
            r#"{"policyName": "TEN_SECONDLY_ROLLING"}"#,
            "rate-limited(after 10000 ms)",
        ),
        (429, &[], "", "rate-limited(no wait given)"),
        (
            429,
            &[("retry-after", "5")],
            r#"{"status": "error", "policyName": "DAILY"}"#,
            "fatal(DAILY_LIMIT_REACHED)",
        ),
        (
            400,
            &[],
            r#"{"status": "error", "category": "VALIDATION_ERROR", "message": "m", "errors": [{"code": "PROPERTY_DOESNT_EXIST", "context": {"propertyName": ["color"]}}]}"#,
            "batch-rejected(PROPERTY_DOESNT_EXIST)",
        ),
        (
            400,
            &[],
            r#"{"status": "error", "category": "VALIDATION_ERROR", "message": "too many"}"#,
            "batch-rejected(VALIDATION_ERROR)",
        ),
        (400, &[], "", "batch-rejected(HTTP_400)"),
        (
            401,
            &[],
            r#"{"status": "error", "category": "EXPIRED_AUTHENTICATION", "message": "expired"}"#,
            "auth-expired(EXPIRED_AUTHENTICATION)",
        ),
        (
            403,
            &[],
            r#"{"category": "MISSING_SCOPES", "message": "scopes"}"#,
            "fatal(MISSING_SCOPES)",
        ),
        (404, &[], "", "fatal(HTTP_404)"),
        (
            500,
            &[],
            r#"{"category": "INTERNAL_ERROR", "message": "oops"}"#,
            "transient(INTERNAL_ERROR)",
        ),
        (
            502,
            &[],
            "<html><body>Bad Gateway</body></html>",
            "transient(HTTP_502)",
        ),
        (
            503,
            &[("retry-after", "2")],
            "",
            "rate-limited(after 2000 ms)",
        ),
        (503, &[], "", "transient(HTTP_503)"),
        (200, &[], "", "transient(MALFORMED_RESPONSE)"),
        (200, &[], "not json", "transient(MALFORMED_RESPONSE)"),
        (200, &[], "[]", "transient(MALFORMED_RESPONSE)"),
        (
            200,
            &[],
            r#"{"results": {}}"#,
            "transient(MALFORMED_RESPONSE)",
        ),
        (
            200,
            &[],
            r#"{"results": [7]}"#,
            "transient(MALFORMED_RESPONSE)",
        ),
        (
            200,
            &[],
            r#"{"results": []}"#,
            "per-record[retry(NO_RESULT), retry(NO_RESULT), retry(NO_RESULT), retry(NO_RESULT)]",
        ),
    ];
    common::assert_classified(&mut hs, &keys, cases);
    // A body of 10 MiB is no trap and no answer.
    let huge = format!("{{\"results\": \"{}\"}}", "x".repeat(10 << 20));
    assert_eq!(
        classify(&mut hs, 200, &[], &huge),
        "transient(MALFORMED_RESPONSE)"
    );
    // The instance is still usable after all of that.
    assert_eq!(classify(&mut hs, 401, &[], ""), "auth-expired(HTTP_401)");
}

fn hubspot_rules() -> Rules {
    Rules {
        required: vec!["lastname".into()],
        emails: vec!["email".into()],
        max_len: vec![("firstname".into(), 20)],
        ..Rules::default()
    }
}

/// `n` contacts keyed by email.
fn contacts(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"email": format!("c{i:04}@example.com"), "firstname": format!("F{i}"), "lastname": "Smith"}))
        .collect()
}

async fn hubspot_sim(config: HubSpotConfig) -> SimHandle {
    hubspot::start(HubSpotConfig {
        rules: hubspot_rules(),
        ..config
    })
    .await
    .unwrap()
}

/// `records` (keyed by email) to `dest` through the Python HubSpot connector, in batches
/// of 100 by `workers`, with fast retries.
fn hubspot_sync(records: &[Value], dest: &SimHandle, workers: usize) -> Scenario {
    let component = component("python-hubspot");
    Scenario::new(&component.display().to_string(), &dest.base_url())
        .records(records.to_vec())
        .key("email")
        .batch(100)
        .concurrency(workers)
        .fast_retries()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_delivers_matching_results_by_id_and_errors_by_context() {
    let faults = Faults::locking(11, 0.2);
    let dest = hubspot_sim(HubSpotConfig {
        faults,
        ..HubSpotConfig::default()
    })
    .await;
    let mut records = contacts(300);
    records[10]["firstname"] = json!("A name far longer than twenty characters");
    records[20].as_object_mut().unwrap().remove("lastname");
    records[30]["email"] = json!("not-an-email");
    let setup = hubspot_sync(&records, &dest, 2).setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(
        s,
        Expect::completed()
            .read(300)
            .delivered(297)
            .rejected(3)
            .pending(0),
    );
    assert_eq!(
        fates.codes(),
        BTreeMap::from([
            (
                "c0010@example.com".to_string(),
                "STRING_TOO_LONG".to_string()
            ),
            ("c0020@example.com".into(), "REQUIRED_FIELD_MISSING".into()),
            ("not-an-email".into(), "INVALID_EMAIL".into()),
        ])
    );
    // The record refused by precheck never left the host.
    assert!(
        dest.requests()
            .iter()
            .all(|r| !r.keys.contains(&"not-an-email".to_string()))
    );
    // Locked records were retried in the run until written.
    let locks = dest.stats().record_errors["UNABLE_TO_LOCK_ROW"];
    assert!(locks > 0);
    assert_eq!(s.retries, locks);
    // Delivered records carry the id HubSpot gave them, found by email in shuffled results.
    let stored = dest.stored();
    assert_eq!(stored.len(), 297);
    for key in fates.keys(is_delivered) {
        assert_eq!(
            fates.all()[&key].0,
            Fate::Delivered(Some(hubspot::record_id("contacts", &key)))
        );
        assert_eq!(stored[&key]["email"], json!(key));
        assert_eq!(stored[&key]["lastname"], "Smith");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_an_unknown_property_refuses_the_batch_and_bisection_finds_it() {
    let known = ["email", "firstname", "lastname"].map(String::from).into();
    let dest = hubspot_sim(HubSpotConfig {
        known_properties: Some(known),
        ..HubSpotConfig::default()
    })
    .await;
    let mut records = contacts(100);
    records[37]["favorite_color"] = json!("teal");
    let setup = hubspot_sync(&records, &dest, 1).setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(99).rejected(1));
    let (fate, _) = &fates.all()["c0037@example.com"];
    let Fate::Rejected(f) = fate else {
        panic!("{fate:?}")
    };
    assert_eq!(
        (f.code.as_str(), f.fields.clone()),
        ("PROPERTY_DOESNT_EXIST", strings(&["favorite_color"]))
    );
    assert!(s.bisections > 0);
    assert_eq!(dest.stored().len(), 99);
    // 2k*ceil(log2(n/k)) + 1 requests at most for k = 1 bad record in n = 100.
    assert!(s.requests <= 15, "{} requests", s.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_a_batch_over_the_input_limit_is_split_until_it_fits() {
    let dest = hubspot_sim(HubSpotConfig {
        max_inputs: 30,
        ..HubSpotConfig::default()
    })
    .await;
    let setup = hubspot_sync(&contacts(100), &dest, 1).setup();
    let (report, _) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(100).rejected(0));
    // The batch of 100 and both halves of 50 were refused; every request taken held at
    // most 30 inputs. (After a first half is taken, the engine splits its sibling without
    // sending it, assuming it holds a bad record; for a refusal by size that costs a few
    // smaller requests, never a record.)
    assert_eq!(dest.stats().batch_rejections, 3);
    assert_eq!(s.requests, dest.stats().requests);
    assert!(s.requests <= 20, "{} requests", s.requests);
    for r in dest.requests() {
        assert!(
            r.status != 200 || r.keys.len() <= 30,
            "{} inputs taken",
            r.keys.len()
        );
    }
    assert_eq!(dest.stored().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_honours_retry_after() {
    let faults = Faults::rate_limited(
        2,
        1000,
        LimitStyle::TooManyRequests,
        RetryAfterStyle::Seconds,
    );
    let dest = hubspot_sim(HubSpotConfig {
        faults,
        ..HubSpotConfig::default()
    })
    .await;
    let setup = hubspot_sync(&contacts(500), &dest, 2).setup();
    let started = SystemTime::now();
    let (report, _) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(500).pending(0));
    let limited = dest.stats().rate_limited;
    assert!(limited > 0);
    assert_eq!(s.rate_limit_waits, limited);
    assert_eq!(s.retries, 0, "rate-limit waits use no attempts");
    common::assert_waits_honoured(&dest, 2);
    // Five batches at two per second need two more windows.
    assert!(started.elapsed().unwrap() >= Duration::from_secs(2));
    assert_eq!(dest.stored().len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_the_daily_limit_stops_the_run_with_records_pending() {
    let dest = hubspot_sim(HubSpotConfig {
        daily_limit: Some(2),
        ..HubSpotConfig::default()
    })
    .await;
    let setup = hubspot_sync(&contacts(500), &dest, 1).setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::failed());
    assert_eq!((s.delivered, s.rejected), (200, 0));
    assert_eq!(s.pending, s.read - 200);
    let error = s.error.as_deref().unwrap();
    assert!(error.contains("DAILY_LIMIT_REACHED"), "{error}");
    assert_eq!(dest.stored().len(), 200);
    assert_eq!(
        dest.stats().rate_limited,
        1,
        "no request after the daily limit"
    );
    // The batch the daily limit refused is reported pending with its failure (batches
    // still queued when the run stopped are counted pending, but not reported one by one).
    let codes = fates.codes();
    assert!(
        codes.len() >= 100 && codes.values().all(|c| c == "DAILY_LIMIT_REACHED"),
        "{codes:?}"
    );
    assert!(fates.keys(is_pending).len() as u64 <= s.pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_an_expired_token_is_renewed() {
    common::set_env("HS_RENEW_ID", "client");
    common::set_env("HS_RENEW_SECRET", "secret");
    common::set_env("HS_RENEW_REFRESH", "refresh");
    let auth = AuthConfig {
        tokens: vec![],
        session_requests: Some(2),
        oauth: Some(OAuthClient {
            client_id: "client".into(),
            client_secret: "secret".into(),
            refresh_token: "refresh".into(),
        }),
    };
    let dest = hubspot_sim(HubSpotConfig {
        auth: Some(auth),
        ..HubSpotConfig::default()
    })
    .await;
    let setup = hubspot_sync(&contacts(600), &dest, 2)
        .sync(&format!(
            "auth = {{ oauth2 = {{ token_url = \"{}/oauth2/token\", client_id_env = \"HS_RENEW_ID\", client_secret_env = \"HS_RENEW_SECRET\", refresh_token_env = \"HS_RENEW_REFRESH\" }} }}",
            dest.base_url()
        ))
        .setup();
    let (report, _) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(600));
    assert!(s.auth_renewals >= 2, "six batches, two requests a session");
    assert_eq!(
        dest.stats().token_refreshes,
        s.auth_renewals + 1,
        "one token at the start, one per renewal"
    );
    assert_eq!(dest.stored().len(), 600);
}

// ---------------------------------------------------------------------------------------
// JavaScript: a CouchDB-like `_bulk_docs`.

#[test]
fn js_couchdb_checks_its_settings() {
    assert_eq!(
        configure("js-couchdb", &[("db", "crm")]),
        Ok((1000, 8_000_000))
    );
    assert_eq!(
        configure(
            "js-couchdb",
            &[
                ("db", "crm"),
                ("max_batch_records", "50"),
                ("max_batch_bytes", "18446744073709551615")
            ]
        ),
        Ok((50, u64::MAX))
    );
    let (code, message) = configure("js-couchdb", &[]).unwrap_err();
    assert_eq!(code, "MISSING_SETTING");
    assert!(message.contains("db"), "{message}");
    for (settings, mention) in [
        (&[("db", "Crm")][..], "db"),
        (&[("db", "crm"), ("database", "x")], "database"),
        (
            &[("db", "crm"), ("max_batch_records", "0")],
            "from 1 to 100000",
        ),
    ] {
        let (code, message) = configure("js-couchdb", settings).unwrap_err();
        assert_eq!(code, "INVALID_SETTING", "{settings:?}");
        assert!(message.contains(mention), "{settings:?}: {message}");
    }
}

#[test]
fn js_couchdb_builds_bulk_docs_requests() {
    let mut couch = configured("js-couchdb", &[("db", "crm/contacts")]);
    let batch = [
        record(
            "k1",
            r#" {"name": "Ann", "big": 12345678901234567890123, "ratio": 1.50} "#,
        ),
        record("k2", "{}"),
        record("k3", r#"{"_id": "other", "_rev": "1-abc", "n": 1}"#),
    ];
    let request = couch.build_request(&batch).unwrap().unwrap();
    assert_eq!(
        (request.method.as_str(), request.url.as_str()),
        ("POST", "/crm%2Fcontacts/_bulk_docs")
    );
    // The payload's own text is kept, so large numbers and decimals survive; the key is
    // the document id, whatever `_id` the payload held.
    assert_eq!(
        String::from_utf8(request.body).unwrap(),
        r#"{"docs":[{"_id":"k1","name": "Ann", "big": 12345678901234567890123, "ratio": 1.50},{"_id":"k2"},{"_id":"k3","_rev":"1-abc","n":1}]}"#
    );
    let checked = show_precheck(
        &mut couch,
        &[
            record("ok", r#"{"_rev": "2-x", "_deleted": false}"#),
            record("_design/x", "{}"),
            record("bad-member", r#"{"_secret": 1}"#),
            record("list", "[]"),
            record("broken", "{"),
        ],
    );
    assert_eq!(
        checked,
        [
            "-",
            "rejected(INVALID_ID)",
            "rejected(doc_validation)",
            "rejected(INVALID_JSON)",
            "rejected(INVALID_JSON)"
        ]
    );
    let failure = couch
        .build_request(&[record("x", "7")])
        .unwrap()
        .unwrap_err();
    assert!(
        failure.code == "INVALID_JSON" && failure.message.contains("\"x\""),
        "{failure:?}"
    );
}

#[test]
fn js_couchdb_classifies_recorded_responses() {
    let mut couch = configured("js-couchdb", &[("db", "crm")]);
    let keys = strings(&["k1", "k2", "k3", "k4", "k5"]);
    let classify = |couch: &mut ConnectorInstance, status, headers: &[(&str, &str)], body: &str| {
        show(
            &couch
                .classify(&keys, &response(status, headers, body))
                .unwrap(),
        )
    };
    let answers = json!([
        {"id": "k2", "error": "conflict", "reason": "Document update conflict."},
        {"id": "k1", "ok": true, "rev": "1-aaa"},
        {"id": "k3", "error": "forbidden", "reason": "name is required"},
        {"id": "k4", "error": "unauthorized", "reason": "not yours"},
    ]);
    assert_eq!(
        classify(&mut couch, 201, &[], &answers.to_string()),
        "per-record[delivered(1-aaa), retry(conflict), rejected(forbidden), rejected(unauthorized), retry(NO_RESULT)]"
    );
    let cases: &[common::ResponseCase] = &[
        (
            202,
            &[],
            r#"[{"id":"k1","ok":true},{"id":"k2","ok":true},{"id":"k3","ok":true},{"id":"k4","ok":true},{"id":"k5","ok":true,"rev":""}]"#,
            "per-record[delivered(-), delivered(-), delivered(-), delivered(-), delivered(-)]",
        ),
        (
            400,
            &[],
            r#"{"error": "bad_request", "reason": "invalid UTF-8 JSON"}"#,
            "batch-rejected(bad_request)",
        ),
        (
            413,
            &[],
            r#"{"error": "too_large", "reason": "the request entity is too large"}"#,
            "batch-rejected(too_large)",
        ),
        (417, &[], "", "batch-rejected(HTTP_417)"),
        (
            401,
            &[],
            r#"{"error": "unauthorized", "reason": "You are not authorized"}"#,
            "auth-expired(unauthorized)",
        ),
        (
            403,
            &[],
            r#"{"error": "forbidden", "reason": "no"}"#,
            "fatal(forbidden)",
        ),
        (
            404,
            &[],
            r#"{"error": "not_found", "reason": "Database does not exist."}"#,
            "fatal(not_found)",
        ),
        (
            429,
            &[("retry-after", "3")],
            "",
            "rate-limited(after 3000 ms)",
        ),
        (
            429,
            &[("retry-after", "Tue, 14 Nov 2023 22:13:25 GMT")],
            "",
            "rate-limited(until 1700000005000 ms since the epoch)",
        ),
        (
            429,
            &[("retry-after", "soon")],
            "",
            "rate-limited(no wait given)",
        ),
        (503, &[], "", "rate-limited(no wait given)"),
        (
            500,
            &[],
            r#"{"error": "unknown_error", "reason": "function_clause"}"#,
            "transient(unknown_error)",
        ),
        (502, &[], "<html>Bad Gateway</html>", "transient(HTTP_502)"),
        (408, &[], "", "transient(HTTP_408)"),
        (409, &[], "", "fatal(HTTP_409)"),
        (201, &[], "", "transient(MALFORMED_RESPONSE)"),
        (201, &[], "{}", "transient(MALFORMED_RESPONSE)"),
        (201, &[], "[1]", "transient(MALFORMED_RESPONSE)"),
        (201, &[], "\u{0}\u{1}", "transient(MALFORMED_RESPONSE)"),
    ];
    common::assert_classified(&mut couch, &keys, cases);
    let huge = format!("[\"{}\"]", "x".repeat(10 << 20));
    assert_eq!(
        classify(&mut couch, 201, &[], &huge),
        "transient(MALFORMED_RESPONSE)"
    );
    // An id twice in a batch takes its answers in order.
    let twice = strings(&["k1", "k1"]);
    let body = r#"[{"id":"k1","ok":true,"rev":"1-a"},{"id":"k1","error":"conflict","reason":"r"}]"#;
    let v = couch.classify(&twice, &response(201, &[], body)).unwrap();
    assert_eq!(show(&v), "per-record[delivered(1-a), retry(conflict)]");
}

fn couch_rules() -> Rules {
    Rules {
        required: vec!["name".into()],
        emails: vec!["email".into()],
        ..Rules::default()
    }
}

fn documents(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("doc{i:04}"), "name": format!("Doc {i}"), "email": format!("d{i}@example.com")}))
        .collect()
}

async fn couch_sim(config: CouchDbConfig) -> SimHandle {
    couchdb::start(CouchDbConfig {
        db: "crm".into(),
        rules: couch_rules(),
        ..config
    })
    .await
    .unwrap()
}

/// `records` to `dest` through the JavaScript CouchDB connector, in batches of 100 by
/// `workers`, with fast retries.
fn couch_sync(records: &[Value], dest: &SimHandle, workers: usize) -> Scenario {
    let component = component("js-couchdb");
    Scenario::new(&component.display().to_string(), &dest.base_url())
        .records(records.to_vec())
        .settings("{ db = \"crm\" }")
        .batch(100)
        .concurrency(workers)
        .fast_retries()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_couchdb_retries_conflicts_and_rejects_forbidden_documents() {
    let faults = Faults::locking(5, 0.25);
    let dest = couch_sim(CouchDbConfig {
        faults,
        ..CouchDbConfig::default()
    })
    .await;
    let mut records = documents(300);
    records[3]["email"] = json!("bad,email.com");
    records[4].as_object_mut().unwrap().remove("name");
    records[5]["_secret"] = json!(1);
    records[6]["id"] = json!("_design/app");
    let setup = couch_sync(&records, &dest, 2).setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(
        s,
        Expect::completed()
            .read(300)
            .delivered(296)
            .rejected(4)
            .pending(0),
    );
    assert_eq!(
        fates.codes(),
        BTreeMap::from([
            ("doc0003".to_string(), "forbidden".to_string()),
            ("doc0004".into(), "forbidden".into()),
            ("doc0005".into(), "doc_validation".into()),
            ("_design/app".into(), "INVALID_ID".into()),
        ])
    );
    let conflicts = dest.stats().record_errors["UNABLE_TO_LOCK_ROW"];
    assert!(conflicts > 0);
    assert_eq!(s.retries, conflicts);
    let stored = dest.stored();
    assert_eq!(stored.len(), 296);
    for key in fates.keys(is_delivered) {
        // Written once, so at its first revision, which the fate carries.
        assert_eq!(
            fates.all()[&key].0,
            Fate::Delivered(Some(couchdb::revision(&key, 1)))
        );
        assert_eq!(stored[&key]["_id"], json!(key));
    }
    assert!(
        fates
            .keys(is_rejected)
            .iter()
            .all(|k| !stored.contains_key(k))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_couchdb_a_request_too_large_is_bisected_to_the_document() {
    let dest = couch_sim(CouchDbConfig {
        max_request_bytes: Some(20_000),
        ..CouchDbConfig::default()
    })
    .await;
    let mut records = documents(100);
    records[60]["notes"] = json!("n".repeat(30_000));
    let setup = couch_sync(&records, &dest, 1).setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(99).rejected(1));
    assert_eq!(
        fates.codes(),
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
    let dest = couch_sim(CouchDbConfig {
        faults,
        ..CouchDbConfig::default()
    })
    .await;
    let setup = couch_sync(&documents(500), &dest, 2).setup();
    let (report, _) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::completed().delivered(500).pending(0));
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
    let dest = couch_sim(CouchDbConfig {
        auth: Some(AuthConfig {
            tokens: vec!["right-token".into()],
            session_requests: None,
            oauth: None,
        }),
        ..CouchDbConfig::default()
    })
    .await;
    let setup = couch_sync(&documents(200), &dest, 2)
        .sync("auth = { bearer_env = \"COUCH_TOKEN_401\" }")
        .setup();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_summary(s, Expect::failed().delivered(0).pending(200));
    assert!(dest.stored().is_empty());
    assert!(fates.keys(is_delivered).is_empty());
}

// ---------------------------------------------------------------------------------------
// Instances are reused: one per worker, whatever the number of batches.

/// Runs the `sluice` binary on 1,000 records in batches of 50 with 3 workers and counts
/// the connector's own "configured" log line: `configure` runs once per instance, so the
/// count is the number of instances. The Python component takes about a millisecond to
/// instantiate; that cost is paid once per worker, not once per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_instantiates_its_connector_once() {
    let hub = hubspot_sim(HubSpotConfig::default()).await;
    let couch = couch_sim(CouchDbConfig::default()).await;
    for (name, dest, key, settings) in [
        ("python-hubspot", &hub, "email", ""),
        ("js-couchdb", &couch, "id", "settings = { db = \"crm\" }"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<Value> = if key == "email" {
            contacts(1000)
        } else {
            documents(1000)
        };
        let data: String = records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(dir.path().join("data.jsonl"), data).unwrap();
        let config = format!(
            "state_dir = \"state\"\ncache_dir = \"{cache}\"\n[connectors.c]\ncomponent = \"{component}\"\n\n[[sync]]\nname = \"s\"\nconnector = \"c\"\nsource = {{ jsonl = \"data.jsonl\", key = \"{key}\" }}\nbase_url = \"{base}\"\n{settings}\nbatch_size = 50\nconcurrency = 3\n",
            cache = common::cache_dir().display(),
            component = component(name).display(),
            base = dest.base_url(),
        );
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config).unwrap();
        let env = [
            ("RUST_LOG", "warn,sluice::connector=debug"),
            ("NO_COLOR", "1"),
        ];
        let output = common::sluice(&["run", "--json"], &path, &env).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            (summary["delivered"].as_u64(), summary["requests"].as_u64()),
            (Some(1000), Some(20)),
            "{name}"
        );
        let instances = stderr.lines().filter(|l| l.contains("configured:")).count();
        assert_eq!(
            instances, 3,
            "{name}: one instance per worker for 20 batches:\n{stderr}"
        );
    }
    assert_eq!(hub.stored().len(), 1000);
    assert_eq!(couch.stored().len(), 1000);
}
