//! The storage under the ledger, behind a trait: named, ordered key/value trees. The
//! ledger, the inspector and the run history use only this, so a second backend (a shared
//! SQL database) is one new file implementing [`Store`] and [`Tree`].

use std::sync::Arc;

/// A database of named trees, each an ordered map from byte keys to byte values.
///
/// What every implementation promises:
/// - **Exclusive access.** One process at a time holds a store open; opening one held by
///   another process fails with a message saying so (the ledger reports it as
///   [`super::OpenError::InUse`]). Within the process, trees are shared by any number of
///   threads: every method takes `&self`.
/// - **Durability.** A write returns once it is visible to every reader in the process;
///   it is durable (survives a crash of the process or the machine) once a later
///   [`Store::flush`] has returned. The ledger flushes before a run reports.
/// - **After a crash.** A reader sees every write up to the last completed flush, and
///   possibly some later ones; each [`Tree::apply`] is atomic (all of its writes or none
///   of them), single writes are whole or absent, never torn. So a record not marked
///   delivered is simply sent again: at-least-once.
/// - **Identity.** [`Store::in_place`] tells whether the store's files are still the ones
///   opened (a state directory removed during a run must fail that run, not be reported as
///   recorded).
pub trait Store: Send + Sync {
    /// The tree `name`, created empty if it does not exist.
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>, StoreError>;
    /// The names of every tree that exists.
    fn tree_names(&self) -> Result<Vec<String>, StoreError>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// False when the store's files were removed or replaced since it was opened.
    fn in_place(&self) -> bool;
}

/// A key and its value, as stored.
pub type Pair = (Vec<u8>, Vec<u8>);

/// The pairs of a tree in key order (or its reverse).
pub type Pairs<'a> = Box<dyn Iterator<Item = Result<Pair, StoreError>> + Send + 'a>;

/// One ordered collection of key/value pairs.
pub trait Tree: Send + Sync {
    /// Hands the value of `key` to `read` without copying it out of the store (the
    /// ledger reads an entry per source record); whether the key was there.
    fn read(&self, key: &[u8], read: &mut dyn FnMut(&[u8])) -> Result<bool, StoreError>;
    /// The value of `key`, copied.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut value = None;
        self.read(key, &mut |bytes| value = Some(bytes.to_vec()))?;
        Ok(value)
    }
    /// The values of `keys`, in their order: one read where the store is across a network.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|key| self.get(key)).collect()
    }
    /// Lends the value of each of `keys` that exists to `read`, with its position in
    /// `keys`: a store in memory lends its own bytes (nothing copied); a store across a
    /// network fetches them together ([`Tree::get_many`]).
    fn read_many(
        &self,
        keys: &[Vec<u8>],
        read: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<(), StoreError> {
        for (i, key) in keys.iter().enumerate() {
            self.read(key, &mut |bytes| read(i, bytes))?;
        }
        Ok(())
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`; whether it was there.
    fn remove(&self, key: &[u8]) -> Result<bool, StoreError>;
    /// Every insert and removal of `batch`, atomically.
    fn apply(&self, batch: &Batch<'_>) -> Result<(), StoreError>;
    /// Every pair, in key order.
    fn iter(&self) -> Pairs<'_>;
    /// Every pair, last key first.
    fn iter_rev(&self) -> Pairs<'_>;
    /// How many pairs (may walk the whole tree: not for hot paths).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool;
}

/// Writes applied to one tree at once. Keys are borrowed: a batch of a run's fates copies
/// no key until the store does.
#[derive(Default)]
pub struct Batch<'a> {
    ops: Vec<(&'a [u8], Option<Vec<u8>>)>,
}

impl<'a> Batch<'a> {
    pub fn insert(&mut self, key: &'a [u8], value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    pub fn remove(&mut self, key: &'a [u8]) {
        self.ops.push((key, None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// In order: `(key, Some(value))` to insert, `(key, None)` to remove.
    pub fn ops(&self) -> &[(&'a [u8], Option<Vec<u8>>)] {
        &self.ops
    }
}

/// A store's failure, classified for what an operator can do about it; the ledger says it
/// with the ledger's path (see [`super::storage_error`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The files cannot be read or written (a full disk, a permission).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The stored data is damaged, in one short clause.
    #[error("{0}")]
    Damaged(String),
    /// Anything else the backend reports, in one short clause.
    #[error("{0}")]
    Other(String),
    /// A write refused because this process's lease on the work it does has moved to
    /// another worker (the shared database's fencing): it must stop that work.
    #[error("{0}")]
    Fenced(String),
}

/// What every [`Store`] must do, checked on an empty store: each implementation's tests
/// call this, so a second backend is held to the same behaviour as the first.
#[cfg(test)]
pub(crate) fn check_contract(store: &dyn Store) {
    let tree = store.tree("t").unwrap();
    assert!(tree.is_empty());
    assert_eq!(tree.get(b"a").unwrap(), None);
    for key in [b"b", b"a", b"c"] {
        tree.insert(key, key).unwrap();
    }
    assert_eq!(tree.get(b"b").unwrap().as_deref(), Some(&b"b"[..]));
    let mut seen = Vec::new();
    assert!(tree.read(b"c", &mut |v| seen.push(v.to_vec())).unwrap());
    assert!(!tree.read(b"z", &mut |v| seen.push(v.to_vec())).unwrap());
    assert_eq!(
        seen,
        [b"c".to_vec()],
        "read hands over the value of a key that is there"
    );
    assert_eq!(tree.len(), 3);
    let keys = |pairs: Pairs<'_>| -> Vec<Vec<u8>> { pairs.map(|p| p.unwrap().0).collect() };
    assert_eq!(keys(tree.iter()), [b"a", b"b", b"c"], "key order");
    assert_eq!(
        keys(tree.iter_rev()),
        [b"c", b"b", b"a"],
        "reverse key order"
    );
    assert!(tree.remove(b"b").unwrap(), "removing a key that was there");
    assert!(!tree.remove(b"b").unwrap(), "removing it again");

    let mut batch = Batch::default();
    batch.insert(b"d", b"4".to_vec());
    batch.remove(b"a");
    batch.insert(b"c", b"3".to_vec());
    tree.apply(&batch).unwrap();
    let pairs: Vec<Pair> = tree.iter().map(Result::unwrap).collect();
    assert_eq!(
        pairs,
        [
            (b"c".to_vec(), b"3".to_vec()),
            (b"d".to_vec(), b"4".to_vec())
        ]
    );

    let other = store.tree("u").unwrap();
    assert!(other.is_empty(), "trees are separate");
    let again = store.tree("t").unwrap();
    assert_eq!(again.len(), 2, "a tree opened again is the same tree");
    let names = store.tree_names().unwrap();
    assert!(names.iter().any(|n| n == "t") && names.iter().any(|n| n == "u"));
    store.flush().unwrap();
    assert!(store.in_place());
}
