//! The retry job: picks failed records from the ledger and sends their stored payloads
//! again through the same engine (backoff, bisection, rate limits all apply).
//!
//! Zuora's model, made explicit: records whose failures began within a window (default 7
//! days), at most N a pass (default 50,000), oldest first, never codes that wait for a
//! person (default `DACO-02`) unless a person names them.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::concern::{Concern, ErrorKind};
use crate::config::{Behavior, RetryJob};
use crate::ledger::{Status, SyncLedger};
use crate::source::Record;

/// What a person (or the schedule) asks the retry job for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Overrides the sync's `retry_job.window`.
    pub window: Option<Duration>,
    /// Overrides the sync's `retry_job.max_records`.
    pub limit: Option<usize>,
    /// Only these codes; naming a non-retryable code retries it.
    pub codes: Vec<String>,
    /// Exactly these keys, whatever their failure status, code or age; a delivered one
    /// is refused (`ErrorKind::Failed`: it exists, there is nothing to retry).
    pub keys: Vec<String>,
    /// Permanent records too.
    pub include_permanent: bool,
}

/// The records a pass will send, and what it left out.
#[derive(Debug, Default)]
pub struct Selection {
    pub records: Vec<Record>,
    pub counts: SelectionCounts,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct SelectionCounts {
    /// Failed records whose failures began before the window: not retried, shown so that
    /// a person can see them.
    pub expired: u64,
    /// Records with a code that waits for a person.
    pub non_retryable: u64,
    /// Failed records left for the next pass by the limit.
    pub over_limit: u64,
    pub selected: u64,
}

/// The records a pass sends, each as the sync's `behavior` sends it.
pub fn select(
    ledger: &SyncLedger,
    job: &RetryJob,
    behavior: Behavior,
    request: &Request,
    now_ms: u64,
) -> Result<Selection> {
    if !request.keys.is_empty() {
        return select_keys(ledger, &request.keys, behavior);
    }
    let window = request.window.unwrap_or(job.window);
    let limit = request.limit.unwrap_or(job.max_records);
    let since = now_ms.saturating_sub(window.as_millis() as u64);
    let mut counts = SelectionCounts::default();
    // Each candidate's failure time and the record it would send: only these are copied
    // out of the ledger (see `SyncLedger::visit_failed`).
    let mut candidates: Vec<(u64, Record)> = Vec::new();
    ledger.visit_failed(&mut |key, entry| {
        let code = entry.failure.as_ref().map_or("", |f| f.code);
        let named = request.codes.iter().any(|c| c == code);
        let eligible = match entry.status {
            Status::Rejected | Status::Pending => true,
            Status::Permanent => request.include_permanent || named,
            Status::Delivered | Status::Resolved => false,
        };
        if !eligible || (!request.codes.is_empty() && !named) {
            return Ok(());
        }
        if job.non_retryable.iter().any(|c| c == code) && !named && !request.include_permanent {
            counts.non_retryable += 1;
            return Ok(());
        }
        let began = entry
            .first_failure_ms
            .or(entry.last_attempt_ms)
            .unwrap_or(0);
        if began < since {
            counts.expired += 1;
            return Ok(());
        }
        // Only the key, the payload and the id are copied.
        let (payload, id) = (entry.payload, entry.destination_id);
        let record = record_of(
            key.to_string(),
            payload.map(str::to_string),
            id.map(str::to_string),
            entry.deleting,
            behavior,
        );
        if let Some(record) = record {
            candidates.push((began, record));
        }
        Ok(())
    })?;
    // Oldest failures first; ties in key order, so a pass is reproducible.
    candidates.sort_unstable_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
    counts.over_limit = candidates.len().saturating_sub(limit) as u64;
    candidates.truncate(limit);
    counts.selected = candidates.len() as u64;
    Ok(Selection {
        records: candidates.into_iter().map(|(_, record)| record).collect(),
        counts,
    })
}

/// A failed record sent again as its sync's behaviour sends it (an update by its
/// destination id, say), or as the delete it was; `None` without a payload to send.
fn record_of(
    key: String,
    payload: Option<String>,
    destination_id: Option<String>,
    deleting: bool,
    behavior: Behavior,
) -> Option<Record> {
    if deleting {
        return Some(Record::delete(key, destination_id));
    }
    let mut record = Record::new(key, payload?);
    record.operation = behavior.operation();
    record.destination_id = destination_id;
    Some(record)
}

fn select_keys(ledger: &SyncLedger, keys: &[String], behavior: Behavior) -> Result<Selection> {
    let mut records = Vec::new();
    // A key named twice is sent once: a run never holds two records of one key.
    let mut named = std::collections::HashSet::new();
    for key in keys.iter().filter(|key| named.insert(key.as_str())) {
        let Some(entry) = ledger.get(key)? else {
            return Err(ledger.not_found(key));
        };
        if entry.status == Status::Delivered {
            return Err(ledger.delivered_already(key, "retry"));
        }
        let (payload, id, deleting) = (entry.payload, entry.destination_id, entry.deleting);
        match record_of(key.clone(), payload, id, deleting, behavior) {
            Some(record) => records.push(record),
            None => {
                return Err(anyhow::Error::new(
                    Concern::new(
                        ErrorKind::Failed,
                        format!("record `{key}` has no stored payload to send"),
                    )
                    .sync(ledger.name())
                    .key(key),
                ));
            }
        }
    }
    let selected = records.len() as u64;
    Ok(Selection {
        records,
        counts: SelectionCounts {
            selected,
            ..SelectionCounts::default()
        },
    })
}
