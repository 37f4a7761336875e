//! What an operator sees: the request inspector, redaction, run history, metrics and
//! progress output.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use sluice::inspector::{Exchange, Inspector, InspectorConfig};
use sluice::ledger::Ledger;
use sluice_sim::faults::LimitStyle::{self, TooManyRequests};
use sluice_sim::faults::RetryAfterStyle::{self, Seconds};
use sluice_sim::faults::{Faults, RateLimit};
use sluice_sim::rest::{self, RestConfig, RestMode};
use sluice_sim::{AuthConfig, SimHandle};

use crate::common;

const SECRET: &str = "tok-5ecret-do-not-leak";

fn config(
    dir: &std::path::Path,
    dest: &SimHandle,
    records: usize,
    extra: &str,
) -> std::path::PathBuf {
    let data: String = (0..records)
        .map(|i| format!("{}\n", json!({"id": format!("r{i:03}"), "email": if i % 10 == 3 { "bad".to_string() } else { format!("r{i}@example.com") }, "profile": {"ssn": format!("123-45-{i:04}"), "tier": "gold"}})))
        .collect();
    std::fs::write(dir.join("data.jsonl"), data).unwrap();
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"state\"\ncache_dir = \"{}\"\n[connectors.rest]\ncomponent = \"builtin:rest\"\n[[sync]]\nname = \"s\"\nconnector = \"rest\"\nsource = {{ jsonl = \"data.jsonl\", key = \"id\" }}\nbase_url = \"{}\"\nauth = {{ bearer_env = \"OBSERVE_TOKEN\" }}\nredact = [\"ssn\", \"X-Request-Id\"]\nsettings = {{ path = \"/v1/records\", results_pointer = \"/results\" }}\nbatch_size = 10\nconcurrency = 2\n{extra}\n[sync.retry]\ninitial_backoff = \"5ms\"\n",
            common::cache_dir().display(),
            dest.base_url()
        ),
    )
    .unwrap();
    path
}

/// Replaces `from` with `to` in the config file at `path`.
fn edit_config(path: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap().replace(from, to);
    std::fs::write(path, text).unwrap();
}

async fn sluice(args: &[&str], config: &std::path::Path) -> std::process::Output {
    common::sluice(
        args,
        config,
        &[("OBSERVE_TOKEN", SECRET), ("RUST_LOG", "trace")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_holds_every_exchange_and_no_secret_leaks_anywhere() {
    let dest = common::checking_emails_with(RestConfig {
        auth: Some(AuthConfig {
            tokens: vec![SECRET.into()],
            session_requests: Some(4),
            oauth: None,
        }),
        faults: Faults::rate_limited(2, 1000, TooManyRequests, Seconds),
        ..RestConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &dest, 60, "");
    // One request at a time, so that the order of requests is the destination's order.
    edit_config(&config, "concurrency = 2", "concurrency = 1");
    let run = sluice(&["run", "--json"], &config).await;
    // The token expires after four requests and renewing it (re-reading the same value)
    // cannot help: the run fails, with records pending.
    assert_eq!(run.status.code(), Some(1));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["outcome"], "failed");

    let inspect = sluice(
        &["inspect", "--sync", "s", "--json", "--limit", "1000"],
        &config,
    )
    .await;
    assert!(inspect.status.success());
    let mut exchanges: Vec<Exchange> = String::from_utf8(inspect.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    exchanges.reverse(); // oldest first, like the simulator's log
    let seen: Vec<u16> = dest.requests().iter().map(|r| r.status).collect();
    let recorded: Vec<u16> = exchanges.iter().map(|e| e.status).collect();
    assert_eq!(
        recorded, seen,
        "one entry per request, in order, with the destination's statuses"
    );
    assert!(recorded.contains(&200) && recorded.contains(&429) && recorded.contains(&401));
    let run_id = summary["run_id"].as_str().unwrap();
    assert!(
        exchanges
            .iter()
            .all(|e| e.run == run_id && e.sync == "s" && e.method == "POST")
    );
    assert!(
        exchanges
            .iter()
            .all(|e| e.url == format!("{}/v1/records", dest.base_url()))
    );
    let first = &exchanges[0];
    assert_eq!((first.attempt, first.batch_size), (1, 10));
    assert!(
        first.verdict.starts_with("per-record("),
        "{}",
        first.verdict
    );
    assert!(
        first
            .request_headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "[redacted]")
    );
    assert!(
        first.request_body.contains("\"ssn\":\"[redacted]\"")
            && first.request_body.contains("gold"),
        "{}",
        first.request_body
    );
    assert!(first.response_body.contains("results"));
    assert!(
        exchanges
            .iter()
            .any(|e| e.verdict.starts_with("rate-limited"))
    );
    assert!(
        exchanges
            .iter()
            .any(|e| e.verdict.starts_with("auth-expired"))
    );

    // Filters: by status and by run.
    let limited = sluice(
        &["inspect", "--sync", "s", "--json", "--status", "429"],
        &config,
    )
    .await;
    let n = String::from_utf8(limited.stdout).unwrap().lines().count();
    assert_eq!(n, seen.iter().filter(|s| **s == 429).count());

    // The secret is nowhere: not in trace-level logs, the report, the inspector, the
    // ledger view or the error.
    let human = sluice(&["inspect", "--sync", "s"], &config).await;
    let ledger = sluice(&["ledger", "list", "--sync", "s", "--json"], &config).await;
    for (what, bytes) in [
        ("run stdout", &run.stdout),
        ("run stderr (trace logs and the error)", &run.stderr),
        ("inspect --json", &inspect.stdout),
        ("inspect", &human.stdout),
        ("ledger list", &ledger.stdout),
    ] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(SECRET), "the token leaked into {what}");
        assert!(
            !text.contains("123-45-0"),
            "a redacted field leaked into {what}"
        );
    }
    let logs = String::from_utf8_lossy(&run.stderr);
    assert!(
        logs.contains(&format!("run{{sync=s run={run_id}}}")),
        "log lines carry the sync and run id: {logs}"
    );
}

#[test]
fn retention_prunes_by_count_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let config = InspectorConfig {
        max_requests: 5,
        max_age: Duration::from_secs(3600),
        ..InspectorConfig::default()
    };
    let inspector = Inspector::new(ledger.tree("inspector:t").unwrap(), config, &[]);
    let exchange = |at_ms: u64, attempt: u32| Exchange {
        at_ms,
        sync: "t".into(),
        run: "r".into(),
        attempt,
        batch_size: 1,
        method: "POST".into(),
        url: "http://x/".into(),
        request_headers: vec![],
        request_body: String::new(),
        status: 200,
        response_headers: vec![],
        response_body: String::new(),
        duration_ms: 1,
        verdict: "per-record(delivered 1)".into(),
    };
    let hour = 3_600_000;
    for i in 0..8 {
        inspector
            .record(&exchange(10 * hour + i * 1000, i as u32))
            .unwrap();
    }
    // Which entries are kept, newest first, by their attempt numbers.
    let kept = || -> Vec<u32> {
        let entries = inspector.list(100, |_| true).unwrap();
        entries.iter().map(|e| e.attempt).collect()
    };
    // By count: the five newest stay.
    assert_eq!(inspector.prune(10 * hour + 8000).unwrap(), 3);
    assert_eq!(kept(), [7, 6, 5, 4, 3]);
    // By age: an hour later, entries older than max_age go.
    assert_eq!(inspector.prune(11 * hour + 5500).unwrap(), 3);
    assert_eq!(kept(), [7, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_history_and_metrics_agree_with_the_destination() {
    let dest = common::checking_emails_with(RestConfig {
        faults: Faults {
            seed: 5,
            lock_probability: 0.2,
            rate_limit: Some(RateLimit {
                requests: 3,
                window: Duration::from_millis(1000),
                style: LimitStyle::TooManyRequests,
                retry_after: RetryAfterStyle::Seconds,
            }),
            ..Faults::default()
        },
        ..RestConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &dest, 50, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "results_pointer = \"/results\" }",
        "results_pointer = \"/results\", retry_codes = \"UNABLE_TO_LOCK_ROW\" }",
    );
    std::fs::write(
        &config,
        text.replace("auth = { bearer_env = \"OBSERVE_TOKEN\" }\n", ""),
    )
    .unwrap();

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--now",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut metrics = String::new();
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(response) = client.get(&url).send().await {
            metrics = response.text().await.unwrap();
            if metrics.contains("sluice_runs_total") {
                break;
            }
        }
    }
    let pid = serve.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        serve.wait().await.unwrap().success(),
        "serve stops cleanly on SIGTERM"
    );
    assert!(
        metrics.contains("sluice_runs_total"),
        "no run finished: {metrics}"
    );

    let value = |name: &str, labels: &[&str]| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
            .sum()
    };
    let stats = dest.stats();
    let limited = stats.rate_limited;
    let locks = stats.record_errors["UNABLE_TO_LOCK_ROW"];
    assert_eq!(value("sluice_records_total", &["status=\"delivered\""]), 45);
    assert_eq!(value("sluice_records_total", &["status=\"rejected\""]), 5);
    assert_eq!(
        value("sluice_requests_total", &["sync=\"s\""]),
        stats.requests
    );
    assert_eq!(value("sluice_requests_total", &["class=\"4xx\""]), limited);
    assert_eq!(value("sluice_rate_limit_waits_total", &[]), limited);
    assert_eq!(value("sluice_retries_total", &[]), locks);
    assert_eq!(
        value("sluice_ledger_records", &["status=\"delivered\""]),
        45
    );
    assert_eq!(value("sluice_ledger_records", &["status=\"rejected\""]), 5);
    assert!(metrics.contains("sluice_request_duration_seconds_bucket"));
    assert!(metrics.contains("connector=\"rest\""));

    // The run history says the same.
    let history = common::json_lines(&common::sluice_ok(&["runs", "--json"], &config, &[]).await);
    assert_eq!(history.len(), 1);
    let h = &history[0];
    assert_eq!(
        (
            h["outcome"].as_str(),
            h["delivered"].as_u64(),
            h["rejected"].as_u64()
        ),
        (Some("completed"), Some(45), Some(5))
    );
    assert_eq!(h["requests"].as_u64(), Some(stats.requests));
    assert_eq!(h["rate_limit_waits"].as_u64(), Some(limited));
    assert_eq!(h["retries"].as_u64(), Some(locks));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_goes_to_stderr_as_plain_lines_when_stdout_is_a_pipe() {
    let dest = rest::start(RestConfig {
        mode: RestMode::AcceptAll,
        faults: Faults {
            latency: Some(sluice_sim::faults::Latency {
                every: 1,
                delay: Duration::from_millis(500),
            }),
            ..Faults::default()
        },
        ..RestConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &dest, 100, "");
    edit_config(&config, ", results_pointer = \"/results\"", "");
    let run = common::sluice(&["run"], &config, &[("OBSERVE_TOKEN", SECRET)]).await;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8(run.stdout).unwrap();
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(stdout.starts_with("sync `s` completed"), "{stdout}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("s: read ") && l.contains("req/s")),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}') && !stdout.contains('\u{1b}'),
        "no terminal escapes on a pipe"
    );

    let quiet = common::sluice(&["run", "--quiet"], &config, &[("OBSERVE_TOKEN", SECRET)]).await;
    assert!(quiet.status.success());
    assert!(String::from_utf8(quiet.stderr).unwrap().is_empty());
}
