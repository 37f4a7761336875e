//! What the check feeds a connector: a sample batch, and canned responses with what a
//! connector usually makes of each; and the short form a verdict is shown in.

use crate::sandbox::{HttpResponse, Operation, SourceRecord, Verdict, Wait};

/// When the canned responses say they were received: 2023-11-14T22:13:20Z.
const RECEIVED_AT_MS: u64 = 1_700_000_000_000;

/// A sample batch, within the stated limits.
pub(super) fn sample(limit: u32) -> Vec<SourceRecord> {
    (1..=3.min(limit.max(1)))
        .map(|i| {
            let key = format!("check{i}@example.com");
            let payload = format!(
                r#"{{"id": "{key}", "email": "{key}", "name": "Check {i}", "firstname": "Check", "lastname": "Record {i}", "amount": {i}00.50, "active": true, "ParentCrmId": "P1"}}"#
            );
            SourceRecord::new(key, payload)
        })
        .collect()
}

/// `records` as a batch of `operation`: an update or a delete carries a destination id,
/// as the host's would (the ledger's id of an earlier delivery), and a delete's payload
/// is `{}`.
pub(super) fn as_operation(records: &[SourceRecord], operation: Operation) -> Vec<SourceRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let id = matches!(operation, Operation::Update | Operation::Delete)
                .then(|| format!("001CHECK{:010}", i + 1));
            let mut record = match operation {
                Operation::Delete => SourceRecord::delete(r.key.clone(), None),
                _ => r.clone(),
            };
            record.operation = operation;
            record.destination_id = id;
            record
        })
        .collect()
}

/// One canned response, and what a connector usually makes of it.
pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) response: HttpResponse,
    /// `None` when any verdict is fine; else the advice given when the verdict differs.
    pub(super) expect: Option<Expectation>,
}

/// Whether a verdict fits, and the advice given when it does not.
type Expectation = (fn(&Verdict) -> bool, &'static str);

fn canned(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> HttpResponse {
    HttpResponse::recorded(status, headers, body, RECEIVED_AT_MS)
}

pub(super) fn cases(keys: &[String]) -> Vec<Case> {
    let json = |v: serde_json::Value| v.to_string().into_bytes();
    let array: Vec<serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| serde_json::json!({"id": k, "success": true, "ok": true, "errors": [], "rev": format!("1-{i}")}))
        .collect();
    let results: Vec<serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| serde_json::json!({"id": k, "error": null, "properties": {"email": k, "hs_object_id": i.to_string()}}))
        .collect();
    let mut huge = b"{\"results\": \"".to_vec();
    huge.resize(huge.len() + (10 << 20), b'x');
    huge.extend_from_slice(b"\"}");
    vec![
        Case {
            name: "200 with a JSON array of per-record results",
            response: canned(
                200,
                &[("content-type", "application/json")],
                json(serde_json::Value::Array(array)),
            ),
            expect: None,
        },
        Case {
            name: "200 with an object of per-record results",
            response: canned(
                200,
                &[("content-type", "application/json")],
                json(serde_json::json!({"status": "COMPLETE", "results": results, "errors": []})),
            ),
            expect: None,
        },
        Case {
            name: "400 refusing the whole batch",
            response: canned(
                400,
                &[("content-type", "application/json")],
                json(
                    serde_json::json!({"error": {"code": "INVALID_REQUEST", "message": "the batch was refused"}}),
                ),
            ),
            expect: Some((
                |v| matches!(v, Verdict::BatchRejected(_) | Verdict::PerRecord(_)),
                "a 400 for the whole batch is usually `batch-rejected`: the host then bisects the batch to the record at fault",
            )),
        },
        Case {
            name: "429 with Retry-After: 30",
            response: canned(
                429,
                &[("retry-after", "30")],
                json(serde_json::json!({"error": "too many requests"})),
            ),
            expect: Some((
                |v| matches!(v, Verdict::RateLimited(Some(Wait::AfterMs(30_000)))),
                "`Retry-After: 30` is `rate-limited(after-ms(30000))`: the host pauses every request to the destination that long",
            )),
        },
        Case {
            name: "429 with Retry-After as an HTTP-date",
            response: canned(
                429,
                &[("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT")],
                Vec::new(),
            ),
            expect: Some((
                |v| {
                    matches!(
                        v,
                        Verdict::RateLimited(Some(Wait::UntilUnixMs(1_700_000_120_000)))
                            | Verdict::RateLimited(Some(Wait::AfterMs(120_000)))
                    )
                },
                "an HTTP-date 120 s after `received-at-ms` is `rate-limited(until-unix-ms(1700000120000))`",
            )),
        },
        Case {
            name: "503 without Retry-After",
            response: canned(
                503,
                &[("content-type", "text/html")],
                b"<html><body>Service Unavailable</body></html>".to_vec(),
            ),
            expect: Some((
                |v| matches!(v, Verdict::RateLimited(_) | Verdict::Transient(_)),
                "a 503 is usually `rate-limited` or `transient`, so that the batch is sent again",
            )),
        },
        Case {
            name: "401",
            response: canned(
                401,
                &[("www-authenticate", "Bearer error=\"invalid_token\"")],
                json(serde_json::json!({"error": "invalid_token"})),
            ),
            expect: Some((
                |v| matches!(v, Verdict::AuthExpired(_)),
                "a 401 is usually `auth-expired`: the host renews the credentials once and resends",
            )),
        },
        Case {
            name: "500",
            response: canned(
                500,
                &[("content-type", "application/json")],
                json(serde_json::json!({"error": "internal server error"})),
            ),
            expect: Some((
                |v| matches!(v, Verdict::Transient(_) | Verdict::RateLimited(_)),
                "a 500 is usually `transient`: the host resends after a backoff",
            )),
        },
        Case {
            name: "200 with a malformed body",
            response: canned(
                200,
                &[("content-type", "text/html")],
                b"<html><body>Down for maintenance</body></html>".to_vec(),
            ),
            expect: None,
        },
        Case {
            name: "200 with an empty body",
            response: canned(200, &[], Vec::new()),
            expect: None,
        },
        Case {
            name: "200 with a body of 10 MiB",
            response: canned(200, &[("content-type", "application/json")], huge),
            expect: None,
        },
    ]
}

/// A verdict in a short form: `per-record[delivered(id), rejected(CODE)]`,
/// `rate-limited(after 30000 ms)`, `transient(HTTP_500)`.
pub fn show(verdict: &Verdict) -> String {
    verdict.to_string()
}
