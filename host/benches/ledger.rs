//! The ledger at scale, and the retry job against a rate-limited destination. Results and
//! how to read them: BENCHMARKS.md.
//!
//!     cargo bench -p sluice --bench ledger -- [--records N] [--failed M] [--rate R]
//!
//! Part 1, the ledger: N records (default 1,000,000) go through Sluice twice with the same
//! state directory. The first run sends them all; the second, with nothing changed, must
//! skip them all (`unchanged` = N, no request). For both: wall time, records/s, peak RSS
//! and CPU time of the `sluice` process, and the ledger's size on disk after each.
//!
//! Part 2, a retry pass: M records (default 50,000) are rejected by a destination that
//! fails every request, so that they sit in a fresh ledger with their payloads. Then
//! `sluice retry` sends them to a destination that serves at most R requests (default 20)
//! per one-second window and answers 429 with `Retry-After` beyond that. The pass time is
//! compared with the ideal, requests needed / R. Two variants: the destination's limit
//! alone, and the same with Sluice's proactive limit set to R per second.
//!
//! The simulated destination runs in a child process (this binary, `--serve MODE`) and
//! Sluice is the real release binary, also a child, so that `wait4` gives each one's CPU
//! time and peak memory exactly, and what the simulator stores never counts against Sluice.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use sluice_sim::Faults;
use sluice_sim::faults::{ErrorBurst, LimitStyle, RateLimit, RetryAfterStyle};
use sluice_sim::rest::{RestConfig, RestMode};

mod support;
use support::{
    BATCH, CONCURRENCY, MIB, PATH, SYNC, Server, Usage, load_average, total_memory_gib, wait,
    write_config,
};

/// Records of the warm-up run, which compiles the connector into the on-disk cache.
const WARM_UP_RECORDS: usize = 2_000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--serve") => serve(
            args.get(1).map(String::as_str).unwrap_or("accept"),
            args.get(2).and_then(|port| port.parse().ok()).unwrap_or(0),
        ),
        _ => bench(&args),
    }
}

// ---------------------------------------------------------------------------------------
// Options.

/// `cargo bench -p sluice --bench ledger -- [--records N] [--failed M] [--rate R]`
#[derive(clap::Parser)]
struct Options {
    /// Records of the first and the unchanged run.
    #[arg(long, default_value = "1000000", value_parser = support::count)]
    records: usize,
    /// Failed records the retry pass sends.
    #[arg(long, default_value = "50000", value_parser = support::count)]
    failed: usize,
    /// Requests per second the destination serves.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    #[command(flatten)]
    _cargo: support::CargoBench,
}

// ---------------------------------------------------------------------------------------
// The benchmark: the parent process.

fn bench(args: &[String]) -> Result<()> {
    let options: Options = support::options(args)?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = dir.path();
    println!(
        "machine: {} cores, {:.1} GiB memory, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        total_memory_gib(),
        load_average()
    );

    let data = dir.join("records.jsonl");
    let bytes = support::write_records(&data, options.records)?;
    let failed_data = dir.join("failed.jsonl");
    support::write_records(&failed_data, options.failed)?;
    let warm_up = dir.join("warm-up.jsonl");
    support::write_records(&warm_up, WARM_UP_RECORDS.min(options.records))?;
    println!(
        "{} records, {:.0} bytes each on average ({:.1} MiB), batch {BATCH}, concurrency {CONCURRENCY}",
        options.records,
        bytes as f64 / options.records as f64,
        bytes as f64 / MIB,
    );

    // The first run compiles the connector into the cache; keep that out of the measures.
    let server = start_server("accept")?;
    let config = write_config(dir, "warm-up", &warm_up, "state-warm-up", &server, &[])?;
    let warm = sluice(dir, &["run"], &config)?;
    server.stop::<ServerReport>()?;
    println!(
        "warm-up: {} records in {:.2} s (connector compiled and cached)",
        WARM_UP_RECORDS.min(options.records),
        warm.wall.as_secs_f64()
    );

    ledger_part(dir, &data, options.records)?;
    retry_part(dir, &failed_data, options.failed, options.rate)?;

    // Other work on the machine skews every number: say how busy it was.
    println!("\nload average at the end: {}", load_average());
    Ok(())
}

/// Part 1: a first run, then a second with nothing changed, on the same ledger.
fn ledger_part(dir: &Path, data: &Path, records: usize) -> Result<()> {
    let n = records as u64;
    println!("\n== Part 1: {records} records, a first run, then a second with nothing changed");
    println!(
        "{:<7} {:>8} {:>10} {:>7} {:>8} {:>9} {:>10} {:>9} {:>9} {:>8} {:>11}",
        "run",
        "wall s",
        "records/s",
        "CPU s",
        "RSS MiB",
        "delivered",
        "unchanged",
        "requests",
        "server s",
        "drain s",
        "ledger MiB"
    );

    let mut ledger_sizes = Vec::new();
    let mut port = None;
    for (round, name) in ["first", "second"].into_iter().enumerate() {
        let server = match port {
            None => start_server("accept")?,
            Some(port) => start_server_on("accept", port)?,
        };
        port = Some(port_of(&server)?);
        let config = write_config(dir, "ledger", data, "state-ledger", &server, &[])?;
        let run = sluice(dir, &["run"], &config)?;
        let report = server.stop::<ServerReport>()?;
        let summary: Summary = run.json()?;
        ensure!(
            summary.outcome == "completed" && summary.read == n,
            "the {name} run did not complete: {}",
            run.output
        );
        if round == 0 {
            ensure!(
                summary.delivered == n && report.records_stored == n,
                "the first run must deliver every record: {} (server stored {})",
                run.output,
                report.records_stored
            );
        } else {
            ensure!(
                summary.unchanged == n && summary.requests == 0 && report.requests == 0,
                "the second run must skip every record: {} (server saw {} requests)",
                run.output,
                report.requests
            );
        }
        // The store (failed records, history, inspector) and the delivered log.
        let store = disk_usage(&dir.join("state-ledger").join("ledger"))?;
        let log = disk_usage(&dir.join("state-ledger").join("delivered"))?;
        println!(
            "        delivered log after the {name} run: {:.1} MiB in {} files ({:.1} bytes per record); \
             store {:.1} MiB allocated",
            log.apparent as f64 / MIB,
            log.files,
            log.apparent as f64 / n as f64,
            store.allocated as f64 / MIB,
        );
        let size = DiskUsage {
            allocated: store.allocated + log.allocated,
            apparent: store.apparent + log.apparent,
            files: store.files + log.files,
        };
        // From the last response the destination sent to Sluice's exit: what Sluice still
        // had to do (write the ledger, flush it) once every record was answered.
        let drain = report.last_served_ms.map_or_else(
            || "-".to_string(),
            |last| {
                let exit_ms = run.started_ms + run.wall.as_millis() as u64;
                format!("{:.2}", exit_ms.saturating_sub(last) as f64 / 1e3)
            },
        );
        println!(
            "{name:<7} {:>8.2} {:>10.0} {:>7.2} {:>8.0} {:>9} {:>10} {:>9} {:>9.2} {drain:>8} {:>11.1}",
            run.wall.as_secs_f64(),
            n as f64 / run.wall.as_secs_f64(),
            run.usage.cpu.as_secs_f64(),
            run.usage.peak_rss as f64 / MIB,
            summary.delivered,
            summary.unchanged,
            summary.requests,
            report.usage.cpu.as_secs_f64(),
            size.allocated as f64 / MIB,
        );
        println!(
            "        sluice's own elapsed_ms: {:.2} s ({:.0} records/s); connector_ms {}",
            summary.elapsed_ms as f64 / 1e3,
            n as f64 * 1e3 / summary.elapsed_ms.max(1) as f64,
            summary.connector_ms
        );
        ledger_sizes.push(size);
    }
    for (name, size) in ["first", "second"].iter().zip(&ledger_sizes) {
        println!(
            "ledger on disk after the {name} run: {:.1} MiB allocated, {:.1} MiB apparent, {} files \
             ({:.0} bytes per record)",
            size.allocated as f64 / MIB,
            size.apparent as f64 / MIB,
            size.files,
            size.allocated as f64 / records as f64
        );
    }

    // What the retry job's selection costs on this ledger when nothing failed: it reads
    // every entry.
    let server = start_server("accept")?;
    let config = write_config(dir, "ledger", data, "state-ledger", &server, &[])?;
    let pass = sluice(dir, &["retry", "--sync", SYNC], &config)?;
    server.stop::<ServerReport>()?;
    let output: RetryOutput = pass.json()?;
    ensure!(
        output.selection.selected == 0 && output.run.is_none(),
        "nothing should be selected: {}",
        pass.output
    );
    println!(
        "retry pass over this ledger with nothing to retry (selection only): {:.2} s, \
         CPU {:.2} s, peak RSS {:.0} MiB",
        pass.wall.as_secs_f64(),
        pass.usage.cpu.as_secs_f64(),
        pass.usage.peak_rss as f64 / MIB
    );

    // What the ledger holds, against what it takes on disk. Opening it last: sled may
    // write while it opens.
    let contents = ledger_contents(&dir.join("state-ledger").join("ledger"))?;
    let logical: u64 = contents.iter().map(|t| t.keys + t.values).sum();
    println!(
        "ledger contents (keys + values), {:.1} MiB in all:",
        logical as f64 / MIB
    );
    for tree in &contents {
        println!(
            "  {:<22} {:>8} entries {:>8.1} MiB ({:.0} bytes per entry)",
            tree.name,
            tree.entries,
            (tree.keys + tree.values) as f64 / MIB,
            (tree.keys + tree.values) as f64 / tree.entries.max(1) as f64
        );
    }
    Ok(())
}

struct TreeContents {
    name: String,
    entries: u64,
    keys: u64,
    values: u64,
}

/// Every tree of the sled database at `path`: its entries and their bytes.
fn ledger_contents(path: &Path) -> Result<Vec<TreeContents>> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(64 * 1024 * 1024)
        .open()?;
    let mut trees = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let mut contents = TreeContents {
            name: String::from_utf8_lossy(&name).into_owned(),
            entries: 0,
            keys: 0,
            values: 0,
        };
        for item in tree.iter() {
            let (key, value) = item?;
            contents.entries += 1;
            contents.keys += key.len() as u64;
            contents.values += value.len() as u64;
        }
        if contents.entries > 0 {
            trees.push(contents);
        }
    }
    Ok(trees)
}

/// The retry job's selection alone, in this process, over the ledger in `state` (its
/// `failed` records, the rest delivered): the default pass (up to 50,000) and a pass of one
/// record, five times each; the medians. The ledger is closed again before the pass runs.
fn selection_alone(state: &Path, failed: usize) -> Result<()> {
    let ledger = sluice::ledger::Ledger::open(state)?;
    support::time_selection(&ledger.sync(SYNC)?, failed, "alone (embedded store)")
}

/// Part 2: a retry pass of `failed` records against a destination limited to `rate`
/// requests per second, with and without Sluice's own proactive limit.
fn retry_part(dir: &Path, data: &Path, failed: usize, rate: u32) -> Result<()> {
    let m = failed as u64;
    let requests_needed = failed.div_ceil(BATCH) as u64;
    let ideal = requests_needed as f64 / f64::from(rate);
    println!(
        "\n== Part 2: a retry pass of {failed} failed records, destination limited to {rate} \
         requests per 1 s window (429, Retry-After in seconds)"
    );
    println!(
        "requests needed: {requests_needed} (batch {BATCH}); ideal pass time {requests_needed} / \
         {rate} = {ideal:.2} s"
    );
    // With fixed windows the last request can be served at the start of window
    // ceil(n/R) - 1, counted from the first request's window: a little under n/R.
    println!(
        "fixed-window floor for the span (first request to last served, if the first lands \
         at a window's start): {} s",
        requests_needed.div_ceil(u64::from(rate)) - 1
    );

    let variants: [(&str, &str, Option<u32>); 2] = [
        ("destination's limit only", "retry-dest", None),
        ("+ proactive rate_limit", "retry-proactive", Some(rate)),
    ];
    let mut rows = Vec::new();
    for (label, name, proactive) in variants {
        let state = format!("state-{name}");
        // The records fail: every request gets a 500, and one attempt is allowed.
        let server = start_server("fail")?;
        let extra = ["[sync.retry]", "max_attempts = 1"];
        let config = write_config(dir, name, data, &state, &server, &extra)?;
        let first = sluice(dir, &["run"], &config)?;
        let report = server.stop::<ServerReport>()?;
        let summary: Summary = first.json()?;
        ensure!(
            summary.rejected == m && report.server_errors == report.requests,
            "every record should be rejected: {} (server: {} requests, {} errors)",
            first.output,
            report.requests,
            report.server_errors
        );

        if proactive.is_none() {
            selection_alone(&dir.join(&state), failed)?;
        }

        // The pass, against a fresh destination with a rate limit.
        let server = start_server(&format!("limit:{rate}"))?;
        let limit = proactive.map(|r| format!("rate_limit = {{ requests = {r}, per = \"1s\" }}"));
        let extra: Vec<&str> = limit.iter().map(String::as_str).collect();
        let config = write_config(dir, name, data, &state, &server, &extra)?;
        let pass = sluice(dir, &["retry", "--sync", SYNC], &config)?;
        let report = server.stop::<ServerReport>()?;
        let output: RetryOutput = pass.json()?;
        let run = output
            .run
            .with_context(|| format!("the retry pass sent nothing: {}", pass.output))?;
        ensure!(
            output.selection.selected == m
                && run.outcome == "completed"
                && run.delivered == m
                && report.records_stored == m,
            "the retry pass must deliver every record: {} (server stored {})",
            pass.output,
            report.records_stored
        );
        rows.push((label, pass, run, report));
    }

    println!(
        "{:<25} {:>7} {:>7} {:>7} {:>7} {:>9} {:>5} {:>6} {:>7} {:>6} {:>6} {:>6} {:>6}",
        "variant",
        "wall s",
        "/ideal",
        "run s",
        "/ideal",
        "requests",
        "429s",
        "waits",
        "wait s",
        "start",
        "span",
        "CPU s",
        "RSS"
    );
    for (label, pass, run, report) in &rows {
        let wall = pass.wall.as_secs_f64();
        let run_s = run.elapsed_ms as f64 / 1e3;
        // From Sluice's start to the first request the destination saw, and from there
        // to the last request it served.
        let start = report
            .first_arrival_ms
            .map(|first| (first as f64 - pass.started_ms as f64) / 1e3);
        let span = report
            .first_arrival_ms
            .zip(report.last_served_ms)
            .map(|(first, last)| (last - first) as f64 / 1e3);
        let seconds = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{label:<25} {wall:>7.2} {:>7.2} {run_s:>7.2} {:>7.2} {:>9} {:>5} {:>6} {:>7.1} {:>6} {:>6} {:>6.2} {:>6.0}",
            wall / ideal,
            run_s / ideal,
            report.requests,
            report.rate_limited,
            run.rate_limit_waits,
            run.rate_limit_wait_ms as f64 / 1e3,
            seconds(start),
            seconds(span),
            pass.usage.cpu.as_secs_f64(),
            pass.usage.peak_rss as f64 / MIB,
        );
    }
    println!(
        "(wall: the `sluice retry` process; run: its summary's elapsed_ms; requests and 429s: \
         as the destination counted them; waits and wait s: Sluice's rate_limit_waits and \
         rate_limit_wait_ms; start: from starting Sluice to the first request; span: first \
         request to the last one served; RSS in MiB)"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Sluice: the release binary, as an operator runs it.

/// `sluice run --json` prints one of these per sync; `sluice retry --json` nests it.
#[derive(Deserialize)]
struct Summary {
    outcome: String,
    read: u64,
    unchanged: u64,
    delivered: u64,
    rejected: u64,
    requests: u64,
    rate_limit_waits: u64,
    rate_limit_wait_ms: u64,
    connector_ms: u64,
    elapsed_ms: u64,
}

#[derive(Deserialize)]
struct RetryOutput {
    selection: SelectionCounts,
    run: Option<Summary>,
}

#[derive(Deserialize)]
struct SelectionCounts {
    selected: u64,
}

/// One `sluice` process, measured from outside.
struct Exec {
    output: String,
    usage: Usage,
    /// From starting the process to its exit.
    wall: Duration,
    /// When it was started, in milliseconds since the Unix epoch.
    started_ms: u64,
}

impl Exec {
    fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        serde_json::from_str(self.output.trim())
            .with_context(|| format!("sluice's output: {:?}", self.output))
    }
}

/// Runs `sluice COMMAND --json --quiet --config CONFIG [ARGS]`; fails unless it exits 0.
fn sluice(dir: &Path, command: &[&str], config: &Path) -> Result<Exec> {
    // Its log goes to a file, shown when it fails.
    let log = dir.join("sluice.log");
    let started_ms = now_ms();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(command)
        .args(["--json", "--quiet", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting sluice")?;
    let mut output = String::new();
    child.stdout.take().unwrap().read_to_string(&mut output)?;
    let usage = wait(child, "sluice").with_context(|| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        format!("sluice {command:?}: its output: {output}\nits log: {log}")
    })?;
    Ok(Exec {
        output,
        usage,
        wall: started.elapsed(),
        started_ms,
    })
}

// ---------------------------------------------------------------------------------------
// The simulated destination, in a child process.

/// What the server says when it stops.
#[derive(Serialize, Deserialize)]
struct ServerReport {
    requests: u64,
    records_stored: u64,
    rate_limited: u64,
    server_errors: u64,
    /// When the first request arrived, and the last one served with 2xx, in milliseconds
    /// since the Unix epoch.
    first_arrival_ms: Option<u64>,
    last_served_ms: Option<u64>,
}

/// Starts the server in `mode`: `accept`, `fail` (every request gets a 500) or `limit:R`
/// (accept, at most R requests per one-second window).
fn start_server(mode: &str) -> Result<Server> {
    Server::start(&["--serve", mode])
}

/// A server on `port`: a sync's destination is its base URL, so a second run meant to
/// find every record unchanged must meet the same one (another port is another
/// destination, and every record would be sent again).
fn start_server_on(mode: &str, port: u16) -> Result<Server> {
    Server::start(&["--serve", mode, &port.to_string()])
}

/// The port of a server's base URL.
fn port_of(server: &Server) -> Result<u16> {
    server
        .base_url
        .rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .with_context(|| format!("no port in {}", server.base_url))
}

/// The child side of [`Server`].
fn serve(mode: &str, port: u16) -> Result<()> {
    let mut faults = Faults::default();
    match mode {
        "accept" => {}
        "fail" => {
            faults.error_burst = Some(ErrorBurst {
                every: 0,
                length: u64::MAX,
                status: 500,
            })
        }
        _ => {
            let rate = mode
                .strip_prefix("limit:")
                .and_then(|r| r.parse().ok())
                .with_context(|| format!("unknown server mode {mode:?}"))?;
            faults.rate_limit = Some(RateLimit {
                requests: rate,
                window: Duration::from_secs(1),
                style: LimitStyle::TooManyRequests,
                retry_after: RetryAfterStyle::Seconds,
            });
        }
    }
    let config = RestConfig {
        mode: RestMode::AcceptAll,
        // The request log would otherwise keep a copy of every key.
        record_keys: false,
        path: PATH.to_string(),
        faults,
        port,
        ..Default::default()
    };
    support::serve(config, |sim| {
        let stats = sim.stats();
        let requests = sim.requests();
        let unix_ms = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        ServerReport {
            requests: stats.requests,
            records_stored: stats.records_stored,
            rate_limited: stats.rate_limited,
            server_errors: stats.server_errors,
            first_arrival_ms: requests.first().map(|r| unix_ms(r.arrived_at)),
            last_served_ms: requests
                .iter()
                .filter(|r| (200..300).contains(&r.status))
                .map(|r| unix_ms(r.arrived_at))
                .max(),
        }
    })
}

// ---------------------------------------------------------------------------------------
// Measuring processes and directories.

struct DiskUsage {
    /// Blocks allocated, as `du` counts (sled's files may be sparse).
    allocated: u64,
    /// File lengths, as `du --apparent-size` counts.
    apparent: u64,
    files: u64,
}

fn disk_usage(path: &Path) -> Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;
    let mut usage = DiskUsage {
        allocated: 0,
        apparent: 0,
        files: 0,
    };
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir:?}"))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                usage.allocated += meta.blocks() * 512;
                usage.apparent += meta.len();
                usage.files += 1;
            }
        }
    }
    Ok(usage)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
