//! Destinations that would make a naive client misbehave: a throttle that says "retry
//! now", a record the connector cannot hold in memory, a destination that is down. Each
//! test asserts what the host must never do (storm, lose a record, call the run a
//! success) with exact request counts and record fates.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::engine::{Fate, Outcome, RunControl, RunReport};
use sluice::ledger::Status;
use sluice::sync::Host;
use sluice_sim::faults::Faults;
use sluice_sim::rest::{self, RestConfig, RestMode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, Fates, Setup, is_delivered, is_pending};

fn contacts(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| json!({"id": format!("c{i:04}"), "email": format!("c{i}@example.com")}))
        .collect()
}

/// A destination that answers every request `429 Too Many Requests` with this
/// `Retry-After`, and remembers when each request arrived. Plain HTTP/1.1 over loopback,
/// with keep-alive: the simulators always say when a window ends, this one does not.
struct Throttle {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Throttle {
    async fn start(retry_after: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = arrivals.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = answer_429(stream, retry_after, seen).await;
                });
            }
        });
        Throttle { addr, arrivals }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}

async fn answer_429(
    stream: TcpStream,
    retry_after: &str,
    seen: Arc<Mutex<Vec<Instant>>>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        seen.lock().unwrap().push(Instant::now());
        let response = format!(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: {retry_after}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        stream.get_mut().write_all(response.as_bytes()).await?;
    }
}

/// Runs sync `s` of `setup` on a host the test keeps, so it can read the ledger after.
async fn run_keeping_host(setup: &Setup) -> (Host, RunReport, Arc<Fates>) {
    let fates = Arc::new(Fates::default());
    let control = RunControl {
        sinks: vec![fates.clone()],
        grace: Duration::from_secs(5),
        ..RunControl::default()
    };
    let host = Host::new(&setup.config).unwrap();
    let report = host.run(&setup.config, "s", control).await.unwrap();
    (host, report, fates)
}

/// Rate-limit waits of 20, 40, 80, 80, 80ms add up to 300ms, the budget; the sixth answer
/// (380ms) is past it. So each batch is sent exactly six times, then left pending.
const THROTTLED: &str = "settings = { path = \"/v1/records\" }\nbatch_size = 10\n[sync.retry]\ninitial_backoff = \"20ms\"\nmax_backoff = \"80ms\"\nmultiplier = 2.0\nmax_rate_limit_wait = \"300ms\"\n";
const ANSWERS_PER_BATCH: usize = 6;
const WAITS_MS: [u64; 5] = [20, 40, 80, 80, 80];

async fn throttled_run(
    retry_after: &'static str,
    concurrency: u32,
) -> (Throttle, RunReport, Arc<Fates>) {
    let dest = Throttle::start(retry_after).await;
    let sync = format!("concurrency = {concurrency}\n{THROTTLED}");
    let setup = common::setup(&contacts(30), "builtin:rest", &dest.base_url(), &sync);
    let run = tokio::time::timeout(Duration::from_secs(60), common::run(&setup))
        .await
        .unwrap_or_else(|_| panic!("Retry-After {retry_after}: the run never ended"));
    (dest, run.0, run.1)
}

fn assert_all_pending_rate_limited(report: &RunReport, fates: &Fates) {
    let s = &report.summary;
    assert_eq!(
        (s.outcome, s.delivered, s.rejected, s.pending),
        (Outcome::Completed, 0, 0, 30),
        "{:?}",
        s.error
    );
    let codes = fates.codes();
    assert_eq!(codes.len(), 30);
    assert!(codes.values().all(|c| c == "RATE_LIMITED"), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_zero_or_past_backs_off_and_gives_up_within_the_budget() {
    for retry_after in ["0", "Wed, 21 Oct 2015 07:28:00 GMT"] {
        let (dest, report, fates) = throttled_run(retry_after, 1).await;
        assert_all_pending_rate_limited(&report, &fates);
        let arrivals = dest.arrivals();
        assert_eq!(
            arrivals.len(),
            3 * ANSWERS_PER_BATCH,
            "Retry-After {retry_after}: three batches, six answers each"
        );
        assert_eq!(report.summary.requests, arrivals.len() as u64);
        assert_eq!(report.summary.rate_limit_waits, arrivals.len() as u64);
        assert_eq!(
            report.summary.retries, 0,
            "rate-limit waits use no attempts"
        );
        // Within a batch, each resend waited out the backoff that replaced "now".
        for batch in arrivals.chunks(ANSWERS_PER_BATCH) {
            for (pair, wait) in batch.windows(2).zip(WAITS_MS) {
                let gap = pair[1].duration_since(pair[0]);
                assert!(
                    gap >= Duration::from_millis(wait),
                    "Retry-After {retry_after}: a resend came {gap:?} after the answer, before {wait}ms"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_stay_within_the_same_bound() {
    let (dest, report, fates) = throttled_run("0", 3).await;
    assert_all_pending_rate_limited(&report, &fates);
    let requests = dest.arrivals().len();
    // Each batch gets at most six answers; a pause another worker's answer set can only
    // make one give up sooner.
    assert!(
        (3..=3 * ANSWERS_PER_BATCH).contains(&requests),
        "{requests} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_retry_after_leaves_records_pending_without_a_panic() {
    // The connector reads this as u64::MAX milliseconds.
    let (dest, report, fates) = throttled_run("99999999999999999999999", 1).await;
    assert_all_pending_rate_limited(&report, &fates);
    // The first batch gives up at once; the pause it set holds off the others, which stay
    // pending without a request.
    assert_eq!(dest.arrivals().len(), 1);
}

/// A sync of the REST connector with a small memory limit.
fn poison_setup(records: &[serde_json::Value], base_url: &str, sync: &str) -> Setup {
    let setup = common::setup(records, "builtin:rest", base_url, sync);
    let path = setup.dir.path().join("sluice.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[connectors.c]\n",
        "[connectors.c]\nmemory_limit = \"8MiB\"\n",
    );
    std::fs::write(&path, text).unwrap();
    let config = sluice::config::Config::load(&path).unwrap();
    Setup {
        dir: setup.dir,
        config,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_the_connector_memory_is_isolated_and_the_run_goes_on() {
    let dest = rest::start(RestConfig {
        mode: RestMode::AcceptAll,
        faults: Faults::default(),
        ..RestConfig::default()
    })
    .await
    .unwrap();
    let mut records = contacts(400);
    records.insert(
        257,
        json!({"id": "poison", "email": "p@example.com", "notes": "x".repeat(3 << 20)}),
    );
    let setup = poison_setup(
        &records,
        &dest.base_url(),
        "settings = { path = \"/v1/records\" }\nbatch_size = 50\nconcurrency = 2\n",
    );
    let (host, report, fates) = run_keeping_host(&setup).await;
    let s = &report.summary;
    assert_eq!(
        (s.outcome, s.delivered, s.rejected, s.pending),
        (Outcome::Completed, 400, 1, 0),
        "{:?}",
        s.error
    );
    assert!(s.bisections >= 1);
    // Every other record is at the destination; the poison record never got there.
    let stored = dest.stored();
    assert_eq!(stored.len(), 400);
    assert!(!stored.contains_key("poison"));
    assert_eq!(fates.keys(is_delivered).len(), 400);

    let entry = host
        .ledger()
        .sync("s")
        .unwrap()
        .get("poison")
        .unwrap()
        .unwrap();
    assert_eq!(entry.status, Status::Rejected);
    let failure = entry.failure.unwrap();
    assert_eq!(failure.code, "CONNECTOR_LIMIT");
    assert!(
        failure
            .message
            .contains("exceeded its memory limit of 8.0 MiB in `"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("`build-request`") || failure.message.contains("`precheck`"),
        "{}",
        failure.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_sent_first_and_alone_is_judged_after_the_next_batch() {
    let dest = rest::start(RestConfig {
        mode: RestMode::AcceptAll,
        faults: Faults::default(),
        ..RestConfig::default()
    })
    .await
    .unwrap();
    // Batches of one: the poison record fails before the connector has worked for any
    // other record, so only the next batch can show that the record is at fault.
    let mut records =
        vec![json!({"id": "poison", "email": "p@example.com", "notes": "x".repeat(3 << 20)})];
    records.extend(contacts(20));
    let setup = poison_setup(
        &records,
        &dest.base_url(),
        "settings = { path = \"/v1/records\" }\nbatch_size = 1\nconcurrency = 1\n",
    );
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_eq!(
        (s.outcome, s.delivered, s.rejected, s.pending),
        (Outcome::Completed, 20, 1, 0),
        "{:?}",
        s.error
    );
    assert_eq!(fates.codes()["poison"], "CONNECTOR_LIMIT");
    assert_eq!(dest.stored().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_fails_on_every_record_stops_the_run_without_rejecting_any() {
    let dest = rest::start(RestConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("hostile.wasm");
    std::fs::write(&hostile, common::guest("test_hostile")).unwrap();
    for (batch_size, concurrency) in [(1, 1), (10, 1), (10, 3)] {
        let setup = common::setup(
            &contacts(60),
            &hostile.display().to_string(),
            &dest.base_url(),
            &format!(
                "settings = {{ mode = \"memory-bomb\", phase = \"build-request\" }}\nbatch_size = {batch_size}\nconcurrency = {concurrency}\n"
            ),
        );
        let (report, fates) = common::run(&setup).await;
        let s = &report.summary;
        assert_eq!(
            (s.outcome, s.delivered, s.rejected, s.requests),
            (Outcome::Failed, 0, 0, 0),
            "batches of {batch_size}, {concurrency} workers"
        );
        assert_eq!(s.pending, s.read);
        let error = s.error.as_deref().unwrap();
        assert!(
            error.contains("exceeded its memory limit") && error.contains("`build-request`"),
            "{error}"
        );
        assert!(fates.all().values().all(|(f, _)| is_pending(f)));
        // Two records alone are enough to tell: a few bisections, not one per record.
        assert!(
            s.bisections <= 2 * 4 * concurrency as u64,
            "{} bisections",
            s.bisections
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_a_batch_is_rejected_without_calling_the_connector() {
    let dest = rest::start(RestConfig {
        mode: RestMode::AcceptAll,
        faults: Faults::default(),
        ..RestConfig::default()
    })
    .await
    .unwrap();
    let mut records = contacts(100);
    records.insert(
        40,
        json!({"id": "huge", "email": "h@example.com", "notes": "y".repeat(10_000)}),
    );
    let setup = common::setup(
        &records,
        "builtin:rest",
        &dest.base_url(),
        "settings = { path = \"/v1/records\", max_batch_bytes = \"4096\" }\nbatch_size = 20\nconcurrency = 2\n",
    );
    let (host, report, _) = run_keeping_host(&setup).await;
    let s = &report.summary;
    assert_eq!(
        (s.outcome, s.delivered, s.rejected, s.pending),
        (Outcome::Completed, 100, 1, 0),
        "{:?}",
        s.error
    );
    assert_eq!(dest.stored().len(), 100);
    assert!(
        dest.requests()
            .iter()
            .all(|r| !r.keys.contains(&"huge".to_string())),
        "the record was sent"
    );
    let entry = host
        .ledger()
        .sync("s")
        .unwrap()
        .get("huge")
        .unwrap()
        .unwrap();
    assert_eq!(entry.status, Status::Rejected);
    let failure = entry.failure.unwrap();
    assert_eq!(failure.code, "RECORD_TOO_LARGE");
    assert!(
        failure.message.contains("max-batch-bytes 4096"),
        "{}",
        failure.message
    );
}

/// A loopback address nothing listens on.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

const DOWN: &str = "settings = { path = \"/v1/records\" }\nbatch_size = 10\n[sync.retry]\nmax_attempts = 3\ninitial_backoff = \"5ms\"\nmax_backoff = \"20ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_for_the_whole_run_fails_it_and_leaves_records_pending() {
    let base_url = closed_port().await;
    let setup = common::setup(
        &contacts(50),
        "builtin:rest",
        &base_url,
        &format!("concurrency = 1\n{DOWN}"),
    );
    let (host, report, fates) = run_keeping_host(&setup).await;
    let s = &report.summary;
    assert_eq!(
        (s.outcome, s.delivered, s.rejected),
        (Outcome::Failed, 0, 0)
    );
    let error = s.error.as_deref().unwrap();
    assert!(
        error.starts_with("the destination could not be reached"),
        "{error}"
    );
    assert!(error.contains("CONNECTION_FAILED"), "{error}");
    assert!(error.contains("stopped taking new batches"), "{error}");
    // One batch used up its three attempts; no other batch was sent.
    assert_eq!(s.requests, 3);
    assert_eq!(s.pending, s.read);
    let all = fates.all();
    assert_eq!(all.len() as u64, s.read);
    assert!(all.values().all(|(f, _)| is_pending(f)));
    let tried: Vec<_> = all
        .iter()
        .filter(|(_, (f, _))| matches!(f, Fate::Pending(Some(f)) if f.code == "CONNECTION_FAILED"))
        .collect();
    assert_eq!(tried.len(), 10, "the first batch");
    assert!(tried.iter().all(|(_, (_, attempts))| *attempts == 3));

    let ledger = host.ledger().sync("s").unwrap();
    let entries: Vec<_> = ledger.iter().map(|e| e.unwrap()).collect();
    assert_eq!(entries.len() as u64, s.read);
    assert!(entries.iter().all(|(_, e)| e.status == Status::Pending));
    let failed: Vec<_> = entries
        .iter()
        .filter_map(|(_, e)| e.failure.as_ref())
        .collect();
    assert_eq!(failed.len(), 10);
    assert!(failed.iter().all(|f| f.code == "CONNECTION_FAILED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_stop_sending_to_a_dead_destination() {
    let base_url = closed_port().await;
    let setup = common::setup(
        &contacts(200),
        "builtin:rest",
        &base_url,
        &format!("concurrency = 3\n{DOWN}"),
    );
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_eq!(
        (s.outcome, s.delivered, s.rejected),
        (Outcome::Failed, 0, 0)
    );
    // At most each worker's first batch, three attempts each.
    assert!((3..=9).contains(&s.requests), "{} requests", s.requests);
    assert!(fates.all().values().all(|(f, _)| is_pending(f)));
    assert_eq!(s.pending, s.read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_run_exits_1_when_the_destination_is_down() {
    let base_url = closed_port().await;
    let setup = common::setup(
        &contacts(20),
        "builtin:rest",
        &base_url,
        &format!("concurrency = 1\n{DOWN}"),
    );
    let config = setup.dir.path().join("sluice.toml");
    let output = common::sluice(&["run", "--quiet", "--json"], &config, &[]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summaries = common::json_lines(&String::from_utf8(output.stdout).unwrap());
    let summary = &summaries[0];
    assert_eq!(summary["outcome"], "failed");
    assert_eq!(summary["delivered"], 0);
    assert_eq!(summary["requests"], 3);
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .starts_with("the destination could not be reached"),
        "{summary}"
    );
}
