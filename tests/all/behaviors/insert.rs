//! `behavior = "insert"`: only records never delivered are created; the destination's
//! copy of a record it has is never touched.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_records_never_delivered_are_created() {
    let dest = salesforce_sim().await;
    let ran = accounts_to(&dest, accounts(&["A0", "A1", "A2"], "v1"), "insert")
        .run()
        .await;
    assert_eq!(ran.summary().delivered, 3);
    assert_eq!(dest.stats().by_operation.get("insert"), Some(&1));

    // A0 changed, A2 gone, A3 new.
    let mut rows = accounts(&["A1"], "v1");
    rows.extend(accounts(&["A0", "A3"], "v2"));
    let second = run_again(&ran, &rows).await;
    let s = &second.summary;
    assert_eq!(
        (
            s.delivered,
            s.already_at_destination,
            s.unchanged,
            s.deletes
        ),
        (1, 2, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        names(&dest),
        expect(&[
            ("A0", "v1 A0"),
            ("A1", "v1 A1"),
            ("A2", "v1 A2"),
            ("A3", "v2 A3")
        ])
    );

    // A1 and A3 changed, A4 new.
    let mut rows = accounts(&["A0", "A3"], "v2");
    rows.extend(accounts(&["A1", "A4"], "v3"));
    let third = run_again(&ran, &rows).await;
    let s = &third.summary;
    assert_eq!((s.delivered, s.already_at_destination), (1, 3), "{s:?}");
    assert_eq!(
        names(&dest),
        expect(&[
            ("A0", "v1 A0"),
            ("A1", "v1 A1"),
            ("A2", "v1 A2"),
            ("A3", "v2 A3"),
            ("A4", "v3 A4")
        ])
    );
    assert_eq!(dest.stats().by_operation.get("insert"), Some(&3));
    assert_eq!(dest.stats().by_operation.get("upsert"), None);
}
