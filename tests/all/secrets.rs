//! No secret leaks: a destination that echoes the credentials it was sent (into error
//! codes, messages, field lists, response headers and bodies, as is and in base64 or
//! percent-encoded) never gets them printed or stored; credentials in base_url are refused;
//! base_url's own path and query survive joining.

use std::path::{Path, PathBuf};
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

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// No form of any of `secrets` is in `bytes`.
fn assert_absent(what: &str, bytes: &[u8], secrets: &[String]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in secrets {
        let (b64, pct) = encodings(secret);
        for form in [secret, &b64, &pct] {
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
    let config = setup.dir.path().join("sluice.toml");
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
    let state = setup.config.state_dir.clone();
    let stored = files(&state);
    assert!(!stored.is_empty(), "nothing under {}", state.display());
    for file in stored {
        assert_absent(
            &file.display().to_string(),
            &std::fs::read(&file).unwrap(),
            secrets,
        );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_bearer_token_is_printed_and_stored_nowhere() {
    let echo = Echo {
        header: "authorization",
        ..Echo::default()
    };
    let token = "tok-Echo-5ecret-0123456789/abc+Z";
    let (_, setup) = echoed(&echo, "{ bearer_env = \"SECRETS_ECHO_BEARER\" }").await;
    let secrets = [token.to_string(), format!("Bearer {token}")];
    let (summary, ledger, exchanges) =
        run_and_look(&setup, &[("SECRETS_ECHO_BEARER", token)], &secrets).await;
    assert_eq!(summary["outcome"], "completed", "{summary}");
    assert_scrubbed_failures(&summary, &ledger);
    assert_eq!(exchanges.len(), 1);
    assert_scrubbed_exchange(&exchanges[0]);
    // The destination did get the token.
    assert_eq!(
        echo.seen.lock().unwrap().as_slice(),
        [("/v1/records".to_string(), format!("Bearer {token}"))]
    );
}

/// The transport cannot see a token hidden in JSON escapes, but the connector decodes it
/// into its verdict: what a connector says is scrubbed too before anything stores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_connector_decodes_from_a_disguised_echo_is_stored_nowhere() {
    let echo = Echo {
        header: "authorization",
        disguise: true,
        ..Echo::default()
    };
    let token = "tok-Disguised-5ecret-0123456789";
    let (_, setup) = echoed(&echo, "{ bearer_env = \"SECRETS_DISGUISED_BEARER\" }").await;
    let secrets = [token.to_string()];
    let (summary, ledger, _) =
        run_and_look(&setup, &[("SECRETS_DISGUISED_BEARER", token)], &secrets).await;
    assert_eq!(summary["rejected"], json!(5), "{summary}");
    for row in &ledger {
        assert_eq!(row["status"], "rejected", "{row}");
        // The connector read the escapes back into the token, and the host took it out.
        assert_eq!(
            (&row["code"], &row["message"], &row["fields"]),
            (
                &json!("[redacted]"),
                &json!("credential [redacted] refused"),
                &json!(["[redacted]"])
            ),
            "{row}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_api_key_is_printed_and_stored_nowhere() {
    let echo = Echo {
        header: "x-tenant-credential",
        ..Echo::default()
    };
    let key = "key_Echo5ecret:0123456789";
    let (_, setup) = echoed(
        &echo,
        "{ header = \"X-Tenant-Credential\", value_env = \"SECRETS_ECHO_KEY\" }",
    )
    .await;
    let (summary, ledger, exchanges) =
        run_and_look(&setup, &[("SECRETS_ECHO_KEY", key)], &[key.to_string()]).await;
    assert_eq!(summary["outcome"], "completed", "{summary}");
    assert_scrubbed_failures(&summary, &ledger);
    assert_eq!(exchanges.len(), 1);
    assert_scrubbed_exchange(&exchanges[0]);
    assert_eq!(echo.seen.lock().unwrap()[0].1, key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_and_earlier_oauth2_tokens_and_client_secrets_are_scrubbed() {
    let echo = Echo {
        header: "authorization",
        expire_first: true,
        ..Echo::default()
    };
    let (client_secret, refresh) = ("client-Echo5ecret-42", "refresh-Echo5ecret-42");
    let (_, setup) = echoed(
        &echo,
        "{ oauth2 = { token_url = \"{base_url}/oauth2/token\", client_id_env = \"SECRETS_ECHO_ID\", client_secret_env = \"SECRETS_ECHO_SECRET\", refresh_token_env = \"SECRETS_ECHO_REFRESH\" } }",
    )
    .await;
    let secrets = [
        client_secret.to_string(),
        refresh.to_string(),
        "acc-1-Echo5ecretAccessToken".to_string(),
        "acc-2-Echo5ecretAccessToken".to_string(),
    ];
    let (summary, ledger, exchanges) = run_and_look(
        &setup,
        &[
            ("SECRETS_ECHO_ID", "client-id"),
            ("SECRETS_ECHO_SECRET", client_secret),
            ("SECRETS_ECHO_REFRESH", refresh),
        ],
        &secrets,
    )
    .await;
    assert_eq!(summary["auth_renewals"], 1, "{summary}");
    assert_scrubbed_failures(&summary, &ledger);
    // The second request carried the renewed token, and its answer quoted both.
    let seen = echo.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>(),
        [
            "Bearer acc-1-Echo5ecretAccessToken",
            "Bearer acc-2-Echo5ecretAccessToken"
        ]
    );
    assert_eq!(exchanges.len(), 2);
    assert_scrubbed_exchange(&exchanges[0]);
    let old = exchanges[0]
        .response_headers
        .iter()
        .find(|(k, _)| k == "www-authenticate")
        .unwrap();
    assert_eq!(
        old.1,
        "Bearer error=\"invalid_token\", token=\"[redacted]\" old=\"[redacted] [redacted]\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_quoting_the_client_secret_is_scrubbed_from_the_error() {
    let base_url = serve(Echo::default()).await;
    let (client_secret, refresh) = ("client Echo5ecret/43", "refresh-Echo5ecret-43");
    let setup = common::Scenario::rest(&base_url)
        .records(five_records())
        .sync(&format!(
            "auth = {{ oauth2 = {{ token_url = \"{base_url}/oauth2/refuse\", client_id_env = \"SECRETS_REFUSE_ID\", client_secret_env = \"SECRETS_REFUSE_SECRET\", refresh_token_env = \"SECRETS_REFUSE_REFRESH\" }} }}"
        ))
        .setup();
    let config = setup.dir.path().join("sluice.toml");
    let run = common::sluice(
        &["run", "--json"],
        &config,
        &[
            ("SECRETS_REFUSE_ID", "client-id"),
            ("SECRETS_REFUSE_SECRET", client_secret),
            ("SECRETS_REFUSE_REFRESH", refresh),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    assert!(!run.status.success());
    let runs = common::sluice(&["runs", "--json"], &config, &[]).await;
    let secrets = [client_secret.to_string(), refresh.to_string()];
    for (what, bytes) in [
        ("run stdout", &run.stdout),
        ("run stderr", &run.stderr),
        ("runs --json", &runs.stdout),
    ] {
        assert_absent(what, bytes, &secrets);
    }
    let history = common::json_lines(&String::from_utf8(runs.stdout).unwrap());
    let error = history[0]["error"].as_str().unwrap();
    assert!(
        error.contains("OAuth2 token refresh at")
            && error.contains("the server answered `invalid_client:[redacted]`: refresh token [redacted] ([redacted]) unknown for secret [redacted]"),
        "{error}"
    );
}

/// The config's error for `base_url = "{url}"`.
fn base_url_error(url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.jsonl"), "{\"id\": \"1\"}\n").unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            "[connectors.c]\ncomponent = \"builtin:rest\"\n[[sync]]\nname = \"s\"\nconnector = \"c\"\nsource = {{ jsonl = \"data.jsonl\", key = \"id\" }}\nbase_url = \"{url}\"\nsettings = {{ path = \"/v1\" }}\n"
        ),
    )
    .unwrap();
    format!(
        "{:#}",
        Config::load(&path).expect_err("the config must be refused")
    )
}

#[test]
fn credentials_in_base_url_are_refused_without_being_shown() {
    let cases = [
        (
            "https://svc-user:Pa55-w0rd-xyz@api.example.com/v1",
            "`user:password@`",
        ),
        ("https://svc-user@api.example.com/v1", "`user:password@`"),
        (
            "https://api.example.com/v1?api_key=Pa55-w0rd-xyz",
            "`api_key`",
        ),
        (
            "https://api.example.com/v1?tenant=acme&API-KEY=Pa55-w0rd-xyz",
            "`API-KEY`",
        ),
        (
            "https://api.example.com/v1?Access_Token=Pa55-w0rd-xyz",
            "`Access_Token`",
        ),
    ];
    let mut cases: Vec<(String, String)> = cases
        .iter()
        .map(|(u, w)| (u.to_string(), w.to_string()))
        .collect();
    for name in [
        "token",
        "key",
        "apikey",
        "secret",
        "password",
        "sig",
        "signature",
    ] {
        cases.push((
            format!("https://api.example.com/v1?page=1&{name}=Pa55-w0rd-xyz"),
            format!("the query parameter `{name}`"),
        ));
    }
    for (url, names) in cases {
        let error = base_url_error(&url);
        assert!(
            error.contains("base_url:") && error.contains(&names) && error.contains("`auth`"),
            "{url}: {error}"
        );
        assert!(
            !error.contains("Pa55-w0rd-xyz") && !error.contains("svc-user"),
            "{url}: the error shows the credential: {error}"
        );
    }
    // Unparseable, still not shown.
    let error = base_url_error("https://svc-user:Pa55-w0rd-xyz@ bad host/v1?key=Pa55-w0rd-xyz");
    assert!(error.contains("not a URL"), "{error}");
    assert!(
        !error.contains("Pa55") && !error.contains("svc-user"),
        "{error}"
    );
}

#[test]
fn a_fragment_in_base_url_is_refused_and_a_plain_query_is_kept() {
    let error = base_url_error("https://api.example.com/v1#section");
    assert!(
        error.contains("base_url:") && error.contains("fragment"),
        "{error}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.jsonl"), "{\"id\": \"1\"}\n").unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(
        &path,
        "[connectors.c]\ncomponent = \"builtin:rest\"\n[[sync]]\nname = \"s\"\nconnector = \"c\"\nsource = { jsonl = \"data.jsonl\", key = \"id\" }\nbase_url = \"https://api.example.com/v1?tenant=acme&page_key_hint=x\"\nsettings = { path = \"/v1\" }\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config.sync("s").unwrap().base_url.as_str(),
        "https://api.example.com/v1?tenant=acme&page_key_hint=x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_urls_path_and_query_reach_the_destination_and_the_inspector_hides_keys() {
    let echo = Echo {
        header: "authorization",
        ..Echo::default()
    };
    let base_url = serve(echo.clone()).await;
    // base_url with a path and a query.
    let setup = common::Scenario::rest(&base_url)
        .base_path("/api?tenant=acme")
        .records(five_records())
        .settings("{ path = \"/bulk?mode=upsert&sig=conn3ctor-sig-value\", results_pointer = \"/results\" }")
        .setup();
    let config = setup.dir.path().join("sluice.toml");
    let (report, fates) = common::run(&setup).await;
    assert_eq!(report.summary.delivered, 1);
    assert_eq!(fates.all().len(), 5);
    assert_eq!(
        echo.seen.lock().unwrap()[0].0,
        "/api/bulk?tenant=acme&mode=upsert&sig=conn3ctor-sig-value"
    );
    let inspect = common::sluice_ok(&["inspect", "--sync", "s", "--json"], &config, &[]).await;
    let exchange: Exchange = serde_json::from_str(inspect.lines().next().unwrap()).unwrap();
    assert_eq!(
        exchange.url,
        format!("{base_url}/api/bulk?tenant=acme&mode=upsert&sig=[redacted]")
    );
}
