//! The `sluice` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use sluice::config::Config;
use sluice::engine::{FailureList, Outcome, RunControl};
use sluice::sync::Host;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Delivers records to SaaS destinations through sandboxed WebAssembly connectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs each sync of a config once (or only the one named) and prints what happened.
    Run {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Run only this sync.
        #[arg(long)]
        sync: Option<String>,
        /// Print one JSON summary object per sync instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Runs a real sync of example accounts through the bundled Salesforce connector into
    /// a simulated Salesforce that fails in realistic ways. Needs no set-up.
    Demo {
        /// Print the JSON summary instead of the report.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // The demo sets its own (simulated) credentials in the environment, which must happen
    // before any other thread exists.
    if let Command::Demo { .. } = cli.command {
        sluice::demo::prepare_environment();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { config, sync, json } => run(&config, sync.as_deref(), json).await,
        Command::Demo { json } => sluice::demo::run(json).await,
    }
}

async fn run(path: &std::path::Path, only: Option<&str>, json: bool) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let names: Vec<String> = match only {
        Some(name) => vec![config.sync(name)?.name.clone()],
        None => config.syncs.iter().map(|s| s.name.clone()).collect(),
    };
    if names.is_empty() {
        anyhow::bail!("config file `{}` defines no [[sync]]", path.display());
    }
    let host = Host::new(&config)?;
    let stop = stop_on_signals();
    let mut code = ExitCode::SUCCESS;
    for name in names {
        if stop.is_cancelled() {
            break;
        }
        let failures = Arc::new(FailureList::new(10_000));
        let control = RunControl {
            stop: stop.clone(),
            grace: Duration::from_secs(10),
            sinks: vec![failures.clone()],
        };
        let report = host.run(&config, &name, control).await?;
        if json {
            println!("{}", serde_json::to_string(&report.summary)?);
        } else {
            print!("{}", sluice::report::render(&report, &failures.take()));
        }
        match report.summary.outcome {
            Outcome::Completed => {}
            Outcome::Failed => code = ExitCode::FAILURE,
            Outcome::Interrupted => return Ok(ExitCode::from(130)),
        }
    }
    Ok(code)
}

/// A token cancelled on SIGINT or SIGTERM: runs stop taking work, settle and exit.
fn stop_on_signals() -> CancellationToken {
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
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping: finishing requests in flight (Ctrl-C again to quit at once)");
        token.cancel();
        // A second signal quits at once. Nothing is lost: unconfirmed records were never
        // marked delivered, so a later run sends them again.
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    stop
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
