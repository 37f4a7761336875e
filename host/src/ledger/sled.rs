//! The embedded store: one sled database under `state_dir/ledger`, a sled tree per
//! [`Tree`]. The only file that names sled; see [`Store`] for what it promises.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::store::{Batch, Pairs, Store, StoreError, Tree};
use super::{OpenError, damaged, storage_error};

/// A sled database, opened by this process alone (sled locks its folder).
pub struct SledStore {
    db: sled::Db,
    /// Which files it was when opened; see [`Store::in_place`].
    identity: Identity,
    path: PathBuf,
}

/// How long a held lock may take to be released before the ledger is called in use.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// sled says a held lock only in its message.
fn is_lock(err: &sled::Error) -> bool {
    let text = err.to_string();
    text.contains("lock") || text.contains("WouldBlock") || text.contains("temporarily unavailable")
}

impl SledStore {
    /// Opens (creating if needed) the database in the folder `path`.
    pub fn open(path: &Path) -> Result<SledStore> {
        if path.exists() && !path.join("conf").exists() && std::fs::read_dir(path)?.next().is_some()
        {
            return Err(OpenError::NotALedger {
                path: path.to_path_buf(),
            }
            .into());
        }
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating the ledger directory `{}`", path.display()))?;
        // sled caches up to 1 GiB by default; a ledger of millions of records needs far
        // less to stay fast, and the run's memory should stay flat.
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024);
        // sled releases its lock from a background thread some time after the last handle
        // is dropped, so a ledger this process just closed (a finished run, `serve`'s next
        // one) may still look held for a moment: try again briefly before calling it in
        // use by another process.
        let give_up = std::time::Instant::now() + LOCK_PATIENCE;
        let mut opened = config.open();
        while let Err(err) = &opened
            && is_lock(err)
            && std::time::Instant::now() < give_up
        {
            std::thread::sleep(std::time::Duration::from_millis(25));
            opened = config.open();
        }
        let db = opened.map_err(|err| {
            if is_lock(&err) {
                OpenError::InUse {
                    path: path.to_path_buf(),
                }
                .into()
            } else if let sled::Error::Io(_) = err {
                storage_error(path, "opening the ledger", err.into())
            } else {
                damaged(path, &clause(&err))
            }
        })?;
        Ok(SledStore {
            db,
            identity: Identity::of(path),
            path: path.to_path_buf(),
        })
    }
}

impl Store for SledStore {
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>, StoreError> {
        Ok(Arc::new(SledTree(self.db.open_tree(name)?)))
    }

    fn tree_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .db
            .tree_names()
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn in_place(&self) -> bool {
        Identity::of(&self.path) == self.identity
    }
}

struct SledTree(sled::Tree);

impl Tree for SledTree {
    fn read(&self, key: &[u8], read: &mut dyn FnMut(&[u8])) -> Result<bool, StoreError> {
        let value = self.0.get(key)?;
        if let Some(value) = &value {
            read(value);
        }
        Ok(value.is_some())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0.insert(key, value)?;
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.0.remove(key)?.is_some())
    }

    fn apply(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch.ops() {
            match value {
                Some(value) => sled_batch.insert(*key, value.as_slice()),
                None => sled_batch.remove(*key),
            }
        }
        self.0.apply_batch(sled_batch)?;
        Ok(())
    }

    fn iter(&self) -> Pairs<'_> {
        Box::new(self.0.iter().map(pair))
    }

    fn iter_rev(&self) -> Pairs<'_> {
        Box::new(self.0.iter().rev().map(pair))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn pair(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let (key, value) = item?;
    Ok((key.to_vec(), value.to_vec()))
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        match err {
            sled::Error::Io(io) => StoreError::Io(io),
            sled::Error::Corruption { .. } => StoreError::Damaged(clause(&err)),
            other => StoreError::Other(clause(&other)),
        }
    }
}

/// What sled said, in one short clause.
fn clause(err: &sled::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_this_process_just_closed_opens_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..30u32 {
            let store =
                SledStore::open(dir.path()).unwrap_or_else(|err| panic!("round {round}: {err:#}"));
            let tree = store.tree("t").unwrap();
            tree.insert(&round.to_be_bytes(), b"x").unwrap();
            store.flush().unwrap();
        }
    }

    #[test]
    fn storage_errors_name_the_ledger_and_say_when_the_disk_is_full() {
        let path = Path::new("/var/lib/sluice/ledger");
        let full = storage_error(
            path,
            "writing the ledger to disk",
            sled::Error::Io(std::io::Error::from_raw_os_error(28)).into(),
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
            sled::Error::Io(std::io::ErrorKind::PermissionDenied.into()).into(),
        )
        .to_string();
        assert_eq!(
            denied,
            "reading: the ledger at `/var/lib/sluice/ledger`: permission denied"
        );
        let corrupt = storage_error(
            path,
            "reading",
            sled::Error::Corruption { at: None, bt: () }.into(),
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
    fn the_sled_store_keeps_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        super::super::store::check_contract(&SledStore::open(&dir.path().join("ledger")).unwrap());
    }

    #[test]
    fn a_store_whose_folder_was_removed_is_no_longer_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let store = SledStore::open(&path).unwrap();
        assert!(store.in_place());
        std::fs::remove_dir_all(&path).unwrap();
        assert!(!store.in_place());
    }

    #[test]
    fn a_folder_holding_other_files_is_not_a_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("notes.txt"), "mine").unwrap();
        let err = SledStore::open(&path).err().expect("refused");
        assert!(
            matches!(
                err.downcast_ref::<OpenError>(),
                Some(OpenError::NotALedger { .. })
            ),
            "{err:#}"
        );
        assert_eq!(
            std::fs::read_to_string(path.join("notes.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_ledger_held_by_another_opener_is_in_use_as_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let _held = SledStore::open(&path).unwrap();
        let err = SledStore::open(&path).err().expect("a second open fails");
        assert!(
            matches!(
                err.downcast_ref::<OpenError>(),
                Some(OpenError::InUse { .. })
            ),
            "{err:#}"
        );
    }
}
