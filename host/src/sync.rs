//! Runs the syncs of a config: loads each connector once, keeps the ledger open, and runs
//! syncs (or retry passes) one at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tracing::Instrument;

use crate::builtin;
use crate::config::{Behavior, SyncSpec};
use crate::config::{ComponentSource, Config, ConnectorSpec, SendMode};
use crate::engine::{
    self, Counters, Filter, Input, Outcome, Reader, RunControl, RunReport, RunSummary, read_with,
};
use crate::history::History;
use crate::inspector::Inspector;
use crate::ledger::{Fingerprint, Ledger, LedgerSink, RunStart};
use crate::retry_job::{self, SelectionCounts};
use crate::run_plan::RunPlan;
use crate::sandbox::Operation;
use crate::sandbox::{Connector, Runtime};
use crate::source::partition::Partition;

/// A process's host: one sandbox runtime, one HTTP client, the loaded connectors, and the
/// ledger of the config's state directory (which no other process may hold).
pub struct Host {
    runtime: Arc<Runtime>,
    http: reqwest::Client,
    loaded: Arc<Mutex<HashMap<String, Arc<Connector>>>>,
    ledger: Arc<Ledger>,
    ledger_gauges: bool,
    /// Each sync's runs in this process (see [`SyncRuns`]).
    runs: Arc<Mutex<HashMap<String, Arc<SyncRuns>>>>,
}

/// One sync's runs in this process: one at a time (a run reads the ledger's state when it
/// begins, so a retry from the console must not overlap a scheduled run), and the live
/// counters of the one going.
#[derive(Default)]
struct SyncRuns {
    turn: tokio::sync::Mutex<()>,
    current: Mutex<Option<Arc<Counters>>>,
}

/// The run of a sync going, from its start to its end however it ends (returned,
/// failed, or its future dropped by a stop): its counters are shown while it lasts.
struct Going(Arc<SyncRuns>);

impl Going {
    fn start(runs: Arc<SyncRuns>, counters: Arc<Counters>) -> Going {
        *runs.current.lock().unwrap() = Some(counters);
        Going(runs)
    }
}

impl Drop for Going {
    fn drop(&mut self) {
        *self.0.current.lock().unwrap() = None;
    }
}

/// How [`Host::run_with`] runs a sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Send every record, whatever the destination confirmed before.
    pub full_resync: bool,
    /// Only the keys of this partition.
    pub partition: Option<Partition>,
    /// A mirror run may delete up to this many records, above `max_deletes`.
    pub allow_deletes: Option<u64>,
}

/// A retry pass: what it picked from the ledger, and how its run went.
pub struct RetryReport {
    pub selection: SelectionCounts,
    pub run: Option<RunReport>,
}

impl Host {
    pub fn new(config: &Config) -> Result<Self> {
        Host::with_access(config, crate::ledger::postgres::Access::Exclusive)
    }

    /// [`Host::new`], holding a state database as `access` says: a worker of a pool shares
    /// it with the other workers.
    pub fn with_access(config: &Config, access: crate::ledger::postgres::Access) -> Result<Self> {
        let ledger = Ledger::for_config_with(config, access)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            // Connectors build requests to their destination only: never follow a
            // redirect to somewhere the operator did not allow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("creating the HTTP client")?;
        Ok(Host {
            runtime: Arc::new(Runtime::new(config.cache_dir.clone())?),
            http,
            loaded: Arc::new(Mutex::new(HashMap::new())),
            ledger: Arc::new(ledger),
            ledger_gauges: false,
            runs: Arc::default(),
        })
    }

    fn runs_of(&self, name: &str) -> Arc<SyncRuns> {
        let mut runs = self.runs.lock().unwrap();
        runs.entry(name.to_string()).or_default().clone()
    }

    /// The live counters of the sync's run going in this process, if one is.
    pub fn running(&self, name: &str) -> Option<Arc<Counters>> {
        self.runs_of(name).current.lock().unwrap().clone()
    }

    /// After each run, export the ledger's record counts by status as metrics (a full
    /// scan of the sync's ledger: only worth it when something scrapes them).
    pub fn export_ledger_gauges(&mut self, on: bool) {
        self.ledger_gauges = on;
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// This host's runtime, client and connectors over another view of the ledger (a
    /// worker's fenced one, for one lease).
    pub fn with_ledger(&self, ledger: Ledger) -> Host {
        Host {
            runtime: self.runtime.clone(),
            http: self.http.clone(),
            loaded: self.loaded.clone(),
            ledger: Arc::new(ledger),
            ledger_gauges: self.ledger_gauges,
            runs: self.runs.clone(),
        }
    }

    /// The request inspector of the sync named `name`.
    pub fn inspector(&self, config: &Config, name: &str) -> Result<Inspector> {
        let sync = config.sync(name)?;
        Ok(Inspector::new(
            self.ledger.tree(&format!("inspector:{name}"))?,
            config.inspector.clone(),
            &sync.redact,
        )
        .at(self.ledger.path()))
    }

    /// Every run's summary.
    pub fn history(&self) -> Result<History> {
        History::open(&self.ledger)
    }

    /// The connector `spec` describes, compiled and linked once per process.
    pub async fn connector(&self, spec: &ConnectorSpec) -> Result<Arc<Connector>> {
        if let Some(loaded) = self.loaded.lock().unwrap().get(&spec.name) {
            return Ok(loaded.clone());
        }
        let wasm: Vec<u8> = match &spec.component {
            ComponentSource::Builtin(name) => builtin::component(name)
                .with_context(|| format!("no bundled connector `{name}`"))?
                .to_vec(),
            ComponentSource::File(path) => std::fs::read(path).with_context(|| {
                format!(
                    "connector `{}`: cannot read `{}`",
                    spec.name,
                    path.display()
                )
            })?,
        };
        let (runtime, name, limits) = (self.runtime.clone(), spec.name.clone(), spec.limits);
        // Compiling is CPU work that may take a while: keep it off the async executor.
        let connector = tokio::task::spawn_blocking(move || runtime.load(&name, &wasm, limits))
            .await
            .context("loading the connector crashed")?
            .with_context(|| format!("component `{}`", spec.component))?;
        let connector = Arc::new(connector);
        self.loaded
            .lock()
            .unwrap()
            .insert(spec.name.clone(), connector.clone());
        Ok(connector)
    }

    /// Runs the sync named `name` once over its source.
    pub async fn run(&self, config: &Config, name: &str, control: RunControl) -> Result<RunReport> {
        self.run_with(config, name, control, RunOptions::default())
            .await
    }

    /// [`Host::run`]; `full_resync` sends every record, whatever the destination
    /// confirmed before (`sluice run --full-resync`).
    pub async fn run_with(
        &self,
        config: &Config,
        name: &str,
        control: RunControl,
        options: RunOptions,
    ) -> Result<RunReport> {
        let runs = self.runs_of(name);
        let _turn = runs.turn.lock().await;
        let (sink, input) = self.source_run(config, name, options, false).await?;
        let mut report = self.run_input(config, name, sink, input, control).await?;
        report.summary.partition = options.partition.map(|p| p.to_string());
        Ok(report)
    }

    /// What a run of the sync named `name` would do, without sending or writing anything:
    /// the connector is configured (its settings and operations are checked as a run
    /// checks them), the source read and decided against the ledger as a run does.
    pub async fn plan(&self, config: &Config, name: &str, options: RunOptions) -> Result<RunPlan> {
        let sync = config.sync(name)?.clone();
        let spec = &config.connectors[&sync.connector];
        let connector = self.connector(spec).await?;
        let (_, capabilities) = engine::configure(connector.clone(), &sync).await?;
        engine::check_operations(&connector, &sync, &capabilities)?;
        let (sink, input) = self.source_run(config, name, options, true).await?;
        let span = tracing::error_span!("plan", sync = %name);
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let counters = Counters::new(&sync.name, connector.name());
            let stop = tokio_util::sync::CancellationToken::new();
            let reader = Reader {
                sync: &sync,
                counters: &counters,
                stop: &stop,
                update_by_key: capabilities.update_by_key,
            };
            let mut plan = RunPlan::new(&sync.name, sync.behavior.name());
            let end = read_with(input, &reader, &mut |record| {
                let at_destination =
                    record.operation != Operation::Delete && sink.at_destination(&record.key);
                plan.send(&record, at_destination);
                true
            })?;
            plan.counted(&counters);
            plan.skipped_rows = end.skipped;
            plan.position = sync.source.origin.position();
            if let Some((count, why)) = end.withheld {
                plan.deletes_withheld = count;
                plan.deletes_withheld_because = Some(why);
            }
            plan.resent_because = sink.resend_said();
            Ok(plan)
        })
        .await
        .context("planning the run crashed")?
    }

    /// The ledger's view and the input of a run (or, `dry_run`, a plan) over the source of
    /// the sync named `name`.
    async fn source_run(
        &self,
        config: &Config,
        name: &str,
        options: RunOptions,
        dry_run: bool,
    ) -> Result<(Arc<LedgerSink>, Input)> {
        let sync = config.sync(name)?;
        let start = RunStart {
            reads_source: true,
            destination: Some(destination(config, sync)),
            full_resync: options.full_resync,
            partition: options.partition,
            // A plan needs no ids: it sends nothing.
            destination_ids: sync.behavior == Behavior::Update && !dry_run,
            dry_run,
            previous_keys: sync.behavior == Behavior::Mirror,
        };
        let sink = self.begin(name, start).await?;
        let input = Input::Source {
            filter: Some(sink.clone()),
            send_all: sync.mode == SendMode::All,
            spool_dir: config.state_dir.clone(),
            partition: options.partition,
            allow_deletes: options.allow_deletes,
        };
        Ok((sink, input))
    }

    /// The run's view of the ledger (reads the delivered log: kept off the executor).
    async fn begin(&self, name: &str, start: RunStart) -> Result<Arc<LedgerSink>> {
        let ledger = self.ledger.sync(name)?;
        tokio::task::spawn_blocking(move || LedgerSink::begin(ledger, start))
            .await
            .context("reading the ledger crashed")?
    }

    /// One pass of the retry job for the sync named `name`.
    pub async fn retry(
        &self,
        config: &Config,
        name: &str,
        request: &retry_job::Request,
        control: RunControl,
    ) -> Result<RetryReport> {
        let sync = config.sync(name)?;
        let runs = self.runs_of(name);
        let _turn = runs.turn.lock().await;
        let ledger = self.ledger.sync(name)?;
        // Failed records were sent to the destination the ledger is about, and their ids
        // are its own: none of it is for another one.
        if let Some(stored) = ledger.destination()?
            && stored != destination(config, sync)
        {
            return Err(anyhow::Error::new(
                crate::concern::Concern::new(
                    crate::concern::ErrorKind::State,
                    format!(
                        "sync `{name}`: the destination changed since the last run \
                         (connector, base_url or settings), and the failed records in the \
                         ledger were for the previous one (their ids are its ids): nothing \
                         was retried; `sluice run --sync {name}` first sends every record to \
                         the new destination and drops the deletes only the previous one \
                         could take"
                    ),
                )
                .sync(name),
            ));
        }
        let selection = retry_job::select(
            &ledger,
            &sync.retry_job,
            sync.behavior,
            request,
            crate::clock::now_ms(),
        )?;
        if selection.records.is_empty() {
            return Ok(RetryReport {
                selection: selection.counts,
                run: None,
            });
        }
        let input = Input::Records(selection.records);
        let sink = self.begin(name, RunStart::default()).await?;
        let run = self.run_input(config, name, sink, input, control).await?;
        Ok(RetryReport {
            selection: selection.counts,
            run: Some(run),
        })
    }

    async fn run_input(
        &self,
        config: &Config,
        name: &str,
        sink: Arc<LedgerSink>,
        input: Input,
        mut control: RunControl,
    ) -> Result<RunReport> {
        let sync = config.sync(name)?;
        let spec = &config.connectors[&sync.connector];
        // A ledger removed since this process opened it would take every fate and keep
        // none: refuse to start (`sluice serve` runs for days).
        self.ledger.check_in_place().map_err(|gone| {
            anyhow::anyhow!(
                "the state directory of the ledger at `{}` was removed while sluice was \
                 running: restart it to start a new ledger",
                gone.path.display()
            )
        })?;
        let connector = self.connector(spec).await?;
        let counters = control
            .counters
            .get_or_insert_with(|| Arc::new(Counters::new(name, &sync.connector)))
            .clone();
        let _going = Going::start(self.runs_of(name), counters);
        control.sinks.push(sink.clone());
        if control.inspector.is_none() {
            control.inspector = Some(Arc::new(self.inspector(config, name)?));
        }
        // Every log line of the run carries the sync and the run id.
        // At error level so that it is enabled under any filter: a warning logged during
        // the run (a source command's stderr, a skipped row) always says which sync.
        let span = tracing::error_span!("run", sync = %name, run = %control.run_id);
        let (run_id, started_at_ms) = (control.run_id.clone(), crate::clock::now_ms());
        let mut report =
            match engine::run_sync(connector, spec, sync, self.http.clone(), input, control)
                .instrument(span)
                .await
            {
                Ok(mut report) => {
                    report.summary.resent_because = sink.resend_said();
                    report
                }
                Err(err) => {
                    let summary =
                        RunSummary::not_started(name, &run_id, started_at_ms, format!("{err:#}"));
                    self.history()?.record(&summary)?;
                    self.ledger.flush()?;
                    return Err(err);
                }
            };
        // Every fate, and the run's history, is on disk before the run reports...
        let stored = self.store(&report.summary).await;
        // ...unless the ledger's files were removed meanwhile: sled wrote into removed
        // files (without error, or failing for the missing folder), and the run must not
        // report what nothing remembers.
        if let Err(gone) = self.ledger.check_in_place() {
            report.summary.outcome = Outcome::Failed;
            report.summary.error = Some(gone.to_string());
        } else {
            stored?;
            self.compact(name).await;
        }
        self.export_metrics(name, &report)?;
        Ok(report)
    }

    /// Records a run's summary in the history and flushes the ledger.
    async fn store(&self, summary: &RunSummary) -> Result<()> {
        self.history()?.record(summary)?;
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || ledger.flush())
            .await
            .context("flushing the ledger crashed")?
    }

    /// Compacts the sync's delivered log when it has grown enough (after the run is
    /// durable; a compaction that fails leaves the state as it was, so it only warns).
    async fn compact(&self, name: &str) {
        let ledger = self.ledger.clone();
        let sync = name.to_string();
        let done = tokio::task::spawn_blocking(move || ledger.compact(&sync)).await;
        match done {
            Ok(Ok(Some(c))) => tracing::info!(
                sync = name,
                keys = c.keys,
                segments = c.segments,
                bytes_before = c.bytes_before,
                bytes_after = c.bytes_after,
                "compacted the delivered log"
            ),
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::warn!(sync = name, "compacting the delivered log: {err:#}"),
            Err(err) => tracing::warn!(sync = name, "compacting the delivered log crashed: {err}"),
        }
    }

    /// The run's outcome, and (when asked for) the ledger's records by status.
    fn export_metrics(&self, name: &str, report: &RunReport) -> Result<()> {
        let outcome = serde_json::to_value(report.summary.outcome)?;
        let outcome = outcome.as_str().unwrap_or_default().to_string();
        metrics::counter!("sluice_runs_total", "sync" => name.to_string(), "outcome" => outcome)
            .increment(1);
        if self.ledger_gauges {
            let by_status = self.ledger.sync(name)?.counts()?.by_status;
            for status in crate::ledger::Status::ALL {
                let n = by_status.get(&status).copied().unwrap_or(0);
                metrics::gauge!("sluice_ledger_records", "sync" => name.to_string(), "status" => status.name())
                    .set(n as f64);
            }
        }
        Ok(())
    }
}

/// The destination a sync delivers to, as the ledger fingerprints it: the connector's
/// component, the base URL and the settings (not the credentials: a rotated token still
/// reaches the same records).
pub fn destination(config: &Config, sync: &SyncSpec) -> Fingerprint {
    let component = config
        .connectors
        .get(&sync.connector)
        .map(|c| c.component.to_string())
        .unwrap_or_default();
    let mut parts = vec![component, sync.base_url.to_string()];
    for (key, value) in &sync.settings {
        parts.push(key.clone());
        parts.push(value.clone());
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    Fingerprint::of(&parts)
}
