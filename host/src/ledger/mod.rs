//! The persistent retry ledger: every record's fate by key, so that nothing is silently
//! lost and a person can see and fix what failed.
//!
//! A sync's entries live in one tree of a [`Store`] (today the embedded sled store, see
//! [`sled`]), its failed records in an index tree beside it. A record is marked delivered
//! only when the destination confirmed it (the engine settles it only then), and the
//! ledger is flushed before a run reports. After a crash, anything not marked delivered is
//! simply sent again: at-least-once.
//!
//! - [`model`]: the entry and the rules that change it (pure functions); `hash`: the
//!   payload hash they compare.
//! - [`codec`]: the entry as bytes, and the schema versions.
//! - [`store`]: the storage trait; [`sled`]: its embedded implementation.
//! - [`sink`]: the engine's sink and filter into the ledger.

pub mod codec;
pub mod delivered;
mod hash;
pub mod model;
mod sink;
pub mod sled;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};

pub use self::model::{Entry, PayloadHash, Resolution, Status};
pub use self::sink::LedgerSink;
pub use self::store::{Store, StoreError, Tree};
pub use crate::clock::now_ms;
pub use crate::fate::Decision;
use crate::fate::{Record, Settled};
use codec::{READABLE_VERSIONS, SCHEMA_VERSION};

const META_TREE: &str = "meta";
/// A sync's entries, by key.
const SYNC_PREFIX: &str = "sync:";
/// A sync's failed records (rejected, pending, permanent), by key, with no value: the
/// retry job reads these instead of every entry. Written before a failure's entry and
/// cleared after a success's, so after a crash it can only hold too much, and readers
/// check each entry it names.
const FAILED_PREFIX: &str = "failed:";
const SCHEMA_KEY: &str = "schema_version";

/// Why a ledger cannot be opened, where a caller may act on the reason.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the ledger at `{}` is in use by another sluice process; only one process may use a \
         state_dir at a time",
        path.display()
    )]
    InUse { path: PathBuf },
    #[error(
        "`{}` is not a Sluice ledger (it holds files, but no ledger): move it away or point \
         state_dir elsewhere",
        path.display()
    )]
    NotALedger { path: PathBuf },
}

/// A failure of the ledger's storage said so that an operator can act on it: which
/// ledger, what was being done, and for a full disk, that it is full.
pub fn storage_error(path: &Path, doing: &str, err: StoreError) -> anyhow::Error {
    match err {
        StoreError::Io(io) if crate::output::is_disk_full(&io) => anyhow!(
            "{doing}: the disk holding the ledger at `{}` is full (no space left on device); \
             free some space and run again (records whose fate was not written are sent again)",
            path.display()
        ),
        StoreError::Io(io) => anyhow!("{doing}: the ledger at `{}`: {io}", path.display()),
        StoreError::Damaged(what) => damaged(path, &what),
        StoreError::Other(what) => anyhow!("{doing}: the ledger at `{}`: {what}", path.display()),
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

/// `.at(path, doing)`: a store result with its error said by [`storage_error`].
trait Storage<T> {
    fn at(self, path: &Path, doing: &str) -> Result<T>;
}

impl<T> Storage<T> for Result<T, StoreError> {
    fn at(self, path: &Path, doing: &str) -> Result<T> {
        self.map_err(|err| storage_error(path, doing, err))
    }
}

/// The entry stored under `key`, or a message saying the ledger is damaged.
fn decode(path: &Path, key: &str, bytes: &[u8]) -> Result<Entry> {
    codec::decode(bytes).map_err(|err| {
        damaged(
            path,
            &format!(
                "the entry of `{}` is unreadable: {err}",
                crate::report::printable(key)
            ),
        )
    })
}

/// The ledger of one state directory. Only one process may hold it open.
pub struct Ledger {
    store: Arc<dyn Store>,
    path: Arc<Path>,
}

impl Ledger {
    /// Opens (creating if needed) the ledger under `state_dir`. A ledger held by another
    /// process, or a folder that is not a ledger, fails with an [`OpenError`] (reach it
    /// with `downcast_ref`); other failures are said for the operator.
    pub fn open(state_dir: &Path) -> Result<Ledger> {
        let path = state_dir.join("ledger");
        let store: Arc<dyn Store> = Arc::new(sled::SledStore::open(&path)?);
        check_schema(store.as_ref(), &path)?;
        Ok(Ledger {
            store,
            path: path.into(),
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
                .store
                .tree(&format!("{SYNC_PREFIX}{name}"))
                .at(&self.path, doing)?,
            failed: self
                .store
                .tree(&format!("{FAILED_PREFIX}{name}"))
                .at(&self.path, doing)?,
            path: self.path.clone(),
        })
    }

    /// Another tree in the same store (the inspector's, the run history's).
    pub fn tree(&self, name: &str) -> Result<Arc<dyn Tree>> {
        self.store.tree(name).at(&self.path, "opening the ledger")
    }

    /// Makes every settled fate durable.
    pub fn flush(&self) -> Result<()> {
        self.store
            .flush()
            .at(&self.path, "writing the ledger to disk")
    }

    /// Fails when the ledger's folder or database file is no longer the one opened: the
    /// state directory was removed (or replaced) while this process held it, and whatever
    /// was written since went into removed files. Checked as a run begins and before it
    /// reports, so that such a run fails instead of reporting `completed` with nothing
    /// on disk.
    pub fn check_in_place(&self) -> Result<(), LedgerGone> {
        if self.store.in_place() {
            Ok(())
        } else {
            Err(LedgerGone {
                path: self.path.to_path_buf(),
            })
        }
    }
}

/// Refuses a ledger of a layout this Sluice does not read, stamps a new one, and
/// upgrades an older readable one in place.
fn check_schema(store: &dyn Store, path: &Path) -> Result<()> {
    let opening = "opening the ledger";
    let meta = store.tree(META_TREE).at(path, opening)?;
    match meta.get(SCHEMA_KEY.as_bytes()).at(path, opening)? {
        None => {
            let has_syncs = store
                .tree_names()
                .at(path, opening)?
                .iter()
                .any(|n| n.starts_with(SYNC_PREFIX));
            if has_syncs {
                bail!(
                    "the ledger at `{}` has records but no schema version: refusing to guess its layout",
                    path.display()
                );
            }
            meta.insert(SCHEMA_KEY.as_bytes(), SCHEMA_VERSION.to_string().as_bytes())
                .at(path, opening)?;
            store.flush().at(path, opening)?;
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
                build_failed_indexes(store, path)?;
                store.flush().at(path, opening)?;
                meta.insert(SCHEMA_KEY.as_bytes(), SCHEMA_VERSION.to_string().as_bytes())
                    .at(path, opening)?;
                store.flush().at(path, opening)?;
            }
        }
    }
    Ok(())
}

/// Indexes the failed records of every sync (an upgrade from version 1).
fn build_failed_indexes(store: &dyn Store, path: &Path) -> Result<()> {
    let doing = "upgrading the ledger";
    for name in store.tree_names().at(path, doing)? {
        let Some(sync) = name.strip_prefix(SYNC_PREFIX) else {
            continue;
        };
        let tree = store.tree(&name).at(path, doing)?;
        let failed = store
            .tree(&format!("{FAILED_PREFIX}{sync}"))
            .at(path, doing)?;
        for item in tree.iter() {
            let (key, value) = item.at(path, doing)?;
            let entry = decode(path, &String::from_utf8_lossy(&key), &value)?;
            if entry.status.is_failed() {
                failed.insert(&key, &[]).at(path, doing)?;
            }
        }
    }
    Ok(())
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
    tree: Arc<dyn Tree>,
    /// See [`FAILED_PREFIX`].
    failed: Arc<dyn Tree>,
    /// The ledger's folder, for messages.
    path: Arc<Path>,
}

impl SyncLedger {
    pub fn get(&self, key: &str) -> Result<Option<Entry>> {
        let mut entry = None;
        self.tree
            .read(key.as_bytes(), &mut |bytes| {
                entry = Some(decode(&self.path, key, bytes))
            })
            .at(&self.path, "reading")?;
        entry.transpose()
    }

    /// Change detection: whether a record from the source needs sending.
    pub fn decide(&self, record: &Record, send_all: bool) -> Result<Decision> {
        let previous = self.get(&record.key)?;
        Ok(model::decide(previous.as_ref(), &record.payload, send_all))
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
        self.failed.iter().filter_map(|item| {
            let read = || -> Result<Option<(String, Entry)>> {
                let (key, _) = item.at(&self.path, "reading")?;
                let key = String::from_utf8_lossy(&key).into_owned();
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
        let entry = self
            .get(key)?
            .with_context(|| format!("no record with key `{key}` in this sync's ledger"))?;
        if entry.status == Status::Delivered {
            bail!("record `{key}` is delivered: there is nothing to resolve");
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

    /// Records the fates of one verdict, in one store batch. A key settled twice in the
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
            entries.insert(key, model::next_entry(previous, s, at_ms));
        }
        let (mut batch, mut failed, mut recovered) = (
            store::Batch::default(),
            store::Batch::default(),
            store::Batch::default(),
        );
        for (key, entry) in &entries {
            batch.insert(key.as_bytes(), codec::encode(entry)?);
            if entry.status.is_failed() {
                failed.insert(key.as_bytes(), Vec::new());
            } else if was_failed.contains(key) {
                recovered.remove(key.as_bytes());
            }
        }
        // The index may hold too much, never too little (see FAILED_PREFIX).
        let doing = "recording the fates of records";
        if !failed.is_empty() {
            self.failed.apply(&failed).at(&self.path, doing)?;
        }
        self.tree.apply(&batch).at(&self.path, doing)?;
        if !recovered.is_empty() {
            self.failed.apply(&recovered).at(&self.path, doing)?;
        }
        Ok(())
    }
}
