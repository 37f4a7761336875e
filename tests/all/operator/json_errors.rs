//! With `--json`, an error is a JSON object on stdout (a stable `kind`, the message, and
//! the file, sync or key it concerns) and the exit code says its kind (docs/cli.md); a
//! run's stop is logged once, however many workers stop.

use super::*;

/// `sluice ARGS --config CONFIG`: the exit code, stdout as JSON lines, and stderr.
async fn json_run(args: &[&str], config: &Path) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let output = common::sluice(args, config, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (output.status.code(), lines, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_error_is_an_object_with_its_own_exit_code() {
    let dest = common::accepting().await;
    let (dir, config) = one_sync(&dest, &common::contacts_jsonl("a", 3), ACCEPT);

    // A config that does not parse.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "state_dir = \n").unwrap();
    let (code, lines, stderr) = json_run(&["run", "--json"], &bad).await;
    assert_eq!(code, Some(3), "{stderr}");
    let error = &lines[0]["error"];
    assert_eq!(error["kind"], "config");
    assert_eq!(error["file"], bad.display().to_string());
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("config file `"),
        "{error}"
    );
    assert!(
        stderr.starts_with("error: config file"),
        "people still read stderr: {stderr}"
    );

    // A sync that is not there, for run and plan alike.
    for command in ["run", "plan"] {
        let (code, lines, _) = json_run(&[command, "--json", "--sync", "nope"], &config).await;
        assert_eq!(code, Some(4));
        assert_eq!(
            (&lines[0]["error"]["kind"], &lines[0]["error"]["sync"]),
            (&json!("not_found"), &json!("nope"))
        );
    }

    // A record that is not there.
    let (code, lines, _) = json_run(&["ledger", "show", "--sync", "s", "missing"], &config).await;
    assert_eq!(code, Some(4));
    assert_eq!(
        (&lines[0]["error"]["kind"], &lines[0]["error"]["key"]),
        (&json!("not_found"), &json!("missing"))
    );

    // A credential the environment lacks.
    let auth = format!("{ACCEPT}\nauth = {{ bearer_env = \"JSON_ERRORS_UNSET_TOKEN\" }}");
    let (_dir2, keyed) = one_sync(&dest, &common::contacts_jsonl("b", 3), &auth);
    let (code, lines, _) = json_run(&["run", "--json"], &keyed).await;
    assert_eq!(code, Some(6));
    assert_eq!(lines[0]["error"]["kind"], "credentials");
    assert!(
        lines[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON_ERRORS_UNSET_TOKEN")
    );

    // The state held by another process (this test's host).
    let loaded = Config::load(&config).unwrap();
    let host = sluice::sync::Host::new(&loaded).unwrap();
    let (code, lines, _) = json_run(&["ledger", "list", "--sync", "s", "--json"], &config).await;
    assert_eq!(code, Some(5));
    assert_eq!(lines[0]["error"]["kind"], "state");
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_cannot_start_is_an_error_line_naming_it_and_the_others_run() {
    let dest = common::accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        "builtin:rest",
        &[
            ("good", &common::contacts_jsonl("a", 3), ACCEPT),
            (
                "refused",
                &common::contacts_jsonl("b", 3),
                "settings = { path = \"/v1\", nonsense = 1 }",
            ),
        ],
        "",
    );
    let (code, lines, _) = json_run(&["run", "--json"], &config).await;
    assert_eq!(code, Some(1));
    assert_eq!(
        (&lines[0]["sync"], &lines[0]["delivered"]),
        (&json!("good"), &json!(3))
    );
    let error = &lines[1]["error"];
    assert_eq!(
        (&error["kind"], &error["sync"]),
        (&json!("failed"), &json!("refused"))
    );
    assert!(
        error["message"].as_str().unwrap().contains("nonsense"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_verdict_is_logged_once_whatever_the_workers() {
    let dest = common::rest_sim(RestMode::PerRecord, Faults::default()).await;
    // The REST connector takes a 404 (a path the destination does not have) as fatal.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("{}/missing", dest.base_url()),
        "builtin:rest",
        &[(
            "s",
            &common::contacts_jsonl("a", 400),
            "settings = { path = \"/v1/records\" }\nbatch_size = 10\nconcurrency = 8",
        )],
        "",
    );
    let output = common::sluice(&["run"], &config, &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("stopping the run").count(), 1, "{stderr}");
}

/// An error about one sync, or one record of it, names them (docs/cli.md: "`sync` and
/// `key` are set when it is about one of them"): a missing credential of the sync run, a
/// record retried that is not in the ledger, and one that is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_about_a_sync_or_its_record_names_them() {
    let dest = common::accepting().await;
    let auth = format!("{ACCEPT}\nauth = {{ bearer_env = \"JSON_ERRORS_UNSET_TOKEN_2\" }}");
    let (_keyed_dir, keyed) = one_sync(&dest, &common::contacts_jsonl("a", 1), &auth);
    let (code, lines, _) = json_run(&["run", "--sync", "s", "--json"], &keyed).await;
    assert_eq!(code, Some(6));
    assert_eq!(
        lines,
        [json!({"error": {
            "kind": "credentials",
            "sync": "s",
            "message": "sync `s`: environment variable `JSON_ERRORS_UNSET_TOKEN_2` \
                        (auth.bearer_env) is not set; nothing was run",
        }})]
    );

    let (_dir, config) = one_sync(&dest, &common::contacts_jsonl("a", 1), ACCEPT);
    common::sluice_ok(&["run"], &config, &[]).await;
    let (code, lines, _) = json_run(
        &["retry", "--sync", "s", "--key", "nokey", "--json"],
        &config,
    )
    .await;
    assert_eq!(code, Some(4));
    assert_eq!(
        lines,
        [json!({"error": {
            "kind": "not_found",
            "sync": "s",
            "key": "nokey",
            "message": "no record with key `nokey` in the ledger of sync `s`",
        }})]
    );
    let (code, lines, _) = json_run(
        &["retry", "--sync", "s", "--key", "a00000", "--json"],
        &config,
    )
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(
        lines,
        [json!({"error": {
            "kind": "failed",
            "sync": "s",
            "key": "a00000",
            "message": "record `a00000` is delivered: there is nothing to retry",
        }})]
    );
}

/// A flag's value that is not one it takes is a command line that is wrong, exit 2, for
/// every flag alike (`ledger list --status bogus` was a failure, exit 1, while `inspect
/// --status abc` was exit 2). The parser reports it on stderr, naming the flag; stdout
/// stays empty, `--json` or not (docs/cli.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_value_that_is_wrong_is_a_usage_error_whatever_the_flag() {
    let dest = common::accepting().await;
    let (_dir, config) = one_sync(&dest, &common::contacts_jsonl("a", 1), ACCEPT);
    let config = config.display().to_string();
    let wrong: [(&[&str], &str); 5] = [
        (
            &[
                "ledger", "list", "--sync", "s", "--status", "bogus", "--json",
            ],
            "invalid value 'bogus' for '--status <STATUS>': unknown status `bogus`: expected \
             pending, delivered, rejected, permanent or resolved",
        ),
        (
            &["ledger", "list", "--sync", "s", "--status", "bogus"],
            "invalid value 'bogus' for '--status <STATUS>'",
        ),
        (
            &["inspect", "--sync", "s", "--status", "abc", "--json"],
            "invalid value 'abc' for '--status <STATUS>'",
        ),
        (
            &["retry", "--sync", "s", "--window", "bogus", "--json"],
            "invalid value 'bogus' for '--window <WINDOW>'",
        ),
        (
            &["connector", "check", "builtin:rest", "--settings", "path"],
            "invalid value 'path' for '--settings <KEY=VALUE>': `path` is not a setting; \
             expected KEY=VALUE",
        ),
    ];
    for (args, says) in wrong {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        command.args(args);
        if args[0] != "connector" {
            command.args(["--config", &config]);
        }
        let output = command.output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "", "{args:?}");
        assert!(
            stderr.starts_with(&format!("error: {says}")),
            "{args:?}: {stderr}"
        );
    }
}
