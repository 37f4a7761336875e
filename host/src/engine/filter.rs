//! What the engine asks before sending a record read from the source: whether the
//! destination already has it, or a person holds it. The engine owns this interface and
//! the ledger implements it, so the engine never depends on how fates are stored.

use anyhow::Result;

pub use crate::fate::Decision;

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
}
