//! Where a sync's delivered set is kept, behind a trait: the log in the state directory
//! ([`super::delivered::DeliveredLog`]) or a table of the shared PostgreSQL database
//! ([`super::postgres::PgDeliveries`]). The ledger and the run's sink use only this.

use crate::source::partition::Partition;

use super::delivered::{
    Compacted, Delivered, Delivery, Fingerprint, Index, LogError, States, fold, forget_deleted,
};

/// A sync's confirmed deliveries and the destination they are about.
///
/// What every implementation promises: a delivery appended is read back by every later
/// read in the process; it is durable once [`Deliveries::sync`] has returned; a crash
/// loses at most what was appended since, and those records are sent again.
pub trait Deliveries: Send + Sync {
    /// Visits every delivery, the oldest first (a key's later deliveries supersede its
    /// earlier ones); returns the fingerprint of the destination the state is about.
    fn read(&self, visit: &mut dyn FnMut(&Delivery<'_>)) -> Result<Option<Fingerprint>, LogError>;

    /// The destination the state is about, without reading the deliveries.
    fn destination(&self) -> Result<Option<Fingerprint>, LogError>;

    /// Appends the deliveries of one verdict.
    fn append(&self, records: &[Delivery<'_>]) -> Result<(), LogError>;

    /// Makes every append so far durable.
    fn sync(&self) -> Result<(), LogError>;

    /// Ends what this process appends to, made durable (a log's segment: the migration
    /// from an older ledger writes one of its own).
    fn close_segment(&self) -> Result<(), LogError> {
        self.sync()
    }

    /// Forgets every delivery: the state is now about `fingerprint`, which has confirmed
    /// nothing yet.
    fn reset(&self, fingerprint: Fingerprint) -> Result<(), LogError>;

    /// Names the destination of a state that has none, keeping the state.
    fn stamp(&self, fingerprint: Fingerprint) -> Result<(), LogError>;

    /// Rewrites the state smaller when that is worth it (a log's segments into its
    /// snapshot); stores that keep one row a key have nothing to do.
    fn compact_if_worth_it(&self) -> Result<Option<Compacted>, LogError> {
        Ok(None)
    }

    /// Change detection's view, and the destination it is about.
    fn index(&self) -> Result<(Index, Option<Fingerprint>), LogError> {
        let mut index = Index::default();
        let fingerprint = self.read(&mut |record| index.insert(record))?;
        index.seal();
        Ok((index, fingerprint))
    }

    /// [`Deliveries::index`] of the keys of `partition` only (all keys for `None`): a
    /// partition's run holds no more than its share.
    fn index_of(
        &self,
        partition: Option<Partition>,
    ) -> Result<(Index, Option<Fingerprint>), LogError> {
        let Some(partition) = partition else {
            return self.index();
        };
        let mut index = Index::default();
        let fingerprint = self.read(&mut |record| {
            if partition.holds(record.key) {
                index.insert(record);
            }
        })?;
        index.seal();
        Ok((index, fingerprint))
    }

    /// The state of each `wanted` key, and the destination the state is about.
    fn states(
        &self,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<(States, Option<Fingerprint>), LogError> {
        let mut states = States::new();
        let fingerprint = self.read(&mut |record| {
            if wanted(record.key) {
                fold(&mut states, record);
            }
        })?;
        forget_deleted(&mut states);
        Ok((states, fingerprint))
    }

    /// Every key's state (for people and for migration: holds the whole state).
    fn all(&self) -> Result<(States, Option<Fingerprint>), LogError> {
        self.states(&|_| true)
    }

    /// What the state holds for `key` (reads all of it: for people, not for runs).
    fn get(&self, key: &str) -> Result<Option<Delivered>, LogError> {
        Ok(self.states(&|k| k == key)?.0.remove(key))
    }
}
