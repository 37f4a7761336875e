//! `sluice retry`: one pass of the retry job, by hand.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use sluice::config::Config;
use sluice::engine::{FailureList, Outcome, RunControl};
use sluice::output::Output;
use sluice::retry_job::Request;
use sluice::sync::Host;

pub async fn run(
    path: &Path,
    sync: &str,
    request: Request,
    json: bool,
    out: &mut Output,
) -> Result<ExitCode> {
    let config = Config::load(path)?;
    config.sync(sync)?;
    super::check_credentials(&config, [sync])?;
    let host = Host::new(&config)?;
    let failures = Arc::new(FailureList::new(10_000));
    let control = RunControl {
        stop: super::stop_on_signals(),
        grace: super::GRACE,
        sinks: vec![failures.clone()],
        ..RunControl::default()
    };
    let report = host.retry(&config, sync, &request, control).await?;
    let c = &report.selection;
    if json {
        let mut value = json!({ "sync": sync, "selection": c });
        if let Some(run) = &report.run {
            value["run"] = serde_json::to_value(&run.summary)?;
        }
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "retry pass of `{sync}`: {} selected, {} left for the next pass (limit), {} expired \
             (failed before the window), {} waiting for a person (non-retryable codes)",
            c.selected, c.over_limit, c.expired, c.non_retryable
        )?;
        if let Some(run) = &report.run {
            write!(out, "{}", sluice::report::render(run, &failures.take()))?;
        }
    }
    Ok(match report.run.map(|r| r.summary.outcome) {
        None | Some(Outcome::Completed) => ExitCode::SUCCESS,
        Some(Outcome::Failed) => ExitCode::FAILURE,
        Some(Outcome::Interrupted) => ExitCode::from(130),
    })
}
