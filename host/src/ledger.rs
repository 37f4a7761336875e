//! The persistent retry ledger: every record's fate by key, so that nothing is silently
//! lost and a person can see and fix what failed.
//!
//! One sled database under `state_dir/ledger`, one tree per sync. A record is marked
//! delivered only when the destination confirmed it (the engine settles it only then),
//! and the ledger is flushed before a run reports. After a crash, anything not marked
//! delivered is simply sent again: at-least-once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::engine::{Fate, RecordFailure, Settled, Sink};
use crate::source::Record;

/// The layout of entries; a ledger of another version is refused, never reset.
pub const SCHEMA_VERSION: u32 = 1;

const META_TREE: &str = "meta";
const SCHEMA_KEY: &str = "schema_version";

/// Where a record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Read and not settled: a run stopped before the destination confirmed it.
    Pending,
    Delivered,
    /// Refused for its data: sent again by later runs and by the retry job.
    Rejected,
    /// Cannot succeed without a person: held until its data changes or a person acts.
    Permanent,
    /// A person marked it handled without sending it; held while its data is unchanged.
    Resolved,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Delivered,
        Status::Rejected,
        Status::Permanent,
        Status::Resolved,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Rejected => "rejected",
            Status::Permanent => "permanent",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Result<Status> {
        Status::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .with_context(|| {
                format!("unknown status `{text}`: expected pending, delivered, rejected, permanent or resolved")
            })
    }
}

/// Who marked a record handled, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub by: String,
    pub why: String,
    pub at_ms: u64,
}

/// What the ledger knows of one record. Absent fields are not written: a delivered
/// record's entry stays small, which keeps the ledger compact and quick to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub status: Status,
    /// Sends across all runs.
    pub attempts: u32,
    /// When the current run of failures began (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<RecordFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_id: Option<String>,
    /// Hash of the payload the destination last confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_hash: Option<String>,
    /// Hash of the payload last settled (what a permanent hold is about).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hash: Option<String>,
    /// The payload of a record not delivered, for the retry job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

/// A content hash of a payload, for change detection: 128 bits of XXH3, fast enough to
/// hash every record of every run, and wide enough that two different payloads of one
/// key never collide in practice.
pub fn payload_hash(payload: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(payload.as_bytes()))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The ledger of one state directory. Only one process may hold it open.
pub struct Ledger {
    db: sled::Db,
    path: PathBuf,
}

impl Ledger {
    /// Opens (creating if needed) the ledger under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Ledger> {
        let path = state_dir.join("ledger");
        if path.exists()
            && !path.join("conf").exists()
            && std::fs::read_dir(&path)?.next().is_some()
        {
            bail!(
                "`{}` is not a Sluice ledger (it holds files, but no ledger): move it away or \
                 point state_dir elsewhere",
                path.display()
            );
        }
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the ledger directory `{}`", path.display()))?;
        // sled caches up to 1 GiB by default; a ledger of millions of records needs far
        // less to stay fast, and the run's memory should stay flat.
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(|err| {
            let text = err.to_string();
            if text.contains("lock") || text.contains("WouldBlock") || text.contains("temporarily unavailable") {
                anyhow::anyhow!(
                    "the ledger at `{}` is in use by another sluice process; only one process \
                     may use a state_dir at a time",
                    path.display()
                )
            } else {
                anyhow::anyhow!(
                    "cannot open the ledger at `{}`: {text} (is it corrupt, or not a Sluice ledger?)",
                    path.display()
                )
            }
        })?;
        let meta = db.open_tree(META_TREE)?;
        match meta.get(SCHEMA_KEY)? {
            None => {
                let has_syncs = db.tree_names().iter().any(|n| n.starts_with(b"sync:"));
                if has_syncs {
                    bail!(
                        "the ledger at `{}` has records but no schema version: refusing to guess its layout",
                        path.display()
                    );
                }
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())?;
                meta.flush()?;
            }
            Some(version) => {
                let version = String::from_utf8_lossy(&version).to_string();
                if version != SCHEMA_VERSION.to_string() {
                    bail!(
                        "the ledger at `{}` has schema version {version}, and this Sluice reads \
                         version {SCHEMA_VERSION}; it was left untouched",
                        path.display()
                    );
                }
            }
        }
        Ok(Ledger { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records of one sync.
    pub fn sync(&self, name: &str) -> Result<SyncLedger> {
        Ok(SyncLedger {
            tree: self.db.open_tree(format!("sync:{name}"))?,
        })
    }

    /// Another tree in the same database (the inspector's, the run history's).
    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    /// Makes every settled fate durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().context("flushing the ledger to disk")?;
        Ok(())
    }
}

/// What a run does with a record read from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    /// Delivered before with the same data (or resolved by a person).
    Unchanged,
    /// Permanent, and its data has not changed since.
    Held,
}

/// The ledger of one sync.
#[derive(Clone)]
pub struct SyncLedger {
    tree: sled::Tree,
}

impl SyncLedger {
    pub fn get(&self, key: &str) -> Result<Option<Entry>> {
        match self.tree.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode(key, &bytes)?)),
        }
    }

    /// Change detection: whether a record from the source needs sending.
    pub fn decide(&self, record: &Record, send_all: bool) -> Result<Decision> {
        let Some(entry) = self.get(&record.key)? else {
            return Ok(Decision::Send);
        };
        let hash = payload_hash(&record.payload);
        Ok(match entry.status {
            Status::Permanent if entry.payload_hash.as_deref() == Some(&hash) => Decision::Held,
            _ if send_all => Decision::Send,
            Status::Delivered | Status::Resolved
                if entry.delivered_hash.as_deref() == Some(&hash) =>
            {
                Decision::Unchanged
            }
            _ => Decision::Send,
        })
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(String, Entry)>> + '_ {
        self.tree.iter().map(|item| {
            let (key, value) = item?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let entry = decode(&key, &value)?;
            Ok((key, entry))
        })
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// A person marks `key` handled without sending it.
    pub fn resolve(&self, key: &str, by: &str, why: &str) -> Result<Entry> {
        let mut entry = self
            .get(key)?
            .with_context(|| format!("no record with key `{key}` in this sync's ledger"))?;
        if entry.status == Status::Delivered {
            bail!("record `{key}` is delivered: there is nothing to resolve");
        }
        entry.status = Status::Resolved;
        entry.delivered_hash = entry.payload_hash.clone();
        entry.resolution = Some(Resolution {
            by: by.to_string(),
            why: why.to_string(),
            at_ms: now_ms(),
        });
        self.tree.insert(key.as_bytes(), encode(&entry)?)?;
        Ok(entry)
    }

    /// Records the fates of one verdict, in one sled batch. A key settled twice in the
    /// batch builds on its own earlier entry.
    pub fn record(&self, settled: &[Settled], at_ms: u64) -> Result<()> {
        let mut entries: std::collections::HashMap<&str, Entry> = std::collections::HashMap::new();
        for s in settled {
            let key = s.record.key.as_str();
            let previous = match entries.remove(key) {
                Some(entry) => Some(entry),
                None => self.get(key)?,
            };
            entries.insert(key, next_entry(previous, s, at_ms));
        }
        let mut batch = sled::Batch::default();
        for (key, entry) in &entries {
            batch.insert(key.as_bytes(), encode(entry)?);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }
}

/// The entry after `settled`, given what the ledger held before.
fn next_entry(previous: Option<Entry>, settled: &Settled, at_ms: u64) -> Entry {
    let hash = payload_hash(&settled.record.payload);
    let mut entry = previous.unwrap_or(Entry {
        status: Status::Pending,
        attempts: 0,
        first_failure_ms: None,
        last_attempt_ms: None,
        failure: None,
        destination_id: None,
        delivered_hash: None,
        payload_hash: None,
        payload: None,
        resolution: None,
    });
    entry.attempts = entry.attempts.saturating_add(settled.attempts);
    if settled.attempts > 0 {
        entry.last_attempt_ms = Some(at_ms);
    }
    let failed = |entry: &mut Entry, status: Status, failure: Option<RecordFailure>| {
        // A failure streak starts at the first failure after a success (or ever).
        if !matches!(
            entry.status,
            Status::Rejected | Status::Permanent | Status::Pending
        ) || entry.first_failure_ms.is_none()
        {
            entry.first_failure_ms = Some(at_ms);
        }
        entry.status = status;
        if failure.is_some() {
            entry.failure = failure;
        }
        entry.payload = Some(settled.record.payload.clone());
        entry.payload_hash = Some(hash.clone());
        entry.resolution = None;
    };
    match &settled.fate {
        Fate::Delivered(id) => {
            entry.status = Status::Delivered;
            entry.destination_id = id.clone().or(entry.destination_id.take());
            entry.delivered_hash = Some(hash.clone());
            entry.payload_hash = Some(hash);
            entry.failure = None;
            entry.first_failure_ms = None;
            entry.payload = None;
            entry.resolution = None;
        }
        Fate::Rejected(f) => failed(&mut entry, Status::Rejected, Some(f.clone())),
        Fate::Permanent(f) => failed(&mut entry, Status::Permanent, Some(f.clone())),
        Fate::Pending(f) => {
            // Unconfirmed: a record delivered before keeps that status only if this run
            // tried to send the same data again.
            if entry.status == Status::Delivered && entry.delivered_hash.as_deref() == Some(&hash) {
                return entry;
            }
            failed(&mut entry, Status::Pending, f.clone());
        }
    }
    entry
}

fn encode(entry: &Entry) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(entry)?)
}

fn decode(key: &str, bytes: &[u8]) -> Result<Entry> {
    serde_json::from_slice(bytes)
        .with_context(|| format!("the ledger entry of `{key}` is unreadable (corrupt ledger?)"))
}

/// The engine's sink into the ledger: each verdict's fates are written as one sled batch,
/// on the worker that settled them (sled takes concurrent writers; a single writer thread
/// merging batches measured slower and let its queue grow under load).
pub struct LedgerSink {
    ledger: SyncLedger,
}

impl LedgerSink {
    pub fn new(ledger: SyncLedger) -> Arc<Self> {
        Arc::new(LedgerSink { ledger })
    }
}

impl Sink for LedgerSink {
    fn settle(&self, settled: &[Settled]) -> Result<()> {
        self.ledger.record(settled, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(payload: &str, fate: Fate, attempts: u32) -> Settled {
        Settled {
            record: Record {
                key: "k".into(),
                payload: payload.into(),
            },
            fate,
            attempts,
        }
    }

    fn failure(code: &str) -> RecordFailure {
        RecordFailure::new(code, "m")
    }

    #[test]
    fn a_failure_streak_keeps_its_first_time_until_a_delivery() {
        let e = next_entry(None, &settled("{}", Fate::Rejected(failure("A")), 2), 100);
        assert_eq!(
            (e.status, e.attempts, e.first_failure_ms),
            (Status::Rejected, 2, Some(100))
        );
        assert_eq!(e.payload.as_deref(), Some("{}"));
        let e = next_entry(
            Some(e),
            &settled("{\"x\":1}", Fate::Rejected(failure("B")), 1),
            200,
        );
        assert_eq!(
            (
                e.attempts,
                e.first_failure_ms,
                e.failure.as_ref().unwrap().code.as_str()
            ),
            (3, Some(100), "B")
        );
        let e = next_entry(
            Some(e),
            &settled("{\"x\":1}", Fate::Delivered(Some("id1".into())), 1),
            300,
        );
        assert_eq!(
            (
                e.status,
                e.first_failure_ms,
                e.failure.clone(),
                e.payload.clone()
            ),
            (Status::Delivered, None, None, None)
        );
        assert_eq!(e.delivered_hash, Some(payload_hash("{\"x\":1}")));
        assert_eq!(e.destination_id.as_deref(), Some("id1"));
        let e = next_entry(
            Some(e),
            &settled("{\"x\":2}", Fate::Permanent(failure("DACO-02")), 0),
            400,
        );
        assert_eq!(
            (e.status, e.first_failure_ms, e.attempts),
            (Status::Permanent, Some(400), 4)
        );
        assert_eq!(
            e.last_attempt_ms,
            Some(300),
            "a precheck settles without sending"
        );
    }

    #[test]
    fn pending_does_not_undo_a_delivery_of_the_same_data() {
        let e = next_entry(None, &settled("{}", Fate::Delivered(None), 1), 1);
        let same = next_entry(Some(e.clone()), &settled("{}", Fate::Pending(None), 0), 2);
        assert_eq!(same.status, Status::Delivered);
        let changed = next_entry(Some(e), &settled("{\"a\":1}", Fate::Pending(None), 0), 2);
        assert_eq!(changed.status, Status::Pending);
    }
}
