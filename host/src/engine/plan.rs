//! The verdict table of ARCHITECTURE.md as one pure function: what a worker does with
//! some records after the destination's answer (or the lack of one). Nothing here sends,
//! settles, sleeps or reads a clock: the time is an input, so every row, timing included,
//! is tested exactly. `Worker` applies the step.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::outcome::{Fate, RecordFailure};
use super::rate_limit::{self, deadline, millis};
use super::stop::Stop;
use crate::config::RetryPolicy;
use crate::sandbox::{Failure, RecordOutcome, Verdict};
use crate::source::Record;

/// Some records of a batch on their way: the whole batch, a half of it after a bisection,
/// or the records a destination asked to retry.
pub(super) struct Job {
    pub records: Vec<Record>,
    /// Sends of these records so far in this run.
    pub attempt: u32,
    pub not_before: Option<Instant>,
    pub rate_limit_waited: Duration,
    pub rate_limit_hits: u32,
    /// The end of the rate-limit pause this job's own answer set (already counted in
    /// `rate_limit_waited`).
    pub paused_until: Option<Instant>,
    /// Why the last send of these records failed, kept if the run stops before the next.
    pub last_failure: Option<RecordFailure>,
    /// The credentials were renewed for this job: another refusal stops the run.
    pub renewed: bool,
    /// This is the first half of a bisected batch, and its sibling lies right below it on
    /// the stack.
    pub first_half: bool,
    /// For the second half of a bisected batch: why the whole batch was refused.
    pub parent_refusal: Option<RecordFailure>,
    /// This second half is known to hold the record at fault, without being sent: the
    /// first half was accepted.
    pub known_refused: bool,
}

impl Job {
    pub fn new(records: Vec<Record>, attempt: u32) -> Self {
        Job {
            records,
            attempt,
            not_before: None,
            rate_limit_waited: Duration::ZERO,
            rate_limit_hits: 0,
            paused_until: None,
            last_failure: None,
            renewed: false,
            first_half: false,
            parent_refusal: None,
            known_refused: false,
        }
    }
}

/// What came of a send.
pub(super) enum Answer {
    /// The destination answered, and the connector classified the answer.
    Verdict(Verdict),
    /// No HTTP response: the connection failed, timed out or broke.
    NoResponse(RecordFailure),
    /// The host would not send the request the connector built.
    HostRefused(String),
}

/// What the table reads besides the answer and the job.
pub(super) struct Facts<'a> {
    pub policy: &'a RetryPolicy,
    pub connector: &'a str,
    /// The monotonic time now.
    pub now: Instant,
    /// When the answer arrived, and the same moment in milliseconds since the epoch (a
    /// `Wait::UntilUnixMs` is measured from it).
    pub received_at: Instant,
    pub received_at_ms: u64,
    /// The generation of the credentials sent with this request, and whether they have
    /// worked at least once.
    pub credentials: u64,
    pub credentials_worked: bool,
}

/// What to do with a job's records.
#[derive(Debug)]
pub(super) enum Step {
    /// Settle each record with its fate, in order; the records marked `None` are sent
    /// again at `retry_at`. When the job is the first half of a bisected batch, the
    /// second half holds the record at fault (`sibling_holds_fault`).
    PerRecord {
        fates: Vec<Option<Fate>>,
        retry_at: Option<Instant>,
        sibling_holds_fault: bool,
    },
    /// Settle every record with this fate, counting this job's attempts.
    Settle(Fate),
    /// Send the records again at `at`, as the next attempt.
    RetryAt {
        at: Instant,
        last_failure: Option<RecordFailure>,
    },
    /// Send each half of the records on its own; the second half keeps the refusal.
    Bisect(RecordFailure),
    /// Pause every request to the destination until `until`, then send the job again,
    /// with `waited` of its rate-limit budget spent after `hits` rate-limited answers.
    PauseUntil {
        until: Instant,
        wait: Duration,
        waited: Duration,
        hits: u32,
    },
    /// Pause every request until `until` anyway (the destination said when it takes
    /// requests again), but leave the records pending with `failure`: the wait is past
    /// the job's budget.
    GiveUpWaiting {
        until: Instant,
        failure: RecordFailure,
    },
    /// Renew the credentials of this generation, then send the job again.
    Renew { failure: Failure, generation: u64 },
    /// Leave the records pending with this failure, for a later run.
    LeavePending(Option<RecordFailure>),
    /// No response and no attempts left: the records stay pending with the failure,
    /// counting this job's attempts; a destination that never answered gets no new
    /// batches.
    Unreachable(RecordFailure),
    /// Stop the run; the records stay pending with `failure`.
    Stop {
        cause: Stop,
        failure: Option<RecordFailure>,
    },
}

/// The verdict table: what to do with `job` after `answer`. `rng` draws backoff jitter.
pub(super) fn plan(answer: Answer, job: &Job, facts: &Facts, rng: &mut impl Rng) -> Step {
    let policy = facts.policy;
    let retry_at = |rng: &mut _| deadline(facts.now, policy.backoff(job.attempt, rng));
    let attempts_left = job.attempt < policy.max_attempts;
    let verdict = match answer {
        Answer::Verdict(verdict) => verdict,
        Answer::NoResponse(failure) if attempts_left => {
            return Step::RetryAt {
                at: retry_at(rng),
                last_failure: Some(failure),
            };
        }
        Answer::NoResponse(failure) => return Step::Unreachable(failure),
        Answer::HostRefused(why) => {
            return Step::Stop {
                cause: Stop::HostRefused {
                    connector: facts.connector.to_string(),
                    why,
                },
                failure: None,
            };
        }
    };
    match verdict {
        Verdict::PerRecord(outcomes) => {
            let fates: Vec<Option<Fate>> = outcomes
                .into_iter()
                .take(job.records.len())
                .map(|outcome| match outcome {
                    RecordOutcome::Delivered(id) => Some(Fate::Delivered(id)),
                    RecordOutcome::Rejected(f) => Some(Fate::Rejected(f.into())),
                    RecordOutcome::Permanent(f) => Some(Fate::Permanent(f.into())),
                    RecordOutcome::Retry(_) if attempts_left => None,
                    RecordOutcome::Retry(f) => Some(Fate::Rejected(f.into())),
                })
                .collect();
            let retry_at = fates.iter().any(Option::is_none).then(|| retry_at(rng));
            Step::PerRecord {
                fates,
                retry_at,
                sibling_holds_fault: job.first_half,
            }
        }
        Verdict::BatchRejected(failure) => refused(job, failure.into()),
        Verdict::RateLimited(wait) => {
            let hits = job.rate_limit_hits.saturating_add(1);
            let step = rate_limit::step(
                policy,
                wait.as_ref(),
                facts.received_at_ms,
                hits,
                job.rate_limit_waited,
            );
            let until = deadline(facts.received_at, step.wait);
            if step.give_up {
                let failure = RecordFailure::new(
                    "RATE_LIMITED",
                    format!(
                        "gave up after {hits} rate-limited answers asking for {} of waits in \
                         all (max_rate_limit_wait is {})",
                        show_wait(step.waited),
                        humantime::format_duration(policy.max_rate_limit_wait)
                    ),
                );
                Step::GiveUpWaiting { until, failure }
            } else {
                Step::PauseUntil {
                    until,
                    wait: step.wait,
                    waited: step.waited,
                    hits,
                }
            }
        }
        Verdict::Transient(_) if attempts_left => Step::RetryAt {
            at: retry_at(rng),
            last_failure: None,
        },
        Verdict::Transient(failure) => Step::Settle(Fate::Rejected(failure.into())),
        // Renewed credentials that were refused before they ever worked mean that
        // renewing cannot help. (Credentials that worked and then expired again, as short
        // sessions do, are renewed again.)
        Verdict::AuthExpired(failure) if job.renewed && !facts.credentials_worked => Step::Stop {
            cause: Stop::CredentialsRefused(failure),
            failure: None,
        },
        Verdict::AuthExpired(failure) => Step::Renew {
            failure,
            generation: facts.credentials,
        },
        Verdict::Fatal(failure) => Step::Stop {
            failure: Some(failure.clone().into()),
            cause: Stop::FatalVerdict(failure),
        },
    }
}

/// The records were refused as a whole, by the destination or by the connector that
/// cannot express them: split them to find the record at fault; one refused alone is
/// rejected.
pub(super) fn refused(job: &Job, failure: RecordFailure) -> Step {
    if job.records.len() > 1 {
        Step::Bisect(failure)
    } else {
        Step::Settle(Fate::Rejected(failure))
    }
}

/// A half known to hold the record at fault (its sibling was taken) is split without a
/// send: sent whole, it would only be refused again.
pub(super) fn known_refused(job: &mut Job) -> Option<Step> {
    if job.known_refused && job.records.len() > 1 {
        job.parent_refusal.take().map(Step::Bisect)
    } else {
        None
    }
}

/// Admission: a pause (set by another job's answer) lasting past what is left of this
/// job's rate-limit budget leaves its records pending rather than stall the run. `pause`
/// is the end of the pause every request waits for, if any.
pub(super) fn admit(
    job: &Job,
    pause: Option<Instant>,
    policy: &RetryPolicy,
    now: Instant,
) -> Option<Step> {
    let budget = policy
        .max_rate_limit_wait
        .saturating_sub(job.rate_limit_waited);
    // This job's own pause is already counted in its budget: only a pause beyond it
    // (another job's) is weighed against what is left.
    let counted = job.paused_until.map_or(now, |p| p.max(now));
    let until = pause?;
    (until.saturating_duration_since(counted) > budget).then(|| {
        Step::LeavePending(Some(RecordFailure::new(
            "RATE_LIMITED",
            format!(
                "the destination asked to wait longer than max_rate_limit_wait ({})",
                humantime::format_duration(policy.max_rate_limit_wait)
            ),
        )))
    })
}

/// Why a record cannot be sent at all: its payload alone is larger than the connector
/// takes in one batch.
pub(super) fn too_large(record: &Record, max: u64, connector: &str) -> Option<RecordFailure> {
    let len = record.payload.len() as u64;
    (len > max).then(|| {
        RecordFailure::new(
            "RECORD_TOO_LARGE",
            format!(
                "the record is {len} bytes, more than connector `{connector}` takes in one \
                 batch (max-batch-bytes {max})"
            ),
        )
    })
}

/// A total of waits for a message: a wait of centuries is no number worth printing.
fn show_wait(d: Duration) -> String {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    if d > CENTURY {
        "more than a century".to_string()
    } else {
        humantime::format_duration(Duration::from_millis(millis(d))).to_string()
    }
}

/// One test per row of ARCHITECTURE.md's verdict table. Time is an input to `plan`, so
/// every deadline is checked exactly against the `now` given.
#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;
    use crate::sandbox::Wait;

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: format!("k{i}"),
                payload: format!("{{\"n\":{i}}}"),
            })
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
            let Step::PauseUntil { until, hits, .. } = step(Answer::Verdict(verdict), &job, now)
            else {
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
        let Step::GiveUpWaiting { until, failure } = step(Answer::Verdict(verdict), &job, now)
        else {
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
        let Step::GiveUpWaiting { until, failure } = step(Answer::Verdict(verdict), &job, now)
        else {
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
}
