//! Runs the syncs of a config: loads each connector once, keeps the ledger open, and runs
//! syncs (or retry passes) one at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::builtin;
use crate::config::{ComponentSource, Config, ConnectorSpec, SendMode};
use crate::engine::{self, Input, RunControl, RunReport};
use crate::ledger::{Ledger, LedgerSink, SyncLedger};
use crate::retry_job::{self, SelectionCounts};
use crate::sandbox::{Connector, Runtime};

/// A process's host: one sandbox runtime, one HTTP client, the loaded connectors, and the
/// ledger of the config's state directory (which no other process may hold).
pub struct Host {
    runtime: Arc<Runtime>,
    http: reqwest::Client,
    loaded: Mutex<HashMap<String, Arc<Connector>>>,
    ledger: Arc<Ledger>,
}

/// A retry pass: what it picked from the ledger, and how its run went.
pub struct RetryReport {
    pub selection: SelectionCounts,
    pub run: Option<RunReport>,
}

impl Host {
    pub fn new(config: &Config) -> Result<Self> {
        let ledger = Ledger::open(&config.state_dir)?;
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
            loaded: Mutex::new(HashMap::new()),
            ledger: Arc::new(ledger),
        })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
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
            .context("loading the connector crashed")??;
        let connector = Arc::new(connector);
        self.loaded
            .lock()
            .unwrap()
            .insert(spec.name.clone(), connector.clone());
        Ok(connector)
    }

    /// Runs the sync named `name` once over its source.
    pub async fn run(&self, config: &Config, name: &str, control: RunControl) -> Result<RunReport> {
        let sync = config.sync(name)?;
        let ledger = self.ledger.sync(name)?;
        let input = Input::Source {
            ledger: Some(ledger.clone()),
            send_all: sync.mode == SendMode::All,
        };
        self.run_input(config, name, ledger, input, control).await
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
        let ledger = self.ledger.sync(name)?;
        let selection =
            retry_job::select(&ledger, &sync.retry_job, request, crate::ledger::now_ms())?;
        if selection.records.is_empty() {
            return Ok(RetryReport {
                selection: selection.counts,
                run: None,
            });
        }
        let input = Input::Records(selection.records);
        let run = self.run_input(config, name, ledger, input, control).await?;
        Ok(RetryReport {
            selection: selection.counts,
            run: Some(run),
        })
    }

    async fn run_input(
        &self,
        config: &Config,
        name: &str,
        ledger: SyncLedger,
        input: Input,
        mut control: RunControl,
    ) -> Result<RunReport> {
        let sync = config.sync(name)?;
        let spec = &config.connectors[&sync.connector];
        let connector = self.connector(spec).await?;
        control.sinks.push(LedgerSink::new(ledger));
        let report =
            engine::run_sync(connector, spec, sync, self.http.clone(), input, control).await?;
        // Every fate is on disk before the run reports.
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || ledger.flush())
            .await
            .context("flushing the ledger crashed")??;
        Ok(report)
    }
}
