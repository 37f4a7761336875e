//! The delivery engine's verdict paths that do not depend on one connector: backoff,
//! proactive rate limits, rate-limit budgets, fatal verdicts, timeouts, broken connectors.

use std::time::Duration;

use sluice::config::Config;
use sluice::engine::{Outcome, RunControl};
use sluice::sync::Host;
use sluice_sim::faults::Faults;
use sluice_sim::faults::LimitStyle::TooManyRequests;
use sluice_sim::faults::RetryAfterStyle::Seconds;
use sluice_sim::rest::RestMode;
use sluice_sim::{RequestRecord, SimHandle};

use crate::common::{self, Expect, Scenario, assert_summary, contacts, is_delivered, is_pending};

async fn accept_all(faults: Faults) -> SimHandle {
    common::rest_sim(RestMode::AcceptAll, faults).await
}

/// Data requests grouped by their first key (one group per batch), in arrival order.
fn by_batch(requests: &[RequestRecord]) -> std::collections::BTreeMap<String, Vec<&RequestRecord>> {
    let mut groups = std::collections::BTreeMap::<String, Vec<&RequestRecord>>::new();
    for r in requests {
        groups
            .entry(r.keys.first().cloned().unwrap_or_default())
            .or_default()
            .push(r);
    }
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_spreads_attempts_within_the_ceiling_and_counts_them_exactly() {
    let faults = Faults::error_burst(0, 10_000, 500);
    let dest = accept_all(faults).await;
    let ran = Scenario::contacts_to(&dest.base_url(), 60)
        .batches(10, 6)
        .retry("max_attempts = 4\ninitial_backoff = \"40ms\"\nmax_backoff = \"100ms\"\nmultiplier = 2.0")
        .run()
        .await;
    // Six batches, exactly four attempts each.
    ran.expect(
        Expect::completed()
            .delivered(0)
            .rejected(60)
            .requests(24)
            .transient_failures(24)
            .retries(60 * 3),
    );
    assert!(ran.fates.all().values().all(|(_, attempts)| *attempts == 4));

    let requests = dest.requests();
    let batches = by_batch(&requests);
    assert_eq!(batches.len(), 6);
    // Full jitter: the wait before attempt n+1 is drawn from [0, min(100ms, 40ms * 2^(n-1))].
    let ceilings = [40u128, 80, 100];
    let slack = 40; // scheduling and the loopback round trip
    let mut gaps = Vec::new();
    for attempts in batches.values() {
        assert_eq!(attempts.len(), 4);
        for (n, pair) in attempts.windows(2).enumerate() {
            let gap = pair[1].arrived.duration_since(pair[0].arrived).as_millis();
            assert!(
                gap <= ceilings[n] + slack,
                "attempt {} came {gap}ms after the previous one",
                n + 2
            );
            gaps.push(gap);
        }
    }
    let (min, max) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
    assert!(max - min >= 20, "retries are not spread: gaps {gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proactive_rate_limit_spaces_requests_across_workers() {
    let dest = accept_all(Faults::default()).await;
    let ran = Scenario::contacts_to(&dest.base_url(), 200)
        .batches(10, 4)
        .sync("rate_limit = { requests = 5, per = \"500ms\" }")
        .run()
        .await;
    ran.expect(Expect::completed().delivered(200));
    let times: Vec<_> = dest.requests().iter().map(|r| r.arrived).collect();
    assert_eq!(times.len(), 20);
    // GCRA with a burst of 5 and one request per 100ms after it: any stretch of requests
    // i..=j spans at least (j - i + 1 - 5) * 100ms.
    for i in 0..times.len() {
        for j in i + 5..times.len() {
            let span = times[j].duration_since(times[i]);
            let floor = Duration::from_millis(100 * (j - i - 4) as u64);
            assert!(
                span + Duration::from_millis(15) >= floor,
                "requests {i}..={j} within {span:?}"
            );
        }
    }
    assert!(times[19].duration_since(times[0]) >= Duration::from_millis(1400));
}

/// A destination that takes one request a second and answers the others 429 with the
/// seconds left of its window.
fn one_a_second() -> Faults {
    Faults::rate_limited(1, 1000, TooManyRequests, Seconds)
}

/// 30 contacts to `dest` in batches of 10 by one worker, which may spend `budget` waiting
/// out rate limits.
fn thirty_by_one_worker(dest: &SimHandle, budget: &str) -> Scenario {
    Scenario::contacts_to(&dest.base_url(), 30)
        .batches(10, 1)
        .retry(&format!("max_rate_limit_wait = \"{budget}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gives_up_after_max_rate_limit_wait_and_stays_pending() {
    let dest = accept_all(one_a_second()).await;
    let setup = thirty_by_one_worker(&dest, "300ms").setup();
    let ran = common::Ran::of(setup).await;
    // Batch 1 fits the window. Batch 2 is told to wait about a second, more than its
    // budget: it stays pending. Batch 3 would have to wait out the same pause: it stays
    // pending too, without a request, and the run does not stall.
    ran.expect(
        Expect::completed()
            .delivered(10)
            .pending(20)
            .requests(2)
            .rate_limit_waits(1),
    );
    // The run's own time: loading the connector, which a loaded machine may make slow,
    // is not the run waiting.
    let waited = Duration::from_millis(ran.summary().elapsed_ms);
    assert!(
        waited < Duration::from_millis(900),
        "the run waited: {waited:?}"
    );
    let pending = ran.fates.keys(is_pending);
    assert_eq!(pending.len(), 20);
    assert!(
        pending
            .iter()
            .all(|k| ran.fates.codes()[k] == "RATE_LIMITED")
    );
    assert_eq!(dest.stored().len(), 10);
    // Batch 2 was sent once before it gave up, batch 3 never: each record's attempts say
    // so (every pending record showed 0).
    let mut sends: std::collections::BTreeMap<String, u32> = Default::default();
    for request in dest.requests() {
        for key in request.keys {
            *sends.entry(key).or_default() += 1;
        }
    }
    let all = ran.fates.all();
    for key in &pending {
        assert_eq!(all[key].1, sends.get(key).copied().unwrap_or(0), "{key}");
    }
    assert_eq!(
        pending.iter().filter(|k| all[*k].1 == 1).count(),
        10,
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_room_to_wait_a_rate_limited_destination_takes_every_record() {
    let dest = accept_all(one_a_second()).await;
    let ran = thirty_by_one_worker(&dest, "5s").run().await;
    let s = ran.summary();
    assert_eq!((s.delivered, s.pending), (30, 0));
    assert_eq!(s.rate_limit_waits, dest.stats().rate_limited);
    assert!(s.rate_limit_wait_ms >= 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_verdict_stops_the_run_promptly_with_records_pending() {
    let dest = accept_all(Faults::default()).await;
    let ran = Scenario::contacts_to(&dest.base_url(), 500)
        .settings("{ path = \"/v1/nowhere\" }")
        .batches(10, 2)
        .run()
        .await;
    let s = ran.summary();
    ran.expect(Expect::failed().delivered(0).pending(s.read));
    assert!(
        s.error.as_deref().unwrap().contains("HTTP_404"),
        "{:?}",
        s.error
    );
    assert!(
        s.requests <= 2,
        "no request leaves after the fatal verdict: {}",
        s.requests
    );
    assert!(dest.stored().is_empty());
    assert!(ran.fates.keys(is_delivered).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retried_and_never_taken_for_deliveries() {
    let faults = Faults::slow(1, 400);
    let dest = accept_all(faults).await;
    let ran = Scenario::contacts_to(&dest.base_url(), 40)
        .batches(10, 4)
        .sync("request_timeout = \"100ms\"")
        .retry("max_attempts = 2\ninitial_backoff = \"5ms\"")
        .run()
        .await;
    let s = ran.summary();
    // A timeout is no answer: the records stay pending, and a run that delivered nothing
    // because its destination never answered has failed.
    ran.expect(Expect::failed().delivered(0).rejected(0).pending(40));
    assert!(
        s.error
            .as_deref()
            .unwrap()
            .starts_with("the destination could not be reached"),
        "{:?}",
        s.error
    );
    // Four batches, two attempts at most each; once one batch used up its attempts, the
    // others stop at their next.
    assert!((2..=8).contains(&s.requests), "{} requests", s.requests);
    assert!(
        ran.fates.codes().len() == 40 && ran.fates.codes().values().all(|c| c == "TIMEOUT"),
        "{:?}",
        ran.fates.codes()
    );
    assert!(ran.fates.keys(is_delivered).is_empty());
}

/// Three syncs of 50 records on one host: `traps` (a connector that traps in classify),
/// `loops` (one that loops in precheck past its 100ms call limit) and `fine` (the REST
/// connector), all to `dest`.
struct TrapBench {
    _dir: tempfile::TempDir,
    config: Config,
    host: Host,
}

fn trap_bench(dest: &SimHandle) -> TrapBench {
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("hostile.wasm");
    std::fs::write(&hostile, common::guest("test_hostile")).unwrap();
    std::fs::write(
        dir.path().join("data.jsonl"),
        contacts(50)
            .iter()
            .map(|r| format!("{r}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let port = dest.addr().port();
    let config = format!(
        r#"cache_dir = "{cache}"
[connectors.bad]
component = "hostile.wasm"
call_timeout = "100ms"
[connectors.good]
component = "builtin:rest"

[[sync]]
name = "traps"
connector = "bad"
source = {{ jsonl = "data.jsonl", key = "id" }}
base_url = "http://127.0.0.1:{port}"
settings = {{ mode = "trap", phase = "classify" }}
batch_size = 10

[[sync]]
name = "loops"
connector = "bad"
source = {{ jsonl = "data.jsonl", key = "id" }}
base_url = "http://127.0.0.1:{port}"
settings = {{ mode = "loop", phase = "precheck" }}

[[sync]]
name = "fine"
connector = "good"
source = {{ jsonl = "data.jsonl", key = "id" }}
base_url = "http://127.0.0.1:{port}"
settings = {{ path = "/v1/records" }}
"#,
        cache = common::cache_dir().display()
    );
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    let config = Config::load(&path).unwrap();
    let host = Host::new(&config).unwrap();
    TrapBench {
        _dir: dir,
        config,
        host,
    }
}

impl TrapBench {
    async fn run(&self, sync: &str) -> sluice::engine::RunSummary {
        self.host
            .run(&self.config, sync, RunControl::default())
            .await
            .unwrap()
            .summary
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_traps_fails_its_run_with_every_record_pending() {
    let dest = accept_all(Faults::default()).await;
    let bench = trap_bench(&dest);
    let traps = bench.run("traps").await;
    // The run stops at the first trap, so how far the reader got is a matter of timing
    // (the rows it never read are still in the source): at least the first batch.
    assert!((10..=50).contains(&traps.read), "read {}", traps.read);
    assert_summary(&traps, Expect::failed().delivered(0).pending(traps.read));
    let error = traps.error.unwrap();
    assert!(
        error.starts_with("connector `bad` trapped in `classify`"),
        "{error}"
    );
    // Every record the failed run read is in the ledger as pending, none as delivered.
    let statuses: Vec<_> = common::ledger_entries(&bench.host, "traps")
        .into_iter()
        .map(|(_, e)| e.status)
        .collect();
    assert_eq!(statuses.len() as u64, traps.read);
    assert!(
        statuses
            .iter()
            .all(|s| *s == sluice::ledger::Status::Pending)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_past_its_call_time_limit_fails_its_run_before_sending() {
    let dest = accept_all(Faults::default()).await;
    let loops = trap_bench(&dest).run("loops").await;
    assert_summary(&loops, Expect::failed().requests(0));
    assert!(
        loops
            .error
            .unwrap()
            .contains("exceeded its call time limit of 100ms in `precheck`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_connectors_trap_and_loop_the_host_runs_its_other_syncs() {
    let dest = accept_all(Faults::default()).await;
    let bench = trap_bench(&dest);
    assert_eq!(bench.run("traps").await.outcome, Outcome::Failed);
    assert_eq!(bench.run("loops").await.outcome, Outcome::Failed);
    let fine = bench.run("fine").await;
    assert_summary(&fine, Expect::completed().delivered(50));
    // The trapping sync sent its requests (the destination stored them) but, without a
    // verdict, none of its records was taken as delivered.
    assert_eq!(dest.stored().len(), 50);
}
