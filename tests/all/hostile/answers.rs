//! Answers that cannot be taken for deliveries: redirects, and results of the wrong length.

use super::*;

/// A redirect is never followed (the place it points at sees nothing): the connector reads
/// the 3xx as fatal, the run stops, and the batch stays pending with `HTTP_3xx`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_its_records_stay_pending_with_its_code() {
    let elsewhere = destination(Misbehaviour::None, None).await;
    for status in [301, 302, 303, 307, 308] {
        let location = format!("{}{PATH}", elsewhere.base_url());
        let bench = Bench::new(Misbehaviour::Redirect { status, location }, None, 5, "").await;
        let (report, fates) = bench.run().await;
        let s = &report.summary;
        let code = format!("HTTP_{status}");
        assert_summary_of(
            status,
            s,
            Expect::failed()
                .delivered(0)
                .rejected(0)
                .pending(5)
                .requests(1),
        );
        assert!(s.error.as_deref().unwrap().contains(&code), "{:?}", s.error);
        assert_eq!(fates, every(&bench.keys, &format!("pending({code})")));
        assert_eq!(
            bench.ledger(),
            every(&bench.keys, &format!("pending({code})"))
        );
        assert_eq!(bench.dest.request_count(), 1);
        assert!(bench.dest.stored().is_empty());
    }
    assert_eq!(elsewhere.request_count(), 0, "a redirect was followed");
}

/// Results of another length than the batch cannot be matched to its records: the answer
/// is malformed (transient), never a delivery of the records it happens to list, and after
/// the attempts the records are rejected with `MALFORMED_RESPONSE`. (A connector whose own
/// verdict has the wrong length breaks the contract: see `sandbox.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_of_the_wrong_length_are_never_taken_for_deliveries() {
    for delta in [-1, 1, -5] {
        let bench = Bench::new(Misbehaviour::WrongLength { delta }, None, 5, "").await;
        let (report, fates) = bench.run().await;
        assert_malformed_after_three_attempts(format!("delta {delta}"), &report, &fates, &bench);
    }
}
