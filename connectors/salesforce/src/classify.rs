//! Reading Salesforce's answers into verdicts.

use serde_json::Value;

use crate::failure;
use crate::sluice::connector::types::{
    Failure, HttpResponse, Operation, RecordOutcome, Verdict, Wait,
};

/// Per-record codes that mean a record to delete is already gone.
const GONE: &[&str] = &["ENTITY_IS_DELETED", "NOT_FOUND"];

/// Reads a response into a verdict; never traps, whatever the body.
pub(crate) fn classify(count: usize, operation: Operation, response: &HttpResponse) -> Verdict {
    let status = response.status;
    let rate_limited =
        || Verdict::RateLimited(common::retry_after(&response.headers).map(Wait::from));
    match status {
        // The results are the confirmation: a cut list confirms nothing, and a resend
        // would be cut again.
        200 | 201 if response.truncated => Verdict::Fatal(failure(
            common::RESPONSE_TRUNCATED,
            common::TRUNCATED_MESSAGE,
            vec![],
        )),
        200 | 201 => per_record(count, operation, &response.body).unwrap_or_else(|message| {
            Verdict::Transient(failure("MALFORMED_RESPONSE", message, vec![]))
        }),
        401 => Verdict::AuthExpired(error_from_body(status, &response.body)),
        403 => {
            let f = error_from_body(status, &response.body);
            if f.code == "REQUEST_LIMIT_EXCEEDED" {
                rate_limited()
            } else {
                Verdict::Fatal(f)
            }
        }
        429 => rate_limited(),
        500..=599 => Verdict::Transient(error_from_body(status, &response.body)),
        400 => Verdict::BatchRejected(error_from_body(status, &response.body)),
        404 => {
            let f = error_from_body(status, &response.body);
            let message = format!(
                "the sObject or endpoint does not exist (check object, external_id_field and api_version): {}",
                f.message
            );
            Verdict::Fatal(Failure { message, ..f })
        }
        _ => {
            let f = error_from_body(status, &response.body);
            Verdict::Fatal(failure(common::http_code(status), f.message, f.fields))
        }
    }
}

/// The per-record save results of a 200/201: one `{id, success, errors}` per record, in
/// order. `Err` says what was wrong with the body.
fn per_record(count: usize, operation: Operation, body: &[u8]) -> Result<Verdict, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("response body is not JSON: {e}"))?;
    let results = value
        .as_array()
        .ok_or("response body is not a JSON array")?;
    if results.len() != count {
        return Err(format!("expected {count} results, got {}", results.len()));
    }
    let outcomes: Vec<RecordOutcome> = results
        .iter()
        .enumerate()
        .map(|(i, result)| {
            record_outcome(operation, result)
                .ok_or_else(|| format!("result {i} has no boolean `success`"))
        })
        .collect::<Result<_, _>>()?;
    // A session refused per record refuses the credentials, not the records.
    let refused = outcomes.iter().find_map(|o| match o {
        RecordOutcome::Rejected(f) if f.code == "INVALID_SESSION_ID" => Some(f.clone()),
        _ => None,
    });
    Ok(match refused {
        Some(f) => Verdict::AuthExpired(f),
        None => Verdict::PerRecord(outcomes),
    })
}

/// One save result. `None` when it is not a result at all.
fn record_outcome(operation: Operation, result: &Value) -> Option<RecordOutcome> {
    let id = || result.get("id").and_then(Value::as_str).map(str::to_owned);
    if result.get("success")?.as_bool()? {
        return Some(RecordOutcome::Delivered(id()));
    }
    let Some(error) = result
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    else {
        return Some(RecordOutcome::Rejected(failure(
            "UNKNOWN_ERROR",
            "the record was not saved and Salesforce gave no error",
            vec![],
        )));
    };
    let code = text(error, "statusCode")
        .unwrap_or("UNKNOWN_ERROR")
        .to_owned();
    let message = text(error, "message").unwrap_or(&code).to_owned();
    let f = failure(code, message, string_list(error.get("fields")));
    Some(match f.code.as_str() {
        // A record to delete that is already gone is what the delete wanted.
        code if operation == Operation::Delete && GONE.contains(&code) => {
            RecordOutcome::Delivered(id())
        }
        // Another transaction holds the row: trying again shortly usually works.
        "UNABLE_TO_LOCK_ROW" => RecordOutcome::Retry(f),
        // A lookup names a record that does not exist: a person must fix the reference.
        "INVALID_CROSS_REFERENCE_KEY" => RecordOutcome::Permanent(f),
        _ => RecordOutcome::Rejected(f),
    })
}

/// The failure a non-2xx body states, `[{"message", "errorCode"}]`; `HTTP_<status>` when the
/// body says nothing usable.
fn error_from_body(status: u16, body: &[u8]) -> Failure {
    let value = serde_json::from_slice::<Value>(body).ok();
    let error = match &value {
        Some(Value::Array(items)) => items.first(),
        Some(v @ Value::Object(_)) => Some(v),
        _ => None,
    };
    let code = error.and_then(|e| text(e, "errorCode"));
    let message = error.and_then(|e| text(e, "message"));
    let fields = string_list(error.and_then(|e| e.get("fields")));
    let message = match message {
        Some(m) => m.to_owned(),
        None if body.is_empty() => format!("HTTP {status} with an empty body"),
        None => format!("HTTP {status}: {}", common::snippet(body, 200)),
    };
    failure(
        code.map_or_else(|| common::http_code(status), str::to_owned),
        message,
        fields,
    )
}

/// A non-blank string member of a JSON object.
fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key)?.as_str().filter(|s| !s.trim().is_empty())
}

/// The strings of a JSON array; anything else gives none.
fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSERT: Operation = Operation::Upsert;

    fn response(status: u16, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            truncated: false,
            received_at_ms: 0,
        }
    }

    #[test]
    fn per_record_results() {
        let body = r#"[
            {"id":"001A","success":true,"errors":[],"created":true},
            {"id":null,"success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"locked","fields":[]}]},
            {"success":false,"errors":[{"statusCode":"INVALID_CROSS_REFERENCE_KEY","message":"bad ref","fields":["AccountId"]}]},
            {"success":false,"errors":[{"statusCode":"INVALID_EMAIL_ADDRESS","message":"bad email","fields":["Email"]}]},
            {"success":false,"errors":[]}
        ]"#;
        let Verdict::PerRecord(o) = classify(5, UPSERT, &response(200, body, &[])) else {
            panic!()
        };
        assert!(matches!(&o[0], RecordOutcome::Delivered(Some(id)) if id == "001A"));
        assert!(matches!(&o[1], RecordOutcome::Retry(f) if f.code == "UNABLE_TO_LOCK_ROW"));
        assert!(matches!(&o[2], RecordOutcome::Permanent(f) if f.fields == ["AccountId"]));
        assert!(matches!(&o[3], RecordOutcome::Rejected(f) if f.code == "INVALID_EMAIL_ADDRESS"));
        assert!(matches!(&o[4], RecordOutcome::Rejected(f) if f.code == "UNKNOWN_ERROR"));
    }

    #[test]
    fn a_record_already_gone_is_deleted_but_not_updated() {
        let body = r#"[
            {"id":"001A","success":true,"errors":[]},
            {"id":"001B","success":false,"errors":[{"statusCode":"ENTITY_IS_DELETED","message":"entity is deleted","fields":[]}]},
            {"success":false,"errors":[{"statusCode":"NOT_FOUND","message":"gone","fields":[]}]},
            {"success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"locked","fields":[]}]}
        ]"#;
        let Verdict::PerRecord(o) = classify(4, Operation::Delete, &response(200, body, &[]))
        else {
            panic!()
        };
        assert!(matches!(&o[0], RecordOutcome::Delivered(Some(id)) if id == "001A"));
        assert!(matches!(&o[1], RecordOutcome::Delivered(Some(id)) if id == "001B"));
        assert!(matches!(&o[2], RecordOutcome::Delivered(None)));
        assert!(matches!(&o[3], RecordOutcome::Retry(_)));
        let Verdict::PerRecord(o) = classify(4, Operation::Update, &response(200, body, &[]))
        else {
            panic!()
        };
        assert!(matches!(&o[1], RecordOutcome::Rejected(f) if f.code == "ENTITY_IS_DELETED"));
        assert!(matches!(&o[2], RecordOutcome::Rejected(f) if f.code == "NOT_FOUND"));
    }

    #[test]
    fn a_session_refused_per_record_refuses_the_batch() {
        let body = r#"[
            {"id":"001A","success":true,"errors":[]},
            {"success":false,"errors":[{"statusCode":"INVALID_SESSION_ID","message":"Session expired or invalid","fields":[]}]}
        ]"#;
        for operation in [
            UPSERT,
            Operation::Insert,
            Operation::Update,
            Operation::Delete,
        ] {
            let v = classify(2, operation, &response(200, body, &[]));
            assert!(
                matches!(&v, Verdict::AuthExpired(f) if f.code == "INVALID_SESSION_ID"),
                "{operation:?}"
            );
        }
    }

    #[test]
    fn a_truncated_body_is_fatal_and_names_the_limit() {
        let mut cut = response(200, r#"[{"id":"001A","success":tr"#, &[]);
        cut.truncated = true;
        let Verdict::Fatal(f) = classify(1, UPSERT, &cut) else {
            panic!()
        };
        assert_eq!(f.code, "RESPONSE_TRUNCATED");
        assert!(f.message.contains("max_response_bytes"));
        // Whole even though flagged: still cut, still not a confirmation.
        cut.body = br#"[{"id":"001A","success":true}]"#.to_vec();
        assert!(matches!(classify(1, UPSERT, &cut), Verdict::Fatal(_)));
    }

    #[test]
    fn malformed_bodies_are_transient() {
        let huge = "[".repeat(100_000);
        for body in [
            "",
            "{",
            "{}",
            "[1]",
            r#"[{"success":"yes"}]"#,
            "[]",
            huge.as_str(),
        ] {
            let v = classify(1, UPSERT, &response(200, body, &[]));
            assert!(
                matches!(&v, Verdict::Transient(f) if f.code == "MALFORMED_RESPONSE"),
                "{body:.20}"
            );
        }
        let Verdict::Transient(f) = classify(3, UPSERT, &response(201, "[]", &[])) else {
            panic!()
        };
        assert_eq!(f.message, "expected 3 results, got 0");
    }

    #[test]
    fn statuses() {
        let err = |code: &str| format!(r#"[{{"message":"m","errorCode":"{code}"}}]"#);
        let c = |status, body: &str, headers: &[(&str, &str)]| {
            classify(1, UPSERT, &response(status, body, headers))
        };
        let v = c(401, &err("INVALID_SESSION_ID"), &[]);
        assert!(matches!(v, Verdict::AuthExpired(f) if f.code == "INVALID_SESSION_ID"));
        let v = c(403, &err("REQUEST_LIMIT_EXCEEDED"), &[("retry-after", "7")]);
        assert!(matches!(v, Verdict::RateLimited(Some(Wait::AfterMs(7000)))));
        let v = c(403, &err("INSUFFICIENT_ACCESS"), &[]);
        assert!(matches!(v, Verdict::Fatal(f) if f.code == "INSUFFICIENT_ACCESS"));
        let v = c(429, "", &[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")]);
        assert!(matches!(
            v,
            Verdict::RateLimited(Some(Wait::UntilUnixMs(1_792_567_680_000)))
        ));
        assert!(matches!(c(429, "", &[]), Verdict::RateLimited(None)));
        let v = c(503, "<html>down</html>", &[]);
        assert!(
            matches!(v, Verdict::Transient(f) if f.code == "HTTP_503" && f.message.contains("down"))
        );
        let v = c(400, &err("JSON_PARSER_ERROR"), &[]);
        assert!(matches!(v, Verdict::BatchRejected(f) if f.code == "JSON_PARSER_ERROR"));
        assert!(matches!(c(400, "", &[]), Verdict::BatchRejected(f) if f.code == "HTTP_400"));
        assert!(
            matches!(c(404, &err("NOT_FOUND"), &[]), Verdict::Fatal(f) if f.code == "NOT_FOUND")
        );
        assert!(matches!(c(302, "", &[]), Verdict::Fatal(f) if f.code == "HTTP_302"));
    }
}
