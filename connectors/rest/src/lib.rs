//! Generic JSON REST destination: sends a batch as one JSON request (a bare array of the
//! payloads, or an object holding that array) and reads either "any 2xx delivers the batch"
//! or a per-record results array found by a JSON pointer.
//!
//! Upserts always; deletes when `delete_path` is set. Settings:
//!
//! - `path` (required), `method` (`POST`, `PUT`, `PATCH`; default `POST`): where upserts go.
//! - `records_field`: the body is `{"<records_field>": [...]}` instead of a bare array.
//! - `results_pointer`, `id_field`, `permanent_codes`, `retry_codes`: per-record results.
//! - `max_batch_records`, `max_batch_bytes`: the batch limits.
//! - `delete_path`, `delete_method` (`POST`, `PUT`, `PATCH`, `DELETE`; default `POST`):
//!   where deletes go. The body is an array of the records' identities as JSON strings
//!   (the destination id when the host has one, else the key), in the same envelope as
//!   upserts; its answer is read like an upsert's, except that a per-record `NOT_FOUND`
//!   counts as deleted.
//! - `idempotency_header` (e.g. `Idempotency-Key`): every request carries the host's
//!   idempotency key for its batch in this header, so that an API that deduplicates
//!   requests does not apply a resent batch twice.
//!
//! Inserts and updates are not supported: a generic endpoint has no way to say "create
//! only" or "change only" that this connector could rely on.

wit_bindgen::generate!({ path: "../../wit/0.2.0", world: "destination-connector" });

mod classify;
mod config;

use config::{Config, operations, parse_config};
use exports::sluice::connector::destination::Guest;
use serde_json::Value;
use sluice::connector::types::{
    Capabilities, Failure, HttpRequest, HttpResponse, Operation, PrecheckOutcome, SourceRecord,
    Verdict, Wait,
};

static CONFIG: common::Slot<Config> = common::Slot::new();

struct Rest;

impl Guest for Rest {
    fn configure(settings: Vec<(String, String)>) -> Result<Capabilities, Failure> {
        let config = parse_config(settings)?;
        let capabilities = Capabilities {
            limits: config.limits,
            operations: operations(&config),
            update_by_key: false,
        };
        CONFIG.set(config);
        Ok(capabilities)
    }

    fn precheck(batch: Vec<SourceRecord>) -> Vec<Option<PrecheckOutcome>> {
        batch
            .iter()
            .map(|r| match r.operation {
                // A delete sends no payload: its `{}` needs no check.
                Operation::Delete => None,
                _ => check_object(&r.payload)
                    .err()
                    .map(PrecheckOutcome::Rejected),
            })
            .collect()
    }

    fn build_request(
        batch: Vec<SourceRecord>,
        idempotency_key: String,
    ) -> Result<HttpRequest, Failure> {
        build_request(
            &CONFIG.get().ok_or_else(not_configured)?,
            &batch,
            &idempotency_key,
        )
    }

    fn classify(keys: Vec<String>, operation: Operation, response: HttpResponse) -> Verdict {
        match CONFIG.get() {
            Some(config) => classify::classify(&config, keys.len(), operation, &response),
            None => Verdict::Fatal(not_configured()),
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

fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Upsert => "upsert",
        Operation::Update => "update",
        Operation::Insert => "insert",
        Operation::Delete => "delete",
    }
}

/// Accepts a payload that is a JSON object; the failure says what it is instead.
fn check_object(payload: &str) -> Result<(), Failure> {
    // The host hands over each payload as exactly one JSON object (it parsed it to find
    // the key; docs/connectors.md), so a full parse here would only repeat its work.
    // This guard keeps the body an array of objects should another host send less.
    if payload.trim_start().starts_with('{') && payload.trim_end().ends_with('}') {
        Ok(())
    } else {
        Err(failure(
            "INVALID_JSON",
            "payload is not a JSON object",
            vec![],
        ))
    }
}

/// One request for the batch's one operation, with the idempotency header when set.
fn build_request(
    config: &Config,
    batch: &[SourceRecord],
    idempotency_key: &str,
) -> Result<HttpRequest, Failure> {
    let operation = match common::one_kind(batch.iter().map(|r| r.operation)) {
        Ok(operation) => operation.unwrap_or(Operation::Upsert),
        Err((a, b)) => {
            let message = format!(
                "a batch mixes {} and {}; the host sends one operation per batch",
                operation_name(a),
                operation_name(b)
            );
            return Err(failure("MIXED_OPERATIONS", message, vec![]));
        }
    };
    let (method, url, array) = match (operation, &config.delete_path) {
        (Operation::Upsert, _) => (&config.method, &config.path, payloads(batch)?),
        (Operation::Delete, Some(path)) => (&config.delete_method, path, identities(batch)),
        (other, _) => {
            let supported = if config.delete_path.is_some() {
                "upsert and delete"
            } else {
                "upsert (and delete, with delete_path)"
            };
            let message = format!(
                "this connector does not {} records: it supports {supported}; the host should not have sent one",
                operation_name(other)
            );
            return Err(failure("UNSUPPORTED_OPERATION", message, vec![]));
        }
    };
    let body = match &config.records_field {
        None => array,
        Some(field) => format!("{{{}:{array}}}", Value::String(field.clone())),
    };
    let mut headers = vec![("content-type".into(), "application/json".into())];
    if let Some(name) = &config.idempotency_header {
        headers.push((name.clone(), idempotency_key.into()));
    }
    Ok(HttpRequest {
        method: method.clone(),
        url: url.clone(),
        headers,
        body: body.into_bytes(),
    })
}

/// The payloads as a JSON array, verbatim once checked to be JSON objects, so that field
/// order and number precision survive exactly as the source gave them.
fn payloads(batch: &[SourceRecord]) -> Result<String, Failure> {
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
    Ok(array)
}

/// What a delete names, as a JSON array of strings: each record's destination id when the
/// host has one (what the destination knows it by), else its key.
fn identities(batch: &[SourceRecord]) -> String {
    let ids = batch.iter().map(|r| {
        let id = r
            .destination_id
            .as_deref()
            .filter(|id| !id.trim().is_empty());
        Value::String(id.unwrap_or(&r.key).to_owned())
    });
    Value::Array(ids.collect()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn settings(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(crate) fn config(kv: &[(&str, &str)]) -> Config {
        let mut all = settings(&[("path", "/v1/contacts")]);
        all.extend(settings(kv));
        parse_config(all).unwrap()
    }

    pub(crate) fn response(status: u16, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            headers: settings(headers),
            body: body.as_bytes().to_vec(),
            truncated: false,
            received_at_ms: 0,
        }
    }

    fn record(key: &str, payload: &str) -> SourceRecord {
        SourceRecord {
            key: key.into(),
            payload: payload.into(),
            operation: Operation::Upsert,
            destination_id: None,
        }
    }

    fn delete(key: &str, id: Option<&str>) -> SourceRecord {
        SourceRecord {
            operation: Operation::Delete,
            destination_id: id.map(Into::into),
            ..record(key, "{}")
        }
    }

    #[test]
    fn request_bodies() {
        let batch = [
            record("a", r#" {"b":1,"a":12345678901234567890123} "#),
            record("b", "{}"),
        ];
        let req = build_request(&config(&[]), &batch, "k").unwrap();
        assert_eq!(
            (req.method.as_str(), req.url.as_str()),
            ("POST", "/v1/contacts")
        );
        assert_eq!(req.body, br#"[{"b":1,"a":12345678901234567890123},{}]"#);
        let req = build_request(&config(&[("records_field", "items")]), &batch[1..], "k").unwrap();
        assert_eq!(req.body, br#"{"items":[{}]}"#);
        let err = build_request(&config(&[]), &[record("x", "[1]")], "k").unwrap_err();
        assert!(err.code == "INVALID_JSON" && err.message.contains("\"x\""));
    }

    #[test]
    fn delete_bodies_name_ids_or_keys() {
        let c = config(&[("delete_path", "/v1/contacts/delete")]);
        let batch = [
            delete("k1", Some("id-1")),
            delete("k\"2", None),
            delete("k3", Some(" ")),
        ];
        let req = build_request(&c, &batch, "key").unwrap();
        assert_eq!(
            (req.method.as_str(), req.url.as_str()),
            ("POST", "/v1/contacts/delete")
        );
        assert_eq!(req.body, br#"["id-1","k\"2","k3"]"#);
        let c = config(&[
            ("delete_path", "/v1/contacts"),
            ("delete_method", "DELETE"),
            ("records_field", "ids"),
        ]);
        let req = build_request(&c, &batch[..1], "key").unwrap();
        assert_eq!(req.method, "DELETE");
        assert_eq!(req.body, br#"{"ids":["id-1"]}"#);
        // A delete's payload is never checked.
        let odd = SourceRecord {
            payload: "not json".into(),
            ..delete("k", None)
        };
        assert_eq!(
            Rest::precheck(vec![odd.clone(), record("x", "[1]")]).len(),
            2
        );
        assert!(Rest::precheck(vec![odd]).iter().all(Option::is_none));
    }

    #[test]
    fn unsupported_operations_and_mixed_batches_fail() {
        let insert = SourceRecord {
            operation: Operation::Insert,
            ..record("k", "{}")
        };
        let e = build_request(&config(&[]), &[insert], "key").unwrap_err();
        assert!(
            e.code == "UNSUPPORTED_OPERATION" && e.message.contains("insert"),
            "{e:?}"
        );
        let e = build_request(&config(&[]), &[delete("k", None)], "key").unwrap_err();
        assert!(e.code == "UNSUPPORTED_OPERATION" && e.message.contains("delete_path"));
        let c = config(&[("delete_path", "/d")]);
        let e = build_request(&c, &[record("a", "{}"), delete("b", None)], "key").unwrap_err();
        assert_eq!(e.code, "MIXED_OPERATIONS");
    }

    #[test]
    fn the_idempotency_key_goes_in_the_named_header() {
        let req = build_request(&config(&[]), &[record("a", "{}")], "batch-7").unwrap();
        assert_eq!(
            req.headers,
            [("content-type".to_string(), "application/json".to_string())]
        );
        let c = config(&[
            ("idempotency_header", "Idempotency-Key"),
            ("delete_path", "/d"),
        ]);
        for batch in [record("a", "{}"), delete("a", None)] {
            let req = build_request(&c, &[batch], "batch-7").unwrap();
            assert!(
                req.headers
                    .contains(&("Idempotency-Key".into(), "batch-7".into()))
            );
        }
    }
}
