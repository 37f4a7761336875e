//! Applying a step of the verdict table: settling, requeueing, pausing, renewing. The
//! table itself (`plan`) decides; this only carries it out on the worker's stack of jobs.

use tokio::time::Instant;

use super::super::counters::Count;
use super::super::plan::{self, Job, Step};
use super::super::rate_limit::millis;
use super::super::stop::Stop;
use super::{Worker, settle};
use crate::fate::{Fate, RecordFailure};

impl Worker {
    /// Does what the verdict table said to do with `job`.
    pub(super) async fn apply(
        &mut self,
        step: Step,
        mut job: Job,
        stack: &mut Vec<Job>,
    ) -> Result<(), Stop> {
        let shared = self.shared.clone();
        match step {
            Step::PerRecord {
                fates,
                retry_at,
                sibling_holds_fault,
            } => {
                if sibling_holds_fault && let Some(sibling) = stack.last_mut() {
                    // The first half was taken, so what made the destination refuse the
                    // whole batch is in the second half.
                    sibling.known_refused = true;
                }
                let mut settled = Vec::with_capacity(job.records.len());
                let mut again = Vec::new();
                for (record, fate) in std::mem::take(&mut job.records).into_iter().zip(fates) {
                    match fate {
                        Some(fate) => settled.push(settle(record, fate, job.sends)),
                        None => again.push(record),
                    }
                }
                shared.settle(settled);
                if let Some(at) = retry_at
                    && !again.is_empty()
                {
                    tracing::debug!(records = again.len(), "destination asked to retry records");
                    self.retry(Job::from(&job, again), at, None, stack);
                }
            }
            Step::Settle(fate) => {
                let attempts = job.sends;
                let settled = job
                    .records
                    .into_iter()
                    .map(|r| settle(r, fate.clone(), attempts))
                    .collect();
                shared.settle(settled);
            }
            Step::RetryAt { at, last_failure } => {
                tracing::debug!(
                    attempt = job.attempt,
                    "batch not taken; retrying after backoff"
                );
                let mut again = Job::new(job.records, job.attempt);
                again.sends = job.sends;
                // The same batch sent again: the destination may have applied the first.
                again.idempotency_key = job.idempotency_key;
                self.retry(again, at, last_failure, stack);
            }
            Step::Bisect(failure) => self.bisect(job, failure, stack),
            Step::PauseUntil {
                until,
                wait,
                waited,
                hits,
            } => {
                self.pause(until);
                shared.counters.add(Count::RateLimitWaitMs, millis(wait));
                tracing::info!(
                    sync = %shared.spec.name,
                    wait_ms = millis(wait),
                    "destination is rate limiting; pausing every request to it"
                );
                job.rate_limit_hits = hits;
                job.rate_limit_waited = waited;
                job.paused_until = Some(until);
                job.renewed = false;
                stack.push(job);
            }
            Step::GiveUpWaiting { until, failure } => {
                // The pause holds for every worker even when this batch gives up: the
                // destination said when it will take requests again.
                self.pause(until);
                shared.leave_pending_sent(job.records, Some(failure), job.sends);
            }
            Step::Renew {
                failure,
                generation,
            } => match shared.credentials.renew(generation).await {
                Ok(renewed) => {
                    if renewed {
                        shared.counters.add(Count::AuthRenewals, 1);
                        tracing::info!(sync = %shared.spec.name, "credentials expired; renewed them");
                    }
                    job.renewed = true;
                    stack.push(job);
                }
                Err(error) => {
                    shared.leave_pending_sent(job.records, None, job.sends);
                    return Err(Stop::RenewFailed {
                        code: failure.code,
                        error,
                    });
                }
            },
            Step::LeavePending(failure) => {
                shared.leave_pending_sent(job.records, failure, job.sends)
            }
            Step::Unreachable(failure) => {
                let attempts = job.sends;
                let settled = job
                    .records
                    .into_iter()
                    .map(|r| settle(r, Fate::Pending(Some(failure.clone())), attempts))
                    .collect();
                shared.settle(settled);
                if shared.reach.attempts_used_up() && !shared.stop.is_cancelled() {
                    tracing::error!(
                        sync = %shared.spec.name,
                        "the destination has not answered once ({}: {}); taking no new batches",
                        failure.code,
                        failure.message
                    );
                    shared.stop.cancel();
                }
            }
            Step::Stop { cause, failure } => {
                shared.leave_pending_sent(job.records, failure, job.sends);
                return Err(cause);
            }
        }
        Ok(())
    }

    /// Pauses every request to the destination until `until`.
    fn pause(&self, until: Instant) {
        let shared = &self.shared;
        shared.counters.add(Count::RateLimitWaits, 1);
        shared.gate.pause_until(until);
        shared.counters.paused_until(
            crate::clock::now_ms()
                .saturating_add(millis(until.saturating_duration_since(Instant::now()))),
        );
    }

    /// Puts `job` back to be sent at `at`, as its next attempt.
    fn retry(
        &mut self,
        mut job: Job,
        at: Instant,
        last_failure: Option<RecordFailure>,
        stack: &mut Vec<Job>,
    ) {
        self.shared
            .counters
            .add(Count::Retries, job.records.len() as u64);
        job.attempt += 1;
        job.not_before = Some(at);
        job.last_failure = last_failure;
        stack.push(job);
    }

    /// Splits records refused as a whole (two or more) into halves sent on their own.
    pub(super) fn bisect(&mut self, mut job: Job, failure: RecordFailure, stack: &mut Vec<Job>) {
        debug_assert!(job.records.len() > 1, "a record refused alone is rejected");
        self.shared.counters.add(Count::Bisections, 1);
        let (first, second) = plan::halves(std::mem::take(&mut job.records));
        let mut first = Job::from(&job, first);
        let mut second = Job::from(&job, second);
        first.first_half = true;
        second.parent_refusal = Some(failure);
        // The stack is last-in first-out: push the second half first.
        stack.push(second);
        stack.push(first);
    }
}
