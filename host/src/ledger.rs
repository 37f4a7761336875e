//! The persistent retry ledger: every record's fate by key, so that nothing is silently
//! lost and a person can see and fix what failed.
//!
//! One sled database under `state_dir/ledger`, one tree per sync. A record is marked
//! delivered only when the destination confirmed it (the engine settles it only then),
//! and the ledger is flushed before a run reports. After a crash, anything not marked
//! delivered is simply sent again: at-least-once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

pub use crate::clock::now_ms;
use crate::engine::{Filter, Sink};
pub use crate::fate::Decision;
use crate::fate::{Fate, Record, RecordFailure, Settled};

/// The layout of entries; a ledger of another version is refused, never reset.
/// Version 1 stored entries as JSON. Version 2 stores them as postcard (binary) and keeps
/// an index of failed records per sync; it still reads version 1 entries, so a version 1
/// ledger is upgraded in place on open (its index built once).
pub const SCHEMA_VERSION: u32 = 2;
/// Versions this Sluice opens.
const READABLE_VERSIONS: [&str; 2] = ["1", "2"];
/// The first byte of a version 2 entry; a version 1 entry is a JSON object, `{`.
const POSTCARD_TAG: u8 = 2;

const META_TREE: &str = "meta";
/// A sync's entries, by key.
const SYNC_PREFIX: &str = "sync:";
/// A sync's failed records (rejected, pending, permanent), by key, with no value: the
/// retry job reads these instead of every entry. Written before a failure's entry and
/// cleared after a success's, so after a crash it can only hold too much, and readers
/// check each entry it names.
const FAILED_PREFIX: &str = "failed:";
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
    /// Not delivered, and not handled by a person: what the retry job may pick.
    pub fn is_failed(self) -> bool {
        matches!(self, Status::Rejected | Status::Pending | Status::Permanent)
    }

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

/// What the ledger knows of one record. Stored as postcard, which writes every field in
/// order (an absent one is a single byte), so no field may be skipped when serializing;
/// `default` lets version 1 (JSON) entries, which omitted absent fields, still be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub status: Status,
    /// Sends across all runs.
    pub attempts: u32,
    /// When the current run of failures began (milliseconds since the Unix epoch).
    #[serde(default)]
    pub first_failure_ms: Option<u64>,
    #[serde(default)]
    pub last_attempt_ms: Option<u64>,
    #[serde(default)]
    pub failure: Option<RecordFailure>,
    #[serde(default)]
    pub destination_id: Option<String>,
    /// Hash of the payload the destination last confirmed.
    #[serde(default)]
    pub delivered_hash: Option<PayloadHash>,
    /// Hash of the payload last settled (what a permanent hold is about).
    #[serde(default)]
    pub payload_hash: Option<PayloadHash>,
    /// The payload of a record not delivered, for the retry job.
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub resolution: Option<Resolution>,
}

/// A content hash of a payload, for change detection: 128 bits of XXH3, fast enough to
/// hash every record of every run, and wide enough that two different payloads of one
/// key never collide in practice. Binary in the ledger, hexadecimal in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadHash(pub u128);

impl PayloadHash {
    pub fn of(payload: &str) -> PayloadHash {
        PayloadHash(xxhash_rust::xxh3::xxh3_128(payload.as_bytes()))
    }
}

impl std::fmt::Display for PayloadHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for PayloadHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u128(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for PayloadHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            u128::from_str_radix(&text, 16)
                .map(PayloadHash)
                .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a payload hash")))
        } else {
            u128::deserialize(deserializer).map(PayloadHash)
        }
    }
}

/// The ledger of one state directory. Only one process may hold it open.
pub struct Ledger {
    db: sled::Db,
    path: Arc<Path>,
    /// Which files it was when opened; see [`Ledger::check_in_place`].
    identity: Identity,
}

/// A failure of the ledger's storage said so that an operator can act on it: which
/// ledger, what was being done, and for a full disk, that it is full. sled's own text for
/// an I/O error is the error's debug form (`IO error: Os { code: 28, .. }`), with no path.
pub fn storage_error(path: &Path, doing: &str, err: sled::Error) -> anyhow::Error {
    match err {
        sled::Error::Io(io) if crate::output::is_disk_full(&io) => anyhow!(
            "{doing}: the disk holding the ledger at `{}` is full (no space left on device); \
             free some space and run again (records whose fate was not written are sent again)",
            path.display()
        ),
        sled::Error::Io(io) => anyhow!("{doing}: the ledger at `{}`: {io}", path.display()),
        sled::Error::Corruption { .. } => damaged(path, &sled_clause(&err)),
        other => anyhow!(
            "{doing}: the ledger at `{}`: {}",
            path.display(),
            sled_clause(&other)
        ),
    }
}

/// A damaged ledger: what is wrong in a short clause, and what the operator can do.
fn damaged(path: &Path, what: &str) -> anyhow::Error {
    anyhow!(
        "the ledger at `{0}` is damaged ({what}): move it away (for example to \
         `{0}.damaged`) and run again; a new ledger is started and the next run sends every \
         record again",
        path.display()
    )
}

/// What sled said, in one short clause.
fn sled_clause(err: &sled::Error) -> String {
    let text = match err {
        sled::Error::Corruption { at: Some(at), .. } => {
            format!("sled found corrupted data at {at:?}")
        }
        sled::Error::Corruption { at: None, .. } => "sled found corrupted data".to_string(),
        sled::Error::Io(io) => io.to_string(),
        sled::Error::Unsupported(what) => format!("sled: {what}"),
        sled::Error::ReportableBug(what) => format!("sled: {what}"),
        sled::Error::CollectionNotFound(_) => "sled: a tree is missing".to_string(),
        #[allow(unreachable_patterns)]
        other => format!("sled: {other}"),
    };
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

/// `.at(path, doing)`: a sled result with its error said by [`storage_error`].
trait Storage<T> {
    fn at(self, path: &Path, doing: &str) -> Result<T>;
}

impl<T> Storage<T> for sled::Result<T> {
    fn at(self, path: &Path, doing: &str) -> Result<T> {
        self.map_err(|err| storage_error(path, doing, err))
    }
}

/// The identity (device and inode) of the ledger's folder and database file. sled keeps
/// writing into files that were removed while it held them open, so a ledger whose state
/// directory was removed during a run flushes without error and keeps nothing; comparing
/// identities tells.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity(Vec<Option<(u64, u64)>>);

impl Identity {
    fn of(path: &Path) -> Identity {
        Identity(
            [path.to_path_buf(), path.join("db")]
                .iter()
                .map(|p| file_id(p))
                .collect(),
        )
    }
}

#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
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
                if text.contains("lock")
                    || text.contains("WouldBlock")
                    || text.contains("temporarily unavailable")
                {
                    anyhow::anyhow!(
                        "the ledger at `{}` is in use by another sluice process; only one process \
                     may use a state_dir at a time",
                        path.display()
                    )
                } else if let sled::Error::Io(_) = err {
                    storage_error(&path, "opening the ledger", err)
                } else {
                    damaged(&path, &sled_clause(&err))
                }
            })?;
        let opening = "opening the ledger";
        let meta = db.open_tree(META_TREE).at(&path, opening)?;
        match meta.get(SCHEMA_KEY).at(&path, opening)? {
            None => {
                let has_syncs = db
                    .tree_names()
                    .iter()
                    .any(|n| n.starts_with(SYNC_PREFIX.as_bytes()));
                if has_syncs {
                    bail!(
                        "the ledger at `{}` has records but no schema version: refusing to guess its layout",
                        path.display()
                    );
                }
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())
                    .at(&path, opening)?;
                meta.flush().at(&path, opening)?;
            }
            Some(version) => {
                let version = String::from_utf8_lossy(&version).to_string();
                if !READABLE_VERSIONS.contains(&version.as_str()) {
                    bail!(
                        "the ledger at `{}` has schema version {version}, and this Sluice reads \
                         versions {}; it was left untouched",
                        path.display(),
                        READABLE_VERSIONS.join(" and ")
                    );
                }
                if version != SCHEMA_VERSION.to_string() {
                    // Entries are rewritten as they settle; until then both layouts are
                    // read. The new version keeps an older Sluice from misreading them,
                    // and is written last, so an upgrade cut short is done again.
                    tracing::info!(
                        ledger = %path.display(),
                        "upgrading the ledger from schema {version} to {SCHEMA_VERSION}"
                    );
                    build_failed_indexes(&db, &path)?;
                    db.flush().at(&path, opening)?;
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())
                        .at(&path, opening)?;
                    meta.flush().at(&path, opening)?;
                }
            }
        }
        let identity = Identity::of(&path);
        Ok(Ledger {
            db,
            path: path.into(),
            identity,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records of one sync.
    pub fn sync(&self, name: &str) -> Result<SyncLedger> {
        let doing = "opening the records of a sync";
        Ok(SyncLedger {
            tree: self
                .db
                .open_tree(format!("{SYNC_PREFIX}{name}"))
                .at(&self.path, doing)?,
            failed: self
                .db
                .open_tree(format!("{FAILED_PREFIX}{name}"))
                .at(&self.path, doing)?,
            path: self.path.clone(),
        })
    }

    /// Another tree in the same database (the inspector's, the run history's).
    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        self.db.open_tree(name).at(&self.path, "opening the ledger")
    }

    /// Makes every settled fate durable.
    pub fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .at(&self.path, "writing the ledger to disk")?;
        Ok(())
    }

    /// Fails when the ledger's folder or database file is no longer the one opened: the
    /// state directory was removed (or replaced) while this process held it, and whatever
    /// was written since went into removed files. Checked as a run begins and before it
    /// reports, so that such a run fails instead of reporting `completed` with nothing
    /// on disk.
    pub fn check_in_place(&self) -> Result<(), LedgerGone> {
        if Identity::of(&self.path) == self.identity {
            Ok(())
        } else {
            Err(LedgerGone {
                path: self.path.to_path_buf(),
            })
        }
    }
}

/// The ledger's files were removed or replaced while this process held them open.
#[derive(Debug, thiserror::Error)]
#[error(
    "the state directory of the ledger at `{}` was removed during the run: nothing of this \
     run was recorded (the next run sends its records again)",
    path.display()
)]
pub struct LedgerGone {
    pub path: PathBuf,
}

/// The ledger of one sync.
#[derive(Clone)]
pub struct SyncLedger {
    tree: sled::Tree,
    /// See [`FAILED_PREFIX`].
    failed: sled::Tree,
    /// The ledger's folder, for messages.
    path: Arc<Path>,
}

impl SyncLedger {
    pub fn get(&self, key: &str) -> Result<Option<Entry>> {
        match self.tree.get(key.as_bytes()).at(&self.path, "reading")? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode(&self.path, key, &bytes)?)),
        }
    }

    /// Change detection: whether a record from the source needs sending.
    pub fn decide(&self, record: &Record, send_all: bool) -> Result<Decision> {
        let Some(entry) = self.get(&record.key)? else {
            return Ok(Decision::Send);
        };
        let hash = Some(PayloadHash::of(&record.payload));
        Ok(match entry.status {
            Status::Permanent if entry.payload_hash == hash => Decision::Held,
            _ if send_all => Decision::Send,
            Status::Delivered | Status::Resolved if entry.delivered_hash == hash => {
                Decision::Unchanged
            }
            _ => Decision::Send,
        })
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(String, Entry)>> + '_ {
        self.tree.iter().map(|item| {
            let (key, value) = item.at(&self.path, "reading")?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let entry = decode(&self.path, &key, &value)?;
            Ok((key, entry))
        })
    }

    /// Failed entries (rejected, pending or permanent), in key order, through the index:
    /// proportional to the failures, not to the ledger.
    pub fn failed(&self) -> impl Iterator<Item = Result<(String, Entry)>> + '_ {
        self.failed.iter().keys().filter_map(|key| {
            let read = || -> Result<Option<(String, Entry)>> {
                let key = String::from_utf8_lossy(&key.at(&self.path, "reading")?).into_owned();
                Ok(self
                    .get(&key)?
                    .filter(|entry| entry.status.is_failed())
                    .map(|entry| (key, entry)))
            };
            read().transpose()
        })
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
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
        let mut entry = self
            .get(key)?
            .with_context(|| format!("no record with key `{key}` in this sync's ledger"))?;
        if entry.status == Status::Delivered {
            bail!("record `{key}` is delivered: there is nothing to resolve");
        }
        entry.status = Status::Resolved;
        entry.delivered_hash = entry.payload_hash;
        entry.resolution = Some(Resolution {
            by: by.to_string(),
            why: why.to_string(),
            at_ms: now_ms(),
        });
        let doing = "resolving a record";
        self.tree
            .insert(key.as_bytes(), encode(&entry)?)
            .at(&self.path, doing)?;
        self.failed.remove(key.as_bytes()).at(&self.path, doing)?;
        Ok(entry)
    }

    /// Records the fates of one verdict, in one sled batch. A key settled twice in the
    /// batch builds on its own earlier entry.
    pub fn record(&self, settled: &[Settled], at_ms: u64) -> Result<()> {
        self.write(settled, at_ms, false)
    }

    /// [`SyncLedger::record`]; `fresh` says the tree held nothing when this run began,
    /// so there is no earlier entry to read.
    fn write(&self, settled: &[Settled], at_ms: u64, fresh: bool) -> Result<()> {
        let mut entries: std::collections::HashMap<&str, Entry> =
            std::collections::HashMap::with_capacity(settled.len());
        let mut was_failed = std::collections::HashSet::new();
        for s in settled {
            let key = s.record.key.as_str();
            let previous = match entries.remove(key) {
                Some(entry) => Some(entry),
                None if fresh => None,
                None => self.get(key)?,
            };
            if previous.as_ref().is_some_and(|p| p.status.is_failed()) {
                was_failed.insert(key);
            }
            entries.insert(key, next_entry(previous, s, at_ms));
        }
        let (mut batch, mut failed, mut recovered) = (
            sled::Batch::default(),
            sled::Batch::default(),
            sled::Batch::default(),
        );
        let (mut any_failed, mut any_recovered) = (false, false);
        for (key, entry) in &entries {
            batch.insert(key.as_bytes(), encode(entry)?);
            if entry.status.is_failed() {
                failed.insert(key.as_bytes(), &[]);
                any_failed = true;
            } else if was_failed.contains(key) {
                recovered.remove(key.as_bytes());
                any_recovered = true;
            }
        }
        // The index may hold too much, never too little (see FAILED_PREFIX).
        let doing = "recording the fates of records";
        if any_failed {
            self.failed.apply_batch(failed).at(&self.path, doing)?;
        }
        self.tree.apply_batch(batch).at(&self.path, doing)?;
        if any_recovered {
            self.failed.apply_batch(recovered).at(&self.path, doing)?;
        }
        Ok(())
    }
}

/// The entry after `settled`, given what the ledger held before.
fn next_entry(previous: Option<Entry>, settled: &Settled, at_ms: u64) -> Entry {
    let hash = PayloadHash::of(&settled.record.payload);
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
        entry.payload_hash = Some(hash);
        entry.resolution = None;
    };
    match &settled.fate {
        Fate::Delivered(id) => {
            entry.status = Status::Delivered;
            entry.destination_id = id.clone().or(entry.destination_id.take());
            entry.delivered_hash = Some(hash);
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
            if entry.status == Status::Delivered && entry.delivered_hash == Some(hash) {
                return entry;
            }
            failed(&mut entry, Status::Pending, f.clone());
        }
    }
    entry
}

/// Indexes the failed records of every sync (an upgrade from version 1).
fn build_failed_indexes(db: &sled::Db, path: &Path) -> Result<()> {
    let doing = "upgrading the ledger";
    for name in db.tree_names() {
        let Some(sync) = name.strip_prefix(SYNC_PREFIX.as_bytes()) else {
            continue;
        };
        let tree = db.open_tree(&name).at(path, doing)?;
        let failed = db
            .open_tree([FAILED_PREFIX.as_bytes(), sync].concat())
            .at(path, doing)?;
        for item in tree.iter() {
            let (key, value) = item.at(path, doing)?;
            let entry = decode(path, &String::from_utf8_lossy(&key), &value)?;
            if entry.status.is_failed() {
                failed.insert(key, &[]).at(path, doing)?;
            }
        }
    }
    Ok(())
}

fn encode(entry: &Entry) -> Result<Vec<u8>> {
    Ok(postcard::to_extend(entry, vec![POSTCARD_TAG])?)
}

fn decode(path: &Path, key: &str, bytes: &[u8]) -> Result<Entry> {
    let entry = match bytes.split_first() {
        Some((&POSTCARD_TAG, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        Some((b'{', _)) => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        _ => Err("unknown entry layout".to_string()),
    };
    entry.map_err(|err| {
        damaged(
            path,
            &format!(
                "the entry of `{}` is unreadable: {err}",
                crate::report::printable(key)
            ),
        )
    })
}

/// The engine's sink into the ledger: each verdict's fates are written as one sled batch,
/// on the worker that settled them (sled takes concurrent writers; a single writer thread
/// merging batches measured slower and let its queue grow under load).
pub struct LedgerSink {
    ledger: SyncLedger,
    /// The tree was empty when the run began. Runs of one state directory never overlap
    /// (sled locks it to one process, and `sluice serve` runs one job at a time) and a
    /// run settles each key once, so no entry read back could exist: skip the read.
    fresh: bool,
}

impl LedgerSink {
    /// Made as the run begins, before any record settles.
    pub fn new(ledger: SyncLedger) -> Arc<Self> {
        let fresh = ledger.is_empty();
        Arc::new(LedgerSink { ledger, fresh })
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

impl Sink for LedgerSink {
    fn settle(&self, settled: &[Settled]) -> Result<()> {
        self.ledger.write(settled, now_ms(), self.fresh)
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
        assert_eq!(e.delivered_hash, Some(PayloadHash::of("{\"x\":1}")));
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
    fn storage_errors_name_the_ledger_and_say_when_the_disk_is_full() {
        let path = Path::new("/var/lib/sluice/ledger");
        let full = storage_error(
            path,
            "writing the ledger to disk",
            sled::Error::Io(std::io::Error::from_raw_os_error(28)),
        )
        .to_string();
        assert_eq!(
            full,
            "writing the ledger to disk: the disk holding the ledger at `/var/lib/sluice/ledger` \
             is full (no space left on device); free some space and run again (records whose \
             fate was not written are sent again)"
        );
        let denied = storage_error(
            path,
            "reading",
            sled::Error::Io(std::io::ErrorKind::PermissionDenied.into()),
        )
        .to_string();
        assert_eq!(
            denied,
            "reading: the ledger at `/var/lib/sluice/ledger`: permission denied"
        );
        let corrupt = storage_error(
            path,
            "reading",
            sled::Error::Corruption { at: None, bt: () },
        )
        .to_string();
        assert!(
            corrupt.starts_with(
                "the ledger at `/var/lib/sluice/ledger` is damaged (sled found corrupted data): \
                 move it away"
            ),
            "{corrupt}"
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
