//! Finding a record's key in its JSON text without building the record.
//!
//! The accept-all path handles a million records in a benchmark; reading one field while
//! skipping the rest costs a fraction of parsing every record into a `Value` tree. The
//! key is spelled exactly as [`crate::validation::key_of`] spells it from a parsed record.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The key of the record whose JSON is `text`: `Ok(None)` when the object has no usable
/// key, `Err` when `text` is not a JSON object.
pub(crate) fn probe_key(text: &str, key_field: &str) -> Result<Option<String>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let key = RecordKey(key_field).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(key)
}

/// Visits an object, keeping the value of one field.
struct RecordKey<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for RecordKey<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordKey<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut key = None;
        while let Some(is_key_field) = map.next_key_seed(FieldIs(self.0))? {
            if is_key_field {
                // A repeated field counts as its last value, as in a parsed `Map`.
                key = map.next_value_seed(KeyValue)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(key)
    }
}

/// Compares an object's field name with the key field, without allocating it.
struct FieldIs<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for FieldIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<bool, E> {
        Ok(name == self.0)
    }
}

/// A key's value: a non-empty string or a number; anything else is no key.
struct KeyValue;

impl<'de> DeserializeSeed<'de> for KeyValue {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyValue {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((!v.is_empty()).then(|| v.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(serde_json::Number::from(v).to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(serde_json::Number::from(v).to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map(|n| n.to_string()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::key_of;
    use serde_json::Value;

    #[test]
    fn agrees_with_parsed_records() {
        let cases = [
            r#"{"id": "a1", "x": [1, {"id": "inner"}]}"#,
            r#"{"x": 1, "id": 42}"#,
            r#"{"id": -7}"#,
            r#"{"id": 2.5}"#,
            r#"{"id": 1e3}"#,
            r#"{"id": ""}"#,
            r#"{"id": null}"#,
            r#"{"id": true}"#,
            r#"{"id": {"nested": 1}}"#,
            r#"{"id": "first", "id": "last"}"#,
            r#"{"i\u0064": "escaped"}"#,
            r#"{"other": 1}"#,
        ];
        for text in cases {
            let parsed: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            let expected = parsed.get("id").and_then(key_of);
            assert_eq!(probe_key(text, "id").ok(), Some(expected), "{text}");
        }
    }

    #[test]
    fn refuses_non_objects() {
        for text in ["[1]", "\"id\"", "3", "{\"id\": 1", "{\"id\": 1} x"] {
            assert!(probe_key(text, "id").is_err(), "{text}");
        }
    }
}
