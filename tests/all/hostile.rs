//! The host against a hostile destination (`sluice_sim::hostile`), a test per misbehaviour:
//! every record's exact fate (in the run and in the ledger), the summary, what the
//! destination stored and how many requests it saw; and for an echoed credential, that it
//! reaches none of the run's output, its debug log, the ledger, the inspector, or the bytes
//! under `state_dir`.
//!
//! Every test sends one batch (10 records at most, one worker), so that request counts are
//! exact: three attempts, backoffs of 20 to 80 ms, a rate-limit budget of 400 ms.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sluice::engine::{Fate, RunReport};
use sluice::sync::Host;
use sluice_sim::hostile::{
    self, HostileConfig, HostileHandle, Misbehaviour, PATH, answer, credential_forms, record_id,
};

use crate::common::{self, Expect, Scenario, Setup, assert_summary, assert_summary_of};

/// The REST connector reading the hostile destination's per-record answers.
const SETTINGS: &str = r#"{ path = "/v1/records", results_pointer = "/results", id_field = "id" }"#;

/// A misbehaviour that should stop after a few requests is cut off after this many, so that
/// a host that storms fails its test quickly instead of running forever.
const STORM_GUARD: u64 = 50;

/// How long any run may take before the test calls it stuck.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The sync of `n` contacts to `dest`, with `extra` lines in its `[[sync]]` table.
fn scenario(dest: &HostileHandle, n: usize, extra: &str) -> Scenario {
    Scenario::rest(&dest.base_url())
        .records(contacts(n))
        .settings(SETTINGS)
        .batch(10)
        .concurrency(1)
        .sync("max_response_bytes = \"64KiB\"")
        .sync(extra)
        .retry("max_attempts = 3\ninitial_backoff = \"20ms\"\nmax_backoff = \"80ms\"\nmax_rate_limit_wait = \"400ms\"")
}

fn contacts(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("h{i:02}"), "email": format!("h{i}@example.com"), "n": i}))
        .collect()
}

async fn destination(misbehaviour: Misbehaviour, times: Option<u64>) -> HostileHandle {
    hostile::start(HostileConfig::doing(misbehaviour, times))
        .await
        .unwrap()
}

/// A fate in a few words: `delivered(h-h00)`, `rejected(CODE)`, `pending(CODE)`, `pending(-)`.
fn fate(f: &Fate) -> String {
    match f {
        Fate::Delivered(id) => format!("delivered({})", id.as_deref().unwrap_or("-")),
        Fate::Rejected(f) => format!("rejected({})", f.code),
        Fate::Permanent(f) => format!("permanent({})", f.code),
        Fate::Pending(f) => format!("pending({})", f.as_ref().map_or("-", |f| f.code.as_str())),
    }
}

/// Each of `keys` with the same expected fate.
fn every(keys: &[String], fate: &str) -> BTreeMap<String, String> {
    keys.iter().map(|k| (k.clone(), fate.to_string())).collect()
}

/// Each of `keys` delivered with the id the destination gave it.
fn delivered(keys: &[String]) -> BTreeMap<String, String> {
    keys.iter()
        .map(|k| (k.clone(), format!("delivered({})", record_id(k))))
        .collect()
}

/// A hostile destination, a sync of `n` records against it, and one host running it.
struct Bench {
    dest: HostileHandle,
    setup: Setup,
    host: Host,
    keys: Vec<String>,
}

impl Bench {
    async fn new(misbehaviour: Misbehaviour, times: Option<u64>, n: usize, extra: &str) -> Self {
        let dest = destination(misbehaviour, times).await;
        let setup = scenario(&dest, n, extra).setup();
        let host = Host::new(&setup.config).unwrap();
        let keys = contacts(n)
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        Bench {
            dest,
            setup,
            host,
            keys,
        }
    }

    /// Runs the sync once: its report, and every record's fate as the run decided it.
    async fn run(&self) -> (RunReport, BTreeMap<String, String>) {
        let (report, fates) =
            tokio::time::timeout(RUN_LIMIT, common::run_on(&self.host, &self.setup))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the run did not end within {RUN_LIMIT:?}; the destination saw {} requests",
                        self.dest.request_count()
                    )
                });
        let fates = fates
            .all()
            .iter()
            .map(|(k, (f, _))| (k.clone(), fate(f)))
            .collect();
        (report, fates)
    }

    /// Every record of the ledger: `status(code)`, `status(-)` without a failure.
    fn ledger(&self) -> BTreeMap<String, String> {
        common::ledger_entries(&self.host, "s")
            .into_iter()
            .map(|(key, entry)| {
                let shown = match (&entry.failure, &entry.destination_id) {
                    (Some(f), _) => f.code.clone(),
                    (None, Some(id)) => id.clone(),
                    (None, None) => "-".into(),
                };
                (key, format!("{}({shown})", entry.status.name()))
            })
            .collect()
    }
}

// ---- sanity: a destination that behaves ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_hostile_destination_takes_every_record_once() {
    common::set_env("HOSTILE_OK_TOKEN", "ok-token");
    let bench = Bench::new(
        Misbehaviour::None,
        None,
        5,
        "auth = { bearer_env = \"HOSTILE_OK_TOKEN\" }",
    )
    .await;
    let (report, fates) = bench.run().await;
    assert_summary(
        &report.summary,
        Expect::completed().delivered(5).pending(0).requests(1),
    );
    assert_eq!(fates, delivered(&bench.keys));
    assert_eq!(bench.ledger(), delivered(&bench.keys));
    let stored: Vec<Value> = bench.dest.stored().into_values().collect();
    assert_eq!(stored, contacts(5));
    let requests = bench.dest.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].path.as_str(), requests[0].answer),
        (PATH, answer::OK)
    );
    assert_eq!(requests[0].header("authorization"), Some("Bearer ok-token"));
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(sent, json!(contacts(5)));
}

// ---- rate limits whose stated wait is useless ----

/// A 429 whose `Retry-After` says to wait less than the backoff (zero, a time in the past) or
/// nothing: the host waits the backoff ceiling of this batch's consecutive rate-limited
/// answers instead, counts each wait against `max_rate_limit_wait`, and once that is spent
/// leaves the batch pending with `RATE_LIMITED`. No storm: the requests are spaced at least
/// by the ceilings, and there are only as many as the budget allows.
async fn assert_waits_the_backoff(retry_after: Option<&str>) {
    let bench = Bench::new(
        Misbehaviour::RateLimit {
            retry_after: retry_after.map(str::to_owned),
        },
        Some(STORM_GUARD),
        5,
        "",
    )
    .await;
    let (report, fates) = bench.run().await;
    let requests = bench.dest.requests();
    let policy = bench.setup.config.sync("s").unwrap().retry;

    // Hit k has waited ceiling(1) + ... + ceiling(k); another request may follow only while
    // that is within the budget (a host that checks the next pause before sending stops one
    // request earlier).
    let (mut most, mut waited) = (1usize, policy.backoff_ceiling(1));
    while waited <= policy.max_rate_limit_wait {
        most += 1;
        waited += policy.backoff_ceiling(most as u32);
    }
    assert!(
        requests.len() <= most,
        "Retry-After {retry_after:?}: {} requests for one batch, at most {most} fit the budget",
        requests.len()
    );
    assert!(
        requests.len() + 1 >= most,
        "Retry-After {retry_after:?}: gave up after {} requests; {most} fit the budget",
        requests.len()
    );
    for pair in requests.windows(2) {
        let hit = pair[1].seq as u32;
        let gap = pair[1].arrived.duration_since(pair[0].arrived);
        let floor = policy.backoff_ceiling(hit);
        assert!(
            gap >= floor,
            "Retry-After {retry_after:?}: request {} came {gap:?} after rate-limited answer {hit}, \
             before the backoff ceiling {floor:?}",
            pair[1].seq
        );
    }
    assert!(requests.iter().all(|r| r.answer == answer::RATE_LIMITED));

    let sent = requests.len() as u64;
    assert_summary_of(
        format!("Retry-After {retry_after:?}"),
        &report.summary,
        Expect::completed()
            .delivered(0)
            .rejected(0)
            .pending(5)
            .requests(sent)
            .rate_limit_waits(sent),
    );
    assert_eq!(fates, every(&bench.keys, "pending(RATE_LIMITED)"));
    assert_eq!(bench.ledger(), every(&bench.keys, "pending(RATE_LIMITED)"));
    assert!(bench.dest.stored().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_zero_waits_the_backoff_and_spends_the_budget() {
    assert_waits_the_backoff(Some("0")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_date_in_the_past_waits_the_backoff_and_spends_the_budget() {
    assert_waits_the_backoff(Some("Thu, 01 Jan 2015 00:00:00 GMT")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_waits_the_backoff_and_spends_the_budget() {
    assert_waits_the_backoff(None).await;
}

/// A wait too long for any clock (more seconds than fit in u64 milliseconds, or the year
/// 9999) is just longer than the budget: one request, the batch pending, no crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_any_clock_leaves_the_batch_pending_without_overflow() {
    for retry_after in ["99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"] {
        let bench = Bench::new(
            Misbehaviour::RateLimit {
                retry_after: Some(retry_after.into()),
            },
            Some(STORM_GUARD),
            5,
            "",
        )
        .await;
        let (report, fates) = bench.run().await;
        let s = &report.summary;
        assert_summary_of(
            format!("Retry-After {retry_after}"),
            s,
            Expect::completed()
                .delivered(0)
                .pending(5)
                .requests(1)
                .rate_limit_waits(1),
        );
        assert_eq!(s.error, None, "Retry-After {retry_after}");
        assert_eq!(bench.dest.request_count(), 1);
        assert_eq!(fates, every(&bench.keys, "pending(RATE_LIMITED)"));
        assert_eq!(bench.ledger(), every(&bench.keys, "pending(RATE_LIMITED)"));
    }
}

// ---- bodies that are too big, cut short, or too slow ----

/// A 200 far larger than `max_response_bytes` is cut there; what is left is no
/// confirmation, so nothing is delivered, though the destination stored the records. The
/// records are rejected (`MALFORMED_RESPONSE`) after their attempts, and the next run, with
/// a destination that answers normally, delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_is_cut_and_never_taken_for_a_confirmation() {
    let bench = Bench::new(Misbehaviour::HugeBody { padding: 1 << 20 }, None, 5, "").await;
    let (report, fates) = bench.run().await;
    assert_malformed_after_three_attempts("a huge body", &report, &fates, &bench);
    assert_eq!(bench.dest.stored().len(), 5, "the destination took them");
    let entry = common::ledger_entry(&bench.host, "s", "h00");
    let message = entry.failure.unwrap().message;
    assert!(
        message.contains("not JSON"),
        "the body was cut, so it no longer parses: {message}"
    );

    bench.dest.set(Misbehaviour::None, None);
    let (report, fates) = bench.run().await;
    assert_eq!((report.summary.delivered, report.summary.requests), (5, 1));
    assert_eq!(fates, delivered(&bench.keys));
    assert_eq!(bench.ledger(), delivered(&bench.keys));
}

/// Three attempts, each answered with something that is no confirmation: every record is
/// rejected with `MALFORMED_RESPONSE`, in the run and in the ledger.
fn assert_malformed_after_three_attempts(
    case: impl std::fmt::Display,
    report: &RunReport,
    fates: &BTreeMap<String, String>,
    bench: &Bench,
) {
    assert_summary_of(
        &case,
        &report.summary,
        Expect::completed()
            .delivered(0)
            .rejected(5)
            .pending(0)
            .requests(3)
            .transient_failures(3),
    );
    assert_eq!(bench.dest.request_count(), 3, "{case}");
    let expected = every(&bench.keys, "rejected(MALFORMED_RESPONSE)");
    assert_eq!(*fates, expected, "{case}");
    assert_eq!(bench.ledger(), expected, "{case}");
}

/// A destination that never gets a whole response to the host is down, as far as the host
/// can tell: its records stay pending with the transport's code, the run delivered nothing
/// and says the destination could not be reached.
fn assert_unreachable(
    report: &RunReport,
    fates: &BTreeMap<String, String>,
    bench: &Bench,
    code: &str,
) {
    let s = &report.summary;
    assert_summary(
        s,
        Expect::failed()
            .delivered(0)
            .rejected(0)
            .pending(5)
            .requests(3)
            .transient_failures(3),
    );
    let error = s.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("the destination could not be reached"),
        "{error}"
    );
    assert_eq!(bench.dest.request_count(), 3);
    let expected = every(&bench.keys, &format!("pending({code})"));
    assert_eq!(*fates, expected);
    assert_eq!(bench.ledger(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_leaves_the_records_pending() {
    let bench = Bench::new(Misbehaviour::TruncatedBody, None, 5, "").await;
    let (report, fates) = bench.run().await;
    assert_unreachable(&report, &fates, &bench, "HTTP_TRANSPORT");
    assert_eq!(bench.dest.stored().len(), 5, "the destination took them");
    assert!(
        bench
            .dest
            .requests()
            .iter()
            .all(|r| r.answer == answer::TRUNCATED)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_past_request_timeout_is_a_timeout_not_a_delivery() {
    let bench = Bench::new(
        Misbehaviour::SlowBody {
            interval: Duration::from_millis(100),
            pieces: 20,
        },
        None,
        5,
        "request_timeout = \"300ms\"",
    )
    .await;
    let (report, fates) = bench.run().await;
    assert_unreachable(&report, &fates, &bench, "TIMEOUT");
    assert!(
        bench
            .dest
            .requests()
            .iter()
            .all(|r| r.answer == answer::SLOW)
    );
}

// ---- connections that are reset ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_is_retried_and_the_records_delivered() {
    let bench = Bench::new(Misbehaviour::Reset, Some(1), 5, "").await;
    let (report, fates) = bench.run().await;
    assert_summary(
        &report.summary,
        Expect::completed()
            .delivered(5)
            .requests(2)
            .transient_failures(1)
            .retries(5),
    );
    assert_eq!(fates, delivered(&bench.keys));
    assert_eq!(bench.ledger(), delivered(&bench.keys));
    let answers: Vec<&str> = bench.dest.requests().iter().map(|r| r.answer).collect();
    assert_eq!(answers, [answer::RESET, answer::OK]);
    assert_eq!(bench.dest.stored().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_always_resets_leaves_the_records_pending() {
    let bench = Bench::new(Misbehaviour::Reset, None, 5, "").await;
    let (report, fates) = bench.run().await;
    assert_unreachable(&report, &fates, &bench, "HTTP_TRANSPORT");
    assert!(bench.dest.stored().is_empty());
}

// ---- redirects and wrong-length results ----

/// A redirect is never followed (the place it points at sees nothing): the connector reads
/// the 3xx as fatal, the run stops, and the batch stays pending with `HTTP_3xx`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_its_records_stay_pending_with_its_code() {
    let elsewhere = destination(Misbehaviour::None, None).await;
    for status in [301, 302, 303, 307, 308] {
        let location = format!("{}{PATH}", elsewhere.base_url());
        let bench = Bench::new(Misbehaviour::Redirect { status, location }, None, 5, "").await;
        let (report, fates) = bench.run().await;
        let s = &report.summary;
        let code = format!("HTTP_{status}");
        assert_summary_of(
            status,
            s,
            Expect::failed()
                .delivered(0)
                .rejected(0)
                .pending(5)
                .requests(1),
        );
        assert!(s.error.as_deref().unwrap().contains(&code), "{:?}", s.error);
        assert_eq!(fates, every(&bench.keys, &format!("pending({code})")));
        assert_eq!(
            bench.ledger(),
            every(&bench.keys, &format!("pending({code})"))
        );
        assert_eq!(bench.dest.request_count(), 1);
        assert!(bench.dest.stored().is_empty());
    }
    assert_eq!(elsewhere.request_count(), 0, "a redirect was followed");
}

/// Results of another length than the batch cannot be matched to its records: the answer
/// is malformed (transient), never a delivery of the records it happens to list, and after
/// the attempts the records are rejected with `MALFORMED_RESPONSE`. (A connector whose own
/// verdict has the wrong length breaks the contract: see `sandbox.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_of_the_wrong_length_are_never_taken_for_deliveries() {
    for delta in [-1, 1, -5] {
        let bench = Bench::new(Misbehaviour::WrongLength { delta }, None, 5, "").await;
        let (report, fates) = bench.run().await;
        assert_malformed_after_three_attempts(format!("delta {delta}"), &report, &fates, &bench);
    }
}

// ---- echoed credentials ----

/// A secret with characters that base64 and percent-encoding change, so that each of its
/// three forms is distinct.
const SECRET: &str = "Zq8+Wm3=Xv5/Tk7+Pb2";

/// Every file under `dir`, recursively, with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Runs the sync with the `sluice` binary twice (the human report, then `--json`), with a
/// debug log, then reads it back every way an operator can (ledger, inspector, run
/// history) and every file under `state_dir`: the secret is in none of them, in any of its
/// forms. Returns the `--json` summary and the ledger as `ledger list --json` prints it.
async fn assert_secret_nowhere(
    setup: &Setup,
    env: &[(&str, &str)],
    secrets: &[&str],
) -> (Value, Vec<Value>) {
    let config = setup.dir.path().join("sluice.toml");
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "debug"));
    let human = common::sluice(&["run"], &config, &env).await;
    let json = common::sluice(&["run", "--json"], &config, &env).await;
    let ledger = common::sluice(&["ledger", "list", "--sync", "s", "--json"], &config, &env).await;
    let table = common::sluice(&["ledger", "list", "--sync", "s"], &config, &env).await;
    let inspect = common::sluice(&["inspect", "--sync", "s", "--json"], &config, &env).await;
    let inspect_human = common::sluice(&["inspect", "--sync", "s"], &config, &env).await;
    let runs = common::sluice(&["runs", "--json"], &config, &env).await;
    for (what, out) in [
        ("ledger list --json", &ledger),
        ("inspect --json", &inspect),
        ("runs --json", &runs),
    ] {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let inspected = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspected.contains(hostile::ECHO_HEADER),
        "the inspector holds the echoing answers: {inspected}"
    );

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("`sluice run` stdout".into(), human.stdout.clone()),
        (
            "`sluice run` stderr (debug log)".into(),
            human.stderr.clone(),
        ),
        ("`sluice run --json` stdout".into(), json.stdout.clone()),
        (
            "`sluice run --json` stderr (debug log)".into(),
            json.stderr.clone(),
        ),
        ("`sluice ledger list --json`".into(), ledger.stdout.clone()),
        ("`sluice ledger list`".into(), table.stdout.clone()),
        ("`sluice inspect --json`".into(), inspect.stdout.clone()),
        ("`sluice inspect`".into(), inspect_human.stdout.clone()),
        ("`sluice runs --json`".into(), runs.stdout.clone()),
    ];
    let state = setup.config.state_dir.clone();
    let files = files_under(&state);
    assert!(!files.is_empty(), "nothing under {}", state.display());
    for (path, bytes) in files {
        places.push((format!("file {}", path.display()), bytes));
    }
    let mut forms: Vec<String> = secrets.iter().flat_map(|s| credential_forms(s)).collect();
    forms.sort();
    forms.dedup();
    let leaks: Vec<String> = places
        .iter()
        .flat_map(|(what, bytes)| {
            forms
                .iter()
                .filter(|form| contains(bytes, form))
                .map(move |form| format!("{form} in {what}"))
        })
        .collect();
    assert!(leaks.is_empty(), "the secret leaked:\n{}", leaks.join("\n"));
    let summary = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json.stdout)));
    (
        summary,
        common::json_lines(&String::from_utf8_lossy(&ledger.stdout)),
    )
}

/// Every record of `ledger` (as `ledger list --json` prints it) by key: status, code,
/// message and fields.
fn ledger_failures(ledger: &[Value]) -> BTreeMap<String, Value> {
    ledger
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                json!([e["status"], e["code"], e["message"], e["fields"]]),
            )
        })
        .collect()
}

/// How an echoing refusal of a record reads in `ledger list --json`, scrubbed.
fn scrubbed_refusal() -> Value {
    json!([
        "rejected",
        "DENIED [redacted]",
        "credential [redacted] is not allowed here (base64 [redacted]; see /help?credential=[redacted])",
        ["[redacted]", "email"],
    ])
}

/// The destination puts the bearer token into every per-record error (code, message as
/// is, in base64 and percent-encoded, and the field list), a response header and the body.
/// The records are rejected with the scrubbed failure; the token is nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_bearer_token_reaches_no_output_log_ledger_inspector_or_file() {
    let dest = destination(Misbehaviour::EchoCredential { status: 200 }, None).await;
    let setup = scenario(&dest, 5, "auth = { bearer_env = \"HOSTILE_ECHO_BEARER\" }").setup();
    let (summary, ledger) =
        assert_secret_nowhere(&setup, &[("HOSTILE_ECHO_BEARER", SECRET)], &[SECRET]).await;
    assert_eq!(dest.request_count(), 2, "one request a run");
    assert!(
        dest.requests()
            .iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {SECRET}")))
    );
    assert_eq!(
        (
            &summary["outcome"],
            &summary["rejected"],
            &summary["delivered"],
            &summary["requests"]
        ),
        (&json!("completed"), &json!(5), &json!(0), &json!(1))
    );
    // The header's whole value is a secret, its scheme included.
    let failure = scrubbed_refusal();
    let keys: Vec<String> = (0..5).map(|i| format!("h{i:02}")).collect();
    let expected: BTreeMap<String, Value> =
        keys.iter().map(|k| (k.clone(), failure.clone())).collect();
    assert_eq!(ledger_failures(&ledger), expected);
    assert!(dest.stored().is_empty());
}

/// The same for an API key in its own header, echoed in a whole-batch 422: the batch is
/// bisected down to single records, each rejected with the scrubbed code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_api_key_in_a_refused_batch_reaches_nothing() {
    let dest = hostile::start(HostileConfig {
        misbehaviour: Misbehaviour::EchoCredential { status: 422 },
        credential_header: "X-Api-Key".into(),
        ..HostileConfig::default()
    })
    .await
    .unwrap();
    let setup = scenario(
        &dest,
        5,
        "auth = { header = \"X-Api-Key\", value_env = \"HOSTILE_ECHO_API_KEY\" }",
    )
    .setup();
    let (summary, ledger) =
        assert_secret_nowhere(&setup, &[("HOSTILE_ECHO_API_KEY", SECRET)], &[SECRET]).await;
    assert!(
        dest.requests()
            .iter()
            .all(|r| r.header("x-api-key") == Some(SECRET))
    );
    assert_eq!(
        (
            &summary["outcome"],
            &summary["rejected"],
            &summary["delivered"]
        ),
        (&json!("completed"), &json!(5), &json!(0))
    );
    // Five records refused as a whole each time: 1 + 2 + 2 + 2 + 2 requests (halves of
    // 2 and 3, then the singles), the same in both runs.
    assert_eq!(summary["requests"], json!(9));
    assert_eq!(dest.request_count(), 18);
    let failure = scrubbed_refusal();
    let expected: BTreeMap<String, Value> = (0..5)
        .map(|i| (format!("h{i:02}"), failure.clone()))
        .collect();
    assert_eq!(ledger_failures(&ledger), expected);
}

/// Echoed in a 401, the token ends up in the run's error (credentials refused after a
/// renewal): the run fails, its records pending, and the error is scrubbed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_token_in_a_refusal_of_credentials_is_kept_out_of_the_run_error() {
    let dest = destination(Misbehaviour::EchoCredential { status: 401 }, None).await;
    let setup = scenario(&dest, 5, "auth = { bearer_env = \"HOSTILE_ECHO_401\" }").setup();
    let (summary, ledger) =
        assert_secret_nowhere(&setup, &[("HOSTILE_ECHO_401", SECRET)], &[SECRET]).await;
    assert_eq!(
        (
            &summary["outcome"],
            &summary["pending"],
            &summary["delivered"],
            &summary["requests"]
        ),
        (&json!("failed"), &json!(5), &json!(0), &json!(2)),
        "refused, renewed, refused again"
    );
    let error = summary["error"].as_str().unwrap();
    assert!(error.contains("DENIED [redacted]"), "{error}");
    assert_eq!(dest.request_count(), 4);
    assert!(
        ledger.iter().all(|e| e["status"] == "pending"),
        "{ledger:?}"
    );
    assert_eq!(ledger.len(), 5);
}

/// A `Basic` credential given as a header: the destination echoes the encoded value and
/// the decoded `user:password`. Neither, nor the password alone, reaches anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_basic_credential_and_its_password_reach_nothing() {
    let dest = destination(Misbehaviour::EchoCredential { status: 200 }, None).await;
    let pair = format!("ops:{SECRET}");
    let [_, encoded, _] = credential_forms(&pair);
    let setup = scenario(
        &dest,
        5,
        "auth = { header = \"Authorization\", value_env = \"HOSTILE_ECHO_BASIC\" }",
    )
    .setup();
    let value = format!("Basic {encoded}");
    let (summary, ledger) = assert_secret_nowhere(
        &setup,
        &[("HOSTILE_ECHO_BASIC", &value)],
        &[&encoded, &pair, SECRET],
    )
    .await;
    assert!(
        dest.requests()
            .iter()
            .all(|r| r.header("authorization") == Some(value.as_str()))
    );
    let text = String::from_utf8(dest.requests()[0].body.clone()).unwrap();
    assert!(text.contains("h00"), "{text}");
    assert_eq!(
        (
            &summary["outcome"],
            &summary["rejected"],
            &summary["delivered"]
        ),
        (&json!("completed"), &json!(5), &json!(0))
    );
    assert_eq!(ledger.len(), 5);
    for entry in &ledger {
        assert_eq!(
            (&entry["status"], &entry["code"]),
            (&json!("rejected"), &json!("DENIED [redacted]")),
            "{entry}"
        );
    }
}
