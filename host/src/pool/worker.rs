//! One worker of a pool: it schedules what its config says is due (every worker does,
//! and the queue keeps one row of each), claims one row at a time, renews its lease while
//! the work runs, and finishes, fails or gives back the row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::queue::{Claim, Kind, Queue};
use crate::config::Config;
use crate::engine::{Outcome, RunControl};
use crate::ledger::postgres::Db;
use crate::retry_job::Request;
use crate::schedule::next_fire;
use crate::source::partition::Partition;
use crate::sync::{Host, RunOptions};

/// How a worker claims and holds work.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// How long a lease lasts without renewal: how soon another worker takes over the
    /// work of one that died. Renewed every third of it.
    pub lease_timeout: Duration,
    /// How often an idle worker looks for work.
    pub poll: Duration,
    /// How long in-flight requests may finish after a stop (SIGTERM, a lost lease).
    pub grace: Duration,
    /// Queue a run of every sync when the worker starts (`sluice serve --now`); a sync
    /// that has one queued or running gets no second.
    pub now: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            lease_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            grace: Duration::from_secs(10),
            now: false,
        }
    }
}

/// A worker of the pool.
pub struct Pool {
    host: Arc<Host>,
    config: Config,
    queue: Arc<Queue>,
    options: PoolOptions,
    /// True while the worker takes work (for `/readyz`).
    pub ready: Arc<AtomicBool>,
}

impl Pool {
    /// A worker over `host`'s state database, with a connection of its own for the queue,
    /// so that renewing a lease never waits behind a long read of the ledger.
    pub fn new(host: Arc<Host>, config: Config, options: PoolOptions) -> Result<Pool> {
        let crate::config::StateBackend::Postgres { url_env, schema } = &config.state else {
            anyhow::bail!("a pool of workers needs the state in PostgreSQL ([state] postgres)");
        };
        let db = Arc::new(Db::connect_env(url_env, schema)?);
        let owner = format!(
            "{}:{}",
            hostname().unwrap_or_else(|| "worker".into()),
            std::process::id()
        );
        Ok(Pool {
            host,
            config,
            queue: Arc::new(Queue::new(db, owner)),
            options,
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Queues a run of each of `syncs` now (`sluice enqueue`, `sluice serve --now`).
    pub fn enqueue_now(queue: &Queue, config: &Config, syncs: &[String]) -> Result<u64> {
        let now = crate::clock::now_ms();
        let mut added = 0;
        for name in syncs {
            let sync = config.sync(name)?;
            added += queue
                .enqueue(name, Kind::Run, sync.partitions, now)
                .map_err(|e| anyhow::anyhow!("queueing a run of `{name}`: {e}"))?;
        }
        Ok(added)
    }

    /// Works until `stop`: then the work in hand stops within the grace period and its
    /// row is given back, due again at once.
    pub async fn serve(&self, stop: CancellationToken) -> Result<()> {
        let names: Vec<String> = self.config.syncs.iter().map(|s| s.name.clone()).collect();
        if self.options.now {
            Pool::enqueue_now(&self.queue, &self.config, &names)?;
        }
        let mut schedule = Schedule::new(&self.config, crate::clock::now());
        schedule.say_next();
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!(worker = %self.queue.owner, "pool worker: taking work");
        while !stop.is_cancelled() {
            schedule.enqueue_due(&self.queue, &self.config, crate::clock::now())?;
            let claim = self
                .queue
                .claim(self.options.lease_timeout)
                .map_err(|e| anyhow::anyhow!("claiming work: {e}"))?;
            match claim {
                Some(claim) => self.work(claim, &stop).await,
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.options.poll) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        }
        self.ready.store(false, Ordering::SeqCst);
        tracing::info!(worker = %self.queue.owner, "pool worker: stopped");
        Ok(())
    }

    /// Does one claimed row under its lease.
    async fn work(&self, claim: Claim, stop: &CancellationToken) {
        tracing::info!(work = %claim.id, generation = claim.generation, "claimed");
        let run_stop = stop.child_token();
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = tokio::spawn(renew(
            self.queue.clone(),
            claim.clone(),
            self.options.lease_timeout,
            run_stop.clone(),
            lost.clone(),
        ));
        let outcome = self.run(&claim, run_stop).await;
        renewal.abort();
        if lost.load(Ordering::SeqCst) {
            tracing::warn!(work = %claim.id, "the lease moved to another worker: this worker stopped the work and settled nothing more of it");
            return;
        }
        // A run stopped by a fenced write ends here too: the row's generation has moved,
        // so finishing or releasing it changes nothing and says so.
        let ended = match outcome {
            Ok(Outcome::Interrupted) if stop.is_cancelled() => self.queue.release(&claim),
            Ok(Outcome::Completed) => self.queue.finish(&claim, None),
            Ok(other) => self
                .queue
                .finish(&claim, Some(format!("the run ended {other:?}"))),
            Err(error) => self.queue.finish(&claim, Some(error)),
        };
        match ended {
            Ok(true) => tracing::info!(work = %claim.id, "work ended"),
            Ok(false) => tracing::warn!(
                work = %claim.id,
                "the lease moved to another worker before the work ended: this worker settled \
                 nothing more of it"
            ),
            Err(err) => tracing::error!(work = %claim.id, "recording the end of the work: {err}"),
        }
    }

    /// Runs the row's work on a fenced view of the ledger: the run's outcome, or why it
    /// could not run (as text, for the row).
    async fn run(&self, claim: &Claim, stop: CancellationToken) -> Result<Outcome, String> {
        if self.config.sync(&claim.sync).is_err() {
            return Err(format!(
                "sync `{}` is not in this worker's config `{}`",
                claim.sync,
                self.config.path.display()
            ));
        }
        let ledger = self
            .host
            .ledger()
            .fenced(claim.fence())
            .map_err(|err| format!("{err:#}"))?;
        let host = self.host.with_ledger(ledger);
        let control = RunControl {
            stop,
            grace: self.options.grace,
            ..RunControl::default()
        };
        let report = match claim.kind {
            Kind::Run => {
                let partition = (claim.parts > 1).then_some(Partition {
                    index: claim.part,
                    count: claim.parts,
                });
                let options = RunOptions {
                    partition,
                    ..RunOptions::default()
                };
                host.run_with(&self.config, &claim.sync, control, options)
                    .await
                    .map(Some)
            }
            Kind::Retry => host
                .retry(&self.config, &claim.sync, &Request::default(), control)
                .await
                .map(|report| report.run),
        };
        match report {
            Ok(Some(report)) => {
                let summary = serde_json::to_string(&report.summary).unwrap_or_default();
                tracing::info!(work = %claim.id, %summary, "run done");
                Ok(report.summary.outcome)
            }
            Ok(None) => Ok(Outcome::Completed),
            Err(err) => Err(format!("{err:#}")),
        }
    }
}

/// Renews `claim`'s lease every third of `lease` until aborted; when the lease has moved
/// on (or cannot be renewed before it runs out), stops the work.
async fn renew(
    queue: Arc<Queue>,
    claim: Claim,
    lease: Duration,
    stop: CancellationToken,
    lost: Arc<AtomicBool>,
) {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(lease / 3).await;
        let (q, c) = (queue.clone(), claim.clone());
        let renewed = tokio::task::spawn_blocking(move || q.renew(&c, lease)).await;
        match renewed {
            Ok(Ok(true)) => last_renewed = tokio::time::Instant::now(),
            Ok(Ok(false)) => {
                tracing::warn!(work = %claim.id, "the lease on this work moved to another worker: stopping it");
                lost.store(true, Ordering::SeqCst);
                stop.cancel();
                return;
            }
            Ok(Err(err)) => {
                tracing::warn!(work = %claim.id, "renewing the lease: {err}");
                if last_renewed.elapsed() >= lease {
                    lost.store(true, Ordering::SeqCst);
                    stop.cancel();
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// The next due time of each scheduled sync run and retry pass, from when this worker
/// started: every worker computes the same times, and the queue keeps one row of each.
struct Schedule {
    next: Vec<(String, Kind, SystemTime)>,
}

impl Schedule {
    fn new(config: &Config, now: SystemTime) -> Schedule {
        let mut next = Vec::new();
        for sync in &config.syncs {
            if let Some(at) = next_fire(&sync.schedule, now) {
                next.push((sync.name.clone(), Kind::Run, at));
            }
            if let Some(at) = next_fire(&sync.retry_job.schedule, now) {
                next.push((sync.name.clone(), Kind::Retry, at));
            }
        }
        Schedule { next }
    }

    /// Logs the earliest scheduled work.
    fn say_next(&self) {
        if let Some((name, kind, at)) = self.next.iter().min_by_key(|(_, _, at)| *at) {
            tracing::info!(
                sync = %name,
                ?kind,
                at = %humantime::format_rfc3339_seconds(*at),
                "next scheduled work"
            );
        }
    }

    /// Queues what has come due, and moves each to its next time.
    fn enqueue_due(&mut self, queue: &Queue, config: &Config, now: SystemTime) -> Result<()> {
        let mut moved = false;
        for (name, kind, at) in &mut self.next {
            if *at > now {
                continue;
            }
            let sync = config.sync(name)?;
            let due_ms = at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            queue
                .enqueue(name, *kind, sync.partitions, due_ms)
                .map_err(|e| {
                    anyhow::anyhow!("queueing the {kind:?} of `{name}` due at {due_ms}: {e}")
                })?;
            let times = match kind {
                Kind::Run => &sync.schedule,
                Kind::Retry => &sync.retry_job.schedule,
            };
            *at = next_fire(times, *at).context("a schedule with no times")?;
            moved = true;
        }
        if moved {
            self.say_next();
        }
        Ok(())
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}
