//! `sluice run`: each sync of a config once.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use sluice::config::Config;
use sluice::engine::{Counters, FailureList, Outcome, RunControl};
use sluice::output::Output;
use sluice::sync::{Host, RunOptions};

/// How `sluice run` runs and reports.
pub struct How {
    /// One JSON summary object per sync instead of the report.
    pub json: bool,
    pub progress: super::progress::Mode,
    /// `--full-resync`, `--partition`, `--allow-deletes`.
    pub options: RunOptions,
}

/// Runs the syncs, writing each one's report to `out` as it ends. When the reader of `out`
/// goes away (`sluice run | head -1`) the remaining syncs still run and are recorded:
/// what a run does never depends on whether someone reads its report.
pub async fn run(path: &Path, only: Option<&str>, how: How, out: &mut Output) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let names = super::sync_names(&config, only)?;
    super::check_credentials(&config, names.iter().map(String::as_str))?;
    let host = Host::new(&config)?;
    let stop = super::stop_on_signals();
    let mut code = ExitCode::SUCCESS;
    for name in names {
        if stop.is_cancelled() {
            break;
        }
        let failures = Arc::new(FailureList::new(10_000));
        let sync = config.sync(&name)?;
        let counters = Arc::new(Counters::new(&name, &sync.connector));
        let control = RunControl {
            stop: stop.clone(),
            grace: super::GRACE,
            sinks: vec![failures.clone()],
            counters: Some(counters.clone()),
            ..RunControl::default()
        };
        let shown = super::progress::show(&name, counters, how.progress);
        let report = host.run_with(&config, &name, control, how.options).await;
        drop(shown);
        // A sync that cannot start (bad settings, missing credentials) is reported; the
        // other syncs still run.
        let report = match report {
            Ok(report) => report,
            Err(err) => {
                code = super::sync_failed(&name, &err, how.json, out)?;
                continue;
            }
        };
        if how.json {
            writeln!(out, "{}", serde_json::to_string(&report.summary)?)?;
        } else {
            write!(out, "{}", sluice::report::render(&report, &failures.take()))?;
        }
        out.push();
        match report.summary.outcome {
            // A mirror that deleted nothing it should have: the operator must look.
            Outcome::Completed if report.summary.deletes_withheld_because.is_some() => {
                code = ExitCode::FAILURE
            }
            Outcome::Completed => {}
            Outcome::Failed => code = ExitCode::FAILURE,
            Outcome::Interrupted => return Ok(ExitCode::from(130)),
        }
    }
    Ok(code)
}
