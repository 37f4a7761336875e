//! `sluice serve`: runs the retry job (and syncs that have a schedule of their own) at
//! their times of day, until SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use std::net::SocketAddr;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio_util::sync::CancellationToken;

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

pub async fn run(path: &Path, metrics_addr: SocketAddr, now: bool) -> Result<ExitCode> {
    let config = Config::load(path)?;
    super::check_credentials(&config, config.syncs.iter().map(|s| s.name.as_str()))?;
    let mut host = Host::new(&config)?;
    PrometheusBuilder::new()
        .with_http_listener(metrics_addr)
        .set_buckets_for_metric(
            Matcher::Full("sluice_request_duration_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )?
        .install()
        .with_context(|| format!("serving metrics on {metrics_addr}"))?;
    host.export_ledger_gauges(true);
    let stop = super::stop_on_signals();
    tracing::info!(config = %path.display(), metrics = %metrics_addr, "serving: scheduled syncs and retry passes");
    if now {
        for sync in &config.syncs {
            if stop.is_cancelled() {
                break;
            }
            run_job(&host, &config, &Job::Sync(sync.name.clone()), &stop).await?;
        }
    }
    loop {
        let now = sluice::clock::now();
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
            sluice::output::warn(format_args!(
                "nothing is scheduled: no sync has `schedule` or `retry_job.schedule`"
            ));
            return Ok(ExitCode::FAILURE);
        };
        let wait = at.duration_since(sluice::clock::now()).unwrap_or_default();
        tracing::info!(?job, at = %humantime::format_rfc3339_seconds(at), "next scheduled work");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {
                tracing::info!("stopped");
                return Ok(ExitCode::SUCCESS);
            }
        }
        run_job(&host, &config, &job, &stop).await?;
    }
}

/// Runs one scheduled job. A failing run is logged; the schedule goes on.
async fn run_job(host: &Host, config: &Config, job: &Job, stop: &CancellationToken) -> Result<()> {
    let control = RunControl {
        stop: stop.clone(),
        grace: super::GRACE,
        ..RunControl::default()
    };
    {
        match job {
            Job::Sync(name) => match host.run(config, name, control).await {
                Ok(report) => {
                    tracing::info!(summary = %serde_json::to_string(&report.summary)?, "sync run done")
                }
                Err(err) => tracing::error!(sync = %name, "sync run failed: {err:#}"),
            },
            Job::Retry(name) => {
                match host.retry(config, name, &Request::default(), control).await {
                    Ok(report) => tracing::info!(
                        sync = %name,
                        selection = %serde_json::to_string(&report.selection)?,
                        summary = %report.run.map(|r| serde_json::to_string(&r.summary).unwrap_or_default()).unwrap_or_default(),
                        "retry pass done"
                    ),
                    Err(err) => tracing::error!(sync = %name, "retry pass failed: {err:#}"),
                }
            }
        }
    }
    Ok(())
}
