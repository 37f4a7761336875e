//! Salesforce destination: upserts records through the sObject Collections API
//! (`PATCH /services/data/vNN.N/composite/sobjects/{object}/{external_id_field}`), matching
//! records on an external id field, with `allOrNone: false` so that each record succeeds
//! or fails on its own.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "destination-connector" });

use exports::sluice::connector::destination::Guest;
use serde_json::{Map, Value};
use sluice::connector::types::{
    Failure, HttpRequest, HttpResponse, Limits, PrecheckOutcome, RecordOutcome, SourceRecord,
    Verdict, Wait,
};

const KNOWN_SETTINGS: &[&str] = &["object", "external_id_field", "parent_field", "api_version"];
const DEFAULT_API_VERSION: &str = "v60.0";

/// Limits of the sObject Collections API: 200 records a request, and a request body well
/// under Salesforce's size limit.
const LIMITS: Limits = Limits {
    max_batch_records: 200,
    max_batch_bytes: 6_000_000,
};

#[derive(Debug, Clone)]
struct Config {
    object: String,
    external_id_field: String,
    parent_field: Option<String>,
    api_version: String,
}

static CONFIG: common::Slot<Config> = common::Slot::new();

struct Salesforce;

impl Guest for Salesforce {
    fn configure(settings: Vec<(String, String)>) -> Result<Limits, Failure> {
        CONFIG.set(parse_config(settings)?);
        Ok(LIMITS)
    }

    fn precheck(batch: Vec<SourceRecord>) -> Vec<Option<PrecheckOutcome>> {
        match CONFIG.get() {
            Some(config) => batch
                .iter()
                .map(|r| precheck_one(&config, &r.payload))
                .collect(),
            // Not configured: let build-request say so.
            None => batch.iter().map(|_| None).collect(),
        }
    }

    fn build_request(batch: Vec<SourceRecord>) -> Result<HttpRequest, Failure> {
        build_request(&CONFIG.get().ok_or_else(not_configured)?, &batch)
    }

    fn classify(keys: Vec<String>, response: HttpResponse) -> Verdict {
        classify(keys.len(), &response)
    }
}

export!(Salesforce);

fn failure(code: impl Into<String>, message: impl Into<String>, fields: Vec<String>) -> Failure {
    Failure {
        code: code.into(),
        message: message.into(),
        fields,
    }
}

fn not_configured() -> Failure {
    failure(
        "NOT_CONFIGURED",
        "configure has not succeeded on this instance",
        vec![],
    )
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
    let s = common::Settings::parse(settings, KNOWN_SETTINGS)?;
    let name = |key: &str, value: String| -> Result<String, Failure> {
        // API names go into the URL path: letters, digits and underscores only.
        if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Ok(value)
        } else {
            Err(common::SettingError::invalid(
                key,
                format!("{value:?} is not a Salesforce API name"),
            )
            .into())
        }
    };
    let api_version = s
        .optional("api_version")
        .unwrap_or_else(|| DEFAULT_API_VERSION.into());
    if !is_api_version(&api_version) {
        return Err(common::SettingError::invalid(
            "api_version",
            format!("expected a version like {DEFAULT_API_VERSION}, got {api_version:?}"),
        )
        .into());
    }
    Ok(Config {
        object: name("object", s.required("object")?)?,
        external_id_field: name("external_id_field", s.required("external_id_field")?)?,
        parent_field: s.optional("parent_field"),
        api_version,
    })
}

/// `vNN.N`: a `v`, digits, a dot, digits.
fn is_api_version(v: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    v.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}

/// A payload as a JSON object, or the failure that says why it is not one.
fn parse_object(payload: &str) -> Result<Map<String, Value>, Failure> {
    match serde_json::from_str::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(failure(
            "INVALID_JSON",
            "payload is not a JSON object",
            vec![],
        )),
        Err(e) => Err(failure(
            "INVALID_JSON",
            format!("payload is not valid JSON: {e}"),
            vec![],
        )),
    }
}

/// Settles what needs no round trip: unparseable payloads, and children whose parent has
/// not been given a CRM id yet (they would fail until the parent is synced).
fn precheck_one(config: &Config, payload: &str) -> Option<PrecheckOutcome> {
    let record = match parse_object(payload) {
        Ok(record) => record,
        Err(f) => return Some(PrecheckOutcome::Rejected(f)),
    };
    let parent = config.parent_field.as_ref()?;
    let has_id = match record.get(parent) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    };
    (!has_id).then(|| {
        PrecheckOutcome::Permanent(failure(
            "DACO-02",
            format!("parent record has no CRM id (field {parent} is empty)"),
            vec![parent.clone()],
        ))
    })
}

fn build_request(config: &Config, batch: &[SourceRecord]) -> Result<HttpRequest, Failure> {
    let mut records = Vec::with_capacity(batch.len());
    for record in batch {
        let mut fields = parse_object(&record.payload).map_err(|f| {
            failure(
                f.code,
                format!("record {:?}: {}", record.key, f.message),
                f.fields,
            )
        })?;
        fields.insert(
            "attributes".into(),
            serde_json::json!({ "type": config.object }),
        );
        // The external id is the upsert's match key: fall back on the record's own key.
        let id = fields
            .entry(config.external_id_field.clone())
            .or_insert(Value::Null);
        if id.is_null() {
            *id = Value::String(record.key.clone());
        }
        records.push(Value::Object(fields));
    }
    let body = serde_json::json!({ "allOrNone": false, "records": records });
    Ok(HttpRequest {
        method: "PATCH".into(),
        url: format!(
            "/services/data/{}/composite/sobjects/{}/{}",
            config.api_version, config.object, config.external_id_field
        ),
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&body).map_err(|e| {
            failure(
                "INVALID_JSON",
                format!("cannot encode the request: {e}"),
                vec![],
            )
        })?,
    })
}

/// Reads a response into a verdict; never traps, whatever the body.
fn classify(count: usize, response: &HttpResponse) -> Verdict {
    let status = response.status;
    let rate_limited =
        || Verdict::RateLimited(common::retry_after(&response.headers).map(Wait::from));
    match status {
        200 | 201 => per_record(count, &response.body).unwrap_or_else(|message| {
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
fn per_record(count: usize, body: &[u8]) -> Result<Verdict, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("response body is not JSON: {e}"))?;
    let results = value
        .as_array()
        .ok_or("response body is not a JSON array")?;
    if results.len() != count {
        return Err(format!("expected {count} results, got {}", results.len()));
    }
    results
        .iter()
        .enumerate()
        .map(|(i, result)| {
            record_outcome(result).ok_or_else(|| format!("result {i} has no boolean `success`"))
        })
        .collect::<Result<_, _>>()
        .map(Verdict::PerRecord)
}

/// One save result. `None` when it is not a result at all.
fn record_outcome(result: &Value) -> Option<RecordOutcome> {
    if result.get("success")?.as_bool()? {
        let id = result.get("id").and_then(Value::as_str).map(str::to_owned);
        return Some(RecordOutcome::Delivered(id));
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

    fn config(parent: Option<&str>) -> Config {
        Config {
            object: "Contact".into(),
            external_id_field: "External_Id__c".into(),
            parent_field: parent.map(Into::into),
            api_version: "v60.0".into(),
        }
    }

    fn response(status: u16, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            received_at_ms: 0,
        }
    }

    fn settings(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn configure_checks_settings() {
        let ok = parse_config(settings(&[
            ("object", "Account"),
            ("external_id_field", "Ext__c"),
        ]))
        .unwrap();
        assert_eq!(ok.api_version, "v60.0");
        let e = parse_config(settings(&[("object", "Account"), ("extid", "x")])).unwrap_err();
        assert_eq!(e.code, "INVALID_SETTING");
        assert!(e.message.contains("extid") && e.message.contains("external_id_field"));
        let e = parse_config(settings(&[("object", "Account")])).unwrap_err();
        assert!(e.message.contains("external_id_field"));
        let bad = [
            ("object", "A"),
            ("external_id_field", "E"),
            ("api_version", "60"),
        ];
        assert_eq!(
            parse_config(settings(&bad)).unwrap_err().code,
            "INVALID_SETTING"
        );
        assert!(
            parse_config(settings(&[
                ("object", "A/../x"),
                ("external_id_field", "E")
            ]))
            .is_err()
        );
    }

    #[test]
    fn precheck_parent_and_json() {
        let c = config(Some("ParentCrmId"));
        assert!(precheck_one(&c, r#"{"ParentCrmId":"001"}"#).is_none());
        for p in [
            r#"{}"#,
            r#"{"ParentCrmId":null}"#,
            r#"{"ParentCrmId":"  "}"#,
        ] {
            let Some(PrecheckOutcome::Permanent(f)) = precheck_one(&c, p) else {
                panic!("{p}")
            };
            assert_eq!(
                (f.code.as_str(), f.fields),
                ("DACO-02", vec!["ParentCrmId".to_string()])
            );
        }
        assert!(
            matches!(precheck_one(&c, "[1]"), Some(PrecheckOutcome::Rejected(f)) if f.code == "INVALID_JSON")
        );
        assert!(
            matches!(precheck_one(&c, "{"), Some(PrecheckOutcome::Rejected(f)) if f.code == "INVALID_JSON")
        );
    }

    #[test]
    fn request_shape() {
        let batch = vec![
            SourceRecord {
                key: "k1".into(),
                payload: r#"{"Email":"a@b.c"}"#.into(),
            },
            SourceRecord {
                key: "k2".into(),
                payload: r#"{"External_Id__c":"own","N":1.5}"#.into(),
            },
        ];
        let req = build_request(&config(None), &batch).unwrap();
        assert_eq!(req.method, "PATCH");
        assert_eq!(
            req.url,
            "/services/data/v60.0/composite/sobjects/Contact/External_Id__c"
        );
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Contact"}, "Email": "a@b.c", "External_Id__c": "k1"},
                {"attributes": {"type": "Contact"}, "External_Id__c": "own", "N": 1.5},
            ]})
        );
        let bad = vec![SourceRecord {
            key: "k".into(),
            payload: "nope".into(),
        }];
        assert_eq!(
            build_request(&config(None), &bad).unwrap_err().code,
            "INVALID_JSON"
        );
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
        let Verdict::PerRecord(o) = classify(5, &response(200, body, &[])) else {
            panic!()
        };
        assert!(matches!(&o[0], RecordOutcome::Delivered(Some(id)) if id == "001A"));
        assert!(matches!(&o[1], RecordOutcome::Retry(f) if f.code == "UNABLE_TO_LOCK_ROW"));
        assert!(matches!(&o[2], RecordOutcome::Permanent(f) if f.fields == ["AccountId"]));
        assert!(matches!(&o[3], RecordOutcome::Rejected(f) if f.code == "INVALID_EMAIL_ADDRESS"));
        assert!(matches!(&o[4], RecordOutcome::Rejected(f) if f.code == "UNKNOWN_ERROR"));
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
            let v = classify(1, &response(200, body, &[]));
            assert!(
                matches!(&v, Verdict::Transient(f) if f.code == "MALFORMED_RESPONSE"),
                "{body:.20}"
            );
        }
        let Verdict::Transient(f) = classify(3, &response(201, "[]", &[])) else {
            panic!()
        };
        assert_eq!(f.message, "expected 3 results, got 0");
    }

    #[test]
    fn statuses() {
        let err = |code: &str| format!(r#"[{{"message":"m","errorCode":"{code}"}}]"#);
        let v = classify(1, &response(401, &err("INVALID_SESSION_ID"), &[]));
        assert!(matches!(v, Verdict::AuthExpired(f) if f.code == "INVALID_SESSION_ID"));
        let v = classify(
            1,
            &response(403, &err("REQUEST_LIMIT_EXCEEDED"), &[("retry-after", "7")]),
        );
        assert!(matches!(v, Verdict::RateLimited(Some(Wait::AfterMs(7000)))));
        let v = classify(1, &response(403, &err("INSUFFICIENT_ACCESS"), &[]));
        assert!(matches!(v, Verdict::Fatal(f) if f.code == "INSUFFICIENT_ACCESS"));
        let v = classify(
            1,
            &response(429, "", &[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")]),
        );
        assert!(matches!(
            v,
            Verdict::RateLimited(Some(Wait::UntilUnixMs(1_792_567_680_000)))
        ));
        assert!(matches!(
            classify(1, &response(429, "", &[])),
            Verdict::RateLimited(None)
        ));
        let v = classify(1, &response(503, "<html>down</html>", &[]));
        assert!(
            matches!(v, Verdict::Transient(f) if f.code == "HTTP_503" && f.message.contains("down"))
        );
        let v = classify(1, &response(400, &err("JSON_PARSER_ERROR"), &[]));
        assert!(matches!(v, Verdict::BatchRejected(f) if f.code == "JSON_PARSER_ERROR"));
        assert!(
            matches!(classify(1, &response(400, "", &[])), Verdict::BatchRejected(f) if f.code == "HTTP_400")
        );
        assert!(
            matches!(classify(1, &response(404, &err("NOT_FOUND"), &[])), Verdict::Fatal(f) if f.code == "NOT_FOUND")
        );
        assert!(
            matches!(classify(1, &response(302, "", &[])), Verdict::Fatal(f) if f.code == "HTTP_302")
        );
    }
}
