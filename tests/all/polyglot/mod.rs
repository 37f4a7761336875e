//! Connectors written in Python and JavaScript (examples/connectors/): built from source
//! with their pinned tools, classified from recorded responses, and run end to end through
//! the host against their simulated destinations, as the Rust ones are.
//!
//! The components are built once per test process by `examples/connectors/build.sh` into
//! `<target>/polyglot` (needs python3 and node with npm); the script skips a component
//! whose inputs have not changed, so later runs take a moment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sluice::engine::Fate;
use sluice::sandbox::{ConnectorInstance, SandboxLimits, SourceRecord};
use sluice_sim::couchdb::{self, CouchDbConfig};
use sluice_sim::faults::LimitStyle::{self, TooManyRequests};
use sluice_sim::faults::RetryAfterStyle::{self, Seconds};
use sluice_sim::faults::{ErrorBurst, Faults, RateLimit};
use sluice_sim::hubspot::{self, HubSpotConfig};
use sluice_sim::validation::Rules;
use sluice_sim::{AuthConfig, SimHandle};

use crate::common::{
    self, Expect, Scenario, is_delivered, is_pending, is_rejected, response, show,
};

mod couchdb_contract;
mod couchdb_sync;
mod hubspot_contract;
mod hubspot_sync;
mod instances;
mod versions;

/// The folder build.sh wrote the components to; built on first use.
fn built() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(dir) => dir,
        Err(message) => panic!("{message}"),
    }
}

fn build() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is in the repository");
    let missing: Vec<&str> = [
        ("python3", "python3 (with venv and pip)"),
        ("node", "Node.js 18 or later"),
        ("npm", "npm"),
    ]
    .into_iter()
    .filter(|(tool, _)| Command::new(tool).arg("--version").output().is_err())
    .map(|(_, what)| what)
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the Python and JavaScript connector tests need {} to build the connectors; \
             install them (Debian: apt-get install python3 python3-venv nodejs npm) and run \
             the tests again",
            missing.join(", ")
        ));
    }
    // build.sh's own default, `$CARGO_TARGET_DIR/polyglot`, so that a build run before the
    // tests (as CI does) is the one they use.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the tmp folder is inside the target folder");
    let out = target.join("polyglot");
    let script = root.join("examples/connectors/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out)
}

pub(crate) fn component(name: &str) -> PathBuf {
    built().join(format!("{name}.wasm"))
}

/// A fresh instance of a built component, not configured yet.
fn instance(name: &str) -> ConnectorInstance {
    let wasm = std::fs::read(component(name)).unwrap();
    let connector = common::runtime()
        .load(name, &wasm, SandboxLimits::default())
        .unwrap();
    connector.instantiate("test").unwrap()
}

/// An instance of a built component, configured with `settings`.
fn configured(name: &str, settings: &[(&str, &str)]) -> ConnectorInstance {
    let mut instance = instance(name);
    match instance.configure(&owned(settings)).unwrap() {
        Ok(_) => instance,
        Err(f) => panic!("configure refused: {}: {}", f.code, f.message),
    }
}

/// What `configure` answers for these settings: the limits, or the failure's code and
/// message.
fn configure(name: &str, settings: &[(&str, &str)]) -> Result<(u32, u64), (String, String)> {
    instance(name)
        .configure(&owned(settings))
        .unwrap()
        .map(|c| (c.limits.max_batch_records, c.limits.max_batch_bytes))
        .map_err(|f| (f.code, f.message))
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn record(key: &str, payload: &str) -> SourceRecord {
    SourceRecord::new(key.into(), payload.into())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `instance` cannot build a request of `record` alone: the failure is `INVALID_JSON` and its
/// message names the record as `named`.
#[track_caller]
fn assert_inexpressible(instance: &mut ConnectorInstance, record: SourceRecord, named: &str) {
    let failure = instance
        .build_request(&[record], "sluice-test-key")
        .unwrap()
        .unwrap_err();
    assert!(
        failure.code == "INVALID_JSON" && failure.message.contains(named),
        "{failure:?}"
    );
}

/// A short form of a precheck answer: `-` to send, else `rejected(CODE)`.
fn show_precheck(instance: &mut ConnectorInstance, batch: &[SourceRecord]) -> Vec<String> {
    use sluice::sandbox::PrecheckOutcome as P;
    instance
        .precheck(batch)
        .unwrap()
        .iter()
        .map(|o| match o {
            None => "-".to_string(),
            Some(P::Rejected(f)) => format!("rejected({})", f.code),
            Some(P::Permanent(f)) => format!("permanent({})", f.code),
        })
        .collect()
}

fn hubspot_rules() -> Rules {
    Rules {
        required: vec!["lastname".into()],
        emails: vec!["email".into()],
        max_len: vec![("firstname".into(), 20)],
        ..Rules::default()
    }
}

/// `n` contacts keyed by email.
fn contacts(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"email": format!("c{i:04}@example.com"), "firstname": format!("F{i}"), "lastname": "Smith"}))
        .collect()
}

/// The simulated HubSpot checking [`hubspot_rules`], configured as the default but for
/// what `set` changes.
async fn hubspot_sim(set: impl FnOnce(&mut HubSpotConfig)) -> SimHandle {
    let mut config = HubSpotConfig {
        rules: hubspot_rules(),
        ..HubSpotConfig::default()
    };
    set(&mut config);
    hubspot::start(config).await.unwrap()
}

/// The Python HubSpot connector sending to `dest`, with records keyed by email.
fn to_hubspot(dest: &SimHandle) -> Scenario {
    through("python-hubspot", dest).key("email")
}

/// A sync through the built component `name` to `dest`.
fn through(name: &str, dest: &SimHandle) -> Scenario {
    Scenario::new(&component(name).display().to_string(), &dest.base_url())
}

/// `records` (keyed by email) to `dest` through the Python HubSpot connector, in batches
/// of 100 by `workers`, with fast retries.
fn hubspot_sync(records: &[Value], dest: &SimHandle, workers: usize) -> Scenario {
    in_batches_of_100(to_hubspot(dest), records, workers)
}

/// `scenario` with `records`, in batches of 100 by `workers`, with fast retries.
fn in_batches_of_100(scenario: Scenario, records: &[Value], workers: usize) -> Scenario {
    scenario
        .records(records.to_vec())
        .batches(100, workers)
        .fast_retries()
}

fn couch_rules() -> Rules {
    Rules {
        required: vec!["name".into()],
        emails: vec!["email".into()],
        ..Rules::default()
    }
}

fn documents(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("doc{i:04}"), "name": format!("Doc {i}"), "email": format!("d{i}@example.com")}))
        .collect()
}

/// The simulated CouchDB serving `crm` and checking [`couch_rules`], configured as the
/// default but for what `set` changes.
async fn couch_sim(set: impl FnOnce(&mut CouchDbConfig)) -> SimHandle {
    let mut config = CouchDbConfig {
        db: "crm".into(),
        rules: couch_rules(),
        ..CouchDbConfig::default()
    };
    set(&mut config);
    couchdb::start(config).await.unwrap()
}

/// The JavaScript CouchDB connector sending to database `crm` of `dest`.
fn to_couch(dest: &SimHandle) -> Scenario {
    through("js-couchdb", dest).settings("{ db = \"crm\" }")
}

/// `records` to `dest` through the JavaScript CouchDB connector, in batches of 100 by
/// `workers`, with fast retries.
fn couch_sync(records: &[Value], dest: &SimHandle, workers: usize) -> Scenario {
    in_batches_of_100(to_couch(dest), records, workers)
}
