//! A HubSpot-like CRM: the batch upsert of CRM objects by a unique id property.
//!
//! `POST /crm/v3/objects/{object}/batch/upsert` with
//! `{"inputs": [{"idProperty": "email", "id": "a@example.com", "properties": {...}}]}`
//! answers 200 `{"status": "COMPLETE", "results": [...]}` when every input was written, and
//! 207 with an `errors` list when some were not. As in HubSpot, neither list follows the
//! order of the inputs: results name their record by its id property's value, errors by the
//! ids in their `context` (one error may name several records). A record's key is its `id`;
//! properties are merged into what is stored.
//!
//! Besides the shared faults ([`Faults`]), it knows HubSpot's own refusals:
//!
//! - a property that is not in [`HubSpotConfig::known_properties`] refuses the whole batch
//!   (400 `VALIDATION_ERROR` with `PROPERTY_DOESNT_EXIST`), as HubSpot does;
//! - more inputs than [`HubSpotConfig::max_inputs`] refuse the whole batch (400);
//! - after [`HubSpotConfig::daily_limit`] requests, every request is refused with 429 and
//!   `"policyName": "DAILY"`, with no `Retry-After`;
//! - rate-limit refusals are 429 with `"policyName": "TEN_SECONDLY_ROLLING"` (or 503, in the
//!   `ServiceUnavailable` style), with `Retry-After` as the faults say;
//! - row locks fail single records with category `CONFLICT`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use serde_json::{Map, Value, json};

use crate::auth::AuthConfig;
use crate::common::{self, burst_response, json_response};
use crate::faults::{Faults, StableHash};
use crate::handle::SimHandle;
use crate::outcome;
use crate::state::{Refusal, Shared};
use crate::upsert::{self, Candidate, Mode, Outcome};
use crate::validation::{self, Rules, key_of};

/// How to run a HubSpot-like simulator.
#[derive(Debug, Clone)]
pub struct HubSpotConfig {
    pub faults: Faults,
    /// Checked against each record's properties, with its id property set to its id.
    pub rules: Rules,
    /// Credentials data requests need; `None` accepts any request.
    pub auth: Option<AuthConfig>,
    /// The loopback port to listen on; 0 picks a free one.
    pub port: u16,
    /// The object type served, as in the path; default `contacts`.
    pub object: String,
    /// The properties the object has; `None` accepts any.
    pub known_properties: Option<BTreeSet<String>>,
    /// Most inputs in one request; default 100, as in HubSpot.
    pub max_inputs: usize,
    /// Data requests served before the daily limit refuses every other; `None`: no limit.
    pub daily_limit: Option<u64>,
}

impl Default for HubSpotConfig {
    fn default() -> Self {
        HubSpotConfig {
            faults: Faults::default(),
            rules: Rules::default(),
            auth: None,
            port: 0,
            object: "contacts".to_owned(),
            known_properties: None,
            max_inputs: 100,
            daily_limit: None,
        }
    }
}

struct HubSpot {
    shared: Arc<Shared>,
    object: String,
    known_properties: Option<BTreeSet<String>>,
    max_inputs: usize,
    daily_limit: Option<u64>,
    /// Requests that passed authentication, rate limit and error bursts, for the daily limit.
    served: AtomicU64,
}

/// Starts a simulator on the current Tokio runtime. It serves the batch upsert of its
/// object, `POST /oauth2/token` when OAuth is configured, and 404s for anything else.
pub async fn start(config: HubSpotConfig) -> anyhow::Result<SimHandle> {
    if config.object.is_empty()
        || !config
            .object
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        anyhow::bail!(
            "the object type must be a plain name, not {:?}",
            config.object
        );
    }
    let shared = Arc::new(Shared::new(config.faults, config.rules, config.auth, true)?);
    let hubspot = Arc::new(HubSpot {
        shared: Arc::clone(&shared),
        object: config.object.clone(),
        known_properties: config.known_properties,
        max_inputs: config.max_inputs,
        daily_limit: config.daily_limit,
        served: AtomicU64::new(0),
    });
    let path = format!("/crm/v3/objects/{}/batch/upsert", config.object);
    let upserts = Router::new()
        .route(&path, any(batch_upsert))
        .with_state(hubspot);
    common::serve(config.port, shared, upserts, &["/oauth2/token"]).await
}

/// One input of a batch, as far as it could be read.
struct Input {
    id_property: Option<String>,
    id: Option<String>,
    properties: Option<Map<String, Value>>,
}

fn parse_inputs(body: &[u8]) -> Result<Vec<Input>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid input JSON: {e}"))?;
    let inputs = value
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or("Invalid input JSON: `inputs` must be an array")?;
    Ok(inputs
        .iter()
        .map(|input| Input {
            id_property: input
                .get("idProperty")
                .and_then(Value::as_str)
                .map(str::to_owned),
            id: input.get("id").and_then(key_of),
            properties: input.get("properties").and_then(Value::as_object).cloned(),
        })
        .collect())
}

async fn batch_upsert(State(hubspot): State<Arc<HubSpot>>, request: Request) -> Response {
    let shared = &hubspot.shared;
    let received = match common::receive(shared, request, &["POST"]).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    let seq = received.arrival.seq;
    let parsed = parse_inputs(&received.body);
    let (keys, count) = match &parsed {
        Ok(inputs) => (
            inputs
                .iter()
                .map(|i| i.id.clone().unwrap_or_default())
                .collect(),
            inputs.len(),
        ),
        Err(_) => (Vec::new(), 0),
    };

    let refuse = |refusal: &Refusal| refusal_response(refusal, seq);
    if let Err(response) = common::admit(shared, &received, &keys, count, refuse).await {
        return response;
    }
    let served = hubspot.served.fetch_add(1, Ordering::Relaxed);
    if hubspot.daily_limit.is_some_and(|limit| served >= limit) {
        shared.finish(seq, 429, outcome::RATE_LIMITED, keys, count);
        return json_response(
            429,
            &json!({
                "status": "error",
                "message": "You have reached your daily limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": correlation_id(seq),
                "policyName": "DAILY",
            }),
        );
    }

    let inputs = match parsed {
        Ok(inputs) => inputs,
        Err(message) => {
            shared.finish(seq, 400, outcome::BAD_REQUEST, keys, count);
            return error_response(400, "VALIDATION_ERROR", &message, seq, Vec::new());
        }
    };
    if let Some(refused) = refuse_batch(&hubspot, &inputs, seq) {
        shared.finish(seq, 400, outcome::BATCH_REJECTED, keys, count);
        return refused;
    }
    // Checked by `refuse_batch`: every input names the same id property.
    let id_property = inputs
        .first()
        .and_then(|i| i.id_property.clone())
        .unwrap_or_default();

    let ids: Vec<Option<String>> = inputs.iter().map(|i| i.id.clone()).collect();
    let candidates = inputs
        .into_iter()
        .map(|input| {
            let mut fields = input.properties.unwrap_or_default();
            if let Some(id) = &input.id {
                fields.insert(id_property.clone(), Value::String(id.clone()));
            }
            Candidate {
                key: input.id,
                fields,
                text: None,
            }
        })
        .collect();
    let mode = Mode {
        key_field: &id_property,
        merge: true,
        all_or_none: false,
        create_only: false,
    };
    let outcomes = upsert::upsert(shared, candidates, mode);

    let mut results = Vec::new();
    // Errors with the same category, code and message are reported once, naming every
    // record they are about, as HubSpot does.
    let mut errors: BTreeMap<ErrorKey, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (outcome, id) in outcomes.into_iter().zip(ids) {
        match outcome {
            Outcome::Stored { key, created } => {
                let mut properties = shared.lock().store.fields(&key).unwrap_or_default();
                let object_id = record_id(&hubspot.object, &key);
                properties.insert("hs_object_id".into(), Value::String(object_id.clone()));
                results.push(json!({
                    "id": object_id,
                    "properties": properties,
                    "createdAt": "2026-01-01T00:00:00.000Z",
                    "updatedAt": "2026-01-01T00:00:00.000Z",
                    "archived": false,
                    "new": created,
                }));
            }
            Outcome::Failed(e) => {
                let category = if e.code == validation::UNABLE_TO_LOCK_ROW {
                    "CONFLICT"
                } else {
                    "VALIDATION_ERROR"
                };
                let entry = errors
                    .entry((category.to_owned(), e.code, e.message))
                    .or_default();
                entry.0.push(id.unwrap_or_default());
                for field in e.fields {
                    if !entry.1.contains(&field) {
                        entry.1.push(field);
                    }
                }
            }
        }
    }
    // Not in input order: sorted by a hash of the request and the object id.
    results.sort_by_key(|r| {
        let mut h = StableHash::new(shared.faults.seed);
        h.u64(seq);
        h.bytes(r["id"].as_str().unwrap_or_default().as_bytes());
        h.finish()
    });
    let errors: Vec<Value> = errors
        .into_iter()
        .map(|((category, code, message), (ids, fields))| {
            json!({
                "status": "error",
                "category": category,
                "subCategory": code,
                "message": message,
                "context": {"ids": ids, "propertyName": fields},
            })
        })
        .collect();
    let (status, label, body) = if errors.is_empty() {
        let body = json!({
            "status": "COMPLETE",
            "results": results,
            "startedAt": "2026-01-01T00:00:00.000Z",
            "completedAt": "2026-01-01T00:00:00.100Z",
        });
        (200, outcome::OK, body)
    } else {
        let body = json!({
            "status": "COMPLETE",
            "results": results,
            "numErrors": errors.len(),
            "errors": errors,
            "startedAt": "2026-01-01T00:00:00.000Z",
            "completedAt": "2026-01-01T00:00:00.100Z",
        });
        (207, outcome::PARTIAL, body)
    };
    shared.finish(seq, status, label, keys, count);
    json_response(status, &body)
}

/// Category, code and message: what makes two record errors one.
type ErrorKey = (String, String, String);

/// A 400 for the whole batch, when something in it makes HubSpot refuse all of it.
fn refuse_batch(hubspot: &HubSpot, inputs: &[Input], seq: u64) -> Option<Response> {
    let refuse = |message: String, errors: Vec<Value>| {
        Some(error_response(
            400,
            "VALIDATION_ERROR",
            &message,
            seq,
            errors,
        ))
    };
    if inputs.is_empty() {
        return refuse("Batch input must not be empty".into(), Vec::new());
    }
    if inputs.len() > hubspot.max_inputs {
        return refuse(
            format!(
                "Batch input too large: {} inputs, at most {} allowed",
                inputs.len(),
                hubspot.max_inputs
            ),
            Vec::new(),
        );
    }
    let id_property = inputs[0].id_property.as_deref().unwrap_or_default();
    if id_property.is_empty()
        || inputs
            .iter()
            .any(|i| i.id_property.as_deref() != Some(id_property))
    {
        return refuse(
            "Every input must name the same idProperty".into(),
            Vec::new(),
        );
    }
    if let Some(known) = &hubspot.known_properties {
        let unknown: BTreeSet<&str> = inputs
            .iter()
            .filter_map(|i| i.properties.as_ref())
            .flat_map(|p| p.keys())
            .map(String::as_str)
            .chain(std::iter::once(id_property))
            .filter(|name| !known.contains(*name))
            .collect();
        if !unknown.is_empty() {
            let errors: Vec<Value> = unknown
                .iter()
                .map(|name| {
                    json!({
                        "message": format!("Property \"{name}\" does not exist"),
                        "code": "PROPERTY_DOESNT_EXIST",
                        "context": {"propertyName": [name]},
                    })
                })
                .collect();
            let names: Vec<&str> = unknown.into_iter().collect();
            let message = format!("Property values were not valid: {}", names.join(", "));
            return refuse(message, errors);
        }
    }
    None
}

/// HubSpot's error body.
fn error_response(
    status: u16,
    category: &str,
    message: &str,
    seq: u64,
    errors: Vec<Value>,
) -> Response {
    let mut body = json!({
        "status": "error",
        "message": message,
        "correlationId": correlation_id(seq),
        "category": category,
    });
    if !errors.is_empty() {
        body["errors"] = Value::Array(errors);
    }
    json_response(status, &body)
}

fn refusal_response(refusal: &Refusal, seq: u64) -> Response {
    match refusal {
        Refusal::Unauthorized(_) => error_response(
            401,
            "EXPIRED_AUTHENTICATION",
            "The OAuth token used to make this call expired.",
            seq,
            Vec::new(),
        ),
        Refusal::RateLimited { style, retry_after } => {
            common::rate_limited(*style, retry_after.as_deref(), |status| match status {
                503 => {
                    let message = "Service temporarily unavailable; retry later";
                    error_response(503, "SERVICE_UNAVAILABLE", message, seq, Vec::new())
                }
                _ => {
                    let body = json!({
                        "status": "error",
                        "message": "You have reached your ten_secondly_rolling limit.",
                        "errorType": "RATE_LIMIT",
                        "correlationId": correlation_id(seq),
                        "policyName": "TEN_SECONDLY_ROLLING",
                    });
                    json_response(429, &body)
                }
            })
        }
        Refusal::ServerError { status } => burst_response(
            *status,
            json!({
                "status": "error",
                "message": "internal error",
                "correlationId": correlation_id(seq),
                "category": "INTERNAL_ERROR",
            }),
        ),
    }
}

fn correlation_id(seq: u64) -> String {
    format!("00000000-0000-4000-8000-{seq:012x}")
}

/// The numeric id HubSpot gives a stored record: stable for an object type and key.
pub fn record_id(object: &str, key: &str) -> String {
    let mut hash = StableHash::new(0);
    hash.bytes(object.as_bytes());
    hash.bytes(key.as_bytes());
    (hash.finish() % 100_000_000_000 + 1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_numbers() {
        let id = record_id("contacts", "a@example.com");
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(id, record_id("contacts", "a@example.com"));
        assert_ne!(id, record_id("companies", "a@example.com"));
    }

    #[test]
    fn inputs_are_read_leniently() {
        let inputs = parse_inputs(
            br#"{"inputs": [{"idProperty": "email", "id": "a@b.co", "properties": {"x": "1"}}, {"id": 7}]}"#,
        )
        .unwrap();
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[0].id_property.as_deref(), Some("email"));
        assert_eq!(inputs[1].id.as_deref(), Some("7"));
        assert!(inputs[1].properties.is_none());
        assert!(parse_inputs(b"[]").is_err());
        assert!(parse_inputs(b"nope").is_err());
    }
}
