//! Destinations that would make a naive client misbehave: a throttle that says "retry
//! now", a record the connector cannot hold in memory, a destination that is down. Each
//! test asserts what the host must never do (storm, lose a record, call the run a
//! success) with exact request counts and record fates.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::engine::{Fate, RunReport};
use sluice::ledger::Status;
use sluice_sim::rest::{self, RestConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{
    self, Expect, Fates, Scenario, assert_summary, assert_summary_of, contacts, is_delivered,
    is_pending,
};

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

/// Rate-limit waits of 20, 40, 80, 80, 80ms add up to 300ms, the budget; the sixth answer
/// (380ms) is past it. So each batch is sent exactly six times, then left pending.
const THROTTLED_RETRY: &str = "initial_backoff = \"20ms\"\nmax_backoff = \"80ms\"\nmultiplier = 2.0\nmax_rate_limit_wait = \"300ms\"";
const ANSWERS_PER_BATCH: usize = 6;
const WAITS_MS: [u64; 5] = [20, 40, 80, 80, 80];

async fn throttled_run(
    retry_after: &'static str,
    concurrency: usize,
) -> (Throttle, RunReport, Arc<Fates>) {
    let dest = Throttle::start(retry_after).await;
    let scenario = Scenario::contacts_to(&dest.base_url(), 30)
        .batches(10, concurrency)
        .retry(THROTTLED_RETRY);
    let run = tokio::time::timeout(Duration::from_secs(60), scenario.run())
        .await
        .unwrap_or_else(|_| panic!("Retry-After {retry_after}: the run never ended"));
    (dest, run.report, run.fates)
}

fn assert_all_pending_rate_limited(report: &RunReport, fates: &Fates) {
    assert_summary(
        &report.summary,
        Expect::completed().delivered(0).rejected(0).pending(30),
    );
    let codes = fates.codes();
    assert_eq!(codes.len(), 30);
    assert!(codes.values().all(|c| c == "RATE_LIMITED"), "{codes:?}");
}

/// A stated wait shorter than the backoff (`retry_after`) is replaced by the backoff
/// ceiling, and the batch gives up within the budget.
async fn assert_backs_off_within_the_budget(retry_after: &'static str) {
    let (dest, report, fates) = throttled_run(retry_after, 1).await;
    assert_all_pending_rate_limited(&report, &fates);
    let arrivals = dest.arrivals();
    assert_eq!(
        arrivals.len(),
        3 * ANSWERS_PER_BATCH,
        "Retry-After {retry_after}: three batches, six answers each"
    );
    // Rate-limit waits use no attempts.
    let sent = arrivals.len() as u64;
    assert_summary_of(
        format!("Retry-After {retry_after}"),
        &report.summary,
        Expect::default()
            .requests(sent)
            .rate_limit_waits(sent)
            .retries(0),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_zero_backs_off_and_gives_up_within_the_budget() {
    assert_backs_off_within_the_budget("0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_in_the_past_backs_off_and_gives_up_within_the_budget() {
    assert_backs_off_within_the_budget("Wed, 21 Oct 2015 07:28:00 GMT").await;
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

/// A REST sync of `records` with a connector memory limit too small for a poison record.
fn poison(dest: &sluice_sim::SimHandle, records: Vec<serde_json::Value>) -> Scenario {
    Scenario::rest(&dest.base_url())
        .records(records)
        .connector("memory_limit = \"8MiB\"")
}

/// A record the connector cannot hold within [`poison`]'s memory limit.
fn poison_record() -> serde_json::Value {
    json!({"id": "poison", "email": "p@example.com", "notes": "x".repeat(3 << 20)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_the_connector_memory_is_isolated_and_the_run_goes_on() {
    let dest = common::accepting().await;
    let mut records = contacts(400);
    records.insert(257, poison_record());
    let ran = poison(&dest, records).batches(50, 2).run().await;
    let s = ran.summary();
    assert_summary(s, Expect::completed().delivered(400).rejected(1).pending(0));
    assert!(s.bisections >= 1);
    // Every other record is at the destination; the poison record never got there.
    let stored = dest.stored();
    assert_eq!(stored.len(), 400);
    assert!(!stored.contains_key("poison"));
    assert_eq!(ran.fates.keys(is_delivered).len(), 400);

    let entry = ran.entry("poison");
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
    let dest = common::accepting().await;
    // Batches of one: the poison record fails before the connector has worked for any
    // other record, so only the next batch can show that the record is at fault.
    let mut records = vec![poison_record()];
    records.extend(contacts(20));
    let ran = poison(&dest, records).batches(1, 1).run().await;
    assert_summary(
        ran.summary(),
        Expect::completed().delivered(20).rejected(1).pending(0),
    );
    assert_eq!(ran.fates.codes()["poison"], "CONNECTOR_LIMIT");
    assert_eq!(dest.stored().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_fails_on_every_record_stops_the_run_without_rejecting_any() {
    let dest = rest::start(RestConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("hostile.wasm");
    std::fs::write(&hostile, common::guest("test_hostile")).unwrap();
    for (batch_size, concurrency) in [(1, 1), (10, 1), (10, 3)] {
        let ran = Scenario::new(&hostile.display().to_string(), &dest.base_url())
            .records(contacts(60))
            .settings("{ mode = \"memory-bomb\", phase = \"build-request\" }")
            .batches(batch_size, concurrency)
            .run()
            .await;
        let s = ran.summary();
        assert_summary(s, Expect::nothing_settled(s.read).requests(0));
        let error = s.error.as_deref().unwrap();
        assert!(
            error.contains("exceeded its memory limit") && error.contains("`build-request`"),
            "{error}"
        );
        assert!(ran.fates.all().values().all(|(f, _)| is_pending(f)));
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
    let dest = common::accepting().await;
    let mut records = contacts(100);
    records.insert(
        40,
        json!({"id": "huge", "email": "h@example.com", "notes": "y".repeat(10_000)}),
    );
    let ran = Scenario::rest(&dest.base_url())
        .records(records)
        .settings("{ path = \"/v1/records\", max_batch_bytes = \"4096\" }")
        .batches(20, 2)
        .run()
        .await;
    assert_summary(
        ran.summary(),
        Expect::completed().delivered(100).rejected(1).pending(0),
    );
    assert_eq!(dest.stored().len(), 100);
    assert!(
        dest.requests()
            .iter()
            .all(|r| !r.keys.contains(&"huge".to_string())),
        "the record was sent"
    );
    let entry = ran.entry("huge");
    assert_eq!(entry.status, Status::Rejected);
    let failure = entry.failure.unwrap();
    assert_eq!(failure.code, "RECORD_TOO_LARGE");
    assert!(
        failure.message.contains("max-batch-bytes 4096"),
        "{}",
        failure.message
    );
}

/// `n` contacts, sent in batches of ten by `workers` to a loopback port nothing listens
/// on, three attempts each.
async fn down(n: usize, workers: usize) -> Scenario {
    Scenario::contacts_to(&common::closed_port().await, n)
        .batches(10, workers)
        .retry("max_attempts = 3")
        .fast_retries()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_for_the_whole_run_fails_it_and_leaves_records_pending() {
    let ran = down(50, 1).await.run().await;
    let s = ran.summary();
    // One batch used up its three attempts; no other batch was sent.
    assert_summary(s, Expect::nothing_settled(s.read).requests(3));
    let error = s.error.as_deref().unwrap();
    assert!(
        error.starts_with("the destination could not be reached"),
        "{error}"
    );
    assert!(error.contains("CONNECTION_FAILED"), "{error}");
    assert!(error.contains("stopped taking new batches"), "{error}");
    let all = ran.fates.all();
    assert_eq!(all.len() as u64, s.read);
    assert!(all.values().all(|(f, _)| is_pending(f)));
    let tried: Vec<_> = all
        .iter()
        .filter(|(_, (f, _))| matches!(f, Fate::Pending(Some(f)) if f.code == "CONNECTION_FAILED"))
        .collect();
    assert_eq!(tried.len(), 10, "the first batch");
    assert!(tried.iter().all(|(_, (_, attempts))| *attempts == 3));

    let entries = ran.entries();
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
    let ran = down(200, 3).await.run().await;
    let s = ran.summary();
    assert_summary(s, Expect::nothing_settled(s.read));
    // At most each worker's first batch, three attempts each.
    assert!((3..=9).contains(&s.requests), "{} requests", s.requests);
    assert!(ran.fates.all().values().all(|(f, _)| is_pending(f)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_run_exits_1_when_the_destination_is_down() {
    let setup = down(20, 1).await.setup();
    let config = setup.config_path();
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
