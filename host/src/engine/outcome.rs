//! What a run decides about each record, and where those decisions go.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::sandbox::Failure;
use crate::source::Record;

/// A failure as the host keeps and reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFailure {
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl From<Failure> for RecordFailure {
    fn from(f: Failure) -> Self {
        RecordFailure {
            code: f.code,
            message: f.message,
            fields: f.fields,
        }
    }
}

impl RecordFailure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        RecordFailure {
            code: code.to_string(),
            message: message.into(),
            fields: Vec::new(),
        }
    }
}

/// How a record left a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Confirmed by the destination, with the id it gave the record, if any.
    Delivered(Option<String>),
    /// Refused for its data; sent again by later runs.
    Rejected(RecordFailure),
    /// Cannot succeed without a person.
    Permanent(RecordFailure),
    /// The run stopped before the record was settled (a fatal verdict, Ctrl-C, a rate
    /// limit that outlasted `max_rate_limit_wait`); the last failure seen, if any.
    Pending(Option<RecordFailure>),
}

/// A settled record: its fate, and how many times this run sent it.
#[derive(Debug, Clone)]
pub struct Settled {
    pub record: Record,
    pub fate: Fate,
    pub attempts: u32,
}

/// Receives every record's fate as a run decides it (the ledger, a report, a test).
/// Called from several workers at once, with the records of one verdict at a time.
pub trait Sink: Send + Sync {
    fn settle(&self, settled: &[Settled]) -> anyhow::Result<()>;
}

/// Keeps the failed records of a run in memory, up to a cap, for the end-of-run report.
pub struct FailureList {
    cap: usize,
    failures: Mutex<Vec<Settled>>,
}

impl FailureList {
    pub fn new(cap: usize) -> Self {
        FailureList {
            cap,
            failures: Mutex::new(Vec::new()),
        }
    }

    pub fn take(&self) -> Vec<Settled> {
        std::mem::take(&mut *self.failures.lock().unwrap())
    }
}

impl Sink for FailureList {
    fn settle(&self, settled: &[Settled]) -> anyhow::Result<()> {
        let mut failures = self.failures.lock().unwrap();
        for s in settled {
            if failures.len() >= self.cap {
                break;
            }
            if !matches!(s.fate, Fate::Delivered(_)) {
                failures.push(s.clone());
            }
        }
        Ok(())
    }
}

/// The run's counters, shared by every worker.
#[derive(Default)]
pub struct Counters {
    pub read: AtomicU64,
    pub invalid_rows: AtomicU64,
    pub duplicates: AtomicU64,
    pub unchanged: AtomicU64,
    pub held: AtomicU64,
    pub delivered: AtomicU64,
    pub rejected: AtomicU64,
    pub permanent: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limit_waits: AtomicU64,
    pub rate_limit_wait_ms: AtomicU64,
    pub bisections: AtomicU64,
    pub transient_failures: AtomicU64,
    pub auth_renewals: AtomicU64,
    /// Time spent inside connector calls (precheck, build-request, classify).
    pub connector_us: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
