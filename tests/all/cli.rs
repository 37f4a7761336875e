//! The `sluice` binary as an operator runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::rest::RestMode;

use crate::common::{self, Scenario, Setup};

/// A destination that takes everything, and a folder with a config of `syncs` to it.
async fn accepting_syncs(
    syncs: &[(&str, usize)],
    extra: &str,
) -> (sluice_sim::SimHandle, tempfile::TempDir, std::path::PathBuf) {
    let dest = common::accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.base_url(), syncs, extra);
    (dest, dir, config)
}

fn write_config(
    dir: &std::path::Path,
    base_url: &str,
    syncs: &[(&str, usize)],
    extra: &str,
) -> std::path::PathBuf {
    let mut text = format!(
        "cache_dir = \"{}\"\n[connectors.rest]\ncomponent = \"builtin:rest\"\n",
        crate::common::cache_dir().display()
    );
    for (name, n) in syncs {
        std::fs::write(
            dir.join(format!("{name}.jsonl")),
            common::contacts_jsonl(name, *n),
        )
        .unwrap();
        text.push_str(&format!(
            "\n[[sync]]\nname = \"{name}\"\nconnector = \"rest\"\nsource = {{ jsonl = \"{name}.jsonl\", key = \"id\" }}\nbase_url = \"{base_url}\"\nsettings = {{ path = \"/v1/records\" }}\n{extra}\n"
        ));
    }
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_json_prints_one_summary_per_sync() {
    let (dest, _dir, config) =
        accepting_syncs(&[("first", 120), ("second", 30)], "batch_size = 50").await;
    let lines = common::json_lines(&common::sluice_ok(&["run", "--json"], &config, &[]).await);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["sync"], "first");
    assert_eq!(lines[0]["outcome"], "completed");
    assert_eq!(
        (
            lines[0]["delivered"].as_u64(),
            lines[0]["requests"].as_u64()
        ),
        (Some(120), Some(3))
    );
    for field in [
        "rejected",
        "permanent",
        "pending",
        "retries",
        "rate_limit_waits",
        "rate_limit_wait_ms",
        "bisections",
        "transient_failures",
        "auth_renewals",
        "elapsed_ms",
    ] {
        assert_eq!(
            lines[0][field].as_u64().map(|_| ()),
            Some(()),
            "missing {field}"
        );
    }
    assert_eq!(
        (lines[1]["sync"].as_str(), lines[1]["delivered"].as_u64()),
        (Some("second"), Some(30))
    );
    assert_eq!(dest.stored().len(), 150);

    // --sync runs just one.
    let output = common::sluice_ok(&["run", "--json", "--sync", "second"], &config, &[]).await;
    assert_eq!(output.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_run_and_leaves_unconfirmed_records_pending() {
    let faults = Faults::slow(1, 100);
    let dest = common::rest_sim(RestMode::AcceptAll, faults).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        &[("big", 20_000)],
        "batch_size = 10\nconcurrency = 2",
    );
    let child = common::spawn_sluice(&["run", "--json"], &config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().unwrap();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["outcome"], "interrupted");
    let delivered = summary["delivered"].as_u64().unwrap();
    assert!(delivered > 0 && delivered < 20_000, "{summary}");
    assert_eq!(
        summary["pending"].as_u64().unwrap(),
        summary["read"].as_u64().unwrap() - delivered
    );
    // Every record reported delivered is at the destination, and nothing more was sent
    // after the stop than what was in flight.
    assert_eq!(dest.stored().len() as u64, delivered);
}

/// A destination that checks emails, and a sync of two records (`good`, and `bad` with an
/// invalid email) already run once by the binary.
async fn one_good_one_bad() -> (SimHandle, Setup) {
    let dest = common::checking_emails().await;
    let data = "{\"id\": \"good\", \"email\": \"a@example.com\"}\n{\"id\": \"bad\", \"email\": \"nope\"}\n";
    let setup = Scenario::rest(&dest.base_url())
        .settings("{ path = \"/v1/records\", results_pointer = \"/results\" }")
        .source("jsonl", data.as_bytes())
        .setup();
    sluice_ok(&setup, &["run", "--json"]).await;
    (dest, setup)
}

/// Runs the binary with `args` on `setup`'s config; it must succeed: its standard output.
async fn sluice_ok(setup: &Setup, args: &[&str]) -> String {
    common::sluice_ok(args, &setup.config_path(), &[]).await
}

/// [`sluice_ok`], whose output is one JSON value.
async fn sluice_json(setup: &Setup, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(sluice_ok(setup, args).await.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_list_shows_the_failure_first_with_its_code_fields_and_attempts() {
    let (_dest, setup) = one_good_one_bad().await;
    let list =
        common::json_lines(&sluice_ok(&setup, &["ledger", "list", "--sync", "s", "--json"]).await);
    assert_eq!(list.len(), 2);
    assert_eq!(
        (
            list[0]["key"].as_str(),
            list[0]["status"].as_str(),
            list[0]["code"].as_str()
        ),
        (Some("bad"), Some("rejected"), Some("INVALID_EMAIL_ADDRESS"))
    );
    assert_eq!(list[0]["fields"], json!(["email"]));
    assert_eq!(list[0]["attempts"], 1);
    assert_eq!(
        (list[1]["key"].as_str(), list[1]["status"].as_str()),
        (Some("good"), Some("delivered"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_list_exports_the_rejected_records_as_csv() {
    let (_dest, setup) = one_good_one_bad().await;
    let args = [
        "ledger", "list", "--sync", "s", "--status", "rejected", "--csv",
    ];
    let csv = sluice_ok(&setup, &args).await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "key,status,code,message,fields,attempts,first_failure,last_attempt"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("bad,rejected,INVALID_EMAIL_ADDRESS,")
    );
    assert_eq!(lines.next(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_stats_count_the_records_by_status_and_code() {
    let (_dest, setup) = one_good_one_bad().await;
    let stats = sluice_json(&setup, &["ledger", "stats", "--sync", "s", "--json"]).await;
    assert_eq!(
        stats["by_status"],
        json!({"delivered": 1, "rejected": 1, "pending": 0, "permanent": 0, "resolved": 0})
    );
    assert_eq!(
        stats["by_code"],
        json!([{"status": "rejected", "code": "INVALID_EMAIL_ADDRESS", "records": 1}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_show_gives_a_record_s_payload_as_read() {
    let (_dest, setup) = one_good_one_bad().await;
    let show = sluice_json(&setup, &["ledger", "show", "--sync", "s", "bad"]).await;
    assert_eq!(
        show["payload"].as_str(),
        Some("{\"id\": \"bad\", \"email\": \"nope\"}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_record_is_not_sent_again_while_its_data_is_unchanged() {
    let (_dest, setup) = one_good_one_bad().await;
    let resolve = [
        "ledger",
        "resolve",
        "--sync",
        "s",
        "--key",
        "bad",
        "--by",
        "ana",
        "--why",
        "fixed in the CRM",
    ];
    let resolved = sluice_json(&setup, &resolve).await;
    assert_eq!(
        (
            resolved["status"].as_str(),
            resolved["resolution"]["by"].as_str()
        ),
        (Some("resolved"), Some("ana"))
    );
    let run = sluice_json(&setup, &["run", "--json"]).await;
    assert_eq!(
        (run["unchanged"].as_u64(), run["requests"].as_u64()),
        (Some(2), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_its_schedule_and_stops_cleanly_on_sigterm() {
    let setup = Scenario::new("builtin:rest", "http://127.0.0.1:9")
        .settings("{ path = \"/x\" }")
        .sync("[sync.retry_job]\nschedule = [\"03:15\"]")
        .setup();
    let config = setup.config_path();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("serve stops promptly")
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("next scheduled work") && log.contains("03:15:00"),
        "{log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_cannot_start_is_reported_recorded_and_the_others_run() {
    let (_dest, _dir, config) =
        accepting_syncs(&[("first", 10), ("second", 10)], "batch_size = 50").await;
    // The first sync names a setting the REST connector does not know.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "settings = { path = \"/v1/records\" }",
        "settings = { path = \"/v1/records\", colour = \"blue\" }",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let output = common::sluice(&["run", "--json"], &config, &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sync `first`")
            && stderr.contains("refused the settings")
            && stderr.contains("colour"),
        "{stderr}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let summaries: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The sync that could not start is an error object naming it (docs/cli.md), then
    // the other's summary.
    assert_eq!(summaries.len(), 2);
    let error = &summaries[0]["error"];
    assert_eq!(
        (error["kind"].as_str(), error["sync"].as_str()),
        (Some("failed"), Some("first"))
    );
    assert!(error["message"].as_str().unwrap().contains("colour"));
    assert_eq!(
        (
            summaries[1]["sync"].as_str(),
            summaries[1]["delivered"].as_u64()
        ),
        (Some("second"), Some(10))
    );

    let history = common::json_lines(&common::sluice_ok(&["runs", "--json"], &config, &[]).await);
    assert_eq!(history.len(), 2);
    let failed = history.iter().find(|r| r["sync"] == "first").unwrap();
    assert_eq!(failed["outcome"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("colour"));
}

/// `retry --help` said `--key` retries a record "whatever its status", but a delivered
/// one is refused: the help says so, and what each refusal exits with (the refusals
/// themselves: `operator::json_errors::an_error_about_a_sync_or_its_record_names_them`).
#[test]
fn retry_help_says_a_delivered_key_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["retry", "--help"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains(
            "--key <KEYS> Exactly this failed record (repeatable), whatever its failure status \
             (pending, rejected, permanent, resolved), code or age. A delivered record has \
             nothing to retry: it is refused (exit 1), and a key not in the ledger is not \
             found (exit 4)"
        ),
        "{help}"
    );
    assert!(!help.contains("whatever its status"), "{help}");
}
