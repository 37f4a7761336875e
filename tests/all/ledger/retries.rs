//! The retry job: which records it picks (window, limit, age, code), the failed index it
//! reads them through, and a pass that delivers their stored payloads.

use super::*;

/// "Now" for the retry job's tests: day 100.
const NOW: u64 = 100 * DAY_MS;

/// A ledger whose sync `s` holds failures that began at different times, with retryable,
/// non-retryable and permanent codes, and one delivered record.
fn failures_of_different_ages() -> (tempfile::TempDir, Ledger) {
    let (dir, ledger) = common::state::fresh_ledger();
    let sync = ledger.sync("s").unwrap();
    let now = NOW;
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

    drop(sync);
    (dir, ledger)
}

/// The keys the retry job picks from `sync` for `request` at [`NOW`], and its counts.
fn picked(
    sync: &sluice::ledger::SyncLedger,
    request: &Request,
) -> (Vec<String>, retry_job::SelectionCounts) {
    let s =
        retry_job::select(sync, &RetryJob::default(), Default::default(), request, NOW).unwrap();
    (s.records.into_iter().map(|r| r.key).collect(), s.counts)
}

#[test]
fn by_default_the_retry_job_picks_retryable_failures_of_the_last_week_oldest_first() {
    let (_dir, ledger) = failures_of_different_ages();
    let (picked, counts) = picked(&ledger.sync("s").unwrap(), &Request::default());
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
}

#[test]
fn a_limit_leaves_the_rest_for_the_next_pass() {
    let (_dir, ledger) = failures_of_different_ages();
    let request = Request {
        limit: Some(2),
        ..Request::default()
    };
    let (picked, counts) = picked(&ledger.sync("s").unwrap(), &request);
    assert_eq!(
        (picked, counts.over_limit),
        (vec!["d6".to_string(), "d5".into()], 1)
    );
}

#[test]
fn a_window_codes_or_permanent_ones_widen_or_narrow_the_pick() {
    let (_dir, ledger) = failures_of_different_ages();
    let sync = ledger.sync("s").unwrap();
    let cases: [(Request, &[&str]); 4] = [
        (
            Request {
                window: Some(Duration::from_secs(10 * 24 * 3600)),
                ..Request::default()
            },
            &["old", "d6", "d5", "d1"],
        ),
        (
            Request {
                codes: vec!["INVALID_EMAIL".into()],
                ..Request::default()
            },
            &["d6", "d1"],
        ),
        // Naming a non-retryable code retries it, permanent ones included.
        (
            Request {
                codes: vec!["DACO-02".into()],
                ..Request::default()
            },
            &["daco", "daco-rej"],
        ),
        (
            Request {
                include_permanent: true,
                ..Request::default()
            },
            &["d6", "d5", "perm", "daco", "d1", "daco-rej"],
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(picked(&sync, &request).0, expected, "{request:?}");
    }
}

#[test]
fn named_keys_are_taken_exactly_and_only_failed_ones_can_be_named() {
    let (_dir, ledger) = failures_of_different_ages();
    let sync = ledger.sync("s").unwrap();
    // --key takes exactly the records named, even permanent or expired ones, each once.
    let request = Request {
        keys: vec!["daco".into(), "old".into(), "daco".into()],
        ..Request::default()
    };
    assert_eq!(picked(&sync, &request).0, ["daco", "old"]);
    // A key that is delivered, or not in the ledger, cannot be named.
    for named in ["ok", "nope"] {
        let request = Request {
            keys: vec![named.into()],
            ..Request::default()
        };
        assert!(
            retry_job::select(
                &sync,
                &RetryJob::default(),
                Default::default(),
                &request,
                NOW
            )
            .is_err(),
            "{named}"
        );
    }
}

#[test]
fn a_resolved_record_is_no_longer_retried() {
    let (_dir, ledger) = failures_of_different_ages();
    let sync = ledger.sync("s").unwrap();
    sync.resolve("d5", "ana@example.com", "fixed by hand in the CRM")
        .unwrap();
    assert_eq!(picked(&sync, &Request::default()).0, ["d6", "d1"]);
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
    let setup = Scenario::contacts_to(&down.base_url(), 40)
        .batches(20, 1)
        .retry("max_attempts = 2")
        .fast_retries()
        .setup();
    let (first, _) = common::run(&setup).await;
    assert_summary(
        &first.summary,
        Expect::default().rejected(40).delivered(0).requests(4),
    );
    let entry = common::state::ledger_of(&setup.config)
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

/// The retry job reads failed records through an index; it follows every change of
/// status, and an entry it names that is no longer failed (a crash between the two
/// writes) is skipped.
#[test]
fn the_failed_index_follows_every_change_of_status() {
    let (_dir, ledger) = common::state::fresh_ledger();
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
    let index = ledger.tree("failed:s").unwrap();
    assert_eq!(
        index.len(),
        1,
        "resolved and delivered records leave the index"
    );
    index.insert(b"r", &[]).unwrap();
    drop(sync);
    let sync = ledger.sync("s").unwrap();
    assert_eq!(
        failed_keys(&sync),
        ["d"],
        "a delivered record named by the index is skipped"
    );
    let selection = retry_job::select(
        &sync,
        &RetryJob::default(),
        Default::default(),
        &Request::default(),
        10,
    )
    .unwrap();
    let keys: Vec<&str> = selection.records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["d"]);
}
