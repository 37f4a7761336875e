//! `sluice serve`: runs the retry job (and syncs that have a schedule of their own) at
//! their times of day, until SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Result;

use sluice::config::Config;
use sluice::engine::RunControl;
use sluice::retry_job::Request;
use sluice::schedule::next_fire;
use sluice::sync::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    Sync(String),
    Retry(String),
}

pub async fn run(path: &Path) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let host = Host::new(&config)?;
    let stop = super::stop_on_signals();
    tracing::info!(config = %path.display(), "serving: scheduled syncs and retry passes");
    loop {
        let now = SystemTime::now();
        let next = config
            .syncs
            .iter()
            .flat_map(|s| {
                [
                    next_fire(&s.schedule, now).map(|t| (t, Job::Sync(s.name.clone()))),
                    next_fire(&s.retry_job.schedule, now).map(|t| (t, Job::Retry(s.name.clone()))),
                ]
            })
            .flatten()
            .min_by_key(|(t, _)| *t);
        let Some((at, job)) = next else {
            eprintln!("nothing is scheduled: no sync has `schedule` or `retry_job.schedule`");
            return Ok(ExitCode::FAILURE);
        };
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        tracing::info!(?job, at = %humantime::format_rfc3339_seconds(at), "next scheduled work");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {
                tracing::info!("stopped");
                return Ok(ExitCode::SUCCESS);
            }
        }
        let control = RunControl {
            stop: stop.clone(),
            grace: super::GRACE,
            sinks: Vec::new(),
        };
        // A failing pass is logged; the schedule goes on.
        match &job {
            Job::Sync(name) => match host.run(&config, name, control).await {
                Ok(report) => {
                    tracing::info!(summary = %serde_json::to_string(&report.summary)?, "sync run done")
                }
                Err(err) => tracing::error!(sync = %name, "sync run failed: {err:#}"),
            },
            Job::Retry(name) => match host
                .retry(&config, name, &Request::default(), control)
                .await
            {
                Ok(report) => tracing::info!(
                    sync = %name,
                    selection = %serde_json::to_string(&report.selection)?,
                    summary = %report.run.map(|r| serde_json::to_string(&r.summary).unwrap_or_default()).unwrap_or_default(),
                    "retry pass done"
                ),
                Err(err) => tracing::error!(sync = %name, "retry pass failed: {err:#}"),
            },
        }
    }
}
