//! Across runs the ledger sends only what changed or failed; a permanent record waits
//! until its data changes.

use super::*;

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
    let ledger = common::state::ledger_of(&setup.config);
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

    let ledger = common::state::ledger_of(&setup.config);
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
    let setup = Scenario::new("builtin:salesforce", &dest.base_url())
        .records(records.clone())
        .settings("{ object = \"Account\", external_id_field = \"External_Id__c\", parent_field = \"ParentCrmId\" }")
        .setup();
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
    let ledger = common::state::ledger_of(&setup.config);
    let sync = ledger.sync("s").unwrap();
    assert_eq!(sync.get("p0").unwrap().unwrap().status, Status::Delivered);
    assert_eq!(sync.get("p1").unwrap().unwrap().status, Status::Permanent);
    assert_eq!(dest.stored().len(), 8);
}
