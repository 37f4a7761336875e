//! What the engine asks before sending a record read from the source: whether the
//! destination already has it, or a person holds it. The engine owns this interface and
//! the ledger implements it, so the engine never depends on how fates are stored.

use anyhow::Result;

pub use crate::fate::Decision;
use crate::source::Record;

/// Decides, record by record, what a run does with what it reads from the source. Called
/// from the one reader thread, once per record read.
pub trait Filter: Send + Sync {
    /// Whether `record` is sent; `send_all` sends even what the destination already has
    /// (a permanent record whose data is unchanged is still held).
    fn decide(&self, record: &Record, send_all: bool) -> Result<Decision>;

    /// Nothing is known yet, so every record is sent: the reader then skips the lookups.
    fn is_empty(&self) -> bool;
}
