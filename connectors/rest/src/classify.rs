//! Reading a destination's answers into verdicts.

use serde_json::Value;

use crate::sluice::connector::types::{
    Failure, HttpResponse, Operation, RecordOutcome, Verdict, Wait,
};
use crate::{Config, failure};

/// Reads a response into a verdict; never traps, whatever the body.
pub(crate) fn classify(
    config: &Config,
    count: usize,
    operation: Operation,
    response: &HttpResponse,
) -> Verdict {
    let status = response.status;
    let body = &response.body;
    match status {
        200..=299 => match &config.results_pointer {
            // The status alone confirms the batch: a cut body changes nothing.
            None => {
                Verdict::PerRecord((0..count).map(|_| RecordOutcome::Delivered(None)).collect())
            }
            // The results are the confirmation: a cut list confirms nothing, and a resend
            // would be cut again.
            Some(_) if response.truncated => Verdict::Fatal(failure(
                common::RESPONSE_TRUNCATED,
                common::TRUNCATED_MESSAGE,
                vec![],
            )),
            Some(pointer) => {
                per_record(config, pointer, count, operation, body).unwrap_or_else(|message| {
                    Verdict::Transient(failure("MALFORMED_RESPONSE", message, vec![]))
                })
            }
        },
        400 | 409 | 422 => Verdict::BatchRejected(error_from_body(status, body)),
        429 | 503 => Verdict::RateLimited(common::retry_after(&response.headers).map(Wait::from)),
        408 | 500..=599 => Verdict::Transient(error_from_body(status, body)),
        401 => Verdict::AuthExpired(error_from_body(status, body)),
        403 => Verdict::Fatal(error_from_body(status, body)),
        _ => {
            let f = error_from_body(status, body);
            Verdict::Fatal(failure(common::http_code(status), f.message, f.fields))
        }
    }
}

/// Matches the results array at `pointer` to the batch by position. `Err` says what was
/// wrong with the body.
fn per_record(
    config: &Config,
    pointer: &str,
    count: usize,
    operation: Operation,
    body: &[u8],
) -> Result<Verdict, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("response body is not JSON: {e}"))?;
    let results = value
        .pointer(pointer)
        .ok_or_else(|| format!("results_pointer {pointer} not found in the response"))?
        .as_array()
        .ok_or_else(|| format!("results_pointer {pointer} is not an array"))?;
    if results.len() != count {
        return Err(format!(
            "expected {count} results at {pointer}, got {}",
            results.len()
        ));
    }
    results
        .iter()
        .enumerate()
        .map(|(i, item)| {
            record_outcome(config, operation, item)
                .ok_or_else(|| format!("result {i} at {pointer} is not an object"))
        })
        .collect::<Result<_, _>>()
        .map(Verdict::PerRecord)
}

/// One result item: delivered when its `error` is absent, null or false, or, for a delete,
/// `NOT_FOUND` (the record is gone either way); otherwise the error's code picks rejected,
/// permanent or retry. `None` when the item is not an object.
fn record_outcome(config: &Config, operation: Operation, item: &Value) -> Option<RecordOutcome> {
    let item = item.as_object()?;
    let id = || {
        config
            .id_field
            .as_ref()
            .and_then(|field| match item.get(field)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    let f = match item.get("error") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {
            return Some(RecordOutcome::Delivered(id()));
        }
        Some(Value::String(s)) => failure(s.clone(), s.clone(), vec![]),
        Some(e @ Value::Object(_)) => error_object(e)
            .unwrap_or_else(|| failure("UNKNOWN_ERROR", format!("error: {e}"), vec![])),
        Some(other) => failure("UNKNOWN_ERROR", format!("error: {other}"), vec![]),
    };
    Some(if operation == Operation::Delete && f.code == "NOT_FOUND" {
        RecordOutcome::Delivered(id())
    } else if config.permanent_codes.contains(&f.code) {
        RecordOutcome::Permanent(f)
    } else if config.retry_codes.contains(&f.code) {
        RecordOutcome::Retry(f)
    } else {
        RecordOutcome::Rejected(f)
    })
}

/// `{"code", "message", "fields"}`, when it has a code or a message.
fn error_object(e: &Value) -> Option<Failure> {
    let text = |key: &str| match e.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (code, message) = match (text("code"), text("message")) {
        (None, None) => return None,
        (code, message) => (code.unwrap_or_else(|| "UNKNOWN_ERROR".into()), message),
    };
    let fields = e
        .get("fields")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Some(failure(code.clone(), message.unwrap_or(code), fields))
}

/// The failure a whole-batch error body states: `{"error": {"code", "message"}}`,
/// `{"error": "..."}` or `{"code", "message"}`; `HTTP_<status>` when it says nothing usable.
fn error_from_body(status: u16, body: &[u8]) -> Failure {
    let value = serde_json::from_slice::<Value>(body).ok();
    let stated = value.as_ref().and_then(|v| match v.get("error") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            Some(failure(s.clone(), s.clone(), vec![]))
        }
        Some(e @ Value::Object(_)) => error_object(e),
        _ => error_object(v).filter(|f| f.code != "UNKNOWN_ERROR"),
    });
    if let Some(f) = stated {
        return f;
    }
    let message = match value
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
    {
        Some(m) => format!("HTTP {status}: {m}"),
        None if body.is_empty() => format!("HTTP {status} with an empty body"),
        None => format!("HTTP {status}: {}", common::snippet(body, 200)),
    };
    failure(common::http_code(status), message, vec![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{config, response};

    const UPSERT: Operation = Operation::Upsert;

    #[test]
    fn per_record_results() {
        let c = config(&[
            ("results_pointer", "/data/results"),
            ("id_field", "id"),
            ("permanent_codes", "NO_PARENT"),
            ("retry_codes", "LOCKED"),
        ]);
        let body = r#"{"data":{"results":[
            {"id":"x1"}, {"id":7,"error":null}, {"error":"BAD_EMAIL"},
            {"error":{"code":"NO_PARENT","message":"no parent","fields":["parent"]}},
            {"error":{"code":"LOCKED"}}, {"error":{"message":"odd"}}
        ]}}"#;
        let Verdict::PerRecord(o) = classify(&c, 6, UPSERT, &response(207, body, &[])) else {
            panic!()
        };
        assert!(matches!(&o[0], RecordOutcome::Delivered(Some(id)) if id == "x1"));
        assert!(matches!(&o[1], RecordOutcome::Delivered(Some(id)) if id == "7"));
        assert!(
            matches!(&o[2], RecordOutcome::Rejected(f) if f.code == "BAD_EMAIL" && f.message == "BAD_EMAIL")
        );
        assert!(matches!(&o[3], RecordOutcome::Permanent(f) if f.fields == ["parent"]));
        assert!(matches!(&o[4], RecordOutcome::Retry(f) if f.message == "LOCKED"));
        assert!(
            matches!(&o[5], RecordOutcome::Rejected(f) if f.code == "UNKNOWN_ERROR" && f.message == "odd")
        );
        let Verdict::PerRecord(o) = classify(&config(&[]), 2, UPSERT, &response(204, "", &[]))
        else {
            panic!()
        };
        assert!(
            o.iter()
                .all(|o| matches!(o, RecordOutcome::Delivered(None)))
                && o.len() == 2
        );
    }

    #[test]
    fn malformed_bodies_are_transient() {
        let c = config(&[("results_pointer", "/results")]);
        for body in [
            "",
            "nope",
            "[]",
            r#"{"results":{}}"#,
            r#"{"results":[]}"#,
            r#"{"results":[1]}"#,
        ] {
            let v = classify(&c, 1, UPSERT, &response(200, body, &[]));
            assert!(
                matches!(&v, Verdict::Transient(f) if f.code == "MALFORMED_RESPONSE"),
                "{body}"
            );
        }
    }

    #[test]
    fn statuses() {
        let c = config(&[]);
        let v = |status, body| {
            classify(
                &c,
                1,
                UPSERT,
                &response(status, body, &[("retry-after", "3")]),
            )
        };
        assert!(
            matches!(v(422, r#"{"error":{"code":"INVALID","message":"m"}}"#), Verdict::BatchRejected(f) if f.code == "INVALID")
        );
        assert!(
            matches!(v(400, r#"{"error":"bad_request"}"#), Verdict::BatchRejected(f) if f.code == "bad_request")
        );
        assert!(
            matches!(v(409, r#"{"code":"CONFLICT","message":"m"}"#), Verdict::BatchRejected(f) if f.code == "CONFLICT")
        );
        assert!(
            matches!(v(400, r#"{"message":"why"}"#), Verdict::BatchRejected(f) if f.code == "HTTP_400" && f.message.contains("why"))
        );
        assert!(matches!(
            v(429, ""),
            Verdict::RateLimited(Some(Wait::AfterMs(3000)))
        ));
        assert!(matches!(v(503, ""), Verdict::RateLimited(Some(_))));
        assert!(matches!(v(408, ""), Verdict::Transient(f) if f.code == "HTTP_408"));
        assert!(matches!(v(502, "\u{0}\u{1}"), Verdict::Transient(f) if f.code == "HTTP_502"));
        assert!(matches!(v(401, ""), Verdict::AuthExpired(_)));
        assert!(matches!(v(403, ""), Verdict::Fatal(f) if f.code == "HTTP_403"));
        assert!(
            matches!(v(404, r#"{"error":"nope"}"#), Verdict::Fatal(f) if f.code == "HTTP_404" && f.message == "nope")
        );
    }

    #[test]
    fn a_delete_of_a_record_not_found_is_delivered() {
        let c = config(&[
            ("delete_path", "/v1/contacts/delete"),
            ("results_pointer", "/results"),
            ("id_field", "id"),
        ]);
        let body = r#"{"results":[
            {"id":"x1"}, {"id":"x2","error":{"code":"NOT_FOUND","message":"no such record"}},
            {"error":"LOCKED"}
        ]}"#;
        let Verdict::PerRecord(o) = classify(&c, 3, Operation::Delete, &response(200, body, &[]))
        else {
            panic!()
        };
        assert!(matches!(&o[0], RecordOutcome::Delivered(Some(id)) if id == "x1"));
        assert!(matches!(&o[1], RecordOutcome::Delivered(Some(id)) if id == "x2"));
        assert!(matches!(&o[2], RecordOutcome::Rejected(f) if f.code == "LOCKED"));
        let Verdict::PerRecord(o) = classify(&c, 3, UPSERT, &response(200, body, &[])) else {
            panic!()
        };
        assert!(matches!(&o[1], RecordOutcome::Rejected(f) if f.code == "NOT_FOUND"));
    }

    #[test]
    fn a_truncated_body_is_fatal_only_when_its_results_are_read() {
        let mut cut = response(200, r#"{"results":[{"id":"x"#, &[]);
        cut.truncated = true;
        let c = config(&[("results_pointer", "/results")]);
        let Verdict::Fatal(f) = classify(&c, 1, UPSERT, &cut) else {
            panic!()
        };
        assert_eq!(f.code, "RESPONSE_TRUNCATED");
        assert!(f.message.contains("max_response_bytes"));
        assert!(matches!(
            classify(&config(&[]), 1, UPSERT, &cut),
            Verdict::PerRecord(o) if matches!(o[..], [RecordOutcome::Delivered(None)])
        ));
    }
}
