//! Checks what serde cannot (references between sections, files that must exist, URLs,
//! ranges) and turns the raw shape into the config the host runs, resolving relative
//! paths against the config file's folder.

use super::raw;
use super::*;

pub(super) fn resolve(raw: raw::Config, path: &Path) -> Result<Config> {
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
    withhold_credentials(&mut syncs);

    let state = match raw.state.and_then(|state| state.postgres) {
        None => StateBackend::Embedded,
        Some(pg) if pg.url_env.trim().is_empty() => bail!(
            "state.postgres.url_env: name the environment variable that holds the database URL"
        ),
        Some(pg) => {
            let schema = pg.schema.unwrap_or_else(|| "public".to_string());
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                || schema.starts_with(|c: char| c.is_ascii_digit())
            {
                bail!(
                    "state.postgres.schema: `{schema}` must be a lowercase name of letters, \
                     digits and `_`, not starting with a digit"
                );
            }
            StateBackend::Postgres {
                url_env: pg.url_env,
                schema,
            }
        }
    };

    let console = raw.console.map(|c| ConsoleConfig {
        token_env: c.token_env,
        read_only_token_env: c.read_only_token_env,
    });
    Ok(Config {
        path: path.to_path_buf(),
        state,
        console,
        state_dir: relative(&raw.state_dir),
        cache_dir: match raw.cache_dir {
            Some(dir) => Some(relative(&dir)),
            None => default_cache_dir(),
        },
        connectors,
        syncs,
        flush_interval: match &raw.flush_interval {
            None => crate::ledger::DEFAULT_SYNC_INTERVAL,
            Some(d) => d.within("flush_interval", FLUSH_INTERVAL_RANGE)?,
        },
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

/// Gives every command source the names of all the config's destination credentials, to
/// run without them.
fn withhold_credentials(syncs: &mut [SyncSpec]) {
    let mut credentials: Vec<String> = syncs
        .iter()
        .flat_map(|sync| sync.auth.env_vars())
        .map(|(_, var)| var.to_string())
        .collect();
    credentials.sort();
    credentials.dedup();
    for sync in syncs {
        if let SourceOrigin::Command { withheld, .. } = &mut sync.source.origin {
            withheld.clone_from(&credentials);
        }
    }
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
    let source = match s.source.postgres {
        Some(pg) => {
            if s.source.jsonl.is_some() || s.source.csv.is_some() || s.source.command.is_some() {
                bail!(
                    "source: give one kind of source: a file, a `command` or `postgres`, not two"
                );
            }
            if s.source.format.is_some() {
                bail!(
                    "source.format: a query's rows are JSON objects already; `format` is for a command"
                );
            }
            if pg.query.trim().is_empty() {
                bail!("source.postgres.query: give the query whose rows are the records");
            }
            if pg.url_env.trim().is_empty() {
                bail!(
                    "source.postgres.url_env: name the environment variable that holds the database URL"
                );
            }
            let origin = SourceOrigin::Postgres {
                url_env: pg.url_env,
                query: pg.query,
            };
            (SourceFormat::Jsonl, origin)
        }
        None => resolve_source(
            s.source.jsonl,
            s.source.csv,
            s.source.command,
            s.source.format,
            &relative,
        )?,
    };
    let source = SourceSpec {
        format: source.0,
        origin: source.1,
        key: s.source.key,
    };
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
    let partitions = s.partitions.unwrap_or(1);
    let most = crate::source::partition::MAX_PARTITIONS;
    if !(1..=most).contains(&partitions) {
        bail!("partitions: must be between 1 and {most}, got {partitions}");
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
    let behavior = match s.behavior.as_deref() {
        None => Behavior::default(),
        Some(name) => Behavior::parse(name).ok_or_else(|| {
            anyhow!(
                "behavior: `{name}` is not a behaviour: expected {}",
                Behavior::NAMES
            )
        })?,
    };
    let max_deletes = match &s.max_deletes {
        None => MaxDeletes::default(),
        Some(_) if behavior != Behavior::Mirror => bail!(
            "max_deletes: only a sync with behavior = \"mirror\" deletes; this one is \"{}\"",
            behavior.name()
        ),
        Some(value) => MaxDeletes::parse(value)?,
    };
    let fields = s.fields.map(FieldMap::parse).transpose()?;
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
        partitions,
        concurrency,
        request_timeout,
        retry,
        rate_limit,
        max_response_bytes: s
            .max_response_bytes
            .map_or(16 * 1024 * 1024, |b| b.0.as_u64() as usize),
        mode,
        behavior,
        max_deletes,
        fields,
        retry_job,
        schedule,
        redact: s.redact.unwrap_or_default(),
    })
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

/// A source's format and origin: exactly one of a JSONL file, a CSV file, or a command
/// with the `format` of its output.
fn resolve_source(
    jsonl: Option<PathBuf>,
    csv: Option<PathBuf>,
    command: Option<Vec<String>>,
    format: Option<String>,
    relative: &dyn Fn(&Path) -> PathBuf,
) -> Result<(SourceFormat, SourceOrigin)> {
    let one_of = "source: give exactly one of `jsonl = \"FILE\"`, `csv = \"FILE\"` or \
                  `command = [\"PROGRAM\", \"ARG\", ...]` with `format = \"jsonl\"` or `\"csv\"`";
    let (format_of_file, file) = match (jsonl, csv, &command) {
        (Some(p), None, None) => (SourceFormat::Jsonl, p),
        (None, Some(p), None) => (SourceFormat::Csv, p),
        (None, None, Some(argv)) => {
            let format = match format.as_deref() {
                Some("jsonl") => SourceFormat::Jsonl,
                Some("csv") => SourceFormat::Csv,
                Some(other) => {
                    bail!("source.format: `{other}` is not a format; expected `jsonl` or `csv`")
                }
                None => bail!(
                    "source.format: a command's output needs its format: `format = \"jsonl\"` or `\"csv\"`"
                ),
            };
            if argv.first().is_none_or(|program| program.trim().is_empty()) {
                bail!(
                    "source.command: give the program to run first, then its arguments (no shell is used)"
                );
            }
            let dir = relative(Path::new("."));
            return Ok((
                format,
                SourceOrigin::Command {
                    argv: argv.clone(),
                    dir,
                    // Filled in once every sync is resolved (`withhold_credentials`).
                    withheld: Vec::new(),
                },
            ));
        }
        _ => bail!("{one_of}"),
    };
    if format.is_some() {
        bail!(
            "source.format: only a `command` takes a format; a file's is its key (`jsonl` or `csv`)"
        );
    }
    // Whether the file is there is the run's to find out: a late export stops its own
    // sync, not every other sync of the config, nor the ledger's commands.
    Ok((format_of_file, SourceOrigin::File(relative(&file))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_strings() {
        let v: toml::Value = toml::from_str("a = [\"X\", 2, true]").unwrap();
        assert_eq!(setting_string(&v["a"]).unwrap(), "X,2,true");
        let v: toml::Value = toml::from_str("a = { b = 1 }").unwrap();
        assert!(setting_string(&v["a"]).is_err());
    }
}
