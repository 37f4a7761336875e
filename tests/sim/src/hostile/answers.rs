//! What the destination answers: the records endpoint doing the current misbehaviour, and
//! a logged 404 elsewhere.

use super::reset::Conn;
use super::*;

/// A request body as records: their keys, and each record with a usable key.
struct Parsed {
    keys: Vec<String>,
    records: Vec<(String, Value)>,
}

fn parse(body: &[u8], key_field: &str) -> Option<Parsed> {
    let items: Vec<Value> = serde_json::from_slice(body).ok()?;
    let mut keys = Vec::with_capacity(items.len());
    let mut records = Vec::with_capacity(items.len());
    for item in items {
        let key = match item.get(key_field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        keys.push(key.clone());
        if !key.is_empty() {
            records.push((key, item));
        }
    }
    Some(Parsed { keys, records })
}

/// The correct answer: one result per key, in order.
fn results(keys: &[String], key_field: &str) -> Vec<Value> {
    keys.iter()
        .map(|key| {
            if key.is_empty() {
                json!({"id": null, "error": {
                    "code": "MISSING_KEY",
                    "message": format!("the record has no usable {key_field:?}"),
                    "fields": [key_field],
                }})
            } else {
                json!({"id": record_id(key), "error": null})
            }
        })
        .collect()
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        Body::from(body.to_string()),
    )
        .into_response()
}

/// A request as it arrived, before the destination decides what to do with it.
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Seen {
    async fn read(request: Request) -> Result<Self, Self> {
        let (parts, body) = request.into_parts();
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
        let seen = Seen {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers,
            body: body.as_ref().cloned().unwrap_or_default(),
        };
        if body.is_ok() { Ok(seen) } else { Err(seen) }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Appends it to the log.
    fn log(self, inner: &mut Inner, keys: Vec<String>, answer: &'static str) {
        let seq = inner.log.len() as u64;
        inner.log.push(HostileRequest {
            seq,
            arrived: Instant::now(),
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self.headers,
            body: self.body.to_vec(),
            keys,
            answer,
        });
    }
}

pub(super) async fn records(
    State(state): State<Arc<Hostile>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    request: Request,
) -> Response {
    let seen = match Seen::read(request).await {
        Ok(seen) => seen,
        Err(seen) => {
            seen.log(&mut state.lock(), Vec::new(), answer::BAD_REQUEST);
            let message =
                format!("the body could not be read or is larger than {MAX_BODY_BYTES} bytes");
            return json_response(
                413,
                &json!({"error": {"code": "BODY_TOO_LARGE", "message": message}}),
            );
        }
    };
    let Some(parsed) = parse(&seen.body, &state.key_field) else {
        seen.log(&mut state.lock(), Vec::new(), answer::BAD_REQUEST);
        return json_response(
            400,
            &json!({"error": {"code": "BAD_JSON", "message": "expected a JSON array of records"}}),
        );
    };
    let credential = seen
        .header(&state.credential_header)
        .unwrap_or_default()
        .to_owned();

    // Decide, store and log under one lock, so that decisions follow the order of arrival.
    let misbehaviour = {
        let mut inner = state.lock();
        let misbehaviour = match inner.remaining {
            Some(0) => Misbehaviour::None,
            remaining => {
                inner.remaining = remaining.map(|n| n - 1);
                inner.misbehaviour.clone()
            }
        };
        let (label, stores) = match &misbehaviour {
            Misbehaviour::None => (answer::OK, true),
            Misbehaviour::RateLimit { .. } => (answer::RATE_LIMITED, false),
            Misbehaviour::EchoCredential { .. } => (answer::ECHOED, false),
            Misbehaviour::HugeBody { .. } => (answer::HUGE, true),
            Misbehaviour::TruncatedBody => (answer::TRUNCATED, true),
            Misbehaviour::SlowBody { .. } => (answer::SLOW, true),
            Misbehaviour::Reset => (answer::RESET, false),
            Misbehaviour::Redirect { .. } => (answer::REDIRECTED, false),
            Misbehaviour::WrongLength { .. } => (answer::WRONG_LENGTH, true),
        };
        if stores {
            for (key, record) in &parsed.records {
                inner.stored.insert(key.clone(), record.clone());
            }
        }
        seen.log(&mut inner, parsed.keys.clone(), label);
        misbehaviour
    };

    let keys = parsed.keys;
    let ok_body = || json!({"results": results(&keys, &state.key_field)});
    match misbehaviour {
        Misbehaviour::None => json_response(200, &ok_body()),
        Misbehaviour::RateLimit { retry_after } => {
            let mut response = json_response(
                429,
                &json!({"error": {"code": "RATE_LIMITED", "message": "too many requests"}}),
            );
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
        Misbehaviour::EchoCredential { status } => echo(status, &credential, keys.len()),
        Misbehaviour::HugeBody { padding } => {
            let body = json!({
                "padding": "x".repeat(padding),
                "results": results(&keys, &state.key_field),
            });
            json_response(200, &body)
        }
        Misbehaviour::TruncatedBody => truncated(Bytes::from(ok_body().to_string())),
        Misbehaviour::SlowBody { interval, pieces } => {
            trickled(Bytes::from(ok_body().to_string()), interval, pieces)
        }
        Misbehaviour::Reset => {
            conn.reset.store(true, Ordering::SeqCst);
            StatusCode::OK.into_response()
        }
        Misbehaviour::Redirect { status, location } => {
            let mut response = json_response(
                status,
                &json!({"error": {"code": "MOVED", "message": format!("moved to {location}")}}),
            );
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(LOCATION, value);
            }
            response
        }
        Misbehaviour::WrongLength { delta } => {
            let n = usize::try_from(keys.len() as i64 + delta).unwrap_or(0);
            let results: Vec<Value> = (0..n)
                .map(|i| match keys.get(i) {
                    Some(key) => json!({"id": record_id(key), "error": null}),
                    None => json!({"id": format!("h-extra-{i}"), "error": null}),
                })
                .collect();
            json_response(200, &json!({"results": results}))
        }
    }
}

/// An answer that repeats `value` (the credential header as sent) everywhere it can.
fn echo(status: u16, value: &str, records: usize) -> Response {
    let [_, base64, percent] = credential_forms(credential_in(value));
    let code = format!("DENIED {value}");
    let mut message = format!(
        "credential {value} is not allowed here (base64 {base64}; see /help?credential={percent})"
    );
    let mut echoed =
        json!({"header": value, "base64": base64, "url": format!("/help?credential={percent}")});
    if let Some(pair) = basic_pair(value) {
        message.push_str(&format!(" for {pair}"));
        echoed["decoded"] = json!(pair);
    }
    let error = json!({"code": code, "message": message, "fields": [value, "email"]});
    let body = if status == 200 {
        let results: Vec<Value> = (0..records)
            .map(|_| json!({"id": null, "error": error}))
            .collect();
        json!({"results": results, "echo": echoed})
    } else {
        json!({"error": error, "echo": echoed})
    };
    let mut response = json_response(status, &body);
    if let Ok(header) = HeaderValue::from_str(value) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(ECHO_HEADER), header);
    }
    response
}

/// 200 with a `Content-Length` of all of `body`, of which only the first half is sent
/// before the connection is closed.
fn truncated(body: Bytes) -> Response {
    let full = body.len();
    let half = body.slice(..full / 2);
    let pieces = futures_util::stream::iter([Ok(half), Err(())]).then(|piece| async move {
        match piece {
            Ok(bytes) => Ok(bytes),
            Err(()) => {
                // Let the first half leave before the connection goes.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "hostile destination: body cut short",
                ))
            }
        }
    });
    let mut response = Response::new(Body::from_stream(pieces));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(full));
    response
}

/// 200 at once, then `body` in `pieces` pieces, `interval` apart.
fn trickled(body: Bytes, interval: Duration, pieces: u32) -> Response {
    let pieces = (pieces.max(1) as usize).min(body.len().max(1));
    let size = body.len().div_ceil(pieces);
    let chunks: Vec<Bytes> = (0..pieces)
        .map(|i| body.slice((i * size).min(body.len())..((i + 1) * size).min(body.len())))
        .collect();
    let stream = futures_util::stream::iter(chunks.into_iter().enumerate()).then(
        move |(i, chunk)| async move {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            Ok::<_, io::Error>(chunk)
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Any other path: logged, then 404.
pub(super) async fn not_found(State(state): State<Arc<Hostile>>, request: Request) -> Response {
    let seen = Seen::read(request).await.unwrap_or_else(|seen| seen);
    let message = format!("no such resource: {}", seen.path);
    seen.log(&mut state.lock(), Vec::new(), answer::NOT_FOUND);
    json_response(
        404,
        &json!({"error": {"code": "NOT_FOUND", "message": message}}),
    )
}
