//! The operator's config file (TOML): what to load, what to sync, and how hard to try.
//!
//! Parsing happens in two steps: serde reads the file into `raw` types (unknown keys are
//! refused, and every type error points at the line and key), then `resolve` checks what
//! serde cannot (references between sections, files that must exist, URLs) and resolves
//! relative paths against the config file's folder. Every error names the file and key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Url;
use serde::Deserialize;

use crate::builtin;
use crate::inspector::InspectorConfig;
use crate::sandbox::SandboxLimits;

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
    pub concurrency: u32,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub rate_limit: Option<RateLimit>,
    /// Largest response body kept for the connector; longer ones are cut.
    pub max_response_bytes: usize,
    /// `changed` (the default) skips records the destination already holds unchanged;
    /// `all` sends every record.
    pub mode: SendMode,
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

/// A UTC time of day, written `"HH:MM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
}

impl TimeOfDay {
    pub const fn new(hour: u8, minute: u8) -> Self {
        TimeOfDay { hour, minute }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let bad =
            || format!("`{text}` is not a time of day: expected \"HH:MM\" (UTC), like \"11:30\"");
        let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
        let (hour, minute) = (
            h.parse::<u8>().map_err(|_| bad())?,
            m.parse::<u8>().map_err(|_| bad())?,
        );
        if hour > 23 || minute > 59 || m.len() != 2 {
            return Err(bad());
        }
        Ok(TimeOfDay { hour, minute })
    }

    /// Seconds after midnight UTC.
    pub fn seconds(self) -> u64 {
        u64::from(self.hour) * 3600 + u64::from(self.minute) * 60
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
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
    pub path: PathBuf,
    /// The column or field holding each record's primary key.
    pub key: String,
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

/// In-run retry policy: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Most sends of one record in a run, counting the first.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
    /// Most time one batch may spend waiting on rate limits before the run gives up on
    /// it and leaves its records pending.
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            max_rate_limit_wait: Duration::from_secs(15 * 60),
        }
    }
}

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

/// An entry of `allowed_hosts`: `host`, `host:port`, or `*.domain` with an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let (host, port) = match text.rsplit_once(':') {
            // A bracketed IPv6 address without a port has colons but ends in `]`.
            Some((host, port)) if !port.ends_with(']') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("`{text}`: `{port}` is not a port number"))?;
                (host.to_string(), Some(port))
            }
            _ => (text.clone(), None),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!(
                "`{text}` is not a host: expected `host`, `host:port` or `*.domain`"
            ));
        }
        Ok(HostPattern { host, port })
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

impl Config {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file `{}`", path.display()))?;
        Config::parse(&text, path)
    }

    /// Parses config text as if read from `path` (relative paths resolve against its
    /// folder).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let raw: raw::Config = toml::from_str(text)
            .map_err(|err| anyhow!("config file `{}`: {err}", path.display()))?;
        resolve(raw, path).map_err(|err| anyhow!("config file `{}`: {err:#}", path.display()))
    }

    pub fn sync(&self, name: &str) -> Result<&SyncSpec> {
        self.syncs.iter().find(|s| s.name == name).ok_or_else(|| {
            anyhow!(
                "config file `{}` has no sync named `{name}` (it has: {})",
                self.path.display(),
                self.syncs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

fn resolve(raw: raw::Config, path: &Path) -> Result<Config> {
    let base = path.parent().unwrap_or(Path::new("."));
    let relative = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    let mut connectors = BTreeMap::new();
    for (name, c) in raw.connectors {
        let component = match c.component.strip_prefix(builtin::PREFIX) {
            Some(builtin) => {
                if builtin::component(builtin).is_none() {
                    bail!(
                        "connectors.{name}.component: no bundled connector `{builtin}` \
                         (bundled: {})",
                        builtin::names()
                            .map(|n| format!("builtin:{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                ComponentSource::Builtin(builtin.to_string())
            }
            None => {
                let file = relative(Path::new(&c.component));
                if file.is_dir() {
                    bail!(
                        "connectors.{name}.component: `{}` is a directory (resolved to `{}`); \
                         expected a .wasm component file or `builtin:NAME`",
                        c.component,
                        file.display()
                    );
                }
                if !file.is_file() {
                    bail!(
                        "connectors.{name}.component: file `{}` not found (resolved to `{}`); \
                         expected a .wasm component or `builtin:NAME`",
                        c.component,
                        file.display()
                    );
                }
                ComponentSource::File(file)
            }
        };
        let allowed_hosts = c
            .allowed_hosts
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| anyhow!("connectors.{name}.allowed_hosts: {err}"))?;
        let defaults = SandboxLimits::default();
        let limits = SandboxLimits {
            memory: c
                .memory_limit
                .map_or(defaults.memory, |m| m.0.as_u64() as usize),
            call_timeout: match &c.call_timeout {
                None => defaults.call_timeout,
                Some(d) => d.within(
                    &format!("connectors.{name}.call_timeout"),
                    CALL_TIMEOUT_RANGE,
                )?,
            },
        };
        if limits.memory < 1024 * 1024 {
            bail!("connectors.{name}.memory_limit: at least 1MiB is needed to run a component");
        }
        connectors.insert(
            name.clone(),
            ConnectorSpec {
                name,
                component,
                allowed_hosts,
                limits,
            },
        );
    }

    let mut syncs: Vec<SyncSpec> = Vec::new();
    for (i, s) in raw.syncs.into_iter().enumerate() {
        let at = if s.name.is_empty() {
            format!("sync[{i}]")
        } else {
            format!("sync `{}`", s.name)
        };
        let spec = resolve_sync(s, &connectors, &relative).map_err(|err| anyhow!("{at}: {err}"))?;
        if syncs.iter().any(|other| other.name == spec.name) {
            bail!(
                "{at}: two syncs are named `{}`; names must be unique",
                spec.name
            );
        }
        syncs.push(spec);
    }

    Ok(Config {
        path: path.to_path_buf(),
        state_dir: relative(&raw.state_dir),
        cache_dir: match raw.cache_dir {
            Some(dir) => Some(relative(&dir)),
            None => default_cache_dir(),
        },
        connectors,
        syncs,
        inspector: {
            let defaults = InspectorConfig::default();
            let i = raw.inspector.unwrap_or_default();
            let config = InspectorConfig {
                enabled: i.enabled.unwrap_or(defaults.enabled),
                max_requests: i.max_requests.unwrap_or(defaults.max_requests),
                max_age: match &i.max_age {
                    None => defaults.max_age,
                    Some(d) => d.within("inspector.max_age", INSPECTOR_AGE_RANGE)?,
                },
                max_body: i
                    .max_body
                    .map_or(defaults.max_body, |b| b.0.as_u64() as usize),
            };
            if config.max_requests == 0 {
                bail!(
                    "inspector.max_requests: must be at least 1 (use `enabled = false` to turn it off)"
                );
            }
            config
        },
    })
}

fn resolve_sync(
    s: raw::Sync,
    connectors: &BTreeMap<String, ConnectorSpec>,
    relative: &dyn Fn(&Path) -> PathBuf,
) -> Result<SyncSpec> {
    if s.name.is_empty()
        || !s
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!(
            "name: `{}` must be non-empty and use only letters, digits, `-`, `_` and `.`",
            s.name
        );
    }
    if !connectors.contains_key(&s.connector) {
        bail!(
            "connector: `{}` is not defined under [connectors] (defined: {})",
            s.connector,
            if connectors.is_empty() {
                "none".to_string()
            } else {
                connectors.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        );
    }
    let source = match (s.source.jsonl, s.source.csv) {
        (Some(p), None) => (SourceFormat::Jsonl, p),
        (None, Some(p)) => (SourceFormat::Csv, p),
        _ => bail!("source: give exactly one of `jsonl = \"FILE\"` or `csv = \"FILE\"`"),
    };
    let source = SourceSpec {
        format: source.0,
        path: relative(&source.1),
        key: s.source.key,
    };
    check_source_file(&source.path)?;
    if source.key.is_empty() {
        bail!("source.key: must name the field that holds each record's primary key");
    }

    // Errors about base_url never show its userinfo, query or fragment: that is where a
    // credential would be.
    let base_url = Url::parse(&s.base_url).map_err(|err| {
        anyhow!(
            "base_url: `{}` is not a URL: {err}",
            crate::secrets::display_url_text(&s.base_url)
        )
    })?;
    if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
        bail!(
            "base_url: `{}` must be an http:// or https:// URL with a host",
            crate::secrets::display_url(&base_url)
        );
    }
    let credentials = crate::secrets::url_credentials(&base_url);
    if !credentials.is_empty() {
        bail!(
            "base_url: `{}` carries {}: credentials never go in base_url, where every \
             request's URL would store them in the inspector. Give them with `auth`, by \
             environment variable name: `{{ bearer_env = \"VAR\" }}`, or \
             `{{ header = \"X-Api-Key\", value_env = \"VAR\" }}` (for a user and password, \
             `header = \"Authorization\"` with VAR holding `Basic <base64 of user:password>`)",
            crate::secrets::display_url(&base_url),
            credentials.join(" and ")
        );
    }
    if base_url.fragment().is_some() {
        bail!(
            "base_url: `{}` has a fragment (`#...`), which is never sent to a server: \
             remove it",
            crate::secrets::display_url(&base_url)
        );
    }

    let auth = match s.auth {
        None => AuthSpec::None,
        Some(a) => resolve_auth(a)?,
    };

    let mut settings = Vec::new();
    for (key, value) in s.settings {
        settings.push((
            key.clone(),
            setting_string(&value).map_err(|e| anyhow!("settings.{key}: {e}"))?,
        ));
    }

    let batch_size = s.batch_size.unwrap_or(200);
    if batch_size == 0 {
        bail!("batch_size: must be at least 1");
    }
    let concurrency = s.concurrency.unwrap_or(4);
    if !(1..=256).contains(&concurrency) {
        bail!("concurrency: must be between 1 and 256, got {concurrency}");
    }

    let defaults = RetryPolicy::default();
    let r = s.retry.unwrap_or_default();
    let duration = |key: &str,
                    value: &Option<raw::HumanDuration>,
                    default: Duration,
                    range: DurationRange| match value {
        None => Ok(default),
        Some(d) => d.within(key, range),
    };
    let retry = RetryPolicy {
        max_attempts: r.max_attempts.unwrap_or(defaults.max_attempts),
        initial_backoff: duration(
            "retry.initial_backoff",
            &r.initial_backoff,
            defaults.initial_backoff,
            BACKOFF_RANGE,
        )?,
        max_backoff: duration(
            "retry.max_backoff",
            &r.max_backoff,
            defaults.max_backoff,
            BACKOFF_RANGE,
        )?,
        multiplier: r.multiplier.unwrap_or(defaults.multiplier),
        max_rate_limit_wait: duration(
            "retry.max_rate_limit_wait",
            &r.max_rate_limit_wait,
            defaults.max_rate_limit_wait,
            RATE_LIMIT_WAIT_RANGE,
        )?,
    };
    if retry.max_attempts == 0 {
        bail!("retry.max_attempts: must be at least 1 (the first send counts)");
    }
    if !(1.0..=100.0).contains(&retry.multiplier) {
        bail!(
            "retry.multiplier: `{}` is out of range: expected between 1.0 and 100",
            retry.multiplier
        );
    }
    if retry.max_backoff < retry.initial_backoff {
        bail!("retry.max_backoff: must not be less than retry.initial_backoff");
    }

    let rate_limit = match s.rate_limit {
        None => None,
        Some(r) => {
            if r.requests == 0 {
                bail!("rate_limit.requests: must be at least 1");
            }
            Some(RateLimit {
                requests: r.requests,
                per: r.per.within("rate_limit.per", RATE_LIMIT_PER_RANGE)?,
            })
        }
    };
    let mode = match s.mode.as_deref() {
        None | Some("changed") => SendMode::Changed,
        Some("all") => SendMode::All,
        Some(other) => bail!("mode: `{other}` is not a mode: expected \"changed\" or \"all\""),
    };
    let times = |key: &str, list: &[String]| -> Result<Vec<TimeOfDay>> {
        list.iter()
            .map(|t| TimeOfDay::parse(t).map_err(|e| anyhow!("{key}: {e}")))
            .collect()
    };
    let schedule = times("schedule", &s.schedule.unwrap_or_default())?;
    let defaults = RetryJob::default();
    let retry_job = match s.retry_job {
        None => defaults,
        Some(j) => RetryJob {
            schedule: match j.schedule {
                Some(list) => times("retry_job.schedule", &list)?,
                None => defaults.schedule,
            },
            window: duration(
                "retry_job.window",
                &j.window,
                defaults.window,
                RETRY_WINDOW_RANGE,
            )?,
            max_records: j.max_records.unwrap_or(defaults.max_records),
            non_retryable: j.non_retryable.unwrap_or(defaults.non_retryable),
        },
    };
    if retry_job.max_records == 0 {
        bail!("retry_job.max_records: must be at least 1");
    }
    let request_timeout = duration(
        "request_timeout",
        &s.request_timeout,
        Duration::from_secs(30),
        REQUEST_TIMEOUT_RANGE,
    )?;

    Ok(SyncSpec {
        name: s.name,
        connector: s.connector,
        source,
        base_url,
        auth,
        settings,
        batch_size,
        concurrency,
        request_timeout,
        retry,
        rate_limit,
        max_response_bytes: s
            .max_response_bytes
            .map_or(16 * 1024 * 1024, |b| b.0.as_u64() as usize),
        mode,
        retry_job,
        schedule,
        redact: s.redact.unwrap_or_default(),
    })
}

/// The source must be a file that exists now; say what is wrong with the path otherwise.
fn check_source_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) if meta.is_dir() => bail!(
            "source: `{}` is a directory; give the JSONL or CSV file to read",
            path.display()
        ),
        Ok(_) => bail!(
            "source: `{}` is not a regular file; give the JSONL or CSV file to read",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            bail!("source: file `{}` not found", path.display())
        }
        Err(err) => bail!("source: cannot read `{}`: {err}", path.display()),
    }
}

fn resolve_auth(a: raw::Auth) -> Result<AuthSpec> {
    let env_name = |key: &str, value: &str| -> Result<()> {
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!(
                "auth.{key}: `{value}` is not an environment variable name (secrets are given by variable name, never inline)"
            );
        }
        Ok(())
    };
    match a {
        raw::Auth {
            bearer_env: Some(env),
            header: None,
            value_env: None,
            oauth2: None,
        } => {
            env_name("bearer_env", &env)?;
            Ok(AuthSpec::Bearer { env })
        }
        raw::Auth {
            bearer_env: None,
            header: Some(name),
            value_env: Some(env),
            oauth2: None,
        } => {
            env_name("value_env", &env)?;
            reqwest::header::HeaderName::try_from(name.as_str())
                .map_err(|_| anyhow!("auth.header: `{name}` is not a valid header name"))?;
            Ok(AuthSpec::Header { name, env })
        }
        raw::Auth {
            bearer_env: None,
            header: None,
            value_env: None,
            oauth2: Some(o),
        } => {
            let token_url = Url::parse(&o.token_url).map_err(|err| {
                anyhow!(
                    "auth.oauth2.token_url: `{}` is not a URL: {err}",
                    o.token_url
                )
            })?;
            env_name("oauth2.client_id_env", &o.client_id_env)?;
            env_name("oauth2.client_secret_env", &o.client_secret_env)?;
            env_name("oauth2.refresh_token_env", &o.refresh_token_env)?;
            Ok(AuthSpec::OAuth2 {
                token_url,
                client_id_env: o.client_id_env,
                client_secret_env: o.client_secret_env,
                refresh_token_env: o.refresh_token_env,
            })
        }
        _ => bail!(
            "auth: expected one of `{{ bearer_env = \"VAR\" }}`, \
             `{{ header = \"X-Api-Key\", value_env = \"VAR\" }}` or `{{ oauth2 = {{ token_url, \
             client_id_env, client_secret_env, refresh_token_env }} }}`"
        ),
    }
}

/// Settings reach the connector as strings: scalars as written, arrays of scalars joined
/// with commas (handy for lists of error codes).
fn setting_string(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::Array(_) | toml::Value::Table(_) => {
                    Err("expected a string, number, boolean or a list of them".to_string())
                }
                other => setting_string(other),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(",")),
        _ => Err("expected a string, number, boolean or a list of them".to_string()),
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

/// The file's shape, exactly as serde reads it.
mod raw {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        #[serde(default = "default_state_dir")]
        pub state_dir: PathBuf,
        pub cache_dir: Option<PathBuf>,
        #[serde(default)]
        pub connectors: BTreeMap<String, Connector>,
        #[serde(default, rename = "sync")]
        pub syncs: Vec<Sync>,
        pub inspector: Option<Inspector>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Inspector {
        pub enabled: Option<bool>,
        pub max_requests: Option<usize>,
        pub max_age: Option<HumanDuration>,
        pub max_body: Option<Size>,
    }

    fn default_state_dir() -> PathBuf {
        PathBuf::from(".sluice")
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Connector {
        pub component: String,
        #[serde(default)]
        pub allowed_hosts: Vec<String>,
        pub memory_limit: Option<Size>,
        pub call_timeout: Option<HumanDuration>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Sync {
        pub name: String,
        pub connector: String,
        pub source: Source,
        pub base_url: String,
        pub auth: Option<Auth>,
        #[serde(default)]
        pub settings: BTreeMap<String, toml::Value>,
        pub batch_size: Option<u32>,
        pub concurrency: Option<u32>,
        pub request_timeout: Option<HumanDuration>,
        pub max_response_bytes: Option<Size>,
        pub retry: Option<Retry>,
        pub rate_limit: Option<RateLimit>,
        pub mode: Option<String>,
        pub redact: Option<Vec<String>>,
        pub schedule: Option<Vec<String>>,
        pub retry_job: Option<RetryJob>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RetryJob {
        pub schedule: Option<Vec<String>>,
        pub window: Option<HumanDuration>,
        pub max_records: Option<usize>,
        pub non_retryable: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Source {
        pub jsonl: Option<PathBuf>,
        pub csv: Option<PathBuf>,
        pub key: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Auth {
        pub bearer_env: Option<String>,
        pub header: Option<String>,
        pub value_env: Option<String>,
        pub oauth2: Option<OAuth2>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct OAuth2 {
        pub token_url: String,
        pub client_id_env: String,
        pub client_secret_env: String,
        pub refresh_token_env: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Retry {
        pub max_attempts: Option<u32>,
        pub initial_backoff: Option<HumanDuration>,
        pub max_backoff: Option<HumanDuration>,
        pub multiplier: Option<f64>,
        pub max_rate_limit_wait: Option<HumanDuration>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RateLimit {
        pub requests: u32,
        pub per: HumanDuration,
    }

    /// A duration written as text: `"500ms"`, `"1s"`, `"15m"`, `"7d"`, and the text, for
    /// messages.
    pub struct HumanDuration(pub Duration, pub String);

    impl HumanDuration {
        /// The duration, if `range` holds it; else an error naming `key`.
        pub fn within(&self, key: &str, range: DurationRange) -> anyhow::Result<Duration> {
            range.check(key, self.0, &self.1)
        }
    }

    impl<'de> Deserialize<'de> for HumanDuration {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            humantime::parse_duration(&text).map(|d| HumanDuration(d, text.clone())).map_err(|err| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a duration ({err}); expected for example \"500ms\", \"1s\", \"15m\""
                ))
            })
        }
    }

    /// A size written as text: `"64MiB"`, `"512 KB"`, or a number of bytes.
    pub struct Size(pub bytesize::ByteSize);

    impl<'de> Deserialize<'de> for Size {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Either {
                Bytes(u64),
                Text(String),
            }
            match Either::deserialize(d)? {
                Either::Bytes(n) => Ok(Size(bytesize::ByteSize(n))),
                Either::Text(text) => text.parse::<bytesize::ByteSize>().map(Size).map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{text}` is not a size; expected for example \"64MiB\" or \"512KB\""
                    ))
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let p = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(p.matches("127.0.0.1", 8080));
        assert!(!p.matches("127.0.0.1", 8081));
        let p = HostPattern::parse("API.example.com").unwrap();
        assert!(p.matches("api.example.com", 443));
        assert!(!p.matches("evil.com", 443));
        let p = HostPattern::parse("*.example.com:443").unwrap();
        assert!(p.matches("a.example.com", 443));
        assert!(!p.matches("example.com", 443));
        assert!(!p.matches("a.example.com.evil.com", 443));
        assert!(HostPattern::parse("http://x/").is_err());
        assert!(HostPattern::parse("x:notaport").is_err());
    }

    #[test]
    fn times_of_day() {
        assert_eq!(TimeOfDay::parse("11:30").unwrap().seconds(), 41_400);
        assert_eq!(TimeOfDay::parse("00:05").unwrap().to_string(), "00:05");
        for bad in ["24:00", "11:60", "1130", "11:3", "noon", ""] {
            assert!(TimeOfDay::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_become_strings() {
        let v: toml::Value = toml::from_str("a = [\"X\", 2, true]").unwrap();
        assert_eq!(setting_string(&v["a"]).unwrap(), "X,2,true");
        let v: toml::Value = toml::from_str("a = { b = 1 }").unwrap();
        assert!(setting_string(&v["a"]).is_err());
    }
}
