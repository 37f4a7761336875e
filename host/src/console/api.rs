//! `/api/v1/`: the console's JSON API (docs/console.md), for automation: bearer tokens.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::Console;
use super::auth::Caller;
use super::views::{self, FailureQuery};
use crate::concern::{Concern, ErrorKind};

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/api/v1/syncs", get(syncs))
        .route("/api/v1/syncs/{sync}/failures", get(failures))
        .route("/api/v1/syncs/{sync}/runs", get(runs))
        .route("/api/v1/syncs/{sync}/records/{key}", get(record))
        .route("/api/v1/syncs/{sync}/retry", post(retry))
        .route("/api/v1/syncs/{sync}/run", post(run_now))
        .route("/api/v1/syncs/{sync}/records/{key}/resolve", post(resolve))
}

/// An error as the API answers it: a status for its kind, and the CLI's error object.
pub struct ApiError(pub anyhow::Error);

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError(err)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match Concern::of(&self.0).kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::State => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Config | ErrorKind::Credentials | ErrorKind::Failed => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(Concern::json(&self.0))).into_response()
    }
}

type Answer = Result<Json<Value>, ApiError>;

/// Runs ledger reads (sled is synchronous) off the async executor.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("the console's read crashed: {e}"))?
        .map_err(ApiError)
}

async fn syncs(_caller: Caller, State(console): State<Arc<Console>>) -> Answer {
    Ok(Json(blocking(move || views::syncs(&console)).await?))
}

async fn failures(
    _caller: Caller,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
    Query(query): Query<FailureQuery>,
) -> Answer {
    Ok(Json(
        blocking(move || views::failures(&console, &sync, &query)).await?,
    ))
}

async fn runs(
    _caller: Caller,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
) -> Answer {
    Ok(Json(
        blocking(move || views::runs(&console, &sync, 50)).await?,
    ))
}

async fn record(
    _caller: Caller,
    State(console): State<Arc<Console>>,
    Path((sync, key)): Path<(String, String)>,
) -> Answer {
    Ok(Json(
        blocking(move || views::record(&console, &sync, &key)).await?,
    ))
}

#[derive(Deserialize)]
struct RetryBody {
    #[serde(default)]
    keys: Vec<String>,
    code: Option<String>,
    /// Who asked, for the console's record of actions.
    #[serde(default = "api_caller")]
    by: String,
}

fn api_caller() -> String {
    "the API".to_string()
}

async fn retry(
    caller: Caller,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
    Json(body): Json<RetryBody>,
) -> Response {
    if let Err(refused) = caller.may_act() {
        return refused.into_response();
    }
    match views::retry(&console, &sync, body.keys, body.code, &body.by).await {
        Ok(value) => Json(value).into_response(),
        Err(err) => ApiError(err).into_response(),
    }
}

#[derive(Deserialize, Default)]
struct RunBody {
    #[serde(default = "api_caller")]
    by: String,
}

/// Starts a run now, in the background: `202`, or an error when one is going.
async fn run_now(
    caller: Caller,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
    body: Option<Json<RunBody>>,
) -> Response {
    if let Err(refused) = caller.may_act() {
        return refused.into_response();
    }
    let by = body.map_or_else(api_caller, |b| b.0.by);
    match views::run_now(&console, &sync, &by) {
        Ok(value) => (StatusCode::ACCEPTED, Json(value)).into_response(),
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

async fn resolve(
    caller: Caller,
    State(console): State<Arc<Console>>,
    Path((sync, key)): Path<(String, String)>,
    Json(body): Json<ResolveBody>,
) -> Response {
    if let Err(refused) = caller.may_act() {
        return refused.into_response();
    }
    let done = blocking(move || views::resolve(&console, &sync, &key, &body.by, &body.note));
    match done.await {
        Ok(value) => Json(value).into_response(),
        Err(err) => err.into_response(),
    }
}
