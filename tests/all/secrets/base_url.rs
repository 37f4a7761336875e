//! Credentials in base_url are refused without being shown; its own path and query
//! survive joining and reach the destination.

use super::*;

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
    let echo = Echo::of("authorization");
    let base_url = serve(echo.clone()).await;
    // base_url with a path and a query.
    let setup = common::Scenario::rest(&base_url)
        .base_path("/api?tenant=acme")
        .records(five_records())
        .settings("{ path = \"/bulk?mode=upsert&sig=conn3ctor-sig-value\", results_pointer = \"/results\" }")
        .setup();
    let config = setup.config_path();
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
