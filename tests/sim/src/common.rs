//! HTTP plumbing both simulators share: reading a request, building responses, the OAuth
//! token endpoint and the catch-all for unknown paths.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Form, FromRequest, Request, State};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::auth::Grant;
use crate::faults::LimitStyle;
use crate::handle::{self, SimHandle};
use crate::outcome;
use crate::state::{Arrival, Refusal, Shared};

/// Bodies larger than this are refused with 413: far above any batch a connector sends,
/// and low enough that a runaway client cannot exhaust memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A request that has been logged, with what its handler needs.
pub(crate) struct Received {
    pub(crate) arrival: Arrival,
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    pub(crate) authorization: Option<String>,
    /// The query, without the `?`.
    pub(crate) query: Option<String>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) body: Bytes,
}

/// Serves `own` routes on `port`, with the routes every simulator shares: the OAuth token
/// endpoint at each of `token_paths`, and a logged 404 for anything else.
pub(crate) async fn serve(
    port: u16,
    shared: Arc<Shared>,
    own: Router,
    token_paths: &[&str],
) -> anyhow::Result<SimHandle> {
    let others = token_paths
        .iter()
        .fold(Router::new(), |router, path| router.route(path, any(token)))
        .fallback(not_found)
        .with_state(Arc::clone(&shared));
    handle::spawn(port, shared, own.merge(others)).await
}

/// The `Authorization` header's value, when it is text.
fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Logs a data request on arrival and reads its body. A body that cannot be read (too
/// large, or the client went away) is answered here, with the response returned as `Err`.
pub(crate) async fn receive(
    shared: &Shared,
    request: Request,
    allowed: &[&str],
) -> Result<Received, Response> {
    let (parts, body) = request.into_parts();
    let authorization = authorization(&parts.headers);
    let method = parts.method.as_str();
    let data = allowed.contains(&method);
    let arrival = shared.arrive(method, &parts.uri, &parts.headers, data);
    let query = parts.uri.query().map(str::to_owned);
    let idempotency_key = shared.idempotency_key(&parts.headers);
    if !data {
        shared.finish(arrival.seq, 405, outcome::METHOD_NOT_ALLOWED, Vec::new(), 0);
        let mut response = json_response(
            405,
            &json!({"error": {"code": "METHOD_NOT_ALLOWED", "message": format!("use {}", allowed.join(", "))}}),
        );
        if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(ALLOW, allow);
        }
        return Err(response);
    }
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => Ok(Received {
            arrival,
            method: method.to_owned(),
            path: parts.uri.path().to_owned(),
            authorization,
            query,
            idempotency_key,
            body,
        }),
        Err(_) => {
            shared.finish(arrival.seq, 413, outcome::BAD_REQUEST, Vec::new(), 0);
            let message =
                format!("the body could not be read or is larger than {MAX_BODY_BYTES} bytes");
            Err(json_response(
                413,
                &json!({"error": {"code": "BODY_TOO_LARGE", "message": message}}),
            ))
        }
    }
}

/// Waits out the request's injected latency, then checks its credentials and the faults.
/// A refused request is logged with the `keys` and `count` of its batch and answered with
/// `refuse`'s response in the simulator's dialect, returned as `Err`.
pub(crate) async fn admit(
    shared: &Shared,
    received: &Received,
    keys: &[String],
    count: usize,
    refuse: impl FnOnce(&Refusal) -> Response,
) -> Result<(), Response> {
    shared.delay(received.arrival).await;
    match shared.admit(received.authorization.as_deref()) {
        Ok(()) => Ok(()),
        Err(refusal) => {
            let response = refuse(&refusal);
            let status = response.status().as_u16();
            shared.finish(
                received.arrival.seq,
                status,
                refusal.outcome(),
                keys.to_vec(),
                count,
            );
            Err(response)
        }
    }
}

/// The label of a processed batch: `ok` when every record was stored, else `partial`.
pub(crate) fn stored_label(all_stored: bool) -> &'static str {
    if all_stored {
        outcome::OK
    } else {
        outcome::PARTIAL
    }
}

/// Logs a processed batch of `keys` (see [`stored_label`]) and answers it with `answers`,
/// one per record, as a JSON array.
pub(crate) fn answered(
    shared: &Shared,
    seq: u64,
    status: u16,
    all_stored: bool,
    keys: Vec<String>,
    count: usize,
    answers: Vec<Value>,
) -> Response {
    shared.finish(seq, status, stored_label(all_stored), keys, count);
    json_response(status, &Value::Array(answers))
}

/// A JSON response.
pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    text_response(status, "application/json;charset=UTF-8", body.to_string())
}

/// A response with a body of the given type.
pub(crate) fn text_response(status: u16, content_type: &'static str, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(CONTENT_TYPE, content_type)], Body::from(body)).into_response()
}

/// Adds a `Retry-After` header, when there is one to add.
pub(crate) fn with_retry_after(mut response: Response, retry_after: Option<&str>) -> Response {
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// The answer to a rate-limited request: `answer` given the status of the refusal's
/// style (503 for service unavailable), with the `Retry-After` the faults chose.
pub(crate) fn rate_limited(
    style: LimitStyle,
    retry_after: Option<&str>,
    answer: impl FnOnce(u16) -> Response,
) -> Response {
    with_retry_after(answer(style.status()), retry_after)
}

/// The response to an error burst: a 500 from the API itself has a JSON body in the API's
/// dialect (`api_body`); other 5xx come from a proxy in front of it, with an HTML page a
/// connector cannot parse and must not trap on.
pub(crate) fn burst_response(status: u16, api_body: Value) -> Response {
    if status == 500 {
        return json_response(status, &api_body);
    }
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Server Error");
    let page = format!(
        "<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>\n"
    );
    text_response(status, "text/html", page)
}

/// `POST /oauth2/token`: the refresh-token grant, when the simulator has an OAuth client.
/// Token requests are logged and counted, but no fault applies to them.
pub(crate) async fn token(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().as_str().to_owned();
    let arrival = shared.arrive(&method, request.uri(), request.headers(), false);
    if method != "POST" {
        shared.finish(arrival.seq, 405, outcome::METHOD_NOT_ALLOWED, Vec::new(), 0);
        return json_response(
            405,
            &json!({"error": "invalid_request", "error_description": "use POST"}),
        );
    }
    let form = match Form::<HashMap<String, String>>::from_request(request, &()).await {
        Ok(Form(form)) => form,
        Err(_) => {
            shared.finish(arrival.seq, 400, outcome::TOKEN_REFUSED, Vec::new(), 0);
            let description = "expected an application/x-www-form-urlencoded body";
            return json_response(
                400,
                &json!({"error": "invalid_request", "error_description": description}),
            );
        }
    };
    match shared.grant(&form) {
        None => {
            shared.finish(arrival.seq, 404, outcome::NOT_FOUND, Vec::new(), 0);
            json_response(
                404,
                &json!({"error": "not_found", "error_description": "this destination has no OAuth client"}),
            )
        }
        Some(Grant::Refused(error)) => {
            shared.finish(arrival.seq, 400, outcome::TOKEN_REFUSED, Vec::new(), 0);
            json_response(400, &json!({"error": error}))
        }
        Some(Grant::Issued(token)) => {
            shared.finish(arrival.seq, 200, outcome::TOKEN_ISSUED, Vec::new(), 0);
            let body = json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 3600,
            });
            json_response(200, &body)
        }
    }
}

/// Any path the simulator does not serve: logged, then 404.
pub(crate) async fn not_found(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let arrival = shared.arrive(
        request.method().as_str(),
        request.uri(),
        request.headers(),
        false,
    );
    shared.finish(arrival.seq, 404, outcome::NOT_FOUND, Vec::new(), 0);
    let message = format!("no such resource: {}", request.uri().path());
    json_response(
        404,
        &json!({"error": {"code": "NOT_FOUND", "message": message}}),
    )
}
