//! The persistent retry ledger: fates by key across runs, the retry job, a person's
//! intervention, bad input and crash safety.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use sluice::config::RetryJob;
use sluice::engine::{Fate, Outcome, RecordFailure, Settled};
use sluice::ledger::{Decision, Ledger, PayloadHash, Status};
use sluice::retry_job::{self, Request};
use sluice::source::Record;
use sluice::sync::Host;
use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::rest::{self, RestConfig, RestMode};
use sluice_sim::validation::Rules;

use crate::common::{self, Expect, Scenario, assert_summary, contacts, is_delivered};

/// The REST connector reading per-record answers.
const PER_RECORD: &str =
    r#"{ path = "/v1/records", results_pointer = "/results", id_field = "id" }"#;

/// `records` to `dest` in batches of 20 by two workers, with fast retries.
fn batches_of_20(dest: &SimHandle, records: Vec<serde_json::Value>) -> Scenario {
    Scenario::rest(&dest.base_url())
        .records(records)
        .batch(20)
        .concurrency(2)
        .fast_retries()
}

async fn per_record(faults: Faults) -> SimHandle {
    rest::start(RestConfig {
        mode: RestMode::PerRecord,
        faults,
        rules: Rules {
            emails: vec!["email".into()],
            required: vec!["email".into()],
            ..Rules::default()
        },
        ..RestConfig::default()
    })
    .await
    .unwrap()
}

fn rewrite(setup: &common::Setup, records: &[serde_json::Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(setup.dir.path().join("data.jsonl"), text).unwrap();
}

fn data_requests(dest: &SimHandle) -> Vec<Vec<String>> {
    dest.requests()
        .into_iter()
        .filter(|r| r.path == "/v1/records")
        .map(|r| r.keys)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_runs_send_only_what_changed_or_failed() {
    let dest = per_record(Faults::default()).await;
    let mut records = contacts(100);
    records[7]["email"] = json!("broken,example.com");
    records[42]["email"] = json!("also broken");
    let setup = batches_of_20(&dest, records.clone())
        .settings(PER_RECORD)
        .setup();

    let (first, _) = common::run(&setup).await;
    assert_eq!((first.summary.delivered, first.summary.rejected), (98, 2));
    let ledger = Ledger::open(&setup.config.state_dir).unwrap();
    let sync = ledger.sync("s").unwrap();
    let broken = sync.get("c0007").unwrap().unwrap();
    assert_eq!(broken.status, Status::Rejected);
    assert_eq!(
        broken.failure.as_ref().unwrap().code,
        "INVALID_EMAIL_ADDRESS"
    );
    assert_eq!(broken.attempts, 1);
    assert!(broken.first_failure_ms.is_some());
    assert_eq!(
        broken.payload.as_deref(),
        Some(records[7].to_string().as_str())
    );
    let fine = sync.get("c0001").unwrap().unwrap();
    assert_eq!(
        (fine.status, fine.destination_id.as_deref()),
        (Status::Delivered, Some(rest::record_id("c0001").as_str()))
    );
    drop((sync, ledger));

    // The upstream data is fixed, and one delivered record changes.
    records[7]["email"] = json!("fixed@example.com");
    records[42]["email"] = json!("fixed42@example.com");
    records[50]["email"] = json!("changed50@example.com");
    rewrite(&setup, &records);
    let before = data_requests(&dest).len();
    let (second, _) = common::run(&setup).await;
    let s = &second.summary;
    assert_eq!(
        (s.read, s.unchanged, s.delivered, s.rejected, s.pending),
        (100, 97, 3, 0, 0)
    );
    let sent: BTreeSet<String> = data_requests(&dest)[before..]
        .iter()
        .flatten()
        .cloned()
        .collect();
    assert_eq!(
        sent,
        BTreeSet::from(["c0007".to_string(), "c0042".into(), "c0050".into()]),
        "only the fixed and the changed records were sent"
    );
    assert_eq!(
        dest.stored_record("c0007").unwrap()["email"],
        json!("fixed@example.com")
    );

    let ledger = Ledger::open(&setup.config.state_dir).unwrap();
    let fixed = ledger.sync("s").unwrap().get("c0007").unwrap().unwrap();
    assert_eq!(
        (
            fixed.status,
            fixed.failure,
            fixed.first_failure_ms,
            fixed.payload,
            fixed.attempts
        ),
        (Status::Delivered, None, None, None, 2)
    );
    drop(ledger);

    // Nothing changed: nothing is sent. `mode = "all"` sends everything again.
    let (third, _) = common::run(&setup).await;
    assert_eq!((third.summary.unchanged, third.summary.requests), (100, 0));
    let all = batches_of_20(&dest, records)
        .settings(PER_RECORD)
        .sync("mode = \"all\"")
        .setup();
    std::fs::remove_dir_all(all.dir.path().join("state")).ok();
    std::fs::create_dir_all(all.dir.path().join("state")).unwrap();
    let (fourth, _) = common::run(&all).await;
    assert_eq!(
        (fourth.summary.unchanged, fourth.summary.delivered),
        (0, 100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_records_wait_until_their_data_changes() {
    let dest = sluice_sim::salesforce::start(Default::default())
        .await
        .unwrap();
    let records: Vec<_> = (0..10)
        .map(|i| json!({"id": format!("p{i}"), "Name": "n", "ParentCrmId": if i < 3 { "" } else { "P1" }}))
        .collect();
    let sync = "settings = { object = \"Account\", external_id_field = \"External_Id__c\", parent_field = \"ParentCrmId\" }\n";
    let setup = common::setup(&records, "builtin:salesforce", &dest.base_url(), sync);
    let (first, fates) = common::run(&setup).await;
    assert_eq!((first.summary.permanent, first.summary.delivered), (3, 7));
    assert_eq!(
        fates.codes().values().filter(|c| *c == "DACO-02").count(),
        3
    );

    let (second, fates) = common::run(&setup).await;
    let s = &second.summary;
    assert_eq!(
        (s.held, s.unchanged, s.permanent, s.requests),
        (3, 7, 0, 0),
        "unchanged permanent records are held"
    );
    assert!(fates.all().is_empty(), "nothing was even prechecked");

    // Someone fixes one parent id upstream: it is sent again; the others stay held.
    let mut fixed = records.clone();
    fixed[0]["ParentCrmId"] = json!("P1");
    rewrite(&setup, &fixed);
    let (third, _) = common::run(&setup).await;
    assert_eq!((third.summary.held, third.summary.delivered), (2, 1));
    let ledger = Ledger::open(&setup.config.state_dir).unwrap();
    let sync = ledger.sync("s").unwrap();
    assert_eq!(sync.get("p0").unwrap().unwrap().status, Status::Delivered);
    assert_eq!(sync.get("p1").unwrap().unwrap().status, Status::Permanent);
    assert_eq!(dest.stored().len(), 8);
}

fn settle(key: &str, fate: Fate) -> Settled {
    Settled {
        record: Record {
            key: key.into(),
            payload: format!("{{\"id\": \"{key}\"}}"),
        },
        fate,
        attempts: 1,
    }
}

fn rejected(code: &str) -> Fate {
    Fate::Rejected(RecordFailure::new(code, "m"))
}

const DAY_MS: u64 = 24 * 3600 * 1000;

#[test]
fn the_retry_job_picks_by_window_limit_age_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let sync = ledger.sync("s").unwrap();
    let now = 100 * DAY_MS;
    // Failures that began at different times (an injectable clock: `at_ms`).
    sync.record(&[settle("old", rejected("X"))], now - 9 * DAY_MS)
        .unwrap();
    sync.record(&[settle("d6", rejected("INVALID_EMAIL"))], now - 6 * DAY_MS)
        .unwrap();
    sync.record(&[settle("d5", rejected("LOCK"))], now - 5 * DAY_MS)
        .unwrap();
    sync.record(&[settle("d1", rejected("INVALID_EMAIL"))], now - DAY_MS)
        .unwrap();
    sync.record(
        &[settle(
            "daco",
            Fate::Permanent(RecordFailure::new("DACO-02", "no parent")),
        )],
        now - 2 * DAY_MS,
    )
    .unwrap();
    sync.record(
        &[settle(
            "perm",
            Fate::Permanent(RecordFailure::new("INVALID_CROSS_REFERENCE_KEY", "x")),
        )],
        now - 3 * DAY_MS,
    )
    .unwrap();
    sync.record(&[settle("ok", Fate::Delivered(None))], now - DAY_MS)
        .unwrap();
    // A rejection with a non-retryable code (as the REST connector can report it).
    sync.record(&[settle("daco-rej", rejected("DACO-02"))], now - DAY_MS)
        .unwrap();
    // A later failure keeps the streak's first time.
    sync.record(&[settle("d6", rejected("INVALID_EMAIL"))], now - DAY_MS / 2)
        .unwrap();

    let job = RetryJob::default();
    let keys = |r: &Request| -> (Vec<String>, retry_job::SelectionCounts) {
        let s = retry_job::select(&sync, &job, r, now).unwrap();
        (s.records.into_iter().map(|r| r.key).collect(), s.counts)
    };

    let (picked, counts) = keys(&Request::default());
    assert_eq!(picked, ["d6", "d5", "d1"], "oldest first, within 7 days");
    assert_eq!(
        (
            counts.expired,
            counts.non_retryable,
            counts.selected,
            counts.over_limit
        ),
        (1, 1, 3, 0)
    );

    let (picked, counts) = keys(&Request {
        limit: Some(2),
        ..Request::default()
    });
    assert_eq!(
        (picked, counts.over_limit),
        (vec!["d6".to_string(), "d5".into()], 1)
    );

    let (picked, _) = keys(&Request {
        window: Some(Duration::from_secs(10 * 24 * 3600)),
        ..Request::default()
    });
    assert_eq!(picked, ["old", "d6", "d5", "d1"]);

    let (picked, _) = keys(&Request {
        codes: vec!["INVALID_EMAIL".into()],
        ..Request::default()
    });
    assert_eq!(picked, ["d6", "d1"]);

    // Naming a non-retryable code retries it, permanent ones included.
    let (picked, _) = keys(&Request {
        codes: vec!["DACO-02".into()],
        ..Request::default()
    });
    assert_eq!(picked, ["daco", "daco-rej"]);

    let (picked, _) = keys(&Request {
        include_permanent: true,
        ..Request::default()
    });
    assert_eq!(picked, ["d6", "d5", "perm", "daco", "d1", "daco-rej"]);

    // --key takes exactly the records named, even permanent or expired ones, each once.
    let (picked, _) = keys(&Request {
        keys: vec!["daco".into(), "old".into(), "daco".into()],
        ..Request::default()
    });
    assert_eq!(picked, ["daco", "old"]);
    assert!(
        retry_job::select(
            &sync,
            &job,
            &Request {
                keys: vec!["ok".into()],
                ..Request::default()
            },
            now
        )
        .is_err()
    );
    assert!(
        retry_job::select(
            &sync,
            &job,
            &Request {
                keys: vec!["nope".into()],
                ..Request::default()
            },
            now
        )
        .is_err()
    );

    // A resolved record is no longer retried.
    sync.resolve("d5", "ana@example.com", "fixed by hand in the CRM")
        .unwrap();
    let (picked, _) = keys(&Request::default());
    assert_eq!(picked, ["d6", "d1"]);
    let d5 = sync.get("d5").unwrap().unwrap();
    assert_eq!(
        (d5.status, d5.resolution.unwrap().by.as_str()),
        (Status::Resolved, "ana@example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_pass_delivers_stored_payloads_through_the_engine() {
    // The destination is down for the first run: every request fails.
    let faults = Faults::error_burst(0, 1, 500);
    let down = common::rest_sim(RestMode::AcceptAll, faults).await;
    let port = down.addr().port();
    let setup = Scenario::rest(&down.base_url())
        .records(contacts(40))
        .batch(20)
        .concurrency(1)
        .retry("max_attempts = 2")
        .fast_retries()
        .setup();
    let (first, _) = common::run(&setup).await;
    assert_summary(
        &first.summary,
        Expect::default().rejected(40).delivered(0).requests(4),
    );
    let entry = Ledger::open(&setup.config.state_dir)
        .unwrap()
        .sync("s")
        .unwrap()
        .get("c0003")
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            entry.status,
            entry.attempts,
            entry.failure.unwrap().code.as_str()
        ),
        (Status::Rejected, 2, "INTERNAL")
    );
    down.shutdown().await;
    // ...and is back, at the same address.
    let dest = rest::start(RestConfig {
        mode: RestMode::AcceptAll,
        port,
        ..RestConfig::default()
    })
    .await
    .unwrap();

    // The source file is gone: the retry job needs only the ledger.
    std::fs::write(setup.dir.path().join("data.jsonl"), "").unwrap();
    let host = Host::new(&setup.config).unwrap();
    let report = host
        .retry(&setup.config, "s", &Request::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(report.selection.selected, 40);
    assert_summary(
        &report.run.unwrap().summary,
        Expect::completed().read(40).delivered(40).requests(2),
    );
    assert_eq!(dest.stored().len(), 40);
    let entry = common::ledger_entry(&host, "s", "c0003");
    assert_eq!(
        (entry.status, entry.attempts, entry.failure),
        (Status::Delivered, 3, None)
    );

    // Nothing is left to retry.
    let again = host
        .retry(&setup.config, "s", &Request::default(), Default::default())
        .await
        .unwrap();
    assert_eq!((again.selection.selected, again.run.is_none()), (0, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_and_repeated_keys_are_reported_and_the_run_goes_on() {
    let dest = common::accepting().await;
    let setup = batches_of_20(&dest, contacts(5)).setup();
    let text = [
        r#"{"id": "a", "v": 1}"#,
        r#"{"v": "no key"}"#,
        r#"{"id": "b", "v": 1}"#,
        r#"not json"#,
        r#"{"id": "a", "v": 2}"#,
        r#"{"id": "c", "v": 1}"#,
        r#"{"id": "a", "v": 3}"#,
    ]
    .join("\n");
    std::fs::write(setup.dir.path().join("data.jsonl"), text).unwrap();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_eq!(
        (
            s.outcome,
            s.read,
            s.invalid_rows,
            s.duplicate_keys,
            s.delivered,
            s.pending
        ),
        (Outcome::Completed, 5, 2, 2, 3, 0)
    );
    let lines: Vec<(u64, bool)> = report
        .invalid_rows
        .iter()
        .map(|r| (r.line, r.reason.contains("last row wins")))
        .collect();
    assert_eq!(lines, [(1, true), (2, false), (4, false), (5, true)]);
    assert_eq!(
        dest.stored_record("a").unwrap()["v"],
        json!(3),
        "the last row of a repeated key wins"
    );
    assert_eq!(fates.keys(is_delivered), ["a", "b", "c"]);
}

/// Opens a database that was just closed in this process. sled releases its file lock
/// from a background thread a moment after the last handle is dropped, so the first tries
/// may find it still locked.
fn reopened<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Ok(db) => return db,
            Err(err) if std::time::Instant::now() > deadline => panic!("reopening: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn a_version_1_ledger_is_read_and_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let delivered = r#"{"id": "a", "n": 1}"#;
    {
        // Version 1 wrote JSON entries and left absent fields out.
        let db = sled::open(dir.path().join("ledger")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", "1")
            .unwrap();
        let tree = db.open_tree("sync:s").unwrap();
        let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(delivered.as_bytes()));
        let a = json!({"status": "delivered", "attempts": 2, "last_attempt_ms": 5,
            "delivered_hash": hash, "payload_hash": hash});
        let b = json!({"status": "rejected", "attempts": 3, "first_failure_ms": 7,
            "failure": {"code": "LOCK", "message": "m", "fields": ["Name"]},
            "payload": "{\"id\": \"b\"}"});
        tree.insert("a", serde_json::to_vec(&a).unwrap()).unwrap();
        tree.insert("b", serde_json::to_vec(&b).unwrap()).unwrap();
        db.flush().unwrap();
    }
    let failed_keys = |sync: &sluice::ledger::SyncLedger| -> Vec<String> {
        sync.failed().map(|item| item.unwrap().0).collect()
    };

    let ledger = reopened(|| Ledger::open(dir.path()));
    let sync = ledger.sync("s").unwrap();
    let a = sync.get("a").unwrap().unwrap();
    assert_eq!(
        (a.status, a.attempts, a.delivered_hash),
        (Status::Delivered, 2, Some(PayloadHash::of(delivered)))
    );
    let unchanged = Record {
        key: "a".into(),
        payload: delivered.into(),
    };
    assert_eq!(sync.decide(&unchanged, false).unwrap(), Decision::Unchanged);
    let b = sync.get("b").unwrap().unwrap();
    assert_eq!(b.failure.unwrap().fields, ["Name"]);
    assert_eq!(
        failed_keys(&sync),
        ["b"],
        "the upgrade indexes failed records"
    );

    // A version 1 entry settled again is rewritten in the new layout, building on it.
    sync.record(&[settle("b", Fate::Delivered(Some("id-b".into())))], 9)
        .unwrap();
    let b = sync.get("b").unwrap().unwrap();
    assert_eq!(
        (b.status, b.attempts, b.destination_id.as_deref(), b.failure),
        (Status::Delivered, 4, Some("id-b"), None)
    );
    assert!(failed_keys(&sync).is_empty());
    drop((sync, ledger));
    let db = reopened(|| sled::open(dir.path().join("ledger")));
    let version = db.open_tree("meta").unwrap().get("schema_version").unwrap();
    assert_eq!(
        version.as_deref(),
        Some(&b"3"[..]),
        "the ledger is marked upgraded"
    );
    assert!(
        db.open_tree("sync:s").unwrap().is_empty(),
        "delivered records live in the delivered log, not the store"
    );
    assert!(
        db.open_tree("failed:s").unwrap().is_empty(),
        "a delivery clears the index"
    );
}

/// The retry job reads failed records through an index; it follows every change of
/// status, and an entry it names that is no longer failed (a crash between the two
/// writes) is skipped.
#[test]
fn the_failed_index_follows_every_change_of_status() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let sync = ledger.sync("s").unwrap();
    let failed_keys = |sync: &sluice::ledger::SyncLedger| -> Vec<String> {
        sync.failed().map(|item| item.unwrap().0).collect()
    };
    let permanent = Fate::Permanent(RecordFailure::new("DACO-02", "m"));
    sync.record(
        &[
            settle("d", Fate::Delivered(None)),
            settle("r", rejected("LOCK")),
            settle("p", permanent),
            settle("n", Fate::Pending(None)),
        ],
        1,
    )
    .unwrap();
    assert_eq!(failed_keys(&sync), ["n", "p", "r"]);

    sync.record(
        &[
            settle("r", Fate::Delivered(None)),
            settle("d", rejected("INVALID_EMAIL")),
        ],
        2,
    )
    .unwrap();
    assert_eq!(failed_keys(&sync), ["d", "n", "p"]);
    sync.resolve("p", "ops", "fixed by hand").unwrap();
    assert_eq!(failed_keys(&sync), ["d", "n"]);
    // Failed, then delivered, within one verdict.
    sync.record(
        &[
            settle("n", rejected("LOCK")),
            settle("n", Fate::Delivered(None)),
        ],
        3,
    )
    .unwrap();
    assert_eq!(failed_keys(&sync), ["d"]);

    // What a crash between the index and the entries would leave: an extra index entry.
    drop((sync, ledger));
    {
        let db = reopened(|| sled::open(dir.path().join("ledger")));
        let index = db.open_tree("failed:s").unwrap();
        assert_eq!(
            index.len(),
            1,
            "resolved and delivered records leave the index"
        );
        index.insert("r", &[]).unwrap();
        db.flush().unwrap();
    }
    let ledger = reopened(|| Ledger::open(dir.path()));
    let sync = ledger.sync("s").unwrap();
    assert_eq!(
        failed_keys(&sync),
        ["d"],
        "a delivered record named by the index is skipped"
    );
    let selection =
        retry_job::select(&sync, &RetryJob::default(), &Request::default(), 10).unwrap();
    let keys: Vec<&str> = selection.records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["d"]);
}

#[test]
fn foreign_corrupt_and_future_ledgers_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ledger")).unwrap();
    std::fs::write(dir.path().join("ledger/notes.txt"), "my files").unwrap();
    let err = Ledger::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("is not a Sluice ledger"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ledger/notes.txt")).unwrap(),
        "my files"
    );

    let dir = tempfile::tempdir().unwrap();
    drop(Ledger::open(dir.path()).unwrap());
    {
        let db = reopened(|| sled::open(dir.path().join("ledger")));
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", "99")
            .unwrap();
        db.flush().unwrap();
    }
    let err = reopened(|| match Ledger::open(dir.path()) {
        Err(err) if err.to_string().contains("in use") => Err(err),
        opened => Ok(opened),
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("schema version 99") && err.contains("left untouched"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    drop(Ledger::open(dir.path()).unwrap());
    for entry in std::fs::read_dir(dir.path().join("ledger")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, vec![0xA5; 4096]).unwrap();
        }
    }
    let err = Ledger::open(dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("ledger"),
        "a corrupt ledger must be refused with a message: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_ledger_is_refused() {
    let dest = common::accepting().await;
    let setup = Scenario::rest(&dest.base_url())
        .records(contacts(5))
        .setup();
    let held = Ledger::open(&setup.config.state_dir).unwrap();
    let output = common::sluice(&["run"], &setup.dir.path().join("sluice.toml"), &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another sluice process"),
        "{stderr}"
    );
    assert_eq!(dest.stats().requests, 0);
    drop(held);
}
