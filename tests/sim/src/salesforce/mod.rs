//! A Salesforce-like destination: sObject Collections.
//!
//! - upsert: `PATCH /services/data/{version}/composite/sobjects/{object}/{externalIdField}`
//!   with `{"allOrNone": false, "records": [{"attributes": {"type": "Account"}, ...}]}`;
//! - insert: `POST /services/data/{version}/composite/sobjects`, the same body;
//! - update: `PATCH /services/data/{version}/composite/sobjects`, each record with its `Id`;
//! - delete: `DELETE /services/data/{version}/composite/sobjects?ids=...&allOrNone=false`.
//!
//! Each answers 200 with one result per record, by position, as Salesforce does: a partly
//! failed batch is still a 200, and the client must read every result. A record's key is its
//! external id value, as a string (on an insert, the value of
//! [`SalesforceOptions::external_id_field`]). Upserts and updates merge a record into what
//! is stored (fields a record leaves out keep their stored values), as Salesforce does. The
//! id of a record ([`record_id`]) is stable for its object and key, and is what updates and
//! deletes name.
//!
//! One simulator stores one namespace of keys: give each object its own simulator.

mod collection;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::any;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::AuthConfig;
use crate::common::{self, burst_response, json_response};
use crate::faults::{Faults, LimitStyle, StableHash};
use crate::handle::SimHandle;
use crate::outcome;
use crate::state::{Refusal, Shared};
use crate::upsert::{self, Candidate, Mode, Outcome};
use crate::validation::{RecordError, Rules, key_of};

/// The most records one request may carry, as in Salesforce.
pub const MAX_RECORDS: usize = 200;

/// How to run a Salesforce-like simulator.
#[derive(Debug, Clone, Default)]
pub struct SalesforceConfig {
    pub faults: Faults,
    pub rules: Rules,
    /// Credentials data requests need; `None` accepts any request.
    pub auth: Option<AuthConfig>,
    /// The loopback port to listen on; 0 picks a free one.
    pub port: u16,
}

/// The external id field an insert's records are keyed by, unless told otherwise.
pub const DEFAULT_EXTERNAL_ID_FIELD: &str = "External_Id__c";

/// What a Salesforce-like simulator needs beyond [`SalesforceConfig`] (kept apart so that
/// code naming every field of the config keeps building).
#[derive(Debug, Clone)]
pub struct SalesforceOptions {
    /// The field that holds an inserted record's key; an upsert names its own in the URL.
    pub external_id_field: String,
}

impl Default for SalesforceOptions {
    fn default() -> Self {
        SalesforceOptions {
            external_id_field: DEFAULT_EXTERNAL_ID_FIELD.to_owned(),
        }
    }
}

/// Starts a simulator on the current Tokio runtime, with the default options. It serves
/// the upsert endpoint, the collection endpoint (insert, update and delete),
/// `POST /oauth2/token` (and `/services/oauth2/token`) when OAuth is configured, and 404s
/// for anything else.
pub async fn start(config: SalesforceConfig) -> anyhow::Result<SimHandle> {
    start_with(config, SalesforceOptions::default()).await
}

/// Starts a simulator as [`start`] does, with `options`.
pub async fn start_with(
    config: SalesforceConfig,
    options: SalesforceOptions,
) -> anyhow::Result<SimHandle> {
    let shared = Arc::new(Shared::new(config.faults, config.rules, config.auth, true)?);
    let upserts = Router::new()
        .route(
            "/services/data/{version}/composite/sobjects/{object}/{id_field}",
            any(upsert_records),
        )
        .with_state(Arc::clone(&shared));
    let collection = Arc::new(collection::Collection {
        shared: Arc::clone(&shared),
        external_id_field: options.external_id_field,
    });
    let others = Router::new()
        .route(
            "/services/data/{version}/composite/sobjects",
            any(collection::records),
        )
        .with_state(collection);
    let router = upserts.merge(others);
    let token_paths = ["/oauth2/token", "/services/oauth2/token"];
    common::serve(config.port, shared, router, &token_paths).await
}

/// The body of an upsert, an insert or an update.
#[derive(Deserialize)]
struct UpsertBody {
    #[serde(rename = "allOrNone", default)]
    all_or_none: bool,
    records: Vec<Map<String, Value>>,
}

async fn upsert_records(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let received = match common::receive(&shared, request, &["PATCH"]).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    let seq = received.arrival.seq;
    shared.lock().count_operation("upsert");
    let Ok(Path((_version, object, id_field))) = path else {
        shared.finish(seq, 400, outcome::BAD_REQUEST, Vec::new(), 0);
        return error_response(400, "MALFORMED_URL", "the URL could not be decoded");
    };
    let parsed: Result<UpsertBody, _> = serde_json::from_slice(&received.body);
    let (keys, count) = match &parsed {
        Ok(body) => {
            let keys = body
                .records
                .iter()
                .map(|r| r.get(&id_field).and_then(key_of).unwrap_or_default());
            (keys.collect(), body.records.len())
        }
        Err(_) => (Vec::new(), 0),
    };

    let refuse = |refusal: &Refusal| refusal_response(refusal, seq);
    if let Err(response) = common::admit(&shared, &received, &keys, count, refuse).await {
        return response;
    }

    let body = match parsed {
        Ok(body) => body,
        Err(error) => {
            shared.finish(seq, 400, outcome::BAD_REQUEST, keys, count);
            return error_response(400, "JSON_PARSER_ERROR", &error.to_string());
        }
    };
    if body.records.len() > MAX_RECORDS {
        shared.finish(seq, 400, outcome::BATCH_REJECTED, keys, count);
        let message = format!(
            "record limit reached. cannot submit more than {MAX_RECORDS} records into this call"
        );
        return error_response(400, "EXCEEDED_ID_LIMIT", &message);
    }

    let candidates = body
        .records
        .into_iter()
        .map(|mut fields| {
            fields.remove("attributes");
            Candidate {
                key: fields.get(&id_field).and_then(key_of),
                fields,
                text: None,
            }
        })
        .collect();
    let mode = Mode {
        key_field: &id_field,
        merge: true,
        all_or_none: body.all_or_none,
        create_only: false,
    };
    let outcomes = upsert::upsert(&shared, candidates, mode);
    let all_stored = outcomes.iter().all(|o| matches!(o, Outcome::Stored { .. }));
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Stored { key, created } => {
                let id = give_id(&shared, &object, &key);
                json!({"id": id, "success": true, "errors": [], "created": created})
            }
            Outcome::Failed(e) => failed(Value::Null, &e),
        })
        .collect();
    common::answered(&shared, seq, 200, all_stored, keys, count, results)
}

/// The id of a stored record, noted so that updates and deletes can name it.
fn give_id(shared: &Shared, object: &str, key: &str) -> String {
    let id = record_id(object, key);
    shared.lock().store.set_id(key, &id);
    id
}

/// A failed record's result.
fn failed(id: Value, e: &RecordError) -> Value {
    json!({
        "id": id,
        "success": false,
        "errors": [{"statusCode": e.code, "message": e.message, "fields": e.fields}],
    })
}

/// A Salesforce error response: a list of one error.
fn error_response(status: u16, code: &str, message: &str) -> Response {
    json_response(status, &json!([{"message": message, "errorCode": code}]))
}

fn refusal_response(refusal: &Refusal, seq: u64) -> Response {
    match refusal {
        Refusal::Unauthorized(_) => {
            error_response(401, "INVALID_SESSION_ID", "Session expired or invalid")
        }
        Refusal::RateLimited { style, retry_after } => {
            let (code, message) = match style {
                LimitStyle::ServiceUnavailable => (
                    "SERVER_UNAVAILABLE",
                    "Server temporarily unavailable; retry later",
                ),
                _ => ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
            };
            common::rate_limited(*style, retry_after.as_deref(), |status| {
                error_response(status, code, message)
            })
        }
        Refusal::ServerError { status } => {
            let message = format!(
                "An unexpected error occurred. Please include this ErrorId if you contact support: {seq}-sim"
            );
            burst_response(
                *status,
                json!([{"message": message, "errorCode": "UNKNOWN_EXCEPTION"}]),
            )
        }
    }
}

/// An 18-character Salesforce-style id, stable for an object and key: the object's key
/// prefix, then 15 base-62 characters from a hash.
pub fn record_id(object: &str, key: &str) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let prefix = match object {
        "Account" => "001",
        "Contact" => "003",
        "Opportunity" => "006",
        "Lead" => "00Q",
        "Case" => "500",
        _ => "a00",
    };
    let mut hash = StableHash::new(0);
    hash.bytes(object.as_bytes());
    hash.bytes(key.as_bytes());
    let mut high = hash.finish();
    hash.u64(1);
    let mut low = hash.finish();
    let mut id = String::with_capacity(18);
    id.push_str(prefix);
    for i in 0..15 {
        let part = if i < 8 { &mut high } else { &mut low };
        id.push(char::from(ALPHABET[(*part % 62) as usize]));
        *part /= 62;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = record_id("Account", "ext-1");
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("001"));
        assert_eq!(a, record_id("Account", "ext-1"));
        assert_ne!(a, record_id("Account", "ext-2"));
        assert!(record_id("Contact", "ext-1").starts_with("003"));
    }
}
