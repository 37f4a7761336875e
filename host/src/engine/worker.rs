//! A worker delivers one batch at a time through its own connector instance, acting on
//! every verdict until each record of the batch is settled or the run stops.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;

use super::Shared;
use super::counters::Count;
use super::plan::{self, Answer, Facts, Job, Step};
use super::poison::{Judgement, is_limit};
use super::stop::Stop;
use crate::fate::{Fate, RecordFailure, Settled};

mod apply;
use crate::sandbox::{
    Connector, ConnectorInstance, GuestError, HttpRequest, PrecheckOutcome, Verdict,
};
use crate::source::Record;
use crate::transport::SendError;

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
        let mut fit = Vec::with_capacity(batch.len());
        let mut settled = Vec::new();
        for record in batch {
            match plan::too_large(&record, max, &self.shared.connector_name) {
                Some(failure) => settled.push(settle(record, Fate::Rejected(failure), 0)),
                None => fit.push(record),
            }
        }
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
            if let Err(replaced) = self.isolate_after(&err, part.len()).await {
                return stop(part, parts, to_send, replaced);
            }
            if part.len() > 1 {
                shared.counters.add(Count::Bisections, 1);
                let (first, second) = plan::halves(part);
                parts.push(second);
                parts.push(first);
                continue;
            }
            if let Err(stopped) = self.judge_alone(part, err, 0, None) {
                return stop(Vec::new(), parts, to_send, stopped);
            }
        }
        Ok(to_send)
    }

    /// One request for `job`: build, admit, send, classify, then apply the step of the
    /// verdict table (`plan`); follow-up work goes on `stack`.
    async fn send(&mut self, mut job: Job, stack: &mut Vec<Job>) -> Result<(), Stop> {
        let shared = self.shared.clone();
        if let Some(step) = plan::known_refused(&mut job) {
            return self.apply(step, job, stack).await;
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
        let idempotency_key = job.idempotency_key.clone();
        let (records, built) = self
            .call(move |i| {
                let r = i.build_request(&records, &idempotency_key);
                (records, r)
            })
            .await;
        job.records = records;
        let request: HttpRequest = match built {
            Ok(built) => {
                shared.limits.worked("build-request");
                match built {
                    Ok(request) => request,
                    // The connector cannot express the batch: isolate the record at fault.
                    Err(failure) => {
                        let step = plan::refused(&job, failure.into());
                        return self.apply(step, job, stack).await;
                    }
                }
            }
            Err(err) if is_limit(&err) => return self.build_failed_on_limit(job, err, stack).await,
            Err(err) => {
                let step = Step::Stop {
                    cause: Stop::Guest(err),
                    failure: None,
                };
                return self.apply(step, job, stack).await;
            }
        };

        let pause = shared.gate.pause_remaining();
        if let Some(step) = plan::admit(&job, pause, &shared.spec.retry, Instant::now()) {
            return self.apply(step, job, stack).await;
        }
        tokio::select! {
            _ = shared.gate.admit() => {}
            _ = shared.stop.cancelled() => {
                abandon(&shared, job);
                return Ok(());
            }
        }
        let (auth, generation) = shared.credentials.current().await;
        job.sends += 1;
        let mut exchange = shared.exchange(
            &request,
            auth.as_ref().map(|a| a.name.as_str()),
            job.sends,
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
                shared.leave_pending_sent(job.records, Some(RecordFailure::new("ABANDONED", "the run stopped while the request was in flight")), job.sends);
                return Ok(());
            }
        };
        shared.counters.request_finished(
            sent.as_ref().map_or(0, |r| r.response.status),
            sent_at.elapsed(),
            !matches!(sent, Err(SendError::Refused(_))),
        );
        let (answer, received_at, received_at_ms) = match sent {
            Ok(received) => {
                shared.reach.answered();
                let response_seen = exchange.as_ref().map(|_| received.response.clone());
                let received_at_ms = received.response.received_at_ms;
                let keys: Vec<String> = job.records.iter().map(|r| r.key.clone()).collect();
                let operation = job.records[0].operation;
                let response = received.response;
                let verdict = match self
                    .call(move |i| i.classify(&keys, operation, &response))
                    .await
                {
                    Ok(verdict) => verdict,
                    Err(err) => {
                        let step = Step::Stop {
                            cause: Stop::Guest(err),
                            failure: None,
                        };
                        return self.apply(step, job, stack).await;
                    }
                };
                if let Some(response) = &response_seen {
                    shared.inspect(exchange.as_mut(), Some(response), format!("{verdict:#}"));
                }
                if !matches!(verdict, Verdict::AuthExpired(_)) {
                    shared.credentials.accepted(generation);
                }
                if matches!(verdict, Verdict::Transient(_)) {
                    shared.counters.add(Count::TransientFailures, 1);
                }
                let at = Instant::from_std(received.at);
                (Answer::Verdict(verdict), at, received_at_ms)
            }
            Err(SendError::Refused(why)) => {
                shared.inspect(exchange.as_mut(), None, "refused by the host".into());
                (Answer::HostRefused(why.to_string()), Instant::now(), 0)
            }
            Err(SendError::Failed { code, message }) => {
                shared.counters.add(Count::TransientFailures, 1);
                shared.inspect(
                    exchange.as_mut(),
                    None,
                    format!("transient({code}): {message}"),
                );
                let failure = RecordFailure::new(&code, message);
                shared.reach.unanswered(&failure);
                (Answer::NoResponse(failure), Instant::now(), 0)
            }
        };
        let facts = Facts {
            policy: &shared.spec.retry,
            connector: &shared.connector_name,
            now: Instant::now(),
            received_at,
            received_at_ms,
            credentials: generation,
            credentials_worked: shared.credentials.ever_accepted(generation),
        };
        let step = plan::plan(answer, &job, &facts, &mut self.rng);
        self.apply(step, job, stack).await
    }

    /// `build-request` failed on the connector's memory or time limit: bisect to find the
    /// record at fault, with a fresh instance.
    async fn build_failed_on_limit(
        &mut self,
        job: Job,
        err: GuestError,
        stack: &mut Vec<Job>,
    ) -> Result<(), Stop> {
        if let Err(stop) = self.isolate_after(&err, job.records.len()).await {
            abandon(&self.shared, job);
            return Err(stop);
        }
        if let Some(step) = plan::over_limit(&job, &err) {
            return self.apply(step, job, stack).await;
        }
        let attempts = job.sends;
        self.judge_alone(job.records, err, attempts, job.last_failure)
    }

    /// A connector call failed on its memory or time limit: the instance is replaced
    /// before the records are split or judged, since a trapped instance cannot be reused.
    async fn isolate_after(&mut self, err: &GuestError, records: usize) -> Result<(), Stop> {
        tracing::warn!(records, "{err}; isolating the record at fault");
        self.replace_instance().await
    }

    /// One record alone made a connector call fail on a limit (precheck or build):
    /// `LimitFailures::judge` rejects it, sets it aside, or stops the run (the record then
    /// stays pending with `last_failure`).
    fn judge_alone(
        &mut self,
        records: Vec<Record>,
        err: GuestError,
        attempts: u32,
        last_failure: Option<RecordFailure>,
    ) -> Result<(), Stop> {
        match self.shared.limits.judge(&err) {
            Judgement::Reject(failure) => {
                self.shared.settle(rejected(records, &failure, attempts));
                Ok(())
            }
            Judgement::SetAside => {
                self.set_aside(records, err, attempts);
                Ok(())
            }
            Judgement::Stop => {
                self.shared
                    .leave_pending_sent(records, last_failure, attempts);
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
    shared.leave_pending_sent(job.records, job.last_failure, job.sends);
}
