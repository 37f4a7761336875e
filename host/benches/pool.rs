//! The PostgreSQL state backend and a pool of workers: a first load of N records (default
//! 1,000,000) by 1, 2 and 4 `sluice serve` workers sharing one database, beside `sluice
//! run` on the embedded store; then the retry job's selection over a ledger in the
//! database of N entries, 5% of them failed. Results: BENCHMARKS.md.
//!
//!     cargo bench -p sluice --bench pool -- [--records N] [--workers 1,2,4]
//!
//! The bench starts its own PostgreSQL (Debian's `postgresql` must be installed) and the
//! throughput bench's accept-all destination (this binary, `--serve`), a fresh one per
//! load. The sync has 8 partitions. Reported per load: wall time from `sluice enqueue` to
//! the last partition done, records/s, the workers' CPU time, the database's CPU time
//! (its backends, once they have ended) and the WAL and table bytes written per record.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sluice_sim::postgres::Postgres;
use sluice_sim::rest::{RestConfig, RestMode};

mod support;
use support::{BATCH, CONCURRENCY, MIB, PATH, SYNC, Server, Usage, wait};

const URL_ENV: &str = "SLUICE_BENCH_STATE_URL";
const PARTITIONS: u32 = 8;

/// `cargo bench -p sluice --bench pool -- [--records N] [--workers 1,2,4]`
#[derive(clap::Parser)]
struct Options {
    #[arg(long, default_value = "1000000", value_parser = support::count)]
    records: usize,
    /// Pool sizes to load with, in turn.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    workers: Vec<usize>,
    #[command(flatten)]
    _cargo: support::CargoBench,
}

#[derive(Serialize, Deserialize)]
struct ServerReport {
    requests: u64,
    records_stored: u64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let config = RestConfig {
            mode: RestMode::AcceptAll,
            record_keys: false,
            path: PATH.to_string(),
            ..Default::default()
        };
        return support::serve(config, |sim| {
            let stats = sim.stats();
            ServerReport {
                requests: stats.requests,
                records_stored: stats.records_stored,
            }
        });
    }
    let options: Options = support::options(&args)?;
    let Some(pg) = Postgres::start() else {
        bail!("this bench needs PostgreSQL installed (Debian's `postgresql`)");
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("records.jsonl");
    let bytes = support::write_records(&data, options.records)?;
    println!(
        "{} records, {:.1} MiB; machine: {} cores, load average {}",
        options.records,
        bytes as f64 / MIB,
        std::thread::available_parallelism()?,
        support::load_average()
    );
    println!(
        "\n{:<22} {:>8} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "load", "wall s", "records/s", "sluice CPU s", "db CPU s", "WAL B/rec", "table B/rec"
    );

    // The embedded store, one process.
    let server = Server::start(&["--serve"])?;
    let config = write_config(dir.path(), "embedded", &data, &server, None)?;
    let started = Instant::now();
    let usage = run_sluice(&["run", "--quiet", "--json", "--config"], &config, &pg)?;
    let wall = started.elapsed();
    let stored = server.stop::<ServerReport>()?;
    ensure!(
        stored.records_stored == options.records as u64,
        "embedded: not every record stored"
    );
    row(
        "embedded, sluice run",
        wall,
        options.records,
        usage.cpu,
        None,
        None,
        None,
    );

    for &workers in &options.workers {
        let schema = format!("bench_{workers}");
        let server = Server::start(&["--serve"])?;
        let config = write_config(dir.path(), &schema, &data, &server, Some(&schema))?;
        let db_before = pg.server_cpu();
        let wal_before = query_i64(&pg, "select pg_current_wal_lsn() - '0/0'::pg_lsn")?;
        let children: Vec<Child> = (0..workers)
            .map(|i| start_worker(&config, &pg, dir.path(), i))
            .collect::<Result<_>>()?;
        let started = Instant::now();
        run_sluice(&["enqueue", "--config"], &config, &pg)?;
        let done = format!("select count(*) from {schema}.sluice_work where state = 'done'");
        while query_i64(&pg, &done)? < i64::from(PARTITIONS) {
            ensure!(
                started.elapsed() < Duration::from_secs(1800),
                "the load took too long"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let wall = started.elapsed();
        let mut cpu = Duration::ZERO;
        for child in children {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            cpu += wait(child, "sluice serve")?.cpu;
        }
        let stored = server.stop::<ServerReport>()?;
        ensure!(
            stored.records_stored == options.records as u64,
            "{workers} workers: not every record stored"
        );
        std::thread::sleep(Duration::from_millis(300));
        let db_cpu = pg.server_cpu().saturating_sub(db_before);
        let wal = query_i64(&pg, "select pg_current_wal_lsn() - '0/0'::pg_lsn")? - wal_before;
        let table = query_i64(
            &pg,
            &format!(
                "select sum(pg_total_relation_size(c.oid))::bigint from pg_class c \
                 join pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname = '{schema}' and c.relkind = 'r'"
            ),
        )?;
        row(
            &format!("postgres, {workers} worker(s)"),
            wall,
            options.records,
            cpu,
            Some(db_cpu),
            Some(wal as f64 / options.records as f64),
            Some(table as f64 / options.records as f64),
        );
    }
    selection(&pg, options.records)?;
    Ok(())
}

fn row(
    name: &str,
    wall: Duration,
    records: usize,
    cpu: Duration,
    db: Option<Duration>,
    wal: Option<f64>,
    table: Option<f64>,
) {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!(
        "{name:<22} {:>8.2} {:>10.0} {:>12.2} {:>12} {:>12} {:>12}",
        wall.as_secs_f64(),
        records as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        opt(db.map(|d| d.as_secs_f64())),
        opt(wal),
        opt(table),
    );
}

/// The retry job's selection over a ledger in the database holding `records` entries,
/// 5% of them failed, written through the library as runs would.
fn selection(pg: &Postgres, records: usize) -> Result<()> {
    use sluice::engine::{Fate, RecordFailure, Settled};
    use sluice::ledger::Ledger;
    // SAFETY: the workers have stopped; this process reads the variable on this thread.
    unsafe { std::env::set_var(URL_ENV, &pg.url) };
    let ledger = Ledger::open_postgres(
        URL_ENV,
        "bench_selection",
        sluice::ledger::postgres::Access::Exclusive,
    )?;
    let sync = ledger.sync(SYNC)?;
    let failed = records / 20;
    let keys: Vec<String> = (0..records).map(|i| format!("r{i:08}")).collect();
    for (chunk_at, chunk) in keys.chunks(BATCH).enumerate() {
        let settled: Vec<Settled> = chunk
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let fate = if (chunk_at * BATCH + i).is_multiple_of(20) {
                    Fate::Rejected(RecordFailure::new("INVALID_EMAIL", "bad email"))
                } else {
                    Fate::Delivered(None)
                };
                Settled {
                    record: sluice::source::Record::new(
                        key.clone(),
                        format!("{{\"id\":\"{key}\",\"email\":\"x\"}}"),
                    ),
                    fate,
                    attempts: 1,
                }
            })
            .collect();
        sync.record(&settled, sluice::clock::now_ms())?;
    }
    support::time_selection(
        &sync,
        failed,
        &format!("in the database, {records} entries"),
    )?;
    Ok(())
}

/// A config for `data` into `server`; the state in `schema` of the database, or embedded.
fn write_config(
    dir: &Path,
    name: &str,
    data: &Path,
    server: &Server,
    schema: Option<&str>,
) -> Result<std::path::PathBuf> {
    let path = dir.join(format!("{name}.toml"));
    let state = match schema {
        Some(schema) => {
            format!(
                "state = {{ postgres = {{ url_env = \"{URL_ENV}\", schema = \"{schema}\" }} }}\n"
            )
        }
        None => String::new(),
    };
    std::fs::write(
        &path,
        format!(
            "cache_dir = \"cache\"\nstate_dir = \"state-{name}\"\n{state}\n\
             [connectors.rest]\ncomponent = \"builtin:rest\"\n\n\
             [[sync]]\nname = \"{SYNC}\"\nconnector = \"rest\"\n\
             source = {{ jsonl = \"{}\", key = \"id\" }}\nbase_url = \"{}\"\n\
             settings = {{ path = \"{PATH}\" }}\nbatch_size = {BATCH}\nconcurrency = {CONCURRENCY}\n\
             partitions = {PARTITIONS}\n",
            data.display(),
            server.base_url
        ),
    )?;
    Ok(path)
}

fn start_worker(config: &Path, pg: &Postgres, dir: &Path, i: usize) -> Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--metrics-addr", "127.0.0.1:0", "--config"])
        .arg(config)
        .env(URL_ENV, &pg.url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("worker-{i}.log")))?)
        .spawn()
        .context("starting a worker")
}

/// Runs `sluice ARGS CONFIG` to its end; its resource usage.
fn run_sluice(args: &[&str], config: &Path, pg: &Postgres) -> Result<Usage> {
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg(config)
        .env(URL_ENV, &pg.url)
        .stdout(Stdio::null())
        .spawn()?;
    wait(child, "sluice")
}

fn query_i64(pg: &Postgres, sql: &str) -> Result<i64> {
    let out = Command::new("psql")
        .args(["-Atc", sql, &pg.url])
        .output()
        .context("psql")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse::<f64>()
        .map(|v| v as i64)
        .with_context(|| format!("{sql}: {text}{}", String::from_utf8_lossy(&out.stderr)))
}
