//! Checks of what a destination saw, against what the run reports.

use std::time::Duration;

use sluice::engine::RunSummary;

/// The row locks `dest` reported, of which there was at least one, each of which cost the
/// run exactly one retry.
#[track_caller]
pub fn locks_each_retried_once(dest: &sluice_sim::SimHandle, summary: &RunSummary) -> u64 {
    let locks = dest.stats().record_errors["UNABLE_TO_LOCK_ROW"];
    assert!(locks > 0, "the destination locked no row");
    assert_eq!(summary.retries, locks, "one retry per row lock");
    locks
}

/// No request arrives while the destination has said to wait, except those already in
/// flight when it said so (at most one per other worker, arriving right away).
pub fn assert_waits_honoured(dest: &sluice_sim::SimHandle, concurrency: usize) {
    let requests = dest.requests();
    let announcements = dest.rate_limit_announcements();
    assert!(
        !announcements.is_empty(),
        "the destination never rate limited"
    );
    for a in &announcements {
        let early: Vec<_> = requests
            .iter()
            .filter(|r| r.arrived_at > a.sent_at && r.arrived_at < a.not_before)
            .collect();
        assert!(
            early.len() < concurrency,
            "{} requests arrived during a pause",
            early.len()
        );
        for r in early {
            let after = r.arrived_at.duration_since(a.sent_at).unwrap();
            assert!(
                after < Duration::from_millis(50),
                "request {} arrived {after:?} into a pause",
                r.seq
            );
        }
    }
}
