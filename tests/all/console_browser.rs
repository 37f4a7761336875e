//! The console in a real browser: headless Chromium driven through chromedriver
//! (WebDriver). The person on call signs in, opens a sync with failures, filters by code,
//! opens a record, retries it once the destination is back and sees it delivered (on the
//! page and at the destination), then resolves another with a note. Screenshots of each
//! page go to `<target>/tmp/console-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`: skipped without them, except under CI
//! (`CI=true`), where the test fails.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use sluice::config::ConsoleConfig;
use sluice::console::Console;
use sluice_sim::faults::Faults;
use sluice_sim::rest::{self, RestConfig, RestMode};

use crate::common::{self, Ran, Scenario};

const OPERATOR: &str = "operator-token-for-the-browser-test";

/// chromedriver, or `None` (skip) when it is not installed outside CI.
fn chromedriver() -> Option<PathBuf> {
    let found = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "chromedriver is not installed (Debian's `chromium-driver`): CI must run this test"
            );
        }
        eprintln!("skipped: chromedriver is not installed");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a free port, and a WebDriver session of headless Chromium.
async fn browser(driver: &PathBuf) -> (tokio::process::Child, Client) {
    let port = free_port();
    let child = tokio::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let connected =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
        match connected {
            Ok(client) => return (child, client),
            Err(err) if std::time::Instant::now() > deadline => panic!("chromedriver: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Saves a screenshot of the page as `name`.png.
async fn screenshot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The text of the element `css` finds, once the page that has it is there (a click on
/// a form's button navigates: an element of the page before goes stale).
async fn text_of(client: &Client, css: &str) -> String {
    for _ in 0..100 {
        if let Ok(found) = client.find(Locator::Css(css)).await
            && let Ok(text) = found.text().await
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("`{css}` never showed");
}

/// Clicks what `css` finds, then waits until the page it leads to shows `then` (the
/// page's address may not change: a form posted back to the same page).
async fn click(client: &Client, css: &str, then: &str) {
    client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for _ in 0..200 {
        if client.find(Locator::Css(then)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("clicking `{css}` never led to `{then}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_person_on_call_retries_a_record_and_resolves_another_in_a_browser() {
    let Some(driver) = chromedriver() else { return };
    common::set_env("CONSOLE_BROWSER_TOKEN", OPERATOR);
    // The destination is down for the first run: every record stays pending.
    let port = free_port();
    let mut records = common::contacts(5);
    records[3]["email"] = json!("<b>bold</b>");
    let ran = Scenario::rest(&format!("http://127.0.0.1:{port}"))
        .settings("{ path = \"/v1/records\", results_pointer = \"/results\" }")
        .records(records)
        .retry("max_attempts = 1")
        .run()
        .await;
    assert_eq!(ran.summary().pending, 5);
    // Then it is back.
    let dest = rest::start(RestConfig {
        mode: RestMode::PerRecord,
        faults: Faults::default(),
        port,
        ..RestConfig::default()
    })
    .await
    .unwrap();
    let Ran { host, setup, .. } = ran;
    let mut config = setup.config.clone();
    config.console = Some(ConsoleConfig {
        token_env: "CONSOLE_BROWSER_TOKEN".into(),
        read_only_token_env: None,
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let console = Console::new(Arc::new(host), Arc::new(config), stop.clone()).unwrap();
    let base = format!(
        "http://{}",
        console.serve("127.0.0.1:0".parse().unwrap()).await.unwrap()
    );
    let (_driver, client) = browser(&driver).await;

    // Sign in.
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/login")
    );
    screenshot(&client, "1-sign-in").await;
    type_into(&client, "input[name=name]", "ann").await;
    type_into(&client, "input[name=token]", OPERATOR).await;
    click(&client, "#sign-in", "a[href='/syncs/s/failures']").await;
    screenshot(&client, "2-syncs").await;

    // The sync with failures, filtered by their code.
    click(&client, "a[href='/syncs/s/failures']", "a.code").await;
    click(
        &client,
        "a.code",
        "input[name=code][value=CONNECTION_FAILED]",
    )
    .await;
    let url = client.current_url().await.unwrap();
    assert!(url.query().unwrap_or_default().contains("code="), "{url}");
    screenshot(&client, "3-failures-by-code").await;

    // A record: retried now that the destination is back, delivered on the page.
    click(
        &client,
        "a.record[href='/syncs/s/records/c0000']",
        "#status",
    )
    .await;
    assert_eq!(text_of(&client, "#status").await, "pending");
    screenshot(&client, "4-record").await;
    click(&client, "#retry", "p.note").await;
    assert_eq!(text_of(&client, "#status").await, "delivered");
    assert!(
        text_of(&client, "p.note").await.contains("1 delivered"),
        "the page says what the retry did"
    );
    let actions = text_of(&client, "#actions").await;
    assert!(
        actions.contains("ann") && actions.contains("retry"),
        "{actions}"
    );
    screenshot(&client, "5-record-delivered").await;
    assert!(
        dest.stored().contains_key("c0000"),
        "at the destination too"
    );

    // Another, resolved with a note; its markup shown as text.
    client
        .goto(&format!("{base}/syncs/s/records/c0003"))
        .await
        .unwrap();
    assert!(text_of(&client, "#payload").await.contains("<b>bold</b>"));
    type_into(&client, "input[name=by]", "ann").await;
    type_into(
        &client,
        "input[name=note]",
        "a test record, not for the CRM",
    )
    .await;
    click(&client, "#resolve", "#resolution").await;
    assert_eq!(text_of(&client, "#status").await, "resolved");
    assert!(
        text_of(&client, "#resolution")
            .await
            .contains("a test record, not for the CRM")
    );
    screenshot(&client, "6-record-resolved").await;

    // Run now, from the syncs page: the pending records go.
    client.goto(&format!("{base}/")).await.unwrap();
    click(&client, "button.run-now", "h1").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while dest.stored().len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.refresh().await.unwrap();
    screenshot(&client, "7-syncs-after-run").await;

    // The runs: the first (the destination down), the retry, the run from the page.
    click(&client, "a.runs", "#chart").await;
    let rows = client.find_all(Locator::Css("table tr")).await.unwrap();
    assert_eq!(rows.len(), 1 + 3, "a header and three runs");
    assert_eq!(
        client
            .find_all(Locator::Css("#chart g"))
            .await
            .unwrap()
            .len(),
        3
    );
    screenshot(&client, "8-runs").await;
    client.close().await.unwrap();
    stop.cancel();
}

/// Types `text` into the field `css` names.
async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}
