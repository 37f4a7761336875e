//! Upserting a batch of records one by one, with per-record outcomes: the part of a write
//! both simulators share (the accept-all fast path aside).
//!
//! Each record goes through, in order: its key, a duplicate key earlier in the same request,
//! a row lock (a seeded fault), the stateless [`validation::check`] and the unique fields.
//! Records that pass are staged and committed together at the end, so that an all-or-none
//! request that fails stores nothing.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::faults::row_locked;
use crate::state::Shared;
use crate::validation::{self, RecordError, unique_value};

/// One record of a request, parsed.
#[derive(Debug)]
pub(crate) struct Candidate {
    /// Its key, if it has a usable one (see [`validation::key_of`]).
    pub(crate) key: Option<String>,
    pub(crate) fields: Map<String, Value>,
    /// Its JSON as received, stored as is when nothing is merged into it.
    pub(crate) text: Option<Box<str>>,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Stored { key: String, created: bool },
    Failed(RecordError),
}

/// How a simulator upserts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode<'a> {
    /// The field the key comes from, named in errors about it.
    pub(crate) key_field: &'a str,
    /// Merge the record's fields into the stored ones (Salesforce's upsert) instead of
    /// replacing the stored record (a REST `PUT`).
    pub(crate) merge: bool,
    /// Store nothing unless every record passes.
    pub(crate) all_or_none: bool,
    /// Refuse a record whose key is already stored (`DUPLICATE_VALUE`): an insert.
    pub(crate) create_only: bool,
}

struct Staged {
    index: usize,
    key: String,
    fields: Map<String, Value>,
    text: Option<Box<str>>,
    created: bool,
}

/// Upserts `candidates` and returns one outcome per candidate, in order. Every record the
/// simulator finds at fault is counted in `Stats::record_errors` by code (records rolled
/// back only because of another are not).
pub(crate) fn upsert(shared: &Shared, candidates: Vec<Candidate>, mode: Mode<'_>) -> Vec<Outcome> {
    let locks = shared.faults.lock_probability > 0.0;
    let mut inner = shared.lock();
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(candidates.len());
    let mut staged: Vec<Staged> = Vec::new();
    let mut staged_keys: HashSet<String> = HashSet::new();
    let mut staged_unique: HashMap<(usize, String), String> = HashMap::new();

    for (index, candidate) in candidates.into_iter().enumerate() {
        let verdict = (|| {
            let Some(key) = candidate.key else {
                let field = mode.key_field.to_owned();
                let message = format!("Required fields are missing: [{field}]");
                return Err(RecordError::new(
                    validation::REQUIRED_FIELD_MISSING,
                    message,
                    vec![field],
                ));
            };
            let sighting = if locks { inner.sighting(&key) } else { 0 };
            if staged_keys.contains(&key) {
                let message = format!("Duplicate external id specified: {key}");
                let fields = vec![mode.key_field.to_owned()];
                return Err(RecordError::new(
                    validation::DUPLICATE_EXTERNAL_ID,
                    message,
                    fields,
                ));
            }
            if mode.create_only && inner.store.contains(&key) {
                let owner = inner.store.id_of(&key).unwrap_or(&key).to_owned();
                return Err(validation::duplicate_value(mode.key_field, &key, &owner));
            }
            if locks
                && row_locked(
                    shared.faults.seed,
                    shared.faults.lock_probability,
                    &key,
                    sighting,
                )
            {
                let message = "unable to obtain exclusive access to this record";
                return Err(RecordError::new(
                    validation::UNABLE_TO_LOCK_ROW,
                    message,
                    Vec::new(),
                ));
            }
            let created = !inner.store.contains(&key);
            let (fields, text) = match inner.store.fields(&key).filter(|_| mode.merge) {
                Some(mut stored) => {
                    stored.extend(candidate.fields);
                    (stored, None)
                }
                None => (candidate.fields, candidate.text),
            };
            if let Some(error) = validation::check(&shared.rules, &fields) {
                return Err(error);
            }
            for (field_index, field) in shared.rules.unique.iter().enumerate() {
                let Some(value) = unique_value(fields.get(field)) else {
                    continue;
                };
                let owner = staged_unique
                    .get(&(field_index, value.clone()))
                    .map(String::as_str)
                    .or_else(|| inner.store.owner(field, &value));
                if let Some(owner) = owner.filter(|o| *o != key) {
                    return Err(validation::duplicate_value(field, &value, owner));
                }
            }
            Ok(Staged {
                index,
                key,
                fields,
                text,
                created,
            })
        })();
        match verdict {
            Ok(s) => {
                for (field_index, field) in shared.rules.unique.iter().enumerate() {
                    if let Some(value) = unique_value(s.fields.get(field)) {
                        staged_unique.insert((field_index, value), s.key.clone());
                    }
                }
                staged_keys.insert(s.key.clone());
                staged.push(s);
                outcomes.push(None);
            }
            Err(error) => {
                inner.count_record_error(&error.code);
                outcomes.push(Some(Outcome::Failed(error)));
            }
        }
    }

    let failed = staged.len() < outcomes.len();
    for s in staged {
        let outcome = if mode.all_or_none && failed {
            let message = "Record rolled back because not all records were valid and the request was using AllOrNone header";
            Outcome::Failed(RecordError::new(
                validation::ALL_OR_NONE_OPERATION_ROLLED_BACK,
                message,
                Vec::new(),
            ))
        } else {
            inner.store.put(s.key.clone(), &s.fields, s.text);
            Outcome::Stored {
                key: s.key,
                created: s.created,
            }
        };
        outcomes[s.index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Outcome::Failed(RecordError::new(
                    "UNKNOWN_EXCEPTION",
                    "record lost",
                    Vec::new(),
                ))
            })
        })
        .collect()
}
