//! The operator-facing edges of the `sluice` binary: config values out of range, a
//! standard output that goes away or fills up, and errors that say what is wrong, where,
//! and what to do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use sluice::config::Config;
use sluice_sim::SimHandle;
use sluice_sim::faults::{Faults, Latency};
use sluice_sim::rest::RestMode;

use crate::common;

/// Settings of the REST connector for a destination that answers per record.
const PER_RECORD: &str = "settings = { path = \"/v1/records\", results_pointer = \"/results\" }";
/// Settings of the REST connector for a destination that accepts everything.
const ACCEPT: &str = "settings = { path = \"/v1/records\" }";

/// A folder with a config of one REST sync `s` of `data` (JSONL) to `dest`, with `extra`
/// lines in its `[[sync]]` table.
fn one_sync(dest: &SimHandle, data: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        "builtin:rest",
        &[("s", data, extra)],
        "",
    );
    (dir, config)
}

/// Writes a config with a connector `c` (`component`) and one sync per `(name, jsonl,
/// extra)`, each reading `NAME.jsonl`; `top` goes before the connector.
fn write_config(
    dir: &Path,
    base_url: &str,
    component: &str,
    syncs: &[(&str, &str, &str)],
    top: &str,
) -> PathBuf {
    let mut text = format!(
        "state_dir = \"state\"\ncache_dir = \"{}\"\n{top}\n[connectors.c]\ncomponent = \"{component}\"\n",
        common::cache_dir().display()
    );
    for (name, data, extra) in syncs {
        std::fs::write(dir.join(format!("{name}.jsonl")), data).unwrap();
        text.push_str(&format!(
            "\n[[sync]]\nname = \"{name}\"\nconnector = \"c\"\nsource = {{ jsonl = \"{name}.jsonl\", key = \"id\" }}\nbase_url = \"{base_url}\"\n{extra}\n"
        ));
    }
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Where a child's standard output goes.
enum Stdout {
    /// A pipe whose reader is gone before anything is written.
    Closed,
    /// `/dev/full`: every write fails with ENOSPC.
    Full,
}

/// Runs `sluice ARGS --config CONFIG` with its standard output `to`: the exit code and
/// what it wrote on stderr.
async fn sluice_to(args: &[&str], config: &Path, to: Stdout) -> (Option<i32>, String) {
    let stdout = match to {
        Stdout::Closed => Stdio::piped(),
        Stdout::Full => std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
            .into(),
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    (output.status.code(), stderr)
}

/// The runs `sluice runs --json` lists: (sync, outcome), oldest first.
async fn runs(config: &Path) -> Vec<(String, String)> {
    let mut runs: Vec<(String, String)> =
        common::json_lines(&common::sluice_ok(&["runs", "--json"], config, &[]).await)
            .iter()
            .map(|r| {
                (
                    r["sync"].as_str().unwrap().to_string(),
                    r["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    runs.reverse();
    runs
}

#[test]
fn absurd_durations_are_refused_at_config_time_with_the_key_and_its_range() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.jsonl"), common::contacts_jsonl("a", 1)).unwrap();
    let parse = |connector: &str, sync: &str, top: &str| {
        let text = format!(
            "{top}\n[connectors.c]\ncomponent = \"builtin:rest\"\n{connector}\n[[sync]]\nname = \"s\"\nconnector = \"c\"\nsource = {{ jsonl = \"s.jsonl\", key = \"id\" }}\nbase_url = \"http://127.0.0.1:9\"\n{ACCEPT}\n{sync}\n"
        );
        Config::parse(&text, &dir.path().join("sluice.toml"))
    };
    // (connector, sync, top-level) lines; the key, what was written and the range.
    let cases = [
        (
            "call_timeout = \"1000y\"",
            "",
            "",
            "connectors.c.call_timeout",
            "1000y",
            "between 1ms and 10m",
        ),
        (
            "",
            "request_timeout = \"100000000000y\"",
            "",
            "request_timeout",
            "100000000000y",
            "between 1ms and 1h",
        ),
        (
            "",
            "rate_limit = { requests = 1, per = \"1000y\" }",
            "",
            "rate_limit.per",
            "1000y",
            "between 1ms and 1d",
        ),
        (
            "",
            "rate_limit = { requests = 5, per = \"0s\" }",
            "",
            "rate_limit.per",
            "0s",
            "between 1ms and 1d",
        ),
        (
            "",
            "[sync.retry]\ninitial_backoff = \"100000000000y\"\nmax_backoff = \"100000000000y\"",
            "",
            "retry.initial_backoff",
            "100000000000y",
            "between 0s and 1h",
        ),
        (
            "",
            "[sync.retry]\nmax_backoff = \"1000y\"",
            "",
            "retry.max_backoff",
            "1000y",
            "between 0s and 1h",
        ),
        (
            "",
            "[sync.retry]\nmax_rate_limit_wait = \"1000y\"",
            "",
            "retry.max_rate_limit_wait",
            "1000y",
            "between 0s and 1d",
        ),
        (
            "",
            "[sync.retry]\nmultiplier = 1000.0",
            "",
            "retry.multiplier",
            "1000",
            "between 1.0 and 100",
        ),
        (
            "",
            "[sync.retry_job]\nwindow = \"100000y\"",
            "",
            "retry_job.window",
            "100000y",
            "between 1m and 3650d",
        ),
        (
            "",
            "",
            "[inspector]\nmax_age = \"1000y\"",
            "inspector.max_age",
            "1000y",
            "between 1m and 365d",
        ),
    ];
    for (connector, sync, top, key, written, range) in cases {
        let err = format!("{:#}", parse(connector, sync, top).err().unwrap());
        assert!(
            err.contains(&format!(
                "{key}: `{written}` is out of range: expected {range}"
            )),
            "{err}"
        );
    }
    // Not a duration, but a config error of the same kind: a directory is not "not found".
    let text = format!(
        "[connectors.c]\ncomponent = \".\"\n[[sync]]\nname = \"s\"\nconnector = \"c\"\nsource = {{ jsonl = \"s.jsonl\", key = \"id\" }}\nbase_url = \"http://127.0.0.1:9\"\n"
    );
    let err = format!(
        "{:#}",
        Config::parse(&text, &dir.path().join("sluice.toml"))
            .err()
            .unwrap()
    );
    assert!(
        err.contains("connectors.c.component: `.` is a directory"),
        "{err}"
    );

    // The bounds themselves are accepted.
    let config = parse(
        "call_timeout = \"10m\"",
        "request_timeout = \"1h\"\nrate_limit = { requests = 1, per = \"1d\" }\n[sync.retry]\ninitial_backoff = \"0s\"\nmax_backoff = \"1h\"\nmax_rate_limit_wait = \"1d\"\nmultiplier = 100.0\n[sync.retry_job]\nwindow = \"3650d\"",
        "[inspector]\nmax_age = \"365d\"",
    )
    .unwrap();
    assert_eq!(
        config.syncs[0].rate_limit.unwrap().per,
        Duration::from_secs(86_400)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_of_a_thousand_years_stops_the_command_before_anything_is_sent() {
    let dest = common::accepting().await;
    let (_dir, config) = one_sync(
        &dest,
        &common::contacts_jsonl("a", 5),
        &format!("{ACCEPT}\nrate_limit = {{ requests = 1, per = \"1000y\" }}"),
    );
    let output = common::sluice(&["run"], &config, &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "sync `s`: rate_limit.per: `1000y` is out of range: expected between 1ms and 1d"
        ),
        "{stderr}"
    );
    assert_eq!(dest.stats().requests, 0);

    let output = common::sluice(&["retry", "--sync", "s", "--window", "1000y"], &config, &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--window: `1000y` is out of range: expected between 1m and 3650d"),
        "{stderr}"
    );
}

/// Two syncs of `n` records each into an accepting destination.
async fn two_syncs(n: usize) -> (SimHandle, tempfile::TempDir, PathBuf) {
    let dest = common::accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        "builtin:rest",
        &[
            ("first", &common::contacts_jsonl("a", n), ACCEPT),
            ("second", &common::contacts_jsonl("b", n), ACCEPT),
        ],
        "",
    );
    (dest, dir, config)
}

/// What the read-only commands print, as arguments.
const READERS: [&[&str]; 8] = [
    &["ledger", "list", "--help"],
    &["ledger", "list", "--sync", "first"],
    &["ledger", "list", "--sync", "first", "--csv"],
    &["ledger", "list", "--sync", "first", "--json"],
    &["ledger", "stats", "--sync", "first"],
    &["ledger", "show", "--sync", "first", "a00000"],
    &["runs"],
    &["inspect", "--sync", "first"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_closes_the_pipe_ends_the_output_quietly_and_every_sync_still_runs() {
    let (dest, _dir, config) = two_syncs(30).await;
    // The reader is gone before the first report: every write finds the pipe closed.
    for args in [&["run"][..], &["run", "--json"]] {
        let (code, stderr) = sluice_to(args, &config, Stdout::Closed).await;
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }
    assert_eq!(dest.stored().len(), 60, "both syncs delivered");
    let completed = |sync: &str| (sync.to_string(), "completed".to_string());
    assert_eq!(
        runs(&config).await,
        [
            completed("first"),
            completed("second"),
            completed("first"),
            completed("second")
        ]
    );
    for args in READERS {
        let (code, stderr) = sluice_to(args, &config, Stdout::Closed).await;
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stdout_is_an_error_naming_it_and_every_sync_still_runs() {
    let (dest, _dir, config) = two_syncs(30).await;
    let (code, stderr) = sluice_to(&["run", "--json"], &config, Stdout::Full).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error: cannot write to stdout: the device is full (no space left on device)"
        ),
        "{stderr}"
    );
    assert_eq!(dest.stored().len(), 60, "both syncs delivered");
    assert_eq!(
        runs(&config).await,
        [
            ("first".to_string(), "completed".to_string()),
            ("second".to_string(), "completed".to_string())
        ]
    );
    for args in READERS {
        let (code, stderr) = sluice_to(args, &config, Stdout::Full).await;
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write to stdout"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_component_is_said_in_one_line() {
    let dest = common::accepting().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("notes.txt"),
        "these are my notes\nnot a connector\n",
    )
    .unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_sluice"), dir.path().join("native.wasm")).unwrap();
    // The smallest core module: the magic and version 1.
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    for (file, what) in [
        ("notes.txt", "the file is text"),
        ("native.wasm", "the file is an ELF executable"),
        (
            "core.wasm",
            "it is a core WebAssembly module; make it a component",
        ),
    ] {
        let config = write_config(
            dir.path(),
            &dest.base_url(),
            file,
            &[("s", &common::contacts_jsonl("a", 3), ACCEPT)],
            "",
        );
        let output = common::sluice(&["run"], &config, &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("connector `c` is not a valid WebAssembly component: ")
                && stderr.contains(what)
                && stderr.contains(file),
            "{stderr}"
        );
        assert!(!stderr.contains("0x"), "{stderr}");
    }
    assert_eq!(dest.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_ledger_is_named_with_what_to_do() {
    let (_dest, dir, config) = two_syncs(5).await;
    common::sluice_ok(&["run"], &config, &[]).await;
    let ledger = dir.path().join("state/ledger");

    // One entry that is not an entry.
    {
        let db = sled::open(&ledger).unwrap();
        db.open_tree("sync:first")
            .unwrap()
            .insert("a00003", &b"\xff\xfe"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let stderr = retry_while_locked(&["ledger", "list", "--sync", "first"], &config).await;
    assert!(
        stderr.contains(&format!(
            "the ledger at `{}` is damaged (the entry of `a00003` is unreadable",
            ledger.display()
        )) && stderr.contains("move it away")
            && stderr.contains("the next run sends every record again"),
        "{stderr}"
    );

    // Files overwritten with garbage.
    for entry in std::fs::read_dir(&ledger).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, vec![0xA5; 4096]).unwrap();
        }
    }
    let stderr = retry_while_locked(&["ledger", "list", "--sync", "first"], &config).await;
    assert!(
        stderr.contains(&format!(
            "the ledger at `{}` is damaged (",
            ledger.display()
        )) && stderr.contains("move it away"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// Runs a command that must fail, again while the ledger is still locked by this test's
/// own sled handle closing in the background: its stderr.
async fn retry_while_locked(args: &[&str], config: &Path) -> String {
    for _ in 0..100 {
        let output = common::sluice(args, config, &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        if !stderr.contains("in use by another sluice process") {
            assert_eq!(output.status.code(), Some(1), "{stderr}");
            return stderr;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ledger stayed locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_removed_during_a_run_fails_the_run() {
    let dest = common::rest_sim(
        RestMode::AcceptAll,
        Faults {
            latency: Some(Latency {
                every: 1,
                delay: Duration::from_millis(150),
            }),
            ..Faults::default()
        },
    )
    .await;
    let (dir, config) = one_sync(
        &dest,
        &common::contacts_jsonl("a", 20),
        &format!("{ACCEPT}\nbatch_size = 2\nconcurrency = 1"),
    );
    let child = common::spawn_sluice(&["run", "--json"], &config);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while dest.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no request arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["outcome"], "failed", "{summary}");
    let error = summary["error"].as_str().unwrap();
    assert!(
        error.contains("was removed during the run")
            && error.contains("nothing of this run was recorded"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_escaped_for_people_and_formulas_defused_in_csv() {
    let dest = common::checking_emails().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        "evil\u{1b}[31mred",
        "=cmd|' /C calc'!A0",
        "csi\u{9b}2Jkey",
        "plain",
    ];
    let data: String = [
        json!({"id": keys[0], "email": "nope"}),
        json!({"id": keys[1], "email": "also nope"}),
        json!({"id": keys[2], "email": "c@example.com"}),
        json!({"id": keys[3], "email": "p@example.com"}),
    ]
    .iter()
    .map(|r| format!("{r}\n"))
    .collect();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        "builtin:rest",
        &[("s", &data, PER_RECORD)],
        "",
    );
    let raw = |text: &str| text.contains(['\u{1b}', '\u{9b}']);

    let report = common::sluice_ok(&["run"], &config, &[]).await;
    assert!(!raw(&report), "{report:?}");
    assert!(report.contains("evil\\u{1b}[31mred rejected"), "{report}");

    let table = common::sluice_ok(&["ledger", "list", "--sync", "s"], &config, &[]).await;
    assert!(!raw(&table), "{table:?}");
    assert!(
        table.contains("evil\\u{1b}[31mred") && table.contains("csi\\u{9b}2Jkey"),
        "{table}"
    );

    let inspect = common::sluice_ok(&["inspect", "--sync", "s"], &config, &[]).await;
    assert!(!raw(&inspect), "{inspect:?}");
    assert!(inspect.contains("csi\\u{9b}2Jkey"), "{inspect}");

    // JSON keeps every key exactly (escaped the JSON way).
    let listed =
        common::sluice_ok(&["ledger", "list", "--sync", "s", "--json"], &config, &[]).await;
    assert!(!raw(&listed), "{listed:?}");
    let mut listed: Vec<String> = common::json_lines(&listed)
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);

    let csv = common::sluice_ok(
        &[
            "ledger", "list", "--sync", "s", "--status", "rejected", "--csv",
        ],
        &config,
        &[],
    )
    .await;
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let keys: Vec<String> = rows.records().map(|r| r.unwrap()[0].to_string()).collect();
    assert!(keys.contains(&"'=cmd|' /C calc'!A0".to_string()), "{csv}");
    assert!(keys.contains(&"evil\u{1b}[31mred".to_string()), "{csv}");
    let help = common::sluice_ok(&["ledger", "list", "--help"], &config, &[]).await;
    assert!(help.contains("prefixed with `'`"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_needs_who_and_why() {
    let dest = common::checking_emails().await;
    let (_dir, config) = one_sync(
        &dest,
        "{\"id\": \"bad\", \"email\": \"nope\"}\n",
        PER_RECORD,
    );
    common::sluice_ok(&["run"], &config, &[]).await;
    for (by, why, named) in [
        ("", "", "--by"),
        ("  ", "fixed", "--by"),
        ("ana", " \t", "--why"),
    ] {
        let output = common::sluice(
            &[
                "ledger", "resolve", "--sync", "s", "--key", "bad", "--by", by, "--why", why,
            ],
            &config,
            &[],
        )
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(named) && stderr.contains("blank"),
            "{stderr}"
        );
    }
    let shown: serde_json::Value = serde_json::from_str(
        &common::sluice_ok(&["ledger", "show", "--sync", "s", "bad"], &config, &[]).await,
    )
    .unwrap();
    assert_eq!(shown["status"], "rejected");
    assert_eq!(shown["resolution"], serde_json::Value::Null);
}

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
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for problem in problems {
        assert!(stderr.contains(problem), "{problem}: {stderr}");
    }
    assert!(!stderr.contains("keyed"), "{stderr}");
    assert_eq!(dest.stats().requests, 0, "no sync ran, not even `open`");

    let output = common::sluice(&["retry", "--sync", "bearer"], &config, &env).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
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
    assert_eq!(serve.status.code(), Some(1), "{stderr}");
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
