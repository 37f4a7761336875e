//! The delivered log seen from outside: change detection bound to its destination, a
//! full resync on purpose, runs that change some records after a compaction, and a
//! SIGKILL while a compaction writes its snapshot.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sluice::ledger::{Ledger, Status};
use sluice_sim::SimHandle;
use sluice_sim::rest::RestConfig;

use crate::common;

/// A config of one sync `s` over `data.jsonl` in `dir`, to `base_url`, with `settings`
/// (TOML inline-table body).
fn write_config(dir: &Path, base_url: &str, settings: &str) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"state\"\ncache_dir = \"{}\"\n[connectors.rest]\ncomponent = \"builtin:rest\"\n\n\
             [[sync]]\nname = \"s\"\nconnector = \"rest\"\nsource = {{ jsonl = \"data.jsonl\", key = \"id\" }}\n\
             base_url = \"{base_url}\"\nsettings = {{ {settings} }}\nbatch_size = 200\nconcurrency = 4\n",
            common::cache_dir().display()
        ),
    )
    .unwrap();
    path
}

/// `n` records `k000000`..; those whose index is in `changed` carry another note.
fn write_data(dir: &Path, n: usize, version: impl Fn(usize) -> u32) {
    let mut data = String::new();
    for i in 0..n {
        data.push_str(&format!(
            "{{\"id\": \"k{i:06}\", \"email\": \"k{i:06}@example.com\", \"v\": {}}}\n",
            version(i)
        ));
    }
    std::fs::write(dir.join("data.jsonl"), data).unwrap();
}

async fn run(config: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["run", "--json"];
    args.extend(extra);
    let out = common::sluice_ok(&args, config, &[]).await;
    serde_json::from_str(out.trim()).unwrap()
}

fn counts(summary: &Value) -> (u64, u64, u64) {
    let n = |k: &str| summary[k].as_u64().unwrap();
    (n("read"), n("delivered"), n("unchanged"))
}

const V1: &str = "path = \"/v1/records\", results_pointer = \"/results\"";

async fn rest_sim() -> SimHandle {
    common::checking_emails_with(RestConfig::default()).await
}

/// A destination, and a sync `s` of `n` records to it, all at version 1, not run yet.
async fn first_version(n: usize) -> (SimHandle, tempfile::TempDir, PathBuf) {
    let dest = rest_sim().await;
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), n, |_| 1);
    let config = write_config(dir.path(), &dest.base_url(), V1);
    (dest, dir, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_destination_gets_every_record_and_the_summary_says_why() {
    let (a, b) = (rest_sim().await, rest_sim().await);
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 50, |_| 1);
    let config = write_config(dir.path(), &a.base_url(), V1);
    assert_eq!(counts(&run(&config, &[]).await), (50, 50, 0));
    let again = run(&config, &[]).await;
    assert_eq!(counts(&again), (50, 0, 50));
    assert!(again.get("resent_because").is_none(), "{again}");

    // The base URL now points at another destination, which has never seen a record.
    let config = write_config(dir.path(), &b.base_url(), V1);
    let moved = run(&config, &[]).await;
    assert_eq!(counts(&moved), (50, 50, 0), "{moved}");
    assert!(
        moved["resent_because"]
            .as_str()
            .unwrap()
            .starts_with("the destination changed since the last run"),
        "{moved}"
    );
    assert_eq!(
        b.stored().len(),
        50,
        "every record reached the new destination"
    );
    // From then on, the new destination's confirmations count.
    assert_eq!(counts(&run(&config, &[]).await), (50, 0, 50));

    // Settings address the destination too.
    let config = write_config(
        dir.path(),
        &b.base_url(),
        &format!("{V1}, method = \"PUT\""),
    );
    let resent = run(&config, &[]).await;
    assert_eq!(counts(&resent), (50, 50, 0), "{resent}");
    assert!(resent["resent_because"].is_string());
    // The report for people says it too.
    let config_text = write_config(dir.path(), &a.base_url(), V1);
    let report = common::sluice_ok(&["run"], &config_text, &[]).await;
    assert!(
        report.contains("sent again: the destination changed"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resync_sends_every_record_and_keeps_the_ledger_delivered() {
    let (dest, dir, config) = first_version(30).await;
    run(&config, &[]).await;
    let received = dest.stats().records_received;

    let resync = run(&config, &["--full-resync"]).await;
    assert_eq!(counts(&resync), (30, 30, 0), "{resync}");
    assert_eq!(
        resync["resent_because"],
        "a full resync was asked for: every record is sent"
    );
    assert_eq!(dest.stats().records_received, received + 30);
    // Not a lasting mode: the next run skips what is unchanged again.
    assert_eq!(counts(&run(&config, &[]).await), (30, 0, 30));
    let entries = ledger_statuses(dir.path());
    assert_eq!(entries.len(), 30);
    assert!(
        entries
            .iter()
            .all(|(_, s, attempts)| *s == Status::Delivered && *attempts == 2)
    );
}

/// Every key's status and attempts, through the same views `sluice ledger` uses.
fn ledger_statuses(dir: &Path) -> Vec<(String, Status, u32)> {
    let ledger = Ledger::open(&dir.join("state")).unwrap();
    let sync = ledger.sync("s").unwrap();
    sync.iter()
        .map(|item| {
            let (key, entry) = item.unwrap();
            (key, entry.status, entry.attempts)
        })
        .collect()
}

fn delivered_files(dir: &Path) -> Vec<String> {
    let root = dir.join("state").join("delivered");
    let mut names = Vec::new();
    for sync in std::fs::read_dir(root).unwrap() {
        for file in std::fs::read_dir(sync.unwrap().path()).unwrap() {
            names.push(file.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_change_some_records_after_a_compaction_send_only_those() {
    let (dest, dir, config) = first_version(400).await;
    assert_eq!(counts(&run(&config, &[]).await), (400, 400, 0));
    let files = delivered_files(dir.path());
    assert!(
        files.len() == 1 && files[0].starts_with("snapshot-"),
        "the first load became the snapshot: {files:?}"
    );

    // Each run changes another tenth of the records.
    for round in 1..=6usize {
        write_data(dir.path(), 400, |i| {
            1 + (i % 10 < round) as u32 * round as u32
        });
        let summary = run(&config, &[]).await;
        // Round r changes the records with i % 10 < r: the r-1 earlier tenths again (to a
        // new value) and one more tenth.
        assert_eq!(
            counts(&summary),
            (400, 40 * round as u64, 400 - 40 * round as u64),
            "round {round}: {summary}"
        );
        let stored = dest.stored();
        for i in [0usize, 9, 399] {
            let want = 1 + (i % 10 < round) as u64 * round as u64;
            assert_eq!(
                stored[&format!("k{i:06}")]["v"].as_u64(),
                Some(want),
                "round {round}, record {i}"
            );
        }
    }
    let files = delivered_files(dir.path());
    assert!(
        files.len() < 7,
        "the segments were compacted into the snapshot: {files:?}"
    );
    let statuses = ledger_statuses(dir.path());
    assert_eq!(statuses.len(), 400);
    // k000000 changed in every round, k000009 never.
    assert_eq!(statuses[0], ("k000000".into(), Status::Delivered, 7));
    assert_eq!(statuses[9], ("k000009".into(), Status::Delivered, 1));
    assert_eq!(counts(&run(&config, &[]).await), (400, 0, 400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_compaction_leaves_a_state_that_loses_nothing() {
    const RECORDS: usize = 60_000;
    let (dest, dir, config) = first_version(RECORDS).await;
    run(&config, &[]).await;
    let log_dir = std::fs::read_dir(dir.path().join("state").join("delivered"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    // A full resync appends a segment as large as the snapshot, so the run ends with a
    // compaction; the process is killed as soon as its new snapshot is being written.
    let mut killed_mid_compaction = 0;
    for _ in 0..3 {
        let mut child = common::spawn_sluice(&["run", "--json", "--full-resync"], &config);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let writing = std::fs::read_dir(&log_dir)
                .unwrap()
                .any(|f| f.unwrap().file_name().to_string_lossy().ends_with(".tmp"));
            if writing {
                child.start_kill().unwrap();
                killed_mid_compaction += 1;
                break;
            }
            if child.try_wait().unwrap().is_some() || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        child.wait().await.unwrap();
    }
    assert!(
        killed_mid_compaction > 0,
        "no kill landed while a snapshot was being written"
    );

    // The next run reads a whole state: the old snapshot or the new one, never a mix.
    let summary = run(&config, &[]).await;
    assert_eq!(summary["read"], RECORDS as u64, "{summary}");
    assert_eq!(summary["pending"], 0, "{summary}");
    let stored: BTreeSet<String> = dest.stored().into_keys().collect();
    let statuses = ledger_statuses(dir.path());
    let delivered: BTreeSet<String> = statuses
        .iter()
        .filter(|(_, s, _)| *s == Status::Delivered)
        .map(|(k, _, _)| k.clone())
        .collect();
    assert_eq!(delivered.len(), RECORDS);
    assert_eq!(delivered, stored, "the ledger agrees with the destination");
    assert!(
        delivered_files(dir.path())
            .iter()
            .all(|f| !f.ends_with(".tmp")),
        "what the kill left is cleared"
    );
    assert_eq!(
        counts(&run(&config, &[]).await),
        (RECORDS as u64, 0, RECORDS as u64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_key_is_decided_by_its_last_row_whichever_rows_changed() {
    let dest = rest_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let row = |key: &str, v: u32| {
        format!("{{\"id\": \"{key}\", \"email\": \"{key}@example.com\", \"v\": {v}}}\n")
    };
    std::fs::write(dir.path().join("data.jsonl"), row("a", 1) + &row("b", 1)).unwrap();
    let config = write_config(dir.path(), &dest.base_url(), V1);
    assert_eq!(counts(&run(&config, &[]).await), (2, 2, 0));

    // `a`: a changed row, then the delivered one last; `b`: the delivered row, then a
    // changed one last. Rows are decided as they are read, before the repeats are known.
    let rows = row("a", 2) + &row("a", 1) + &row("b", 1) + &row("b", 2);
    std::fs::write(dir.path().join("data.jsonl"), rows).unwrap();
    let summary = run(&config, &[]).await;
    assert_eq!(summary["duplicate_keys"], 2, "{summary}");
    assert_eq!(summary["unchanged"], 1, "{summary}");
    assert_eq!(summary["delivered"], 1, "{summary}");
    let stored = dest.stored();
    assert_eq!(
        stored["a"]["v"], 1,
        "a's last row is what the destination holds"
    );
    assert_eq!(stored["b"]["v"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_refused_after_its_delivery_counts_once_as_refused_with_its_history() {
    let (dest, dir, config) = first_version(20).await;
    assert_eq!(counts(&run(&config, &[]).await), (20, 20, 0));
    // k000003's new data is refused: the store holds its failure, the log its delivery.
    let data = std::fs::read_to_string(dir.path().join("data.jsonl")).unwrap();
    let data = data.replace("k000003@example.com", "broken");
    std::fs::write(dir.path().join("data.jsonl"), data).unwrap();
    let summary = run(&config, &[]).await;
    assert_eq!(
        (summary["rejected"].as_u64(), summary["unchanged"].as_u64()),
        (Some(1), Some(19))
    );
    assert_eq!(dest.stored()["k000003"]["email"], "k000003@example.com");

    let stats =
        common::sluice_ok(&["ledger", "stats", "--sync", "s", "--json"], &config, &[]).await;
    let stats: Value = serde_json::from_str(stats.trim()).unwrap();
    assert_eq!(stats["by_status"]["delivered"], 19, "{stats}");
    assert_eq!(stats["by_status"]["rejected"], 1, "{stats}");
    // The views add the earlier delivery's attempts to the failure's.
    let statuses = ledger_statuses(dir.path());
    assert_eq!(statuses[3], ("k000003".into(), Status::Rejected, 2));
    assert_eq!(statuses.len(), 20);
}
