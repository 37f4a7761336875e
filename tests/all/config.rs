//! Config errors name the file, the key and what was expected.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::config::{AuthSpec, ComponentSource, Config};

fn folder() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.jsonl"), "{\"id\": \"1\"}\n").unwrap();
    let path = dir.path().join("sluice.toml");
    (dir, path)
}

const GOOD: &str = r#"
state_dir = "state"
[connectors.sf]
component = "builtin:salesforce"
allowed_hosts = ["127.0.0.1:8080"]
memory_limit = "32MiB"
call_timeout = "250ms"

[[sync]]
name = "accounts"
connector = "sf"
source = { jsonl = "data.jsonl", key = "id" }
base_url = "http://127.0.0.1:8080"
auth = { bearer_env = "SF_TOKEN" }
settings = { object = "Account", external_id_field = "External_Id__c", batch = 5, codes = ["A", "B"] }
batch_size = 50
concurrency = 2
[sync.retry]
max_attempts = 3
initial_backoff = "10ms"
[sync.rate_limit]
requests = 10
per = "1s"
"#;

fn error_of(text: &str) -> String {
    let (_dir, path) = folder();
    std::fs::write(&path, text).unwrap();
    let err = Config::load(&path).expect_err("the config must be refused");
    let message = format!("{err:#}");
    assert!(
        message.contains(&path.display().to_string()),
        "the error does not name the file: {message}"
    );
    message
}

#[test]
fn a_good_config_resolves_paths_against_its_folder() {
    let (dir, path) = folder();
    std::fs::write(&path, GOOD).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.state_dir, dir.path().join("state"));
    let sf = &config.connectors["sf"];
    assert_eq!(sf.component, ComponentSource::Builtin("salesforce".into()));
    assert_eq!(sf.limits.memory, 32 * 1024 * 1024);
    assert_eq!(sf.limits.call_timeout.as_millis(), 250);
    let sync = config.sync("accounts").unwrap();
    assert_eq!(
        sync.source.origin,
        sluice::config::SourceOrigin::File(dir.path().join("data.jsonl"))
    );
    assert_eq!(
        sync.auth,
        AuthSpec::Bearer {
            env: "SF_TOKEN".into()
        }
    );
    assert_eq!(
        sync.settings,
        [
            ("batch".to_string(), "5".to_string()),
            ("codes".into(), "A,B".into()),
            ("external_id_field".into(), "External_Id__c".into()),
            ("object".into(), "Account".into()),
        ]
    );
    assert_eq!((sync.batch_size, sync.concurrency), (50, 2));
    assert_eq!(sync.retry.max_attempts, 3);
    assert_eq!(sync.retry.initial_backoff.as_millis(), 10);
    assert_eq!(sync.retry.max_backoff.as_secs(), 30);
    assert_eq!(sync.rate_limit.unwrap().requests, 10);
    assert!(
        config
            .sync("nope")
            .unwrap_err()
            .to_string()
            .contains("no sync named `nope` (it has: accounts)")
    );
}

#[test]
fn unknown_keys_are_refused_with_the_key_and_what_is_expected() {
    let message = error_of(&GOOD.replace("batch_size = 50", "batch_sise = 50"));
    assert!(message.contains("unknown field `batch_sise`"), "{message}");
    assert!(
        message.contains("batch_size"),
        "lists the expected keys: {message}"
    );
    let message = error_of(&GOOD.replace("call_timeout", "timeout"));
    assert!(message.contains("unknown field `timeout`"), "{message}");
    let message = error_of(&format!("colour = \"blue\"\n{GOOD}"));
    assert!(message.contains("unknown field `colour`"), "{message}");
}

#[test]
fn bad_durations_and_sizes_say_what_was_expected() {
    let message = error_of(&GOOD.replace("\"250ms\"", "\"a while\""));
    assert!(message.contains("`a while` is not a duration"), "{message}");
    assert!(message.contains("call_timeout"), "names the key: {message}");
    let message = error_of(&GOOD.replace("\"10ms\"", "\"10 parsecs\""));
    assert!(
        message.contains("`10 parsecs` is not a duration"),
        "{message}"
    );
    assert!(message.contains("initial_backoff"), "{message}");
    let message = error_of(&GOOD.replace("\"32MiB\"", "\"lots\""));
    assert!(message.contains("`lots` is not a size"), "{message}");
    let message = error_of(&GOOD.replace("\"32MiB\"", "\"12KiB\""));
    assert!(
        message.contains("connectors.sf.memory_limit: at least 1MiB"),
        "{message}"
    );
}

#[test]
fn missing_files_are_named() {
    // A source file is the run's to open (and its error then names it): the config that
    // names a file not there yet is good.
    let (_dir, path) = folder();
    std::fs::write(&path, GOOD.replace("data.jsonl", "nowhere.jsonl")).unwrap();
    Config::load(&path).unwrap();
    let message = error_of(&GOOD.replace("builtin:salesforce", "connectors/missing.wasm"));
    assert!(
        message.contains("connectors.sf.component: file `connectors/missing.wasm` not found"),
        "{message}"
    );
    let (_dir, path) = folder();
    let err = Config::load(&path.with_file_name("absent.toml")).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot read config file"),
        "{err:#}"
    );
}

#[test]
fn unknown_connectors_are_refused() {
    let message = error_of(&GOOD.replace("connector = \"sf\"", "connector = \"salesforce\""));
    assert!(message.contains("sync `accounts`: connector: `salesforce` is not defined under [connectors] (defined: sf)"), "{message}");
    let message = error_of(&GOOD.replace("builtin:salesforce", "builtin:oracle"));
    assert!(
        message
            .contains("no bundled connector `oracle` (bundled: builtin:salesforce, builtin:rest)"),
        "{message}"
    );
}

#[test]
fn other_mistakes_are_explained() {
    let cases = [
        (
            GOOD.replace("http://127.0.0.1:8080\"", "localhost\""),
            "base_url: `localhost` is not a URL",
        ),
        (
            GOOD.replace(
                "bearer_env = \"SF_TOKEN\"",
                "bearer_env = \"Bearer abc123\"",
            ),
            "not an environment variable name",
        ),
        (
            GOOD.replace("concurrency = 2", "concurrency = 0"),
            "concurrency: must be between 1 and 256",
        ),
        (
            GOOD.replace("max_attempts = 3", "max_attempts = 0"),
            "retry.max_attempts: must be at least 1",
        ),
        (
            GOOD.replace("key = \"id\" }", "key = \"id\", csv = \"data.csv\" }"),
            "give exactly one of",
        ),
        (
            GOOD.replace("127.0.0.1:8080\"]", "127.0.0.1:http\"]"),
            "`http` is not a port number",
        ),
        (
            format!(
                "{GOOD}\n[[sync]]\nname = \"accounts\"\nconnector = \"sf\"\nsource = {{ jsonl = \"data.jsonl\", key = \"id\" }}\nbase_url = \"http://x\"\n"
            ),
            "two syncs are named `accounts`",
        ),
        (
            GOOD.replace("settings = {", "settings = { nested = { a = 1 },"),
            "settings.nested: expected a string",
        ),
        (
            GOOD.replace("concurrency = 2", "concurrency = 2\npartitions = 0"),
            "partitions: must be between 1 and 4096, got 0",
        ),
        (
            GOOD.replace("concurrency = 2", "concurrency = 2\npartitions = 4097"),
            "partitions: must be between 1 and 4096, got 4097",
        ),
        (
            GOOD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nstate = { postgres = { url_env = \" \" } }",
            ),
            "state.postgres.url_env: name the environment variable",
        ),
        (
            GOOD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nstate = { postgres = { url_env = \"DB\", schema = \"x\\\"; drop table t; --\" } }",
            ),
            "state.postgres.schema: `x\"; drop table t; --` must be a lowercase name",
        ),
        (
            GOOD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nstate = { postgres = { url_env = \"DB\", schema = \"9lives\" } }",
            ),
            "state.postgres.schema: `9lives` must be a lowercase name",
        ),
        (
            GOOD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nstate = { sqlite = {} }",
            ),
            "unknown field `sqlite`",
        ),
    ];
    for (text, expected) in cases {
        let message = error_of(&text);
        assert!(
            message.contains(expected),
            "expected `{expected}` in: {message}"
        );
    }
}

#[test]
fn the_cli_exits_non_zero_with_the_message() {
    let (_dir, path) = folder();
    std::fs::write(&path, GOOD.replace("batch_size", "batchsize")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    // Exit code 3: the config (docs/cli.md).
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field `batchsize`"), "{stderr}");
    assert!(
        stderr.contains(&*Path::new(&path).display().to_string()),
        "{stderr}"
    );
}
