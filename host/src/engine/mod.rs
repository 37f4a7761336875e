//! The delivery engine: turns a stream of source records into delivered records, isolated
//! bad records and, when a run must stop, records left pending. Nothing is lost.
//!
//! One run of a sync: a reader thread streams the source into batches; `concurrency`
//! workers, each with its own connector instance, take batches and act on every verdict
//! (see `worker`). All workers of a sync pass one `Gate`, so a rate limit seen by one
//! pauses them all.

mod backoff;
mod batcher;
mod gate;
mod input;
mod outcome;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use input::Input;
pub use outcome::{FailureList, Fate, RecordFailure, Settled, Sink};

use self::batcher::Batcher;
use self::gate::Gate;
use self::outcome::Counters;
use self::worker::{Stop, Worker};
use crate::auth::Credentials;
use crate::config::{ConnectorSpec, SyncSpec};
use crate::sandbox::{Connector, ConnectorInstance, GuestError};
use crate::source::Record;
use crate::transport::Transport;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every record read was settled (rejected records included).
    Completed,
    /// Stopped by a fatal verdict or a connector failure; unsettled records are pending.
    Failed,
    /// Stopped by the operator (Ctrl-C, SIGTERM); unsettled records are pending.
    Interrupted,
}

/// What a run did, for people (`sluice run`) and machines (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub sync: String,
    pub outcome: Outcome,
    /// Why the run failed, when it did.
    pub error: Option<String>,
    /// Records read (from the source, or picked by the retry job).
    pub read: u64,
    /// Source rows that could not become records (no key, not JSON); reported, skipped.
    pub invalid_rows: u64,
    /// Earlier rows of a key repeated in the source (the last row wins); reported, skipped.
    pub duplicate_keys: u64,
    /// Records the destination already holds with the same data (mode "changed").
    pub unchanged: u64,
    /// Permanent records whose data has not changed: held for a person.
    pub held: u64,
    pub delivered: u64,
    pub rejected: u64,
    pub permanent: u64,
    /// Read but not settled: they are sent again by a later run.
    pub pending: u64,
    pub requests: u64,
    /// Record sends repeated in this run (retry verdicts, transient failures).
    pub retries: u64,
    pub rate_limit_waits: u64,
    pub rate_limit_wait_ms: u64,
    pub bisections: u64,
    pub transient_failures: u64,
    pub auth_renewals: u64,
    /// Time spent inside the connector (precheck, build-request, classify), summed over
    /// workers.
    pub connector_ms: u64,
    pub elapsed_ms: u64,
}

/// A source row that was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidRow {
    pub line: u64,
    pub reason: String,
}

pub struct RunReport {
    pub summary: RunSummary,
    /// The first skipped source rows, unusable or repeated (at most `MAX_INVALID_ROWS_KEPT`).
    pub invalid_rows: Vec<InvalidRow>,
}

const MAX_INVALID_ROWS_KEPT: usize = 100;

/// How a run is watched and stopped from outside.
#[derive(Clone)]
pub struct RunControl {
    /// Cancelled to stop taking new work (Ctrl-C).
    pub stop: CancellationToken,
    /// How long in-flight requests may finish after `stop` before they are abandoned.
    pub grace: Duration,
    /// Receives every record's fate.
    pub sinks: Vec<Arc<dyn Sink>>,
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            stop: CancellationToken::new(),
            grace: Duration::from_secs(10),
            sinks: Vec::new(),
        }
    }
}

/// What every worker of one run shares.
struct Shared {
    spec: SyncSpec,
    connector_name: String,
    transport: Transport,
    credentials: Credentials,
    gate: Gate,
    counters: Counters,
    sinks: Vec<Arc<dyn Sink>>,
    /// Stop taking new work: a fatal verdict, or the operator.
    stop: CancellationToken,
    /// Abandon requests in flight: the grace period after a stop is over.
    abort: CancellationToken,
    sink_error: Mutex<Option<String>>,
}

impl Shared {
    fn settle(&self, settled: Vec<Settled>) {
        if settled.is_empty() {
            return;
        }
        for s in &settled {
            let counter = match s.fate {
                Fate::Delivered(_) => &self.counters.delivered,
                Fate::Rejected(_) => &self.counters.rejected,
                Fate::Permanent(_) => &self.counters.permanent,
                Fate::Pending(_) => continue,
            };
            Counters::add(counter, 1);
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

    fn leave_pending(&self, records: Vec<Record>, failure: Option<RecordFailure>) {
        let settled = records
            .into_iter()
            .map(|record| Settled {
                record,
                fate: Fate::Pending(failure.clone()),
                attempts: 0,
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

    // Configure one instance first: bad settings stop the sync before anything is read.
    let first = configure(connector.clone(), sync).await?;
    let limits = first.1;
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
        .with_context(|| format!("sync `{}`: cannot authenticate", sync.name))?;
    let transport = Transport::new(
        http,
        sync.base_url.clone(),
        connector_spec.allowed_hosts.clone(),
        sync.request_timeout,
        sync.max_response_bytes,
    );
    let shared = Arc::new(Shared {
        spec: sync.clone(),
        connector_name: connector.name().to_string(),
        transport,
        credentials,
        gate: Gate::new(sync.rate_limit),
        counters: Counters::default(),
        sinks: control.sinks.clone(),
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
        let spec = sync.source.clone();
        let shared = shared.clone();
        let batcher = Batcher::new(batch_records, limits.max_batch_bytes);
        tokio::task::spawn_blocking(move || input::read(input, &spec, batcher, &shared, tx))
    };

    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = tokio::task::JoinSet::new();
    let mut first = Some(first.0);
    for i in 0..sync.concurrency {
        let (shared, rx, connector) = (shared.clone(), rx.clone(), connector.clone());
        let instance = first.take();
        let spec = sync.clone();
        workers.spawn(async move {
            let instance = match instance {
                Some(instance) => instance,
                None => {
                    configure(connector, &spec)
                        .await
                        .map_err(|e| Stop::Fatal(format!("{e:#}")))?
                        .0
                }
            };
            let mut worker = Worker::new(shared.clone(), instance, u64::from(i));
            loop {
                let batch = rx.lock().await.recv().await;
                let Some(batch) = batch else { return Ok(()) };
                if shared.stop.is_cancelled() {
                    shared.leave_pending(batch, None);
                    continue;
                }
                worker.deliver(batch).await?;
            }
        });
    }

    let mut failure: Option<String> = None;
    while let Some(joined) = workers.join_next().await {
        let stop = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(stop)) => stop,
            Err(panic) => Stop::Fatal(format!("a worker crashed: {panic}")),
        };
        let message = match stop {
            Stop::Guest(err) => err.to_string(),
            Stop::Fatal(message) => message,
        };
        tracing::error!(sync = %sync.name, "stopping the run: {message}");
        failure.get_or_insert(message);
        shared.stop.cancel();
    }
    // With every worker gone, close the queue so that a reader blocked on it returns.
    drop(rx);
    let (read_error, invalid_rows) = match reader.await {
        Ok(Ok(invalid)) => (None, invalid),
        Ok(Err(err)) => (Some(format!("{err:#}")), Vec::new()),
        Err(panic) => (
            Some(format!("the source reader crashed: {panic}")),
            Vec::new(),
        ),
    };
    abort_after_grace.abort();

    let c = &shared.counters;
    let read = Counters::get(&c.read);
    let (delivered, rejected, permanent) = (
        Counters::get(&c.delivered),
        Counters::get(&c.rejected),
        Counters::get(&c.permanent),
    );
    let error = failure
        .or(read_error)
        .or_else(|| shared.sink_error.lock().unwrap().take());
    let outcome = if error.is_some() {
        Outcome::Failed
    } else if control.stop.is_cancelled() {
        Outcome::Interrupted
    } else {
        Outcome::Completed
    };
    let summary = RunSummary {
        sync: sync.name.clone(),
        outcome,
        error,
        read,
        invalid_rows: Counters::get(&c.invalid_rows),
        duplicate_keys: Counters::get(&c.duplicates),
        unchanged: Counters::get(&c.unchanged),
        held: Counters::get(&c.held),
        delivered,
        rejected,
        permanent,
        pending: read.saturating_sub(
            Counters::get(&c.duplicates)
                + Counters::get(&c.unchanged)
                + Counters::get(&c.held)
                + delivered
                + rejected
                + permanent,
        ),
        requests: Counters::get(&c.requests),
        retries: Counters::get(&c.retries),
        rate_limit_waits: Counters::get(&c.rate_limit_waits),
        rate_limit_wait_ms: Counters::get(&c.rate_limit_wait_ms),
        bisections: Counters::get(&c.bisections),
        transient_failures: Counters::get(&c.transient_failures),
        auth_renewals: Counters::get(&c.auth_renewals),
        connector_ms: Counters::get(&c.connector_us) / 1000,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    Ok(RunReport {
        summary,
        invalid_rows,
    })
}

/// A new instance, configured with the sync's settings, and the limits it stated.
async fn configure(
    connector: Arc<Connector>,
    sync: &SyncSpec,
) -> Result<(ConnectorInstance, crate::sandbox::Limits)> {
    let (name, settings) = (sync.name.clone(), sync.settings.clone());
    tokio::task::spawn_blocking(move || {
        let mut instance = connector.instantiate(&name).map_err(anyhow::Error::from)?;
        match instance
            .configure(&settings)
            .map_err(|e: GuestError| anyhow!(e))?
        {
            Ok(limits) => Ok((instance, limits)),
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
