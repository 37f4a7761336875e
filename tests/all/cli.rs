//! The `sluice` binary as an operator runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use sluice_sim::faults::{Faults, Latency};
use sluice_sim::rest::{self, RestConfig, RestMode};

fn contacts(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": format!("{prefix}{i:05}"), "email": "x@example.com"})
            )
        })
        .collect()
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
        std::fs::write(dir.join(format!("{name}.jsonl")), contacts(name, *n)).unwrap();
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
    let dest = rest::start(RestConfig {
        mode: RestMode::AcceptAll,
        ..RestConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        &[("first", 120), ("second", 30)],
        "batch_size = 50",
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--json", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--json", "--sync", "second", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_run_and_leaves_unconfirmed_records_pending() {
    let faults = Faults {
        latency: Some(Latency {
            every: 1,
            delay: Duration::from_millis(100),
        }),
        ..Faults::default()
    };
    let dest = rest::start(RestConfig {
        mode: RestMode::AcceptAll,
        faults,
        ..RestConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        &[("big", 20_000)],
        "batch_size = 10\nconcurrency = 2",
    );
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--json", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
