//! What the engine asks before sending a record read from the source: whether the
//! destination already has it, or a person holds it. The engine owns this interface and
//! the ledger implements it, so the engine never depends on how fates are stored.

use anyhow::Result;

pub use crate::fate::Decision;
use crate::source::Record;
use crate::source::partition::Partition;

/// Decides, record by record, what a run does with what it reads from the source. Called
/// from the one reader thread, once per row read (before repeated keys are known: a
/// decision about a row that a later row of its key replaces is not used).
pub trait Filter: Send + Sync {
    /// Whether the record `key` with `payload` is sent; `send_all` sends even what the
    /// destination already has (a permanent record whose data is unchanged is still
    /// held). Borrowed: most rows of a rerun are decided without being copied.
    fn decide(&self, key: &str, payload: &str, send_all: bool) -> Result<Decision>;

    /// Nothing is known yet, so every record is sent: the reader then skips the lookups.
    fn is_empty(&self) -> bool;

    /// Whether the destination holds `key`: it confirmed a delivery of it, and no delete
    /// since.
    fn at_destination(&self, key: &str) -> bool;

    /// The id the destination gave `key` when it was delivered, if it gave one.
    fn destination_id(&self, key: &str) -> Option<String>;

    /// How many records the destination holds (what `max_deletes` is a percentage of).
    fn delivered_count(&self) -> u64;

    /// What a mirror run deletes: every record the destination holds whose key `seen`
    /// says the source no longer has (within `partition`), as delete records with their
    /// destination ids; records whose delete waits for a person are left out. Reads the
    /// whole delivered state: called once, after the source was read.
    fn absent(
        &self,
        seen: &dyn Fn(&str) -> bool,
        partition: Option<Partition>,
    ) -> Result<Vec<Record>>;

    /// A mirror's complete read no longer has these failed records, which the destination
    /// never confirmed (`seen` holds the keys read, within `partition`): forgets them, so
    /// that no retry creates what the source removed, and returns how many. Only counts
    /// them when the run is a plan.
    fn forget_absent_failures(
        &self,
        seen: &dyn Fn(&str) -> bool,
        partition: Option<Partition>,
    ) -> Result<u64> {
        let _ = (seen, partition);
        Ok(0)
    }

    /// When this run delivers to another destination than the last one did: how many
    /// records the previous destination holds whose keys are not in `keys` (a mirror
    /// deletes them nowhere, and says so). `None` when the destination is the same, or
    /// its previous records were not kept.
    fn left_behind(&self, keys: &super::KeySet) -> Option<u64> {
        let _ = keys;
        None
    }
}
