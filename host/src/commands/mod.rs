//! The implementations of the `sluice` subcommands.

pub mod connector;
pub mod inspect;
pub mod ledger;
pub mod plan;
pub mod progress;
pub mod retry;
pub mod run;
pub mod serve;

use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use sluice::concern::{Concern, ErrorKind};
use sluice::config::Config;

/// How long requests in flight may finish after Ctrl-C or SIGTERM.
pub const GRACE: Duration = Duration::from_secs(10);

/// A token cancelled on SIGINT or SIGTERM: runs stop taking work, settle and exit. A
/// second signal quits at once; nothing is lost, since unconfirmed records were never
/// marked delivered and a later run sends them again.
pub fn stop_on_signals() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            sluice::output::warn(format_args!(
                "stopping: finishing requests in flight (Ctrl-C again to quit at once)"
            ));
            token.cancel();
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            let _ = tokio::signal::ctrl_c().await;
        }
        std::process::exit(130);
    });
    stop
}

/// The syncs a command takes: the one named, or every sync of the config.
pub fn sync_names(config: &Config, only: Option<&str>) -> Result<Vec<String>> {
    let names: Vec<String> = match only {
        Some(name) => vec![config.sync(name)?.name.clone()],
        None => config.syncs.iter().map(|s| s.name.clone()).collect(),
    };
    if names.is_empty() {
        anyhow::bail!(
            "config file `{}` defines no [[sync]]",
            config.path.display()
        );
    }
    Ok(names)
}

/// Reports a sync that could not run (its settings refused, its connector not loaded), on
/// stderr and, with `json`, as an error object naming the sync on stdout; the exit code
/// its kind calls for. The other syncs still run.
pub fn sync_failed(
    name: &str,
    err: &anyhow::Error,
    json: bool,
    out: &mut sluice::output::Output,
) -> Result<std::process::ExitCode> {
    use std::io::Write;
    let text = format!("{err:#}");
    sluice::output::warn(format_args!(
        "error: sync `{name}`: {}",
        sluice::report::printable(&text)
    ));
    if json {
        let mut object = Concern::json(err);
        object["error"]["sync"] = serde_json::Value::String(name.to_string());
        writeln!(out, "{object}")?;
    }
    Ok(std::process::ExitCode::from(
        Concern::of(err).kind.exit_code(),
    ))
}

/// Refuses to start when a credential of a sync about to run is missing: every unset or
/// empty variable of every one of `syncs` is named at once (`ErrorKind::Credentials`),
/// before any sync runs, instead of one sync failing at a time part-way through a
/// command. When the missing ones are all of one sync, the error names it (`--json`'s
/// `sync`).
pub fn check_credentials<'a>(
    config: &Config,
    syncs: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut lacking: Vec<&str> = Vec::new();
    for name in syncs {
        let sync = config.sync(name)?;
        for (key, var) in sync
            .auth
            .env_vars()
            .into_iter()
            .chain(sync.source.env_vars())
        {
            let problem = match std::env::var(var) {
                Ok(value) if !value.is_empty() => continue,
                Ok(_) => "is empty",
                Err(std::env::VarError::NotPresent) => "is not set",
                Err(std::env::VarError::NotUnicode(_)) => "is not valid UTF-8",
            };
            missing.push(format!(
                "sync `{name}`: environment variable `{var}` ({key}) {problem}"
            ));
            if lacking.last() != Some(&name) {
                lacking.push(name);
            }
        }
    }
    if !missing.is_empty() {
        let text = format!("{}; nothing was run", missing.join("; "));
        let mut concern = Concern::new(ErrorKind::Credentials, text);
        if let [only] = lacking[..] {
            concern = concern.sync(only);
        }
        return Err(anyhow::Error::new(concern));
    }
    Ok(())
}
