//! The persistent retry ledger: fates by key across runs, the retry job, a person's
//! intervention, bad input and crash safety.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use sluice::config::RetryJob;
use sluice::engine::{Fate, Outcome, RecordFailure, Settled};
use sluice::ledger::{Decision, Ledger, PayloadHash, Status};
use sluice::retry_job::{self, Request};
use sluice::source::Record;
use sluice::sync::Host;
use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::rest::{self, RestConfig, RestMode};
use sluice_sim::validation::Rules;

use crate::common::{self, Expect, Scenario, assert_summary, contacts, is_delivered};

mod bad_rows;
mod deletes;
mod later_runs;
mod retries;
mod storage;

/// The REST connector reading per-record answers.
const PER_RECORD: &str =
    r#"{ path = "/v1/records", results_pointer = "/results", id_field = "id" }"#;

/// `records` to `dest` in batches of 20 by two workers, with fast retries.
fn batches_of_20(dest: &SimHandle, records: Vec<serde_json::Value>) -> Scenario {
    Scenario::rest(&dest.base_url())
        .records(records)
        .batches(20, 2)
        .fast_retries()
}

async fn per_record(faults: Faults) -> SimHandle {
    rest::start(RestConfig {
        mode: RestMode::PerRecord,
        faults,
        rules: Rules {
            emails: vec!["email".into()],
            required: vec!["email".into()],
            ..Rules::default()
        },
        ..RestConfig::default()
    })
    .await
    .unwrap()
}

fn rewrite(setup: &common::Setup, records: &[serde_json::Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(setup.dir.path().join("data.jsonl"), text).unwrap();
}

fn data_requests(dest: &SimHandle) -> Vec<Vec<String>> {
    dest.requests()
        .into_iter()
        .filter(|r| r.path == "/v1/records")
        .map(|r| r.keys)
        .collect()
}

fn settle(key: &str, fate: Fate) -> Settled {
    Settled {
        record: Record::new(key.into(), format!("{{\"id\": \"{key}\"}}")),
        fate,
        attempts: 1,
    }
}

fn rejected(code: &str) -> Fate {
    Fate::Rejected(RecordFailure::new(code, "m"))
}

const DAY_MS: u64 = 24 * 3600 * 1000;

/// Opens a database that was just closed in this process. sled releases its file lock
/// from a background thread a moment after the last handle is dropped, so the first tries
/// may find it still locked.
fn reopened<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Ok(db) => return db,
            Err(err) if std::time::Instant::now() > deadline => panic!("reopening: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
