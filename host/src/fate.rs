//! What becomes of a record: the words the engine settles in and the ledger stores. A leaf
//! module (it depends on no part of the engine or the ledger), so that the two can both
//! speak of a record's fate without importing each other.

use serde::{Deserialize, Serialize};

use crate::sandbox::Failure;
pub use crate::source::Record;

/// A failure as the host keeps and reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFailure {
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl From<Failure> for RecordFailure {
    fn from(f: Failure) -> Self {
        RecordFailure {
            code: f.code,
            message: f.message,
            fields: f.fields,
        }
    }
}

impl RecordFailure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        RecordFailure {
            code: code.to_string(),
            message: message.into(),
            fields: Vec::new(),
        }
    }
}

/// How a record left a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Confirmed by the destination, with the id it gave the record, if any.
    Delivered(Option<String>),
    /// Refused for its data; sent again by later runs.
    Rejected(RecordFailure),
    /// Cannot succeed without a person.
    Permanent(RecordFailure),
    /// The run stopped before the record was settled (a fatal verdict, Ctrl-C, a rate
    /// limit that outlasted `max_rate_limit_wait`); the last failure seen, if any.
    Pending(Option<RecordFailure>),
}

/// A settled record: its fate, and how many times this run sent it.
#[derive(Debug, Clone)]
pub struct Settled {
    pub record: Record,
    pub fate: Fate,
    pub attempts: u32,
}

/// What a run does with a record read from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    /// Delivered before with the same data (or resolved by a person).
    Unchanged,
    /// Permanent, and its data has not changed since.
    Held,
    /// `behavior = "update"`: never delivered, and the connector updates by id only.
    NotAtDestination,
    /// `behavior = "insert"`: delivered before.
    AtDestination,
}
