//! Connections that are reset: retried, and pending once the attempts are spent.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_is_retried_and_the_records_delivered() {
    let bench = Bench::new(Misbehaviour::Reset, Some(1), 5, "").await;
    let (report, fates) = bench.run().await;
    assert_summary(
        &report.summary,
        Expect::completed()
            .delivered(5)
            .requests(2)
            .transient_failures(1)
            .retries(5),
    );
    assert_eq!(fates, delivered(&bench.keys));
    assert_eq!(bench.ledger(), delivered(&bench.keys));
    assert_eq!(bench.answers(), [answer::RESET, answer::OK]);
    assert_eq!(bench.dest.stored().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_always_resets_leaves_the_records_pending() {
    let bench = Bench::new(Misbehaviour::Reset, None, 5, "").await;
    let (report, fates) = bench.run().await;
    assert_unreachable(&report, &fates, &bench, "HTTP_TRANSPORT");
    assert!(bench.dest.stored().is_empty());
}
