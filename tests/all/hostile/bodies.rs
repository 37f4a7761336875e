//! Bodies that are too big, cut short, or too slow: never taken for a confirmation.

use super::*;

/// A 200 far larger than `max_response_bytes` is cut there, and the connector is told so
/// (`truncated`, since WIT 0.2.0): what is left is no confirmation, so nothing is
/// delivered, though the destination stored the records. Sending again would be cut the
/// same way, so the run stops at once naming the limit to raise (0.1.0 saw a malformed
/// body and retried it three times); the records stay pending, and the next run, with a
/// destination that answers normally, delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_is_cut_and_never_taken_for_a_confirmation() {
    let bench = Bench::new(Misbehaviour::HugeBody { padding: 1 << 20 }, None, 5, "").await;
    let (report, fates) = bench.run().await;
    let s = &report.summary;
    assert_summary(s, Expect::failed().delivered(0).pending(5).requests(1));
    let error = s.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("RESPONSE_TRUNCATED") && error.contains("raise max_response_bytes"),
        "{error}"
    );
    assert_eq!(bench.dest.stored().len(), 5, "the destination took them");
    assert_eq!(fates, every(&bench.keys, "pending(RESPONSE_TRUNCATED)"));

    bench.dest.set(Misbehaviour::None, None);
    let (report, fates) = bench.run().await;
    assert_eq!((report.summary.delivered, report.summary.requests), (5, 1));
    assert_eq!(fates, delivered(&bench.keys));
    assert_eq!(bench.ledger(), delivered(&bench.keys));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_leaves_the_records_pending() {
    let bench = Bench::new(Misbehaviour::TruncatedBody, None, 5, "").await;
    let (report, fates) = bench.run().await;
    assert_unreachable(&report, &fates, &bench, "HTTP_TRANSPORT");
    assert_eq!(bench.dest.stored().len(), 5, "the destination took them");
    assert!(bench.answers().iter().all(|a| *a == answer::TRUNCATED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_past_request_timeout_is_a_timeout_not_a_delivery() {
    let bench = Bench::new(
        Misbehaviour::SlowBody {
            interval: Duration::from_millis(100),
            pieces: 20,
        },
        None,
        5,
        "request_timeout = \"300ms\"",
    )
    .await;
    let (report, fates) = bench.run().await;
    assert_unreachable(&report, &fates, &bench, "TIMEOUT");
    assert!(bench.answers().iter().all(|a| *a == answer::SLOW));
}
