//! A generic REST destination: `POST {path}` (or `PUT`, `PATCH`) with a JSON array of
//! record objects, bare or under one field of an envelope, answered in one of three
//! styles real APIs use (see [`RestMode`]). A record's key is the value of `key_field`
//! inside it; a stored record is replaced whole by a later one with the same key.
//!
//! With a `delete_path`, `{delete_method} {delete_path}` takes an array of identities (see
//! [`RestConfig::delete_path`]). With an `idempotency_header`, a request carrying a key
//! already seen is answered with that key's first response and not applied again, as
//! Stripe does (see [`RestConfig::idempotency_header`]).

mod delete;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use axum::routing::any;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::auth::AuthConfig;
use crate::common::{
    self, Received, burst_response, json_response, text_response, with_retry_after,
};
use crate::faults::{Faults, LimitStyle, StableHash};
use crate::handle::SimHandle;
use crate::idempotency::{Claim, Replays};
use crate::keys::probe_key;
use crate::outcome;
use crate::state::{Refusal, Shared};
use crate::upsert::{self, Candidate, Mode, Outcome};
use crate::validation::{self, Rules};

/// How the destination answers a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestMode {
    /// 200 `{"accepted": N}`; every record with a key is stored, rules and row locks are
    /// skipped. The throughput benchmark's path: records are kept as the JSON text they
    /// arrived in. A record without a usable key refuses the whole batch (400).
    AcceptAll,
    /// 200 `{"results": [...]}`, one entry per record by position: `{"id": "<dest id>",
    /// "error": null}` when stored, `{"id": null, "error": {"code", "message", "fields"}}`
    /// when not. Row locks fail single records with `UNABLE_TO_LOCK_ROW`.
    #[default]
    PerRecord,
    /// Any invalid record refuses the whole batch with 400 `{"error": {"code", "message"}}`
    /// (the first invalid record's code and message, not saying which record) and nothing
    /// is stored; else 200 `{"accepted": N}`. A locked row refuses the whole batch with 409
    /// `UNABLE_TO_LOCK_ROW`.
    WholeBatch,
}

/// How to run a REST simulator.
#[derive(Debug, Clone)]
pub struct RestConfig {
    pub faults: Faults,
    /// Checked in `PerRecord` and `WholeBatch` modes.
    pub rules: Rules,
    /// Credentials data requests need; `None` accepts any request.
    pub auth: Option<AuthConfig>,
    /// The loopback port to listen on; 0 picks a free one.
    pub port: u16,
    /// Where records are posted; default `/v1/records`.
    pub path: String,
    /// `None`: the body is a bare JSON array; `Some(f)`: it is `{"f": [...]}`.
    pub records_field: Option<String>,
    /// The field inside each record that holds its key; default `id`.
    pub key_field: String,
    pub mode: RestMode,
    /// Where deletes go; `None` (the default): nowhere. The body is a JSON array of
    /// identities as strings, bare or under `records_field` as records are; each names the
    /// stored record with that key, or else the one the simulator gave that id
    /// ([`record_id`], in `PerRecord` answers). `PerRecord` answers
    /// `{"results": [{"id": "<identity>", "error": null}, ...]}` by position, with error
    /// code `NOT_FOUND` for an identity naming no record and `UNABLE_TO_LOCK_ROW` for a
    /// locked row; the other modes remove what they find and answer `{"accepted": N}`.
    /// May be `path` itself when `delete_method` is `DELETE`.
    pub delete_path: Option<String>,
    /// `POST` (the default), `PUT`, `PATCH` or `DELETE`.
    pub delete_method: String,
    /// The header that carries idempotency keys; default `Idempotency-Key`. A request with
    /// a key whose first request ran (stored, partly or not at all for its records) is
    /// answered with that request's response, and not applied again; one with the key of a
    /// request still being handled gets 409 `IDEMPOTENCY_KEY_IN_USE`, and one reusing a key
    /// for another method, path or body 400 `IDEMPOTENCY_KEY_REUSED`. A request refused
    /// before it ran (credentials, rate limit, error burst, a row-lock 409) keeps no answer.
    /// `None`: keys are never honoured (nor recorded: see
    /// [`crate::RequestRecord::idempotency_key`]).
    pub idempotency_header: Option<String>,
    /// Whether [`crate::RequestRecord::keys`] lists each request's keys; default true.
    /// Turn it off for benchmarks, where the request log would otherwise hold a copy of
    /// every key sent.
    pub record_keys: bool,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            faults: Faults::default(),
            rules: Rules::default(),
            auth: None,
            port: 0,
            path: "/v1/records".to_owned(),
            records_field: None,
            key_field: "id".to_owned(),
            mode: RestMode::default(),
            delete_path: None,
            delete_method: "POST".to_owned(),
            idempotency_header: Some("Idempotency-Key".to_owned()),
            record_keys: true,
        }
    }
}

/// What the handlers need besides the shared state.
struct Rest {
    shared: Arc<Shared>,
    records_field: Option<String>,
    key_field: String,
    mode: RestMode,
    delete_method: String,
    /// Whether idempotency keys are honoured.
    idempotent: bool,
    replays: Replays,
}

/// Refuses a path the router cannot serve as given.
fn check_path(what: &str, path: &str) -> anyhow::Result<()> {
    if !path.starts_with('/') || path.contains(['{', '}', '*']) {
        anyhow::bail!("the {what} path must start with '/' and hold no pattern, not {path:?}");
    }
    if path == "/oauth2/token" {
        anyhow::bail!("the {what} path must not be the token endpoint's");
    }
    Ok(())
}

/// Starts a simulator on the current Tokio runtime. It serves the records endpoint, the
/// delete endpoint when configured, `POST /oauth2/token` when OAuth is configured, and 404s
/// for anything else.
pub async fn start(config: RestConfig) -> anyhow::Result<SimHandle> {
    check_path("records", &config.path)?;
    let delete_method = config.delete_method.to_ascii_uppercase();
    if let Some(path) = &config.delete_path {
        check_path("delete", path)?;
        if !["POST", "PUT", "PATCH", "DELETE"].contains(&delete_method.as_str()) {
            anyhow::bail!(
                "delete_method must be POST, PUT, PATCH or DELETE, not {delete_method:?}"
            );
        }
        if *path == config.path && delete_method != "DELETE" {
            anyhow::bail!("deletes can share the records path only with delete_method DELETE");
        }
    }
    let mut shared = Shared::new(config.faults, config.rules, config.auth, config.record_keys)?;
    if let Some(name) = &config.idempotency_header {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| anyhow::anyhow!("{name:?} is not a header name"))?;
        shared = shared.with_idempotency_header(name);
    }
    let shared = Arc::new(shared);
    let rest = Arc::new(Rest {
        shared: Arc::clone(&shared),
        records_field: config.records_field,
        key_field: config.key_field,
        mode: config.mode,
        delete_method,
        idempotent: config.idempotency_header.is_some(),
        replays: Replays::default(),
    });
    let router = match &config.delete_path {
        Some(path) if *path == config.path => Router::new().route(path, any(records_or_deletes)),
        Some(path) => Router::new()
            .route(&config.path, any(records))
            .route(path, any(delete::deletes)),
        None => Router::new().route(&config.path, any(records)),
    };
    let router = router.with_state(rest);
    common::serve(config.port, shared, router, &["/oauth2/token"]).await
}

/// One path for records and deletes: the method tells them apart.
async fn records_or_deletes(State(rest): State<Arc<Rest>>, request: Request) -> Response {
    if request.method().as_str() == rest.delete_method {
        delete::deletes(State(rest), request).await
    } else {
        records(State(rest), request).await
    }
}

/// Claims the request's idempotency key; `Err` is the answer when the key was seen before,
/// logged (a replay is not applied again).
fn claim(
    rest: &Rest,
    received: &Received,
    keys: &[String],
    count: usize,
) -> Result<Claim, Box<Response>> {
    if !rest.idempotent {
        return Ok(Claim::Unkeyed);
    }
    let key = received.idempotency_key.as_deref();
    let (status, label, response) =
        match rest
            .replays
            .claim(key, &received.method, &received.path, &received.body)
        {
            Claim::Replay(response) => (response.status().as_u16(), outcome::REPLAYED, response),
            Claim::InUse => {
                let message = "a request with this idempotency key is still being handled";
                (
                    409,
                    outcome::CONFLICT,
                    error_response(409, "IDEMPOTENCY_KEY_IN_USE", message),
                )
            }
            Claim::Reused => {
                let message = "this idempotency key was used for another request";
                (
                    400,
                    outcome::BAD_REQUEST,
                    error_response(400, "IDEMPOTENCY_KEY_REUSED", message),
                )
            }
            fresh => return Ok(fresh),
        };
    let seq = received.arrival.seq;
    rest.shared.finish(seq, status, label, keys.to_vec(), count);
    Err(Box::new(response))
}

/// A request body split into its records (as JSON text) and their keys.
struct Batch<'a> {
    records: Vec<&'a RawValue>,
    keys: Vec<Option<String>>,
}

fn parse_batch<'a>(
    body: &'a [u8],
    records_field: Option<&str>,
    key_field: &str,
) -> Result<Batch<'a>, String> {
    let records: Vec<&RawValue> = match records_field {
        None => serde_json::from_slice(body)
            .map_err(|e| format!("expected a JSON array of records: {e}"))?,
        Some(field) => {
            let mut envelope: HashMap<String, &RawValue> =
                serde_json::from_slice(body).map_err(|e| format!("expected a JSON object: {e}"))?;
            let list = envelope
                .remove(field)
                .ok_or_else(|| format!("missing field {field:?}"))?;
            serde_json::from_str(list.get())
                .map_err(|e| format!("{field:?} must be an array of records: {e}"))?
        }
    };
    let keys = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            probe_key(r.get(), key_field).map_err(|e| format!("record {i} is not an object: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Batch { records, keys })
}

async fn records(State(rest): State<Arc<Rest>>, request: Request) -> Response {
    let shared = &rest.shared;
    let received = match common::receive(shared, request, &["POST", "PUT", "PATCH"]).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    let seq = received.arrival.seq;
    shared.lock().count_operation("upsert");
    let parsed = parse_batch(
        &received.body,
        rest.records_field.as_deref(),
        &rest.key_field,
    );
    let (log_keys, count) = match &parsed {
        Ok(batch) if shared.keeps_keys() => (
            batch
                .keys
                .iter()
                .map(|k| k.clone().unwrap_or_default())
                .collect(),
            batch.records.len(),
        ),
        Ok(batch) => (Vec::new(), batch.records.len()),
        Err(_) => (Vec::new(), 0),
    };

    if let Err(response) =
        common::admit(shared, &received, &log_keys, count, refusal_response).await
    {
        return response;
    }
    let claim = match claim(&rest, &received, &log_keys, count) {
        Ok(claim) => claim,
        Err(response) => return *response,
    };
    let batch = match parsed {
        Ok(batch) => batch,
        Err(message) => {
            shared.finish(seq, 400, outcome::BAD_REQUEST, log_keys, count);
            return rest
                .replays
                .settle(
                    claim,
                    outcome::BAD_REQUEST,
                    error_response(400, "BAD_JSON", &message),
                )
                .await;
        }
    };
    let (status, label, response) = match rest.mode {
        RestMode::AcceptAll => accept_all(shared, batch, &rest.key_field),
        RestMode::PerRecord => checked(batch, |c| per_record(shared, c, &rest.key_field)),
        RestMode::WholeBatch => checked(batch, |c| whole_batch(shared, c, &rest.key_field)),
    };
    shared.finish(seq, status, label, log_keys, count);
    rest.replays.settle(claim, label, response).await
}

type Answer = (u16, &'static str, Response);

fn accept_all(shared: &Shared, batch: Batch<'_>, key_field: &str) -> Answer {
    if let Some(i) = batch.keys.iter().position(Option::is_none) {
        let message = format!("record {i} has no usable {key_field:?}");
        let response = error_response(400, validation::REQUIRED_FIELD_MISSING, &message);
        return (400, outcome::BATCH_REJECTED, response);
    }
    let accepted = batch.records.len();
    let entries: Vec<(String, Box<str>)> = batch
        .keys
        .into_iter()
        .zip(batch.records)
        .filter_map(|(key, record)| Some((key?, Box::from(record.get()))))
        .collect();
    let mut inner = shared.lock();
    for (key, text) in entries {
        inner.store.put_text(key, text);
    }
    drop(inner);
    let body = format!("{{\"accepted\":{accepted}}}");
    (
        200,
        outcome::OK,
        text_response(200, "application/json", body),
    )
}

/// Parses every record into fields for validation, keeping its text for storage.
fn candidates(batch: Batch<'_>) -> Result<Vec<Candidate>, String> {
    batch
        .keys
        .into_iter()
        .zip(batch.records)
        .enumerate()
        .map(|(i, (key, record))| {
            let fields: Map<String, Value> =
                serde_json::from_str(record.get()).map_err(|e| format!("record {i}: {e}"))?;
            Ok(Candidate {
                key,
                fields,
                text: Some(Box::from(record.get())),
            })
        })
        .collect()
}

/// `answer` for the batch's records parsed into fields; a 400 when one is not a JSON object.
fn checked(batch: Batch<'_>, answer: impl FnOnce(Vec<Candidate>) -> Answer) -> Answer {
    match candidates(batch) {
        Ok(candidates) => answer(candidates),
        Err(message) => (
            400,
            outcome::BAD_REQUEST,
            error_response(400, "BAD_JSON", &message),
        ),
    }
}

/// Stores what passes validation, each record replacing any earlier one with its key;
/// `all_or_none`: nothing, unless every record passes.
fn store(
    shared: &Shared,
    candidates: Vec<Candidate>,
    key_field: &str,
    all_or_none: bool,
) -> Vec<Outcome> {
    let mode = Mode {
        key_field,
        merge: false,
        all_or_none,
        create_only: false,
    };
    upsert::upsert(shared, candidates, mode)
}

fn per_record(shared: &Shared, candidates: Vec<Candidate>, key_field: &str) -> Answer {
    let outcomes = store(shared, candidates, key_field, false);
    let all_stored = outcomes.iter().all(|o| matches!(o, Outcome::Stored { .. }));
    let mut inner = shared.lock();
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Stored { key, .. } => {
                // Noted, so that a delete can name the record by the id it was given.
                let id = record_id(&key);
                inner.store.set_id(&key, &id);
                json!({"id": id, "error": null})
            }
            Outcome::Failed(e) => json!({"id": null, "error": e}),
        })
        .collect();
    drop(inner);
    let label = common::stored_label(all_stored);
    (200, label, json_response(200, &json!({"results": results})))
}

fn whole_batch(shared: &Shared, candidates: Vec<Candidate>, key_field: &str) -> Answer {
    let accepted = candidates.len();
    let outcomes = store(shared, candidates, key_field, true);
    let first_fault = outcomes.into_iter().find_map(|o| match o {
        Outcome::Failed(e) if e.code != validation::ALL_OR_NONE_OPERATION_ROLLED_BACK => Some(e),
        _ => None,
    });
    match first_fault {
        None => (
            200,
            outcome::OK,
            json_response(200, &json!({"accepted": accepted})),
        ),
        Some(e) if e.code == validation::UNABLE_TO_LOCK_ROW => {
            let message = "a record of the batch is locked by another transaction; retry the batch";
            (
                409,
                outcome::CONFLICT,
                error_response(409, &e.code, message),
            )
        }
        Some(e) => {
            let message = format!("the batch was rejected: {}", e.message);
            (
                400,
                outcome::BATCH_REJECTED,
                error_response(400, &e.code, &message),
            )
        }
    }
}

fn error_response(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn refusal_response(refusal: &Refusal) -> Response {
    match refusal {
        Refusal::Unauthorized(_) => {
            let mut response = error_response(
                401,
                "UNAUTHORIZED",
                "missing, invalid or expired access token",
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            response
        }
        Refusal::RateLimited { style, retry_after } => {
            let (code, message) = match style {
                LimitStyle::TooManyRequests => ("RATE_LIMITED", "too many requests"),
                LimitStyle::RequestLimitExceeded => {
                    ("REQUEST_LIMIT_EXCEEDED", "request limit exceeded")
                }
                LimitStyle::ServiceUnavailable => {
                    ("SERVICE_UNAVAILABLE", "temporarily throttled; retry later")
                }
            };
            with_retry_after(
                error_response(style.status(), code, message),
                retry_after.as_deref(),
            )
        }
        Refusal::ServerError { status } => burst_response(
            *status,
            json!({"error": {"code": "INTERNAL", "message": "internal server error"}}),
        ),
    }
}

/// The id the destination gives a stored record: stable for a key.
pub fn record_id(key: &str) -> String {
    let mut hash = StableHash::new(0);
    hash.bytes(key.as_bytes());
    format!("rec_{:016x}", hash.finish())
}
