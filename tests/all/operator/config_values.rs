//! Config values out of range are refused at config time, naming the key and its range.

use super::*;

/// The config of one REST sync `s` with these `connector`, `sync` and `top`-level lines,
/// parsed.
fn parse(connector: &str, sync: &str, top: &str) -> anyhow::Result<Config> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.jsonl"), common::contacts_jsonl("a", 1)).unwrap();
    let text = format!(
        "{top}\n[connectors.c]\ncomponent = \"builtin:rest\"\n{connector}\n[[sync]]\nname = \"s\"\nconnector = \"c\"\nsource = {{ jsonl = \"s.jsonl\", key = \"id\" }}\nbase_url = \"http://127.0.0.1:9\"\n{ACCEPT}\n{sync}\n"
    );
    Config::parse(&text, &dir.path().join("sluice.toml"))
}

#[test]
fn absurd_durations_are_refused_at_config_time_with_the_key_and_its_range() {
    // (connector, sync, top-level) lines; the key, what was written and the range.
    #[rustfmt::skip]
    let cases = [
        ("call_timeout = \"1000y\"", "", "", "connectors.c.call_timeout", "1000y", "between 1ms and 10m"),
        ("", "request_timeout = \"100000000000y\"", "", "request_timeout", "100000000000y", "between 1ms and 1h"),
        ("", "rate_limit = { requests = 1, per = \"1000y\" }", "", "rate_limit.per", "1000y", "between 1ms and 1d"),
        ("", "rate_limit = { requests = 5, per = \"0s\" }", "", "rate_limit.per", "0s", "between 1ms and 1d"),
        ("", "[sync.retry]\ninitial_backoff = \"100000000000y\"\nmax_backoff = \"100000000000y\"", "", "retry.initial_backoff", "100000000000y", "between 0s and 1h"),
        ("", "[sync.retry]\nmax_backoff = \"1000y\"", "", "retry.max_backoff", "1000y", "between 0s and 1h"),
        ("", "[sync.retry]\nmax_rate_limit_wait = \"1000y\"", "", "retry.max_rate_limit_wait", "1000y", "between 0s and 1d"),
        ("", "[sync.retry]\nmultiplier = 1000.0", "", "retry.multiplier", "1000", "between 1.0 and 100"),
        ("", "[sync.retry_job]\nwindow = \"100000y\"", "", "retry_job.window", "100000y", "between 1m and 3650d"),
        ("", "", "[inspector]\nmax_age = \"1000y\"", "inspector.max_age", "1000y", "between 1m and 365d"),
        ("", "", "flush_interval = \"1ms\"", "flush_interval", "1ms", "between 10ms and 1m"),
        ("", "", "flush_interval = \"2m\"", "flush_interval", "2m", "between 10ms and 1m"),
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
}

/// Not a duration, but a config error of the same kind: a directory is not "not found".
#[test]
fn a_directory_as_the_component_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.jsonl"), common::contacts_jsonl("a", 1)).unwrap();
    let text = "[connectors.c]\ncomponent = \".\"\n[[sync]]\nname = \"s\"\nconnector = \"c\"\nsource = { jsonl = \"s.jsonl\", key = \"id\" }\nbase_url = \"http://127.0.0.1:9\"\n";
    let err = format!(
        "{:#}",
        Config::parse(text, &dir.path().join("sluice.toml"))
            .err()
            .unwrap()
    );
    assert!(
        err.contains("connectors.c.component: `.` is a directory"),
        "{err}"
    );
}

#[test]
fn the_bounds_themselves_are_accepted() {
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
    // Exit code 3: the config (docs/cli.md).
    assert_eq!(output.status.code(), Some(3), "{stderr}");
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

/// `inspect --limit 0` printed one exchange (and `runs --limit 0` one run): a count of
/// things to show starts at 1, and 0 is a usage error, exit 2, with nothing on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_zero_is_a_usage_error_and_one_shows_one() {
    let dest = common::accepting().await;
    let extra = format!("{ACCEPT}\nbatch_size = 1");
    let (_dir, config) = one_sync(&dest, &common::contacts_jsonl("a", 3), &extra);
    common::sluice_ok(&["run"], &config, &[]).await;
    for command in [
        &["inspect", "--sync", "s", "--json"][..],
        &["runs", "--json"],
    ] {
        let args = [command, &["--limit", "0"]].concat();
        let output = common::sluice(&args, &config, &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "", "{args:?}");
        assert!(
            stderr.starts_with("error: invalid value '0' for '--limit <LIMIT>': 0 is not in 1.."),
            "{args:?}: {stderr}"
        );
        let args = [command, &["--limit", "1"]].concat();
        let shown = common::json_lines(&common::sluice_ok(&args, &config, &[]).await);
        assert_eq!(shown.len(), 1, "{args:?}");
    }
}
