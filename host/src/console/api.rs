//! `/api/v1/`: the console's JSON API (docs/console.md), for automation: bearer tokens.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{
    FromRequest, FromRequestParts, OptionalFromRequest, Path, Query, Request, State,
};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Console;
use super::auth::{Acting, Caller, Refused};
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
        .route("/api/v1/{*path}", any(no_such_path))
        // Only the routes above: the pages, merged after, keep axum's own answer.
        .method_not_allowed_fallback(no_such_method)
}

/// An error as the API answers it: a status, and an error object `{"error": {"kind",
/// "message", ...}}` (docs/console.md lists each).
pub enum ApiError {
    /// What was asked could not be done: the CLI's error object, its status by its kind.
    Failed(anyhow::Error),
    /// The caller may not ask it: `unauthorized` or `forbidden`.
    Refused(Refused),
    /// The request could not be read (its path, query string or body, or its method):
    /// `request`, with the status axum's rejection gives (400, 405, 415, 422).
    Request { status: StatusCode, message: String },
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::Failed(err)
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        ApiError::Refused(refused)
    }
}

/// axum's rejections of a request it could not read keep their status and their text
/// (which names the field or parameter); only their form changes, to an error object.
macro_rules! unreadable_request {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                ApiError::Request {
                    status: rejection.status(),
                    message: rejection.body_text(),
                }
            }
        }
    )*};
}
unreadable_request!(JsonRejection, PathRejection, QueryRejection);

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Failed(err) => match Concern::of(err).kind {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::State => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Config | ErrorKind::Credentials | ErrorKind::Failed => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
            },
            ApiError::Refused(refused) => refused.status(),
            ApiError::Request { status, .. } => *status,
        }
    }

    /// The whole text, for a person.
    pub fn message(&self) -> String {
        match self {
            ApiError::Failed(err) => format!("{err:#}"),
            ApiError::Refused(refused) => refused.message().to_string(),
            ApiError::Request { message, .. } => message.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self {
            ApiError::Failed(err) => Concern::json(err),
            ApiError::Refused(refused) => {
                json!({"error": {"kind": refused.kind(), "message": refused.message()}})
            }
            ApiError::Request { message, .. } => {
                json!({"error": {"kind": "request", "message": message}})
            }
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::Refused(Refused::NoToken) = self {
            let bearer = HeaderValue::from_static("Bearer");
            response.headers_mut().insert(WWW_AUTHENTICATE, bearer);
        }
        response
    }
}

/// The API's answer to a caller it turned away.
impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        ApiError::Refused(self).into_response()
    }
}

/// An extractor (`Path`, `Query`, `Json`) whose refusal is the API's error object rather
/// than axum's text.
pub struct Api<E>(pub E);

impl<S, E> FromRequestParts<S> for Api<E>
where
    S: Send + Sync,
    E: FromRequestParts<S>,
    ApiError: From<E::Rejection>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Api(E::from_request_parts(parts, state).await?))
    }
}

impl<S, E> FromRequest<S> for Api<E>
where
    S: Send + Sync,
    E: FromRequest<S>,
    ApiError: From<E::Rejection>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Api(E::from_request(request, state).await?))
    }
}

/// A body that may be left out (`Option<Api<Json<_>>>`): none without a Content-Type.
impl<S, E> OptionalFromRequest<S> for Api<E>
where
    S: Send + Sync,
    E: OptionalFromRequest<S>,
    ApiError: From<E::Rejection>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        Ok(E::from_request(request, state).await?.map(Api))
    }
}

async fn no_such_path() -> ApiError {
    ApiError::Failed(anyhow::Error::new(Concern::new(
        ErrorKind::NotFound,
        "no such path in the API: see docs/console.md",
    )))
}

async fn no_such_method() -> ApiError {
    ApiError::Request {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "the API does not answer this method at this path: see docs/console.md"
            .to_string(),
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
        .map_err(ApiError::Failed)
}

async fn syncs(_caller: Caller, State(console): State<Arc<Console>>) -> Answer {
    Ok(Json(blocking(move || views::syncs(&console)).await?))
}

async fn failures(
    _caller: Caller,
    State(console): State<Arc<Console>>,
    Api(Path(sync)): Api<Path<String>>,
    Api(Query(query)): Api<Query<FailureQuery>>,
) -> Answer {
    Ok(Json(
        blocking(move || views::failures(&console, &sync, &query)).await?,
    ))
}

async fn runs(
    _caller: Caller,
    State(console): State<Arc<Console>>,
    Api(Path(sync)): Api<Path<String>>,
) -> Answer {
    Ok(Json(
        blocking(move || views::runs(&console, &sync, 50)).await?,
    ))
}

async fn record(
    _caller: Caller,
    State(console): State<Arc<Console>>,
    Api(Path((sync, key))): Api<Path<(String, String)>>,
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
    _acting: Acting,
    State(console): State<Arc<Console>>,
    Api(Path(sync)): Api<Path<String>>,
    Api(Json(body)): Api<Json<RetryBody>>,
) -> Answer {
    Ok(Json(
        views::retry(&console, &sync, body.keys, body.code, &body.by).await?,
    ))
}

#[derive(Deserialize, Default)]
struct RunBody {
    #[serde(default = "api_caller")]
    by: String,
}

/// Starts a run now, in the background: `202`, or an error when one is going.
async fn run_now(
    _acting: Acting,
    State(console): State<Arc<Console>>,
    Api(Path(sync)): Api<Path<String>>,
    body: Option<Api<Json<RunBody>>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let by = body.map_or_else(api_caller, |Api(Json(body))| body.by);
    let started = views::run_now(&console, &sync, &by)?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

#[derive(Deserialize)]
struct ResolveBody {
    /// Who resolved it.
    by: String,
    /// Why it needs no sending.
    note: String,
}

async fn resolve(
    _acting: Acting,
    State(console): State<Arc<Console>>,
    Api(Path((sync, key))): Api<Path<(String, String)>>,
    Api(Json(body)): Api<Json<ResolveBody>>,
) -> Answer {
    let done = blocking(move || views::resolve(&console, &sync, &key, &body.by, &body.note));
    Ok(Json(done.await?))
}
