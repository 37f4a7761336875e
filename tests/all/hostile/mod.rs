//! The host against a hostile destination (`sluice_sim::hostile`), a test per misbehaviour:
//! every record's exact fate (in the run and in the ledger), the summary, what the
//! destination stored and how many requests it saw; and for an echoed credential, that it
//! reaches none of the run's output, its debug log, the ledger, the inspector, or the bytes
//! under `state_dir`.
//!
//! Every test sends one batch (10 records at most, one worker), so that request counts are
//! exact: three attempts, backoffs of 20 to 80 ms, a rate-limit budget of 400 ms.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::engine::{Fate, RunReport};
use sluice::sync::Host;
use sluice_sim::hostile::{
    self, HostileConfig, HostileHandle, Misbehaviour, PATH, answer, credential_forms, record_id,
};

use crate::common::{self, Expect, Scenario, Setup, assert_summary, assert_summary_of};

mod answers;
mod bodies;
mod echoed_credentials;
mod rate_limits;
mod resets;
mod well_behaved;

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
        .batches(10, 1)
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

    /// How the destination answered each request, in order.
    fn answers(&self) -> Vec<&'static str> {
        self.dest.requests().iter().map(|r| r.answer).collect()
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
