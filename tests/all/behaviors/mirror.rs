//! `behavior = "mirror"`: upserts, then deletes at the destination what the source no
//! longer has; never on an incomplete read, never more than `max_deletes` unless allowed.

use sluice::ledger::Status;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runs_leave_the_destination_holding_exactly_the_source() {
    let dest = salesforce_sim().await;
    let ran = accounts_to(
        &dest,
        accounts(&["A0", "A1", "A2", "A3", "A4"], "v1"),
        "mirror",
    )
    .sync("max_deletes = 2")
    .run()
    .await;
    assert_eq!((ran.summary().delivered, ran.summary().deletes), (5, 0));

    // A0 changed, A4 gone, A5 new.
    let mut rows = accounts(&["A1", "A2", "A3"], "v1");
    rows.extend(accounts(&["A0", "A5"], "v2"));
    let gone_id = dest.destination_id("A4").unwrap();
    let second = run_again(&ran, &rows).await;
    let s = &second.summary;
    assert_eq!(
        (s.delivered, s.unchanged, s.deletes, s.deleted, s.pending),
        (2, 3, 1, 1, 0),
        "{s:?}"
    );
    assert_eq!(
        names(&dest),
        expect(&[
            ("A0", "v2 A0"),
            ("A1", "v1 A1"),
            ("A2", "v1 A2"),
            ("A3", "v1 A3"),
            ("A5", "v2 A5")
        ])
    );
    let deletes: Vec<_> = dest
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].query.as_deref(),
        Some(format!("ids={gone_id}&allOrNone=false").as_str()),
        "deleted by the id the destination gave"
    );
    // The inspector holds the delete and what the destination said.
    let inspector = ran.host.inspector(&ran.setup.config, "s").unwrap();
    let shown = inspector.list(100, |e| e.method == "DELETE").unwrap();
    assert_eq!(shown.len(), 1);
    assert!(shown[0].url.contains(&gone_id) && shown[0].verdict.starts_with("per-record"));
    // The ledger forgot the deleted record.
    let keys: Vec<String> = ran.entries().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["A0", "A1", "A2", "A3", "A5"]);

    // A1 changed, A5 gone, A4 back (a new record for the destination).
    let mut rows = accounts(&["A2", "A3"], "v1");
    rows.extend(accounts(&["A0"], "v2"));
    rows.extend(accounts(&["A1", "A4"], "v3"));
    let third = run_again(&ran, &rows).await;
    let s = &third.summary;
    assert_eq!(
        (s.delivered, s.unchanged, s.deletes, s.deleted),
        (2, 3, 1, 1),
        "{s:?}"
    );
    assert_eq!(
        names(&dest),
        expect(&[
            ("A0", "v2 A0"),
            ("A1", "v3 A1"),
            ("A2", "v1 A2"),
            ("A3", "v1 A3"),
            ("A4", "v3 A4")
        ])
    );
    assert_eq!(ran.entry("A4").status, Status::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_deletes_than_max_deletes_delete_nothing_until_allowed() {
    let dest = salesforce_sim().await;
    let keys: Vec<String> = (0..10).map(|i| format!("K{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let ran = accounts_to(&dest, accounts(&keys, "v1"), "mirror")
        .run()
        .await;
    assert_eq!(ran.summary().delivered, 10);

    // Two of ten gone: more than the default 10%.
    let rows = accounts(&keys[2..], "v1");
    write_source(&ran, &rows);
    let plan = ran
        .host
        .plan(&ran.setup.config, "s", Default::default())
        .await
        .unwrap();
    assert_eq!((plan.delete, plan.deletes_withheld), (0, 2));
    let withheld = run_again(&ran, &rows).await;
    let s = &withheld.summary;
    assert_eq!((s.deletes, s.deleted, s.deletes_withheld), (0, 0, 2));
    let why = s.deletes_withheld_because.as_deref().unwrap();
    assert!(
        why.contains("more than max_deletes = 10% (1 of 10 delivered)")
            && why.contains("--allow-deletes 2"),
        "{why}"
    );
    assert_eq!(dest.stored().len(), 10, "nothing was deleted");
    assert_eq!(plan.deletes_withheld_because.as_deref(), Some(why));

    // The operator allows them, for this run.
    let options = sluice::sync::RunOptions {
        allow_deletes: Some(2),
        ..Default::default()
    };
    let plan = ran
        .host
        .plan(&ran.setup.config, "s", options)
        .await
        .unwrap();
    assert_eq!((plan.delete, plan.deletes_withheld), (2, 0));
    assert_eq!(plan.examples["delete"], ["K0", "K1"]);
    let allowed = ran
        .host
        .run_with(&ran.setup.config, "s", Default::default(), options)
        .await
        .unwrap();
    assert_eq!((allowed.summary.deletes, allowed.summary.deleted), (2, 2));
    assert_eq!(dest.stored().len(), 8);
    assert!(!dest.stored().contains_key("K0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_read_deletes_nothing() {
    let dest = salesforce_sim().await;
    let ran = accounts_to(&dest, accounts(&["A0", "A1", "A2"], "v1"), "mirror")
        .sync("max_deletes = \"100%\"")
        .run()
        .await;
    assert_eq!(ran.summary().delivered, 3);

    // A2 is gone, but one row could not be read: it may be a record that still exists.
    let data = format!(
        "{}\n{}\n{{\"Name\": \"no key\"}}\n",
        accounts(&["A0"], "v1")[0],
        accounts(&["A1"], "v1")[0]
    );
    std::fs::write(ran.setup.dir.path().join("data.jsonl"), data).unwrap();
    let report = crate::common::run_on(&ran.host, &ran.setup).await.0;
    let s = &report.summary;
    assert_eq!((s.invalid_rows, s.deletes, s.deleted), (1, 0, 0));
    // Withheld, with no count: which records are gone cannot be known (docs/cli.md says
    // scripts test `deletes_withheld_because`).
    assert_eq!(
        (s.deletes_withheld, s.deletes_withheld_because.as_deref()),
        (
            0,
            Some(
                "1 source row(s) could not be read as records, so the read is not complete: \
                 nothing is deleted (fix the rows, then run again)"
            )
        ),
        "{s:?}"
    );
    // As a script reads it: the count says 0, the reason is not null.
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["deletes_withheld"], 0);
    assert!(json["deletes_withheld_because"].is_string(), "{json}");
    assert_eq!(dest.stored().len(), 3);

    // A source command that fails: the run fails before anything is sent or deleted.
    let mut failing = ran.setup.config.clone();
    failing.syncs[0].source.origin = sluice::config::SourceOrigin::Command {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo '{\"id\": \"A0\", \"Name\": \"v1 A0\"}'; exit 3".into(),
        ],
        dir: ran.setup.dir.path().to_path_buf(),
        withheld: Vec::new(),
    };
    let requests = dest.requests().len();
    let report = ran
        .host
        .run(&failing, "s", Default::default())
        .await
        .unwrap();
    assert_eq!(report.summary.outcome, sluice::engine::Outcome::Failed);
    assert_eq!(report.summary.deletes, 0);
    assert_eq!(dest.requests().len(), requests, "nothing was sent");
    assert_eq!(dest.stored().len(), 3);
}

/// Pointed at another destination, a mirror has delivered nothing there: it sends every
/// record and deletes nothing, and its plan says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_destination_is_mirrored_without_deleting_what_the_old_one_held() {
    let dest = salesforce_sim().await;
    let mut ran = accounts_to(&dest, accounts(&["A0", "A1", "A2"], "v1"), "mirror")
        .sync("max_deletes = \"100%\"")
        .run()
        .await;
    assert_eq!(ran.summary().delivered, 3);

    let other = salesforce_sim().await;
    point_at(&mut ran, &other);
    let rows = accounts(&["A0", "A1"], "v1");
    write_source(&ran, &rows);
    let plan = ran
        .host
        .plan(&ran.setup.config, "s", Default::default())
        .await
        .unwrap();
    assert_eq!((plan.insert, plan.delete), (2, 0), "{plan:?}");
    assert!(plan.resent_because.is_some());
    // A2, gone from the source, stays where it was, and the run says so (it was forgotten
    // without a word before).
    let left_behind = "1 record(s) delivered to the previous destination are no longer in \
                       the source and were not deleted from it";
    assert_eq!(plan.deletes_withheld, 1, "{plan:?}");
    assert!(
        plan.deletes_withheld_because
            .as_deref()
            .is_some_and(|why| why.contains(left_behind)),
        "{plan:?}"
    );
    let report = run_again(&ran, &rows).await;
    let s = &report.summary;
    assert_eq!(
        (s.delivered, s.deletes, s.deletes_withheld),
        (2, 0, 1),
        "{s:?}"
    );
    assert!(
        s.deletes_withheld_because
            .as_deref()
            .is_some_and(|why| why.contains(left_behind)),
        "{s:?}"
    );
    assert_eq!(other.stored().len(), 2);
    assert_eq!(dest.stored().len(), 3, "the old destination is left alone");
    // The next run mirrors the new destination as usual.
    let third = run_again(&ran, &accounts(&["A0"], "v1")).await;
    let s = &third.summary;
    assert_eq!(
        (s.unchanged, s.deleted, s.deletes_withheld),
        (1, 1, 0),
        "{s:?}"
    );
    assert_eq!(other.stored().len(), 1);
}

/// A failed delete holds the previous destination's id: after the destination changed,
/// the retry job sends nothing to the new one (it sent the old id there), and the next
/// run drops the delete, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delete_is_never_sent_to_a_new_destination() {
    use sluice::engine::{Fate, RecordFailure, Settled};
    use sluice::fate::Record;

    let dest = salesforce_sim().await;
    let mut ran = accounts_to(&dest, accounts(&["A0", "A1"], "v1"), "mirror")
        .sync("max_deletes = \"100%\"")
        .run()
        .await;
    // The old destination refused to delete A1 for now.
    let old_id = dest.destination_id("A1").unwrap();
    let ledger = ran.host.ledger().sync("s").unwrap();
    let refused = Settled {
        record: Record::delete("A1".into(), Some(old_id.clone())),
        fate: Fate::Rejected(RecordFailure::new("UNABLE_TO_LOCK_ROW", "locked")),
        attempts: 1,
    };
    ledger.record(&[refused], 1).unwrap();
    assert!(ran.entry("A1").deleting);

    let other = salesforce_sim().await;
    point_at(&mut ran, &other);
    let every_failed = sluice::retry_job::Request::default();
    let retry = || {
        ran.host
            .retry(&ran.setup.config, "s", &every_failed, Default::default())
    };
    let Err(refused) = retry().await else {
        panic!("a retry to the new destination was not refused")
    };
    let concern = refused.downcast_ref::<sluice::concern::Concern>().unwrap();
    assert_eq!(concern.kind, sluice::concern::ErrorKind::State);
    assert!(
        format!("{refused:#}").contains("the destination changed since the last run"),
        "{refused:#}"
    );
    assert!(
        other.requests().is_empty(),
        "nothing reached the new destination"
    );

    let report = run_again(&ran, &accounts(&["A0"], "v1")).await;
    let s = &report.summary;
    assert_eq!((s.delivered, s.deletes), (1, 0), "{s:?}");
    let said = s.resent_because.as_deref().unwrap_or_default();
    assert!(
        said.contains("1 failed delete(s) addressed the previous destination and were dropped (for example `A1`)"),
        "{said}"
    );
    assert!(stored(&ran, "A1").is_none());
    // Nothing is left to retry, and no delete ever reached the new destination.
    let again = retry().await.unwrap();
    assert!(again.run.is_none(), "{:?}", again.selection);
    assert!(other.requests().iter().all(|r| r.method != "DELETE"));
    assert_eq!(dest.destination_id("A1").as_deref(), Some(old_id.as_str()));
}

/// Edits `ran`'s config as an operator moving the sync to `other` would.
fn point_at(ran: &mut Ran, other: &SimHandle) {
    ran.setup.config.syncs[0].base_url = other.base_url().parse().unwrap();
    let connector = ran.setup.config.syncs[0].connector.clone();
    let port = other.addr().port().to_string();
    ran.setup
        .config
        .connectors
        .get_mut(&connector)
        .unwrap()
        .allowed_hosts
        .push(sluice::config::HostPattern::parse(&format!("127.0.0.1:{port}")).unwrap());
}

/// The reported bug: a record the destination refused, then removed from the source, was
/// sent again by the retry job, creating at the destination what the source no longer
/// had. A mirror's complete read forgets it, as its plan says it will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_record_the_source_removed_is_forgotten_not_retried() {
    use sluice::engine::{Fate, RecordFailure, Settled};
    use sluice::fate::Record;

    let dest = salesforce_sim().await;
    let ran = accounts_to(&dest, accounts(&["A0", "A1"], "v1"), "mirror")
        .sync("max_deletes = \"100%\"")
        .run()
        .await;
    // B1 was refused (a validation rule, say) and waits in the ledger for a retry.
    let refused = Settled {
        record: Record::new("B1".into(), r#"{"id":"B1","Name":"v1 B1"}"#.into()),
        fate: Fate::Rejected(RecordFailure::new(
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "no",
        )),
        attempts: 1,
    };
    ran.host
        .ledger()
        .sync("s")
        .unwrap()
        .record(&[refused], 1)
        .unwrap();

    // A1 and B1 are gone from the source.
    let rows = accounts(&["A0"], "v1");
    write_source(&ran, &rows);
    let plan = ran
        .host
        .plan(&ran.setup.config, "s", Default::default())
        .await
        .unwrap();
    assert_eq!((plan.delete, plan.failures_forgotten), (1, 1), "{plan:?}");
    assert!(stored(&ran, "B1").is_some());
    let report = run_again(&ran, &rows).await;
    let s = &report.summary;
    assert_eq!((s.deleted, s.failures_forgotten), (1, 1), "{s:?}");
    assert!(stored(&ran, "B1").is_none());
    let every_failed = sluice::retry_job::Request::default();
    let retried = ran
        .host
        .retry(&ran.setup.config, "s", &every_failed, Default::default())
        .await
        .unwrap();
    assert!(retried.run.is_none(), "{:?}", retried.selection);
    assert_eq!(names(&dest), expect(&[("A0", "v1 A0")]));
}

/// What the ledger holds for `key` of `ran`'s sync, if anything.
fn stored(ran: &Ran, key: &str) -> Option<sluice::ledger::Entry> {
    ran.host.ledger().sync("s").unwrap().get(key).unwrap()
}
