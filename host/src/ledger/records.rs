//! The ledger of one sync: its failed and resolved records in the store (random access
//! by key, with their payloads, for the retry job and for people), and what the
//! destination confirmed in the sync's delivered log (read whole, at a run's start).
//!
//! A key's entry in the store, when there is one, is the newer truth: a record that
//! failed after an earlier delivery has both, and its entry says it failed. Its entry
//! counts the attempts since that delivery; the views add the log's (see [`SyncLedger::get`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};

use super::delivered::{Delivered, Delivery, Fingerprint};
use super::deliveries::Deliveries;
use super::{
    Entry, PayloadHash, Resolution, Status, Storage, Tree, codec, decode, log_error, model, store,
};
use crate::clock::now_ms;
use crate::concern::{Concern, ErrorKind};
use crate::fate::{Decision, Fate, Record, Settled};
use crate::sandbox::Operation;

/// Records by status, and by status and failure code.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub by_status: BTreeMap<Status, u64>,
    pub by_code: BTreeMap<(Status, String), u64>,
}

/// The ledger of one sync.
#[derive(Clone)]
pub struct SyncLedger {
    pub(super) tree: Arc<dyn Tree>,
    /// See [`super::FAILED_PREFIX`].
    pub(super) failed: Arc<dyn Tree>,
    pub(super) delivered: Arc<dyn Deliveries>,
    /// The ledger's folder, for messages.
    pub(super) path: Arc<Path>,
    /// The sync's name: errors about one of its records name the sync too (`--json`'s
    /// `sync` field, docs/cli.md).
    pub(super) name: Arc<str>,
}

/// A delivered record's entry, as the views show it.
fn delivered_entry(d: Delivered) -> Entry {
    Entry {
        status: Status::Delivered,
        attempts: d.attempts,
        first_failure_ms: None,
        last_attempt_ms: Some(d.at_ms).filter(|&ms| ms > 0),
        failure: None,
        destination_id: d.destination_id,
        delivered_hash: Some(d.hash),
        payload_hash: Some(d.hash),
        payload: None,
        resolution: None,
        deleting: false,
    }
}

/// Decodes one stored entry as a view and lends it to `visit` when it is failed (an old
/// JSON entry is decoded whole first).
fn visit_entry(
    path: &Path,
    key: &str,
    bytes: &[u8],
    visit: &mut dyn FnMut(&str, &codec::EntryView<'_>) -> Result<()>,
) -> Result<()> {
    let damaged = |err| super::damaged_entry(path, key, err);
    match codec::view(bytes).map_err(damaged)? {
        Some(view) if view.status.is_failed() => visit(key, &view),
        Some(_) => Ok(()),
        None => {
            let entry = decode(path, key, bytes)?;
            let bytes = codec::encode(&entry)?;
            match codec::view(&bytes).map_err(damaged)? {
                Some(view) if view.status.is_failed() => visit(key, &view),
                _ => Ok(()),
            }
        }
    }
}

/// A stored entry with what the log knows of the same key's earlier delivery.
fn with_delivery(mut entry: Entry, delivered: Option<Delivered>) -> Entry {
    if let Some(d) = delivered {
        entry.attempts = entry.attempts.saturating_add(d.attempts);
        entry.destination_id = entry.destination_id.or(d.destination_id);
        entry.delivered_hash = entry.delivered_hash.or(Some(d.hash));
    }
    entry
}

impl SyncLedger {
    /// The sync whose records these are.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The error for `key` not being in this ledger (`not_found`, naming the sync and
    /// the key).
    pub fn not_found(&self, key: &str) -> anyhow::Error {
        anyhow::Error::new(
            Concern::new(
                ErrorKind::NotFound,
                format!(
                    "no record with key `{key}` in the ledger of sync `{}`",
                    self.name
                ),
            )
            .sync(&self.name)
            .key(key),
        )
    }

    /// The error for a person asking to `act` on a record that is delivered (`failed`:
    /// the record exists, there is nothing to do), naming the sync and the key.
    pub fn delivered_already(&self, key: &str, act: &str) -> anyhow::Error {
        anyhow::Error::new(
            Concern::new(
                ErrorKind::Failed,
                format!("record `{key}` is delivered: there is nothing to {act}"),
            )
            .sync(&self.name)
            .key(key),
        )
    }

    pub(super) fn log_err(&self, err: super::delivered::LogError) -> anyhow::Error {
        log_error(&self.path, err)
    }

    /// The entry stored for `key`, without what the log holds (for the retry job and
    /// the engine: no log read).
    pub fn stored(&self, key: &str) -> Result<Option<Entry>> {
        let mut entry = None;
        self.tree
            .read(key.as_bytes(), &mut |bytes| {
                entry = Some(decode(&self.path, key, bytes))
            })
            .at(&self.path, "reading")?;
        entry.transpose()
    }

    /// Everything the ledger knows of `key` (reads the delivered log: for people).
    pub fn get(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self.get_many(&[key])?.pop().flatten())
    }

    /// [`SyncLedger::get`] for several keys, in one read of the delivered log.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Entry>>> {
        let wanted: HashSet<&str> = keys.iter().copied().collect();
        let (mut found, _) = self
            .delivered
            .states(&|key| wanted.contains(key))
            .map_err(|e| self.log_err(e))?;
        keys.iter()
            .map(|key| {
                let delivered = found.remove(*key);
                Ok(match self.stored(key)? {
                    Some(entry) => Some(with_delivery(entry, delivered)),
                    None => delivered.map(delivered_entry),
                })
            })
            .collect()
    }

    /// Change detection for one record, as a run decides it (reads the delivered log:
    /// a run uses [`super::LedgerSink`], which reads it once).
    pub fn decide(&self, record: &Record, send_all: bool) -> Result<Decision> {
        let previous = self.get(&record.key)?;
        Ok(model::decide(previous.as_ref(), &record.payload, send_all))
    }

    /// Every entry, in key order (holds every key of the log in memory: for people).
    pub fn iter(&self) -> Box<dyn Iterator<Item = Result<(String, Entry)>> + '_> {
        match self.all() {
            Ok(all) => Box::new(all.into_iter().map(Ok)),
            Err(err) => Box::new(std::iter::once(Err(err))),
        }
    }

    fn all(&self) -> Result<BTreeMap<String, Entry>> {
        let (mut delivered, _) = self.delivered.all().map_err(|e| self.log_err(e))?;
        let mut all = BTreeMap::new();
        for item in self.tree.iter() {
            let (key, value) = item.at(&self.path, "reading")?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let entry = decode(&self.path, &key, &value)?;
            let earlier = delivered.remove(&key);
            all.insert(key, with_delivery(entry, earlier));
        }
        all.extend(
            delivered
                .into_iter()
                .map(|(key, d)| (key, delivered_entry(d))),
        );
        Ok(all)
    }

    /// Failed entries (rejected, pending or permanent), in key order, through the index:
    /// proportional to the failures, not to the ledger. What the log holds of an earlier
    /// delivery is not read: see [`SyncLedger::get`].
    pub fn failed(&self) -> impl Iterator<Item = Result<(String, Entry)>> + '_ {
        // The index's keys a page at a time, their entries read together (one round trip
        // a page for a store across a network).
        const PAGE: usize = 1_000;
        let mut keys = self.failed.iter();
        let mut page: std::vec::IntoIter<Result<(String, Entry)>> = Vec::new().into_iter();
        std::iter::from_fn(move || {
            loop {
                if let Some(item) = page.next() {
                    return Some(item);
                }
                let mut wanted = Vec::with_capacity(PAGE);
                for item in keys.by_ref().take(PAGE) {
                    match item.at(&self.path, "reading") {
                        Ok((key, _)) => wanted.push(key),
                        Err(err) => return Some(Err(err)),
                    }
                }
                if wanted.is_empty() {
                    return None;
                }
                page = match self.failed_entries(wanted) {
                    Ok(entries) => entries.into_iter().map(Ok).collect::<Vec<_>>().into_iter(),
                    Err(err) => vec![Err(err)].into_iter(),
                };
            }
        })
    }

    /// Lends each failed entry, in key order, as a view of its stored bytes (see
    /// [`codec::EntryView`]): the retry job's pass over every failure copies only what it
    /// keeps. Through the index, a page of keys at a time (one round trip a page for a
    /// store across a network).
    pub fn visit_failed(
        &self,
        visit: &mut dyn FnMut(&str, &codec::EntryView<'_>) -> Result<()>,
    ) -> Result<()> {
        const PAGE: usize = 1_000;
        let mut keys = self.failed.iter();
        loop {
            let mut page = Vec::with_capacity(PAGE);
            for item in keys.by_ref().take(PAGE) {
                page.push(item.at(&self.path, "reading")?.0);
            }
            if page.is_empty() {
                return Ok(());
            }
            let mut result = Ok(());
            self.tree
                .read_many(&page, &mut |i, bytes| {
                    if result.is_err() {
                        return;
                    }
                    let key = String::from_utf8_lossy(&page[i]);
                    result = visit_entry(&self.path, &key, bytes, visit);
                })
                .at(&self.path, "reading")?;
            result?;
        }
    }

    /// The entries of `keys` (named by the failed index) that are failed.
    fn failed_entries(&self, keys: Vec<Vec<u8>>) -> Result<Vec<(String, Entry)>> {
        let values = self.tree.get_many(&keys).at(&self.path, "reading")?;
        let mut out = Vec::with_capacity(keys.len());
        for (key, value) in keys.into_iter().zip(values) {
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Some(value) = value {
                let entry = super::decode(&self.path, &key, &value)?;
                if entry.status.is_failed() {
                    out.push((key, entry));
                }
            }
        }
        Ok(out)
    }

    /// How many records each status holds, and each failure code by status, without
    /// holding the keys: the log's index (18 bytes a key) and the stored entries.
    pub fn counts(&self) -> Result<Counts> {
        let (index, _) = self.delivered.index().map_err(|e| self.log_err(e))?;
        let mut counts = Counts::default();
        let mut delivered = index.len() as u64;
        for item in self.tree.iter() {
            let (key, value) = item.at(&self.path, "reading")?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let entry = decode(&self.path, &key, &value)?;
            // A stored entry is newer than the log's delivery of the same key.
            if index.contains(&key) {
                delivered -= 1;
            }
            *counts.by_status.entry(entry.status).or_default() += 1;
            if let Some(failure) = &entry.failure
                && entry.status != Status::Delivered
            {
                *counts
                    .by_code
                    .entry((entry.status, failure.code.clone()))
                    .or_default() += 1;
            }
        }
        *counts.by_status.entry(Status::Delivered).or_default() += delivered;
        Ok(counts)
    }

    /// How many keys the ledger holds (reads the whole log).
    pub fn len(&self) -> usize {
        self.counts()
            .map(|c| c.by_status.values().sum::<u64>() as usize)
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A person marks `key` handled without sending it. Who and why are kept with the
    /// record, so neither may be blank.
    pub fn resolve(&self, key: &str, by: &str, why: &str) -> Result<Entry> {
        if by.trim().is_empty() {
            bail!("resolving `{key}`: say who resolved it (`--by`); it is blank");
        }
        if why.trim().is_empty() {
            bail!("resolving `{key}`: say why it needs no sending (`--why`); it is blank");
        }
        let entry = match self.stored(key)? {
            Some(entry) => Some(entry),
            // Only the log may hold it: then it is delivered, which is refused below.
            None => self.get(key)?,
        };
        let entry = entry.ok_or_else(|| self.not_found(key))?;
        if entry.status == Status::Delivered {
            return Err(self.delivered_already(key, "resolve"));
        }
        let entry = model::resolved(
            entry,
            Resolution {
                by: by.to_string(),
                why: why.to_string(),
                at_ms: now_ms(),
            },
        );
        let doing = "resolving a record";
        self.tree
            .insert(key.as_bytes(), &codec::encode(&entry)?)
            .at(&self.path, doing)?;
        self.failed.remove(key.as_bytes()).at(&self.path, doing)?;
        Ok(entry)
    }

    /// The destination the delivered state is about (`None` before any run named one).
    pub fn destination(&self) -> Result<Option<Fingerprint>> {
        self.delivered.destination().map_err(|e| self.log_err(e))
    }

    /// The stored entries' part of moving to another destination (the delivered state is
    /// reset by the run): a failed delete is dropped, since only the old destination held
    /// the record, and the old destination's ids and confirmations are forgotten, so that
    /// nothing later addresses the new destination by them. Returns the dropped deletes'
    /// keys.
    pub fn leave_destination(&self) -> Result<Vec<String>> {
        let (mut dropped, mut changed) = (Vec::new(), Vec::new());
        for item in self.tree.iter() {
            let (key, value) = item.at(&self.path, "reading")?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let mut entry = super::decode(&self.path, &key, &value)?;
            if entry.deleting {
                dropped.push(key);
            } else if entry.destination_id.is_some() || entry.delivered_hash.is_some() {
                entry.destination_id = None;
                entry.delivered_hash = None;
                changed.push((key, codec::encode(&entry)?));
            }
        }
        let mut batch = store::Batch::default();
        for (key, bytes) in &changed {
            batch.insert(key.as_bytes(), bytes.clone());
        }
        if !batch.is_empty() {
            let doing = "forgetting the previous destination";
            self.tree.apply(&batch).at(&self.path, doing)?;
        }
        if !dropped.is_empty() {
            let keys: Vec<&str> = dropped.iter().map(String::as_str).collect();
            self.forget(&keys)?;
        }
        Ok(dropped)
    }

    /// Forgets the stored entries of `keys` (failed records a mirror's source no longer
    /// has, failed deletes only a previous destination could take).
    pub fn forget(&self, keys: &[&str]) -> Result<()> {
        let doing = "forgetting records";
        let mut batch = store::Batch::default();
        for key in keys {
            batch.remove(key.as_bytes());
        }
        self.tree.apply(&batch).at(&self.path, doing)?;
        // The failed index after the entries: it may hold too much, never too little.
        self.failed.apply(&batch).at(&self.path, doing)?;
        Ok(())
    }

    /// Records the fates of one verdict (as a run outside the engine would: every
    /// earlier entry is read from the store).
    pub fn record(&self, settled: &[Settled], at_ms: u64) -> Result<()> {
        self.write(settled, at_ms, &|_| true, &|_, _| None)
    }

    /// Writes the fates of one verdict: deliveries to the log, the rest to the store.
    /// `may_be_stored(key)` is false for a key the store cannot hold (spares a read);
    /// `confirmed(key, payload)` says whether the log holds a delivery of the key, and
    /// of this payload (`Some(true)`). A key settled twice in the batch builds on its
    /// own earlier entry.
    pub(super) fn write(
        &self,
        settled: &[Settled],
        at_ms: u64,
        may_be_stored: &dyn Fn(&str) -> bool,
        confirmed: &dyn Fn(&str, &str) -> Option<bool>,
    ) -> Result<()> {
        // The common case, a batch delivered whose keys the store cannot hold: straight
        // to the log.
        let all_new_deliveries = settled
            .iter()
            .all(|s| matches!(s.fate, Fate::Delivered(_)) && !may_be_stored(&s.record.key));
        if all_new_deliveries {
            let deliveries: Vec<Delivery<'_>> = settled
                .iter()
                .map(|s| match s.record.operation {
                    Operation::Delete => Delivery::deletion(&s.record.key, at_ms),
                    _ => Delivery {
                        key: &s.record.key,
                        hash: PayloadHash::of(&s.record.payload).0.to_le_bytes(),
                        destination_id: match &s.fate {
                            Fate::Delivered(id) => id.as_deref(),
                            _ => None,
                        },
                        attempts: s.attempts,
                        at_ms,
                    },
                })
                .collect();
            return self
                .delivered
                .append(&deliveries)
                .map_err(|e| self.log_err(e));
        }
        let mut entries: HashMap<&str, Option<Entry>> = HashMap::with_capacity(settled.len());
        let mut was_stored = HashSet::new();
        // The stored entries of the keys that may have one, read together (one round trip
        // for a store across a network, where a retry pass's every key has one).
        let mut stored: HashMap<&str, Option<Entry>> = {
            let mut keys: Vec<&str> = settled
                .iter()
                .map(|s| s.record.key.as_str())
                .filter(|key| may_be_stored(key))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let bytes: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
            let values = self.tree.get_many(&bytes).at(&self.path, "reading")?;
            let mut stored = HashMap::with_capacity(keys.len());
            for (key, value) in keys.into_iter().zip(values) {
                let entry = match value {
                    Some(value) => Some(super::decode(&self.path, key, &value)?),
                    None => None,
                };
                stored.insert(key, entry);
            }
            stored
        };
        // Deliveries, by key: the payload hash, the id, the attempts so far.
        type Settled<'a> = ([u8; 16], Option<Cow<'a, str>>, u32);
        let mut deliveries: HashMap<&str, Settled<'_>> = HashMap::new();
        for s in settled {
            let key = s.record.key.as_str();
            let previous = match entries.remove(key) {
                Some(entry) => entry,
                None if may_be_stored(key) => {
                    let found = stored.remove(key).flatten();
                    if found.is_some() {
                        was_stored.insert(key);
                    }
                    found
                }
                None => None,
            };
            match &s.fate {
                // Deleted at the destination: forgotten, in the log and the store.
                Fate::Delivered(_) if s.record.operation == Operation::Delete => {
                    let gone = Delivery::deletion(key, at_ms).hash;
                    deliveries.insert(key, (gone, None, 0));
                    entries.insert(key, None);
                }
                Fate::Delivered(id) => {
                    let attempts = previous
                        .as_ref()
                        .map_or(0, |p| p.attempts)
                        .saturating_add(s.attempts);
                    let id = match id {
                        Some(id) => Some(Cow::Borrowed(id.as_str())),
                        None => previous.and_then(|p| p.destination_id).map(Cow::Owned),
                    };
                    let hash = PayloadHash::of(&s.record.payload).0.to_le_bytes();
                    deliveries.insert(key, (hash, id, attempts));
                    entries.insert(key, None);
                }
                fate => {
                    let previous = match previous {
                        Some(entry) => Some(entry),
                        None => match confirmed(key, &s.record.payload) {
                            // Unconfirmed, but the destination holds this data already.
                            Some(true) if matches!(fate, Fate::Pending(_)) => continue,
                            Some(_) => Some(model::delivered_before()),
                            None => None,
                        },
                    };
                    deliveries.remove(key);
                    entries.insert(key, Some(model::next_entry(previous, s, at_ms)));
                }
            }
        }
        let doing = "recording the fates of records";
        let (mut batch, mut failed, mut recovered) = (
            store::Batch::default(),
            store::Batch::default(),
            store::Batch::default(),
        );
        for (key, entry) in &entries {
            match entry {
                Some(entry) => {
                    batch.insert(key.as_bytes(), codec::encode(entry)?);
                    if entry.status.is_failed() {
                        failed.insert(key.as_bytes(), Vec::new());
                    } else {
                        recovered.remove(key.as_bytes());
                    }
                }
                // Delivered: the log holds it now; its stored entry goes, after the log
                // has it.
                None if was_stored.contains(key) => {
                    batch.remove(key.as_bytes());
                    recovered.remove(key.as_bytes());
                }
                None => {}
            }
        }
        let deliveries: Vec<Delivery<'_>> = deliveries
            .iter()
            .map(|(key, (hash, id, attempts))| Delivery {
                key,
                hash: *hash,
                destination_id: id.as_deref(),
                attempts: *attempts,
                at_ms,
            })
            .collect();
        self.delivered
            .append(&deliveries)
            .map_err(|e| self.log_err(e))?;
        // The index may hold too much, never too little (see FAILED_PREFIX).
        if !failed.is_empty() {
            self.failed.apply(&failed).at(&self.path, doing)?;
        }
        if !batch.is_empty() {
            self.tree.apply(&batch).at(&self.path, doing)?;
        }
        if !recovered.is_empty() {
            self.failed.apply(&recovered).at(&self.path, doing)?;
        }
        Ok(())
    }
}
