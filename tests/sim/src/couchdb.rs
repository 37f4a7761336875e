//! A CouchDB-like document database: the bulk document API of one database.
//!
//! `POST /{db}/_bulk_docs` with `{"docs": [{"_id": "k1", ...}, ...]}` answers 201 with one
//! entry per document, in order: `{"id", "ok": true, "rev"}` when it was written,
//! `{"id", "error", "reason"}` when it was not. A document's key is its `_id`; a written
//! document replaces the stored one whole, and gets a new revision `N-<hash>`.
//!
//! The simulator does not check revisions (a write without `_rev` overwrites, as if every
//! client had read the latest revision first): its conflicts are the shared row-lock fault
//! ([`Faults::lock_probability`]), as a concurrent writer would cause them, and pass when
//! the document is written again. Other refusals:
//!
//! - a document that breaks the [`Rules`] is refused by the "validation function":
//!   `{"error": "forbidden", "reason": <the rule's message>}`;
//! - a request body over [`CouchDbConfig::max_request_bytes`] refuses the whole request
//!   with 413 `too_large`, as `max_http_request_size` does;
//! - a document without a string `_id`, with an `_id` starting with `_`, or with a special
//!   member CouchDB does not know (`_foo`) refuses the whole request with 400;
//! - rate-limit refusals are 429 `too_many_requests` (or 503 in the `ServiceUnavailable`
//!   style), with `Retry-After` as the faults say; credentials refused are 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Path, Request, State};
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
use crate::validation::{self, Rules};

/// Members CouchDB gives a meaning to; any other member starting with `_` is refused.
const SPECIAL_MEMBERS: &[&str] = &["_id", "_rev", "_deleted", "_attachments", "_conflicts"];

/// How to run a CouchDB-like simulator.
#[derive(Debug, Clone)]
pub struct CouchDbConfig {
    pub faults: Faults,
    /// The "validation function": a document that breaks a rule is refused `forbidden`.
    pub rules: Rules,
    /// Credentials data requests need; `None` accepts any request.
    pub auth: Option<AuthConfig>,
    /// The loopback port to listen on; 0 picks a free one.
    pub port: u16,
    /// The one database served; default `sluice`.
    pub db: String,
    /// Largest request body accepted, like CouchDB's `max_http_request_size`; `None`: the
    /// shared 64 MiB cap only.
    pub max_request_bytes: Option<usize>,
}

impl Default for CouchDbConfig {
    fn default() -> Self {
        CouchDbConfig {
            faults: Faults::default(),
            rules: Rules::default(),
            auth: None,
            port: 0,
            db: "sluice".to_owned(),
            max_request_bytes: None,
        }
    }
}

struct CouchDb {
    shared: Arc<Shared>,
    db: String,
    max_request_bytes: Option<usize>,
    /// The revision number of every document written.
    revisions: Mutex<HashMap<String, u64>>,
}

/// Starts a simulator on the current Tokio runtime. It serves `POST /{db}/_bulk_docs`,
/// `POST /oauth2/token` when OAuth is configured, and 404s for anything else (a 404 for
/// another database says that it does not exist, as CouchDB does).
pub async fn start(config: CouchDbConfig) -> anyhow::Result<SimHandle> {
    if config.db.is_empty() || config.db.starts_with('_') || config.db.contains('/') {
        anyhow::bail!(
            "the database name must be plain (no `/`, no leading `_`), not {:?}",
            config.db
        );
    }
    let shared = Arc::new(Shared::new(config.faults, config.rules, config.auth, true)?);
    let couch = Arc::new(CouchDb {
        shared: Arc::clone(&shared),
        db: config.db,
        max_request_bytes: config.max_request_bytes,
        revisions: Mutex::new(HashMap::new()),
    });
    let bulk = Router::new()
        .route("/{db}/_bulk_docs", any(bulk_docs))
        .with_state(couch);
    common::serve(config.port, shared, bulk, &["/oauth2/token"]).await
}

/// Reads the documents of a request; `Err` is the code and reason of a 400.
fn parse_docs(body: &[u8]) -> Result<Vec<Map<String, Value>>, (&'static str, String)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ("bad_request", format!("invalid UTF-8 JSON: {e}")))?;
    let docs = value.get("docs").and_then(Value::as_array).ok_or((
        "bad_request",
        "`docs` parameter must be an array.".to_owned(),
    ))?;
    docs.iter()
        .map(|doc| {
            doc.as_object()
                .cloned()
                .ok_or(("bad_request", "Document must be a JSON object".to_owned()))
        })
        .collect()
}

/// Why CouchDB would refuse a request holding this document, if it would.
fn doc_fault(doc: &Map<String, Value>) -> Option<(&'static str, String)> {
    let Some(Value::String(id)) = doc.get("_id") else {
        return Some(("illegal_docid", "Document id must be a string".to_owned()));
    };
    if id.is_empty() || id.starts_with('_') {
        let reason = format!("Only reserved document ids may start with underscore: {id:?}");
        return Some(("illegal_docid", reason));
    }
    doc.keys()
        .find(|k| k.starts_with('_') && !SPECIAL_MEMBERS.contains(&k.as_str()))
        .map(|k| {
            (
                "doc_validation",
                format!("Bad special document member: {k}"),
            )
        })
}

async fn bulk_docs(
    State(couch): State<Arc<CouchDb>>,
    Path(db): Path<String>,
    request: Request,
) -> Response {
    let shared = &couch.shared;
    let received = match common::receive(shared, request, &["POST"]).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    let seq = received.arrival.seq;
    let parsed = parse_docs(&received.body);
    let (keys, count) = match &parsed {
        Ok(docs) => (
            docs.iter()
                .map(|d| {
                    d.get("_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect(),
            docs.len(),
        ),
        Err(_) => (Vec::new(), 0),
    };

    if let Err(response) = common::admit(shared, &received, &keys, count, refusal_response).await {
        return response;
    }
    if db != couch.db {
        shared.finish(seq, 404, outcome::NOT_FOUND, keys, count);
        return error_response(404, "not_found", "Database does not exist.");
    }
    if let Some(max) = couch.max_request_bytes
        && received.body.len() > max
    {
        shared.finish(seq, 413, outcome::BATCH_REJECTED, keys, count);
        return error_response(413, "too_large", "the request entity is too large");
    }
    let docs = match parsed {
        Ok(docs) => docs,
        Err((code, reason)) => {
            shared.finish(seq, 400, outcome::BAD_REQUEST, keys, count);
            return error_response(400, code, &reason);
        }
    };
    if let Some((code, reason)) = docs.iter().find_map(doc_fault) {
        shared.finish(seq, 400, outcome::BATCH_REJECTED, keys, count);
        return error_response(400, code, &reason);
    }

    let candidates = docs
        .into_iter()
        .map(|mut fields| {
            // The revision is the store's to give; what the client sent is not kept.
            fields.remove("_rev");
            let key = fields.get("_id").and_then(Value::as_str).map(str::to_owned);
            Candidate {
                key,
                fields,
                text: None,
            }
        })
        .collect();
    let mode = Mode {
        key_field: "_id",
        merge: false,
        all_or_none: false,
        create_only: false,
    };
    let outcomes = upsert::upsert(shared, candidates, mode);
    let mut revisions = couch
        .revisions
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut all_ok = true;
    let answers: Vec<Value> = outcomes
        .into_iter()
        .zip(&keys)
        .map(|(outcome, id)| match outcome {
            Outcome::Stored { key, .. } => {
                let n = revisions.entry(key.clone()).or_default();
                *n += 1;
                json!({"id": key, "ok": true, "rev": revision(&key, *n)})
            }
            Outcome::Failed(e) => {
                all_ok = false;
                let conflict = [
                    validation::UNABLE_TO_LOCK_ROW,
                    validation::DUPLICATE_EXTERNAL_ID,
                ];
                let (error, reason) = if conflict.contains(&e.code.as_str()) {
                    ("conflict", "Document update conflict.".to_owned())
                } else {
                    ("forbidden", e.message)
                };
                json!({"id": id, "error": error, "reason": reason})
            }
        })
        .collect();
    drop(revisions);
    common::answered(shared, seq, 201, all_ok, keys, count, answers)
}

/// CouchDB's reasons for a rate-limited request.
const UNAVAILABLE: &str = "Service temporarily unavailable; retry later";
const TOO_MANY_REQUESTS: &str = "You've exceeded your current limit for this request class.";

/// CouchDB's error body.
fn error_response(status: u16, error: &str, reason: &str) -> Response {
    json_response(status, &json!({"error": error, "reason": reason}))
}

fn refusal_response(refusal: &Refusal) -> Response {
    match refusal {
        Refusal::Unauthorized(_) => error_response(
            401,
            "unauthorized",
            "You are not authorized to access this db.",
        ),
        Refusal::RateLimited { style, retry_after } => {
            common::rate_limited(*style, retry_after.as_deref(), |status| match status {
                503 => error_response(503, "service_unavailable", UNAVAILABLE),
                _ => error_response(429, "too_many_requests", TOO_MANY_REQUESTS),
            })
        }
        Refusal::ServerError { status } => burst_response(
            *status,
            json!({"error": "unknown_error", "reason": "internal server error"}),
        ),
    }
}

/// A document's `N`th revision: `N-` and 32 hex digits, stable for a key and `N`.
pub fn revision(key: &str, n: u64) -> String {
    let mut hash = StableHash::new(0);
    hash.bytes(key.as_bytes());
    hash.u64(n);
    let high = hash.finish();
    hash.u64(1);
    format!("{n}-{high:016x}{:016x}", hash.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_count_up() {
        assert!(revision("k", 1).starts_with("1-"));
        assert_eq!(revision("k", 2).len(), 2 + 32);
        assert_ne!(revision("k", 1), revision("j", 1));
    }

    #[test]
    fn whole_request_faults() {
        let doc = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            doc_fault(&doc(json!({"_id": "a", "_rev": "1-x", "n": 1}))),
            None
        );
        assert_eq!(doc_fault(&doc(json!({"n": 1}))).unwrap().0, "illegal_docid");
        assert_eq!(
            doc_fault(&doc(json!({"_id": "_x"}))).unwrap().0,
            "illegal_docid"
        );
        assert_eq!(
            doc_fault(&doc(json!({"_id": "a", "_foo": 1}))).unwrap().0,
            "doc_validation"
        );
        assert!(parse_docs(br#"{"docs": [1]}"#).is_err());
        assert!(parse_docs(br#"{"doc": []}"#).is_err());
    }
}
