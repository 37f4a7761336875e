//! A sync's delivered set as rows of `sluice_delivered`, one a key: PostgreSQL's own log
//! makes each verdict's upsert durable at its commit, so there is no segment to sync and
//! nothing to compact. The destination the rows are about is in `sluice_destinations`.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Db, DbError, Fence, held};
use crate::ledger::delivered::{Delivered, Delivery, Fingerprint, Index, LogError};
use crate::ledger::deliveries::Deliveries;
use crate::source::partition::{Partition, key_hash};

/// A verdict's deliveries, folded into each key's row of sync `$3`, unless fenced (see
/// [`held`]).
const APPEND: &str = concat!(
    "with ",
    held!(),
    " insert into sluice_delivered \
       (sync, key, hash, destination_id, attempts, at_ms, key_hash) \
     select $3, k, h, d, a, t, kh \
     from unnest($4::text[], $5::bytea[], $6::text[], $7::int8[], $8::int8[], $9::int8[]) \
       as u(k, h, d, a, t, kh) \
     where (select ok from held) \
     on conflict (sync, key) do update set \
       hash = excluded.hash, \
       destination_id = coalesce(excluded.destination_id, sluice_delivered.destination_id), \
       attempts = sluice_delivered.attempts + excluded.attempts, \
       at_ms = excluded.at_ms"
);

/// Sync `$3`'s destination set to `$4`, its deliveries forgotten first when `$5`, unless
/// fenced (see [`held`]).
const DESTINATION: &str = concat!(
    "with ",
    held!(),
    ", gone as (delete from sluice_delivered \
         where sync = $3 and $5 and (select ok from held)), \
     put as (insert into sluice_destinations (sync, fingerprint) \
         select $3, $4 where (select ok from held) \
         on conflict (sync) do update set fingerprint = excluded.fingerprint) \
     select ok from held"
);

/// One page of a sync's deliveries in key order, of one partition's keys when `$4` is set.
const PAGE_SQL: &str = "select key, hash, destination_id, attempts, at_ms from sluice_delivered \
     where sync = $1 and ($2::text is null or key > $2) \
       and ($4::bigint is null or key_hash % $4 = $5) \
     order by key limit $3";

/// How many deliveries a read takes a round trip.
const PAGE: i64 = 20_000;

pub struct PgDeliveries {
    db: Arc<Db>,
    sync: String,
    /// Writes check this lease (see [`Fence`]).
    fence: Option<Arc<Fence>>,
}

impl PgDeliveries {
    pub fn new(db: Arc<Db>, sync: &str, fence: Option<Arc<Fence>>) -> PgDeliveries {
        PgDeliveries {
            db,
            sync: sync.to_string(),
            fence,
        }
    }

    fn fingerprint(&self) -> Result<Option<Fingerprint>, LogError> {
        let sync = self.sync.clone();
        let bytes: Option<Vec<u8>> = self
            .db
            .call(move |client| {
                let row = client.query_opt(
                    "select fingerprint from sluice_destinations where sync = $1",
                    &[&sync],
                )?;
                Ok(row.map(|row| row.get(0)))
            })
            .map_err(database)?;
        match bytes {
            None => Ok(None),
            Some(bytes) => match <[u8; 16]>::try_from(bytes.as_slice()) {
                Ok(fingerprint) => Ok(Some(Fingerprint(fingerprint))),
                Err(_) => Err(LogError::Database(format!(
                    "the destination of sync `{}` is stored as {} bytes, not 16",
                    self.sync,
                    bytes.len()
                ))),
            },
        }
    }

    fn set_fingerprint(&self, fingerprint: Fingerprint, forget: bool) -> Result<(), LogError> {
        let (sync, fence) = (self.sync.clone(), self.fence.clone());
        self.db
            .call(move |conn| -> Result<_, DbError> {
                let destination = conn.cached(DESTINATION)?;
                let (work, generation) = Fence::params(fence.as_deref());
                let row = conn.query_one(
                    &destination,
                    &[
                        &work,
                        &generation,
                        &sync,
                        &fingerprint.0.as_slice(),
                        &forget,
                    ],
                )?;
                Fence::verdict(fence.as_deref(), row.get(0))
            })
            .map_err(database)
    }
}

type Row = (String, Vec<u8>, Option<String>, i64, i64);

impl PgDeliveries {
    /// Visits the deliveries of `partition`'s keys (all of them for `None`), in key order.
    fn read_part(
        &self,
        partition: Option<Partition>,
        visit: &mut dyn FnMut(&Delivery<'_>),
    ) -> Result<Option<Fingerprint>, LogError> {
        let fingerprint = self.fingerprint()?;
        let (count, index) = match partition {
            Some(p) => (Some(i64::from(p.count)), i64::from(p.index)),
            None => (None, 0),
        };
        let mut after: Option<String> = None;
        loop {
            let (sync, from) = (self.sync.clone(), after.clone());
            let rows: Vec<Row> = self
                .db
                .call(move |conn| {
                    let page = conn.cached(PAGE_SQL)?;
                    let rows = conn.query(&page, &[&sync, &from, &PAGE, &count, &index])?;
                    Ok(rows
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                        .collect())
                })
                .map_err(database)?;
            for (key, hash, destination_id, attempts, at_ms) in &rows {
                let hash = <[u8; 16]>::try_from(hash.as_slice()).map_err(|_| {
                    LogError::Database(format!(
                        "the delivery of `{key}` in sync `{}` has a hash of {} bytes, not 16",
                        self.sync,
                        hash.len()
                    ))
                })?;
                visit(&Delivery {
                    key,
                    hash,
                    destination_id: destination_id.as_deref(),
                    attempts: u32::try_from(*attempts).unwrap_or(u32::MAX),
                    at_ms: u64::try_from(*at_ms).unwrap_or(0),
                });
            }
            if (rows.len() as i64) < PAGE {
                return Ok(fingerprint);
            }
            after = rows.last().map(|row| row.0.clone());
        }
    }
}

impl Deliveries for PgDeliveries {
    fn read(&self, visit: &mut dyn FnMut(&Delivery<'_>)) -> Result<Option<Fingerprint>, LogError> {
        self.read_part(None, visit)
    }

    fn destination(&self) -> Result<Option<Fingerprint>, LogError> {
        self.fingerprint()
    }

    fn append(&self, records: &[Delivery<'_>]) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        // A statement may touch a row once: a key delivered twice in one verdict is folded.
        let mut folded: HashMap<&str, Delivered> = HashMap::new();
        for record in records {
            match folded.get_mut(record.key) {
                Some(state) => state.then(record),
                None => {
                    folded.insert(record.key, Delivered::first(record));
                }
            }
        }
        let mut keys = Vec::with_capacity(folded.len());
        let mut hashes = Vec::with_capacity(folded.len());
        let mut ids = Vec::with_capacity(folded.len());
        let mut attempts = Vec::with_capacity(folded.len());
        let mut at = Vec::with_capacity(folded.len());
        let mut key_hashes = Vec::with_capacity(folded.len());
        for (key, state) in folded {
            key_hashes.push(key_hash(key));
            keys.push(key.to_string());
            hashes.push(state.hash.0.to_le_bytes().to_vec());
            ids.push(state.destination_id);
            attempts.push(i64::from(state.attempts));
            at.push(i64::try_from(state.at_ms).unwrap_or(i64::MAX));
        }
        let (sync, fence) = (self.sync.clone(), self.fence.clone());
        let expected = keys.len() as u64;
        self.db
            .call(move |conn| -> Result<_, DbError> {
                // One statement, so one round trip and its own transaction: the lease
                // check (see `Fence`) is its condition, and a fenced write writes no row.
                let upsert = conn.cached(APPEND)?;
                let (work, generation) = Fence::params(fence.as_deref());
                let written = conn.execute(
                    &upsert,
                    &[
                        &work,
                        &generation,
                        &sync,
                        &keys,
                        &hashes,
                        &ids,
                        &attempts,
                        &at,
                        &key_hashes,
                    ],
                )?;
                Fence::verdict(fence.as_deref(), written > 0 || expected == 0)
            })
            .map_err(database)?;
        Ok(())
    }

    /// Every append is committed before it returns.
    fn sync(&self) -> Result<(), LogError> {
        Ok(())
    }

    fn reset(&self, fingerprint: Fingerprint) -> Result<(), LogError> {
        self.set_fingerprint(fingerprint, true)
    }

    fn stamp(&self, fingerprint: Fingerprint) -> Result<(), LogError> {
        self.set_fingerprint(fingerprint, false)
    }

    /// Each key once, in key order: all of it goes into the sorted part of the index.
    fn index(&self) -> Result<(Index, Option<Fingerprint>), LogError> {
        self.index_of(None)
    }

    /// The partition's keys only, filtered by the database.
    fn index_of(
        &self,
        partition: Option<Partition>,
    ) -> Result<(Index, Option<Fingerprint>), LogError> {
        let mut index = Index::default();
        let fingerprint = self.read_part(partition, &mut |record| index.insert_base(record))?;
        index.seal();
        Ok((index, fingerprint))
    }
}

fn database(err: crate::ledger::StoreError) -> LogError {
    match err {
        crate::ledger::StoreError::Fenced(what) => LogError::Fenced(what),
        err => LogError::Database(err.to_string()),
    }
}
