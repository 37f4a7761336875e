//! The ledger on disk: an older version is upgraded in place; a foreign, corrupt or future
//! ledger is refused clearly; a second process on the same ledger is refused.

use super::*;

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
    let unchanged = Record::new("a".into(), delivered.into());
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
    let setup = Scenario::contacts_to(&dest.base_url(), 5).setup();
    let held = common::state::ledger_of(&setup.config);
    let output = common::sluice(&["run"], &setup.config_path(), &[]).await;
    // Exit code 5: the state cannot be used (docs/cli.md).
    assert_eq!(output.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another sluice process"),
        "{stderr}"
    );
    assert_eq!(dest.stats().requests, 0);
    drop(held);
}
