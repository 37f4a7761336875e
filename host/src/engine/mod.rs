//! The delivery engine: turns a stream of source records into delivered records, isolated
//! bad records and, when a run must stop, records left pending. Nothing is lost.
//!
//! One run of a sync: a reader thread streams the source into batches; `concurrency`
//! workers, each with its own connector instance, take batches and act on every verdict
//! (see `worker`). All workers of a sync pass one `Gate`, so a rate limit seen by one
//! pauses them all.

mod batcher;
mod counters;
mod filter;
mod gate;
mod input;
mod mirror;
mod outcome;
mod plan;
mod poison;
mod rate_limit;
mod reach;
mod repeats;
mod stop;
mod summary;
mod verdict;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use crate::fate::{Fate, RecordFailure, Settled};
pub use counters::{Count, Counters};
pub use filter::{Decision, Filter};
pub use input::Input;
pub(crate) use input::{Reader, read_with};
pub use outcome::{FailureList, Sink};
pub use repeats::{KeySet, hash as key_set_hash};

use self::batcher::Batcher;
use self::gate::Gate;
use self::poison::LimitFailures;
use self::reach::Reach;
pub use self::stop::{Stop, StopKind};
pub use self::summary::{InvalidRow, MAX_SKIPPED_ROWS_KEPT, Outcome, RunReport, RunSummary};
use self::worker::Worker;
use crate::auth::Credentials;
use crate::config::{ConnectorSpec, SyncSpec};
use crate::inspector::{Exchange, Inspector};
use crate::sandbox::{
    Capabilities, Connector, ConnectorInstance, GuestError, HttpRequest, HttpResponse, Operation,
};
use crate::source::Record;
use crate::transport::Transport;

/// How a run is watched and stopped from outside.
#[derive(Clone)]
pub struct RunControl {
    /// Cancelled to stop taking new work (Ctrl-C).
    pub stop: CancellationToken,
    /// How long in-flight requests may finish after `stop` before they are abandoned.
    pub grace: Duration,
    /// Receives every record's fate.
    pub sinks: Vec<Arc<dyn Sink>>,
    /// Names this run in the summary, the inspector and the logs.
    pub run_id: String,
    /// Records every request and response.
    pub inspector: Option<Arc<Inspector>>,
    /// The run's live counters, for progress displays; a fresh set when `None`.
    pub counters: Option<Arc<Counters>>,
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            stop: CancellationToken::new(),
            grace: Duration::from_secs(10),
            sinks: Vec::new(),
            run_id: new_run_id(),
            inspector: None,
            counters: None,
        }
    }
}

/// A run id: the start time in milliseconds and a random suffix, readable and sortable.
pub fn new_run_id() -> String {
    format!("{}-{:04x}", crate::clock::now_ms(), rand::random::<u16>())
}

/// What every worker of one run shares.
struct Shared {
    spec: SyncSpec,
    connector_name: String,
    transport: Transport,
    credentials: Credentials,
    gate: Gate,
    /// The connector's `max-batch-bytes`: a record larger than this alone is rejected.
    max_batch_bytes: u64,
    /// The connector updates by external key (see the WIT's `capabilities`).
    update_by_key: bool,
    /// Which connector calls have worked, to tell a poison record from a broken connector.
    limits: LimitFailures,
    /// Whether the destination has answered, and sends that got no response.
    reach: Reach,
    counters: Arc<Counters>,
    sinks: Vec<Arc<dyn Sink>>,
    run_id: String,
    inspector: Option<Arc<Inspector>>,
    /// Stop taking new work: a fatal verdict, or the operator.
    stop: CancellationToken,
    /// Abandon requests in flight: the grace period after a stop is over.
    abort: CancellationToken,
    sink_error: Mutex<Option<String>>,
}

impl Shared {
    fn settle(&self, mut settled: Vec<Settled>) {
        if settled.is_empty() {
            return;
        }
        self.scrub_fates(&mut settled);
        let (mut delivered, mut deleted, mut rejected, mut permanent) = (0, 0, 0, 0);
        for s in &settled {
            match s.fate {
                Fate::Delivered(_) if s.record.operation == Operation::Delete => deleted += 1,
                Fate::Delivered(_) => delivered += 1,
                Fate::Rejected(_) => rejected += 1,
                Fate::Permanent(_) => permanent += 1,
                Fate::Pending(_) => {}
            }
        }
        for (count, n) in [
            (Count::Delivered, delivered),
            (Count::Deleted, deleted),
            (Count::Rejected, rejected),
            (Count::Permanent, permanent),
        ] {
            if n > 0 {
                self.counters.add(count, n);
            }
        }
        for sink in &self.sinks {
            if let Err(err) = sink.settle(&settled) {
                // A sink that cannot record fates (a full disk under the ledger) must stop
                // the run: going on would deliver records nobody can account for.
                let mut first = self.sink_error.lock().unwrap();
                first.get_or_insert_with(|| format!("{err:#}"));
                self.stop.cancel();
            }
        }
    }

    /// A connector never sees a secret (the transport scrubs each response before
    /// `classify`), but it may decode an echo the transport could not recognise (an
    /// escaped or re-encoded token): what it says is scrubbed once more before any sink
    /// stores or prints it.
    fn scrub_fates(&self, settled: &mut [Settled]) {
        let scrubber = self.credentials.secrets().scrubber();
        if scrubber.is_empty() {
            return;
        }
        for s in settled {
            match &mut s.fate {
                Fate::Delivered(Some(id)) => *id = scrubber.scrub_string(std::mem::take(id)),
                Fate::Rejected(failure)
                | Fate::Permanent(failure)
                | Fate::Pending(Some(failure)) => {
                    failure.code = scrubber.scrub_string(std::mem::take(&mut failure.code));
                    failure.message = scrubber.scrub_string(std::mem::take(&mut failure.message));
                    for field in &mut failure.fields {
                        *field = scrubber.scrub_string(std::mem::take(field));
                    }
                }
                Fate::Delivered(None) | Fate::Pending(None) => {}
            }
        }
    }

    /// The inspector's record of a request about to leave, if the inspector is on.
    fn exchange(
        &self,
        request: &HttpRequest,
        auth_header: Option<&str>,
        attempt: u32,
        batch: usize,
    ) -> Option<Exchange> {
        let inspector = self.inspector.as_ref().filter(|i| i.enabled())?;
        let redactor = inspector.redactor();
        let mut headers = request.headers.clone();
        if let Some(name) = auth_header {
            headers.push((name.to_string(), String::new()));
        }
        Some(Exchange {
            at_ms: crate::clock::now_ms(),
            sync: self.spec.name.clone(),
            run: self.run_id.clone(),
            attempt,
            batch_size: batch,
            method: request.method.clone(),
            url: redactor.url(
                &self
                    .transport
                    .resolve(&request.url)
                    .map_or_else(|_| request.url.clone(), |u| u.to_string()),
            ),
            request_headers: redactor.headers(&headers),
            request_body: redactor.body(&request.body, inspector.max_body()),
            status: 0,
            response_headers: Vec::new(),
            response_body: String::new(),
            duration_ms: 0,
            verdict: String::new(),
        })
    }

    /// Completes and stores an exchange. The inspector only observes: a failure to write
    /// it is logged, never fatal to the run.
    fn inspect(
        &self,
        exchange: Option<&mut Exchange>,
        response: Option<&HttpResponse>,
        verdict: String,
    ) {
        let (Some(exchange), Some(inspector)) = (exchange, &self.inspector) else {
            return;
        };
        let redactor = inspector.redactor();
        exchange.duration_ms = crate::clock::now_ms().saturating_sub(exchange.at_ms);
        if let Some(response) = response {
            exchange.status = response.status;
            exchange.response_headers = redactor.headers(&response.headers);
            exchange.response_body = redactor.body(&response.body, inspector.max_body());
        }
        exchange.verdict = self.credentials.secrets().scrubber().scrub_string(verdict);
        if let Err(err) = inspector.record(exchange) {
            tracing::warn!("could not record a request in the inspector: {err:#}");
        }
    }

    fn leave_pending(&self, records: Vec<Record>, failure: Option<RecordFailure>) {
        self.leave_pending_sent(records, failure, 0);
    }

    /// [`Shared::leave_pending`] for records this run sent `sends` times already.
    fn leave_pending_sent(&self, records: Vec<Record>, failure: Option<RecordFailure>, sends: u32) {
        let settled = records
            .into_iter()
            .map(|record| Settled {
                record,
                fate: Fate::Pending(failure.clone()),
                attempts: sends,
            })
            .collect();
        self.settle(settled);
    }
}

/// Runs `sync` once through `connector`.
pub async fn run_sync(
    connector: Arc<Connector>,
    connector_spec: &ConnectorSpec,
    sync: &SyncSpec,
    http: reqwest::Client,
    input: Input,
    control: RunControl,
) -> Result<RunReport> {
    let started = Instant::now();
    let started_at_ms = crate::clock::now_ms();

    // Configure one instance first: bad settings stop the sync before anything is read.
    let first = configure(connector.clone(), sync).await?;
    let capabilities = first.1;
    check_operations(&connector, sync, &capabilities)?;
    let limits = capabilities.limits;
    if limits.max_batch_records == 0 || limits.max_batch_bytes == 0 {
        bail!(
            "connector `{}` broke the contract in `configure`: batch limits must be at least 1 \
             (got {} records, {} bytes)",
            connector.name(),
            limits.max_batch_records,
            limits.max_batch_bytes
        );
    }
    let batch_records = sync.batch_size.min(limits.max_batch_records) as usize;

    let credentials = Credentials::new(sync.auth.clone(), http.clone())
        .await
        .context("cannot authenticate")?;
    // The transport scrubs every response of the secrets the credentials add, including
    // those of later renewals.
    let transport = Transport::new(
        http,
        sync.base_url.clone(),
        connector_spec.allowed_hosts.clone(),
        sync.request_timeout,
        sync.max_response_bytes,
    )
    .with_secrets(credentials.secrets());
    let shared = Arc::new(Shared {
        spec: sync.clone(),
        connector_name: connector.name().to_string(),
        transport,
        credentials,
        gate: Gate::new(sync.rate_limit),
        max_batch_bytes: limits.max_batch_bytes,
        update_by_key: capabilities.update_by_key,
        limits: LimitFailures::default(),
        reach: Reach::default(),
        counters: control
            .counters
            .clone()
            .unwrap_or_else(|| Arc::new(Counters::new(&sync.name, connector.name()))),
        sinks: control.sinks.clone(),
        run_id: control.run_id.clone(),
        inspector: control.inspector.clone(),
        stop: control.stop.child_token(),
        abort: CancellationToken::new(),
        sink_error: Mutex::new(None),
    });

    // After a stop, in-flight requests have `grace` to finish.
    let abort_after_grace = {
        let (stop, abort, grace) = (shared.stop.clone(), shared.abort.clone(), control.grace);
        tokio::spawn(async move {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
            abort.cancel();
        })
    };

    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Record>>(sync.concurrency as usize * 2);
    let reader = {
        let shared = shared.clone();
        let batcher = Batcher::new(batch_records, limits.max_batch_bytes);
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            input::read(input, batcher, &shared, tx)
        })
    };

    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = tokio::task::JoinSet::new();
    let mut first = Some(first.0);
    for i in 0..sync.concurrency {
        let (shared, rx, connector) = (shared.clone(), rx.clone(), connector.clone());
        let instance = first.take();
        let spec = sync.clone();
        workers.spawn(
            async move {
                let instance = match instance {
                    Some(instance) => instance,
                    None => {
                        configure(connector.clone(), &spec)
                            .await
                            .map_err(Stop::Configure)?
                            .0
                    }
                };
                let mut worker = Worker::new(shared.clone(), connector, instance, u64::from(i));
                loop {
                    let batch = rx.lock().await.recv().await;
                    let Some(batch) = batch else {
                        return worker.finish();
                    };
                    if shared.stop.is_cancelled() {
                        shared.leave_pending(batch, None);
                        continue;
                    }
                    worker.deliver(batch).await?;
                }
            }
            .instrument(tracing::Span::current()),
        );
    }

    let mut failure: Option<String> = None;
    let mut stopped_by = None;
    while let Some(joined) = workers.join_next().await {
        let stop = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(stop)) => stop,
            Err(panic) => Stop::Crashed(panic),
        };
        // The cause may quote the connector, which may have decoded an echoed secret.
        let scrubber = shared.credentials.secrets().scrubber();
        let (message, stop_kind) = (scrubber.scrub_string(stop.to_string()), stop.kind());
        // Logged once: the other workers stop for the same cause (the first one's), or
        // for its consequences.
        if failure.is_none() {
            tracing::error!(sync = %sync.name, "stopping the run: {message}");
        } else {
            tracing::debug!(sync = %sync.name, "a worker also stopped: {message}");
        }
        failure.get_or_insert(message);
        stopped_by.get_or_insert(stop_kind);
        shared.stop.cancel();
    }
    // With every worker gone, close the queue so that a reader blocked on it returns, and
    // report what was still queued as pending.
    {
        let mut rx = rx.lock().await;
        rx.close();
        while let Ok(batch) = rx.try_recv() {
            shared.leave_pending(batch, None);
        }
    }
    drop(rx);
    let (read_error, skipped_rows, withheld) = match reader.await {
        Ok(Ok(end)) => (None, end.skipped, end.withheld),
        Ok(Err(err)) => (Some(format!("{err:#}")), Vec::new(), None),
        Err(panic) => (
            Some(format!("the source reader crashed: {panic}")),
            Vec::new(),
            None,
        ),
    };
    abort_after_grace.abort();
    let c = &shared.counters;
    let read = c.get(Count::Read);
    let (delivered, rejected, permanent) = (
        c.get(Count::Delivered),
        c.get(Count::Rejected),
        c.get(Count::Permanent),
    );
    let error = failure
        .or(read_error)
        .or_else(|| shared.sink_error.lock().unwrap().take())
        .or_else(|| {
            // A run that delivered nothing while its sends went unanswered has failed, even
            // though no verdict stopped it; an operator's stop is reported as such.
            (!control.stop.is_cancelled())
                .then(|| shared.reach.error(delivered, sync.retry.max_attempts))
                .flatten()
        });
    // A fatal verdict's message comes from the connector: scrubbed like its fates.
    let error = error.map(|e| shared.credentials.secrets().scrubber().scrub_string(e));
    let outcome = if error.is_some() {
        Outcome::Failed
    } else if control.stop.is_cancelled() {
        Outcome::Interrupted
    } else {
        Outcome::Completed
    };
    let summary = RunSummary {
        sync: sync.name.clone(),
        run_id: control.run_id.clone(),
        started_at_ms,
        ended_at_ms: crate::clock::now_ms(),
        outcome,
        error,
        stopped_by,
        resent_because: None,
        partition: None,
        read,
        invalid_rows: c.get(Count::InvalidRows),
        duplicate_keys: c.get(Count::Duplicates),
        skipped_rows,
        unchanged: c.get(Count::Unchanged),
        held: c.get(Count::Held),
        not_at_destination: c.get(Count::NotAtDestination),
        already_at_destination: c.get(Count::AtDestination),
        deletes: c.get(Count::Deletes),
        deleted: c.get(Count::Deleted),
        failures_forgotten: c.get(Count::FailuresForgotten),
        deletes_withheld: withheld.as_ref().map_or(0, |w| w.0),
        deletes_withheld_because: withheld.map(|w| w.1),
        delivered,
        rejected,
        permanent,
        pending: (read + c.get(Count::Deletes)).saturating_sub(
            c.get(Count::Duplicates)
                + c.get(Count::Unchanged)
                + c.get(Count::Held)
                + c.get(Count::NotAtDestination)
                + c.get(Count::AtDestination)
                + c.get(Count::Deleted)
                + delivered
                + rejected
                + permanent,
        ),
        requests: c.get(Count::Requests),
        token_requests: shared.credentials.token_requests(),
        retries: c.get(Count::Retries),
        rate_limit_waits: c.get(Count::RateLimitWaits),
        rate_limit_wait_ms: c.get(Count::RateLimitWaitMs),
        bisections: c.get(Count::Bisections),
        transient_failures: c.get(Count::TransientFailures),
        auth_renewals: c.get(Count::AuthRenewals),
        connector_ms: c.get(Count::ConnectorUs) / 1000,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    Ok(RunReport {
        summary,
        position: sync.source.origin.position(),
    })
}

/// Refuses a sync whose behaviour needs an operation the connector does not do, before
/// anything is read.
pub fn check_operations(
    connector: &Connector,
    sync: &SyncSpec,
    capabilities: &Capabilities,
) -> Result<()> {
    match missing_operations(
        sync.behavior,
        connector.name(),
        connector.version(),
        &capabilities.operations,
    ) {
        Some(why) => Err(anyhow!(why)),
        None => Ok(()),
    }
}

/// Why `behavior` cannot run on connector `name` of WIT `version` that does `supported`.
fn missing_operations(
    behavior: crate::config::Behavior,
    name: &str,
    version: &str,
    supported: &[Operation],
) -> Option<String> {
    let missing: Vec<&str> = behavior
        .operations()
        .iter()
        .filter(|op| !supported.contains(op))
        .map(|op| op.name())
        .collect();
    if missing.is_empty() {
        return None;
    }
    let supported = match supported {
        [] => "none (its `configure` states no operation; `sluice connector check` says more)"
            .to_string(),
        _ => {
            let names: Vec<&str> = supported.iter().map(|op| op.name()).collect();
            format!("only {}", names.join(", "))
        }
    };
    let why = match version {
        "0.1.0" => ", as every connector built against sluice:connector@0.1.0 does",
        _ => "",
    };
    Some(format!(
        "behavior = \"{}\" needs the operation(s) {}, and connector `{name}` supports \
         {supported}{why}",
        behavior.name(),
        missing.join(", "),
    ))
}

/// A new instance, configured with the sync's settings, and the capabilities it stated.
pub(crate) async fn configure(
    connector: Arc<Connector>,
    sync: &SyncSpec,
) -> Result<(ConnectorInstance, Capabilities)> {
    let (name, settings) = (sync.name.clone(), sync.settings.clone());
    tokio::task::spawn_blocking(move || {
        let mut instance = connector.instantiate(&name).map_err(anyhow::Error::from)?;
        match instance
            .configure(&settings)
            .map_err(|e: GuestError| anyhow!(e))?
        {
            Ok(capabilities) => Ok((instance, capabilities)),
            Err(failure) => Err(anyhow!(
                "connector `{}` refused the settings of sync `{name}`: {}: {}",
                connector.name(),
                failure.code,
                failure.message
            )),
        }
    })
    .await
    .context("configuring the connector crashed")?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Behavior;

    #[test]
    fn a_behaviour_the_connector_cannot_do_is_refused_naming_both() {
        let all = [Operation::Upsert, Operation::Delete];
        assert_eq!(
            missing_operations(Behavior::Mirror, "c", "0.2.0", &all),
            None
        );
        assert_eq!(
            missing_operations(Behavior::Mirror, "c", "0.1.0", &[Operation::Upsert]).unwrap(),
            "behavior = \"mirror\" needs the operation(s) delete, and connector `c` supports \
             only upsert, as every connector built against sluice:connector@0.1.0 does"
        );
        // A connector that states none is told apart from one that states a list.
        assert_eq!(
            missing_operations(Behavior::Upsert, "c", "0.2.0", &[]).unwrap(),
            "behavior = \"upsert\" needs the operation(s) upsert, and connector `c` supports \
             none (its `configure` states no operation; `sluice connector check` says more)"
        );
    }
}
