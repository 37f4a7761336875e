//! The operator's config file (TOML): what to load, what to sync, and how hard to try.
//!
//! Parsing happens in two steps: serde reads the file into `raw` types (unknown keys are
//! refused, and every type error points at the line and key), then `resolve` checks what
//! serde cannot (references between sections, files that must exist, URLs) and resolves
//! relative paths against the config file's folder. Every error names the file and key.

//
//! `raw` is the file's serde shape, `resolve` the checks and resolution; the types here
//! are what the rest of the host reads. `HostPattern` lives beside the transport that
//! applies it, `TimeOfDay` beside the schedule and `RetryPolicy` beside the backoff
//! (`backoff.rs`); all three are re-exported here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use reqwest::Url;
use serde::Deserialize;

use crate::builtin;
use crate::concern::{Concern, ErrorKind};
use crate::inspector::InspectorConfig;
use crate::sandbox::SandboxLimits;

pub use crate::schedule::TimeOfDay;
pub use crate::transport::HostPattern;

mod behavior;
mod raw;
mod resolve;

pub use behavior::{Behavior, FieldMap, MaxDeletes};

/// A loaded, checked config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    pub state_dir: PathBuf,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub connectors: BTreeMap<String, ConnectorSpec>,
    pub syncs: Vec<SyncSpec>,
    pub inspector: InspectorConfig,
    /// How often the delivered log is made durable while a run appends to it
    /// (`flush_interval`; a crash loses at most the confirmations of this long).
    pub flush_interval: Duration,
    /// Where the ledger lives (`[state]`).
    pub state: StateBackend,
    /// `[console]`: the environment variables holding the console's tokens.
    pub console: Option<ConsoleConfig>,
}

/// Who may use the console: the names of the variables that hold its tokens (the tokens
/// themselves are never in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// The operator's token: may look and act (retry, resolve, run now).
    pub token_env: String,
    /// A token that may only look.
    pub read_only_token_env: Option<String>,
}

/// Where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateBackend {
    /// In `state_dir`, embedded: no set-up, one process at a time.
    #[default]
    Embedded,
    /// In a PostgreSQL database whose URL is in the environment variable `url_env`
    /// (it holds the password, so it is never written in the config), in the tables of
    /// `schema` (several deployments may share a database, each in its own schema).
    Postgres { url_env: String, schema: String },
}

/// Where a connector's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    Builtin(String),
    File(PathBuf),
}

impl fmt::Display for ComponentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentSource::Builtin(name) => write!(f, "{}{name}", builtin::PREFIX),
            ComponentSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    pub name: String,
    pub component: ComponentSource,
    pub allowed_hosts: Vec<HostPattern>,
    pub limits: SandboxLimits,
}

#[derive(Debug, Clone)]
pub struct SyncSpec {
    pub name: String,
    pub connector: String,
    pub source: SourceSpec,
    pub base_url: Url,
    pub auth: AuthSpec,
    /// The connector's settings, as strings, in key order.
    pub settings: Vec<(String, String)>,
    pub batch_size: u32,
    /// How many partitions of its keys a pool of workers runs this sync as (1: whole).
    pub partitions: u32,
    pub concurrency: u32,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub rate_limit: Option<RateLimit>,
    /// Largest response body kept for the connector; longer ones are cut.
    pub max_response_bytes: usize,
    /// `changed` (the default) skips records the destination already holds unchanged;
    /// `all` sends every record.
    pub mode: SendMode,
    /// Which operations a run sends (`behavior`).
    pub behavior: Behavior,
    /// The most records one mirror run deletes without `--allow-deletes`.
    pub max_deletes: MaxDeletes,
    /// `[sync.fields]`: the payload the connector sees; the source row as it is when
    /// `None`.
    pub fields: Option<FieldMap>,
    pub retry_job: RetryJob,
    /// UTC times of day at which `sluice serve` runs this sync; empty: never by itself.
    pub schedule: Vec<TimeOfDay>,
    /// Header and JSON field names whose values the inspector replaces with `[redacted]`
    /// (authorization and cookie headers always are).
    pub redact: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMode {
    Changed,
    All,
}

/// The scheduled retry of failed records (Zuora's daily retry job, made configurable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryJob {
    /// UTC times of day for `sluice serve`.
    pub schedule: Vec<TimeOfDay>,
    /// Only records whose failures began within this window are retried.
    pub window: Duration,
    /// At most this many records a pass, oldest failure first.
    pub max_records: usize,
    /// Codes that wait for a person: never retried unless named.
    pub non_retryable: Vec<String>,
}

impl Default for RetryJob {
    fn default() -> Self {
        RetryJob {
            schedule: vec![TimeOfDay::new(11, 30), TimeOfDay::new(23, 30)],
            window: Duration::from_secs(7 * 24 * 3600),
            max_records: 50_000,
            non_retryable: vec!["DACO-02".to_string()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub format: SourceFormat,
    pub origin: SourceOrigin,
    /// The column or field holding each record's primary key.
    pub key: String,
}

impl SourceSpec {
    /// The environment variables the source reads, with the key that names each.
    pub fn env_vars(&self) -> Vec<(&'static str, &str)> {
        match &self.origin {
            SourceOrigin::Postgres { url_env, .. } => vec![("source.postgres.url_env", url_env)],
            _ => Vec::new(),
        }
    }
}

/// Where a source's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOrigin {
    File(PathBuf),
    /// A program and its arguments, run as given (no shell) in the config's folder; its
    /// standard output is the source.
    Command {
        argv: Vec<String>,
        dir: PathBuf,
        /// Environment variables the program does not inherit: every destination
        /// credential the config names. An exporter has no use for them, and what it
        /// prints (its stderr goes to the log) is not scrubbed as responses are.
        withheld: Vec<String>,
    },
    /// A query's rows, each as a JSON object; the URL is read from `url_env` when the run
    /// starts (it holds the password, so it is never written in the config).
    Postgres {
        url_env: String,
        query: String,
    },
}

impl SourceOrigin {
    /// What a row's position counts in this source, as reports name it: `line` for a
    /// file or a command's output, `row` for a query's rows.
    pub fn position(&self) -> &'static str {
        match self {
            SourceOrigin::Postgres { .. } => "row",
            SourceOrigin::File(_) | SourceOrigin::Command { .. } => "line",
        }
    }

    /// The file the rows are read from, when they are.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SourceOrigin::File(path) => Some(path),
            _ => None,
        }
    }

    /// The source as messages name it: `` `data.jsonl` ``, the output of `` `prog` ``, the
    /// query.
    pub fn describe(&self) -> String {
        match self {
            SourceOrigin::File(path) => format!("`{}`", path.display()),
            SourceOrigin::Command { argv, .. } => format!(
                "the output of `{}`",
                argv.first().map_or("", String::as_str)
            ),
            SourceOrigin::Postgres { .. } => "the query".to_string(),
        }
    }
}

/// How the host authenticates requests. Secrets are named by environment variable only,
/// and read when needed, so that a renewal picks up a rotated value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSpec {
    None,
    Bearer {
        env: String,
    },
    Header {
        name: String,
        env: String,
    },
    OAuth2 {
        token_url: Url,
        client_id_env: String,
        client_secret_env: String,
        refresh_token_env: String,
    },
}

impl AuthSpec {
    /// The environment variables holding the credentials, each with the key that names
    /// it, so that a missing one is found before any sync runs.
    pub fn env_vars(&self) -> Vec<(&'static str, &str)> {
        match self {
            AuthSpec::None => Vec::new(),
            AuthSpec::Bearer { env } => vec![("auth.bearer_env", env)],
            AuthSpec::Header { env, .. } => vec![("auth.value_env", env)],
            AuthSpec::OAuth2 {
                client_id_env,
                client_secret_env,
                refresh_token_env,
                ..
            } => vec![
                ("auth.oauth2.client_id_env", client_id_env),
                ("auth.oauth2.client_secret_env", client_secret_env),
                ("auth.oauth2.refresh_token_env", refresh_token_env),
            ],
        }
    }
}

/// The in-run retry policy lives beside the backoff it shapes.
pub use crate::backoff::RetryPolicy;

/// The durations a key accepts: wide enough for any real use, narrow enough that no
/// arithmetic on them (deadlines, backoff, rate-limit periods, windows) can overflow. A
/// value outside is refused at config time, naming the key and the range, rather than
/// panicking in the middle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn range(min: Duration, max: Duration) -> DurationRange {
    DurationRange { min, max }
}

/// `connectors.*.call_timeout`: one call into a connector is computation on one batch.
pub const CALL_TIMEOUT_RANGE: DurationRange = range(Duration::from_millis(1), secs(10 * 60));
/// `request_timeout`: one HTTP request.
pub const REQUEST_TIMEOUT_RANGE: DurationRange = range(Duration::from_millis(1), secs(3600));
/// `retry.initial_backoff` and `retry.max_backoff`: one wait between two sends in a run.
pub const BACKOFF_RANGE: DurationRange = range(Duration::ZERO, secs(3600));
/// `retry.max_rate_limit_wait`: what one batch may spend waiting on rate limits in a run.
pub const RATE_LIMIT_WAIT_RANGE: DurationRange = range(Duration::ZERO, secs(24 * 3600));
/// `rate_limit.per`: from per-millisecond limits to daily quotas.
pub const RATE_LIMIT_PER_RANGE: DurationRange = range(Duration::from_millis(1), secs(24 * 3600));
/// `retry_job.window` (and `sluice retry --window`): how far back failures are retried.
pub const RETRY_WINDOW_RANGE: DurationRange = range(secs(60), secs(3650 * 24 * 3600));
/// `inspector.max_age`: how long requests are kept.
/// `flush_interval`: how much a crash may cost in confirmations to send again.
pub const FLUSH_INTERVAL_RANGE: DurationRange = range(Duration::from_millis(10), secs(60));
/// `sluice serve --lease-timeout`: how soon a pool takes over the work of a dead worker.
pub const LEASE_TIMEOUT_RANGE: DurationRange = range(secs(1), secs(3600));
/// `sluice serve --grace`: how long requests in flight may finish after SIGTERM.
pub const GRACE_RANGE: DurationRange = range(secs(1), secs(3600));
pub const INSPECTOR_AGE_RANGE: DurationRange = range(secs(60), secs(365 * 24 * 3600));

impl DurationRange {
    /// `value` if within the range; else an error naming `key`, what was written and the
    /// range.
    pub fn check(self, key: &str, value: Duration, written: &str) -> Result<Duration> {
        if value < self.min || value > self.max {
            bail!("{key}: `{written}` is out of range: expected {self}");
        }
        Ok(value)
    }
}

impl fmt::Display for DurationRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "between {} and {}",
            short_duration(self.min),
            short_duration(self.max)
        )
    }
}

/// A duration in the largest unit that writes it exactly: `0s`, `1ms`, `10m`, `3650d`.
fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    if ms == 0 {
        "0s".to_string()
    } else {
        format!("{ms}ms")
    }
}

/// A proactive limit on requests to one destination, shared by all of a sync's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl Config {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            anyhow::Error::new(err).context(
                Concern::new(
                    ErrorKind::Config,
                    format!("cannot read config file `{}`", path.display()),
                )
                .file(path),
            )
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text as if read from `path` (relative paths resolve against its
    /// folder).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let raw: raw::Config =
            toml::from_str(text).map_err(|err| anyhow!("{err}").context(Concern::config(path)))?;
        resolve::resolve(raw, path).map_err(|err| anyhow!("{err:#}").context(Concern::config(path)))
    }

    pub fn sync(&self, name: &str) -> Result<&SyncSpec> {
        self.syncs.iter().find(|s| s.name == name).ok_or_else(|| {
            let text = format!(
                "config file `{}` has no sync named `{name}` (it has: {})",
                self.path.display(),
                self.syncs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            anyhow::Error::new(
                Concern::new(ErrorKind::NotFound, text)
                    .sync(name)
                    .file(&self.path),
            )
        })
    }
}

/// `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`, else `~/.cache/sluice`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("sluice"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("sluice"))
}
