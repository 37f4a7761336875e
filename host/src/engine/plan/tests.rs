//! One test per row of ARCHITECTURE.md's verdict table. Time is an input to `plan`, so
//! every deadline is checked exactly against the `now` given.

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::sandbox::{GuestErrorKind, SandboxLimits, Wait};

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(format!("k{i}"), format!("{{\"n\":{i}}}")))
        .collect()
}

fn failure(code: &str) -> Failure {
    Failure {
        code: code.into(),
        message: format!("{code} happened"),
        fields: Vec::new(),
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(8),
        multiplier: 2.0,
        max_rate_limit_wait: Duration::from_secs(60),
    }
}

const RECEIVED_MS: u64 = 1_700_000_000_000;

/// Runs the table for `answer` on `job`, `now` being also when the answer arrived.
fn step(answer: Answer, job: &Job, now: Instant) -> Step {
    step_with(answer, job, now, true)
}

fn step_with(answer: Answer, job: &Job, now: Instant, worked: bool) -> Step {
    let policy = policy();
    let facts = Facts {
        policy: &policy,
        connector: "rest",
        now,
        received_at: now,
        received_at_ms: RECEIVED_MS,
        credentials: 7,
        credentials_worked: worked,
    };
    plan(answer, job, &facts, &mut SmallRng::seed_from_u64(1))
}

/// A retry lands within the backoff ceiling of the attempt that failed.
fn assert_backoff(at: Instant, now: Instant, attempt: u32) {
    let delay = at.duration_since(now);
    assert!(
        delay <= policy().backoff_ceiling(attempt),
        "{delay:?} after attempt {attempt}"
    );
}

#[test]
fn per_record_settles_each_record_and_retries_only_those_asked() {
    let now = Instant::now();
    let job = Job::new(records(4), 1);
    let verdict = Verdict::PerRecord(vec![
        RecordOutcome::Delivered(Some("id-0".into())),
        RecordOutcome::Rejected(failure("INVALID_EMAIL")),
        RecordOutcome::Permanent(failure("DUPLICATE")),
        RecordOutcome::Retry(failure("ROW_LOCK")),
    ]);
    let Step::PerRecord {
        fates,
        retry_at: Some(at),
        sibling_holds_fault: false,
    } = step(Answer::Verdict(verdict), &job, now)
    else {
        panic!("not a per-record step with a retry");
    };
    assert_eq!(
        fates,
        vec![
            Some(Fate::Delivered(Some("id-0".into()))),
            Some(Fate::Rejected(failure("INVALID_EMAIL").into())),
            Some(Fate::Permanent(failure("DUPLICATE").into())),
            None,
        ]
    );
    assert_backoff(at, now, 1);
}

#[test]
fn per_record_retry_out_of_attempts_is_rejected() {
    let now = Instant::now();
    let job = Job::new(records(2), policy().max_attempts);
    let verdict = Verdict::PerRecord(vec![
        RecordOutcome::Delivered(None),
        RecordOutcome::Retry(failure("ROW_LOCK")),
    ]);
    let Step::PerRecord {
        fates, retry_at, ..
    } = step(Answer::Verdict(verdict), &job, now)
    else {
        panic!("not a per-record step");
    };
    assert_eq!(
        fates,
        vec![
            Some(Fate::Delivered(None)),
            Some(Fate::Rejected(failure("ROW_LOCK").into()))
        ]
    );
    assert_eq!(retry_at, None);
}

#[test]
fn per_record_on_a_first_half_points_at_its_sibling() {
    let mut job = Job::new(records(1), 1);
    job.first_half = true;
    let verdict = Verdict::PerRecord(vec![RecordOutcome::Delivered(None)]);
    let Step::PerRecord {
        sibling_holds_fault,
        retry_at: None,
        ..
    } = step(Answer::Verdict(verdict), &job, Instant::now())
    else {
        panic!("not a per-record step without retry");
    };
    assert!(sibling_holds_fault);
}

#[test]
fn batch_rejected_bisects() {
    let job = Job::new(records(5), 2);
    let verdict = Verdict::BatchRejected(failure("BAD_ROW"));
    let step = step(Answer::Verdict(verdict), &job, Instant::now());
    assert!(matches!(step, Step::Bisect(f) if f == failure("BAD_ROW").into()));
}

#[test]
fn batch_rejected_for_one_record_rejects_it() {
    let job = Job::new(records(1), 2);
    let verdict = Verdict::BatchRejected(failure("BAD_ROW"));
    let step = step(Answer::Verdict(verdict), &job, Instant::now());
    assert!(matches!(step, Step::Settle(Fate::Rejected(f)) if f == failure("BAD_ROW").into()));
}

#[test]
fn rate_limited_with_a_longer_stated_wait_pauses_for_it() {
    let now = Instant::now();
    let mut job = Job::new(records(3), 1);
    job.rate_limit_hits = 1;
    job.rate_limit_waited = Duration::from_secs(5);
    let verdict = Verdict::RateLimited(Some(Wait::AfterMs(30_000)));
    let Step::PauseUntil {
        until,
        wait,
        waited,
        hits,
    } = step(Answer::Verdict(verdict), &job, now)
    else {
        panic!("not a pause");
    };
    assert_eq!(until, now + Duration::from_secs(30));
    assert_eq!(wait, Duration::from_secs(30));
    assert_eq!(waited, Duration::from_secs(35));
    assert_eq!(hits, 2);
}

#[test]
fn rate_limited_until_a_time_pauses_until_then() {
    let now = Instant::now();
    let job = Job::new(records(1), 1);
    let verdict = Verdict::RateLimited(Some(Wait::UntilUnixMs(RECEIVED_MS + 4_000)));
    let Step::PauseUntil { until, .. } = step(Answer::Verdict(verdict), &job, now) else {
        panic!("not a pause");
    };
    assert_eq!(until, now + Duration::from_secs(4));
}

#[test]
fn rate_limited_without_a_usable_wait_pauses_for_the_backoff_ceiling() {
    let now = Instant::now();
    let mut job = Job::new(records(1), 1);
    job.rate_limit_hits = 2;
    for wait in [None, Some(Wait::AfterMs(0)), Some(Wait::UntilUnixMs(1))] {
        let verdict = Verdict::RateLimited(wait);
        let Step::PauseUntil { until, hits, .. } = step(Answer::Verdict(verdict), &job, now) else {
            panic!("not a pause");
        };
        assert_eq!(hits, 3);
        assert_eq!(until, now + policy().backoff_ceiling(3));
    }
}

#[test]
fn rate_limited_past_the_budget_gives_up_but_keeps_the_pause() {
    let now = Instant::now();
    let mut job = Job::new(records(2), 1);
    job.rate_limit_hits = 3;
    job.rate_limit_waited = Duration::from_secs(50);
    let verdict = Verdict::RateLimited(Some(Wait::AfterMs(20_000)));
    let Step::GiveUpWaiting { until, failure } = step(Answer::Verdict(verdict), &job, now) else {
        panic!("not giving up");
    };
    assert_eq!(until, now + Duration::from_secs(20));
    assert_eq!(failure.code, "RATE_LIMITED");
    assert_eq!(
        failure.message,
        "gave up after 4 rate-limited answers asking for 1m 10s of waits in all \
         (max_rate_limit_wait is 1m)"
    );
}

#[test]
fn rate_limited_for_ever_gives_up_without_overflow() {
    let now = Instant::now();
    let job = Job::new(records(1), 1);
    let verdict = Verdict::RateLimited(Some(Wait::AfterMs(u64::MAX)));
    let Step::GiveUpWaiting { until, failure } = step(Answer::Verdict(verdict), &job, now) else {
        panic!("not giving up");
    };
    assert!(until > now + Duration::from_secs(365 * 24 * 3600));
    assert!(
        failure.message.contains("more than a century"),
        "{failure:?}"
    );
}

#[test]
fn transient_retries_after_backoff() {
    let now = Instant::now();
    let job = Job::new(records(2), 2);
    let verdict = Verdict::Transient(failure("HTTP_503"));
    let Step::RetryAt {
        at,
        last_failure: None,
    } = step(Answer::Verdict(verdict), &job, now)
    else {
        panic!("not a retry");
    };
    assert_backoff(at, now, 2);
}

#[test]
fn transient_out_of_attempts_rejects() {
    let job = Job::new(records(2), policy().max_attempts);
    let verdict = Verdict::Transient(failure("HTTP_503"));
    let step = step(Answer::Verdict(verdict), &job, Instant::now());
    assert!(matches!(step, Step::Settle(Fate::Rejected(f)) if f == failure("HTTP_503").into()));
}

#[test]
fn no_response_retries_after_backoff_keeping_the_failure() {
    let now = Instant::now();
    let job = Job::new(records(2), 1);
    let lost = RecordFailure::new("TIMEOUT", "no answer in 30s");
    let Step::RetryAt {
        at,
        last_failure: Some(f),
    } = step(Answer::NoResponse(lost.clone()), &job, now)
    else {
        panic!("not a retry");
    };
    assert_eq!(f, lost);
    assert_backoff(at, now, 1);
}

#[test]
fn no_response_out_of_attempts_leaves_records_pending_as_unreachable() {
    let job = Job::new(records(2), policy().max_attempts);
    let lost = RecordFailure::new("CONNECTION_FAILED", "refused");
    let step = step(Answer::NoResponse(lost.clone()), &job, Instant::now());
    assert!(matches!(step, Step::Unreachable(f) if f == lost));
}

#[test]
fn auth_expired_renews_the_refused_credentials() {
    let job = Job::new(records(1), 1);
    let verdict = Verdict::AuthExpired(failure("HTTP_401"));
    let step = step(Answer::Verdict(verdict), &job, Instant::now());
    assert!(matches!(step, Step::Renew { failure: f, generation: 7 } if f.code == "HTTP_401"));
}

#[test]
fn auth_expired_after_a_renewal_that_worked_renews_again() {
    let mut job = Job::new(records(1), 1);
    job.renewed = true;
    let verdict = Verdict::AuthExpired(failure("HTTP_401"));
    let step = step_with(Answer::Verdict(verdict), &job, Instant::now(), true);
    assert!(matches!(step, Step::Renew { .. }));
}

#[test]
fn auth_expired_with_renewed_credentials_that_never_worked_stops() {
    let mut job = Job::new(records(1), 1);
    job.renewed = true;
    let verdict = Verdict::AuthExpired(failure("INVALID_SESSION_ID"));
    let step = step_with(Answer::Verdict(verdict), &job, Instant::now(), false);
    let Step::Stop {
        cause,
        failure: None,
    } = step
    else {
        panic!("not a stop");
    };
    assert!(matches!(cause, Stop::CredentialsRefused(_)));
    assert_eq!(
        cause.to_string(),
        "the destination refused renewed credentials: INVALID_SESSION_ID: \
         INVALID_SESSION_ID happened"
    );
}

#[test]
fn fatal_stops_leaving_records_pending_with_the_failure() {
    let job = Job::new(records(3), 1);
    let verdict = Verdict::Fatal(failure("ACCOUNT_CLOSED"));
    let Step::Stop {
        cause,
        failure: Some(f),
    } = step(Answer::Verdict(verdict), &job, Instant::now())
    else {
        panic!("not a stop with a failure");
    };
    assert_eq!(f, failure("ACCOUNT_CLOSED").into());
    assert!(matches!(cause, Stop::FatalVerdict(_)));
}

#[test]
fn host_refused_request_stops_naming_the_connector() {
    let job = Job::new(records(1), 1);
    let answer = Answer::HostRefused("host evil.example is not allowed".into());
    let Step::Stop {
        cause,
        failure: None,
    } = step(answer, &job, Instant::now())
    else {
        panic!("not a stop");
    };
    assert_eq!(
        cause.to_string(),
        "connector `rest`: host evil.example is not allowed"
    );
}

#[test]
fn record_too_large_is_rejected_before_the_connector_sees_it() {
    let record = &records(1)[0];
    let len = record.payload.len() as u64;
    assert_eq!(too_large(record, len, "rest"), None);
    let failure = too_large(record, len - 1, "rest").expect("too large");
    assert_eq!(failure.code, "RECORD_TOO_LARGE");
    assert_eq!(
        failure.message,
        format!(
            "the record is {len} bytes, more than connector `rest` takes in one batch \
             (max-batch-bytes {})",
            len - 1
        )
    );
}

#[test]
fn connector_cannot_express_a_batch_bisects_like_a_refusal() {
    let refusal = RecordFailure::new("UNSUPPORTED", "no such field");
    assert!(matches!(
        refused(&Job::new(records(2), 1), refusal.clone()),
        Step::Bisect(_)
    ));
    assert!(matches!(
        refused(&Job::new(records(1), 1), refusal),
        Step::Settle(Fate::Rejected(_))
    ));
}

#[test]
fn known_refused_half_is_split_without_a_send() {
    let mut job = Job::new(records(4), 1);
    job.known_refused = true;
    job.parent_refusal = Some(RecordFailure::new("BAD_ROW", "bad"));
    let step = known_refused(&mut job);
    assert!(matches!(step, Some(Step::Bisect(f)) if f.code == "BAD_ROW"));
    // The refusal is used once; a half not known to hold the fault is sent.
    assert!(known_refused(&mut job).is_none());
    let mut job = Job::new(records(4), 1);
    job.parent_refusal = Some(RecordFailure::new("BAD_ROW", "bad"));
    assert!(known_refused(&mut job).is_none());
}

#[test]
fn pause_past_the_budget_leaves_records_pending_rate_limited() {
    let now = Instant::now();
    let mut job = Job::new(records(2), 1);
    job.rate_limit_waited = Duration::from_secs(50);
    let policy = policy();
    // 10 s of budget left: a pause of exactly 10 s is waited, a longer one is not.
    assert!(admit(&job, Some(now + Duration::from_secs(10)), &policy, now).is_none());
    assert!(admit(&job, None, &policy, now).is_none());
    let Some(Step::LeavePending(Some(f))) =
        admit(&job, Some(now + Duration::from_secs(11)), &policy, now)
    else {
        panic!("not left pending");
    };
    assert_eq!(f.code, "RATE_LIMITED");
    assert_eq!(
        f.message,
        "the destination asked to wait longer than max_rate_limit_wait (1m)"
    );
    // The job's own pause is already counted in its budget.
    job.paused_until = Some(now + Duration::from_secs(30));
    assert!(admit(&job, Some(now + Duration::from_secs(40)), &policy, now).is_none());
}

#[test]
fn build_request_over_a_connector_limit_bisects_to_the_record_at_fault() {
    let err = GuestError {
        connector: "rest".into(),
        call: "build-request",
        kind: GuestErrorKind::MemoryLimit,
        limits: SandboxLimits::default(),
    };
    let Some(Step::Bisect(f)) = over_limit(&Job::new(records(3), 1), &err) else {
        panic!("not a bisection");
    };
    assert_eq!(f.code, "CONNECTOR_LIMIT");
    assert!(f.message.contains("`build-request`"), "{}", f.message);
    // A record alone is judged by `LimitFailures` (engine/poison.rs).
    assert!(over_limit(&Job::new(records(1), 1), &err).is_none());
}
