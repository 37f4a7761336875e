//! What a run reads: the sync's source, filtered through the ledger (skip what the
//! destination already has, hold what waits for a person, let the last of a repeated key
//! win), or records the retry job picked from the ledger.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use anyhow::Result;

use super::batcher::Batcher;
use super::outcome::Count;
use super::{InvalidRow, MAX_INVALID_ROWS_KEPT, Shared};
use crate::config::SourceSpec;
use crate::ledger::{Decision, SyncLedger};
use crate::source::{self, Record, Row};

/// Where a run's records come from.
pub enum Input {
    /// The sync's source. With a ledger, records the destination already holds are
    /// skipped (unless `send_all`) and permanent ones are held while unchanged.
    Source {
        ledger: Option<SyncLedger>,
        send_all: bool,
    },
    /// Records chosen by the retry job, sent as they are.
    Records(Vec<Record>),
}

/// Streams the input into batches on `tx`; runs on a blocking thread. Returns the rows
/// it skipped as unusable.
pub(super) fn read(
    input: Input,
    spec: &SourceSpec,
    mut batcher: Batcher,
    shared: &Shared,
    tx: tokio::sync::mpsc::Sender<Vec<Record>>,
) -> Result<Vec<InvalidRow>> {
    let mut skipped = Vec::new();
    let mut report = |line: u64, reason: String, count: Count| {
        shared.counters.add(count, 1);
        tracing::info!(sync = %shared.spec.name, line, "skipping source row: {reason}");
        if skipped.len() < MAX_INVALID_ROWS_KEPT {
            skipped.push(InvalidRow { line, reason });
        }
    };
    let mut emit = |record: Record| -> bool {
        match batcher.push(record) {
            Some(batch) => send(&tx, batch, shared),
            None => true,
        }
    };

    match input {
        Input::Records(records) => {
            for record in records {
                if shared.stop.is_cancelled() {
                    return Ok(skipped);
                }
                shared.counters.add(Count::Read, 1);
                if !emit(record) {
                    return Ok(skipped);
                }
            }
        }
        Input::Source { ledger, send_all } => {
            // An empty ledger has nothing to skip or hold: spare a lookup per record.
            let ledger = ledger.filter(|ledger| !ledger.is_empty());
            let repeated = repeated_keys(spec)?;
            let mut seen_of_repeated: HashMap<u64, u64> = HashMap::new();
            for row in source::open(spec)? {
                if shared.stop.is_cancelled() {
                    return Ok(skipped);
                }
                let (line, record) = match row? {
                    Row::Invalid { line, reason } => {
                        report(line, reason, Count::InvalidRows);
                        continue;
                    }
                    Row::Record { line, record } => (line, record),
                };
                shared.counters.add(Count::Read, 1);
                let hash = key_hash(&record.key);
                if let Some(&total) = repeated.get(&hash) {
                    let seen = seen_of_repeated.entry(hash).or_default();
                    *seen += 1;
                    if *seen < total {
                        let reason = format!(
                            "key `{}` appears again later in the source; the last row wins",
                            record.key
                        );
                        report(line, reason, Count::Duplicates);
                        continue;
                    }
                }
                if let Some(ledger) = &ledger {
                    match ledger.decide(&record, send_all)? {
                        Decision::Send => {}
                        Decision::Unchanged => {
                            shared.counters.add(Count::Unchanged, 1);
                            continue;
                        }
                        Decision::Held => {
                            shared.counters.add(Count::Held, 1);
                            continue;
                        }
                    }
                }
                if !emit(record) {
                    return Ok(skipped);
                }
            }
        }
    }
    if let Some(batch) = batcher.finish() {
        send(&tx, batch, shared);
    }
    Ok(skipped)
}

/// Keys that occur more than once in the source, with how often. A first pass over the
/// file keeps only a 64-bit hash per key, so a million keys cost a few megabytes.
fn repeated_keys(spec: &SourceSpec) -> Result<HashMap<u64, u64>> {
    let mut seen = HashSet::new();
    let mut repeated: HashMap<u64, u64> = HashMap::new();
    for row in source::open(spec)? {
        if let Row::Record { record, .. } = row? {
            let hash = key_hash(&record.key);
            if !seen.insert(hash) {
                *repeated.entry(hash).or_insert(1) += 1;
            }
        }
    }
    Ok(repeated)
}

fn key_hash(key: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// False when no worker will take the batch any more; its records stay pending.
fn send(tx: &tokio::sync::mpsc::Sender<Vec<Record>>, batch: Vec<Record>, shared: &Shared) -> bool {
    match tx.blocking_send(batch) {
        Ok(()) => true,
        Err(tokio::sync::mpsc::error::SendError(batch)) => {
            shared.leave_pending(batch, None);
            false
        }
    }
}
