//! One way to describe a sync for a test: records, batch size, concurrency, settings, fast
//! retries; then run it and read the summary, the fates and the ledger. Tests state what
//! differs from the usual sync, not the whole config text.

use std::sync::Arc;

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::engine::{RunReport, RunSummary};
use sluice::ledger::Entry;
use sluice::sync::Host;

use super::{Expect, Fates, Setup, assert_summary, cache_dir};

/// Retry settings that keep a test quick: the only place a test's backoff is made short.
pub const FAST_RETRIES: &str = "initial_backoff = \"5ms\"\nmax_backoff = \"50ms\"\n";

/// The REST connector's settings when a test needs nothing more than the records path.
pub const REST_PATH: &str = "{ path = \"/v1/records\" }";

/// `n` contacts with keys `c0000..` and an `email` each.
pub fn contacts(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("c{i:04}"), "email": format!("c{i}@example.com")}))
        .collect()
}

/// `n` contacts as JSONL text, with keys `{prefix}00000..` (one source file per sync).
pub fn contacts_jsonl(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": format!("{prefix}{i:05}"), "email": "x@example.com"})
            )
        })
        .collect()
}

/// `n` valid accounts with keys `A0000..`.
pub fn accounts(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "id": format!("A{i:04}"),
                "Name": format!("Account {i}"),
                "Email": format!("a{i}@example.com"),
                "ParentCrmId": "P1",
            })
        })
        .collect()
}

/// A sync named `s` of a connector `c`, described field by field.
#[derive(Clone)]
pub struct Scenario {
    component: String,
    base_url: String,
    /// Path and query after the origin in `base_url`.
    base_path: String,
    key: String,
    records: Vec<Value>,
    /// The source file's format and bytes, when a test writes them itself.
    raw_source: Option<(String, Vec<u8>)>,
    settings: Option<String>,
    /// The source as a command (a TOML array) and the format of its output.
    command: Option<(String, String)>,
    /// The source as a PostgreSQL query (a TOML inline table).
    postgres: Option<String>,
    sync: String,
    retry: String,
    connector: String,
    /// The `state = ...` line, when a test chooses the backend itself.
    state: Option<String>,
}

impl Scenario {
    /// A sync of `component` (a `builtin:` name or a path) sending to `base_url`.
    pub fn new(component: &str, base_url: &str) -> Self {
        Scenario {
            component: component.to_owned(),
            base_url: base_url.to_owned(),
            base_path: String::new(),
            key: "id".to_owned(),
            records: Vec::new(),
            raw_source: None,
            settings: None,
            command: None,
            postgres: None,
            sync: String::new(),
            retry: String::new(),
            connector: String::new(),
            state: None,
        }
    }

    /// The ledger in PostgreSQL, in `schema` of the database whose URL is in `url_env`
    /// (instead of the backend the test run chose).
    pub fn postgres_state(mut self, url_env: &str, schema: &str) -> Self {
        self.state = Some(format!(
            "state = {{ postgres = {{ url_env = \"{url_env}\", schema = \"{schema}\" }} }}\n"
        ));
        self
    }

    /// The bundled REST connector posting to `/v1/records`.
    pub fn rest(base_url: &str) -> Self {
        Self::new("builtin:rest", base_url).settings(REST_PATH)
    }

    /// [`contacts`]`(n)` through the bundled REST connector to `base_url`.
    pub fn contacts_to(base_url: &str, n: usize) -> Self {
        Self::rest(base_url).records(contacts(n))
    }

    pub fn records(mut self, records: Vec<Value>) -> Self {
        self.records = records;
        self
    }

    /// A path and query for `base_url`, after its origin.
    pub fn base_path(mut self, path: &str) -> Self {
        self.base_path = path.to_owned();
        self
    }

    /// The source as `format` ("jsonl" or "csv") with exactly these bytes, instead of
    /// the records as JSONL.
    pub fn source(mut self, format: &str, data: &[u8]) -> Self {
        self.raw_source = Some((format.to_owned(), data.to_vec()));
        self
    }

    /// The source as the output of `argv` (run without a shell, in the scenario's folder),
    /// in `format`; the records are still written to `data.jsonl` there for it to read.
    pub fn command_source(mut self, argv: &[&str], format: &str) -> Self {
        let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
        self.command = Some((format!("[{}]", argv.join(", ")), format.to_owned()));
        self
    }

    /// The source as the rows of `query` on the PostgreSQL whose URL is in `url_env`.
    pub fn postgres_source(mut self, url_env: &str, query: &str) -> Self {
        self.postgres = Some(format!("{{ url_env = {url_env:?}, query = {query:?} }}"));
        self
    }

    /// The source file's format and name.
    fn source_file(&self) -> (&str, String) {
        let format = self
            .raw_source
            .as_ref()
            .map_or("jsonl", |(f, _)| f.as_str());
        (format, format!("data.{format}"))
    }

    /// The field that holds each record's key (`id` unless set).
    pub fn key(mut self, key: &str) -> Self {
        self.key = key.to_owned();
        self
    }

    /// The connector's settings, an inline TOML table.
    pub fn settings(mut self, table: &str) -> Self {
        self.settings = Some(table.to_owned());
        self
    }

    /// Batches of `size` records, sent by `workers` workers.
    pub fn batches(self, size: usize, workers: usize) -> Self {
        self.batch(size).concurrency(workers)
    }

    pub fn batch(self, size: usize) -> Self {
        self.sync(&format!("batch_size = {size}"))
    }

    pub fn concurrency(self, workers: usize) -> Self {
        self.sync(&format!("concurrency = {workers}"))
    }

    /// Any other TOML line(s) of the `[[sync]]` table.
    pub fn sync(mut self, toml: &str) -> Self {
        self.sync.push_str(toml);
        self.sync.push('\n');
        self
    }

    /// TOML line(s) of the `[sync.retry]` table.
    pub fn retry(mut self, toml: &str) -> Self {
        self.retry.push_str(toml);
        self.retry.push('\n');
        self
    }

    /// [`FAST_RETRIES`].
    pub fn fast_retries(self) -> Self {
        self.retry(FAST_RETRIES)
    }

    /// TOML line(s) of the `[connectors.c]` table (limits and the like).
    pub fn connector(mut self, toml: &str) -> Self {
        self.connector.push_str(toml);
        self.connector.push('\n');
        self
    }

    /// The config text this scenario stands for (`{cache}` is the shared component cache).
    pub fn config_text(&self) -> String {
        let port = self.base_url.rsplit(':').next().unwrap();
        let mut text = format!(
            "state_dir = \"state\"\ncache_dir = \"{cache}\"\n{state}\n[connectors.c]\ncomponent = \"{component}\"\nallowed_hosts = [\"127.0.0.1:{port}\"]\n{connector}\n[[sync]]\nname = \"s\"\nconnector = \"c\"\nsource = {{ {format} = \"{file}\", key = \"{key}\" }}\nbase_url = \"{base_url}{base_path}\"\n",
            cache = cache_dir().display(),
            state = self.state.clone().unwrap_or_else(super::state::config_line),
            component = self.component,
            connector = self.connector,
            key = self.key,
            format = self.source_file().0,
            file = self.source_file().1,
            base_url = self.base_url,
            base_path = self.base_path,
        );
        // A source that is not the data file: its table, in place of the file's.
        let other_source = match (&self.postgres, &self.command) {
            (Some(postgres), _) => Some(format!("postgres = {postgres}")),
            (None, Some((argv, format))) => {
                Some(format!("command = {argv}, format = \"{format}\""))
            }
            (None, None) => None,
        };
        if let Some(origin) = other_source {
            let (format, file) = self.source_file();
            let key = &self.key;
            text = text.replace(
                &format!("source = {{ {format} = \"{file}\", key = \"{key}\" }}\n"),
                &format!("source = {{ {origin}, key = \"{key}\" }}\n"),
            );
        }
        if let Some(settings) = &self.settings {
            text.push_str(&format!("settings = {settings}\n"));
        }
        text.push_str(&self.sync);
        if !self.retry.is_empty() {
            text.push_str("[sync.retry]\n");
            text.push_str(&self.retry);
        }
        text
    }

    /// Writes the records as JSONL and the config into a fresh folder.
    pub fn setup(&self) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let data = match &self.raw_source {
            Some((_, bytes)) => bytes.clone(),
            None => self
                .records
                .iter()
                .map(|r| format!("{r}\n"))
                .collect::<String>()
                .into_bytes(),
        };
        std::fs::write(dir.path().join(self.source_file().1), data).unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, self.config_text()).unwrap();
        let config = Config::load(&path).unwrap();
        Setup { dir, config }
    }

    /// Sets up and runs sync `s` once.
    pub async fn run(&self) -> Ran {
        Ran::of(self.setup()).await
    }
}

/// A finished run: its folder, the host (for the ledger), the report and every fate.
pub struct Ran {
    pub setup: Setup,
    pub host: Host,
    pub report: RunReport,
    pub fates: Arc<Fates>,
}

impl Ran {
    /// Runs sync `s` of `setup` once, with a fresh [`Fates`] sink.
    pub async fn of(setup: Setup) -> Ran {
        let (host, report, fates) = super::run_keeping_host(&setup).await;
        Ran {
            setup,
            host,
            report,
            fates,
        }
    }

    pub fn summary(&self) -> &RunSummary {
        &self.report.summary
    }

    /// Asserts every field of the summary that `expect` names (see [`assert_summary`]).
    #[track_caller]
    pub fn expect(&self, expect: Expect) {
        assert_summary(self.summary(), expect);
    }

    /// The ledger's entry for `key` in sync `s`, which must exist.
    pub fn entry(&self, key: &str) -> Entry {
        super::ledger_entry(&self.host, "s", key)
    }

    /// Every ledger entry of sync `s`, by key.
    pub fn entries(&self) -> Vec<(String, Entry)> {
        super::ledger_entries(&self.host, "s")
    }
}
