//! The ledger seen from the engine: the sink a run settles fates into, and the filter
//! that skips what the destination already has. The engine owns both interfaces.

use std::sync::Arc;

use anyhow::Result;

use super::SyncLedger;
use crate::clock::now_ms;
use crate::engine::{Filter, Sink};
use crate::fate::{Decision, Record, Settled};

/// The engine's sink into the ledger: each verdict's fates are written as one store
/// batch, on the worker that settled them (sled takes concurrent writers; a single writer
/// thread merging batches measured slower and let its queue grow under load).
pub struct LedgerSink {
    ledger: SyncLedger,
    /// The tree was empty when the run began. Runs of one state directory never overlap
    /// (the store is held by one process, and `sluice serve` runs one job at a time) and
    /// a run settles each key once, so no entry read back could exist: skip the read.
    fresh: bool,
}

impl LedgerSink {
    /// Made as the run begins, before any record settles.
    pub fn new(ledger: SyncLedger) -> Arc<Self> {
        let fresh = ledger.is_empty();
        Arc::new(LedgerSink { ledger, fresh })
    }
}

impl Sink for LedgerSink {
    fn settle(&self, settled: &[Settled]) -> Result<()> {
        self.ledger.write(settled, now_ms(), self.fresh)
    }
}

impl Filter for SyncLedger {
    fn decide(&self, record: &Record, send_all: bool) -> Result<Decision> {
        SyncLedger::decide(self, record, send_all)
    }

    fn is_empty(&self) -> bool {
        SyncLedger::is_empty(self)
    }
}
