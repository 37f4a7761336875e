//! The work queue: rows of `sluice_work`, one per sync run partition or retry pass, keyed
//! by what they are and when they became due, so that every worker scheduling the same
//! due run writes the same row, once. Times are the database's clock, so that workers on
//! machines whose clocks differ agree on when a lease has run out.

use std::sync::Arc;
use std::time::Duration;

use crate::ledger::StoreError;
use crate::ledger::postgres::{Db, Fence};

/// What a row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A run of the sync's source (one partition of it).
    Run,
    /// A pass of the retry job.
    Retry,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Retry => "retry",
        }
    }
}

/// A row this worker holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub id: String,
    pub sync: String,
    pub kind: Kind,
    pub part: u32,
    pub parts: u32,
    pub generation: i64,
}

impl Claim {
    /// What this worker's ledger writes must check while it holds the lease.
    pub fn fence(&self) -> Fence {
        Fence {
            work: self.id.clone(),
            generation: self.generation,
        }
    }
}

/// The database's clock, in milliseconds since the Unix epoch.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// One worker's handle on the queue.
pub struct Queue {
    db: Arc<Db>,
    /// This worker, in the rows it holds (host name and process id).
    pub owner: String,
}

impl Queue {
    pub fn new(db: Arc<Db>, owner: String) -> Queue {
        Queue { db, owner }
    }

    /// Adds the rows of one due `kind` of `sync` (one per partition; a retry pass is one
    /// row). A row already there (another worker scheduled the same due time), or an
    /// unfinished one of the same sync, kind and partition, is left as it is. Returns how
    /// many rows were added.
    pub fn enqueue(
        &self,
        sync: &str,
        kind: Kind,
        parts: u32,
        due_at_ms: u64,
    ) -> Result<u64, StoreError> {
        let parts = if kind == Kind::Retry { 1 } else { parts.max(1) };
        let (sync, kind) = (sync.to_string(), kind.as_str());
        let due = i64::try_from(due_at_ms).unwrap_or(i64::MAX);
        // One statement: a worker frozen mid-transaction would hold the new rows' locks,
        // and every other worker scheduling the same due time would wait on it.
        self.db.call(move |client| {
            Ok(client.execute(
                "insert into sluice_work (id, sync, kind, part, parts, due_at) \
                 select format('%s/%s/%s/%s', $1::text, $2::text, $4::int8, p), \
                   $1, $2, p, $3, $4 \
                 from generate_series(0, $3 - 1) as p \
                 on conflict do nothing",
                &[&sync, &kind, &(parts as i32), &due],
            )?)
        })
    }

    /// Claims the oldest row that is due, or whose lease ran out, for `lease`. Only the
    /// kinds this worker knows: a newer Sluice sharing the database may queue others.
    pub fn claim(&self, lease: Duration) -> Result<Option<Claim>, StoreError> {
        let owner = self.owner.clone();
        let lease_ms = lease.as_millis() as i64;
        self.db.call(move |client| {
            let row = client.query_opt(
                &format!(
                    "update sluice_work w set state = 'running', owner = $1, \
                       generation = w.generation + 1, lease_until = {NOW_MS} + $2, \
                       started_at = {NOW_MS} \
                     where id = ( \
                       select id from sluice_work \
                       where kind in ('run', 'retry') \
                         and (state = 'due' or (state = 'running' and lease_until < {NOW_MS})) \
                       order by due_at, id limit 1 for update skip locked) \
                     returning id, sync, kind, part, parts, generation"
                ),
                &[&owner, &lease_ms],
            )?;
            Ok(row.map(|row| Claim {
                id: row.get(0),
                sync: row.get(1),
                kind: if row.get::<_, &str>(2) == "retry" {
                    Kind::Retry
                } else {
                    Kind::Run
                },
                part: row.get::<_, i32>(3) as u32,
                parts: row.get::<_, i32>(4) as u32,
                generation: row.get(5),
            }))
        })
    }

    /// Extends the lease; false when it has moved to another worker (or the row ended).
    pub fn renew(&self, claim: &Claim, lease: Duration) -> Result<bool, StoreError> {
        let (id, generation) = (claim.id.clone(), claim.generation);
        let lease_ms = lease.as_millis() as i64;
        self.db.call(move |client| {
            let renewed = client.execute(
                &format!(
                    "update sluice_work set lease_until = {NOW_MS} + $3 \
                     where id = $1 and generation = $2 and state = 'running'"
                ),
                &[&id, &generation, &lease_ms],
            )?;
            Ok(renewed == 1)
        })
    }

    /// Marks the work done (or failed, with why); false when the lease had moved on, and
    /// the row is another worker's.
    pub fn finish(&self, claim: &Claim, error: Option<String>) -> Result<bool, StoreError> {
        let (id, generation) = (claim.id.clone(), claim.generation);
        let state = if error.is_some() { "failed" } else { "done" };
        self.db.call(move |client| {
            let finished = client.execute(
                &format!(
                    "update sluice_work set state = $3, finished_at = {NOW_MS}, error = $4, \
                       lease_until = null \
                     where id = $1 and generation = $2 and state = 'running'"
                ),
                &[&id, &generation, &state, &error],
            )?;
            Ok(finished == 1)
        })
    }

    /// Gives the work back, due again at once: a worker shutting down leaves its row for
    /// the next one without making it wait for the lease to run out.
    pub fn release(&self, claim: &Claim) -> Result<bool, StoreError> {
        let (id, generation) = (claim.id.clone(), claim.generation);
        self.db.call(move |client| {
            let released = client.execute(
                "update sluice_work set state = 'due', owner = null, lease_until = null \
                 where id = $1 and generation = $2 and state = 'running'",
                &[&id, &generation],
            )?;
            Ok(released == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use sluice_sim::postgres::Postgres;

    use super::*;
    use crate::ledger::postgres::{Access, prepare};

    fn queue(pg: &Postgres, owner: &str) -> Queue {
        let db = Db::connect(pg.url.clone(), "TEST_POOL_URL", "public").unwrap();
        prepare(&db, Access::Shared).unwrap();
        Queue::new(Arc::new(db), owner.into())
    }

    #[test]
    fn rows_are_queued_once_claimed_oldest_first_and_fenced_by_generation() {
        let Some(pg) = Postgres::start() else { return };
        let (a, b) = (queue(&pg, "a"), queue(&pg, "b"));
        assert_eq!(a.enqueue("s", Kind::Run, 2, 20).unwrap(), 2);
        // The same due run scheduled by another worker, and an earlier retry pass.
        assert_eq!(b.enqueue("s", Kind::Run, 2, 20).unwrap(), 0);
        assert_eq!(b.enqueue("s", Kind::Retry, 8, 10).unwrap(), 1);
        // A later run of the same sync while those are open: none.
        assert_eq!(a.enqueue("s", Kind::Run, 2, 30).unwrap(), 0);
        // A kind this version does not know is never claimed.
        a.db.call(|c| {
            Ok(c.batch_execute(
                "insert into sluice_work (id, sync, kind, part, parts, due_at) \
                 values ('s/mirror/1/0', 's', 'mirror', 0, 1, 1)",
            )?)
        })
        .unwrap();

        let lease = Duration::from_secs(60);
        let first = a.claim(lease).unwrap().unwrap();
        assert_eq!(
            (first.kind, first.parts, first.generation),
            (Kind::Retry, 1, 1)
        );
        let second = b.claim(lease).unwrap().unwrap();
        let third = a.claim(lease).unwrap().unwrap();
        assert_eq!((second.part, third.part), (0, 1));
        assert_eq!(
            (second.id.as_str(), first.id.as_str()),
            ("s/run/20/0", "s/retry/10/0")
        );
        assert_eq!(b.claim(lease).unwrap(), None, "nothing else is due");

        // A lease that ran out is taken over at a new generation; the old holder can
        // neither renew nor finish it.
        assert!(b.renew(&second, Duration::ZERO).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        let taken = a.claim(lease).unwrap().unwrap();
        assert_eq!(
            (taken.id.as_str(), taken.generation),
            (second.id.as_str(), 2)
        );
        assert!(!b.renew(&second, lease).unwrap());
        assert!(!b.finish(&second, None).unwrap());
        assert!(a.finish(&taken, None).unwrap());
        // Given back, a row is due again at once.
        assert!(a.release(&third).unwrap());
        let again = b.claim(lease).unwrap().unwrap();
        assert_eq!(
            (again.id.as_str(), again.generation),
            (third.id.as_str(), 2)
        );
    }
}
