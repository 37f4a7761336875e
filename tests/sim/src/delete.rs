//! Deleting a batch of records one by one, with per-record outcomes: what the Salesforce
//! and REST delete endpoints share.
//!
//! Each identity goes through, in order: finding the stored record it names, and a row
//! lock (a seeded fault, as for writes). Records that pass are removed together at the end,
//! so that an all-or-none request that fails removes nothing.

use crate::faults::row_locked;
use crate::state::Shared;
use crate::store::Store;
use crate::validation::{self, RecordError};

/// What became of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Removal {
    Removed { key: String },
    Failed(RecordError),
}

/// The keys the identities name, for the request log: each one's key, or the identity as
/// sent when it names none.
pub(crate) fn keys(
    shared: &Shared,
    identities: &[String],
    resolve: impl Fn(&Store, &str) -> Option<String>,
) -> Vec<String> {
    let inner = shared.lock();
    identities
        .iter()
        .map(|identity| resolve(&inner.store, identity).unwrap_or_else(|| identity.clone()))
        .collect()
}

/// Removes the records `identities` name (`resolve` finds a stored record's key from an
/// identity) and returns one outcome per identity, in order. An identity that names no
/// stored record, or one already removed by this request, fails with `missing`'s error.
/// Every failure is counted in `Stats::record_errors`, as for writes.
pub(crate) fn remove(
    shared: &Shared,
    identities: &[String],
    resolve: impl Fn(&Store, &str) -> Option<String>,
    missing: impl Fn(&str) -> RecordError,
    all_or_none: bool,
) -> Vec<Removal> {
    let locks = shared.faults.lock_probability > 0.0;
    let mut inner = shared.lock();
    let mut outcomes: Vec<Option<Removal>> = Vec::with_capacity(identities.len());
    let mut staged: Vec<(usize, String)> = Vec::new();
    for (index, identity) in identities.iter().enumerate() {
        let key = resolve(&inner.store, identity)
            .filter(|key| !staged.iter().any(|(_, staged)| staged == key));
        let verdict = match key {
            None => Err(missing(identity)),
            Some(key) => {
                let sighting = if locks { inner.sighting(&key) } else { 0 };
                let p = shared.faults.lock_probability;
                if locks && row_locked(shared.faults.seed, p, &key, sighting) {
                    let message = "unable to obtain exclusive access to this record";
                    let code = validation::UNABLE_TO_LOCK_ROW;
                    Err(RecordError::new(code, message, Vec::new()))
                } else {
                    Ok(key)
                }
            }
        };
        match verdict {
            Ok(key) => {
                staged.push((index, key));
                outcomes.push(None);
            }
            Err(error) => {
                inner.count_record_error(&error.code);
                outcomes.push(Some(Removal::Failed(error)));
            }
        }
    }
    let failed = staged.len() < outcomes.len();
    for (index, key) in staged {
        let outcome = if all_or_none && failed {
            let message = "Record rolled back because not all records were valid and the request was using AllOrNone header";
            let code = validation::ALL_OR_NONE_OPERATION_ROLLED_BACK;
            Removal::Failed(RecordError::new(code, message, Vec::new()))
        } else {
            inner.store.remove(&key);
            inner.count_deleted();
            Removal::Removed { key }
        };
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Removal::Failed(missing("?"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Faults;
    use crate::test_support::object;
    use crate::validation::Rules;
    use serde_json::json;

    fn by_key(store: &Store, identity: &str) -> Option<String> {
        store.contains(identity).then(|| identity.to_owned())
    }

    fn gone(identity: &str) -> RecordError {
        RecordError::new("NOT_FOUND", format!("no {identity}"), Vec::new())
    }

    fn shared(keys: &[&str]) -> Shared {
        let shared = Shared::new(Faults::default(), Rules::default(), None, true).unwrap();
        for key in keys {
            shared
                .lock()
                .store
                .put((*key).into(), &object(json!({})), None);
        }
        shared
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn removes_what_it_finds_once() {
        let s = shared(&["a", "b"]);
        let out = remove(&s, &ids(&["a", "x", "a"]), by_key, gone, false);
        assert_eq!(out[0], Removal::Removed { key: "a".into() });
        assert!(matches!(&out[1], Removal::Failed(e) if e.message == "no x"));
        assert!(matches!(&out[2], Removal::Failed(e) if e.code == "NOT_FOUND"));
        assert_eq!(s.lock().store.len(), 1);
        assert_eq!(s.stats().records_deleted, 1);
        assert_eq!(s.stats().record_errors.get("NOT_FOUND"), Some(&2));
    }

    #[test]
    fn all_or_none_removes_nothing_when_one_fails() {
        let s = shared(&["a", "b"]);
        let out = remove(&s, &ids(&["a", "x"]), by_key, gone, true);
        assert!(
            matches!(&out[0], Removal::Failed(e) if e.code == validation::ALL_OR_NONE_OPERATION_ROLLED_BACK)
        );
        assert_eq!(s.lock().store.len(), 2);
        assert_eq!(keys(&s, &ids(&["b", "y"]), by_key), ["b", "y"]);
    }
}
