//! Property tests over arbitrary responses for both bundled connectors' `classify`: any
//! status, headers (any `Retry-After`) and body, and bodies built to look like each
//! connector's real answers with random fields, lengths and errors. Whatever comes back, the
//! connector never traps, a per-record verdict has exactly one outcome per key, and a record
//! whose result said error is never `delivered`.
//!
//! One instance serves every case of a test (instantiating is the cost); a call that fails
//! leaves it unusable, so it is replaced before the next case.

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use sluice::sandbox::{
    Connector, ConnectorInstance, HttpResponse, RecordOutcome, SandboxLimits, Verdict, Wait,
};

use crate::common::{self, show};

/// Cases per property: each is one `classify` call, so a few hundred stay within seconds.
const CASES: u32 = 256;

const REST_SETTINGS: &[(&str, &str)] = &[
    ("path", "/v1/records"),
    ("results_pointer", "/data/results"),
    ("id_field", "id"),
    ("permanent_codes", "GONE"),
    ("retry_codes", "LOCKED"),
];

const SALESFORCE_SETTINGS: &[(&str, &str)] = &[
    ("object", "Account"),
    ("external_id_field", "External_Id__c"),
];

/// A configured instance of one connector, replaced whenever a call into it fails.
struct Guest {
    connector: Connector,
    settings: Vec<(String, String)>,
    instance: Option<ConnectorInstance>,
}

impl Guest {
    fn new(name: &str, settings: &[(&str, &str)]) -> RefCell<Self> {
        let connector = common::runtime()
            .load(name, &common::guest(name), SandboxLimits::default())
            .unwrap();
        RefCell::new(Guest {
            connector,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            instance: None,
        })
    }

    /// The verdict, or a failed case when the call trapped or broke the contract (a list of
    /// the wrong length is refused by the host as a contract violation).
    fn classify(
        &mut self,
        keys: &[String],
        response: &HttpResponse,
    ) -> Result<Verdict, TestCaseError> {
        if self.instance.is_none() {
            let mut instance = self.connector.instantiate("props").unwrap();
            instance.configure(&self.settings).unwrap().unwrap();
            self.instance = Some(instance);
        }
        let verdict = self.instance.as_mut().unwrap().classify(
            keys,
            sluice::sandbox::Operation::Upsert,
            response,
        );
        if verdict.is_err() {
            self.instance = None;
        }
        verdict.map_err(|err| TestCaseError::fail(format!("classify failed: {err}")))
    }
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

fn response(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status,
        headers,
        body,
        truncated: false,
        received_at_ms: 1_700_000_000_000,
    }
}

// ---- strategies ----

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => prop::sample::select(vec![200u16, 201, 204, 207, 400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503]),
        2 => 100u16..600,
        1 => any::<u16>(),
    ]
}

/// `Retry-After` values: seconds (small, huge, past u64), HTTP-dates (past and far future),
/// and junk.
fn retry_after() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..100_000).prop_map(|s| s.to_string()),
        any::<u64>().prop_map(|s| s.to_string()),
        "[0-9]{20,40}",
        " [0-9]{1,4} ",
        (0u64..=253_402_300_799)
            .prop_map(|s| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s))),
        Just("Thu, 01 Jan 1970 00:00:00 GMT".to_string()),
        "-[0-9]{1,6}",
        "[0-9]{1,3}\\.[0-9]",
        ".{0,40}",
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let header = prop_oneof![
        3 => retry_after().prop_map(|v| ("retry-after".to_string(), v)),
        1 => retry_after().prop_map(|v| ("Retry-After".to_string(), v)),
        1 => Just(("content-type".to_string(), "application/json".to_string())),
        2 => ("[a-z][a-z0-9-]{0,15}", ".{0,30}"),
    ];
    vec(header, 0..4)
}

fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z_]{0,8}",
        1 => prop::sample::select(vec![
            "results", "data", "error", "errors", "success", "id", "code", "message", "fields",
            "statusCode", "errorCode",
        ])
        .prop_map(str::to_owned),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(member_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any body: bytes, JSON of any shape, JSON cut short.
fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let text = v.to_string().into_bytes();
            let at = cut.index(text.len() + 1);
            text[..at].to_vec()
        }),
    ]
}

/// Extra members of a result object, none named `skip`.
fn extras(skip: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    btree_map("[a-zA-Z_]{1,10}", json_value(), 0..3).prop_map(move |m| {
        m.into_iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .collect()
    })
}

fn error_code() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "GONE",
            "LOCKED",
            "INVALID_EMAIL",
            "UNABLE_TO_LOCK_ROW",
            "INVALID_CROSS_REFERENCE_KEY",
            "DUPLICATE_VALUE",
        ])
        .prop_map(|c| json!(c)),
        ".{0,12}".prop_map(Value::String),
        json_value(),
    ]
}

/// One REST result and whether it said error: `error` absent, null or false delivers;
/// anything else is an error (a string, an object with or without a code, a number, ...).
fn rest_result() -> BoxedStrategy<(Value, bool)> {
    let id = prop_oneof![
        Just(None),
        ".{0,10}".prop_map(|s| Some(json!(s))),
        any::<i64>().prop_map(|n| Some(json!(n))),
        json_value().prop_map(Some),
    ];
    let clean = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!(false)))
    ];
    let error = prop_oneof![
        ".{0,12}".prop_map(Value::String),
        (
            proptest::option::of(error_code()),
            proptest::option::of(json_value()),
            proptest::option::of(json_value()),
        )
            .prop_map(|(code, message, fields)| {
                let mut e = Map::new();
                for (k, v) in [("code", code), ("message", message), ("fields", fields)] {
                    if let Some(v) = v {
                        e.insert(k.into(), v);
                    }
                }
                Value::Object(e)
            }),
        json_value().prop_filter("an error value", |v| !matches!(
            v,
            Value::Null | Value::Bool(false)
        )),
    ];
    let said_error = prop_oneof![
        clean.prop_map(|e| (e, false)),
        error.prop_map(|e| (Some(e), true))
    ];
    (id, said_error, extras(&["id", "error"]))
        .prop_map(|(id, (error, is_error), mut item)| {
            if let Some(id) = id {
                item.insert("id".into(), id);
            }
            if let Some(error) = error {
                item.insert("error".into(), error);
            }
            (Value::Object(item), is_error)
        })
        .boxed()
}

/// One Salesforce save result and whether it said error: `success: true` delivers,
/// `success: false` with zero or more errors does not.
fn salesforce_result() -> BoxedStrategy<(Value, bool)> {
    let error = (
        proptest::option::of(error_code()),
        proptest::option::of(json_value()),
        proptest::option::of(vec(".{0,8}", 0..3)),
    )
        .prop_map(|(code, message, fields)| {
            let mut e = Map::new();
            if let Some(code) = code {
                e.insert("statusCode".into(), code);
            }
            if let Some(message) = message {
                e.insert("message".into(), message);
            }
            if let Some(fields) = fields {
                e.insert("fields".into(), json!(fields));
            }
            Value::Object(e)
        });
    (
        any::<bool>(),
        proptest::option::of(".{0,18}"),
        vec(error, 0..3),
        extras(&["id", "success", "errors"]),
    )
        .prop_map(|(success, id, errors, mut item)| {
            item.insert("success".into(), json!(success));
            item.insert("id".into(), id.map_or(Value::Null, Value::String));
            if !success || !errors.is_empty() {
                item.insert("errors".into(), json!(errors));
            }
            (Value::Object(item), !success)
        })
        .boxed()
}

/// A batch size, and results for it: mostly as many as the batch, sometimes fewer or more.
fn results_for(
    result: BoxedStrategy<(Value, bool)>,
) -> impl Strategy<Value = (usize, Vec<(Value, bool)>)> {
    (1usize..8).prop_flat_map(move |n| {
        let len = prop_oneof![4 => Just(n), 1 => 0usize..12];
        let result = result.clone();
        (
            Just(n),
            len.prop_flat_map(move |len| vec(result.clone(), len)),
        )
    })
}

// ---- properties ----

/// What holds for any response: no trap (checked by `Guest::classify`), one outcome per
/// key, and nothing delivered without a 2xx.
fn check_any(
    keys: &[String],
    response: &HttpResponse,
    verdict: &Verdict,
) -> Result<(), TestCaseError> {
    if let Verdict::PerRecord(outcomes) = verdict {
        prop_assert_eq!(outcomes.len(), keys.len(), "{}", show(verdict));
        let delivered = outcomes
            .iter()
            .any(|o| matches!(o, RecordOutcome::Delivered(_)));
        prop_assert!(
            !delivered || (200..300).contains(&response.status),
            "delivered on HTTP {}: {}",
            response.status,
            show(verdict)
        );
    }
    Ok(())
}

/// A 429 is a rate limit, and a `Retry-After` in seconds or as an HTTP-date is read exactly,
/// without overflow (more seconds than fit are "as long as can be said").
fn check_rate_limit(response: &HttpResponse, verdict: &Verdict) -> Result<(), TestCaseError> {
    if response.status != 429 {
        return Ok(());
    }
    let Verdict::RateLimited(wait) = verdict else {
        return Err(TestCaseError::fail(format!("429 gave {}", show(verdict))));
    };
    let stated = response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.trim());
    let expected = match stated {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Some((
            "after",
            v.parse::<u64>()
                .map_or(u64::MAX, |s| s.saturating_mul(1000)),
        )),
        Some(v) => httpdate::parse_http_date(v).ok().map(|at| {
            (
                "until",
                at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
            )
        }),
        None => None,
    };
    let got = wait.as_ref().map(|w| match w {
        Wait::AfterMs(ms) => ("after", *ms),
        Wait::UntilUnixMs(ms) => ("until", *ms),
    });
    prop_assert_eq!(got, expected, "Retry-After {:?}", stated);
    Ok(())
}

fn arbitrary_responses(name: &str, settings: &[(&str, &str)]) {
    let guest = Guest::new(name, settings);
    let strategy = (1usize..8, status(), headers(), any_body());
    runner()
        .run(&strategy, |(n, status, headers, body)| {
            let keys = keys(n);
            let response = response(status, headers, body);
            let verdict = guest.borrow_mut().classify(&keys, &response)?;
            check_any(&keys, &response, &verdict)?;
            check_rate_limit(&response, &verdict)
        })
        .unwrap();
}

#[test]
fn rest_classify_holds_on_arbitrary_responses() {
    arbitrary_responses("rest", REST_SETTINGS);
}

#[test]
fn salesforce_classify_holds_on_arbitrary_responses() {
    arbitrary_responses("salesforce", SALESFORCE_SETTINGS);
}

/// Per-record outcomes against what each result said: never delivered on an error; when
/// the status is a success and the lengths match, delivered exactly when no error.
fn check_results(
    keys: &[String],
    response: &HttpResponse,
    said_error: &[bool],
    success: bool,
    verdict: &Verdict,
) -> Result<(), TestCaseError> {
    check_any(keys, response, verdict)?;
    match verdict {
        Verdict::PerRecord(outcomes) => {
            prop_assert_eq!(said_error.len(), keys.len(), "{}", show(verdict));
            for (i, (outcome, &error)) in outcomes.iter().zip(said_error).enumerate() {
                let delivered = matches!(outcome, RecordOutcome::Delivered(_));
                prop_assert!(
                    !(error && delivered),
                    "result {} said error: {}",
                    i,
                    show(verdict)
                );
                prop_assert!(
                    error || delivered,
                    "result {} was a success: {}",
                    i,
                    show(verdict)
                );
            }
        }
        other if success => {
            // A success status whose results do not match the batch is a malformed answer,
            // retried as a whole; never guessed at.
            prop_assert!(
                said_error.len() != keys.len(),
                "results of the right length gave {}",
                show(other)
            );
            prop_assert_eq!(show(other), "transient(MALFORMED_RESPONSE)");
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn rest_never_delivers_a_result_that_said_error() {
    let guest = Guest::new("rest", REST_SETTINGS);
    let status = prop_oneof![
        6 => prop::sample::select(vec![200u16, 201, 202, 207, 299]),
        1 => status(),
    ];
    let strategy = (
        results_for(rest_result()),
        status,
        headers(),
        extras(&["results"]),
    );
    runner()
        .run(&strategy, |((n, results), status, headers, mut data)| {
            let said_error: Vec<bool> = results.iter().map(|(_, e)| *e).collect();
            let items: Vec<Value> = results.into_iter().map(|(item, _)| item).collect();
            data.insert("results".into(), Value::Array(items));
            let body = json!({"data": data, "request_id": "r1"});
            let keys = keys(n);
            let response = response(status, headers, body.to_string().into_bytes());
            let verdict = guest.borrow_mut().classify(&keys, &response)?;
            check_results(
                &keys,
                &response,
                &said_error,
                (200..300).contains(&status),
                &verdict,
            )
        })
        .unwrap();
}

#[test]
fn salesforce_never_delivers_a_result_that_said_error() {
    let guest = Guest::new("salesforce", SALESFORCE_SETTINGS);
    let status = prop_oneof![
        6 => prop::sample::select(vec![200u16, 201]),
        1 => status(),
    ];
    let strategy = (results_for(salesforce_result()), status, headers());
    runner()
        .run(&strategy, |((n, results), status, headers)| {
            let said_error: Vec<bool> = results.iter().map(|(_, e)| *e).collect();
            let items: Vec<Value> = results.into_iter().map(|(item, _)| item).collect();
            let keys = keys(n);
            let response = response(
                status,
                headers,
                Value::Array(items).to_string().into_bytes(),
            );
            let verdict = guest.borrow_mut().classify(&keys, &response)?;
            check_results(
                &keys,
                &response,
                &said_error,
                matches!(status, 200 | 201),
                &verdict,
            )
        })
        .unwrap();
}
