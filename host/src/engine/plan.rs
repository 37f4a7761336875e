//! The verdict table of ARCHITECTURE.md as one pure function: what a worker does with
//! some records after the destination's answer (or the lack of one). Nothing here sends,
//! settles, sleeps or reads a clock: the time is an input, so every row, timing included,
//! is tested exactly. `Worker` applies the step.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::poison::connector_limit;
use super::rate_limit::{self, deadline, millis};
use super::stop::Stop;
use crate::config::RetryPolicy;
use crate::fate::{Fate, RecordFailure};
use crate::sandbox::{Failure, GuestError, RecordOutcome, Verdict};
use crate::source::Record;

/// Some records of a batch on their way: the whole batch, a half of it after a bisection,
/// or the records a destination asked to retry.
pub(super) struct Job {
    pub records: Vec<Record>,
    /// The attempt the next send of these records is, in this run: what the retry policy
    /// counts. A rate-limit pause or a bisection does not use one up.
    pub attempt: u32,
    /// Sends of these records so far in this run, every request counted (as part of a
    /// bigger batch before a bisection, again after a pause): what the ledger and the
    /// inspector report.
    pub sends: u32,
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
    /// Given to `build-request` (see the WIT): kept by every resend of these records
    /// (after a transient failure, a rate limit, a renewal); a new job, even of the same
    /// keys (a per-record retry of a subset), gets a new one, since a destination that
    /// deduplicates would answer it with the earlier send's response.
    pub idempotency_key: String,
}

impl Job {
    /// A job of `records` taken from `parent`: at the same attempt, with its sends.
    pub fn from(parent: &Job, records: Vec<Record>) -> Self {
        let mut job = Job::new(records, parent.attempt);
        job.sends = parent.sends;
        job
    }

    pub fn new(records: Vec<Record>, attempt: u32) -> Self {
        Job {
            records,
            attempt,
            sends: 0,
            not_before: None,
            rate_limit_waited: Duration::ZERO,
            rate_limit_hits: 0,
            paused_until: None,
            last_failure: None,
            renewed: false,
            first_half: false,
            parent_refusal: None,
            known_refused: false,
            idempotency_key: format!("sluice-{:032x}", rand::random::<u128>()),
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

/// `build-request` failed on the connector's memory or time limit: two records or more
/// are split like a refused batch (on a fresh instance) to find the record at fault; for a
/// record alone, `None`: `LimitFailures::judge` decides (reject, set aside, or stop).
pub(super) fn over_limit(job: &Job, err: &GuestError) -> Option<Step> {
    (job.records.len() > 1).then(|| Step::Bisect(connector_limit(err)))
}

/// Splits records to find the one at fault; callers try the first half first.
pub(super) fn halves(mut records: Vec<Record>) -> (Vec<Record>, Vec<Record>) {
    let second = records.split_off(records.len() / 2);
    (records, second)
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

/// One test per row of ARCHITECTURE.md's verdict table.
#[cfg(test)]
mod tests;
