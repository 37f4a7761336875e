//! Sanity: a hostile destination that behaves takes every record once.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_hostile_destination_takes_every_record_once() {
    common::set_env("HOSTILE_OK_TOKEN", "ok-token");
    let bench = Bench::new(
        Misbehaviour::None,
        None,
        5,
        "auth = { bearer_env = \"HOSTILE_OK_TOKEN\" }",
    )
    .await;
    let (report, fates) = bench.run().await;
    assert_summary(
        &report.summary,
        Expect::completed().delivered(5).pending(0).requests(1),
    );
    assert_eq!(fates, delivered(&bench.keys));
    assert_eq!(bench.ledger(), delivered(&bench.keys));
    let stored: Vec<Value> = bench.dest.stored().into_values().collect();
    assert_eq!(stored, contacts(5));
    let requests = bench.dest.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].path.as_str(), requests[0].answer),
        (PATH, answer::OK)
    );
    assert_eq!(requests[0].header("authorization"), Some("Bearer ok-token"));
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(sent, json!(contacts(5)));
}
