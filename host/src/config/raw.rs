//! The config file's shape, exactly as serde reads it: unknown keys are refused and
//! every type error points at the line and key. Checking what serde cannot is `resolve`'s.

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
    pub flush_interval: Option<HumanDuration>,
    pub state: Option<State>,
    pub console: Option<Console>,
}

/// `[console]`: who may use the operators' console (`sluice serve --console-addr`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    pub token_env: String,
    pub read_only_token_env: Option<String>,
}

/// `[state]`: where the ledger lives when not in `state_dir`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub postgres: Option<StatePostgres>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePostgres {
    pub url_env: String,
    pub schema: Option<String>,
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
    pub partitions: Option<u32>,
    pub concurrency: Option<u32>,
    pub request_timeout: Option<HumanDuration>,
    pub max_response_bytes: Option<Size>,
    pub retry: Option<Retry>,
    pub rate_limit: Option<RateLimit>,
    pub mode: Option<String>,
    pub behavior: Option<String>,
    pub max_deletes: Option<toml::Value>,
    pub fields: Option<BTreeMap<String, toml::Value>>,
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
    /// A program and its arguments whose standard output is the source.
    pub command: Option<Vec<String>>,
    /// The format of a command's output: `jsonl` or `csv`.
    pub format: Option<String>,
    /// A query run on a PostgreSQL database.
    pub postgres: Option<Postgres>,
    pub key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// The environment variable holding the connection URL (it carries the password).
    pub url_env: String,
    pub query: String,
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
