//! `/api/v1/`: the console's JSON API (docs/console.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Console;
use super::auth::Caller;
use crate::concern::{Concern, ErrorKind};
use crate::engine::RunControl;
use crate::inspector::Redactor;
use crate::ledger::Status;
use crate::report::entry_json;
use crate::retry_job::Request;

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/api/v1/syncs", get(syncs))
        .route("/api/v1/syncs/{sync}/failures", get(failures))
        .route("/api/v1/syncs/{sync}/records/{key}", get(record))
        .route("/api/v1/syncs/{sync}/retry", post(retry))
        .route("/api/v1/syncs/{sync}/records/{key}/resolve", post(resolve))
        .with_state(console)
}

/// An error as the API answers it: a status for its kind, and the CLI's error object.
struct ApiError(anyhow::Error);

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match Concern::of(&self.0).kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::State => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Config | ErrorKind::Credentials | ErrorKind::Failed => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        (status, Json(Concern::json(&self.0))).into_response()
    }
}

type Answer = Result<Json<Value>, ApiError>;

/// Runs ledger reads (sled is synchronous) off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("the console's read crashed: {e}"))?
        .map_err(ApiError)
}

/// Every sync: its connector and behaviour, its last run, its records by status.
async fn syncs(_caller: Caller, State(console): State<Arc<Console>>) -> Answer {
    let list = blocking(move || {
        let history = console.host.history()?;
        let mut out = Vec::new();
        for sync in &console.config.syncs {
            let counts = console.host.ledger().sync(&sync.name)?.counts()?;
            let by_status: BTreeMap<&str, u64> = Status::ALL
                .iter()
                .map(|s| (s.name(), counts.by_status.get(s).copied().unwrap_or(0)))
                .collect();
            out.push(json!({
                "sync": sync.name,
                "connector": sync.connector,
                "behavior": sync.behavior.name(),
                "last_run": history.list(Some(&sync.name), 1)?.into_iter().next(),
                "by_status": by_status,
            }));
        }
        Ok(out)
    })
    .await?;
    Ok(Json(json!({ "syncs": list })))
}

#[derive(Deserialize)]
struct FailureQuery {
    /// `rejected`, `pending` or `permanent`; every failed status when absent.
    status: Option<String>,
    code: Option<String>,
    /// Keys containing this text.
    q: Option<String>,
    #[serde(default = "first_page")]
    page: usize,
    #[serde(default = "default_per_page")]
    per_page: usize,
}

fn first_page() -> usize {
    1
}

fn default_per_page() -> usize {
    50
}

/// A sync's failed records: counts by status and code, and one page of them in key order,
/// filtered by status, code and a part of the key.
async fn failures(
    _caller: Caller,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
    Query(query): Query<FailureQuery>,
) -> Answer {
    let status = query
        .status
        .as_deref()
        .map(Status::parse)
        .transpose()
        .map_err(ApiError)?;
    let per_page = query.per_page.clamp(1, 500);
    let page = query.page.max(1);
    blocking(move || {
        console.config.sync(&sync)?;
        let ledger = console.host.ledger().sync(&sync)?;
        let mut by_code: BTreeMap<(Status, String), u64> = BTreeMap::new();
        let (mut total, mut records) = (0usize, Vec::new());
        for item in ledger.failed() {
            let (key, entry) = item?;
            let code = entry.failure.as_ref().map_or("", |f| f.code.as_str());
            *by_code.entry((entry.status, code.to_string())).or_default() += 1;
            let wanted = status.is_none_or(|s| s == entry.status)
                && query.code.as_deref().is_none_or(|c| c == code)
                && query.q.as_deref().is_none_or(|q| key.contains(q));
            if !wanted {
                continue;
            }
            total += 1;
            if total > (page - 1) * per_page && records.len() < per_page {
                records.push(entry_json(&key, &entry));
            }
        }
        let by_code: Vec<Value> = by_code
            .into_iter()
            .map(|((status, code), n)| json!({"status": status.name(), "code": code, "records": n}))
            .collect();
        Ok(Json(json!({
            "sync": sync,
            "total": total,
            "page": page,
            "per_page": per_page,
            "by_code": by_code,
            "records": records,
        })))
    })
    .await
}

/// One record: its entry, its payload (with the sync's redaction), and the latest
/// requests whose body carried its key.
async fn record(
    _caller: Caller,
    State(console): State<Arc<Console>>,
    Path((sync, key)): Path<(String, String)>,
) -> Answer {
    blocking(move || {
        let spec = console.config.sync(&sync)?;
        let entry = console
            .host
            .ledger()
            .sync(&sync)?
            .get(&key)?
            .ok_or_else(|| {
                anyhow::Error::new(
                    Concern::new(
                        ErrorKind::NotFound,
                        format!("no record with key `{key}` in the ledger of sync `{sync}`"),
                    )
                    .sync(&sync)
                    .key(&key),
                )
            })?;
        let mut value = entry_json(&key, &entry);
        let redactor = Redactor::new(&spec.redact);
        value["payload"] = json!(
            entry
                .payload
                .as_ref()
                .map(|p| redactor.body(p.as_bytes(), usize::MAX))
        );
        // A key appears in a JSON body as a string; bodies are stored redacted.
        let quoted = serde_json::to_string(&key)?;
        let inspector = console.host.inspector(&console.config, &sync)?;
        let exchanges: Vec<Value> = inspector
            .list(20, |e| e.request_body.contains(&quoted))?
            .into_iter()
            .map(|e| {
                json!({
                    "at": crate::report::rfc3339(Some(e.at_ms)),
                    "run": e.run,
                    "attempt": e.attempt,
                    "method": e.method,
                    "url": e.url,
                    "status": e.status,
                    "verdict": e.verdict,
                })
            })
            .collect();
        value["exchanges"] = json!(exchanges);
        Ok(Json(value))
    })
    .await
}

#[derive(Deserialize)]
struct RetryBody {
    #[serde(default)]
    keys: Vec<String>,
    code: Option<String>,
}

/// Sends failed records again, as `sluice retry` does: the named keys, or every record
/// failed with `code`.
async fn retry(
    caller: Caller,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
    Json(body): Json<RetryBody>,
) -> Response {
    if let Err(refused) = caller.may_act() {
        return refused.into_response();
    }
    if body.keys.is_empty() && body.code.is_none() {
        return (
            StatusCode::BAD_REQUEST,
            "name the records to retry: {\"keys\": [...]} or {\"code\": \"...\"}",
        )
            .into_response();
    }
    let request = Request {
        keys: body.keys,
        codes: body.code.into_iter().collect(),
        include_permanent: true,
        ..Request::default()
    };
    let control = RunControl {
        stop: console.stop.child_token(),
        ..RunControl::default()
    };
    let done = console
        .host
        .retry(&console.config, &sync, &request, control)
        .await;
    match done {
        Ok(report) => Json(json!({
            "sync": sync,
            "selection": report.selection,
            "run": report.run.map(|r| r.summary),
        }))
        .into_response(),
        Err(err) => ApiError(err).into_response(),
    }
}

#[derive(Deserialize)]
struct ResolveBody {
    /// Who resolved it.
    by: String,
    /// Why it needs no sending.
    note: String,
}

/// Marks a record handled without sending it, keeping who and why (`sluice ledger
/// resolve`).
async fn resolve(
    caller: Caller,
    State(console): State<Arc<Console>>,
    Path((sync, key)): Path<(String, String)>,
    Json(body): Json<ResolveBody>,
) -> Response {
    if let Err(refused) = caller.may_act() {
        return refused.into_response();
    }
    let done = blocking(move || {
        console.config.sync(&sync)?;
        let entry = console
            .host
            .ledger()
            .sync(&sync)?
            .resolve(&key, &body.by, &body.note)?;
        Ok(entry_json(&key, &entry))
    })
    .await;
    match done {
        Ok(value) => Json(value).into_response(),
        Err(err) => err.into_response(),
    }
}
