//! Trees as rows of `sluice_kv`, ordered by their bytes as sled orders them (`bytea`
//! compares bytewise). A write is one statement, its own transaction.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Db, DbError, Fence, held};
use crate::ledger::StoreError;
use crate::ledger::store::{Batch, Pair, Pairs, Store, Tree};

/// How many pairs an iteration reads a round trip.
const PAGE: i64 = 1_000;

/// A batch: `$4` removed, `$5` set to `$6`, in tree `$3`, unless fenced (see [`held`]).
const APPLY: &str = concat!(
    "with ",
    held!(),
    ", gone as (delete from sluice_kv \
         where tree = $3 and key = any($4::bytea[]) and (select ok from held)), \
     put as (insert into sluice_kv (tree, key, value) \
         select $3, k, v from unnest($5::bytea[], $6::bytea[]) as u(k, v) \
         where (select ok from held) \
         on conflict (tree, key) do update set value = excluded.value) \
     select ok from held"
);

/// Key `$4` of tree `$3` removed, unless fenced: whether the write held, and how many rows
/// went.
const REMOVE: &str = concat!(
    "with ",
    held!(),
    ", gone as (delete from sluice_kv \
         where tree = $3 and key = $4 and (select ok from held) returning 1) \
     select (select ok from held), (select count(*) from gone)"
);

pub struct PgStore {
    db: Arc<Db>,
    fence: Option<Arc<Fence>>,
}

impl PgStore {
    pub fn new(db: Arc<Db>, fence: Option<Arc<Fence>>) -> PgStore {
        PgStore { db, fence }
    }
}

impl Store for PgStore {
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>, StoreError> {
        let owned = name.to_string();
        self.db.call(move |client| {
            Ok(client.execute(
                "insert into sluice_trees (name) values ($1) on conflict do nothing",
                &[&owned],
            )?)
        })?;
        Ok(Arc::new(PgTree {
            db: self.db.clone(),
            name: name.to_string(),
            fence: self.fence.clone(),
        }))
    }

    fn tree_names(&self) -> Result<Vec<String>, StoreError> {
        self.db.call(|client| {
            let rows = client.query("select name from sluice_trees order by name", &[])?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    /// Every write is committed before it returns.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The database cannot be moved away under the process as a folder can.
    fn in_place(&self) -> bool {
        true
    }
}

pub struct PgTree {
    db: Arc<Db>,
    name: String,
    /// Writes check this lease (see [`Fence`]).
    fence: Option<Arc<Fence>>,
}

impl PgTree {
    /// One page of pairs after (or, in reverse, before) `from`.
    fn page(&self, from: Option<Vec<u8>>, reverse: bool) -> Result<Vec<Pair>, StoreError> {
        let tree = self.name.clone();
        self.db.call(move |client| {
            let sql = match (reverse, from.is_some()) {
                (false, false) => "select key, value from sluice_kv where tree = $1 order by key limit $2",
                (false, true) => "select key, value from sluice_kv where tree = $1 and key > $3 order by key limit $2",
                (true, false) => "select key, value from sluice_kv where tree = $1 order by key desc limit $2",
                (true, true) => "select key, value from sluice_kv where tree = $1 and key < $3 order by key desc limit $2",
            };
            let rows = match &from {
                Some(from) => client.query(sql, &[&tree, &PAGE, from])?,
                None => client.query(sql, &[&tree, &PAGE])?,
            };
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn pairs(&self, reverse: bool) -> Pairs<'_> {
        let mut buffered: std::vec::IntoIter<Pair> = Vec::new().into_iter();
        let mut last: Option<Vec<u8>> = None;
        let mut ended = false;
        Box::new(std::iter::from_fn(move || {
            loop {
                if let Some(pair) = buffered.next() {
                    last = Some(pair.0.clone());
                    return Some(Ok(pair));
                }
                if ended {
                    return None;
                }
                match self.page(last.clone(), reverse) {
                    Ok(page) => {
                        ended = (page.len() as i64) < PAGE;
                        buffered = page.into_iter();
                    }
                    Err(err) => {
                        ended = true;
                        return Some(Err(err));
                    }
                }
            }
        }))
    }
}

impl Tree for PgTree {
    fn read(&self, key: &[u8], read: &mut dyn FnMut(&[u8])) -> Result<bool, StoreError> {
        let (tree, key) = (self.name.clone(), key.to_vec());
        let value: Option<Vec<u8>> = self.db.call(move |conn| {
            let get = conn.cached("select value from sluice_kv where tree = $1 and key = $2")?;
            let row = conn.query_opt(&get, &[&tree, &key])?;
            Ok(row.map(|row| row.get(0)))
        })?;
        match value {
            Some(value) => {
                read(&value);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let (tree, wanted) = (self.name.clone(), keys.to_vec());
        let mut found: HashMap<Vec<u8>, Vec<u8>> = self.db.call(move |conn| {
            let get =
                conn.cached("select key, value from sluice_kv where tree = $1 and key = any($2)")?;
            let rows = conn.query(&get, &[&tree, &wanted])?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })?;
        Ok(keys.iter().map(|key| found.remove(key)).collect())
    }

    fn read_many(
        &self,
        keys: &[Vec<u8>],
        read: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<(), StoreError> {
        // One round trip for all of them.
        for (i, value) in self.get_many(keys)?.into_iter().enumerate() {
            if let Some(value) = value {
                read(i, &value);
            }
        }
        Ok(())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.insert(key, value.to_vec());
        self.apply(&batch)
    }

    fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        let (tree, key, fence) = (self.name.clone(), key.to_vec(), self.fence.clone());
        self.db.call(move |conn| -> Result<_, DbError> {
            let remove = conn.cached(REMOVE)?;
            let (work, generation) = Fence::params(fence.as_deref());
            let row = conn.query_one(&remove, &[&work, &generation, &tree, &key])?;
            Fence::verdict(fence.as_deref(), row.get(0))?;
            Ok(row.get::<_, i64>(1) > 0)
        })
    }

    fn apply(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        // The last write of each key is what the batch leaves; a statement may not touch
        // a row twice.
        let mut last: HashMap<&[u8], Option<&Vec<u8>>> = HashMap::new();
        for (key, value) in batch.ops() {
            last.insert(key, value.as_ref());
        }
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut removed: Vec<Vec<u8>> = Vec::new();
        for (key, value) in last {
            match value {
                Some(value) => {
                    keys.push(key.to_vec());
                    values.push(value.clone());
                }
                None => removed.push(key.to_vec()),
            }
        }
        let (tree, fence) = (self.name.clone(), self.fence.clone());
        self.db.call(move |conn| -> Result<_, DbError> {
            let apply = conn.cached(APPLY)?;
            let (work, generation) = Fence::params(fence.as_deref());
            let row = conn.query_one(
                &apply,
                &[&work, &generation, &tree, &removed, &keys, &values],
            )?;
            Fence::verdict(fence.as_deref(), row.get(0))
        })
    }

    fn iter(&self) -> Pairs<'_> {
        self.pairs(false)
    }

    fn iter_rev(&self) -> Pairs<'_> {
        self.pairs(true)
    }

    fn len(&self) -> usize {
        let tree = self.name.clone();
        self.db
            .call(move |client| {
                let row =
                    client.query_one("select count(*) from sluice_kv where tree = $1", &[&tree])?;
                Ok(row.get::<_, i64>(0) as usize)
            })
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
