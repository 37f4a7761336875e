//! Credentials that are missing or refused are named before or once, never per batch.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_named_before_any_sync_runs() {
    let dest = common::accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let oauth2 = "auth = { oauth2 = { token_url = \"http://127.0.0.1:9/token\", client_id_env = \"OPERATOR_CLIENT_ID\", client_secret_env = \"OPERATOR_CLIENT_SECRET\", refresh_token_env = \"OPERATOR_REFRESH\" } }";
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        "builtin:rest",
        &[
            ("open", &common::contacts_jsonl("a", 3), ACCEPT),
            (
                "bearer",
                &common::contacts_jsonl("b", 3),
                &format!("{ACCEPT}\nauth = {{ bearer_env = \"OPERATOR_UNSET_TOKEN\" }}"),
            ),
            (
                "keyed",
                &common::contacts_jsonl("c", 3),
                &format!(
                    "{ACCEPT}\nauth = {{ header = \"X-Api-Key\", value_env = \"OPERATOR_API_KEY\" }}"
                ),
            ),
            (
                "oauth",
                &common::contacts_jsonl("d", 3),
                &format!("{ACCEPT}\n{oauth2}"),
            ),
        ],
        "",
    );
    let env = [
        ("OPERATOR_API_KEY", "key"),
        ("OPERATOR_CLIENT_ID", ""),
        ("OPERATOR_CLIENT_SECRET", "secret"),
    ];
    let problems = [
        "sync `bearer`: environment variable `OPERATOR_UNSET_TOKEN` (auth.bearer_env) is not set",
        "sync `oauth`: environment variable `OPERATOR_CLIENT_ID` (auth.oauth2.client_id_env) is empty",
        "sync `oauth`: environment variable `OPERATOR_REFRESH` (auth.oauth2.refresh_token_env) is not set",
    ];
    let output = common::sluice(&["run"], &config, &env).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Exit code 6: missing credentials (docs/cli.md).
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    for problem in problems {
        assert!(stderr.contains(problem), "{problem}: {stderr}");
    }
    assert!(!stderr.contains("keyed"), "{stderr}");
    assert_eq!(dest.stats().requests, 0, "no sync ran, not even `open`");

    let output = common::sluice(&["retry", "--sync", "bearer"], &config, &env).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains(problems[0]), "{stderr}");

    let serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--metrics-addr", "127.0.0.1:0", "--config"])
        .arg(&config)
        .envs(env)
        .kill_on_drop(true)
        .output();
    let serve = tokio::time::timeout(Duration::from_secs(30), serve)
        .await
        .expect("serve refuses at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert_eq!(serve.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains(problems[1]), "{stderr}");

    // The read-only commands need no credentials.
    common::sluice_ok(&["ledger", "list", "--sync", "bearer"], &config, &[]).await;
    assert!(runs(&config).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_cannot_authenticate_is_named_once() {
    let dest = common::accepting().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let token_url = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let (_dir, config) = one_sync(
        &dest,
        &common::contacts_jsonl("a", 3),
        &format!(
            "{ACCEPT}\nauth = {{ oauth2 = {{ token_url = \"{token_url}\", client_id_env = \"OPERATOR_ID_2\", client_secret_env = \"OPERATOR_SECRET_2\", refresh_token_env = \"OPERATOR_REFRESH_2\" }} }}"
        ),
    );
    let env = [
        ("OPERATOR_ID_2", "id"),
        ("OPERATOR_SECRET_2", "secret"),
        ("OPERATOR_REFRESH_2", "refresh"),
    ];
    let output = common::sluice(&["run"], &config, &env).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: sync `s`: cannot authenticate: OAuth2 token refresh"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("sync `s`").count(), 1, "{stderr}");
    assert_eq!(dest.stats().requests, 0);
}
