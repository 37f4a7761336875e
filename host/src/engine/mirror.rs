//! What a mirror run deletes, and when it deletes nothing: the one place that decides,
//! for a run and for `sluice plan` alike.
//!
//! A record is deleted at the destination when the ledger says the destination holds it
//! and a complete read of the source no longer has its key. Two guards stand before any
//! delete, because a delete cannot be taken back: the read must be complete (a row that
//! could not be read may be a record that still exists), and the count must stay within
//! `max_deletes` unless the operator allowed more for this run.

use anyhow::Result;

use super::filter::Filter;
use super::repeats::KeySet;
use crate::config::MaxDeletes;
use crate::source::Record;
use crate::source::partition::Partition;

/// How many deletes a run may send.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub max: MaxDeletes,
    /// `--allow-deletes N`: this run may delete up to N, whatever `max`.
    pub allowed: Option<u64>,
}

/// What a mirror run does about the records the source no longer has.
#[derive(Debug)]
pub enum Deletes {
    /// Sends these deletes, in key order.
    Send(Vec<Record>),
    /// Deletes nothing: `count` records would have been deleted (0 when not counted).
    Withheld { count: u64, why: String },
}

/// The deletes of a mirror run whose source read held `keys`, `unusable` rows among them.
pub fn deletes(
    filter: &dyn Filter,
    keys: &KeySet,
    partition: Option<Partition>,
    unusable: u64,
    bound: Bound,
) -> Result<Deletes> {
    if unusable > 0 {
        return Ok(Deletes::Withheld {
            count: 0,
            why: format!(
                "{unusable} source row(s) could not be read as records, so the read is not \
                 complete: nothing is deleted (fix the rows, then run again)"
            ),
        });
    }
    if let Some(left) = filter.left_behind(keys).filter(|&left| left > 0) {
        return Ok(Deletes::Withheld {
            count: left,
            why: format!(
                "the destination changed since the last run (connector, base_url or \
                 settings): {left} record(s) delivered to the previous destination are no \
                 longer in the source and were not deleted from it; this run mirrors to the \
                 new destination only"
            ),
        });
    }
    let records = filter.absent(&|key| keys.contains(key), partition)?;
    let count = records.len() as u64;
    let delivered = filter.delivered_count();
    let limit = bound.allowed.unwrap_or_else(|| bound.max.limit(delivered));
    if count <= limit {
        return Ok(Deletes::Send(records));
    }
    let why = match bound.allowed {
        Some(allowed) => format!(
            "{count} records would be deleted, more than --allow-deletes {allowed}: nothing \
             is deleted"
        ),
        None => format!(
            "{count} records would be deleted, more than max_deletes = {} ({limit} of \
             {delivered} delivered): nothing is deleted; pass --allow-deletes {count} to \
             delete them",
            bound.max
        ),
    };
    Ok(Deletes::Withheld { count, why })
}
