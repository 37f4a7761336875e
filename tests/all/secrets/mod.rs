//! No secret leaks: a destination that echoes the credentials it was sent (into error
//! codes, messages, field lists, response headers and bodies, as is and in base64 or
//! percent-encoded) never gets them printed or stored; credentials in base_url are refused;
//! base_url's own path and query survive joining.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::inspector::Exchange;

use crate::common;

mod base_url;
mod echoes;

/// A destination that echoes a credential header everywhere it can, and (for OAuth2)
/// a token endpoint that issues a new access token on each call.
#[derive(Clone, Default)]
struct Echo {
    /// The request header whose value is echoed (lower-case).
    header: &'static str,
    /// Answer the first request 401, so that the credentials are renewed.
    expire_first: bool,
    /// Every request's path and query, and the credential it carried.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    /// Access tokens issued so far.
    issued: Arc<Mutex<Vec<String>>>,
    /// Quote the credential in per-record errors with every character JSON-escaped
    /// (`\u0074...`): no byte of the body is the secret, but the connector reads it back.
    disguise: bool,
    /// Answer 403, quoting the credential JSON-escaped in the error that stops the run.
    forbid: bool,
}

impl Echo {
    /// A destination echoing the request header `header` (lower-case).
    fn of(header: &'static str) -> Echo {
        Echo {
            header,
            ..Echo::default()
        }
    }
}

/// `text` as JSON string content with every character written as a `\u` escape.
fn unicode_escaped(text: &str) -> String {
    text.encode_utf16().map(|u| format!("\\u{u:04x}")).collect()
}

fn encodings(credential: &str) -> (String, String) {
    (
        STANDARD.encode(credential),
        percent_encoding::utf8_percent_encode(credential, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    )
}

async fn records(State(echo): State<Echo>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let credential = headers
        .get(echo.header)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let first = {
        let mut seen = echo.seen.lock().unwrap();
        seen.push((uri.to_string(), credential.clone()));
        seen.len() == 1
    };
    let (b64, pct) = encodings(&credential);
    // Every token issued so far, the current one included: a destination that quotes an
    // older credential too.
    let previous = echo.issued.lock().unwrap().join(" ");
    let echo_headers = [
        ("x-echo", credential.clone()),
        ("x-echo-encoded", format!("b64={b64}; pct={pct}")),
        (
            "www-authenticate",
            format!("Bearer error=\"invalid_token\", token=\"{credential}\" old=\"{previous}\""),
        ),
    ];
    if echo.expire_first && first {
        let body = json!({"error": {"code": "SESSION_EXPIRED", "message": format!("session {credential} expired")}});
        return (StatusCode::UNAUTHORIZED, echo_headers, body.to_string()).into_response();
    }
    if echo.forbid {
        let body = json!({"error": {"code": "FORBIDDEN", "message": "token @@ is not allowed"}})
            .to_string()
            .replace("@@", &unicode_escaped(&credential));
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    let batch: Vec<Value> = serde_json::from_slice(&body).unwrap();
    if echo.disguise {
        let error =
            json!({"error": {"code": "@@", "message": "credential @@ refused", "fields": ["@@"]}});
        let results: Vec<Value> = (0..batch.len()).map(|_| error.clone()).collect();
        let body = json!({ "results": results })
            .to_string()
            .replace("@@", &unicode_escaped(&credential));
        return (StatusCode::OK, body).into_response();
    }
    let results: Vec<Value> = (0..batch.len())
        .map(|i| {
            if i == 0 {
                json!({"id": "d-1"})
            } else {
                json!({"error": {
                    "code": credential,
                    "message": format!("credential {credential} refused (b64 {b64}, pct {pct}, before: {previous})"),
                    "fields": [credential, b64, pct],
                }})
            }
        })
        .collect();
    let body =
        json!({"results": results, "echo": credential, "raw": format!("{credential}|{b64}|{pct}")});
    (StatusCode::OK, echo_headers, body.to_string()).into_response()
}

async fn token(State(echo): State<Echo>) -> Response {
    let mut issued = echo.issued.lock().unwrap();
    let access = format!("acc-{}-Echo5ecretAccessToken", issued.len() + 1);
    issued.push(access.clone());
    let body = json!({"access_token": access, "token_type": "bearer", "expires_in": 3600});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A token endpoint that refuses, quoting what it was sent (a form body).
async fn refusing_token(body: String) -> Response {
    let form: Vec<(String, String)> = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect();
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (secret, refresh) = (get("client_secret"), get("refresh_token"));
    let body = json!({
        "error": format!("invalid_client:{secret}"),
        "error_description": format!("refresh token {refresh} ({}) unknown for secret {}", STANDARD.encode(&refresh), encodings(&secret).1),
    });
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn serve(echo: Echo) -> String {
    let app = Router::new()
        .route("/oauth2/token", axum::routing::post(token))
        .route("/oauth2/refuse", axum::routing::post(refusing_token))
        .fallback(records)
        .with_state(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn five_records() -> Vec<Value> {
    (0..5)
        .map(|i| json!({"id": format!("r{i}"), "email": format!("r{i}@example.com")}))
        .collect()
}

/// The REST connector reading per-record answers.
const PER_RECORD: &str =
    r#"{ path = "/v1/records", results_pointer = "/results", id_field = "id" }"#;

/// Five records to `echo`, served on a port of its own, authenticated with `auth` (an
/// inline table, in which `{base_url}` is the destination's origin).
async fn echoed(echo: &Echo, auth: &str) -> (String, common::Setup) {
    let base_url = serve(echo.clone()).await;
    let setup = common::Scenario::rest(&base_url)
        .records(five_records())
        .settings(PER_RECORD)
        .sync(&format!("auth = {}", auth.replace("{base_url}", &base_url)))
        .setup();
    (base_url, setup)
}

/// No form of any of `secrets` is in `bytes`.
fn assert_absent(what: &str, bytes: &[u8], secrets: &[String]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in secrets {
        let (b64, pct) = encodings(secret);
        for form in [secret, &b64, &pct, &unicode_escaped(secret)] {
            assert!(
                !text.contains(form.as_str()),
                "a credential ({form}) leaked into {what}: {text}"
            );
        }
    }
}

/// Runs sync `s` of `setup` through the binary, then reads it back every way an operator
/// can, and checks that no form of `secrets` is anywhere, the state directory included.
/// Returns the ledger and inspector views.
async fn run_and_look(
    setup: &common::Setup,
    env: &[(&str, &str)],
    secrets: &[String],
) -> (Value, Vec<Value>, Vec<Exchange>) {
    let config = setup.config_path();
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "trace"));
    let run = common::sluice(&["run", "--json"], &config, &env).await;
    let summary: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&run.stderr)));
    let list = common::sluice(&["ledger", "list", "--sync", "s", "--json"], &config, &[]).await;
    let inspect = common::sluice(
        &["inspect", "--sync", "s", "--json", "--limit", "100"],
        &config,
        &[],
    )
    .await;
    let human = common::sluice(&["inspect", "--sync", "s"], &config, &[]).await;
    let runs = common::sluice(&["runs", "--json"], &config, &[]).await;
    for (what, bytes) in [
        ("run stdout", &run.stdout),
        ("run stderr (trace logs)", &run.stderr),
        ("ledger list --json", &list.stdout),
        ("inspect --json", &inspect.stdout),
        ("inspect", &human.stdout),
        ("runs --json", &runs.stdout),
    ] {
        assert_absent(what, bytes, secrets);
    }
    let stored = common::state::everything_stored(&setup.config).await;
    assert!(
        stored.iter().any(|(_, bytes)| !bytes.is_empty()),
        "nothing stored for {}",
        setup.config.state_dir.display()
    );
    for (what, bytes) in stored {
        assert_absent(&what, &bytes, secrets);
    }
    let ledger = common::json_lines(&String::from_utf8(list.stdout).unwrap());
    let exchanges = String::from_utf8(inspect.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, ledger, exchanges)
}

/// The echoed credential arrived in the failures as `[redacted]`: the echo happened, and
/// was scrubbed before the connector read it.
fn assert_scrubbed_failures(summary: &Value, ledger: &[Value]) {
    assert_eq!(
        (&summary["delivered"], &summary["rejected"]),
        (&json!(1), &json!(4)),
        "{summary}"
    );
    assert_eq!(ledger.len(), 5);
    for row in ledger {
        if row["key"] == "r0" {
            assert_eq!(row["status"], "delivered");
            continue;
        }
        assert_eq!(row["status"], "rejected", "{row}");
        assert_eq!(row["code"], "[redacted]", "{row}");
        assert_eq!(
            row["fields"],
            json!(["[redacted]", "[redacted]", "[redacted]"]),
            "{row}"
        );
        let message = row["message"].as_str().unwrap();
        assert!(
            message.starts_with("credential [redacted] refused (b64 [redacted], pct [redacted]"),
            "{message}"
        );
    }
}

fn assert_scrubbed_exchange(exchange: &Exchange) {
    let header = |name: &str| {
        exchange
            .response_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-echo"), Some("[redacted]"));
    assert_eq!(
        header("x-echo-encoded"),
        Some("b64=[redacted]; pct=[redacted]")
    );
    assert!(
        exchange
            .response_body
            .contains("\"raw\":\"[redacted]|[redacted]|[redacted]\""),
        "{}",
        exchange.response_body
    );
}
