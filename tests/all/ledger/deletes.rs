//! A mirror run's deletes in the ledger: a confirmed delete forgets the record; a failed
//! one is kept as a failed delete, listed, and sent again as a delete by the retry job.

use sluice::config::Behavior;
use sluice::sandbox::Operation;

use super::*;

fn delete(key: &str, id: &str, fate: Fate) -> Settled {
    Settled {
        record: Record::delete(key.into(), Some(id.into())),
        fate,
        attempts: 1,
    }
}

#[test]
fn a_confirmed_delete_forgets_and_a_failed_one_waits_as_a_delete() {
    let (_dir, ledger) = common::state::fresh_ledger();
    let sync = ledger.sync("s").unwrap();
    let delivered = |id: &str| Fate::Delivered(Some(id.into()));
    sync.record(
        &[
            settle("k1", delivered("ID1")),
            settle("k2", delivered("ID2")),
        ],
        10,
    )
    .unwrap();

    // The destination refused to delete k1 for now.
    sync.record(&[delete("k1", "ID1", rejected("UNABLE_TO_LOCK_ROW"))], 20)
        .unwrap();
    let k1 = sync.get("k1").unwrap().unwrap();
    assert_eq!(
        (k1.status, k1.deleting, k1.destination_id.as_deref()),
        (Status::Rejected, true, Some("ID1"))
    );
    let failed: Vec<String> = sync.failed().map(|e| e.unwrap().0).collect();
    assert_eq!(failed, ["k1"]);
    let request = Request::default();
    let picked =
        retry_job::select(&sync, &RetryJob::default(), Behavior::Mirror, &request, 30).unwrap();
    assert_eq!(picked.records.len(), 1);
    let again = &picked.records[0];
    assert_eq!(
        (
            again.key.as_str(),
            again.operation,
            again.destination_id.as_deref()
        ),
        ("k1", Operation::Delete, Some("ID1")),
        "sent again as the delete it was"
    );

    // Both deletes confirmed: the ledger no longer knows either record.
    sync.record(&[delete("k1", "ID1", delivered("ID1"))], 40)
        .unwrap();
    sync.record(&[delete("k2", "ID2", delivered("ID2"))], 50)
        .unwrap();
    assert!(sync.get("k1").unwrap().is_none());
    assert!(sync.get("k2").unwrap().is_none());
    assert!(sync.failed().next().is_none());
    assert_eq!(
        sync.counts().unwrap().by_status.get(&Status::Delivered),
        Some(&0)
    );

    // A deleted key delivered again is an ordinary delivered record.
    sync.record(&[settle("k2", delivered("ID3"))], 60).unwrap();
    let k2 = sync.get("k2").unwrap().unwrap();
    assert_eq!(
        (k2.status, k2.destination_id.as_deref()),
        (Status::Delivered, Some("ID3"))
    );
    drop(sync);

    // The same after compaction: a snapshot holds no deleted key.
    ledger.flush().unwrap();
    ledger.compact("s").unwrap();
    let sync = ledger.sync("s").unwrap();
    assert!(sync.get("k1").unwrap().is_none());
    assert_eq!(
        sync.get("k2").unwrap().unwrap().destination_id.as_deref(),
        Some("ID3")
    );
}

/// A failed update keeps the id it was sent with, and the retry job sends it again as an
/// update by that id (the stored entry alone is read: the log is not).
#[test]
fn a_failed_update_is_retried_as_an_update_by_its_id() {
    let (_dir, ledger) = common::state::fresh_ledger();
    let sync = ledger.sync("s").unwrap();
    let mut record = Record::new("k1".into(), "{\"Name\": \"x\"}".into());
    record.operation = Operation::Update;
    record.destination_id = Some("ID1".into());
    let failed = Settled {
        record,
        fate: rejected("STRING_TOO_LONG"),
        attempts: 1,
    };
    sync.record(&[failed], 10).unwrap();
    let picked = retry_job::select(
        &sync,
        &RetryJob::default(),
        Behavior::Update,
        &Request::default(),
        20,
    )
    .unwrap();
    let again = &picked.records[0];
    assert_eq!(
        (
            again.operation,
            again.destination_id.as_deref(),
            again.payload.as_str()
        ),
        (Operation::Update, Some("ID1"), "{\"Name\": \"x\"}")
    );
}
