//! kill -9 at any moment loses nothing: the next run delivers everything not confirmed,
//! and nothing confirmed is marked otherwise.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice::ledger::{Ledger, Status};
use sluice_sim::faults::Faults;
use sluice_sim::rest::RestConfig;

use crate::common;

const RECORDS: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_several_points_of_a_run_loses_nothing() {
    let dest = common::checking_emails_with(RestConfig {
        faults: Faults::slow(1, 3),
        record_keys: false,
        ..RestConfig::default()
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let mut data = String::with_capacity(RECORDS * 80);
    let mut valid = BTreeSet::new();
    let mut invalid = BTreeSet::new();
    for i in 0..RECORDS {
        let key = format!("k{i:06}");
        let email = if i % 97 == 0 {
            "broken".to_string()
        } else {
            format!("{key}@example.com")
        };
        if i % 97 == 0 {
            invalid.insert(key.clone())
        } else {
            valid.insert(key.clone())
        };
        data.push_str(&format!(
            "{{\"id\": \"{key}\", \"email\": \"{email}\", \"note\": \"row {i}\"}}\n"
        ));
    }
    std::fs::write(dir.path().join("data.jsonl"), data).unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\ncache_dir = \"{}\"\n[connectors.rest]\ncomponent = \"builtin:rest\"\n\n[[sync]]\nname = \"big\"\nconnector = \"rest\"\nsource = {{ jsonl = \"data.jsonl\", key = \"id\" }}\nbase_url = \"{}\"\nsettings = {{ path = \"/v1/records\", results_pointer = \"/results\" }}\nbatch_size = 200\nconcurrency = 4\n",
            crate::common::cache_dir().display(),
            dest.base_url()
        ),
    )
    .unwrap();

    // Kill the process at several points of progress, measured by what the destination
    // has seen since that process started.
    for requests_before_kill in [40u64, 130, 260, 90] {
        let start = dest.stats().requests;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--json", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while dest.stats().requests < start + requests_before_kill {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the run made no progress"
            );
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
    }

    // A last run to the end.
    let output = common::sluice_ok(&["run", "--json"], &config, &[]).await;
    let summary: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(summary["pending"], 0, "{summary}");

    let stored: BTreeSet<String> = dest.stored().into_keys().collect();
    assert_eq!(
        stored, valid,
        "the destination holds exactly every valid record"
    );
    assert!(dest.stats().records_received >= RECORDS as u64);

    let ledger = Ledger::open(&dir.path().join("state")).unwrap();
    let sync = ledger.sync("big").unwrap();
    let mut delivered = BTreeSet::new();
    let mut rejected = BTreeSet::new();
    for item in sync.iter() {
        let (key, entry) = item.unwrap();
        match entry.status {
            Status::Delivered => delivered.insert(key),
            Status::Rejected => rejected.insert(key),
            other => panic!("record {key} is {other:?} after the final run"),
        };
    }
    assert_eq!(
        delivered, stored,
        "the ledger agrees with the destination exactly"
    );
    assert_eq!(rejected, invalid);
}
