//! Where a run's decisions go: the sink the engine settles every record's fate into,
//! and the in-memory list of failures kept for the end-of-run report.

use std::sync::Mutex;

use crate::fate::{Fate, Settled};

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
