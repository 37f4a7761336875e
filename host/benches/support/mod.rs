//! What the benchmarks share: deterministic test records, the simulated destination in a
//! child process, and measuring a child process. Each bench includes it with
//! `mod support;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_sim::SimHandle;
use sluice_sim::rest::{self, RestConfig};

/// What every bench run uses: Sluice's sync and the raw client alike.
pub const BATCH: usize = 200;
pub const CONCURRENCY: usize = 8;
/// Where the simulated destination takes records.
pub const PATH: &str = "/v1/records";
/// The sync's name in the configs the benches write.
pub const SYNC: &str = "bench";

/// A count of at least 1, written `1000000` or `1_000_000`.
pub fn count(text: &str) -> Result<usize, String> {
    match text.replace('_', "").parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a count of at least 1")),
    }
}

pub const MIB: f64 = 1024.0 * 1024.0;
/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn total_memory_gib() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / (1024.0 * 1024.0)
}

/// A small deterministic generator (SplitMix64): the same file on every machine and run.
pub struct Mix(pub u64);

impl Mix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis",
    "Radia", "Leslie", "Sophie", "Tim", "Hedy", "John",
];
pub const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Lamport",
    "Wilson",
    "Berners-Lee",
    "Lamarr",
    "Backus",
];
pub const COMPANY: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
];
pub const SUFFIX: &[&str] = &["Inc", "LLC", "GmbH", "Ltd", "SA", "BV"];
pub const STREET: &[&str] = &[
    "Main Street",
    "High Street",
    "Station Road",
    "Church Lane",
    "Park Avenue",
    "Mill Road",
    "King Street",
    "Victoria Road",
];
pub const CITY: &[&str] = &[
    "Springfield",
    "Rivertown",
    "Lakeside",
    "Hillview",
    "Fairfield",
    "Greenville",
    "Kingsport",
    "Newbury",
];
pub const COUNTRY: &[&str] = &["US", "GB", "DE", "FR", "NL", "ES", "IT", "SE"];
pub const NOTE: &[&str] = &[
    "Prefers email; renewal due in Q3.",
    "Met at the spring trade fair.",
    "Key account: escalate tickets.",
    "Billing address differs.",
    "Asked for a reporting demo.",
    "Trial extended by two weeks.",
];

pub fn record(i: usize, mix: &mut Mix) -> String {
    let (first, last) = (mix.pick(FIRST), mix.pick(LAST));
    let company = mix.pick(COMPANY);
    format!(
        concat!(
            r#"{{"id":"cus-{:07}","name":"{} {}","email":"{}.{}{}@{}.example.com","#,
            r#""company":"{} {}","phone":"+1-555-{:03}-{:04}","#,
            r#""address":{{"street":"{} {}","city":"{}","postcode":"{:05}","country":"{}"}},"#,
            r#""created_at":"2024-{:02}-{:02}T{:02}:{:02}:00Z","active":{},"#,
            r#""notes":"{}"}}"#
        ),
        i,
        first,
        last,
        first.to_lowercase(),
        last.to_lowercase(),
        mix.below(100),
        company.to_lowercase(),
        company,
        mix.pick(SUFFIX),
        mix.below(1000),
        mix.below(10_000),
        1 + mix.below(300),
        mix.pick(STREET),
        mix.pick(CITY),
        mix.below(100_000),
        mix.pick(COUNTRY),
        1 + mix.below(12),
        1 + mix.below(28),
        mix.below(24),
        mix.below(60),
        mix.below(4) != 0,
        mix.pick(NOTE),
    )
}

#[derive(Clone, Copy, Default)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Peak resident set size, in bytes.
    pub peak_rss: u64,
}

/// Waits for `child` and returns its resource usage; fails unless it exited with 0.
pub fn wait(child: Child, what: &str) -> Result<Usage> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; `pid` is our own child, not yet
    // waited for (std only reaps it in `wait`, which is never called on it).
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
    ensure!(
        reaped == pid,
        "wait4 on the {what}: {}",
        std::io::Error::last_os_error()
    );
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the {what} failed (wait status {status:#x})"
    );
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(Usage {
        cpu: time(rusage.ru_utime) + time(rusage.ru_stime),
        // Linux reports kilobytes.
        peak_rss: rusage.ru_maxrss as u64 * 1024,
    })
}

/// A simulated destination in a child process: this bench binary started with `args`,
/// which prints its base URL, serves until its stdin closes, then prints one JSON report
/// (see [`serve`]). A child of its own, so that what it stores counts against no client
/// and `wait4` gives its CPU time.
pub struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub base_url: String,
}

/// A stopped server: its report, and what it used.
pub struct Stopped<R> {
    pub report: R,
    pub usage: Usage,
}

impl<R> std::ops::Deref for Stopped<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.report
    }
}

impl Server {
    pub fn start(args: &[&str]) -> Result<Server> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the simulated destination")?;
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let base_url = line.trim().to_string();
        ensure!(
            base_url.starts_with("http://"),
            "the simulated destination did not start: {line:?}"
        );
        Ok(Server {
            child,
            stdin,
            stdout,
            base_url,
        })
    }

    /// Closes its stdin, reads its report and waits for it to exit.
    pub fn stop<R: DeserializeOwned>(self) -> Result<Stopped<R>> {
        let Server {
            child,
            stdin,
            mut stdout,
            ..
        } = self;
        drop(stdin);
        let mut line = String::new();
        stdout.read_to_string(&mut line)?;
        let report = serde_json::from_str(line.trim())
            .with_context(|| format!("the server's report: {line:?}"))?;
        let usage = wait(child, "simulated destination")?;
        Ok(Stopped { report, usage })
    }
}

/// The child side of [`Server`]: serves `config` on a runtime like `sluice`'s (one worker
/// thread per core) until stdin closes, then prints `report` of what it saw.
pub fn serve<R: Serialize>(config: RestConfig, report: impl FnOnce(&SimHandle) -> R) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let sim = rest::start(config).await?;
        println!("{}", sim.base_url());
        std::io::stdout().flush()?;
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await??;
        println!("{}", serde_json::to_string(&report(&sim))?);
        Ok(())
    })
}

/// Writes `NAME.toml` for one sync, `SYNC`, of `data` into `server`, with the benches'
/// batch size and concurrency and everything else at its defaults; `extra` lines go at the end of
/// the sync (a `rate_limit`, or a `[sync.retry]` table).
pub fn write_config(
    dir: &Path,
    name: &str,
    data: &Path,
    state: &str,
    server: &Server,
    extra: &[&str],
) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.toml"));
    let mut text = format!(
        r#"cache_dir = "cache"
state_dir = "{state}"

[connectors.rest]
component = "builtin:rest"

[[sync]]
name = "{SYNC}"
connector = "rest"
source = {{ jsonl = "{}", key = "id" }}
base_url = "{}"
settings = {{ path = "{PATH}" }}
batch_size = {BATCH}
concurrency = {CONCURRENCY}
"#,
        data.display(),
        server.base_url
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

/// What `cargo bench` adds to every bench target's arguments.
#[derive(clap::Args)]
pub struct CargoBench {
    #[arg(long, hide = true)]
    bench: bool,
}

/// A bench's options, from its arguments (after the program name).
pub fn options<T: clap::Parser>(args: &[String]) -> anyhow::Result<T> {
    Ok(T::try_parse_from(
        std::iter::once("bench").chain(args.iter().map(String::as_str)),
    )?)
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Writes `count` records of the benches' shape to `path`, one JSON line each; their bytes.
pub fn write_records(path: &std::path::Path, count: usize) -> Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut mix = Mix(0x5EED);
    let mut bytes = 0u64;
    for i in 0..count {
        let line = record(i, &mut mix);
        bytes += line.len() as u64;
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(bytes)
}

/// Times the retry job's selection over `sync`, which holds `failed` failed records: the
/// default pass (up to 50,000) and a pass of one, five times each; prints the medians
/// after `what`.
pub fn time_selection(sync: &sluice::ledger::SyncLedger, failed: usize, what: &str) -> Result<()> {
    let job = sluice::config::RetryJob::default();
    let now = sluice::clock::now_ms();
    for limit in [job.max_records, 1] {
        let request = sluice::retry_job::Request {
            limit: Some(limit),
            ..Default::default()
        };
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let selection =
                sluice::retry_job::select(sync, &job, Default::default(), &request, now)?;
            times.push(started.elapsed().as_secs_f64());
            ensure!(selection.counts.selected as usize == failed.min(limit));
        }
        println!(
            "the retry job's selection {what}, {failed} failed, limit {limit}: {:.3} s (median of 5)",
            median_of(times)
        );
    }
    Ok(())
}
