//! Runs the syncs of a config: loads each connector once, then runs syncs one by one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::builtin;
use crate::config::{ComponentSource, Config, ConnectorSpec};
use crate::engine::{self, RunControl, RunReport};
use crate::sandbox::{Connector, Runtime};

/// A process's host: one sandbox runtime, one HTTP client, the loaded connectors.
pub struct Host {
    runtime: Arc<Runtime>,
    http: reqwest::Client,
    loaded: Mutex<HashMap<String, Arc<Connector>>>,
}

impl Host {
    pub fn new(config: &Config) -> Result<Self> {
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
        })
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

    /// Runs the sync named `name` once.
    pub async fn run(&self, config: &Config, name: &str, control: RunControl) -> Result<RunReport> {
        let sync = config.sync(name)?;
        let spec = &config.connectors[&sync.connector];
        let connector = self.connector(spec).await?;
        engine::run_sync(connector, spec, sync, self.http.clone(), control).await
    }
}
