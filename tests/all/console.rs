//! The console's JSON API over loopback: no token, no answer; the read-only token may look
//! but not act; the operator's retries and resolves through the CLI's own paths; the
//! sync's credentials appear in no answer.

use std::sync::Arc;

use serde_json::{Value, json};
use sluice::config::ConsoleConfig;
use sluice::console::Console;

use crate::common::{self, Ran, Scenario};

const OPERATOR: &str = "operator-token-for-the-console-test";
const READER: &str = "reader-token-for-the-console-test";
const SYNC_TOKEN: &str = "the-sync-bearer-token-never-shown";

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(!text.contains(SYNC_TOKEN), "{path}: {text}");
        (status, text)
    }

    async fn json(&self, path: &str, token: &str) -> Value {
        let (status, text) = self.call("GET", path, Some(token), None).await;
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// Three contacts, the second refused by the destination (its email is not one).
fn one_refused() -> Vec<Value> {
    let mut records = common::contacts(3);
    records[1]["email"] = json!("not an email");
    records
}

/// A sync of `records` run once against a destination that checks emails (with a bearer
/// token of its own, which no answer may show), then a console over its host with both
/// tokens: the destination, the console's base URL, what stops it, and the folder (kept
/// while the test runs).
async fn console_after_a_run(
    records: Vec<Value>,
) -> (
    sluice_sim::SimHandle,
    String,
    tokio_util::sync::CancellationToken,
    common::Setup,
) {
    common::set_env("CONSOLE_TEST_OPERATOR", OPERATOR);
    common::set_env("CONSOLE_TEST_READER", READER);
    common::set_env("CONSOLE_TEST_SYNC_TOKEN", SYNC_TOKEN);
    let dest = common::checking_emails().await;
    let ran = Scenario::rest(&dest.base_url())
        .settings("{ path = \"/v1/records\", results_pointer = \"/results\" }")
        .sync("auth = { bearer_env = \"CONSOLE_TEST_SYNC_TOKEN\" }")
        .records(records)
        .run()
        .await;
    let Ran { host, setup, .. } = ran;
    let mut config = setup.config.clone();
    config.console = Some(ConsoleConfig {
        token_env: "CONSOLE_TEST_OPERATOR".into(),
        read_only_token_env: Some("CONSOLE_TEST_READER".into()),
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let console = Console::new(Arc::new(host), Arc::new(config), stop.clone()).unwrap();
    let addr = console.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (dest, format!("http://{addr}"), stop, setup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_failures_to_a_reader_and_lets_only_the_operator_act() {
    let mut records = common::contacts(6);
    records[1]["email"] = json!("<script>alert(1)</script>");
    records[4]["email"] = json!("not an email");
    let (dest, base, stop, _setup) = console_after_a_run(records).await;
    let api = Api {
        client: reqwest::Client::new(),
        base,
    };
    let syncs = api.json("/api/v1/syncs", READER).await;
    assert_eq!(syncs["syncs"][0]["last_run"]["rejected"], 2);

    // No token, or a wrong one: nothing.
    for token in [None, Some("wrong-token-of-some-length")] {
        let (status, _) = api.call("GET", "/api/v1/syncs", token, None).await;
        assert_eq!(status, 401);
    }

    // The reader sees the syncs, the failures by code, a page, a record.
    let syncs = api.json("/api/v1/syncs", READER).await;
    assert_eq!(syncs["syncs"][0]["sync"], "s");
    assert_eq!(syncs["syncs"][0]["by_status"]["rejected"], 2);
    assert_eq!(syncs["syncs"][0]["last_run"]["delivered"], 4);
    let failures = api
        .json(
            "/api/v1/syncs/s/failures?code=INVALID_EMAIL_ADDRESS&per_page=1",
            READER,
        )
        .await;
    assert_eq!(
        (&failures["total"], &failures["by_code"][0]["records"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(failures["records"][0]["key"], "c0001");
    let page2 = api
        .json(
            "/api/v1/syncs/s/failures?code=INVALID_EMAIL_ADDRESS&per_page=1&page=2",
            READER,
        )
        .await;
    assert_eq!(page2["records"][0]["key"], "c0004");
    // Filters that make no sense are refused saying why; pages out of range are clamped.
    let (status, text) = api
        .call(
            "GET",
            "/api/v1/syncs/s/failures?status=bogus",
            Some(READER),
            None,
        )
        .await;
    assert!(status == 422 && text.contains("bogus"), "{status} {text}");
    let clamped = api
        .json("/api/v1/syncs/s/failures?page=0&per_page=100000", READER)
        .await;
    assert_eq!(
        (&clamped["page"], &clamped["per_page"]),
        (&json!(1), &json!(500))
    );
    let searched = api.json("/api/v1/syncs/s/failures?q=0004", READER).await;
    assert_eq!(searched["total"], 1);
    let record = api.json("/api/v1/syncs/s/records/c0001", READER).await;
    assert_eq!(record["status"], "rejected");
    assert!(
        record["payload"].as_str().unwrap().contains("<script>"),
        "{record}"
    );
    assert!(
        !record["exchanges"].as_array().unwrap().is_empty(),
        "{record}"
    );
    let (status, _) = api
        .call("GET", "/api/v1/syncs/s/records/nope", Some(READER), None)
        .await;
    assert_eq!(status, 404);

    // The reader may not act.
    let retry = json!({"keys": ["c0001"]});
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/syncs/s/retry",
            Some(READER),
            Some(retry.clone()),
        )
        .await;
    assert_eq!(status, 403);
    let resolve = json!({"by": "ann", "note": "a test address"});
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/syncs/s/records/c0001/resolve",
            Some(READER),
            Some(resolve.clone()),
        )
        .await;
    assert_eq!(status, 403);

    // The operator retries one (still refused: its data did not change) and resolves it.
    let requests = dest.requests().len();
    let (status, text) = api
        .call("POST", "/api/v1/syncs/s/retry", Some(OPERATOR), Some(retry))
        .await;
    assert_eq!(status, 200, "{text}");
    let retried: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            &retried["selection"]["selected"],
            &retried["run"]["rejected"]
        ),
        (&json!(1), &json!(1))
    );
    assert_eq!(
        dest.requests().len(),
        requests + 1,
        "one request carried it"
    );
    let (status, text) = api
        .call(
            "POST",
            "/api/v1/syncs/s/records/c0001/resolve",
            Some(OPERATOR),
            Some(resolve),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let resolved: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            &resolved["status"],
            &resolved["resolution"]["by"],
            &resolved["resolution"]["why"]
        ),
        (&json!("resolved"), &json!("ann"), &json!("a test address"))
    );
    let failures = api.json("/api/v1/syncs/s/failures", READER).await;
    assert_eq!(failures["total"], 1, "{failures}");
    // Both actions are kept, newest first, and shown with the record they named.
    let actions: Vec<(&str, &str)> = failures["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["by"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("resolve", "ann"), ("retry", "the API")]);
    let record = api.json("/api/v1/syncs/s/records/c0001", READER).await;
    assert_eq!(record["actions"].as_array().unwrap().len(), 2, "{record}");

    // Run now: started in the background, its end kept as an action.
    let (status, _) = api
        .call("POST", "/api/v1/syncs/s/run", Some(READER), None)
        .await;
    assert_eq!(status, 403);
    let (status, text) = api
        .call(
            "POST",
            "/api/v1/syncs/s/run",
            Some(OPERATOR),
            Some(json!({"by": "bob"})),
        )
        .await;
    assert_eq!(status, 202, "{text}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let failures = api.json("/api/v1/syncs/s/failures", READER).await;
        let newest = failures["actions"][0].clone();
        if newest["result"].as_str().unwrap().starts_with("completed") {
            assert_eq!(
                (&newest["action"], &newest["by"]),
                (&json!("run"), &json!("bob"))
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{failures}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let syncs = api.json("/api/v1/syncs", READER).await;
    assert_eq!(syncs["syncs"][0]["running"], Value::Null);
    let runs = api.json("/api/v1/syncs/s/runs", READER).await;
    let outcomes: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.len(),
        3,
        "the first run, the retry and the run now: {runs}"
    );
    assert_eq!(runs["bars"].as_array().unwrap().len(), 3);
    assert_eq!(syncs["syncs"][0]["last_run"]["read"], 6);
    stop.cancel();
}

#[tokio::test]
async fn the_console_needs_its_table_and_a_token_in_the_environment() {
    let dest = common::accepting().await;
    let setup = Scenario::contacts_to(&dest.base_url(), 1).setup();
    let host = Arc::new(sluice::sync::Host::new(&setup.config).unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let err = Console::new(host.clone(), Arc::new(setup.config.clone()), stop.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[console] token_env"), "{err}");
    let mut config = setup.config.clone();
    config.console = Some(ConsoleConfig {
        token_env: "CONSOLE_TEST_NEVER_SET".into(),
        read_only_token_env: None,
    });
    let err = format!(
        "{:#}",
        Console::new(host, Arc::new(config), stop).err().unwrap()
    );
    assert!(err.contains("`CONSOLE_TEST_NEVER_SET` is not set"), "{err}");
}

/// `sluice serve --console-addr` serves the API beside its schedule, and stops on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_serves_the_console_until_sigterm() {
    let dest = common::accepting().await;
    let setup = Scenario::contacts_to(&dest.base_url(), 3).setup();
    let mut text = std::fs::read_to_string(setup.config_path()).unwrap();
    text = text.replacen(
        "[connectors.c]",
        "[console]\ntoken_env = \"CONSOLE_SERVE_TOKEN\"\n\n[connectors.c]",
        1,
    );
    std::fs::write(setup.config_path(), text).unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (metrics, console) = (free(), free());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--metrics-addr", &metrics.to_string()])
        .args(["--console-addr", &console.to_string(), "--config"])
        .arg(setup.config_path())
        .env("CONSOLE_SERVE_TOKEN", OPERATOR)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{console}/api/v1/syncs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let answer = loop {
        let sent = client.get(&url).bearer_auth(OPERATOR).send().await;
        if let Ok(response) = sent {
            break response;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(answer.status(), 200);
    let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(body["syncs"][0]["sync"], "s");
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

/// A client that keeps no cookies and follows no redirects: the test reads both.
fn page_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in with `token`; the session cookie to send back.
async fn sign_in(client: &reqwest::Client, base: &str, token: &str) -> String {
    let response = client
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

/// GETs `path` with the session `cookie`: the status and the page.
async fn page(client: &reqwest::Client, base: &str, path: &str, cookie: &str) -> (u16, String) {
    let response = client
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert!(!text.contains(SYNC_TOKEN), "{path}: {text}");
    (status, text)
}

/// POSTs a form to `path` with the session `cookie`: the status and where it leads.
async fn submit(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    cookie: &str,
    form: &str,
) -> (u16, String) {
    let response = client
        .post(format!("{base}{path}"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location)
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[at..at + 32].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_need_a_session_escape_everything_and_check_csrf() {
    let mut records = common::contacts(4);
    records[1]["email"] = json!("<script>alert(1)</script>");
    let (_dest, base, stop, _setup) = console_after_a_run(records).await;
    let client = page_client();

    // Without a session: to the sign-in page; a wrong token signs nobody in.
    let (status, _) = page(&client, &base, "/", "").await;
    assert_eq!(status, 303);
    let (status, location) =
        submit(&client, &base, "/login", "", "token=wrong-but-long-enough").await;
    assert_eq!((status, location.as_str()), (303, "/login?failed=1"));

    // The reader: the syncs, the failures of a code, the record, escaped.
    let reader = sign_in(&client, &base, READER).await;
    let (status, html) = page(&client, &base, "/", &reader).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("/syncs/s/failures") && html.contains("read-only"),
        "{html}"
    );
    let (_, html) = page(
        &client,
        &base,
        "/syncs/s/failures?code=INVALID_EMAIL_ADDRESS",
        &reader,
    )
    .await;
    assert!(
        html.contains("c0001") && !html.contains("retry-selected"),
        "{html}"
    );
    let (_, html) = page(&client, &base, "/syncs/s/records/c0001", &reader).await;
    assert!(
        !html.contains("<script>alert"),
        "markup is shown as text: {html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{html}"
    );
    let csrf = csrf_of(&html);
    // A reader may not act, even with the session's CSRF token.
    let form = format!("csrf={csrf}&by=ann&note=x");
    let (status, _) = submit(
        &client,
        &base,
        "/syncs/s/records/c0001/resolve",
        &reader,
        &form,
    )
    .await;
    assert_eq!(status, 403);

    // The operator: without the CSRF token, refused; with it, resolved, on the page.
    let operator = sign_in(&client, &base, OPERATOR).await;
    let (_, html) = page(&client, &base, "/syncs/s/records/c0001", &operator).await;
    let csrf = csrf_of(&html);
    let (status, _) = submit(
        &client,
        &base,
        "/syncs/s/records/c0001/resolve",
        &operator,
        "by=ann&note=x",
    )
    .await;
    assert_eq!(status, 403, "no CSRF token");
    let form = format!("csrf={}&by=ann&note=a+test+address", csrf_of(&html));
    let stale = format!("csrf={}&by=ann&note=x", "0".repeat(32));
    let (status, _) = submit(
        &client,
        &base,
        "/syncs/s/records/c0001/resolve",
        &operator,
        &stale,
    )
    .await;
    assert_eq!(status, 403, "another session's token");
    let (status, location) = submit(
        &client,
        &base,
        "/syncs/s/records/c0001/resolve",
        &operator,
        &form,
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/syncs/s/records/c0001?message=resolved")
    );
    let (_, html) = page(&client, &base, &location, &operator).await;
    assert!(
        html.contains("by ann") && html.contains("a test address"),
        "{html}"
    );
    assert!(
        html.contains("What people did") && html.contains("resolved: a test address"),
        "{html}"
    );
    assert!(html.contains("class=\"resolved\""), "{html}");
    assert_eq!(csrf.len(), 32);

    // Signed out: the session is gone.
    let (status, _) = submit(
        &client,
        &base,
        "/logout",
        &operator,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(status, 303);
    let (status, _) = page(&client, &base, "/", &operator).await;
    assert_eq!(status, 303);
    stop.cancel();
}

/// A run whose future is dropped (a stop that does not wait) is no longer shown as going:
/// otherwise the console would show it running and refuse "run now" until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dropped_midway_is_not_shown_as_going() {
    // Every request waits 5 s: the run is surely going when it is dropped.
    let dest = common::rest_sim(
        sluice_sim::rest::RestMode::AcceptAll,
        sluice_sim::faults::Faults::slow(1, 5_000),
    )
    .await;
    let setup = Scenario::contacts_to(&dest.base_url(), 3).setup();
    let host = Arc::new(sluice::sync::Host::new(&setup.config).unwrap());
    let run = {
        let (host, config) = (host.clone(), setup.config.clone());
        tokio::spawn(async move { host.run(&config, "s", Default::default()).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dest.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the run never sent");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(host.running("s").is_some());
    run.abort();
    let _ = run.await;
    assert!(host.running("s").is_none());
}

/// A page far past the end, however large its number, shows the last page (as a page
/// below the first shows the first): no overflow, and a pager that never points past
/// the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_past_the_end_shows_the_last_page() {
    let mut records = common::contacts(6);
    for record in &mut records[1..] {
        record["email"] = json!("not an email");
    }
    let (_dest, base, stop, _setup) = console_after_a_run(records).await;
    let api = Api {
        client: reqwest::Client::new(),
        base: base.clone(),
    };
    // Five failures, two a page: the last page (3) holds the fifth alone.
    for page in ["4", "18446744073709551615"] {
        let path = format!("/api/v1/syncs/s/failures?per_page=2&page={page}");
        let last = api.json(&path, READER).await;
        assert_eq!(
            (&last["page"], &last["per_page"], &last["total"]),
            (&json!(3), &json!(2), &json!(5)),
            "{path}: {last}"
        );
        let keys: Vec<&str> = last["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["c0005"], "{path}");
    }
    let huge = api
        .json(
            "/api/v1/syncs/s/failures?per_page=18446744073709551615&page=18446744073709551615",
            READER,
        )
        .await;
    assert_eq!(
        (&huge["page"], &huge["per_page"], &huge["total"]),
        (&json!(1), &json!(500), &json!(5)),
        "{huge}"
    );
    assert_eq!(huge["records"].as_array().unwrap().len(), 5);
    // Nothing matches: the first page, empty.
    let none = api
        .json("/api/v1/syncs/s/failures?q=nothing&page=7", READER)
        .await;
    assert_eq!((&none["page"], &none["total"]), (&json!(1), &json!(0)));

    // The page: the last one (one of one), with no link to a page past it.
    let client = page_client();
    let reader = sign_in(&client, &base, READER).await;
    for page_number in ["9", "9223372036854775807", "18446744073709551615"] {
        let path = format!("/syncs/s/failures?page={page_number}");
        let (status, html) = page(&client, &base, &path, &reader).await;
        assert_eq!(status, 200, "{path}: {html}");
        assert!(html.contains("5 matching · page 1 of 1"), "{path}: {html}");
        assert!(
            !html.contains(">previous<") && !html.contains(">next<"),
            "{path}: {html}"
        );
        assert!(html.contains("c0005"), "{path}: {html}");
    }
    stop.cancel();
}

/// The value of the first `attr="..."` after `marker` in `html`, as written (entities and
/// all: what a browser would follow after decoding them is checked by the caller).
fn attribute_after<'a>(html: &'a str, marker: &str, attr: &str) -> &'a str {
    let from = html
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in {html}"));
    let rest = &html[from..];
    let start = rest.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
    let end = rest[start..].find('"').unwrap();
    &rest[start..start + end]
}

/// A key with a slash, a query's and a fragment's marks, a percent sign, a space and
/// markup: its link opens it, its resolve form resolves it, and the API reads it by the
/// encoded key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_a_slash_and_marks_is_linked_resolved_and_read_through_its_encoding() {
    const KEY: &str = "acct/12 3?#%<b>";
    const ENCODED: &str = "acct%2F12%203%3F%23%25%3Cb%3E";
    let mut records = common::contacts(3);
    records[1]["id"] = json!(KEY);
    records[1]["email"] = json!("not an email");
    let (_dest, base, stop, _setup) = console_after_a_run(records).await;
    let client = page_client();
    let operator = sign_in(&client, &base, OPERATOR).await;

    // The failures page links to the record, every mark of the key encoded.
    let (_, html) = page(&client, &base, "/syncs/s/failures", &operator).await;
    let link = attribute_after(&html, "class=\"record\"", "href");
    assert_eq!(link, format!("/syncs/s/records/{ENCODED}"));
    let (status, html) = page(&client, &base, link, &operator).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<td id=\"status\" class=\"rejected\">rejected"),
        "{html}"
    );
    assert!(html.contains("acct&#x2f;12 3?#%&lt;b&gt;"), "{html}");

    // Its resolve form posts to the record, and the record is resolved.
    let action = html
        .split("action=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|action| action.ends_with("/resolve"))
        .unwrap_or_else(|| panic!("no resolve form: {html}"));
    assert_eq!(action, format!("/syncs/s/records/{ENCODED}/resolve"));
    let form = format!("csrf={}&by=ann&note=a+test+account", csrf_of(&html));
    let (status, location) = submit(&client, &base, action, &operator, &form).await;
    assert_eq!(
        (status, location.as_str()),
        (
            303,
            format!("/syncs/s/records/{ENCODED}?message=resolved").as_str()
        )
    );
    let (status, html) = page(&client, &base, &location, &operator).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<td id=\"status\" class=\"resolved\">resolved"),
        "{html}"
    );

    // The API reads it by the same encoding.
    let api = Api {
        client: reqwest::Client::new(),
        base,
    };
    let record = api
        .json(&format!("/api/v1/syncs/s/records/{ENCODED}"), READER)
        .await;
    assert_eq!(
        (
            &record["key"],
            &record["status"],
            &record["resolution"]["by"]
        ),
        (&json!(KEY), &json!("resolved"), &json!("ann")),
        "{record}"
    );
    stop.cancel();
}

/// The API's answer to `method path` with `token`, a raw `body` and its `content_type`:
/// the status, the headers and the body as JSON (every answer of the API is JSON).
async fn raw_call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: {status} is not JSON: {text:?}"));
    (status, headers, value)
}

/// An error object's kind and message, checked to be the documented shape.
fn error_of(value: &Value) -> (&str, &str) {
    let error = &value["error"];
    match (error["kind"].as_str(), error["message"].as_str()) {
        (Some(kind), Some(message)) => (kind, message),
        _ => panic!("not an error object: {value}"),
    }
}

/// Every refusal of the API is its JSON error object with the documented status and kind:
/// no token, a reader acting (before its body is read), a body or a query string that does
/// not parse or has the wrong shape, a path that is not the API's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_in_json_with_the_documented_status_and_kind() {
    let records = one_refused();
    let (dest, base, stop, _setup) = console_after_a_run(records).await;
    let requests = dest.requests().len();
    let json = Some("application/json");
    let call = |method: &'static str,
                path: &'static str,
                token: Option<&'static str>,
                content_type: Option<&'static str>,
                body: &'static str| {
        let base = base.clone();
        async move { raw_call(&base, method, path, token, content_type, body).await }
    };

    // No token, a wrong one, one not sent as a bearer's.
    for token in [None, Some("wrong-token-of-some-length")] {
        let (status, headers, value) = call("GET", "/api/v1/syncs", token, None, "").await;
        assert_eq!(
            (status, error_of(&value).0),
            (401, "unauthorized"),
            "{value}"
        );
        assert_eq!(headers["www-authenticate"], "Bearer");
    }

    // A reader acting: refused for its token, whatever its body (none, not JSON, no
    // Content-Type).
    for (path, content_type, body) in [
        ("/api/v1/syncs/s/retry", None, r#"{"keys": ["c0001"]}"#),
        ("/api/v1/syncs/s/retry", json, "not json"),
        ("/api/v1/syncs/s/records/c0001/resolve", None, ""),
        ("/api/v1/syncs/s/run", None, ""),
    ] {
        let (status, _, value) = call("POST", path, Some(READER), content_type, body).await;
        assert_eq!(
            (status, error_of(&value).0),
            (403, "forbidden"),
            "{path}: {value}"
        );
    }

    // The operator's body: not JSON (400), without its Content-Type (415), of the wrong
    // shape (422, naming the field).
    let (status, _, value) = call(
        "POST",
        "/api/v1/syncs/s/retry",
        Some(OPERATOR),
        json,
        "{not json",
    )
    .await;
    assert_eq!((status, error_of(&value).0), (400, "request"), "{value}");
    let (status, _, value) = call(
        "POST",
        "/api/v1/syncs/s/retry",
        Some(OPERATOR),
        None,
        r#"{"keys": ["c0001"]}"#,
    )
    .await;
    assert_eq!((status, error_of(&value).0), (415, "request"), "{value}");
    assert!(error_of(&value).1.contains("application/json"), "{value}");
    for (path, body, field) in [
        ("/api/v1/syncs/s/retry", r#"{"keys": "c0001"}"#, "keys"),
        (
            "/api/v1/syncs/s/records/c0001/resolve",
            r#"{"note": "no by"}"#,
            "by",
        ),
        ("/api/v1/syncs/s/run", r#"{"by": 7}"#, "by"),
    ] {
        let (status, _, value) = call("POST", path, Some(OPERATOR), json, body).await;
        let (kind, message) = error_of(&value);
        assert_eq!((status, kind), (422, "request"), "{path}: {value}");
        assert!(message.contains(field), "{path}: {value}");
    }

    // A query string that does not parse: 400, naming the parameter.
    for (path, parameter) in [
        ("/api/v1/syncs/s/failures?page=abc", "page"),
        ("/api/v1/syncs/s/failures?per_page=-5", "per_page"),
    ] {
        let (status, _, value) = call("GET", path, Some(READER), None, "").await;
        let (kind, message) = error_of(&value);
        assert_eq!((status, kind), (400, "request"), "{path}: {value}");
        assert!(message.contains(parameter), "{path}: {value}");
    }

    // A path that is not the API's, or not with that method; a key that is not UTF-8.
    let (status, _, value) = call("GET", "/api/v1/nothing/here", Some(READER), None, "").await;
    assert_eq!((status, error_of(&value).0), (404, "not_found"), "{value}");
    let (status, _, value) = call("GET", "/api/v1/syncs/s/retry", Some(READER), None, "").await;
    assert_eq!((status, error_of(&value).0), (405, "request"), "{value}");
    let (status, _, value) =
        call("GET", "/api/v1/syncs/s/records/%FF", Some(READER), None, "").await;
    assert_eq!((status, error_of(&value).0), (400, "request"), "{value}");
    // What was refused did nothing.
    assert_eq!(dest.requests().len(), requests);
    let (status, _, value) = call("GET", "/api/v1/syncs/s/failures", Some(READER), None, "").await;
    assert_eq!(status, 200);
    assert_eq!(value["actions"], json!([]), "{value}");
    stop.cancel();
}

/// A retry naming both keys and a code is refused (a pass sends one or the other), and
/// nothing is kept as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_naming_keys_and_a_code_is_refused_and_not_kept() {
    let records = one_refused();
    let (dest, base, stop, _setup) = console_after_a_run(records).await;
    let requests = dest.requests().len();
    let (status, _, value) = raw_call(
        &base,
        "POST",
        "/api/v1/syncs/s/retry",
        Some(OPERATOR),
        Some("application/json"),
        r#"{"keys": ["c0001"], "code": "INVALID_EMAIL_ADDRESS"}"#,
    )
    .await;
    let (kind, message) = error_of(&value);
    assert_eq!((status, kind), (422, "failed"), "{value}");
    assert!(
        message.contains("keys") && message.contains("code") && message.contains("not both"),
        "{value}"
    );
    assert_eq!(dest.requests().len(), requests, "nothing was sent");
    let api = Api {
        client: reqwest::Client::new(),
        base,
    };
    let failures = api.json("/api/v1/syncs/s/failures", READER).await;
    assert_eq!(
        failures["actions"],
        json!([]),
        "nothing is kept: {failures}"
    );
    stop.cancel();
}

/// A note with control characters (a NUL, an escape) is kept as given and shown with each
/// of them visible, never written raw into the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_a_note_are_shown_visibly() {
    let records = one_refused();
    let (_dest, base, stop, _setup) = console_after_a_run(records).await;
    let client = page_client();
    let operator = sign_in(&client, &base, OPERATOR).await;
    let (_, html) = page(&client, &base, "/syncs/s/records/c0001", &operator).await;
    let form = format!("csrf={}&by=ann&note=a%00b%1Bc%0Ad", csrf_of(&html));
    let (status, location) = submit(
        &client,
        &base,
        "/syncs/s/records/c0001/resolve",
        &operator,
        &form,
    )
    .await;
    assert_eq!(status, 303);
    for path in [location.as_str(), "/syncs/s/failures"] {
        let (status, html) = page(&client, &base, path, &operator).await;
        assert_eq!(status, 200);
        assert!(
            !html.contains(['\0', '\u{1b}']),
            "{path}: a control character written raw: {html:?}"
        );
        assert!(
            html.contains("a\\u{0}b\\u{1b}c\nd"),
            "{path}: shown escaped, a line break kept: {html}"
        );
    }
    // The API answers the note as it was given (JSON escapes it).
    let api = Api {
        client: reqwest::Client::new(),
        base,
    };
    let record = api.json("/api/v1/syncs/s/records/c0001", READER).await;
    assert_eq!(record["resolution"]["why"], "a\u{0}b\u{1b}c\nd");
    stop.cancel();
}
