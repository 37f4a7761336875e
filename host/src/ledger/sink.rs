//! The ledger seen from the engine during one run: the sink it settles fates into, and
//! the filter that skips what the destination already has. The engine owns both
//! interfaces; this is where a run reads the delivered log (once, at its start).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;

use super::delivered::{Fingerprint, Index};
use super::{Entry, PayloadHash, SyncLedger, model};
use crate::clock::now_ms;
use crate::engine::{Filter, Sink};
use crate::fate::{Decision, Record, Settled};
use crate::source::partition::Partition;

/// How a run begins, as far as the ledger is concerned.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStart {
    /// The run reads the source: read the delivered log for change detection. A retry
    /// pass sends failed records only and reads nothing.
    pub reads_source: bool,
    /// The destination this run delivers to; when it differs from the one the delivered
    /// state is about, that state is forgotten and every record is sent again.
    pub destination: Option<Fingerprint>,
    /// Send every record again, on purpose (`sluice run --full-resync`).
    pub full_resync: bool,
    /// The run takes only this partition's keys: only their deliveries are read.
    pub partition: Option<crate::source::partition::Partition>,
    /// Keep the destination's id of every delivered record (`behavior = "update"`
    /// addresses records by it).
    pub destination_ids: bool,
    /// Only look (`sluice plan`): a changed destination is noted, its state not reset.
    pub dry_run: bool,
    /// When the destination changed, keep the keys the previous one holds (a mirror
    /// reports those it leaves behind there).
    pub previous_keys: bool,
}

/// Why a run sends records the destination had confirmed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendReason {
    /// The connector, the base URL or the settings differ from the last run's.
    DestinationChanged,
    /// The operator asked for it.
    FullResync,
}

impl std::fmt::Display for ResendReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResendReason::DestinationChanged => {
                "the destination changed since the last run (connector, base_url or \
                 settings): what the old one confirmed does not count, every record is sent"
            }
            ResendReason::FullResync => "a full resync was asked for: every record is sent",
        })
    }
}

/// The engine's sink into the ledger and its filter, for one run. Each verdict's fates
/// are written on the worker that settled them (deliveries appended to the log under its
/// lock, failures as one store batch).
pub struct LedgerSink {
    ledger: SyncLedger,
    /// What the destination confirmed, for a run that reads the source.
    index: Index,
    /// The entries the store held when the run began, without their payloads and
    /// failures (what `model::decide` reads of them): a key not here has no stored entry
    /// (runs of one sync never overlap), and a key here is decided without a read, which
    /// for a store across a network would be a round trip a record.
    stored: HashMap<Box<str>, Entry>,
    resend: Option<ResendReason>,
    /// The destination's ids of delivered records, when the run asked for them.
    ids: HashMap<Box<str>, Box<str>>,
    /// The keys (as a `KeySet` hashes them) the previous destination holds, when the
    /// destination changed and the run asked for them.
    previous: Option<HashSet<u128>>,
    /// The failed deletes dropped because only the previous destination held the record.
    dropped_deletes: Vec<String>,
    /// A plan's view: counts what a run would write, writes nothing.
    dry_run: bool,
}

impl LedgerSink {
    /// Made as the run begins, before any record is read or settled.
    pub fn begin(ledger: SyncLedger, start: RunStart) -> Result<Arc<Self>> {
        let mut resend = start.full_resync.then_some(ResendReason::FullResync);
        let mut index = Index::default();
        let (mut previous, mut dropped_deletes) = (None, Vec::new());
        if start.reads_source {
            let log = &ledger.delivered;
            let (read, stored_destination) = log
                .index_of(start.partition)
                .map_err(|e| ledger.log_err(e))?;
            index = read;
            if let Some(destination) = start.destination {
                match stored_destination {
                    Some(stored) if stored == destination => {}
                    Some(_) => {
                        if start.previous_keys {
                            previous = Some(previous_keys(&ledger, start.partition)?);
                        }
                        if !start.dry_run {
                            // The store first: a crash between the two finds the log
                            // still about the old destination, and does both again.
                            dropped_deletes = ledger.leave_destination()?;
                            log.reset(destination).map_err(|e| ledger.log_err(e))?;
                            if !dropped_deletes.is_empty() {
                                tracing::warn!(
                                    "the destination changed: {} failed delete(s) addressed \
                                     the previous destination and were dropped (for example \
                                     `{}`)",
                                    dropped_deletes.len(),
                                    dropped_deletes[0]
                                );
                            }
                        }
                        index = Index::default();
                        resend = Some(ResendReason::DestinationChanged);
                    }
                    // A new log, or one moved from an older ledger: it is about the
                    // destination of this run from now on.
                    None if start.dry_run => {}
                    None => log.stamp(destination).map_err(|e| ledger.log_err(e))?,
                }
            }
        }
        let mut ids = HashMap::new();
        if start.destination_ids && resend != Some(ResendReason::DestinationChanged) {
            let (states, _) = ledger
                .delivered
                .states(&|key| start.partition.is_none_or(|p| p.holds(key)))
                .map_err(|e| ledger.log_err(e))?;
            ids = states
                .into_iter()
                .filter_map(|(key, d)| Some((key.into_boxed_str(), d.destination_id?.into())))
                .collect();
        }
        let mut stored = HashMap::new();
        for item in ledger.tree.iter() {
            let (key, value) =
                item.map_err(|e| super::storage_error(&ledger.path, "reading", e))?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let mut entry = super::decode(&ledger.path, &key, &value)?;
            entry.payload = None;
            entry.failure = None;
            entry.resolution = None;
            stored.insert(key.into_boxed_str(), entry);
        }
        Ok(Arc::new(LedgerSink {
            ledger,
            index,
            stored,
            resend,
            ids,
            previous,
            dropped_deletes,
            dry_run: start.dry_run,
        }))
    }

    /// Why this run sends what the destination confirmed before, if it does.
    pub fn resend_reason(&self) -> Option<ResendReason> {
        self.resend
    }

    /// What the run says of it: the reason, and the failed deletes it dropped.
    pub fn resend_said(&self) -> Option<String> {
        let reason = self.resend?;
        Some(match self.dropped_deletes.as_slice() {
            [] => reason.to_string(),
            dropped => format!(
                "{reason}; {} failed delete(s) addressed the previous destination and were \
                 dropped (for example `{}`)",
                dropped.len(),
                dropped[0]
            ),
        })
    }

    fn may_be_stored(&self, key: &str) -> bool {
        !self.stored.is_empty() && self.stored.contains_key(key)
    }
}

/// The keys the delivered state holds (within `partition`), as a `KeySet` hashes them.
fn previous_keys(ledger: &SyncLedger, partition: Option<Partition>) -> Result<HashSet<u128>> {
    let mut keys = HashSet::new();
    ledger
        .delivered
        .read(&mut |delivery| {
            if partition.is_none_or(|p| p.holds(delivery.key)) {
                let hash = crate::engine::key_set_hash(delivery.key);
                if delivery.is_deletion() {
                    keys.remove(&hash);
                } else {
                    keys.insert(hash);
                }
            }
        })
        .map_err(|e| ledger.log_err(e))?;
    Ok(keys)
}

impl Sink for LedgerSink {
    fn settle(&self, settled: &[Settled]) -> Result<()> {
        self.ledger.write(
            settled,
            now_ms(),
            &|key| self.may_be_stored(key),
            &|key, payload| self.index.confirmed(key, PayloadHash::of(payload)),
        )
    }
}

impl Filter for LedgerSink {
    fn decide(&self, key: &str, payload: &str, send_all: bool) -> Result<Decision> {
        let send_all = send_all || self.resend.is_some();
        if let Some(entry) = self.stored.get(key) {
            return Ok(model::decide(Some(entry), payload, send_all));
        }
        if send_all {
            return Ok(Decision::Send);
        }
        Ok(match self.index.confirmed(key, PayloadHash::of(payload)) {
            Some(true) => Decision::Unchanged,
            _ => Decision::Send,
        })
    }

    fn is_empty(&self) -> bool {
        // Records the previous destination holds are still something to report.
        self.index.is_empty()
            && self.stored.is_empty()
            && self.previous.as_ref().is_none_or(HashSet::is_empty)
    }

    fn at_destination(&self, key: &str) -> bool {
        if self.resend == Some(ResendReason::DestinationChanged) {
            return false;
        }
        self.index.contains(key)
            || self
                .stored
                .get(key)
                .is_some_and(|e| e.delivered_hash.is_some() && !e.deleting)
    }

    fn destination_id(&self, key: &str) -> Option<String> {
        if self.resend == Some(ResendReason::DestinationChanged) {
            return None;
        }
        match self
            .stored
            .get(key)
            .and_then(|e| e.destination_id.as_deref())
        {
            Some(id) => Some(id.to_string()),
            None => self.ids.get(key).map(|id| id.to_string()),
        }
    }

    fn delivered_count(&self) -> u64 {
        self.index.len() as u64
    }

    fn forget_absent_failures(
        &self,
        seen: &dyn Fn(&str) -> bool,
        partition: Option<Partition>,
    ) -> Result<u64> {
        let mut gone: Vec<&str> = self
            .stored
            .iter()
            .filter(|(key, entry)| {
                entry.status.is_failed()
                    && !entry.deleting
                    && !seen(key)
                    && partition.is_none_or(|p| p.holds(key))
                    // Delivered once: the destination holds it, and the run deletes it.
                    && entry.delivered_hash.is_none()
                    && !self.index.contains(key)
            })
            .map(|(key, _)| &**key)
            .collect();
        gone.sort_unstable();
        if !self.dry_run && !gone.is_empty() {
            self.ledger.forget(&gone)?;
        }
        Ok(gone.len() as u64)
    }

    fn left_behind(&self, keys: &crate::engine::KeySet) -> Option<u64> {
        let previous = self.previous.as_ref()?;
        Some(previous.iter().filter(|&&h| !keys.contains_hash(h)).count() as u64)
    }

    fn absent(
        &self,
        seen: &dyn Fn(&str) -> bool,
        partition: Option<Partition>,
    ) -> Result<Vec<Record>> {
        let ledger = &self.ledger;
        if self.resend == Some(ResendReason::DestinationChanged) {
            // What the old destination holds is not this one's to delete (a plan sees the
            // old state, which a run resets first).
            return Ok(Vec::new());
        }
        let (states, _) = ledger
            .delivered
            .states(&|key| !seen(key) && partition.is_none_or(|p| p.holds(key)))
            .map_err(|e| ledger.log_err(e))?;
        let mut deletes: Vec<Record> = states
            .into_iter()
            .filter(|(key, _)| {
                // A delete that can never succeed without a person waits for one.
                self.stored
                    .get(key.as_str())
                    .is_none_or(|e| !(e.deleting && e.status == super::Status::Permanent))
            })
            .map(|(key, delivered)| {
                let id = self
                    .stored
                    .get(key.as_str())
                    .and_then(|e| e.destination_id.clone())
                    .or(delivered.destination_id);
                Record::delete(key, id)
            })
            .collect();
        // In key order: a run's deletes, and the plan's examples, are the same every time.
        deletes.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(deletes)
    }
}
