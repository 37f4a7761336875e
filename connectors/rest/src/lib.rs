//! Generic JSON REST destination: sends a batch as one JSON request (a bare array of the
//! payloads, or an object holding that array) and reads either "any 2xx delivers the batch"
//! or a per-record results array found by a JSON pointer.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "destination-connector" });

use exports::sluice::connector::destination::Guest;
use serde_json::Value;
use sluice::connector::types::{
    Failure, HttpRequest, HttpResponse, Limits, PrecheckOutcome, RecordOutcome, SourceRecord,
    Verdict, Wait,
};

const KNOWN_SETTINGS: &[&str] = &[
    "path",
    "method",
    "records_field",
    "results_pointer",
    "id_field",
    "permanent_codes",
    "retry_codes",
    "max_batch_records",
    "max_batch_bytes",
];

#[derive(Debug, Clone)]
struct Config {
    path: String,
    method: String,
    records_field: Option<String>,
    results_pointer: Option<String>,
    id_field: Option<String>,
    permanent_codes: Vec<String>,
    retry_codes: Vec<String>,
    limits: Limits,
}

static CONFIG: common::Slot<Config> = common::Slot::new();

struct Rest;

impl Guest for Rest {
    fn configure(settings: Vec<(String, String)>) -> Result<Limits, Failure> {
        let config = parse_config(settings)?;
        let limits = config.limits;
        CONFIG.set(config);
        Ok(limits)
    }

    fn precheck(batch: Vec<SourceRecord>) -> Vec<Option<PrecheckOutcome>> {
        batch
            .iter()
            .map(|r| {
                check_object(&r.payload)
                    .err()
                    .map(PrecheckOutcome::Rejected)
            })
            .collect()
    }

    fn build_request(batch: Vec<SourceRecord>) -> Result<HttpRequest, Failure> {
        let config = CONFIG.get().ok_or_else(|| {
            failure(
                "NOT_CONFIGURED",
                "configure has not succeeded on this instance",
                vec![],
            )
        })?;
        build_request(&config, &batch)
    }

    fn classify(keys: Vec<String>, response: HttpResponse) -> Verdict {
        match CONFIG.get() {
            Some(config) => classify(&config, keys.len(), &response),
            None => Verdict::Fatal(failure(
                "NOT_CONFIGURED",
                "configure has not succeeded on this instance",
                vec![],
            )),
        }
    }
}

export!(Rest);

fn failure(code: impl Into<String>, message: impl Into<String>, fields: Vec<String>) -> Failure {
    Failure {
        code: code.into(),
        message: message.into(),
        fields,
    }
}

impl From<common::SettingError> for Failure {
    fn from(e: common::SettingError) -> Self {
        failure(e.code, e.message, vec![])
    }
}

impl From<common::Wait> for Wait {
    fn from(w: common::Wait) -> Self {
        match w {
            common::Wait::AfterMs(ms) => Wait::AfterMs(ms),
            common::Wait::UntilUnixMs(ms) => Wait::UntilUnixMs(ms),
        }
    }
}

fn parse_config(settings: Vec<(String, String)>) -> Result<Config, Failure> {
    use common::SettingError as E;
    let s = common::Settings::parse(settings, KNOWN_SETTINGS)?;
    let path = s.required("path")?;
    if !(path.starts_with('/') || path.starts_with("https://") || path.starts_with("http://")) {
        return Err(E::invalid(
            "path",
            format!("expected /a/path or an http(s):// URL, got {path:?}"),
        )
        .into());
    }
    let method = s
        .optional("method")
        .unwrap_or_else(|| "POST".into())
        .to_ascii_uppercase();
    if !["POST", "PUT", "PATCH"].contains(&method.as_str()) {
        return Err(E::invalid(
            "method",
            format!("expected POST, PUT or PATCH, got {method:?}"),
        )
        .into());
    }
    let results_pointer = s.optional("results_pointer");
    if let Some(p) = &results_pointer
        && !p.starts_with('/')
    {
        return Err(E::invalid(
            "results_pointer",
            format!("expected a JSON pointer like /results, got {p:?}"),
        )
        .into());
    }
    let codes = |key: &str| -> Vec<String> {
        s.optional(key)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (permanent_codes, retry_codes) = (codes("permanent_codes"), codes("retry_codes"));
    if let Some(code) = permanent_codes.iter().find(|c| retry_codes.contains(c)) {
        return Err(E::invalid("retry_codes", format!("{code} is also in permanent_codes")).into());
    }
    // These only read per-record results: without a pointer they would be silently unused.
    for key in ["id_field", "permanent_codes", "retry_codes"] {
        if results_pointer.is_none() && s.optional(key).is_some() {
            return Err(E::invalid(key, "only applies when results_pointer is set").into());
        }
    }
    Ok(Config {
        path,
        method,
        records_field: s.optional("records_field"),
        results_pointer,
        id_field: s.optional("id_field"),
        permanent_codes,
        retry_codes,
        limits: Limits {
            max_batch_records: s.number("max_batch_records", 1000, 1..=100_000)?,
            max_batch_bytes: s.number("max_batch_bytes", 10_000_000, 1..=u64::MAX)?,
        },
    })
}

/// Accepts a payload that is a JSON object; the failure says what it is instead.
fn check_object(payload: &str) -> Result<(), Failure> {
    // The host hands over each payload as exactly one JSON object (it parsed it to find
    // the key; docs/connectors.md), so a full parse here would only repeat its work.
    // This guard keeps the body an array of objects should another host send less.
    if payload.trim_start().starts_with('{') && payload.trim_end().ends_with('}') {
        Ok(())
    } else {
        Err(failure("INVALID_JSON", "payload is not a JSON object", vec![]))
    }
}

/// The payloads go into the body verbatim, once checked to be JSON objects, so that field
/// order and number precision survive exactly as the source gave them.
fn build_request(config: &Config, batch: &[SourceRecord]) -> Result<HttpRequest, Failure> {
    let mut array = String::from("[");
    for (i, record) in batch.iter().enumerate() {
        // `precheck` checked every payload; this guard keeps the body an array of objects
        // even if a host skipped it.
        if !record.payload.trim_start().starts_with('{') {
            return Err(failure(
                "INVALID_JSON",
                format!("record {:?}: payload is not a JSON object", record.key),
                vec![],
            ));
        }
        if i > 0 {
            array.push(',');
        }
        array.push_str(record.payload.trim());
    }
    array.push(']');
    let body = match &config.records_field {
        None => array,
        Some(field) => format!("{{{}:{array}}}", Value::String(field.clone())),
    };
    Ok(HttpRequest {
        method: config.method.clone(),
        url: config.path.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
    })
}

/// Reads a response into a verdict; never traps, whatever the body.
fn classify(config: &Config, count: usize, response: &HttpResponse) -> Verdict {
    let status = response.status;
    let body = &response.body;
    match status {
        200..=299 => match &config.results_pointer {
            None => {
                Verdict::PerRecord((0..count).map(|_| RecordOutcome::Delivered(None)).collect())
            }
            Some(pointer) => per_record(config, pointer, count, body).unwrap_or_else(|message| {
                Verdict::Transient(failure("MALFORMED_RESPONSE", message, vec![]))
            }),
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
            record_outcome(config, item)
                .ok_or_else(|| format!("result {i} at {pointer} is not an object"))
        })
        .collect::<Result<_, _>>()
        .map(Verdict::PerRecord)
}

/// One result item: delivered when its `error` is absent, null or false; otherwise the
/// error's code picks rejected, permanent or retry. `None` when the item is not an object.
fn record_outcome(config: &Config, item: &Value) -> Option<RecordOutcome> {
    let item = item.as_object()?;
    let f = match item.get("error") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {
            let id = config
                .id_field
                .as_ref()
                .and_then(|field| match item.get(field)? {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
            return Some(RecordOutcome::Delivered(id));
        }
        Some(Value::String(s)) => failure(s.clone(), s.clone(), vec![]),
        Some(e @ Value::Object(_)) => error_object(e)
            .unwrap_or_else(|| failure("UNKNOWN_ERROR", format!("error: {e}"), vec![])),
        Some(other) => failure("UNKNOWN_ERROR", format!("error: {other}"), vec![]),
    };
    Some(if config.permanent_codes.contains(&f.code) {
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

    fn settings(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(kv: &[(&str, &str)]) -> Config {
        let mut all = settings(&[("path", "/v1/contacts")]);
        all.extend(settings(kv));
        parse_config(all).unwrap()
    }

    fn response(status: u16, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            headers: settings(headers),
            body: body.as_bytes().to_vec(),
            received_at_ms: 0,
        }
    }

    fn record(key: &str, payload: &str) -> SourceRecord {
        SourceRecord {
            key: key.into(),
            payload: payload.into(),
        }
    }

    #[test]
    fn configure_checks_settings() {
        let c = config(&[]);
        assert_eq!(
            (
                c.method.as_str(),
                c.limits.max_batch_records,
                c.limits.max_batch_bytes
            ),
            ("POST", 1000, 10_000_000)
        );
        for bad in [
            &[("path", "/x"), ("pth", "/y")][..],
            &[("path", "x")],
            &[("path", "/x"), ("method", "GET")],
            &[("path", "/x"), ("max_batch_records", "0")],
            &[("path", "/x"), ("max_batch_records", "100001")],
            &[("path", "/x"), ("results_pointer", "results")],
            &[("path", "/x"), ("id_field", "id")],
            &[
                ("path", "/x"),
                ("results_pointer", "/r"),
                ("permanent_codes", "A"),
                ("retry_codes", "B, A"),
            ],
        ] {
            assert_eq!(
                parse_config(settings(bad)).unwrap_err().code,
                "INVALID_SETTING",
                "{bad:?}"
            );
        }
        assert_eq!(parse_config(vec![]).unwrap_err().code, "MISSING_SETTING");
        let c = config(&[
            ("method", "patch"),
            ("results_pointer", "/r"),
            ("retry_codes", " LOCKED , BUSY,"),
        ]);
        assert_eq!(
            (c.method.as_str(), c.retry_codes),
            ("PATCH", vec!["LOCKED".to_string(), "BUSY".into()])
        );
    }

    #[test]
    fn request_bodies() {
        let batch = [
            record("a", r#" {"b":1,"a":12345678901234567890123} "#),
            record("b", "{}"),
        ];
        let req = build_request(&config(&[]), &batch).unwrap();
        assert_eq!(
            (req.method.as_str(), req.url.as_str()),
            ("POST", "/v1/contacts")
        );
        assert_eq!(req.body, br#"[{"b":1,"a":12345678901234567890123},{}]"#);
        let req = build_request(&config(&[("records_field", "items")]), &batch[1..]).unwrap();
        assert_eq!(req.body, br#"{"items":[{}]}"#);
        let err = build_request(&config(&[]), &[record("x", "[1]")]).unwrap_err();
        assert!(err.code == "INVALID_JSON" && err.message.contains("\"x\""));
    }

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
        let Verdict::PerRecord(o) = classify(&c, 6, &response(207, body, &[])) else {
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
        let Verdict::PerRecord(o) = classify(&config(&[]), 2, &response(204, "", &[])) else {
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
            let v = classify(&c, 1, &response(200, body, &[]));
            assert!(
                matches!(&v, Verdict::Transient(f) if f.code == "MALFORMED_RESPONSE"),
                "{body}"
            );
        }
    }

    #[test]
    fn statuses() {
        let c = config(&[]);
        let v = |status, body| classify(&c, 1, &response(status, body, &[("retry-after", "3")]));
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
}
