//! Reading a source alone, without a ledger or a destination: rows per second from a
//! PostgreSQL table, and from the same rows as a JSONL file. Results: BENCHMARKS.md.
//!
//!     cargo bench -p sluice --bench source -- [--rows N] [--rounds R]
//!
//! The bench starts its own PostgreSQL (as the tests do: Debian's `postgresql` must be
//! installed), fills a table of N rows (default 1,000,000) of the throughput bench's shape,
//! writes the same rows as JSONL through the PostgreSQL source itself, then reads each
//! source R times (default 3), alternating, through `sluice::source::open`, the reader a
//! run uses. Reported per read: wall time, rows/s, this process's CPU time and the server's.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sluice::config::{SourceFormat, SourceOrigin, SourceSpec};
use sluice::source::{self, Row};
use sluice_sim::postgres::Postgres;

mod support;

/// The environment variable the bench's source reads its URL from.
const URL_ENV: &str = "SLUICE_BENCH_SOURCE_URL";

/// `cargo bench -p sluice --bench source -- [--rows N] [--rounds R]`
#[derive(clap::Parser)]
struct Options {
    /// Rows of the table and the file.
    #[arg(long, default_value = "1000000", value_parser = support::count)]
    rows: usize,
    /// Reads of each source, alternating.
    #[arg(long, default_value = "3", value_parser = support::count)]
    rounds: usize,
    #[command(flatten)]
    _cargo: support::CargoBench,
}

/// The table: the columns of the throughput bench's records, with a `jsonb`, a
/// `timestamptz` and a `boolean` among them, so that the decoders that cost the most run.
const TABLE: &str = "
    create table customers as
    select i as id,
           'Customer number ' || i as name,
           'customer' || i || '@example.com' as email,
           'Company ' || (i % 1000) as company,
           '+1-555-' || lpad((i % 10000)::text, 4, '0') as phone,
           jsonb_build_object('street', i || ' Main St', 'city', 'Springfield',
                              'zip', lpad((i % 100000)::text, 5, '0')) as address,
           timestamptz '2024-01-01' + i * interval '1 second' as updated_at,
           (i % 2 = 0) as active,
           repeat('n', 80) as notes
    from generate_series(1, $ROWS) i;
    alter table customers add primary key (id);
    analyze customers;";

struct Read {
    rows: u64,
    wall: Duration,
    cpu: Duration,
    server_cpu: Duration,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options: Options = support::options(&args)?;
    let Some(pg) = Postgres::start() else {
        bail!("this bench needs PostgreSQL installed (Debian's `postgresql`)");
    };
    // SAFETY: no other thread runs yet (the runtime is built below).
    unsafe { std::env::set_var(URL_ENV, &pg.url) };
    let runtime = tokio::runtime::Runtime::new()?;
    let sql = TABLE.replace("$ROWS", &options.rows.to_string());
    let started = Instant::now();
    runtime.block_on(pg.execute(&sql));
    println!(
        "{} rows in PostgreSQL in {:.1} s; machine: {} cores, load average {}",
        options.rows,
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism()?,
        support::load_average()
    );
    // The reader drives the driver with `Handle::block_on`, from a thread outside the
    // runtime's workers, as a run's blocking reader thread does.
    let _entered = runtime.enter();
    let dir = tempfile::tempdir()?;
    let postgres = SourceSpec {
        format: SourceFormat::Jsonl,
        origin: SourceOrigin::Postgres {
            url_env: URL_ENV.to_string(),
            query: "select * from customers".to_string(),
        },
        key: "id".to_string(),
    };
    let file = dir.path().join("customers.jsonl");
    let exported = export(&postgres, &file, dir.path())?;
    ensure!(exported == options.rows as u64, "exported {exported} rows");
    let jsonl = SourceSpec {
        format: SourceFormat::Jsonl,
        origin: SourceOrigin::File(file.clone()),
        key: "id".to_string(),
    };
    println!(
        "the same rows as JSONL: {:.1} MiB\n",
        std::fs::metadata(&file)?.len() as f64 / support::MIB
    );
    println!(
        "{:<6} {:<11} {:>8} {:>10} {:>12} {:>15}",
        "round", "source", "wall s", "rows/s", "CPU µs/row", "server µs/row"
    );
    let mut results: Vec<(&str, Read)> = Vec::new();
    for round in 1..=options.rounds {
        for (name, spec) in [("postgres", &postgres), ("jsonl", &jsonl)] {
            let read = read_all(spec, dir.path(), &pg)?;
            ensure!(
                read.rows == options.rows as u64,
                "{name} read {} rows",
                read.rows
            );
            println!(
                "{round:<6} {name:<11} {:>8.2} {:>10.0} {:>12.2} {:>15.2}",
                read.wall.as_secs_f64(),
                read.rows as f64 / read.wall.as_secs_f64(),
                per_row(read.cpu, read.rows),
                per_row(read.server_cpu, read.rows),
            );
            results.push((name, read));
        }
    }
    println!();
    for name in ["postgres", "jsonl"] {
        let rates: Vec<f64> = results
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, r)| r.rows as f64 / r.wall.as_secs_f64())
            .collect();
        println!("{name}: median {:.0} rows/s", support::median_of(rates));
    }
    println!(
        "peak RSS of this process: {:.0} MiB",
        peak_rss() as f64 / support::MIB
    );
    Ok(())
}

fn per_row(time: Duration, rows: u64) -> f64 {
    time.as_secs_f64() * 1e6 / rows as f64
}

/// Reads every row of `spec` once, as a run's reader does.
fn read_all(spec: &SourceSpec, scratch: &std::path::Path, pg: &Postgres) -> Result<Read> {
    let server_before = pg.server_cpu();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut reader = source::open(spec, scratch)?;
    let mut rows = 0u64;
    while let Some(row) = reader.next_row()? {
        match row {
            Row::Record { .. } => rows += 1,
            Row::Invalid { line, reason } => bail!("row {line}: {reason}"),
        }
    }
    drop(reader);
    let wall = started.elapsed();
    let cpu = cpu_time() - cpu_before;
    // The backend's time reaches the postmaster once it has ended and been reaped.
    std::thread::sleep(Duration::from_millis(200));
    Ok(Read {
        rows,
        wall,
        cpu,
        server_cpu: pg.server_cpu().saturating_sub(server_before),
    })
}

/// Writes the PostgreSQL source's rows as a JSONL file: the same records, byte for byte,
/// that the JSONL reader will then read.
fn export(spec: &SourceSpec, file: &PathBuf, scratch: &std::path::Path) -> Result<u64> {
    let mut out = BufWriter::new(std::fs::File::create(file)?);
    let mut reader = source::open(spec, scratch)?;
    let mut rows = 0;
    while let Some(row) = reader.next_row()? {
        let Row::Record { payload, .. } = row else {
            bail!("an invalid row in the bench's table");
        };
        out.write_all(payload.as_bytes())?;
        out.write_all(b"\n")?;
        rows += 1;
    }
    out.flush().context("writing the JSONL copy")?;
    Ok(rows)
}

/// This process's user and system CPU time so far.
fn cpu_time() -> Duration {
    let usage = rusage();
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn peak_rss() -> u64 {
    // Linux reports kilobytes.
    rusage().ru_maxrss as u64 * 1024
}

fn rusage() -> libc::rusage {
    // SAFETY: `rusage` is plain data that getrusage fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage
}
