//! Throughput of Sluice against the simulated REST destination (accept-all mode), beside a
//! raw native client (reqwest) that posts the same batches at the same concurrency to the
//! same server. Results and how to read them: BENCHMARKS.md.
//!
//!     cargo bench -p sluice --bench throughput -- [--records N] [--rounds R]
//!
//! Three kinds of process take part, all started from this binary so that each one's CPU
//! time and peak memory can be read exactly with `wait4` once it exits:
//!
//! - the simulated destination (`--serve`): a fresh one for every run, so that the records
//!   it stores (it keeps every one) count against neither client and every run meets the
//!   same empty server;
//! - the raw client (`--raw`): a child too, rather than a task of this process, so that it
//!   is timed and measured exactly like Sluice;
//! - Sluice itself: the real release binary, `sluice run --json`.
//!
//! Runs alternate, raw then Sluice, for each round; the medians are printed at the end.
//! Last, the connector is timed alone (no server, no other thread busy) to give its CPU
//! time per batch, which `connector_ms` cannot: that is wall time inside calls, and with
//! eight workers on two cores it includes waiting for a core. The ledger is timed alone
//! too, settling every record as delivered, since it is most of what Sluice adds.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::{Deserialize, Serialize};
use sluice::sandbox::{HttpResponse, Runtime, SandboxLimits, SourceRecord, Verdict};
use sluice_sim::rest::{RestConfig, RestMode};

mod support;
use support::{
    BATCH, CONCURRENCY, MIB, PATH, Server, Stopped, Usage, load_average, total_memory_gib, wait,
    write_config,
};

/// Records of the warm-up run, which compiles the connector into the on-disk cache.
const WARM_UP_RECORDS: usize = 20_000;
/// Batches the connector is timed on alone (see `connector_alone`).
const ALONE_BATCHES: usize = 1_000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--serve") => serve(),
        Some("--raw") => raw_client(&args[1..]),
        _ => bench(&args),
    }
}

// ---------------------------------------------------------------------------------------
// The benchmark: the parent process.

/// `cargo bench -p sluice --bench throughput -- [--records N] [--rounds R]`
#[derive(clap::Parser)]
struct Options {
    /// Records of each run.
    #[arg(long, default_value = "1000000", value_parser = support::count)]
    records: usize,
    /// Rounds of raw client and Sluice, alternating.
    #[arg(long, default_value = "3", value_parser = support::count)]
    rounds: usize,
    #[command(flatten)]
    _cargo: support::CargoBench,
}

fn bench(args: &[String]) -> Result<()> {
    let options: Options = support::options(args)?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let data = dir.path().join("records.jsonl");
    let warm_up = dir.path().join("warm-up.jsonl");
    let bytes = support::write_records(&data, options.records)?;
    // The same generator: the warm-up is the first records of the run's.
    support::write_records(&warm_up, WARM_UP_RECORDS.min(options.records))?;
    println!(
        "{} records, {:.0} bytes each on average ({:.1} MiB), batch {BATCH}, concurrency {CONCURRENCY}",
        options.records,
        bytes as f64 / options.records as f64,
        bytes as f64 / MIB,
    );
    println!(
        "machine: {} cores, {:.1} GiB memory, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        total_memory_gib(),
        load_average()
    );

    // The first run compiles the connector (cached on disk after): keep it out of the
    // measured runs.
    let warm = run_sluice(dir.path(), &warm_up, WARM_UP_RECORDS.min(options.records))?;
    println!(
        "warm-up: Sluice delivered {} records in {:.2} s (connector compiled and cached)\n",
        warm.records,
        warm.wall.as_secs_f64()
    );

    let mut rounds = Vec::new();
    println!(
        "{:<5} {:<6} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>10} {:>7}",
        "round",
        "client",
        "wall s",
        "records/s",
        "CPU s",
        "RSS MiB",
        "server s",
        "conn. ms",
        "µs/batch",
        "share"
    );
    let mut checked_runs = Vec::new();
    for round in 1..=options.rounds {
        let raw = run_raw(&data, options.records, false)?;
        print_run(round, "raw", &raw);
        let checked = run_raw(&data, options.records, true)?;
        print_run(round, "native", &checked);
        let sluice = run_sluice(dir.path(), &data, options.records)?;
        print_run(round, "sluice", &sluice);
        checked_runs.push((checked, sluice.per_second()));
        rounds.push((raw, sluice));
    }
    let alone = connector_alone(dir.path(), &data, options.records)?;
    let ledger = ledger_alone(dir.path(), &data)?;
    print_medians(&rounds, &alone, &ledger);
    print_native(&checked_runs);
    // Other work on the machine skews every number: say how busy it was.
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// One run of either client, measured from outside.
struct Run {
    records: u64,
    requests: u64,
    /// From starting the process to its exit.
    wall: Duration,
    /// The client's own time from start to last response (Sluice: `elapsed_ms`, which
    /// leaves out loading the connector).
    inner: Duration,
    usage: Usage,
    /// The simulated destination's CPU time during the run.
    server_cpu: Duration,
    /// Sluice only: time spent inside connector calls, summed over workers.
    connector: Option<Duration>,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64()
    }

    /// Connector time per request, in microseconds.
    fn connector_per_batch_us(&self) -> Option<f64> {
        let connector = self.connector?;
        Some(connector.as_secs_f64() * 1e6 / self.requests.max(1) as f64)
    }

    /// The connector's share of the process's CPU time.
    fn connector_share(&self) -> Option<f64> {
        Some(self.connector?.as_secs_f64() / self.usage.cpu.as_secs_f64())
    }
}

fn print_run(round: usize, client: &str, run: &Run) {
    let optional = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
    };
    println!(
        "{round:<5} {client:<6} {:>8.2} {:>9.0} {:>8.2} {:>8.0} {:>9.2} {:>9} {:>10} {:>7}",
        run.wall.as_secs_f64(),
        run.per_second(),
        run.usage.cpu.as_secs_f64(),
        run.usage.peak_rss as f64 / MIB,
        run.server_cpu.as_secs_f64(),
        optional(run.connector.map(|c| c.as_secs_f64() * 1e3), 0),
        optional(run.connector_per_batch_us(), 0),
        run.connector_share()
            .map_or_else(|| "-".to_string(), |s| format!("{:.1}%", s * 100.0)),
    );
}

/// The tuned native client (`native`: each line checked to be one JSON object, no DOM)
/// against Sluice, round by round.
fn print_native(runs: &[(Run, f64)]) {
    let median = support::median_of;
    let native = median(runs.iter().map(|(n, _)| n.per_second()).collect());
    let ratio = median(runs.iter().map(|(n, s)| s / n.per_second()).collect());
    let cpu = median(
        runs.iter()
            .map(|(n, _)| n.usage.cpu.as_secs_f64())
            .collect(),
    );
    println!(
        "  native client (reads the JSONL, checks each line is one object, splices the \
         lines): {native:.0} records/s, {cpu:.2} CPU s"
    );
    println!("  sluice / native: {ratio:.3} (median of the per-round ratios; target at least 0.6)");
}

fn print_medians(rounds: &[(Run, Run)], alone: &ConnectorCost, ledger: &LedgerCost) {
    let median =
        |f: &dyn Fn(&(Run, Run)) -> f64| support::median_of(rounds.iter().map(f).collect());
    let raw = median(&|(r, _)| r.per_second());
    let sluice = median(&|(_, s)| s.per_second());
    println!("\nmedians over {} rounds:", rounds.len());
    println!("  raw reqwest:  {raw:>9.0} records/s");
    println!("  sluice:       {sluice:>9.0} records/s");
    println!(
        "  sluice / raw: {:.3} (median of the per-round ratios; target at least 0.85)",
        median(&|(r, s)| s.per_second() / r.per_second())
    );
    println!(
        "  sluice, own elapsed_ms (connector loaded): {:.0} records/s",
        median(&|(_, s)| s.records as f64 / s.inner.as_secs_f64())
    );
    println!(
        "  CPU s (user+sys): raw {:.2}, sluice {:.2}; server during the run: raw {:.2}, sluice {:.2}",
        median(&|(r, _)| r.usage.cpu.as_secs_f64()),
        median(&|(_, s)| s.usage.cpu.as_secs_f64()),
        median(&|(r, _)| r.server_cpu.as_secs_f64()),
        median(&|(_, s)| s.server_cpu.as_secs_f64()),
    );
    println!(
        "  connector_ms per batch (wall time in calls): {:.0} µs; as a share of Sluice's CPU time: {:.1}%",
        median(&|(_, s)| s.connector_per_batch_us().unwrap_or(0.0)),
        median(&|(_, s)| s.connector_share().unwrap_or(0.0)) * 100.0
    );
    let per_batch = alone.precheck + alone.build + alone.classify;
    println!(
        "  connector alone, CPU per batch of {BATCH} over {} batches: precheck {:.0} µs, \
         build-request {:.0} µs, classify {:.0} µs, total {:.0} µs",
        alone.batches,
        alone.precheck * 1e6,
        alone.build * 1e6,
        alone.classify * 1e6,
        per_batch * 1e6,
    );
    println!(
        "  connector CPU (alone, per batch x requests) as a share of Sluice's CPU time: {:.1}%",
        median(&|(_, s)| per_batch * s.requests as f64 / s.usage.cpu.as_secs_f64()) * 100.0
    );
    println!(
        "  ledger alone, {} records settled as delivered in batches of {BATCH} (one thread, \
         sled's own threads included): {:.2} µs CPU per record, {:.1}% of Sluice's CPU time",
        ledger.records,
        ledger.cpu.as_secs_f64() * 1e6 / ledger.records as f64,
        median(&|(_, s)| {
            ledger.cpu.as_secs_f64() * s.records as f64
                / ledger.records as f64
                / s.usage.cpu.as_secs_f64()
        }) * 100.0
    );
    println!(
        "  peak RSS: raw {:.0} MiB, sluice {:.0} MiB",
        median(&|(r, _)| r.usage.peak_rss as f64 / MIB),
        median(&|(_, s)| s.usage.peak_rss as f64 / MIB),
    );
}

// ---------------------------------------------------------------------------------------
// Data: deterministic records of about 300 bytes, keyed by `id`.

// ---------------------------------------------------------------------------------------
// The simulated destination, in a child process (see `support::Server`).

/// What the server says when it stops.
#[derive(Serialize, Deserialize)]
struct ServerReport {
    requests: u64,
    records_stored: u64,
}

fn start_server() -> Result<Server> {
    Server::start(&["--serve"])
}

/// Stops the server; checks it stored exactly `records` records.
fn stop_server(server: Server, records: usize) -> Result<Usage> {
    let stopped: Stopped<ServerReport> = server.stop()?;
    ensure!(
        stopped.records_stored == records as u64,
        "the server stored {} records, not {records}",
        stopped.records_stored
    );
    Ok(stopped.usage)
}

/// Runs the server: the child side of [`Server`].
fn serve() -> Result<()> {
    let config = RestConfig {
        mode: RestMode::AcceptAll,
        // The request log would otherwise keep a copy of every key.
        record_keys: false,
        path: PATH.to_string(),
        ..Default::default()
    };
    support::serve(config, |sim| {
        let stats = sim.stats();
        ServerReport {
            requests: stats.requests,
            records_stored: stats.records_stored,
        }
    })
}

// ---------------------------------------------------------------------------------------
// The connector alone: the three calls Sluice makes per batch, on this thread.

/// Mean CPU seconds per call.
struct ConnectorCost {
    batches: usize,
    precheck: f64,
    build: f64,
    classify: f64,
}

struct LedgerCost {
    records: usize,
    cpu: Duration,
}

/// Settles the records of the data as delivered through the ledger code Sluice runs
/// (`SyncLedger::record`: the next entry, postcard, one sled batch per verdict) into a
/// fresh ledger, then flushes it. The CPU time counted is the whole process's (sled
/// writes from threads of its own) less what reading the data took.
fn ledger_alone(dir: &Path, data: &Path) -> Result<LedgerCost> {
    let state = dir.join("ledger-alone");
    let ledger = sluice::ledger::Ledger::open(&state)?;
    let sync = ledger.sync("bench")?;
    #[derive(Deserialize)]
    struct Key {
        id: String,
    }
    let mut lines = BufReader::new(std::fs::File::open(data)?).lines();
    let (started, mut reading) = (process_cpu(), Duration::ZERO);
    let mut records = 0;
    loop {
        let read_started = thread_cpu();
        let mut batch = Vec::with_capacity(BATCH);
        for line in lines.by_ref().take(BATCH) {
            let payload = line?;
            let key = serde_json::from_str::<Key>(&payload)?.id;
            batch.push(sluice::engine::Settled {
                record: SourceRecord::new(key, payload),
                fate: sluice::engine::Fate::Delivered(None),
                attempts: 1,
            });
        }
        reading += thread_cpu() - read_started;
        if batch.is_empty() {
            break;
        }
        records += batch.len();
        sync.record(&batch, sluice::ledger::now_ms())?;
    }
    ledger.flush()?;
    let cpu = process_cpu()
        .saturating_sub(started)
        .saturating_sub(reading);
    ensure!(
        sync.len() == records,
        "the ledger holds {} of {records} records",
        sync.len()
    );
    drop((sync, ledger));
    std::fs::remove_dir_all(&state)?;
    Ok(LedgerCost { records, cpu })
}

/// CPU time of the whole process, every thread.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime only writes the timespec it is given.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Calls precheck, build-request and classify (on the response the simulator gives) for
/// the first `ALONE_BATCHES` batches of the data, through one instance of `builtin:rest`
/// loaded the way Sluice loads it (same sandbox, limits and compile cache).
fn connector_alone(dir: &Path, data: &Path, records: usize) -> Result<ConnectorCost> {
    let runtime = Runtime::new(Some(dir.join("cache")))?;
    let wasm = sluice::builtin::component("rest").context("no bundled rest connector")?;
    let connector = runtime.load("rest", wasm, SandboxLimits::default())?;
    let mut instance = connector.instantiate("bench").map_err(|e| anyhow!("{e}"))?;
    instance
        .configure(&[("path".to_string(), PATH.to_string())])
        .map_err(|e| anyhow!("{e}"))?
        .map_err(|f| anyhow!("configure: {}: {}", f.code, f.message))?;

    #[derive(Deserialize)]
    struct Key {
        id: String,
    }
    let take = records.min(ALONE_BATCHES * BATCH);
    let input = BufReader::new(std::fs::File::open(data)?);
    let mut batch_records = Vec::with_capacity(take);
    for line in input.lines().take(take) {
        let payload = line?;
        let key = serde_json::from_str::<Key>(&payload)?.id;
        batch_records.push(SourceRecord::new(key, payload));
    }

    let (mut precheck, mut build, mut classify) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut batches = 0;
    for batch in batch_records.chunks(BATCH) {
        // Built outside the timed calls, as the host does before calling classify.
        let keys: Vec<String> = batch.iter().map(|r| r.key.clone()).collect();
        let response = HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!("{{\"accepted\":{}}}", batch.len()).into_bytes(),
            truncated: false,
            received_at_ms: 0,
        };

        let started = thread_cpu();
        let outcomes = instance.precheck(batch).map_err(|e| anyhow!("{e}"))?;
        let prechecked = thread_cpu();
        let request = instance
            .build_request(batch, "bench")
            .map_err(|e| anyhow!("{e}"))?;
        let built = thread_cpu();
        let verdict = instance
            .classify(&keys, sluice::sandbox::Operation::Upsert, &response)
            .map_err(|e| anyhow!("{e}"))?;
        let classified = thread_cpu();

        ensure!(
            outcomes.iter().all(Option::is_none),
            "precheck settled records"
        );
        let request = request.map_err(|f| anyhow!("build-request: {}", f.message))?;
        ensure!(request.body.len() > batch.len(), "an empty request body");
        ensure!(
            matches!(verdict, Verdict::PerRecord(_)),
            "classify did not deliver the batch"
        );
        precheck += prechecked - started;
        build += built - prechecked;
        classify += classified - built;
        batches += 1;
    }
    let mean = |total: Duration| total.as_secs_f64() / batches as f64;
    Ok(ConnectorCost {
        batches,
        precheck: mean(precheck),
        build: mean(build),
        classify: mean(classify),
    })
}

// ---------------------------------------------------------------------------------------
// Sluice: the release binary, as an operator runs it.

#[derive(Deserialize)]
struct Summary {
    outcome: String,
    delivered: u64,
    requests: u64,
    connector_ms: u64,
    elapsed_ms: u64,
}

fn run_sluice(dir: &Path, data: &Path, records: usize) -> Result<Run> {
    let server = start_server()?;
    // A fresh ledger for every run: with the ledger of an earlier run, Sluice would rightly
    // skip every record it already delivered unchanged.
    let state = dir.join("state");
    if state.exists() {
        std::fs::remove_dir_all(&state)?;
    }
    let config = write_config(dir, "bench", data, "state", &server, &[])?;
    let started = Instant::now();
    // Its log and progress lines go to a file, shown when the run fails.
    let log = dir.join("sluice.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--json", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting sluice")?;
    let mut output = String::new();
    child.stdout.take().unwrap().read_to_string(&mut output)?;
    let usage = wait(child, "sluice run").with_context(|| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        format!("sluice's output: {output}\nits log: {log}")
    })?;
    let wall = started.elapsed();
    let server_usage = stop_server(server, records)?;

    let summary: Summary = serde_json::from_str(output.trim())
        .with_context(|| format!("sluice's summary: {output:?}"))?;
    ensure!(
        summary.outcome == "completed" && summary.delivered == records as u64,
        "sluice did not deliver every record: {output}"
    );
    Ok(Run {
        records: summary.delivered,
        requests: summary.requests,
        wall,
        inner: Duration::from_millis(summary.elapsed_ms),
        usage,
        server_cpu: server_usage.cpu,
        connector: Some(Duration::from_millis(summary.connector_ms)),
    })
}

// ---------------------------------------------------------------------------------------
// The raw client: what a hand-written native client does with the same file, and nothing
// more. It streams the file, joins each 200 lines into a bare JSON array (the body the
// rest connector builds) and posts it, 8 requests in flight, reading every response.

#[derive(Serialize, Deserialize)]
struct RawReport {
    records: u64,
    requests: u64,
    elapsed_us: u64,
}

/// One run of the raw client; `check`: the tuned native client, which checks that each
/// line is one JSON object (without building it) before splicing it into the body.
fn run_raw(data: &Path, records: usize, check: bool) -> Result<Run> {
    let server = start_server()?;
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--raw")
        .arg(format!("{}{PATH}", server.base_url))
        .arg(data)
        .args(check.then_some("--check"))
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the raw client")?;
    let mut output = String::new();
    child.stdout.take().unwrap().read_to_string(&mut output)?;
    let usage = wait(child, "raw client")?;
    let wall = started.elapsed();
    let server_usage = stop_server(server, records)?;

    let report: RawReport = serde_json::from_str(output.trim())
        .with_context(|| format!("the raw client's report: {output:?}"))?;
    ensure!(
        report.records == records as u64,
        "the raw client sent {} records, not {records}",
        report.records
    );
    Ok(Run {
        records: report.records,
        requests: report.requests,
        wall,
        inner: Duration::from_micros(report.elapsed_us),
        usage,
        server_cpu: server_usage.cpu,
        connector: None,
    })
}

/// The child side of [`run_raw`]: `--raw URL FILE`.
fn raw_client(args: &[String]) -> Result<()> {
    let (url, file, check) = match args {
        [url, file] => (url, file, false),
        [url, file, flag] if flag == "--check" => (url, file, true),
        _ => bail!("usage: --raw URL FILE [--check]"),
    };
    let (url, file) = (url.clone(), PathBuf::from(file));
    // The same runtime `sluice` starts: one worker thread per core.
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async move {
        let started = Instant::now();
        let client = reqwest::Client::new();
        // As in Sluice, a reader thread fills a queue of twice the concurrency.
        let (tx, rx) = tokio::sync::mpsc::channel::<(String, u64)>(CONCURRENCY * 2);
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            let input = BufReader::with_capacity(256 * 1024, std::fs::File::open(&file)?);
            let (mut body, mut count) = (String::from("["), 0u64);
            for line in input.lines() {
                let line = line?;
                if check {
                    let one_object = line.trim_start().starts_with('{')
                        && serde_json::from_str::<serde::de::IgnoredAny>(&line).is_ok();
                    ensure!(one_object, "a line is not one JSON object: {line}");
                }
                if count > 0 {
                    body.push(',');
                }
                body.push_str(line.trim());
                count += 1;
                if count == BATCH as u64 {
                    body.push(']');
                    let full = std::mem::replace(&mut body, String::from("["));
                    if tx.blocking_send((full, count)).is_err() {
                        bail!("every sender stopped");
                    }
                    count = 0;
                }
            }
            if count > 0 {
                body.push(']');
                let _ = tx.blocking_send((body, count));
            }
            Ok(())
        });
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENCY {
            let (client, rx, url) = (client.clone(), rx.clone(), url.clone());
            senders.spawn(async move {
                let (mut records, mut requests) = (0u64, 0u64);
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some((body, count)) = next else {
                        return Ok::<_, anyhow::Error>((records, requests));
                    };
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    let status = response.status();
                    let answer = response.bytes().await?;
                    ensure!(
                        status.is_success(),
                        "{status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                    records += count;
                    requests += 1;
                }
            });
        }
        let (mut records, mut requests) = (0, 0);
        while let Some(joined) = senders.join_next().await {
            let (r, q) = joined??;
            records += r;
            requests += q;
        }
        reader.await??;
        Ok::<_, anyhow::Error>(RawReport {
            records,
            requests,
            elapsed_us: started.elapsed().as_micros() as u64,
        })
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
