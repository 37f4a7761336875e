//! The records a simulator has accepted, by key, with indexes for unique fields.
//!
//! Records are kept as compact JSON text rather than `Value` trees: a million small
//! records then cost a few hundred megabytes instead of several gigabytes, and the
//! accept-all fast path can store the exact bytes it received without re-serializing.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::validation::unique_value;

#[derive(Debug, Default)]
pub(crate) struct Store {
    records: HashMap<String, Box<str>>,
    unique: Vec<UniqueIndex>,
    /// The id the destination gave each key, both ways, for updates and deletes by id.
    /// Only ids handed out in answers are kept: the accept-all path hands out none.
    key_of_id: HashMap<String, String>,
    id_of_key: HashMap<String, String>,
}

/// Who holds each value of one unique field, both ways, so that an update can release
/// the value a record held before.
#[derive(Debug)]
struct UniqueIndex {
    field: String,
    owner_of: HashMap<String, String>,
    value_of: HashMap<String, String>,
}

impl Store {
    pub(crate) fn new(unique_fields: &[String]) -> Self {
        let unique = unique_fields
            .iter()
            .map(|f| UniqueIndex {
                field: f.clone(),
                owner_of: HashMap::new(),
                value_of: HashMap::new(),
            })
            .collect();
        Store {
            records: HashMap::new(),
            unique,
            key_of_id: HashMap::new(),
            id_of_key: HashMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.records.contains_key(key)
    }

    /// The stored fields of `key`, if any.
    pub(crate) fn fields(&self, key: &str) -> Option<Map<String, Value>> {
        let text = self.records.get(key)?;
        serde_json::from_str(text).ok()
    }

    /// The key of the stored record holding `value` in unique field `field`.
    pub(crate) fn owner(&self, field: &str, value: &str) -> Option<&str> {
        let index = self.unique.iter().find(|i| i.field == field)?;
        index.owner_of.get(value).map(String::as_str)
    }

    /// Stores `text` under `key` without touching the unique indexes: the accept-all path,
    /// which skips validation altogether.
    pub(crate) fn put_text(&mut self, key: String, text: Box<str>) {
        self.records.insert(key, text);
    }

    /// Stores a record and moves its unique values to it. `text` is its JSON, when the
    /// caller already has it; otherwise `fields` is serialized.
    pub(crate) fn put(&mut self, key: String, fields: &Map<String, Value>, text: Option<Box<str>>) {
        for index in &mut self.unique {
            if let Some(old) = index.value_of.remove(&key)
                && index.owner_of.get(&old) == Some(&key)
            {
                index.owner_of.remove(&old);
            }
            if let Some(value) = unique_value(fields.get(&index.field)) {
                index.owner_of.insert(value.clone(), key.clone());
                index.value_of.insert(key.clone(), value);
            }
        }
        let text = text.unwrap_or_else(|| {
            let json = serde_json::to_string(fields).unwrap_or_else(|_| "{}".to_owned());
            json.into_boxed_str()
        });
        self.records.insert(key, text);
    }

    /// Removes a record, its unique values and its id. `false` when there was none.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        for index in &mut self.unique {
            if let Some(old) = index.value_of.remove(key)
                && index.owner_of.get(&old).is_some_and(|owner| owner == key)
            {
                index.owner_of.remove(&old);
            }
        }
        if let Some(id) = self.id_of_key.remove(key) {
            self.key_of_id.remove(&id);
        }
        self.records.remove(key).is_some()
    }

    /// Notes the id the destination gave `key`'s record, so that requests can name it.
    pub(crate) fn set_id(&mut self, key: &str, id: &str) {
        if self.id_of_key.get(key).is_some_and(|known| known == id) {
            return;
        }
        if let Some(old) = self.id_of_key.insert(key.to_owned(), id.to_owned()) {
            self.key_of_id.remove(&old);
        }
        self.key_of_id.insert(id.to_owned(), key.to_owned());
    }

    /// The key of the stored record the destination gave `id`.
    pub(crate) fn key_for_id(&self, id: &str) -> Option<&str> {
        self.key_of_id
            .get(id)
            .map(String::as_str)
            .filter(|key| self.records.contains_key(*key))
    }

    /// The id the destination gave `key`'s record, if it gave one.
    pub(crate) fn id_of(&self, key: &str) -> Option<&str> {
        self.id_of_key.get(key).map(String::as_str)
    }

    /// A copy of every stored record's JSON, to parse once the lock is released: parsing a
    /// million records takes long enough to stall the server.
    pub(crate) fn texts(&self) -> Vec<(String, Box<str>)> {
        self.records
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect()
    }

    /// The stored JSON of one record.
    pub(crate) fn text(&self, key: &str) -> Option<Box<str>> {
        self.records.get(key).cloned()
    }
}

/// Parses stored JSON (always valid: the store only holds JSON it produced or checked).
pub(crate) fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Every record of a [`Store::texts`] copy, parsed, ordered by key.
pub(crate) fn snapshot(texts: Vec<(String, Box<str>)>) -> BTreeMap<String, Value> {
    texts
        .into_iter()
        .map(|(k, text)| (k, parse(&text)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::object as fields;
    use serde_json::json;

    #[test]
    fn unique_values_move_with_updates() {
        let mut s = Store::new(&["Email".to_owned()]);
        s.put("a".into(), &fields(json!({"Email": "x@y.z"})), None);
        assert_eq!(s.owner("Email", "x@y.z"), Some("a"));
        s.put("a".into(), &fields(json!({"Email": "w@y.z"})), None);
        assert_eq!(s.owner("Email", "x@y.z"), None);
        assert_eq!(s.owner("Email", "w@y.z"), Some("a"));
        assert_eq!(s.fields("a"), Some(fields(json!({"Email": "w@y.z"}))));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn removing_frees_unique_values_and_ids() {
        let mut s = Store::new(&["Email".to_owned()]);
        s.put("a".into(), &fields(json!({"Email": "x@y.z"})), None);
        s.set_id("a", "id-a");
        assert_eq!(
            (s.key_for_id("id-a"), s.id_of("a")),
            (Some("a"), Some("id-a"))
        );
        assert!(s.remove("a"));
        assert!(!s.remove("a"));
        assert_eq!(s.owner("Email", "x@y.z"), None);
        assert_eq!(
            (s.key_for_id("id-a"), s.id_of("a"), s.len()),
            (None, None, 0)
        );
    }
}
