//! Salesforce destination, through the sObject Collections API, always with
//! `allOrNone: false` so that each record succeeds or fails on its own:
//!
//! - upsert: `PATCH /services/data/vNN.N/composite/sobjects/{object}/{external_id_field}`,
//!   matching records on the external id field (the record's key when the payload has none);
//! - insert: `POST /services/data/vNN.N/composite/sobjects`, the external id filled the same
//!   way, so that later upserts match the record;
//! - update: `PATCH /services/data/vNN.N/composite/sobjects`, each record addressed by its
//!   `Id`, the destination id the host holds for it;
//! - delete: `DELETE /services/data/vNN.N/composite/sobjects?ids=...&allOrNone=false`, by
//!   the same ids; a record already gone counts as deleted.
//!
//! The API updates and deletes only by id, so `update-by-key` is false and a record without
//! an id is refused in precheck. It honours no idempotency key on these calls, so the
//! host's is not sent.

wit_bindgen::generate!({ path: "../../wit/0.2.0", world: "destination-connector" });

mod classify;

use exports::sluice::connector::destination::Guest;
use serde_json::{Map, Value};
use sluice::connector::types::{
    Capabilities, Failure, HttpRequest, HttpResponse, Limits, Operation, PrecheckOutcome,
    SourceRecord, Verdict, Wait,
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
    fn configure(settings: Vec<(String, String)>) -> Result<Capabilities, Failure> {
        CONFIG.set(parse_config(settings)?);
        Ok(Capabilities {
            limits: LIMITS,
            operations: vec![
                Operation::Upsert,
                Operation::Update,
                Operation::Insert,
                Operation::Delete,
            ],
            update_by_key: false,
        })
    }

    fn precheck(batch: Vec<SourceRecord>) -> Vec<Option<PrecheckOutcome>> {
        match CONFIG.get() {
            Some(config) => batch.iter().map(|r| precheck_one(&config, r)).collect(),
            // Not configured: let build-request say so.
            None => batch.iter().map(|_| None).collect(),
        }
    }

    // Salesforce has no idempotency key for sObject Collections: the key goes unused.
    fn build_request(
        batch: Vec<SourceRecord>,
        _idempotency_key: String,
    ) -> Result<HttpRequest, Failure> {
        build_request(&CONFIG.get().ok_or_else(not_configured)?, &batch)
    }

    fn classify(keys: Vec<String>, operation: Operation, response: HttpResponse) -> Verdict {
        classify::classify(keys.len(), operation, &response)
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

/// The destination id an update or a delete addresses. Salesforce ids are 15 or 18 letters
/// and digits; anything else would not name a record, and must not reach a URL.
fn destination_id(record: &SourceRecord) -> Result<&str, Failure> {
    let id = record.destination_id.as_deref().map(str::trim);
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return Err(failure(
            "MISSING_DESTINATION_ID",
            format!(
                "record {:?}: Salesforce never gave this record an id, and a {} addresses the record by its id",
                record.key,
                operation_name(record.operation)
            ),
            vec![],
        ));
    };
    if id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(failure(
            "INVALID_DESTINATION_ID",
            format!("record {:?}: {id:?} is not a Salesforce id", record.key),
            vec![],
        ))
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

/// Settles what needs no round trip: updates and deletes without an id, unparseable
/// payloads, and children whose parent has not been given a CRM id yet (they would fail
/// until the parent is synced).
fn precheck_one(config: &Config, record: &SourceRecord) -> Option<PrecheckOutcome> {
    if matches!(record.operation, Operation::Update | Operation::Delete)
        && let Err(f) = destination_id(record)
    {
        return Some(PrecheckOutcome::Rejected(f));
    }
    // A delete's payload is `{}`: there are no fields to check.
    if record.operation == Operation::Delete {
        return None;
    }
    let fields = match parse_object(&record.payload) {
        Ok(fields) => fields,
        Err(f) => return Some(PrecheckOutcome::Rejected(f)),
    };
    let parent = config.parent_field.as_ref()?;
    let has_id = match fields.get(parent) {
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

/// The batch's one operation; an empty batch builds an empty upsert.
fn batch_operation(batch: &[SourceRecord]) -> Result<Operation, Failure> {
    match common::one_kind(batch.iter().map(|r| r.operation)) {
        Ok(operation) => Ok(operation.unwrap_or(Operation::Upsert)),
        Err((a, b)) => Err(failure(
            "MIXED_OPERATIONS",
            format!(
                "a batch mixes {} and {}; the host sends one operation per batch",
                operation_name(a),
                operation_name(b)
            ),
            vec![],
        )),
    }
}

fn build_request(config: &Config, batch: &[SourceRecord]) -> Result<HttpRequest, Failure> {
    let operation = batch_operation(batch)?;
    let collection = format!("/services/data/{}/composite/sobjects", config.api_version);
    if operation == Operation::Delete {
        let ids = batch
            .iter()
            .map(destination_id)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(HttpRequest {
            method: "DELETE".into(),
            url: format!("{collection}?ids={}&allOrNone=false", ids.join(",")),
            headers: vec![],
            body: vec![],
        });
    }
    let records = batch
        .iter()
        .map(|record| sobject(config, record))
        .collect::<Result<Vec<_>, _>>()?;
    let (method, url) = match operation {
        Operation::Upsert => (
            "PATCH",
            format!(
                "{collection}/{}/{}",
                config.object, config.external_id_field
            ),
        ),
        Operation::Insert => ("POST", collection),
        _ => ("PATCH", collection),
    };
    let body = serde_json::json!({ "allOrNone": false, "records": records });
    Ok(HttpRequest {
        method: method.into(),
        url,
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

/// One record of an upsert, insert or update: its fields, typed, with its external id (an
/// upsert's match key; on an insert, what later upserts will match) or its `Id` (what an
/// update addresses).
fn sobject(config: &Config, record: &SourceRecord) -> Result<Value, Failure> {
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
    if record.operation == Operation::Update {
        let id = destination_id(record)?;
        fields.insert("Id".into(), Value::String(id.into()));
    } else {
        // No external id in the payload: fall back on the record's own key.
        let id = fields
            .entry(config.external_id_field.clone())
            .or_insert(Value::Null);
        if id.is_null() {
            *id = Value::String(record.key.clone());
        }
    }
    Ok(Value::Object(fields))
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

    fn settings(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn record(key: &str, payload: &str, operation: Operation, id: Option<&str>) -> SourceRecord {
        SourceRecord {
            key: key.into(),
            payload: payload.into(),
            operation,
            destination_id: id.map(Into::into),
        }
    }

    fn upsert(key: &str, payload: &str) -> SourceRecord {
        record(key, payload, Operation::Upsert, None)
    }

    fn json_body(req: &HttpRequest) -> Value {
        serde_json::from_slice(&req.body).unwrap()
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
        let pre = |payload: &str| precheck_one(&c, &upsert("k", payload));
        assert!(pre(r#"{"ParentCrmId":"001"}"#).is_none());
        for p in [
            r#"{}"#,
            r#"{"ParentCrmId":null}"#,
            r#"{"ParentCrmId":"  "}"#,
        ] {
            let Some(PrecheckOutcome::Permanent(f)) = pre(p) else {
                panic!("{p}")
            };
            assert_eq!(
                (f.code.as_str(), f.fields),
                ("DACO-02", vec!["ParentCrmId".to_string()])
            );
        }
        assert!(
            matches!(pre("[1]"), Some(PrecheckOutcome::Rejected(f)) if f.code == "INVALID_JSON")
        );
        assert!(matches!(pre("{"), Some(PrecheckOutcome::Rejected(f)) if f.code == "INVALID_JSON"));
    }

    #[test]
    fn precheck_updates_and_deletes_need_an_id() {
        let c = config(Some("ParentCrmId"));
        let child = r#"{"ParentCrmId":"001"}"#;
        for operation in [Operation::Update, Operation::Delete] {
            for id in [None, Some(" ")] {
                let Some(PrecheckOutcome::Rejected(f)) =
                    precheck_one(&c, &record("k1", child, operation, id))
                else {
                    panic!("{operation:?} {id:?}")
                };
                assert_eq!(f.code, "MISSING_DESTINATION_ID");
                assert!(
                    f.message.contains("never gave this record an id")
                        && f.message.contains("\"k1\"")
                );
            }
            let bad = precheck_one(&c, &record("k", child, operation, Some("001&x=1")));
            assert!(
                matches!(bad, Some(PrecheckOutcome::Rejected(f)) if f.code == "INVALID_DESTINATION_ID")
            );
        }
        assert!(precheck_one(&c, &record("k", child, Operation::Update, Some("001A"))).is_none());
        // A delete's payload is `{}`: no parent to ask for.
        assert!(precheck_one(&c, &record("k", "{}", Operation::Delete, Some("001A"))).is_none());
        let insert = record("k", child, Operation::Insert, None);
        assert!(precheck_one(&c, &insert).is_none());
    }

    #[test]
    fn upsert_request() {
        let batch = vec![
            upsert("k1", r#"{"Email":"a@b.c"}"#),
            upsert("k2", r#"{"External_Id__c":"own","N":1.5}"#),
        ];
        let req = build_request(&config(None), &batch).unwrap();
        assert_eq!(req.method, "PATCH");
        assert_eq!(
            req.url,
            "/services/data/v60.0/composite/sobjects/Contact/External_Id__c"
        );
        assert_eq!(
            json_body(&req),
            serde_json::json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Contact"}, "Email": "a@b.c", "External_Id__c": "k1"},
                {"attributes": {"type": "Contact"}, "External_Id__c": "own", "N": 1.5},
            ]})
        );
        let bad = vec![upsert("k", "nope")];
        assert_eq!(
            build_request(&config(None), &bad).unwrap_err().code,
            "INVALID_JSON"
        );
    }

    #[test]
    fn insert_and_update_requests() {
        let c = config(None);
        let insert = [record(
            "k1",
            r#"{"Email":"a@b.c"}"#,
            Operation::Insert,
            None,
        )];
        let req = build_request(&c, &insert).unwrap();
        assert_eq!(
            (req.method.as_str(), req.url.as_str()),
            ("POST", "/services/data/v60.0/composite/sobjects")
        );
        assert_eq!(
            json_body(&req),
            serde_json::json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Contact"}, "Email": "a@b.c", "External_Id__c": "k1"},
            ]})
        );
        let update = [
            record(
                "k1",
                r#"{"Email":"a@b.c","Id":"x"}"#,
                Operation::Update,
                Some("003A"),
            ),
            record("k2", r#"{"N":2}"#, Operation::Update, Some("003B")),
        ];
        let req = build_request(&c, &update).unwrap();
        assert_eq!(
            (req.method.as_str(), req.url.as_str()),
            ("PATCH", "/services/data/v60.0/composite/sobjects")
        );
        assert_eq!(
            json_body(&req),
            serde_json::json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Contact"}, "Email": "a@b.c", "Id": "003A"},
                {"attributes": {"type": "Contact"}, "N": 2, "Id": "003B"},
            ]})
        );
        let no_id = [record("k1", "{}", Operation::Update, None)];
        assert_eq!(
            build_request(&c, &no_id).unwrap_err().code,
            "MISSING_DESTINATION_ID"
        );
    }

    #[test]
    fn delete_request() {
        let c = config(Some("ParentCrmId"));
        let batch = [
            record("k1", "{}", Operation::Delete, Some("003A")),
            record("k2", "{}", Operation::Delete, Some("003B")),
        ];
        let req = build_request(&c, &batch).unwrap();
        assert_eq!(req.method, "DELETE");
        assert_eq!(
            req.url,
            "/services/data/v60.0/composite/sobjects?ids=003A,003B&allOrNone=false"
        );
        assert!(req.body.is_empty() && req.headers.is_empty());
        let no_id = [record("k1", "{}", Operation::Delete, None)];
        assert_eq!(
            build_request(&c, &no_id).unwrap_err().code,
            "MISSING_DESTINATION_ID"
        );
        let mixed = [batch[0].clone(), upsert("k3", "{}")];
        let e = build_request(&c, &mixed).unwrap_err();
        assert!(e.code == "MIXED_OPERATIONS" && e.message.contains("delete and upsert"));
    }
}
