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
pub mod deliveries;
mod hash;
pub mod model;
pub mod postgres;
mod records;
mod sink;
pub mod sled;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use crate::concern::{Concern, ErrorKind};

pub use self::delivered::Fingerprint;
use self::delivered::{DeliveredLog, Delivery, LogError};
use self::deliveries::Deliveries;
pub use self::model::{Entry, PayloadHash, Resolution, Status};
pub use self::records::{Counts, SyncLedger};
pub use self::sink::{LedgerSink, ResendReason, RunStart};
pub use self::store::{Store, StoreError, Tree};
pub use crate::clock::now_ms;
pub use crate::fate::Decision;
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
        StoreError::Fenced(what) => anyhow!("{doing}: {what}"),
    }
}

/// A damaged ledger: what is wrong in a short clause, and what the operator can do.
fn damaged(path: &Path, what: &str) -> anyhow::Error {
    let text = format!(
        "the ledger at `{0}` is damaged ({what}): move it away (for example to \
         `{0}.damaged`) and run again; a new ledger is started and the next run sends every \
         record again",
        path.display()
    );
    anyhow::Error::new(Concern::new(ErrorKind::State, text).file(path))
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
    codec::decode(bytes).map_err(|err| damaged_entry(path, key, err))
}

/// The error of an entry whose bytes do not decode.
fn damaged_entry(path: &Path, key: &str, err: codec::DecodeError) -> anyhow::Error {
    damaged(
        path,
        &format!(
            "the entry of `{}` is unreadable: {err}",
            crate::report::printable(key)
        ),
    )
}

/// The ledger of one state directory or state database. Only one process may hold it
/// open.
pub struct Ledger {
    store: Arc<dyn Store>,
    path: Arc<Path>,
    backend: Backend,
    /// The delivered set of each sync opened so far: one per sync per process, so a
    /// log's appends share one segment.
    logs: Mutex<HashMap<String, Arc<dyn Deliveries>>>,
}

/// Where the delivered sets live, beside the store.
enum Backend {
    /// Logs in `<state_dir>/delivered`, synced at most `sync_interval` apart.
    Files {
        delivered_dir: PathBuf,
        sync_interval: Duration,
    },
    /// Tables of the state database; writes checked against `fence` when the ledger is a
    /// worker's view for one lease.
    Postgres {
        db: Arc<postgres::Db>,
        fence: Option<Arc<postgres::Fence>>,
    },
}

/// How often a delivered log is made durable while a run appends to it, unless the
/// config says otherwise (`flush_interval`).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(500);

impl Ledger {
    /// Opens (creating if needed) the ledger under `state_dir`. A ledger held by another
    /// process, or a folder that is not a ledger, fails with an [`OpenError`] (reach it
    /// with `downcast_ref`); other failures are said for the operator.
    pub fn open(state_dir: &Path) -> Result<Ledger> {
        Ledger::open_with(state_dir, DEFAULT_SYNC_INTERVAL)
    }

    /// [`Ledger::open`], with the delivered logs made durable every `sync_interval`.
    pub fn open_with(state_dir: &Path, sync_interval: Duration) -> Result<Ledger> {
        let path = state_dir.join("ledger");
        let store: Arc<dyn Store> = Arc::new(sled::SledStore::open(&path)?);
        let ledger = Ledger {
            store,
            path: path.into(),
            backend: Backend::Files {
                delivered_dir: state_dir.join("delivered"),
                sync_interval,
            },
            logs: Mutex::new(HashMap::new()),
        };
        check_schema(&ledger)?;
        Ok(ledger)
    }

    /// The ledger in the PostgreSQL database whose URL is in the variable `url_env`.
    pub fn open_postgres(url_env: &str, schema: &str, access: postgres::Access) -> Result<Ledger> {
        Ledger::on_database(postgres::Db::connect_env(url_env, schema)?, access)
    }

    /// The ledger in the database `db` is connected to.
    pub fn on_database(db: postgres::Db, access: postgres::Access) -> Result<Ledger> {
        let url_env = db.url_env.clone();
        let db = Arc::new(db);
        postgres::prepare(&db, access)?;
        let ledger = Ledger {
            store: Arc::new(postgres::PgStore::new(db.clone(), None)),
            // Named in messages as a path is: by where its URL comes from.
            path: PathBuf::from(format!("postgres:${url_env}/{}", db.schema)).into(),
            backend: Backend::Postgres { db, fence: None },
            logs: Mutex::new(HashMap::new()),
        };
        check_schema(&ledger)?;
        Ok(ledger)
    }

    /// The same state database, every write of which checks that `fence` still holds:
    /// what a worker of a pool writes through while it works under a lease.
    pub fn fenced(&self, fence: postgres::Fence) -> Result<Ledger> {
        let Backend::Postgres { db, .. } = &self.backend else {
            bail!("only a ledger in a state database can be fenced");
        };
        let fence = Some(Arc::new(fence));
        Ok(Ledger {
            store: Arc::new(postgres::PgStore::new(db.clone(), fence.clone())),
            path: self.path.clone(),
            backend: Backend::Postgres {
                db: db.clone(),
                fence,
            },
            logs: Mutex::new(HashMap::new()),
        })
    }

    /// The ledger a config names, for a process that runs syncs by itself: its `[state]`
    /// database (held alone), or its state directory.
    pub fn for_config(config: &crate::config::Config) -> Result<Ledger> {
        Ledger::for_config_with(config, postgres::Access::Exclusive)
    }

    /// [`Ledger::for_config`], holding a state database as `access` says (a pool's
    /// workers and readers share it; the embedded store is always held alone).
    pub fn for_config_with(
        config: &crate::config::Config,
        access: postgres::Access,
    ) -> Result<Ledger> {
        match &config.state {
            crate::config::StateBackend::Embedded => {
                Ledger::open_with(&config.state_dir, config.flush_interval)
            }
            crate::config::StateBackend::Postgres { url_env, schema } => {
                Ledger::open_postgres(url_env, schema, access)
            }
        }
    }

    /// The delivered log of the sync `name`, opened (and its torn end repaired) once per
    /// process.
    fn log(&self, name: &str) -> Result<Arc<dyn Deliveries>> {
        let mut logs = self.logs.lock().unwrap();
        if let Some(log) = logs.get(name) {
            return Ok(log.clone());
        }
        let log: Arc<dyn Deliveries> = match &self.backend {
            Backend::Files {
                delivered_dir,
                sync_interval,
            } => {
                let dir = delivered_dir.join(log_folder(name));
                Arc::new(DeliveredLog::open(&dir, *sync_interval).map_err(|e| self.log_error(e))?)
            }
            Backend::Postgres { db, fence } => {
                Arc::new(postgres::PgDeliveries::new(db.clone(), name, fence.clone()))
            }
        };
        logs.insert(name.to_string(), log.clone());
        Ok(log)
    }

    fn log_error(&self, err: LogError) -> anyhow::Error {
        log_error(&self.path, err)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records of one sync.
    pub fn sync(&self, name: &str) -> Result<SyncLedger> {
        let doing = "opening the records of a sync";
        Ok(SyncLedger {
            delivered: self.log(name)?,
            tree: self
                .store
                .tree(&format!("{SYNC_PREFIX}{name}"))
                .at(&self.path, doing)?,
            failed: self
                .store
                .tree(&format!("{FAILED_PREFIX}{name}"))
                .at(&self.path, doing)?,
            path: self.path.clone(),
            name: name.into(),
        })
    }

    /// Another tree in the same store (the inspector's, the run history's).
    pub fn tree(&self, name: &str) -> Result<Arc<dyn Tree>> {
        self.store.tree(name).at(&self.path, "opening the ledger")
    }

    /// Makes every settled fate durable: each delivered log, then the store.
    pub fn flush(&self) -> Result<()> {
        let logs: Vec<_> = self.logs.lock().unwrap().values().cloned().collect();
        for log in logs {
            log.sync().map_err(|e| self.log_error(e))?;
        }
        self.store
            .flush()
            .at(&self.path, "writing the ledger to disk")
    }

    /// Compacts the delivered log of the sync `name` if it has grown enough (see
    /// [`Deliveries::compact_if_worth_it`]).
    pub fn compact(&self, name: &str) -> Result<Option<delivered::Compacted>> {
        self.log(name)?
            .compact_if_worth_it()
            .map_err(|e| self.log_error(e))
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
fn check_schema(ledger: &Ledger) -> Result<()> {
    let (store, path) = (ledger.store.as_ref(), &*ledger.path);
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
                    READABLE_VERSIONS.join(", ")
                );
            }
            if version != SCHEMA_VERSION.to_string() {
                // The new version keeps an older Sluice from misreading the ledger, and
                // is written last, so an upgrade cut short is done again.
                tracing::info!(
                    ledger = %path.display(),
                    "upgrading the ledger from schema {version} to {SCHEMA_VERSION}"
                );
                if version == "1" {
                    build_failed_indexes(store, path)?;
                }
                move_deliveries_to_logs(ledger)?;
                store.flush().at(path, opening)?;
                meta.insert(SCHEMA_KEY.as_bytes(), SCHEMA_VERSION.to_string().as_bytes())
                    .at(path, opening)?;
                store.flush().at(path, opening)?;
            }
        }
    }
    Ok(())
}

/// Moves every delivered entry out of the store into its sync's delivered log (an
/// upgrade to version 3). The log is made durable before the entries are removed; a
/// key already in the log (an upgrade cut short) is not appended twice.
fn move_deliveries_to_logs(ledger: &Ledger) -> Result<()> {
    let (store, path) = (ledger.store.as_ref(), &*ledger.path);
    let doing = "upgrading the ledger";
    for name in store.tree_names().at(path, doing)? {
        let Some(sync) = name.strip_prefix(SYNC_PREFIX) else {
            continue;
        };
        let tree = store.tree(&name).at(path, doing)?;
        let mut moved: Vec<(String, Entry)> = Vec::new();
        for item in tree.iter() {
            let (key, value) = item.at(path, doing)?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let entry = decode(path, &key, &value)?;
            if entry.status == Status::Delivered {
                moved.push((key, entry));
            }
        }
        if moved.is_empty() {
            continue;
        }
        let log = ledger.log(sync)?;
        let (already, _) = log.all().map_err(|e| ledger.log_error(e))?;
        let deliveries: Vec<Delivery<'_>> = moved
            .iter()
            .filter(|(key, _)| !already.contains_key(key))
            .map(|(key, entry)| Delivery {
                key,
                hash: entry
                    .delivered_hash
                    .or(entry.payload_hash)
                    .unwrap_or(PayloadHash(0))
                    .0
                    .to_le_bytes(),
                destination_id: entry.destination_id.as_deref(),
                attempts: entry.attempts,
                at_ms: entry.last_attempt_ms.unwrap_or(0),
            })
            .collect();
        log.append(&deliveries).map_err(|e| ledger.log_error(e))?;
        log.close_segment().map_err(|e| ledger.log_error(e))?;
        let mut batch = store::Batch::default();
        for (key, _) in &moved {
            batch.remove(key.as_bytes());
        }
        tree.apply(&batch).at(path, doing)?;
        tracing::info!(
            sync,
            records = moved.len(),
            "moved delivered records into the delivered log"
        );
    }
    Ok(())
}

/// The folder of a sync's delivered log: its name where it is plain, and a hash of the
/// whole name, so that any two names get two folders.
fn log_folder(name: &str) -> String {
    let plain: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(40)
        .collect();
    let hash = xxhash_rust::xxh3::xxh3_64(name.as_bytes());
    format!("{plain}-{hash:016x}")
}

/// A failure of a delivered log, said for the operator.
fn log_error(path: &Path, err: LogError) -> anyhow::Error {
    match &err {
        LogError::Io { source, .. } if crate::output::is_disk_full(source) => anyhow!(
            "the disk holding the ledger at `{}` is full (no space left on device): {err}; \
             free some space and run again (records whose fate was not written are sent again)",
            path.display()
        ),
        LogError::Io { .. } => anyhow!(
            "the delivered log of the ledger at `{}`: {err}",
            path.display()
        ),
        LogError::Damaged { .. } => anyhow!(
            "the delivered log of the ledger at `{}` is damaged: {err}. Nothing was reset: \
             move the damaged file away to send its records again, or restore it from a backup",
            path.display()
        ),
        LogError::Fenced(_) => anyhow!("{err}"),
        LogError::Database(_) => anyhow!(
            "the delivered records of the ledger at `{}`: {err}",
            path.display()
        ),
    }
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
