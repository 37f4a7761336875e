//! End to end against the simulated Salesforce: every record delivered once, invalid ones
//! rejected with the destination's codes, parentless ones held, locked rows retried.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_sync_delivers_every_record_exactly_once() {
    let dest = sim(Faults::default(), None).await;
    let records = common::accounts(230);
    let ran = accounts_to(&dest, records).run().await;
    // 230 records in batches of 50.
    ran.expect(
        Expect::completed()
            .read(230)
            .delivered(230)
            .rejected(0)
            .permanent(0)
            .pending(0)
            .requests(5),
    );
    let stored = dest.stored();
    assert_eq!(stored.len(), 230);
    assert_eq!(
        dest.stats().records_received,
        230,
        "no record was sent twice"
    );
    assert_eq!(stored["A0007"]["Name"], json!("Account 7"));
    assert_eq!(ran.fates.keys(is_delivered).len(), 230);
    // The destination's ids are kept.
    let (fate, attempts) = &ran.fates.all()["A0007"];
    assert_eq!(
        *fate,
        sluice::engine::Fate::Delivered(Some(salesforce::record_id("Account", "A0007")))
    );
    assert_eq!(*attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_are_rejected_with_the_destination_codes_and_parentless_ones_held() {
    let dest = sim(Faults::default(), None).await;
    let mut records = common::accounts(120);
    let mut expected = BTreeMap::new();
    let mut bad = |i: usize, code: &str, change: &dyn Fn(&mut serde_json::Value)| {
        change(&mut records[i]);
        expected.insert(format!("A{i:04}"), code.to_string());
    };
    bad(3, "INVALID_EMAIL_ADDRESS", &|r| {
        r["Email"] = json!("x@nopain,nogain.com")
    });
    bad(17, "STRING_TOO_LONG", &|r| {
        r["Name"] = json!("N".repeat(41))
    });
    bad(18, "REQUIRED_FIELD_MISSING", &|r| {
        r.as_object_mut().unwrap().remove("Name");
    });
    bad(60, "FIELD_CUSTOM_VALIDATION_EXCEPTION", &|r| {
        r["AnnualRevenue"] = json!(-1)
    });
    bad(61, "INVALID_CROSS_REFERENCE_KEY", &|r| {
        r["ParentCrmId"] = json!("P404")
    });
    bad(99, "DACO-02", &|r| r["ParentCrmId"] = json!(""));
    bad(100, "DACO-02", &|r| {
        r.as_object_mut().unwrap().remove("ParentCrmId");
    });
    let ran = accounts_to(&dest, records).run().await;
    ran.expect(
        Expect::completed()
            .delivered(113)
            .rejected(4)
            .permanent(3)
            .pending(0),
    );
    assert_eq!(ran.fates.codes(), expected);
    assert_eq!(ran.fates.keys(is_permanent), ["A0061", "A0099", "A0100"]);
    assert_eq!(
        ran.fates.keys(is_rejected),
        ["A0003", "A0017", "A0018", "A0060"]
    );
    // The destination holds exactly the valid records; DACO-02 records never left.
    let stored: BTreeSet<String> = dest.stored().into_keys().collect();
    let valid: BTreeSet<String> = ran.fates.keys(is_delivered).into_iter().collect();
    assert_eq!(stored, valid);
    assert_eq!(dest.stats().records_received, 118);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_rows_are_retried_in_the_run_until_delivered() {
    let faults = Faults::locking(11, 0.3);
    let dest = sim(faults, None).await;
    // Ten attempts: a row locked 30% of the time is locked ten times in a row once in
    // 170,000 tries. (With the default five, about one record in 400 is rejected.)
    let ran = accounts_to(&dest, common::accounts(200))
        .retry("max_attempts = 10")
        .run()
        .await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(200).rejected(0).pending(0));
    // Every lock caused exactly one more send of that record.
    let locks = common::locks_each_retried_once(&dest, s);
    assert!(
        locks > 30,
        "the fault profile locks about 30% of rows, saw {locks}"
    );
    assert_eq!(dest.stats().records_received, 200 + locks);
    assert_eq!(dest.stored().len(), 200);
    let resent = ran
        .fates
        .all()
        .values()
        .filter(|(_, attempts)| *attempts > 1)
        .count();
    assert!(resent > 0);
}
