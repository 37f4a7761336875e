//! `behavior = "update"`: only records the destination already has, addressed by the id
//! it gave them; a record never delivered is skipped as not at the destination.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_records_at_the_destination_are_updated_by_their_ids() {
    let dest = salesforce_sim().await;
    // Delivered once as upserts; the operator then switches the sync to updates.
    let mut ran = accounts_to(&dest, accounts(&["A0", "A1", "A2", "A3"], "v1"), "upsert")
        .run()
        .await;
    assert_eq!(ran.summary().delivered, 4);
    let id_of_a0 = dest.destination_id("A0").unwrap();

    // A0 changed, A3 gone, A4 new.
    let mut rows = accounts(&["A1", "A2"], "v1");
    rows.extend(accounts(&["A0", "A4"], "v2"));
    let second = run_as(&mut ran, Behavior::Update, &rows).await;
    let s = &second.summary;
    assert_eq!(
        (s.delivered, s.unchanged, s.not_at_destination, s.deletes),
        (1, 2, 1, 0),
        "{s:?}"
    );
    assert_eq!(
        names(&dest),
        expect(&[
            ("A0", "v2 A0"),
            ("A1", "v1 A1"),
            ("A2", "v1 A2"),
            ("A3", "v1 A3")
        ])
    );
    let update = dest
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/composite/sobjects"))
        .expect("an update by id");
    assert_eq!(update.keys, ["A0"]);
    assert_eq!(
        dest.destination_id("A0").unwrap(),
        id_of_a0,
        "the same record"
    );

    // A1 changed, A4 changed, A5 new: only A1 is at the destination.
    let mut rows = accounts(&["A2"], "v1");
    rows.extend(accounts(&["A0"], "v2"));
    rows.extend(accounts(&["A1", "A4", "A5"], "v3"));
    let third = run_again(&ran, &rows).await;
    let s = &third.summary;
    assert_eq!(
        (s.delivered, s.unchanged, s.not_at_destination),
        (1, 2, 2),
        "{s:?}"
    );
    assert_eq!(
        names(&dest),
        expect(&[
            ("A0", "v2 A0"),
            ("A1", "v3 A1"),
            ("A2", "v1 A2"),
            ("A3", "v1 A3")
        ])
    );
    assert_eq!(
        dest.stats().by_operation.get("insert"),
        None,
        "nothing was created"
    );
}
