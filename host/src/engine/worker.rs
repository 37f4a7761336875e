//! A worker delivers one batch at a time through its own connector instance, acting on
//! every verdict until each record of the batch is settled or the run stops.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;

use super::Shared;
use super::outcome::{Count, Fate, RecordFailure, Settled};
use super::poison::{Judgement, connector_limit, is_limit};
use super::rate_limit::{self, deadline, millis};
use super::stop::Stop;
use crate::sandbox::{
    Connector, ConnectorInstance, GuestError, HttpRequest, PrecheckOutcome, RecordOutcome, Verdict,
    Wait,
};
use crate::source::Record;
use crate::transport::SendError;

/// Some records of a batch on their way: the whole batch, a half of it after a bisection,
/// or the records a destination asked to retry.
struct Job {
    records: Vec<Record>,
    /// Sends of these records so far in this run.
    attempt: u32,
    not_before: Option<Instant>,
    rate_limit_waited: Duration,
    rate_limit_hits: u32,
    /// The end of the rate-limit pause this job's own answer set (already counted in
    /// `rate_limit_waited`).
    paused_until: Option<Instant>,
    /// Why the last send of these records failed, kept if the run stops before the next.
    last_failure: Option<RecordFailure>,
    /// The credentials were renewed for this job: another refusal stops the run.
    renewed: bool,
    /// This is the first half of a bisected batch, and its sibling lies right below it on
    /// the stack.
    first_half: bool,
    /// For the second half of a bisected batch: why the whole batch was refused.
    parent_refusal: Option<RecordFailure>,
    /// This second half is known to hold the record at fault, without being sent: the
    /// first half was accepted.
    known_refused: bool,
}

impl Job {
    fn new(records: Vec<Record>, attempt: u32) -> Self {
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

/// A record that alone made a connector call fail on a limit before the connector had
/// shown it can do that call: judged once the worker has done another batch.
struct SetAside {
    records: Vec<Record>,
    err: GuestError,
    attempts: u32,
    /// Set aside during an earlier batch than the one being delivered.
    earlier: bool,
}

pub struct Worker {
    shared: Arc<Shared>,
    /// Makes a fresh instance when a call failed on a limit: a failed instance is never
    /// called again.
    connector: Arc<Connector>,
    instance: Option<ConnectorInstance>,
    rng: SmallRng,
    set_aside: Option<SetAside>,
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        connector: Arc<Connector>,
        instance: ConnectorInstance,
        seed: u64,
    ) -> Self {
        Worker {
            shared,
            connector,
            instance: Some(instance),
            rng: SmallRng::seed_from_u64(seed),
            set_aside: None,
        }
    }

    /// Replaces the instance after a failed call with a fresh, configured one.
    async fn replace_instance(&mut self) -> Result<(), Stop> {
        self.instance = None;
        let (instance, _) = super::configure(self.connector.clone(), &self.shared.spec)
            .await
            .map_err(Stop::Configure)?;
        self.instance = Some(instance);
        Ok(())
    }

    /// Runs a connector call on a blocking thread: calls are synchronous and may run up
    /// to the connector's time limit, which must not stall the async executor.
    async fn call<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut ConnectorInstance) -> R + Send + 'static,
    ) -> R {
        let mut instance = self
            .instance
            .take()
            .expect("instance is returned after every call");
        let span = tracing::Span::current();
        let (instance, result, spent) = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let started = std::time::Instant::now();
            let result = f(&mut instance);
            (instance, result, started.elapsed())
        })
        .await
        .expect("a connector call panicked in the host");
        self.instance = Some(instance);
        self.shared
            .counters
            .add(Count::ConnectorUs, spent.as_micros() as u64);
        result
    }

    /// Delivers one batch from the source.
    pub async fn deliver(&mut self, batch: Vec<Record>) -> Result<(), Stop> {
        if let Some(set_aside) = &mut self.set_aside {
            set_aside.earlier = true;
        }
        if let Err(stop) = self.deliver_batch(batch).await {
            if let Some(set_aside) = self.set_aside.take() {
                self.shared.leave_pending(set_aside.records, None);
            }
            return Err(stop);
        }
        self.judge_set_aside(false)
    }

    /// The worker takes no more batches: a record still set aside is judged now.
    pub fn finish(&mut self) -> Result<(), Stop> {
        self.judge_set_aside(true)
    }

    /// Rejects the record set aside once the call it failed has worked for another batch;
    /// stops the run when it still has not after another batch (or none is left).
    fn judge_set_aside(&mut self, last: bool) -> Result<(), Stop> {
        let Some(set_aside) = self.set_aside.take() else {
            return Ok(());
        };
        let shared = &self.shared;
        if shared.stop.is_cancelled() {
            shared.leave_pending(set_aside.records, None);
        } else if let Some(failure) = shared.limits.at_fault(&set_aside.err) {
            shared.settle(rejected(set_aside.records, &failure, set_aside.attempts));
        } else if last || set_aside.earlier {
            shared.leave_pending(set_aside.records, None);
            return Err(Stop::Guest(set_aside.err));
        } else {
            self.set_aside = Some(set_aside);
        }
        Ok(())
    }

    async fn deliver_batch(&mut self, batch: Vec<Record>) -> Result<(), Stop> {
        let batch = self.settle_too_large(batch);
        let to_send = self.precheck(batch).await?;

        let mut stack = vec![Job::new(to_send, 1)];
        while let Some(job) = stack.pop() {
            if job.records.is_empty() {
                continue;
            }
            if self.shared.stop.is_cancelled() {
                abandon(&self.shared, job);
                continue;
            }
            if let Err(stop) = self.send(job, &mut stack).await {
                // The run stops: what this worker still held stays pending.
                for job in stack.drain(..) {
                    abandon(&self.shared, job);
                }
                return Err(stop);
            }
        }
        Ok(())
    }

    /// Rejects records larger than the connector takes in a batch: no batch can carry
    /// them, and the connector is not asked to try.
    fn settle_too_large(&self, batch: Vec<Record>) -> Vec<Record> {
        let max = self.shared.max_batch_bytes;
        let (fit, too_large): (Vec<Record>, Vec<Record>) = batch
            .into_iter()
            .partition(|r| r.payload.len() as u64 <= max);
        let settled = too_large
            .into_iter()
            .map(|record| {
                let failure = RecordFailure::new(
                    "RECORD_TOO_LARGE",
                    format!(
                        "the record is {} bytes, more than connector `{}` takes in one batch \
                         (max-batch-bytes {max})",
                        record.payload.len(),
                        self.shared.connector_name
                    ),
                );
                settle(record, Fate::Rejected(failure), 0)
            })
            .collect();
        self.shared.settle(settled);
        fit
    }

    /// Prechecks a batch, settling what the connector settles without a request; returns
    /// the records to send. A precheck that fails on a limit is bisected to find the
    /// record at fault.
    async fn precheck(&mut self, batch: Vec<Record>) -> Result<Vec<Record>, Stop> {
        let shared = self.shared.clone();
        let mut parts: Vec<Vec<Record>> = vec![batch];
        let mut to_send = Vec::new();
        // Stops the run: every record not yet settled stays pending.
        let stop = |part: Vec<Record>, parts: Vec<Vec<Record>>, to_send: Vec<Record>, stop| {
            shared.leave_pending(part, None);
            for part in parts {
                shared.leave_pending(part, None);
            }
            shared.leave_pending(to_send, None);
            Err(stop)
        };
        while let Some(part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            let (part, prechecked) = self
                .call(move |i| {
                    let r = i.precheck(&part);
                    (part, r)
                })
                .await;
            let err = match prechecked {
                Ok(prechecked) => {
                    shared.limits.worked("precheck");
                    let mut settled = Vec::new();
                    for (record, outcome) in part.into_iter().zip(prechecked) {
                        match outcome {
                            None => to_send.push(record),
                            Some(PrecheckOutcome::Rejected(f)) => {
                                settled.push(settle(record, Fate::Rejected(f.into()), 0))
                            }
                            Some(PrecheckOutcome::Permanent(f)) => {
                                settled.push(settle(record, Fate::Permanent(f.into()), 0))
                            }
                        }
                    }
                    shared.settle(settled);
                    continue;
                }
                Err(err) => err,
            };
            if !is_limit(&err) {
                return stop(part, parts, to_send, Stop::Guest(err));
            }
            tracing::warn!(records = part.len(), "{err}; isolating the record at fault");
            if let Err(replaced) = self.replace_instance().await {
                return stop(part, parts, to_send, replaced);
            }
            if part.len() > 1 {
                shared.counters.add(Count::Bisections, 1);
                let mut first = part;
                let second = first.split_off(first.len() / 2);
                parts.push(second);
                parts.push(first);
                continue;
            }
            match shared.limits.judge(&err) {
                Judgement::Reject(failure) => shared.settle(rejected(part, &failure, 0)),
                Judgement::SetAside => self.set_aside(part, err, 0),
                Judgement::Stop => return stop(part, parts, to_send, Stop::Guest(err)),
            }
        }
        Ok(to_send)
    }

    /// One request for `job`; follow-up work goes on `stack`.
    async fn send(&mut self, mut job: Job, stack: &mut Vec<Job>) -> Result<(), Stop> {
        let shared = self.shared.clone();
        if job.known_refused
            && job.records.len() > 1
            && let Some(failure) = job.parent_refusal.take()
        {
            // Sending it whole would only be refused again: split it right away.
            self.bisect(job, failure, stack);
            return Ok(());
        }
        if let Some(at) = job.not_before {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = shared.stop.cancelled() => {
                    abandon(&shared, job);
                    return Ok(());
                }
            }
        }

        let records = std::mem::take(&mut job.records);
        let (records, built) = self
            .call(move |i| {
                let r = i.build_request(&records);
                (records, r)
            })
            .await;
        job.records = records;
        let built = match built {
            Ok(built) => {
                shared.limits.worked("build-request");
                built
            }
            Err(err) if is_limit(&err) => return self.build_failed_on_limit(job, err, stack).await,
            Err(err) => {
                shared.leave_pending(job.records, None);
                return Err(Stop::Guest(err));
            }
        };
        let request: HttpRequest = match built {
            Ok(request) => request,
            // The connector cannot express the batch: isolate the record at fault.
            Err(failure) => {
                self.bisect(job, failure.into(), stack);
                return Ok(());
            }
        };

        // A pause longer than this batch may still wait would only stall the run: the
        // batch stays pending for a later run instead.
        let budget = shared
            .spec
            .retry
            .max_rate_limit_wait
            .saturating_sub(job.rate_limit_waited);
        // This job's own pause is already counted in its budget: only a pause beyond it
        // (another job's) is weighed against what is left.
        let counted = job
            .paused_until
            .map_or_else(Instant::now, |p| p.max(Instant::now()));
        if let Some(until) = shared.gate.pause_remaining()
            && until.saturating_duration_since(counted) > budget
        {
            let failure = RecordFailure::new(
                "RATE_LIMITED",
                format!(
                    "the destination asked to wait longer than max_rate_limit_wait ({})",
                    humantime::format_duration(shared.spec.retry.max_rate_limit_wait)
                ),
            );
            shared.leave_pending(job.records, Some(failure));
            return Ok(());
        }
        tokio::select! {
            _ = shared.gate.admit() => {}
            _ = shared.stop.cancelled() => {
                abandon(&shared, job);
                return Ok(());
            }
        }
        let (auth, generation) = shared.credentials.current().await;
        let mut exchange = shared.exchange(
            &request,
            auth.as_ref().map(|a| a.name.as_str()),
            job.attempt,
            job.records.len(),
        );
        shared.counters.request_started();
        let sent_at = std::time::Instant::now();
        let sent = tokio::select! {
            sent = shared.transport.send(&request, auth.as_ref()) => sent,
            // Past the grace period of a stop, in-flight requests are abandoned: their
            // records stay pending, as nothing confirmed them.
            _ = shared.abort.cancelled() => {
                shared.counters.request_finished(0, sent_at.elapsed(), true);
                shared.leave_pending(job.records, Some(RecordFailure::new("ABANDONED", "the run stopped while the request was in flight")));
                return Ok(());
            }
        };
        shared.counters.request_finished(
            sent.as_ref().map_or(0, |r| r.response.status),
            sent_at.elapsed(),
            !matches!(sent, Err(SendError::Refused(_))),
        );
        let received = match sent {
            Ok(received) => received,
            Err(SendError::Refused(why)) => {
                shared.inspect(exchange.as_mut(), None, "refused by the host".into());
                shared.leave_pending(job.records, None);
                return Err(Stop::HostRefused {
                    connector: shared.connector_name.to_string(),
                    why,
                });
            }
            Err(SendError::Failed { code, message }) => {
                shared.counters.add(Count::TransientFailures, 1);
                shared.inspect(
                    exchange.as_mut(),
                    None,
                    format!("transient({code}): {message}"),
                );
                self.unanswered(job, RecordFailure::new(&code, message), stack);
                return Ok(());
            }
        };
        shared.reach.answered();
        let response_seen = exchange.as_ref().map(|_| received.response.clone());
        let received_at_ms = received.response.received_at_ms;

        let keys: Vec<String> = job.records.iter().map(|r| r.key.clone()).collect();
        let response = received.response;
        let verdict = match self.call(move |i| i.classify(&keys, &response)).await {
            Ok(verdict) => verdict,
            Err(err) => {
                shared.leave_pending(job.records, None);
                return Err(Stop::Guest(err));
            }
        };

        if let Some(response) = &response_seen {
            shared.inspect(exchange.as_mut(), Some(response), label(&verdict));
        }
        if !matches!(verdict, Verdict::AuthExpired(_)) {
            shared.credentials.accepted(generation);
        }
        match verdict {
            Verdict::PerRecord(outcomes) => {
                if job.first_half
                    && let Some(sibling) = stack.last_mut()
                {
                    // The first half was taken, so what made the destination refuse the
                    // whole batch is in the second half.
                    sibling.known_refused = true;
                }
                self.per_record(job, outcomes, stack)
            }
            Verdict::BatchRejected(failure) => self.bisect(job, failure.into(), stack),
            Verdict::RateLimited(wait) => {
                let retry = &shared.spec.retry;
                job.rate_limit_hits = job.rate_limit_hits.saturating_add(1);
                let step = rate_limit::step(
                    retry,
                    wait.as_ref(),
                    received_at_ms,
                    job.rate_limit_hits,
                    job.rate_limit_waited,
                );
                let until = deadline(Instant::from_std(received.at), step.wait);
                shared.counters.add(Count::RateLimitWaits, 1);
                // The pause holds for every worker even when this batch gives up: the
                // destination said when it will take requests again.
                shared.gate.pause_until(until);
                shared.counters.paused_until(
                    crate::ledger::now_ms()
                        .saturating_add(millis(until.saturating_duration_since(Instant::now()))),
                );
                if step.give_up {
                    let failure = RecordFailure::new(
                        "RATE_LIMITED",
                        format!(
                            "gave up after {} rate-limited answers asking for {} of waits in \
                             all (max_rate_limit_wait is {})",
                            job.rate_limit_hits,
                            show_wait(step.waited),
                            humantime::format_duration(retry.max_rate_limit_wait)
                        ),
                    );
                    shared.leave_pending(job.records, Some(failure));
                } else {
                    shared
                        .counters
                        .add(Count::RateLimitWaitMs, millis(step.wait));
                    tracing::info!(
                        sync = %shared.spec.name,
                        wait_ms = millis(step.wait),
                        "destination is rate limiting; pausing every request to it"
                    );
                    job.rate_limit_waited = step.waited;
                    job.paused_until = Some(until);
                    job.renewed = false;
                    stack.push(job);
                }
            }
            Verdict::Transient(failure) => {
                shared.counters.add(Count::TransientFailures, 1);
                self.retry_later(job, failure.into(), stack);
            }
            Verdict::AuthExpired(failure) => {
                // Renewed credentials that were refused before they ever worked mean that
                // renewing cannot help. (Credentials that worked and then expired again,
                // as short sessions do, are renewed again.)
                if job.renewed && !shared.credentials.ever_accepted(generation) {
                    shared.leave_pending(job.records, None);
                    return Err(Stop::CredentialsRefused(failure));
                }
                match shared.credentials.renew(generation).await {
                    Ok(renewed) => {
                        if renewed {
                            shared.counters.add(Count::AuthRenewals, 1);
                            tracing::info!(sync = %shared.spec.name, "credentials expired; renewed them");
                        }
                        job.renewed = true;
                        stack.push(job);
                    }
                    Err(err) => {
                        shared.leave_pending(job.records, None);
                        return Err(Stop::RenewFailed {
                            code: failure.code,
                            error: err,
                        });
                    }
                }
            }
            Verdict::Fatal(failure) => {
                shared.leave_pending(job.records, Some(failure.clone().into()));
                return Err(Stop::FatalVerdict(failure));
            }
        }
        Ok(())
    }

    fn per_record(&mut self, job: Job, outcomes: Vec<RecordOutcome>, stack: &mut Vec<Job>) {
        let mut settled = Vec::with_capacity(job.records.len());
        let mut again = Vec::new();
        let mut last_failure = None;
        for (record, outcome) in job.records.into_iter().zip(outcomes) {
            let fate = match outcome {
                RecordOutcome::Delivered(id) => Fate::Delivered(id),
                RecordOutcome::Rejected(f) => Fate::Rejected(f.into()),
                RecordOutcome::Permanent(f) => Fate::Permanent(f.into()),
                RecordOutcome::Retry(f) => {
                    if job.attempt >= self.shared.spec.retry.max_attempts {
                        Fate::Rejected(f.into())
                    } else {
                        last_failure = Some(f);
                        again.push(record);
                        continue;
                    }
                }
            };
            settled.push(settle(record, fate, job.attempt));
        }
        self.shared.settle(settled);
        if !again.is_empty() {
            tracing::debug!(
                records = again.len(),
                reason = last_failure.map(|f| f.code).unwrap_or_default(),
                "destination asked to retry records"
            );
            self.schedule_retry(Job::new(again, job.attempt), stack);
        }
    }

    /// A failure of the whole batch that may pass: send it again after a backoff, or,
    /// when its attempts are used up, reject its records with this failure.
    fn retry_later(&mut self, job: Job, failure: RecordFailure, stack: &mut Vec<Job>) {
        if job.attempt >= self.shared.spec.retry.max_attempts {
            let attempts = job.attempt;
            let settled = job
                .records
                .into_iter()
                .map(|r| settle(r, Fate::Rejected(failure.clone()), attempts))
                .collect();
            self.shared.settle(settled);
        } else {
            tracing::debug!(code = %failure.code, attempt = job.attempt, "batch failed; retrying after backoff");
            self.schedule_retry(Job::new(job.records, job.attempt), stack);
        }
    }

    /// A send that got no response: like a transient failure, but its records are not
    /// refused by anyone, so when attempts run out they stay pending with the failure. A
    /// destination that has not answered once in the run gets no new batches.
    fn unanswered(&mut self, job: Job, failure: RecordFailure, stack: &mut Vec<Job>) {
        let shared = self.shared.clone();
        shared.reach.unanswered(&failure);
        if job.attempt < shared.spec.retry.max_attempts {
            tracing::debug!(code = %failure.code, attempt = job.attempt, "no response; retrying after backoff");
            let mut next = Job::new(job.records, job.attempt);
            next.last_failure = Some(failure);
            self.schedule_retry(next, stack);
            return;
        }
        let settled = job
            .records
            .into_iter()
            .map(|r| settle(r, Fate::Pending(Some(failure.clone())), job.attempt))
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

    /// `build-request` failed on the connector's memory or time limit: bisect to find the
    /// record at fault, with a fresh instance.
    async fn build_failed_on_limit(
        &mut self,
        job: Job,
        err: GuestError,
        stack: &mut Vec<Job>,
    ) -> Result<(), Stop> {
        let shared = self.shared.clone();
        tracing::warn!(
            records = job.records.len(),
            "{err}; isolating the record at fault"
        );
        if let Err(stop) = self.replace_instance().await {
            abandon(&shared, job);
            return Err(stop);
        }
        if job.records.len() > 1 {
            self.bisect(job, connector_limit(&err), stack);
            return Ok(());
        }
        let attempts = job.attempt.saturating_sub(1);
        match shared.limits.judge(&err) {
            Judgement::Reject(failure) => {
                shared.settle(rejected(job.records, &failure, attempts));
                Ok(())
            }
            Judgement::SetAside => {
                self.set_aside(job.records, err, attempts);
                Ok(())
            }
            Judgement::Stop => {
                abandon(&shared, job);
                Err(Stop::Guest(err))
            }
        }
    }

    fn set_aside(&mut self, records: Vec<Record>, err: GuestError, attempts: u32) {
        tracing::info!(
            "a record alone made the connector fail before the call had worked for any \
             other; judging it after the next batch"
        );
        // At most one record is set aside in a run (`LimitFailures::judge`).
        debug_assert!(self.set_aside.is_none());
        self.set_aside = Some(SetAside {
            records,
            err,
            attempts,
            earlier: false,
        });
    }

    fn schedule_retry(&mut self, mut job: Job, stack: &mut Vec<Job>) {
        let delay = self.shared.spec.retry.backoff(job.attempt, &mut self.rng);
        self.shared
            .counters
            .add(Count::Retries, job.records.len() as u64);
        job.attempt += 1;
        job.not_before = Some(deadline(Instant::now(), delay));
        stack.push(job);
    }

    /// Splits a batch refused as a whole; a record refused alone is rejected.
    fn bisect(&mut self, job: Job, failure: RecordFailure, stack: &mut Vec<Job>) {
        if job.records.len() == 1 {
            let settled = job
                .records
                .into_iter()
                .map(|r| settle(r, Fate::Rejected(failure.clone()), job.attempt))
                .collect();
            self.shared.settle(settled);
            return;
        }
        self.shared.counters.add(Count::Bisections, 1);
        let mut first = Job::new(job.records, job.attempt);
        let mut second = Job::new(
            first.records.split_off(first.records.len() / 2),
            job.attempt,
        );
        first.first_half = true;
        second.parent_refusal = Some(failure);
        // The stack is last-in first-out: push the second half first.
        stack.push(second);
        stack.push(first);
    }
}

/// A verdict in a few words, for the inspector.
fn label(verdict: &Verdict) -> String {
    match verdict {
        Verdict::PerRecord(outcomes) => {
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            for o in outcomes {
                let name = match o {
                    RecordOutcome::Delivered(_) => "delivered",
                    RecordOutcome::Rejected(_) => "rejected",
                    RecordOutcome::Retry(_) => "retry",
                    RecordOutcome::Permanent(_) => "permanent",
                };
                *counts.entry(name).or_default() += 1;
            }
            let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!("per-record({})", parts.join(", "))
        }
        Verdict::BatchRejected(f) => format!("batch-rejected({})", f.code),
        Verdict::RateLimited(None) => "rate-limited".to_string(),
        Verdict::RateLimited(Some(Wait::AfterMs(ms))) => format!("rate-limited(wait {ms}ms)"),
        Verdict::RateLimited(Some(Wait::UntilUnixMs(at))) => format!("rate-limited(until {at})"),
        Verdict::Transient(f) => format!("transient({})", f.code),
        Verdict::AuthExpired(f) => format!("auth-expired({})", f.code),
        Verdict::Fatal(f) => format!("fatal({})", f.code),
    }
}

fn settle(record: Record, fate: Fate, attempts: u32) -> Settled {
    Settled {
        record,
        fate,
        attempts,
    }
}

fn rejected(records: Vec<Record>, failure: &RecordFailure, attempts: u32) -> Vec<Settled> {
    records
        .into_iter()
        .map(|r| settle(r, Fate::Rejected(failure.clone()), attempts))
        .collect()
}

/// Leaves a job's records pending as the run stops, with the failure of their last send.
fn abandon(shared: &Shared, job: Job) {
    shared.leave_pending(job.records, job.last_failure);
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
