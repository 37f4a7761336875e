//! A pool of `sluice serve` workers sharing one PostgreSQL state database: the work is
//! shared and done once, a worker killed mid-run loses nothing, a worker whose lease moved
//! on settles and sends nothing more, and each scheduled run happens once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::process::Child;

use crate::common::{self, Postgres, Scenario};

mod by_hand;
mod fencing;
mod schedule;
mod sharing;

/// The variable the workers read the state database's URL from.
const URL_ENV: &str = "SLUICE_TEST_POOL_URL";
/// Each worker's destination token: the simulator logs it, so a request names its worker.
const TOKEN_ENV: &str = "SLUICE_TEST_WORKER_TOKEN";

/// A `sluice serve` worker, its log in a file (a pipe nobody reads would stall it).
struct Worker {
    child: Child,
    log: PathBuf,
    pub token: String,
}

impl Worker {
    fn start(config: &Path, pg: &Postgres, name: &str, lease: &str) -> Worker {
        let log = config.with_file_name(format!("worker-{name}.log"));
        let token = format!("worker-{name}-token-0123456789");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .args(["--metrics-addr", "127.0.0.1:0", "--lease-timeout", lease])
            .args(["--grace", "2s"])
            .env(URL_ENV, &pg.url)
            .env(TOKEN_ENV, &token)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Worker { child, log, token }
    }

    fn pid(&self) -> i32 {
        self.child.id().unwrap() as i32
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGTERM, then the exit status.
    async fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("a worker stops within 20 s of SIGTERM")
            .unwrap()
    }

    /// The worker's log lines, as JSON.
    fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One row of the work queue.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    state: String,
    owner: Option<String>,
    generation: i64,
    due_at: i64,
}

async fn rows(pg: &Postgres, schema: &str) -> Vec<Row> {
    let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let sql = format!(
        "select id, state, owner, generation, due_at from \"{schema}\".sluice_work order by id"
    );
    match client.query(&sql, &[]).await {
        Ok(found) => found
            .iter()
            .map(|r| Row {
                id: r.get(0),
                state: r.get(1),
                owner: r.get(2),
                generation: r.get(3),
                due_at: r.get(4),
            })
            .collect(),
        // The first worker has not created the tables yet.
        Err(_) => Vec::new(),
    }
}

/// The keys the ledger holds as delivered.
async fn delivered_keys(pg: &Postgres, schema: &str) -> std::collections::BTreeSet<String> {
    let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let sql = format!("select key from \"{schema}\".sluice_delivered where sync = 's'");
    client
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits for `done` to hold, checking every 100 ms, at most `limit`.
async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The config of sync `s`: `records` to `dest` in `partitions`, the state in `schema` of
/// `pg`, each worker's token as its bearer credential.
fn pool_scenario(base_url: &str, records: Vec<Value>, partitions: u32, schema: &str) -> Scenario {
    Scenario::rest(base_url)
        .records(records)
        .postgres_state(URL_ENV, schema)
        .sync(&format!(
            "partitions = {partitions}\nauth = {{ bearer_env = \"{TOKEN_ENV}\" }}"
        ))
}

/// The accept-all REST simulator, every `every`th request answered `delay` late: a run
/// that lasts long enough to be stopped, killed or paused in.
async fn slow_destination(every: u64, delay: Duration) -> sluice_sim::SimHandle {
    let faults = sluice_sim::Faults {
        latency: Some(sluice_sim::faults::Latency { every, delay }),
        ..Default::default()
    };
    common::rest_sim(sluice_sim::rest::RestMode::AcceptAll, faults).await
}

/// `sluice enqueue` for `config`, which must succeed.
async fn enqueue(config: &Path, pg: &Postgres) {
    common::sluice_ok(&["enqueue"], config, &[(URL_ENV, &pg.url)]).await;
}

fn since(at: SystemTime) -> Duration {
    at.elapsed().unwrap_or_default()
}
