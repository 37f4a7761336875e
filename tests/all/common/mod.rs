//! What the integration tests share: components, a runtime, configs in temp folders, and a
//! sink that remembers every record's fate.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::config::Config;
use sluice::engine::{Fate, RunControl, RunReport, RunSummary, Settled, Sink};
use sluice::sandbox::Runtime;
use sluice::sync::Host;

mod scenario;
mod sims;
mod summary;

pub use scenario::{Ran, Scenario, contacts, contacts_jsonl};
pub use sims::{accepting, checking_emails, checking_emails_with, closed_port, rest_sim};
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

/// Every record's last fate, by key.
#[derive(Default)]
pub struct Fates(Mutex<BTreeMap<String, (Fate, u32)>>);

impl Sink for Fates {
    fn settle(&self, settled: &[Settled]) -> anyhow::Result<()> {
        let mut fates = self.0.lock().unwrap();
        for s in settled {
            fates.insert(s.record.key.clone(), (s.fate.clone(), s.attempts));
        }
        Ok(())
    }
}

impl Fates {
    pub fn all(&self) -> BTreeMap<String, (Fate, u32)> {
        self.0.lock().unwrap().clone()
    }

    /// Keys whose fate matches `pred`.
    pub fn keys(&self, pred: impl Fn(&Fate) -> bool) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (f, _))| pred(f))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Key -> failure code of rejected, permanent or pending records.
    pub fn codes(&self) -> BTreeMap<String, String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(k, (f, _))| match f {
                Fate::Rejected(f) | Fate::Permanent(f) => Some((k.clone(), f.code.clone())),
                Fate::Pending(Some(f)) => Some((k.clone(), f.code.clone())),
                _ => None,
            })
            .collect()
    }
}

pub fn is_delivered(f: &Fate) -> bool {
    matches!(f, Fate::Delivered(_))
}
pub fn is_rejected(f: &Fate) -> bool {
    matches!(f, Fate::Rejected(_))
}
pub fn is_permanent(f: &Fate) -> bool {
    matches!(f, Fate::Permanent(_))
}
pub fn is_pending(f: &Fate) -> bool {
    matches!(f, Fate::Pending(_))
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

use sluice::sandbox::{ConnectorInstance, HttpResponse, SandboxLimits};

/// A bundled connector's instance, configured with `settings`.
pub fn configured(name: &str, settings: &[(&str, &str)]) -> ConnectorInstance {
    let connector = runtime()
        .load(name, &guest(name), SandboxLimits::default())
        .unwrap();
    let mut instance = connector.instantiate("test").unwrap();
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Err(f) = instance.configure(&settings).unwrap() {
        panic!("configure refused: {}: {}", f.code, f.message);
    }
    instance
}

/// A recorded response.
pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
        received_at_ms: 1_700_000_000_000,
    }
}

/// A verdict in a short, readable form for assertions (the checker's own).
pub use sluice::conformance::show;

/// A canned response and what the connector must make of it: status, headers, body, and
/// the verdict as `show` prints it.
pub type ResponseCase<'a> = (u16, &'a [(&'a str, &'a str)], &'a str, &'a str);

/// Classifies each canned response for a batch of `keys` and checks the verdict.
pub fn assert_classified(
    instance: &mut ConnectorInstance,
    keys: &[String],
    cases: &[ResponseCase],
) {
    for (status, headers, body, expected) in cases {
        let verdict = instance
            .classify(keys, &response(*status, headers, body))
            .unwrap();
        assert_eq!(show(&verdict), *expected, "{status} {headers:?} {body}");
    }
}

/// `n` valid accounts with keys `A0000..`.
pub fn accounts(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "id": format!("A{i:04}"),
                "Name": format!("Account {i}"),
                "Email": format!("a{i}@example.com"),
                "ParentCrmId": "P1",
            })
        })
        .collect()
}

/// Sets a test's own environment variable (names are unique per test).
pub fn set_env(name: &str, value: &str) {
    // SAFETY: each test uses its own variable names, and Rust's environment access is
    // serialized by std's lock; nothing in these tests reads the environment from C.
    unsafe { std::env::set_var(name, value) }
}

/// The `auth` line of a sync that renews its sessions through OAuth2 at `base_url`'s token
/// endpoint, as client `client` with secret `secret` and refresh token `refresh`, read from
/// `{prefix}_ID`, `{prefix}_SECRET` and `{prefix}_REFRESH` (set here).
pub fn oauth2_renewal(prefix: &str, base_url: &str) -> String {
    set_env(&format!("{prefix}_ID"), "client");
    set_env(&format!("{prefix}_SECRET"), "secret");
    set_env(&format!("{prefix}_REFRESH"), "refresh");
    format!(
        "auth = {{ oauth2 = {{ token_url = \"{base_url}/oauth2/token\", client_id_env = \"{prefix}_ID\", client_secret_env = \"{prefix}_SECRET\", refresh_token_env = \"{prefix}_REFRESH\" }} }}"
    )
}

/// A destination's credentials: no token valid at the start, sessions of
/// `session_requests` requests, renewed through the OAuth2 client [`oauth2_renewal`] signs
/// in as.
pub fn sessions_renewed_by_oauth2(session_requests: u64) -> sluice_sim::AuthConfig {
    sluice_sim::AuthConfig {
        tokens: vec![],
        session_requests: Some(session_requests),
        oauth: Some(sluice_sim::OAuthClient::new("client", "secret", "refresh")),
    }
}

/// The row locks `dest` reported, of which there was at least one, each of which cost the
/// run exactly one retry.
#[track_caller]
pub fn locks_each_retried_once(dest: &sluice_sim::SimHandle, summary: &RunSummary) -> u64 {
    let locks = dest.stats().record_errors["UNABLE_TO_LOCK_ROW"];
    assert!(locks > 0, "the destination locked no row");
    assert_eq!(summary.retries, locks, "one retry per row lock");
    locks
}

/// No request arrives while the destination has said to wait, except those already in
/// flight when it said so (at most one per other worker, arriving right away).
pub fn assert_waits_honoured(dest: &sluice_sim::SimHandle, concurrency: usize) {
    let requests = dest.requests();
    let announcements = dest.rate_limit_announcements();
    assert!(
        !announcements.is_empty(),
        "the destination never rate limited"
    );
    for a in &announcements {
        let early: Vec<_> = requests
            .iter()
            .filter(|r| r.arrived_at > a.sent_at && r.arrived_at < a.not_before)
            .collect();
        assert!(
            early.len() < concurrency,
            "{} requests arrived during a pause",
            early.len()
        );
        for r in early {
            let after = r.arrived_at.duration_since(a.sent_at).unwrap();
            assert!(
                after < Duration::from_millis(50),
                "request {} arrived {after:?} into a pause",
                r.seq
            );
        }
    }
}

/// Runs the `sluice` binary with `args`, then `--config config`, with `env` added, and
/// waits for it.
pub async fn sluice(args: &[&str], config: &Path, env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap()
}

/// Starts the `sluice` binary with `args`, then `--config config`, its output piped, and
/// does not wait for it.
pub fn spawn_sluice(args: &[&str], config: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// [`sluice`], which must succeed: its standard output.
pub async fn sluice_ok(args: &[&str], config: &Path, env: &[(&str, &str)]) -> String {
    let output = sluice(args, config, env).await;
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The JSON object on each line (what `--json` prints).
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
