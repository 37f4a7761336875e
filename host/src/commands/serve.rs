//! `sluice serve`: runs the retry job (and syncs that have a schedule of their own) at
//! their times of day, until SIGTERM; with the state in PostgreSQL, as one worker of a
//! pool that shares the work (see `sluice::pool`). On the metrics address it serves
//! `/metrics`, `/healthz` (the process answers) and `/readyz` (it takes work: not before
//! its state is open, not after SIGTERM).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::StatusCode;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use sluice::config::{Config, StateBackend};
use sluice::engine::RunControl;
use sluice::pool::{Pool, PoolOptions, Queue};
use sluice::retry_job::Request;
use sluice::schedule::next_fire;
use sluice::sync::Host;

/// How `sluice serve` serves.
pub struct How {
    pub metrics_addr: SocketAddr,
    pub now: bool,
    pub lease_timeout: Duration,
    pub grace: Duration,
    /// Where the operators' console listens, when it is on.
    pub console_addr: Option<SocketAddr>,
}

/// `sluice enqueue`: a run of each sync (or of `only`) for the pool.
pub fn enqueue(path: &Path, only: Option<&str>) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let StateBackend::Postgres { url_env, schema } = &config.state else {
        anyhow::bail!(
            "`sluice enqueue` queues work for a pool of `sluice serve` workers, which needs \
             the state in PostgreSQL ([state] postgres = {{ url_env = ... }}); with the \
             embedded state, use `sluice run`"
        );
    };
    let names: Vec<String> = match only {
        Some(name) => vec![config.sync(name)?.name.clone()],
        None => config.syncs.iter().map(|s| s.name.clone()).collect(),
    };
    let db = sluice::ledger::postgres::Db::connect_env(url_env, schema)?;
    // Queueing shares the schema with the pool's workers: that is the point.
    sluice::ledger::postgres::prepare(&db, sluice::ledger::postgres::Access::Shared)?;
    let queue = Queue::new(Arc::new(db), "enqueue".into());
    let added = Pool::enqueue_now(&queue, &config, &names)?;
    println!("queued {added} work item(s) for {}", names.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr`.
async fn serve_health(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("serving metrics on {addr}"))?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let ready = ready.load(Ordering::SeqCst) && !stop.is_cancelled();
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!("the metrics and health endpoints stopped: {err}");
        }
    });
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    Sync(String),
    Retry(String),
}

pub async fn run(path: &Path, how: How) -> Result<ExitCode> {
    let config = Config::load(path)?;
    super::check_credentials(&config, config.syncs.iter().map(|s| s.name.as_str()))?;
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("sluice_request_duration_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let stop = super::stop_on_signals();
    let ready = Arc::new(AtomicBool::new(false));
    serve_health(how.metrics_addr, metrics, ready.clone(), stop.clone()).await?;
    // A pool's workers share the state database; the embedded store is held alone.
    let mut host = Host::with_access(&config, sluice::ledger::postgres::Access::Shared)?;
    host.export_ledger_gauges(true);
    let host = Arc::new(host);
    if let Some(addr) = how.console_addr {
        let console =
            sluice::console::Console::new(host.clone(), Arc::new(config.clone()), stop.clone())?;
        let bound = console.serve(addr).await?;
        tracing::info!(console = %format!("http://{bound}/api/v1/syncs"), "serving the console");
    }
    let metrics_addr = how.metrics_addr;
    if let StateBackend::Postgres { .. } = config.state {
        let options = PoolOptions {
            lease_timeout: how.lease_timeout,
            grace: how.grace,
            now: how.now,
            ..PoolOptions::default()
        };
        let mut pool = Pool::new(host, config, options)?;
        // Ready while the pool takes work.
        pool.ready = ready;
        tracing::info!(config = %path.display(), metrics = %metrics_addr, "serving as a worker of the pool");
        pool.serve(stop).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = how.now;
    ready.store(true, Ordering::SeqCst);
    tracing::info!(config = %path.display(), metrics = %metrics_addr, "serving: scheduled syncs and retry passes");
    if now {
        for sync in &config.syncs {
            if stop.is_cancelled() {
                break;
            }
            run_job(
                &host,
                &config,
                &Job::Sync(sync.name.clone()),
                &stop,
                how.grace,
            )
            .await?;
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
            if how.console_addr.is_some() {
                // Nothing to run by itself, but the console serves until SIGTERM.
                stop.cancelled().await;
                return Ok(ExitCode::SUCCESS);
            }
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
        run_job(&host, &config, &job, &stop, how.grace).await?;
    }
}

/// Runs one scheduled job. A failing run is logged; the schedule goes on.
async fn run_job(
    host: &Host,
    config: &Config,
    job: &Job,
    stop: &CancellationToken,
    grace: Duration,
) -> Result<()> {
    let control = RunControl {
        stop: stop.clone(),
        grace,
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
