//! What the integration tests share, one module per job: a sync described and run
//! ([`Scenario`], [`Ran`]), its summary checked ([`Expect`]), the fates it settled
//! ([`Fates`]), the simulated destinations ([`sims`]) and checks of what they saw ([`seen`]),
//! a connector on its own ([`contract`]), OAuth2 renewal ([`auth`]) and the `sluice` binary
//! ([`binary`]); here, the components, the runtime and a run's folder.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::config::Config;
use sluice::engine::{RunControl, RunReport};
use sluice::sandbox::Runtime;
use sluice::sync::Host;

mod auth;
mod binary;
mod contract;
mod fates;
mod scenario;
mod seen;
mod sims;
pub mod state;
mod summary;

pub use auth::{oauth2_renewal, sessions_renewed_by_oauth2};
pub use binary::{json_lines, sluice, sluice_ok, spawn_sluice};
pub use contract::{ResponseCase, assert_classified, configured, response, show};
pub use fates::{Fates, is_delivered, is_pending, is_permanent, is_rejected};
pub use scenario::{REST_PATH, Ran, Scenario, accounts, contacts, contacts_jsonl};
pub use seen::{assert_waits_honoured, locks_each_retried_once};
pub use sims::{accepting, checking_emails, checking_emails_with, closed_port, rest_sim};
pub use sluice_sim::postgres::Postgres;
pub use summary::{Expect, assert_summary, assert_summary_of};

/// A component the build compiled from `connectors/`.
pub fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(env!("OUT_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Compiled components are cached here, shared by the tests of one build.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

pub fn runtime() -> Runtime {
    Runtime::new(Some(cache_dir())).unwrap()
}

/// A `tracing` writer into a shared buffer.
pub struct SharedWriter(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sets a test's own environment variable (names are unique per test).
pub fn set_env(name: &str, value: &str) {
    // SAFETY: each test uses its own variable names, and Rust's environment access is
    // serialized by std's lock; nothing in these tests reads the environment from C.
    unsafe { std::env::set_var(name, value) }
}

/// A folder with a config and its source data.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl Setup {
    /// The config file, `sluice.toml` in the folder.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sluice.toml")
    }
}

/// Runs the config's sync `s` once, with a fresh `Fates` sink.
pub async fn run(setup: &Setup) -> (RunReport, Arc<Fates>) {
    let (_, report, fates) = run_keeping_host(setup).await;
    (report, fates)
}

/// [`run`], on a host the test keeps so that it can read the ledger after.
pub async fn run_keeping_host(setup: &Setup) -> (Host, RunReport, Arc<Fates>) {
    let host = Host::new(&setup.config).unwrap();
    let (report, fates) = run_on(&host, setup).await;
    (host, report, fates)
}

/// Runs sync `s` of `setup` on `host` once, with a fresh `Fates` sink.
pub async fn run_on(host: &Host, setup: &Setup) -> (RunReport, Arc<Fates>) {
    let fates = Arc::new(Fates::default());
    let control = RunControl {
        sinks: vec![fates.clone()],
        grace: Duration::from_secs(5),
        ..RunControl::default()
    };
    let report = host.run(&setup.config, "s", control).await.unwrap();
    (report, fates)
}

/// The ledger's entry for `key` in `sync`, which must exist.
pub fn ledger_entry(host: &Host, sync: &str, key: &str) -> sluice::ledger::Entry {
    host.ledger()
        .sync(sync)
        .unwrap()
        .get(key)
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger entry for {key}"))
}

/// Every ledger entry of `sync`, by key.
pub fn ledger_entries(host: &Host, sync: &str) -> Vec<(String, sluice::ledger::Entry)> {
    let ledger = host.ledger().sync(sync).unwrap();
    ledger.iter().map(|e| e.unwrap()).collect()
}
