//! A destination that echoes the credential it was sent (bearer token, API key, OAuth2
//! tokens and client secret, as is, encoded or disguised) gets it printed and stored nowhere.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_bearer_token_is_printed_and_stored_nowhere() {
    let echo = Echo::of("authorization");
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

/// A token hidden in JSON escapes is found by the transport in the escapes, before the
/// connector could read it back (what a connector says is scrubbed once more anyway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_connector_decodes_from_a_disguised_echo_is_stored_nowhere() {
    let echo = Echo {
        disguise: true,
        ..Echo::of("authorization")
    };
    let token = "tok-Disguised-5ecret-0123456789";
    let (_, setup) = echoed(&echo, "{ bearer_env = \"SECRETS_DISGUISED_BEARER\" }").await;
    let secrets = [token.to_string()];
    let (summary, ledger, _) =
        run_and_look(&setup, &[("SECRETS_DISGUISED_BEARER", token)], &secrets).await;
    assert_eq!(summary["rejected"], json!(5), "{summary}");
    for row in &ledger {
        assert_eq!(row["status"], "rejected", "{row}");
        // The escapes were taken out whole, and the connector read `[redacted]`.
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

/// A run stopped by a fatal answer that quotes the token in JSON escapes: the stop is
/// logged (at every level), summarised, stored and shown without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_escaped_in_a_fatal_answer_is_logged_and_stored_nowhere() {
    let echo = Echo {
        forbid: true,
        ..Echo::of("authorization")
    };
    let token = "Plain/Token+Value0123456789abc";
    let (_, setup) = echoed(&echo, "{ bearer_env = \"SECRETS_FORBID_BEARER\" }").await;
    let secrets = [token.to_string()];
    let (summary, _, exchanges) =
        run_and_look(&setup, &[("SECRETS_FORBID_BEARER", token)], &secrets).await;
    assert_eq!(summary["outcome"], "failed", "{summary}");
    assert_eq!(
        summary["error"],
        "the destination failed fatally: FORBIDDEN: token [redacted] is not allowed",
        "{summary}"
    );
    assert_eq!(
        exchanges[0].response_body,
        r#"{"error":{"code":"FORBIDDEN","message":"token [redacted] is not allowed"}}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_api_key_is_printed_and_stored_nowhere() {
    let echo = Echo::of("x-tenant-credential");
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
        expire_first: true,
        ..Echo::of("authorization")
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
    let config = setup.config_path();
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
